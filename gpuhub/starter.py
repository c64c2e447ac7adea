"""`init`: the text of a commented starter inventory for this machine, from read-only facts.

What the machine can tell is filled in: its name (`uname -n`, made into an inventory host name)
and the NVIDIA GPUs on its PCI bus with their models (sysfs and the PCI ID database, through
gpuhub.facts). What only its owner knows is left as `<...>` placeholders, which the validator
refuses (gpuhub/schema.py): the file cannot drive a run until each one is replaced. A file that
exists is never overwritten.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from . import facts, inventory, names

# What only the site knows. Each is a placeholder the validator refuses, under a key path the
# error names, so a starter left unfilled fails on the first `plan` with a list of what to do.
PLACEHOLDERS = {
    "hub.hostname": "<hub.your-lab.example.org>",
    "hub.letsencrypt_email": "<you@your-lab.example.org>",
    "hub.github.organizations": "<your-github-org>",
    "hub.admin_users": "<your-github-login>",
}
# The host's name when the machine's own makes none (a hosts.NAME must be a DNS label).
HOST_PLACEHOLDER = "<this-machine>"
COMMENT_COLUMN = 32


class InitError(ValueError):
    """`init` cannot write its file: one line saying why (cli.errors_as_exit prints it)."""


@dataclass(frozen=True)
class Machine:
    hostname: Optional[str]  # what `uname -n` said (None: nothing)
    gpus: list               # [{'slot', 'device', 'model'}], in bus order
    pci_ids: Optional[str]   # the PCI ID database the models came from, with its version

    @property
    def name(self) -> Optional[str]:
        return host_name(self.hostname)


def host_name(hostname: Optional[str]) -> Optional[str]:
    """`uname -n` as an inventory host name (a DNS label, names.dns_label): its first label,
    lowercased, any other character made '-', cut to 63. None when nothing valid is left, or
    when it is `localhost`, which names no machine that other hosts could reach."""
    if not hostname:
        return None
    label = hostname.strip().split(".")[0].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", label, flags=re.ASCII).strip("-")[:63].rstrip("-")
    if label in ("", "localhost") or names.dns_label(label):
        return None
    return label


# --- facts (read-only, as the login user) ----------------------------------------------------

def machine_probes() -> dict:
    return {"hostname": facts.Probe("uname -n", facts.parse_text),
            "pci_gpus": facts.host_probes()["pci_gpus"]}


def read_machine(target) -> Machine:
    """Two reads: the name and the PCI bus, then the models of the NVIDIA devices found there
    (the second names only ids the first returned). Neither needs root."""
    found = facts.gather(target, machine_probes(), as_root=False)
    gpus = found.get("pci_gpus", [])
    pci_names = {"file": None, "version": None, "names": {}}
    if gpus:
        probe = facts.pci_names_probe([g["device"] for g in gpus])
        pci_names = facts.gather(target, {"pci_names": probe}, as_root=False)["pci_names"]
    return machine(found["hostname"], gpus, pci_names)


def machine(hostname: Optional[str], pci_gpus: list, pci_names: dict) -> Machine:
    """The facts (parse_text, parse_pci_gpus, parse_pci_names) as one Machine. A device the
    database does not name (no pci.ids here, or one older than the GPU) is 'NVIDIA device 0x....'."""
    known = pci_names.get("names") or {}
    gpus = [{"slot": g["slot"], "device": g["device"],
             "model": known.get(g["device"]) or f"NVIDIA device {facts.one_line(g['device'])[:10]}"}
            for g in pci_gpus]
    source = None
    if pci_names.get("file"):
        source = pci_names["file"] + (f" (version {pci_names['version']})" if pci_names.get("version") else "")
    return Machine(hostname, gpus, source)


# --- the text ------------------------------------------------------------------------------

def _scalar(value) -> str:
    """A value as PyYAML writes it, quoted wherever YAML would read it as something else (a
    host named `no` or `1234`). The file is written line by line only because its comments
    are the point of it and a YAML dump keeps none; tests read it back as data."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).removesuffix("\n...\n").strip()


def _entry(depth: int, key: str, value=None, comment: str = "") -> str:
    line = "  " * depth + _scalar(key) + ":" + ("" if value is None else " " + _scalar(value))
    if not comment:
        return line
    return f"{line:<{COMMENT_COLUMN - 2}}  # {comment}" if len(line) < COMMENT_COLUMN - 2 else f"{line}  # {comment}"


def _comments(depth: int, *lines: str) -> list:
    return ["  " * depth + "# " + line if line else "  " * depth + "#" for line in lines]


def text(m: Machine) -> str:
    """The starter inventory for `m`: valid but for the placeholders (PLACEHOLDERS, and the host
    name when the machine gives none)."""
    said = facts.one_line(m.hostname or "")[:253]
    name = m.name or HOST_PLACEHOLDER
    out = _comments(0, f"gpuhub inventory for this machine ({said or 'no name'}), written by `gpuhub init`.",
                    "Fill in every <...> below: gpuhub refuses this file while one is left, naming each.",
                    "Every key not written here takes gpuhub's default (gpuhub/inventory.py); an unknown or",
                    "misspelled key is an error that names it. Add workstations under hosts: (role: agent).",
                    "No secrets here: the GitHub OAuth app's id and secret come from GPUHUB_GITHUB_CLIENT_ID /",
                    "GPUHUB_GITHUB_CLIENT_SECRET, or from secrets.yaml beside this file (mode 0600).")
    out += ["", _entry(0, "cluster"),
            _entry(1, "k3s_version", inventory.K3S_VERSION, "pinned; bump deliberately (an upgrade restarts K3s)"),
            "", _entry(0, "gpu")]
    out += _comments(1, "runtimeclass (default): GPU pods ask for runtimeClassName: nvidia; other pods never see GPUs.")
    out += [_entry(1, "runtime", "runtimeclass"),
            _entry(1, "plugin_chart_version", inventory.DEVICE_PLUGIN_CHART,
                   "NVIDIA device plugin, with GPU feature discovery inside"),
            _entry(1, "replicas", 8, "time-slicing: notebooks that share one GPU"),
            "", _entry(0, "hub"),
            _entry(1, "chart_version", inventory.HUB_CHART, "Zero to JupyterHub"),
            _entry(1, "hostname", PLACEHOLDERS["hub.hostname"],
                   "the name users type: its DNS points here; ports 80, 443 reach it"),
            _entry(1, "letsencrypt_email", PLACEHOLDERS["hub.letsencrypt_email"],
                   "Let's Encrypt writes here before a certificate expires"),
            _entry(1, "github"),
            _entry(2, "organizations", [PLACEHOLDERS["hub.github.organizations"]],
                   "members may log in; \"my-lab:gpu-users\" for one team"),
            _entry(1, "admin_users", [PLACEHOLDERS["hub.admin_users"]], "GitHub logins that administer the hub"),
            "", _entry(0, "hosts")]
    if m.name:
        out.append(_entry(1, name, comment=f"this machine (uname -n: {said})"))
    else:
        out += _comments(1, f"uname -n said {said!r}, which is no name other hosts could reach this machine by:",
                         "name it (a DNS label: a-z, 0-9, '-'), as in your SSH config")
        out.append(_entry(1, name, comment="this machine"))
    out += [_entry(2, "role", "server", "the one server; other workstations join as agents"),
            _entry(2, "local", True, "the machine `gpuhub` (or `inv`) acts on when given no -H"),
            "    # address: 192.0.2.10       # optional: what agents use to reach the server"]
    out += _gpu_comments(m)
    out.append(_entry(2, "gpus", len(m.gpus)))
    out += _comments(2, "timeslice: each GPU is shared by gpu.replicas notebooks (memory is not isolated);",
                     "none: whole GPUs, one notebook each (this offers the whole-GPU profile).")
    out.append(_entry(2, "sharing", "timeslice"))
    return "\n".join(out) + "\n"


def _gpu_comments(m: Machine) -> list:
    if not m.gpus:
        return _comments(2, "No NVIDIA GPU was found on this machine's PCI bus (sysfs): CPU notebooks only.")
    source = f"models from {facts.one_line(m.pci_ids)}" if m.pci_ids else \
        "no PCI ID database here to name them (on Debian: apt install pci.ids)"
    lines = ["The NVIDIA GPUs on this machine's PCI bus (sysfs, no driver needed);", f"{source}:"]
    for g in m.gpus:
        device = facts.one_line(g["device"])[:10].removeprefix("0x")
        lines.append(f"  {facts.one_line(g['slot'])[:20]}  {facts.one_line(g['model'])}  (10de:{device})")
    return _comments(2, *lines)


def placeholder_fields(m: Machine) -> list:
    """The key paths a user must fill in before the starter loads, in file order."""
    return list(PLACEHOLDERS) + ([] if m.name else [f"hosts.{HOST_PLACEHOLDER}"])


# --- the file ------------------------------------------------------------------------------

def out_path(out) -> Path:
    """--out, checked before the machine is read: given, and no file (or link, or folder) there."""
    if out is None or not str(out).strip():
        raise InitError("--out is given but empty: name the inventory file to write, e.g. --out hosts.yaml")
    path = Path(out)
    if os.path.lexists(path):
        raise _exists(path)
    return path


def _exists(path: Path) -> InitError:
    what = "a folder" if path.is_dir() else "a file"
    return InitError(f"{path} exists ({what}): init never overwrites anything; move it away, "
                     "or write the starter elsewhere with --out FILE")


def write_new(path: Path, content: str) -> None:
    """Create `path` holding `content`, never replacing anything: O_EXCL makes the check and the
    creation one step, so a file or link made there meanwhile fails it instead of being
    overwritten (O_EXCL does not follow a link). No secrets in it: mode 0644 less the umask."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise _exists(path) from None
    except FileNotFoundError:
        raise InitError(f"cannot write {path}: the folder {path.parent} does not exist") from None
    except OSError as e:
        raise InitError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        os.unlink(path)  # made by this call a moment ago: half a starter helps nobody
        raise InitError(f"cannot write {path}: {e.strerror}") from None
