"""What tasks.py and fabfile.py share: gpuhub errors become one message and exit 1, no traceback."""
from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

from invoke import Exit

from . import inventory, paths, render, yamlfile
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
    from .progress import stderr_line
    stderr_line(mask(line))


def show(text: str):
    """Results on stdout (plans, JSON), secrets masked."""
    print(mask(text))


def render_to(inventory_file, out) -> None:
    with errors_as_exit():
        render.out_folder(out)  # before the inventory: a wrong --out is named even with no secrets set
        inv = inventory.load(inventory_file)
        secrets = inventory.load_secrets(inventory_file)
        say_warnings(inv)
        # The rendered hub values never hold the OAuth credentials (they come from a Kubernetes
        # Secret), only a digest of them, which render leaves as a marker when they are unset.
        complete = all(secrets.get(k) for k in ("github_client_id", "github_client_secret"))
        files, notes = render.render_all(inv, secrets if complete else None)
        render.write_tree(files, Path(out))
    ref = render.github_secret(inv)
    notes.add(f"cluster/jupyterhub-values.yaml holds no OAuth credential: the hub reads them from Secret "
              f"{ref['namespace']}/{ref['name']}" + (", which hub.launch creates from the local secrets"
                                                     + ("" if complete else " (unset: GPUHUB_GITHUB_CLIENT_ID, "
                                                        "GPUHUB_GITHUB_CLIENT_SECRET)")
                                                     if ref["managed"] else " (hub.github.existing_secret)"))
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


def init(context, out) -> None:
    """`init`: a commented starter inventory for this machine at `out`; never over a file."""
    from . import starter
    from .target import Target
    with errors_as_exit():
        path = starter.out_path(out)  # before reading the machine: a taken --out is named at once
        machine = starter.read_machine(Target.for_local(context))
        starter.write_new(path, starter.text(machine))
    found = ", ".join(g["model"] for g in machine.gpus) or "none found on the PCI bus"
    say(f"wrote {path} for {machine.name or 'this machine'} (NVIDIA GPUs: {found})")
    say("fill in its placeholders: " + ", ".join(starter.placeholder_fields(machine)))
    default = path == Path("hosts.yaml") and "GPUHUB_INVENTORY" not in os.environ
    plan = "gpuhub plan" + ("" if default else f" --inventory {shlex.quote(str(path))}")
    say(f"then see what provisioning this machine would change: {plan} (`inv plan` in a checkout)")


# --- plan / apply ----------------------------------------------------------------------------

def _load(inventory_file):
    with errors_as_exit():
        inv = inventory.load(inventory_file)
        secrets = inventory.load_secrets(inventory_file)
    say_warnings(inv)
    return inv, secrets


def say_warnings(inv) -> None:
    for line in inv.warnings:
        say(f"warning: {line}")


def local_run(context, inventory_file, only, destroy_user_data=False, verify=False):
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
    return Run(inv, {local.name: target}, secrets, only=only, destroy_user_data=destroy_user_data, verify=verify)


def ssh_target(host, connection):
    """A Target over `connection`, at the inventory's address when the SSH config names none."""
    from . import sshhosts
    from .target import Target
    target = Target.for_connection(host.name, connection)
    target.contact = sshhosts.for_connection(connection, host.address)
    return target


def remote_run(connections: dict, inventory_file, only, destroy_user_data=False, fail_fast=False, verify=False):
    """`fab -H a,b`: inventory hosts looked up by the names given to -H."""
    from fabric import Connection

    from .plan import Run
    inv, secrets = _load(inventory_file)
    unknown = [name for name in connections if name not in inv.hosts]
    if unknown:
        raise Exit(f"gpuhub: not in the inventory ({inv.source}): {', '.join(unknown)}; "
                   f"known hosts: {', '.join(inv.hosts)}", code=1)
    with errors_as_exit():
        targets = {name: ssh_target(inv.hosts[name], c) for name, c in connections.items()}
    server = inv.server.name
    if server not in targets:
        # Read-only: agents need the server's token digest and address to plan their join.
        some = next(iter(connections.values()))
        targets[server] = ssh_target(inv.server, Connection(server, config=some.config))
        say(f"{', '.join(connections)}: agent(s) only: also reading the server {server}'s facts "
            f"({targets[server].contact.hostname}), changing nothing there")
    return Run(inv, targets, secrets, only=only, selected=list(connections), destroy_user_data=destroy_user_data,
               fail_fast=fail_fast, verify=verify)


def plan_only(context, plan: bool) -> bool:
    """--plan, or invoke's own -R/--dry, which every `inv`, `fab` and `gpuhub` takes (invoke
    2.2.1 program.py core_args). Left as invoke means it, it sets run.dry, and every command
    returns empty output, exit 0, without running (runners.py Runner._run_body): a plan made on
    no facts at all. It cannot be hidden from `inv --help`, so it means --plan: gpuhub runs its
    read-only probes for real whatever run.dry says (target.py), and changes nothing."""
    return plan or bool(context.config.run.dry)


def show_plan(run, as_json=False, check=False, verbose=False) -> None:
    from . import plan, term
    results = run.plan()
    show(plan.as_json(results) if as_json else plan.format_plan(results, verbose, term.enabled(sys.stdout)))
    code = plan.check_exit_code(results)
    if code == 1 or (check and code == 2):
        raise Exit(code=code)


def apply(run, yes=False, wait=False, as_json=False, verbose=False) -> None:
    from . import plan, term
    from .lock import LockHeld
    color = term.enabled(sys.stderr)
    try:
        results = run.apply(yes=yes, wait=wait)
    except (plan.Refused, LockHeld) as e:
        raise Exit(f"gpuhub: nothing changed: {mask(str(e))}", code=1) from None
    except KeyboardInterrupt:
        say(plan.format_recap(run.results, interrupted=True, color=color))
        raise Exit("gpuhub: stopped at once (second Ctrl-C); run it again to finish", code=1) from None
    say(plan.format_plan(results, verbose, color))
    say(plan.format_recap(results, interrupted=run.interrupted.is_set(), color=color))
    if as_json:
        show(plan.result_json(results, interrupted=run.interrupted.is_set()))
    if run.interrupted.is_set():
        raise Exit("gpuhub: interrupted: the change in progress was finished, the rest was not done", code=1)
    if run.failed():
        raise Exit(code=1)


STATUS_CHECKS = {"k3s": ("check_k3s_unit", "check_node"), "hub": ("check_hub_ready",)}


def show_status(run, what: str) -> None:
    """The plan of the given steps, then what the cluster reports (nodes, or the hub's pods); exit 1
    when the thing is not installed or not healthy, judged by the audit's own checks."""
    from . import audit, plan, term
    results = run.plan()
    show(plan.format_plan(results, color=term.enabled(sys.stdout)))
    server = run.facts.get(run.inv.server.name)
    if server is not None and what == "k3s":
        for name, node in sorted((server["nodes"] or {}).items()):
            gpus = {k: v for k, v in node["allocatable"].items() if k.startswith("nvidia.com/")}
            print(f"  node {name:<16} {'Ready' if node['ready'] else 'NotReady':<9} {node['version'] or ''} "
                  + " ".join(f"{k}={v}" for k, v in sorted(gpus.items())))
    elif server is not None:
        for pod in server["hub_pods"] or []:
            print(f"  pod {pod['name']:<28} {pod['phase'] or '':<10} {'Ready' if pod['ready'] else 'not Ready'}")
        print(f"  url https://{run.inv.hub['hostname']}/")
    problems = []
    for host in run.hosts:
        fx = run.facts.get(host.name)
        if fx is None or server is None:
            problems.append(f"{host.name}: {results[host.name].error or 'facts could not be gathered'}")
            continue
        for name in STATUS_CHECKS[what]:
            finding = getattr(audit, name)(run.inv, host, fx, server)
            if finding is not None and not finding.ok:
                problems.append(f"{host.name} {finding.check}: {finding.message}"
                                + (f"; fix: {finding.fix}" if finding.fix else ""))
    if problems:
        thing = "K3s" if what == "k3s" else "JupyterHub"
        raise Exit(f"gpuhub: {thing} is not installed or not healthy:\n" + "\n".join(f"  {p}" for p in problems),
                   code=1)


# --- audit ---------------------------------------------------------------------------------------

AUDIT_SUITE = paths.AUDIT_SUITE


def audit(hosts, inventory_file=None, ssh_config=None, workload=False, json=False, json_file=None,
          junit_file=None, ca_file=None, hub_address=None, verbose=False) -> None:
    """Run the testinfra audit (tests/audit) in pytest, reporting one line per failed check and a
    summary per host (`verbose`: every check with its evidence; `json`: the findings as JSON on
    stdout, the lines on stderr); exit 0 all good, 1 otherwise. No hosts: this machine."""
    import subprocess
    if not AUDIT_SUITE.is_dir():
        raise Exit(f"gpuhub: the audit suite is missing ({AUDIT_SUITE}): reinstall gpuhub", code=1)
    if json and json_file:
        raise Exit("gpuhub: give --json (findings on stdout) or --json-file FILE, not both", code=1)
    with errors_as_exit():
        inventory_file = inventory.inventory_path(inventory_file)
    # --confcutdir: tests/audit is the product's audit, not a test of gpuhub; the test suite's own
    # tests/conftest.py above it (its guard, its empty secrets) must stay out (pytest 9
    # PytestPluginManager._is_in_confcutdir). -p no:terminal: pytest's report gives way to the
    # audit's own lines (tests/audit/conftest.py); -o addopts: the project's addopts are options of
    # that terminal plugin.
    args = [sys.executable, "-m", "pytest", str(AUDIT_SUITE), f"--confcutdir={AUDIT_SUITE}", "-o", "addopts=",
            "-p", "no:cacheprovider", "-p", "no:terminal", "--audit-report=lines"]
    # pytest runs in paths.root() (so that `python -m` imports this gpuhub, not one in the
    # caller's folder): the files named here are made absolute first, as the caller meant them.
    files = {"--ssh-config": ssh_config, "--inventory": inventory_file, "--audit-json": json_file,
             "--junitxml": junit_file, "--ca-file": ca_file}
    options = {k: os.path.abspath(v) for k, v in files.items() if v}
    options.update({"--hosts": ",".join(hosts) if hosts else "local://", "--hub-address": hub_address})
    if json:
        options["--audit-json"] = "-"
    args += [f"{k}={v}" for k, v in options.items() if v]
    args += ["--workload"] * bool(workload) + ["--audit-evidence"] * bool(verbose)
    code = subprocess.call(args, cwd=paths.root())
    if code != 0:
        raise Exit(code=1)
