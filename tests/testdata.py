"""Paths and data shared by the tests (a plain module: `conftest` names clash across folders)."""
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
