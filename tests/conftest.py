"""Shared test helpers. Tests never audit or change the machine they run on."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def secrets(monkeypatch):
    """Secrets from the environment only, so a developer's own secrets.yaml never leaks in."""
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_SECRET", "test-client-secret")
    monkeypatch.setenv("GPUHUB_SECRETS", str(DATA / "no-such-secrets.yaml"))
    from gpuhub import inventory
    return inventory.load_secrets()


def good_inventories():
    return sorted((DATA / "inventories" / "good").glob("*.yaml")) + [ROOT / "hosts.yaml"]
