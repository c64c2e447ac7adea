"""Values overlays: merged last over gpuhub's values as helm merges values files, checked, and
named (keys, never values) in render's notes and the plan."""
import json

import pytest
import yaml

from gpuhub import inventory, overlay, render
from gpuhub.inventory import InventoryError
from gpuhub.secret import digested
from testdata import DATA

GOOD = DATA / "inventories" / "good" / "overlays.yaml"


def write_inventory(tmp_path, hub_overlay=None, plugin_overlay=None):
    """The good overlay inventory in tmp_path, with overlay files of the given text."""
    data = yaml.safe_load(GOOD.read_text())
    del data["hub"]["values_overlay"], data["gpu"]["plugin_values_overlay"]
    for key, section, name, text in (("hub", "hub", "values_overlay", hub_overlay),
                                     ("plugin", "gpu", "plugin_values_overlay", plugin_overlay)):
        if text is not None:
            (tmp_path / f"{key}-overlay.yaml").write_text(text)
            data[section][name] = f"{key}-overlay.yaml"
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(tmp_path, **overlays):
    with pytest.raises(InventoryError) as caught:
        inventory.load(str(write_inventory(tmp_path, **overlays)))
    return str(caught.value)


class TestMerge:
    def test_maps_merge_key_by_key_and_the_rest_replaces(self):
        base = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}}
        merged = overlay.merge(base, {"a": {"c": [3]}, "d": {"now": "a map"}, "e": None, "g": 2})
        assert merged == {"a": {"b": 1, "c": [3]}, "d": {"now": "a map"}, "e": None, "g": 2}
        assert base == {"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}}  # inputs stay as they were

    def test_key_paths_and_what_they_replace(self):
        given = {"a": {"b": 1, "c": {}}, "d": [1]}
        assert overlay.key_paths(given) == ["a.b", "a.c", "d"]
        assert overlay.overridden({"a": {"b": 0}, "d": None}, given) == ["a.b", "d"]


class TestRendered:
    def test_hub_overlay_is_merged_last(self, secrets):
        inv = inventory.load(str(GOOD))
        notes = render.Notes()
        values = render.jupyterhub_values(inv, secrets, notes)
        assert values["singleuser"]["storage"]["capacity"] == "100Gi"
        assert values["singleuser"]["startTimeout"] == 600
        assert [p["slug"] for p in values["singleuser"]["profileList"]] == ["lab"]  # a list replaces
        assert values["hub"]["config"]["KubeSpawner"] == {"http_timeout": 120}
        # gpuhub's own values beside the overlay's stay
        assert values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"] == ["physics-lab"]
        assert values["proxy"]["https"]["type"] == "letsencrypt"
        note = next(line for line in notes.lines if line.startswith("values overlay"))
        assert note == ("values overlay hub.yaml (hub.values_overlay) sets singleuser.storage.capacity, "
                        "singleuser.startTimeout, singleuser.profileList, hub.config.KubeSpawner.http_timeout; "
                        "replacing gpuhub's singleuser.profileList")

    def test_plugin_overlay_is_merged_last_and_named_by_render(self, secrets):
        inv = inventory.load(str(GOOD))
        values = render.device_plugin_values(inv)
        assert values["priorityClassName"] == "lab-critical" and values["tolerations"][0]["key"] == "gpu"
        assert values["config"]["default"] == "timeslice-8"
        files, notes = render.render_all(inv, secrets)
        assert "values overlay plugin.yaml (gpu.plugin_values_overlay) sets priorityClassName, tolerations" \
            in notes.lines
        assert files["cluster/device-plugin-values.yaml"].secret  # the lab's file may hold credentials

    def test_without_overlays_nothing_changes(self, secrets):
        from testdata import load_inventory
        inv = load_inventory("seed")
        assert inv.overlays == {}
        assert render.device_plugin_values(inv) == render.device_plugin_values(inv, overlaid=False)


class TestChecks:
    @pytest.mark.parametrize("text", [
        "hub:\n  config:\n    GitHubOAuthenticator:\n      client_secret: s3cr3t-value\n",
        "hub:\n  config:\n    GenericOAuthenticator:\n      Client_Secret: s3cr3t-value\n",
    ])
    def test_a_client_secret_is_refused_without_showing_it(self, tmp_path, text):
        message = problems_of(tmp_path, hub_overlay=text)
        assert "hub.values_overlay: hub-overlay.yaml sets hub.config." in message
        assert "client_secret: an overlay may not hold an oauth client secret" in message.lower()
        assert "s3cr3t-value" not in message

    def test_an_unknown_plugin_key_names_file_key_and_a_guess(self, tmp_path):
        message = problems_of(tmp_path, plugin_overlay="tolerations: []\nnodeSelectr: {}\n")
        assert "gpu.plugin_values_overlay: plugin-overlay.yaml sets nodeSelectr, which is not a value of the " \
               "chart (did you mean 'nodeSelector'?)" in message

    @pytest.mark.parametrize("text, expected", [
        ("", "is empty"),
        ("- a\n- b\n", "must hold a mapping of chart values, not a list"),
        ("a: 1\na: 2\n", "key 'a' is given twice"),
    ])
    def test_a_bad_file_is_named(self, tmp_path, text, expected):
        message = problems_of(tmp_path, hub_overlay=text)
        assert "hub.values_overlay: hub-overlay.yaml" in message and expected in message

    def test_a_missing_file_says_paths_are_relative(self, tmp_path):
        path = write_inventory(tmp_path)
        data = yaml.safe_load(path.read_text())
        data["hub"]["values_overlay"] = "nowhere.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(InventoryError) as caught:
            inventory.load(str(path))
        assert "hub.values_overlay: nowhere.yaml: cannot read" in str(caught.value)
        assert "paths are relative to the inventory file" in str(caught.value)


class TestPlan:
    def converged_then_changed(self, tmp_path, secrets, before, after):
        from test_plan import converged, ctx_for
        path = write_inventory(tmp_path, hub_overlay=before, plugin_overlay=before and "tolerations: []\n")
        inv = inventory.load(str(path))
        fx = converged(inv, inv.hosts["workstation"], secrets)
        (tmp_path / "hub-overlay.yaml").write_text(after)
        (tmp_path / "plugin-overlay.yaml").write_text("tolerations: []\npriorityClassName: lab\n")
        changed = inventory.load(str(path))
        return changed, fx, lambda inv: ctx_for(inv, "workstation", fx, secrets=secrets)

    def test_a_changed_overlay_plans_an_upgrade_naming_its_keys(self, tmp_path, secrets):
        from gpuhub.steps import cluster
        inv, fx, ctx = self.converged_then_changed(tmp_path, secrets, "singleuser:\n  startTimeout: 300\n",
                                                   "singleuser:\n  startTimeout: 900\n")
        hub = cluster.plan_hub(ctx(inv))
        summary = hub.changes[0].summary
        assert "update JupyterHub release" in summary and "(singleuser)" in summary
        assert "[values overlay hub-overlay.yaml (hub.values_overlay) sets singleuser.startTimeout]" in summary
        assert "900" not in summary
        plugin = cluster.plan_plugin(ctx(inv))
        assert plugin.status == "change"
        assert "[values overlay plugin-overlay.yaml (gpu.plugin_values_overlay) sets tolerations, " \
               "priorityClassName]" in plugin.changes[0].summary

    def test_an_unchanged_overlay_plans_nothing(self, tmp_path, secrets):
        from gpuhub.steps import cluster
        from test_plan import converged, ctx_for
        inv = inventory.load(str(write_inventory(tmp_path, hub_overlay="singleuser:\n  startTimeout: 300\n")))
        fx = converged(inv, inv.hosts["workstation"], secrets)
        assert fx.values["hub_values"] == digested(json.loads(json.dumps(
            render.jupyterhub_values(inv, secrets, render.Notes()))))
        p = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=secrets))
        assert p.status == "ok"
        assert p.note.endswith("; values overlay hub-overlay.yaml (hub.values_overlay) sets singleuser.startTimeout")

    def test_a_converged_plugin_says_what_its_overlay_sets(self, secrets):
        from gpuhub.steps import cluster
        from test_plan import converged, ctx_for
        inv = inventory.load(str(GOOD))
        p = cluster.plan_plugin(ctx_for(inv, "workstation", converged(inv, inv.hosts["workstation"], secrets),
                                        secrets=secrets))
        assert p.status == "ok"
        assert p.note.endswith("; values overlay plugin.yaml (gpu.plugin_values_overlay) sets priorityClassName, "
                               "tolerations")
