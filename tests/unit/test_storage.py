"""Users' storage (issue 10, "Storage"): home size, class and access modes rendered into the
chart's values, and named servers' volumes on a class of their own, run through the real
KubeSpawner 7.0.0 as the hub runs it (hub.extraConfig exec'd with `c`, the hook called as
JupyterHub 5.5.0 calls pre_spawn_hook before start, then the PVC KubeSpawner would create)."""
from types import SimpleNamespace

import pytest

from gpuhub import render
from testdata import load_inventory


def values(inv, secrets):
    return render.jupyterhub_values(inv, secrets, render.Notes())


class TestRenderedValues:
    def test_homes_size_class_and_modes(self, secrets):
        v = values(load_inventory("storage"), secrets)
        assert v["singleuser"]["storage"] == {"capacity": "100Gi", "dynamic": {
            "storageClass": "zfs-homes", "storageAccessModes": ["ReadWriteOnce"]}}

    def test_the_guide_keeps_the_charts_defaults(self, secrets):
        v = values(load_inventory("seed"), secrets)
        assert "storage" not in v["singleuser"]
        assert render.NAMED_SERVER_STORAGE_KEY not in v["hub"].get("extraConfig", {})

    def test_named_servers_like_the_homes_need_no_hook(self, secrets):
        inv = load_inventory("storage", hub__named_servers={"enabled": True})
        assert render.NAMED_SERVER_STORAGE_KEY not in values(inv, secrets)["hub"].get("extraConfig", {})

    def test_the_pvc_names_stay_the_charts(self, secrets):
        """No pvcNameTemplate: KubeSpawner's claim-{user_server} gives each named server its own."""
        dynamic = values(load_inventory("storage"), secrets)["singleuser"]["storage"]["dynamic"]
        assert "pvcNameTemplate" not in dynamic and "volumeNameTemplate" not in dynamic


def spawner_after_hook(v, server_name, earlier=None):
    """A real KubeSpawner configured from the values as Z2JH's jupyterhub_config.py does for storage,
    the extraConfig run, the pre_spawn_hook called: the PVC manifest it would create."""
    pytest.importorskip("kubespawner")
    from traitlets.config import Config
    from kubespawner import KubeSpawner
    from gpuhub import hubcheck
    storage = v["singleuser"]["storage"]
    c = Config()
    c.KubeSpawner.storage_capacity = storage["capacity"]
    c.KubeSpawner.storage_class = storage["dynamic"]["storageClass"]
    c.KubeSpawner.storage_access_modes = storage["dynamic"]["storageAccessModes"]
    if earlier:
        c.KubeSpawner.pre_spawn_hook = earlier
    for snippet in v["hub"]["extraConfig"].values():
        exec(snippet, {"c": c})
    spawner = hubcheck._bare(KubeSpawner)
    spawner.update_config(c)
    spawner.user = SimpleNamespace(name="alice", id=1, url="/user/alice/")
    spawner.orm_spawner = SimpleNamespace(name=server_name, server=None)  # JupyterHub's Spawner.name reads it
    spawner.pvc_name = spawner._expand_user_properties(spawner.pvc_name_template)
    spawner.run_pre_spawn_hook()
    return spawner.get_pvc_manifest()


class TestNamedServersThroughKubeSpawner:
    def test_a_named_server_gets_the_shared_class(self, secrets):
        pvc = spawner_after_hook(values(load_inventory("storage"), secrets), "big-run")
        assert pvc.metadata.name == "claim-alice--big-run"
        assert pvc.spec.storage_class_name == "lab-nfs" and pvc.spec.access_modes == ["ReadWriteMany"]
        assert pvc.spec.resources.requests["storage"] == "100Gi"  # the homes' size, not set apart
        assert pvc.metadata.annotations["hub.jupyter.org/servername"] == "big-run"

    def test_the_default_server_keeps_the_homes_class(self, secrets):
        pvc = spawner_after_hook(values(load_inventory("storage"), secrets), "")
        assert pvc.metadata.name == "claim-alice"
        assert (pvc.spec.storage_class_name, pvc.spec.access_modes) == ("zfs-homes", ["ReadWriteOnce"])

    def test_a_named_servers_own_size(self, secrets):
        inv = load_inventory("storage", hub__named_servers={"enabled": True, "storage_capacity": "20Gi"})
        pvc = spawner_after_hook(values(inv, secrets), "scratch")
        assert pvc.spec.resources.requests["storage"] == "20Gi" and pvc.spec.storage_class_name == "zfs-homes"

    def test_an_earlier_pre_spawn_hook_still_runs(self, secrets):
        seen = []
        spawner_after_hook(values(load_inventory("storage"), secrets), "x", earlier=lambda s: seen.append(s.name))
        assert seen == ["x"]

    def test_the_hub_check_accepts_the_values(self, secrets):
        pytest.importorskip("kubespawner")
        from gpuhub import hubcheck
        assert hubcheck.check_hub_values(values(load_inventory("storage"), secrets)) == []
