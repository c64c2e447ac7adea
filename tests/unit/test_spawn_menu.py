"""The list form of hub.profiles and the spawner-wide settings (issue 10, "a spawn menu like the
ones labs run"): rendered as data, and run through the real KubeSpawner 7.0.0 methods that
apply a user's choices."""
import re

import pytest
import yaml

from gpuhub import inventory, render
from testdata import DATA, load_inventory


def menu(**changes):
    return load_inventory("menu", **changes)


def values(inv, secrets):
    notes = render.Notes()
    return render.jupyterhub_values(inv, secrets, notes), notes


def by_slug(v):
    return {p["slug"]: p for p in v["singleuser"]["profileList"]}


def entry(**fields):
    """A menu inventory whose profiles are exactly the given list entries."""
    data = yaml.safe_load((DATA / "inventories" / "good" / "menu.yaml").read_text())
    data["hub"]["profiles"] = fields.pop("profiles")
    return data


class TestProfiles:
    def test_choices_defaults_and_folded_single_choices(self, secrets):
        v, notes = values(menu(), secrets)
        assert notes.lines == []
        profiles = by_slug(v)
        assert list(profiles) == ["cpu", "shared-gpu", "a100"]
        cpu = profiles["cpu"]
        assert cpu["default"] is True and cpu["kubespawner_override"]["cpu_limit"] == 2
        assert "image" not in cpu["kubespawner_override"] and "mem_limit" not in cpu["kubespawner_override"]
        options = cpu["profile_options"]
        assert list(options) == ["image", "interface", "memory"]
        images = options["image"]["choices"]
        assert [c["kubespawner_override"]["image"] for c in images.values()] == [
            "quay.io/jupyter/scipy-notebook:2026-08-24", "quay.io/jupyter/r-notebook:2026-08-24"]
        assert [c.get("default", False) for c in images.values()] == [True, False]  # the first is the default
        assert images["r"]["display_name"] == "R"
        assert [c["kubespawner_override"] for c in options["interface"]["choices"].values()] == [
            {"default_url": "/lab"}, {"default_url": "/tree"}]
        memory = options["memory"]["choices"]
        assert memory["8g"] == {"display_name": "8G (2G guaranteed)", "default": True,
                                "kubespawner_override": {"mem_limit": "8G", "mem_guarantee": "2G"}}
        assert memory["16-gb"]["kubespawner_override"] == {"mem_limit": "16G", "mem_guarantee": "4G"}
        # One image, one interface: set in the profile itself, no menu.
        a100 = profiles["a100"]
        assert "profile_options" not in a100 and "description" not in a100
        override = a100["kubespawner_override"]
        assert override["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-2026-08-24"
        assert (override["default_url"], override["cpu_guarantee"], override["mem_limit"]) == ("/lab", 2, "64G")
        assert override["extra_resource_limits"] == {"nvidia.com/gpu": "1"}

    def test_a_profile_limited_to_nodes(self, secrets):
        shared = by_slug(values(menu(), secrets)[0])["shared-gpu"]["kubespawner_override"]
        assert shared["node_affinity_required"] == [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["rtx"]}]}]
        assert shared["extra_resource_limits"] == {"nvidia.com/gpu.shared": "1"}

    def test_custom_image_must_match_the_pattern_and_be_an_image(self, secrets):
        unlisted = by_slug(values(menu(), secrets)[0])["shared-gpu"]["profile_options"]["image"]["unlisted_choice"]
        assert unlisted["enabled"] is True and unlisted["kubespawner_override"] == {"image": "{value}"}
        regex = unlisted["validation_regex"]
        # KubeSpawner 7.0.0 checks it with re.match (spawner.py _validate_user_options).
        assert re.match(regex, "quay.io/jupyter/julia-notebook:2026-08-24")
        assert re.match(regex, "registry.lab.example.org/thesis:v3")
        for refused in ("docker.io/someone/miner:latest", "quay.io/jupyter/x:1 --privileged",
                        "registry.lab.example.org/UPPER:1", "quay.io/jupyter/x:$(id)"):
            assert not re.match(regex, refused), refused

    def test_without_a_pattern_any_valid_image_reference(self, secrets):
        data = entry(profiles=[{"kind": "cpu", "display_name": "CPU", "custom_image": {"enabled": True}}])
        unlisted = by_slug(values(inventory.parse(data), secrets)[0])["cpu"]["profile_options"]["image"]["unlisted_choice"]
        assert unlisted["validation_regex"] == inventory.names.IMAGE_PATTERN
        assert re.match(unlisted["validation_regex"], "ghcr.io/lab/notebook:1.0")
        assert not re.match(unlisted["validation_regex"], "ghcr.io/lab/notebook:1.0; reboot")
        # The default image of the kind stays the listed choice.
        choices = by_slug(values(inventory.parse(data), secrets)[0])["cpu"]["profile_options"]["image"]["choices"]
        assert [c["kubespawner_override"]["image"] for c in choices.values()] == [inventory.CPU_IMAGE]

    def test_gpu_entry_left_out_with_the_reason(self, secrets):
        data = entry(profiles=[{"kind": "cpu", "display_name": "CPU"},
                               {"kind": "whole_gpu", "display_name": "Whole", "slug": "whole"}])
        data["hosts"] = {"rtx": {"role": "server", "gpus": 2}}
        v, notes = values(inventory.parse(data), secrets)
        assert list(by_slug(v)) == ["cpu"]
        assert notes.lines == ["profile whole (hub.profiles[1]) left out: every GPU host shares its GPUs, so none "
                               "offers a whole one (set sharing: none on a GPU host to offer whole GPUs)"]

    def test_not_renamed_list_entries_select_by_the_sharing_label(self, secrets):
        inv = menu(gpu={"rename_shared": False})
        profiles = by_slug(values(inv, secrets)[0])
        assert profiles["shared-gpu"]["kubespawner_override"]["node_selector"] == {
            "nvidia.com/gpu.sharing-strategy": "time-slicing"}
        assert profiles["a100"]["kubespawner_override"]["node_selector"] == {"nvidia.com/gpu.sharing-strategy": "none"}


class TestSpawnerWide:
    def test_named_servers_culling_environment_shm_and_pull_secrets(self, secrets):
        v, _ = values(menu(), secrets)
        assert (v["hub"]["allowNamedServers"], v["hub"]["namedServerLimitPerUser"]) == (True, 3)
        assert v["cull"] == {"enabled": True, "timeout": 7200, "maxAge": 86400}
        assert v["singleuser"]["extraEnv"] == {"OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
                                               "MKL_NUM_THREADS": "4"}
        storage = v["singleuser"]["storage"]
        assert storage["extraVolumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
        assert storage["extraVolumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
        assert v["imagePullSecrets"] == ["lab-registry"]

    def test_left_out_they_leave_the_chart_defaults(self, secrets):
        v, _ = values(load_inventory("seed"), secrets)
        assert not {"cull", "imagePullSecrets"} & set(v)
        # extraEnv and annotations: the OAuth credentials' Secret (test_render, test_secrets).
        assert set(v["hub"]) == {"config", "extraEnv", "annotations"} and "extraEnv" not in v["singleuser"]

    def test_culling_off(self, secrets):
        v, _ = values(menu(hub__culling={"enabled": False}), secrets)
        assert v["cull"] == {"enabled": False}


class TestRealKubeSpawner:
    """The rendered profile list through KubeSpawner 7.0.0's own code: the form's profile list
    (_get_initialized_profile_list), the check of what a user sent (_validate_user_options),
    and the overrides applied for it (_load_profile)."""

    @pytest.fixture
    def spawner(self, secrets):
        pytest.importorskip("kubespawner")
        from kubespawner import KubeSpawner
        from gpuhub import hubcheck
        spawner = hubcheck._bare(KubeSpawner)
        profiles = spawner._get_initialized_profile_list(values(menu(), secrets)[0]["singleuser"]["profileList"])
        return spawner, profiles

    def apply(self, spawner, profiles, options):
        spawner.user_options = options
        spawner._validate_user_options(profiles)
        spawner._load_profile(options.get("profile"), profiles)
        return spawner

    def test_defaults_and_choices(self, spawner):
        s, profiles = spawner
        self.apply(s, profiles, {"profile": "cpu", "image": "r", "interface": "classic-notebook", "memory": "16-gb"})
        assert (s.image, s.default_url, s.mem_limit, s.mem_guarantee) == (
            "quay.io/jupyter/r-notebook:2026-08-24", "/tree", 16 * 1024 ** 3, 4 * 1024 ** 3)
        assert s.environment["NVIDIA_VISIBLE_DEVICES"] == "void"

    def test_a_custom_image_that_matches(self, spawner):
        s, profiles = spawner
        self.apply(s, profiles, {"profile": "shared-gpu", "image--unlisted-choice": "registry.lab.example.org/thesis:v3"})
        assert s.image == "registry.lab.example.org/thesis:v3"
        assert s.extra_resource_limits == {"nvidia.com/gpu.shared": "1"}

    @pytest.mark.parametrize("image", ["docker.io/someone/miner:latest", "quay.io/jupyter/x:1 --privileged"])
    def test_a_custom_image_that_does_not_is_refused(self, spawner, image):
        s, profiles = spawner
        with pytest.raises(ValueError, match="failed validation regex"):
            self.apply(s, profiles, {"profile": "shared-gpu", "image--unlisted-choice": image})

    def test_no_custom_image_where_none_is_offered(self, spawner):
        s, profiles = spawner
        with pytest.raises(ValueError, match="without being enabled"):
            self.apply(s, profiles, {"profile": "cpu", "image--unlisted-choice": "quay.io/jupyter/x:1"})


def test_audit_probes_use_the_menus_default_image_and_kind():
    from gpuhub import audit
    inv = menu()
    assert audit.profile_slug(inv, "cpu", inv.hosts["a100"]) == "cpu"
    assert audit.profile_slug(inv, "whole_gpu", inv.hosts["a100"]) == "a100"
    assert audit.profile_slug(inv, "shared_gpu", inv.hosts["a100"]) is None  # limited to rtx
    cpu = audit.profile_job(inv, "cpu", inv.hosts["a100"])["spec"]["template"]["spec"]
    assert cpu["containers"][0]["image"] == "quay.io/jupyter/scipy-notebook:2026-08-24"
    whole = audit.profile_job(menu(gpu={"rename_shared": False}), "a100", inv.hosts["a100"])["spec"]["template"]["spec"]
    assert whole["nodeSelector"] == {"nvidia.com/gpu.sharing-strategy": "none", "kubernetes.io/hostname": "a100"}


class TestGitHubTeams:
    def test_rendered_login_settings_and_hub_config(self, secrets):
        v, _ = values(menu(), secrets)
        github = v["hub"]["config"]["GitHubOAuthenticator"]
        assert github["populate_teams_in_auth_state"] is True and github["manage_groups"] is True
        assert github["scope"] == ["read:org"]
        assert list(v["hub"]["extraConfig"]) == [render.TEAMS_CONFIG_KEY]
        assert render.profile_teams(menu()) == {"shared-gpu": ["lab:ml-group", "lab:staff"]}  # org lowercased

    def test_nothing_of_it_without_teams(self, secrets):
        for inv in (load_inventory("seed"), menu(hub__profiles=[{"kind": "cpu", "display_name": "CPU"}])):
            v, _ = values(inv, secrets)
            assert "extraConfig" not in v["hub"]
            assert not {"populate_teams_in_auth_state", "manage_groups"} & set(v["hub"]["config"]["GitHubOAuthenticator"])

    def test_teams_become_groups_and_groups_pick_the_profiles(self, secrets):
        """The hub.extraConfig snippet run as Z2JH runs it (exec with `c` holding the profile list),
        then the real GitHubOAuthenticator 17.4.0 turning GitHub's team objects into groups."""
        pytest.importorskip("oauthenticator")
        import asyncio
        from types import SimpleNamespace
        from traitlets.config import Config
        from oauthenticator.github import GitHubOAuthenticator
        v, _ = values(menu(), secrets)
        c = Config()
        for section, settings in v["hub"]["config"].items():
            for key, value in settings.items():
                setattr(c[section], key, value)
        c.KubeSpawner.profile_list = v["singleuser"]["profileList"]
        exec(v["hub"]["extraConfig"][render.TEAMS_CONFIG_KEY], {"c": c})
        authenticator = GitHubOAuthenticator(config=c)
        # GitHub's "list teams for the authenticated user" answer, as auth_state["teams"] holds it.
        teams = [{"slug": "ml-group", "name": "ML group", "organization": {"login": "LAB"}},
                 {"slug": "other", "organization": {"login": "elsewhere"}}]
        groups = asyncio.run(authenticator.get_user_groups({"teams": teams}))
        assert groups == {"lab:ml-group", "elsewhere:other"}
        assert asyncio.run(authenticator.get_user_groups({})) == set()

        def profiles_for(*names):
            user = SimpleNamespace(groups=[SimpleNamespace(name=n) for n in names])
            return [p["slug"] for p in c.KubeSpawner.profile_list(SimpleNamespace(user=user))]
        assert profiles_for(*groups) == ["cpu", "shared-gpu", "a100"]
        assert profiles_for("lab:staff") == ["cpu", "shared-gpu", "a100"]
        assert profiles_for() == ["cpu", "a100"]
        assert profiles_for("elsewhere:ml-group") == ["cpu", "a100"]

    def test_a_hidden_profile_cannot_be_picked_through_the_api(self, secrets):
        pytest.importorskip("kubespawner")
        from types import SimpleNamespace
        from traitlets.config import Config
        from kubespawner import KubeSpawner
        from gpuhub import hubcheck
        v, _ = values(menu(), secrets)
        c = Config()
        c.KubeSpawner.profile_list = v["singleuser"]["profileList"]
        exec(v["hub"]["extraConfig"][render.TEAMS_CONFIG_KEY], {"c": c})
        spawner = hubcheck._bare(KubeSpawner)
        visible = c.KubeSpawner.profile_list(SimpleNamespace(user=SimpleNamespace(groups=[])))
        spawner.user_options = {"profile": "shared-gpu"}
        with pytest.raises(ValueError, match="No such profile: shared-gpu"):
            spawner._validate_user_options(spawner._get_initialized_profile_list(visible))
