"""Progress while a run changes hosts: a line when a host's step starts and one when it ends,
with its duration; while something waits (K3s Ready, pods Ready, image pulls, the GPU test), a
line every few seconds saying what it waits for and for how long it has waited.

A wait inside another (the node's Ready condition inside the K3s restart) speaks for both: only
the innermost wait of a thread prints, so one wait never gives two lines a tick.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

_STDERR = threading.Lock()


def stderr_line(line: str) -> None:
    """One progress line, whole: hosts run in threads, and print() writes the text and its newline
    as two writes, between which another host's line could land (two lines run together)."""
    with _STDERR:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


# "Every few seconds": often enough that a silent terminal never looks hung, rarely enough that
# a five-minute image pull stays readable. GPUHUB_PROGRESS_SECONDS changes it (tests use 1).
DEFAULT_EVERY_S = 10.0


def every_s() -> float:
    try:
        value = float(os.environ.get("GPUHUB_PROGRESS_SECONDS", DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return value if 0.1 <= value <= 3600 else DEFAULT_EVERY_S


def seconds(value: float) -> str:
    """A duration as people read it: 0.4 s, 12 s, 3 min 05 s."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes} min {rest:02d} s"


class Progress:
    def __init__(self, log, every: float = None, clock=time.monotonic):
        self.log, self.clock = log, clock
        self.every = every_s() if every is None else every
        self._lock = threading.Lock()
        self._waits = {}  # thread id -> [wait, ...], innermost last

    @contextlib.contextmanager
    def step(self, host: str, step: str, what: str = ""):
        """`HOST: STEP: started (WHAT)` ... `HOST: STEP: done in N s` (or `failed after N s`)."""
        started = self.clock()
        self.log(f"{host}: {step}: started" + (f" ({what})" if what else ""))
        try:
            yield
        except BaseException:
            self.log(f"{host}: {step}: failed after {seconds(self.clock() - started)}")
            raise
        self.log(f"{host}: {step}: done in {seconds(self.clock() - started)}")

    @contextlib.contextmanager
    def waiting(self, host: str, step: str, what: str, detail=None, verb: str = "waiting for"):
        """While the block runs, every `every` seconds: `HOST: STEP: waiting for WHAT (N s)`, and
        `: DETAIL` when `detail()` (read at each tick, e.g. which image each node pulls) says
        more. Yields the wait, whose `last` is the latest detail seen."""
        wait = _Wait(host, step, f"{verb} {what}", detail, self.clock())
        me = threading.get_ident()
        with self._lock:
            self._waits.setdefault(me, []).append(wait)
        ticker = threading.Thread(target=self._tick, args=(me, wait), name=f"gpuhub-wait-{host}", daemon=True)
        ticker.start()
        try:
            yield wait
        finally:
            wait.stop.set()
            ticker.join(timeout=5)
            with self._lock:
                stack = self._waits.get(me, [])
                if wait in stack:
                    stack.remove(wait)
                if not stack:
                    self._waits.pop(me, None)

    def _innermost(self, owner: int, wait) -> bool:
        with self._lock:
            stack = self._waits.get(owner) or [None]
            return stack[-1] is wait

    def _tick(self, owner: int, wait):
        while not wait.stop.wait(self.every):
            if not self._innermost(owner, wait):
                continue
            text = ""
            if wait.detail is not None:
                try:
                    text = wait.detail() or ""
                except Exception:  # noqa: BLE001 - progress is a courtesy; the wait itself decides
                    text = ""
            if text:
                wait.last = text
            if wait.stop.is_set():
                return
            self.log(f"{wait.host}: {wait.step}: {wait.what} ({seconds(self.clock() - wait.started)})"
                     + (f": {text}" if text else ""))


class _Wait:
    def __init__(self, host, step, what, detail, started):
        self.host, self.step, self.what, self.detail, self.started = host, step, what, detail, started
        self.stop = threading.Event()
        self.last = ""

