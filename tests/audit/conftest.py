"""The host audit, in plain pytest-testinfra:

    pytest tests/audit --hosts=ssh://gpu1,ssh://gpu2 --ssh-config=~/.ssh/config [--inventory FILE]
    pytest tests/audit --hosts=local://            # this machine, only when asked
    pytest tests/audit                              # every inventory host over SSH

`ssh://NAME` is inventory host NAME. Facts are gathered once per host, in one round trip, by the
same probes the provisioner uses; each check is a function in gpuhub/audit.py.
Options: --inventory, --workload (creates and deletes pods), --ca-file (a private CA),
--hub-address (reach the hub at this address, with its hostname for TLS), --audit-json FILE.
"""
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import testinfra

from gpuhub import facts as f
from gpuhub import inventory
from gpuhub.plan import Run
from gpuhub.target import Target


def pytest_addoption(parser):
    group = parser.getgroup("gpuhub audit")
    group.addoption("--inventory", default=None, help="inventory file (default: $GPUHUB_INVENTORY, else ./hosts.yaml)")
    group.addoption("--workload", action="store_true", help="also run workload checks (create and delete pods)")
    group.addoption("--ca-file", default=None, help="CA bundle that signs the hub's certificate (default: system)")
    group.addoption("--hub-address", default=None, help="connect to the hub at this address (TLS still checks the name)")
    group.addoption("--audit-json", default=None, help="write every finding to this JSON file")


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
        self.findings, self._facts = {}, {}

    def name_of(self, key):
        return self.local_inventory().local_host.name if key == "local" else key

    def testinfra_host(self, spec):
        return testinfra.get_host(spec, ssh_config=self.config.getoption("ssh_config"),
                                  ssh_identity_file=self.config.getoption("ssh_identity_file"))

    def local_inventory(self):
        if not hasattr(self, "_local"):
            target = Target.for_testinfra("local", self.testinfra_host("local://"))
            self._local = self.inv.local_view(f.pci_gpu_count(target))
        return self._local

    def inventory_for(self, key):
        return self.local_inventory() if key == "local" else self.inv

    def gathered(self, key):
        """(inventory, Host, facts, server facts); facts gathered once per host."""
        inv = self.inventory_for(key)
        host = inv.local_host if key == "local" else inv.hosts[key]
        server = inv.server
        server_key = key if host.name == server.name else server.name
        for k, name in ((key, host.name), (server_key, server.name)):
            if k not in self._facts:
                spec = self.specs.get(k, f"ssh://{name}")
                run = Run(inv, {}, self.secrets)
                self._facts[k] = f.gather(Target.for_testinfra(name, self.testinfra_host(spec)),
                                          run.probes_for(inv.hosts[name]))
        return inv, Audited(host.name, host, self._facts[key], self._facts[server_key])

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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config._gpuhub_audit
    if not state or not state.findings:
        return
    terminalreporter.section("gpuhub audit")
    for host, found in state.findings.items():
        failed = [c for c, finding in found.items() if not finding.ok]
        terminalreporter.write_line(f"{host:<16} {len(found) - len(failed)} ok, {len(failed)} failed"
                                    + (f": {', '.join(failed)}" if failed else ""))
    path = config.getoption("audit_json")
    if path:
        with open(path, "w") as out:
            json.dump({"hosts": {host: {c: {"ok": x.ok, "message": x.message, "evidence": x.evidence, "fix": x.fix}
                                        for c, x in found.items()} for host, found in state.findings.items()}},
                      out, indent=2)
