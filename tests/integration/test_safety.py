"""Do no harm, on the simulated hosts: a full disk is named as such, secrets appear only where they
must, one run at a time per host, and Ctrl-C finishes the change in progress.

gpu1: server, gpu2 and gpu3: agents (as in test_provision). The tests run in order and share the
hosts: full disk on a bare server, then a provision with canary secrets, then locks and Ctrl-C
on the converged cluster; each leaves the cluster converged.
"""
import base64
import json
import os
import secrets
import signal
import subprocess
import time

import pytest

import gpuhub_test_guard as guard
from test_provision import HOSTS, UNITS, bare_site
from test_simulation import BARE_HOST
from testdata import ROOT

pytestmark = pytest.mark.integration

LOCK = "/run/gpuhub/run.lock"
CANARY = "gpuhub-canary-" + secrets.token_hex(12)  # made now: no file holds it beforehand


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    site = bare_site(testhosts, tmp_path_factory.mktemp("safety"))
    yield site
    for host in HOSTS:
        testhosts.run(host, BARE_HOST + f"; rm -f {LOCK}", check=False)


def no_lock_left(site):
    return {h: site.sh(h, f"cat {LOCK}", check=False).stdout for h in HOSTS} == {h: "" for h in HOSTS}


def test_a_full_disk_is_reported_with_its_path_and_leaves_nothing(site):
    site.sh("gpu1", "mkdir -p /etc/rancher/k3s && mount -t tmpfs -o size=8k gpuhub-test-full /etc/rancher/k3s && "
                    "(dd if=/dev/zero of=/etc/rancher/k3s/filler bs=4k count=4 2>/dev/null; true)")
    try:
        result = site.fab("provision", hosts=("gpu1",))
        assert result.returncode == 1
        assert ("no space left on device: the filesystem of /etc/rancher/k3s has 0 KiB free" in result.stderr), \
            result.stderr
        assert "write /etc/rancher/k3s/config.yaml" in result.stderr and "unreachable" not in result.stderr
        assert site.sh("gpu1", "ls -A /etc/rancher/k3s").stdout.split() == ["filler"]  # no staging file left
        assert site.sh("gpu1", "ls -A /tmp | grep -c gpuhub || true").stdout.strip() == "0"
    finally:
        site.sh("gpu1", "umount /etc/rancher/k3s; rm -rf /etc/rancher", check=False)
    assert no_lock_left(site)


def host_files_holding(site, host, text):
    """`owner mode path` of every file on the host holding `text` (its /proc, /sys, /dev aside)."""
    found = site.sh(host, f"grep -rlaF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -- {text} / "
                          "2>/dev/null | xargs -r stat -c '%U %a %n'", check=False).stdout
    return [line.split(" ", 2) for line in found.splitlines() if line.strip()]


def test_secrets_appear_only_in_root_only_files_and_the_clusters_state(site, tmp_path):
    """Provision, plan and audit with a canary OAuth secret; the real node token too. Every byte
    printed, every command string sent to a host (recorded by the test guard) and every argv the
    simulated tools got (their own record, /var/log/gpuhub-sim/argv.log) is searched, then every
    file on the hosts and the files the run wrote locally."""
    guard.clear()
    canary = {"GPUHUB_GITHUB_CLIENT_SECRET": CANARY}
    outputs = [site.fab("provision", **canary)]
    assert outputs[0].returncode == 0, outputs[0].stderr
    outputs.append(site.fab("plan", **canary))
    outputs.append(site.fab("audit", "--json", **canary))  # the findings on stdout: searched too
    token = site.sh("gpu1", "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    assert len(token) > 20
    printed = "".join(o.stdout + o.stderr for o in outputs)
    commands = [c["command"] for c in guard.read("remote")]
    assert len(commands) > 20
    # The API holds a Secret's data base64-encoded (core/v1 Secret.data): that form must not leak either.
    encoded = base64.b64encode(CANARY.encode()).decode()
    for secret in (CANARY, encoded, token, token.split("::server:")[-1]):
        assert secret not in printed
        assert not [c for c in commands if secret in c]
        for host in HOSTS:
            assert secret not in site.sh(host, "cat /var/log/gpuhub-sim/argv.log", check=False).stdout
    # On the hosts: only root-owned 0600 files hold them (the token files, the cluster's own
    # datastore, which keeps the hub's OAuth Secret); nothing in /run, /tmp or gpuhub's work folder.
    # The hub's values hold no credential (they reference the Secret): the simulated datastore
    # keeps the Secret's data as the API gives it, base64, and nothing keeps the plain value.
    where = {}
    for secret, name in ((CANARY, "oauth secret"), (encoded, "oauth secret, base64"), (token, "node token")):
        for host in HOSTS:
            for owner, mode, path in host_files_holding(site, host, secret):
                where.setdefault(name, []).append(f"{host}:{path}")
                assert (owner, mode) == ("root", "600"), (name, host, owner, mode, path)
    assert "oauth secret" not in where, where
    assert where["oauth secret, base64"] == ["gpu1:/var/lib/rancher/k3s/server/sim-cluster.json"]
    assert sorted(where["node token"]) == ["gpu1:/var/lib/rancher/k3s/server/token",
                                           "gpu2:/etc/rancher/k3s/gpuhub-node-token",
                                           "gpu3:/etc/rancher/k3s/gpuhub-node-token"]
    # Locally: the run's own files (pytest's folders, the guard's records, the checkout).
    local = subprocess.run(["grep", "-rlaF", "--exclude-dir=.git", "--exclude-dir=.venv", "--", CANARY,
                            str(site.folder), str(tmp_path), guard.folder(), str(ROOT)],
                           capture_output=True, text=True).stdout.split()
    assert local == []


@pytest.mark.parametrize("fault, value, expected", [
    ("no-driver", "", "1 NVIDIA GPU(s) on the PCI bus, but nvidia-smi: nvidia-smi not found (no NVIDIA driver "
                      "installed): install the driver, or reboot after the kernel update"),
    ("nvidia-smi-hangs", "", "1 NVIDIA GPU(s) on the PCI bus, but nvidia-smi: nvidia-smi did not answer within "
                             "10 s (a hung driver or GPU): install the driver, or reboot"),
    ("pci-gpus", "2", None),
])
def test_the_driver_is_judged_against_the_pci_bus(site, fault, value, expected):
    """gpu3 has one GPU: a missing or hung driver blocks gpu.runtime and the whole run changes
    nothing; a second card on the bus that gpuhub is not given is only a note."""
    site.sh("gpu3", f"mkdir -p /etc/gpuhub-sim/faults && echo '{value}' > /etc/gpuhub-sim/faults/{fault} && "
                    "/etc/gpuhub-sim/pci-view")
    try:
        started = time.monotonic()
        step = site.plan()["gpu3"]["gpu.runtime"]
        assert time.monotonic() - started < 30  # a hung nvidia-smi is cut at 10 s, not the command deadline
        if expected:
            assert step["status"] == "blocked" and step["reason"].startswith(expected), step
            before = site.start_times()
            refused = site.fab("provision")
            assert refused.returncode == 1 and "no host was changed" in refused.stderr
            assert f"gpu3: gpu.runtime: {expected}" in refused.stderr
            assert site.start_times() == before
        else:
            assert step["status"] == "ok"
            assert "1 GPU(s) (nvidia-smi) of 2 on the PCI bus" in step["summary"]
            assert "1 of the 2 NVIDIA GPU(s) on the PCI bus not given to gpuhub" in step["summary"]
    finally:
        site.sh("gpu3", f"rm -f /etc/gpuhub-sim/faults/{fault} && /etc/gpuhub-sim/pci-view")
    assert no_lock_left(site)


def fake_lock(site, host, age_s=0, who="alice@laptop pid 4242", command="fab provision"):
    record = f"id=feedc0de\\nwho={who}\\nstarted=2026-12-01T08:00:00Z\\ncommand={command}\\n"
    site.sh(host, f"mkdir -p /run/gpuhub && printf '{record}' > {LOCK} && touch -d '-{age_s} seconds' {LOCK}")


def test_a_second_run_refuses_while_a_live_run_holds_a_lock(site):
    fake_lock(site, "gpu2")
    before = site.snapshot("gpu1")
    result = site.fab("provision")
    assert result.returncode == 1
    assert "nothing changed: another gpuhub run is changing gpu2: held by alice@laptop pid 4242 since " \
           "2026-12-01T08:00:00Z running `fab provision`" in result.stderr
    assert site.sh("gpu2", f"cat {LOCK}").stdout.startswith("id=feedc0de")  # not ours to remove
    assert site.sh("gpu1", f"cat {LOCK}", check=False).stdout == ""       # ours, released
    assert site.snapshot("gpu1") == before
    # plan, and audits, take no lock: they run while another run holds one.
    assert site.fab("plan").returncode == 0


def test_wait_waits_for_the_lock_and_a_stale_lock_is_taken_over(site):
    fake_lock(site, "gpu2")
    command, env = site.fab_command("provision", "--wait")
    waiting = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        assert waiting.poll() is None
        site.sh("gpu2", f"rm -f {LOCK}")
        _, stderr = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, stderr
    assert "gpu2: waiting for the run lock, held by alice@laptop pid 4242" in stderr
    # A stale lock on a host with something to change is taken over; on a converged host it is
    # left alone (a converged run writes nothing, a lock neither).
    fake_lock(site, "gpu3", age_s=300)
    site.sh("gpu3", "echo '# drifted' >> /etc/rancher/k3s/config.yaml")
    result = site.fab("provision")
    assert result.returncode == 0, result.stderr
    assert "gpu3: took over the run lock of a run that stopped refreshing it" in result.stderr
    assert no_lock_left(site)


def test_ctrl_c_finishes_the_change_in_progress_releases_the_locks_and_a_rerun_converges(site):
    """gpu2's config drifts and its K3s restarts slowly: Ctrl-C once the new config is written.
    The restart still runs (K3s never keeps an untested config), nothing after it starts, the
    locks go, the recap says what was and was not done. A second run meanwhile is refused."""
    for host in ("gpu2", "gpu3"):
        site.sh(host, "echo '# drifted' >> /etc/rancher/k3s/config.yaml")
    site.sh("gpu2", "mkdir -p /etc/gpuhub-sim/faults && echo 6 > /etc/gpuhub-sim/faults/slow-start")
    started = site.start_times()
    command, env = site.fab_command("provision")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, second = [], None
    try:
        for line in process.stderr:
            lines.append(line)
            if line.startswith("gpu2: k3s.install: update /etc/rancher/k3s/config.yaml") and second is None:
                process.send_signal(signal.SIGINT)
                second = site.fab("provision", hosts=("gpu2",))  # while the first one holds gpu2
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        site.sh("gpu2", "rm -f /etc/gpuhub-sim/faults/slow-start")
    stderr = "".join(lines)
    assert second is not None, stderr
    assert second.returncode == 1 and "another gpuhub run is changing gpu2: held by" in second.stderr
    assert "running `fab -S" in second.stderr
    assert process.returncode == 1
    assert "interrupted: finishing the change in progress" in stderr
    # The restart that the written config needs still runs: said so when Ctrl-C came before it
    # started (usual), or it was already under way (the signal met a busy machine late).
    assert ("gpu2: restart-k3s: started (finishing the changes made before Ctrl-C)" in stderr
            or stderr.index("gpu2: restart-k3s: started (") < stderr.index("interrupted: finishing")), stderr
    recap = stderr[stderr.index("RECAP"):]
    assert "RECAP  (interrupted: run it again to finish)" in recap
    assert "done:     k3s.install: update /etc/rancher/k3s/config.yaml" in recap
    assert "not done: gpu.test: run the GPU test Job" in recap
    assert "gpuhub: interrupted" in stderr
    assert "Traceback" not in stderr
    assert no_lock_left(site)
    assert site.sh("gpu2", f"systemctl is-active {UNITS['gpu2']}").stdout.strip() == "active"
    # The version it replaced is kept for a person (or a rollback) to restore.
    assert "# drifted" in site.sh("gpu2", "cat /var/backups/gpuhub/files/etc/rancher/k3s/config.yaml").stdout
    assert site.start_times()["gpu2"] != started["gpu2"]  # restarted with the new config, and up
    again = site.fab("provision")
    assert again.returncode == 0, again.stderr
    plan = json.loads(site.fab("plan", "--json").stdout)
    assert {s["status"] for h in plan["hosts"].values() for s in h["steps"]} <= {"ok", "verify"}
    assert os.path.isdir(site.folder)
