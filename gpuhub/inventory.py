"""The site inventory: load, merge the defaults kept here, validate strictly, report everything.

Defaults live in this file (the shipped hosts.yaml is an example that only says what a site
changes). Loading never runs anything and never touches a host.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from . import airgapfile, k3sflags, names, overlay, yamlfile
from .secret import Secret
from .schema import (REQUIRED, ListOf, ListOrSection, MapOf, Problem, Section, TextOrSection, Value, did_you_mean,
                     quoted)

# Pinned versions (FACTS.md); bump here, or per site in hosts.yaml.
K3S_VERSION = "v1.37.1+k3s1"
DEVICE_PLUGIN_CHART = "0.20.0"
HUB_CHART = "4.4.0"
HELM_VERSION = "v3.17.3"
TOOLKIT_VERSION = "1.17.8-1"
PLUGIN_CHART_REPO = "https://nvidia.github.io/k8s-device-plugin"
HUB_CHART_REPO = "https://hub.jupyter.org/helm-chart/"
# hub.https: ingress. cert-manager's chart (github:cert-manager/cert-manager v1.21.1
# deploy/charts/cert-manager; its versions carry a leading v) from Jetstack's repository.
CERT_MANAGER_CHART = "v1.21.1"
CERT_MANAGER_CHART_REPO = "https://charts.jetstack.io"
LETSENCRYPT_ACME = "https://acme-v02.api.letsencrypt.org/directory"
# letsencrypt: the chart's own proxy gets a certificate over HTTP-01 (Traefik disabled);
# ingress: K3s's Traefik stays, cert-manager issues; certificate: an institution's files.
HTTPS_MODES = ("letsencrypt", "ingress", "certificate")
DNS01_PROVIDERS = ("cloudflare",)

RUNTIME_MODES = ("runtimeclass", "default-runtime", "template")
ROLES = ("server", "agent")
SHARING = ("timeslice", "none")
MAX_REPLICAS = 64
GPU_RESOURCE = "nvidia.com/gpu"
SHARED_RESOURCE = "nvidia.com/gpu.shared"

# The device plugin's own flags that chart 0.20.0 takes as values (NVIDIA/k8s-device-plugin
# v0.20.0 deployments/helm/nvidia-device-plugin/values.yaml, top level, all null by default;
# templates/daemonset-device-plugin.yml turns each one set into the plugin's environment, which
# the plugin reads over its config file's `flags`: api/config/v1/config.go NewConfig, "(1) command
# line, (2) environment variable, (3) config file"). Allowed values: api/config/v1/consts.go
# (MigStrategy*, DeviceListStrategy*, DeviceIDStrategy*) and cmd/nvidia-device-plugin/main.go
# validateFlags (device discovery: auto, nvml, tegra). Spelled as the chart spells them.
PLUGIN_FLAG_CHOICES = {
    "migStrategy": ("none", "single", "mixed"),
    "deviceListStrategy": ("envvar", "volume-mounts", "cdi-annotations", "cdi-cri"),
    "deviceIDStrategy": ("uuid", "index"),
    "deviceDiscoveryStrategy": ("auto", "nvml", "tegra"),
}
PLUGIN_FLAG_SWITCHES = ("failOnInitError", "compatWithCPUManager", "gdrcopyEnabled", "gdsEnabled", "mofedEnabled")
PLUGIN_FLAGS = Section(
    {**{name: Value(str, None, choices=choices) for name, choices in PLUGIN_FLAG_CHOICES.items()},
     **{name: Value(bool, None) for name in PLUGIN_FLAG_SWITCHES},
     "nvidiaDriverRoot": Value(str, None, test=names.host_path,
                               hint="where the host's driver is: / (the chart's default) for a driver installed on "
                                    "the host, /run/nvidia/driver for the GPU operator's driver container")},
    unknown_hint=f"these are the device plugin's flags that its chart {DEVICE_PLUGIN_CHART} takes as values "
                 "(its values.yaml); a setting of another kind has its own gpu: key")

# A PersistentVolumeClaim's access modes (kubernetes/api v0.34 core/v1/types.go
# PersistentVolumeAccessMode: ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod).
ACCESS_MODE_CHOICES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
ACCESS_MODES = ListOf(Value(str, choices=ACCESS_MODE_CHOICES))
# K3s's own StorageClass (K3s manifests/local-storage.yaml: local-path, provisioner
# rancher.io/local-path, the cluster's default class), which keeps volumes on the node's disk and
# takes only ReadWriteOnce and ReadWriteOncePod (rancher/local-path-provisioner v0.0.37
# provisioner.go Provision: "NodePath only supports ReadWriteOnce and ReadWriteOncePod").
LOCAL_PATH_CLASS = "local-path"
LOCAL_PATH_MODES = ("ReadWriteOnce", "ReadWriteOncePod")

CPU_IMAGE = "quay.io/jupyter/scipy-notebook:2026-08-24"
GPU_IMAGE = "quay.io/jupyter/pytorch-notebook:cuda12-2026-08-24"
TEST_IMAGE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0"


class InventoryError(Exception):
    """Invalid inventory: carries every problem found."""

    def __init__(self, problems, source: str = ""):
        self.problems = list(problems)
        self.source = source
        lines = [f"  - {p}" for p in self.problems]
        where = f" in {source}" if source else ""
        super().__init__(f"{len(self.problems)} problem(s){where}:\n" + "\n".join(lines))


def _replicas(value: int) -> str:
    if not 2 <= value <= MAX_REPLICAS:
        return f"{value} is out of range: time-slicing replicas must be 2..{MAX_REPLICAS}"
    return ""


def _gpus(value: int) -> str:
    return "" if 0 <= value <= 16 else f"{value} GPUs is out of range 0..16"


def _profile(display_name: str, description: str, image: str, cpu: float, mem: str,
             default: bool = False) -> Section:
    return Section({
        "enabled": Value(bool, True),
        "default": Value(bool, default),
        "display_name": Value(str, display_name, test=names.display_name),
        "description": Value(str, description, test=names.description),
        "image": Value(str, image, test=names.image),
        "cpu_limit": Value((int, float), cpu, test=names.cpus),
        "cpu_guarantee": Value((int, float), None, test=names.cpus),
        "mem_limit": Value(str, mem, test=names.memory, hint="e.g. 16G"),
        "mem_guarantee": Value(str, None, test=names.memory, hint="e.g. 4G"),
    })


def _file_mode(value: str) -> str:
    if not (3 <= len(value) <= 4 and all(c in "01234567" for c in value)):
        return f"{quoted(value)} is not a file mode of 3 or 4 octal digits such as \"0600\""
    if int(value, 8) & 0o7000:
        return f"{quoted(value)} sets setuid, setgid or sticky bits, which a kubeconfig has no use for"
    if not int(value, 8) & 0o600 == 0o600:
        return f"{quoted(value)} does not let root read and write it, as K3s does"
    return ""


MAX_K3S_VALUE = 1024  # characters: a flag value, never a file's content


def _k3s_scalar(value) -> str:
    if isinstance(value, (list, dict)) or value is None:
        return f"{quoted(value)} is not a text, number or true/false"
    if isinstance(value, str) and (not value.isprintable() or len(value) > MAX_K3S_VALUE or not value.strip()):
        return f"{quoted(value)} is empty, too long or holds characters a flag value cannot (a newline...)"
    return ""


def _k3s_value(value) -> str:
    """A flag's value: a scalar, or a list of scalars for a flag given several times."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        return "an empty list: leave the key out instead"
    return next((m for m in map(_k3s_scalar, items) if m), "")


def _k3s_key_shape(key: str) -> str:
    if not key or not all(c.islower() or c.isdigit() or c == "-" for c in key) or key.startswith("-"):
        return "is not a K3s flag name (lowercase words joined by dashes, no leading --)"
    return ""


def _k3s_extra_checks(extra: dict, hosts: dict) -> list:
    """Each key is a flag the K3s command of some host here takes, and not one gpuhub writes."""
    problems, roles = [], {h["role"] for h in hosts.values()}
    known = k3sflags.SERVER_FLAGS | k3sflags.AGENT_FLAGS
    for key in extra:
        where = f"cluster.k3s_extra_config.{key}"
        if key in k3sflags.GPUHUB_OWNED:
            problems.append(Problem(where, "is a key gpuhub writes itself",
                                    "use instead: " + k3sflags.GPUHUB_OWNED[key]))
        elif key not in known:
            problems.append(Problem(where, "is not a K3s server or agent flag",
                                    did_you_mean(key, sorted(known)) or "see `k3s server --help`"))
        elif not roles & set(k3sflags.roles_for(key)):
            problems.append(Problem(where, f"only K3s {' and '.join(k3sflags.roles_for(key))}s take it, and no "
                                    "host here has that role", "remove it"))
    return problems


PROFILE_KINDS = ("cpu", "shared_gpu", "whole_gpu")
DEFAULT_IMAGES = {"cpu": CPU_IMAGE, "shared_gpu": GPU_IMAGE, "whole_gpu": GPU_IMAGE}


def _duration(value: str) -> str:
    seconds = names.duration_seconds(value)
    if seconds is None:
        return f"{quoted(value)} is not a duration such as 1h, 90m or 1h30m"
    return "" if seconds >= 60 else f"{quoted(value)} is shorter than a minute"


# A profile as a list entry (hub.profiles: [...]): KubeSpawner 7.0.0 profile_list items
# (kubespawner/spawner.py `profile_list` help: display_name, description, slug, default,
# kubespawner_override, profile_options with choices and unlisted_choice).
PROFILE_ENTRY = Section({
    "kind": Value(str, REQUIRED, choices=PROFILE_KINDS, hint="cpu, shared_gpu (a time-sliced share) or whole_gpu"),
    "slug": Value(str, None, test=names.dns_label, hint="defaults to the kind (shared-gpu...); needed when two "
                                                          "profiles share a kind"),
    "display_name": Value(str, REQUIRED, test=names.display_name),
    "description": Value(str, "", test=names.description),
    "default": Value(bool, False),
    # One or more images (the first is the default); a text or {image, display_name}.
    "images": ListOf(TextOrSection("image", Section({
        "image": Value(str, REQUIRED, test=names.image),
        "display_name": Value(str, None, test=names.display_name, hint="defaults to the image name"),
    }))),
    "custom_image": Section({
        "enabled": Value(bool, False, hint="true offers a field where users type an image of their own"),
        "display_name": Value(str, "Other image", test=names.display_name),
        "pattern": Value(str, None, test=names.image_pattern, braces=True,
                         hint="a regular expression, e.g. ^quay\\.io/jupyter/.+$; the image must also be a valid "
                              "image reference"),
    }),
    # Interfaces: the page a server opens on (KubeSpawner default_url); the first is the default.
    "interfaces": ListOf(Section({
        "display_name": Value(str, REQUIRED, test=names.display_name),
        "default_url": Value(str, REQUIRED, test=names.url_path, hint="e.g. /lab or /tree"),
    })),
    # Memory sizes as guarantee/limit pairs; the first is the default.
    "memory": ListOf(Section({
        "display_name": Value(str, None, test=names.display_name, hint="defaults to the limit"),
        "limit": Value(str, REQUIRED, test=names.memory, hint="e.g. 16G"),
        "guarantee": Value(str, None, test=names.memory, hint="e.g. 4G"),
    })),
    "cpu_limit": Value((int, float), None, test=names.cpus),
    "cpu_guarantee": Value((int, float), None, test=names.cpus),
    "mem_limit": Value(str, None, test=names.memory, hint="e.g. 16G"),
    "mem_guarantee": Value(str, None, test=names.memory, hint="e.g. 4G"),
    "nodes": ListOf(Value(str, test=names.dns_label), default=()),
    # Only members of these GitHub teams see (and may start) this profile.
    "github_teams": ListOf(Value(str, test=names.github_team, hint="organisation:team-slug, e.g. my-lab:gpu-users"),
                           default=()),
})

HOST = Section({
    "role": Value(str, REQUIRED, choices=ROLES),
    "address": Value(str, None, test=names.address,
                     hint="optional: SSH details come from ~/.ssh/config; the server's address is what agents join"),
    "gpus": Value(int, REQUIRED, test=_gpus, hint="the NVIDIA GPUs gpuhub gives to K3s on this host (at most those on its PCI bus)"),
    "sharing": Value(str, "timeslice", choices=SHARING),
    "replicas": Value(int, None, test=_replicas, hint="defaults to gpu.replicas"),
    "local": Value(bool, False, hint="true for the machine `inv` runs on"),
})

INVENTORY = Section({
    "cluster": Section({
        "k3s_version": Value(str, K3S_VERSION, test=names.k3s_version_problem),
        "server": Value(str, None, hint="the host agents join; defaults to the one host with role: server"),
        "helm_version": Value(str, HELM_VERSION, test=names.helm_version),
        # K3s's write-kubeconfig-mode: who may read /etc/rancher/k3s/k3s.yaml (cluster admin).
        "kubeconfig_mode": Value(str, "0600", test=_file_mode,
                                 hint="octal text such as \"0600\" (quoted, so YAML keeps it text)"),
        # More K3s config.yaml keys: flag names without dashes (gpuhub.k3sflags).
        "k3s_extra_config": MapOf(Value((str, int, float, bool, list), test=_k3s_value,
                                        hint="a text, number, true/false, or a list of those"),
                                  name_test=_k3s_key_shape),
    }),
    "gpu": Section({
        "runtime": Value(str, "runtimeclass", choices=RUNTIME_MODES),
        "plugin_chart_version": Value(str, DEVICE_PLUGIN_CHART, test=names.chart_version),
        "replicas": Value(int, 8, test=_replicas),
        "test_image": Value(str, TEST_IMAGE, test=names.image,
                            hint="one of NVIDIA's nvcr.io/nvidia/k8s/cuda-sample images (the Job runs /cuda-samples/sample)"),
        "toolkit_version": Value(str, TOOLKIT_VERSION, test=names.package_version),
        # sharing.timeSlicing.renameByDefault: shared GPUs are advertised as nvidia.com/gpu.shared
        # (true), or stay nvidia.com/gpu (false; profiles then pick nodes by GFD's sharing label).
        "rename_shared": Value(bool, True, hint="true: shared GPUs are nvidia.com/gpu.shared; false: they stay "
                                                "nvidia.com/gpu"),
        # sharing.timeSlicing.failRequestsGreaterThanOne, inverted: may one pod hold several slices?
        "allow_multiple_slices": Value(bool, False, hint="true lets one pod ask for more than one slice of a "
                                                         "shared GPU (it buys more time slices, no isolation)"),
        "plugin_flags": PLUGIN_FLAGS,
        # The device plugin's helm release: a cluster built by hand may have it under its own name,
        # which gpuhub then adopts (and upgrades) instead of installing a second plugin beside it.
        "plugin_release": Value(str, "nvdp", test=names.release_name),
        "plugin_namespace": Value(str, "nvidia-device-plugin", test=names.dns_label),
        "plugin_values_overlay": Value(str, None, hint="a YAML file (relative to the inventory) merged last over "
                                                       "the device-plugin chart's values"),
    }),
    "hub": Section({
        "chart_version": Value(str, HUB_CHART, test=names.chart_version),
        "release": Value(str, "jhub", test=names.release_name),
        "namespace": Value(str, "jhub", test=names.dns_label),
        "hostname": Value(str, REQUIRED, test=names.public_hostname,
                          hint="the name users type, its DNS pointing at the server"),
        "https": Value(str, "letsencrypt", choices=HTTPS_MODES,
                       hint="letsencrypt: the hub's own proxy; ingress: Traefik + cert-manager; certificate: "
                            "files your institution issued"),
        "letsencrypt_email": Value(str, None, test=names.email,
                                   hint="Let's Encrypt writes here before a certificate expires"),
        # hub.https: certificate. Paths relative to the inventory file; the key stays 0600.
        "tls_certificate": Value(str, None, hint="PEM: the hub's certificate, then its intermediates"),
        "tls_key": Value(str, None, hint="PEM: its private key, unencrypted, mode 0600"),
        # hub.https: ingress.
        "cert_manager": Section({
            "chart_version": Value(str, CERT_MANAGER_CHART, test=names.v_chart_version),
            "acme_server": Value(str, LETSENCRYPT_ACME, test=names.https_url,
                                 hint="Let's Encrypt's; its staging directory for trials"),
            # ACME DNS-01 instead of HTTP-01 (no port 80 needed): the provider's API token is
            # a secret, dns_api_token (cert-manager v1.21.1 ACMEIssuerDNS01ProviderCloudflare).
            "dns01_provider": Value(str, None, choices=DNS01_PROVIDERS,
                                    hint="cloudflare: DNS-01 through its API, the token as dns_api_token in the "
                                         "secrets"),
        }),
        "github": Section({
            "organizations": ListOf(Value(str, test=names.github_org)),
            "allowed_users": ListOf(Value(str, test=names.github_user)),
            # The OAuth app's credentials as a Kubernetes Secret in the hub's namespace that the
            # site keeps itself (the hub reads them from its environment: render._auth_env). Unset,
            # gpuhub keeps one of its own (GITHUB_SECRET_NAME) filled from the local secrets.
            "existing_secret": Section({
                "name": Value(str, None, test=names.dns_subdomain,
                              hint="a Secret in the hub's namespace holding the OAuth client id and secret"),
                "client_id_key": Value(str, "client_id", test=names.secret_key),
                "client_secret_key": Value(str, "client_secret", test=names.secret_key),
            }),
        }),
        "admin_users": ListOf(Value(str, test=names.github_user)),
        "allow_any_github_user": Value(bool, False),
        # helm's --timeout for the hub release: its first install pulls every profile image on
        # every node before anything else starts (the chart's pre-install image-puller hook,
        # prePuller.hook in Z2JH 4.4.0 values.yaml), several GB for CUDA notebooks; helm's own
        # default, 5m, is too short for that on most links. 90m: what the lab behind the guide
        # needed for the default images on a slow link.
        "helm_timeout": Value(str, "90m", test=names.wait_duration,
                              hint="how long helm may wait for the hub's image pulls, e.g. 90m or 2h"),
        "storage_class": Value(str, None, test=names.dns_subdomain,
                               hint="default: K3s's local-path, which pins each home to one node"),
        # Users' home volumes (Z2JH 4.4.0 singleuser.storage.capacity and .dynamic.storageAccessModes;
        # left out, the chart's 10Gi and [ReadWriteOnce] apply).
        "storage_capacity": Value(str, None, test=names.storage_size, hint="each home volume's size, e.g. 100Gi"),
        "storage_access_modes": ACCESS_MODES,
        "profiles": ListOrSection(ListOf(PROFILE_ENTRY, min_items=1), Section({
            "cpu": _profile("CPU only", "No GPU.", CPU_IMAGE, 2, "8G", default=True),
            "shared_gpu": _profile("Shared GPU", "A time-sliced share of a GPU: memory is not isolated.",
                                   GPU_IMAGE, 4, "16G"),
            "whole_gpu": _profile("Whole GPU", "One GPU to yourself.", GPU_IMAGE, 8, "32G"),
        })),
        # Spawner-wide settings (Z2JH 4.4.0 values.schema.yaml; left out, the chart's defaults apply).
        "named_servers": Section({
            "enabled": Value(bool, False, hint="true lets each user run several named servers (hub.allowNamedServers)"),
            "limit_per_user": Value(int, None, test=lambda n: "" if 1 <= n <= 100 else f"{n} is out of range 1..100"),
            # Named servers' own volumes on another class (a shared one, say): a pre_spawn_hook
            # (render.NAMED_SERVER_STORAGE_CONFIG); left out, they are made like the homes.
            "storage_class": Value(str, None, test=names.dns_subdomain,
                                   hint="the StorageClass of named servers' volumes (default: hub.storage_class)"),
            "storage_access_modes": ACCESS_MODES,
            "storage_capacity": Value(str, None, test=names.storage_size,
                                      hint="each named server's volume size (default: hub.storage_capacity)"),
        }),
        "culling": Section({
            "enabled": Value(bool, None, hint="the chart culls idle servers by default (after 1h)"),
            "timeout": Value(str, None, test=_duration, hint="idle time before a server is stopped, e.g. 1h"),
            "max_age": Value(str, None, test=_duration, hint="stop servers this old even when busy, e.g. 12h"),
        }),
        "environment": MapOf(Value((str, int, float), hint="e.g. OMP_NUM_THREADS: 4"), name_test=names.env_name),
        "shm_size": Value(str, None, test=names.memory,
                          hint="a memory-backed /dev/shm of this size for every server, e.g. 2G (PyTorch's "
                               "DataLoader needs more than the container's 64M)"),
        "image_pull_secrets": ListOf(Value(str, test=names.dns_subdomain),
                                     default=()),
        # The chart's image pullers (Z2JH 4.4.0 values.yaml prePuller.hook / prePuller.continuous)
        # run the profiles' images on every node: false for images without a build for some
        # node's architecture (an arm64 DGX Spark beside amd64 hosts), whose pullers never finish.
        # KubeSpawner 7 (chart 4.x) names pods and volumes by the "safe" slug scheme; "escape" keeps
        # KubeSpawner 6's names (Z2JH 4.4.0 docs/source/administrator/upgrading/upgrade-3-to-4.md).
        "slug_scheme": Value(str, None, choices=("escape", "safe"),
                             hint="escape keeps the names chart 3.x gave users' pods and volumes"),
        "image_prepuller": Value(bool, True,
                                 hint="false turns off the chart's image pullers (images without an arm64 build)"),
        "values_overlay": Value(str, None, hint="a YAML file (relative to the inventory) merged last over the "
                                                "hub chart's values"),
    }),
    "hosts": MapOf(HOST, name_test=names.dns_label, min_items=1),
    # Local files uploaded instead of downloaded (paths relative to the inventory file).
    # The architecture-specific files at the top serve every host (one architecture); under
    # amd64:/arm64: each host gets those of its own architecture (its `arch` fact).
    "airgap": Section({
        "k3s_binary": Value(str, None), "k3s_install_script": Value(str, None),
        "k3s_images": Value(str, None), "helm_binary": Value(str, None),
        "plugin_chart": Value(str, None, hint="nvidia-device-plugin-VERSION.tgz"),
        "hub_chart": Value(str, None, hint="jupyterhub-VERSION.tgz"),
        # hub.https: ingress installs cert-manager: its chart from a file too (its images, like the
        # hub's, come from the lab's registry or the nodes' image cache).
        "cert_manager_chart": Value(str, None, hint="cert-manager-VERSION.tgz"),
        "toolkit_packages": ListOf(Value(str)),
        **{arch: Section({
            "k3s_binary": Value(str, None), "k3s_images": Value(str, None), "helm_binary": Value(str, None),
            "toolkit_packages": ListOf(Value(str)),
        }) for arch in ("amd64", "arm64")},
    }),
})
# Architectures airgap files may be listed under, as K3s's install script (github:muicoder/k3s
# release-1.34 install.sh setup_verify_arch: x86_64 -> amd64, aarch64 -> arm64, binary suffix
# "-arm64") and helm's get-helm-3 (helm v3.17.3 scripts/get-helm-3: helm-TAG-linux-arm64.tar.gz)
# name them; the values are `uname -m`'s names, which the `arch` fact and airgapfile report.
AIRGAP_ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
AIRGAP_ARCH_KEYS = ("k3s_binary", "k3s_images", "helm_binary", "toolkit_packages")
# The values overlays: {chart: (inventory key, section, name)}.
OVERLAY_KEYS = {"hub": ("hub.values_overlay", "hub", "values_overlay"),
                "plugin": ("gpu.plugin_values_overlay", "gpu", "plugin_values_overlay")}
AIRGAP_TOGETHER = ("k3s_binary", "k3s_install_script")

SECRETS = Section({
    "github_client_id": Value(str, None, secret=True),
    "github_client_secret": Value(str, None, secret=True),
    # hub.cert_manager.dns01_provider: the DNS provider's API token (a Cloudflare API token with
    # Zone:DNS:Edit), kept in a Kubernetes Secret cert-manager reads.
    "dns_api_token": Value(str, None, secret=True),
})
# The OAuth client id is public (every login URL carries it); the client secret is a Secret.
SECRET_KEYS = ("github_client_secret", "dns_api_token")
SECRET_ENV = {"github_client_id": "GPUHUB_GITHUB_CLIENT_ID",
              "github_client_secret": "GPUHUB_GITHUB_CLIENT_SECRET",
              "dns_api_token": "GPUHUB_DNS_API_TOKEN"}


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    gpus: int
    sharing: str
    replicas: int  # 1 when the host does not share
    address: Optional[str]
    local: bool
    renamed: bool = True  # gpu.rename_shared

    @property
    def gpu_resource(self) -> Optional[str]:
        """The resource this node advertises: shared GPUs are renamed NAME.shared unless
        gpu.rename_shared is false (renameByDefault; NVIDIA/k8s-device-plugin v0.20.0
        api/config/v1/replicas.go, resources.go DefaultSharedRename, consts.go ".shared")."""
        if not self.gpus:
            return None
        return SHARED_RESOURCE if self.shares and self.renamed else GPU_RESOURCE

    @property
    def sharing_strategy(self) -> Optional[str]:
        """What GFD labels this node nvidia.com/gpu.sharing-strategy (NVIDIA/k8s-device-plugin
        v0.20.0 internal/lm/resource.go baseLabeler; api/config/v1/sharing.go): "time-slicing"
        when its GPUs have replicas, else "none"."""
        if not self.gpus:
            return None
        return "time-slicing" if self.shares else "none"

    @property
    def shares(self) -> bool:
        return self.gpus > 0 and self.sharing == "timeslice"

    @property
    def plugin_config(self) -> str:
        """Name of this node's device-plugin config (label nvidia.com/device-plugin.config)."""
        return f"timeslice-{self.replicas}" if self.shares else "exclusive"

    @property
    def allocatable(self) -> int:
        return self.gpus * self.replicas


class Inventory:
    def __init__(self, data: dict, source: str = ""):
        self.data, self.source = data, source
        self.base = Path(source).resolve().parent if source else Path.cwd()
        self.airgap = data["airgap"]
        # The architectures the inventory lists files under (empty: the flat form, one for all).
        self.airgap_by_arch = [a for a in AIRGAP_ARCHES if any(self.airgap[a].values())]
        # {chart: (inventory key, file, values)} for the values overlays given (gpuhub.overlay).
        self.overlays = {chart: (key, self.base / data[section][name], overlay.load(self.base / data[section][name]))
                         for chart, (key, section, name) in OVERLAY_KEYS.items() if data[section][name]}
        self.cluster, self.gpu, self.hub = data["cluster"], data["gpu"], data["hub"]
        self.hosts = {
            name: Host(name=name, role=h["role"], gpus=h["gpus"], sharing=h["sharing"],
                       replicas=(h["replicas"] or self.gpu["replicas"]) if h["sharing"] == "timeslice" else 1,
                       address=h["address"], local=h["local"], renamed=self.gpu["rename_shared"])
            for name, h in data["hosts"].items()
        }

    def tls_pair(self):
        """hub.https: certificate: the files, checked again (they may have changed since loading)."""
        from . import tlsfile
        try:
            return tlsfile.load_pair(self.base / self.hub["tls_certificate"], self.base / self.hub["tls_key"],
                                     self.hub["hostname"])
        except tlsfile.TLSFileError as e:
            raise InventoryError([Problem(e.key, str(e), e.hint)], self.source) from None

    @property
    def warnings(self) -> list:
        """What is allowed but worth saying each time (cli prints them as `warning:` lines)."""
        mode = self.cluster["kubeconfig_mode"]
        if int(mode, 8) & 0o077:
            return [f"cluster.kubeconfig_mode {mode} lets {'every user' if int(mode, 8) & 0o007 else 'a group'} "
                    "on the server read the kubeconfig, which is cluster admin: \"0600\" keeps it root's"]
        return []

    def k3s_extra_config(self, role: str) -> dict:
        """The cluster.k3s_extra_config keys for a host of this role (k3sflags.roles_for)."""
        return {k: v for k, v in self.cluster["k3s_extra_config"].items() if role in k3sflags.roles_for(k)}

    @property
    def server(self) -> Host:
        name = self.cluster["server"] or next(h.name for h in self.hosts.values() if h.role == "server")
        return self.hosts[name]

    @property
    def server_url(self) -> str:
        """Where agents join: https://SERVER:6443, an IPv6 address in brackets (RFC 3986)."""
        where = self.server.address or self.server.name
        if ":" in where:
            where = f"[{where}]"
        return f"https://{where}:6443"

    @property
    def gpu_hosts(self):
        return [h for h in self.ordered_hosts() if h.gpus]

    def ordered_hosts(self):
        """Server first, then agents by name: the order steps run in."""
        return sorted(self.hosts.values(), key=lambda h: (h.role != "server", h.name))

    @property
    def nvidia_is_default(self) -> bool:
        """In default-runtime and template modes containerd runs every pod with nvidia."""
        return self.gpu["runtime"] != "runtimeclass"

    def _airgap_value(self, key: str, machine: Optional[str]):
        """The inventory's value for airgap `key` on a host whose `uname -m` is `machine`: the
        files listed under its architecture when the inventory lists them so."""
        if key in AIRGAP_ARCH_KEYS and self.airgap_by_arch:
            arch = next((a for a, m in AIRGAP_ARCHES.items() if m == machine), None)
            return self.airgap[arch][key] if arch in self.airgap_by_arch else None
        return self.airgap[key]

    def airgap_file(self, key: str, machine: Optional[str] = None) -> Optional[Path]:
        value = self._airgap_value(key, machine)
        return self.base / value if value else None

    def airgap_files(self, key: str, machine: Optional[str] = None) -> list:
        return [self.base / v for v in self._airgap_value(key, machine) or []]

    def airgap_missing(self, key: str, machine: Optional[str]) -> str:
        """'' unless the inventory lists `key` for another architecture and not for this host's
        (`machine`, its `uname -m`): then what to add. A host whose architecture was not read
        cannot be given its files, and is told so rather than left to download."""
        if key not in AIRGAP_ARCH_KEYS or not self.airgap_by_arch or self._airgap_value(key, machine):
            return ""
        others = [a for a in self.airgap_by_arch if self.airgap[a][key]]
        if not others:
            return ""
        if machine is None:
            return (f"this host's architecture (uname -m) was not read, and airgap.{others[0]}.{key} is "
                    "listed per architecture: gpuhub cannot choose this host's files until `uname -m` answers")
        arch = next((a for a, m in AIRGAP_ARCHES.items() if m == machine), None)
        if arch is None:
            return (f"this host is {machine}, and airgap lists files only for {', '.join(AIRGAP_ARCHES)}: "
                    f"airgap.{others[0]}.{key} cannot serve it")
        return (f"airgap.{arch}.{key} is not given, and airgap.{others[0]}.{key} is: this {machine} host "
                f"would download what the others get from files; add it ({AIRGAP_HINTS[key]})")

    def local_view(self, pci_gpus: int) -> "Inventory":
        """The cluster `inv` acts on: the host marked local: true, else this machine alone as a
        single-node server named localhost, expecting the NVIDIA GPUs on its PCI bus (which
        needs no driver: a broken driver is then found, never taken for a CPU-only host)."""
        marked = [h for h in self.hosts.values() if h.local]
        if marked:
            return self
        data = copy.deepcopy(self.data)
        data["cluster"]["server"] = None
        data["hosts"] = {"localhost": {"role": "server", "address": None, "gpus": pci_gpus,
                                       "sharing": "timeslice", "replicas": None, "local": True}}
        return Inventory(data, self.source)

    @property
    def local_host(self) -> Optional[Host]:
        return next((h for h in self.hosts.values() if h.local), None)

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise InventoryError([Problem("hosts", f"no host named {name!r}",
                                          "known hosts: " + ", ".join(self.hosts))], self.source)
        return self.hosts[name]


def _airgap_checks(airgap: dict, base: Path, toolkit_version: str, pins: dict = None) -> list:
    """Each airgap file is a regular file within bounds and is what its key says, read from its
    own bytes (gpuhub.airgapfile): so `render` and `plan` refuse a wrong path (/etc/shadow, a
    device, a values file given as a chart) before anything is uploaded. `pins`: the chart
    versions the inventory pins ({"plugin_chart": ..., "hub_chart": ...})."""
    flat = {k: v for k, v in airgap.items() if k not in AIRGAP_ARCHES}
    problems = _airgap_file_checks(flat, "airgap", base, toolkit_version, pins)
    listed = [a for a in AIRGAP_ARCHES if any(airgap[a].values())]
    for arch in listed:
        problems += _airgap_file_checks(airgap[arch], f"airgap.{arch}", base, toolkit_version, pins,
                                        machine=AIRGAP_ARCHES[arch])
    if listed:
        for key in AIRGAP_ARCH_KEYS:
            if flat[key]:
                problems.append(Problem(f"airgap.{key}", f"is given for every host, and airgap.{listed[0]} lists "
                                        "files per architecture", "move it under airgap.amd64 or airgap.arm64"))
    binary = bool(flat["k3s_binary"]) or any(airgap[a]["k3s_binary"] for a in listed)
    if binary != bool(flat["k3s_install_script"]):
        problems.append(Problem("airgap", "k3s_binary and k3s_install_script go together",
                                "the install script installs the binary you give (INSTALL_K3S_SKIP_DOWNLOAD)"))
    return problems


def _airgap_file_checks(files: dict, prefix: str, base: Path, toolkit_version: str, pins: dict = None,
                        machine: str = None) -> list:
    """The checks of one set of airgap files (`prefix`: airgap, or airgap.ARCH for those listed
    under an architecture, which `machine`, its `uname -m` name, they must all be built for)."""
    problems, arches, readable = [], [], set()
    for key, value in files.items():
        for i, path in enumerate(value if isinstance(value, list) else [value]):
            if path is None:
                continue
            where = f"{prefix}.{key}" + (f"[{i}]" if isinstance(value, list) else "")
            file = base / path
            try:
                airgapfile.regular(file, key)
            except airgapfile.AirgapFileError as e:
                missing = str(e).startswith("cannot read")
                problems.append(Problem(where, str(e), "paths are relative to the inventory file" if missing
                                        else "name the file itself: " + AIRGAP_HINTS[key]))
                continue
            readable.add(where)
            if key == "toolkit_packages":
                continue  # read below, with the other packages
            try:
                found = _airgap_content(key, file, (pins or {}).get(key))
            except airgapfile.AirgapFileError as e:
                problems.append(Problem(where, str(e), e.hint or AIRGAP_HINTS[key]))
                continue
            if found:
                arches.append((where, file, found))
    if files["toolkit_packages"]:
        problems += _toolkit_package_checks(files["toolkit_packages"], base, toolkit_version, arches, readable,
                                            prefix)
    if machine is None:
        return problems + _one_architecture(arches)
    arch = prefix.rsplit(".", 1)[1]
    return problems + [Problem(where, f"{file} is for {found}, not {arch} ({machine})",
                               f"list it under the architecture it is for, or give the {arch} file")
                       for where, file, found in arches if found != machine]


# What to do when an airgap file is not what its key says: where the real file comes from.
AIRGAP_HINTS = {
    "k3s_binary": "the K3s binary of the release page: k3s (x86_64) or k3s-arm64 (aarch64), at cluster.k3s_version",
    "k3s_install_script": "K3s's install script: curl -sfL https://get.k3s.io -o install.sh",
    "k3s_images": "k3s-airgap-images-amd64.tar.zst (or -arm64) from the K3s release page",
    "helm_binary": "the `helm` file inside helm-VERSION-linux-amd64.tar.gz (or -arm64) from helm's releases",
    "plugin_chart": "helm pull nvidia-device-plugin --repo " + PLUGIN_CHART_REPO + " --version VERSION",
    "hub_chart": "helm pull jupyterhub --repo " + HUB_CHART_REPO + " --version VERSION",
    "cert_manager_chart": "helm pull cert-manager --repo " + CERT_MANAGER_CHART_REPO + " --version VERSION",
    "toolkit_packages": "the toolkit's four .deb files from NVIDIA's repository, at gpu.toolkit_version",
}
AIRGAP_CHARTS = {"plugin_chart": ("nvidia-device-plugin", "gpu.plugin_chart_version"),
                 "hub_chart": ("jupyterhub", "hub.chart_version"),
                 "cert_manager_chart": ("cert-manager", "hub.cert_manager.chart_version")}


def _airgap_content(key: str, file: Path, pinned):
    """The architecture a file is for (binaries, K3s's named images file), or None; raises
    AirgapFileError when the file is not what `key` says."""
    a = airgapfile
    if key in ("k3s_binary", "helm_binary"):
        return a.elf_arch(file)
    if key == "k3s_install_script":
        a.shell_script(file)
        return None
    if key == "k3s_images":
        a.images(file)
        return a.images_arch(file)
    name, setting = AIRGAP_CHARTS[key]
    got_name, got_version = a.chart(file)
    if got_name != name:
        raise a.AirgapFileError(f"{file} is the chart {quoted(got_name)} {quoted(got_version)}, not {name}",
                                f"give the {name} chart archive: " + AIRGAP_HINTS[key])
    if pinned is not None and got_version != pinned:
        raise a.AirgapFileError(f"{file} is {name} {quoted(got_version)}, not {setting} {pinned}",
                                f"helm installs what the archive holds: give {name}-{pinned}.tgz, "
                                f"or set {setting}: {quoted(got_version)}")
    return None


def _one_architecture(arches: list) -> list:
    """Every host gets the same airgap files: they must be for one architecture (the hosts')."""
    if not arches:
        return []
    first_where, _, first = arches[0]
    return [Problem(where, f"{file} is for {arch}, but {first_where} is for {first}",
                    "every host gets the same files: give them all for your hosts' architecture")
            for where, file, arch in arches[1:] if arch != first]


# The NVIDIA container toolkit on Debian/Ubuntu (nvidia-container-toolkit v1.17.8
# packaging/debian/control): nvidia-container-toolkit Depends nvidia-container-toolkit-base
# (= VERSION), libnvidia-container-tools (>= VERSION), (<< 2.0.0); libnvidia-container-tools
# needs libnvidia-container1 (libnvidia-container pkg/deb/control, through shlibs). dpkg -i of
# them all at once enforces those Depends: a missing one fails on the host, after the upload.
TOOLKIT_PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
                    "libnvidia-container1")


def _toolkit_package_checks(paths: list, base: Path, version: str, arches: list = None,
                            readable=None, prefix: str = "airgap") -> list:
    """Each of the four packages given once, at gpu.toolkit_version, read from the files' own
    control data (standard library only: loading never runs a command)."""
    from .debfile import DebError, control
    problems, found = [], {}
    for i, path in enumerate(paths):
        where = f"{prefix}.toolkit_packages[{i}]"
        if readable is not None and where not in readable:
            continue  # reported above
        try:
            fields = control(base / path)
        except DebError as e:
            problems.append(Problem(where, f"{base / path}: {e}"))
            continue
        name, got = fields.get("Package", "?"), fields.get("Version", "?")
        found.setdefault(name, []).append(i)
        arch = airgapfile.DEBIAN_ARCH.get(fields.get("Architecture", ""))
        if arch and arches is not None:
            arches.append((where, base / path, arch))
        if name in TOOLKIT_PACKAGES and got != version:
            problems.append(Problem(where, f"{base / path} is {name} {got}, not gpu.toolkit_version {version}",
                                    "give all four toolkit packages at one version, or set gpu.toolkit_version"))
    for name in TOOLKIT_PACKAGES:
        if name not in found:
            problems.append(Problem(f"{prefix}.toolkit_packages", f"{name} {version} is missing",
                                    "the toolkit is four packages, installed together (dpkg enforces their "
                                    "Depends): " + ", ".join(f"{n}_{version}_ARCH.deb" for n in TOOLKIT_PACKAGES)))
        elif len(found[name]) > 1:
            problems.append(Problem(f"{prefix}.toolkit_packages", f"{name} is given more than once: items "
                                    + ", ".join(map(str, found[name]))))
    return problems


def _cross_checks(data: dict, base: Path = Path(".")) -> list:
    """Rules between keys, run only when every key has the right shape."""
    problems = []
    hosts = data["hosts"]
    servers = [n for n, h in hosts.items() if h["role"] == "server"]
    server = data["cluster"]["server"]
    if server is not None:
        if server not in hosts:
            problems.append(Problem("cluster.server", f"no host named {server!r}",
                                    "known hosts: " + ", ".join(hosts)))
        elif hosts[server]["role"] != "server":
            problems.append(Problem(f"hosts.{server}.role", f"{server!r} is cluster.server but has role agent"))
    if not servers:
        for name, h in hosts.items():
            problems.append(Problem(f"hosts.{name}.role", "an agent needs a server to join, and no host has role: server",
                                    "give one host role: server"))
            break
    elif len(servers) > 1:
        problems.append(Problem("hosts", "more than one server: " + ", ".join(servers),
                                "gpuhub sets up one server; make the others role: agent"))
    locals_ = [n for n, h in hosts.items() if h["local"]]
    if len(locals_) > 1:
        problems.append(Problem("hosts", "more than one host has local: true: " + ", ".join(locals_)))
    for name, h in hosts.items():
        if h["replicas"] is not None and h["sharing"] != "timeslice":
            problems.append(Problem(f"hosts.{name}.replicas", "is set but sharing is none",
                                    "remove it, or set sharing: timeslice"))
    mig = data["gpu"]["plugin_flags"]["migStrategy"]
    if mig not in (None, "none"):
        problems.append(Problem("gpu.plugin_flags.migStrategy", f"{mig} is a strategy the chart takes, but gpuhub "
                                "counts whole GPUs (allocatable = GPUs x replicas of nvidia.com/gpu) and MIG "
                                "devices are counted and named otherwise",
                                "leave it out (or none) and keep MIG off on these GPUs"))
    if data["gpu"]["runtime"] == "template":
        version = names.k3s_version(data["cluster"]["k3s_version"])[:3]
        if not template_mode_supported(version):
            problems.append(Problem("gpu.runtime", f"template mode needs containerd 2 (K3s >= v1.31.6 / v1.32.2), "
                                    f"not {data['cluster']['k3s_version']}",
                                    "use runtime: default-runtime with this K3s, or bump cluster.k3s_version"))
    problems += _airgap_checks(data["airgap"], base, data["gpu"]["toolkit_version"],
                               {"plugin_chart": data["gpu"]["plugin_chart_version"],
                                "hub_chart": data["hub"]["chart_version"],
                                "cert_manager_chart": data["hub"]["cert_manager"]["chart_version"]})
    for chart, (key, section, name) in OVERLAY_KEYS.items():
        if data[section][name]:
            problems += overlay.problems(key, base / data[section][name], data[section][name],
                                         overlay.PLUGIN_CHART_KEYS if chart == "plugin" else None)
    hub = data["hub"]
    if not (hub["github"]["organizations"] or hub["github"]["allowed_users"] or hub["allow_any_github_user"]):
        problems.append(Problem("hub.github.organizations", "nobody is allowed to log in",
                                "name your GitHub organisation(s), or set hub.allow_any_github_user: true "
                                "to let every GitHub account in"))
    if hub["slug_scheme"] is not None and int(hub["chart_version"].split(".")[0]) < 4:
        problems.append(Problem("hub.slug_scheme", f"needs hub.chart_version 4.x, not {hub['chart_version']}",
                                "KubeSpawner 6 (chart 3.x) has one naming scheme, escape; leave slug_scheme out"))
    existing = hub["github"]["existing_secret"]
    if existing["name"] and existing["client_id_key"] == existing["client_secret_key"]:
        problems.append(Problem("hub.github.existing_secret.client_secret_key",
                                f"is the same key as client_id_key ({existing['client_id_key']})",
                                "name the Secret's two keys: one holds the client id, the other the client secret"))
    problems += _profile_checks(hub, hosts)
    problems += https_checks(hub, base)
    problems += _storage_checks(hub)
    problems += _k3s_extra_checks(data["cluster"]["k3s_extra_config"], hosts)
    return problems


def https_checks(hub: dict, base: Path) -> list:
    """What each hub.https mode needs, and nothing of another mode left set."""
    mode, problems = hub["https"], []
    if mode in ("letsencrypt", "ingress") and not hub["letsencrypt_email"]:
        problems.append(Problem("hub.letsencrypt_email", f"is required with hub.https: {mode}",
                                "Let's Encrypt writes here before a certificate expires"))
    if hub["cert_manager"]["dns01_provider"] and mode != "ingress":
        problems.append(Problem("hub.cert_manager.dns01_provider", f"is set but hub.https is {mode}",
                                "DNS-01 is how cert-manager proves the name in hub.https: ingress; remove it here"))
    files = ("tls_certificate", "tls_key")
    if mode != "certificate":
        problems += [Problem(f"hub.{k}", f"is set but hub.https is {mode}",
                             "remove it, or set hub.https: certificate") for k in files if hub[k]]
        return problems
    missing = [k for k in files if not hub[k]]
    problems += [Problem(f"hub.{k}", "is required with hub.https: certificate",
                         "the PEM file, relative to the inventory file") for k in missing]
    if not missing:
        from . import tlsfile
        try:
            tlsfile.load_pair(base / hub["tls_certificate"], base / hub["tls_key"], hub["hostname"])
        except tlsfile.TLSFileError as e:
            problems.append(Problem(e.key, str(e), e.hint))
    return problems


def _storage_checks(hub: dict) -> list:
    """Access modes K3s's local-path cannot give, and named servers' storage without named servers."""
    problems = []
    named = hub["named_servers"]
    wanted = [("hub", hub["storage_class"], hub["storage_access_modes"]),
              ("hub.named_servers", named["storage_class"] or hub["storage_class"], named["storage_access_modes"])]
    for where, cls, modes in wanted:
        if "ReadWriteOncePod" in modes and len(modes) > 1:
            # kubernetes/api core/v1/types.go: ReadWriteOncePod "cannot be used in combination
            # with other access modes" (the API server refuses such a claim).
            problems.append(Problem(f"{where}.storage_access_modes", "ReadWriteOncePod cannot be combined with "
                                    "other access modes", "give it alone, or leave it out"))
        wrong = [m for m in modes if m not in LOCAL_PATH_MODES]
        if cls in (None, LOCAL_PATH_CLASS) and wrong:
            problems.append(Problem(f"{where}.storage_access_modes", f"K3s's local-path storage (the default "
                                    f"class) cannot give {', '.join(wrong)}: it keeps each volume on one node",
                                    "use ReadWriteOnce, or name a class that shares volumes between nodes "
                                    f"({where}.storage_class)"))
    given = [k for k in ("storage_class", "storage_access_modes", "storage_capacity") if named[k]]
    if given and not named["enabled"]:
        problems.append(Problem(f"hub.named_servers.{given[0]}", "is set but named servers are off",
                                "set hub.named_servers.enabled: true, or remove it"))
    return problems


# The chart's image puller names a container per profile choice that has an image:
# "image-pull-profile-{index}-option-{option}-{choice}" (Z2JH 4.4.0
# templates/image-puller/_helpers-daemonset.tpl), a DNS label of at most 63 characters.
MAX_IMAGE_CHOICE_KEY = 63 - len("image-pull-profile-99-option-image-")


def _choice_key(text: str, limit: int = 63) -> str:
    key = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    key = "-".join(part for part in key.split("-") if part)[:limit].strip("-")
    return key


def choice_keys(entry: dict) -> dict:
    """{option: [choice key, ...]} for a profile entry's images, interfaces and memory sizes:
    what KubeSpawner's form posts back (form.html `<option value="KEY">`)."""
    images = [_choice_key(i["display_name"] or i["image"].rpartition("/")[2], MAX_IMAGE_CHOICE_KEY)
              for i in entry["images"]]
    return {"image": images,
            "interface": [_choice_key(i["display_name"]) for i in entry["interfaces"]],
            "memory": [_choice_key(m["display_name"] or m["limit"]) for m in entry["memory"]]}


def profile_entries(hub: dict) -> list:
    """hub.profiles in one shape, whichever form the inventory used: a list of entries with
    `where` (the key path for messages), `legacy` (the cpu/shared_gpu/whole_gpu mapping) and
    `enabled` (only the mapping form can switch one off)."""
    profiles = hub["profiles"]
    if isinstance(profiles, dict):
        return [dict(p, kind=key, slug=key.replace("_", "-"), where=f"hub.profiles.{key}", legacy=True,
                     images=[{"image": p["image"], "display_name": None}], custom_image={"enabled": False},
                     interfaces=[], memory=[], nodes=[], github_teams=[])
                for key, p in profiles.items()]
    entries = []
    for i, p in enumerate(profiles):
        images = p["images"] or [{"image": DEFAULT_IMAGES[p["kind"]], "display_name": None}]
        entries.append(dict(p, slug=p["slug"] or p["kind"].replace("_", "-"), where=f"hub.profiles[{i}]",
                            legacy=False, enabled=True, images=images))
    return entries


def _memory_bytes(size: str) -> float:
    return float(size[:-1]) * 1024 ** "KMGT".index(size[-1])


def _offers(host, kind: str) -> bool:
    """Whether `host` can run a server of this profile kind."""
    if kind == "cpu":
        return True
    return bool(host.gpus) and ((host.sharing == "timeslice") == (kind == "shared_gpu"))


def _profile_checks(hub: dict, hosts: dict) -> list:
    problems = []
    entries = profile_entries(hub)
    on = [e for e in entries if e["enabled"]]
    defaults = [e["kind"] if e["legacy"] else e["where"] for e in on if e["default"]]
    if len(defaults) > 1:
        problems.append(Problem("hub.profiles", "more than one default profile: " + ", ".join(defaults)))
    if entries and entries[0]["legacy"]:
        if not hub["profiles"]["cpu"]["enabled"] and not any(h["gpus"] for h in hosts.values()):
            problems.append(Problem("hub.profiles.cpu.enabled",
                                    "no profile is left: the CPU profile is off and no host has GPUs"))
        return problems
    seen = {}
    for e in entries:
        where = e["where"]
        if e["slug"] in seen:
            problems.append(Problem(f"{where}.slug", f"{e['slug']!r} is also {seen[e['slug']]}'s slug",
                                    "profiles of one kind need a slug each"))
        seen.setdefault(e["slug"], where)
        for size in ("limit", "guarantee"):
            if e["memory"] and e[f"mem_{size}"] is not None:
                problems.append(Problem(f"{where}.mem_{size}", "is set beside memory choices",
                                        f"give the {size} in each memory choice, or drop the choices"))
        for i, m in enumerate(e["memory"]):
            if m["guarantee"] and _memory_bytes(m["guarantee"]) > _memory_bytes(m["limit"]):
                problems.append(Problem(f"{where}.memory[{i}].guarantee", f"{m['guarantee']} is above the limit "
                                        f"{m['limit']}", "Kubernetes refuses a pod whose request exceeds its limit"))
        pairs = [("cpu_guarantee", "cpu_limit", float), ("mem_guarantee", "mem_limit", _memory_bytes)]
        for low, high, value in pairs:
            if e[low] is not None and e[high] is not None and value(e[low]) > value(e[high]):
                problems.append(Problem(f"{where}.{low}", f"{e[low]} is above {high} {e[high]}",
                                        "Kubernetes refuses a pod whose request exceeds its limit"))
        custom = e["custom_image"]
        if custom["pattern"] is not None and not custom["enabled"]:
            problems.append(Problem(f"{where}.custom_image.pattern", "is set but custom_image is not enabled",
                                    "set custom_image.enabled: true, or remove the pattern"))
        for option, keys in choice_keys(e).items():
            plural = {"image": "images", "interface": "interfaces", "memory": "memory"}[option]
            for i, key in enumerate(keys):
                if not key:
                    problems.append(Problem(f"{where}.{plural}[{i}]", "gives no name for KubeSpawner's form",
                                            "give a display_name with letters or digits"))
                elif key in keys[:i]:
                    problems.append(Problem(f"{where}.{plural}[{i}]", f"is called {key!r} in the form, like "
                                            f"{plural}[{keys.index(key)}]", "give the choices different display names"))
        for i, name in enumerate(e["nodes"]):
            if name not in hosts:
                problems.append(Problem(f"{where}.nodes[{i}]", f"no host named {name!r}", "known hosts: " + ", ".join(hosts)))
            elif not _offers(_plain_host(name, hosts[name]), e["kind"]):
                problems.append(Problem(f"{where}.nodes[{i}]", f"{name} cannot run a {e['kind']} server",
                                        "a shared_gpu profile needs hosts with sharing: timeslice, a whole_gpu "
                                        "profile hosts with sharing: none, both with GPUs"))
    teams = [e for e in entries if e["github_teams"]]
    if teams and int(hub["chart_version"].split(".")[0]) < 4:
        problems.append(Problem(f"{teams[0]['where']}.github_teams", f"needs hub.chart_version 4.x, not "
                                f"{hub['chart_version']}", "GitHub teams become JupyterHub groups with "
                                "OAuthenticator 17 (auth_state_groups_key), which chart 4.4.0 ships; 3.2.1 has 16.2.1"))
    if teams and not any(_profile_offered(e, hosts) for e in entries if not e["github_teams"]):
        problems.append(Problem("hub.profiles", "every profile is limited to GitHub teams",
                                "keep one profile without github_teams: a user in none of the teams would "
                                "otherwise get a server with no profile's settings at all"))
    if not any(_profile_offered(e, hosts) for e in entries):
        problems.append(Problem("hub.profiles", "no profile is left: no host can run any of them",
                                "add a cpu profile, or hosts with the GPUs the profiles need"))
    return problems


def _plain_host(name: str, h: dict):
    return Host(name=name, role=h["role"], gpus=h["gpus"], sharing=h["sharing"], replicas=1,
                address=h["address"], local=h["local"])


def _profile_offered(entry: dict, hosts: dict) -> bool:
    names_ = entry["nodes"] or list(hosts)
    return any(n in hosts and _offers(_plain_host(n, hosts[n]), entry["kind"]) for n in names_)


def template_mode_supported(version) -> bool:
    """containerd 2 (config v3 templates) ships in K3s v1.31.6+, v1.32.2+ and every later line."""
    minor, patch = version[1], version[2]
    return minor >= 33 or (minor == 32 and patch >= 2) or (minor == 31 and patch >= 6)


def parse(data, source: str = "") -> Inventory:
    if data is None:
        raise InventoryError([Problem("", "the inventory is empty", "see the shipped hosts.yaml for an example")], source)
    if not isinstance(data, dict):
        raise InventoryError([Problem("", f"the inventory must be a mapping, got {type(data).__name__}")], source)
    problems = []
    merged = INVENTORY.check(data, "", problems)
    if not problems:
        problems = _cross_checks(merged, Path(source).resolve().parent if source else Path.cwd())
    if problems:
        raise InventoryError(problems, source)
    return Inventory(merged, source)


def safe_load(text: str):
    """YAML as gpuhub reads a person's file: bounded, no key given twice (gpuhub.yamlfile)."""
    return yamlfile.loads(text)


def inventory_path(path: Optional[str] = None) -> Path:
    """--inventory FILE, else $GPUHUB_INVENTORY, else ./hosts.yaml. Given but empty is an error,
    never a silent fall back to the shipped example."""
    if path is not None:
        if not str(path).strip():
            raise InventoryError([Problem("", "--inventory is given but empty",
                                          "name the inventory file, or leave the option out for ./hosts.yaml")])
        return Path(path)
    variable = os.environ.get("GPUHUB_INVENTORY")
    if variable is not None:
        if not variable.strip():
            raise InventoryError([Problem("", "GPUHUB_INVENTORY is set but empty",
                                          "unset it, or set it to the inventory file")])
        return Path(variable)
    return Path("hosts.yaml")


def load(path: Optional[str] = None) -> Inventory:
    file = inventory_path(path)
    try:
        data = yamlfile.load(file, "an inventory")
    except yamlfile.YAMLProblem as e:
        hint = "pass --inventory FILE or set GPUHUB_INVENTORY" if str(e).startswith("cannot read") else ""
        raise InventoryError([Problem("", str(e), hint)], str(file)) from None
    return parse(data, str(file))


class Secrets:
    """GitHub OAuth credentials. Never printed: repr masks them."""

    def __init__(self, values: dict, origin: dict):
        self._values = {k: Secret(v) if k in SECRET_KEYS and not isinstance(v, Secret) else v
                        for k, v in values.items()}
        self.origin = origin

    def get(self, key: str) -> Optional[str]:
        return self._values.get(key)

    def require(self, *keys: str) -> dict:
        missing = [k for k in keys if not self._values.get(k)]
        if missing:
            variables = " and ".join(SECRET_ENV[k] for k in missing)
            raise InventoryError([Problem("secrets", f"missing {', '.join(missing)}",
                                          f"set {variables}, or put them in secrets.yaml (mode 0600) "
                                          "beside the inventory")])
        return {k: self._values[k] for k in keys}

    def with_stand_ins(self) -> "Secrets":
        """Missing values replaced by a marker, for checks that never send them anywhere."""
        values = {k: self._values.get(k) or "stand-in-for-check" for k in SECRET_ENV}
        return Secrets(values, self.origin)

    def __repr__(self) -> str:
        return "Secrets(" + ", ".join(f"{k}={'***' if v else None}" for k, v in self._values.items()) + ")"


def secrets_path(inventory: Optional[str] = None) -> Path:
    variable = os.environ.get("GPUHUB_SECRETS")
    if variable is not None:
        if not variable.strip():
            raise InventoryError([Problem("GPUHUB_SECRETS", "is set but empty",
                                          "unset it, or set it to the secrets file")])
        return Path(variable)
    return inventory_path(inventory).resolve().parent / "secrets.yaml"


def load_secrets(inventory: Optional[str] = None) -> Secrets:
    """Environment first, then secrets.yaml (refused unless only its owner can read it).
    A secrets file named by GPUHUB_SECRETS must exist; beside the inventory it is optional, but a
    link to nothing or a folder there is an error, never silently ignored."""
    values, origin = {}, {}
    file = secrets_path(inventory)
    named = os.environ.get("GPUHUB_SECRETS") is not None
    if named and not file.exists():
        raise InventoryError([Problem("GPUHUB_SECRETS", f"names {file}, which does not exist",
                                      "create it (mode 0600), or unset GPUHUB_SECRETS")])
    if file.is_symlink() and not file.exists():
        raise InventoryError([Problem(str(file), "is a link to nothing", "remove it, or point it at the secrets")])
    if file.exists():
        if not file.is_file():
            raise InventoryError([Problem(str(file), "is not a file", "secrets.yaml is a YAML file, mode 0600")])
        mode = file.stat().st_mode & 0o777
        if mode & 0o077:
            raise InventoryError([Problem(str(file), f"mode {mode:04o} lets other users read the secrets",
                                          f"chmod 600 {file}")])
        problems = []
        try:
            data = yamlfile.load(file, "a secrets file")
        except yamlfile.YAMLProblem as e:
            raise InventoryError([Problem(str(file), str(e))]) from None
        data = SECRETS.check(data, "secrets", problems)
        if problems:
            raise InventoryError(problems, str(file))
        for key, value in data.items():
            if value:
                values[key], origin[key] = value, str(file)
    for key, variable in SECRET_ENV.items():
        if os.environ.get(variable):
            values[key], origin[key] = os.environ[variable], variable
    return Secrets(values, origin)
