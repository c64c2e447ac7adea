"""Kubernetes Secrets gpuhub keeps for the site (the hub's OAuth credentials; a DNS provider's
token for cert-manager): the probe that reads one, and the Change that creates or updates it.

A value never travels in argv, a log or a plan: the Change sends the Secret to kubectl on stdin,
and the probe's parser (facts.secret_probe) keeps of each value only a digest salted with where
the Secret lives, so `plan` knows which key changed without holding or showing any value.
"""
from __future__ import annotations

import base64
import hashlib
import json

from .secret import Secret

# The label that says gpuhub wrote it (a Secret without it is the site's: never overwritten).
MANAGED_BY = ("app.kubernetes.io/managed-by", "gpuhub")
# Digests gpuhub stamps on the objects it applies, to know them current without reading a value.
TLS_DIGEST, SPEC_DIGEST = "gpuhub.io/tls-digest", "gpuhub.io/spec-digest"


def _plain(value) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def key_digest(namespace: str, name: str, key: str, value) -> str:
    """A value's digest, salted with NAMESPACE/NAME/KEY: equal values in two Secrets differ, and
    a table of digests of common words matches none."""
    salted = f"gpuhub-secret\0{namespace}/{name}\0{key}\0".encode() + _plain(value).encode()
    return "sha256:" + hashlib.sha256(salted).hexdigest()


def data_digest(namespace: str, name: str, data: dict) -> str:
    """One digest of a whole Secret's data (what the hub's pod carries to restart on new values)."""
    joined = "\n".join(f"{k}={key_digest(namespace, name, k, v)}" for k, v in sorted(data.items()))
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def manifest(namespace: str, name: str, data: dict) -> dict:
    """The Secret as the API takes it (values base64 in `data`), labelled as gpuhub's."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
            "data": {k: base64.b64encode(_plain(v).encode()).decode() for k, v in sorted(data.items())}}


def managed_secret_change(step: str, namespace: str, name: str, data: dict, current, what: str):
    """The Change that makes Secret NAMESPACE/NAME hold exactly `data` ({key: value or Secret}), or
    None when it does. `current` is its fact (facts.parse_secret); `what` says what it holds, for the plan
    ("the hub's GitHub OAuth credentials"). A Secret of that name that gpuhub did not write is not
    replaced: ValueError says so (the caller blocks with it)."""
    from .steps import Change, script
    if current is None:
        raise ValueError(f"could not read Secret {namespace}/{name} (kubectl failed): is the cluster up?")
    wanted = {k: key_digest(namespace, name, k, v) for k, v in data.items()}
    if current["found"] and not current["managed"]:
        raise ValueError(f"Secret {namespace}/{name} exists and gpuhub did not create it (no label "
                         f"{'='.join(MANAGED_BY)}): name it in the inventory as an existing Secret, or "
                         "delete it so gpuhub can create its own")
    if current["found"] and current["digests"] == wanted:
        return None
    keys = ", ".join(sorted(data))
    if not current["found"]:
        summary = f"create Secret {namespace}/{name} ({what}: {keys})"
    else:
        changed = sorted(k for k in set(wanted) | set(current["digests"]) if wanted.get(k) != current["digests"].get(k))
        summary = f"update Secret {namespace}/{name} ({what}: {', '.join(changed)} changed)"
    text = json.dumps(manifest(namespace, name, data))
    size = len(text.encode())
    return Change(summary, actions=[script(step, "secret-apply.sh", {
        "NAMESPACE": namespace, "NAME": name, "MANIFEST_BYTES": str(size)}, stdin=text,
        stdin_label=f"Secret {namespace}/{name} as JSON, {size} bytes, keys {keys} (values not shown)")])
