"""One host, one small face: run a command as root, upload text or a file. Decides nothing.

The same class serves a fabric `Connection` (remote, over SSH) and invoke's local `Context`:
both have `run(cmd, hide=, warn=, in_stream=)`. Commands run as root: directly when the login
user is root, else through `sudo -n` (never a password prompt in the middle of a run).
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


class StepFailed(Exception):
    """An action failed: host, step, command and the tail of its stderr."""

    def __init__(self, host: str, step: str, command: str, result: Result = None, reason: str = ""):
        self.host, self.step, self.command, self.result = host, step, command, result
        tail = ""
        if result is not None:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()[-8:]
            tail = "\n".join("    " + line for line in lines)
        message = f"{host}: {step} failed" + (f": {reason}" if reason else "")
        message += f"\n  command: {command}" if command else ""
        message += f"\n{tail}" if tail else ""
        super().__init__(message)


class Target:
    def __init__(self, name: str, runner, remote: bool):
        self.name, self.runner, self.remote = name, runner, remote
        self._root = None
        # A host that dies mid-run must not hang the whole run: every command has a deadline
        # (longer than any step waits for itself), after which the host is reported lost.
        self.timeout = int(os.environ.get("GPUHUB_COMMAND_TIMEOUT", "900"))

    @classmethod
    def for_connection(cls, name: str, connection) -> "Target":
        return cls(name, connection, remote=True)

    @classmethod
    def for_local(cls, context) -> "Target":
        return cls("localhost", context, remote=False)

    @classmethod
    def for_testinfra(cls, name: str, host) -> "Target":
        """testinfra's `host` (audits): read-only use, so only `run` is adapted."""
        return cls(name, _TestinfraRunner(host), remote=True)

    def _as_root(self, command: str) -> str:
        if self._root is None:
            self._root = self._raw("id -u").stdout.strip() == "0"
        return command if self._root else f"sudo -n sh -c {shlex.quote(command)}"

    def _bound_channels(self):
        """paramiko waits an hour for a channel to open on a dead link: bound it too."""
        if self.remote and hasattr(self.runner, "open"):
            self.runner.open()
            transport = getattr(self.runner, "transport", None)
            if transport is not None and getattr(transport, "channel_timeout", None) != self.timeout:
                transport.channel_timeout = self.timeout
                transport.set_keepalive(15)

    def _raw(self, command: str) -> Result:
        # in_stream=False: never read the user's terminal. (Uploads go over SFTP, not stdin:
        # fabric does not send EOF when an in_stream ends, so `cat > file` would wait forever.)
        self._bound_channels()
        r = self.runner.run(command, hide=True, warn=True, pty=False, in_stream=False, timeout=self.timeout)
        return Result(r.stdout, r.stderr, r.exited)

    def run(self, command: str) -> Result:
        """Run as root; a non-zero exit is data, never an exception."""
        return self._raw(self._as_root(command))

    def check(self, command: str, step: str, env: dict = None) -> Result:
        """Run as root with `env` (values quoted); raise StepFailed on a non-zero exit."""
        prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items())
        full = f"env {prefix} {command}" if prefix else command
        result = self.run(full)
        if not result.ok:
            raise StepFailed(self.name, step, command, result)
        return result

    def _stage(self, local: Path = None, data: bytes = None) -> str:
        """A file on the host, owned by the login user and mode 0600 from its creation on,
        holding `data` or the local file's bytes. The caller moves it into place as root."""
        made = self._raw("umask 077 && mktemp /tmp/.gpuhub-upload.XXXXXX")
        if not made.ok:
            raise StepFailed(self.name, "upload", "mktemp", made)
        staging = made.stdout.strip()
        if self.remote:
            sftp = self.runner.sftp()
            if local is not None:
                sftp.put(str(local), staging)  # opens the existing 0600 file: its mode stays
            else:
                with sftp.open(staging, "wb") as f:
                    f.write(data)
        else:
            with open(staging, "wb") as f:
                f.write(data if local is None else Path(local).read_bytes())
        return staging

    def _place(self, staging: str, path: str, mode: int, what: str):
        q = shlex.quote
        result = self.run(f"mkdir -p {q(str(Path(path).parent))} && chown 0:0 {q(staging)} && "
                          f"chmod {mode:o} {q(staging)} && mv -f {q(staging)} {q(path)}")
        if not result.ok:
            self._raw(f"rm -f {q(staging)}")
            raise StepFailed(self.name, "upload", what, result)

    def put_text(self, text: str, path: str, mode: int = 0o600) -> None:
        """Write `text` to `path` atomically (rename), never readable beyond `mode`."""
        self._place(self._stage(data=text.encode()), path, mode, f"write {path}")

    def put_file(self, local: Path, path: str, mode: int = 0o644) -> None:
        """Copy a local file (a binary, a package, a chart) to `path` on the host."""
        self._place(self._stage(local=Path(local)), path, mode, f"install {local} as {path}")


class _TestinfraRunner:
    """Gives testinfra's host.run the (stdout, stderr, exited) face of invoke's runners."""

    def __init__(self, host):
        self.host = host

    def run(self, command, **_ignored):
        r = self.host.run(command)
        return Result(r.stdout, r.stderr, r.rc)
