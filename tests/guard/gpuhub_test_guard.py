"""TEST GUARD (tests only, never product code): the test suite's proof that gpuhub's tests
never change or audit the machine they run on.

Active in every Python process of a test session (the pytest process, and every `inv`, `fab`
or audit subprocess through `sitecustomize` on PYTHONPATH) when $GPUHUB_TEST_GUARD names a
folder. It replaces the two ways gpuhub reaches the local machine:

- invoke's local runner (`invoke.runners.Local.run`, what `inv` tasks' Context uses): the
  local machine becomes a *recording target*. It answers gpuhub's read-only fact script from a
  recorded scenario ($GPUHUB_TEST_SCENARIO, tests/data/scenarios/*.yaml) and `id -u`; any other
  command is refused with GuardViolation and recorded, so a test fails loudly even when the
  product catches the exception.
- testinfra's local backend: refused and recorded (gpuhub's audit reaches this machine through
  invoke's local runner, as every `inv` task does, so it meets the recording target above).

It also records every command string fabric sends to a remote host (`Connection.run`), for
tests that check what crossed the wire (secrets never in a command line).

Records are JSON lines in $GPUHUB_TEST_GUARD: `violations.jsonl`, `local.jsonl`, `remote.jsonl`.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import re
import sys
import threading

GUARD_ENV = "GPUHUB_TEST_GUARD"
SCENARIO_ENV = "GPUHUB_TEST_SCENARIO"
_lock = threading.Lock()

# gpuhub/facts.py `script()`: each probe is framed by "MARKER begin NAME" / "MARKER end NAME RC".
_PROBE = re.compile(r"echo '(@@gpuhub-[0-9a-f]+) begin ([A-Za-z0-9_]+)'")


class GuardViolation(BaseException):
    """Product code tried to change or audit the machine the tests run on. A BaseException so
    that the product's own `except Exception` (hosts reported unreachable...) cannot hide it."""


def folder():
    return os.environ.get(GUARD_ENV) or None


def record(kind: str, **data) -> None:
    where = folder()
    if not where:
        return
    line = json.dumps(dict(data, pid=os.getpid()), sort_keys=True)
    with _lock, open(os.path.join(where, f"{kind}.jsonl"), "a") as out:
        out.write(line + "\n")


def read(kind: str, where: str = None) -> list:
    path = os.path.join(where or folder() or "", f"{kind}.jsonl")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def clear(where: str = None) -> None:
    for kind in ("violations", "local", "remote"):
        try:
            os.unlink(os.path.join(where or folder() or "", f"{kind}.jsonl"))
        except FileNotFoundError:
            pass


def refuse(what: str, command: str):
    record("violations", what=what, command=command)
    raise GuardViolation(f"TEST GUARD: gpuhub tried to {what} the machine the tests run on: {command[:300]!r} "
                         "(tests must use a recording target or the SSH test hosts)")


def _scenario() -> dict:
    import yaml
    path = os.environ.get(SCENARIO_ENV)
    if not path:
        return {}
    with open(path) as f:
        return (yaml.safe_load(f) or {}).get("probes", {})


def unwrap(command: str) -> str:
    """gpuhub runs local commands in their own session (`setsid -w sh -c CMD`): CMD."""
    import shlex
    if command.startswith("setsid -w sh -c "):
        return shlex.split(command[len("setsid -w "):])[2]
    return command


def answer_local(command: str):
    """(stdout, exit code) for a read-only command gpuhub may run locally; refuse the rest.
    The run lock (gpuhub/lock.py, a file under /run) is answered as taken, refreshed, released:
    on a recording target nothing is written."""
    command = unwrap(command)
    record("local", command=command)
    if command.strip() == "id -u":
        return "0\n", 0
    if command.startswith("# gpuhub run lock: "):
        return ("acquired\n" if command.startswith("# gpuhub run lock: acquire") else ""), 0
    probes = _PROBE.findall(command)
    # A probe script (gpuhub/facts.py script): its first probe, or the pipeline of those started
    # beside the rest (`{ echo ...`).
    if probes and command.lstrip().lstrip("{ ").startswith("echo '@@gpuhub-"):
        scenario = _scenario()
        out = []
        for marker, name in probes:
            # The run lock's first try, sent with the facts (gpuhub/plan.py LOCK_PROBE): taken.
            case = {"output": "acquired", "exit": 0} if name == "run_lock" else scenario.get(name) or {}
            text = case.get("output", "")
            if text and not text.endswith("\n"):
                text += "\n"
            out.append(f"{marker} begin {name}\n{text}{marker} end {name} {case.get('exit', 1)}\n")
        return "".join(out), 0
    refuse("run a command on", command)


# --- patches ---------------------------------------------------------------------------------

def _patch_invoke(module):
    from invoke.runners import Result

    def run(self, command, **kwargs):
        stdout, exited = answer_local(command)
        result = Result(stdout=stdout, stderr="", exited=exited, command=command)
        if exited and not kwargs.get("warn"):
            from invoke.exceptions import UnexpectedExit
            raise UnexpectedExit(result)
        return result

    module.Local.run = run


def _patch_testinfra(module):
    def run(self, command, *args, **kwargs):
        refuse("audit", self.get_command(command, *args))

    module.LocalBackend.run = run


def _patch_fabric(module):
    original = module.Connection.run

    def run(self, command, **kwargs):
        record("remote", host=getattr(self, "original_host", self.host), command=command)
        return original(self, command, **kwargs)

    module.Connection.run = run


PATCHES = {"invoke.runners": _patch_invoke, "testinfra.backend.local": _patch_testinfra,
           "fabric.connection": _patch_fabric}


class _PatchingLoader(importlib.abc.Loader):
    """The module's own loader, with the patch applied once the module has run."""

    def __init__(self, inner, patch):
        self.inner, self.patch = inner, patch

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.patch(module)

    def __getattr__(self, attr):  # get_source, is_package...: the real loader's
        return getattr(self.inner, attr)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies a patch right after its module is first imported (no import cost otherwise)."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader, PATCHES[name])
        return spec


_installed = False


def install() -> None:
    """Patch what is imported already; hook what is imported later. Idempotent."""
    global _installed
    if _installed or not folder():
        return
    _installed = True
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport())
