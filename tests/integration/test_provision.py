"""`fab provision` from bare simulated hosts, through the airgap path, as users run it.

gpu1: server, 1 GPU time-sliced x4; gpu2: agent, 2 whole GPUs; gpu3: agent, 1 GPU x4.
gpu1 has a kubectl on PATH that is not K3s's; gpu3's SSH sessions carry proxy variables.
The tests run in order and share the hosts' state: plan on bare hosts, converge, converge again
(nothing changes, nothing restarts), re-plan after inventory edits, template rollback, reset.
"""
import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpuhub.lock import LOCK
from sim.build_bundle import K3S_VERSION, build_bundle
from sim.hardware import give_gpus
from test_scripts_on_hosts import FOREIGN_KUBECTL
from test_simulation import BARE_HOST
from testdata import ROOT, env_file_values

pytestmark = pytest.mark.integration

HOSTS = ("gpu1", "gpu2", "gpu3")
GPUS = {"gpu1": 1, "gpu2": 2, "gpu3": 1}
BIN = Path(sys.executable).parent
UNITS = {"gpu1": "k3s", "gpu2": "k3s-agent", "gpu3": "k3s-agent"}
# pam_env puts /etc/environment into every SSH session: the install script would copy these into
# the unit's env file (k3s install.sh release-1.34, create_env_file).
SESSION_PROXY = b"https_proxy=http://proxy.lab.test:3128\nNO_PROXY=localhost\n"


def inventory(bundle, **changes):
    data = {
        "gpu": {"replicas": 4},
        "hub": {"hostname": "hub.lab.test", "letsencrypt_email": "admin@lab.test",
                "github": {"organizations": ["lab"]}, "admin_users": ["alice"]},
        "hosts": {"gpu1": {"role": "server", "address": "10.250.0.11", "gpus": 1},
                  "gpu2": {"role": "agent", "gpus": 2, "sharing": "none"},
                  "gpu3": {"role": "agent", "gpus": 1}},
        "airgap": {"k3s_binary": str(bundle["k3s"]), "k3s_install_script": str(bundle["install_script"]),
                   "k3s_images": str(bundle["images"]), "helm_binary": str(bundle["helm"]),
                   "plugin_chart": str(bundle["plugin_chart"]), "hub_chart": str(bundle["hub_chart_4.4.0"]),
                   "toolkit_packages": [str(deb) for deb in bundle["toolkit_packages"]]},
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


class Site:
    def __init__(self, hosts, bundle, folder):
        self.hosts, self.bundle, self.folder = hosts, bundle, folder

    def write_inventory(self, **changes) -> Path:
        path = self.folder / "hosts.yaml"
        path.write_text(yaml.safe_dump(inventory(self.bundle, **changes)))
        return path

    def fab_command(self, *args, hosts=HOSTS, inventory_file=None, **env):
        """(argv, environment) of `fab -S ssh_config -H hosts ARGS --inventory FILE`."""
        full_env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}",
                        GPUHUB_GITHUB_CLIENT_ID="sim-client-id", GPUHUB_GITHUB_CLIENT_SECRET="sim-client-secret")
        full_env.update(env)
        chosen = ["-H", ",".join(hosts)] if hosts is not None else []  # None: fab's default, every host
        command = [str(BIN / "fab"), "-S", str(self.hosts.ssh_config), *chosen, *args,
                   "--inventory", str(inventory_file or self.write_inventory())]
        return command, full_env

    def fab(self, *args, hosts=HOSTS, inventory_file=None, cwd=ROOT, **env):
        command, full_env = self.fab_command(*args, hosts=hosts, inventory_file=inventory_file, **env)
        return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)

    def plan(self, inventory_file=None, hosts=HOSTS):
        result = self.fab("plan", "--json", hosts=hosts, inventory_file=inventory_file)
        assert result.returncode == 0, result.stderr
        hosts_planned = json.loads(result.stdout)["hosts"]
        return {name: {s["id"]: s for s in host["steps"]} for name, host in hosts_planned.items()}

    def sh(self, host, command, check=True):
        return self.hosts.run(host, command, check=check)

    def start_times(self):
        return {h: self.sh(h, f"systemctl show -p ExecMainStartTimestampMonotonic {UNITS[h]}").stdout.strip()
                for h in HOSTS}

    def snapshot(self, host):
        """What provisioning would touch, to prove a plan touched nothing."""
        return self.sh(host, "ls -la /etc/rancher /var/lib/rancher /usr/local/bin /var/lib/gpuhub 2>&1; "
                             "systemctl list-units --all 'k3s*' --no-legend; dpkg -l 'nvidia*' 2>&1 | tail -n +6").stdout


def bare_site(testhosts, folder, kind=Site):
    """A `kind` of Site over bare hosts that have their GPUs: the driver's CLI and the PCI bus,
    the one thing gpuhub expects to find and never installs."""
    site = kind(testhosts, build_bundle(folder / "sim"), folder)
    for host in HOSTS:
        testhosts.run(host, BARE_HOST)
        give_gpus(testhosts, host, site.bundle, GPUS[host])
    return site


def module_site(testhosts, tmp_path_factory, label):
    """A module's bare_site, the hosts made bare again after the module's last test."""
    site = bare_site(testhosts, tmp_path_factory.mktemp(label))
    yield site
    for host in HOSTS:
        testhosts.run(host, BARE_HOST, check=False)


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    site = bare_site(testhosts, tmp_path_factory.mktemp("site"))
    testhosts.put("gpu1", FOREIGN_KUBECTL, "/usr/bin/kubectl", 0o755)
    testhosts.put("gpu3", SESSION_PROXY, "/etc/environment", 0o644)
    yield site
    for host in HOSTS:
        testhosts.run(host, BARE_HOST, check=False)


def test_plan_on_bare_hosts_lists_every_change_and_touches_nothing(site):
    before = {h: site.snapshot(h) for h in HOSTS}
    plan = site.plan()
    assert plan["gpu1"]["k3s.install"]["status"] == "change"
    assert f"install K3s {K3S_VERSION} (airgap)" in plan["gpu1"]["k3s.install"]["summary"]
    assert "install helm (airgap)" in plan["gpu1"]["k3s.install"]["summary"]
    assert "copy the node token from gpu1" in plan["gpu2"]["k3s.install"]["summary"]
    for host in HOSTS:
        assert plan[host]["gpu.runtime"]["status"] == "change"
        assert "install NVIDIA container toolkit" in plan[host]["gpu.runtime"]["summary"]
        assert plan[host]["k3s.install"]["restarts"] is False  # nothing runs yet: nothing to kill
    assert plan["gpu1"]["gpu.plugin"]["status"] == "pending"
    assert plan["gpu1"]["hub.launch"]["status"] == "pending"
    assert plan["gpu1"]["gpu.test"]["status"] == "verify"
    assert "gpu.plugin" not in plan["gpu2"]
    assert {h: site.snapshot(h) for h in HOSTS} == before
    check = site.fab("plan", "--check")
    assert check.returncode == 2
    verbose = site.fab("plan", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    # What each change would run, as commands a sysadmin could run by hand: the airgap files first.
    assert f"upload: {site.bundle['k3s']} -> /var/lib/gpuhub/work/k3s (mode 0755)" in verbose.stdout, verbose.stdout
    assert (f"run: env K3S_ROLE=agent K3S_VERSION={K3S_VERSION} K3S_INSTALL_SCRIPT=/var/lib/gpuhub/work/k3s-install.sh "
            "K3S_BINARY=/var/lib/gpuhub/work/k3s") in verbose.stdout, verbose.stdout
    assert "run: env K3S_UNIT=k3s-agent READY_TIMEOUT=120 SERVER_URL=https://10.250.0.11:6443" in verbose.stdout
    assert {h: site.snapshot(h) for h in HOSTS} == before


def test_provision_converges(site):
    result = site.fab("provision", GPUHUB_PROGRESS_SECONDS="1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # Per host and step a start and an end with its duration; every second of a wait, what for.
    for host in HOSTS:
        assert f"{host}: k3s.install: started (" in result.stderr, result.stderr
        assert any(re.fullmatch(rf"{host}: k3s\.install: done in [0-9.]+ s", line) for line in lines), result.stderr
        assert any(re.fullmatch(rf"{host}: restart-k3s: done in [0-9.]+ s", line) for line in lines), result.stderr
    waits = [line for line in lines if re.match(r"gpu[123]: [a-z0-9.-]+: waiting for .* \([0-9.]+ s\)", line)]
    assert any(": restart-k3s: waiting for " in line for line in waits), result.stderr
    assert any(line.startswith("gpu1: gpu.plugin: waiting for helm to deploy nvidia-device-plugin/nvdp, up to 300 s (")
               for line in waits), result.stderr
    assert "\033[" not in result.stderr  # not a terminal: no colour
    assert "gpu2: gpu.test: passed on GPU 0: NVIDIA" in result.stderr
    assert "JupyterHub is up: https://hub.lab.test/" in result.stderr
    assert "sim-client-secret" not in result.stdout + result.stderr
    recap = result.stderr[result.stderr.index("RECAP"):]
    assert all(f"{h}" in recap and "changed" in recap for h in HOSTS)
    nodes = json.loads(site.sh("gpu1", "k3s kubectl get nodes -o json").stdout)["items"]
    allocatable = {n["metadata"]["name"]: n["status"]["allocatable"] for n in nodes}
    assert allocatable["gpu1"]["nvidia.com/gpu.shared"] == "4"
    assert allocatable["gpu2"]["nvidia.com/gpu"] == "2"
    assert allocatable["gpu3"]["nvidia.com/gpu.shared"] == "4"
    assert site.sh("gpu2", "stat -c %a /etc/rancher/k3s/gpuhub-node-token").stdout.strip() == "600"
    # gpu.test and hub.launch used K3s's kubectl, not the one on gpu1's PATH (which got no link).
    assert site.sh("gpu1", "test -e /usr/local/bin/kubectl", check=False).returncode != 0
    # The session's proxies did not reach K3s: its env file holds what gpuhub passed, no more.
    # (pam_env runs once a connection: asked on a new one, not through the multiplexed master)
    fresh = ["ssh", "-F", str(site.hosts.ssh_config), "-S", "none", "gpu3", "env"]
    assert "proxy.lab.test" in subprocess.run(fresh, capture_output=True, text=True, timeout=60).stdout
    env_file = site.sh("gpu3", "cat /etc/systemd/system/k3s-agent.service.env").stdout
    assert env_file_values(env_file) == {"K3S_URL": "https://10.250.0.11:6443",
                                         "K3S_TOKEN_FILE": "/etc/rancher/k3s/gpuhub-node-token"}, env_file
    # The hub's values (no credential in them now, but an overlay may add one) were removed after helm used them.
    assert site.sh("gpu1", "ls /var/lib/gpuhub/work/").stdout.count("values") == 0


def test_second_run_changes_nothing_and_restarts_nothing(site, local_machine_guard):
    """A converged run writes nothing, not even its run locks, and starts no Job: per agent one
    SSH command reads every fact and checks that no other run holds the lock, the server one more
    for helm's records, at the same time (the test guard records every command fabric sends)."""
    started = site.start_times()
    local_machine_guard.clear()
    result = site.fab("provision")
    assert result.returncode == 0, result.stderr
    recap = result.stderr[result.stderr.index("RECAP"):]
    assert "changed" not in recap
    assert "gpu.test: passed" not in result.stderr
    sent = {}
    for record in local_machine_guard.read("remote"):
        if f"touch {LOCK}" not in record["command"]:  # the lock's refresh, every 10 s of a run
            sent.setdefault(record["host"], []).append(record["command"])
    assert sorted(sent) == sorted(HOSTS)
    for host, commands in sent.items():
        # The facts, with a read-only check of the run lock; nothing changes: no lock taken. One
        # command on every host, the server's kubectl calls started side by side in it (Probe.apart).
        assert len(commands) == 1, (host, [c[:80] for c in commands])
        assert sum("gpuhub run lock: check" in c for c in commands) == 1, host
        assert not any("gpuhub run lock: acquire" in c for c in commands), host
        assert not [c for c in commands if "install-file.sh" in c or "gpu-test.sh" in c], host
    plan = site.plan()
    for host, steps in plan.items():
        for step in steps.values():
            assert step["status"] in ("ok", "verify"), (host, step)
    assert site.start_times() == started
    assert site.fab("plan", "--check").returncode == 0


def test_gpus_unhealthy_after_a_restart_are_healed_once(site):
    """NVIDIA/k8s-device-plugin#426, with the simulation's fault switch on gpu3."""
    site.hosts.put("gpu3", b"", "/etc/gpuhub-sim/faults/plugin-unhealthy-after-restart", 0o644)
    try:
        site.sh("gpu3", "systemctl restart k3s-agent")
        plan = None
        for _ in range(20):
            plan = site.plan()
            if plan["gpu1"]["gpu.plugin"]["status"] == "change":
                break
        assert "restart the device plugin pod on gpu3" in plan["gpu1"]["gpu.plugin"]["summary"]
        result = site.fab("provision")
        assert result.returncode == 0, result.stderr
        # The plugin's own pod, not GFD's (same labels, same node): chart 0.20.0 names.
        restarted = [line for line in result.stderr.splitlines() if "restarting " in line]
        assert len(restarted) == 1 and "restarting nvdp-nvidia-device-plugin-" in restarted[0], restarted
        assert "gpu-feature-discovery" not in restarted[0]
        assert site.plan()["gpu1"]["gpu.plugin"]["status"] == "ok"
    finally:
        site.sh("gpu3", "rm -f /etc/gpuhub-sim/faults/plugin-unhealthy-after-restart")


def test_replicas_change_plans_exactly_the_plugin_change(site):
    plan = site.plan(site.write_inventory(gpu__replicas=8))
    changed = {(h, s) for h, steps in plan.items() for s, step in steps.items() if step["status"] == "change"}
    assert changed == {("gpu1", "gpu.plugin")}
    assert "timeslice-8" in plan["gpu1"]["gpu.plugin"]["summary"]
    assert plan["gpu1"]["gpu.plugin"]["restarts"] is False


def test_k3s_version_bump_plans_an_upgrade(site):
    plan = site.plan(site.write_inventory(cluster__k3s_version="v1.37.2+k3s1"))
    for host in HOSTS:
        step = plan[host]["k3s.install"]
        assert f"upgrade K3s {K3S_VERSION} -> v1.37.2+k3s1" in step["summary"]
        assert step["restarts"] is True


def test_runtime_mode_switch_plans_a_restarting_change(site):
    plan = site.plan(site.write_inventory(gpu__runtime="template"))
    for host in HOSTS:
        step = plan[host]["gpu.runtime"]
        assert step["status"] == "change" and "containerd template" in step["summary"]
        assert step["restarts"] is True
    plan = site.plan(site.write_inventory(gpu__runtime="default-runtime"))
    assert plan["gpu2"]["k3s.install"]["restarts"] is True
    assert "update /etc/rancher/k3s/config.yaml" in plan["gpu2"]["k3s.install"]["summary"]


def test_broken_template_is_rolled_back(site, tmp_path):
    # A checkout whose template re-declares a table K3s's base already has (k3s-io/docs#566).
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".git", ".venv", "build", "rendered", "__pycache__"))
    template = checkout / "templates" / "containerd" / "config-v3.toml.tmpl"
    template.write_text(template.read_text() + "\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n")
    started = site.start_times()
    result = site.fab("provision", hosts=("gpu3",), cwd=checkout,
                      inventory_file=site.write_inventory(gpu__runtime="template"))
    assert result.returncode == 1
    assert "gpu3: rolled back /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl" in result.stderr
    assert "k3s-agent exited while starting" in result.stderr and "twice" in result.stderr
    assert site.sh("gpu3", "systemctl is-active k3s-agent").stdout.strip() == "active"
    assert site.sh("gpu3", "test -e /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
                   check=False).returncode != 0
    assert site.start_times()["gpu1"] == started["gpu1"]


def test_unknown_and_unreachable_hosts(site):
    unknown = site.fab("plan", hosts=("gpu1", "gpu9"))
    assert unknown.returncode == 1 and "not in the inventory" in unknown.stderr and "gpu9" in unknown.stderr
    site.sh("gpu3", "systemctl stop ssh.socket ssh.service", check=False)
    try:
        result = site.fab("provision", inventory_file=site.write_inventory())
        assert result.returncode == 1
        recap = result.stderr[result.stderr.index("RECAP"):]
        assert "gpu3" in recap and "unreachable" in recap
        assert "gpu1" in recap and "gpu2" in recap
    finally:
        restart_ssh(site)


def test_host_lost_mid_run_is_reported_while_the_others_finish(site):
    """gpu3 goes off the network while K3s restarts there (slowly); gpu2 has work too."""
    site.sh("gpu2", "echo '# drifted' >> /etc/rancher/k3s/config.yaml")
    site.sh("gpu3", "echo '# drifted' >> /etc/rancher/k3s/config.yaml && "
                    "echo 20 > /etc/gpuhub-sim/faults/slow-start")
    command, env = site.fab_command("provision", GPUHUB_COMMAND_TIMEOUT="12")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, cut = [], False
    try:
        for line in process.stderr:
            lines.append(line)
            if not cut and line.startswith("gpu3: restart-k3s"):
                subprocess.run(["ip", "link", "set", "th-gpu3", "down"], check=True)
                cut = True
        process.wait(timeout=120)
    finally:
        subprocess.run(["ip", "link", "set", "th-gpu3", "up"], check=False)
    stderr = "".join(lines)
    assert cut, stderr
    assert process.returncode == 1
    recap = stderr[stderr.index("RECAP"):]
    assert "gpu2             changed" in recap
    assert "gpu3             unreachable" in recap
    assert "cluster steps" in stderr and "skipped" in stderr
    site.sh("gpu3", "rm -f /etc/gpuhub-sim/faults/slow-start")
    again = site.fab("provision")  # gpu3 back: the run converges
    assert again.returncode == 0, again.stderr


def restart_ssh(site):
    """sshd is down on gpu3: start it again from the machine side of the host (nsenter)."""
    pid = (site.hosts.state / "gpu3" / "pid").read_text().strip()
    leader = subprocess.run(["bash", "-c", f"cat /proc/{pid}/task/*/children | awk '{{print $1; exit}}'"],
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["nsenter", "-t", leader, "-a", "systemctl", "start", "ssh.service"], check=True,
                   capture_output=True)


# A lab's storage, made by hand on the server as a provisioner would have made it: a node-local
# ZFS class (OpenEBS ZFS-LocalPV, zfs.csi.openebs.io: a CSI PV whose handle is the dataset's name
# in the pool) holding alice's home, and a K3s local-path home of bob's on gpu2 (a `local` PV,
# folder <PV name>_<namespace>_<claim> under /var/lib/rancher/k3s/storage: rancher/
# local-path-provisioner v0.0.37 provisioner.go Provision). Claims pre-bound to their volumes.
ZFS_PV = "pvc-7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
BOB_PV = "pvc-0b5e9c3a-1d2e-4f60-8a7b-9c0d1e2f3a4b"


def claimed_volume(pv, storage_class, size, source, user, **spec):
    """A PersistentVolume and the claim pre-bound to it, claim-USER in jhub, as KubeSpawner names
    and annotates its claims (7.0.0 pvc_name_template claim-{user_server}, hub.jupyter.org/username)."""
    return [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
             "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                      "capacity": {"storage": size}, **source, **spec}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": f"claim-{user}", "namespace": "jhub",
                          "annotations": {"hub.jupyter.org/username": user}},
             "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"], "volumeName": pv,
                      "resources": {"requests": {"storage": size}}}}]


BOB_FOLDER = f"/var/lib/rancher/k3s/storage/{BOB_PV}_jhub_claim-bob"
LAB_STORAGE = yaml.safe_dump_all([
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "zfs-homes"},
     "provisioner": "zfs.csi.openebs.io", "parameters": {"fstype": "zfs", "poolname": "tank/homes"}},
    *claimed_volume(ZFS_PV, "zfs-homes", "100Gi", {"csi": {
        "driver": "zfs.csi.openebs.io", "volumeHandle": ZFS_PV, "fsType": "zfs",
        "volumeAttributes": {"openebs.io/poolname": "tank/homes"}}}, "alice"),
    *claimed_volume(BOB_PV, "local-path", "10Gi", {"local": {"path": BOB_FOLDER}}, "bob", nodeAffinity={
        "required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu2"]}]}]}}),
])


def test_reset_keeps_zfs_volumes_in_place_and_records_whose_they_are(site):
    applied = site.sh("gpu1", f"/usr/local/bin/k3s kubectl apply -f - <<'EOF'\n{LAB_STORAGE}\nEOF")
    assert "persistentvolumeclaim/claim-alice created" in applied.stdout
    # alice's dataset, mounted where ZFS keeps it (outside K3s's folders); bob's local-path home
    site.sh("gpu2", f"mkdir -p /tank/homes/{ZFS_PV} && echo results > /tank/homes/{ZFS_PV}/run.csv && "
                    f"mkdir -p {BOB_FOLDER} && echo notebook > {BOB_FOLDER}/work.ipynb")
    try:
        planned = site.fab("reset", "--plan", "--json", hosts=("gpu2",))
        assert planned.returncode == 0, planned.stderr
        summary = json.loads(planned.stdout)["hosts"]["gpu2"]["steps"][0]["summary"]
        assert ("zfs-homes (zfs.csi.openebs.io, node-local ZFS): 1 volume(s) not deleted by the uninstall: "
                "they stay in place on the node") in summary
        assert ("local-path (rancher.io/local-path, K3s's local-path): 1 volume(s) under "
                "/var/lib/rancher/k3s/storage, which the uninstall deletes: backed up first") in summary
        result = site.fab("reset", "--yes", hosts=("gpu2",))
        assert result.returncode == 0, result.stderr
        assert site.sh("gpu2", f"cat /tank/homes/{ZFS_PV}/run.csv").stdout == "results\n"
        assert site.sh("gpu2", f"cat /var/backups/gpuhub/*/storage/{BOB_FOLDER.rsplit('/', 1)[1]}/work.ipynb"
                       ).stdout == "notebook\n"
        record_file = site.sh("gpu2", "ls /var/backups/gpuhub/*/users-volumes.json").stdout.strip()
        assert site.sh("gpu2", f"stat -c %a {record_file}").stdout.strip() == "600"
        record = json.loads(site.sh("gpu2", f"cat {record_file}").stdout)
        whose = {v["username"]: (v["persistent_volume"], v["volume_handle"], v["after_reset"]) for v in record["volumes"]}
        assert whose == {"alice": (ZFS_PV, ZFS_PV, "in-place"), "bob": (BOB_PV, None, "backed-up")}
        assert site.sh("gpu2", "test -e /var/lib/gpuhub/work/users-volumes.json", check=False).returncode != 0
    finally:
        site.sh("gpu2", "rm -rf /tank", check=False)


def test_reset_keeps_users_data_and_a_second_reset_does_nothing(site):
    site.sh("gpu3", "mkdir -p /var/lib/rancher/k3s/storage/pvc-alice && echo notebook > "
                    "/var/lib/rancher/k3s/storage/pvc-alice/work.ipynb")
    refused = site.fab("reset", hosts=("gpu3",))
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert site.sh("gpu3", "systemctl is-active k3s-agent").stdout.strip() == "active"
    result = site.fab("reset", "--yes", hosts=("gpu3",))
    assert result.returncode == 0, result.stderr
    assert site.sh("gpu3", "cat /var/backups/gpuhub/*/storage/pvc-alice/work.ipynb").stdout == "notebook\n"
    assert site.sh("gpu3", "test -e /usr/local/bin/k3s", check=False).returncode != 0
    again = site.fab("reset", "--yes", hosts=("gpu3",))
    assert again.returncode == 0
    assert "K3s is not installed" in again.stderr
