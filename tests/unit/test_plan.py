"""Steps from given facts to expected changes, and `--plan` proven to run nothing but probes."""
import hashlib
import re

import pytest
from invoke import MockContext, Result

from gpuhub import cli, facts, inventory, plan, render
from gpuhub.secret import digested
from gpuhub.steps import Context, cluster, k3s, runtime
from testdata import DATA, load_inventory

PCI_ONE = [{"slot": "0000:18:00.0", "device": "0x2335", "class": "0x030200"}]
SMI_OK = {"ok": True, "error": "", "gpus": [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-1", "driver": "570.1",
                                            "memory_mib": 143771}]}


def load(name="seed", **changes):
    return load_inventory(name, **changes)


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


NOW = 1796116600  # the server's clock (`date +%s`)


def revision(number, status, chart, version, age_s=3600):
    """One revision as facts.parse_history gives it, `age_s` old by the server's clock."""
    return {"revision": number, "status": status, "chart": chart, "version": version, "updated": NOW - age_s,
            "description": "", "managed": True}


def bare(**over):
    values = {"uid": "0", "systemd": "yes", "os_id": "debian", "k3s_version": None,
              "unit_k3s": {"active": False, "enabled": False}, "unit_k3s_agent": {"active": False, "enabled": False},
              "k3s_config_sha": None, "k3s_config_keys": None, "agent_token_sha": None, "server_token_sha": None, "nvidia_smi": SMI_OK,
              "pci_gpus": PCI_ONE,
              "toolkit": None, "containerd": None, "template_sha": None, "helm_sha": None, "helm_version": None,
              "storage_kib": 0, "nodes": None, "plugin_release": None, "hub_release": None, "now": NOW,
              "plugin_values": None, "hub_values": None, "hub_secret": None}
    values.update(over)
    return facts.Facts(values=values)


def secret_listing(namespace, name, data, labels=None):
    """`kubectl get secrets -n NS --field-selector metadata.name=NAME -o json` of one Secret."""
    import base64
    import json
    item = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "gpuhub"} if labels is None else labels},
            "data": {k: base64.b64encode(str(v).encode()).decode() for k, v in data.items()}}
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [item], "metadata": {"resourceVersion": ""}})


def oauth_secret_fact(inv, secrets, **data_over):
    """The hub_secret fact of gpuhub's own Secret holding `secrets` (or other values)."""
    ref = render.github_secret(inv)
    data = {k: (v.reveal() if hasattr(v, "reveal") else v) for k, v in render.github_secret_data(inv, secrets).items()}
    data.update(data_over)
    return facts.parse_secret(secret_listing(ref["namespace"], ref["name"], data), 0, ref["namespace"], ref["name"])


def converged(inv, host, secrets=None, **over):
    nodes = {h.name: {"ready": True, "labels": {cluster.SHARING_LABEL: h.plugin_config},
                      "capacity": {h.gpu_resource: str(h.allocatable)},
                      "allocatable": {h.gpu_resource: str(h.allocatable)}} for h in inv.gpu_hosts}
    import json
    return bare(k3s_version=inv.cluster["k3s_version"], unit_k3s={"active": True, "enabled": True},
                k3s_config_sha=sha(render.dump(render.k3s_config(inv, host))), toolkit="/usr/bin/nvidia-container-runtime",
                containerd={"runtimes": ["nvidia", "runc"], "default_runtime": "runc"},
                helm_version=inv.cluster["helm_version"], nodes=nodes,
                plugin_values=json.loads(json.dumps(render.device_plugin_values(inv))),
                hub_values=digested(json.loads(json.dumps(render.jupyterhub_values(inv, secrets, render.Notes()))))
                if secrets else None,
                **{"hub_secret": oauth_secret_fact(inv, secrets) if secrets else None, "plugin_release": [revision(1, "deployed", "nvidia-device-plugin", "0.20.0")],
                   "hub_release": [revision(1, "deployed", "jupyterhub", "4.4.0")], **over})


def ctx_for(inv, host_name, fx, secrets=None, server_facts=None, earlier=None):
    host = inv.hosts[host_name]
    return Context(inv=inv, host=host, facts=fx, target=None, server_facts=server_facts or fx, secrets=secrets,
                   earlier=earlier or {})


class TestK3sInstall:
    def test_bare_server(self):
        inv = load()
        p = k3s.plan_install(ctx_for(inv, "workstation", bare()))
        assert p.status == "change"
        assert [c.summary for c in p.changes] == [
            "write /etc/rancher/k3s/config.yaml", f"install K3s {inv.cluster['k3s_version']}",
            f"install helm {inv.cluster['helm_version']}"]
        assert not p.restarts  # nothing running: nothing to kill

    def test_airgap_binaries_for_another_architecture_block_the_install(self):
        """The inventory checks the files against each other; the host's `uname -m` decides."""
        class Airgap:
            def airgap_file(self, key, machine=None):
                return DATA / "inventories" / "files" / "elf-x86_64" if key == "k3s_binary" else None

            def airgap_missing(self, key, machine):
                return ""
        assert k3s.airgap_arch_problem(Airgap(), "x86_64") == ""
        wrong = k3s.airgap_arch_problem(Airgap(), "aarch64")
        assert "is built for x86_64, this host is aarch64: give the arm64 release" in wrong
        assert k3s.airgap_arch_problem(Airgap(), None) == ""  # not read: not judged

    def test_no_systemd_is_blocked(self):
        p = k3s.plan_install(ctx_for(load(), "workstation", bare(systemd=None)))
        assert p.status == "blocked" and "systemd" in p.reason

    def test_converged_is_ok(self):
        inv = load()
        p = k3s.plan_install(ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"])))
        assert p.status == "ok" and p.changes == []

    def test_upgrade_restarts(self):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"])
        fx.values["k3s_version"] = "v1.36.4+k3s1"
        p = k3s.plan_install(ctx_for(inv, "workstation", fx))
        assert [c.summary for c in p.changes] == [f"upgrade K3s v1.36.4+k3s1 -> {inv.cluster['k3s_version']}"]
        assert p.restarts

    def test_agent_needs_the_servers_token(self):
        inv = load("multi-node")
        server = bare(server_token_sha="a" * 64)
        p = k3s.plan_install(ctx_for(inv, "rtx1", bare(agent_token_sha="b" * 64), server_facts=server))
        assert any("copy the node token from head" in c.summary for c in p.changes)
        p = k3s.plan_install(ctx_for(inv, "rtx1", bare(agent_token_sha="a" * 64), server_facts=server))
        assert not any("token" in c.summary for c in p.changes)


class TestK3sReset:
    def test_not_installed_is_ok(self):
        p = k3s.plan_reset(ctx_for(load(), "workstation", bare()))
        assert p.status == "ok" and "not installed" in p.note

    def test_installed_is_one_destructive_change(self):
        fx = bare(k3s_version="v1.33.5+k3s1", k3s_units={"k3s": True}, storage_kib=10)
        p = k3s.plan_reset(ctx_for(load(), "workstation", fx))
        assert len(p.changes) == 1 and p.destructive and p.restarts
        assert re.fullmatch(r"uninstall K3s \(server\); users' volumes \(10 KiB\) backed up to "
                            r"/var/backups/gpuhub/\d{8}T\d{6}Z/ first; storage classes: could not be read .*",
                            p.summary)

    def test_both_roles_units_are_both_planned(self):
        # K3s's uninstall keeps the binary and data while another k3s* unit exists (install.sh
        # create_uninstall): the reset removes both, and says so.
        fx = bare(k3s_version="v1.33.5+k3s1", k3s_units={"k3s": True, "k3s-agent": True})
        p = k3s.plan_reset(ctx_for(load(), "workstation", fx))
        assert p.status == "change"
        assert p.summary.startswith("uninstall K3s (server, and the other K3s unit k3s-agent); ")

    def test_a_unit_that_is_not_k3s_own_blocks(self):
        fx = bare(k3s_version="v1.33.5+k3s1", k3s_units={"k3s": True, "k3s-backup": False})
        p = k3s.plan_reset(ctx_for(load(), "workstation", fx))
        assert p.status == "blocked" and p.changes == []
        assert "k3s-backup.service" in p.reason and "remove or rename it" in p.reason

    def test_a_unit_with_its_uninstall_script_alone_counts_as_installed(self):
        fx = bare(k3s_units={"k3s-agent": True})
        assert k3s.plan_reset(ctx_for(load(), "workstation", fx)).status == "change"


class TestRuntime:
    def test_no_driver_blocks_with_advice(self):
        fx = bare(nvidia_smi={"ok": False, "error": "nvidia-smi not found (no NVIDIA driver installed)", "gpus": []})
        p = runtime.plan_runtime(ctx_for(load(), "workstation", fx))
        assert p.status == "blocked" and "never installs" in p.reason

    def test_more_gpus_than_the_pci_bus_shows_blocks(self):
        inv = load(hosts={"workstation": {"role": "server", "gpus": 2}})
        p = runtime.plan_runtime(ctx_for(inv, "workstation", bare()))
        assert p.status == "blocked"
        assert "gives gpuhub 2 GPU(s), but there are 1 NVIDIA GPU(s) on the PCI bus" in p.reason

    def test_fewer_gpus_than_the_pci_bus_is_a_note(self):
        inv = load()
        two = PCI_ONE + [{"slot": "0000:2a:00.0", "device": "0x2335", "class": "0x030200"}]
        p = runtime.plan_runtime(ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"], pci_gpus=two)))
        assert p.status == "ok" and "1 of the 2 NVIDIA GPU(s) on the PCI bus not given to gpuhub" in p.note

    def test_a_broken_driver_blocks_with_the_pci_count_and_the_fix(self):
        fx = bare(nvidia_smi={"ok": False, "error": "NVIDIA-SMI has failed because it couldn't communicate with "
                                                    "the NVIDIA driver.", "gpus": []})
        p = runtime.plan_runtime(ctx_for(load(), "workstation", fx))
        assert p.status == "blocked"
        assert p.reason.startswith("1 NVIDIA GPU(s) on the PCI bus, but nvidia-smi: NVIDIA-SMI has failed")
        assert "install the driver, or reboot after the kernel update" in p.reason

    def test_a_gpu_the_driver_lost_blocks(self):
        inv = load(hosts={"workstation": {"role": "server", "gpus": 2}})
        two = PCI_ONE + [{"slot": "0000:2a:00.0", "device": "0x2335", "class": "0x030200"}]
        p = runtime.plan_runtime(ctx_for(inv, "workstation", bare(pci_gpus=two)))
        assert p.status == "blocked" and "nvidia-smi lists only 1" in p.reason

    def test_a_host_without_gpus_in_the_inventory_but_on_the_bus_is_ok(self):
        inv = load(hosts={"workstation": {"role": "server", "gpus": 0}})
        p = runtime.plan_runtime(ctx_for(inv, "workstation", bare(nvidia_smi={"ok": False, "error": "x", "gpus": []})))
        assert p.status == "ok" and "not given to gpuhub" in p.note

    def test_toolkit_missing_then_restart_for_detection(self):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"])
        fx.values["toolkit"] = None
        p = runtime.plan_runtime(ctx_for(inv, "workstation", fx))
        assert "install NVIDIA container toolkit" in p.changes[0].summary and p.restarts
        fx.values["toolkit"] = "/usr/bin/nvidia-container-runtime"
        fx.values["containerd"] = {"runtimes": ["runc"], "default_runtime": "runc"}
        p = runtime.plan_runtime(ctx_for(inv, "workstation", fx))
        assert p.changes[0].summary == "restart K3s: its containerd config has no nvidia runtime"

    def test_template_mode_installs_template_with_restart(self):
        inv = load(gpu={"runtime": "template"}, cluster={"k3s_version": "v1.33.5+k3s1"})
        fx = converged(inv, inv.hosts["workstation"])
        p = runtime.plan_runtime(ctx_for(inv, "workstation", fx))
        assert "containerd template" in p.changes[0].summary and p.restarts
        # The restart handler checks what containerd loaded, and rolls the template back otherwise.
        assert p.changes[0].notify == ("restart-k3s",)
        assert "warning" not in p.summary  # v1.33's templates were read

    def test_template_mode_warns_where_the_templates_were_not_checked(self):
        inv = load(gpu={"runtime": "template"}, cluster={"k3s_version": "v1.37.1+k3s1"})
        p = runtime.plan_runtime(ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"])))
        assert "warning: K3s v1.37's containerd base template was not checked against its source" in p.summary
        assert "checked: v1.32-v1.34" in p.summary


class TestClusterSteps:
    def test_pending_until_k3s_runs(self, secrets):
        inv = load()
        earlier = {"k3s.install": k3s.plan_install(ctx_for(inv, "workstation", bare()))}
        ctx = ctx_for(inv, "workstation", bare(), secrets=secrets, earlier=earlier)
        assert cluster.plan_plugin(ctx).status == "pending"
        assert cluster.plan_hub(ctx).status == "pending"
        assert cluster.plan_gpu_test(ctx).status == "verify"

    def test_converged_cluster_is_ok_and_the_gpu_test_skipped_unless_asked(self, secrets):
        """A converged run starts no Job; --verify (or `gpu.test` itself) runs it on every node."""
        inv = load()
        ctx = ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"], secrets), secrets=secrets)
        assert cluster.plan_plugin(ctx).status == "ok"
        assert cluster.plan_hub(ctx).status == "ok"
        skipped = cluster.plan_gpu_test(ctx)
        assert skipped.status == "ok" and skipped.note.startswith("skipped: nothing changed")
        ctx.verify = True
        assert cluster.plan_gpu_test(ctx).status == "verify"

    def test_the_gpu_test_runs_on_the_nodes_that_changed(self, secrets):
        inv = load(hosts={"workstation": {"role": "server", "gpus": 1, "local": True},
                          "gpu2": {"role": "agent", "gpus": 1}})
        fx = converged(inv, inv.hosts["workstation"], secrets)
        ctx = ctx_for(inv, "workstation", fx, secrets=secrets)
        ctx.changed_hosts = frozenset({"gpu2"})
        p = cluster.plan_gpu_test(ctx)
        assert p.status == "verify" and p.summary == "run the GPU test Job on gpu2"

    def test_replicas_change_is_a_plugin_change_only(self, secrets):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"], secrets)
        changed = load(hosts={"workstation": {"role": "server", "gpus": 1, "replicas": 4, "local": True}})
        ctx = ctx_for(changed, "workstation", fx, secrets=secrets)
        p = cluster.plan_plugin(ctx)
        assert p.status == "change"
        assert any("config" in c.summary for c in p.changes)
        assert any("timeslice-4" in c.summary for c in p.changes)
        assert cluster.plan_hub(ctx).status == "ok"

    def test_unhealthy_after_restart_plans_the_heal(self, secrets):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"], secrets)
        fx.values["nodes"]["workstation"]["allocatable"] = {"nvidia.com/gpu.shared": "0"}
        p = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets=secrets))
        assert p.status == "change" and "#426" in p.summary

    def test_hub_blocked_without_secrets(self, monkeypatch):
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_ID", raising=False)
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_SECRET", raising=False)
        inv = load()
        p = cluster.plan_hub(ctx_for(inv, "workstation", bare(), secrets=inventory.load_secrets()))
        assert p.status == "blocked" and "GPUHUB_GITHUB_CLIENT_SECRET" in p.reason

    def test_hub_values_change_names_keys_not_values(self, secrets):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"], secrets)
        fx.values["hub_values"]["hub"]["config"]["GitHubOAuthenticator"]["oauth_callback_url"] = "https://old/"
        p = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=secrets))
        assert p.status == "change" and "values (hub)" in p.summary
        assert "secret" not in p.summary.lower()


class TestStuckReleases:
    """A helm run that died (its SSH session dropped) leaves its revision pending-*: helm 3's
    `list` hides it and every later upgrade fails with "another operation ... is in progress"."""

    def hub_history(self, *revisions):
        return [revision(n, status, "jupyterhub", version, age) for n, status, version, age in revisions]

    def plan(self, secrets, history, **changes):
        inv = load(**changes)
        fx = converged(inv, inv.hosts["workstation"], secrets, hub_release=history)
        return cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=secrets))

    def test_a_young_pending_release_may_be_another_run_in_progress(self, secrets):
        p = self.plan(secrets, self.hub_history((1, "deployed", "4.4.0", 7200), (2, "pending-upgrade", "4.4.0", 600)))
        assert p.status == "blocked"
        assert "pending-upgrade (revision 2) for 10 min" in p.reason and "another helm run" in p.reason
        assert "90 min" in p.reason  # the hub's own helm timeout (hub.helm_timeout default 90m)

    def test_an_old_pending_upgrade_is_rolled_back_to_the_last_deployed_revision(self, secrets):
        p = self.plan(secrets, self.hub_history((1, "superseded", "4.3.2", 99999), (2, "deployed", "4.3.2", 90000),
                                                (3, "pending-upgrade", "4.4.0", 7200)))
        assert p.status == "change" and not p.destructive
        assert "left pending-upgrade (revision 3) 120 min ago" in p.summary
        assert "roll back to revision 2, the last deployed, then upgrade to chart 4.4.0" in p.summary

    def test_the_step_timeout_decides_what_is_old(self, secrets):
        history = self.hub_history((1, "deployed", "4.4.0", 7200), (2, "pending-upgrade", "4.4.0", 600))
        assert self.plan(secrets, history, hub__helm_timeout="5m").status == "change"
        assert self.plan(secrets, history, hub__helm_timeout="15m").status == "blocked"

    def test_a_release_never_deployed_is_reinstalled_which_is_destructive(self, secrets):
        p = self.plan(secrets, self.hub_history((1, "pending-install", "4.4.0", 86400)))
        assert p.status == "change" and p.destructive
        assert "never deployed; uninstall it" in p.summary and "hub database's volume" in p.summary

    def test_a_failed_release_is_upgraded_again(self, secrets):
        p = self.plan(secrets, self.hub_history((1, "deployed", "4.4.0", 7200), (2, "failed", "4.4.0", 60)))
        assert p.status == "change" and "repair JupyterHub release jhub/jhub (status failed)" in p.summary

    def test_the_device_plugin_uses_helms_default_timeout(self, secrets):
        inv = load()
        history = [revision(1, "deployed", "nvidia-device-plugin", "0.20.0", 7200),
                   revision(2, "pending-upgrade", "nvidia-device-plugin", "0.20.0", 400)]
        fx = converged(inv, inv.hosts["workstation"], secrets, plugin_release=history)
        p = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets=secrets))
        assert p.status == "change" and "roll back to revision 1" in p.summary

    def test_the_repair_runs_rollback_then_upgrade_with_helms_timeout(self, secrets):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"], secrets, hub_release=self.hub_history(
            (1, "deployed", "4.3.2", 90000), (2, "pending-upgrade", "4.4.0", 7200)))
        ctx = ctx_for(inv, "workstation", fx, secrets=secrets)
        calls = []
        ctx.script = lambda name, step, env, stdin=None, timeout=None: calls.append((env, timeout))
        release = cluster.release_change(ctx, cluster.HUB, "jhub/jhub", "hub_chart", "https://x/", "4.4.0",
                                         {"a": 1}, {}, "JupyterHub", 5400, "hub_release")
        release.apply(ctx)
        (rollback, rollback_deadline), (upgrade, upgrade_deadline) = calls
        assert rollback["ACTION"] == "rollback" and rollback["REVISION"] == "1" and rollback["TIMEOUT_S"] == "5400"
        assert "ACTION" not in upgrade and upgrade["TIMEOUT_S"] == "5400"
        # The command's own deadline follows helm's wait: never cut by the general 900 s one.
        assert rollback_deadline == upgrade_deadline == 5400 + 120


def test_plan_with_mock_context_runs_only_the_probes(monkeypatch, secrets):
    """`inv plan` on a bare machine: the probe scripts, no action (MockContext refuses the rest)."""
    monkeypatch.setattr(facts.secrets, "token_hex", lambda n: "fixed")
    marker = "@@gpuhub-fixed"
    outputs = {"systemd": "yes\n", "nvidia_smi": "0, NVIDIA H200, GPU-1, 570.1, 143771\n",
               "pci_gpus": "0000:18:00.0 0x10de 0x2335 0x030200\n"}
    probes = list(facts.host_probes()) + list(facts.cluster_probes("a/b", "c/d"))
    body = "".join(f"{marker} begin {p}\n{outputs.get(p, '')}{marker} end {p} {0 if p in outputs else 1}\n"
                   for p in probes)
    pci = f"{marker} begin pci_gpus\n0000:18:00.0 0x10de 0x2335 0x030200\n{marker} end pci_gpus 0\n"
    # Local commands run in their own session (setsid), out of the terminal's Ctrl-C.
    # One command for every fact: the probes that wait on a program (Probe.apart) lead it, each
    # started at once in a pipeline of its own (facts.script).
    ctx = MockContext(run={
        "setsid -w sh -c 'id -u'": Result("0\n"),
        re.compile(r"^setsid -w sh -c 'echo '\"'\"'@@gpuhub-fixed begin pci_gpus'"): Result(pci),
        re.compile(r"^setsid -w sh -c '{ echo '\"'\"'@@gpuhub-fixed begin k3s_version'"): Result(body),
    }, repeat=True)
    run = cli.local_run(ctx, str(DATA / "inventories" / "good" / "default-runtime.yaml"), plan.PROVISION)
    results = run.plan()
    # No host is marked local: this machine is a single-node server expecting the GPUs on its PCI bus.
    assert list(results) == ["localhost"]
    steps = {s.id: s for s in results["localhost"].steps}
    assert steps["k3s.install"].status == "change"
    assert steps["gpu.runtime"].status == "change"
    assert steps["gpu.plugin"].status == "pending"
    assert steps["gpu.test"].status == "verify"
    # MockContext raises on any command not registered above: reaching here proves no action ran.


def test_plan_exit_codes():
    ok_run = plan.HostRun("a", "server", steps=[plan.StepPlan("x", "ok")])
    change_run = plan.HostRun("b", "agent", steps=[plan.StepPlan("x", "change")])
    assert plan.check_exit_code({"a": ok_run}) == 0
    assert plan.check_exit_code({"a": ok_run, "b": change_run}) == 2
    assert plan.check_exit_code({"c": plan.HostRun("c", "agent", unreachable=True, error="x")}) == 1


def test_destructive_needs_yes(secrets):
    inv = load()
    run = plan.Run(inv, {}, secrets)
    run.results = {"workstation": plan.HostRun("workstation", "server", steps=[
        k3s.plan_reset(ctx_for(inv, "workstation", bare(k3s_version="v1.33.5+k3s1", storage_kib=10)))])}
    with pytest.raises(plan.Refused, match="--yes"):
        run.refuse_unconfirmed(yes=False)
    run.refuse_unconfirmed(yes=True)


class FilesTarget:
    """Records what the plan writes, restores and runs; a put can be made to fail."""

    def __init__(self):
        self.written, self.restored = [], []

    def put(self, path, kept):
        self.written.append((path, kept))

    def restore(self, path, kept):
        self.restored.append((path, kept))


def test_a_change_that_fails_before_the_restart_rolls_back_the_files_waiting_for_it(secrets, monkeypatch):
    """default-runtime: nvidia written, then the toolkit install fails: K3s must not keep, for its
    next start, a config it cannot start with (K3s refuses a default runtime it did not find)."""
    from gpuhub.steps import Change, StepPlan
    from gpuhub.target import StepFailed
    inv = load()
    target = FilesTarget()
    restarts = []
    monkeypatch.setitem(plan.HANDLERS, "restart-k3s", lambda ctx, written: restarts.append(written))
    run = plan.Run(inv, {"workstation": target}, secrets)
    run.results = {"workstation": plan.HostRun("workstation", "server", steps=[
        StepPlan("k3s.install", "change", changes=[
            Change("update config.yaml", lambda c: c.target.put("/etc/rancher/k3s/config.yaml", True),
                   notify=("restart-k3s",))]),
        StepPlan("gpu.runtime", "change", changes=[
            Change("install the toolkit", lambda c: (_ for _ in ()).throw(StepFailed("workstation", "gpu.runtime", "x")),
                   notify=("restart-k3s",))])])}
    with pytest.raises(StepFailed):
        run.apply_host(inv.hosts["workstation"], {"k3s.install", "gpu.runtime"})
    assert target.restored == [("/etc/rancher/k3s/config.yaml", True)]
    assert restarts == []
    assert run.results["workstation"].not_done == ["gpu.runtime: install the toolkit"]


def test_the_restart_handler_gets_the_files_written_for_it(secrets, monkeypatch):
    from gpuhub.steps import Change, StepPlan
    inv = load()
    target = FilesTarget()
    restarts = []
    monkeypatch.setitem(plan.HANDLERS, "restart-k3s", lambda ctx, written: restarts.append(list(written)))
    run = plan.Run(inv, {"workstation": target}, secrets)
    run.results = {"workstation": plan.HostRun("workstation", "server", steps=[
        StepPlan("gpu.runtime", "change", changes=[
            Change("upload a package", lambda c: None),
            Change("install the template", lambda c: c.target.put("/var/lib/x.tmpl", False), notify=("restart-k3s",))])])}
    run.apply_host(inv.hosts["workstation"], {"gpu.runtime"})
    assert restarts == [[("/var/lib/x.tmpl", False)]] and target.restored == []


class TestVerbosePlans:
    """`--verbose`: under each change, what it runs, from the same records apply runs."""

    def run_on(self, inv, facts_by_host, secrets):
        run = plan.Run(inv, {name: None for name in inv.hosts}, secrets, log=lambda line: None)
        run.facts = facts_by_host
        run.plan(gather=False)
        return run

    def test_a_bare_server_shows_each_script_with_its_inputs_and_the_files_it_writes(self, secrets):
        inv = load()
        run = self.run_on(inv, {"workstation": bare()}, secrets)
        text = plan.format_plan(run.results, verbose=True)
        version = inv.cluster["k3s_version"]
        assert (f"run: env K3S_ROLE=server K3S_VERSION={version} K3S_INSTALL_SCRIPT='' K3S_BINARY='' "
                "K3S_IMAGES='' /var/lib/gpuhub/scripts/k3s-install.sh") in text
        config = render.dump(render.k3s_config(inv, inv.hosts["workstation"]))
        assert f"write: /etc/rancher/k3s/config.yaml (mode 0600, {len(config.encode())} bytes" in text
        assert all(f"  | {line}" in text for line in config.splitlines())
        # The handler's own commands, once, after the changes that notify it.
        assert "restart-k3s  then     once, after the changes above" in text
        assert "run: env K3S_UNIT=k3s READY_TIMEOUT=120 REQUIRE_RUNTIME=nvidia" not in text  # runtimeclass mode
        assert "run: env K3S_UNIT=k3s READY_TIMEOUT=120 /var/lib/gpuhub/scripts/k3s-restart.sh" in text
        assert plan.format_plan(run.results) == "\n".join(
            line for line in text.splitlines() if not line.startswith(("      ", "(the scripts run from"))
            and "then     once" not in line)

    def test_the_oauth_secret_goes_to_kubectl_on_stdin_never_to_helm_and_is_never_shown(self, secrets):
        import base64
        inv = load()
        server = converged(inv, inv.hosts["workstation"], secrets, hub_release=None, hub_secret={"found": False})
        server.values["hub_values"] = None
        run = self.run_on(inv, {"workstation": server}, secrets)
        steps = {s.id: s for s in run.results["workstation"].steps}
        assert steps["hub.launch"].status == "change"
        assert steps["hub.launch"].changes[0].summary == (
            "create Secret jhub/gpuhub-github-oauth (the hub's GitHub OAuth credentials: client_id, client_secret)")
        text = plan.format_plan(run.results, verbose=True)
        assert "CHART=jupyterhub CHART_REPO=https://hub.jupyter.org/helm-chart/ CHART_VERSION=4.4.0" in text
        assert "stdin: the values as JSON" in text and "cluster/jupyterhub-values.yaml" in text
        assert "NAMESPACE=jhub NAME=gpuhub-github-oauth MANIFEST_BYTES=" in text
        assert "keys client_id, client_secret (values not shown)" in text
        encoded = base64.b64encode(b"test-client-secret").decode()
        assert "test-client-secret" not in text and encoded not in text
        actions = [a for c in steps["hub.launch"].changes for a in c.actions]
        helm = [a for a in actions if a.what == "helm-release.sh"]
        assert len(helm) == 1 and "test-client-secret" not in helm[0].stdin and encoded not in helm[0].stdin
        applied = [a for a in actions if a.what == "secret-apply.sh"]
        assert len(applied) == 1 and encoded in applied[0].stdin  # kubectl gets it, on stdin only
        assert not [a for a in actions if "test-client-secret" in " ".join(map(str, a.env.values()))]

    def test_every_planned_change_is_data_and_apply_runs_exactly_those_records(self, secrets):
        """No change hides a step of its own behind a closure: apply is its actions."""
        inv = load("multi-node")
        fx = {name: bare() for name in inv.hosts}
        fx["head"] = converged(inv, inv.hosts["head"], secrets, hub_release=None, plugin_release=None)
        fx["head"].values.update(hub_values=None, plugin_values=None)
        run = self.run_on(inv, fx, secrets)
        planned = [c for r in run.results.values() for s in r.steps for c in s.changes]
        assert len(planned) > 10
        for change in planned:
            assert change.apply == change.run_actions, change.summary
            assert change.actions or change.notify, change.summary
            assert all(line.strip() for line in change.lines())

    def test_a_script_action_runs_the_script_shown(self, secrets):
        inv = load()
        reset = k3s.plan_reset(ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"], secrets)))
        calls = []
        ctx = ctx_for(inv, "workstation", bare())
        ctx.script = lambda name, step, env, stdin=None, timeout=None: calls.append((name, env))
        reset.changes[0].apply(ctx)
        assert calls == [("k3s-reset.sh", {"K3S_ROLE": "server", "DESTROY_USER_DATA": "false"})]
        assert reset.changes[0].lines() == [
            "run: env K3S_ROLE=server DESTROY_USER_DATA=false /var/lib/gpuhub/scripts/k3s-reset.sh"]

    def test_colour_marks_the_status_words_only_when_asked(self, secrets):
        inv = load()
        run = self.run_on(inv, {"workstation": bare()}, secrets)
        assert "\033[" not in plan.format_plan(run.results)
        coloured = plan.format_plan(run.results, color=True)
        assert "\033[33mchange  \033[0m" in coloured
        assert re.sub(r"\033\[[0-9;]*m", "", coloured) == plan.format_plan(run.results)
