"""Pods as Kubernetes shows them: the device plugin's pod told from GFD's, and why a pod fails
read where Kubernetes keeps it (recorded pod JSON: tests/data/facts/pods/, each naming its source)."""
import json
import subprocess
import sys

import yaml

from gpuhub import audit, facts, render
from gpuhub.steps import Context, cluster
from gpuhub.target import Result
from testdata import DATA, ROOT, load_inventory

PODS = DATA / "facts" / "pods"
PLUGIN, GFD = "nvdp-nvidia-device-plugin", "nvdp-nvidia-device-plugin-gpu-feature-discovery"


def recorded(case):
    return yaml.safe_load((PODS / f"{case}.yaml").read_text())["output"]


def three_hosts():
    return load_inventory("seed", hosts={"gpu1": {"role": "server", "gpus": 1},
                                         "gpu2": {"role": "agent", "gpus": 2, "sharing": "none"},
                                         "gpu3": {"role": "agent", "gpus": 1}})


def test_chart_names_of_the_two_daemonsets():
    assert cluster.plugin_daemonsets(cluster.plugin_release(three_hosts())) == (PLUGIN, GFD)
    assert cluster.plugin_daemonsets("ns/nvidia-device-plugin") == ("nvidia-device-plugin",
                                                                    "nvidia-device-plugin-gpu-feature-discovery")


def test_plugin_pod_check_is_the_plugins_own_pod_and_names_it():
    """Both DaemonSets' pods match the label selector, and GFD's pod name even starts with the
    plugin DaemonSet's name: only the owner tells them apart."""
    inv = three_hosts()
    server = facts.Facts(values={"plugin_pods": facts.parse_pods(recorded("plugin-and-gfd"), 0)})
    gpu1, gpu2, gpu3 = (audit.check_plugin_pod(inv, inv.hosts[n], server, server) for n in ("gpu1", "gpu2", "gpu3"))
    assert gpu1.ok and f"{PLUGIN}-4xq7z" in gpu1.evidence and GFD not in gpu1.message + gpu1.evidence
    assert not gpu2.ok and "no device plugin pod on gpu2" in gpu2.message  # only GFD's runs there
    assert f"{GFD}-t6w2n" in gpu2.evidence
    assert not gpu3.ok and f"{PLUGIN}-h8c5v: container nvidia-device-plugin-ctr: CrashLoopBackOff" in gpu3.evidence
    assert "exit code 1" in gpu3.evidence


class KubectlTarget:
    """The server's kubectl, answered from recorded outputs; records every command."""

    def __init__(self, answers):
        self.answers, self.commands = answers, []

    def run(self, command, stdin=None):
        self.commands.append(command)
        for prefix, answer in self.answers:
            if prefix in command:
                return Result(answer() if callable(answer) else answer, "", 0)
        return Result("", "", 0)

    def check(self, command, step, env=None, stdin=None):
        return self.run(command)


def nodes_json(allocatable):
    return json.dumps({"kind": "List", "items": [
        {"metadata": {"name": name, "labels": {}},
         "status": {"capacity": {resource: str(full)}, "allocatable": {resource: str(now)},
                    "conditions": [{"type": "Ready", "status": "True"}]}}
        for name, (resource, full, now) in allocatable.items()]})


def test_the_426_heal_deletes_the_plugins_pod_not_gfds(monkeypatch):
    """gpu1 runs the plugin's pod and GFD's, with the same labels: only the plugin's is restarted."""
    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)
    inv = three_hosts()
    healthy = {"gpu1": ("nvidia.com/gpu.shared", 8, 8), "gpu2": ("nvidia.com/gpu", 2, 2),
               "gpu3": ("nvidia.com/gpu.shared", 8, 8)}
    states = iter([dict(healthy, gpu1=("nvidia.com/gpu.shared", 8, 0)), healthy])
    target = KubectlTarget([("get nodes", lambda: nodes_json(next(states))),
                            ("get pods", recorded("plugin-and-gfd"))])
    ctx = Context(inv=inv, host=inv.hosts["gpu1"], facts=None, target=target, log=lambda line: None)
    cluster.verify_allocatable(ctx)
    deleted = [c for c in target.commands if " delete pod " in c]
    assert deleted == [f"{facts.KUBECTL} delete pod {PLUGIN}-4xq7z -n nvidia-device-plugin"]
    listed = next(c for c in target.commands if "get pods" in c)
    assert "app.kubernetes.io/instance=nvdp" in listed


def test_a_failed_workload_pod_says_how_it_ended():
    target = KubectlTarget([("get job ", json.dumps({"status": {"failed": 1}})),
                            ("get pods", recorded("gpu-test-failed")),
                            ("logs", "[Vector addition of 50000 elements]\n")])
    phase, logs, reason = audit.run_job(target, render.gpu_test_job(three_hosts(), three_hosts().hosts["gpu3"]))
    assert phase == "Failed" and reason == "gpu-test-gpu3-q2w8d: container cuda: Error (exit code 1)"


def test_a_pending_workload_pod_gives_the_schedulers_reason(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    monkeypatch.setattr("time.monotonic", iter(range(0, 10_000, 100)).__next__)
    target = KubectlTarget([("get job ", json.dumps({"status": {"active": 1}})), ("get pods", recorded("unschedulable"))])
    phase, _, reason = audit.run_job(target, render.gpu_test_job(three_hosts(), three_hosts().hosts["gpu1"]), timeout=250)
    assert phase == "Pending" and "Unschedulable: 0/3 nodes are available: 1 Insufficient nvidia.com/gpu" in reason


def test_pod_why_runs_on_a_host_as_the_gpu_test_runs_it():
    """scripts/pod-why.py (this same code) with the host's python3: `NAME PHASE WHY` per pod."""
    script = ROOT / "scripts" / "pod-why.py"
    assert script.resolve() == ROOT / "gpuhub" / "podstatus.py"
    out = subprocess.run([sys.executable, str(script)], input=recorded("image-pull-backoff"), capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("gpu-test-gpu2-m4z9k Pending container cuda: ImagePullBackOff: Back-off pulling image")


def test_gpu_test_job_names_the_gpu_before_the_sample():
    container = render.gpu_test_job(three_hosts(), three_hosts().hosts["gpu2"])["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c", "nvidia-smi -L; exec /cuda-samples/sample"]
    assert container["image"].startswith("nvcr.io/nvidia/k8s/cuda-sample:")


def test_the_hub_image_pulls_are_told_per_node_from_the_hook_pods():
    """While helm waits for Z2JH's pre-install hook: which image each node pulls, or cannot."""
    from gpuhub import pulls
    pods = json.loads((DATA / "hook-pulls" / "two-nodes.json").read_text())["items"]
    assert pulls.describe(pods) == (
        "gpu1 pulling quay.io/jupyter/scipy-notebook:2026-08-24 (image 2 of 4); "
        "gpu2 cannot pull quay.io/jupyter/pytorch-notebook:cuda12-2026-08-24: ImagePullBackOff: Back-off pulling "
        'image "quay.io/jupyter/pytorch-notebook:cuda12-2026-08-24": ErrImagePull: rpc error: code = NotFound desc = '
        'failed to pull and unpack image "quay.io/jupyter/pytorch-notebook:cuda12-2026-08-24": not found')
    done = [dict(pods[0], status={"initContainerStatuses": [{"name": "x", "image": "i", "state": {
        "terminated": {"exitCode": 0, "reason": "Completed"}}}]})]
    assert pulls.describe(done) == "gpu1 has every image"
