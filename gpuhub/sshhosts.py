"""Which machine an inventory host is over SSH, and what to say when it does not answer.

The SSH config's `HostName` for the host's name wins; without one, the inventory's `address`
is the host name to connect to (as Ansible's `ansible_host`); without either, the name itself.
User, port, keys and jumps still come from the name's own `Host` block, as `ssh` does with a
`HostName`. The same rule serves fabric's Connections (fab) and the audit's `ssh` command.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

SYSTEM_CONFIG, USER_CONFIG = "/etc/ssh/ssh_config", "~/.ssh/config"


@dataclass
class Contact:
    name: str           # the inventory name (what -H or ssh://NAME gave)
    hostname: str       # what is connected to
    user: str
    port: int
    source: str         # where `hostname` came from, in words
    config: str         # which SSH config file(s) were read

    def tried(self) -> str:
        return f"tried {self.user}@{self.hostname}:{self.port} ({self.source})"

    def problem(self, error: str) -> str:
        return f"unreachable over SSH ({error.strip() or 'no answer'})"

    def fix(self) -> str:
        where = (f"{USER_CONFIG} (or a file given with `fab -S FILE` / `inv audit --ssh-config FILE`)"
                 if self.config == USER_CONFIG else self.config)
        return (f"check that {self.hostname} is up and its sshd answers on port {self.port} "
                f"(`ssh -p {self.port} {self.user}@{self.hostname} true`); or give {self.name} a `Host {self.name}` "
                f"block (HostName, User, Port) in {where}, or an `address` in the inventory")

    def unreachable(self, error: str) -> str:
        """One message: what failed, what was tried, how to fix it."""
        return f"{self.problem(error)}; {self.tried()}. Fix: {self.fix()}"


def _source(name: str, hostname: str, address, config: str) -> str:
    if hostname == address and address != name:
        return f"the inventory's address for {name}: no HostName for it in {config}"
    if hostname != name:
        return f"HostName of {name} in {config}"
    return f"the name itself: no HostName in {config} and no address in the inventory"


def for_connection(connection, address) -> Contact:
    """Point a fabric Connection at the inventory's `address` when its SSH config gives no
    HostName, and say what it will try. fabric 3.2.3 Connection.__init__ sets `self.host` from
    `ssh_config["hostname"]`, which paramiko 5.1 SSHConfig.lookup fills with the looked-up name
    itself when no HostName matched: so `host == original_host` means none was given."""
    name = connection.original_host
    if address and connection.host == name:
        connection.host = address  # read by Connection.open() as paramiko's hostname
    runtime = getattr(connection.config, "_runtime_ssh_path", None)
    config = runtime or USER_CONFIG
    return Contact(name, connection.host, connection.user, connection.port,
                   _source(name, connection.host, address, config), config)


def lookup(name: str, address, ssh_config_path=None, user=None, port=None) -> Contact:
    """What `ssh` will be asked to reach for inventory host `name`, read with paramiko's parser
    of the same files fabric reads (the given file, else ~/.ssh/config then /etc/ssh/ssh_config)."""
    import getpass

    import paramiko
    config = paramiko.SSHConfig()
    paths = [ssh_config_path] if ssh_config_path else [USER_CONFIG, SYSTEM_CONFIG]
    for path in paths:
        path = os.path.expanduser(path)
        if os.path.isfile(path):
            with open(path) as f:
                config.parse(f)
    found = config.lookup(name)
    hostname = found["hostname"]
    if address and hostname == name:
        hostname = address
    where = ssh_config_path or USER_CONFIG
    return Contact(name, hostname, user or found.get("user") or getpass.getuser(),
                   int(port or found.get("port") or 22), _source(name, hostname, address, where), where)


def ssh_hostname_args(contact: Contact) -> str:
    """`ssh` options that connect to `contact.hostname` while keeping the name's Host block:
    a command-line -o wins over the config files (ssh_config(5): the first value obtained is
    used, and the command line comes first)."""
    if contact.hostname == contact.name:
        return ""
    return f"-o HostName={shlex.quote(contact.hostname)}"
