"""Paths and data shared by the tests (a plain module: `conftest` names clash across folders)."""
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"


def good_inventories():
    return sorted((DATA / "inventories" / "good").glob("*.yaml")) + [ROOT / "hosts.yaml"]


def load_inventory(name="seed", **changes):
    """A good inventory from tests/data, with changes given as key__path=value."""
    from gpuhub import inventory
    data = yaml.safe_load((DATA / "inventories" / "good" / f"{name}.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return inventory.parse(data)


def on_this_machine(argv: list) -> list:
    """argv to run in this machine's own mount namespace. Inside the CI sandbox
    (tests/sandbox/run.sh: overlays, a private /run) the test-host harness still makes its
    namespaces, mounts and bridge on the real machine: it is test infrastructure, not gpuhub."""
    outer = os.environ.get("GPUHUB_SANDBOX_OUTER_MNT")
    return ["nsenter", f"--mount={outer}", "--", *argv] if outer else list(argv)


def env_file_values(text: str) -> dict:
    """A systemd EnvironmentFile's NAME=value lines as a dict. The value may be bare, 'single' or
    "double" quoted: K3s's install script writes what its shell's `export` prints (dash: single
    quotes, bash: double quotes), the tests' simulation does the same."""
    values = {}
    for line in text.splitlines():
        name, eq, value = line.strip().partition("=")
        if not eq or name.startswith("#"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values
