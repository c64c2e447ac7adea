"""Integration-test fixtures: throw-away SSH test hosts made by tests/hosts/up.sh.

`testhosts` (session scope) brings up gpu1..gpu3 as systemd-nspawn hosts (real systemd as PID 1,
own network namespace 10.250.0.1x on bridge thbr0, own filesystem) once per test session and
always brings them down again (down.sh --purge of its state; the cached rootfs stays).

Needs root and debootstrap, systemd-nspawn, sshd, ssh, ip, unshare. Without them the tests skip
with the reason, except under CI=true, where that is a failure: CI must not silently skip.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import os
import posixpath
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from testdata import on_this_machine

HOSTS_DIR = Path(__file__).resolve().parent.parent / "hosts"
UP = HOSTS_DIR / "up.sh"
DOWN = HOSTS_DIR / "down.sh"

#: State dir of the session's hosts. Fixed (not a pytest tmp dir) so that a session killed
#: before its teardown is cleaned up by the next one; GPUHUB_TESTHOSTS_STATE overrides it.
SESSION_STATE = Path(os.environ.get("GPUHUB_TESTHOSTS_STATE", "/tmp/gpuhub-testhosts"))
SESSION_COUNT = 3
#: TESTHOSTS_* settings a developer may pass through to the session's up.sh; all others are
#: dropped so that a shell with hand-made test hosts configured can't redirect the fixture.
PASSTHROUGH_ENV = ("TESTHOSTS_ROOTFS", "TESTHOSTS_MIRROR")

# command -> Debian package
NS_TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "setsid": "util-linux",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "/usr/sbin/sshd": "openssh-server",
}
NSPAWN_TOOLS = {**NS_TOOLS, "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
                "flock": "util-linux"}
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _which(cmd: str) -> bool:
    if cmd.startswith("/"):
        return os.access(cmd, os.X_OK)
    return shutil.which(cmd, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}") is not None


def require_testhost_tools(impl: str = "nspawn") -> None:
    """Skip the calling test unless it runs as root with the harness' tools installed.

    Under CI=true a missing requirement fails instead: CI must not pass by skipping.
    """
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (tests/hosts/up.sh makes namespaces, mounts and a bridge)")
    tools = NSPAWN_TOOLS if impl == "nspawn" else NS_TOOLS
    missing = sorted(cmd for cmd in tools if not _which(cmd))
    if missing:
        packages = " ".join(sorted({tools[cmd] for cmd in missing}))
        problems.append(f"missing {', '.join(missing)} (apt-get install {packages})")
    if problems:
        message = "SSH test hosts: " + "; ".join(problems)
        if in_ci():
            pytest.fail(message + " -- CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(message)


def harness_env(state: Path, impl: str, **settings: str) -> dict[str, str]:
    """Environment for up.sh/down.sh: this process' env without stray TESTHOSTS_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TESTHOSTS_") or k in PASSTHROUGH_ENV}
    env["PATH"] = f"{env.get('PATH', '/usr/bin:/bin')}:{SBIN_PATH}"
    env.update(TESTHOSTS_STATE=str(state), TESTHOSTS_IMPL=impl)
    env.update(settings)
    return env


def run_harness(script: Path, *args: str, env: dict[str, str], check: bool = True,
                timeout: float = 900) -> subprocess.CompletedProcess:
    """Run tests/hosts/up.sh or down.sh; on failure raise with its whole output."""
    res = subprocess.run(on_this_machine(["bash", str(script), *args]), env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} exited {res.returncode}:\n"
                           f"{res.stdout}{res.stderr}")
    return res


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float | None = None):
    """Hold an flock on `path` (waiting up to `timeout` s, GPUHUB_TESTHOSTS_LOCK_TIMEOUT, 1800).

    Test hosts use fixed names and addresses: two pytest sessions on one machine take turns.
    """
    if timeout is None:
        timeout = float(os.environ.get("GPUHUB_TESTHOSTS_LOCK_TIMEOUT", "1800"))
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session holds {path} (its SSH test hosts are up)"
                                f" for more than {timeout:.0f} s", pytrace=False)
                time.sleep(1)
        yield
    finally:
        os.close(fd)


class RemoteCommandError(subprocess.CalledProcessError):
    """A command on a test host failed; str() shows its stdout and stderr."""

    def __str__(self) -> str:
        return (f"{super().__str__()}\n--- stdout ---\n{self.stdout or ''}"
                f"--- stderr ---\n{self.stderr or ''}")


class SshTestHosts:
    """Handle on SSH test hosts that up.sh brought up in `state`."""

    def __init__(self, state: Path):
        self.state = Path(state)
        self.ssh_config = self.state / "ssh_config"
        self.known_hosts = self.state / "known_hosts"
        self._addresses: dict[str, str] = {}
        for line in (self.state / "hosts.txt").read_text().splitlines():
            if line.strip():
                name, address = line.split()
                self._addresses[name] = address
        self.names: list[str] = list(self._addresses)
        self._connections: dict = {}

    def address(self, name: str) -> str:
        """The host's IPv4 address (10.250.0.(10+N) for gpuN)."""
        return self._addresses[name]

    def ssh_command(self, name: str, cmd: str | list[str]) -> list[str]:
        """argv of `ssh -F ssh_config name cmd` (a list cmd is shell-quoted for the remote shell)."""
        if not isinstance(cmd, str):
            cmd = shlex.join(cmd)
        # multiplexed (ControlPath is in ssh_config; down.sh closes the masters): ~10 ms a
        # command instead of ~100-200 ms
        return ["ssh", "-F", str(self.ssh_config), "-o", "ControlMaster=auto",
                "-o", "ControlPersist=60s", name, cmd]

    def run(self, name: str, cmd: str | list[str], check: bool = True,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        """Run `cmd` on host `name` through `ssh -F ssh_config`; text stdout/stderr captured.

        check=True raises RemoteCommandError (with the output) on a non-zero exit status.
        """
        argv = self.ssh_command(name, cmd)
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                             stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RemoteCommandError(res.returncode, argv, res.stdout, res.stderr)
        return res

    def connection(self, name: str):
        """An open fabric.Connection to `name`, configured from ssh_config (cached per host).

        Fabric reads HostName, User and IdentityFile from ssh_config but ignores
        UserKnownHostsFile/StrictHostKeyChecking (it auto-adds any host key): this connection
        checks the host key against the harness' known_hosts instead (paramiko RejectPolicy).
        """
        conn = self._connections.get(name)
        if conn is None:
            import fabric
            import paramiko

            config = fabric.Config(runtime_ssh_path=str(self.ssh_config))
            conn = fabric.Connection(
                name, config=config,
                connect_kwargs={"allow_agent": False, "look_for_keys": False})
            conn.client.load_host_keys(str(self.known_hosts))
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            conn.open()
            # paramiko leaves Nagle on: ~45 ms a command instead of ~13 ms
            conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections[name] = conn
        return conn

    def put(self, name: str, local_path_or_bytes: str | os.PathLike | bytes, remote_path: str,
            mode: int = 0o644) -> str:
        """Copy a local file (str/Path) or the given bytes to `remote_path` on `name`.

        Creates the remote parent directory, sets `mode`, and returns `remote_path`.
        """
        conn = self.connection(name)
        parent = posixpath.dirname(remote_path)
        if parent and parent != "/":
            conn.run(f"mkdir -p {shlex.quote(parent)}", hide=True, in_stream=False)
        if isinstance(local_path_or_bytes, (bytes, bytearray, memoryview)):
            conn.put(io.BytesIO(bytes(local_path_or_bytes)), remote=remote_path)
        else:
            conn.put(os.fspath(local_path_or_bytes), remote=remote_path)
        conn.sftp().chmod(remote_path, mode)
        return remote_path

    def wait_booted(self, timeout: float = 90) -> None:
        """Wait until systemd on every host has finished booting (running or degraded)."""
        for name in self.names:
            self.run(name, f"timeout {int(timeout)} systemctl is-system-running --wait >/dev/null"
                     " || true", timeout=timeout + 10)

    def close(self) -> None:
        for conn in self._connections.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        self._connections.clear()


@pytest.fixture(scope="session")
def testhosts():
    """gpu1..gpu3 as systemd-nspawn SSH test hosts, up once per session, always down at the end."""
    require_testhost_tools("nspawn")
    env = harness_env(SESSION_STATE, "nspawn")
    with exclusive_lock(SESSION_STATE.with_name(SESSION_STATE.name + ".lock")):
        # a session killed before its teardown left its hosts up: take them down (keeps keys)
        run_harness(DOWN, env=env, check=False, timeout=120)
        hosts = None
        try:
            run_harness(UP, str(SESSION_COUNT), env=env, timeout=1800)  # cold rootfs: ~1.5 min
            hosts = SshTestHosts(SESSION_STATE)
            hosts.wait_booted()
            yield hosts
        finally:
            if hosts is not None:
                hosts.close()
            run_harness(DOWN, "--purge", env=env, timeout=300)


@pytest.fixture(scope="session")
def testhost_harness():
    """The harness' helpers, for tests that run up.sh/down.sh themselves (conftest modules
    are not importable reliably: tests/conftest.py is `conftest` too)."""
    return SimpleNamespace(UP=UP, DOWN=DOWN, SshTestHosts=SshTestHosts, harness_env=harness_env,
                           run_harness=run_harness, require_testhost_tools=require_testhost_tools,
                           exclusive_lock=exclusive_lock)
