"""Offline checks of rendered artifacts against what the real tools accept.

Each function returns a list of problems (empty: fine). Heavy validators (jsonschema,
kubernetes-validate) are imported where used: they are test extras, not runtime needs.
"""
from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import yaml

from .schema import did_you_mean

# K3s config.yaml keys are its CLI flag names (k3s server --help / k3s agent --help, v1.33+).
_K3S_COMMON = {
    "config", "debug", "v", "vmodule", "log", "alsologtostderr", "data-dir", "token", "token-file",
    "server", "node-name", "with-node-id", "node-label", "node-taint", "image-credential-provider-bin-dir",
    "image-credential-provider-config", "docker", "container-runtime-endpoint", "default-runtime",
    "image-service-endpoint", "disable-default-registry-endpoint", "nonroot-devices", "pause-image",
    "snapshotter", "private-registry", "system-default-registry", "node-ip", "node-external-ip",
    "node-internal-dns", "node-external-dns", "resolv-conf", "flannel-iface", "flannel-conf",
    "flannel-cni-conf", "kubelet-arg", "kube-proxy-arg", "protect-kernel-defaults", "selinux",
    "lb-server-port", "rootless", "prefer-bundled-bin", "vpn-auth", "vpn-auth-file",
    "airgap-extra-registry", "enable-pprof", "bind-address",
}
K3S_AGENT_KEYS = _K3S_COMMON | {"disable-apiserver-lb"}
K3S_SERVER_KEYS = _K3S_COMMON | {
    "https-listen-port", "advertise-address", "advertise-port", "tls-san", "tls-san-security",
    "cluster-cidr", "service-cidr", "service-node-port-range", "cluster-dns", "cluster-domain",
    "flannel-backend", "flannel-ipv6-masq", "flannel-external-ip", "egress-selector-mode",
    "servicelb-namespace", "write-kubeconfig", "write-kubeconfig-mode", "write-kubeconfig-group",
    "helm-job-image", "agent-token", "agent-token-file", "cluster-init", "cluster-reset",
    "cluster-reset-restore-path", "kube-apiserver-arg", "etcd-arg", "kube-controller-manager-arg",
    "kube-scheduler-arg", "kube-cloud-controller-manager-arg", "datastore-endpoint",
    "datastore-cafile", "datastore-certfile", "datastore-keyfile", "disable", "disable-scheduler",
    "disable-cloud-controller", "disable-kube-proxy", "disable-network-policy",
    "disable-helm-controller", "embedded-registry", "supervisor-metrics", "secrets-encryption",
    "disable-apiserver", "disable-controller-manager", "disable-etcd", "etcd-expose-metrics",
    "etcd-disable-snapshots", "etcd-snapshot-schedule-cron", "etcd-snapshot-retention",
    "etcd-snapshot-dir", "kine-tls", "kubelet-arg",
}
K3S_PACKAGED_COMPONENTS = {"coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes"}


def k3s_config_problems(config: dict, role: str) -> list:
    known = K3S_SERVER_KEYS if role == "server" else K3S_AGENT_KEYS
    problems = []
    for key in config:
        if key not in known:
            hint = did_you_mean(key, known)
            problems.append(f"k3s {role} config: unknown key {key!r}" + (f" ({hint})" if hint else ""))
    for component in config.get("disable", []):
        if component not in K3S_PACKAGED_COMPONENTS:
            problems.append(f"k3s config: disable: {component!r} is not a packaged component")
    if config.get("write-kubeconfig-mode", "0600") not in ("0600", "0640"):
        problems.append("k3s config: the kubeconfig must not be world-readable")
    if "token" in config or "agent-token" in config:
        problems.append("k3s config: a token is written in clear; use token-file")
    return problems


# The device plugin's config file (NVIDIA/k8s-device-plugin api/config/v1), as a strict model:
# the plugin ignores unknown keys silently (renameByDefault under flags: #1433), so we do not.
_PLUGIN_CONFIG = {
    "version": str,
    "flags": {
        "migStrategy": ("none", "single", "mixed"), "failOnInitError": bool,
        "restartOnDeviceUnhealthy": bool, "nvidiaDriverRoot": str, "gdsEnabled": bool,
        "mofedEnabled": bool,
        "plugin": {"passDeviceSpecs": bool, "deviceListStrategy": list, "deviceIDStrategy": str,
                   "cdiAnnotationPrefix": str, "nvidiaCTKPath": str, "containerDriverRoot": str},
        "gfd": {"oneshot": bool, "noTimestamp": bool, "sleepInterval": str, "outputFile": str,
                "machineTypeFile": str},
    },
    "resources": dict,
    "sharing": {
        "timeSlicing": {"renameByDefault": bool, "failRequestsGreaterThanOne": bool, "resources": list},
        "mps": {"renameByDefault": bool, "failRequestsGreaterThanOne": bool, "resources": list},
    },
}
# No `rename` or `devices`: v0.20.0 drops both with a warning (api/config/v1/config.go
# DisableResourceNamingInConfig, replicas.go disableResoureRenaming), so a config that sets
# them does not do what it says.
_SHARED_RESOURCE_KEYS = {"name": str, "replicas": int}


def _check_model(data, model, path, problems):
    if isinstance(model, dict):
        if not isinstance(data, dict):
            problems.append(f"{path}: expected a mapping")
            return
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key not in model:
                hint = did_you_mean(key, model)
                problems.append(f"{where}: unknown key, ignored by the device plugin" + (f" ({hint})" if hint else ""))
            else:
                _check_model(value, model[key], where, problems)
    elif isinstance(model, tuple) and all(isinstance(m, str) for m in model):
        if data not in model:
            problems.append(f"{path}: {data!r} is not one of {', '.join(model)}")
    elif isinstance(data, bool) and model is not bool:
        problems.append(f"{path}: expected {model}, got a boolean")
    elif not isinstance(data, model):
        problems.append(f"{path}: expected {model}, got {data!r}")


def sharing_config_problems(text: str) -> list:
    problems = []
    config = yaml.safe_load(text)
    _check_model(config, _PLUGIN_CONFIG, "", problems)
    if not isinstance(config, dict):
        return problems
    if config.get("version") != "v1":
        problems.append("version: must be v1")
    for kind in ("timeSlicing", "mps"):
        block = (config.get("sharing") or {}).get(kind) or {}
        for i, resource in enumerate(block.get("resources") or []):
            where = f"sharing.{kind}.resources[{i}]"
            _check_model(resource, _SHARED_RESOURCE_KEYS, where, problems)
            if not isinstance(resource.get("replicas"), int) or resource.get("replicas", 0) < 2:
                problems.append(f"{where}.replicas: must be a whole number of at least 2")
            if resource.get("name") != "nvidia.com/gpu":
                problems.append(f"{where}.name: only nvidia.com/gpu is shared by gpuhub")
    return problems


# --- containerd v3 template -------------------------------------------------------------------

BASE_LINE = re.compile(r'^\s*\{\{-?\s*template\s+"base"\s+\.\s*-?\}\}\s*$', re.MULTILINE)
# The one condition gpuhub's template uses; K3s's own base template tests the same field.
UNLESS_DEFAULT_RUNTIME = re.compile(r"\{\{ if not \.NodeConfig\.DefaultRuntime \}\}(.*?)\{\{ end \}\}", re.DOTALL)


def expand_template(template: str, base: str, default_runtime: bool = False) -> str:
    """What K3s writes for this template on a node whose base config is `base`."""
    if len(BASE_LINE.findall(template)) != 1:
        raise ValueError('the template must include {{ template "base" . }} exactly once')
    expanded = UNLESS_DEFAULT_RUNTIME.sub(lambda m: "" if default_runtime else m.group(1), template)
    if "{{" in BASE_LINE.sub("", expanded):
        raise ValueError("the template holds Go template actions gpuhub cannot check")
    return BASE_LINE.sub(lambda _: base, expanded)


def containerd_template_problems(template: str, base: str, default_runtime: bool = False) -> list:
    """The expanded template must be TOML with no table declared twice (containerd refuses it:
    k3s-io/docs#566), be config version 3, and make nvidia the default runtime."""
    try:
        config = tomllib.loads(expand_template(template, base, default_runtime))
    except (ValueError, tomllib.TOMLDecodeError) as e:
        return [f"containerd template: {e}"]
    problems = []
    if config.get("version") != 3:
        problems.append("containerd template: not config version 3 (containerd 2)")
    runtime = config.get("plugins", {}).get("io.containerd.cri.v1.runtime", {}).get("containerd", {})
    if runtime.get("default_runtime_name") != "nvidia":
        problems.append("containerd template: nvidia is not the default runtime")
    if "nvidia" not in runtime.get("runtimes", {}):
        problems.append("containerd template: no nvidia runtime (is nvidia-container-runtime installed?)")
    return problems


# --- Zero to JupyterHub values ------------------------------------------------------------------

def _merge(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


def z2jh_problems(values: dict, chart_dir: Path) -> list:
    """Merge the chart's defaults with `values` (as helm does) and validate against its schema."""
    import jsonschema

    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text())
    schema = yaml.safe_load((chart_dir / "values.schema.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    merged = _merge(defaults, values)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(merged), key=lambda e: list(map(str, e.absolute_path)))]


def manifest_problems(manifest: dict, kubernetes_version: str) -> list:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{manifest.get('kind')}: {e.message} at {'.'.join(map(str, e.path))}"]
    return []
