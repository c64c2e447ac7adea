"""Shared fixtures. Tests never audit or change the machine they run on."""
import pytest

from testdata import DATA


@pytest.fixture
def secrets(monkeypatch):
    """Secrets from the environment only, so a developer's own secrets.yaml never leaks in."""
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_SECRET", "test-client-secret")
    monkeypatch.setenv("GPUHUB_SECRETS", str(DATA / "no-such-secrets.yaml"))
    from gpuhub import inventory
    return inventory.load_secrets()
