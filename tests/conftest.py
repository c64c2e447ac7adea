"""Shared fixtures. Tests never audit or change the machine they run on: the test guard
(tests/guard/gpuhub_test_guard.py) turns the local machine into a recording target for this
process and for every Python process the tests start, and fails any test during which gpuhub
tried to run a command here that is not a read-only probe."""
import os
import tempfile
from pathlib import Path

import pytest

from testdata import DATA

GUARD_DIR = Path(__file__).resolve().parent / "guard"
DEFAULT_SCENARIO = DATA / "scenarios" / "no-systemd.yaml"


AUDIT_DIR = Path(__file__).resolve().parent / "audit"


def host_audit_only(config) -> bool:
    """`pytest tests/audit ...`: the product's host audit, run by a user against real hosts (pytest
    loads this conftest for it, being above tests/audit). The suite's guard and empty secrets
    would fake its answers: they stay out. (`inv audit` passes --confcutdir instead.)"""
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(p == AUDIT_DIR or AUDIT_DIR in p.parents for p in paths)


def pytest_configure(config):
    config.gpuhub_host_audit = host_audit_only(config)
    if config.gpuhub_host_audit:
        return
    os.environ["GPUHUB_TEST_GUARD"] = tempfile.mkdtemp(prefix="gpuhub-test-guard-")
    # No secrets unless a test gives them: an empty secrets file (0600), so that a developer's
    # own secrets.yaml beside hosts.yaml never leaks in (a GPUHUB_SECRETS naming nothing is an error).
    os.environ["GPUHUB_SECRETS"] = NO_SECRETS = os.path.join(os.environ["GPUHUB_TEST_GUARD"], "no-secrets.yaml")
    fd = os.open(NO_SECRETS, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.environ.setdefault("GPUHUB_TEST_SCENARIO", str(DEFAULT_SCENARIO))
    paths = [str(GUARD_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    import gpuhub_test_guard
    gpuhub_test_guard.install()


@pytest.fixture(autouse=True)
def local_machine_guard(request):
    """Fails the test when gpuhub tried to change or audit this machine, even if it caught the error."""
    import gpuhub_test_guard as guard
    if request.config.gpuhub_host_audit:  # not a test of gpuhub: nothing of the suite's to guard
        yield None
        return
    guard.clear()
    yield guard
    violations = guard.read("violations")
    guard.clear()
    if violations and not request.node.get_closest_marker("guard_violation_expected"):
        pytest.fail("gpuhub tried to change or audit the machine the tests run on:\n"
                    + "\n".join(f"  {v['what']}: {v['command'][:200]}" for v in violations), pytrace=False)


@pytest.fixture
def scenario(monkeypatch):
    """Choose the recorded machine the local recording target answers for: scenario('workstation')."""
    def use(name):
        path = DATA / "scenarios" / f"{name}.yaml"
        assert path.is_file(), path
        monkeypatch.setenv("GPUHUB_TEST_SCENARIO", str(path))
        return path
    return use


@pytest.fixture
def secrets(monkeypatch):
    """Secrets from the environment only, so a developer's own secrets.yaml never leaks in."""
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "test-client-id")
    monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_SECRET", "test-client-secret")
    from gpuhub import inventory
    return inventory.load_secrets()
