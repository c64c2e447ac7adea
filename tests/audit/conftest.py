"""The host audit, in plain pytest-testinfra:

    pytest tests/audit --hosts=ssh://gpu1,ssh://gpu2 --ssh-config=~/.ssh/config [--inventory FILE]
    pytest tests/audit --hosts=local://            # this machine, only when asked
    pytest tests/audit                              # every inventory host over SSH

`ssh://NAME` is inventory host NAME, reached at its SSH config's HostName, else at the
inventory's `address` (gpuhub/sshhosts.py). `local://` is this machine, through the same local
target `inv` tasks use (invoke's local runner). Facts are gathered once per host, in one round
trip, by the same probes the provisioner uses; each check is a function in gpuhub/audit.py.
Options: --inventory, --workload (creates and deletes pods), --ca-file (a private CA),
--hub-address (reach the hub at this address, with its hostname for TLS), --audit-json FILE
(`-`: stdout). `inv audit` / `fab audit` add --audit-report=lines (with -p no:terminal): one
line per failed check and a summary per host instead of pytest's report (--audit-evidence: and
every check with its evidence).
"""
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import testinfra

from gpuhub import auditreport, sshhosts
from gpuhub import facts as f
from gpuhub import inventory
from gpuhub.audit import Finding
from gpuhub.plan import Run
from gpuhub.target import Target


def pytest_addoption(parser):
    group = parser.getgroup("gpuhub audit")
    group.addoption("--inventory", default=None, help="inventory file (default: $GPUHUB_INVENTORY, else ./hosts.yaml)")
    group.addoption("--workload", action="store_true", help="also run workload checks (create and delete pods)")
    group.addoption("--ca-file", default=None, help="CA bundle that signs the hub's certificate (default: system)")
    group.addoption("--hub-address", default=None, help="connect to the hub at this address (TLS still checks the name)")
    group.addoption("--audit-json", default=None, help="write every finding to this JSON file (-: stdout)")
    group.addoption("--audit-report", default="pytest", choices=("pytest", "lines"),
                    help="lines: one line per failed check and a summary per host (run with -p no:terminal)")
    group.addoption("--audit-evidence", action="store_true", help="with --audit-report=lines: every check, "
                    "with its evidence")


class HostUnreachable(Exception):
    """Facts could not be gathered: every check of that host fails with this one message."""


@dataclass
class Audited:
    name: str
    host: object          # gpuhub.inventory.Host
    facts: object
    server_facts: object


class AuditSession:
    def __init__(self, config):
        self.config = config
        try:
            self.inv = inventory.load(config.getoption("inventory"))
            self.secrets = inventory.load_secrets(config.getoption("inventory"))
        except inventory.InventoryError as e:
            raise pytest.UsageError(str(e)) from None
        specs = [s for s in (config.getoption("hosts") or "").split(",") if s] or \
                [f"ssh://{name}" for name in self.inv.hosts]
        self.specs = {}
        for spec in specs:
            url = urlsplit(spec)
            if url.scheme == "local":
                self.specs["local"] = spec
            else:
                self.specs[url.hostname or spec] = spec
        unknown = [k for k in self.specs if k != "local" and k not in self.inv.hosts]
        if unknown:
            raise pytest.UsageError(f"{', '.join(unknown)} is not in the inventory ({self.inv.source}); "
                                    f"known hosts: {', '.join(self.inv.hosts)}")
        self.findings, self.notes, self._facts, self._unreachable = {}, [], {}, {}

    def name_of(self, key):
        return self.local_inventory().local_host.name if key == "local" else key

    def target_for(self, key, name):
        """The host `key` as a gpuhub Target: this machine through invoke's local runner, as every
        `inv` task reaches it; an SSH host through testinfra, at sshhosts' host name."""
        if key == "local":
            from invoke import Context
            return Target.for_local(Context())
        spec = self.specs.get(key, f"ssh://{name}")
        url = urlsplit(spec)
        options = self.config.getoption
        contact = sshhosts.lookup(name, self.inv.hosts[name].address, options("ssh_config"), url.username, url.port)
        extra = options("ssh_extra_args") or ""
        if url.scheme in ("ssh", "safe-ssh"):  # testinfra 10.2 SshBackend: ssh_extra_args go first on ssh's line
            extra = " ".join(x for x in (extra, sshhosts.ssh_hostname_args(contact)) if x)
        host = testinfra.get_host(spec, ssh_config=options("ssh_config"), ssh_identity_file=options("ssh_identity_file"),
                                  ssh_extra_args=extra or None)
        target = Target.for_testinfra(name, host)
        target.contact = contact
        return target

    def local_inventory(self):
        if not hasattr(self, "_local"):
            self._local = self.inv.local_view(f.pci_gpu_count(self.target_for("local", "localhost")))
        return self._local

    def inventory_for(self, key):
        return self.local_inventory() if key == "local" else self.inv

    def gather(self, key, name, inv):
        if key in self._unreachable:
            raise HostUnreachable(self._unreachable[key])
        if key not in self._facts:
            target = self.target_for(key, name)
            try:
                self._facts[key] = f.gather(target, Run(inv, {}, self.secrets).probes_for(inv.hosts[name]))
            except Exception as e:  # SSH refused, DNS, auth: one finding for the host, not a traceback per check
                # testinfra 10.2 SshBackend.run_ssh raises RuntimeError(CommandResult) when ssh exits 255.
                said = getattr(e.args[0], "stderr", None) if e.args else None
                error = (said or "").strip().splitlines()[-1:] or [f"{type(e).__name__}: {e}"]
                contact = target.contact
                finding = (Finding("ssh", False, contact.problem(error[0]), contact.tried(), contact.fix()) if contact
                           else Finding("ssh", False, f"facts could not be gathered: {error[0]}"))
                self.record(name, finding)
                self._unreachable[key] = f"{name}: {finding}"
                raise HostUnreachable(self._unreachable[key]) from None
        return self._facts[key]

    def gathered(self, key):
        """(inventory, Audited); facts gathered once per host (and the server's, for an agent)."""
        inv = self.inventory_for(key)
        host = inv.local_host if key == "local" else inv.hosts[key]
        server = inv.server
        server_key = key if host.name == server.name else server.name
        facts = self.gather(key, host.name, inv)
        if server_key not in self.specs and not self.notes:
            self.notes.append(f"agent(s) only: the server {server.name}'s facts are read too (changing nothing), "
                              "not audited")
        try:
            server_facts = self.gather(server_key, server.name, inv)
        except HostUnreachable as e:
            if server_key != key:
                self.record(host.name, Finding("server", False, f"its server {server.name} is unreachable, so "
                                               f"{host.name}'s checks could not run", str(e)))
            raise
        return inv, Audited(host.name, host, facts, server_facts)

    def record(self, host, finding):
        self.findings.setdefault(host, {})[finding.check] = finding


def pytest_configure(config):
    # Here, not at collection: a bad inventory or host name is one clear usage error.
    config._gpuhub_audit = AuditSession(config)


def session(config) -> AuditSession:
    return config._gpuhub_audit


def pytest_generate_tests(metafunc):
    if "audited_key" in metafunc.fixturenames:
        keys = list(session(metafunc.config).specs)
        metafunc.parametrize("audited_key", keys, ids=[session(metafunc.config).name_of(k) for k in keys])


@pytest.fixture
def audit_session(request):
    return session(request.config)


@pytest.fixture
def audited(audit_session, audited_key):
    inv, target = audit_session.gathered(audited_key)
    target.inv = inv
    return target


@pytest.fixture
def verdict(request, audit_session, audited):
    """Record a check's Finding and pass or fail the test with it (None: not applicable)."""
    def judge(finding):
        if finding is None:
            pytest.skip(f"not applicable to {audited.name}")
        request.node.gpuhub_judged = True
        audit_session.record(audited.name, finding)
        assert finding.ok, f"{audited.name}: {finding}"
    return judge


def _check_name(item) -> str:
    check = item.callspec.params.get("check")
    return check.__name__.removeprefix("check_") if check else item.originalname.removeprefix("test_")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A check that broke (rather than judged) is a finding too, so that the short report
    never hides it. pluggy's new-style wrapper: the yield returns the report (pytest >= 8)."""
    report = yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    if report.failed and "audited_key" in params and not getattr(item, "gpuhub_judged", False):
        error = call.excinfo.value if call.excinfo else None
        if not isinstance(error, HostUnreachable):  # recorded once, where it was found
            state = session(item.config)
            state.record(state.name_of(params["audited_key"]), Finding(
                _check_name(item), False, f"the check could not run: {type(error).__name__}: {error}",
                "\n".join(report.longreprtext.splitlines()[-3:]),
                "a gpuhub bug: run `pytest tests/audit --hosts=...` for pytest's full report"))
    return report


def _report_lines(config) -> bool:
    return config.getoption("audit_report") == "lines"


def pytest_collectreport(report):
    if report.failed:  # with -p no:terminal nothing else would show it
        sys.stderr.write(f"gpuhub audit: could not load {report.nodeid}:\n{report.longreprtext}\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config._gpuhub_audit
    if not state or not state.findings:
        return
    terminalreporter.section("gpuhub audit")
    for note in state.notes:
        terminalreporter.write_line(f"note: {note}")
    for host, found in state.findings.items():
        terminalreporter.write_line(auditreport.summary_line(host, found))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state = getattr(config, "_gpuhub_audit", None)
    if state is None:
        return
    path = config.getoption("audit_json")
    if path and path != "-":
        with open(path, "w") as out:
            out.write(auditreport.dumps(state.findings) + "\n")
    if path == "-":
        sys.stdout.write(auditreport.dumps(state.findings) + "\n")
    if _report_lines(config):
        # JSON on stdout: the lines go to stderr with the logs.
        out = sys.stderr if path == "-" else sys.stdout
        lines = auditreport.report_lines(state.findings, config.getoption("audit_evidence"), state.notes)
        out.write("\n".join(lines) + "\n")
        out.flush()
