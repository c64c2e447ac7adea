"""The host audit (tests/audit, through `fab audit`) on a cluster of 3 provisioned simulated hosts:
all checks pass; then each fault makes exactly the expected checks fail, with their messages,
and the rest still pass."""
import json
import subprocess
import time

import pytest

from test_provision import HOSTS, Site, bare_site
from test_simulation import BARE_HOST
from testdata import ROOT
from tlscerts import ca_pem, make_ca, make_server_cert

pytestmark = pytest.mark.integration

FAULTS = "/etc/gpuhub-sim/faults"


def failure_lines(stdout):
    """(host, check) of each `FAIL host check: ...` line of the audit's report."""
    return {tuple(line.split()[1:3]) for line in stdout.splitlines() if line.startswith("FAIL ")}


class Audit(Site):
    def audit(self, name, *extra, hosts=HOSTS):
        report = self.folder / f"{name}.json"
        result = self.fab("audit", *extra, "--json-file", str(report), "--ca-file", str(self.folder / "ca.pem"),
                          "--hub-address", self.hosts.address("gpu1"), inventory_file=self.folder / "hosts.yaml",
                          hosts=hosts)
        found = json.loads(report.read_text())["hosts"] if report.exists() else {}
        failed = {(host, check) for host, checks in found.items() for check, f in checks.items() if not f["ok"]}
        return result, failed, found

    def audit_until(self, name, expected, timeout=30):
        """Facts change within a few heartbeats: audit until the failures are the expected ones."""
        deadline = time.monotonic() + timeout
        while True:
            result, failed, found = self.audit(name)
            if failed == expected or time.monotonic() > deadline:
                return result, failed, found
            time.sleep(1)


@pytest.fixture(scope="module")
def cluster(testhosts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    site = bare_site(testhosts, folder, Audit)
    ca = make_ca()
    (folder / "ca.pem").write_bytes(ca_pem(ca))
    cert, key = make_server_cert("hub.lab.test", ca)
    for host in HOSTS:
        testhosts.run(host, f"mkdir -p {FAULTS}")
    # Stands in for the certificate Let's Encrypt would issue to the chart's proxy.
    testhosts.put("gpu1", cert, "/etc/gpuhub-sim/tls/cert.pem", 0o644)
    testhosts.put("gpu1", key, "/etc/gpuhub-sim/tls/key.pem", 0o600)
    provisioned = site.fab("provision")
    assert provisioned.returncode == 0, provisioned.stderr
    yield site
    for host in HOSTS:
        testhosts.run(host, BARE_HOST, check=False)


def test_provisioned_cluster_passes_every_check(cluster):
    junit = cluster.folder / "audit.xml"
    result, failed, found = cluster.audit("healthy", "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<testsuite" in junit.read_text() and 'failures="0"' in junit.read_text()
    assert failed == set()
    assert {"driver", "allocatable", "hub_https", "hub_login", "drift"} <= set(found["gpu1"])
    assert "hub_https" not in found["gpu2"]  # the hub is checked on the server
    assert "gpu1" in result.stdout and "ok, 0 failed" in result.stdout


def test_fab_audit_with_no_hosts_audits_every_inventory_host(cluster):
    result, failed, found = cluster.audit("all-hosts", hosts=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(found) == set(HOSTS) and failed == set()
    assert [line.split()[0] for line in result.stdout.splitlines() if line.strip()] == list(HOSTS)


def test_agents_only_say_the_server_is_read_too(cluster):
    result, failed, found = cluster.audit("agent-only", hosts=("gpu3",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(found) == {"gpu3"}
    assert "note: agent(s) only: the server gpu1's facts are read too" in result.stdout
    plan = cluster.fab("plan", hosts=("gpu3",))
    assert "also reading the server gpu1's facts" in plan.stderr


def test_the_inventory_address_is_the_ssh_host_name_when_the_ssh_config_has_none(cluster):
    """gpu1's Host block without its HostName: fab and the audit reach it at the inventory's
    address (10.250.0.11), with the block's key, user and known_hosts."""
    config = cluster.folder / "ssh_config-no-hostname"
    config.write_text("".join(line for line in cluster.hosts.ssh_config.read_text().splitlines(keepends=True)
                              if line.strip() != f"HostName {cluster.hosts.address('gpu1')}"))
    assert "HostName 10.250.0.11" not in config.read_text()
    command, env = cluster.fab_command("audit", "--json-file", str(cluster.folder / "by-address.json"), hosts=("gpu1",),
                                       inventory_file=cluster.folder / "hosts.yaml")
    command[command.index("-S") + 1] = str(config)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    found = json.loads((cluster.folder / "by-address.json").read_text())["hosts"]["gpu1"]
    assert found["k3s_unit"]["ok"] and "ssh" not in found, result.stdout + result.stderr
    command[command.index("audit"):command.index("--inventory")] = ["plan"]
    planned = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert planned.returncode == 0, planned.stderr


def test_workload_checks_run_pods_only_when_asked(cluster):
    result, failed, found = cluster.audit("workload", "--workload")
    assert result.returncode == 0, result.stdout[-3000:]
    assert failed == set()
    for host in HOSTS:
        assert {"workload_gpu_job", "workload_cpu_profile", "workload_gpu_profile"} <= set(found[host])
    assert "sees no GPU" in found["gpu2"]["workload_cpu_profile"]["message"]
    jobs = cluster.sh("gpu1", "k3s kubectl get jobs -A -o name").stdout
    assert jobs.strip() == ""  # every probe pod was deleted
    _, _, read_only = cluster.audit("read-only")
    assert "workload_gpu_job" not in read_only["gpu1"]


def test_cpu_profile_that_sees_gpus_is_caught(cluster, monkeypatch):
    """Without NVIDIA_VISIBLE_DEVICES=void under the nvidia runtime, a CPU pod sees every GPU
    (NVIDIA/k8s-device-plugin#87): the workload check says so."""
    from gpuhub import audit
    from gpuhub import inventory as inventory_module
    from gpuhub.target import Target
    inv = inventory_module.load(str(cluster.write_inventory()))
    leaky = audit.profile_job(inv, "cpu", inv.hosts["gpu2"])
    leaky["spec"]["template"]["spec"]["containers"][0]["env"] = []
    leaky["spec"]["template"]["spec"]["runtimeClassName"] = "nvidia"  # as a default nvidia runtime would
    monkeypatch.setattr(audit, "profile_job", lambda *args: leaky)
    server = Target.for_connection("gpu1", cluster.hosts.connection("gpu1"))
    finding = audit.check_cpu_profile(inv, inv.hosts["gpu2"], server)
    assert not finding.ok and "sees GPUs it was not given" in finding.message
    assert finding.evidence.count("GPU ") == 2 and "#87" in finding.fix


FAULT_CASES = {
    # name: (host, set up, [(host, clean up)], expected failures)
    "no-driver": ("gpu3", f"touch {FAULTS}/no-driver", [("gpu3", f"rm -f {FAULTS}/no-driver")],
                  {("gpu3", "driver"), ("gpu3", "plugin_pod"), ("gpu3", "allocatable"), ("gpu3", "sharing_labels"),
                   ("gpu3", "drift"), ("gpu1", "drift")}),
    "nvml-failing": ("gpu2", f"touch {FAULTS}/nvml-failing", [("gpu2", f"rm -f {FAULTS}/nvml-failing")],
                     {("gpu2", "driver"), ("gpu2", "plugin_pod"), ("gpu2", "allocatable"),
                      ("gpu2", "sharing_labels"), ("gpu2", "drift"), ("gpu1", "drift")}),
    # nvidia-container-runtime is in nvidia-container-toolkit-base (toolkit v1.17.8 packaging/debian).
    "toolkit-missing": ("gpu3", "dpkg -r nvidia-container-toolkit nvidia-container-toolkit-base >/dev/null && "
                                "systemctl restart k3s-agent",
                        [("gpu3", "dpkg -i /var/lib/gpuhub/work/*.deb >/dev/null && "
                                  "systemctl restart k3s-agent")],
                        {("gpu3", "toolkit"), ("gpu3", "containerd"), ("gpu3", "plugin_pod"), ("gpu3", "allocatable"),
                         ("gpu3", "sharing_labels"), ("gpu3", "drift"), ("gpu1", "drift")}),
    "k3s-stopped": ("gpu3", "systemctl stop k3s-agent", [("gpu3", "systemctl start k3s-agent")],
                    {("gpu3", "k3s_unit"), ("gpu3", "node"), ("gpu3", "drift")}),
    "gpus-unhealthy": ("gpu3", f"touch {FAULTS}/plugin-unhealthy-after-restart && systemctl restart k3s-agent",
                       [("gpu3", f"rm -f {FAULTS}/plugin-unhealthy-after-restart"),
                        ("gpu1", "k3s kubectl rollout restart daemonset/nvdp-nvidia-device-plugin "
                                 "-n nvidia-device-plugin >/dev/null")],
                       {("gpu3", "allocatable"), ("gpu1", "drift")}),
    "hub-not-ready": ("gpu1", f"touch {FAULTS}/hub-never-ready", [("gpu1", f"rm -f {FAULTS}/hub-never-ready")],
                      {("gpu1", "hub_ready"), ("gpu1", "hub_login")}),
    "config-drifted": ("gpu2", "cp -p /etc/rancher/k3s/config.yaml /root/config.yaml.keep && "
                               "echo 'node-label: [drift=yes]' >> /etc/rancher/k3s/config.yaml",
                       [("gpu2", "mv -f /root/config.yaml.keep /etc/rancher/k3s/config.yaml")],
                       {("gpu2", "k3s_config"), ("gpu2", "drift")}),
}


@pytest.mark.parametrize("case", list(FAULT_CASES))
def test_fault_fails_exactly_the_expected_checks(cluster, case):
    host, setup, cleanup, expected = FAULT_CASES[case]
    cluster.sh(host, setup)
    try:
        result, failed, found = cluster.audit_until(case, expected)
        assert failed == expected, (failed, result.stdout[-3000:])
        assert result.returncode == 1
        # The report: one line per failed check, then a summary per host; no pytest internals.
        assert {(h, c.rstrip(":")) for h, c in failure_lines(result.stdout)} == expected, result.stdout
        assert len([line for line in result.stdout.splitlines() if line.strip()]) == len(expected) + len(HOSTS)
        for failed_host, check in expected:
            finding = found[failed_host][check]
            assert finding["message"] and finding["fix"], finding
    finally:
        for where, command in cleanup:
            cluster.sh(where, command)
    _, failed, _ = cluster.audit_until(f"{case}-after", set())
    assert failed == set(), f"the cluster did not recover after {case}: {failed}"


def test_template_removed(cluster):
    converted = cluster.fab("provision", inventory_file=cluster.write_inventory(gpu__runtime="template"))
    assert converted.returncode == 0, converted.stderr
    try:
        _, failed, _ = cluster.audit_until("template-ok", set())
        assert failed == set()
        cluster.sh("gpu2", "rm /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl")
        result, failed, found = cluster.audit_until("template-removed", {("gpu2", "template"), ("gpu2", "drift")})
        assert failed == {("gpu2", "template"), ("gpu2", "drift")}
        assert "missing" in found["gpu2"]["template"]["message"]
    finally:
        back = cluster.fab("provision", inventory_file=cluster.write_inventory())
        assert back.returncode == 0, back.stderr
