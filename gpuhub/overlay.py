"""Values overlays (`hub.values_overlay`, `gpu.plugin_values_overlay`): a YAML file a lab
writes, merged last over the values gpuhub renders for a chart. Touches no host.

The merge is helm's own for several `-f` files (helm v3.17.3 pkg/cli/values/options.go
mergeMaps): a mapping merges key by key, anything else (a list, a scalar, null) replaces.
A null stays in the merged values: helm then drops the chart's default for that key when it
coalesces them (pkg/chartutil/coalesce.go coalesceTablesFullKey, `delete(dst, key)`).
"""
from __future__ import annotations

import copy
from pathlib import Path

from . import yamlfile
from .schema import Problem, did_you_mean

# Keys an overlay may never set, wherever they sit: OAuth client secrets belong in secrets.yaml
# (or the environment), never in a file that is compared, rendered and shown.
SECRET_KEYS = {"client_secret"}

# Top-level keys of the device-plugin chart v0.20.0 (deployments/helm/nvidia-device-plugin/
# values.yaml at tag v0.20.0). The chart ships no values.schema.json at that tag, so these names
# are the only check helm itself would not make. `global` is helm's own (passed to subcharts).
PLUGIN_CHART_KEYS = (
    "config", "compatWithCPUManager", "migStrategy", "failOnInitError", "deviceListStrategy",
    "deviceIDStrategy", "nvidiaDriverRoot", "gdrcopyEnabled", "gdsEnabled", "mofedEnabled",
    "deviceDiscoveryStrategy", "nameOverride", "fullnameOverride", "namespaceOverride",
    "selectorLabelsOverride", "allowDefaultNamespace", "imagePullSecrets", "image", "updateStrategy",
    "podAnnotations", "podSecurityContext", "securityContext", "resources", "nodeSelector", "affinity",
    "tolerations", "priorityClassName", "runtimeClassName", "devicePlugin", "gfd", "nfd", "mps", "cdi",
    "global",
)


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` over `base` as helm merges values files; neither argument is changed."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)  # the result is the caller's to change
    return out


def key_paths(data: dict, prefix: str = "") -> list:
    """The dotted path of every value `data` sets (a mapping is followed, not named itself,
    unless it is empty: `{}` replaces nothing but is still set)."""
    paths = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += key_paths(value, path + ".")
        else:
            paths.append(path)
    return paths


def overridden(rendered: dict, overlay: dict) -> list:
    """The overlay's paths that replace a value gpuhub rendered (what the plan must point out)."""
    found = []
    for path in key_paths(overlay):
        node = rendered
        for key in path.split("."):
            node = node.get(key, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            found.append(path)
    return found


_ABSENT = object()


def problems(where: str, file: Path, given: str, allowed_top=None) -> list:
    """What is wrong with the overlay `file`, given as `given` at inventory key `where` (empty:
    fine). Each problem names the file as the inventory gives it and the key path in it."""
    try:
        data = yamlfile.load(file, "a values overlay")
    except yamlfile.YAMLProblem as e:
        return [Problem(where, f"{given}: {e}", "paths are relative to the inventory file")]
    if data is None:
        return [Problem(where, f"{given} is empty", "remove the key, or put values in the file")]
    if not isinstance(data, dict):
        return [Problem(where, f"{given} must hold a mapping of chart values, not a {type(data).__name__}")]
    found = []
    for path in key_paths(data):
        if any(str(k).lower() in SECRET_KEYS for k in path.split(".")):
            found.append(Problem(where, f"{given} sets {path}: an overlay may not hold an OAuth client secret",
                                 "put it in secrets.yaml or GPUHUB_GITHUB_CLIENT_SECRET; gpuhub passes it to helm"))
    if allowed_top is not None:
        for key in data:
            if key not in allowed_top:
                found.append(Problem(where, f"{given} sets {key}, which is not a value of the chart",
                                     did_you_mean(key, allowed_top) or "see the chart's values.yaml"))
    return found


def load(file: Path) -> dict:
    """The overlay's values; call after `problems` found none."""
    return yamlfile.load(file, "a values overlay")


def describe(name: str, rendered: dict, overlay: dict) -> str:
    """What the plan says about an overlay: the paths it sets, never their values (an overlay
    may hold credentials of its own), and which of them replace gpuhub's."""
    text = f"values overlay {name} sets " + ", ".join(key_paths(overlay))
    replaced = overridden(rendered, overlay)
    if replaced:
        text += "; replacing gpuhub's " + ", ".join(replaced)
    return text
