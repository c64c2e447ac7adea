"""One run at a time per host: a run that may change hosts holds a lock on each of them.

The lock is a file under /run (tmpfs: a reboot clears it) naming its holder (who, where, since
when, which command). The holding run refreshes it every REFRESH_S seconds; a lock not refreshed
for STALE_S seconds belongs to a run that died, and the next run takes it over, saying whose it
was (k0sctl's scheme, which refreshes every 10 s). Taking, refreshing and releasing happen under
`flock` on the host, so two runs deciding at the same moment cannot both win. plan, status and
audit take no lock.

A run reads each host's facts with a read-only check of its lock (check_script): another live
run's lock stops it there. It takes the lock only of the hosts it will change, after planning,
with their facts read again in the same round trip (first_try): what it applies was planned on
facts read under the lock, and a converged run writes nothing, not even a lock (issue 13).
"""
from __future__ import annotations

import getpass
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

LOCK_DIR = "/run/gpuhub"
LOCK = f"{LOCK_DIR}/run.lock"
GUARD = f"{LOCK_DIR}/.lock-guard"
REFRESH_S = 10
STALE_S = 45
WAIT_POLL_S = 5
RELEASE_WAIT_S = 30
HELD, LOST = 73, 74


class LockHeld(Exception):
    """Another live run holds the lock of at least one host: nothing was changed."""


@dataclass
class Holder:
    id: str
    who: str
    started: str
    command: str

    def describe(self, age: str = "") -> str:
        refreshed = f", last refreshed {age} s ago" if age else ""
        return f"{self.who} since {self.started} running `{self.command}`{refreshed}"


def me() -> Holder:
    command = " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]).replace("\n", " ")[:300]
    return Holder(id=secrets.token_hex(8), who=f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}",
                  started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=command)


def _guarded(body: str, verb: str) -> str:
    """A shell script that runs `body` holding the host's lock guard (flock), as root."""
    return (f"# gpuhub run lock: {verb}\n"
            f"mkdir -p {LOCK_DIR} && chmod 0700 {LOCK_DIR} && exec 9>>{GUARD} && flock -w 10 9 || exit 75\n"
            + body)


def acquire_script(holder: Holder, dead: str = "") -> str:
    """Take the lock unless a live run holds it; `dead`: the id of a holder known to be gone."""
    q = shlex.quote
    record = " ".join(q(f"{k}={getattr(holder, k)}") for k in ("id", "who", "started", "command"))
    gone = f"! grep -qxF {q('id=' + dead)} {LOCK} && " if dead else ""
    return _guarded(
        f"if [ -f {LOCK} ]; then\n"
        f"  age=$(( $(date +%s) - $(stat -c %Y {LOCK}) ))\n"
        f"  if {gone}[ \"$age\" -lt {STALE_S} ]; then echo \"age=$age\"; cat {LOCK}; exit {HELD}; fi\n"
        f"  echo \"stale=$age\"; cat {LOCK}\n"
        "fi\n"
        f"umask 077 && printf '%s\\n' {record} > {LOCK}.new && mv -f {LOCK}.new {LOCK} && echo acquired\n", "acquire")


def check_script() -> str:
    """Read-only: exit HELD with the holder's record when a live run holds the lock (what
    acquire_script would refuse), else nothing. Sent with the facts: the run takes a lock only
    on the hosts it will change, after planning."""
    return (f"# gpuhub run lock: check\n"
            f"if [ -f {LOCK} ]; then\n"
            f"  age=$(( $(date +%s) - $(stat -c %Y {LOCK}) ))\n"
            f"  if [ \"$age\" -lt {STALE_S} ]; then echo \"age=$age\"; cat {LOCK}; exit {HELD}; fi\n"
            "fi\n")


def refresh_script(holder: Holder) -> str:
    return _guarded(f"grep -qxF {shlex.quote('id=' + holder.id)} {LOCK} 2>/dev/null || exit {LOST}\n"
                    f"touch {LOCK}\n", "refresh")


def release_script(holder: Holder) -> str:
    return _guarded(f"if grep -qxF {shlex.quote('id=' + holder.id)} {LOCK} 2>/dev/null; then rm -f {LOCK}; fi\n",
                    "release")


def ended_here(who: str) -> bool:
    """`who` names a process of this machine that has ended."""
    user_host, _, pid = who.partition(" pid ")
    if user_host.partition("@")[2] != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def parse_record(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class RunLocks:
    """The locks of one run on its hosts (name -> Target)."""

    def __init__(self, targets: dict, log, wait: bool = False, holder: Holder = None):
        self.targets, self.log, self.wait = targets, log, wait
        self.holder = holder or me()
        self.held, self.lost = set(), set()
        self.checked = False  # the run checked every host's lock with its first facts
        self._stop = threading.Event()
        self._threads = []

    def first_try(self) -> str:
        """The command of a first try, for a run to send with a round trip to each host (its
        facts, read again under the lock): an uncontended run then takes its lock without a
        command of its own."""
        return acquire_script(self.holder)

    def held_by(self, result) -> str:
        """check_script's outcome -> the description of the live run holding the lock, or ''
        (free, stale, or held by a run of this machine that has ended)."""
        if result.exited != HELD:
            return ""
        record = parse_record(result.stdout)
        other = Holder(record.get("id", "?"), record.get("who", "?"), record.get("started", "?"),
                       record.get("command", "?"))
        return "" if ended_here(other.who) else other.describe(record.get("age", ""))

    def refuse(self, held: dict):
        """LockHeld for {name: holder description}, releasing what this run took."""
        self.release()
        raise LockHeld("another gpuhub run is changing " + "; ".join(
            f"{n}: held by {o}" for n, o in held.items()) + ". Wait for it (or pass --wait); a lock that "
            f"is not refreshed for {STALE_S} s is taken over")

    def _try(self, name: str, dead: str = "", result=None):
        """None when taken; the holder's description when another live run has it. `result`: a
        first try already made (first_try's outcome), else one is made now."""
        if result is None:
            result = self.targets[name].run(acquire_script(self.holder, dead))
        record = parse_record(result.stdout)
        if result.exited == HELD:
            other = Holder(record.get("id", "?"), record.get("who", "?"), record.get("started", "?"),
                           record.get("command", "?"))
            if not dead and ended_here(other.who):
                # A run of this machine that no longer exists (it lost the host, then ended): no
                # need to wait for its lock to go stale.
                return self._try(name, dead=other.id)
            return other.describe(record.get("age", ""))
        if result.exited != 0 or "acquired" not in result.stdout.split():
            raise RuntimeError(f"could not take the run lock {LOCK}: "
                               + (result.stderr.strip() or result.stdout.strip() or f"exit {result.exited}"))
        if "stale" in record:
            why = "has ended" if dead else f"stopped refreshing it {record['stale']} s ago"
            self.log(f"{name}: took over the run lock of a run that {why} "
                     f"({record.get('who', '?')}, `{record.get('command', '?')}`)")
        self.held.add(name)
        return None

    def _acquire_one(self, name: str, first=None):
        """(name, None | holder description | Exception); `first`: the outcome of first_try."""
        started = time.monotonic()
        try:
            while True:
                other, first = self._try(name, result=first), None
                if other is None or not self.wait:
                    return name, other
                self.log(f"{name}: waiting for the run lock, held by {other} "
                         f"(waited {int(time.monotonic() - started)} s)")
                time.sleep(WAIT_POLL_S)
        except Exception as e:  # unreachable: the run reports it per host
            return name, e

    def acquire(self, first: dict = None, names=None) -> dict:
        """Take the locks of `names` (default: every host's), waiting with --wait. -> {name:
        error} for hosts that could not be reached. Raises LockHeld, releasing what it took, when
        another run holds any. `first`: {name: Result} of first tries already made (first_try);
        the others, and a first try that met another run's lock, go on here."""
        first = first or {}
        wanted = [n for n in (self.targets if names is None else names) if n in self.targets and n not in self.held]
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(lambda name: self._acquire_one(name, first.get(name)), wanted))
        held = {n: o for n, o in outcomes if isinstance(o, str)}
        if held:
            self.refuse(held)
        # One refresher per host: a host that stops answering must not keep the others' locks
        # from being refreshed.
        self._threads += [self._daemon(self._refresh, name) for name, o in outcomes if o is None]
        return {n: o for n, o in outcomes if isinstance(o, Exception)}

    @staticmethod
    def _daemon(function, name):
        thread = threading.Thread(target=function, args=(name,), name=f"gpuhub-lock-{name}", daemon=True)
        thread.start()
        return thread

    def _refresh(self, name: str):
        while not self._stop.wait(REFRESH_S) and name not in self.lost:
            try:
                result = self.targets[name].run(refresh_script(self.holder))
            except Exception:  # noqa: BLE001 - a host lost mid-run is reported by the run itself
                continue
            if result.exited == LOST:
                self.lost.add(name)
                self.log(f"{name}: the run lock was taken over by another run: no further change here")

    def _release(self, name: str):
        try:
            self.targets[name].run(release_script(self.holder))
            self.held.discard(name)
        except Exception:  # noqa: BLE001 - reported below
            pass

    def release(self):
        """Release every lock taken, in parallel; a host that does not answer within
        RELEASE_WAIT_S is left to the next run (a lock of an ended run is taken over)."""
        self._stop.set()
        releasing = [self._daemon(self._release, name) for name in sorted(self.held)]
        deadline = time.monotonic() + RELEASE_WAIT_S
        for thread in releasing:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for name in sorted(self.held):
            self.log(f"{name}: could not release the run lock; the next run takes it over")
        self.held.clear()
