"""hubcheck: rendered z2jh values checked against the real JupyterHub classes."""

import warnings

import pytest

for _module in ("jupyterhub", "kubespawner", "oauthenticator"):
    pytest.importorskip(_module, reason=f"hubcheck needs {_module} installed to check against")

from gpuhub import hubcheck  # noqa: E402


def good_values():
    return {
        "hub": {
            "config": {
                "JupyterHub": {"authenticator_class": "github"},
                "GitHubOAuthenticator": {
                    "client_id": "x",
                    "client_secret": "y",
                    "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
                    "allowed_organizations": ["my-lab"],
                    "scope": ["read:org"],
                    # inherited from Authenticator, set on the subclass section
                    "admin_users": ["alice"],
                },
                "Authenticator": {"admin_users": ["alice"]},
                "KubeSpawner": {"start_timeout": 600, "mem_guarantee": "1G"},
            }
        },
        "singleuser": {
            "profileList": [
                {
                    "display_name": "CPU",
                    "slug": "cpu",
                    "default": True,
                    "kubespawner_override": {
                        "image": "quay.io/jupyter/scipy-notebook:2024-12-09",
                        "cpu_limit": 2,
                        "mem_limit": "4G",
                        "environment": {"NVIDIA_VISIBLE_DEVICES": "void"},
                    },
                },
                {
                    "display_name": "Shared GPU",
                    "slug": "shared-gpu",
                    "kubespawner_override": {
                        "extra_resource_limits": {"nvidia.com/gpu.shared": "1"},
                        "extra_pod_config": {"runtimeClassName": "nvidia"},
                    },
                },
            ]
        },
    }


def hub_config(values):
    return values["hub"]["config"]


def profile(values, i):
    return values["singleuser"]["profileList"][i]


def only_problem(values, path):
    """The problems about exactly `path` (message starts with it)."""
    found = [p for p in hubcheck.check_hub_values(values) if p.startswith(path + ":")]
    assert found, f"no problem reported for {path}: {hubcheck.check_hub_values(values)}"
    return found[0]


def test_good_values_have_no_problems():
    assert hubcheck.check_hub_values(good_values()) == []


def test_empty_values_use_chart_defaults_and_pass():
    assert hubcheck.check_hub_values({}) == []


def test_unknown_class_names_path_and_hint():
    values = good_values()
    config = hub_config(values)
    config["GitHubOauthenticator"] = config.pop("GitHubOAuthenticator")
    message = only_problem(values, "hub.config.GitHubOauthenticator")
    assert "unknown class" in message
    assert "did you mean GitHubOAuthenticator?" in message


def test_unknown_option_names_path_and_hint():
    values = good_values()
    github = hub_config(values)["GitHubOAuthenticator"]
    github["allowed_orgs"] = github.pop("allowed_organizations")
    message = only_problem(values, "hub.config.GitHubOAuthenticator.allowed_orgs")
    assert "allowed_organizations" in message


def test_parent_section_is_checked_against_the_authenticator_in_use():
    # traitlets hands Authenticator.* to the GitHubOAuthenticator instance
    values = good_values()
    hub_config(values)["Authenticator"]["allowed_organizations"] = ["my-lab"]
    assert hubcheck.check_hub_values(values) == []


@pytest.mark.parametrize(
    "section, name, value",
    [
        ("GitHubOAuthenticator", "allowed_organizations", "my-lab"),
        ("Authenticator", "admin_users", 5),
        ("KubeSpawner", "start_timeout", "600"),
        ("KubeSpawner", "mem_guarantee", "1Gi"),  # K/M/G/T only, not k8s units
    ],
)
def test_wrong_types_in_hub_config(section, name, value):
    values = good_values()
    hub_config(values)[section][name] = value
    message = only_problem(values, f"hub.config.{section}.{name}")
    assert repr(value) in message or str(value) in message


def test_cross_validation_sees_sibling_options():
    values = good_values()
    hub_config(values)["GitHubOAuthenticator"]["allowed_scopes"] = ["admin:org"]
    message = only_problem(values, "hub.config.GitHubOAuthenticator.allowed_scopes")
    assert "subset" in message


def test_unresolvable_authenticator_class():
    values = good_values()
    hub_config(values)["JupyterHub"]["authenticator_class"] = "nope.NopeAuthenticator"
    message = only_problem(values, "hub.config.JupyterHub.authenticator_class")
    assert "nope.NopeAuthenticator" in message


def test_misspelled_entry_point_gets_hint():
    values = good_values()
    hub_config(values)["JupyterHub"]["authenticator_class"] = "githb"
    message = only_problem(values, "hub.config.JupyterHub.authenticator_class")
    assert "did you mean github" in message


def test_module_instead_of_class_gets_class_hint():
    # kubespawner registers no jupyterhub.spawners entry point
    values = good_values()
    hub_config(values)["JupyterHub"]["spawner_class"] = "kubespawner"
    message = only_problem(values, "hub.config.JupyterHub.spawner_class")
    assert "kubespawner.KubeSpawner" in message
    # the KubeSpawner section is still recognised and checked
    assert not any(p.startswith("hub.config.KubeSpawner") for p in hubcheck.check_hub_values(values))


def test_import_string_authenticator_class_resolves():
    values = good_values()
    hub_config(values)["JupyterHub"]["authenticator_class"] = "oauthenticator.github.GitHubOAuthenticator"
    assert hubcheck.check_hub_values(values) == []


def test_section_for_an_authenticator_not_in_use():
    values = good_values()
    hub_config(values)["GoogleOAuthenticator"] = {"client_id": "x"}
    message = only_problem(values, "hub.config.GoogleOAuthenticator")
    assert "no effect" in message and "GitHubOAuthenticator" in message


def test_deprecated_kubespawner_name_points_to_new_one():
    values = good_values()
    hub_config(values)["KubeSpawner"]["singleuser_image_spec"] = "x"
    message = only_problem(values, "hub.config.KubeSpawner.singleuser_image_spec")
    assert "deprecated" in message and "use image" in message


def test_override_with_unknown_key():
    values = good_values()
    override = profile(values, 1)["kubespawner_override"]
    override["extra_resource_limit"] = override.pop("extra_resource_limits")
    message = only_problem(
        values, "singleuser.profileList[1].kubespawner_override.extra_resource_limit"
    )
    assert "did you mean extra_resource_limits" in message


@pytest.mark.parametrize(
    "name, value",
    [("cpu_limit", "lots"), ("cpu_limit", "500m"), ("mem_limit", "4Gi"), ("environment", ["A=1"])],
)
def test_override_with_wrong_type(name, value):
    values = good_values()
    profile(values, 0)["kubespawner_override"][name] = value
    only_problem(values, f"singleuser.profileList[0].kubespawner_override.{name}")


def test_profile_item_unknown_key():
    values = good_values()
    profile(values, 0)["descripton"] = "typo"
    message = only_problem(values, "singleuser.profileList[0].descripton")
    assert "did you mean description?" in message


def test_profile_options_are_checked():
    values = good_values()
    profile(values, 0)["profile_options"] = {
        "image": {
            "display_name": "Image",
            "choices": {
                "base": {
                    "display_name": "Base",
                    "dflt": True,
                    "kubespawner_override": {"image": 5},
                },
            },
            "unlisted_choice": {
                "enabled": True,
                # "{value}" is filled in at spawn time: only the name is checked
                "kubespawner_override": {"cpu_limit": "{value}", "imag": "{value}"},
            },
        }
    }
    problems = hubcheck.check_hub_values(values)
    base = "singleuser.profileList[0].profile_options.image"
    assert any(p.startswith(f"{base}.choices.base.dflt:") for p in problems)
    assert any(p.startswith(f"{base}.choices.base.kubespawner_override.image:") for p in problems)
    unlisted = f"{base}.unlisted_choice.kubespawner_override"
    assert any(p.startswith(f"{unlisted}.imag:") and "image" in p for p in problems)
    assert not any(p.startswith(f"{unlisted}.cpu_limit") for p in problems)


def test_warnings_become_problems_and_nothing_is_printed(capsys):
    values = good_values()
    hub_config(values)["KubeSpawner"]["image_pull_secrets"] = "regcred"  # deprecated form
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a real warning
        problems = hubcheck.check_hub_values(values)
    assert any(
        p.startswith("hub.config.KubeSpawner.image_pull_secrets:") and "deprecated" in p
        for p in problems
    )
    assert capsys.readouterr() == ("", "")


def test_kubespawner_is_never_constructed(monkeypatch):
    # KubeSpawner.__init__ would load kube config and build an API client
    import kubespawner.spawner

    def no_cluster(*args, **kwargs):
        raise AssertionError("hubcheck touched the Kubernetes client")

    monkeypatch.setattr(kubespawner.spawner, "load_config", no_cluster)
    monkeypatch.setattr(kubespawner.spawner, "shared_client", no_cluster)
    assert hubcheck.check_hub_values(good_values()) == []


@pytest.mark.parametrize("name", ["seed", "multi-node", "not-renamed", "template", "default-runtime", "menu"])
def test_rendered_values_load_into_the_real_classes(name, secrets):
    # Every profile gpuhub renders (node selection by the sharing label when shared GPUs keep
    # the name nvidia.com/gpu, issue 10) is what KubeSpawner 7.0.0 takes.
    from gpuhub import render
    from testdata import load_inventory
    values = render.jupyterhub_values(load_inventory(name), secrets, render.Notes())
    assert hubcheck.check_hub_values(values) == []


def test_node_selector_of_the_wrong_type_is_caught():
    values = good_values()
    profile(values, 1)["kubespawner_override"]["node_selector"] = ["nvidia.com/gpu.sharing-strategy=none"]
    assert "expected a dict" in only_problem(values, "singleuser.profileList[1].kubespawner_override.node_selector")
