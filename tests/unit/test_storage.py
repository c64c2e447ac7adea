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
        c.Spawner.pre_spawn_hook = earlier  # a lab's own hook, on the base class
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


# --- k3s.reset by provisioner ---------------------------------------------------------------

def recorded_storage():
    """The storage fact of the recorded lab cluster (tests/data/facts/cluster/storage.yaml)."""
    import yaml
    from testdata import DATA
    return yaml.safe_load((DATA / "facts" / "cluster" / "storage.yaml").read_text())["expected"]["storage"]


def reset_plan(host="gpu1", storage=None, destroy=False, kib=10):
    import json
    from gpuhub.steps import Context, k3s
    from test_plan import bare
    inv = load_inventory("storage")
    fx = bare(k3s_version="v1.33.5+k3s1", k3s_units={"k3s": True} if host == "gpu1" else {"k3s-agent": True},
              storage_kib=kib)
    server = bare(storage=storage)
    p = k3s.plan_reset(Context(inv=inv, host=inv.hosts[host], facts=fx, target=None, server_facts=server,
                               destroy_user_data=destroy))
    change, = p.changes
    uploads = [a for a in change.actions if a.kind == "upload"]
    record = json.loads(uploads[0].text) if uploads else None
    return p, change, uploads, record


class TestResetByProvisioner:
    def test_each_class_is_said_plainly(self):
        p, change, _, _ = reset_plan(storage=recorded_storage())
        assert p.destructive
        said = change.summary.split("storage classes: ", 1)[1]
        assert "lab-nfs (nfs.csi.k8s.io, networked NFS): 1 volume(s) not on this host: untouched" in said
        assert ("zfs-homes (zfs.csi.openebs.io, node-local ZFS): 2 volume(s) not deleted by the uninstall: "
                "they stay in place on the node") in said
        # bob's local-path home is pinned to gpu2: gpu1's reset has none of that class
        assert "local-path (rancher.io/local-path, K3s's local-path): no volumes" in said

    def test_local_path_volumes_of_this_node_are_backed_up(self):
        p, change, _, record = reset_plan(host="gpu2", storage=recorded_storage())
        assert ("local-path (rancher.io/local-path, K3s's local-path): 1 volume(s) under "
                "/var/lib/rancher/k3s/storage, which the uninstall deletes: backed up first") in change.summary
        assert {r["claim"]: r["after_reset"] for r in record["volumes"]} == {
            "claim-bob": "backed-up", "claim-alice": "in-place", "claim-carol": "in-place"}

    def test_the_record_says_whose_volume_is_which_and_skips_networked_ones(self):
        _, change, uploads, record = reset_plan(storage=recorded_storage())
        assert uploads[0].what == "/var/lib/gpuhub/work/users-volumes.json" and uploads[0].mode == 0o600
        script, = [a for a in change.actions if a.kind == "script"]
        assert script.env["VOLUME_RECORD"] == uploads[0].what
        assert change.actions[-1] is script  # the record is there before the reset runs
        alice, = [r for r in record["volumes"] if r["claim"] == "claim-alice"]
        assert (alice["username"], alice["persistent_volume"], alice["volume_handle"]) == (
            "alice", "pvc-7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "pvc-7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f")
        assert alice["volume_attributes"]["openebs.io/poolname"] == "tank/homes"
        assert not [r for r in record["volumes"] if r["storage_class"] == "lab-nfs"]

    def test_a_volume_pinned_to_a_node_the_inventory_does_not_name_may_be_this_ones(self):
        storage = recorded_storage()
        for v in storage["volumes"]:
            if v["claim"] == "claim-bob":
                v["node"] = "workstation-7"  # a hand-built cluster's own node name
        _, change, _, record = reset_plan(host="gpu1", storage=storage)
        assert "local-path (rancher.io/local-path, K3s's local-path): 1 volume(s) under" in change.summary
        assert "claim-bob" in {r["claim"] for r in record["volumes"]}

    def test_destroy_says_local_path_volumes_are_destroyed(self):
        _, change, _, record = reset_plan(host="gpu2", storage=recorded_storage(), destroy=True)
        assert "1 volume(s) under /var/lib/rancher/k3s/storage, which the uninstall deletes: DESTROYED" in change.summary
        assert {r["claim"]: r["after_reset"] for r in record["volumes"]}["claim-bob"] == "destroyed"

    def test_an_unknown_provisioner_is_never_taken_for_safe(self):
        storage = {"classes": {"longhorn": "driver.longhorn.io"},
                   "volumes": [{"namespace": "jhub", "claim": "claim-dan", "username": "dan", "servername": None,
                                "storage_class": "longhorn", "provisioner": "driver.longhorn.io",
                                "persistent_volume": "pvc-1", "volume_handle": "pvc-1", "volume_attributes": {},
                                "path": None, "node": None}]}
        _, change, _, record = reset_plan(storage=storage)
        assert ("longhorn (driver.longhorn.io, a provisioner gpuhub does not know): 1 volume(s) where they live is "
                "not known: NOT backed up, check them before confirming") in change.summary
        assert record["volumes"][0]["after_reset"] == "unknown"

    def test_a_path_the_uninstall_deletes_outside_storage_is_said_lost(self):
        storage = {"classes": {}, "volumes": [{"namespace": "jhub", "claim": "claim-eve", "username": "eve",
                                               "servername": None, "storage_class": None, "provisioner": "",
                                               "persistent_volume": "home-eve", "volume_handle": None,
                                               "volume_attributes": {}, "path": "/var/lib/kubelet/homes/eve",
                                               "node": "gpu1"}]}
        _, change, _, _ = reset_plan(storage=storage)
        assert "(no class) (no such StorageClass, a provisioner gpuhub does not know): 1 volume(s) under a folder " \
               "the uninstall deletes, outside what is backed up: LOST" in change.summary

    def test_a_cluster_that_does_not_answer_falls_back_to_backing_up_the_folder(self):
        p, change, uploads, _ = reset_plan(storage=None)
        assert "users' volumes (10 KiB) backed up to /var/backups/gpuhub/" in change.summary
        assert ("storage classes: could not be read (the cluster does not answer on gpu1): only "
                "/var/lib/rancher/k3s/storage is backed up; volumes of any other class are not known") in change.summary
        assert uploads == [] and "VOLUME_RECORD" not in change.actions[-1].env

    def test_no_volumes_no_record(self):
        _, change, uploads, _ = reset_plan(storage={"classes": {"local-path": "rancher.io/local-path"}, "volumes": []})
        assert uploads == [] and change.summary.endswith("storage classes: local-path (rancher.io/local-path, "
                                                         "K3s's local-path): no volumes")
