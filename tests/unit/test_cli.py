"""The entry points as a user runs them: `inv` and `fab` in a subprocess."""
import json
import re
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
    return bool(commands) and all(c.lstrip("{ ").startswith("echo '@@gpuhub-") or c == "id -u"
                                  or c.startswith("# gpuhub run lock: ") for c in commands)


def lock_verbs(commands):
    """The run lock's scripts sent, on their own or (the first try to take it) inside a fact script."""
    return [verb for c in commands for verb in re.findall(r"# gpuhub run lock: (\w+)", c)]


SECRETS = {"GPUHUB_GITHUB_CLIENT_ID": "cli-id", "GPUHUB_GITHUB_CLIENT_SECRET": "cli-secret-value"}


def test_inv_list_shows_every_namespace_and_task():
    listed = run("inv", "--list").stdout.split()
    for name in ["init", "render", "plan", "provision", "audit", "k3s.install", "k3s.reset", "k3s.status",
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
    github = values["hub"]["config"]["GitHubOAuthenticator"]
    assert "client_id" not in github and "client_secret" not in github
    env = values["hub"]["extraEnv"]
    assert env["GITHUB_CLIENT_SECRET"] == {"valueFrom": {"secretKeyRef": {"name": "gpuhub-github-oauth",
                                                                          "key": "client_secret"}}}
    assert values["hub"]["annotations"]["gpuhub.io/github-oauth-digest"].startswith("sha256:")
    assert not [p for p in out.rglob("*") if p.is_file() and ("cli-secret-value" in p.read_text()
                                                              or "cli-id" in p.read_text())]
    assert "cli-secret-value" not in result.stdout + result.stderr
    assert ("note: cluster/jupyterhub-values.yaml holds no OAuth credential: the hub reads them from Secret "
            "jhub/gpuhub-github-oauth, which hub.launch creates from the local secrets") in result.stderr
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


def test_render_never_needs_the_secrets_and_says_they_are_unset(tmp_path):
    result = run("inv", "render", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((tmp_path / "o" / "cluster" / "jupyterhub-values.yaml").read_text())
    assert values["hub"]["annotations"]["gpuhub.io/github-oauth-digest"].startswith("unset: GPUHUB_GITHUB_CLIENT_ID")
    assert "(unset: GPUHUB_GITHUB_CLIENT_ID, GPUHUB_GITHUB_CLIENT_SECRET)" in result.stderr
    # provision and plan still block on them, naming the variables (test_provision_changes_nothing_...).


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


def test_init_writes_a_starter_for_the_machine_and_never_overwrites(tmp_path, local_machine_guard):
    """The recorded workstation (one H200, uname -n gpu-ws1.lab.example.org): its starter names
    the host and the GPU, and plan refuses it until the placeholders are filled in."""
    out = tmp_path / "site.yaml"
    result = run("inv", "init", "--out", str(out), scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} for gpu-ws1 (NVIDIA GPUs: GH100 [H200 SXM 141GB])" in result.stderr
    assert "hub.hostname, hub.letsencrypt_email, hub.github.organizations, hub.admin_users" in result.stderr
    text = out.read_text()
    assert "#   0000:18:00.0  GH100 [H200 SXM 141GB]  (10de:2335)" in text
    assert yaml.safe_load(text)["hosts"]["gpu-ws1"]["gpus"] == 1
    commands = local_commands(local_machine_guard)
    assert len(commands) == 2 and only_probes(commands)  # read as the login user: no `id -u`, no sudo
    planned = run("inv", "plan", "--inventory", str(out), scenario="workstation")
    assert planned.returncode == 1 and "hub.hostname: placeholder text left in" in planned.stderr
    again = run("inv", "init", "--out", str(out), scenario="workstation")
    assert again.returncode == 1 and out.read_text() == text
    assert f"gpuhub: {out} exists (a file): init never overwrites anything" in again.stderr
    assert "Traceback" not in again.stderr
    shipped = (ROOT / "hosts.yaml").read_text()
    in_checkout = run("inv", "init")  # the checkout's own hosts.yaml is there
    assert in_checkout.returncode == 1 and "hosts.yaml exists" in in_checkout.stderr
    assert (ROOT / "hosts.yaml").read_text() == shipped


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
    # Refused before any lock was taken: the run lock was only checked, with the facts.
    assert lock_verbs(local_commands(local_machine_guard)) == ["check"]


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


@pytest.mark.parametrize("task, thing, missing", [
    ("k3s.status", "K3s", "localhost k3s_unit: K3s is not installed"),
    ("hub.status", "JupyterHub", "localhost hub_ready: JupyterHub is not installed; fix: run `inv hub.launch`")])
def test_status_of_what_is_not_installed_exits_1_and_changes_nothing(task, thing, missing, local_machine_guard):
    result = run("inv", task, scenario="workstation")
    assert result.returncode == 1
    assert "localhost (server)" in result.stdout
    assert f"gpuhub: {thing} is not installed or not healthy" in result.stderr and missing in result.stderr
    assert "Traceback" not in result.stderr
    assert only_probes(local_commands(local_machine_guard))


@pytest.mark.parametrize("task, shown", [("k3s.status", "  node localhost        Ready     v1.37.1+k3s1 "
                                                        "nvidia.com/gpu.shared=8"),
                                          ("hub.status", "  pod proxy-5c8d7f9b4-q7m2n        Running    Ready")])
def test_status_of_what_runs_healthy_exits_0(task, shown, local_machine_guard):
    result = run("inv", task, scenario="running")
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout.splitlines() and "not healthy" not in result.stderr
    assert only_probes(local_commands(local_machine_guard))


# --- the audit of this machine (recorded: tests/data/scenarios) --------------------------------

def audit_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_audit_with_no_hosts_audits_this_machine_one_line_per_failure(local_machine_guard):
    """A workstation with a driver and nothing else: each failed check is one line naming the
    host, the check, what is wrong and the fix (`inv`, this machine being in no inventory); then
    the host's summary. No pytest report."""
    result = run("inv", "audit", scenario="workstation")
    assert result.returncode == 1, result.stderr
    lines = audit_lines(result.stdout)
    failures, summary = lines[:-1], lines[-1]
    assert failures and all(line.startswith("FAIL localhost ") and "; fix: " in line for line in failures)
    failed = summary.split(": ", 1)[1].split(", ")
    assert summary.startswith(f"localhost        2 ok, {len(failed)} failed: ")  # driver, traefik
    assert [line.split()[2].rstrip(":") for line in failures] == failed
    assert "FAIL localhost k3s_version: K3s is not installed (v1.37.1+k3s1 is pinned); fix: run `inv k3s.install`" \
        in lines
    assert "FAIL localhost kubeconfig: there is no kubeconfig: K3s's server has not started here; " \
        "fix: run `inv k3s.install`" in lines
    assert "None" not in result.stdout and "fab -H" not in result.stdout
    assert result.stderr == ""  # nothing of pytest's
    assert only_probes(local_commands(local_machine_guard))


def test_audit_verbose_shows_every_check_with_its_evidence(local_machine_guard):
    result = run("inv", "audit", "-v", scenario="workstation")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ok   localhost driver: driver 570.133.20, 1 x NVIDIA H200"
    assert lines[1] == "       evidence: PCI bus: 1 NVIDIA GPU(s) (0000:18:00.0); nvidia-smi: NVIDIA H200"
    assert "       evidence: /etc/rancher/k3s/k3s.yaml does not exist" in lines


def test_audit_json_on_stdout_the_lines_on_stderr(local_machine_guard, tmp_path):
    result = run("inv", "audit", "--json", scenario="broken-driver")
    assert result.returncode == 1
    findings = json.loads(result.stdout)["hosts"]["localhost"]
    assert all(set(f) == {"ok", "message", "evidence", "fix"} for f in findings.values())
    driver = findings["driver"]
    assert driver["ok"] is False and "couldn't communicate with the NVIDIA driver" in driver["evidence"]
    assert f"FAIL localhost driver: {driver['message']}" in result.stderr
    report = tmp_path / "audit.json"
    to_file = run("inv", "audit", "--json-file", str(report), scenario="broken-driver")
    assert json.loads(report.read_text())["hosts"] == json.loads(result.stdout)["hosts"]
    assert to_file.stdout.startswith("FAIL localhost ")


def test_plain_pytest_audit_keeps_pytests_report(local_machine_guard):
    """`pytest tests/audit --hosts=local://`: pytest's own output, for those who want it."""
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/audit", "--hosts=local://", "-p", "no:cacheprovider"],
                            cwd=ROOT, capture_output=True, text=True, env=dict(
                                os.environ, GPUHUB_TEST_SCENARIO=str(DATA / "scenarios" / "workstation.yaml")))
    assert result.returncode == 1
    assert "short test summary info" in result.stdout and "FAILED tests/audit/test_hosts.py::" in result.stdout
    assert "gpuhub audit" in result.stdout and "localhost        2 ok, 13 failed" in result.stdout
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


# --- `gpuhub`, the installed command (gpuhub/console.py) ------------------------------------------

SEED = DATA / "inventories" / "good" / "seed.yaml"  # one workstation, `local: true`


def test_gpuhub_runs_the_inv_tasks_on_this_machine_from_any_folder(tmp_path, local_machine_guard):
    listed = run("gpuhub", "--list", cwd=tmp_path).stdout.split()
    assert {"render", "plan", "provision", "audit", "k3s.reset", "hub.check"} <= set(listed)
    result = run("gpuhub", "plan", "--inventory", str(SEED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "workstation (server)" in result.stdout
    assert "k3s.install  blocked  no systemd on this host" in result.stdout
    assert only_probes(local_commands(local_machine_guard))
    planned = run("gpuhub", "plan", cwd=tmp_path, env={"GPUHUB_INVENTORY": str(SEED)})
    assert planned.stdout == result.stdout


def test_gpuhub_with_hosts_runs_the_fab_tasks(tmp_path):
    listed = run("gpuhub", "-H", "gpu1", "--list", cwd=tmp_path).stdout.split()
    assert {"provision", "plan", "reset", "audit"} <= set(listed) and "k3s.reset" not in listed
    inventory = ["--inventory", str(ROOT / "hosts.yaml")]
    unknown = run("gpuhub", "-H", "gpu1,nosuch", "plan", *inventory, cwd=tmp_path)
    assert unknown.returncode == 1 and "known hosts: gpu1, gpu2" in unknown.stderr
    refused = run("gpuhub", "--all-hosts", "reset", "--yes", *inventory, cwd=tmp_path)
    assert refused.returncode == 1 and "`gpuhub --all-hosts reset` needs -H" in refused.stderr
    both = run("gpuhub", "-H", "gpu1", "--all-hosts", "plan", *inventory, cwd=tmp_path)
    assert both.returncode == 1 and "give -H or --all-hosts, not both" in both.stderr
    assert "Traceback" not in unknown.stderr + refused.stderr + both.stderr


def test_gpuhub_version_help_and_completion():
    version = run("gpuhub", "--version")
    assert version.returncode == 0 and version.stdout.startswith("gpuhub 0.1.0\n")
    assert "Fabric 3." in version.stdout
    helped = run("gpuhub", "--help").stdout
    assert "--all-hosts" in helped and "Plan only, as --plan" in helped and "provision" in helped
    script = run("gpuhub", "--print-completion-script", "bash").stdout
    assert "complete -F" in script and "gpuhub" in script
    assert "k3s.reset" in run("gpuhub", "--complete", "--", "gpuhub", "k3s").stdout.split()
    on_hosts = run("gpuhub", "--complete", "--", "gpuhub", "-H", "gpu1", "re").stdout.split()
    assert "reset" in on_hosts and "k3s.reset" not in on_hosts


def test_gpuhub_render_writes_rendered_in_the_current_folder(tmp_path):
    """`build/` is setuptools' (pip install . builds there): render's default is rendered/."""
    result = run("gpuhub", "render", "--inventory", str(SEED), cwd=tmp_path, env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rendered" / "hosts" / "workstation" / "k3s-config.yaml").is_file()


@pytest.mark.parametrize("tool, args", [("inv", ["-R", "provision"]), ("inv", ["--dry", "k3s.install"]),
                                         ("gpuhub", ["-R", "provision"])])
def test_invokes_dry_flag_means_plan(tool, args, local_machine_guard):
    """invoke's -R/--dry would make every command return nothing: here it means --plan, with
    facts read for real (the recorded workstation would have K3s installed) and nothing changed."""
    result = run(tool, *args, scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert "k3s.install  change" in result.stdout
    assert "write /etc/rancher/k3s/config.yaml; install K3s" in result.stdout
    commands = local_commands(local_machine_guard)
    assert only_probes(commands) and lock_verbs(commands) == []


def test_probes_run_whatever_invokes_dry_flag_says():
    """The test guard answers probes whatever run.dry says, so this pins the other half: every
    command gpuhub sends overrides run.dry (a run() keyword beats the config: invoke 2.2.1
    runners.py Runner._unify_kwargs_with_config)."""
    from invoke.runners import Result

    from gpuhub.target import Target
    sent = []

    class Runner:
        def run(self, command, **kwargs):
            sent.append(kwargs)
            return Result(stdout="0\n", exited=0)

    Target("gpu1", Runner(), remote=True).run("true")
    assert sent and all(kwargs["dry"] is False for kwargs in sent)


def _checkout_sources(folder, names):
    """What a wheel is built from: not VCS data, virtual environments or build outputs."""
    return [n for n in names if n.startswith(".") or n in ("build", "rendered", "__pycache__")
            or n.endswith(".egg-info") or os.path.exists(os.path.join(folder, n, "pyvenv.cfg"))]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The wheel, built offline with this environment's setuptools from a copy of the checkout
    (pip builds in the source tree), installed alone into a fresh venv that borrows the
    dependencies installed here through a .pth line (a path in a .pth is only appended to
    sys.path: this environment's own .pth files, the editable gpuhub among them, stay unread)."""
    import shutil
    import sysconfig
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=_checkout_sources)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "dist"), str(work / "src")], check=True, capture_output=True)
    wheel, = (work / "dist").glob("gpuhub-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "gpuhub-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the editable gpuhub seen through the .pth is neither reused nor uninstalled.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
                    "--no-compile", str(wheel)], check=True, capture_output=True)
    return venv


def test_the_wheel_installs_and_plans(installed_wheel, tmp_path, local_machine_guard):
    gpuhub = installed_wheel / "bin" / "gpuhub"
    version = run(gpuhub, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("gpuhub 0.1.0\n"), version.stderr
    where = subprocess.run([installed_wheel / "bin" / "python", "-c", "import gpuhub.plan, gpuhub.paths as p; "
                            "print(gpuhub.plan.__file__); print(p.root())"], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(installed_wheel) for p in where), where
    assert {"tasks.py", "fabfile.py", "scripts", "templates", "tests"} <= {p.name for p in Path(where[1]).iterdir()}
    result = run(gpuhub, "plan", "--inventory", str(SEED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "k3s.install  blocked  no systemd on this host" in result.stdout
    assert only_probes(local_commands(local_machine_guard))
    started = run(gpuhub, "init", cwd=tmp_path)  # the recorded machine without GPUs or a name
    assert started.returncode == 0, started.stderr
    assert "# No NVIDIA GPU was found" in (tmp_path / "hosts.yaml").read_text()
    assert "hosts.<this-machine>" in started.stderr and only_probes(local_commands(local_machine_guard))


def test_the_wheel_carries_the_templates_and_the_audit(installed_wheel, tmp_path):
    gpuhub = installed_wheel / "bin" / "gpuhub"
    rendered = run(gpuhub, "render", "--inventory", str(DATA / "inventories" / "good" / "template.yaml"),
                   "--out", str(tmp_path / "out"), cwd=tmp_path, env=SECRETS)
    assert rendered.returncode == 0, rendered.stderr
    assert list((tmp_path / "out" / "hosts").glob("*/containerd/config-v3.toml.tmpl"))
    audit = run(gpuhub, "audit", "--hosts", "ssh://nosuch", "--inventory", str(SEED), cwd=tmp_path)
    assert audit.returncode == 1 and "nosuch is not in the inventory" in audit.stdout + audit.stderr


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
