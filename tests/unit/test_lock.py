"""The run lock's shell scripts, run for real against a lock file in a temporary folder."""
import os
import socket
import subprocess
import threading

import pytest

from gpuhub import lock
from gpuhub.target import Result


class Shell:
    """A target that runs commands in a local shell: here only on a lock in tmp_path."""

    def __init__(self):
        self.commands = []

    def run(self, command, stdin=None):
        self.commands.append(command)
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return Result(done.stdout, done.stderr, done.returncode)


MADE = []


@pytest.fixture
def where(tmp_path, monkeypatch):
    """The lock's paths in tmp_path. Every RunLocks made is released before the paths go back:
    a refresher thread left running would otherwise refresh the real /run/gpuhub 10 s later."""
    monkeypatch.setattr(lock, "LOCK_DIR", str(tmp_path / "gpuhub"))
    monkeypatch.setattr(lock, "LOCK", str(tmp_path / "gpuhub" / "run.lock"))
    monkeypatch.setattr(lock, "GUARD", str(tmp_path / "gpuhub" / ".lock-guard"))
    yield tmp_path / "gpuhub" / "run.lock"
    while MADE:
        MADE.pop().release()


def locks(log, holder=None):
    made = lock.RunLocks({"gpu1": Shell()}, log.append, holder=holder)
    MADE.append(made)
    return made


def holder(who="alice@laptop pid 4242"):
    return lock.Holder(id=os.urandom(4).hex(), who=who, started="2026-12-01T08:00:00Z", command="fab provision")


def test_a_held_lock_refuses_with_its_holder_and_is_left_alone(where):
    log = []
    first = locks(log, holder())
    assert first.acquire() == {}
    assert where.read_text().splitlines()[1] == "who=alice@laptop pid 4242"
    assert oct(where.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(lock.LockHeld, match=r"gpu1: held by alice@laptop pid 4242 since 2026-12-01T08:00:00Z "
                                            r"running `fab provision`, last refreshed \d+ s ago"):
        locks(log).acquire()
    assert "id=" + first.holder.id in where.read_text()
    first.release()
    assert not where.exists()


def test_a_stale_lock_is_taken_over_and_its_old_holder_loses_it(where):
    log = []
    old = locks(log, holder())
    old.acquire()
    os.utime(where, (0, os.path.getmtime(where) - lock.STALE_S - 5))
    new = locks(log)
    assert new.acquire() == {}
    assert any("took over the run lock of a run that stopped refreshing it" in line for line in log)
    assert old.targets["gpu1"].run(lock.refresh_script(old.holder)).exited == lock.LOST
    old.release()  # not its lock any more: left in place
    assert "id=" + new.holder.id in where.read_text()
    new.release()


def test_the_lock_of_a_run_of_this_machine_that_ended_is_taken_over_at_once(where):
    dead = subprocess.Popen(["true"])
    dead.wait()
    log = []
    locks(log, holder(f"root@{socket.gethostname()} pid {dead.pid}")).acquire()
    assert locks(log).acquire() == {}
    assert any("took over the run lock of a run that has ended" in line for line in log)


def test_a_live_run_of_this_machine_is_not_taken_over(where):
    log = []
    locks(log, holder(f"root@{socket.gethostname()} pid {os.getpid()}")).acquire()
    with pytest.raises(lock.LockHeld):
        locks(log).acquire()


def test_an_unreachable_host_is_reported_not_raised(where):
    class Down:
        def run(self, command, stdin=None):
            raise OSError("No route to host")
    runs = lock.RunLocks({"gpu1": Shell(), "gpu9": Down()}, [].append)
    MADE.append(runs)
    unreachable = runs.acquire()
    assert list(unreachable) == ["gpu9"] and runs.held == {"gpu1"}
    runs.release()
    assert not where.exists()


def test_a_first_try_sent_with_the_facts_takes_the_lock_without_a_command_of_its_own(where):
    """The run sends first_try() inside its fact script; acquire reads that outcome."""
    log = []
    runs = locks(log)
    shell = runs.targets["gpu1"]
    first = shell.run(runs.first_try())
    shell.commands.clear()
    assert runs.acquire({"gpu1": first}) == {}
    assert runs.held == {"gpu1"} and shell.commands == []
    assert "id=" + runs.holder.id in where.read_text()


def test_a_first_try_that_met_another_run_refuses_or_with_wait_tries_again(where, monkeypatch):
    monkeypatch.setattr(lock, "WAIT_POLL_S", 0.2)
    log = []
    other = locks(log, holder())
    other.acquire()
    runs = locks(log)
    first = runs.targets["gpu1"].run(runs.first_try())
    assert first.exited == lock.HELD
    with pytest.raises(lock.LockHeld, match="held by alice@laptop"):
        runs.acquire({"gpu1": first})
    waiting = lock.RunLocks({"gpu1": Shell()}, log.append, wait=True)
    MADE.append(waiting)
    first = waiting.targets["gpu1"].run(waiting.first_try())
    releaser = threading.Timer(0.5, other.release)
    releaser.start()
    assert waiting.acquire({"gpu1": first}) == {}
    releaser.join()
    assert waiting.held == {"gpu1"} and len(waiting.targets["gpu1"].commands) >= 2
    assert any("waiting for the run lock, held by alice@laptop" in line for line in log)
