"""Every check of gpuhub/audit.py on every audited host. A failure prints what is wrong, the
evidence, and the fix. Read-only unless --workload."""
import pytest

from gpuhub import audit, https


@pytest.mark.parametrize("check", audit.HOST_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_host(audited, verdict, check):
    verdict(check(audited.inv, audited.host, audited.facts, audited.server_facts))


def test_drift(audit_session, audited, verdict):
    verdict(audit.check_drift(audited.inv, audited.host, audited.facts, audited.server_facts, audit_session.secrets))


def hub_target(audit_session, audited):
    if audited.host.role != "server":
        pytest.skip(f"not applicable to {audited.name}: the hub is checked on the server")
    if not audited.facts["hub_release"]:
        # hub_ready already says so, with the fix; a hub that is not there answers nothing.
        pytest.skip(f"not applicable to {audited.name}: JupyterHub is not installed (see hub_ready)")
    return dict(address=audit_session.config.getoption("hub_address"),
                cafile=audit_session.config.getoption("ca_file"))


def test_hub_https(audit_session, audited, verdict):
    where = hub_target(audit_session, audited)
    verdict(https.check_certificate(audited.inv.hub["hostname"], mode=audited.inv.hub["https"], **where))


def test_hub_login(audit_session, audited, verdict):
    where = hub_target(audit_session, audited)
    client_id = audit_session.secrets.get("github_client_id")
    if not client_id:
        pytest.skip("GPUHUB_GITHUB_CLIENT_ID is unset: cannot tell which OAuth app the login should use")
    verdict(https.check_login(audited.inv.hub["hostname"], client_id, **where))
