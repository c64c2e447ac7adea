"""A cluster built by hand, as a lab that outgrew the guide runs it, then pointed at by gpuhub
(issue 10, "Taking over a cluster gpuhub did not build"), on the simulated hosts gpu1 (server,
1 GPU) and gpu2 (agent, 2 GPUs); gpu3 stays bare and out of the inventory.

Built without gpuhub, through the same airgap files: K3s from its install script with a
hand-written config.yaml (Traefik kept, a cluster CIDR and a kubelet flag of the lab's own), the
toolkit's packages, the device plugin by helm as release kube-system/nvdp-lab (time-sliced x4,
the resource left as nvidia.com/gpu, chart 0.17.0), a hub as release jupyter/hub (chart 3.3.8,
behind an Ingress), another service's Ingress (monitoring/grafana) and a model server's pod
holding two GPU slices on gpu1.

Then, in order: gpuhub with the guide's defaults refuses to touch it at all (a second device
plugin and hub would be installed beside the lab's); named as found, every change that breaks what
runs is destructive with its evidence and nothing runs without --yes; fitted to the lab, only the
adoptions are destructive, and with --yes it converges while the model server, Traefik and the
other Ingress stay."""
import json
import secrets
import shlex
import time

import pytest
import yaml

from test_provision import module_site
from test_simulation import lay_down_by_hand

pytestmark = pytest.mark.integration

NODES = ("gpu1", "gpu2")
HELM = "/usr/local/bin/helm"
CANARY = "gpuhub-canary-" + secrets.token_hex(8)  # the lab's server token: never in gpuhub's output
SERVER_CONFIG = f"""# written by hand, following the guide, then tuned
token: "{CANARY}"
write-kubeconfig-mode: "0644"
cluster-cidr: 10.52.0.0/16
kubelet-arg:
  - max-pods=150
node-label:
  - nvidia.com/gpu.present=true
"""
SLICES = yaml.safe_dump({"version": "v1", "sharing": {"timeSlicing": {"resources": [
    {"name": "nvidia.com/gpu", "replicas": 4}]}}})
PLUGIN_VALUES = {"runtimeClassName": "nvidia", "gfd": {"enabled": True},
                 "config": {"default": "any", "map": {"any": SLICES}}}
HUB_VALUES = {"hub": {"config": {"JupyterHub": {"authenticator_class": "github"}}},
              "proxy": {"service": {"type": "ClusterIP"}},
              "ingress": {"enabled": True, "ingressClassName": "traefik", "hosts": ["hub.lab.test"]}}
GRAFANA = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "grafana", "namespace": "monitoring"},
           "spec": {"ingressClassName": "traefik", "rules": [{"host": "grafana.lab.test", "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "grafana", "port": {"number": 80}}}}]}}]}}
MODEL_SERVER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vllm-0", "namespace": "models"},
                "spec": {"runtimeClassName": "nvidia", "nodeSelector": {"kubernetes.io/hostname": "gpu1"},
                         "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.9.1",
                                         "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}
HOSTS_AS_FOUND = {"gpu1": {"role": "server", "address": "10.250.0.11", "gpus": 1, "replicas": 4},
                  "gpu2": {"role": "agent", "gpus": 2, "sharing": "none"}}


def kubectl(site, command, stdin=None):
    if stdin is not None:
        command = f"echo {shlex.quote(json.dumps(stdin))} | k3s kubectl {command}"
        return site.sh("gpu1", command)
    return site.sh("gpu1", f"k3s kubectl {command}")


def helm_install(site, release, chart, repo, version, namespace, values):
    site.sh("gpu1", f"echo {shlex.quote(json.dumps(values))} | {HELM} upgrade --install {release} {chart} "
                    f"--repo {repo} --version {version} -n {namespace} --create-namespace -f -")


def build_by_hand(site):
    hosts, bundle = site.hosts, site.bundle
    for host in NODES:
        lay_down_by_hand(hosts, host, bundle)
    hosts.put("gpu1", SERVER_CONFIG.encode(), "/etc/rancher/k3s/config.yaml", 0o600)
    site.sh("gpu1", "INSTALL_K3S_SKIP_DOWNLOAD=true /root/bundle/install.sh >/dev/null")
    agent = yaml.safe_dump({"server": "https://10.250.0.11:6443", "token": CANARY,
                            "node-label": ["nvidia.com/gpu.present=true"]})
    hosts.put("gpu2", agent.encode(), "/etc/rancher/k3s/config.yaml", 0o600)
    # install.sh takes the agent role from K3S_URL or INSTALL_K3S_EXEC only, never from config.yaml.
    site.sh("gpu2", "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC=agent /root/bundle/install.sh >/dev/null")
    hosts.put("gpu1", bundle["helm"], HELM, 0o755)
    helm_install(site, "nvdp-lab", "nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.17.0",
                 "kube-system", PLUGIN_VALUES)
    helm_install(site, "hub", "jupyterhub", "https://hub.jupyter.org/helm-chart/", "3.3.8", "jupyter", HUB_VALUES)
    for namespace in ("monitoring", "models"):
        kubectl(site, "apply -f -", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kubectl(site, "apply -f -", GRAFANA)
    deadline = time.monotonic() + 60
    while offered(site) != {"gpu1": "4", "gpu2": "8"}:  # the agent registers, the plugin starts
        assert time.monotonic() < deadline, f"the hand-built nodes offer {offered(site)}"
        time.sleep(0.5)
    kubectl(site, "apply -f -", MODEL_SERVER)


def offered(site) -> dict:
    """{node: its allocatable nvidia.com/gpu}"""
    nodes = json.loads(kubectl(site, "get nodes -o json").stdout)["items"]
    return {n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu") for n in nodes}


def state_of(site) -> dict:
    """What the lab runs, to show that a refused run left it as it was."""
    pods = json.loads(kubectl(site, "get pods -A -o json").stdout)["items"]
    return {"config": {h: site.sh(h, "sha256sum /etc/rancher/k3s/config.yaml").stdout for h in NODES},
            "started": {h: site.sh(h, "systemctl show -p ExecMainStartTimestampMonotonic "
                                      + ("k3s" if h == "gpu1" else "k3s-agent")).stdout for h in NODES},
            "releases": site.sh("gpu1", f"{HELM} list -A -o json").stdout,
            "pods": sorted((p["metadata"]["namespace"], p["metadata"]["name"], p["status"]["phase"]) for p in pods)}


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    for built in module_site(testhosts, tmp_path_factory, "takeover"):
        build_by_hand(built)
        yield built


def plan_of(site, inventory_file):
    return site.plan(inventory_file, hosts=NODES)


def summaries(step) -> str:
    return step["summary"] + " " + step["reason"]


def test_the_hand_built_cluster_runs_what_the_lab_set_up(site):
    """The starting state is the lab's, not gpuhub's: checked, so the rest means something."""
    assert offered(site) == {"gpu1": "4", "gpu2": "8"}
    pods = {p["metadata"]["name"]: p for p in json.loads(kubectl(site, "get pods -A -o json").stdout)["items"]}
    assert pods["vllm-0"]["status"]["phase"] == "Running" and pods["vllm-0"]["spec"]["nodeName"] == "gpu1"
    assert any(p["metadata"]["labels"].get("app.kubernetes.io/name") == "traefik" for p in pods.values())
    listed = {(r["namespace"], r["name"], r["chart"]) for r in json.loads(site.sh("gpu1", f"{HELM} list -A -o json").stdout)}
    assert {("kube-system", "nvdp-lab", "nvidia-device-plugin-0.17.0"), ("jupyter", "hub", "jupyterhub-3.3.8")} <= listed


def test_with_the_guides_defaults_gpuhub_refuses_to_install_a_second_plugin_and_hub_and_changes_nothing(site):
    inventory_file = site.write_inventory(hosts=HOSTS_AS_FOUND)
    planned = plan_of(site, inventory_file)
    plugin, hub = planned["gpu1"]["gpu.plugin"], planned["gpu1"]["hub.launch"]
    assert plugin["status"] == "blocked", plugin
    assert plugin["reason"].startswith("device plugin runs already as release kube-system/nvdp-lab "
                                       "(chart nvidia-device-plugin), not as nvidia-device-plugin/nvdp"), plugin
    assert "set gpu.plugin_release: nvdp-lab and gpu.plugin_namespace: kube-system in the inventory" in plugin["reason"]
    assert hub["status"] == "blocked" and "JupyterHub runs already as release jupyter/hub" in hub["reason"], hub
    install = planned["gpu1"]["k3s.install"]
    assert install["destructive"], install
    assert "DROPS keys the file on the host sets: cluster-cidr, kubelet-arg" in install["summary"], install
    assert "disables Traefik, which serves Ingress" in install["summary"], install
    assert "monitoring/grafana (grafana.lab.test)" in install["summary"], install
    before = state_of(site)
    refused = site.fab("provision", "--yes", hosts=NODES, inventory_file=inventory_file)
    assert refused.returncode == 1, refused.stderr
    assert "gpu.plugin" in refused.stderr and "kube-system/nvdp-lab" in refused.stderr, refused.stderr
    assert CANARY not in refused.stdout + refused.stderr
    assert state_of(site) == before


def test_named_as_found_everything_that_breaks_what_runs_is_destructive_with_its_evidence(site):
    inventory_file = site.write_inventory(hosts=HOSTS_AS_FOUND, gpu__plugin_release="nvdp-lab",
                                          gpu__plugin_namespace="kube-system", hub__release="hub",
                                          hub__namespace="jupyter")
    planned = plan_of(site, inventory_file)
    plugin, hub = planned["gpu1"]["gpu.plugin"], planned["gpu1"]["hub.launch"]
    assert plugin["destructive"] and "adopt upgrade device plugin release kube-system/nvdp-lab: chart 0.17.0 -> " \
        "0.20.0; it was installed without gpuhub" in summaries(plugin), plugin
    assert "models/vllm-0 holds 2 nvidia.com/gpu on gpu1, which will offer nvidia.com/gpu.shared" in summaries(plugin)
    assert hub["destructive"] and "chart 3.3.8 -> 4.4.0" in summaries(hub), hub
    assert "hub.slug_scheme: escape keeps the old ones" in summaries(hub), hub
    assert planned["gpu1"]["k3s.install"]["destructive"]
    before = state_of(site)
    refused = site.fab("provision", hosts=NODES, inventory_file=inventory_file)
    assert refused.returncode == 1 and "destructive changes need --yes" in refused.stderr, refused.stderr
    for evidence in ("monitoring/grafana", "models/vllm-0", "cluster-cidr"):
        assert evidence in refused.stderr, (evidence, refused.stderr)
    assert CANARY not in refused.stdout + refused.stderr
    assert state_of(site) == before


def test_fitted_to_the_lab_only_the_adoptions_are_destructive_and_with_yes_it_converges_keeping_what_runs(site):
    inventory_file = site.write_inventory(
        hosts={"gpu1": {"role": "server", "address": "10.250.0.11", "gpus": 1, "replicas": 4},
               "gpu2": {"role": "agent", "gpus": 2, "replicas": 4}},
        cluster__kubeconfig_mode="0644",
        cluster__k3s_extra_config={"cluster-cidr": "10.52.0.0/16", "kubelet-arg": ["max-pods=150"]},
        gpu__plugin_release="nvdp-lab", gpu__plugin_namespace="kube-system",
        gpu__rename_shared=False, gpu__allow_multiple_slices=True,
        hub__release="hub", hub__namespace="jupyter", hub__slug_scheme="escape", hub__https="ingress",
        hub__cert_manager={"dns01_provider": "cloudflare"})
    token = {"GPUHUB_DNS_API_TOKEN": "cf-" + secrets.token_hex(12)}
    result = site.fab("plan", "--json", hosts=NODES, inventory_file=inventory_file, **token)
    assert result.returncode == 0, result.stderr
    planned = {n: {s["id"]: s for s in h["steps"]} for n, h in json.loads(result.stdout)["hosts"].items()}
    destructive = {(n, i) for n, steps in planned.items() for i, s in steps.items() if s["destructive"]}
    assert destructive == {("gpu1", "gpu.plugin"), ("gpu1", "hub.launch")}, planned
    for step in ("gpu.plugin", "hub.launch"):
        assert "installed without gpuhub" in summaries(planned["gpu1"][step]), planned["gpu1"][step]
        assert "vllm-0" not in summaries(planned["gpu1"][step]) and "slug" not in summaries(planned["gpu1"][step])
    assert "Traefik" not in planned["gpu1"]["k3s.install"]["summary"]

    done = site.fab("provision", "--yes", hosts=NODES, inventory_file=inventory_file, **token)
    assert done.returncode == 0, done.stderr
    assert token["GPUHUB_DNS_API_TOKEN"] not in done.stdout + done.stderr and CANARY not in done.stdout + done.stderr
    pods = {p["metadata"]["name"]: p for p in json.loads(kubectl(site, "get pods -A -o json").stdout)["items"]}
    assert pods["vllm-0"]["status"]["phase"] == "Running" and pods["vllm-0"]["spec"]["nodeName"] == "gpu1"
    assert any(p["metadata"]["labels"].get("app.kubernetes.io/name") == "traefik" for p in pods.values())
    ingresses = json.loads(kubectl(site, "get ingresses -A -o json").stdout)["items"]
    assert ("monitoring", "grafana") in {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in ingresses}
    assert offered(site) == {"gpu1": "4", "gpu2": "8"}
    config = site.sh("gpu1", "cat /etc/rancher/k3s/config.yaml").stdout
    assert "10.52.0.0/16" in config and "max-pods=150" in config and "traefik" not in config
    [issuer] = json.loads(kubectl(site, "get clusterissuers.cert-manager.io -o json").stdout)["items"]
    assert issuer["spec"]["acme"]["solvers"][0]["dns01"]["cloudflare"]["apiTokenSecretRef"]["name"], issuer
    listed = {(r["namespace"], r["name"]) for r in json.loads(site.sh("gpu1", f"{HELM} list -A -o json").stdout)}
    assert ("jhub", "jhub") not in listed and ("nvidia-device-plugin", "nvdp") not in listed  # no second ones
    again = site.fab("plan", "--json", hosts=NODES, inventory_file=inventory_file, **token)
    assert again.returncode == 0, again.stderr
    left = {(n, s["id"], s["status"]) for n, h in json.loads(again.stdout)["hosts"].items() for s in h["steps"]
            if s["status"] not in ("ok", "verify")}
    assert left == set(), left
