"""The shell steps in scripts/, run for real on the SSH test hosts with the simulated toolchain.

The scripts are uploaded to /var/lib/gpuhub/scripts/ (where the product runs them from) and
given the simulated airgap bundle (tests/sim/) as their inputs: K3s binary + install script +
images, the toolkit .deb, the helm binary, chart archives. gpu1 is the server (1 GPU, time-sliced
x4, so it offers nvidia.com/gpu.shared), gpu2 an agent (2 whole GPUs: nvidia.com/gpu).

The tests run in file order and build on each other (install, join, charts, jobs, template,
reset), as a provisioning run does. The hosts are shared by the whole pytest session: the module
resets them first and leaves them bare (no K3s, toolkit, helm or simulation settings) at its end.
gpu1 also has a kubectl that is not K3s's on PATH; gpu3 gets both a server and an agent unit.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest
import yaml

from sim.build_bundle import K3S_VERSION, build_bundle
from sim.hardware import give_gpus
from test_simulation import PLUGIN_VALUES
from testdata import env_file_values

from gpuhub import facts, render
from gpuhub.inventory import TOOLKIT_PACKAGES

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
REMOTE = "/var/lib/gpuhub/scripts"
BUNDLE = "/root/bundle"
HOSTS = ("gpu1", "gpu2", "gpu3")
USED = ("gpu1", "gpu2")
GPUS = {"gpu1": 1, "gpu2": 2}
SHARING = {"gpu1": "timeslice-4", "gpu2": "exclusive"}
ROLE = {"gpu1": "server", "gpu2": "agent"}
UNIT = {"gpu1": "k3s", "gpu2": "k3s-agent"}
TOKEN_FILE = "/etc/rancher/k3s/gpuhub-node-token"
PLUGIN_NS = "nvidia-device-plugin"
BACKUPS = "/var/backups/gpuhub"
TOOLKIT = " ".join(TOOLKIT_PACKAGES)
# A kubectl already on PATH (a distribution's package, say) that is not K3s's: the install script
# then makes no /usr/local/bin/kubectl link (k3s install.sh release-1.34, create_symlinks).
FOREIGN_KUBECTL = b"#!/bin/sh\necho \"kubectl of the distribution, not K3s's: $*\" >&2\nexit 1\n"


def users_backups(h, host):
    """The users'-volumes backups k3s-reset.sh made (install-file.sh keeps files in BACKUPS/files)."""
    listed = h.sh(host, f"ls {BACKUPS} 2>/dev/null", check=False).stdout.split()
    return [name for name in listed if name != "files"]


class Hosts:
    """The session's test hosts plus helpers to run the uploaded scripts."""

    def __init__(self, testhosts, paths):
        self.t, self.paths = testhosts, paths

    def sh(self, host, command, check=True, timeout=120):
        return self.t.run(host, command, check=check, timeout=timeout)

    def script(self, host, name, timeout=180, stdin=None, **env):
        """Run scripts/NAME on `host` with `env` as its inputs; returns the CompletedProcess."""
        assignments = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        return self.t.run(host, f"{assignments} {REMOTE}/{name}", check=False, timeout=timeout, input=stdin)

    def ok(self, host, name, **env):
        result = self.script(host, name, **env)
        assert result.returncode == 0, f"{name} on {host} exited {result.returncode}:\n" \
                                       f"{result.stdout}\n{result.stderr}"
        return result

    def kubectl_json(self, *args):
        return json.loads(self.sh("gpu1", "k3s kubectl " + shlex.join(args) + " -o json").stdout)

    def exists(self, host, path):
        return self.sh(host, f"test -e {shlex.quote(path)}", check=False).returncode == 0

    def started_at(self, host):
        return self.sh(host, f"systemctl show -p ExecMainStartTimestampMonotonic --value {UNIT[host]}").stdout.strip()

    def active(self, host, unit=None):
        return self.sh(host, f"systemctl is-active {unit or UNIT[host]}", check=False).stdout.strip()

    def upload_scripts(self, host):
        for path in sorted([*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("*.py")]):
            self.t.put(host, path, f"{REMOTE}/{path.name}", 0o755)

    def make_bare(self, host):
        """No K3s, toolkit, helm, simulation settings, bundle or backups on `host`."""
        self.upload_scripts(host)
        for role in ("server", "agent"):  # whichever was installed; the second finds nothing
            reset = self.script(host, "k3s-reset.sh", K3S_ROLE=role, DESTROY_USER_DATA="true")
            assert reset.returncode == 0, reset.stderr
        self.sh(host, f"umount /mnt/small 2>/dev/null; dpkg --purge {TOOLKIT} >/dev/null 2>&1; "
                      f"rm -rf /usr/local/bin/helm /etc/gpuhub-sim /usr/bin/nvidia-smi /usr/bin/kubectl {BUNDLE} "
                      f"{BACKUPS} /etc/systemd/system/k3s-backup.service "
                      "/mnt/small /etc/rancher/k3s /var/lib/rancher/k3s /root/*.yaml /root/*.tmpl; true")


@pytest.fixture(scope="module")
def h(testhosts, tmp_path_factory):
    hosts = Hosts(testhosts, build_bundle(tmp_path_factory.mktemp("sim")))
    for host in HOSTS:  # other modules share these hosts: start from bare ones
        hosts.make_bare(host)
    try:
        yield hosts
    finally:
        for host in HOSTS:
            hosts.make_bare(host)
        for host in HOSTS:
            hosts.sh(host, "rm -rf /var/lib/gpuhub", check=False)


def stage_bundle(h, host):
    """What the caller uploads before the steps run: driver stand-in and airgap files."""
    p = h.paths
    give_gpus(h.t, host, p, GPUS[host])
    h.sh(host, "mkdir -p /etc/gpuhub-sim/faults")
    for deb in p["toolkit_packages"]:
        h.t.put(host, deb, f"{BUNDLE}/{deb.name}", 0o644)
    h.t.put(host, p["k3s"], f"{BUNDLE}/k3s", 0o755)
    h.t.put(host, p["install_script"], f"{BUNDLE}/install.sh", 0o755)
    h.t.put(host, p["images"], f"{BUNDLE}/{p['images'].name}", 0o644)
    if ROLE[host] == "server":
        h.t.put(host, FOREIGN_KUBECTL, "/usr/bin/kubectl", 0o755)
        h.t.put(host, p["helm"], f"{BUNDLE}/helm", 0o755)
        h.t.put(host, p["plugin_chart"], f"{BUNDLE}/nvidia-device-plugin.tgz", 0o644)
        h.t.put(host, p["hub_chart_4.4.0"], f"{BUNDLE}/jupyterhub.tgz", 0o644)


def write_config(h, host):
    labels = ["nvidia.com/gpu.present=true", f"nvidia.com/device-plugin.config={SHARING[host]}"]
    config = {"node-name": host, "node-label": labels}
    if ROLE[host] == "server":
        config.update({"write-kubeconfig-mode": "0600", "disable": ["traefik"]})
    else:
        config.update({"server": f"https://{h.t.address('gpu1')}:6443", "token-file": TOKEN_FILE})
    h.t.put(host, yaml.safe_dump(config).encode(), "/etc/rancher/k3s/config.yaml", 0o600)


def install_env(h, host):
    env = {"K3S_ROLE": ROLE[host], "K3S_VERSION": K3S_VERSION, "K3S_INSTALL_SCRIPT": f"{BUNDLE}/install.sh",
           "K3S_BINARY": f"{BUNDLE}/k3s", "K3S_IMAGES": f"{BUNDLE}/{h.paths['images'].name}"}
    if ROLE[host] == "agent":
        env.update(K3S_URL=f"https://{h.t.address('gpu1')}:6443", K3S_TOKEN_FILE=TOKEN_FILE)
    return env


def job(name, resource, node, runtime_class="nvidia"):
    spec = {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "cuda", "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0",
                            "command": render.GPU_TEST_COMMAND, "resources": {"limits": {resource: 1}}}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"backoffLimit": 0, "template": {"spec": spec}}}


# ------------------------------------------------------------------------------ input checks

def test_bad_input_exits_2_and_changes_nothing(h):
    stage_bundle(h, "gpu2")
    env = dict(install_env(h, "gpu2"), K3S_VERSION=K3S_VERSION.split("+")[0])
    result = h.script("gpu2", "k3s-install.sh", **env)
    assert result.returncode == 2 and "K3S_VERSION" in result.stderr
    no_url = {k: v for k, v in install_env(h, "gpu2").items() if k != "K3S_URL"}
    result = h.script("gpu2", "k3s-install.sh", **no_url)
    assert result.returncode == 2 and "K3S_URL" in result.stderr
    wrong_binary = dict(install_env(h, "gpu2"), K3S_VERSION="v1.34.1+k3s1")  # not the bundle's
    result = h.script("gpu2", "k3s-install.sh", **wrong_binary)
    assert result.returncode == 2 and "K3S_BINARY" in result.stderr and K3S_VERSION in result.stderr
    assert not h.exists("gpu2", "/usr/local/bin/k3s")
    assert not h.exists("gpu2", "/var/lib/rancher/k3s/agent/images")
    result = h.script("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-server")
    assert result.returncode == 2 and "K3S_UNIT" in result.stderr
    result = h.script("gpu2", "toolkit-install.sh", TOOLKIT_PACKAGES="/nope/toolkit.deb")
    assert result.returncode == 2 and "TOOLKIT_PACKAGES" in result.stderr
    assert h.exists("gpu2", f"{BUNDLE}/install.sh")


# ------------------------------------------------------------------------------ toolkit, K3s

def test_toolkit_install_from_package_then_unchanged(h):
    for host in USED:
        stage_bundle(h, host)
        debs = " ".join(f"{BUNDLE}/{deb.name}" for deb in h.paths["toolkit_packages"])
        # dpkg enforces the packages' real Depends: the toolkit alone is refused, nothing installed.
        toolkit = next(d for d in h.paths["toolkit_packages"] if d.name.startswith("nvidia-container-toolkit_"))
        alone = h.script(host, "toolkit-install.sh", TOOLKIT_PACKAGES=f"{BUNDLE}/{toolkit.name}")
        assert alone.returncode == 1 and "dependency problems" in alone.stderr
        assert "nvidia-container-toolkit-base" in alone.stderr and "libnvidia-container-tools" in alone.stderr
        first = h.ok(host, "toolkit-install.sh", TOOLKIT_PACKAGES=debs)
        assert first.stdout == "changed nvidia-container-toolkit 1.17.8-1\n"
        assert h.sh(host, "nvidia-container-runtime --version").stdout.startswith("nvidia-container-runtime version")
        installed = h.sh(host, "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' " + TOOLKIT).stdout
        assert sorted(installed.splitlines()) == sorted(f"{name} 1.17.8-1 install ok installed"
                                                        for name in TOOLKIT.split())
        again = h.ok(host, "toolkit-install.sh", TOOLKIT_PACKAGES=debs)
        assert again.stdout == "unchanged nvidia-container-toolkit\n"


def test_server_fresh_install_does_not_start_then_restart_makes_it_ready(h):
    write_config(h, "gpu1")
    result = h.ok("gpu1", "k3s-install.sh", **install_env(h, "gpu1"))
    lines = result.stdout.splitlines()
    assert f"changed /var/lib/rancher/k3s/agent/images/{h.paths['images'].name}" in lines
    assert f"changed k3s {K3S_VERSION}" in lines
    assert "changed /etc/systemd/system/k3s.service" in lines
    assert h.active("gpu1") != "active"  # never started by the install
    # A kubectl was on PATH: no link to K3s's (the scripts use `k3s kubectl`), the other one kept.
    assert not h.exists("gpu1", "/usr/local/bin/kubectl")
    assert h.sh("gpu1", "readlink /usr/local/bin/crictl").stdout.strip() == "k3s"
    assert h.sh("gpu1", "cat /usr/bin/kubectl").stdout.encode() == FOREIGN_KUBECTL
    assert h.sh("gpu1", "systemctl is-enabled k3s").stdout.strip() == "enabled"
    restart = h.ok("gpu1", "k3s-restart.sh", K3S_UNIT="k3s", NODE_NAME="gpu1", READY_TIMEOUT=60)
    assert restart.stdout == "restarted k3s\nready node/gpu1\n"
    assert h.active("gpu1") == "active"
    assert h.sh("gpu1", "stat -c %a /etc/rancher/k3s/k3s.yaml").stdout.strip() == "600"


# What an SSH session may carry (/etc/environment, a user's shell): the install script copies every
# K3S_*, CONTAINERD_* and proxy variable it is given into the unit's env file (k3s install.sh
# release-1.34, create_env_file).
SESSION = {"HTTP_PROXY": "http://proxy.lab.test:3128", "https_proxy": "http://proxy.lab.test:3128",
           "NO_PROXY": "localhost", "CONTAINERD_HTTP_PROXY": "http://proxy.lab.test:3128",
           "K3S_NODE_NAME": "stray-name", "K3S_TOKEN": "stray-token"}


def test_agent_joins_with_token_file(h):
    # The node token travels over SSH into a 0600 file: never argv, never printed.
    token = h.sh("gpu1", "cat /var/lib/rancher/k3s/server/node-token").stdout.strip()
    h.t.put("gpu2", token.encode() + b"\n", TOKEN_FILE, 0o600)
    write_config(h, "gpu2")
    result = h.ok("gpu2", "k3s-install.sh", **SESSION, **install_env(h, "gpu2"))
    assert f"changed k3s {K3S_VERSION}" in result.stdout.splitlines()
    assert token not in result.stdout + result.stderr
    assert h.active("gpu2") != "active"
    env_file = h.sh("gpu2", "cat /etc/systemd/system/k3s-agent.service.env").stdout
    # Only what gpuhub means K3s to read: not its own inputs, nothing of the session.
    assert env_file_values(env_file) == {"K3S_TOKEN_FILE": TOKEN_FILE,
                                         "K3S_URL": f"https://{h.t.address('gpu1')}:6443"}, env_file
    assert token not in env_file
    restart = h.ok("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent", NODE_NAME="gpu2")
    assert restart.stdout == "restarted k3s-agent\n"
    h.sh("gpu1", "k3s kubectl wait --for=condition=Ready node/gpu2 --timeout=30s")
    assert token not in h.sh("gpu2", "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '").stdout


def test_reinstall_is_unchanged_and_restarts_nothing(h):
    for host in USED:
        before = h.started_at(host)
        assert before not in ("", "0")
        result = h.ok(host, "k3s-install.sh", **install_env(h, host))
        assert result.stdout == (f"unchanged /var/lib/rancher/k3s/agent/images/{h.paths['images'].name}\n"
                                 f"unchanged k3s {K3S_VERSION}\n")
        assert h.started_at(host) == before
        assert h.active(host) == "active"


def test_restart_failure_shows_the_journal(h):
    h.t.put("gpu2", b"", "/etc/gpuhub-sim/faults/k3s-fail-start", 0o644)
    try:
        result = h.script("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent")
        assert result.returncode == 1
        assert "k3s-agent exited while starting" in result.stderr and "fault k3s-fail-start" in result.stderr
    finally:
        h.sh("gpu2", "rm -f /etc/gpuhub-sim/faults/k3s-fail-start")
    h.ok("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent")
    assert h.active("gpu2") == "active"


# ------------------------------------------------------------------------------ helm

def test_helm_install_airgap_then_unchanged(h):
    first = h.ok("gpu1", "helm-install.sh", HELM_BINARY=f"{BUNDLE}/helm")
    assert first.stdout == "changed /usr/local/bin/helm\n"
    assert h.sh("gpu1", "stat -c %a /usr/local/bin/helm").stdout.strip() == "755"
    assert "v3.17.3" in h.sh("gpu1", "helm version").stdout
    again = h.ok("gpu1", "helm-install.sh", HELM_BINARY=f"{BUNDLE}/helm")
    assert again.stdout == "unchanged /usr/local/bin/helm\n"


def test_helm_release_device_plugin_removes_its_values_file(h):
    values = "/root/plugin-values.yaml"
    h.t.put("gpu1", yaml.safe_dump(PLUGIN_VALUES).encode(), values, 0o600)
    result = h.ok("gpu1", "helm-release.sh", RELEASE="nvdp", NAMESPACE=PLUGIN_NS,
                  CHART=f"{BUNDLE}/nvidia-device-plugin.tgz", CHART_VERSION="0.20.0", VALUES_FILE=values)
    assert result.stdout == f"changed release {PLUGIN_NS}/nvdp\n"
    assert not h.exists("gpu1", values)
    stored = json.loads(h.sh("gpu1", f"KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm get values nvdp -n {PLUGIN_NS} "
                                     "-o json").stdout)
    assert stored == PLUGIN_VALUES
    deadline = time.monotonic() + 30
    while True:
        nodes = {n["metadata"]["name"]: n for n in h.kubectl_json("get", "nodes")["items"]}
        offered = (nodes["gpu1"]["status"]["allocatable"].get("nvidia.com/gpu.shared"),
                   nodes.get("gpu2", {}).get("status", {}).get("allocatable", {}).get("nvidia.com/gpu"))
        if offered == ("4", "2"):
            break
        assert time.monotonic() < deadline, f"GPUs not offered: {offered}"
        time.sleep(0.5)


def test_helm_release_failure_still_removes_values_and_bad_input_too(h):
    values = "/root/hub-values.yaml"
    h.t.put("gpu1", b"hub:\n  config:\n    GitHubOAuthenticator:\n      client_secret: s3cret\n", values, 0o600)
    h.t.put("gpu1", b"", "/etc/gpuhub-sim/faults/helm-fail", 0o644)
    try:
        result = h.script("gpu1", "helm-release.sh", RELEASE="jhub", NAMESPACE="jhub",
                          CHART=f"{BUNDLE}/jupyterhub.tgz", CHART_VERSION="4.4.0", VALUES_FILE=values)
    finally:
        h.sh("gpu1", "rm -f /etc/gpuhub-sim/faults/helm-fail")
    assert result.returncode == 1 and "helm failed" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert not h.exists("gpu1", values)
    h.t.put("gpu1", b"a: 1\n", values, 0o644)
    result = h.script("gpu1", "helm-release.sh", RELEASE="Bad_Name", NAMESPACE="jhub",
                      CHART=f"{BUNDLE}/jupyterhub.tgz", CHART_VERSION="4.4.0", VALUES_FILE=values)
    assert result.returncode == 2 and "RELEASE" in result.stderr
    assert not h.exists("gpu1", values)


def test_helm_release_takes_values_on_stdin_and_keeps_them_in_memory_only(h):
    """The product's way: the values (with the OAuth secret) on stdin, into a 0600 file in a
    private folder under /run that the script removes, after success as after a failure."""
    values = json.dumps({"hub": {"config": {"GitHubOAuthenticator": {"client_secret": "s3cret-on-stdin"}}}})
    common = dict(RELEASE="jhub", NAMESPACE="jhub", CHART=f"{BUNDLE}/jupyterhub.tgz", CHART_VERSION="4.4.0",
                  VALUES_BYTES=len(values.encode()))
    result = h.script("gpu1", "helm-release.sh", stdin=values, **common)
    assert result.returncode == 0, result.stderr
    stored = json.loads(h.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm get values jhub -n jhub -o json").stdout)
    assert stored["hub"]["config"]["GitHubOAuthenticator"]["client_secret"] == "s3cret-on-stdin"
    h.t.put("gpu1", b"", "/etc/gpuhub-sim/faults/helm-fail", 0o644)
    try:
        failed = h.script("gpu1", "helm-release.sh", stdin=values, **common)
    finally:
        h.sh("gpu1", "rm -f /etc/gpuhub-sim/faults/helm-fail")
    assert failed.returncode == 1 and "s3cret-on-stdin" not in failed.stdout + failed.stderr
    short = h.script("gpu1", "helm-release.sh", stdin=values[:10], **common)
    assert short.returncode == 1 and "not the" in short.stderr and "announced" in short.stderr
    assert h.sh("gpu1", "ls -d /run/gpuhub-values.* 2>/dev/null | wc -l").stdout.strip() == "0"
    h.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm uninstall jhub -n jhub")


def test_wait_ready_for_the_hub_and_its_timeout(h):
    values = "/root/hub-values.yaml"
    try:
        h.t.put("gpu1", b"{}\n", values, 0o600)
        h.ok("gpu1", "helm-release.sh", RELEASE="jhub", NAMESPACE="jhub", CHART=f"{BUNDLE}/jupyterhub.tgz",
             CHART_VERSION="4.4.0", VALUES_FILE=values)
        ready = h.ok("gpu1", "wait-ready.sh", NAMESPACE="jhub", SELECTOR="component=hub", TIMEOUT=30)
        assert ready.stdout == "ready jhub/component=hub\n"
        missing = h.script("gpu1", "wait-ready.sh", NAMESPACE="jhub", SELECTOR="component=nothing", TIMEOUT=3)
        assert missing.returncode == 1
        h.t.put("gpu1", b"", "/etc/gpuhub-sim/faults/hub-never-ready", 0o644)
        started = time.monotonic()
        stuck = h.script("gpu1", "wait-ready.sh", NAMESPACE="jhub", SELECTOR="component=hub", TIMEOUT=4)
        assert stuck.returncode == 1 and time.monotonic() - started < 30
        assert "not Ready after 4s" in stuck.stderr and "hub-" in stuck.stderr
    finally:
        h.sh("gpu1", "rm -f /etc/gpuhub-sim/faults/hub-never-ready; "
                     "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm uninstall jhub -n jhub", check=False)


# ------------------------------------------------------------------------------ GPU test jobs

def test_gpu_test_succeeds_and_prints_the_log(h):
    h.t.put("gpu1", yaml.safe_dump(job("gpu-test-gpu2", "nvidia.com/gpu", "gpu2")).encode(),
            "/root/gpu-test-gpu2.yaml", 0o644)
    result = h.ok("gpu1", "gpu-test.sh", JOB_FILE="/root/gpu-test-gpu2.yaml", JOB_NAME="gpu-test-gpu2",
                  TIMEOUT=30)
    assert result.stdout.startswith("GPU 0: NVIDIA") and "Test PASSED" in result.stdout
    assert result.stdout.endswith("succeeded job/gpu-test-gpu2\n")
    assert h.kubectl_json("get", "jobs")["items"] == []
    again = h.ok("gpu1", "gpu-test.sh", JOB_FILE="/root/gpu-test-gpu2.yaml", JOB_NAME="gpu-test-gpu2",
                 TIMEOUT=30)
    assert "Test PASSED" in again.stdout


def test_gpu_test_pending_prints_the_schedulers_reason(h):
    # gpu1 offers only nvidia.com/gpu.shared (time-sliced): a whole GPU cannot be scheduled there.
    h.t.put("gpu1", yaml.safe_dump(job("stuck", "nvidia.com/gpu", "gpu1")).encode(), "/root/stuck.yaml", 0o644)
    started = time.monotonic()
    result = h.script("gpu1", "gpu-test.sh", JOB_FILE="/root/stuck.yaml", JOB_NAME="stuck", TIMEOUT=4)
    assert result.returncode == 1 and time.monotonic() - started < 60
    # The PodScheduled condition's message; the FailedScheduling event says the same: said once.
    assert "is Pending: Unschedulable: 0/2 nodes are available: " in result.stderr
    assert result.stderr.count("Insufficient nvidia.com/gpu") == 1  # condition and event: one message
    assert h.kubectl_json("get", "jobs")["items"] == []


def test_gpu_test_failed_job_prints_its_log(h):
    # Without runtimeClassName the pod runs under runc (nvidia is not the default): CUDA fails.
    h.t.put("gpu1", yaml.safe_dump(job("no-runtime", "nvidia.com/gpu", "gpu2", runtime_class=None)).encode(),
            "/root/no-runtime.yaml", 0o644)
    started = time.monotonic()
    result = h.script("gpu1", "gpu-test.sh", JOB_FILE="/root/no-runtime.yaml", JOB_NAME="no-runtime", TIMEOUT=60)
    assert result.returncode == 1 and time.monotonic() - started < 30  # reported at once, not at TIMEOUT
    # How it ended, from the container's terminated state, then the log (no GPU, no nvidia-smi).
    assert "job no-runtime failed: pod no-runtime-" in result.stderr
    assert "is Failed: container cuda: Error (exit code 1); its log:" in result.stderr
    assert "nvidia-smi: not found" in result.stderr and "Failed to allocate device vector A" in result.stderr
    assert h.kubectl_json("get", "jobs")["items"] == []


def test_gpu_test_pod_that_cannot_start_says_why(h):
    """A container's waiting reason (kubelet: containerStatuses[].state.waiting), not the
    scheduler's; and a Job whose pod the API refused (FailedCreate on the Job)."""
    h.sh("gpu2", "touch /etc/gpuhub-sim/faults/image-pull-fails")
    try:
        h.t.put("gpu1", yaml.safe_dump(job("no-image", "nvidia.com/gpu", "gpu2")).encode(), "/root/no-image.yaml", 0o644)
        time.sleep(2.5)  # the agent reports its faults with its next heartbeat (2 s)
        result = h.script("gpu1", "gpu-test.sh", JOB_FILE="/root/no-image.yaml", JOB_NAME="no-image", TIMEOUT=2)
        assert result.returncode == 1
        assert "pod no-image-" in result.stderr and "is Pending: container cuda: ImagePullBackOff: Back-off pulling" \
            in result.stderr
    finally:
        h.sh("gpu2", "rm -f /etc/gpuhub-sim/faults/image-pull-fails")
    h.t.put("gpu1", yaml.safe_dump(job("no-class", "nvidia.com/gpu", "gpu2", runtime_class="nope")).encode(),
            "/root/no-class.yaml", 0o644)
    result = h.script("gpu1", "gpu-test.sh", JOB_FILE="/root/no-class.yaml", JOB_NAME="no-class", TIMEOUT=2)
    assert result.returncode == 1 and "has no pod: Error creating: pods \"no-class-\" is forbidden: pod rejected: " \
        'RuntimeClass "nope" not found' in result.stderr
    assert h.kubectl_json("get", "jobs")["items"] == []


# ------------------------------------------------------------------------------ restart: checked first, bounded

def test_restart_refuses_when_the_server_does_not_answer(h):
    before = h.started_at("gpu2")
    result = h.script("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent", SERVER_URL=f"https://{h.t.address('gpu1')}:6999")
    assert result.returncode == 3
    assert "does not answer from this agent" in result.stderr and "k3s-agent was not restarted" in result.stderr
    assert h.started_at("gpu2") == before


def test_restart_refuses_default_runtime_nvidia_without_the_toolkit(h):
    """K3s would refuse to start (K3s pkg/agent/containerd/config_linux.go: "default runtime nvidia
    was not found"): checked first, nothing restarted."""
    before = h.started_at("gpu2")
    h.sh("gpu2", "mv /usr/bin/nvidia-container-runtime /root/nvidia-container-runtime.away")
    try:
        result = h.script("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent", REQUIRE_RUNTIME="nvidia")
    finally:
        h.sh("gpu2", "mv /root/nvidia-container-runtime.away /usr/bin/nvidia-container-runtime")
    assert result.returncode == 3 and "needs the NVIDIA container toolkit" in result.stderr
    assert h.started_at("gpu2") == before


def test_an_agent_that_cannot_join_is_stopped_at_its_deadline_with_its_journal(h):
    """A K3s agent retries the token every 2 s, forever, and its unit has TimeoutStartSec=0: a
    plain `systemctl restart` would never return. The restart ends at READY_TIMEOUT, saying why."""
    good = h.sh("gpu2", f"cat {TOKEN_FILE}").stdout
    h.t.put("gpu2", b"K10" + b"0" * 64 + b"::server:not-the-token\n", TOKEN_FILE, 0o600)
    started = time.monotonic()
    try:
        result = h.script("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent", READY_TIMEOUT=8, timeout=60)
    finally:
        h.t.put("gpu2", good.encode(), TOKEN_FILE, 0o600)
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert "k3s-agent did not finish starting within 8s" in result.stderr
    assert "Failed to validate connection to cluster" in result.stderr and "401" in result.stderr
    h.ok("gpu2", "k3s-restart.sh", K3S_UNIT="k3s-agent")
    h.sh("gpu1", "k3s kubectl wait --for=condition=Ready node/gpu2 --timeout=30s")


# ------------------------------------------------------------------------------ reset

def test_reset_refuses_when_the_backup_does_not_fit(h):
    mount = h.sh("gpu1", "mkdir -p /mnt/small && mount -t tmpfs -o size=1m none /mnt/small", check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs inside the nspawn host: {mount.stderr.strip()}")
    try:
        h.sh("gpu1", "mkdir -p /var/lib/rancher/k3s/storage/pvc-big && "
                     "head -c 2097152 /dev/urandom > /var/lib/rancher/k3s/storage/pvc-big/data")
        result = h.script("gpu1", "k3s-reset.sh", K3S_ROLE="server", BACKUP_ROOT="/mnt/small/backups")
        assert result.returncode == 1
        assert "refusing" in result.stderr and "DESTROY_USER_DATA" in result.stderr
        assert result.stdout == ""
        assert not h.exists("gpu1", "/mnt/small/backups")
        assert h.exists("gpu1", "/usr/local/bin/k3s") and h.active("gpu1") == "active"
        assert h.exists("gpu1", "/var/lib/rancher/k3s/storage/pvc-big/data")
    finally:
        h.sh("gpu1", "umount /mnt/small; rm -rf /var/lib/rancher/k3s/storage/pvc-big", check=False)


def test_reset_fails_while_k3s_still_runs_after_killall(h):
    # The test host has no iptables: killall's last line (an ip6tables pipeline) exits 127, which
    # says nothing (k3s install.sh release-1.34, create_killall: no set -e). What counts is what
    # still runs: here a K3s agent started by hand, outside systemd, which killall does not stop.
    assert h.sh("gpu2", "command -v ip6tables-restore", check=False).returncode != 0
    h.sh("gpu2", "mkdir -p /var/lib/rancher/k3s/storage/pvc-9 && echo x > /var/lib/rancher/k3s/storage/pvc-9/f")
    h.sh("gpu2", "setsid -f sh -c 'echo $$ > /run/stray-k3s.pid; exec /usr/local/bin/k3s agent --config /dev/null "
                 "--server https://127.0.0.1:9 --token sim-stray-token' >/dev/null 2>&1 </dev/null")
    try:
        result = h.script("gpu2", "k3s-reset.sh", K3S_ROLE="agent")
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""  # no backup, nothing removed
        assert "exit status 127" in result.stderr and "ip6tables-restore" in result.stderr  # killall's tail
        pid = h.sh("gpu2", "cat /run/stray-k3s.pid").stdout.strip()
        assert f"K3s still runs after /usr/local/bin/k3s-killall.sh: process {pid}: " in result.stderr
        assert "/usr/local/bin/k3s agent" in result.stderr and "sim-stray-token" not in result.stderr
        assert h.active("gpu2") != "active"  # killall did stop the unit
        for kept in ("/usr/local/bin/k3s", "/usr/local/bin/k3s-agent-uninstall.sh",
                     "/etc/systemd/system/k3s-agent.service", "/var/lib/rancher/k3s/storage/pvc-9/f"):
            assert h.exists("gpu2", kept), kept
        assert not users_backups(h, "gpu2")
    finally:
        h.sh("gpu2", "kill $(cat /run/stray-k3s.pid); rm -f /run/stray-k3s.pid; "
                     "rm -rf /var/lib/rancher/k3s/storage/pvc-9", check=False)


def test_reset_backs_up_users_volumes_then_second_reset_does_nothing(h):
    h.sh("gpu2", "mkdir -p /var/lib/rancher/k3s/storage/pvc-1_jhub_claim-alice && "
                 "echo 'notebook of alice' > /var/lib/rancher/k3s/storage/pvc-1_jhub_claim-alice/work.ipynb")
    result = h.ok("gpu2", "k3s-reset.sh", K3S_ROLE="agent")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("backed up ") and lines[1:] == ["removed unit k3s-agent", "removed k3s"]
    backup = lines[0].split(" to ", 1)[1]
    assert backup.startswith(f"{BACKUPS}/") and backup.endswith("Z")
    assert h.sh("gpu2", f"cat {backup}/storage/pvc-1_jhub_claim-alice/work.ipynb").stdout == "notebook of alice\n"
    assert h.sh("gpu2", f"stat -c %a {backup}").stdout.strip() == "700"
    for gone in ("/usr/local/bin/k3s", "/var/lib/rancher/k3s", "/usr/local/bin/k3s-agent-uninstall.sh",
                 "/etc/systemd/system/k3s-agent.service"):
        assert not h.exists("gpu2", gone), gone
    assert h.active("gpu2") != "active"
    second = h.ok("gpu2", "k3s-reset.sh", K3S_ROLE="agent")
    assert second.stdout == "unchanged k3s (not installed)\n"


def test_reset_server_destroying_user_data(h):
    h.sh("gpu1", "mkdir -p /var/lib/rancher/k3s/storage/pvc-2 && echo x > /var/lib/rancher/k3s/storage/pvc-2/f")
    # VOLUME_RECORD (which user's volume is which, from the cluster's PVs and PVCs) is kept beside
    # the backups even when nothing is copied: volumes on ZFS or LVM outlive the uninstall.
    h.sh("gpu1", "mkdir -p /var/lib/gpuhub/work && echo '{\"volumes\": []}' > /var/lib/gpuhub/work/record.json")
    bad = h.script("gpu1", "k3s-reset.sh", K3S_ROLE="server", VOLUME_RECORD="/var/lib/gpuhub/work/missing.json")
    assert bad.returncode == 2 and "VOLUME_RECORD '/var/lib/gpuhub/work/missing.json' is not a file" in bad.stderr
    result = h.ok("gpu1", "k3s-reset.sh", K3S_ROLE="server", DESTROY_USER_DATA="true",
                  VOLUME_RECORD="/var/lib/gpuhub/work/record.json")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("skipped backup of ") and lines[-1] == "removed k3s"
    folder, = users_backups(h, "gpu1")
    assert lines[1] == f"recorded users' volumes in {BACKUPS}/{folder}/users-volumes.json"
    assert h.sh("gpu1", f"ls {BACKUPS}/{folder}; stat -c %a {BACKUPS}/{folder}/users-volumes.json").stdout == \
        "users-volumes.json\n600\n"  # the record only: nothing copied
    assert not h.exists("gpu1", "/var/lib/gpuhub/work/record.json")
    h.sh("gpu1", f"rm -r {BACKUPS}/{folder}")
    assert not h.exists("gpu1", "/usr/local/bin/k3s-uninstall.sh")
    assert not h.exists("gpu1", "/usr/local/bin/crictl")
    assert h.sh("gpu1", "cat /usr/bin/kubectl").stdout.encode() == FOREIGN_KUBECTL  # not K3s's: kept
    assert h.ok("gpu1", "k3s-reset.sh", K3S_ROLE="server").stdout == "unchanged k3s (not installed)\n"


def units_probe(h, host):
    """The provisioner's k3s_units fact, probed on `host` for real."""
    probe = facts.host_probes()["k3s_units"]
    result = h.sh(host, probe.command, check=False)
    return probe.parse(result.stdout, result.returncode)


def test_reset_removes_a_server_and_an_agent_unit_but_not_a_unit_of_someone_else(h):
    # A host once an agent, then installed as a server (or the other way round): two units. While
    # another k3s* unit exists, an uninstall script removes only its own unit and exits 0, keeping
    # the binary and all data (k3s install.sh release-1.34, create_uninstall).
    p = h.paths
    h.t.put("gpu3", p["k3s"], f"{BUNDLE}/k3s", 0o755)
    h.t.put("gpu3", p["install_script"], f"{BUNDLE}/install.sh", 0o755)
    h.t.put("gpu3", b"sim-token\n", TOKEN_FILE, 0o600)
    common = {"K3S_VERSION": K3S_VERSION, "K3S_INSTALL_SCRIPT": f"{BUNDLE}/install.sh", "K3S_BINARY": f"{BUNDLE}/k3s"}
    h.ok("gpu3", "k3s-install.sh", K3S_ROLE="agent", K3S_URL=f"https://{h.t.address('gpu1')}:6443",
         K3S_TOKEN_FILE=TOKEN_FILE, **common)
    h.ok("gpu3", "k3s-install.sh", K3S_ROLE="server", **common)
    h.ok("gpu3", "k3s-restart.sh", K3S_UNIT="k3s")
    # An admin's own unit named k3s-*: K3s could not be removed while it exists, so nothing is.
    h.t.put("gpu3", b"[Service]\nExecStart=/bin/true\n", "/etc/systemd/system/k3s-backup.service", 0o644)
    assert units_probe(h, "gpu3") == {"k3s": True, "k3s-agent": True, "k3s-backup": False}
    refused = h.script("gpu3", "k3s-reset.sh", K3S_ROLE="agent", DESTROY_USER_DATA="true")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "refusing" in refused.stderr and "k3s-backup.service" in refused.stderr
    assert h.active("gpu3", "k3s") == "active" and h.exists("gpu3", "/usr/local/bin/k3s-agent-uninstall.sh")
    h.sh("gpu3", "rm /etc/systemd/system/k3s-backup.service")

    result = h.ok("gpu3", "k3s-reset.sh", K3S_ROLE="agent", DESTROY_USER_DATA="true")
    assert result.stdout.splitlines() == ["removed unit k3s-agent", "removed unit k3s", "removed k3s"]
    for gone in ("/usr/local/bin/k3s", "/usr/local/bin/k3s-killall.sh", "/usr/local/bin/k3s-uninstall.sh",
                 "/usr/local/bin/k3s-agent-uninstall.sh", "/usr/local/bin/kubectl", "/etc/systemd/system/k3s.service",
                 "/etc/systemd/system/k3s-agent.service", "/etc/systemd/system/k3s-agent.service.env",
                 "/var/lib/rancher/k3s", "/etc/rancher/k3s"):
        assert not h.exists("gpu3", gone), gone
    assert h.active("gpu3", "k3s") != "active" and units_probe(h, "gpu3") == {}
    assert h.ok("gpu3", "k3s-reset.sh", K3S_ROLE="agent").stdout == "unchanged k3s (not installed)\n"
