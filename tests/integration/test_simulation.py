"""The simulated toolchain on real SSH test hosts (nspawn: real systemd), installed by hand.

gpu1 is the server (1 GPU, time-sliced x4), gpu2 an agent with 2 whole GPUs, gpu3 an agent with
1 GPU time-sliced x4. Each fault switch is set, its effect checked, then cleared and the cluster
checked back to normal, so the tests do not depend on each other's order.
"""
import contextlib
import json
import shlex
import time

import pytest
import yaml

from sim.build_bundle import K3S_VERSION, build_bundle
from sim.hardware import give_gpus

from gpuhub import render
from gpuhub.inventory import TOOLKIT_PACKAGES

pytestmark = pytest.mark.integration

GPUS = {"gpu1": 1, "gpu2": 2, "gpu3": 1}
SHARING = {"gpu1": "timeslice-4", "gpu2": "exclusive", "gpu3": "timeslice-4"}
TOKEN_FILE = "/etc/rancher/k3s/gpuhub-node-token"
PLUGIN_NS = "nvidia-device-plugin"


def sharing_config(replicas):
    config = {"version": "v1", "flags": {"migStrategy": "none"}}
    if replicas > 1:
        config["sharing"] = {"timeSlicing": {"renameByDefault": True, "failRequestsGreaterThanOne": True,
                                             "resources": [{"name": "nvidia.com/gpu", "replicas": replicas}]}}
    return yaml.safe_dump(config)


PLUGIN_VALUES = {"gfd": {"enabled": True}, "runtimeClassName": "nvidia",
                 "config": {"map": {"exclusive": sharing_config(1), "timeslice-4": sharing_config(4)},
                            "default": "timeslice-4"}}


# What a bare host is for the provisioning tests: no K3s, no toolkit, no helm, no simulation state.
BARE_HOST = ("for s in /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh; do "
             "[ -x \"$s\" ] && \"$s\" >/dev/null 2>&1; done; "
             f"dpkg --purge {' '.join(TOOLKIT_PACKAGES)} >/dev/null 2>&1; "
             "rm -rf /usr/local/bin/helm /etc/gpuhub-sim /usr/bin/nvidia-smi /usr/bin/kubectl /root/bundle "
             "/var/lib/gpuhub /var/backups/gpuhub /etc/rancher /var/lib/rancher; : > /etc/environment; true")


class Cluster:
    def __init__(self, hosts, paths):
        self.hosts, self.paths = hosts, paths

    def sh(self, host, command, check=True):
        return self.hosts.run(host, command, check=check)

    def kubectl_json(self, *args):
        return json.loads(self.sh("gpu1", "kubectl " + " ".join(map(shlex.quote, args)) + " -o json").stdout)

    def nodes(self):
        return {n["metadata"]["name"]: n for n in self.kubectl_json("get", "nodes")["items"]}

    def wait_for(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def set_fault(self, host, name, value=""):
        self.hosts.put(host, value.encode(), f"/etc/gpuhub-sim/faults/{name}", 0o644)

    def clear_fault(self, host, name):
        self.sh(host, f"rm -f /etc/gpuhub-sim/faults/{shlex.quote(name)}")

    def restart(self, host, check=True):
        # Many restarts in a row hit systemd's start limit, as they would with real K3s.
        return self.sh(host, f"systemctl reset-failed {self.unit(host)}; systemctl restart {self.unit(host)}",
                       check=check)

    @contextlib.contextmanager
    def fault(self, host, name, value="", restart_after=False):
        """Fault `name` set on `host` inside the block; cleared after it (and K3s restarted)."""
        self.set_fault(host, name, value)
        try:
            yield self
        finally:
            self.clear_fault(host, name)
            if restart_after:
                self.restart(host)

    def allocatable(self, node, resource):
        return self.nodes()[node]["status"]["allocatable"].get(resource)

    def capacity(self, node, resource):
        return self.nodes()[node]["status"]["capacity"].get(resource)

    def healthy(self):
        """Every node Ready with the GPUs it should offer."""
        expected = {"gpu1": ("nvidia.com/gpu.shared", "4"), "gpu2": ("nvidia.com/gpu", "2"),
                    "gpu3": ("nvidia.com/gpu.shared", "4")}
        nodes = self.nodes()
        return len(nodes) == 3 and all(
            nodes[n]["status"]["conditions"][0]["status"] == "True"
            and nodes[n]["status"]["allocatable"].get(r) == v for n, (r, v) in expected.items())

    def unit(self, host):
        return "k3s" if host == "gpu1" else "k3s-agent"


def lay_down_by_hand(hosts, host, p):
    """The guide's airgap install before K3s starts, done by hand: the toolkit's packages, the
    K3s binary and images, its install script in /root/bundle."""
    hosts.run(host, "mkdir -p /etc/gpuhub-sim/faults /var/lib/rancher/k3s/agent/images /etc/rancher/k3s /root/bundle")
    for deb in p["toolkit_packages"]:
        hosts.put(host, deb, f"/root/bundle/{deb.name}", 0o644)
    hosts.run(host, "dpkg -i /root/bundle/*.deb >/dev/null")
    hosts.put(host, p["k3s"], "/usr/local/bin/k3s", 0o755)
    hosts.put(host, p["images"], "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst", 0o644)
    hosts.put(host, p["install_script"], "/root/bundle/install.sh", 0o755)


def install_host(c, host, role, server_address):
    """What the provisioning steps will do, done by hand: driver stand-in, toolkit, K3s."""
    hosts, p = c.hosts, c.paths
    give_gpus(hosts, host, p, GPUS[host])
    lay_down_by_hand(hosts, host, p)
    labels = ["nvidia.com/gpu.present=true", f"nvidia.com/device-plugin.config={SHARING[host]}"]
    config = {"node-name": host, "node-label": labels}
    if role == "server":
        config.update({"write-kubeconfig-mode": "0600", "disable": ["traefik"]})
        hosts.put(host, p["helm"], "/usr/local/bin/helm", 0o755)
        hosts.put(host, p["plugin_chart"], "/root/bundle/nvidia-device-plugin.tgz", 0o644)
        hosts.put(host, p["hub_chart_4.4.0"], "/root/bundle/jupyterhub.tgz", 0o644)
    else:
        config.update({"server": f"https://{server_address}:6443", "token-file": TOKEN_FILE})
    hosts.put(host, yaml.safe_dump(config).encode(), "/etc/rancher/k3s/config.yaml", 0o600)
    role_exec = "server" if role == "server" else "agent"
    return c.sh(host, f"INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC={role_exec} /root/bundle/install.sh")


@pytest.fixture(scope="module")
def cluster(testhosts, tmp_path_factory):
    c = Cluster(testhosts, build_bundle(tmp_path_factory.mktemp("sim")))
    server_address = testhosts.address("gpu1")
    install_host(c, "gpu1", "server", server_address)
    # The node token travels over SSH into a 0600 file on each agent: never argv, never printed.
    token = c.sh("gpu1", "cat /var/lib/rancher/k3s/server/node-token").stdout.strip().encode()
    for agent in ("gpu2", "gpu3"):
        testhosts.put(agent, token, TOKEN_FILE, 0o600)
        install_host(c, agent, "agent", server_address)
    testhosts.put("gpu1", yaml.safe_dump(PLUGIN_VALUES).encode(), "/root/bundle/plugin-values.yaml", 0o600)
    c.sh("gpu1", f"helm upgrade --install nvdp /root/bundle/nvidia-device-plugin.tgz --version 0.20.0 "
                 f"--namespace {PLUGIN_NS} --create-namespace -f /root/bundle/plugin-values.yaml")
    c.wait_for("three healthy nodes", c.healthy)
    yield c
    # Later modules start from bare hosts: take everything this module installed away again.
    for host in ("gpu1", "gpu2", "gpu3"):
        c.sh(host, BARE_HOST, check=False)


@pytest.fixture
def healthy_after(cluster):
    """Each fault test leaves the cluster as it found it (checked)."""
    yield cluster
    cluster.wait_for("the cluster to recover", cluster.healthy, timeout=40)


def test_units_active_and_enabled(cluster):
    for host in ("gpu1", "gpu2", "gpu3"):
        unit = cluster.unit(host)
        assert cluster.sh(host, f"systemctl is-active {unit}").stdout.strip() == "active"
        assert cluster.sh(host, f"systemctl is-enabled {unit}").stdout.strip() == "enabled"


def test_install_script_side_effects(cluster):
    assert cluster.sh("gpu1", "stat -c %a /etc/rancher/k3s/k3s.yaml").stdout.strip() == "600"
    assert cluster.sh("gpu2", "stat -c %a /etc/systemd/system/k3s-agent.service.env").stdout.strip() == "600"
    for link in ("kubectl", "crictl", "ctr"):
        assert cluster.sh("gpu1", f"readlink /usr/local/bin/{link}").stdout.strip() == "k3s"
    # The unit as the real script writes it (ExecStart continued over lines, User=root, ...) runs
    # under real systemd.
    shown = cluster.sh("gpu2", "systemctl show -p ExecStart -p User -p LimitNOFILE k3s-agent").stdout
    assert "argv[]=/usr/local/bin/k3s agent ;" in shown and "User=root" in shown and "LimitNOFILE=1048576" in shown
    assert cluster.sh("gpu1", "test -x /usr/local/bin/k3s-uninstall.sh", check=False).returncode == 0
    assert cluster.sh("gpu2", "test -x /usr/local/bin/k3s-agent-uninstall.sh", check=False).returncode == 0
    token = cluster.sh("gpu1", "cat /var/lib/rancher/k3s/server/node-token").stdout.strip()
    assert token not in cluster.sh("gpu2", "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '").stdout


def test_rerunning_install_script_does_not_restart(cluster):
    before = cluster.sh("gpu2", "systemctl show -p ExecMainStartTimestampMonotonic k3s-agent").stdout
    out = cluster.sh("gpu2", "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC=agent /root/bundle/install.sh").stdout
    assert "No change detected so skipping service start" in out
    assert cluster.sh("gpu2", "systemctl show -p ExecMainStartTimestampMonotonic k3s-agent").stdout == before


def test_nodes_registered_with_gpus_times_replicas(cluster):
    nodes = cluster.nodes()
    assert sorted(nodes) == ["gpu1", "gpu2", "gpu3"]
    assert nodes["gpu1"]["status"]["capacity"]["nvidia.com/gpu.shared"] == "4"
    assert nodes["gpu2"]["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in nodes["gpu3"]["status"]["capacity"]
    labels = nodes["gpu3"]["metadata"]["labels"]
    # Renamed (renameByDefault): GFD adds no -SHARED (device-plugin v0.20.0 internal/lm/resource.go).
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.replicas"] == "4" and labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert nodes["gpu1"]["status"]["nodeInfo"]["kubeletVersion"] == K3S_VERSION
    # K3s's manifests/runtimes.yaml: ten RuntimeClasses; `-o name` prints group-qualified names.
    names = cluster.sh("gpu1", "kubectl get runtimeclass -o name").stdout.split()
    assert len(names) == 10 and "runtimeclass.node.k8s.io/nvidia" in names
    assert {"runtimeclass.node.k8s.io/nvidia-experimental", "runtimeclass.node.k8s.io/crun"} <= set(names)


def test_plugin_and_gfd_pods_share_their_labels_and_differ_by_owner(cluster):
    """Chart 0.20.0: both DaemonSets' pods carry only app.kubernetes.io/name and /instance."""
    pods = cluster.kubectl_json("get", "pods", "-n", PLUGIN_NS, "-l", "app.kubernetes.io/name=nvidia-device-plugin")["items"]
    owners = {}
    for p in pods:
        owner = p["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "DaemonSet" and p["metadata"]["name"].startswith(owner["name"] + "-")
        assert {k: v for k, v in p["metadata"]["labels"].items() if k.startswith("app.")} == {
            "app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": "nvdp"}
        owners.setdefault(p["spec"]["nodeName"], set()).add(owner["name"])
    plugin = "nvdp-nvidia-device-plugin"
    assert owners == {n: {plugin, f"{plugin}-gpu-feature-discovery"} for n in ("gpu1", "gpu2", "gpu3")}
    assert all(p["status"]["phase"] == "Running" and "reason" not in p["status"] for p in pods)


def test_generated_containerd_config_has_nvidia_runtime(cluster):
    text = cluster.sh("gpu2", "cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml").stdout
    assert "runtimes.'nvidia'" in text and "/usr/bin/nvidia-container-runtime" in text
    assert "default_runtime_name" not in text


def test_agent_with_wrong_token_is_refused(cluster):
    config = {"server": f"https://{cluster.hosts.address('gpu1')}:6443", "node-name": "intruder"}
    cluster.hosts.put("gpu3", yaml.safe_dump(config).encode(), "/root/intruder.yaml", 0o600)
    cluster.hosts.put("gpu3", b"K10bogus::server:wrong\n", "/root/intruder-token", 0o600)
    # K3s release-1.34 pkg/agent/run.go: a refused token is retried every 2 s, forever.
    result = cluster.sh("gpu3", "timeout 7 k3s agent --config /root/intruder.yaml "
                                "--token-file /root/intruder-token", check=False)
    assert result.returncode == 124  # still trying when timeout stops it
    assert result.stderr.count("Failed to validate connection to cluster at https://") >= 3
    assert "401 Unauthorized" in result.stderr
    assert "intruder" not in cluster.nodes()


def test_gpu_test_job_succeeds_or_pends_with_the_reason(cluster):
    def job(name, resource, node, command=render.GPU_TEST_COMMAND):
        container = {"name": "cuda", "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0",
                     "resources": {"limits": {resource: 1}}}
        if command:
            container["command"] = command
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never", "runtimeClassName": "nvidia",
                    "nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container]}}}}
    jobs = [job("ok", "nvidia.com/gpu.shared", "gpu3"), job("stuck", "nvidia.com/gpu", "gpu1"),
            job("sample", "nvidia.com/gpu", "gpu2", command=None)]
    cluster.hosts.put("gpu1", yaml.safe_dump_all(jobs).encode(), "/root/jobs.yaml", 0o644)
    try:
        cluster.sh("gpu1", "kubectl apply -f /root/jobs.yaml")
        for name in ("ok", "sample"):
            cluster.sh("gpu1", f"kubectl wait --for=condition=complete job/{name} --timeout=20s")
        logs = cluster.sh("gpu1", "kubectl logs job/ok").stdout
        assert logs.startswith("GPU 0: NVIDIA H100 80GB HBM3 (UUID: ") and "Test PASSED" in logs
        # The image's own entrypoint: the sample's lines only, no GPU line.
        sample = cluster.sh("gpu1", "kubectl logs job/sample").stdout
        assert sample.startswith("[Vector addition of 50000 elements]\n") and sample.endswith("Test PASSED\nDone\n")
        ran = cluster.kubectl_json("get", "pods", "-l", "job-name=ok")["items"][0]
        assert ran["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        pods = cluster.kubectl_json("get", "pods", "-l", "job-name=stuck")["items"]
        status = pods[0]["status"]
        # The scheduler's reason is in the PodScheduled condition and its event, not status.reason.
        assert status["phase"] == "Pending" and "reason" not in status and "nodeName" not in pods[0]["spec"]
        scheduled = next(c for c in status["conditions"] if c["type"] == "PodScheduled")
        assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
        assert scheduled["message"].startswith("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) "
                                               "didn't match Pod's node affinity/selector. preemption: ")
        events = cluster.kubectl_json("get", "events", "--field-selector",
                                      f"involvedObject.name={pods[0]['metadata']['name']}")["items"]
        assert [(e["reason"], e["message"]) for e in events] == [("FailedScheduling", scheduled["message"])]
    finally:
        cluster.sh("gpu1", "for j in ok stuck sample; do kubectl delete job $j --ignore-not-found; done")


def greedy_job(name, resource, node, count):
    container = {"name": "cuda", "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0",
                 "command": render.GPU_TEST_COMMAND, "resources": {"limits": {resource: count}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "runtimeClassName": "nvidia",
                "nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container]}}}}


def test_shared_gpus_renamed_or_not_and_requests_for_more_than_one(healthy_after):
    """Issue 10: renameByDefault false keeps shared GPUs nvidia.com/gpu (a resource's own `rename`
    is ignored), and failRequestsGreaterThanOne refuses a pod asking for two slices at admission."""
    c = healthy_after
    jobs = "/root/greedy.yaml"
    try:
        c.hosts.put("gpu1", yaml.safe_dump(greedy_job("greedy", "nvidia.com/gpu.shared", "gpu3", 2)).encode(), jobs, 0o644)
        c.sh("gpu1", f"kubectl apply -f {jobs}")
        c.sh("gpu1", "kubectl wait --for=condition=failed job/greedy --timeout=20s")
        status = c.kubectl_json("get", "pods", "-l", "job-name=greedy")["items"][0]["status"]
        assert status["phase"] == "Failed" and status["reason"] == "UnexpectedAdmissionError"
        assert "maximum request size for shared resources is 1; found 2" in status["message"]
        assert "containerStatuses" not in status or status["containerStatuses"] == []
        c.sh("gpu1", "kubectl delete job greedy")

        config = {"version": "v1", "flags": {"migStrategy": "none"}, "sharing": {"timeSlicing": {
            "renameByDefault": False,
            "resources": [{"name": "nvidia.com/gpu", "rename": "example.org/slice", "replicas": 4}]}}}
        values = dict(PLUGIN_VALUES, config=dict(PLUGIN_VALUES["config"], map=dict(
            PLUGIN_VALUES["config"]["map"], **{"timeslice-4": yaml.safe_dump(config)})))
        c.hosts.put("gpu1", yaml.safe_dump(values).encode(), "/root/bundle/plugin-values-2.yaml", 0o600)
        c.sh("gpu1", f"helm upgrade --install nvdp /root/bundle/nvidia-device-plugin.tgz --version 0.20.0 "
                     f"--namespace {PLUGIN_NS} -f /root/bundle/plugin-values-2.yaml")
        c.wait_for("gpu3 to offer nvidia.com/gpu", lambda: c.allocatable("gpu3", "nvidia.com/gpu") == "4")
        node = c.nodes()["gpu3"]
        assert "nvidia.com/gpu.shared" not in node["status"]["capacity"]
        assert "example.org/slice" not in node["status"]["capacity"]
        labels = node["metadata"]["labels"]
        # Shared and not renamed: GFD's product gets -SHARED (internal/lm/resource.go).
        assert labels["nvidia.com/gpu.product"].endswith("-SHARED")
        assert labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
        assert c.nodes()["gpu2"]["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"] == "none"
        # failRequestsGreaterThanOne unset: two slices are allowed.
        c.hosts.put("gpu1", yaml.safe_dump(greedy_job("greedy", "nvidia.com/gpu", "gpu3", 2)).encode(), jobs, 0o644)
        c.sh("gpu1", f"kubectl apply -f {jobs}")
        c.sh("gpu1", "kubectl wait --for=condition=complete job/greedy --timeout=20s")
    finally:
        c.sh("gpu1", "kubectl delete job greedy --ignore-not-found")
        c.sh("gpu1", f"helm upgrade --install nvdp /root/bundle/nvidia-device-plugin.tgz --version 0.20.0 "
                     f"--namespace {PLUGIN_NS} -f /root/bundle/plugin-values.yaml")


def test_helm_releases(cluster):
    releases = json.loads(cluster.sh("gpu1", "helm list -A -o json").stdout)
    assert [(r["name"], r["namespace"], r["chart"]) for r in releases] == [
        ("nvdp", PLUGIN_NS, "nvidia-device-plugin-0.20.0")]
    values = json.loads(cluster.sh("gpu1", f"helm get values nvdp -n {PLUGIN_NS} -o json").stdout)
    assert values == PLUGIN_VALUES


# ------------------------------------------------------------------------------ faults

def test_fault_no_driver(healthy_after):
    c = healthy_after
    with c.fault("gpu3", "no-driver"):
        result = c.sh("gpu3", "nvidia-smi -L", check=False)
        assert result.returncode == 127
        c.wait_for("gpu3 to lose its GPUs", lambda: c.capacity("gpu3", "nvidia.com/gpu.shared") is None)
        assert c.capacity("gpu1", "nvidia.com/gpu.shared") == "4"


def test_fault_nvml_failing(healthy_after):
    c = healthy_after
    with c.fault("gpu2", "nvml-failing"):
        result = c.sh("gpu2", "nvidia-smi", check=False)
        assert result.returncode == 18 and "Driver/library version mismatch" in result.stdout
        c.wait_for("gpu2 to lose its GPUs", lambda: c.capacity("gpu2", "nvidia.com/gpu") is None)
        plugin = [p for p in c.kubectl_json("get", "pods", "-n", PLUGIN_NS)["items"] if p["spec"]["nodeName"] == "gpu2"
                  and p["metadata"]["ownerReferences"][0]["name"] == "nvdp-nvidia-device-plugin"]
        # The kubelet's reason: the container's waiting state and its last exit, not status.reason.
        ctr = next(s for s in plugin[0]["status"]["containerStatuses"] if s["name"] == "nvidia-device-plugin-ctr")
        assert ctr["state"]["waiting"]["reason"] == "CrashLoopBackOff" and not ctr["ready"]
        assert ctr["lastState"]["terminated"]["exitCode"] == 1 and "reason" not in plugin[0]["status"]


def test_fault_no_toolkit(healthy_after):
    c = healthy_after
    with c.fault("gpu3", "no-toolkit", restart_after=True):
        c.restart("gpu3")
        text = c.sh("gpu3", "cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml").stdout
        assert "nvidia" not in text
        c.wait_for("gpu3's plugin to fail", lambda: c.capacity("gpu3", "nvidia.com/gpu.shared") is None)


def test_fault_k3s_fails_to_start(healthy_after):
    c = healthy_after
    with c.fault("gpu3", "k3s-fail-start", restart_after=True):
        assert c.restart("gpu3", check=False).returncode != 0
        assert c.sh("gpu3", "systemctl is-active k3s-agent", check=False).stdout.strip() != "active"
        c.wait_for("gpu3 NotReady", lambda: c.nodes()["gpu3"]["status"]["conditions"][0]["status"] != "True")


def test_fault_plugin_unhealthy_after_restart_and_heal(healthy_after):
    c = healthy_after
    with c.fault("gpu3", "plugin-unhealthy-after-restart"):
        c.restart("gpu3")
        c.wait_for("allocatable 0 on gpu3", lambda: c.allocatable("gpu3", "nvidia.com/gpu.shared") == "0")
        assert c.capacity("gpu3", "nvidia.com/gpu.shared") == "4"
        on_gpu3 = {p["metadata"]["ownerReferences"][0]["name"]: p["metadata"]["name"]
                   for p in c.kubectl_json("get", "pods", "-n", PLUGIN_NS)["items"] if p["spec"]["nodeName"] == "gpu3"}
        gfd = on_gpu3.pop("nvdp-nvidia-device-plugin-gpu-feature-discovery")
        c.sh("gpu1", f"kubectl delete pod {gfd} -n {PLUGIN_NS}")  # same labels, but not the plugin: no heal
        assert c.allocatable("gpu3", "nvidia.com/gpu.shared") == "0"
        c.sh("gpu1", f"kubectl delete pod {on_gpu3['nvdp-nvidia-device-plugin']} -n {PLUGIN_NS}")
        assert c.allocatable("gpu3", "nvidia.com/gpu.shared") == "4"
        renamed = [p["metadata"]["name"] for p in c.kubectl_json("get", "pods", "-n", PLUGIN_NS)["items"]
                   if p["spec"]["nodeName"] == "gpu3"]
        assert gfd not in renamed and on_gpu3["nvdp-nvidia-device-plugin"] not in renamed  # new pods, new names


def test_fault_helm_fails(healthy_after):
    c = healthy_after
    with c.fault("gpu1", "helm-fail"):
        result = c.sh("gpu1", "helm list -A -o json", check=False)
        assert result.returncode == 1 and "helm failed" in result.stderr
    assert c.sh("gpu1", "helm list -A -o json").returncode == 0


def test_fault_hub_never_ready(healthy_after):
    c = healthy_after

    def hub_ready():
        pods = c.kubectl_json("get", "pods", "-n", "jhub", "-l", "component=hub")["items"]
        return next(x for x in pods[0]["status"]["conditions"] if x["type"] == "Ready")["status"] == "True"

    try:
        with c.fault("gpu1", "hub-never-ready"):
            c.sh("gpu1", "helm upgrade --install jhub /root/bundle/jupyterhub.tgz --version 4.4.0 "
                         "-n jhub --create-namespace")
            assert not hub_ready()
            proxy = c.kubectl_json("get", "pods", "-n", "jhub", "-l", "component=proxy")["items"]
            assert next(x for x in proxy[0]["status"]["conditions"] if x["type"] == "Ready")["status"] == "True"
        assert hub_ready()
    finally:
        c.sh("gpu1", "helm uninstall jhub -n jhub", check=False)


def test_fault_slow_start(healthy_after):
    c = healthy_after
    with c.fault("gpu3", "slow-start", "3"):
        c.restart("gpu3")
        shown = c.sh("gpu3", "systemctl show -p ExecMainStartTimestampMonotonic -p ActiveEnterTimestampMonotonic "
                             "k3s-agent").stdout
        stamps = dict(line.split("=", 1) for line in shown.split())
        waited_us = int(stamps["ActiveEnterTimestampMonotonic"]) - int(stamps["ExecMainStartTimestampMonotonic"])
        assert waited_us >= 3_000_000


def test_broken_template_stops_k3s_and_valid_one_sets_default_runtime(healthy_after):
    c = healthy_after
    folder = "/var/lib/rancher/k3s/agent/etc/containerd"
    base_line = '{{ template "base" . }}\n'
    redeclared = base_line + "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
    default_nvidia = (base_line + "{{ if not .NodeConfig.DefaultRuntime }}\n"
                      "[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = \"nvidia\"\n{{ end }}\n")
    try:
        c.hosts.put("gpu3", redeclared.encode(), f"{folder}/config-v3.toml.tmpl", 0o644)
        assert c.restart("gpu3", check=False).returncode != 0
        log = c.sh("gpu3", "journalctl -u k3s-agent -n 20 --no-pager").stdout
        assert "twice" in log
        c.hosts.put("gpu3", default_nvidia.encode(), f"{folder}/config-v3.toml.tmpl", 0o644)
        c.restart("gpu3")
        assert 'default_runtime_name = "nvidia"' in c.sh("gpu3", f"cat {folder}/config.toml").stdout
    finally:
        c.sh("gpu3", f"rm -f {folder}/config-v3.toml.tmpl")
        c.restart("gpu3")
