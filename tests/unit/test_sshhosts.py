"""Which machine an inventory host is over SSH: the SSH config's HostName, else the inventory's
address; and what an unreachable host's message says. No connection is made here except to a
loopback port nothing listens on."""
import shutil
import socket

import fabric
import pytest

from gpuhub import sshhosts
from test_cli import run
from testdata import DATA


@pytest.fixture
def ssh_config(tmp_path):
    path = tmp_path / "ssh_config"
    path.write_text("Host named\n  HostName 10.9.9.9\n  User admin\n\nHost bare\n  User ops\n  Port 2222\n")
    return str(path)


def connection(name, ssh_config):
    return fabric.Connection(name, config=fabric.Config(runtime_ssh_path=ssh_config))


def test_the_inventory_address_is_used_when_the_ssh_config_gives_no_hostname(ssh_config):
    bare = connection("bare", ssh_config)
    contact = sshhosts.for_connection(bare, "192.0.2.7")
    assert (bare.host, bare.user, bare.port) == ("192.0.2.7", "ops", 2222)  # the name's Host block still counts
    assert contact.tried() == f"tried ops@192.0.2.7:2222 (the inventory's address for bare: no HostName for it in {ssh_config})"
    audit = sshhosts.lookup("bare", "192.0.2.7", ssh_config)
    assert (audit.hostname, audit.user, audit.port) == ("192.0.2.7", "ops", 2222)
    assert sshhosts.ssh_hostname_args(audit) == "-o HostName=192.0.2.7"


def test_the_ssh_configs_hostname_wins(ssh_config):
    named = connection("named", ssh_config)
    contact = sshhosts.for_connection(named, "192.0.2.7")
    assert named.host == "10.9.9.9" and "HostName of named" in contact.tried()
    assert sshhosts.lookup("named", "192.0.2.7", ssh_config).hostname == "10.9.9.9"
    plain = connection("plain", ssh_config)
    assert sshhosts.for_connection(plain, None).hostname == "plain"
    assert sshhosts.ssh_hostname_args(sshhosts.lookup("plain", None, ssh_config)) == ""


def test_an_unreachable_host_says_what_was_tried_and_how_to_fix_it(tmp_path):
    """fab plan to an inventory host whose address is a loopback port nobody listens on."""
    port, config, inventory = closed_port_site(tmp_path)
    result = run("fab", "-S", str(config), "-H", "gpu1", "plan", "--inventory", str(inventory))
    assert result.returncode == 1
    assert f"gpu1: unreachable over SSH (NoValidConnectionsError: [Errno None] Unable to connect to port {port} " \
           "on 127.0.0.1)" in result.stderr
    assert f"tried nobody@127.0.0.1:{port} (the inventory's address for gpu1: no HostName for it in {config})" \
        in result.stderr
    assert f"Fix: check that 127.0.0.1 is up and its sshd answers on port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def closed_port_site(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host gpu1\n  User nobody\n  Port {port}\n  BatchMode yes\n")
    text = (DATA / "inventories" / "good" / "seed.yaml").read_text().replace("workstation:", "gpu1:")
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(text.replace("    local: true\n", "    local: false\n    address: 127.0.0.1\n"))
    return port, config, inventory


def test_an_unreachable_host_in_the_audit_is_one_line(tmp_path):
    """The audit's ssh:// host is reached by the `ssh` command at the inventory's address."""
    if not shutil.which("ssh"):
        pytest.skip("no ssh client (apt-get install openssh-client)")
    port, config, inventory = closed_port_site(tmp_path)
    result = run("inv", "audit", "--hosts", "ssh://gpu1", "--ssh-config", str(config), "--inventory", str(inventory))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines == [
        f"FAIL gpu1 ssh: unreachable over SSH (ssh: connect to host 127.0.0.1 port {port}: Connection refused); "
        f"fix: check that 127.0.0.1 is up and its sshd answers on port {port} (`ssh -p {port} nobody@127.0.0.1 true`); "
        f"or give gpu1 a `Host gpu1` block (HostName, User, Port) in {config}, or an `address` in the inventory",
        "gpu1             0 ok, 1 failed: ssh"]
