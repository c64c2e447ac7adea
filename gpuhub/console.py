"""`gpuhub`, the installed command: fabric's own Program (`Fab`, what `fab` is: fabric 3.2.3
fabric/main.py) over the same tasks as a checkout's `inv` and `fab`.

    gpuhub TASK              this machine, as `inv TASK` (tasks.py)
    gpuhub -H a,b TASK       inventory hosts a and b, as `fab -H a,b TASK` (fabfile.py)
    gpuhub --all-hosts TASK  every inventory host, as `fab TASK` with no -H

The tasks are the checkout's tasks.py and fabfile.py, or the wheel's copies (gpuhub/paths.py),
loaded the way `inv` and `fab` load them; the inventory is found as every task finds it
(--inventory, $GPUHUB_INVENTORY, ./hosts.yaml), so the command works from any folder.
"""
from __future__ import annotations

from importlib.metadata import version

from fabric import Config, Executor
from fabric import __version__ as fabric_version
from fabric.main import Fab
from invoke import Argument, Collection, Exit
from invoke.loader import FilesystemLoader

from . import paths
from .fabexec import HostsExecutor


class _Hosts(HostsExecutor):
    command = "gpuhub --all-hosts"


class Gpuhub(Fab):
    def core_args(self):
        args = super().core_args()
        for arg in args:
            if arg.name == "dry":  # invoke's "Echo commands instead of running": see cli.plan_only
                arg.help = "Plan only, as --plan: read the facts, change nothing."
        return args + [
            Argument(names=("all-hosts",), kind=bool,
                     help="Act on every inventory host (as `fab TASK` with no -H); `reset` always needs -H."),
        ]

    def task_args(self):
        # No -c/--collection, -r/--search-root, --no-dedupe: the tasks are gpuhub's own
        # (invoke 2.2.1 program.py adds these only for a Program without a bundled namespace).
        return []

    def parse_collection(self):
        """tasks.py, or fabfile.py when hosts are named, as the bundled namespace: `--help` then
        lists the tasks too (invoke 2.2.1 program.py print_help)."""
        remote = self._on_hosts()
        module, parent = FilesystemLoader(config=self.config, start=str(paths.root())).load(
            "fabfile" if remote else "tasks")
        self.namespace = Collection.from_module(module, loaded_from=parent,
                                                auto_dash_names=self.config.tasks.auto_dash_names)
        # This machine: fabric's own Executor, which runs a task given no host as `inv` does
        # (fabric 3.2.3 executor.py expand_calls). Hosts: gpuhub's, which checks -H and reads
        # --all-hosts (so no -H) as every inventory host (fabexec.py).
        self.executor_class = _Hosts if remote else Executor
        super().parse_collection()

    def _on_hosts(self) -> bool:
        if self.args.complete.value:
            # Completing: the command line being completed is the remainder after `--`
            # (`gpuhub --complete -- gpuhub -H a p`, invoke 2.2.1 completion/bash.completion).
            words = self.core.remainder.split()[1:]
            return any(w in ("-H", "--hosts", "--all-hosts") or w.startswith(("-H", "--hosts=")) for w in words)
        hosts, all_hosts = self.args.hosts.value, self.args["all-hosts"].value
        if hosts is not None and all_hosts:
            raise Exit("gpuhub: give -H or --all-hosts, not both", code=1)
        return hosts is not None or all_hosts

    def print_version(self):
        super().print_version()  # gpuhub, Paramiko and Invoke versions
        print(f"Fabric {fabric_version}")


def main():
    Gpuhub(name="gpuhub", binary="gpuhub", binary_names=["gpuhub"], version=version("gpuhub"),
           config_class=Config, executor_class=Executor).run()
