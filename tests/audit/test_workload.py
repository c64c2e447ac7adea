"""Workload checks: they create and delete pods, so they run only with --workload (the default
audit stays read-only and safe for cron)."""
import pytest

from gpuhub import audit


@pytest.fixture
def server_target(audit_session, audited):
    if not audit_session.config.getoption("workload"):
        pytest.skip("read-only audit: pass --workload to run pods")
    server = audited.inv.server
    return audit_session.target_for("local" if server.name == audited.name and "local" in audit_session.specs
                                    else server.name, server.name)


@pytest.mark.parametrize("check", audit.WORKLOAD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_workload(audited, server_target, verdict, check):
    verdict(check(audited.inv, audited.host, server_target))
