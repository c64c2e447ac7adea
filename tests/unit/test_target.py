"""How a Target reaches a host: one connection, opened once, with bounded waits."""
import threading
import time

from gpuhub import target
from gpuhub.target import Target


class FakeConnection:
    """A fabric Connection's face: open() (slow, counted), run(), connect_timeout."""

    def __init__(self):
        self.connect_timeout = None  # fabric's default: no bound at all
        self.opened = 0
        self._lock = threading.Lock()
        self.connected = False

    def open(self):
        if self.connected:
            return
        time.sleep(0.05)
        with self._lock:
            self.opened += 1
        self.connected = True

    def run(self, command, **kwargs):
        from invoke import Result
        return Result(stdout="0\n" if "id -u" in command else "", exited=0)


def test_two_first_commands_at_once_open_one_connection_with_a_connect_timeout():
    connection = FakeConnection()
    host = Target.for_connection("gpu1", connection)
    threads = [threading.Thread(target=host.run, args=("true",)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert connection.opened == 1
    assert connection.connect_timeout == target.CONNECT_TIMEOUT_S
