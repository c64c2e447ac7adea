"""Tests for values that end up in shells, Kubernetes objects and URLs.

Each test returns "" when the value is fine, else a message. The patterns are deliberately
narrower than what the tools accept: everything that passes is safe unquoted in a shell and
valid as the Kubernetes name it becomes (but every shell use still goes through shlex.quote).
Every pattern must match the WHOLE value and only ASCII (`whole`): Python's `$` also matches
before a final newline ("gpu3" + newline would pass `^...$` with match()), and `\\d` takes any
Unicode digit ("v1.３7.1" would pass).
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import unicodedata

from .schema import quoted


class whole:
    """A pattern that must match a whole value, in ASCII only."""

    def __init__(self, pattern: str):
        self.regex = re.compile(pattern, re.ASCII)

    def match(self, value):
        return self.regex.fullmatch(value) if isinstance(value, str) else None


_LABEL = whole(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_FQDN_LABEL = whole(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
_EMAIL = whole(r"^[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")
_K3S_VERSION = whole(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")
_SEMVER = whole(r"^(\d+)\.(\d+)\.(\d+)$")
# GitHub: logins are alphanumerics and single hyphens, at most 39; team slugs are lowercase.
_GITHUB_LOGIN = whole(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_GITHUB_TEAM = whole(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_IMAGE = whole(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
# A key in a Secret's data: apimachinery pkg/util/validation/validation.go IsConfigMapKey
# (configMapKeyFmt `[-._a-zA-Z0-9]+`, at most 253 characters, not "." or "..").
_SECRET_KEY = whole(r"^[-._a-zA-Z0-9]{1,253}$")
_MEMORY = whole(r"^[0-9]+(\.[0-9]+)?[KMGT]$")


def dns_label(value: str) -> str:
    if _LABEL.match(value):
        return ""
    return (f"{quoted(value)} is not a valid name: use lowercase letters, digits and '-', "
            "start and end with a letter or digit, at most 63 characters")


def hostname(value: str) -> str:
    """A DNS name (one or more labels)."""
    labels = value.split(".")
    if len(value) <= 253 and all(_FQDN_LABEL.match(label) for label in labels):
        return ""
    return f"{quoted(value)} is not a valid DNS hostname"


def public_hostname(value: str) -> str:
    if _is_ip(value):
        return (f"{quoted(value)} is an IP address: Let's Encrypt issues HTTP-01 certificates for DNS names "
                "only (give the name users type)")
    if hostname(value):
        return hostname(value)
    if "." not in value:
        return f"{quoted(value)} is not a fully qualified name (Let's Encrypt needs one, e.g. hub.lab.example.org)"
    return ""


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def dns_subdomain(value: str) -> str:
    """A Kubernetes object name such as a StorageClass's: lowercase DNS labels, at most 253."""
    if len(value) <= 253 and all(_LABEL.match(label) for label in value.split(".")):
        return ""
    return f"{quoted(value)} is not a Kubernetes name: lowercase letters, digits, '-' and '.'"


def release_name(value: str) -> str:
    """helm keeps a release's name in a Secret label: at most 53 characters (helm's own check)."""
    return dns_label(value) or (f"{quoted(value)} is longer than helm's 53 characters for a release name"
                                if len(value) > 53 else "")


def derived(prefix: str, name: str, limit: int = 63) -> str:
    """`prefix-name` when it fits `limit` (a Kubernetes label value: 63); else the name cut, with
    a hash of all of it, so that two long names never meet."""
    full = f"{prefix}-{name}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{prefix}-{name[:limit - len(prefix) - 10].rstrip('-')}-{digest}"


def address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return ""
    except ValueError:
        return "" if not hostname(value) else f"{quoted(value)} is neither an IP address nor a DNS hostname"


def v_chart_version(value: str) -> str:
    """A chart version that may carry a leading v, as cert-manager's do (v1.21.1)."""
    return "" if _SEMVER.match(value.removeprefix("v")) else f"{quoted(value)} is not a chart version such as v1.2.3"


# An https URL without spaces, quotes or backslashes: it goes into a manifest, never a shell line.
_HTTPS_URL = whole(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/:@!$&()*+,;=-]*)?$")


def https_url(value: str) -> str:
    return "" if _HTTPS_URL.match(value) else f"{quoted(value)} is not an https:// URL"


def email(value: str) -> str:
    return "" if _EMAIL.match(value) else f"{quoted(value)} is not an email address"


def k3s_version(value: str):
    """('v1.33.5+k3s1') -> (1, 33, 5, 1), or None."""
    m = _K3S_VERSION.match(value)
    return tuple(int(x) for x in m.groups()) if m else None


def k3s_version_problem(value: str) -> str:
    if k3s_version(value) is None:
        return f"{quoted(value)} is not a K3s release such as v1.33.5+k3s1"
    if k3s_version(value)[:3] < (1, 28, 5):
        # K3s creates RuntimeClass `nvidia` and accepts `default-runtime` since v1.28.5
        # (k3s-io/k3s#8936); older releases cannot run the GPU setup gpuhub makes.
        return f"{quoted(value)} is older than v1.28.5, the first K3s with NVIDIA runtime support gpuhub needs"
    return ""


def chart_version(value: str) -> str:
    return "" if _SEMVER.match(value) else f"{quoted(value)} is not a chart version such as 1.2.3"


def github_org(value: str) -> str:
    org, _, team = value.partition(":")
    if not _GITHUB_LOGIN.match(org) or (":" in value and not _GITHUB_TEAM.match(team)):
        return f"{quoted(value)} is not a GitHub organisation ('my-lab') or organisation:team ('my-lab:gpu-users')"
    return ""


def github_team(value: str) -> str:
    org, sep, team = value.partition(":")
    if sep and _GITHUB_LOGIN.match(org) and _GITHUB_TEAM.match(team):
        return ""
    return f"{quoted(value)} is not a GitHub organisation:team such as 'my-lab:gpu-users' (the team's slug)"


def github_user(value: str) -> str:
    return "" if _GITHUB_LOGIN.match(value) else f"{quoted(value)} is not a GitHub username"


def image(value: str) -> str:
    return "" if _IMAGE.match(value) else f"{quoted(value)} is not a container image reference (registry/name:tag)"


def memory(value: str) -> str:
    # KubeSpawner's ByteSpecification takes K/M/G/T (binary multiples) and refuses Ki/Mi/Gi; a
    # bare number would be bytes ("16" is 16 bytes: every spawn fails), and 0 no memory at all.
    if not _MEMORY.match(value) or float(value[:-1]) <= 0:
        return f"{quoted(value)} is not a memory size such as 4G or 512M (above zero, with K, M, G or T)"
    return ""


# A PVC's storage request goes to Kubernetes as it is (KubeSpawner 7.0.0 storage_capacity ->
# make_pvc's resources.requests.storage), so here Gi/Ti are right, unlike KubeSpawner's memory
# sizes above. A narrow subset of a Kubernetes quantity: a positive number with a binary (Ki..Ei)
# or decimal (k, M, G, T, P, E) suffix; a bare number would be bytes.
_STORAGE_SIZE = whole(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)$")


def storage_size(value: str) -> str:
    if not _STORAGE_SIZE.match(value) or float(re.sub(r"[A-Za-z]+$", "", value)) <= 0:
        return f"{quoted(value)} is not a volume size such as 100Gi or 1Ti (above zero, with Gi, Ti... or G, T...)"
    return ""


def cpus(value) -> str:
    """A CPU limit or guarantee: a finite number above zero (KubeSpawner alone takes .inf)."""
    if not math.isfinite(value) or not 0 < value <= 4096:
        return f"{quoted(value)} is not a number of CPUs (above zero, at most 4096)"
    return ""


_HOST_PATH = whole(r"^/([A-Za-z0-9._-]+/?)*$")


def host_path(value: str) -> str:
    """An absolute path on a host (the device plugin's nvidiaDriverRoot): plain characters, no
    `..` component, at most 255 characters."""
    if len(value) > 255 or not _HOST_PATH.match(value) or ".." in value.split("/"):
        return (f"{quoted(value)} is not an absolute path such as /run/nvidia/driver "
                "(letters, digits, '.', '_', '-' and '/', no '..')")
    return ""


_URL_PATH = whole(r"^/[A-Za-z0-9._~/-]{0,200}$")
_ENV_NAME = whole(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_CHOICE_KEY = whole(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def url_path(value: str) -> str:
    """A server's start page (KubeSpawner default_url), e.g. /lab or /tree."""
    if _URL_PATH.match(value) and ".." not in value.split("/"):
        return ""
    return f"{quoted(value)} is not a path such as /lab or /tree (letters, digits, '.', '_', '~', '-', '/')"


def env_name(value: str) -> str:
    return "" if _ENV_NAME.match(value) else (f"{quoted(value)} is not an environment variable name "
                                             "(letters, digits and '_', not starting with a digit)")


def secret_key(value: str) -> str:
    if _SECRET_KEY.match(value) and value not in (".", ".."):
        return ""
    return f"{quoted(value)} is not a key of a Secret's data (letters, digits, '-', '_', '.')"


def choice_key(value: str) -> str:
    """What a profile's choice is called in KubeSpawner's form (`<option value=...>`)."""
    return "" if _CHOICE_KEY.match(value) else f"{quoted(value)} is not a valid name: {dns_label(value)}"


IMAGE_PATTERN = _IMAGE.regex.pattern  # what the existing image test accepts, as a regular expression


def image_pattern(value: str) -> str:
    """A regular expression a custom image must also match: anchored at both ends (KubeSpawner
    7.0.0 spawner.py checks it with re.match, which anchors only the start), and free of what
    would break the HTML attribute KubeSpawner's form puts it in unescaped (form.html
    `pattern="..."`)."""
    if not (value.startswith("^") and value.endswith("$")):
        return f"{quoted(value)} must start with ^ and end with $, so the whole image name is checked"
    bad = sorted(set(value) & set('"<>&\n'))
    if bad:
        return f"{quoted(value)} holds {', '.join(map(repr, bad))}, which KubeSpawner's form shows unescaped"
    try:
        re.compile(value)
    except re.error as e:
        return f"{quoted(value)} is not a regular expression: {e}"
    return ""


_HELM_VERSION = whole(r"^v[34]\.\d+\.\d+$")
_PACKAGE_VERSION = whole(r"^[0-9][A-Za-z0-9.+~-]*$")


def helm_version(value: str) -> str:
    return "" if _HELM_VERSION.match(value) else f"{quoted(value)} is not a helm release such as v3.17.3"


def package_version(value: str) -> str:
    return "" if _PACKAGE_VERSION.match(value) else f"{quoted(value)} is not a package version such as 1.17.8-1"


_DURATION = whole(r"^(?:(\d{1,3})h)?(?:(\d{1,4})m)?(?:(\d{1,5})s)?$")
MIN_WAIT_S, MAX_WAIT_S = 10, 24 * 3600


def duration_seconds(value: str):
    """'90m', '1h30m', '45s' (hours, minutes, seconds as helm's --timeout writes them) -> seconds,
    or None when it is not such a duration."""
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def wait_duration(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds is None:
        return f"{quoted(value)} is not a duration such as 90m, 1h30m or 45s"
    if not MIN_WAIT_S <= seconds <= MAX_WAIT_S:
        return f"{quoted(value)} is out of range: from {MIN_WAIT_S}s to 24h"
    return ""


# Profile display names and descriptions land in KubeSpawner's profile form (KubeSpawner 7.0.0
# templates/form.html: `<h3>{{ profile.display_name }}</h3>`, `<p>{{ profile.description }}</p>`)
# through a jinja2 Environment made without autoescape (spawner.py `_render_options_form`: its
# profile_list help says display_name "should be HTML safe"), and JupyterHub 5.5 shows that form
# with `| safe` (templates/spawn.html): so `<`, `>` and `&` would be markup. KubeSpawner also says
# the form "can either be plain HTML or a jinja2 template that JupyterHub in turn will render",
# so `{` and `}` are refused too. Control and format characters (a newline, an escape sequence, a
# bidirectional override: Unicode categories Cc, Cf and the other C*, and the line/paragraph
# separators Zl, Zp) are refused: they would garble the page and the YAML they pass through.
# Letters of any script, digits, spaces and other punctuation are fine.
HTML_OR_TEMPLATE = set("<>&{}")
DISPLAY_NAME_MAX, DESCRIPTION_MAX = 80, 400


def _display_text(value: str, limit: int, what: str) -> str:
    for ch in value:
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp"):
            return (f"{quoted(value)} holds the control or format character U+{ord(ch):04X}: {what} is one "
                    "line of printable text")
        if ch in HTML_OR_TEMPLATE:
            return (f"{quoted(value)} holds {ch!r}: {what} is shown as HTML by KubeSpawner's profile form, unescaped; "
                    "use letters, digits, spaces and punctuation other than < > & { }")
    if len(value) > limit:
        return f"{quoted(value)} is longer than {limit} characters, the most gpuhub takes for {what}"
    return ""


def display_name(value: str) -> str:
    if not value.strip():
        return "is empty: users pick a profile by this name"
    return _display_text(value, DISPLAY_NAME_MAX, "a profile's display name")


def description(value: str) -> str:
    return _display_text(value, DESCRIPTION_MAX, "a profile's description")
