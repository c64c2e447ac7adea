"""gpuhub on the local machine: `inv --list`. Each task is a thin wrapper around gpuhub."""
from invoke import Collection, task

from gpuhub import cli
from gpuhub.plan import PROVISION

INVENTORY_HELP = {"inventory": "inventory file (default: $GPUHUB_INVENTORY, else ./hosts.yaml)"}
PLAN_HELP = dict(INVENTORY_HELP, plan="show what would change and change nothing",
                 wait="wait for another gpuhub run on this machine to finish instead of refusing",
                 json="print the plan (or with no --plan, the result) as JSON on stdout; logs go to stderr",
                 verbose="show under each change the scripts it runs with their inputs, and the files it writes")
VERIFY_HELP = "run the GPU test Job on every GPU node even when nothing changed"


@task(help={"out": "the inventory file to write (default: hosts.yaml); one that exists is never overwritten"})
def init(c, out="hosts.yaml"):
    """Write a commented starter inventory for this machine: its name, its NVIDIA GPUs, placeholders to fill in."""
    cli.init(c, out)


@task(help=dict(INVENTORY_HELP, out="output folder, replaced as a whole (default: rendered)"))
def render(c, inventory=None, out="rendered"):
    """Render every artifact (hub and device-plugin values, GPU test Job, per-host K3s config)."""
    cli.render_to(inventory, out)


@task(help=dict(INVENTORY_HELP, check="exit 2 when anything would change", json="print the plan as JSON",
                verbose=PLAN_HELP["verbose"]))
def plan(c, inventory=None, check=False, json=False, verbose=False):
    """Show, per step, what provisioning this machine would change. Changes nothing."""
    cli.show_plan(cli.local_run(c, inventory, PROVISION), as_json=json, check=check, verbose=verbose)


@task(help=dict(PLAN_HELP, yes="allow destructive changes", verify=VERIFY_HELP))
def provision(c, inventory=None, plan=False, yes=False, wait=False, json=False, verify=False, verbose=False):
    """Run every step on this machine: K3s, GPU runtime, device plugin, hub, GPU test."""
    _plan_or_apply(c, inventory, PROVISION, plan, yes, wait=wait, json=json, verify=verify, verbose=verbose)


AUDIT_HELP = dict(INVENTORY_HELP, hosts="testinfra URLs, comma-separated: ssh://NAME is inventory host NAME "
                  "(default: this machine, local://)", workload="also run the GPU test Job (creates pods)",
                  json="print the findings as JSON on stdout (the report goes to stderr)",
                  json_file="write the findings as JSON to this file", junit="write JUnit XML to this file",
                  ca_file="CA bundle that signs the hub's certificate", hub_address="reach the hub at this address",
                  ssh_config="SSH config file for the hosts", verbose="show every check, with its evidence")


@task(help=AUDIT_HELP)
def audit(c, inventory=None, hosts=None, ssh_config=None, workload=False, json=False, json_file=None, junit=None,
          ca_file=None, hub_address=None, verbose=False):
    """Audit this machine (or --hosts): driver, runtime, K3s, GPUs allocatable, hub over HTTPS. Read-only."""
    cli.audit([h for h in (hosts or "").split(",") if h], inventory, ssh_config, workload, json, json_file, junit,
              ca_file, hub_address, verbose)


@task(help=PLAN_HELP)
def k3s_install(c, inventory=None, plan=False, wait=False, json=False, verbose=False):
    """Install or upgrade the pinned K3s with gpuhub's config.yaml; wait for the node Ready."""
    _plan_or_apply(c, inventory, ("k3s.install",), plan, wait=wait, json=json, verbose=verbose)


@task(help=dict(PLAN_HELP, yes="confirm the uninstall",
                destroy_user_data="do not back up users' volumes first"))
def k3s_reset(c, inventory=None, plan=False, yes=False, destroy_user_data=False, wait=False, json=False,
              verbose=False):
    """Uninstall K3s, backing up users' volumes first. Destructive: needs --yes."""
    _plan_or_apply(c, inventory, ("k3s.reset",), plan, yes, destroy_user_data, wait=wait, json=json, verbose=verbose)


@task(help=INVENTORY_HELP)
def k3s_status(c, inventory=None):
    """Show K3s's unit, version and nodes on this machine."""
    cli.show_status(cli.local_run(c, inventory, ("k3s.install", "gpu.runtime")), "k3s")


@task(help=PLAN_HELP)
def gpu_runtime(c, inventory=None, plan=False, wait=False, json=False, verbose=False):
    """Check the driver, install the NVIDIA container toolkit, make containerd use it."""
    _plan_or_apply(c, inventory, ("gpu.runtime",), plan, wait=wait, json=json, verbose=verbose)


@task(help=PLAN_HELP)
def gpu_plugin(c, inventory=None, plan=False, wait=False, json=False, verbose=False):
    """Install the NVIDIA device plugin with GPU feature discovery and time-slicing."""
    _plan_or_apply(c, inventory, ("gpu.plugin",), plan, wait=wait, json=json, verbose=verbose)


@task(help=dict(INVENTORY_HELP, wait=PLAN_HELP["wait"]))
def gpu_test(c, inventory=None, wait=False):
    """Run a GPU test Job on every GPU node; on Pending, print the scheduler's reason."""
    _plan_or_apply(c, inventory, ("gpu.test",), False, wait=wait)


@task(help=PLAN_HELP)
def hub_launch(c, inventory=None, plan=False, wait=False, json=False, verbose=False):
    """Install or upgrade JupyterHub with the rendered values; print its URL."""
    _plan_or_apply(c, inventory, ("hub.launch",), plan, wait=wait, json=json, verbose=verbose)


@task(help=dict(INVENTORY_HELP, values="a rendered jupyterhub-values.yaml (default: render it now)"))
def hub_check(c, inventory=None, values=None):
    """Load the hub config and every profile into the real JupyterHub classes; fail on mistakes."""
    cli.hub_check(inventory, values)


@task(help=INVENTORY_HELP)
def hub_status(c, inventory=None):
    """Show the JupyterHub release, its pods and URL."""
    cli.show_status(cli.local_run(c, inventory, ("hub.launch",)), "hub")


def _plan_or_apply(c, inventory, steps, plan, yes=False, destroy_user_data=False, wait=False, json=False,
                   verify=False, verbose=False):
    run = cli.local_run(c, inventory, steps, destroy_user_data=destroy_user_data, verify=verify)
    if cli.plan_only(c, plan):
        cli.show_plan(run, as_json=json, verbose=verbose)
    else:
        cli.apply(run, yes=yes, wait=wait, as_json=json, verbose=verbose)


def _namespace(name, *tasks):
    return Collection(name, **{t.name.split("_", 1)[1].replace("_", "-"): t for t in tasks})


ns = Collection(init, render, plan, provision, audit)
ns.add_collection(_namespace("k3s", k3s_install, k3s_reset, k3s_status))
ns.add_collection(_namespace("gpu", gpu_runtime, gpu_plugin, gpu_test))
ns.add_collection(_namespace("hub", hub_launch, hub_check, hub_status))
