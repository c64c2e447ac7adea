"""The entry points as a user runs them: `inv` and `fab` in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testdata import DATA, ROOT

BIN = Path(sys.executable).parent


def run(tool, *args, env=None, cwd=ROOT, scenario="no-systemd"):
    """`tool args` as a user types it, with the test guard on: `inv` tasks meet a recording
    target answering for the recorded machine `scenario` (tests/data/scenarios), never this one."""
    full_env = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root"),
                "GPUHUB_SECRETS": os.environ["GPUHUB_SECRETS"],  # empty: tests/conftest.py
                "GPUHUB_TEST_GUARD": os.environ["GPUHUB_TEST_GUARD"], "PYTHONPATH": os.environ["PYTHONPATH"],
                "GPUHUB_TEST_SCENARIO": str(DATA / "scenarios" / f"{scenario}.yaml")}
    full_env.update(env or {})
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=full_env, capture_output=True, text=True)


def local_commands(guard):
    """What gpuhub ran on the (recording) local machine: only read-only fact scripts may appear."""
    return [c["command"] for c in guard.read("local")]


def only_probes(commands):
    """Fact scripts, `id -u`, and the run lock (a file under /run, taken and released)."""
    return bool(commands) and all(c.startswith("echo '@@gpuhub-") or c == "id -u"
                                  or c.startswith("# gpuhub run lock: ") for c in commands)


def lock_verbs(commands):
    return [c.split()[4] for c in commands if c.startswith("# gpuhub run lock: ")]


SECRETS = {"GPUHUB_GITHUB_CLIENT_ID": "cli-id", "GPUHUB_GITHUB_CLIENT_SECRET": "cli-secret-value"}


def test_inv_list_shows_every_namespace_and_task():
    listed = run("inv", "--list").stdout.split()
    for name in ["render", "plan", "provision", "audit", "k3s.install", "k3s.reset", "k3s.status",
                 "gpu.runtime", "gpu.plugin", "gpu.test", "hub.launch", "hub.check", "hub.status"]:
        assert name in listed


def test_fab_list():
    listed = run("fab", "--list").stdout.split()
    assert {"provision", "plan", "reset", "audit"} <= set(listed)


@pytest.mark.parametrize("task", ["render", "plan", "provision", "audit", "k3s.install", "k3s.reset",
                                  "k3s.status", "gpu.runtime", "gpu.plugin", "gpu.test", "hub.launch",
                                  "hub.check", "hub.status"])
def test_every_task_has_help_and_inventory_option(task):
    result = run("inv", "--help", task)
    assert result.returncode == 0
    assert "--inventory" in result.stdout
    assert "Docstring: none" not in result.stdout


def test_audit_with_a_host_not_in_the_inventory_fails_clearly():
    result = run("inv", "audit", "--hosts", "ssh://nosuch")
    assert result.returncode == 1
    assert "nosuch is not in the inventory" in result.stdout + result.stderr


def test_render_writes_the_artifacts(tmp_path):
    out = tmp_path / "out"
    result = run("inv", "render", "--out", str(out), env=SECRETS)
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((out / "cluster" / "jupyterhub-values.yaml").read_text())
    assert values["hub"]["config"]["GitHubOAuthenticator"]["client_secret"] == "cli-secret-value"
    assert "cli-secret-value" not in result.stdout + result.stderr
    assert (out / "hosts" / "gpu1" / "k3s-config.yaml").exists()


def test_render_with_bad_inventory_exits_1_without_traceback(tmp_path):
    bad = DATA / "inventories" / "bad" / "bad-enum.yaml"
    out = tmp_path / "out"
    result = run("inv", "render", "--inventory", str(bad), "--out", str(out), env=SECRETS)
    assert result.returncode == 1
    assert "hosts.gpu1.role: 'sever' is not one of" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_render_inventory_from_environment(tmp_path):
    result = run("inv", "render", "--out", str(tmp_path / "o"),
                 env=dict(SECRETS, GPUHUB_INVENTORY=str(DATA / "inventories" / "good" / "seed.yaml")))
    assert result.returncode == 0, result.stderr
    assert "note: profile whole_gpu left out" in result.stderr
    assert (tmp_path / "o" / "hosts" / "workstation" / "k3s-config.yaml").exists()


def test_render_without_secrets_names_the_variables(tmp_path):
    result = run("inv", "render", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "GPUHUB_GITHUB_CLIENT_ID and GPUHUB_GITHUB_CLIENT_SECRET" in result.stderr
    assert not (tmp_path / "o").exists()


def test_hub_check_passes_on_the_shipped_example():
    pytest.importorskip("jupyterhub", reason="pip install 'gpuhub[hubcheck]'")
    result = run("inv", "hub.check")
    assert result.returncode == 0, result.stderr
    assert "loads cleanly" in result.stderr


def test_hub_check_fails_on_a_bad_values_file(tmp_path):
    pytest.importorskip("jupyterhub", reason="pip install 'gpuhub[hubcheck]'")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"hub": {"config": {"GitHubOAuthenticator": {"allowed_orgs": ["x"]}}}}))
    result = run("inv", "hub.check", "--values", str(values))
    assert result.returncode == 1
    assert "allowed_orgs" in result.stderr and "allowed_organizations" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_on_a_machine_without_systemd_says_why_steps_are_blocked(local_machine_guard):
    """No GPU, no K3s, no systemd, no secrets (recorded): a plan all the same, changing nothing."""
    result = run("inv", "plan")
    assert result.returncode == 0, result.stderr
    assert "localhost (server)" in result.stdout
    assert "k3s.install  blocked  no systemd on this host" in result.stdout
    assert "hub.launch   blocked  secrets: missing" in result.stdout
    assert run("inv", "plan", "--check").returncode == 2
    data = json.loads(run("inv", "plan", "--json").stdout)
    steps = {s["id"]: s for s in data["hosts"]["localhost"]["steps"]}
    assert set(steps) == {"k3s.install", "gpu.runtime", "gpu.plugin", "hub.launch", "gpu.test"}
    assert set(steps["k3s.install"]) == {"id", "status", "summary", "restarts", "destructive", "reason"}
    assert only_probes(local_commands(local_machine_guard))


def test_plan_on_a_workstation_with_systemd_and_a_gpu(local_machine_guard):
    """A developer's machine (recorded): systemd and a working driver, so K3s and the toolkit
    would be installed; the plan only reads."""
    result = run("inv", "plan", scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert "write /etc/rancher/k3s/config.yaml; install K3s" in result.stdout
    assert "install NVIDIA container toolkit" in result.stdout
    assert only_probes(local_commands(local_machine_guard))


def test_provision_changes_nothing_while_any_step_is_blocked(local_machine_guard):
    """K3s could be installed here, but the hub's secrets are unset: every blocker is listed
    and no command but the probes ran (no half-provisioned machine)."""
    result = run("inv", "provision", scenario="workstation")
    assert result.returncode == 1
    assert "no host was changed" in result.stderr
    assert "localhost: hub.launch: secrets: missing github_client_id, github_client_secret" in result.stderr
    assert "GPUHUB_GITHUB_CLIENT_ID and GPUHUB_GITHUB_CLIENT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
    assert only_probes(local_commands(local_machine_guard))
    assert lock_verbs(local_commands(local_machine_guard)) == ["acquire", "release"]


def test_plan_takes_no_lock(local_machine_guard):
    assert run("inv", "plan", scenario="workstation").returncode == 0
    assert lock_verbs(local_commands(local_machine_guard)) == []


def test_provision_lists_every_blocker(local_machine_guard):
    result = run("inv", "provision")
    assert result.returncode == 1
    assert "localhost: k3s.install: no systemd on this host" in result.stderr
    assert "localhost: hub.launch: secrets: missing" in result.stderr
    assert only_probes(local_commands(local_machine_guard))


def test_a_single_step_needs_only_its_own_preconditions(local_machine_guard):
    """`inv k3s.install` with the hub's secrets unset: the hub is not its business."""
    result = run("inv", "k3s.install", "--plan", scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert "k3s.install  change" in result.stdout and "hub.launch" not in result.stdout


def test_a_broken_driver_is_found_not_taken_for_a_cpu_host(local_machine_guard):
    """Two GPUs on the PCI bus, nvidia-smi cannot reach the driver (recorded): blocked, with the fix."""
    result = run("inv", "plan", "--json", scenario="broken-driver", env=SECRETS)
    steps = {s["id"]: s for s in json.loads(result.stdout)["hosts"]["localhost"]["steps"]}
    assert steps["gpu.runtime"]["status"] == "blocked"
    assert steps["gpu.runtime"]["reason"].startswith(
        "2 NVIDIA GPU(s) on the PCI bus, but nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate")
    assert "install the driver, or reboot after the kernel update" in steps["gpu.runtime"]["reason"]
    provision = run("inv", "provision", scenario="broken-driver", env=SECRETS)
    assert provision.returncode == 1 and "no host was changed" in provision.stderr


@pytest.mark.guard_violation_expected
def test_the_guard_refuses_a_change_to_this_machine(local_machine_guard):
    """The guard itself: nothing blocks `inv k3s.install` on the recorded workstation, so gpuhub
    tries to lay down config.yaml, and the recording target refuses and records it."""
    result = run("inv", "k3s.install", scenario="workstation")
    assert result.returncode != 0
    violations = local_machine_guard.read("violations")
    assert violations and violations[0]["what"] == "run a command on"
    assert "TEST GUARD" in result.stderr


def test_fab_with_a_host_not_in_the_inventory():
    result = run("fab", "-H", "gpu1,nosuch", "plan")
    assert result.returncode == 1
    assert "not in the inventory" in result.stderr and "known hosts: gpu1, gpu2" in result.stderr


@pytest.mark.parametrize("task", ["k3s.status", "hub.status"])
def test_status_tasks_show_state_and_change_nothing(task, local_machine_guard):
    result = run("inv", task, scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert "localhost (server)" in result.stdout
    assert only_probes(local_commands(local_machine_guard))


@pytest.mark.parametrize("value", ["abc", "-5", "0", "１０"])
def test_a_bad_command_timeout_is_one_line_and_exit_1(value):
    result = run("inv", "plan", env={"GPUHUB_COMMAND_TIMEOUT": value})
    assert result.returncode == 1
    assert "GPUHUB_COMMAND_TIMEOUT must be a whole number of seconds" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, env, expected", [
    (["--inventory", ""], {}, "--inventory is given but empty"),
    ([], {"GPUHUB_INVENTORY": ""}, "GPUHUB_INVENTORY is set but empty"),
    (["--inventory", "/dev/zero"], {}, "/dev/zero is not a regular file"),
    ([], {"GPUHUB_SECRETS": "/nonexistent/secrets.yaml"}, "GPUHUB_SECRETS: names /nonexistent/secrets.yaml, which does not exist"),
])
def test_mistaken_paths_are_one_line_and_exit_1(args, env, expected):
    result = run("inv", "plan", *args, env=env)
    assert result.returncode == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("hosts, expected", [
    ("", "-H names no host"), (",", "-H names no host"), ("gpu1,,gpu2", "-H has an empty host name"),
    ("gpu1:notaport", "is not a host name (NAME, NAME:PORT or USER@NAME)"),
    ("gpu1:99999", "port 99999 is not 1 to 65535")])
def test_bad_host_lists_are_one_line_and_exit_1(hosts, expected):
    result = run("fab", "-H", hosts, "plan")
    assert result.returncode == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_fab_reset_never_defaults_to_every_host():
    result = run("fab", "reset", "--yes")
    assert result.returncode == 1 and "`fab reset` needs -H" in result.stderr


@pytest.mark.parametrize("out, message", [
    ("~", "gpuhub: --out '~' starts with '~', which only a shell expands"),
    ("", "gpuhub: --out is given but empty"),
    ("README.md", "gpuhub: --out README.md is a file, not a folder"),
    ("tests/out", "gpuhub: --out tests/out is inside the checkout's tests/ folder"),
])
def test_render_refuses_an_out_it_must_not_use_in_one_line(out, message):
    result = run("inv", "render", "--out", out, env=SECRETS)
    assert result.returncode == 1 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (ROOT / "~").exists() and not (ROOT / "tests" / "out").exists()
