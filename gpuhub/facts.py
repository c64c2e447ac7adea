"""Read-only probes: each fact is a shell command plus a pure parser of its output.

All of a host's probes run in ONE round trip: a script that prints each probe's output between
markers, with its exit code. A non-zero exit is data for the parser, never an exception.
Parsers take (stdout, exit code) and are tested from recorded outputs in tests/data/facts/.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import shlex
import tomllib
from dataclasses import dataclass, field, replace

from . import kube_secret, podstatus
from .secret import digested

K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
SERVER_TOKEN = "/var/lib/rancher/k3s/server/node-token"
AGENT_TOKEN = "/etc/rancher/k3s/gpuhub-node-token"
CONTAINERD_DIR = "/var/lib/rancher/k3s/agent/etc/containerd"
TEMPLATE = f"{CONTAINERD_DIR}/config-v3.toml.tmpl"
STORAGE = "/var/lib/rancher/k3s/storage"
SCRIPTS_DIR = "/var/lib/gpuhub/scripts"  # scripts/ on every host
KUBECTL = "/usr/local/bin/k3s kubectl"


# --- parsers (pure) -----------------------------------------------------------------------------

def parse_text(out: str, rc: int):
    return out.strip() if rc == 0 and out.strip() else None


def parse_sha256(out: str, rc: int):
    """`sha256sum FILE` -> the digest, or None when the file is missing."""
    m = re.match(r"^([0-9a-f]{64})\b", out.strip())
    return m.group(1) if rc == 0 and m else None


# The top-level key names of a YAML file, never a value: a hand-written config.yaml may hold the
# cluster's token, and only what sed prints (the name before the colon) leaves the host.
YAML_KEY_NAMES = "sed -n 's/^[\"'\\'']\\{0,1\\}\\([A-Za-z0-9_.+-]*\\)[\"'\\'']\\{0,1\\}[[:space:]]*:.*/\\1/p'"


def parse_key_names(out: str, rc: int):
    """YAML_KEY_NAMES' output -> the key names, K3s's append suffix `+` dropped (K3s release-1.34
    pkg/configfilearg/parser.go: `key+:` appends to a flag); None when the file is missing."""
    if rc != 0:
        return None
    names = (line.strip().rstrip("+") for line in out.splitlines())
    return list(dict.fromkeys(n for n in names if re.fullmatch(r"[A-Za-z0-9_.-]+", n)))


def parse_sha256sums(out: str, rc: int) -> dict:
    """`sha256sum -- *` in a folder -> {file name: digest}; {} when the folder is missing."""
    sums = {}
    for line in out.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})  \*?(\S+)", line.strip(), re.ASCII)
        if m:
            sums[m.group(2)] = m.group(1)
    return sums


def parse_k3s_version(out: str, rc: int):
    """`k3s --version` -> 'v1.33.5+k3s1', or None when K3s is not installed."""
    m = re.search(r"k3s version (v\d+\.\d+\.\d+\+k3s\d+)", out)
    return m.group(1) if rc == 0 and m else None


def parse_unit(out: str, rc: int) -> dict:
    """`systemctl is-active U; systemctl is-enabled U` -> {'active': bool, 'enabled': bool}."""
    lines = out.split()
    return {"active": bool(lines) and lines[0] == "active",
            "enabled": len(lines) > 1 and lines[1] in ("enabled", "enabled-runtime")}


def parse_k3s_units(out: str, rc: int) -> dict:
    """`NAME yes|no` lines (a k3s*.service unit; its uninstall script exists?) -> {NAME: bool}."""
    units = {}
    for line in out.splitlines():
        name, _, own = line.strip().partition(" ")
        if re.fullmatch(r"k3s[A-Za-z0-9_.@-]*", name) and own in ("yes", "no"):
            units[name] = own == "yes"
    return units


NVIDIA_SMI_TIMEOUT_S = 10


def parse_nvidia_smi(out: str, rc: int) -> dict:
    """`nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total --format=csv,noheader,nounits`,
    run under `timeout` (exit 124 when a wedged driver keeps it from answering)."""
    if rc != 0:
        first = next((line.strip() for line in out.splitlines() if line.strip()), f"exit code {rc}")
        if rc == 127 or "not found" in first:
            first = "nvidia-smi not found (no NVIDIA driver installed)"
        elif rc in (124, 137):
            first = f"nvidia-smi did not answer within {NVIDIA_SMI_TIMEOUT_S} s (a hung driver or GPU)"
        return {"ok": False, "error": first, "gpus": []}
    gpus = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 5 and cells[0].isdigit():
            gpus.append({"index": int(cells[0]), "name": cells[1], "uuid": cells[2],
                         "driver": cells[3], "memory_mib": int(float(cells[4])) if cells[4].replace(".", "").isdigit() else None})
    if not gpus:
        return {"ok": False, "error": "nvidia-smi listed no GPUs", "gpus": []}
    return {"ok": True, "error": "", "gpus": gpus}


NVIDIA_VENDOR = "0x10de"


def parse_pci_gpus(out: str, rc: int) -> list:
    """`SLOT VENDOR DEVICE CLASS` per PCI function, read from sysfs -> the NVIDIA GPUs' slots.

    The kernel prints vendor and device as `0x%04x` and class as `0x%06x` (linux
    drivers/pci/pci-sysfs.c, vendor_show/device_show/class_show). A GPU is a display controller:
    base class 0x03 (0x0300 VGA, 0x0302 3D controller, as data-centre GPUs report). NVIDIA's
    HDMI audio function (class 0x0403) on the same card is not a GPU. No driver is needed.
    """
    gpus = []
    for line in out.splitlines():
        cells = line.split()
        if len(cells) != 4:
            continue
        slot, vendor, device, klass = (c.lower() for c in cells)
        if vendor == NVIDIA_VENDOR and re.fullmatch(r"0x03[0-9a-f]{4}", klass):
            gpus.append({"slot": slot, "device": device, "class": klass})
    return sorted(gpus, key=lambda g: g["slot"])


# The PCI ID Repository's database, pci.ids (https://pci-ids.ucw.cz; read: github:pciutils/pciids,
# pci.ids Version 2026.08.22, and Debian 12's package pci.ids 0.0~2023.04.11-1). Its own header
# gives the syntax: "vendor  vendor_name", then "<TAB>device  device_name" (one tab), then
# "<TAB><TAB>subvendor subdevice  subsystem_name" (two tabs), ids in four lowercase hex digits and
# two spaces before the name; '#' starts a comment line. A vendor's devices run until the next
# line that starts with neither a tab nor '#' (the next vendor, or the "C xx" class list at the
# end). The file is UTF-8 (hwdata's Makefile checks it so). Debian ships it as
# /usr/share/misc/pci.ids (package pci.ids, which libpci3, and so pciutils, depends on);
# Fedora's hwdata as /usr/share/hwdata/pci.ids (its Makefile installs into $(datadir)/hwdata).
PCI_IDS_FILES = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")
_PCI_ID_LINE = re.compile(r"\t([0-9a-f]{4})  (.+)", re.ASCII)
_SYSFS_DEVICE = re.compile(r"0x([0-9a-f]{4})", re.ASCII)
MAX_MODEL = 100  # characters of a model name kept: it is shown in a comment, nothing more


def parse_pci_names(out: str, rc: int) -> dict:
    """pci_names_probe's output -> {'file': path, 'version': '2026.08.22', 'names': {'0x2335':
    'GH100 [H200 SXM 141GB]'}}; file None when no pci.ids was found (exit 1)."""
    found = {"file": None, "version": None, "names": {}}
    if rc != 0:
        return found
    for line in out.splitlines():
        if line.startswith("file ") and found["file"] is None:
            found["file"] = line[len("file "):].strip() or None
        elif line.startswith("#\tVersion: ") and found["version"] is None:
            found["version"] = one_line(line.split(":", 1)[1].strip())[:40] or None
        else:
            m = _PCI_ID_LINE.fullmatch(line.rstrip())
            if m and one_line(m.group(2)):
                found["names"].setdefault(f"0x{m.group(1)}", one_line(m.group(2))[:MAX_MODEL])
    return found


def one_line(text: str) -> str:
    """What a file on the host says, fit to show on one line: no control or escape characters."""
    return "".join(ch for ch in text if ch.isprintable()).strip()


# awk, not grep: only NVIDIA's section counts, because the same device id names another device
# under another vendor (Debian 12's pci.ids has 2335, the H200, under Intel only). No interval
# expressions ({4}): Debian 12's default awk, mawk 1.3.4 20200120, matches nothing with them.
_PCI_NAMES_AWK = r"""BEGIN { n = split(ids, l, " "); for (i = 1; i <= n; i++) want[l[i]] = 1 }
/^#\tVersion: / && !version { print; version = 1 }
/^10de  / { inside = 1; next }
inside && /^[^\t#]/ { exit }
inside && /^\t[0-9a-f][0-9a-f][0-9a-f][0-9a-f]  / && (substr($0, 2, 4) in want) { print }
"""


def pci_names_probe(devices, files=PCI_IDS_FILES) -> "Probe":
    """The pci.ids lines that name `devices` (sysfs ids such as '0x2335') in NVIDIA's section,
    from the first of `files` that is readable. Read-only, and needs no root. Ids not shaped as
    sysfs prints them are left out, never sent."""
    ids = sorted({m.group(1) for d in devices if (m := _SYSFS_DEVICE.fullmatch(str(d).lower()))})
    q = shlex.quote
    command = (f"for f in {' '.join(q(f) for f in files)}; do if [ -r \"$f\" ]; then echo \"file $f\"; "
               f"awk -v ids={q(' '.join(ids))} {q(_PCI_NAMES_AWK)} \"$f\"; exit; fi; done; exit 1")
    return Probe(command, parse_pci_names)


def parse_containerd(out: str, rc: int):
    """K3s's generated containerd config -> {'runtimes': [...], 'default_runtime': name}, or None."""
    if rc != 0 or not out.strip():
        return None
    try:
        config = tomllib.loads(out)
    except tomllib.TOMLDecodeError:
        return {"runtimes": [], "default_runtime": None, "error": "unparsable"}
    plugins = config.get("plugins", {})
    cri = plugins.get("io.containerd.cri.v1.runtime") or plugins.get("io.containerd.grpc.v1.cri") or {}
    containerd = cri.get("containerd", {})
    return {"runtimes": sorted(containerd.get("runtimes", {})),
            "default_runtime": containerd.get("default_runtime_name", "runc")}


def parse_helm_version(out: str, rc: int):
    m = re.search(r'Version:"(v[^"]+)"', out) or re.match(r"^(v\d+\.\d+\.\d+)", out.strip())
    return m.group(1) if rc == 0 and m else None


def parse_kib(out: str, rc: int):
    """`du -sk DIR` / a number -> KiB, or 0 when absent."""
    m = re.match(r"^(\d+)", out.strip())
    return int(m.group(1)) if rc == 0 and m else 0


def parse_int(out: str, rc: int):
    """A whole number on its own, or None."""
    text = out.strip()
    return int(text) if rc == 0 and text.isascii() and text.isdigit() else None


def parse_json(out: str, rc: int):
    if rc != 0:
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


def _epoch(stamp):
    """RFC 3339 as the API and helm write it ('2025-01-02T03:04:05Z', Go's RFC3339Nano
    '2025-01-02T03:04:05.123456789+01:00') -> seconds, or None. Python before 3.11 reads at most
    six fraction digits: the rest are cut."""
    from datetime import datetime
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(stamp)).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def node_view(item: dict) -> dict:
    """One core/v1 Node -> {ready, ready_message, heartbeat, runtime_handlers, labels, capacity,
    allocatable, version}. `heartbeat`: the Ready condition's lastHeartbeatTime (epoch seconds);
    `runtime_handlers`: NodeStatus.runtimeHandlers[].name ("" is the default handler)."""
    status = item.get("status", {})
    condition = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    return {"ready": condition.get("status") == "True", "ready_message": condition.get("message", ""),
            "heartbeat": _epoch(condition.get("lastHeartbeatTime")),
            "runtime_handlers": [h.get("name", "") for h in status.get("runtimeHandlers", []) or []],
            "labels": item.get("metadata", {}).get("labels", {}),
            "capacity": status.get("capacity", {}), "allocatable": status.get("allocatable", {}),
            "version": status.get("nodeInfo", {}).get("kubeletVersion")}


def parse_nodes(out: str, rc: int):
    """`kubectl get nodes -o json` -> {name: node_view}."""
    data = parse_json(out, rc)
    if data is None:
        return None
    return {item["metadata"]["name"]: node_view(item) for item in data.get("items", [])}


def parse_node(out: str, rc: int):
    """`kubectl get node NAME -o json` -> node_view, or None."""
    data = parse_json(out, rc)
    return node_view(data) if isinstance(data, dict) and data.get("kind") == "Node" else None


PENDING = ("pending-install", "pending-upgrade", "pending-rollback")  # helm pkg/release/status.go IsPending


def release_view(history):
    """A release from its history: {chart, version, status, revision, updated, deployed (the last
    deployed revision's number, or None)}, or None when there is no such release."""
    if not history:
        return None
    last = history[-1]
    deployed = next((r["revision"] for r in reversed(history) if r["status"] == "deployed"), None)
    return dict(last, deployed=deployed)


def parse_pods(out: str, rc: int):
    """`kubectl get pods -o json` -> [{name, node, phase, ready, labels, owner, reason}].

    `owner`: the controller that made the pod, `KIND/NAME` from metadata.ownerReferences (the one
    with `controller: true`), e.g. `DaemonSet/nvdp-nvidia-device-plugin`: pods of two DaemonSets
    can carry the same labels. `reason`: why it does not run (podstatus.why), '' when it does."""
    data = parse_json(out, rc)
    return None if data is None else pod_views(data.get("items", []))


def pod_views(items: list) -> list:
    pods = []
    for item in items:
        status, metadata = item.get("status", {}), item["metadata"]
        owners = metadata.get("ownerReferences") or []
        owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
        pods.append({"name": metadata["name"], "node": item.get("spec", {}).get("nodeName"),
                     "labels": metadata.get("labels", {}), "phase": status.get("phase"),
                     "owner": f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
                     "reason": podstatus.why(item),
                     "ready": any(c.get("type") == "Ready" and c.get("status") == "True"
                                  for c in status.get("conditions", []))})
    return pods


# --- probes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    command: str
    parse: object
    expands: bool = False  # parse gives several facts at once: {name: value}
    # Started beside the rest, in the same command: a probe that waits on something (an API
    # call, the driver, a program's start) overlaps the others instead of following them.
    apart: bool = False
    # Run alone before any other probe starts: the run lock, under which the facts are read.
    first: bool = False
    # Read only for a step that declares it (steps.needs) and runs: its cost grows with the data on
    # the host, which a converged run's drift check never needs.
    costly: bool = False


# `read` is a shell builtin: a workstation has a few hundred PCI functions, and three `cat`s
# each would be a thousand processes every run.
PCI_LISTING = ("for d in /sys/bus/pci/devices/*; do [ -r \"$d/class\" ] || continue; "
               "read -r v < \"$d/vendor\"; read -r p < \"$d/device\"; read -r c < \"$d/class\"; "
               "echo \"${d##*/} $v $p $c\"; done; true")


def host_probes() -> dict:
    return {
        "systemd": Probe("test -d /run/systemd/system && echo yes", parse_text),
        # The kernel's machine name (x86_64, aarch64): the airgap binaries must be built for it.
        "arch": Probe("uname -m", parse_text),
        "k3s_version": Probe("/usr/local/bin/k3s --version 2>/dev/null | head -n 1", parse_k3s_version, apart=True),
        "unit_k3s": Probe("systemctl is-active k3s; systemctl is-enabled k3s", parse_unit),
        "unit_k3s_agent": Probe("systemctl is-active k3s-agent; systemctl is-enabled k3s-agent", parse_unit),
        # K3s's install script writes one unit per role, each with an uninstall script named after it.
        "k3s_units": Probe("for u in /etc/systemd/system/k3s*.service; do [ -f \"$u\" ] || continue; "
                           "n=${u##*/}; n=${n%.service}; "
                           "if [ -e \"/usr/local/bin/$n-uninstall.sh\" ]; then echo \"$n yes\"; "
                           "else echo \"$n no\"; fi; done", parse_k3s_units),
        "k3s_config_sha": Probe(f"sha256sum {K3S_CONFIG}", parse_sha256),
        "k3s_config_keys": Probe(f"{YAML_KEY_NAMES} {K3S_CONFIG}", parse_key_names),
        "agent_token_sha": Probe(f"test -f {AGENT_TOKEN} && tr -d '\\n' < {AGENT_TOKEN} | sha256sum", parse_sha256),
        "server_token_sha": Probe(f"test -f {SERVER_TOKEN} && tr -d '\\n' < {SERVER_TOKEN} | sha256sum", parse_sha256),
        "nvidia_smi": Probe(f"timeout -k 2 {NVIDIA_SMI_TIMEOUT_S} nvidia-smi "
                            "--query-gpu=index,name,uuid,driver_version,memory.total "
                            "--format=csv,noheader,nounits 2>&1", parse_nvidia_smi, apart=True),
        # What the hardware has, driver or not: a broken driver must never read as "no GPUs".
        "pci_gpus": Probe(PCI_LISTING, parse_pci_gpus),
        "toolkit": Probe("command -v nvidia-container-runtime || ls /usr/local/nvidia/toolkit/nvidia-container-runtime",
                         parse_text),
        "containerd": Probe(f"cat {CONTAINERD_DIR}/config.toml", parse_containerd),
        "template_sha": Probe(f"sha256sum {TEMPLATE}", parse_sha256),
        "helm_sha": Probe("sha256sum /usr/local/bin/helm", parse_sha256),
        "helm_version": Probe("/usr/local/bin/helm version 2>/dev/null", parse_helm_version, apart=True),
        # du reads every file of the users' volumes: seconds to minutes on a lab's disks.
        "storage_kib": Probe(f"du -sk {STORAGE}", parse_kib, costly=True),
        "kubeconfig_mode": Probe(f"stat -c %a {KUBECONFIG}", parse_text),
        # What gpuhub's scripts on the host are: a converged run uploads none of them.
        "scripts_sha": Probe(f"cd {SCRIPTS_DIR} && sha256sum -- *", parse_sha256sums),
    }


def plugin_pod_labels(release: str) -> tuple:
    """The labels of device-plugin release NS/NAME's pods: its plugin's AND its GFD's, whose pod
    templates carry the same labels (chart 0.20.0 templates/_helpers.tpl templateLabels); they are
    told apart by the DaemonSet that owns them (parse_pods' `owner`, steps.cluster.daemonset_pods)."""
    return ("app.kubernetes.io/name=nvidia-device-plugin", f"app.kubernetes.io/instance={release.split('/')[-1]}")


def plugin_pod_selector(release: str) -> str:
    return shlex.quote(",".join(plugin_pod_labels(release)))


def secret_probe(namespace: str, name: str) -> Probe:
    """One Secret by name (never every Secret's data): as a list, so a Secret or namespace that is
    not there is an empty list and exit 0, told apart from a cluster that does not answer."""
    return Probe(f"{KUBECTL} get secrets -n {shlex.quote(namespace)} --field-selector "
                 f"{shlex.quote('metadata.name=' + name)} -o json",
                 functools.partial(parse_secret, namespace=namespace, name=name))


def parse_secret(out: str, rc: int, namespace: str, name: str):
    """`kubectl get secrets -n NS --field-selector metadata.name=NAME -o json` -> None when kubectl
    failed; {"found": False} when there is no such Secret; else {"found": True, "managed": whether
    gpuhub wrote it (its label), "digests": {key: kube_secret.key_digest}}. The API gives data
    base64-encoded (core/v1 Secret.data is []byte, base64 in JSON); each value is digested here
    and dropped: no fact holds one."""
    from . import kube_secret
    data = parse_json(out, rc)
    if not isinstance(data, dict):
        return None
    item = next((i for i in data.get("items") or [] if (i.get("metadata") or {}).get("name") == name), None)
    if item is None:
        return {"found": False}
    labels = (item.get("metadata") or {}).get("labels") or {}
    digests = {}
    for key, encoded in (item.get("data") or {}).items():
        try:
            value = base64.b64decode(encoded or "", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            value = "\0undecodable"
        digests[key] = kube_secret.key_digest(namespace, name, key, value)
    managed = labels.get(kube_secret.MANAGED_BY[0]) == kube_secret.MANAGED_BY[1]
    return {"found": True, "managed": managed, "digests": digests}


def cluster_probes(plugin_release: str, hub_release: str, https: str = "ingress", hub_secret: str = None) -> dict:
    """On the server, once K3s answers: what the cluster steps compare, in two kubectl calls (each
    costs the API server a round and K3s's kubectl a start): the nodes, RuntimeClasses and every
    pod in one; helm's own records of the releases in the other (helm_releases); each kubectl call
    starts at once, beside the others and the host's probes (Probe.apart). The facts they
    give: nodes, runtimeclasses, plugin_pods, hub_pods, traefik_pods, certmanager_pods, ingresses,
    gpu_pods, storage (StorageClasses and users' volumes, storage_view); plugin_release, hub_release,
    certmanager_release (each release's revisions), plugin_values, hub_values, certmanager_values (its
    values, the OAuth secret digested); hub_secret, the Secret NS/NAME holding the hub's OAuth
    credentials (gpuhub's own by default: kube_secret.parse, digests only), read by name in the same
    round trip; gpuhub_secrets, cluster_issuers. Those two only where hub.https (`https`) reads them:
    every kubectl call is a process start on the server and a round on the API server, and a
    converged run should pay for none it does not need."""
    releases = {"plugin": plugin_release, "hub": hub_release, "certmanager": CERT_MANAGER_RELEASE}
    if hub_secret is None:
        from .render import GITHUB_SECRET_NAME
        hub_secret = f"{hub_release.split('/')[0]}/{GITHUB_SECRET_NAME}"
    probes = {
        "hub_secret": replace(secret_probe(*hub_secret.split("/")), apart=True),
        "cluster": Probe(f"{KUBECTL} get {CLUSTER_TYPES} -A -o json",
                         functools.partial(parse_cluster, plugin_release=plugin_release, hub_release=hub_release),
                         expands=True, apart=True),
        "releases": Probe(f"{KUBECTL} get secrets -A -l {HELM_RELEASES} -o json",
                          functools.partial(parse_helm_releases, releases=releases), expands=True, apart=True),
        # The server's clock, which stamped those revisions: how old a pending one is.
        "now": Probe("date +%s", parse_int),
        # hub.https: what gpuhub made for HTTPS, by the digests it stamped on them (never a
        # key or token itself): its Secrets (the hub's TLS pair, the DNS token), and the ClusterIssuers, whose
        # listing fails while cert-manager's CRDs are absent (None: no cert-manager here).
        "gpuhub_secrets": Probe(f"{KUBECTL} get secrets -A -l {GPUHUB_MANAGED} -o json",
                                functools.partial(parse_annotated, annotation=TLS_DIGEST), apart=True),
        "cluster_issuers": Probe(f"{KUBECTL} get clusterissuers.cert-manager.io -o json",
                                 functools.partial(parse_annotated, annotation=SPEC_DIGEST, ready=True), apart=True),
    }
    unread = {"letsencrypt": ("gpuhub_secrets", "cluster_issuers"), "certificate": ("cluster_issuers",)}
    return {name: p for name, p in probes.items() if name not in unread.get(https, ())}


GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")


def gpu_requests(pods: list) -> list:
    """The pods, of any namespace, that hold or wait for an NVIDIA GPU: [{name NS/NAME, node,
    phase, resources {resource: count}}]. An extended resource is asked for by its limit (the API
    server defaults the request to it and refuses a different one: kubernetes
    pkg/apis/core/validation ValidateResourceRequirements); finished pods hold nothing."""
    held = []
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Pending", "Running"):
            continue
        wanted = {}
        for container in (pod.get("spec") or {}).get("containers") or []:
            resources = container.get("resources") or {}
            asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
            for name in GPU_RESOURCES:
                if str(asked.get(name, "0")).isdigit() and int(asked.get(name, 0)) > 0:
                    wanted[name] = wanted.get(name, 0) + int(asked[name])
        if wanted:
            meta = pod["metadata"]
            held.append({"name": f"{meta.get('namespace')}/{meta['name']}", "node": (pod.get("spec") or {}).get("nodeName"),
                         "phase": phase, "resources": wanted})
    return held


CERT_MANAGER_RELEASE = "cert-manager/cert-manager"
GPUHUB_MANAGED = "=".join(kube_secret.MANAGED_BY)
TLS_DIGEST, SPEC_DIGEST = kube_secret.TLS_DIGEST, kube_secret.SPEC_DIGEST


def parse_annotated(out: str, rc: int, annotation: str, ready: bool = False):
    """A `kubectl get ... -o json` list -> {[NAMESPACE/]NAME: {"digest": the annotation, "ready": ...}}; None
    when kubectl failed. Nothing else of an object is kept (a TLS Secret's data holds a key).
    `ready`: the Ready condition's status is "True" (cert-manager v1.21.1
    pkg/apis/certmanager/v1/types_issuer.go IssuerCondition, IssuerConditionReady)."""
    data = parse_json(out, rc)
    if not isinstance(data, dict):
        return None
    found = {}
    for item in data.get("items", []):
        meta = item.get("metadata") or {}
        view = {"digest": (meta.get("annotations") or {}).get(annotation)}
        if ready:
            conditions = (item.get("status") or {}).get("conditions") or []
            view["ready"] = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        found[f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")] = view
    return found


CLUSTER_FACTS = ("nodes", "runtimeclasses", "plugin_pods", "hub_pods", "traefik_pods", "ingresses",
                 "certmanager_pods", "gpu_pods", "storage")
CLUSTER_TYPES = "nodes,runtimeclasses,pods,ingresses,storageclasses,persistentvolumes,persistentvolumeclaims"


def parse_cluster(out: str, rc: int, plugin_release: str, hub_release: str) -> dict:
    """`kubectl get CLUSTER_TYPES -A -o json` -> the facts CLUSTER_FACTS (None each
    when kubectl failed). Several resource types come as one v1 List of every item, each with its
    own kind (kubectl v0.34.9 pkg/cmd/get/get.go printGeneric); a type kubectl could not list makes
    it exit 1 after printing the rest, and then nothing is taken for granted."""
    data = parse_json(out, rc)
    if not isinstance(data, dict):
        return dict.fromkeys(CLUSTER_FACTS)
    kinds = {}
    for item in data.get("items", []):
        kinds.setdefault(item.get("kind"), []).append(item)
    pods = kinds.get("Pod", [])
    plugin_ns, hub_ns = plugin_release.split("/")[0], hub_release.split("/")[0]
    plugin_labels = dict(term.split("=", 1) for term in plugin_pod_labels(plugin_release))

    def labelled(pod, wanted):
        labels = pod.get("metadata", {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in wanted.items())
    return {
        "nodes": {item["metadata"]["name"]: node_view(item) for item in kinds.get("Node", [])},
        "runtimeclasses": sorted(item["metadata"]["name"] for item in kinds.get("RuntimeClass", [])),
        "plugin_pods": pod_views([p for p in pods if p["metadata"].get("namespace") == plugin_ns
                                  and labelled(p, plugin_labels)]),
        "hub_pods": pod_views([p for p in pods if p["metadata"].get("namespace") == hub_ns]),
        "traefik_pods": pod_views([p for p in pods if labelled(p, {"app.kubernetes.io/name": "traefik"})]),
        "gpu_pods": gpu_requests(pods),
        # cert-manager's controller, however it was installed: its chart labels the pods
        # app.kubernetes.io/name=cert-manager, component controller (v1.21.1
        # deploy/charts/cert-manager/templates/deployment.yaml).
        "certmanager_pods": pod_views([p for p in pods if labelled(p, {"app.kubernetes.io/name": "cert-manager",
                                                                       "app.kubernetes.io/component": "controller"})]),
        "ingresses": [ingress_view(i) for i in kinds.get("Ingress", [])],
        "storage": storage_view(kinds),
    }


def ingress_view(item: dict) -> dict:
    """One networking.k8s.io/v1 Ingress -> {namespace, name, release, hosts}. `release`: the helm
    release that made it, NS/NAME from the annotations helm puts on every object it creates
    (meta.helm.sh/release-name, -namespace: helm v3.17.3 pkg/action/validate.go), else None."""
    meta = item.get("metadata") or {}
    notes = meta.get("annotations") or {}
    name, ns = notes.get("meta.helm.sh/release-name"), notes.get("meta.helm.sh/release-namespace")
    hosts = sorted({r.get("host") for r in (item.get("spec") or {}).get("rules") or [] if r.get("host")})
    return {"namespace": meta.get("namespace"), "name": meta.get("name"),
            "release": f"{ns}/{name}" if name and ns else None, "hosts": hosts}


def _pinned_node(pv: dict):
    """The node a PV's nodeAffinity pins it to by kubernetes.io/hostname (local-path's, rancher/
    local-path-provisioner v0.0.37 provisioner.go DefaultNodeAffinityKey), or its
    local.path.provisioner/selected-node annotation; None when it names none (a CSI driver's
    own topology key, a networked volume)."""
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
             .get("nodeSelectorTerms") or [])
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == "kubernetes.io/hostname" and expr.get("operator") == "In" \
                    and len(expr.get("values") or []) == 1:
                return expr["values"][0]
    return ((pv.get("metadata") or {}).get("annotations") or {}).get("local.path.provisioner/selected-node")


def storage_view(kinds: dict) -> dict:
    """StorageClasses and PersistentVolumes with their claims (storage.k8s.io/v1 StorageClass,
    core/v1 PersistentVolume and PersistentVolumeClaim, kubernetes/api v0.34) -> {classes:
    {name: provisioner}, volumes: [{namespace, claim, username, servername, storage_class,
    provisioner, persistent_volume, volume_handle, volume_attributes, path, node}]}: one entry per
    PV (a PV whose claim is gone still holds data), its claim's KubeSpawner annotations
    (hub.jupyter.org/username, /servername: KubeSpawner 7.0.0 _build_common_annotations). `path`:
    a `local` or `hostPath` PV's folder on the node (local-path makes `local` ones for K3s's class,
    annotation defaultVolumeType: local in K3s manifests/local-storage.yaml)."""
    classes = {item["metadata"]["name"]: item.get("provisioner", "") for item in kinds.get("StorageClass", [])}
    claims = {(item["metadata"].get("namespace"), item["metadata"]["name"]): item
              for item in kinds.get("PersistentVolumeClaim", [])}
    volumes = []
    for pv in kinds.get("PersistentVolume", []):
        spec, metadata = pv.get("spec") or {}, pv.get("metadata") or {}
        ref = spec.get("claimRef") or {}
        claim = claims.get((ref.get("namespace"), ref.get("name"))) or {}
        notes = (claim.get("metadata") or {}).get("annotations") or {}
        csi = spec.get("csi") or {}
        cls = spec.get("storageClassName") or None
        provisioner = (csi.get("driver") or classes.get(cls)
                       or (metadata.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") or "")
        volumes.append({"namespace": ref.get("namespace"), "claim": ref.get("name"),
                        "username": notes.get("hub.jupyter.org/username"),
                        "servername": notes.get("hub.jupyter.org/servername"),
                        "storage_class": cls, "provisioner": provisioner,
                        "persistent_volume": metadata["name"], "volume_handle": csi.get("volumeHandle"),
                        "volume_attributes": csi.get("volumeAttributes") or {},
                        "path": (spec.get("local") or spec.get("hostPath") or {}).get("path"),
                        "node": _pinned_node(pv)})
    return {"classes": classes, "volumes": sorted(volumes, key=lambda v: v["persistent_volume"])}


# helm 3 keeps each revision of a release as a Secret in the release's namespace (its default
# storage driver, HELM_DRIVER=secret): named sh.helm.release.v1.NAME.vREVISION, type
# helm.sh/release.v1, labelled name, owner=helm, status, version (helm v3.17.3
# pkg/storage/driver/secrets.go newSecretsObject). Superseded revisions are history: the latest
# revision and the deployed one are never superseded, so they are all a plan needs.
HELM_RELEASES = "owner=helm,status!=superseded"
# The label scripts/helm-release.sh gives every release gpuhub installs or upgrades (helm --labels).
MANAGED_LABEL = ("managed-by", "gpuhub")


def decode_release(data: str):
    """A release Secret's data.release -> helm's Release as JSON, or None. The API gives Secret
    data base64-encoded; helm stored there base64 of the gzipped JSON (helm v3.17.3
    pkg/storage/driver/util.go encodeRelease; decodeRelease reads it uncompressed too)."""
    import base64
    import gzip
    try:
        raw = base64.b64decode(base64.b64decode(data, validate=True), validate=True)
        if raw[:3] == b"\x1f\x8b\x08":
            raw = gzip.decompress(raw)
        release = json.loads(raw)
    except (ValueError, OSError, EOFError):
        return None
    return release if isinstance(release, dict) else None


def parse_helm_releases(out: str, rc: int, releases: dict) -> dict:
    """`kubectl get secrets -A -l owner=helm,status!=superseded -o json` -> for each KEY of
    `releases` (KEY -> NS/NAME): KEY_release, its revisions oldest first, [{revision, status,
    chart, version, updated (epoch seconds), description}]: what `helm history` shows (revision,
    updated = info.last_deployed, status, chart NAME-VERSION from chart.metadata, description; helm
    v3.17.3 cmd/helm/history.go getHistory), of every status (helm 3's `list` hides pending ones,
    pkg/action/list.go SetStateMask), [] for no such release; and KEY_values, the latest revision's user-supplied values (`helm get values`: its
    Release.Config, pkg/action/get_values.go), secrets digested; None each when kubectl failed.
    And chart_releases: {chart name: ["NS/NAME", ...]}, every release there is, by the chart of its
    latest revision (one `helm uninstall --keep-history` left as "uninstalled" is none): a second
    device plugin or hub beside one installed by hand is how a takeover goes wrong."""
    data = parse_json(out, rc)
    if not isinstance(data, dict):
        return {"chart_releases": None, **{f"{key}_{what}": None for key in releases for what in ("release", "values")}}
    found = {}
    for item in data.get("items", []):
        meta = item.get("metadata", {})
        if item.get("type") != "helm.sh/release.v1":
            continue
        release = decode_release((item.get("data") or {}).get("release", ""))
        if release is None:
            continue
        # Custom labels live on the Secret only (Release.Labels is `json:"-"`, helm v3.17.3
        # pkg/release/release.go); gpuhub's upgrades add managed-by=gpuhub (helm-release.sh).
        release["gpuhub_managed"] = (meta.get("labels") or {}).get(MANAGED_LABEL[0]) == MANAGED_LABEL[1]
        found.setdefault(f"{meta.get('namespace')}/{release.get('name')}", []).append(release)
    charts = {}
    for name, revisions in sorted(found.items()):
        latest = max(revisions, key=lambda r: int(r.get("version", 0)))
        if (latest.get("info") or {}).get("status") != "uninstalled":
            chart = ((latest.get("chart") or {}).get("metadata") or {}).get("name") or "?"
            charts.setdefault(chart, []).append(name)
    facts = {"chart_releases": charts}
    for key, wanted in releases.items():
        revisions = sorted(found.get(wanted, []), key=lambda r: int(r.get("version", 0)))
        facts[f"{key}_release"] = [revision_view(r) for r in revisions]
        facts[f"{key}_values"] = digested(revisions[-1].get("config")) if revisions else None
    return facts


def revision_view(release: dict) -> dict:
    info = release.get("info") or {}
    chart = (release.get("chart") or {}).get("metadata") or {}
    return {"revision": int(release.get("version", 0)), "status": info.get("status"), "chart": chart.get("name", ""),
            "version": chart.get("version", ""), "updated": _epoch(info.get("last_deployed")),
            "description": info.get("description", ""), "managed": bool(release.get("gpuhub_managed"))}


@dataclass
class Facts:
    values: dict = field(default_factory=dict)  # parsed only: raw output is not kept

    def __getitem__(self, key):
        return self.values.get(key)

    def get(self, key, default=None):
        value = self.values.get(key)
        return default if value is None else value

    def only(self, names, who: str) -> "Facts":
        """These facts as `who` (a step) may read them: the facts it declares, no other."""
        return DeclaredFacts(self.values, frozenset(names), who)


class UndeclaredFact(KeyError):
    """A step read a fact it does not declare: declare it (steps.needs), so that it comes with
    the facts' one round trip per host, never as a command of its own."""


@dataclass
class DeclaredFacts(Facts):
    names: frozenset = frozenset()
    who: str = ""

    def __getitem__(self, key):
        if key not in self.names:
            raise UndeclaredFact(f"{self.who} reads the fact {key!r} without declaring it (steps.needs)")
        return self.values.get(key)

    def get(self, key, default=None):
        self[key]
        return super().get(key, default)


def script(probes: dict, marker: str) -> str:
    """One shell script running every probe; outputs framed by `marker` lines with exit codes.

    The `first` probes run before the rest; the `apart` ones each start at once and in parallel
    with the others, through a pipeline per probe: `{ A; } | { REST; cat; }` runs A and REST
    together, and `cat` copies A's output after REST's, so no two probes' lines mix. An apart
    probe's output is held in a shell variable until its turn (`$(...)`: in memory), so a long one
    (every pod of a big cluster) never waits on a full pipe, its own deadline (`timeout 60`)
    running meanwhile. POSIX sh only (no process substitution, no temporary file: a converged run
    writes nothing on the host). No probe reads stdin: it is a pipe here. Command substitution
    drops trailing newlines (and NUL bytes), which no parser reads."""
    def block(name, probe):
        command = f"( {probe.command} ) </dev/null 2>/dev/null"
        if probe.apart and not probe.first:
            command = (f"( out=$( {command}); rc=$?; [ -z \"$out\" ] || printf '%s\\n' \"$out\"; "
                       "exit $rc )")
        return f"echo '{marker} begin {name}'; {command}; echo \"{marker} end {name} $?\""
    first = [block(n, p) for n, p in probes.items() if p.first]
    inner = "\n".join(block(n, p) for n, p in probes.items() if not (p.first or p.apart)) or ":"
    for name, probe in reversed([(n, p) for n, p in probes.items() if p.apart and not p.first]):
        inner = f"{{ {block(name, probe)}\n}} | {{ {inner}\ncat; }}"
    return "\n".join(first + [inner])


def split(output: str, marker: str) -> dict:
    """Inverse of `script`: {name: (stdout, exit code)}."""
    found, current, lines = {}, None, []
    for line in output.splitlines():
        if line.startswith(f"{marker} begin "):
            current, lines = line.split(" ", 2)[2], []
        elif line.startswith(f"{marker} end ") and current:
            name, _, rc = line.split(" ", 2)[2].rpartition(" ")
            found[name] = ("\n".join(lines) + ("\n" if lines else ""), int(rc))
            current = None
        elif current is not None:
            lines.append(line)
    return found


def pci_gpu_count(target) -> int:
    """The NVIDIA GPUs on the target's PCI bus, driver or not: what the implicit `localhost`
    expects, so that a broken driver is reported instead of read as a CPU-only host."""
    return len(gather(target, {"pci_gpus": host_probes()["pci_gpus"]})["pci_gpus"])


def gather(target, probes: dict, as_root: bool = True) -> Facts:
    """Run `probes` on `target` in one round trip and parse each. Missing output -> parse('', 127).
    as_root=False: as the login user (reads any user may make: `init` needs no sudo rights)."""
    marker = "@@gpuhub-" + secrets.token_hex(6)
    run = target.run if as_root else target.run_as_login
    raw = split(run(script(probes, marker)).stdout, marker)
    facts = Facts()
    for name, probe in probes.items():
        out, rc = raw.get(name, ("", 127))
        if probe.expands:
            facts.values.update(probe.parse(out, rc))
        else:
            facts.values[name] = probe.parse(out, rc)
    return facts
