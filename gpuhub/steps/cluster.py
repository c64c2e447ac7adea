"""Cluster-level steps, run once on the server: gpu.plugin, hub.launch, gpu.test."""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import replace

from .. import facts as f
from .. import kube_secret, names, pulls, render
from ..inventory import HUB_CHART_REPO, PLUGIN_CHART_REPO, InventoryError
from ..secret import digested
from ..target import StepFailed
from . import https
from . import (BLOCKED, SCRIPTS_DIR, VERIFY, WORK_DIR, Change, Context, StepPlan, blocked, call, changes, command_deadline,
               needs, pending, script, upload)

PLUGIN, HUB, GPU_TEST = "gpu.plugin", "hub.launch", "gpu.test"
SHARING_LABEL = "nvidia.com/device-plugin.config"
PLUGIN_WAIT_S = 120
PLUGIN_HELM_TIMEOUT_S = 300  # helm's own default: the device plugin's chart has no hooks to wait for
HUB_WAIT_S = 300
GPU_TEST_WAIT_S = 300


def hub_helm_timeout_s(inv) -> int:
    return names.duration_seconds(inv.hub["helm_timeout"])


def hub_release(inv) -> str:
    return f"{inv.hub['namespace']}/{inv.hub['release']}"


def plugin_release(inv) -> str:
    return f"{inv.gpu['plugin_namespace']}/{inv.gpu['plugin_release']}"


def cluster_not_ready(ctx: Context):
    """None when the server's cluster answers, else the reason the step must wait."""
    if ctx.changed_before("k3s.install", "gpu.runtime"):
        return "waits on k3s.install / gpu.runtime"
    if ctx.facts["nodes"] is None:
        return "the cluster does not answer (is K3s running on the server?)"
    return None


def waiting_for_hosts(ctx: Context, step: str, waiting: str, plan) -> StepPlan:
    """`pending`: the step waits on its hosts' own changes and is planned again after them. When
    the cluster answers already (one gpuhub did not build, or one it is changing), the step is
    also planned on the cluster as it is now, and what of that is destructive is listed here with
    its evidence, so that the run's --yes covers it before any host changes (plan.Run re-checks
    after the hosts, and refuses what the first plan could not show)."""
    if ctx.facts["nodes"] is None:
        return pending(step, waiting)
    now = plan(replace(ctx, earlier={}))
    if now.status == BLOCKED and now.lasting:
        # The hosts' changes cannot lift it: refused now, before any of them is made.
        return blocked(step, f"{now.reason} (on the cluster as it is now; the step {waiting})", lasting=True)
    risky = [c for c in now.changes if c.destructive] if now.status == "change" else []
    if not risky:
        return pending(step, waiting)
    return StepPlan(step, "pending", changes=risky, reason=f"{waiting}; on the cluster as it is now it would: "
                    + "; ".join(c.summary for c in risky))


# Charts of which a cluster runs one: a second release beside a lab's own, under another name, is
# refused rather than installed. Two device plugins register the same resource with each node's
# kubelet, the later one replacing the earlier's registration (kubelet device manager); two hubs
# both ask for ports 80 and 443 through K3s's ServiceLB, and the second's proxy never gets them.
ONE_PER_CLUSTER = {"plugin_chart": "a second one would register the same GPUs with each node's kubelet.",
                   "hub_chart": "a second hub would compete with it for ports 80 and 443."}
# The inventory settings naming each release gpuhub manages (name, namespace).
RELEASE_SETTINGS = {"plugin_chart": ("gpu.plugin_release", "gpu.plugin_namespace"),
                    "hub_chart": ("hub.release", "hub.namespace")}


class ReleaseBusy(Exception):
    """A release another helm run may still be changing: the step is blocked, nothing is tried."""


class ReleaseConflict(ReleaseBusy):
    """The release's name holds another chart, or another release of the chart runs: blocked
    until the inventory or the cluster changes (StepPlan.lasting)."""


def release_change(ctx: Context, step: str, release: str, chart_key: str, repo: str, version: str,
                   wanted_values: dict, current_values, label: str, timeout_s: int, history_key: str,
                   compare=lambda values: values):
    """A helm upgrade --install when the release is missing, at another version, or has other
    values (`compare` turns the wanted values into the form the facts hold them in); a repair
    first when an interrupted run left it pending. Raises ReleaseBusy when a pending revision
    is younger than helm's own timeout: that may be another person's run in progress."""
    history = ctx.facts[history_key]
    current = f.release_view(history)
    chart = CHART_NAMES[chart_key]
    settings = RELEASE_SETTINGS.get(chart_key)
    if current and current["chart"] != chart:
        setting = (f"set {settings[0]} / {settings[1]} to the {label} release's own name, or to a free one"
                   if settings else "remove or rename that release")
        raise ReleaseConflict(f"release {release} is the chart {current['chart']} {current['version']}, not {chart}: "
                              f"gpuhub will not replace it; {setting}")
    if current is None and chart_key in ONE_PER_CLUSTER:
        others = [r for r in (ctx.facts["chart_releases"] or {}).get(chart, []) if r != release]
        if others:
            namespace, name = others[0].split("/", 1)
            raise ReleaseConflict(f"{label} runs already as release {', '.join(others)} (chart {chart}), not as "
                                  f"{release}: {ONE_PER_CLUSTER[chart_key]} To take it over, set {settings[0]}: "
                                  f"{name} and {settings[1]}: {namespace} in the inventory; or uninstall it first")
    compared = compare(wanted_values)
    if current and current["version"] == version and current["status"] == "deployed" \
            and (current_values or {}) == compared:
        return None
    upgrade = helm_upgrade(ctx.inv, step, release, chart_key, repo, version, wanted_values, timeout_s)
    if current and current["status"] in f.PENDING:
        return repair_pending(ctx, step, release, label, current, timeout_s, upgrade, version)
    differing = sorted({k for k in set(compared) | set(current_values or {})
                        if (current_values or {}).get(k) != compared.get(k)})
    if current is None:
        summary = f"install {label} release {release} (chart {version})"
    elif current["version"] != version:
        summary = f"upgrade {label} release {release}: chart {current['version']} -> {version}"
    elif current["status"] != "deployed":
        summary = f"repair {label} release {release} (status {current['status']})"
    else:
        summary = f"update {label} release {release} values ({', '.join(differing)})"
    if current is not None and not current.get("managed"):
        # A release installed by hand or by another tool: helm upgrade replaces its values with
        # gpuhub's whole set (no --reuse-values), its login, menu and storage settings included.
        return Change(f"adopt {summary[0].lower()}{summary[1:]}; it was installed without gpuhub (its helm "
                      f"records lack the {'='.join(f.MANAGED_LABEL)} label): gpuhub's values replace its own"
                      + (f", which differ in {', '.join(differing)}" if differing else ""),
                      actions=upgrade, destructive=True)
    return Change(summary, actions=upgrade)


def overlay_suffix(inv, chart: str, rendered) -> str:
    """'; values overlay ... sets ...' for an ok note ("" without an overlay); `rendered()` gives
    gpuhub's own values, computed only when there is an overlay to compare them with."""
    return f"; {render.overlay_note(inv, chart, rendered())}" if chart in inv.overlays else ""


def with_overlay_note(release: Change, inv, chart: str, rendered: dict) -> Change:
    """The release change, its summary naming the keys the inventory's values overlay sets
    (never their values) and which of gpuhub's it replaces: helm gets them, so the plan says so."""
    note = render.overlay_note(inv, chart, rendered)
    return replace(release, summary=f"{release.summary} [{note}]") if note else release


VALUES_FILES = {"plugin_chart": "cluster/device-plugin-values.yaml", "hub_chart": "cluster/jupyterhub-values.yaml",
                "cert_manager_chart": "cluster/cert-manager-values.yaml"}
CHART_NAMES = {"plugin_chart": "nvidia-device-plugin", "hub_chart": "jupyterhub", "cert_manager_chart": "cert-manager"}


def helm_upgrade(inv, step, release, chart_key, repo, version, wanted_values, timeout_s) -> list:
    """helm upgrade --install of `release` (the airgap chart uploaded first, when given)."""
    namespace, name = release.split("/")
    chart_file = inv.airgap_file(chart_key) if chart_key in inv.airgap else None
    uploads = []
    if chart_file:
        chart = f"{WORK_DIR}/{chart_file.name}"
        uploads.append(upload(chart, local=chart_file, backup=False))
    else:
        chart = CHART_NAMES[chart_key]
    # JSON is YAML. On stdin, never in a file of ours: gpuhub's values hold no secret (the hub's
    # OAuth credentials are in a Kubernetes Secret), but a site's values may, and the script
    # keeps them in memory (/run) only while helm runs.
    values = json.dumps(wanted_values)
    return uploads + [script(step, "helm-release.sh", {
        "RELEASE": name, "NAMESPACE": namespace, "CHART": chart, "CHART_REPO": "" if chart_file else repo,
        "CHART_VERSION": version, "TIMEOUT_S": str(timeout_s), "VALUES_BYTES": str(len(values.encode()))},
        stdin=values, stdin_label=f"the values as JSON, {len(values.encode())} bytes: what `inv render` writes "
                                  f"to {VALUES_FILES[chart_key]}",
        timeout=command_deadline(timeout_s), wait=f"helm to deploy {release}, up to {timeout_s} s")]


def repair_pending(ctx, step, release, label, current, timeout_s, upgrade, version):
    """An interrupted helm run (its SSH session dropped, the machine rebooted) leaves the release
    pending-install/-upgrade/-rollback, and every later upgrade fails with "another operation
    (install/upgrade/rollback) is in progress" (helm v3.17.3 pkg/action/upgrade.go errPending).
    Once the pending revision is older than the step's own helm timeout no helm run can still be
    at it: roll back to the last deployed revision (helm rollback works on a pending release,
    pkg/action/rollback.go), or, when none was ever deployed, uninstall and install afresh."""
    now, updated = ctx.facts["now"], current["updated"]
    age = None if now is None or updated is None else int(now - updated)
    stuck = f"{current['status']} (revision {current['revision']})"
    if age is None or age < timeout_s:
        since = "since an unknown time" if age is None else f"for {_minutes(age)}"
        raise ReleaseBusy(f"{label} release {release} is {stuck} {since}: another helm run may still be at "
                          f"it (its timeout is {_minutes(timeout_s)}). Wait; once it is older than that, "
                          "gpuhub repairs it")
    namespace, name = release.split("/")
    base = {"RELEASE": name, "NAMESPACE": namespace, "TIMEOUT_S": str(timeout_s)}
    if current["deployed"] is not None:
        rollback = script(step, "helm-release.sh", dict(base, ACTION="rollback", REVISION=str(current["deployed"])),
                          timeout=command_deadline(timeout_s), wait=f"helm to roll {release} back")
        return Change(f"repair {label} release {release}: left {stuck} {_minutes(age)} ago by an interrupted "
                      f"run; roll back to revision {current['deployed']}, the last deployed, then upgrade to "
                      f"chart {version}", actions=[rollback, *upgrade])
    uninstall = script(step, "helm-release.sh", dict(base, ACTION="uninstall"), timeout=command_deadline(timeout_s),
                       wait=f"helm to uninstall {release}")
    lost = " and the hub database's volume (users, tokens, servers' records)" if step == HUB else ""
    return Change(f"repair {label} release {release}: left {stuck} {_minutes(age)} ago by an interrupted "
                  f"run, never deployed; uninstall it (deletes its objects{lost}), then install chart {version}",
                  actions=[uninstall, *upgrade], destructive=True)


def _minutes(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


# --- gpu.plugin -----------------------------------------------------------------------------

@needs(host=('nodes', 'plugin_release', 'plugin_values', 'plugin_pods', 'gpu_pods', 'chart_releases', 'now'))
def plan_plugin(ctx: Context) -> StepPlan:
    inv = ctx.inv
    if not inv.gpu_hosts:
        return StepPlan(PLUGIN, "ok", note="no GPU hosts")
    waiting = cluster_not_ready(ctx)
    if waiting:
        return waiting_for_hosts(ctx, PLUGIN, waiting, plan_plugin)
    items = []
    values = json.loads(json.dumps(render.device_plugin_values(inv)))
    try:
        release = release_change(ctx, PLUGIN, plugin_release(inv), "plugin_chart", PLUGIN_CHART_REPO,
                                 inv.gpu["plugin_chart_version"], values, ctx.facts["plugin_values"],
                                 "device plugin", PLUGIN_HELM_TIMEOUT_S, "plugin_release")
    except ReleaseBusy as e:
        return blocked(PLUGIN, str(e), lasting=isinstance(e, ReleaseConflict))
    if release:
        items.append(with_overlay_note(release, inv, "plugin", render.device_plugin_values(inv, overlaid=False)))
    nodes = ctx.facts["nodes"]
    missing = [h.name for h in inv.gpu_hosts if h.name not in nodes]
    if missing:
        return pending(PLUGIN, "waits for node(s) to register: " + ", ".join(missing))
    for host in inv.gpu_hosts:
        if nodes[host.name]["labels"].get(SHARING_LABEL) != host.plugin_config:
            items.append(Change(f"label node {host.name} {SHARING_LABEL}={host.plugin_config}",
                                actions=[label_node(host)]))
    if items:
        stranded = stranded_pods(inv, nodes, ctx.facts["gpu_pods"])
        if stranded:
            items[0] = replace(items[0], destructive=True, summary=f"{items[0].summary}; running pods ask for a GPU "
                               "resource their node stops offering (they keep their GPUs until they restart, then "
                               "cannot be scheduled): " + "; ".join(stranded))
        items.append(Change("wait for every GPU node to offer GPUs x replicas", actions=[allocatable_wait(inv.gpu_hosts)]))
        return changes(PLUGIN, items)
    problems, unhealthy = allocatable_problems(inv, nodes)
    if unhealthy:
        return changes(PLUGIN, [Change(f"restart the device plugin pod on {', '.join(unhealthy)}: GPUs marked "
                                       "unhealthy after a restart (NVIDIA/k8s-device-plugin#426)",
                                       actions=[allocatable_wait(inv.gpu_hosts)])])
    if problems:
        return blocked(PLUGIN, "; ".join(problems) + plugin_pod_reasons(inv, ctx.facts["plugin_pods"]))
    offered = ", ".join(f"{h.name} {h.allocatable}" for h in inv.gpu_hosts)
    return StepPlan(PLUGIN, "ok", note=f"device plugin {inv.gpu['plugin_chart_version']}; allocatable GPUs: {offered}"
                    + overlay_suffix(inv, "plugin", lambda: render.device_plugin_values(inv, overlaid=False)))


def stranded_pods(inv, nodes, gpu_pods) -> list:
    """Pods holding a GPU resource that their node offers now and will not once the plugin has
    gpuhub's settings: the resource renamed (gpu.rename_shared), or the node's sharing changed."""
    wanted = {h.name: h.gpu_resource for h in inv.gpu_hosts}
    stranded = []
    for pod in gpu_pods or []:
        node = pod["node"]
        offered = (nodes.get(node) or {}).get("capacity") or {}
        for resource, count in sorted(pod["resources"].items()):
            if node in wanted and resource != wanted[node] and offered.get(resource, "0") != "0":
                stranded.append(f"{pod['name']} holds {count} {resource} on {node}, which will offer {wanted[node]}")
    return stranded


def label_node(host):
    command = f"{f.KUBECTL} label node {host.name} --overwrite {SHARING_LABEL}={host.plugin_config}"
    return call(f"run {command}", lambda c: c.target.check(command, PLUGIN), on="server")


def allocatable_wait(hosts):
    names = ", ".join(h.name for h in hosts)
    return call(f"poll `{f.KUBECTL} get nodes -o json` every 2 s, up to {PLUGIN_WAIT_S} s, until {names} offer "
                "their GPUs x replicas; a node offering 0 with full capacity gets its device plugin pod deleted "
                "once (NVIDIA/k8s-device-plugin#426)", lambda c: verify_allocatable(c, hosts), on="server")


def allocatable_problems(inv, nodes, hosts=None):
    """(problems, nodes in the known unhealthy case: allocatable 0 with full capacity), for `hosts`
    (default: every GPU host)."""
    problems, unhealthy = [], []
    for host in inv.gpu_hosts if hosts is None else hosts:
        node = nodes.get(host.name, {})
        resource = host.gpu_resource
        capacity = int(node.get("capacity", {}).get(resource, 0))
        allocatable = int(node.get("allocatable", {}).get(resource, 0))
        if allocatable == host.allocatable:
            label = node.get("labels", {}).get(render.SHARING_STRATEGY_LABEL)
            if not inv.gpu["rename_shared"] and label != host.sharing_strategy:
                # Not renamed, the hub's GPU profiles find their kind of node by GFD's label alone.
                problems.append(f"node {host.name} has {render.SHARING_STRATEGY_LABEL}={label or '(none)'}, expected "
                                f"{host.sharing_strategy}: with gpu.rename_shared false the GPU profiles select "
                                "nodes by this label, which GPU feature discovery sets")
            continue
        if allocatable == 0 and capacity == host.allocatable:
            unhealthy.append(host.name)
        else:
            problems.append(f"node {host.name} offers {allocatable} {resource}, expected {host.allocatable} "
                            f"({host.gpus} GPU(s) x {host.replicas})")
    return problems, unhealthy


def plugin_daemonsets(release: str) -> tuple:
    """(device plugin DaemonSet, GPU feature discovery DaemonSet) of the chart's `release`.

    Chart nvidia-device-plugin 0.20.0: `fullname` is the release name when it contains the chart
    name, else `RELEASE-nvidia-device-plugin`, cut to 63 (templates/_helpers.tpl); the plugin's
    DaemonSet is `fullname` (daemonset-device-plugin.yml), GFD's `fullname-gpu-feature-discovery`
    (daemonset-gfd.yml). Their pods carry the same labels (templateLabels), so a label selector
    finds both: pods are told apart by the DaemonSet that owns them."""
    name = release.split("/")[-1]
    fullname = (name if "nvidia-device-plugin" in name else f"{name}-nvidia-device-plugin")[:63].rstrip("-")
    return fullname, f"{fullname}-gpu-feature-discovery"[:63].rstrip("-")


def daemonset_pods(pods, daemonset: str, node: str = None) -> list:
    """The pods (facts.parse_pods) that DaemonSet `daemonset` owns, on `node` if given."""
    return [p for p in pods or [] if p.get("owner") == f"DaemonSet/{daemonset}"
            and (node is None or p["node"] == node)]


def plugin_pod_reasons(inv, pods) -> str:
    plugin, gfd = plugin_daemonsets(plugin_release(inv))
    bad = [f"{kind} pod {p['name']} on {p['node']}: {p['reason'] or p['phase']}"
           for kind, daemonset in (("plugin", plugin), ("GFD", gfd))
           for p in daemonset_pods(pods, daemonset) if not p["ready"]]
    return (" [" + "; ".join(bad) + "]") if bad else ""


def verify_allocatable(ctx: Context, hosts=None):
    """Wait until every GPU node (or those of `hosts`) offers GPUs x replicas; heal the
    unhealthy-after-restart case once by deleting the plugin pod on that node; fail with the
    reason otherwise. Through the server's kubectl."""
    ctx = ctx.on_server()
    names = ", ".join(h.name for h in (ctx.inv.gpu_hosts if hosts is None else hosts))
    state = {"left": ""}
    with ctx.waiting(PLUGIN, f"{names} to offer their GPUs", detail=lambda: state["left"]):
        _poll_allocatable(ctx, hosts, state)


def _poll_allocatable(ctx: Context, hosts, state):
    release = plugin_release(ctx.inv)
    namespace = release.split("/")[0]
    healed = set()
    deadline = time.monotonic() + PLUGIN_WAIT_S
    while True:
        nodes = f.parse_nodes(*_run(ctx, f"{f.KUBECTL} get nodes -o json"))
        problems, unhealthy = allocatable_problems(ctx.inv, nodes or {}, hosts)
        if not problems and not unhealthy:
            return
        state["left"] = "; ".join(problems + [f"{n} offers 0 (unhealthy)" for n in unhealthy])
        for name in unhealthy:
            if name not in healed:
                pods = f.parse_pods(*_run(ctx, f"{f.KUBECTL} get pods -n {namespace} "
                                               f"-l {f.plugin_pod_selector(release)} -o json")) or []
                # The plugin's own pod: GFD's, on the same node with the same labels, heals nothing.
                for pod in daemonset_pods(pods, plugin_daemonsets(release)[0], name):
                    ctx.log(f"{ctx.host.name}: {PLUGIN}: restarting {pod['name']} (GPUs unhealthy after a restart)")
                    ctx.target.check(f"{f.KUBECTL} delete pod {shlex.quote(pod['name'])} -n {namespace}", PLUGIN)
                healed.add(name)
        if time.monotonic() > deadline:
            pods = f.parse_pods(*_run(ctx, f"{f.KUBECTL} get pods -n {namespace} -o json"))
            raise StepFailed(ctx.host.name, PLUGIN, "", reason="; ".join(problems + [f"{n}: still 0 after a plugin restart"
                                                                                      for n in unhealthy])
                             + plugin_pod_reasons(ctx.inv, pods))
        time.sleep(2)


def _run(ctx: Context, command: str):
    result = ctx.target.run(command)
    return result.stdout, result.exited


# --- hub.launch -----------------------------------------------------------------------------

@needs(host=('nodes', 'hub_release', 'hub_values', 'hub_secret', 'chart_releases', 'now', 'storage', *https.NEEDS))
def plan_hub(ctx: Context) -> StepPlan:
    inv = ctx.inv
    try:
        values = render.jupyterhub_values(inv, ctx.secrets, render.Notes())
    except InventoryError as e:
        return blocked(HUB, "; ".join(str(p) for p in e.problems))
    waiting = cluster_not_ready(ctx)
    if waiting:
        return waiting_for_hosts(ctx, HUB, waiting, plan_hub)
    try:
        credentials = oauth_secret_change(ctx)
    except ValueError as e:
        return blocked(HUB, str(e))
    values = json.loads(json.dumps(values))
    try:
        before = https.https_changes(ctx, release_change)
        release = release_change(ctx, HUB, hub_release(inv), "hub_chart", HUB_CHART_REPO, inv.hub["chart_version"],
                                 values, ctx.facts["hub_values"], "JupyterHub", hub_helm_timeout_s(inv),
                                 "hub_release", compare=digested)
    except ReleaseBusy as e:
        return blocked(HUB, str(e), lasting=isinstance(e, ReleaseConflict))
    except InventoryError as e:
        return blocked(HUB, "; ".join(str(p) for p in e.problems))
    first = ([credentials] if credentials else []) + before
    if release is None:
        if first:
            return changes(HUB, first)
        return StepPlan(HUB, "ok", note=f"JupyterHub {inv.hub['chart_version']} at https://{inv.hub['hostname']}/"
                        + https.https_note(ctx)
                        + overlay_suffix(inv, "hub", lambda: render.jupyterhub_values(inv, ctx.secrets, render.Notes(),
                                                                                     overlaid=False)))
    release = with_overlay_note(release, inv, "hub", render.jupyterhub_values(inv, ctx.secrets, render.Notes(),
                                                                              overlaid=False))
    renames = slug_scheme_change(inv, f.release_view(ctx.facts["hub_release"]))
    if renames:
        release = replace(release, summary=f"{release.summary}; {renames}", destructive=True)
    moved = storage_class_note(inv, ctx.facts["hub_values"], values, ctx.facts["storage"])
    if moved:
        release = replace(release, summary=f"{release.summary}; {moved}")
    helm = [a for a in release.actions if a.kind == "script"][-1]
    checked = Change(f"check the hub config in the real JupyterHub classes, then {release.summary}", actions=[
        call("load the values into the real JupyterHub, GitHubOAuthenticator and KubeSpawner classes "
             "(`inv hub.check`); nothing goes to helm when they refuse them", lambda c: check_hub(c, values)),
        *[a if a is not helm else replace(helm, around=lambda c, run: pulls.watched(c, run, helm.wait))
          for a in release.actions]], destructive=release.destructive)
    return changes(HUB, first + [checked, Change(f"wait for hub and proxy Ready; then https://{inv.hub['hostname']}/",
                                                 actions=[*wait_hub(inv), call("say the hub is up", hub_up)])])


def oauth_secret_change(ctx: Context):
    """The Change that fills gpuhub's own OAuth Secret from the local secrets (None when it holds
    them); for a Secret the site keeps (hub.github.existing_secret), None when it is there with
    both keys. ValueError with the reason (the step blocks) otherwise; never a value in it."""
    ref = render.github_secret(ctx.inv)
    where, current = f"{ref['namespace']}/{ref['name']}", ctx.facts["hub_secret"]
    if ref["managed"]:
        return kube_secret.managed_secret_change(HUB, ref["namespace"], ref["name"],
                                                 render.github_secret_data(ctx.inv, ctx.secrets), current,
                                                 "the hub's GitHub OAuth credentials")
    if current is None:
        raise ValueError(f"could not read Secret {where} (kubectl failed): is the cluster up?")
    if not current["found"]:
        raise ValueError(f"Secret {where} (hub.github.existing_secret.name) does not exist: create it with keys "
                         f"{ref['client_id_key']} and {ref['client_secret_key']} (kubectl create secret generic "
                         f"{ref['name']} -n {ref['namespace']} --from-file=...), or leave existing_secret out so "
                         "gpuhub keeps one from the local secrets")
    missing = [ref[k] for k in ("client_id_key", "client_secret_key") if ref[k] not in current["digests"]]
    if missing:
        raise ValueError(f"Secret {where} (hub.github.existing_secret) has no key {', '.join(missing)} (its keys: "
                         f"{', '.join(sorted(current['digests'])) or 'none'}): set client_id_key / client_secret_key "
                         "to the keys it holds")
    return None


def _home_class(values) -> object:
    return (((values or {}).get("singleuser") or {}).get("storage") or {}).get("dynamic", {}).get("storageClass")


def storage_class_note(inv, current_values, wanted_values, storage) -> str:
    """A new home storage class changes no existing home: KubeSpawner 7.0.0 makes a user's claim
    only when it is missing (spawner.py _make_create_pvc_request: a 409 AlreadyExists keeps the claim it
    has), so homes made before stay where they are, on the old class; only new users' homes
    land on the new one. Said, with the count, so that nobody expects their data to move."""
    if current_values is None or _home_class(current_values) == _home_class(wanted_values):
        return ""
    homes = [v for v in (storage or {}).get("volumes", []) if v["namespace"] == inv.hub["namespace"]
             and v["storage_class"] != _home_class(wanted_values)]
    if storage is not None and not homes:
        return ""  # no home elsewhere: nothing stays behind
    where = ", ".join(sorted({v["storage_class"] or "no class" for v in homes})) if homes else \
        (_home_class(current_values) or "the cluster's default class")
    count = f"{len(homes)} existing home volume(s)" if storage is not None else "existing home volumes"
    return (f"{count} stay on {where} (KubeSpawner keeps a claim it finds; nothing is copied): only new "
            f"homes are made on {_home_class(wanted_values) or 'the default class'}")


def slug_scheme_change(inv, current) -> str:
    """Chart 3.x -> 4.x brings KubeSpawner 7, whose default "safe" slug scheme gives some users'
    pods, volumes and templated fields other names than KubeSpawner 6's "escape" (Z2JH 4.4.0
    docs/source/administrator/upgrading/upgrade-3-to-4.md): '' when nothing is renamed."""
    if not current or inv.hub["slug_scheme"] == "escape":
        return ""
    major = lambda version: int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major(current["version"]) >= 4 or major(inv.hub["chart_version"]) < 4:
        return ""
    return ("KubeSpawner 7 names pods and volumes by the 'safe' slug scheme, so users whose names need "
            "escaping get new names (a home volume may look lost); hub.slug_scheme: escape keeps the old ones")


def check_hub(ctx: Context, values: dict):
    """`inv hub.check` before helm: what KubeSpawner or OAuthenticator would refuse at the first
    spawn or login (KubeSpawner silently accepts unknown override keys; the chart's schema does
    not look inside them). Skipped, and said so, without the optional `hubcheck` extra."""
    from .. import hubcheck
    if hubcheck.missing():
        ctx.log(f"{ctx.host.name}: {HUB}: hub config not checked ({', '.join(hubcheck.missing())} not installed): "
                "pip install 'gpuhub[hubcheck]' for the real classes")
        return
    problems = hubcheck.check_hub_values(values)
    if problems:
        raise StepFailed(ctx.host.name, HUB, "", reason="the hub config would fail in JupyterHub: "
                         + "; ".join(problems) + " (nothing was sent to helm)")


def wait_hub(inv) -> list:
    return [script(HUB, "wait-ready.sh", {"NAMESPACE": inv.hub["namespace"], "SELECTOR": f"component={component}",
                                          "TIMEOUT": str(HUB_WAIT_S)},
                   timeout=command_deadline(HUB_WAIT_S), wait=f"the {component} pod to be Ready")
            for component in ("hub", "proxy")]


def hub_up(ctx: Context):
    ctx.log(f"JupyterHub is up: https://{ctx.inv.hub['hostname']}/")


# --- gpu.test ------------------------------------------------------------------------------

# --- an agent-only run: that node's share of the cluster steps ---------------------------------

@needs(host=(), server=('nodes', 'plugin_release', 'plugin_values'))
def plan_node_plugin(ctx: Context) -> StepPlan:
    """`fab -H gpu3 provision` for a workstation joining: its sharing label and its allocatable
    GPUs, through the server; the releases are left alone (they are the server's run's)."""
    host, inv, server = ctx.host, ctx.inv, ctx.inv.server.name
    if not host.gpus:
        return StepPlan(PLUGIN, "ok", note="no GPUs on this host")
    if ctx.changed_before("k3s.install", "gpu.runtime"):
        return pending(PLUGIN, "waits on k3s.install / gpu.runtime")
    cluster = ctx.server_facts
    if cluster is None or cluster["nodes"] is None:
        return blocked(PLUGIN, f"the cluster does not answer on {server}: is K3s running there?")
    release = f.release_view(cluster["plugin_release"])
    wanted = json.loads(json.dumps(render.device_plugin_values(inv)))
    if not release or release["status"] != "deployed" or (cluster["plugin_values"] or {}) != wanted:
        return blocked(PLUGIN, f"the device plugin release on {server} is not this inventory's (missing, not "
                               f"deployed, or without a sharing config for {host.name}): run "
                               f"`fab -H {server},{host.name} provision`")
    node = cluster["nodes"].get(host.name)
    if node is None:
        return pending(PLUGIN, f"waits for node {host.name} to register")
    items = []
    if node["labels"].get(SHARING_LABEL) != host.plugin_config:
        items.append(Change(f"label node {host.name} {SHARING_LABEL}={host.plugin_config} (through {server})",
                            actions=[label_node(host)]))
    problems, unhealthy = allocatable_problems(inv, {host.name: node}, [host])
    if items or problems or unhealthy:
        items.append(Change(f"wait for {host.name} to offer {host.allocatable} {host.gpu_resource}",
                            actions=[allocatable_wait([host])]))
    return changes(PLUGIN, items, note=f"node {host.name} offers {host.allocatable} {host.gpu_resource}")


def to_test(ctx: Context, hosts) -> list:
    """Of `hosts`, those the GPU test runs on in this run (Context.verify, changed_hosts)."""
    if ctx.verify or ctx.changed_before(PLUGIN):
        return list(hosts)
    own = ctx.changed_before("k3s.install", "gpu.runtime")  # this host's steps, planned just before
    return [h for h in hosts if h.name in ctx.changed_hosts or (own and h.name == ctx.host.name)]


SKIPPED = "skipped: nothing changed on the GPU nodes (--verify, or gpu.test, runs it)"


@needs(host=())
def plan_node_gpu_test(ctx: Context) -> StepPlan:
    host = ctx.host
    if not host.gpus:
        return StepPlan(GPU_TEST, "ok", note="no GPUs on this host")
    if not to_test(ctx, [host]):
        return StepPlan(GPU_TEST, "ok", note=SKIPPED)
    waiting = "after gpu.plugin" if ctx.changed_before(PLUGIN, "k3s.install", "gpu.runtime") else ""
    return StepPlan(GPU_TEST, VERIFY, changes=[Change(f"run the GPU test Job on {host.name} (through "
                                                      f"{ctx.inv.server.name})", actions=gpu_tests(ctx.inv, [host]))],
                    reason=waiting)


@needs(host=('nodes',))
def plan_gpu_test(ctx: Context) -> StepPlan:
    """A verification: it runs on apply and changes nothing, so it is never a change."""
    if not ctx.inv.gpu_hosts:
        return StepPlan(GPU_TEST, "ok", note="no GPU hosts")
    hosts = to_test(ctx, ctx.inv.gpu_hosts)
    if not hosts:
        return StepPlan(GPU_TEST, "ok", note=SKIPPED)
    waiting = cluster_not_ready(ctx) or ("after gpu.plugin" if ctx.changed_before(PLUGIN) else "")
    names = ", ".join(h.name for h in hosts)
    return StepPlan(GPU_TEST, VERIFY, changes=[Change(f"run the GPU test Job on {names}",
                                                      actions=gpu_tests(ctx.inv, hosts))], reason=waiting)


def gpu_tests(inv, hosts) -> list:
    """The GPU test Job on each of `hosts`, through the server: its manifest (pinned to the node),
    then gpu-test.sh, which applies it, waits for it and prints its log; then the log is judged."""
    actions = []
    for host in hosts:
        job = render.gpu_test_job(inv, host)
        name = job["metadata"]["name"]
        path = f"{WORK_DIR}/{name}.yaml"
        actions += [upload(path, render.dump(job), 0o644, backup=False, on="server",
                           text_label=f"cluster/gpu-test.yaml as `inv render` writes it, named {name}, pinned to "
                                      f"node {host.name}, asking for one {host.gpu_resource}"),
                    call(f"run {SCRIPTS_DIR}/gpu-test.sh with JOB_FILE={path} JOB_NAME={name} NAMESPACE="
                         f"{job['metadata']['namespace']} TIMEOUT={GPU_TEST_WAIT_S}; it passes when the Job's log "
                         "says Test PASSED", lambda c, h=host, p=path, j=job: run_gpu_test(c, h, p, j), on="server")]
    return actions


def run_gpu_test(ctx: Context, host, path: str, job: dict):
    env = {"JOB_FILE": path, "JOB_NAME": job["metadata"]["name"], "NAMESPACE": job["metadata"]["namespace"],
           "TIMEOUT": str(GPU_TEST_WAIT_S)}
    with ctx.waiting(GPU_TEST, f"the GPU test Job on {host.name}"):
        result = ctx.script("gpu-test.sh", GPU_TEST, env, timeout=command_deadline(GPU_TEST_WAIT_S))
    seen = next((line for line in result.stdout.splitlines() if line.startswith("GPU ")), "")
    if "Test PASSED" not in result.stdout:
        raise StepFailed(ctx.host.name, GPU_TEST, "gpu-test.sh", result, reason=f"the test on {host.name} did not pass")
    ctx.log(f"{host.name}: gpu.test: passed" + (f" on {seen}" if seen else ""))
