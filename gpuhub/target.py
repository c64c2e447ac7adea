"""One host, one small face: run a command as root, upload text or a file. Decides nothing.

The same class serves a fabric `Connection` (remote, over SSH) and invoke's local `Context`:
both have `run(cmd, hide=, warn=, in_stream=)`. Commands run as root: directly when the login
user is root, else through `sudo -n` (never a password prompt in the middle of a run).
"""
from __future__ import annotations

import io
import os
import re
import shlex
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from .secret import Secret, SecretInCommand, contains_secret, mask


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


_LOGIN_UID = "@@gpuhub-login-uid "
INSTALLER = "/var/lib/gpuhub/scripts/install-file.sh"  # scripts/install-file.sh on every host


def command_timeout() -> int:
    """GPUHUB_COMMAND_TIMEOUT (seconds, default 900): a whole number from 1 to 86400."""
    text = os.environ.get("GPUHUB_COMMAND_TIMEOUT", "900").strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 86400):
        raise ValueError(f"GPUHUB_COMMAND_TIMEOUT must be a whole number of seconds from 1 to 86400, "
                         f"not {text[:20]!r}")
    return int(text)


class StepFailed(Exception):
    """An action failed: host, step, command and the tail of its stderr."""

    def __init__(self, host: str, step: str, command: str, result: Result = None, reason: str = "",
                 before_restart: bool = False):
        self.host, self.step, self.command, self.result = host, step, command, result
        self.before_restart = before_restart  # nothing was restarted (a check that came first)
        self.tail = ""
        if result is not None:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            # The script's own words ("NAME: ..." lines, see scripts/) first, then the end of
            # what it printed (a journal tail, helm's error).
            # K3s's own errors (logrus: level=error / level=fatal) in a journal tail count too.
            own = [line for line in lines if re.match(r"^[a-z][a-z0-9-]*: ", line)
                   or re.search(r"level=(error|fatal)", line)][:4]
            shown = own + [line for line in lines[-8:] if line not in own]
            self.tail = "\n".join("    " + line for line in shown)
        self.reason = reason
        message = f"{host}: {step} failed" + (f": {reason}" if reason else "")
        message += f"\n  command: {command}" if command else ""
        message += f"\n{self.tail}" if self.tail else ""
        super().__init__(mask(message))

    @property
    def details(self) -> str:
        """What failed, without the host and step: the reason, or the command and its output."""
        return "\n".join(x for x in (self.reason, f"{self.command} said:\n{self.tail}" if self.tail else "") if x)


CONNECT_TIMEOUT_S = 30  # TCP connect to a host's sshd (paramiko SSHClient.connect timeout)


class Target:
    def __init__(self, name: str, runner, remote: bool):
        self.name, self.runner, self.remote = name, runner, remote
        self._root = None
        # Two commands may start at once (a step and the image-pull watch): the connection
        # is opened by one of them, never twice.
        self._opening = threading.Lock()
        # Every file laid down or removed that a rollback can undo, in order: (path, whether a
        # previous version was kept). The plan reads it to roll back files whose K3s restart did
        # not happen or did not work. Files written without a backup (work files) are not listed.
        self.written = []
        # A host that dies mid-run must not hang the whole run: every command has a deadline
        # (longer than any step waits for itself), after which the host is reported lost.
        self.timeout = command_timeout()
        # How the host is reached over SSH (sshhosts.Contact), for the message when it is not.
        self.contact = None

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
        return command if self.is_root() else f"sudo -n sh -c {shlex.quote(command)}"

    def _bound_channels(self):
        """paramiko waits an hour for a channel to open on a dead link: bound it too."""
        if self.remote and hasattr(self.runner, "open"):
            if getattr(self.runner, "connect_timeout", 0) is None:
                # fabric's default is none: a host whose link went down mid-run would hold each
                # reconnect for the kernel's SYN retries (~2 min), one after the other.
                self.runner.connect_timeout = CONNECT_TIMEOUT_S
            with self._opening:
                self.runner.open()
            transport = getattr(self.runner, "transport", None)
            if transport is not None and getattr(transport, "channel_timeout", None) != self.timeout:
                transport.channel_timeout = self.timeout
                transport.set_keepalive(15)
                # One connection carries every command of the run, many of them short: no Nagle
                # delay on their small writes (paramiko leaves the socket as it was opened).
                sock = getattr(transport, "sock", None)
                if isinstance(sock, socket.socket):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _raw(self, command: str, stdin: str = None, timeout: int = None) -> Result:
        """The one way a command reaches the host. A command line holding a secret is refused
        here, before it leaves: argv is readable by every user of the host (ps, /proc)."""
        if contains_secret(command):
            raise SecretInCommand(f"{self.name}: refused to send a command that holds a secret value")
        # in_stream=False: never read the user's terminal. `stdin` goes to the command as its
        # input (for secrets: the command reads a byte count, it does not wait for an EOF).
        self._bound_channels()
        if not self.remote:
            # Its own session: Ctrl-C at the terminal reaches gpuhub, which lets the step in
            # progress finish, instead of killing the step's shell half-way (remote steps are
            # out of the terminal's reach already).
            command = f"setsid -w sh -c {shlex.quote(command)}"
        in_stream = io.StringIO(stdin) if stdin is not None else False
        # dry=False: invoke's -R/--dry means --plan to gpuhub (cli.plan_only), so a plan's probes
        # must still run; only plans are made under it.
        r = self.runner.run(command, hide=True, warn=True, pty=False, in_stream=in_stream, echo_stdin=False,
                            dry=False, timeout=timeout or self.timeout)
        return Result(r.stdout, r.stderr, r.exited)

    def run(self, command: str, stdin: str = None, timeout: int = None) -> Result:
        """Run as root; a non-zero exit is data, never an exception. `timeout`: this command's own
        deadline when it waits longer than GPUHUB_COMMAND_TIMEOUT allows."""
        if self._root is None and self.remote:
            return self._run_learning_root(command, stdin, timeout)
        return self._raw(self._as_root(command), stdin, timeout)

    def _run_learning_root(self, command: str, stdin, timeout) -> Result:
        """The first command also tells whether the login user is root, in the same round trip
        (a separate `id -u` would cost every remote host one more SSH command per run): it goes through
        sudo only when the login user is not root, and its first line says which."""
        q = shlex.quote(command)
        wrapped = (f'u=$(id -u); echo "{_LOGIN_UID}$u"; '
                   f'if [ "$u" = 0 ]; then sh -c {q}; else sudo -n sh -c {q}; fi')
        result = self._raw(wrapped, stdin, timeout)
        first, _, rest = result.stdout.partition("\n")
        if not first.startswith(_LOGIN_UID):
            return result  # the shell itself failed: nothing learnt
        self._root = first[len(_LOGIN_UID):].strip() == "0"
        return Result(rest, result.stderr, result.exited)

    def run_as_login(self, command: str, timeout: int = None) -> Result:
        """Run as the login user, never through sudo: for reads every user may make (sysfs, the
        PCI ID database), so that they work without root or sudo rights."""
        return self._raw(command, timeout=timeout)

    def check(self, command: str, step: str, env: dict = None, stdin: str = None, timeout: int = None) -> Result:
        """Run as root with `env` (values quoted; a Secret is refused: it would sit in argv),
        and `stdin` as its input; raise StepFailed on a non-zero exit."""
        for key, value in (env or {}).items():
            if isinstance(value, Secret):
                raise SecretInCommand(f"{self.name}: {key} is a secret: pass it on stdin or in a 0600 file, "
                                      "never in a command line")
        prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items())
        full = f"env {prefix} {command}" if prefix else command
        result = self.run(full, stdin, timeout)
        if not result.ok:
            raise StepFailed(self.name, step, command, result)
        return result

    def is_root(self) -> bool:
        if self._root is None:
            self._root = self._raw("id -u").stdout.strip() == "0"
        return self._root

    def _stage(self, path: str, local: Path = None, data: bytes = None) -> str:
        """A file holding `data` (or the local file's bytes), mode 0600 from its creation on, in
        `path`'s own folder when the login user is root (so placing it is a rename, never a copy
        across filesystems), else in the login user's /tmp (install-file.sh copies it beside
        `path` first). Returns its path; a failed write is removed and reported as such."""
        q = shlex.quote
        folder = str(Path(path).parent)
        if self.is_root():
            made = self._raw(f"mkdir -p {q(folder)} && umask 077 && mktemp {q(folder)}/.gpuhub-stage.XXXXXX")
        else:
            made = self._raw("umask 077 && mktemp /tmp/.gpuhub-stage.XXXXXX")
        if not made.ok:
            raise StepFailed(self.name, "upload", f"stage {path}", made, reason=self._room(folder))
        staging = made.stdout.strip()
        try:
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
        except OSError as e:  # paramiko says only "Failure" for a full disk: ask df
            self._raw(f"rm -f {q(staging)}")
            raise StepFailed(self.name, "upload", f"write {path}",
                             reason=self._room(folder) or f"{type(e).__name__}: {e}") from None
        return staging

    def _room(self, folder: str) -> str:
        """'no space left on device ...' when the filesystem of `folder` is full, else ''."""
        free = self._raw(f"df -Pk {shlex.quote(folder)} | awk 'NR == 2 {{ print $4 }}'").stdout.strip()
        if free.isdigit() and int(free) < 64:
            return f"no space left on device: the filesystem of {folder} has {free} KiB free"
        return ""

    def _install_file(self, path: str, installer: str = INSTALLER, **env) -> bool:
        """scripts/install-file.sh with `env`; True when it kept a previous version of `path`."""
        result = self.check(f"bash {shlex.quote(installer)}", "upload", env=dict(env, DEST=path))
        kept = any(line.startswith("backup ") for line in result.stdout.splitlines())
        changed = any(line.startswith(("changed ", "removed ")) for line in result.stdout.splitlines())
        if changed and env.get("BACKUP", "true") == "true":
            self.written.append((path, kept))
        return kept

    def _install(self, staging: str, path: str, mode: int, backup: bool, installer: str = INSTALLER) -> bool:
        """Stage -> install-file.sh: fsync, keep the previous version, rename. The staging file
        goes whatever happens."""
        try:
            return self._install_file(path, installer, SRC=staging, MODE=f"{mode:04o}",
                                      BACKUP="true" if backup else "false", REMOVE_SRC="true")
        except StepFailed:
            self._raw(f"rm -f {shlex.quote(staging)}")
            raise

    def put_text(self, text: str, path: str, mode: int = 0o600, backup: bool = True) -> bool:
        """Write `text` to `path` atomically, never readable beyond `mode`, keeping the previous
        version under /var/backups/gpuhub/files (backup=False: work files). True when it kept one."""
        return self._install(self._stage(path, data=text.encode()), path, mode, backup)

    def put_file(self, local: Path, path: str, mode: int = 0o644, backup: bool = True) -> bool:
        """Copy a local file (a binary, a package, a chart) to `path` on the host, the same way."""
        return self._install(self._stage(path, local=Path(local)), path, mode, backup)

    def remove(self, path: str) -> bool:
        """Take `path` away, keeping it as the previous version."""
        return self._install_file(path, ACTION="remove")

    def restore(self, path: str, kept: bool) -> None:
        """Undo a write: put the kept previous version back, or remove what was new."""
        self.check(f"bash {shlex.quote(INSTALLER)}", "rollback",
                   env={"ACTION": "restore", "DEST": path, "PREVIOUS": "kept" if kept else "none"})

    def install_installer(self, text: str) -> None:
        """Lay install-file.sh itself down: its staged copy installs itself."""
        staging = self._stage(INSTALLER, data=text.encode())
        self._install(staging, INSTALLER, 0o700, backup=False, installer=staging)


class _TestinfraRunner:
    """Gives testinfra's host.run the (stdout, stderr, exited) face of invoke's runners."""

    def __init__(self, host):
        self.host = host

    def run(self, command, **_ignored):
        r = self.host.run(command)
        return Result(r.stdout, r.stderr, r.rc)
