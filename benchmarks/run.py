#!/usr/bin/env python3
"""How fast is a converged gpuhub run? A benchmark SCRIPT, not a test (no timed test exists).

    sudo .venv/bin/python benchmarks/run.py [--runs 5] [--quick]

Needs root: it brings up 8 systemd-nspawn SSH test hosts (tests/hosts/up.sh, its own
TESTHOSTS_STATE), holding the integration tests' lock /tmp/gpuhub-testhosts.lock the whole
time they are up, so it never meets (or tears down) a test session's hosts. It gives them
simulated GPUs, provisions one 8-node cluster (gpu1 server, gpu2..gpu8 agents) through the
airgap path with the simulated toolchain, as tests/integration/test_provision.py does, then
times, after one warm-up round and interleaved case by case in every round:

- converged `fab provision`, `fab plan`, `fab audit` with -H naming 1, 3 and 8 of the hosts;
- the same read-only checks as an Ansible playbook (benchmarks/readonly.yml, ansible-core from
  PyPI in benchmarks/.venv, Ansible's defaults; each run starts without a live ssh master);
- the floor: a fresh process opening one Fabric connection per host and running `true`;
- `inv plan` on THIS machine in a fresh process. It only reads (gpuhub's plan changes nothing),
  but it does read this machine: fine for a benchmark script, never done by a test.

Per run and host it counts SSH sessions from the hosts' sshd (LogLevel VERBOSE logs "Starting
session: command ..." per exec request and "... subsystem 'sftp'" per SFTP session, in the
host's journal), and it measures the simulated tools' own time on the hosts (hostshim/: each
simulated k3s/kubectl/helm process logs its exec and exit time); "gpuhub's own" time is the
wall time minus the time during which at least one simulated tool ran on some host.

Writes benchmarks/results/results.{md,json,png} and profile.md (one converged `fab provision`
on 3 hosts, every command and upload timed). Network: only the hosts' 10.250.0.0/24 bridge.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
TOOLS_VENV = BENCH / ".venv"
TOOLS_PACKAGES = ("ansible-core==2.19.14", "matplotlib")
# the integration tests' lock and a state folder of our own (tests/integration/conftest.py)
LOCK = Path("/tmp/gpuhub-testhosts.lock")
STATE = Path(os.environ.get("GPUHUB_BENCH_STATE", "/tmp/gpuhub-bench-testhosts"))
HOSTS = [f"gpu{i}" for i in range(1, 9)]
COUNTS = (1, 3, 8)
GPUS = {name: 2 if name == "gpu2" else 1 for name in HOSTS}
SECRETS = {"GPUHUB_GITHUB_CLIENT_ID": "sim-client-id", "GPUHUB_GITHUB_CLIENT_SECRET": "sim-client-secret"}
SIMTIME_LOG = "/var/log/gpuhub-bench/simtime.log"


STARTED = time.time()


def say(message: str) -> None:
    print(f"run.py [{time.time() - STARTED:3.0f} s]: {message}", file=sys.stderr)


def project_python() -> None:
    """Re-run in the project's venv (gpuhub, fabric, the test harness) when started elsewhere."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        if not venv_python.exists():
            sys.exit("benchmarks/run.py: make the project venv first (see README): "
                     "python3 -m venv .venv && .venv/bin/pip install -e '.[test,hubcheck]'")
        os.execv(str(venv_python), [str(venv_python), *sys.argv])


def tools_venv() -> Path:
    """benchmarks/.venv with ansible-core and matplotlib (kept out of the project's venv)."""
    if not (TOOLS_VENV / "bin" / "ansible-playbook").exists() or not (TOOLS_VENV / "bin" / "python").exists():
        say("installing ansible-core and matplotlib into benchmarks/.venv")
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        subprocess.run([str(TOOLS_VENV / "bin" / "pip"), "install", "-q", *TOOLS_PACKAGES], check=True)
    return TOOLS_VENV / "bin"


def load_harness():
    """The integration tests' own helpers for test hosts (SshTestHosts, up.sh/down.sh runners):
    loaded by path, since tests/conftest.py is also called `conftest`."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
    spec = importlib.util.spec_from_file_location("integration_conftest", ROOT / "tests/integration/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def testhosts_lock():
    """The lock the pytest fixture holds while its hosts are up: take turns with test sessions."""
    fd = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for {LOCK} (a test session has its hosts up)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def inventory(bundle: dict, names: list) -> dict:
    """One server and the rest agents; gpu2 has two whole GPUs, every other host one shared x4."""
    hosts = {}
    for name in names:
        hosts[name] = {"role": "server" if name == names[0] else "agent", "gpus": GPUS[name]}
        if GPUS[name] > 1:
            hosts[name]["sharing"] = "none"
    hosts[names[0]]["address"] = "10.250.0.11"
    return {
        "gpu": {"replicas": 4},
        "hub": {"hostname": "hub.lab.test", "letsencrypt_email": "admin@lab.test",
                "github": {"organizations": ["lab"]}, "admin_users": ["alice"]},
        "hosts": hosts,
        "airgap": {"k3s_binary": str(bundle["k3s"]), "k3s_install_script": str(bundle["install_script"]),
                   "k3s_images": str(bundle["images"]), "helm_binary": str(bundle["helm"]),
                   "plugin_chart": str(bundle["plugin_chart"]), "hub_chart": str(bundle["hub_chart_4.4.0"]),
                   "toolkit_packages": [str(deb) for deb in bundle["toolkit_packages"]]},
    }


def ansible_inventory(state: Path, names: list) -> dict:
    agents = {name: {"k3s_unit": "k3s-agent"} for name in names[1:]}
    return {"all": {
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(state / "id_ed25519"),
                 "ansible_ssh_common_args": f"-F {state / 'ssh_config'}",
                 "ansible_python_interpreter": "/usr/bin/python3"},
        "children": {"servers": {"hosts": {names[0]: {"k3s_unit": "k3s"}}}, "agents": {"hosts": agents}}}}


def prepare_host(hosts, name: str, bundle: dict) -> None:
    """GPUs (the simulated driver and PCI bus), sshd logging each session, the sim-time shim."""
    from sim.hardware import give_gpus
    give_gpus(hosts, name, bundle, GPUS[name])
    hosts.put(name, b"LogLevel VERBOSE\n", "/etc/ssh/sshd_config.d/50-gpuhub-bench.conf", 0o644)
    hosts.run(name, "systemctl reload ssh")
    site = hosts.run(name, "python3 -c 'import site; print(site.getsitepackages()[0])'").stdout.strip()
    for shim in ("gpuhub_bench_simtime.py", "gpuhub_bench_simtime.pth"):
        hosts.put(name, BENCH / "hostshim" / shim, f"{site}/{shim}", 0o644)


def close_masters(state: Path) -> None:
    """Every run starts cold, as from cron: the ssh masters that fab audit (testinfra's ssh
    backend: ControlPersist 60s) or the harness left are closed first (over their local socket:
    nothing reaches the hosts' sshd)."""
    for name in HOSTS:
        subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-O", "exit", name], capture_output=True)


def hub_tls(hosts, work: Path) -> None:
    """The hub's certificate, standing in for Let's Encrypt's, as tests/integration/
    test_audit_on_hosts.py lays it: so `fab audit` checks a healthy hub over HTTPS."""
    from tlscerts import ca_pem, make_ca, make_server_cert
    ca = make_ca()
    (work / "ca.pem").write_bytes(ca_pem(ca))
    cert, key = make_server_cert("hub.lab.test", ca)
    hosts.put(HOSTS[0], cert, "/etc/gpuhub-sim/tls/cert.pem", 0o644)
    hosts.put(HOSTS[0], key, "/etc/gpuhub-sim/tls/key.pem", 0o600)


def timed(argv: list, env: dict, cwd: Path = ROOT) -> dict:
    start, clock = time.time(), time.perf_counter()
    res = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900,
                         stdin=subprocess.DEVNULL)
    run = {"seconds": time.perf_counter() - clock, "start": start, "end": time.time(), "rc": res.returncode}
    if res.returncode != 0:
        run["stderr_tail"] = (res.stdout + res.stderr)[-1500:]
    return run


def cases(bin_dir: Path, tools: Path, state: Path, work: Path, gpuhub_inv: Path, ansible_inv: Path) -> list:
    """(id, tool, host count, argv, env) of every measured command, in the order of a round."""
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", **SECRETS)
    env.pop("GPUHUB_INVENTORY", None)
    ansible_env = dict(env, ANSIBLE_CONFIG=str(BENCH / "ansible.cfg"), ANSIBLE_HOME=str(work / "ansible"),
                       ANSIBLE_NOCOLOR="1")
    fab = [str(bin_dir / "fab"), "-S", str(state / "ssh_config")]
    out = []
    for n in COUNTS:
        names = ",".join(HOSTS[:n])
        for task in ("provision", "plan", "audit"):
            extra = ["--ca-file", str(work / "ca.pem"), "--hub-address", "10.250.0.11"] if task == "audit" else []
            out.append((f"fab {task} x{n}", "gpuhub", n,
                        fab + ["-H", names, task, "--inventory", str(gpuhub_inv), *extra], env))
            if task == "provision":  # its counterparts straight after it: pair by pair
                out.append((f"ansible x{n}", "ansible", n,
                            [str(tools / "ansible-playbook"), "-i", str(ansible_inv), "--limit", names,
                             str(BENCH / "readonly.yml")], ansible_env))
                out.append((f"floor x{n}", "floor", n,
                            [str(bin_dir / "python"), str(BENCH / "floor.py"), str(state / "ssh_config"),
                             *HOSTS[:n]], env))
    local_env = {k: v for k, v in env.items() if not k.startswith("GPUHUB_")}
    out.append(("inv plan (local)", "gpuhub", 0, [str(bin_dir / "inv"), "plan"], local_env))
    return out


def host_logs(hosts, names: list) -> dict:
    """Per host: its sshd journal entries (epoch seconds, message) and its sim-tool intervals."""
    logs = {}
    for name in names:
        journal = hosts.run(name, "journalctl -t sshd -o json --no-pager", timeout=120).stdout
        ssh = [(int(e["__REALTIME_TIMESTAMP"]) / 1e6, e.get("MESSAGE", ""))
               for e in map(json.loads, filter(None, journal.splitlines()))]
        sim = hosts.run(name, f"cat {SIMTIME_LOG} 2>/dev/null || true").stdout
        logs[name] = {"ssh": ssh, "sim": [json.loads(line) for line in sim.splitlines() if line.strip()]}
    return logs


def union_seconds(intervals: list) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + (b - a), b
        elif b > end:
            total, end = total + (b - end), b
    return total


def attribute(run: dict, logs: dict) -> None:
    """Add the run's SSH sessions per host and its simulated tools' time (the window's logs)."""
    start, end = run["start"], run["end"]
    run["ssh"] = {}
    for name, log in logs.items():
        msgs = [m for t, m in log["ssh"] if start <= t <= end]
        counts = {"commands": sum("Starting session: command" in m for m in msgs),
                  "sftp": sum("Starting session: subsystem 'sftp'" in m for m in msgs),
                  "connections": sum(m.startswith("Accepted publickey") for m in msgs)}
        if any(counts.values()):
            run["ssh"][name] = counts
    spans = [(max(s["start"], start), min(s["end"], end)) for log in logs.values() for s in log["sim"]
             if s["end"] > start and s["start"] < end]
    run["sim_seconds"] = union_seconds(spans)
    run["sim_calls"] = len(spans)


def summarise(runs: list, n: int) -> dict:
    seconds = [r["seconds"] for r in runs]
    med = lambda values: statistics.median(values) if values else None  # noqa: E731
    sim = med([r["sim_seconds"] for r in runs])
    summary = {"median": med(seconds), "min": min(seconds), "max": max(seconds), "mean": statistics.mean(seconds),
               "stdev": statistics.stdev(seconds) if len(seconds) > 1 else 0.0, "sim_median": sim,
               "own_median": med([r["seconds"] - r["sim_seconds"] for r in runs]),
               "sim_calls_median": med([r["sim_calls"] for r in runs]), "failed_runs": sum(r["rc"] != 0 for r in runs)}
    if n:
        per = lambda key, name: med([r["ssh"].get(name, {}).get(key, 0) for r in runs])  # noqa: E731
        summary["ssh_server"] = {k: per(k, HOSTS[0]) for k in ("commands", "sftp", "connections")}
        summary["ssh_agent_max"] = {k: max((per(k, h) for h in HOSTS[1:n]), default=None)
                                    for k in ("commands", "sftp", "connections")}
    return summary


def targets(c: dict) -> list:
    """The issue's targets (issue 13) against this run's numbers: never tuned, only reported."""
    med = lambda key: c[key]["summary"]["median"]  # noqa: E731
    out = [
        ("converged `fab provision`, 3 hosts: at least 5x faster than Ansible",
         med("fab provision x3"), med("ansible x3") / 5),
        ("converged `fab provision`, 3 hosts: within 3x of the bare Fabric floor",
         med("fab provision x3"), 3 * med("floor x3")),
        ("converged `fab provision`, 8 hosts: at most 1.5x the time of 1 host",
         med("fab provision x8"), 1.5 * med("fab provision x1")),
        ("`fab plan`, 8 hosts: under 1.5x the floor plus the simulated tools' own time",
         med("fab plan x8"), 1.5 * med("floor x8") + c["fab plan x8"]["summary"]["sim_median"]),
    ]
    rows = [{"target": t, "measured": m, "limit": lim, "met": m <= lim} for t, m, lim in out]
    ssh = c["fab provision x8"]["summary"]
    server = ssh["ssh_server"]["commands"] + ssh["ssh_server"]["sftp"]
    agent = ssh["ssh_agent_max"]["commands"] + ssh["ssh_agent_max"]["sftp"]
    rows.append({"target": "converged `fab provision`, 8 hosts: at most 2 SSH commands on the server",
                 "measured": server, "limit": 2, "met": server <= 2, "unit": "commands"})
    rows.append({"target": "converged `fab provision`, 8 hosts: at most 1 SSH command per agent (the most on one)",
                 "measured": agent, "limit": 1, "met": agent <= 1, "unit": "commands"})
    return rows


def markdown(data: dict) -> str:
    c, meta = data["cases"], data["meta"]
    s = lambda key: c[key]["summary"]  # noqa: E731
    fmt = lambda x: f"{x:.2f} s"  # noqa: E731
    lines = [f"# Converged runs: gpuhub, Ansible, bare Fabric ({meta['date']})", "",
             f"Commit `{meta['commit']}`; {meta['machine']}; {meta['runs']} runs after {meta['warmup']} warm-up "
             f"round(s), interleaved; one {len(HOSTS)}-node simulated cluster (gpu1 server, gpu2..gpu8 agents, "
             "every node a GPU node), `-H` naming 1, 3 or 8 of its hosts. Times are medians (min-max). "
             "\"sim\": time during which a simulated k3s/kubectl/helm ran on some host; \"own\": wall minus sim. "
             "SSH: sessions per run from the hosts' sshd logs, exec commands + SFTP sessions, server / the busiest agent.",
             "", f"Initial provision of the {len(HOSTS)} bare hosts (once, not timed further): "
             f"{data['initial_provision_s']:.1f} s.", "",
             "| command | hosts | gpuhub | sim | own | SSH server | SSH agent (max) | Ansible | bare Fabric |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task in ("provision", "plan", "audit"):
        for n in COUNTS:
            g = s(f"fab {task} x{n}")
            ssh = lambda d: f"{d['commands']:g} + {d['sftp']:g} sftp" if d["commands"] is not None else "-"  # noqa: E731
            other = (f"{fmt(s(f'ansible x{n}')['median'])} | {fmt(s(f'floor x{n}')['median'])}"
                     if task == "provision" else " | ")
            failed = f" ({g['failed_runs']} failed)" if g["failed_runs"] else ""
            lines.append(f"| `fab {task}` | {n} | {fmt(g['median'])} ({g['min']:.2f}-{g['max']:.2f}){failed} | "
                         f"{fmt(g['sim_median'])} | {fmt(g['own_median'])} | {ssh(g['ssh_server'])} | "
                         f"{ssh(g['ssh_agent_max'])} | {other} |")
    for n in COUNTS:
        a = s(f"ansible x{n}")
        lines.append(f"| Ansible `readonly.yml` | {n} | | {fmt(a['sim_median'])} | {fmt(a['own_median'])} | "
                     f"{a['ssh_server']['commands']:g} + {a['ssh_server']['sftp']:g} sftp | "
                     f"{a['ssh_agent_max']['commands'] if n > 1 else '-'} | {fmt(a['median'])} | |")
    local = s("inv plan (local)")
    lines += [f"| `inv plan` (this machine, fresh process) | local | {fmt(local['median'])} "
              f"({local['min']:.2f}-{local['max']:.2f}) | | | | | | |", "",
              "## The issue's targets", "", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for t in data["targets"]:
        unit = t.get("unit")
        m, lim = (f"{t['measured']:g}", f"{t['limit']:g}") if unit else (fmt(t["measured"]), fmt(t["limit"]))
        lines.append(f"| {t['target']} | {m} | {lim} | {'yes' if t['met'] else '**no**'} |")
    lines += ["", "Reproduce: `sudo .venv/bin/python benchmarks/run.py` (README, \"Performance\"). "
              "Raw runs: `results.json`; plot: `results.png`; profile of one run: `profile.md`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds after the warm-up (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 measured rounds: a rough look, not the issue's 5")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--no-profile", action="store_true", help="skip profile.md")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    if os.geteuid() != 0:
        sys.exit("benchmarks/run.py needs root: it brings up SSH test hosts (tests/hosts/up.sh)")
    project_python()
    tools = tools_venv()
    harness = load_harness()
    from sim.build_bundle import build_bundle
    bin_dir = Path(sys.executable).parent
    env = harness.harness_env(STATE, "nspawn")
    with tempfile.TemporaryDirectory(prefix="gpuhub-bench-") as tmp, testhosts_lock():
        work, held = Path(tmp), time.time()
        say("holding the test-host lock")
        bundle = build_bundle(work / "sim")
        harness.run_harness(harness.DOWN, "--purge", env=env, check=False, timeout=300)  # a killed run's leftovers
        hosts = None
        try:
            say(f"bringing up {len(HOSTS)} nspawn hosts")
            harness.run_harness(harness.UP, str(len(HOSTS)), env=env, timeout=1800)
            hosts = harness.SshTestHosts(STATE)
            hosts.wait_booted()
            for name in HOSTS:
                prepare_host(hosts, name, bundle)
            hub_tls(hosts, work)
            gpuhub_inv, ansible_inv = work / "hosts.yaml", work / "ansible-hosts.yaml"
            gpuhub_inv.write_text(json.dumps(inventory(bundle, HOSTS)))
            ansible_inv.write_text(json.dumps(ansible_inventory(STATE, HOSTS)))
            todo = cases(bin_dir, tools, STATE, work, gpuhub_inv, ansible_inv)
            say("provisioning the cluster once")
            everything = next(case for case in todo if case[0] == f"fab provision x{len(HOSTS)}")
            first = timed(everything[3] + ["--yes"], everything[4])
            if first["rc"] != 0:
                sys.exit(f"run.py: the first provision failed:\n{first['stderr_tail']}")
            measured = {case[0]: [] for case in todo}
            for round_no in range(1 + runs):  # round 0 is the warm-up
                for case_id, _tool, _n, argv, case_env in todo:
                    if case_id.startswith("ansible"):  # no ssh master left from an earlier run
                        case_env = dict(case_env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / f"cp-{round_no}"))
                    close_masters(STATE)
                    run = timed(argv, case_env)
                    say(f"round {round_no} {case_id}: {run['seconds']:.2f} s rc={run['rc']}")
                    if round_no:
                        measured[case_id].append(run)
            say("reading the hosts' sshd journals and simulated-tool times")
            logs = host_logs(hosts, HOSTS)
            for case_runs in measured.values():
                for run in case_runs:
                    attribute(run, logs)
            data = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                             "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                      capture_output=True, text=True).stdout.strip(),
                             "machine": f"{os.cpu_count()} CPUs, "
                                        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                                        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
                             "runs": runs, "warmup": 1, "ansible": TOOLS_PACKAGES[0], "hosts": HOSTS,
                             "testhosts": "systemd-nspawn (tests/hosts/up.sh)"},
                    "initial_provision_s": first["seconds"],
                    "cases": {cid: {"tool": tool, "hosts": n, "argv": [Path(a).name if a.startswith("/") else a for a in argv],
                                    "runs": measured[cid], "summary": summarise(measured[cid], n)}
                              for cid, tool, n, argv, _ in todo}}
            data["targets"] = targets(data["cases"])
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
            (args.out / "results.md").write_text(markdown(data))
            subprocess.run([str(tools / "python"), str(BENCH / "plot.py"), str(args.out / "results.json"),
                            str(args.out / "results.png")], check=True)
            if not args.no_profile:
                say("profiling one converged fab provision on 3 hosts")
                fab_argv = todo[0][3][1:]  # fab provision x1 -> the same on 3 hosts
                fab_argv[fab_argv.index("-H") + 1] = ",".join(HOSTS[:3])
                subprocess.run([str(bin_dir / "python"), str(BENCH / "profile_run.py"), str(args.out / "profile.md"),
                                *fab_argv], env=todo[0][4], cwd=ROOT, check=True)
        finally:
            if hosts is not None:
                hosts.close()
            harness.run_harness(harness.DOWN, "--purge", env=env, check=False, timeout=300)
    print((args.out / "results.md").read_text())
    say(f"done ({time.time() - held:.0f} s of it with the hosts up); results in {args.out}")


if __name__ == "__main__":
    main()
