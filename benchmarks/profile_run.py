"""Where one gpuhub run's time goes: runs `fab ARGS...` in this process with gpuhub's one way to
a host's shell (Target._raw) and its upload path (Target._stage) timed, then writes a markdown
summary. Product code is not changed: the two methods are wrapped from outside.

    python benchmarks/profile_run.py OUT.md ARGS...     (ARGS as given to fab)
"""
import re
import shlex
import sys
import threading
import time
from collections import defaultdict

from fabric.main import program

from gpuhub import target

EVENTS = []       # (kind, host, text, start, end, depth)
_depth = threading.local()


def _timed(kind, method):
    def wrapper(self, first="", *args, **kwargs):
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        start = time.perf_counter()
        try:
            return method(self, first, *args, **kwargs)
        finally:
            _depth.n = depth
            EVENTS.append((kind, self.name, str(first), start, time.perf_counter(), depth))
    return wrapper


def category(kind: str, text: str) -> str:
    if kind == "upload":
        return "upload: stage + SFTP write"
    if text.startswith('u=$(id -u); echo "@@gpuhub-login-uid'):
        # The first command of a host learns whether the login is root on its way
        # (Target._run_learning_root): name what it carries.
        lexer = shlex.shlex(text.split("then sh -c ", 1)[1], posix=True)
        lexer.whitespace_split = True
        inner = lexer.get_token()  # the one shell word that quotes the command
        return category(kind, inner) + " (first: learns root)"
    lock = re.search(r"# gpuhub run lock: (\w+)", text)
    if re.search(r"@@gpuhub-[0-9a-f]+ begin ", text):
        return "facts: one probe round" + (f" + run lock {lock.group(1)}" if lock else "")
    if lock:
        return f"run lock: {lock.group(1)}"
    if "install-file.sh" in text:
        return "upload: install-file.sh places it"
    if "gpu-test.sh" in text:
        return "GPU test Job (scripts/gpu-test.sh)"
    script = re.search(r"scripts/([\w.-]+\.(?:sh|py))\b", text)
    if script:
        return f"script: {script.group(1)}"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    return f"other: `{line[:40]}`".replace("|", "\\|")


def report(argv: list, wall: float, rc) -> str:
    by_cat = defaultdict(lambda: [0, 0.0])
    per_host = defaultdict(lambda: defaultdict(int))
    for kind, host, text, start, end, depth in EVENTS:
        if kind == "command":
            per_host[host]["commands"] += 1
        else:
            per_host[host]["uploads"] += 1
        if depth == 0:  # time counted once: an upload's own mktemp is inside the upload
            by_cat[category(kind, text)][0] += 1
            by_cat[category(kind, text)][1] += end - start
    t0 = min((e[3] for e in EVENTS), default=0)
    lines = ["# Profile: one converged `fab provision` on 3 hosts", "",
             f"`fab {' '.join(a if not a.startswith('/') else a.rsplit('/', 1)[1] for a in argv)}`: "
             f"{wall:.2f} s wall, exit {rc}. Every command gpuhub sent (`Target._raw`) and every upload "
             "(`Target._stage`) timed from outside (benchmarks/profile_run.py). Hosts run in parallel, so the "
             "times add up to more than the wall time.", "",
             "| where | calls | seconds |", "| --- | --- | --- |"]
    for cat, (count, secs) in sorted(by_cat.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {cat} | {count} | {secs:.2f} |")
    lines += ["", "| host | SSH commands | uploads |", "| --- | --- | --- |"]
    for host in sorted(per_host):
        lines.append(f"| {host} | {per_host[host]['commands']} | {per_host[host]['uploads']} |")
    lines += ["", "The 15 longest calls (start offset from the first call):", "",
              "| start | seconds | host | what |", "| --- | --- | --- | --- |"]
    longest = sorted((e for e in EVENTS if e[5] == 0), key=lambda e: e[3] - e[4])[:15]
    for kind, host, text, start, end, _ in sorted(longest, key=lambda e: e[3]):
        what = category(kind, text)
        if not what.startswith(("other", "upload")):
            what += f" `{text[:60].strip()}`".replace("|", "\\|")
        lines.append(f"| {start - t0:.2f} | {end - start:.2f} | {host} | {what} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    target.Target._raw = _timed("command", target.Target._raw)
    target.Target._stage = _timed("upload", target.Target._stage)
    start, rc = time.perf_counter(), 0
    try:
        program.run(["fab", *argv])
    except SystemExit as e:
        rc = e.code
    finally:
        with open(out, "w") as f:
            f.write(report(argv, time.perf_counter() - start, rc))


if __name__ == "__main__":
    main()
