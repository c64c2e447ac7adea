"""Workload checks: they create and delete pods, so they run only with --workload (the default
audit stays read-only and safe for cron)."""
import pytest

from gpuhub import audit
from gpuhub.target import Target


@pytest.fixture
def server_target(audit_session, audited):
    if not audit_session.config.getoption("workload"):
        pytest.skip("read-only audit: pass --workload to run pods")
    server = audited.inv.server.name
    spec = audit_session.specs.get(server, f"ssh://{server}")
    return Target.for_testinfra(server, audit_session.testinfra_host(spec))


@pytest.mark.parametrize("check", audit.WORKLOAD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_workload(audit_session, audited, server_target, check):
    finding = check(audited.inv, audited.host, server_target)
    if finding is None:
        pytest.skip(f"not applicable to {audited.name}")
    audit_session.record(audited.name, finding)
    assert finding.ok, f"{audited.name}: {finding}"
