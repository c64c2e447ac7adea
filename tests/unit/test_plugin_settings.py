"""gpu.rename_shared, gpu.allow_multiple_slices and gpu.plugin_flags (issue 10): what the device
plugin is told, what each node then offers, and how profiles find their kind of node."""
import pytest
import yaml

from gpuhub import inventory, render
from testdata import load_inventory


def configs(values):
    return {name: yaml.safe_load(text) for name, text in values["config"]["map"].items()}


def profiles(inv, secrets):
    notes = render.Notes()
    values = render.jupyterhub_values(inv, secrets, notes)
    return {p["slug"]: p["kubespawner_override"] for p in values["singleuser"]["profileList"]}, notes


class TestDefaults:
    def test_keys_default_to_todays_behaviour(self):
        inv = load_inventory("multi-node")
        assert (inv.gpu["rename_shared"], inv.gpu["allow_multiple_slices"]) == (True, False)
        assert set(inv.gpu["plugin_flags"].values()) == {None}
        values = render.device_plugin_values(inv)
        assert set(values) == {"gfd", "runtimeClassName", "config"}  # no flag values the chart would pass on
        sliced = configs(values)["timeslice-6"]["sharing"]["timeSlicing"]
        assert (sliced["renameByDefault"], sliced["failRequestsGreaterThanOne"]) == (True, True)

    def test_renamed_profiles_need_no_node_selection(self, secrets):
        overrides, _ = profiles(load_inventory("multi-node"), secrets)
        assert overrides["shared-gpu"]["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}
        assert overrides["whole-gpu"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
        assert not any("node_selector" in o for o in overrides.values())


class TestNotRenamed:
    def test_plugin_config_and_what_each_node_offers(self):
        inv = load_inventory("not-renamed")
        sliced = configs(render.device_plugin_values(inv))["timeslice-4"]["sharing"]["timeSlicing"]
        assert sliced == {"renameByDefault": False, "failRequestsGreaterThanOne": False,
                          "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}
        shared, whole = inv.hosts["shared"], inv.hosts["whole"]
        # What gpu.plugin and the audit then expect in the node's allocatable.
        assert (shared.gpu_resource, shared.allocatable) == ("nvidia.com/gpu", 8)
        assert (whole.gpu_resource, whole.allocatable) == ("nvidia.com/gpu", 1)
        job = render.gpu_test_job(inv, shared)
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}

    def test_each_gpu_profile_selects_its_kind_of_node_by_gfds_sharing_label(self, secrets):
        overrides, notes = profiles(load_inventory("not-renamed"), secrets)
        assert notes.lines == []
        shared, whole = overrides["shared-gpu"], overrides["whole-gpu"]
        assert shared["extra_resource_limits"] == whole["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
        assert shared["node_selector"] == {"nvidia.com/gpu.sharing-strategy": "time-slicing"}
        assert whole["node_selector"] == {"nvidia.com/gpu.sharing-strategy": "none"}
        assert "node_selector" not in overrides["cpu"]

    def test_profiles_are_offered_by_the_kind_of_host_not_the_resource_name(self, secrets):
        # Every host shares: the whole-GPU profile is left out although nvidia.com/gpu exists.
        inv = load_inventory("not-renamed", hosts={"shared": {"role": "server", "gpus": 2}})
        overrides, notes = profiles(inv, secrets)
        assert list(overrides) == ["cpu", "shared-gpu"]
        assert any("whole_gpu left out: every GPU host shares" in line for line in notes.lines)
        inv = load_inventory("not-renamed", hosts={"whole": {"role": "server", "gpus": 1, "sharing": "none"}})
        overrides, notes = profiles(inv, secrets)
        assert list(overrides) == ["cpu", "whole-gpu"]
        assert any("shared_gpu left out: no host shares" in line for line in notes.lines)

    def test_shared_local_view_follows_the_setting(self):
        inv = load_inventory("not-renamed").local_view(pci_gpus=1)
        assert inv.hosts["localhost"].gpu_resource == "nvidia.com/gpu"


class TestPluginFlags:
    def test_set_flags_become_the_charts_top_level_values(self):
        values = render.device_plugin_values(load_inventory("not-renamed"))
        assert {k: values[k] for k in values if k not in ("gfd", "runtimeClassName", "config")} == {
            "migStrategy": "none", "deviceListStrategy": "envvar", "deviceIDStrategy": "uuid",
            "deviceDiscoveryStrategy": "nvml", "failOnInitError": True, "nvidiaDriverRoot": "/"}

    def test_accepted_set_is_the_charts(self):
        # NVIDIA/k8s-device-plugin v0.20.0 deployments/helm/nvidia-device-plugin/values.yaml: the
        # plugin flags it takes at the top level (nvidiaDevRoot and cdi.* are left out on purpose).
        assert set(inventory.PLUGIN_FLAGS.fields) == {
            "compatWithCPUManager", "migStrategy", "failOnInitError", "deviceListStrategy", "deviceIDStrategy",
            "nvidiaDriverRoot", "gdrcopyEnabled", "gdsEnabled", "mofedEnabled", "deviceDiscoveryStrategy"}

    @pytest.mark.parametrize("flag, value, message", [
        ("migStrategy", "single", "single is a strategy the chart takes, but gpuhub counts whole GPUs"),
        ("deviceDiscoveryStrategy", "cuda", "'cuda' is not one of: auto, nvml, tegra"),
        ("gdsEnabled", "yes", "expected true/false, got 'yes'"),
        ("nvidiaDriverRoot", "/run/$(reboot)", "is not an absolute path"),
        ("nvidiaDriverRoot", "/a/../../etc", "is not an absolute path"),
        ("restartOnDeviceUnhealthy", True, "unknown key"),
    ])
    def test_bad_flags_name_the_key(self, flag, value, message):
        with pytest.raises(inventory.InventoryError) as caught:
            load_inventory("seed", gpu__plugin_flags={flag: value})
        assert f"gpu.plugin_flags.{flag}: " in str(caught.value) and message in str(caught.value)

    @pytest.mark.parametrize("value", ["/", "/run/nvidia/driver", "/opt/nvidia-driver_550.1/"])
    def test_driver_roots(self, value):
        assert load_inventory("seed", gpu__plugin_flags={"nvidiaDriverRoot": value}).gpu["plugin_flags"][
            "nvidiaDriverRoot"] == value


class TestPluginStep:
    def plan(self, secrets, label_of):
        from gpuhub.steps import cluster
        from test_plan import converged, ctx_for
        inv = load_inventory("not-renamed")
        fx = converged(inv, inv.hosts["shared"], secrets)
        for name, node in fx.values["nodes"].items():
            if label_of(name) is not None:
                node["labels"][render.SHARING_STRATEGY_LABEL] = label_of(name)
        return cluster.plan_plugin(ctx_for(inv, "shared", fx, secrets=secrets))

    def test_not_renamed_nodes_offer_plain_gpus_and_carry_gfds_label(self, secrets):
        p = self.plan(secrets, {"shared": "time-slicing", "whole": "none"}.get)
        assert p.status == "ok" and "shared 8, whole 1" in p.note

    def test_a_node_without_the_label_the_profiles_select_by_is_blocked(self, secrets):
        p = self.plan(secrets, {"shared": "time-slicing"}.get)
        assert p.status == "blocked"
        assert "node whole has nvidia.com/gpu.sharing-strategy=(none), expected none" in p.reason
        p = self.plan(secrets, {"shared": "none", "whole": "none"}.get)
        assert "node shared has nvidia.com/gpu.sharing-strategy=none, expected time-slicing" in p.reason


def test_the_audit_checks_gfds_sharing_label_when_not_renamed():
    from gpuhub import audit
    inv = load_inventory("not-renamed")
    host = inv.hosts["whole"]
    labels = {"nvidia.com/device-plugin.config": "exclusive", "nvidia.com/gpu.replicas": "1"}
    server = {"nodes": {"whole": {"labels": dict(labels)}}}
    finding = audit.check_sharing_labels(inv, host, None, server)
    assert not finding.ok and "'nvidia.com/gpu.sharing-strategy': None" in finding.evidence
    server["nodes"]["whole"]["labels"]["nvidia.com/gpu.sharing-strategy"] = "none"
    assert audit.check_sharing_labels(inv, host, None, server).ok
    renamed = load_inventory("multi-node")
    server = {"nodes": {"a100": {"labels": {"nvidia.com/device-plugin.config": "exclusive",
                                            "nvidia.com/gpu.replicas": "1"}}}}
    assert audit.check_sharing_labels(renamed, renamed.hosts["a100"], None, server).ok  # not needed there


def test_the_sharing_model_flags_what_the_plugin_drops():
    from gpuhub import validate
    text = yaml.safe_dump({"version": "v1", "sharing": {"timeSlicing": {"resources": [
        {"name": "nvidia.com/gpu", "replicas": 4, "rename": "nvidia.com/slice", "devices": ["0"]}]}}})
    problems = validate.sharing_config_problems(text)
    assert any(p.startswith("sharing.timeSlicing.resources[0].rename: unknown key, ignored by the device plugin")
               for p in problems)
    assert "sharing.timeSlicing.resources[0].devices: unknown key, ignored by the device plugin" in problems
