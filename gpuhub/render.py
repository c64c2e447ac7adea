"""Every artifact gpuhub deploys, built as data and dumped once. Touches no host.

YAML files are dicts dumped by PyYAML (never hand-indented). The containerd template is a
Go template that K3s renders: it is copied verbatim from templates/, never run through jinja.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import kube_secret, names, overlay, paths
from .inventory import GPU_RESOURCE, SHARED_RESOURCE, Host, Inventory, Secrets, choice_keys, profile_entries

TEMPLATES = paths.TEMPLATES
AGENT_TOKEN_FILE = "/etc/rancher/k3s/gpuhub-node-token"
MARKER = ".gpuhub-render"


class _Dumper(yaml.SafeDumper):
    """Plain YAML a person can read: no anchors/aliases, multi-line text as a literal block."""

    def ignore_aliases(self, data):
        return True


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


# --- K3s ---------------------------------------------------------------------------------

def node_labels(inv: Inventory, host: Host) -> list:
    """Labels K3s sets when the node registers. The sharing label
    (nvidia.com/device-plugin.config) is gpu.plugin's: K3s applies node-label only at
    registration, and a replicas change must not rewrite config.yaml and restart K3s."""
    labels = [f"gpuhub.io/role={host.role}"]
    if host.gpus:
        # Device plugin chart >= 0.15 only schedules on nodes labelled by NFD/GFD or with
        # nvidia.com/gpu.present=true (NVIDIA/k8s-device-plugin#1213): label up front.
        labels.append("nvidia.com/gpu.present=true")
    return labels


def k3s_config(inv: Inventory, host: Host) -> dict:
    """/etc/rancher/k3s/config.yaml, all of it. Agents name the token file, never the token."""
    config = {"node-name": host.name}
    if host.role == "server":
        config["write-kubeconfig-mode"] = inv.cluster["kubeconfig_mode"]
        if inv.hub["https"] != "ingress":
            # JupyterHub's own proxy takes 80/443 (Let's Encrypt or the institution's
            # certificate); Traefik would hold them. In ingress mode Traefik serves the hub.
            config["disable"] = ["traefik"]
        if host.address:
            config["tls-san"] = [host.address]
    else:
        config["server"] = inv.server_url
        config["token-file"] = AGENT_TOKEN_FILE
    config["node-label"] = node_labels(inv, host)
    if inv.gpu["runtime"] == "default-runtime" and host.gpus:
        config["default-runtime"] = "nvidia"
    # Never one of the keys above: inventory._k3s_extra_checks refuses those.
    config.update(inv.k3s_extra_config(host.role))
    return config


def containerd_template() -> str:
    return (TEMPLATES / "containerd" / "config-v3.toml.tmpl").read_text()


# --- NVIDIA device plugin -------------------------------------------------------------------

def sharing_config(replicas: int, rename: bool = True, fail_requests_greater_than_one: bool = True) -> dict:
    """The device plugin's config file. Sharing keys live under sharing.timeSlicing: under
    `flags` they are silently ignored (NVIDIA/k8s-device-plugin#1433). No per-resource `rename`:
    v0.20.0 drops it (api/config/v1/config.go DisableResourceNamingInConfig, replicas.go
    disableResoureRenaming: only renameByDefault decides, NAME -> NAME.shared)."""
    config = {"version": "v1", "flags": {"migStrategy": "none"}}
    if replicas > 1:
        config["sharing"] = {"timeSlicing": {
            "renameByDefault": rename,  # true: shared GPUs become nvidia.com/gpu.shared
            # internal/rm/rm.go ValidateRequest: with it, a request for more than one replica fails
            "failRequestsGreaterThanOne": fail_requests_greater_than_one,
            "resources": [{"name": "nvidia.com/gpu", "replicas": replicas}],
        }}
    return config


def device_plugin_values(inv: Inventory, overlaid: bool = True) -> dict:
    """The plugin chart's values; `overlaid=False`: gpuhub's own, without the overlay."""
    rename, fail = inv.gpu["rename_shared"], not inv.gpu["allow_multiple_slices"]
    configs = {}
    for host in inv.gpu_hosts:
        configs[host.plugin_config] = dump(sharing_config(host.replicas, rename, fail))
    if not configs:
        configs["exclusive"] = dump(sharing_config(1))
    default = inv.gpu_hosts[0].plugin_config if inv.gpu_hosts else "exclusive"
    values = {"gfd": {"enabled": True}}
    if not inv.nvidia_is_default:
        # Without it the plugin runs under runc and cannot load NVML (NVIDIA/k8s-device-plugin#477).
        values["runtimeClassName"] = "nvidia"
    # The plugin's flags the chart takes as top-level values (inventory.PLUGIN_FLAGS); unset ones
    # stay out, so the chart's null defaults (and the plugin's own) apply.
    values.update({k: v for k, v in inv.gpu["plugin_flags"].items() if v is not None})
    values["config"] = {"map": dict(sorted(configs.items())), "default": default}
    return with_overlay(inv, "plugin", values) if overlaid else values


def with_overlay(inv: Inventory, chart: str, values: dict) -> dict:
    """`values` with the inventory's overlay for `chart` merged last, as helm would merge a
    second values file (gpuhub.overlay.merge): so the release comparison, the checks and the
    rendered file all see what helm gets."""
    if chart not in inv.overlays:
        return values
    return overlay.merge(values, inv.overlays[chart][2])


def overlay_note(inv: Inventory, chart: str, rendered: dict) -> str:
    """What a plan or `inv render` says about the overlay for `chart` ("" without one).
    `rendered` is gpuhub's values before the overlay."""
    if chart not in inv.overlays:
        return ""
    key, file, values = inv.overlays[chart]
    return overlay.describe(f"{file.name} ({key})", rendered, values)


# --- JupyterHub -----------------------------------------------------------------------------

@dataclass
class Notes:
    """What render decided that a user should hear about (profiles left out and why)."""
    lines: list = field(default_factory=list)

    def add(self, line: str):
        self.lines.append(line)


def _kubespawner_override(inv: Inventory, profile: dict, gpu_resource=None) -> dict:
    override = {}
    images = profile["images"]
    if len(images) == 1 and not profile["custom_image"]["enabled"]:
        override["image"] = images[0]["image"]
    for key in ("cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee"):
        if profile[key] is not None:
            override[key] = profile[key]
    if len(profile["memory"]) == 1:
        override.update(_memory_override(profile["memory"][0]))
    if len(profile["interfaces"]) == 1:
        override["default_url"] = profile["interfaces"][0]["default_url"]
    if gpu_resource is None:
        # With nvidia as the default runtime, CUDA images (NVIDIA_VISIBLE_DEVICES=all) see every
        # GPU unaccounted (NVIDIA/k8s-device-plugin#87, #1596); "void" makes the runtime act as runc.
        override["environment"] = {"NVIDIA_VISIBLE_DEVICES": "void"}
    else:
        override["extra_resource_limits"] = {gpu_resource: "1"}
        if not inv.nvidia_is_default:
            override["extra_pod_config"] = {"runtimeClassName": "nvidia"}
    if profile["nodes"]:
        # K3s registers each node under its inventory name (k3s_config node-name), which the
        # kubelet also puts in kubernetes.io/hostname (the GPU test Job pins by the same label).
        override["node_affinity_required"] = [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": list(profile["nodes"])}]}]
    return override


def _memory_override(size: dict) -> dict:
    override = {"mem_limit": size["limit"]}
    if size["guarantee"]:
        override["mem_guarantee"] = size["guarantee"]
    return override


# What a custom image must match when the inventory gives no pattern of its own, and is
# checked after its pattern when it does: gpuhub's own image test (names.image).
CUSTOM_IMAGE_MESSAGE = "an image reference such as quay.io/jupyter/scipy-notebook:2026-08-24"


def profile_options(profile: dict) -> dict:
    """KubeSpawner 7.0.0 profile_options (kubespawner/spawner.py `profile_list` help): a choice
    per image (and a free-form one when custom images are allowed), interface and memory size;
    an option with one choice is set in the profile itself. The first choice is the default."""
    keys = choice_keys(profile)
    options = {}
    images, custom = profile["images"], profile["custom_image"]
    if len(images) > 1 or custom["enabled"]:
        options["image"] = {"display_name": "Image", "choices": _choices(
            keys["image"], [(i["display_name"] or i["image"], {"image": i["image"]}) for i in images])}
        if custom["enabled"]:
            pattern = names.IMAGE_PATTERN
            if custom["pattern"]:
                pattern = f"(?={custom['pattern']}){pattern}"
            options["image"]["unlisted_choice"] = {
                "enabled": True, "display_name": custom["display_name"],
                "display_name_in_choices": custom["display_name"],
                "validation_regex": pattern, "validation_message": "must be " + CUSTOM_IMAGE_MESSAGE,
                "kubespawner_override": {"image": "{value}"}}
    if len(profile["interfaces"]) > 1:
        options["interface"] = {"display_name": "Interface", "choices": _choices(
            keys["interface"], [(i["display_name"], {"default_url": i["default_url"]}) for i in profile["interfaces"]])}
    if len(profile["memory"]) > 1:
        options["memory"] = {"display_name": "Memory", "choices": _choices(
            keys["memory"], [(_memory_name(m), _memory_override(m)) for m in profile["memory"]])}
    return options


def default_image(item: dict) -> str:
    """The image a server of this rendered profile gets when the user picks nothing."""
    choices = (item.get("profile_options") or {}).get("image", {}).get("choices", {})
    chosen = next((c for c in choices.values() if c.get("default")), None)
    return chosen["kubespawner_override"]["image"] if chosen else item["kubespawner_override"]["image"]


def _memory_name(size: dict) -> str:
    if size["display_name"]:
        return size["display_name"]
    return size["limit"] + (f" ({size['guarantee']} guaranteed)" if size["guarantee"] else "")


def _choices(keys: list, named: list) -> dict:
    choices = {}
    for i, (key, (display_name, override)) in enumerate(zip(keys, named)):
        choice = {"display_name": display_name}
        if i == 0:
            choice["default"] = True
        choice["kubespawner_override"] = override
        choices[key] = choice
    return choices


# GFD's label for how a node's GPUs are shared (NVIDIA/k8s-device-plugin v0.20.0
# internal/lm/resource.go baseLabeler: "nvidia.com/gpu." + "sharing-strategy", keyed on
# nvidia.com/gpu whatever the resource is called; values from api/config/v1/sharing.go:
# "time-slicing" when replicas > 1, else "none").
SHARING_STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"


def profile_list(inv: Inventory, notes: Notes) -> list:
    renamed = inv.gpu["rename_shared"]
    # kind: (resource, whether a host offers it, why not)
    offered = {
        "cpu": (None, lambda h: True, ""),
        "shared_gpu": (SHARED_RESOURCE if renamed else GPU_RESOURCE, lambda h: h.shares,
                       "no host shares its GPUs (set sharing: timeslice on a GPU host)"),
        "whole_gpu": (GPU_RESOURCE, lambda h: bool(h.gpus) and not h.shares,
                      "every GPU host shares its GPUs, so none offers a whole one "
                      "(set sharing: none on a GPU host to offer whole GPUs)"),
    }
    items = []
    for profile in profile_entries(inv.hub):
        resource, offers, why_not = offered[profile["kind"]]
        name = profile["kind"] if profile["legacy"] else f"{profile['slug']} ({profile['where']})"
        if not profile["enabled"]:
            notes.add(f"profile {name} left out: {profile['where']}.enabled is false")
            continue
        hosts = [h for h in inv.gpu_hosts if not profile["nodes"] or h.name in profile["nodes"]]
        if resource is not None and not any(offers(h) for h in hosts):
            if profile["nodes"]:
                why_not = "none of its nodes offers it"
            notes.add(f"profile {name} left out: " + (why_not if inv.gpu_hosts else "no host has GPUs"))
            continue
        item = {"display_name": profile["display_name"], "description": profile["description"],
                "slug": profile["slug"]}
        if not profile["legacy"] and not profile["description"]:
            del item["description"]
        if profile["default"]:
            item["default"] = True
        override = _kubespawner_override(inv, profile, resource)
        if resource is not None and not renamed:
            # Not renamed, shared and whole GPUs are both nvidia.com/gpu: only the node's sharing
            # label keeps a whole-GPU server off a time-sliced node (and the other way round).
            strategy = next(h.sharing_strategy for h in hosts if offers(h))
            override["node_selector"] = {SHARING_STRATEGY_LABEL: strategy}
        item["kubespawner_override"] = override
        options = profile_options(profile)
        if options:
            item["profile_options"] = options
        items.append(item)
    return items


# Profiles limited to GitHub teams. KubeSpawner 7.0.0's profile_list has no group filter, but
# takes a callable (kubespawner/spawner.py `profile_list`: Union(List(Dict), Callable)), which it
# calls for the form and again when it checks what a user sent (_validate_user_options through
# _get_profile: a slug not in the list is refused), so an API request cannot pick a hidden one.
# The user's groups are their GitHub teams: OAuthenticator 17.4.0 github.py
# populate_teams_in_auth_state puts GitHub's "list teams for the authenticated user" answer in
# auth_state["teams"] (objects with `slug` and `organization.login`), and with manage_groups
# oauth2.py _apply_managed_groups makes auth_state_groups_key(auth_state) the user's groups at
# each login. Z2JH 4.4.0 files/hub/jupyterhub_config.py runs hub.extraConfig last, after it set
# KubeSpawner.profile_list from singleuser.profileList.
TEAMS_CONFIG_KEY = "gpuhub-profile-teams"
TEAMS_CONFIG = """\
# Written by gpuhub (inv render): profiles limited to GitHub teams.
import json


def _gpuhub_teams_of(auth_state):
    return [team["organization"]["login"].lower() + ":" + team["slug"]
            for team in (auth_state or {{}}).get("teams") or []]


c.GitHubOAuthenticator.auth_state_groups_key = _gpuhub_teams_of
_gpuhub_profile_teams = json.loads({teams!r})
_gpuhub_profiles = c.KubeSpawner.profile_list


def _gpuhub_profiles_for(spawner):
    groups = {{group.name for group in spawner.user.groups}}
    return [p for p in _gpuhub_profiles
            if p["slug"] not in _gpuhub_profile_teams or groups & set(_gpuhub_profile_teams[p["slug"]])]


c.KubeSpawner.profile_list = _gpuhub_profiles_for
"""


def profile_teams(inv: Inventory) -> dict:
    """{slug: [organisation:team, ...]} for the profiles limited to GitHub teams (organisations
    lowercased: GitHub logins ignore case, team slugs are lowercase)."""
    teams = {}
    for e in profile_entries(inv.hub):
        if e["github_teams"]:
            teams[e["slug"]] = sorted({t.split(":")[0].lower() + ":" + t.split(":")[1] for t in e["github_teams"]})
    return teams


def teams_config(teams: dict) -> str:
    import json
    return TEAMS_CONFIG.format(teams=json.dumps(teams, sort_keys=True))


def _auth_config(inv: Inventory) -> dict:
    hub = inv.hub
    # No client id or secret here: GitHubOAuthenticator reads them from the hub's environment
    # (_auth_env), so the values, helm's release records and `inv render` hold no secret.
    github = {"oauth_callback_url": f"https://{hub['hostname']}/hub/oauth_callback"}
    if hub["github"]["organizations"]:
        github["allowed_organizations"] = list(hub["github"]["organizations"])
        # Private org membership is visible only with read:org (org admins approve the app once).
        github["scope"] = ["read:org"]
    if hub["allow_any_github_user"]:
        github["allow_all"] = True
    authenticator = {}
    if hub["admin_users"]:
        authenticator["admin_users"] = list(hub["admin_users"])
    if hub["github"]["allowed_users"]:
        authenticator["allowed_users"] = list(hub["github"]["allowed_users"])
    if profile_teams(inv):
        github["scope"] = ["read:org"]  # populate_teams_in_auth_state needs it
        github["populate_teams_in_auth_state"] = True
        github["manage_groups"] = True  # auth_state_groups_key (hub.extraConfig) requires it
    config = {"JupyterHub": {"authenticator_class": "github"}, "GitHubOAuthenticator": github}
    if authenticator:
        config["Authenticator"] = authenticator
    if hub["slug_scheme"]:
        config["KubeSpawner"] = {"slug_scheme": hub["slug_scheme"]}
    return config


def home_storage(hub: dict) -> dict:
    """singleuser.storage for users' home volumes (Z2JH 4.4.0 values.yaml: type dynamic, capacity,
    dynamic.storageClass, dynamic.storageAccessModes; files/hub/jupyterhub_config.py turns them into
    KubeSpawner's storage_capacity, storage_class, storage_access_modes). The PVC's name stays the
    chart's: pvcNameTemplate unset keeps KubeSpawner 7.0.0's pvc_name_template "claim-{user_server}",
    and volumeNameTemplate "volume-{user_server}", so every named server has a volume of its own."""
    storage = {}
    if hub["storage_capacity"]:
        storage["capacity"] = hub["storage_capacity"]
    dynamic = {}
    if hub["storage_class"]:
        dynamic["storageClass"] = hub["storage_class"]
    if hub["storage_access_modes"]:
        dynamic["storageAccessModes"] = list(hub["storage_access_modes"])
    if dynamic:
        storage["dynamic"] = dynamic
    return storage


def named_server_storage(hub: dict) -> dict:
    """What named servers' volumes set apart from the homes: KubeSpawner trait -> value."""
    named = hub["named_servers"]
    if not named["enabled"]:
        return {}
    wanted = {"storage_class": named["storage_class"], "storage_capacity": named["storage_capacity"],
              "storage_access_modes": list(named["storage_access_modes"]) or None}
    return {k: v for k, v in wanted.items() if v}


# Named servers on a StorageClass of their own. KubeSpawner 7.0.0 has one storage_class (and
# storage_access_modes, storage_capacity) for every server of a user, read when it makes the PVC
# (spawner.py get_pvc_manifest, called from _start); there is no per-server trait, and a profile's
# kubespawner_override would tie the class to the profile, not to the server. JupyterHub 5.5.0
# runs Spawner.pre_spawn_hook(spawner) before start (user.py spawn -> run_pre_spawn_hook), with
# spawner.name the server's name ("" for the default server): the hook sets the traits there.
# The PVC is made once (storage_pvc_ensure, Z2JH 4.4.0 jupyterhub_config.py): a class changed
# later applies to new named servers only. A pre_spawn_hook set before (on KubeSpawner or
# Spawner, in an hub.extraConfig entry sorted before this one: Z2JH 4.4.0 jupyterhub_config.py
# runs them in sorted key order) still runs, first; one set after replaces this one.
NAMED_SERVER_STORAGE_KEY = "gpuhub-named-server-storage"
NAMED_SERVER_STORAGE_CONFIG = """\
# Written by gpuhub (inv render): named servers' volumes on their own StorageClass.
import json

_gpuhub_named_storage = json.loads({settings!r})
_gpuhub_earlier_pre_spawn_hook = c.KubeSpawner.get("pre_spawn_hook") or c.Spawner.get("pre_spawn_hook")


def _gpuhub_named_server_storage(spawner):
    if _gpuhub_earlier_pre_spawn_hook is not None:
        _gpuhub_earlier_pre_spawn_hook(spawner)
    if spawner.name:
        for trait, value in _gpuhub_named_storage.items():
            setattr(spawner, trait, value)


c.KubeSpawner.pre_spawn_hook = _gpuhub_named_server_storage
"""


def named_server_storage_config(settings: dict) -> str:
    import json
    return NAMED_SERVER_STORAGE_CONFIG.format(settings=json.dumps(settings, sort_keys=True))


# OAuthenticator 17.4.0: GitHubOAuthenticator.client_id_env / client_secret_env are these
# (oauthenticator/github.py), read by OAuthenticator._client_id_default / _client_secret_default
# when hub.config sets neither (oauthenticator/oauth2.py; OAUTH_CLIENT_ID/_SECRET only after them).
CLIENT_ID_ENV, CLIENT_SECRET_ENV = "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"
GITHUB_SECRET_NAME = "gpuhub-github-oauth"  # gpuhub's own, in the hub's namespace
# Z2JH 4.4.0 hub.annotations land on the hub pod's template (templates/hub/deployment.yaml), as
# the chart's own checksum/secret does: a new digest here is a new pod, which reads the new
# credentials (a container reads env from a Secret only when it starts).
OAUTH_DIGEST_ANNOTATION = "gpuhub.io/github-oauth-digest"
UNSET_DIGEST = "unset: GPUHUB_GITHUB_CLIENT_ID and GPUHUB_GITHUB_CLIENT_SECRET (hub.launch needs them)"


def github_secret(inv: Inventory) -> dict:
    """Where the hub's OAuth credentials live: {namespace, name, client_id_key, client_secret_key,
    managed}. managed: gpuhub's own Secret (GITHUB_SECRET_NAME), filled from the local secrets;
    else the one hub.github.existing_secret names, which the site keeps."""
    existing = inv.hub["github"]["existing_secret"]
    if existing["name"]:
        return {"namespace": inv.hub["namespace"], "name": existing["name"], "managed": False,
                "client_id_key": existing["client_id_key"], "client_secret_key": existing["client_secret_key"]}
    return {"namespace": inv.hub["namespace"], "name": GITHUB_SECRET_NAME, "managed": True,
            "client_id_key": "client_id", "client_secret_key": "client_secret"}


def github_secret_data(inv: Inventory, secrets: Secrets) -> dict:
    """{key: value} of gpuhub's own OAuth Secret (the client secret a gpuhub.secret.Secret);
    raises InventoryError naming the variables when a local secret is missing."""
    ref = github_secret(inv)
    creds = secrets.require("github_client_id", "github_client_secret")
    return {ref["client_id_key"]: creds["github_client_id"], ref["client_secret_key"]: creds["github_client_secret"]}


def _auth_env(inv: Inventory, secrets: Secrets) -> tuple:
    """(hub.extraEnv, hub.annotations): the credentials as environment variables from the Secret
    (Z2JH 4.4.0 hub.extraEnv, a map whose values may be k8s EnvVar specs with valueFrom.
    secretKeyRef: values.schema.yaml, rendered by _helpers.tpl jupyterhub.extraEnv); for gpuhub's
    own Secret, the digest of its data on the pod, so that new credentials restart the hub."""
    ref = github_secret(inv)
    env = {variable: {"valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref[key]}}}
           for variable, key in ((CLIENT_ID_ENV, "client_id_key"), (CLIENT_SECRET_ENV, "client_secret_key"))}
    if not ref["managed"]:
        return env, {}
    if secrets is None:  # `inv render` without the local secrets: it says so, hub.launch needs them
        return env, {OAUTH_DIGEST_ANNOTATION: UNSET_DIGEST}
    return env, {OAUTH_DIGEST_ANNOTATION: kube_secret.data_digest(ref["namespace"], ref["name"],
                                                                 github_secret_data(inv, secrets))}


def split_image(ref: str):
    """'registry/name:tag' -> (name, tag); None for a digest reference the chart cannot split."""
    if "@" in ref:
        return None
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def jupyterhub_values(inv: Inventory, secrets: Secrets, notes: Notes, overlaid: bool = True) -> dict:
    """The hub chart's values; `overlaid=False`: gpuhub's own, without the overlay."""
    hub = inv.hub
    singleuser = {}
    entries = profile_entries(hub)
    first = entries[0]["images"][0]["image"]  # the mapping form: the CPU profile's image
    image = split_image(first)
    if image:
        # The fallback image (and what the chart's image puller fetches); profiles set their own.
        singleuser["image"] = {"name": image[0], "tag": image[1]}
    singleuser["profileList"] = profile_list(inv, notes)
    if hub["environment"]:
        # Z2JH 4.4.0: singleuser.extraEnv -> KubeSpawner.environment (files/hub/jupyterhub_config.py);
        # a profile's own environment (NVIDIA_VISIBLE_DEVICES) is merged into it (KubeSpawner
        # 7.0.0 updates dictionaries from overrides recursively).
        singleuser["extraEnv"] = {k: str(v) for k, v in hub["environment"].items()}
    storage = home_storage(hub)
    if hub["shm_size"]:
        # A container's /dev/shm is 64M by default; an emptyDir in memory over it (counted in
        # the server's memory limit). Z2JH 4.4.0 singleuser.storage.extraVolumes/extraVolumeMounts
        # (a list in k8s syntax); K/M/G/T are KubeSpawner's binary units, so Ki/Mi/Gi/Ti here.
        storage["extraVolumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory",
                                                                 "sizeLimit": hub["shm_size"] + "i"}}]
        storage["extraVolumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if storage:
        singleuser["storage"] = storage
    auth_env, auth_annotations = _auth_env(inv, secrets)
    values = {
        **https_values(inv),
        "hub": {"config": _auth_config(inv), "extraEnv": auth_env},
        "singleuser": singleuser,
    }
    if auth_annotations:
        values["hub"]["annotations"] = auth_annotations
    teams = profile_teams(inv)
    if teams:
        values["hub"]["extraConfig"] = {TEAMS_CONFIG_KEY: teams_config(teams)}
    named_storage = named_server_storage(hub)
    if named_storage:
        values["hub"].setdefault("extraConfig", {})[NAMED_SERVER_STORAGE_KEY] = named_server_storage_config(named_storage)
    if hub["named_servers"]["enabled"]:
        values["hub"]["allowNamedServers"] = True
        if hub["named_servers"]["limit_per_user"]:
            values["hub"]["namedServerLimitPerUser"] = hub["named_servers"]["limit_per_user"]
    culling = hub["culling"]
    if any(v is not None for v in culling.values()):
        # Z2JH 4.4.0 cull: enabled (required once cull is given; the chart's default is true),
        # timeout and maxAge in seconds (jupyterhub-idle-culler --timeout / --max-age).
        cull = {"enabled": culling["enabled"] is not False}
        if culling["timeout"]:
            cull["timeout"] = names.duration_seconds(culling["timeout"])
        if culling["max_age"]:
            cull["maxAge"] = names.duration_seconds(culling["max_age"])
        values["cull"] = cull
    if hub["image_pull_secrets"]:
        # Z2JH 4.4.0 imagePullSecrets: appended to every pod's spec.imagePullSecrets, so the user
        # servers and the image pullers (which fetch the profiles' images) can reach a private
        # registry. The Secrets themselves are the site's: kubectl create secret docker-registry.
        values["imagePullSecrets"] = list(hub["image_pull_secrets"])
    if not hub["image_prepuller"]:
        # Z2JH 4.4.0 values.yaml: prePuller.hook.enabled and prePuller.continuous.enabled
        # (both true by default); the chart renders neither puller when they are false.
        values["prePuller"] = {"hook": {"enabled": False}, "continuous": {"enabled": False}}
    if not overlaid:
        return values
    if "hub" in inv.overlays:
        notes.add(overlay_note(inv, "hub", values))
    return with_overlay(inv, "hub", values)


# --- HTTPS (hub.https) -----------------------------------------------------------------------

TRAEFIK_CLASS = "traefik"  # the IngressClass K3s's bundled Traefik chart creates
CLUSTER_ISSUER = "gpuhub-letsencrypt"
ACME_ACCOUNT_SECRET = "gpuhub-letsencrypt-account"
HUB_TLS_SECRET = "gpuhub-hub-tls"              # certificate: the institution's files
INGRESS_TLS_SECRET = "gpuhub-hub-ingress-tls"  # ingress: what cert-manager issues
DNS_TOKEN_SECRET, DNS_TOKEN_KEY = "gpuhub-dns01-token", "api-token"
CERT_MANAGER_NAMESPACE = "cert-manager"  # where gpuhub installs it: its cluster resource namespace
TLS_DIGEST_ANNOTATION, SPEC_DIGEST_ANNOTATION = kube_secret.TLS_DIGEST, kube_secret.SPEC_DIGEST
MANAGED = dict([kube_secret.MANAGED_BY])


def https_values(inv: Inventory) -> dict:
    """The hub values of each hub.https mode (Z2JH 4.4.0 values.yaml proxy.https, ingress;
    templates/proxy/deployment.yaml, service.yaml, ingress.yaml)."""
    hub = inv.hub
    mode, hostname = hub["https"], hub["hostname"]
    if mode == "certificate":
        # type secret: the proxy mounts the Secret and serves its tls.crt/tls.key itself; the
        # key never enters the values (type manual would put it there).
        return {"proxy": {"https": {"enabled": True, "type": "secret", "hosts": [hostname],
                                    "secret": {"name": HUB_TLS_SECRET, "key": "tls.key", "crt": "tls.crt"}}}}
    if mode == "ingress":
        # Traefik terminates TLS and forwards plain HTTP to proxy-public, which then needs no
        # node ports of its own: ClusterIP. cert-manager's ingress-shim issues the Certificate
        # for the tls entry from the annotation (cert-manager v1.21.1
        # pkg/controller/certificate-shim/sync.go buildCertificates).
        return {"proxy": {"service": {"type": "ClusterIP"}, "https": {"enabled": False}},
                "ingress": {"enabled": True, "ingressClassName": TRAEFIK_CLASS, "hosts": [hostname],
                            "annotations": {"cert-manager.io/cluster-issuer": CLUSTER_ISSUER},
                            "tls": [{"hosts": [hostname], "secretName": INGRESS_TLS_SECRET}]}}
    return {"proxy": {"https": {"enabled": True, "type": "letsencrypt", "hosts": [hostname],
                                "letsencrypt": {"contactEmail": hub["letsencrypt_email"]}}}}


def cert_manager_values() -> dict:
    """cert-manager v1.21.1 deploy/charts/cert-manager/values.yaml: crds.enabled installs its
    CRDs with the release (off by default; installCRDs is the deprecated spelling)."""
    return {"crds": {"enabled": True}}


def cluster_issuer(inv: Inventory) -> dict:
    """The ACME ClusterIssuer (cert-manager.io/v1; pkg/apis/acme/v1/types_issuer.go v1.21.1):
    HTTP-01 answered through Traefik, the account key kept in a Secret cert-manager makes."""
    solver = {"http01": {"ingress": {"ingressClassName": TRAEFIK_CLASS}}}
    if inv.hub["cert_manager"]["dns01_provider"] == "cloudflare":
        # DNS-01 through Cloudflare's API (ACMEIssuerDNS01ProviderCloudflare: apiTokenSecretRef);
        # a ClusterIssuer's Secrets are read from cert-manager's cluster resource namespace, by
        # default its own (cmd/controller/app/options --cluster-resource-namespace).
        solver = {"dns01": {"cloudflare": {"apiTokenSecretRef": {"name": DNS_TOKEN_SECRET, "key": DNS_TOKEN_KEY}}}}
    spec = {"acme": {
        "email": inv.hub["letsencrypt_email"],
        "server": inv.hub["cert_manager"]["acme_server"],
        "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
        "solvers": [solver],
    }}
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": CLUSTER_ISSUER, "labels": dict(MANAGED),
                         "annotations": {SPEC_DIGEST_ANNOTATION: spec_digest(spec)}},
            "spec": spec}


def spec_digest(spec: dict) -> str:
    import hashlib
    import json
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def dns_token_secret(token) -> dict:
    """The DNS provider's API token (a gpuhub Secret value) for cert-manager's DNS-01 solver:
    to kubectl on stdin only, like the TLS key."""
    import base64
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": DNS_TOKEN_SECRET, "namespace": CERT_MANAGER_NAMESPACE, "labels": dict(MANAGED),
                         "annotations": {TLS_DIGEST_ANNOTATION: token.digest()}},
            "data": {DNS_TOKEN_KEY: base64.b64encode(token.reveal().encode()).decode()}}


def tls_secret(inv: Inventory, pair) -> dict:
    """The kubernetes.io/tls Secret the proxy serves in certificate mode. Holds the key: it goes
    to kubectl on stdin only, never to a file of ours, never into the values."""
    import base64

    def b64(text):
        return base64.b64encode(text.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": HUB_TLS_SECRET, "namespace": inv.hub["namespace"], "labels": dict(MANAGED),
                         "annotations": {TLS_DIGEST_ANNOTATION: pair.digest}},
            "data": {"tls.crt": b64(pair.certificate), "tls.key": b64(pair.key.reveal())}}


# --- GPU test ------------------------------------------------------------------------------

GPU_TEST_NAME = "gpuhub-gpu-test"
# `nvidia-smi -L` first, so the log names the GPU the container was given (the NVIDIA runtime
# mounts nvidia-smi into containers that get a GPU with the `utility` capability, which CUDA base
# images set), then the image's own program: NVIDIA's cuda-sample images (K3s's and the device
# plugin's docs use them) have ENTRYPOINT ["/cuda-samples/sample"], a link to the sample they were
# built for (NVIDIA/k8s-samples deployments/container/Dockerfile.ubuntu); `command` replaces the
# entrypoint, so the Job names it. `;` and not `&&`: without nvidia-smi the sample still says
# why CUDA failed, and its exit status is the Job's.
GPU_TEST_COMMAND = ["sh", "-c", "nvidia-smi -L; exec /cuda-samples/sample"]


def gpu_test_job(inv: Inventory, host: Host = None) -> dict:
    """A Job asking for one GPU; pinned to `host` (and named after it) when one is given."""
    target = host or (inv.gpu_hosts[0] if inv.gpu_hosts else None)
    resource = target.gpu_resource if target else "nvidia.com/gpu"
    name = names.derived(GPU_TEST_NAME, host.name) if host else GPU_TEST_NAME
    labels = {"app.kubernetes.io/name": GPU_TEST_NAME, **dict([kube_secret.MANAGED_BY])}
    pod = {"restartPolicy": "Never"}
    if not inv.nvidia_is_default:
        pod["runtimeClassName"] = "nvidia"
    if host:
        pod["nodeSelector"] = {"kubernetes.io/hostname": host.name}
    pod["containers"] = [{
        "name": "cuda",
        "image": inv.gpu["test_image"],
        "command": list(GPU_TEST_COMMAND),
        "resources": {"limits": {resource: 1}},
    }]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        # One try, a deadline, and cleanup: a failed test must say so, not retry forever.
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 3600,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


# --- All artifacts -------------------------------------------------------------------------

@dataclass
class Artifact:
    text: str
    secret: bool = False


def render_all(inv: Inventory, secrets: Secrets):
    """-> ({relative path: Artifact}, Notes)."""
    notes = Notes()
    files = {
        # No secret in it: the OAuth credentials are referenced from a Kubernetes Secret.
        "cluster/jupyterhub-values.yaml": Artifact(dump(jupyterhub_values(inv, secrets, notes)),
                                                   secret="hub" in inv.overlays),
        # An overlay is the lab's file and may hold credentials of its own: then only its owner reads it.
        "cluster/device-plugin-values.yaml": Artifact(dump(device_plugin_values(inv)), secret="plugin" in inv.overlays),
        "cluster/gpu-test.yaml": Artifact(dump(gpu_test_job(inv))),
    }
    if "plugin" in inv.overlays:
        notes.add(overlay_note(inv, "plugin", device_plugin_values(inv, overlaid=False)))
    if inv.hub["https"] == "ingress":
        files["cluster/cert-manager-values.yaml"] = Artifact(dump(cert_manager_values()))
        files["cluster/cluster-issuer.yaml"] = Artifact(dump(cluster_issuer(inv)))
    for host in inv.ordered_hosts():
        files[f"hosts/{host.name}/k3s-config.yaml"] = Artifact(dump(k3s_config(inv, host)))
        if inv.gpu["runtime"] == "template" and host.gpus:
            files[f"hosts/{host.name}/containerd/config-v3.toml.tmpl"] = Artifact(containerd_template())
    return files, notes


# The checkout's own folders: an --out there would be replaced as a whole on the next render,
# or mix rendered files into the source and the tests.
PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
SOURCE_FOLDERS = ("gpuhub", "scripts", "templates", "tests")


def out_folder(value) -> Path:
    """`inv render --out VALUE` as a folder render may replace, or ValueError saying what to do."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise ValueError("--out is given but empty: name the output folder, or leave the option out")
    if text.startswith("~"):
        raise ValueError(f"--out {text!r} starts with '~', which only a shell expands (here it was quoted, or "
                         "came from a file): give the folder as an absolute path or $HOME/...")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {text} is a file, not a folder: name a folder (render replaces it as a whole)")
    resolved = out.resolve()
    guarded = [PACKAGE]
    if (CHECKOUT / "tasks.py").is_file():  # a checkout, not an installed package
        guarded += [CHECKOUT / name for name in SOURCE_FOLDERS]
    for folder in guarded:
        if resolved == folder or folder in resolved.parents:
            raise ValueError(f"--out {text} is inside the checkout's {folder.name}/ folder: render there would "
                             "mix generated files into the source; choose a folder "
                             "outside gpuhub/, scripts/, templates/ and tests/")
    return out


def write_tree(files: dict, out: Path) -> None:
    """Replace `out` as a whole: build beside it, then swap. Refuses to replace a folder that a
    render did not make, so a mistyped --out cannot wipe someone's files."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} exists and was not written by `inv render`; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        (new / MARKER).write_text("written by gpuhub render; replaced as a whole on every render\n")
        for rel, artifact in sorted(files.items()):
            path = new / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if artifact.secret:
                os.chmod(path.parent, 0o700)
            # Create with the final mode: a secret is never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if artifact.secret else 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(artifact.text)
        # An existing (empty) folder keeps its mode: someone may have made it 0700 on purpose.
        os.chmod(new, stat.S_IMODE(out.stat().st_mode) if out.is_dir() else 0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "tree")
        os.rename(new, out)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
