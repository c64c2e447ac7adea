"""Rendering, parsed back and checked as data."""
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from gpuhub import inventory, render
from gpuhub.inventory import InventoryError
from testdata import load_inventory

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories" / "good"


def load(name="seed", **changes):
    return load_inventory(name, **changes)


def hub_values(inv, secrets):
    notes = render.Notes()
    return render.jupyterhub_values(inv, secrets, notes), notes


def profiles_by_slug(values):
    return {p["slug"]: p for p in values["singleuser"]["profileList"]}


class TestK3sConfig:
    def test_server(self):
        inv = load("multi-node")
        config = render.k3s_config(inv, inv.hosts["head"])
        assert config["disable"] == ["traefik"]
        assert config["write-kubeconfig-mode"] == "0600"
        assert config["tls-san"] == ["10.1.2.3"]
        assert "server" not in config and "default-runtime" not in config
        assert "gpuhub.io/role=server" in config["node-label"]
        assert not any(label.startswith("nvidia.com/") for label in config["node-label"])

    def test_agent_gets_server_url_and_token_file_never_the_token(self):
        inv = load("multi-node")
        config = render.k3s_config(inv, inv.hosts["rtx1"])
        assert config["server"] == "https://10.1.2.3:6443"
        assert config["token-file"] == render.AGENT_TOKEN_FILE
        assert not {"token", "disable", "write-kubeconfig-mode"} & set(config)
        assert "nvidia.com/gpu.present=true" in config["node-label"]
        # The sharing label belongs to gpu.plugin: a replicas change must not restart K3s.
        assert not any("device-plugin.config" in label for label in config["node-label"])

    def test_default_runtime_only_in_that_mode_and_only_on_gpu_hosts(self):
        for mode in ("runtimeclass", "template"):
            inv = load("template", gpu__runtime=mode)
            assert all("default-runtime" not in render.k3s_config(inv, h) for h in inv.hosts.values())
        inv = load("template", gpu__runtime="default-runtime")
        assert render.k3s_config(inv, inv.hosts["srv"])["default-runtime"] == "nvidia"
        assert "default-runtime" not in render.k3s_config(inv, inv.hosts["cpu-only"])


class TestDevicePlugin:
    def test_values(self):
        inv = load("multi-node")
        values = render.device_plugin_values(inv)
        assert values["gfd"] == {"enabled": True}
        assert values["runtimeClassName"] == "nvidia"
        configs = {name: yaml.safe_load(text) for name, text in values["config"]["map"].items()}
        assert set(configs) == {"exclusive", "timeslice-4", "timeslice-6"}
        assert values["config"]["default"] in configs
        sliced = configs["timeslice-6"]["sharing"]["timeSlicing"]
        assert sliced["renameByDefault"] is True and sliced["failRequestsGreaterThanOne"] is True
        assert sliced["resources"] == [{"name": "nvidia.com/gpu", "replicas": 6}]
        assert "renameByDefault" not in configs["timeslice-6"]["flags"]
        assert "sharing" not in configs["exclusive"]

    def test_no_runtime_class_when_nvidia_is_default(self):
        for mode in ("default-runtime", "template"):
            assert "runtimeClassName" not in render.device_plugin_values(load("template", gpu__runtime=mode))


class TestHubValues:
    def test_https_and_github_login(self, secrets):
        values, _ = hub_values(load("seed"), secrets)
        https = values["proxy"]["https"]
        assert https == {"enabled": True, "type": "letsencrypt", "hosts": ["jupyter.physics.example.edu"],
                         "letsencrypt": {"contactEmail": "it@physics.example.edu"}}
        assert "ingress" not in values and "service" not in values["proxy"]
        config = values["hub"]["config"]
        assert config["JupyterHub"]["authenticator_class"] == "github"
        github = config["GitHubOAuthenticator"]
        assert github["oauth_callback_url"] == "https://jupyter.physics.example.edu/hub/oauth_callback"
        assert github["allowed_organizations"] == ["physics-lab"] and github["scope"] == ["read:org"]
        # No credential in the values: the hub's environment reads them from a Secret.
        assert "client_id" not in github and "client_secret" not in github
        assert values["hub"]["extraEnv"] == {
            name: {"valueFrom": {"secretKeyRef": {"name": "gpuhub-github-oauth", "key": key}}}
            for name, key in (("GITHUB_CLIENT_ID", "client_id"), ("GITHUB_CLIENT_SECRET", "client_secret"))}
        assert "test-client-secret" not in render.dump(values) and "test-client-id" not in render.dump(values)
        assert "allow_all" not in github
        assert config["Authenticator"]["admin_users"] == ["lab-admin"]

    def test_open_hub_only_when_asked(self, secrets):
        values, _ = hub_values(load("default-runtime"), secrets)
        assert values["hub"]["config"]["GitHubOAuthenticator"]["allow_all"] is True

    def test_seed_offers_cpu_and_shared_gpu(self, secrets):
        values, notes = hub_values(load("seed"), secrets)
        profiles = profiles_by_slug(values)
        assert list(profiles) == ["cpu", "shared-gpu"]
        assert profiles["cpu"]["default"] is True
        shared = profiles["shared-gpu"]["kubespawner_override"]
        assert shared["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}
        assert shared["extra_pod_config"] == {"runtimeClassName": "nvidia"}
        assert notes.lines == ["profile whole_gpu left out: hub.profiles.whole_gpu.enabled is false"]

    def test_whole_gpu_left_out_when_every_host_shares_and_says_why(self, secrets):
        values, notes = hub_values(load("seed", hub__profiles={}), secrets)
        assert "whole-gpu" not in profiles_by_slug(values)
        assert any("whole_gpu left out: every GPU host shares" in line for line in notes.lines)

    def test_no_gpu_profiles_without_gpus(self, secrets):
        data = yaml.safe_load((DATA / "seed.yaml").read_text())
        data["hosts"]["workstation"]["gpus"] = 0
        values, notes = hub_values(inventory.parse(data), secrets)
        assert list(profiles_by_slug(values)) == ["cpu"]
        assert any("shared_gpu left out: no host has GPUs" in line for line in notes.lines)

    def test_whole_and_shared_on_mixed_cluster(self, secrets):
        values, notes = hub_values(load("multi-node"), secrets)
        profiles = profiles_by_slug(values)
        assert profiles["whole-gpu"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
        assert notes.lines == []
        assert values["singleuser"]["storage"] == {"dynamic": {"storageClass": "longhorn"}}
        assert values["hub"]["config"]["Authenticator"]["allowed_users"] == ["visiting-prof"]
        cpu = profiles["cpu"]["kubespawner_override"]
        assert (cpu["cpu_guarantee"], cpu["mem_guarantee"]) == (0.5, "1G")

    @pytest.mark.parametrize("mode", inventory.RUNTIME_MODES)
    def test_cpu_profile_never_sees_gpus(self, secrets, mode):
        values, _ = hub_values(load("multi-node", gpu__runtime=mode, cluster__k3s_version="v1.33.5+k3s1"), secrets)
        for slug, profile in profiles_by_slug(values).items():
            override = profile["kubespawner_override"]
            if slug == "cpu":
                assert override["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
                assert "extra_resource_limits" not in override and "extra_pod_config" not in override
            else:
                assert ("extra_pod_config" in override) == (mode == "runtimeclass")

    def test_missing_secret_is_an_error_naming_the_variables(self, monkeypatch):
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_SECRET", raising=False)
        monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "x")
        with pytest.raises(InventoryError, match="GPUHUB_GITHUB_CLIENT_SECRET"):
            hub_values(load("seed"), inventory.load_secrets())


class TestGpuTest:
    def test_job_shape(self):
        inv = load("multi-node")
        job = render.gpu_test_job(inv)
        assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["runtimeClassName"] == "nvidia"
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}  # a100 comes first

    def test_pinned_copy_asks_for_what_the_node_offers(self):
        inv = load("multi-node")
        job = render.gpu_test_job(inv, inv.hosts["rtx2"])
        pod = job["spec"]["template"]["spec"]
        assert job["metadata"]["name"] == "gpuhub-gpu-test-rtx2"
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": "rtx2"}
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu.shared": 1}


class TestWriteTree:
    def test_paths_modes_and_determinism(self, secrets, tmp_path):
        inv = load("template")
        files, _ = render.render_all(inv, secrets)
        out = tmp_path / "build"
        render.write_tree(files, out)
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert written == [".gpuhub-render", "cluster/device-plugin-values.yaml", "cluster/gpu-test.yaml",
                           "cluster/jupyterhub-values.yaml", "hosts/cpu-only/k3s-config.yaml",
                           "hosts/srv/containerd/config-v3.toml.tmpl", "hosts/srv/k3s-config.yaml"]
        mode = lambda p: stat.S_IMODE(os.stat(out / p).st_mode)
        # It holds no secret any more (the credentials live in a Kubernetes Secret).
        assert mode("cluster/jupyterhub-values.yaml") == 0o644
        assert mode("hosts/srv/k3s-config.yaml") & 0o077 == 0o044
        first = {p: (out / p).read_bytes() for p in written}
        files_again, _ = render.render_all(load("template"), secrets)
        render.write_tree(files_again, out)
        assert {p: (out / p).read_bytes() for p in written} == first

    def test_replaced_as_a_whole(self, secrets, tmp_path):
        out = tmp_path / "build"
        render.write_tree(render.render_all(load("multi-node"), secrets)[0], out)
        assert (out / "hosts" / "rtx1").exists()
        render.write_tree(render.render_all(load("seed"), secrets)[0], out)
        assert sorted(p.name for p in (out / "hosts").iterdir()) == ["workstation"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # no leftovers beside it

    def test_refuses_to_replace_a_folder_it_did_not_write(self, secrets, tmp_path):
        (tmp_path / "precious.txt").write_text("mine")
        with pytest.raises(FileExistsError, match="was not written by `inv render`"):
            render.write_tree(render.render_all(load("seed"), secrets)[0], tmp_path)
        assert (tmp_path / "precious.txt").read_text() == "mine"

    def test_template_copied_verbatim(self, secrets):
        files, _ = render.render_all(load("template"), secrets)
        text = files["hosts/srv/containerd/config-v3.toml.tmpl"].text
        assert text == (render.TEMPLATES / "containerd" / "config-v3.toml.tmpl").read_text()
        assert '{{ template "base" . }}' in text


def test_names_derived_from_long_host_names_fit_kubernetes():
    from gpuhub import audit, names
    long_name = "workstation-in-the-basement-of-the-physics-building-1"  # 53: a valid host name
    inv = load_inventory(hosts={long_name: {"role": "server", "gpus": 1, "sharing": "none"}})
    host = inv.hosts[long_name]
    job = render.gpu_test_job(inv, host)["metadata"]["name"]
    probe = audit.profile_job(inv, "cpu", host)["metadata"]["name"]
    for name in (job, probe):
        assert len(name) <= 63 and not names.dns_label(name), name
    assert job != render.gpu_test_job(inv, inv.hosts[long_name])["metadata"]["name"][:-1]
    other = names.derived("gpuhub-gpu-test", long_name[:-1] + "2")
    assert other != job  # two long names never share a Job


def test_an_ipv6_server_address_is_bracketed_in_the_agents_url():
    inv = load_inventory(hosts={"gpu1": {"role": "server", "gpus": 1, "address": "fd00::1"},
                                "gpu2": {"role": "agent", "gpus": 1}})
    assert render.k3s_config(inv, inv.hosts["gpu2"])["server"] == "https://[fd00::1]:6443"


class TestOutFolder:
    """`inv render --out`: a value render must not use is one message, before anything is read."""

    @pytest.mark.parametrize("value, message", [
        ("~", "--out '~' starts with '~', which only a shell expands"),
        ("~/rendered", "--out '~/rendered' starts with '~'"),
        ("", "--out is given but empty"),
        ("  ", "--out is given but empty"),
    ])
    def test_values_no_folder_can_be(self, value, message):
        with pytest.raises(ValueError, match=re.escape(message)):
            render.out_folder(value)

    def test_a_file_is_not_a_folder(self, tmp_path):
        (tmp_path / "notes.txt").write_text("mine")
        with pytest.raises(ValueError, match="is a file, not a folder"):
            render.out_folder(str(tmp_path / "notes.txt"))

    @pytest.mark.parametrize("inside", ["gpuhub", "gpuhub/out", "scripts/x", "templates", "tests/data/out"])
    def test_the_checkouts_source_folders_are_refused(self, inside):
        with pytest.raises(ValueError, match=r"is inside the checkout's \w+/ folder"):
            render.out_folder(str(render.CHECKOUT / inside))

    def test_other_folders_are_fine(self, tmp_path):
        assert render.out_folder(str(tmp_path / "rendered")) == tmp_path / "rendered"
        assert render.out_folder(str(render.CHECKOUT / "rendered")) == render.CHECKOUT / "rendered"

    def test_an_empty_existing_folder_keeps_its_mode(self, secrets, tmp_path):
        out = tmp_path / "private"
        out.mkdir(mode=0o700)
        render.write_tree(render.render_all(load("seed"), secrets)[0], out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o700 and (out / "cluster").is_dir()


class TestImagePrepuller:
    """hub.image_prepuller (issue 10, arm64): the chart's pullers stay as the chart sets them by
    default; false turns both off (Z2JH 4.4.0 values.yaml prePuller.hook/continuous.enabled)."""

    def test_default_leaves_the_chart_pullers_alone(self, secrets):
        values, _ = hub_values(load("seed"), secrets)
        assert "prePuller" not in values

    def test_false_turns_off_hook_and_continuous_pullers(self, secrets):
        values, _ = hub_values(load("seed", hub__image_prepuller=False), secrets)
        assert values["prePuller"] == {"hook": {"enabled": False}, "continuous": {"enabled": False}}

    def test_false_passes_hub_check(self, secrets):
        from gpuhub import hubcheck
        values, _ = hub_values(load("seed", hub__image_prepuller=False), secrets)
        assert hubcheck.check_hub_values(values) == []

    def test_not_a_boolean_is_an_error(self):
        with pytest.raises(InventoryError, match="image_prepuller"):
            load("seed", hub__image_prepuller="no")
