"""What tasks.py and fabfile.py share: gpuhub errors become one message and exit 1, no traceback."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import yaml
from invoke import Exit

from . import inventory, render


@contextlib.contextmanager
def errors_as_exit():
    try:
        yield
    except inventory.InventoryError as e:
        raise Exit(f"gpuhub: {e}", code=1) from None
    except (OSError, ValueError) as e:
        raise Exit(f"gpuhub: {e}", code=1) from None


def not_yet(task: str):
    raise Exit(f"gpuhub: {task} is not implemented yet in this version (the provisioning steps come next); "
               "nothing was changed", code=1)


def say(line: str):
    """Progress and notes go to stderr, so stdout stays for machine-readable output."""
    print(line, file=sys.stderr)


def render_to(inventory_file, out) -> None:
    with errors_as_exit():
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
            values = yaml.safe_load(Path(values_file).read_text())
            source = values_file
        else:
            inv = inventory.load(inventory_file)
            # The check does not need the real credentials: stand-ins keep it usable anywhere.
            secrets = inventory.load_secrets(inventory_file).with_stand_ins()
            values = render.jupyterhub_values(inv, secrets, render.Notes())
            source = f"the hub values rendered from {inv.source}"
    try:
        from . import hubcheck
    except ImportError as e:
        raise Exit(f"gpuhub: hub.check needs the real JupyterHub classes: pip install 'gpuhub[hubcheck]' ({e})",
                   code=1) from None
    problems = hubcheck.check_hub_values(values or {})
    if problems:
        raise Exit("gpuhub: hub.check found problems in " + source + ":\n"
                   + "\n".join(f"  - {p}" for p in problems), code=1)
    say(f"hub.check: {source} loads cleanly into JupyterHub, GitHubOAuthenticator and KubeSpawner")
