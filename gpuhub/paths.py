"""Where gpuhub finds what it ships beside its code: tasks.py and fabfile.py (the `gpuhub`
command's tasks), scripts/, templates/ and the audit suite tests/audit/.

In a checkout (editable install included) they are the checkout's own top-level files. A wheel
carries them inside the package, under gpuhub/_shipped/ in the same shape: pyproject.toml maps
them there at build time. The packaged copy is looked for first: an installed gpuhub sits in
site-packages, whose parent folder is no checkout (and may hold another project's `scripts/`).
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def root() -> Path:
    """The folder holding tasks.py, fabfile.py, scripts/, templates/ and tests/audit/."""
    shipped = _PACKAGE / "_shipped"
    return shipped if shipped.is_dir() else _PACKAGE.parent


SCRIPTS = root() / "scripts"
TEMPLATES = root() / "templates"
AUDIT_SUITE = root() / "tests" / "audit"
