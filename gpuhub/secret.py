"""Secret values, shown as *** everywhere by construction.

A `Secret` prints, formats and reprs as `***`; only `reveal()` gives its value, and the only
places that call it write the value into a root-only file or a command's stdin. Every Secret made
in this process is remembered, so the choke points can check for the value itself: a command sent
to a host (`gpuhub.target`) that contains one is refused before it leaves (secrets never go in
argv), and text shown to a person (logs, errors, plans) has them masked.
"""
from __future__ import annotations

import hashlib
import threading

MASK = "***"
# Real credentials are long (a GitHub OAuth secret has 40 characters, a K3s token more): values
# shorter than this are not looked for in text, where they would match ordinary words.
MIN_LENGTH = 8
_known: set = set()
_lock = threading.Lock()


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value)
        if len(self._value) >= MIN_LENGTH:
            with _lock:
                _known.add(self._value)

    def reveal(self) -> str:
        return self._value

    def digest(self) -> str:
        return digest(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return MASK

    __repr__ = __str__

    def __format__(self, spec) -> str:
        return MASK


class SecretInCommand(Exception):
    """A command for a host holds a secret value: refused, never sent (argv is world-readable)."""


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def contains_secret(text: str) -> bool:
    with _lock:
        return any(value in text for value in _known)


def mask(text: str) -> str:
    """`text` with every known secret value replaced by ***."""
    with _lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


# Where gpuhub's own values put a secret (render.jupyterhub_values): facts keep only a digest.
SECRET_VALUE_PATHS = (("hub", "config", "GitHubOAuthenticator", "client_secret"),)


def digested(values):
    """A copy of helm values with each secret leaf replaced by its digest (compare, never keep)."""
    if not isinstance(values, dict):
        return values
    import copy
    out = copy.deepcopy(values)
    for path in SECRET_VALUE_PATHS:
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str):
            node[path[-1]] = digest(node[path[-1]])
    return out
