"""Paths and data shared by the tests (a plain module: `conftest` names clash across folders)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"


def good_inventories():
    return sorted((DATA / "inventories" / "good").glob("*.yaml")) + [ROOT / "hosts.yaml"]
