"""The SSH test-host harness itself (tests/hosts/up.sh, down.sh and the `testhosts` fixture)."""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from testdata import on_this_machine

pytestmark = pytest.mark.integration

PROBE_UNIT = """\
[Unit]
Description=gpuhub test-host probe

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def test_hosts_answer_over_ssh_with_own_hostname_and_address(testhosts):
    assert testhosts.names == ["gpu1", "gpu2", "gpu3"]
    assert [testhosts.address(n) for n in testhosts.names] == [
        "10.250.0.11", "10.250.0.12", "10.250.0.13"]
    for name in testhosts.names:
        out = testhosts.run(name, "hostname; ip -4 -o addr show dev eth0").stdout.splitlines()
        assert out[0] == name
        assert f" {testhosts.address(name)}/24 " in out[1]
        # fabric reads the same ssh_config (HostName, User, IdentityFile; host key checked)
        conn = testhosts.connection(name)
        assert conn.host == testhosts.address(name)
        assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == name


def test_systemd_is_pid1_and_runs_a_custom_unit(testhosts):
    for name in testhosts.names:
        comm, state = testhosts.run(
            name, "cat /proc/1/comm; systemctl is-system-running", check=False).stdout.split()
        assert comm == "systemd"
        assert state in ("running", "degraded"), f"{name}: systemd is {state}"

    unit = "/etc/systemd/system/gpuhub-probe.service"
    testhosts.put("gpu1", PROBE_UNIT.encode(), unit, 0o644)
    try:
        assert testhosts.run("gpu1", f"stat -c %a {unit}").stdout.strip() == "644"
        testhosts.run("gpu1", "systemctl daemon-reload && systemctl enable --now gpuhub-probe")
        assert testhosts.run("gpu1", "systemctl is-active gpuhub-probe").stdout.strip() == "active"
        assert testhosts.run("gpu1", "systemctl is-enabled gpuhub-probe").stdout.strip() == "enabled"
        # the unit's process lives in gpu1's own cgroup tree, not shared with other hosts
        cgroup = testhosts.run(
            "gpu1", "cat /proc/$(systemctl show -P MainPID gpuhub-probe)/cgroup").stdout
        assert "/system.slice/gpuhub-probe.service" in cgroup
        assert testhosts.run("gpu2", "systemctl is-active gpuhub-probe",
                             check=False).stdout.strip() == "inactive"

        testhosts.run("gpu1", "systemctl disable --now gpuhub-probe")
        res = testhosts.run("gpu1", "systemctl is-active gpuhub-probe", check=False)
        assert res.stdout.strip() == "inactive"
        assert testhosts.run("gpu1", "systemctl is-enabled gpuhub-probe",
                             check=False).stdout.strip() == "disabled"
    finally:
        testhosts.run("gpu1", f"systemctl disable --now gpuhub-probe; rm -f {unit};"
                      " systemctl daemon-reload", check=False)


def test_files_stay_on_their_host(testhosts, tmp_path):
    token = uuid.uuid4().hex
    paths = [f"/etc/rancher/gpuhub-probe-{token}", f"/usr/local/bin/gpuhub-probe-{token}",
             f"/var/lib/rancher/gpuhub-probe-{token}", f"/tmp/gpuhub-probe-{token}"]
    local = tmp_path / "probe"
    local.write_text(token)
    try:
        for path in paths:
            testhosts.put("gpu1", local, path, 0o755)
        assert testhosts.run("gpu1", ["cat", *paths]).stdout == token * len(paths)
        assert testhosts.run("gpu1", ["stat", "-c", "%a", paths[1]]).stdout.strip() == "755"
        for name in ("gpu2", "gpu3"):
            res = testhosts.run(name, ["ls", "-d", *paths], check=False)
            assert res.returncode != 0 and res.stdout == "", f"{name} sees gpu1's files"
        for path in paths:
            assert not Path(path).exists(), f"this machine sees gpu1's {path}"
    finally:
        testhosts.run("gpu1", ["rm", "-f", *paths], check=False)


def test_hosts_reach_each_other_over_the_bridge(testhosts):
    """gpu2 -> gpu1:8765 over TCP, a port the simulated K3s does not use."""
    token = uuid.uuid4().hex
    addr = testhosts.address("gpu1")
    testhosts.put("gpu1", token.encode(), "/srv/probe/token.txt")
    try:
        testhosts.run("gpu1", "systemd-run --unit gpuhub-http-probe --collect"
                      f" python3 -m http.server --bind {addr} --directory /srv/probe 8765")
        res = testhosts.run("gpu2", "curl -fsS --retry 50 --retry-delay 0 --retry-connrefused"
                            f" --retry-max-time 20 --max-time 5 http://{addr}:8765/token.txt")
        assert res.stdout == token
        # bound to gpu1's own address only: nothing listens on gpu2's
        res = testhosts.run("gpu2", f"curl -sS --max-time 5 http://{testhosts.address('gpu2')}:8765/",
                            check=False)
        assert res.returncode != 0
    finally:
        testhosts.run("gpu1", "systemctl stop gpuhub-http-probe; rm -rf /srv/probe", check=False)


# ---------------------------------------------------------------- up/down leave nothing behind

# A host set of its own next to the session's: own bridge, own namespace names, and addresses
# in 10.250.0.192/26 (the more specific route wins over the session bridge's 10.250.0.0/24).
ISOLATED = {
    "TESTHOSTS_BRIDGE": "thbr9",
    "TESTHOSTS_NETNS_PREFIX": "th-t9-",
    "TESTHOSTS_SUBNET": "10.250.0",
    "TESTHOSTS_PREFIXLEN": "26",
    "TESTHOSTS_BRIDGE_ADDR": "10.250.0.193",
    "TESTHOSTS_OFFSET": "200",
}


def _netns_names() -> list[str]:
    out = subprocess.run(on_this_machine(["ip", "netns", "list"]), capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _alive(pid: int) -> bool:
    """Running and not a zombie (this machine's PID 1 may reap orphans late)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return not re.search(r"^State:\s*Z", status, re.M)


def _pids_in_mntns(mntns: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "ns" / "mnt") == mntns and _alive(int(proc.name)):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _pids_mentioning(marks: list[str]) -> list[int]:
    """Live processes whose command line mentions one of `marks` (never this one)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmdline for m in marks) and _alive(int(proc.name)):
                pids.append(int(proc.name))
    return pids


def test_ns_hosts_up_down_idempotent_and_leave_nothing_behind(tmp_path, testhost_harness):
    h = testhost_harness
    h.require_testhost_tools("ns")
    state = tmp_path / "state"
    env = h.harness_env(state, "ns", **ISOLATED)
    ns = "th-t9-gpu1"
    with h.exclusive_lock(Path("/tmp/gpuhub-testhosts-t9.lock")):   # fixed names: one at a time
        if ns in _netns_names() or _link_exists("thbr9"):
            pytest.fail(f"leftovers of an earlier run: netns {ns} / bridge thbr9; remove them")
        _up_down_leave_nothing_behind(h, state, env, ns)


def _up_down_leave_nothing_behind(h, state, env, ns):
    try:
        h.run_harness(h.UP, "1", env=env, timeout=120)
        second = h.run_harness(h.UP, "1", env=env, timeout=120)            # idempotent
        assert "gpu1 already up" in second.stdout

        hosts = h.SshTestHosts(state)
        assert hosts.names == ["gpu1"] and hosts.address("gpu1") == "10.250.0.201"
        assert hosts.run("gpu1", "hostname").stdout.strip() == "gpu1"
        # a process a test starts on the host: down.sh must stop it too
        sleeper = int(hosts.run("gpu1", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!").stdout)
        sshd = int((state / "gpu1" / "pid").read_text())
        mntns = (state / "gpu1" / "mntns").read_text().strip()
        assert mntns.startswith("mnt:[") and mntns != os.readlink("/proc/self/ns/mnt")
        assert _alive(sshd) and _alive(sleeper)
        assert ns in _netns_names() and _link_exists("thbr9")
        # the ssh multiplex master hosts.run() started (its socket dir: state too long for one)
        cm_dir = (state / "cm-dir").read_text().strip() if (state / "cm-dir").exists() else None
        marks = [str(state)] + ([cm_dir] if cm_dir else [])
        assert _pids_mentioning(marks), "no ssh ControlMaster process found"

        h.run_harness(h.DOWN, env=env, timeout=120)
        h.run_harness(h.DOWN, env=env, timeout=120)                         # idempotent

        assert ns not in _netns_names()
        assert not [n for n in _netns_names() if n.startswith("th-t9-")]
        assert not _link_exists("thbr9") and not _link_exists(ns)
        assert str(state) not in Path("/proc/mounts").read_text()
        assert not _alive(sshd) and not _alive(sleeper)
        assert _pids_in_mntns(mntns) == []
        assert _pids_mentioning(marks) == []
        assert not cm_dir or not Path(cm_dir).exists()
        assert state.is_dir(), "down.sh without --purge keeps the state (keys, host files)"
    finally:
        h.run_harness(h.DOWN, "--purge", env=env, timeout=120)
    assert not state.exists()
