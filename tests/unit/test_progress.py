"""Progress lines: a start and an end per host and step with its duration, a line every few
seconds while something waits (only the innermost wait of a thread speaks), colours only where
they belong."""
import io
import threading
import time

import pytest

from gpuhub import progress, term


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_step_says_when_it_starts_and_how_long_it_took():
    lines, clock = [], Clock()
    p = progress.Progress(lines.append, every=60, clock=clock)
    with p.step("gpu1", "k3s.install", "2 change(s)"):
        clock.now += 12.4
    assert lines == ["gpu1: k3s.install: started (2 change(s))", "gpu1: k3s.install: done in 12 s"]


def test_a_failing_step_says_after_how_long_and_the_error_goes_on():
    lines, clock = [], Clock()
    p = progress.Progress(lines.append, every=60, clock=clock)
    with pytest.raises(RuntimeError):
        with p.step("gpu2", "gpu.runtime"):
            clock.now += 200
            raise RuntimeError("boom")
    assert lines[-1] == "gpu2: gpu.runtime: failed after 3 min 20 s"


@pytest.mark.parametrize("value, text", [(0.42, "0.4 s"), (9.96, "10.0 s"), (59.4, "59 s"), (61, "1 min 01 s")])
def test_durations_read_as_people_write_them(value, text):
    assert progress.seconds(value) == text


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "no progress line came"
        time.sleep(0.01)


def test_a_wait_says_every_few_seconds_what_it_waits_for_and_since_when():
    lines = []
    p = progress.Progress(lines.append, every=0.05)
    seen = {"text": "node gpu1 is not Ready: kubelet starting"}
    with p.waiting("gpu1", "restart-k3s", "node gpu1 to report Ready", detail=lambda: seen["text"]) as wait:
        wait_for(lambda: len(lines) >= 2)
    assert all(line.startswith("gpu1: restart-k3s: waiting for node gpu1 to report Ready (") for line in lines)
    assert lines[0].endswith("): node gpu1 is not Ready: kubelet starting")
    assert wait.last == seen["text"]
    count = len(lines)
    time.sleep(0.2)
    assert len(lines) == count, "a finished wait says nothing more"


def test_only_the_innermost_wait_of_a_thread_speaks():
    lines = []
    p = progress.Progress(lines.append, every=0.05)
    with p.waiting("gpu1", "k3s.install", "install K3s", verb="still at:"):
        with p.waiting("gpu1", "k3s.install", "the K3s install"):
            wait_for(lambda: len(lines) >= 3)
    assert all("waiting for the K3s install" in line for line in lines), lines


def test_waits_of_other_threads_speak_for_themselves():
    lines = []
    p = progress.Progress(lines.append, every=0.05)
    release = threading.Event()

    def agent():
        with p.waiting("gpu2", "restart-k3s", "k3s-agent to be active again"):
            release.wait(5)
    other = threading.Thread(target=agent)
    other.start()
    with p.waiting("gpu1", "gpu.plugin", "gpu1 to offer its GPUs"):
        wait_for(lambda: any(line.startswith("gpu2:") for line in lines) and any(line.startswith("gpu1:") for line in lines))
    release.set()
    other.join()


def test_a_detail_that_fails_never_breaks_the_wait():
    lines = []
    p = progress.Progress(lines.append, every=0.05)

    def broken():
        raise OSError("connection reset")
    with p.waiting("gpu1", "hub.launch", "helm", detail=broken):
        wait_for(lambda: lines)
    assert lines[0].startswith("gpu1: hub.launch: waiting for helm (")


def test_the_interval_comes_from_the_environment_within_bounds(monkeypatch):
    monkeypatch.setenv("GPUHUB_PROGRESS_SECONDS", "2")
    assert progress.every_s() == 2
    for bad in ("0", "-1", "soon", "1e9"):
        monkeypatch.setenv("GPUHUB_PROGRESS_SECONDS", bad)
        assert progress.every_s() == progress.DEFAULT_EVERY_S


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_colours_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert term.enabled(Tty()) and not term.enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not term.enabled(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: set *and not empty*
    assert term.enabled(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not term.enabled(Tty())
    assert term.paint("blocked ", "blocked", True) == "\033[31mblocked \033[0m"
    assert term.paint("blocked ", "blocked", False) == "blocked "


def test_a_progress_line_reaches_stderr_in_one_write_with_its_newline(monkeypatch):
    """Hosts log from threads: a line written as text then newline (print) can have another
    host's line land between the two, and two lines run together."""
    import sys
    from gpuhub import progress

    class Recorder:
        def __init__(self):
            self.writes = []

        def write(self, text):
            self.writes.append(text)

        def flush(self):
            pass
    recorder = Recorder()
    monkeypatch.setattr(sys, "stderr", recorder)
    progress.stderr_line("gpu2: restart-k3s: done in 1.3 s")
    progress.stderr_line("gpu3: k3s.install: started (3 change(s))")
    assert recorder.writes == ["gpu2: restart-k3s: done in 1.3 s\n", "gpu3: k3s.install: started (3 change(s))\n"]
