"""Host audits: what is wrong, the evidence, and the fix, from the same facts the steps use.

Each check is a pure function of (inventory, host, its facts, the server's facts) returning a
Finding or None (not applicable to this host). tests/audit runs them through pytest-testinfra;
they are unit-tested here from given facts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import facts, names, render
from .steps import BLOCKED, CHANGE, ERROR, PENDING, Context
from .steps import cluster as cluster_steps
from .steps.runtime import driver_preflight

KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"


@dataclass
class Finding:
    check: str
    ok: bool
    message: str
    evidence: str = ""
    fix: str = ""

    def __str__(self) -> str:
        text = self.message
        if self.evidence:
            text += f"\n  evidence: {self.evidence}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


# Facts the audit reads that no step does (the steps declare theirs: steps.needs).
NEEDS = ("kubeconfig_mode", "runtimeclasses", "traefik_pods", "hub_pods")

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_this_machine(host) -> bool:
    """The host `inv` acts on: the one marked local: true, or the implicit `localhost` of a
    machine in no inventory (cli.local_run). `inv` runs only servers (an agent must join
    through `fab`), so a local agent is addressed like any other host."""
    return host.local and host.role == "server"


def run_step(step: str, host) -> str:
    """How to run `step` for `host`, as its user would type it. The implicit localhost is in no
    inventory, so `fab -H localhost ...` would only be refused: on this machine, `inv STEP`."""
    if is_this_machine(host):
        return f"run `inv {step}`"
    if host.role == "server":
        return f"run `fab -H {host.name} provision` (or `inv {step}` on {host.name})"
    return f"run `fab -H {host.name} provision`"


def on(host) -> str:
    """' on NAME' for another host; nothing for the machine the audit was asked on."""
    return "" if is_this_machine(host) else f" on {host.name}"


def _fix(step: str, inv, host) -> str:
    """The fix of a step that runs on `host` (k3s.install, gpu.runtime)."""
    return run_step(step, host)


def _cluster_fix(step: str, inv) -> str:
    """The fix of a cluster step (gpu.plugin, hub.launch): they run through the server."""
    return run_step(step, inv.server)


# --- driver and runtime ----------------------------------------------------------------------

def check_driver(inv, host, fx, server):
    pci = fx["pci_gpus"] or []
    if not host.gpus and not pci:
        return None
    smi = fx["nvidia_smi"]
    preflight = driver_preflight(host, fx)
    note = preflight.note
    evidence = (f"PCI bus: {len(pci)} NVIDIA GPU(s) ({', '.join(g['slot'] for g in pci) or 'none'}); nvidia-smi: "
                + (", ".join(g["name"] for g in smi["gpus"]) if smi["ok"] else smi["error"]))
    if preflight.problem:
        return Finding("driver", False, preflight.problem, evidence, preflight.fix)
    if not host.gpus:
        return Finding("driver", True, f"no GPUs given to gpuhub ({note})", evidence)
    return Finding("driver", True, f"driver {smi['gpus'][0]['driver']}, {len(smi['gpus'])} x {smi['gpus'][0]['name']}"
                   + (f"; {note}" if note else ""), evidence)


def check_toolkit(inv, host, fx, server):
    if not host.gpus:
        return None
    if not fx["toolkit"]:
        return Finding("toolkit", False, "nvidia-container-runtime is not installed", "command -v found nothing",
                       _fix("gpu.runtime", inv, host))
    return Finding("toolkit", True, f"nvidia-container-runtime at {fx['toolkit']}")


def check_containerd(inv, host, fx, server):
    if not host.gpus:
        return None
    config = fx["containerd"]
    if config is None:
        return Finding("containerd", False, "K3s has not generated its containerd config",
                       "/var/lib/rancher/k3s/agent/etc/containerd/config.toml is missing", _fix("k3s.install", inv, host))
    if "nvidia" not in config["runtimes"]:
        return Finding("containerd", False, "K3s's containerd config has no nvidia runtime",
                       f"runtimes: {', '.join(config['runtimes'])}",
                       "restart K3s after installing the toolkit: " + _fix("gpu.runtime", inv, host))
    if inv.nvidia_is_default and config["default_runtime"] != "nvidia":
        return Finding("containerd", False, f"nvidia is not containerd's default runtime ({inv.gpu['runtime']} mode)",
                       f"default_runtime_name = {config['default_runtime']}", _fix("gpu.runtime", inv, host))
    return Finding("containerd", True, f"runtimes {', '.join(config['runtimes'])}, default {config['default_runtime']}")


def check_template(inv, host, fx, server):
    if not host.gpus or inv.gpu["runtime"] != "template":
        return None
    if fx["template_sha"] is None:
        return Finding("template", False, "the containerd template is missing", "config-v3.toml.tmpl not found",
                       _fix("gpu.runtime", inv, host))
    if fx["template_sha"] != _sha(render.containerd_template()):
        return Finding("template", False, "the containerd template differs from gpuhub's", f"sha256 {fx['template_sha']}",
                       _fix("gpu.runtime", inv, host))
    return Finding("template", True, "containerd template as rendered")


def check_runtimeclass(inv, host, fx, server):
    if host.role != "server":
        return None
    classes = fx["runtimeclasses"]
    if classes is None:
        return Finding("runtimeclass", False, "cannot list RuntimeClasses: the cluster does not answer",
                       "kubectl get runtimeclasses failed", _fix("k3s.install", inv, host))
    if "nvidia" not in classes:
        return Finding("runtimeclass", False, "RuntimeClass nvidia does not exist", f"runtime classes: {classes}",
                       "K3s >= v1.28.5 creates it at start: restart K3s on the server")
    return Finding("runtimeclass", True, "RuntimeClass nvidia exists")


# --- K3s ---------------------------------------------------------------------------------------

def check_k3s_unit(inv, host, fx, server):
    unit = "k3s" if host.role == "server" else "k3s-agent"
    state = fx["unit_k3s"] if host.role == "server" else fx["unit_k3s_agent"]
    if fx["k3s_version"] is None and not state["active"]:
        return Finding("k3s_unit", False, f"K3s is not installed ({unit} unit inactive, no k3s binary)",
                       f"active={state['active']} enabled={state['enabled']}", _fix("k3s.install", inv, host))
    if not (state["active"] and state["enabled"]):
        return Finding("k3s_unit", False, f"{unit} is not active and enabled",
                       f"active={state['active']} enabled={state['enabled']}",
                       f"read `journalctl -u {unit} -n 50`{on(host)}; then " + _fix("k3s.install", inv, host))
    return Finding("k3s_unit", True, f"{unit} active and enabled")


def check_k3s_version(inv, host, fx, server):
    wanted, found = inv.cluster["k3s_version"], fx["k3s_version"]
    if found is None:
        return Finding("k3s_version", False, f"K3s is not installed ({wanted} is pinned)",
                       "/usr/local/bin/k3s --version gave no version", _fix("k3s.install", inv, host))
    if found != wanted:
        return Finding("k3s_version", False, f"K3s {found} is installed, {wanted} is pinned", "", _fix("k3s.install", inv, host))
    return Finding("k3s_version", True, f"K3s {found}")


def check_node(inv, host, fx, server):
    nodes = server["nodes"] if server else None
    if nodes is None:
        return Finding("node", False, "the cluster does not answer on the server", "kubectl get nodes failed",
                       f"check K3s{on(inv.server)}: " + _fix("k3s.install", inv, inv.server))
    node = nodes.get(host.name)
    if node is None:
        return Finding("node", False, f"node {host.name} is not registered with the server",
                       "nodes: " + ", ".join(sorted(nodes)), _fix("k3s.install", inv, host))
    if not node["ready"]:
        return Finding("node", False, f"node {host.name} is not Ready", "", f"read `journalctl -u 'k3s*' -n 50`{on(host)}")
    return Finding("node", True, f"node {host.name} Ready ({node['version']})")


def check_k3s_config(inv, host, fx, server):
    if fx["k3s_config_sha"] is None:
        return Finding("k3s_config", False, "/etc/rancher/k3s/config.yaml does not exist", "",
                       _fix("k3s.install", inv, host))
    if fx["k3s_config_sha"] != _sha(render.dump(render.k3s_config(inv, host))):
        return Finding("k3s_config", False, "/etc/rancher/k3s/config.yaml differs from what gpuhub renders",
                       f"sha256 {fx['k3s_config_sha']}", "see `inv render`; " + _fix("k3s.install", inv, host))
    return Finding("k3s_config", True, "config.yaml as rendered")


def check_kubeconfig(inv, host, fx, server):
    if host.role != "server":
        return None
    mode = fx["kubeconfig_mode"]
    if mode is None:
        # A missing file is readable by nobody: K3s writes it when its server starts.
        return Finding("kubeconfig", False, "there is no kubeconfig: K3s's server has not started here",
                       f"{KUBECONFIG} does not exist", _fix("k3s.install", inv, host))
    wanted = inv.cluster["kubeconfig_mode"]
    if int(mode, 8) != int(wanted, 8):
        return Finding("kubeconfig", False, f"the kubeconfig's mode is {int(mode, 8):04o}, cluster.kubeconfig_mode "
                       f"says {wanted}" + (" (readable by every user: cluster admin for all)"
                                           if int(mode, 8) & 0o007 else ""),
                       f"{KUBECONFIG} mode {mode}", f"chmod {wanted} {KUBECONFIG}{on(host)} "
                       f"(write-kubeconfig-mode: \"{wanted}\" in config.yaml keeps it so: "
                       + _fix("k3s.install", inv, host) + ")")
    return Finding("kubeconfig", True, f"kubeconfig mode {int(mode, 8):04o}, as configured")


def check_traefik(inv, host, fx, server):
    if host.role != "server":
        return None
    pods = fx["traefik_pods"]
    if inv.hub["https"] == "ingress":
        # The hub's Ingress is served by K3s's Traefik, and cert-manager answers HTTP-01 through it.
        ready = [p["name"] for p in pods or [] if p["ready"]]
        if ready:
            return Finding("traefik", True, "Traefik runs (it serves the hub's Ingress): " + ", ".join(ready))
        return Finding("traefik", False, "Traefik does not run, and with hub.https: ingress it serves the hub",
                       ", ".join(f"{p['name']}: {p['reason'] or p['phase']}" for p in pods or []) or "no Traefik pod",
                       "no `disable: [traefik]` in config.yaml: " + _fix("k3s.install", inv, host))
    if pods:
        return Finding("traefik", False, "Traefik runs and holds ports 80/443 that the hub's HTTPS proxy needs",
                       ", ".join(p["name"] for p in pods), "disable: [traefik] in config.yaml: " + _fix("k3s.install", inv, host))
    return Finding("traefik", True, "Traefik absent")


# --- GPUs schedulable ----------------------------------------------------------------------------

def check_plugin_pod(inv, host, fx, server):
    """The device plugin's own pod on the host: GFD's pods carry the same labels (chart 0.20.0), so
    pods are picked by the DaemonSet that owns them, and the evidence names the pod."""
    if not host.gpus:
        return None
    pods = (server["plugin_pods"] or []) if server else []
    plugin, gfd = cluster_steps.plugin_daemonsets(cluster_steps.plugin_release(inv))
    mine = cluster_steps.daemonset_pods(pods, plugin, host.name)
    if not mine:
        others = cluster_steps.daemonset_pods(pods, gfd, host.name)
        return Finding("plugin_pod", False, f"no device plugin pod on {host.name}",
                       f"no pod of DaemonSet {plugin} there"
                       + (f" (only GFD's {', '.join(p['name'] for p in others)})" if others else "")
                       + "; is the node labelled nvidia.com/gpu.present=true? (NVIDIA/k8s-device-plugin#1213)",
                       _cluster_fix("gpu.plugin", inv))
    bad = [p for p in mine if not p["ready"] or p["phase"] != "Running"]
    if bad:
        return Finding("plugin_pod", False, f"the device plugin pod on {host.name} is not Running",
                       "; ".join(f"{p['name']}: {p['reason'] or p['phase']}" for p in bad),
                       "runtimeClassName: nvidia is needed unless nvidia is the default runtime "
                       "(NVIDIA/k8s-device-plugin#477): " + _cluster_fix("gpu.plugin", inv))
    return Finding("plugin_pod", True, f"{mine[0]['name']} Running", f"pod {mine[0]['name']} of DaemonSet {plugin}")


def check_allocatable(inv, host, fx, server):
    if not host.gpus:
        return None
    node = ((server["nodes"] or {}) if server else {}).get(host.name)
    if node is None:
        return Finding("allocatable", False, f"node {host.name} not found", "", _fix("k3s.install", inv, host))
    resource, wanted = host.gpu_resource, host.allocatable
    capacity = int(node["capacity"].get(resource, 0))
    allocatable = int(node["allocatable"].get(resource, 0))
    evidence = f"{resource}: capacity {capacity}, allocatable {allocatable}, expected {wanted} ({host.gpus} x {host.replicas})"
    if allocatable == wanted and capacity == wanted:
        return Finding("allocatable", True, evidence)
    if allocatable == 0 and capacity == wanted:
        return Finding("allocatable", False, f"the device plugin marked {host.name}'s GPUs unhealthy after a restart",
                       evidence + " (NVIDIA/k8s-device-plugin#426)",
                       f"restart the plugin pod: `k3s kubectl delete pod -n nvidia-device-plugin <pod on {host.name}>`, "
                       "or " + _cluster_fix("gpu.plugin", inv))
    return Finding("allocatable", False, f"{host.name} does not offer the GPUs it should", evidence,
                   _cluster_fix("gpu.plugin", inv))


def check_sharing_labels(inv, host, fx, server):
    if not host.gpus:
        return None
    node = ((server["nodes"] or {}) if server else {}).get(host.name, {"labels": {}})
    labels = node["labels"]
    wanted = {cluster_steps.SHARING_LABEL: host.plugin_config, "nvidia.com/gpu.replicas": str(host.replicas)}
    if not inv.gpu["rename_shared"]:
        # Not renamed, the hub's GPU profiles find their kind of node by GFD's label alone.
        wanted[render.SHARING_STRATEGY_LABEL] = host.sharing_strategy
    wrong = {k: labels.get(k) for k, v in wanted.items() if labels.get(k) != v}
    if wrong:
        return Finding("sharing_labels", False, f"{host.name}'s sharing labels differ from the inventory",
                       f"found {wrong}, expected {wanted}", _cluster_fix("gpu.plugin", inv))
    return Finding("sharing_labels", True, ", ".join(f"{k}={v}" for k, v in wanted.items()))


# --- hub ---------------------------------------------------------------------------------------

def check_hub_ready(inv, host, fx, server):
    if host.role != "server":
        return None
    release = facts.release_view(fx["hub_release"])
    if release is None:
        return Finding("hub_ready", False, "JupyterHub is not installed", f"no release {cluster_steps.hub_release(inv)}",
                       _cluster_fix("hub.launch", inv))
    if release["version"] != inv.hub["chart_version"]:
        return Finding("hub_ready", False, f"JupyterHub chart {release['version']} is deployed, "
                       f"{inv.hub['chart_version']} is pinned", "", _cluster_fix("hub.launch", inv))
    pods = fx["hub_pods"] or []
    for component in ("hub", "proxy"):
        mine = [p for p in pods if p["labels"].get("component") == component]
        if not mine or not all(p["ready"] for p in mine):
            return Finding("hub_ready", False, f"the {component} pod is not Ready",
                           "; ".join(f"{p['name']}: {p['phase']}" for p in mine) or "no pod",
                           f"k3s kubectl -n {inv.hub['namespace']} describe pod -l component={component}; "
                           f"k3s kubectl -n {inv.hub['namespace']} logs -l component={component}")
    return Finding("hub_ready", True, f"hub and proxy Ready, chart {release['version']}")


def check_drift(inv, host, fx, server_facts, secrets=None):
    """Every step of the provisioner reports nothing to change: the steps' own code on these facts."""
    from .plan import plan_steps, steps_for
    ctx = Context(inv=inv, host=host, facts=fx, target=None, server_facts=server_facts, secrets=secrets)
    drifted = [f"{p.id}: {p.summary or p.reason}" for p in plan_steps(ctx, steps_for(host, inv.server.name))
               if p.status in (CHANGE, PENDING, ERROR) or (p.status == BLOCKED and p.id != "hub.launch")]
    if drifted:
        return Finding("drift", False, f"{host.name} differs from the inventory", "; ".join(drifted),
                       drift_fix(host))
    return Finding("drift", True, "every step reports nothing to change")


def drift_fix(host) -> str:
    if is_this_machine(host):
        return "review `inv plan`, then run `inv provision`"
    return f"review `fab -H {host.name} plan`, then run `fab -H {host.name} provision`"


HOST_CHECKS = (check_driver, check_toolkit, check_containerd, check_template, check_runtimeclass,
               check_k3s_unit, check_k3s_version, check_node, check_k3s_config, check_kubeconfig,
               check_traefik, check_plugin_pod, check_allocatable, check_sharing_labels, check_hub_ready)


# --- workload (only with --workload: these create and delete pods) ---------------------------------

def profile_job(inv, slug: str, host) -> dict:
    """A Job with the settings KubeSpawner would give a server of profile `slug`, pinned to
    `host`, that lists the GPUs it can see."""
    profiles = {p["slug"]: p for p in render.profile_list(inv, render.Notes())}
    if slug not in profiles:
        return None
    override = profiles[slug]["kubespawner_override"]
    image = override.get("image") or render.default_image(profiles[slug])
    container = {"name": "probe", "image": image,
                 "command": ["sh", "-c", "nvidia-smi -L 2>/dev/null || echo 'No devices were found'"],
                 "env": [{"name": k, "value": v} for k, v in (override.get("environment") or {}).items()]}
    if override.get("extra_resource_limits"):
        container["resources"] = {"limits": dict(override["extra_resource_limits"])}
    pod = {"restartPolicy": "Never", "nodeSelector": {**(override.get("node_selector") or {}),
                                                      "kubernetes.io/hostname": host.name},
           "containers": [container], **(override.get("extra_pod_config") or {})}
    name = names.derived(f"gpuhub-audit-{slug}", host.name)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 300, "template": {"spec": pod}}}


def run_job(target, job: dict, timeout: float = 300):
    """Apply `job` through the server's kubectl, wait, return (phase, logs, reason); delete it."""
    import json
    import time
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    kubectl = "/usr/local/bin/k3s kubectl"
    target.run(f"{kubectl} delete job {name} -n {ns} --ignore-not-found")
    applied = target.run(f"{kubectl} apply -n {ns} -f - <<'GPUHUB_JOB'\n{render.dump(job)}GPUHUB_JOB")
    if not applied.ok:
        return "Failed", "", applied.stderr.strip()
    phase, reason, deadline = "Pending", "", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status = json.loads(target.run(f"{kubectl} get job {name} -n {ns} -o json").stdout or "{}").get("status", {})
            if status.get("succeeded") or status.get("failed"):
                phase = "Succeeded" if status.get("succeeded") else "Failed"
                break
            time.sleep(2)
        logs = target.run(f"{kubectl} logs job/{name} -n {ns}").stdout
        if phase != "Succeeded":
            reason = job_pods_reason(target, kubectl, name, ns)
        return phase, logs, reason
    finally:
        target.run(f"{kubectl} delete job {name} -n {ns} --ignore-not-found")


def job_pods_reason(target, kubectl: str, name: str, ns: str) -> str:
    """Why Job `name`'s pods do not run (podstatus.why: scheduler, kubelet, exit code); with no pod
    at all, the Job controller's FailedCreate events (a pod the API refused, e.g. "pod rejected:
    RuntimeClass \"nvidia\" not found": kubernetes pkg/controller/job, FailedCreate)."""
    pods = facts.parse_pods(*_out(target.run(f"{kubectl} get pods -n {ns} -l job-name={name} -o json"))) or []
    if pods:
        return "; ".join(f"{p['name']}: {p['reason'] or p['phase']}" for p in pods)
    events = facts.parse_json(*_out(target.run(f"{kubectl} get events -n {ns} "
                                               f"--field-selector involvedObject.name={name} -o json"))) or {}
    created = sorted({e.get("message", "") for e in events.get("items", []) if e.get("reason") == "FailedCreate"})
    return "no pod: " + ("; ".join(created) if created else "the Job made none (yet)")


def _out(result):
    return result.stdout, result.exited


def _gpu_lines(logs: str) -> list:
    return [line for line in logs.splitlines() if line.startswith("GPU ")]


def check_gpu_job(inv, host, server_target):
    if not host.gpus:
        return None
    phase, logs, reason = run_job(server_target, render.gpu_test_job(inv, host))
    if phase != "Succeeded" or "Test PASSED" not in logs:
        return Finding("workload_gpu_job", False, f"the GPU test Job did not pass on {host.name}",
                       f"{phase}: {reason or logs.strip()[-300:]}", _cluster_fix("gpu.plugin", inv) + "; "
                       "check the device plugin and the node's runtime")
    return Finding("workload_gpu_job", True, f"GPU test passed on {(_gpu_lines(logs) or ['?'])[0]}")


def profile_slug(inv, kind: str, host):
    """The first offered profile of `kind` (cpu, shared_gpu, whole_gpu) that may run on `host`."""
    from .inventory import profile_entries
    offered = {p["slug"] for p in render.profile_list(inv, render.Notes())}
    return next((e["slug"] for e in profile_entries(inv.hub) if e["kind"] == kind and e["slug"] in offered
                 and (not e["nodes"] or host.name in e["nodes"])), None)


def check_cpu_profile(inv, host, server_target):
    slug = profile_slug(inv, "cpu", host) if host.gpus else None
    job = profile_job(inv, slug, host) if slug else None
    if job is None:
        return None
    phase, logs, reason = run_job(server_target, job)
    seen = _gpu_lines(logs)
    if phase != "Succeeded":
        return Finding("workload_cpu_profile", False, f"a CPU-profile pod did not run on {host.name}",
                       f"{phase}: {reason}", "check the node and the CPU profile's image")
    if seen:
        return Finding("workload_cpu_profile", False, f"a CPU-profile pod on {host.name} sees GPUs it was not given",
                       "; ".join(seen), "the CPU profile must set NVIDIA_VISIBLE_DEVICES=void (gpuhub renders it): "
                       "run hub.launch (NVIDIA/k8s-device-plugin#87)")
    return Finding("workload_cpu_profile", True, f"a CPU-profile pod on {host.name} sees no GPU")


def check_gpu_profile(inv, host, server_target):
    if not host.gpus:
        return None
    slug = profile_slug(inv, "shared_gpu" if host.shares else "whole_gpu", host)
    job = profile_job(inv, slug, host) if slug else None
    if job is None:
        return None
    phase, logs, reason = run_job(server_target, job)
    seen = _gpu_lines(logs)
    if phase != "Succeeded" or len(seen) != 1:
        return Finding("workload_gpu_profile", False, f"a {slug} pod on {host.name} does not see exactly one GPU",
                       f"{phase}: {reason or '; '.join(seen) or logs.strip()[-200:]}",
                       _cluster_fix("provision", inv))
    return Finding("workload_gpu_profile", True, f"a {slug} pod on {host.name} sees {seen[0]}")


WORKLOAD_CHECKS = (check_gpu_job, check_cpu_profile, check_gpu_profile)
