"""gpuhub on remote hosts over SSH: `fab -H gpu1,gpu2 provision`. Thin wrappers around gpuhub.

Fabric calls a task once per -H host, one after the other, then its `post` task once. So each
per-host call only records its Connection and options; the post task plans and applies for all
hosts together: servers first, agents in parallel, cluster steps once, one recap. -H is checked,
and defaults to every inventory host (reset excepted), by gpuhub/fabexec.py (fabric.yaml).
"""
from fabric import task
from invoke import Collection

from gpuhub import cli
from gpuhub.plan import PROVISION

INVENTORY_HELP = {"inventory": "inventory file (default: $GPUHUB_INVENTORY, else ./hosts.yaml)"}
WAIT_HELP = "wait for another gpuhub run on these hosts to finish instead of refusing"
JSON_HELP = "print the plan (or with no --plan, the result) as JSON on stdout; logs go to stderr"
VERBOSE_HELP = "show under each change the scripts it runs with their inputs, and the files it writes"
_hosts = {}      # original -H name -> Connection, in the order given
_options = {}


def _collect(c, **options):
    _hosts[c.original_host] = c
    _options.update(options)


@task
def _plan_all(c):
    cli.show_plan(cli.remote_run(_hosts, _options["inventory"], PROVISION),
                  as_json=_options["json"], check=_options["check"], verbose=_options["verbose"])


@task
def _provision_all(c):
    run = cli.remote_run(_hosts, _options["inventory"], PROVISION, fail_fast=_options["fail_fast"],
                         verify=_options["verify"])
    _plan_or_apply(c, run)


def _plan_or_apply(c, run):
    if cli.plan_only(c, _options["plan"]):
        cli.show_plan(run, as_json=_options["json"], verbose=_options["verbose"])
    else:
        cli.apply(run, yes=_options["yes"], wait=_options["wait"], as_json=_options["json"],
                  verbose=_options["verbose"])


@task
def _reset_all(c):
    run = cli.remote_run(_hosts, _options["inventory"], ("k3s.reset",),
                         destroy_user_data=_options["destroy_user_data"])
    _plan_or_apply(c, run)


@task(post=[_provision_all], help=dict(INVENTORY_HELP, plan="show what would change and change nothing",
                                       yes="allow destructive changes",
                                       fail_fast="stop at the first failing host", wait=WAIT_HELP,
                                       json=JSON_HELP, verbose=VERBOSE_HELP,
                                       verify="run the GPU test Job on every GPU node even when nothing changed"))
def provision(c, inventory=None, plan=False, yes=False, fail_fast=False, wait=False, json=False, verify=False,
              verbose=False):
    """Provision the -H hosts (default: every inventory host): server, agents, plugin, hub, GPU test."""
    _collect(c, inventory=inventory, plan=plan, yes=yes, fail_fast=fail_fast, wait=wait, json=json, verify=verify,
             verbose=verbose)


@task(post=[_plan_all], help=dict(INVENTORY_HELP, check="exit 2 when anything would change",
                                  json="print the plan as JSON", verbose=VERBOSE_HELP))
def plan(c, inventory=None, check=False, json=False, verbose=False):
    """Show, per host and step, what provisioning would change (default: every host). Changes nothing."""
    _collect(c, inventory=inventory, check=check, json=json, verbose=verbose)


@task(post=[_reset_all], help=dict(INVENTORY_HELP, yes="confirm the uninstall", plan="show the plan only",
                                   destroy_user_data="do not back up users' volumes first", wait=WAIT_HELP,
                                   json=JSON_HELP, verbose=VERBOSE_HELP))
def reset(c, inventory=None, yes=False, plan=False, destroy_user_data=False, wait=False, json=False, verbose=False):
    """Uninstall K3s from the -H hosts (always named), backing up users' volumes first. Needs --yes."""
    _collect(c, inventory=inventory, yes=yes, plan=plan, destroy_user_data=destroy_user_data, wait=wait, json=json,
             verbose=verbose)


@task
def _audit_all(c):
    o = _options
    cli.audit([f"ssh://{name}" for name in _hosts], o["inventory"], o["ssh_config"], o["workload"], o["json"],
              o["json_file"], o["junit"], o["ca_file"], o["hub_address"], o["verbose"])


@task(post=[_audit_all], help=dict(INVENTORY_HELP, workload="also run the GPU test Job (creates pods)",
                                   json="print the findings as JSON on stdout (the report goes to stderr)",
                                   json_file="write the findings as JSON to this file",
                                   junit="write JUnit XML to this file",
                                   ca_file="CA bundle that signs the hub's certificate",
                                   hub_address="reach the hub at this address",
                                   verbose="show every check, with its evidence"))
def audit(c, inventory=None, workload=False, json=False, json_file=None, junit=None, ca_file=None, hub_address=None,
          verbose=False):
    """Audit the -H hosts (default: every inventory host): driver, runtime, K3s, GPUs, hub over HTTPS."""
    _collect(c, inventory=inventory, workload=workload, json=json, json_file=json_file, junit=junit, ca_file=ca_file,
             hub_address=hub_address, verbose=verbose, ssh_config=getattr(c.config, "_runtime_ssh_path", None))


# Only the user-facing tasks are listed; the post tasks run through `post=`.
ns = Collection(provision, plan, reset, audit)
