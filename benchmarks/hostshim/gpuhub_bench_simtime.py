"""BENCHMARK shim laid on a test host by benchmarks/run.py (not product, not simulation).

Loaded at every Python start through a .pth file, so the simulated k3s/kubectl/helm stay byte
for byte what gpuhub installed (it compares their sha256). At exit, a simulated tool's process
appends when it started and ended, so the benchmark can tell the simulated tools' own time from
gpuhub's. Long-running daemons (`k3s server`, `k3s agent`) are left out.
"""
import atexit
import json
import os
import sys
import time

LOG = "/var/log/gpuhub-bench/simtime.log"
TOOLS = {"k3s", "kubectl", "helm", "crictl", "ctr"}


def _exec_time() -> float:
    """This process' exec time (epoch seconds): /proc/self/stat's starttime is in clock ticks since
    boot, so interpreter start-up counts too (10 ms resolution)."""
    ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))


def _record() -> None:
    # sys.argv is read at exit: it may not be set yet while .pth files run
    argv = list(getattr(sys, "argv", None) or [])
    if not argv or os.path.basename(argv[0]) not in TOOLS or argv[1:2] in (["server"], ["agent"]):
        return
    try:
        entry = {"argv": [os.path.basename(argv[0])] + argv[1:4], "start": _exec_time(), "end": time.time()}
        os.makedirs(os.path.dirname(LOG), exist_ok=True)
        with open(LOG, "a") as out:
            out.write(json.dumps(entry) + "\n")
    except OSError:
        pass


atexit.register(_record)
