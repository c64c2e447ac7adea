"""gpuhub on remote hosts over SSH: `fab -H gpu1,gpu2 provision`. Thin wrappers around gpuhub."""
from fabric import task

from gpuhub import cli

INVENTORY_HELP = {"inventory": "inventory file (default: $GPUHUB_INVENTORY, else ./hosts.yaml)"}


@task(help=dict(INVENTORY_HELP, plan="show what would change and change nothing",
                yes="allow destructive changes"))
def provision(c, inventory=None, plan=False, yes=False):
    """Provision the -H hosts: servers first, then agents; then device plugin, hub and GPU test."""
    cli.not_yet("provision")


@task(help=dict(INVENTORY_HELP, check="exit 2 when anything would change", json="print the plan as JSON"))
def plan(c, inventory=None, check=False, json=False):
    """Show, per host and step, what provisioning would change. Changes nothing."""
    cli.not_yet("plan")


@task(help=dict(INVENTORY_HELP, yes="confirm the uninstall",
                destroy_user_data="do not back up users' volumes first"))
def reset(c, inventory=None, yes=False, destroy_user_data=False):
    """Uninstall K3s from the -H hosts, backing up users' volumes first. Needs --yes."""
    cli.not_yet("reset")


@task(help=INVENTORY_HELP)
def audit(c, inventory=None):
    """Audit the -H hosts with testinfra."""
    cli.not_yet("audit")
