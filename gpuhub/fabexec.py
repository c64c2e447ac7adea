"""How `fab` turns -H into hosts, for gpuhub's fabfile (set as its tasks.executor_class).

Fabric takes -H as it comes: `-H ''` ran the tasks with no host at all, `-H ,` and
`-H gpu1:notaport` ended in tracebacks inside fabric. Here each name is checked first (one
message, exit 1), and with no -H the tasks that read or provision act on every inventory host,
in the inventory's order; `reset` always needs -H, so that it never uninstalls every host by
default.
"""
from __future__ import annotations

import re

from fabric.executor import Executor
from invoke import Exit

from . import inventory

ALL_HOSTS_TASKS = ("provision", "plan", "audit")
_HOST = re.compile(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+(?::[0-9]{1,5})?", re.ASCII)


class HostsExecutor(Executor):
    command = "fab"  # how a user asks for every host, for the refusal below

    def expand_calls(self, calls, apply_hosts=True):
        hosts = self.core[0].args.hosts
        if apply_hosts and hosts.value is not None and not hosts.value.strip(","):
            raise Exit("gpuhub: -H names no host: give inventory host names, e.g. -H gpu1,gpu2", code=1)
        if apply_hosts and hosts.value is None and calls:
            hosts.value = ",".join(self.default_hosts(calls))
        return super().expand_calls(calls, apply_hosts)

    def default_hosts(self, calls) -> list:
        name = calls[0].task.name if hasattr(calls[0], "task") else str(calls[0])
        if name not in ALL_HOSTS_TASKS:
            raise Exit(f"gpuhub: `{self.command} {name}` needs -H: name the hosts (it never acts on every "
                       "host by default)", code=1)
        try:
            inv = inventory.load(getattr(calls[0], "kwargs", {}).get("inventory"))
        except inventory.InventoryError as e:
            raise Exit(f"gpuhub: {e}", code=1) from None
        return [host.name for host in inv.ordered_hosts()]

    def normalize_hosts(self, hosts):
        for value in hosts or []:
            if isinstance(value, str):
                if not value.strip():
                    raise Exit("gpuhub: -H has an empty host name (two commas, or one at an end?)", code=1)
                if not _HOST.fullmatch(value):
                    raise Exit(f"gpuhub: -H {value[:60]!r} is not a host name (NAME, NAME:PORT or USER@NAME)",
                               code=1)
                port = value.rpartition(":")[2] if ":" in value else ""
                if port and not 1 <= int(port) <= 65535:
                    raise Exit(f"gpuhub: -H {value!r}: port {port} is not 1 to 65535", code=1)
        return super().normalize_hosts(hosts)
