"""What K3s really does when a restart cannot work, through `fab provision` on the simulated hosts
(gpu1 server, gpu2 and gpu3 agents, as in test_provision): checked before restarting where it
can be, bounded where it cannot, rolled back with containerd's own log when what containerd
loaded does not work; `default-runtime` mode converged end to end.

The simulation imitates K3s release-1.34 here (tests/sim/README.md): default-runtime naming a
runtime K3s did not find shuts K3s down at start; a template naming a runtime containerd lacks
costs containerd its CRI plugin (logged in containerd.log) while K3s runs on; an agent retries
its token every 2 s, forever.
"""
import json

import pytest

from test_provision import HOSTS, module_site

pytestmark = pytest.mark.integration

FAULTS = "/etc/gpuhub-sim/faults"
CONFIG = "/etc/rancher/k3s/config.yaml"
TEMPLATE = "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    yield from module_site(testhosts, tmp_path_factory, "first-contact")


def converged(site, **changes):
    plan = site.plan(site.write_inventory(**changes))
    return {(h, s): step["status"] for h, steps in plan.items() for s, step in steps.items()
            if step["status"] not in ("ok", "verify")}


def test_adding_a_workstation_gives_its_node_its_share_of_the_cluster_steps(site):
    """A lab with gpu1 and gpu2 adds gpu3 to the inventory and runs `fab -H gpu3 provision`: the
    new node gets its sharing label, its allocatable check and its GPU test, through the server;
    the releases are not touched."""
    two = {"gpu1": {"role": "server", "address": "10.250.0.11", "gpus": 1},
           "gpu2": {"role": "agent", "gpus": 2, "sharing": "none"}}
    first = site.fab("provision", hosts=("gpu1", "gpu2"), inventory_file=site.write_inventory(hosts=two))
    assert first.returncode == 0, first.stderr
    releases = site.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm list -A -o json").stdout
    plan = site.plan(hosts=("gpu3",))
    assert plan["gpu3"]["gpu.plugin"]["status"] == "pending" and plan["gpu3"]["gpu.test"]["status"] == "verify"
    joined = site.fab("provision", hosts=("gpu3",))
    assert joined.returncode == 0, joined.stderr
    assert "gpu3: gpu.plugin: label node gpu3 nvidia.com/device-plugin.config=timeslice-4 (through gpu1)" in joined.stderr
    assert "gpu3: gpu.test: passed on GPU 0" in joined.stderr, joined.stderr
    assert "gpu2: gpu.test" not in joined.stderr  # only the new node is tested
    node = site.sh("gpu1", "k3s kubectl get node gpu3 -o json").stdout
    assert '"nvidia.com/gpu.shared": "4"' in node
    assert site.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm list -A -o json").stdout == releases
    assert converged(site) == {}


@pytest.mark.parametrize("mode", ["default-runtime", "template"])
def test_nvidia_as_default_runtime_converges_end_to_end_and_back(site, mode):
    """Both modes that make nvidia containerd's default, applied for real (restarts checked on
    every node), GPU test passing, then back to the default runtimeclass mode."""
    result = site.fab("provision", inventory_file=site.write_inventory(gpu__runtime=mode))
    assert result.returncode == 0, result.stderr
    assert "gpu2: gpu.test: passed on GPU 0: NVIDIA" in result.stderr, result.stderr
    for host in HOSTS:
        generated = site.sh(host, "cat /var/lib/rancher/k3s/agent/etc/containerd/config.toml").stdout
        assert 'default_runtime_name = "nvidia"' in generated
        config = site.sh(host, f"cat {CONFIG}").stdout
        assert ("default-runtime: nvidia" in config) == (mode == "default-runtime")
        assert (site.sh(host, f"test -e {TEMPLATE}", check=False).returncode == 0) == (mode == "template")
    assert converged(site, gpu__runtime=mode) == {}
    back = site.fab("provision")
    assert back.returncode == 0, back.stderr
    assert converged(site) == {}


def test_default_runtime_k3s_cannot_find_is_rolled_back_and_k3s_keeps_running(site):
    """K3s on gpu3 does not find the runtime (fault no-toolkit): with default-runtime: nvidia it
    would not start at all. The restart fails at once, config.yaml is put back, K3s runs again."""
    before = site.sh("gpu3", f"cat {CONFIG}").stdout
    site.sh("gpu3", f"mkdir -p {FAULTS} && touch {FAULTS}/no-toolkit")
    try:
        result = site.fab("provision", hosts=("gpu3",), inventory_file=site.write_inventory(gpu__runtime="default-runtime"))
    finally:
        site.sh("gpu3", f"rm -f {FAULTS}/no-toolkit")
    assert result.returncode == 1, result.stderr
    assert "k3s-restart: k3s-agent" in result.stderr, result.stderr  # failed to start / exited while starting
    assert "default runtime nvidia was not found" in result.stderr  # K3s's own words, from the journal
    assert f"rolled back {CONFIG} and restarted K3s with them" in result.stderr, result.stderr
    assert site.sh("gpu3", f"cat {CONFIG}").stdout == before
    assert site.sh("gpu3", "systemctl is-active k3s-agent").stdout.strip() == "active"
    fixed = site.fab("provision", hosts=("gpu3",))  # K3s finds the runtime again at its next start
    assert fixed.returncode == 0, fixed.stderr
    assert converged(site) == {}


def test_a_template_naming_a_runtime_containerd_lacks_is_rolled_back_with_containerd_log(site):
    """K3s on gpu3 has no nvidia runtime (fault no-toolkit), and the template makes nvidia the
    default: K3s writes it unchecked, containerd drops its CRI plugin and says so only in its own
    log, K3s runs on with a node that is not Ready. gpuhub sees it on the node, rolls back."""
    site.sh("gpu3", f"mkdir -p {FAULTS} && touch {FAULTS}/no-toolkit")
    try:
        result = site.fab("provision", hosts=("gpu3",), inventory_file=site.write_inventory(gpu__runtime="template"))
    finally:
        site.sh("gpu3", f"rm -f {FAULTS}/no-toolkit")
    assert result.returncode == 1, result.stderr
    assert "node gpu3 is not Ready: container runtime is down: containerd did not load its CRI plugin" in result.stderr, result.stderr
    assert f"gpu3: rolled back {TEMPLATE}" in result.stderr
    assert "containerd.log ends with:" in result.stderr, result.stderr
    assert "no corresponding runtime configured in `containerd.runtimes`" in result.stderr
    assert site.sh("gpu3", f"test -e {TEMPLATE}", check=False).returncode != 0
    fixed = site.fab("provision", hosts=("gpu3",))
    assert fixed.returncode == 0, fixed.stderr
    assert converged(site) == {}


def test_plan_and_audit_with_no_hosts_given_act_on_every_inventory_host(site):
    planned = site.fab("plan", "--json", hosts=None)
    assert planned.returncode == 0, planned.stderr
    assert list(json.loads(planned.stdout)["hosts"]) == ["gpu1", "gpu2", "gpu3"]  # server first
    audited = site.fab("audit", "--json-file", str(site.folder / "all.json"), hosts=None)
    assert set(json.loads((site.folder / "all.json").read_text())["hosts"]) == {"gpu1", "gpu2", "gpu3"}, \
        audited.stdout + audited.stderr
    refused = site.fab("reset", "--yes", hosts=None)
    assert refused.returncode == 1 and "`fab reset` needs -H" in refused.stderr


def test_an_agent_whose_server_does_not_answer_is_not_restarted(site):
    """Checked before the restart: an agent restarted while its server is down would wait for it
    forever (K3s retries every 2 s; TimeoutStartSec=0)."""
    site.sh("gpu3", f"echo '# drifted' >> {CONFIG}")
    drifted = site.sh("gpu3", f"cat {CONFIG}").stdout
    started = site.start_times()["gpu3"]
    site.sh("gpu1", "systemctl stop k3s")
    try:
        result = site.fab("provision", hosts=("gpu3",))
    finally:
        site.sh("gpu1", "systemctl start k3s")
    assert result.returncode == 1, result.stderr
    assert "does not answer from this agent" in result.stderr and "k3s-agent was not restarted" in result.stderr, result.stderr
    assert f"rolled back {CONFIG}" in result.stderr and "restarted K3s with them" not in result.stderr
    assert site.sh("gpu3", f"cat {CONFIG}").stdout == drifted  # the version before this run
    assert site.start_times()["gpu3"] == started
    again = site.fab("provision")
    assert again.returncode == 0, again.stderr
