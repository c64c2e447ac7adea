"""cluster.kubeconfig_mode and cluster.k3s_extra_config: checks, the rendered config.yaml,
the plan's words, the audit; and K3s version changes that K3s does not support."""
import pytest

from gpuhub import audit, render
from gpuhub.inventory import InventoryError
from gpuhub.steps import k3s
from test_plan import bare, converged, ctx_for, load


def problems(name="seed", **changes):
    with pytest.raises(InventoryError) as caught:
        load(name, **changes)
    return str(caught.value)


class TestKubeconfigMode:
    def test_default_is_0600_and_reaches_config_yaml(self):
        inv = load()
        assert inv.cluster["kubeconfig_mode"] == "0600" and inv.warnings == []
        assert render.k3s_config(inv, inv.hosts["workstation"])["write-kubeconfig-mode"] == "0600"

    def test_group_or_world_readable_warns_but_loads(self):
        inv = load(cluster__kubeconfig_mode="0644")
        assert render.k3s_config(inv, inv.hosts["workstation"])["write-kubeconfig-mode"] == "0644"
        assert "every user" in inv.warnings[0] and "cluster admin" in inv.warnings[0]
        assert "a group" in load(cluster__kubeconfig_mode="0640").warnings[0]

    @pytest.mark.parametrize("mode,why", [("600x", "octal digits"), ("06000", "octal digits"), ("8", "octal digits"),
                                          ("4600", "setuid"), ("0400", "root read and write")])
    def test_bad_modes_are_errors_naming_the_key(self, mode, why):
        message = problems(cluster__kubeconfig_mode=mode)
        assert "cluster.kubeconfig_mode" in message and why in message

    def test_a_bare_yaml_octal_number_is_refused_with_the_quoting_hint(self):
        message = problems(cluster__kubeconfig_mode=0o600)
        assert "cluster.kubeconfig_mode: expected text, got 384" in message and "quoted" in message

    def test_audit_checks_the_configured_mode(self):
        inv = load(cluster__kubeconfig_mode="0640")
        host = inv.hosts["workstation"]
        assert audit.check_kubeconfig(inv, host, bare(kubeconfig_mode="640"), None).ok
        wrong = audit.check_kubeconfig(inv, host, bare(kubeconfig_mode="600"), None)
        assert not wrong.ok and "says 0640" in wrong.message and "chmod 0640" in wrong.fix
        default = load()
        world = audit.check_kubeconfig(default, host, bare(kubeconfig_mode="644"), None)
        assert not world.ok and "every user" in world.message


class TestExtraConfig:
    def test_keys_go_to_the_roles_whose_k3s_takes_them(self):
        extra = {"cluster-cidr": "10.52.0.0/16", "kubelet-arg": ["max-pods=150", "image-gc-high-threshold=80"],
                 "protect-kernel-defaults": True}
        inv = load("multi-node", cluster__k3s_extra_config=extra)
        server = render.k3s_config(inv, inv.hosts["head"])
        agent = render.k3s_config(inv, inv.hosts["rtx1"])
        assert server["cluster-cidr"] == "10.52.0.0/16" and "cluster-cidr" not in agent  # server-only flag
        assert server["kubelet-arg"] == agent["kubelet-arg"] == ["max-pods=150", "image-gc-high-threshold=80"]
        assert agent["protect-kernel-defaults"] is True
        assert "token" not in render.dump(server)

    def test_unknown_key_is_an_error_with_did_you_mean(self):
        message = problems(cluster__k3s_extra_config={"cluster-cdir": "10.52.0.0/16"})
        assert "cluster.k3s_extra_config.cluster-cdir: is not a K3s server or agent flag" in message
        assert "did you mean 'cluster-cidr'?" in message

    @pytest.mark.parametrize("key,instead", [("write-kubeconfig-mode", "cluster.kubeconfig_mode"),
                                             ("default-runtime", "gpu.runtime"), ("token", "node token"),
                                             ("node-name", "hosts:"), ("disable", "Traefik")])
    def test_keys_gpuhub_writes_name_the_setting_to_use(self, key, instead):
        message = problems(cluster__k3s_extra_config={key: "x"})
        assert f"cluster.k3s_extra_config.{key}: is a key gpuhub writes itself" in message and instead in message

    def test_an_agent_only_flag_without_agents_is_an_error(self):
        message = problems(cluster__k3s_extra_config={"disable-apiserver-lb": True})
        assert "only K3s agents take it" in message

    @pytest.mark.parametrize("value", ["a\nb", "", [], [["nested"]], [{"a": 1}], {"a": 1}, "x" * 2000, None])
    def test_odd_values_are_refused(self, value):
        assert "cluster.k3s_extra_config.kubelet-arg" in problems(cluster__k3s_extra_config={"kubelet-arg": value})

    @pytest.mark.parametrize("key", ["--cluster-cidr", "Cluster-CIDR", "a b"])
    def test_key_shape(self, key):
        assert "is not a K3s flag name" in problems(cluster__k3s_extra_config={key: "x"})

    def test_the_plan_names_the_extra_keys(self):
        inv = load(cluster__k3s_extra_config={"cluster-cidr": "10.52.0.0/16", "debug": True})
        p = k3s.plan_install(ctx_for(inv, "workstation", bare()))
        assert p.changes[0].summary == ("write /etc/rancher/k3s/config.yaml (with cluster.k3s_extra_config keys: "
                                        "cluster-cidr, debug)")


class TestVersionChanges:
    def running(self, version):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"])
        fx.values["k3s_version"] = version
        return k3s.plan_install(ctx_for(inv, "workstation", fx)), inv.cluster["k3s_version"]

    def test_one_minor_up_is_a_plain_upgrade(self):
        p, wanted = self.running("v1.36.0+k3s1")
        assert p.status == "change" and not any(c.destructive for c in p.changes)

    def test_a_downgrade_is_destructive_with_the_versions(self):
        p, wanted = self.running("v1.37.3+k3s1")
        [change] = p.changes
        assert change.destructive and change.summary.startswith(f"downgrade K3s v1.37.3+k3s1 -> {wanted}")
        p, _ = self.running("v1.37.1+k3s2")  # a newer K3s build of the same Kubernetes patch
        assert p.changes[0].destructive

    def test_skipping_a_minor_is_blocked_naming_the_step_between(self):
        p, wanted = self.running("v1.35.2+k3s1")
        assert p.status == "blocked" and p.changes == []
        assert f"v1.35.2+k3s1 -> {wanted} skips the v1.36 line" in p.reason
        assert "set cluster.k3s_version to a v1.36.x+k3s1 release" in p.reason

    def test_a_fresh_install_is_never_judged(self):
        p = k3s.plan_install(ctx_for(load(), "workstation", bare()))
        assert p.status == "change" and not any(c.destructive for c in p.changes)


class TestHandWrittenConfig:
    """A config.yaml gpuhub did not write: rewriting it must not silently drop keys K3s uses."""

    def plan(self, keys, **changes):
        inv = load(**changes)
        fx = converged(inv, inv.hosts["workstation"])
        fx.values.update(k3s_config_sha="f" * 64, k3s_config_keys=keys)
        return k3s.plan_install(ctx_for(inv, "workstation", fx))

    def test_dropped_keys_make_the_rewrite_destructive_naming_only_keys(self):
        p = self.plan(("token", "disable", "cluster-cidr", "kubelet-arg", "write-kubeconfig-mode"))
        [change] = p.changes
        assert change.destructive
        assert "DROPS keys the file on the host sets: cluster-cidr, kubelet-arg" in change.summary
        assert "cluster.k3s_extra_config" in change.summary
        assert "token" not in change.summary  # gpuhub's own key (it copies the node token itself)

    def test_keys_kept_through_k3s_extra_config_are_not_dropped(self):
        p = self.plan(("cluster-cidr", "disable"), cluster__k3s_extra_config={"cluster-cidr": "10.52.0.0/16"})
        [change] = p.changes
        assert not change.destructive and "DROPS" not in change.summary

    def test_a_key_the_hosts_k3s_command_ignores_is_no_loss(self):
        """`k3s agent` takes no cluster-cidr (a server flag): in an agent's file it did nothing, and
        dropping it is a plain update; kubelet-arg, which agents take, is still a loss."""
        inv = load("multi-node")
        agent = inv.hosts["rtx1"]
        fx = converged(inv, agent)
        fx.values.update(k3s_config_sha="f" * 64, k3s_config_keys=["cluster-cidr", "kubelet-arg"],
                         unit_k3s={"active": False, "enabled": False}, unit_k3s_agent={"active": True, "enabled": True})
        p = k3s.plan_install(ctx_for(inv, "rtx1", fx, server_facts=converged(inv, inv.server)))
        config = p.changes[0]
        assert "DROPS keys the file on the host sets: kubelet-arg (" in config.summary and config.destructive

    def test_a_file_with_only_gpuhubs_keys_is_a_plain_update(self):
        p = self.plan(("node-name", "write-kubeconfig-mode", "disable", "default-runtime"))
        assert not p.changes[0].destructive


def test_only_key_names_leave_the_host():
    from gpuhub import facts
    out = "token\nnode-label+\ntls-san\n\"odd\nkubelet-arg\n"
    assert facts.parse_key_names(out, 0) == ["token", "node-label", "tls-san", "kubelet-arg"]
    assert facts.parse_key_names("", 2) is None  # no file


def test_the_cli_says_the_inventorys_warnings_on_stderr(capsys):
    from gpuhub import cli
    cli.say_warnings(load(cluster__kubeconfig_mode="0644"))
    cli.say_warnings(load())
    out, err = capsys.readouterr()
    assert out == "" and err.count("warning: cluster.kubeconfig_mode 0644 lets every user") == 1
