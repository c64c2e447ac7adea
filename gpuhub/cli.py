"""What tasks.py and fabfile.py share: gpuhub errors become one message and exit 1, no traceback."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from invoke import Exit

from . import inventory, render, yamlfile
from .secret import mask


@contextlib.contextmanager
def errors_as_exit():
    try:
        yield
    except inventory.InventoryError as e:
        raise Exit(f"gpuhub: {mask(str(e))}", code=1) from None
    except (OSError, ValueError) as e:
        raise Exit(f"gpuhub: {mask(str(e))}", code=1) from None


def say(line: str):
    """Progress and notes go to stderr, so stdout stays for machine-readable output."""
    print(mask(line), file=sys.stderr)


def show(text: str):
    """Results on stdout (plans, JSON), secrets masked."""
    print(mask(text))


def render_to(inventory_file, out) -> None:
    with errors_as_exit():
        render.out_folder(out)  # before the inventory: a wrong --out is named even with no secrets set
        inv = inventory.load(inventory_file)
        secrets = inventory.load_secrets(inventory_file)
        files, notes = render.render_all(inv, secrets)
        render.write_tree(files, Path(out))
    for line in notes.lines:
        say(f"note: {line}")
    say(f"rendered {len(files)} files for {len(inv.hosts)} host(s) from {inv.source} into {out}/")


def hub_check(inventory_file, values_file=None) -> None:
    """Load the hub values (rendered now, or from a file) into the real JupyterHub classes."""
    with errors_as_exit():
        if values_file:
            values = yamlfile.load(Path(values_file), "a values file")
            source = values_file
        else:
            inv = inventory.load(inventory_file)
            # The check does not need the real credentials: stand-ins keep it usable anywhere.
            secrets = inventory.load_secrets(inventory_file).with_stand_ins()
            values = render.jupyterhub_values(inv, secrets, render.Notes())
            source = f"the hub values rendered from {inv.source}"
    from . import hubcheck
    if hubcheck.missing():
        raise Exit(f"gpuhub: hub.check needs the real JupyterHub classes ({', '.join(hubcheck.missing())} not "
                   "installed): pip install 'gpuhub[hubcheck]'", code=1)
    problems = hubcheck.check_hub_values(values or {})
    if problems:
        raise Exit("gpuhub: hub.check found problems in " + source + ":\n"
                   + "\n".join(f"  - {p}" for p in problems), code=1)
    say(f"hub.check: {source} loads cleanly into JupyterHub, GitHubOAuthenticator and KubeSpawner")


# --- plan / apply ----------------------------------------------------------------------------

def _load(inventory_file):
    with errors_as_exit():
        return inventory.load(inventory_file), inventory.load_secrets(inventory_file)


def local_run(context, inventory_file, only, destroy_user_data=False):
    """`inv`: this machine is the host (DESIGN.md, "Which host is which")."""
    from .facts import pci_gpu_count
    from .plan import Run
    from .target import Target
    inv, secrets = _load(inventory_file)
    with errors_as_exit():
        target = Target.for_local(context)
    if inv.local_host is None:
        inv = inv.local_view(pci_gpu_count(target))
    local = inv.local_host
    if local.role != "server":
        raise Exit(f"gpuhub: {local.name} is an agent: run `fab -H {inv.server.name},{local.name} ...` "
                   "so that it can join its server", code=1)
    return Run(inv, {local.name: target}, secrets, only=only, destroy_user_data=destroy_user_data)


def remote_run(connections: dict, inventory_file, only, destroy_user_data=False, fail_fast=False):
    """`fab -H a,b`: inventory hosts looked up by the names given to -H."""
    from fabric import Connection

    from .plan import Run
    from .target import Target
    inv, secrets = _load(inventory_file)
    unknown = [name for name in connections if name not in inv.hosts]
    if unknown:
        raise Exit(f"gpuhub: not in the inventory ({inv.source}): {', '.join(unknown)}; "
                   f"known hosts: {', '.join(inv.hosts)}", code=1)
    with errors_as_exit():
        targets = {name: Target.for_connection(name, c) for name, c in connections.items()}
    server = inv.server.name
    if server not in targets:
        # Read-only: agents need the server's token digest and address to plan their join.
        some = next(iter(connections.values()))
        targets[server] = Target.for_connection(server, Connection(server, config=some.config))
    return Run(inv, targets, secrets, only=only, selected=list(connections), destroy_user_data=destroy_user_data,
               fail_fast=fail_fast)


def show_plan(run, as_json=False, check=False) -> None:
    from . import plan
    results = run.plan()
    show(plan.as_json(results) if as_json else plan.format_plan(results))
    code = plan.check_exit_code(results)
    if code == 1 or (check and code == 2):
        raise Exit(code=code)


def apply(run, yes=False, wait=False) -> None:
    from . import plan
    from .lock import LockHeld
    try:
        results = run.apply(yes=yes, wait=wait)
    except (plan.Refused, LockHeld) as e:
        raise Exit(f"gpuhub: nothing changed: {mask(str(e))}", code=1) from None
    except KeyboardInterrupt:
        say(plan.format_recap(run.results, interrupted=True))
        raise Exit("gpuhub: stopped at once (second Ctrl-C); run it again to finish", code=1) from None
    say(plan.format_plan(results))
    say(plan.format_recap(results, interrupted=run.interrupted.is_set()))
    if run.interrupted.is_set():
        raise Exit("gpuhub: interrupted: the change in progress was finished, the rest was not done", code=1)
    if run.failed():
        raise Exit(code=1)


def show_status(run, what: str) -> None:
    """The plan of the given steps, then what the cluster reports (nodes, or the hub's pods)."""
    from . import plan
    results = run.plan()
    show(plan.format_plan(results))
    server = run.facts.get(run.inv.server.name)
    if server is None:
        return
    if what == "k3s":
        for name, node in sorted((server["nodes"] or {}).items()):
            gpus = {k: v for k, v in node["allocatable"].items() if k.startswith("nvidia.com/")}
            print(f"  node {name:<16} {'Ready' if node['ready'] else 'NotReady':<9} {node['version'] or ''} "
                  + " ".join(f"{k}={v}" for k, v in sorted(gpus.items())))
    else:
        for pod in server["hub_pods"] or []:
            print(f"  pod {pod['name']:<28} {pod['phase'] or '':<10} {'Ready' if pod['ready'] else 'not Ready'}")
        print(f"  url https://{run.inv.hub['hostname']}/")


# --- audit ---------------------------------------------------------------------------------------

AUDIT_SUITE = Path(__file__).resolve().parent.parent / "tests" / "audit"


def audit(hosts, inventory_file=None, ssh_config=None, workload=False, json_file=None, junit_file=None,
          ca_file=None, hub_address=None) -> None:
    """Run the testinfra audit (tests/audit) in plain pytest; exit 0 all good, 1 otherwise."""
    import subprocess
    if not AUDIT_SUITE.is_dir():
        raise Exit(f"gpuhub: the audit suite is missing ({AUDIT_SUITE}): run from a gpuhub checkout", code=1)
    args = [sys.executable, "-m", "pytest", str(AUDIT_SUITE), "-p", "no:cacheprovider", "-q", "-rfE"]
    options = {"--hosts": ",".join(hosts) if hosts else None, "--ssh-config": ssh_config,
               "--inventory": inventory_file, "--audit-json": json_file, "--junitxml": junit_file,
               "--ca-file": ca_file, "--hub-address": hub_address}
    args += [f"{k}={v}" for k, v in options.items() if v]
    if workload:
        args.append("--workload")
    code = subprocess.call(args, cwd=AUDIT_SUITE.parent.parent)
    if code != 0:
        raise Exit(code=1)
