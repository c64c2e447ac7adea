"""The only place changes are applied: facts -> plan -> confirm destructive -> apply in order ->
run each notified handler once -> gather facts again and fail if anything still differs.

Hosts: the server first (agents need its token), then agents in parallel; the cluster steps
(gpu.plugin, hub.launch, gpu.test) once, on the server, after every host is done.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from . import facts as f
from . import lock, render
from .lock import RunLocks
from .progress import Progress, stderr_line
from .secret import mask
from .steps import (BLOCKED, CHANGE, ERROR, LOCAL_SCRIPTS, OK, PENDING, RESTART_K3S, SCRIPTS_DIR, VERIFY,
                    Context, StepPlan)
from .steps import cluster, k3s, runtime
from .target import Result, StepFailed
from .term import paint

HOST_STEPS = (("k3s.install", k3s.plan_install), ("gpu.runtime", runtime.plan_runtime),
              (k3s.RESET, k3s.plan_reset))
CLUSTER_STEPS = (("gpu.plugin", cluster.plan_plugin), ("hub.launch", cluster.plan_hub),
                 ("gpu.test", cluster.plan_gpu_test))
# An agent-only run (a workstation joining): that node's share of the cluster steps, through the server.
NODE_STEPS = (("gpu.plugin", cluster.plan_node_plugin), ("gpu.test", cluster.plan_node_gpu_test))
PROVISION = ("k3s.install", "gpu.runtime") + tuple(s for s, _ in CLUSTER_STEPS)
HANDLERS = {RESTART_K3S: k3s.restart_k3s}
HANDLER_LINES = {RESTART_K3S: k3s.restart_lines}
LOCK_PROBE = "run_lock"


def steps_for(host, server_name: str) -> tuple:
    """The steps a host plans: its own, and on the server the cluster's too."""
    return HOST_STEPS + (CLUSTER_STEPS if host.name == server_name else ())


def plan_steps(ctx: Context, steps, only=PROVISION) -> list:
    """Plan `steps` (those in `only`) in order, each seeing the ones before it, the facts it
    declares (steps.needs) and no way to run a command (NoCommands)."""
    plans = []
    for step_id, plan in steps:
        if step_id not in only:
            continue
        host, server = plan.needs
        view = replace(ctx, facts=ctx.facts.only(host, step_id) if ctx.facts is not None else None,
                       server_facts=ctx.server_facts.only(server, step_id) if ctx.server_facts is not None else None,
                       target=NoCommands(step_id), server_target=NoCommands(step_id))
        try:
            result = plan(view)
        except Exception as e:  # a parser met output it did not expect: say so, do not guess
            result = StepPlan(step_id, ERROR, reason=f"{type(e).__name__}: {e}")
        plans.append(result)
        ctx.earlier[step_id] = result
    return plans


class NoCommands:
    """The target a step's plan sees: it reads facts, gathered beforehand; a command of its own
    would be a round trip of its own, so it is refused (a step declares what it needs)."""

    def __init__(self, step_id: str):
        self.step_id = step_id

    def __getattr__(self, name):
        raise f.UndeclaredFact(f"{self.step_id}'s plan would use the host ({name}): plans read facts only; "
                               "declare what it needs (steps.needs)")


# What the run reads for itself, beside the steps' needs: gpuhub's scripts on the host (upload_scripts).
RUN_NEEDS = ("scripts_sha",)


class Refused(Exception):
    """The run stopped before changing anything (destructive without --yes...)."""


@dataclass
class HostRun:
    name: str
    role: str
    steps: list = field(default_factory=list)   # StepPlan
    error: str = ""          # facts could not be gathered (unreachable) or an action failed
    unreachable: bool = False
    changed: bool = False
    done: list = field(default_factory=list)      # "step: change" applied, in order
    not_done: list = field(default_factory=list)  # planned but not applied (failure, Ctrl-C)
    seconds: float = 0.0
    handlers: list = field(default_factory=list)  # (handler, what it runs) that planned changes notify

    def as_json(self) -> dict:
        return {"role": self.role, "steps": [s.as_json() for s in self.steps],
                **({"error": self.error} if self.error else {})}


class Run:
    def __init__(self, inv, targets: dict, secrets, only=PROVISION, selected=None, log=None, verify=False,
                 destroy_user_data=False, fail_fast=False):
        """`targets`: name -> Target for every host it may talk to (the server's facts are read
        even when only agents are `selected`); `selected`: the hosts to plan and change."""
        self.inv, self.targets, self.secrets, self.only = inv, targets, secrets, only
        write = log or stderr_line
        self.log = lambda line: write(mask(line))  # what a step's output echoes stays ***
        self.progress = Progress(self.log)
        self.destroy_user_data, self.fail_fast = destroy_user_data, fail_fast
        # `gpu.test` alone always tests; in a provision it tests what changed, or all with --verify.
        self.verify = verify or tuple(only) == ("gpu.test",)
        self.facts, self.results = {}, {}
        self.interrupted = threading.Event()
        self.locks = None
        self.locking = set()  # hosts whose next fact round trip takes their run lock
        selected = set(targets if selected is None else selected)
        self.hosts = [h for h in inv.ordered_hosts() if h.name in selected]

    # --- facts ---------------------------------------------------------------------------

    def probes_for(self, host):
        wanted = self.declared()
        probes = {name: p for name, p in f.host_probes().items() if not p.costly or name in wanted}
        locks = self.locks
        if locks is not None and host.name in locks.targets and host.name not in locks.held \
                and (host.name in self.locking or not locks.checked):
            # The run lock rides on the facts' round trip, before every probe: checked (read
            # only) with the first facts, taken on the hosts that will change (issue 13).
            command = locks.first_try() if host.name in self.locking else lock.check_script()
            probes = {LOCK_PROBE: f.Probe(command, lambda out, rc: Result(out, "", rc), first=True), **probes}
        if host.role == "server":
            secret = render.github_secret(self.inv)
            probes_ = f.cluster_probes(cluster.plugin_release(self.inv), cluster.hub_release(self.inv),
                                       self.inv.hub["https"], f"{secret['namespace']}/{secret['name']}")
            for name, probe in probes_.items():
                probes[name] = replace(probe, command=f"timeout 60 {probe.command}")
        return probes

    def declared(self) -> set:
        """Every fact the steps this run plans declare, of their own host or of the server."""
        return {name for step_id, plan in HOST_STEPS + CLUSTER_STEPS + NODE_STEPS if step_id in self.only
                for side in plan.needs for name in side}

    def gather(self, host) -> bool:
        if host.name in self.results and self.results[host.name].unreachable:
            return False  # reported once; not waited on again
        try:
            self.facts[host.name] = f.gather(self.targets[host.name], self.probes_for(host))
            return True
        except Exception as e:  # unreachable: SSH refused, DNS, auth... reported per host
            self.mark_unreachable(host, e)
            return False

    def mark_unreachable(self, host, error):
        run = self.results.setdefault(host.name, HostRun(host.name, host.role))
        contact = getattr(self.targets.get(host.name), "contact", None)
        detail = f"{type(error).__name__}: {error}"
        run.error = contact.unreachable(detail) if contact else f"unreachable: {detail}"
        run.unreachable = True
        self.log(f"{host.name}: {run.error}")

    def gather_all(self, hosts=None):
        """Every host's facts at once, one round trip each (`hosts`: only those; the others'
        facts stay as they were)."""
        server = self.inv.server
        wanted = [h for h in self.hosts if h.name != server.name]
        if server.name in self.targets:
            wanted.insert(0, server)
        if hosts is not None:
            wanted = [h for h in wanted if h.name in hosts]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self.gather, wanted))
        if server not in self.hosts and server.name in self.results:
            # Facts only, to let agents join: the server itself is not being changed.
            self.results.pop(server.name)

    def check_locks(self):
        """After the first facts: another live run's lock on any host stops this run (LockHeld),
        or with --wait is waited for (and then held, the host's facts read again)."""
        outcomes = {name: fx.values.pop(LOCK_PROBE) for name, fx in self.facts.items() if LOCK_PROBE in fx.values}
        self.locks.checked = True
        held = {name: who for name, result in outcomes.items() for who in [self.locks.held_by(result)] if who}
        if held and not self.locks.wait:
            self.locks.refuse(held)
        if held:
            self.take_locks(set(held))

    def take_locks(self, names: set):
        """The locks of `names`, their facts read again in the same round trip as the lock's
        first try (a host whose lock came only on a later try, --wait or a dead holder, is read
        once more). Raises LockHeld when another run holds one."""
        names = {n for n in names if n in self.locks.targets and n not in self.locks.held
                 and not (n in self.results and self.results[n].unreachable)}
        if not names:
            return
        self.locking = names
        self.gather_all(names)
        self.locking = set()
        first = {name: self.facts[name].values.pop(LOCK_PROBE) for name in names
                 if name in self.facts and LOCK_PROBE in self.facts[name].values}
        for name, error in self.locks.acquire(first, names=sorted(first)).items():
            if name in {h.name for h in self.hosts}:
                self.mark_unreachable(self.inv.hosts[name], error)
        again = {name for name in names & self.locks.held if name not in first or first[name].exited != 0}
        if again:
            self.gather_all(again)

    def to_lock(self) -> set:
        """The hosts this run will change: a host whose own steps change something, and the
        server when a cluster step (or a node's share of one) does, or the GPU test runs."""
        own = {s for s, _ in HOST_STEPS}
        names = set()
        for name, run in self.results.items():
            for step in run.steps:
                if step.status in (CHANGE, VERIFY, PENDING):
                    names.add(name if step.id in own else self.inv.server.name)
        return names & set(self.locks.targets)

    # --- plan ----------------------------------------------------------------------------

    def context(self, host, earlier=None) -> Context:
        server = self.inv.server
        return Context(inv=self.inv, host=host, facts=self.facts.get(host.name), target=self.targets.get(host.name),
                       server_facts=self.facts.get(server.name), server_target=self.targets.get(server.name),
                       secrets=self.secrets, earlier=earlier if earlier is not None else {},
                       destroy_user_data=self.destroy_user_data, log=self.log, verify=self.verify,
                       changed_hosts=self.changed_hosts(), progress=self.progress)

    def changed_hosts(self) -> frozenset:
        """Hosts whose own steps change (or changed) something in this run."""
        own = {s for s, _ in HOST_STEPS}
        return frozenset(name for name, run in self.results.items()
                         if run.changed or any(s.id in own and s.status in (CHANGE, PENDING) for s in run.steps))

    @property
    def agents_only(self) -> bool:
        """Agents selected without their server: each gets its node's share of the cluster steps."""
        return self.inv.server not in self.hosts

    def plan(self, gather=True):
        """Every host's own steps, then the cluster's (on the server) and, in an agent-only run,
        each node's share: those follow from what the hosts' own steps change."""
        if gather:
            self.gather_all()
            if self.locks is not None and not self.locks.checked:
                self.check_locks()
        planned = []
        for host in self.hosts:
            run = self.results.setdefault(host.name, HostRun(host.name, host.role))
            if not run.unreachable and host.name in self.facts:
                ctx = self.context(host)
                run.steps = plan_steps(ctx, HOST_STEPS, self.only)
                planned.append((host, ctx.earlier))
            else:
                run.steps = []
        for host, earlier in planned:
            later = (CLUSTER_STEPS if host.name == self.inv.server.name else ()) + (NODE_STEPS if self.agents_only else ())
            if later:
                self.results[host.name].steps += plan_steps(self.context(host, earlier), later, self.only)
            self.results[host.name].handlers = self.handlers_of(host)
        return self.results

    def handlers_of(self, host) -> list:
        """(handler, the lines of what it runs) for the handlers that this host's planned changes notify."""
        notified = {h for s in self.results[host.name].steps if s.status in (CHANGE, VERIFY)
                    for c in s.changes for h in c.notify}
        return [(name, HANDLER_LINES[name](self.inv, host)) for name in HANDLERS if name in notified]

    # --- apply ---------------------------------------------------------------------------

    def upload_scripts(self, host):
        """scripts/ onto the host, those whose sha256 differs from the host's copy (the
        `scripts_sha` fact, kept up to date here): install-file.sh first (it places every other
        file); the shell steps and the Python helpers they run (pod-why.py)."""
        target = self.targets[host.name]
        facts = self.facts.get(host.name)
        have = {}
        if facts is not None:  # parse_sha256sums gives {} for none: kept up to date below
            have = facts.values["scripts_sha"] = facts.values.get("scripts_sha") or {}
        scripts = sorted([*LOCAL_SCRIPTS.glob("*.sh"), *LOCAL_SCRIPTS.glob("*.py")],
                         key=lambda p: (p.name != "install-file.sh", p.name))
        for script in scripts:
            text = script.read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if have.get(script.name) == digest:
                continue
            if script.name == "install-file.sh":
                target.install_installer(text)
            else:
                target.put_text(text, f"{SCRIPTS_DIR}/{script.name}", 0o700, backup=False)
            have[script.name] = digest

    def apply_host(self, host, step_ids):
        """Apply this host's changes for `step_ids` in order, then each notified handler once.
        After Ctrl-C (or when another run took the lock over) no further change starts, but the
        handlers of changes already made still run: K3s is restarted and checked, never left with
        a config it has not been tested with."""
        run = self.results[host.name]
        ctx = self.context(host)
        handlers = []
        waiting = []  # files written by changes whose handler has not run yet: (path, kept)
        planned = [(plan, change) for plan in run.steps if plan.id in step_ids and plan.status in (CHANGE, VERIFY)
                   for change in plan.changes]
        run.not_done += [f"{plan.id}: {change.summary}" for plan, change in planned]
        stopped = False
        for plan in [p for p in run.steps if p.id in step_ids and p.status in (CHANGE, VERIFY)]:
            if stopped or self.interrupted.is_set() or (self.locks and host.name in self.locks.lost):
                break
            with self.progress.step(host.name, plan.id, f"{len(plan.changes)} change(s)"):
                for change in plan.changes:
                    if self.interrupted.is_set() or (self.locks and host.name in self.locks.lost):
                        stopped = True
                        break
                    self.log(f"{host.name}: {plan.id}: {change.summary}")
                    mark = len(ctx.target.written)
                    try:
                        with self.progress.waiting(host.name, plan.id, change.summary, verb="still at:"):
                            change.apply(ctx)
                    except BaseException:
                        # A file written for a K3s restart that will not happen now would wait for the
                        # next restart (a reboot) untested: put the previous versions back.
                        self.roll_back(ctx, waiting + (ctx.target.written[mark:] if change.notify else []))
                        raise
                    if change.notify:
                        waiting += ctx.target.written[mark:]
                    run.not_done.remove(f"{plan.id}: {change.summary}")
                    run.done.append(f"{plan.id}: {change.summary}")
                    run.changed = run.changed or plan.status == CHANGE
                    handlers += [h for h in change.notify if h not in handlers]
                    handlers = [h for h in handlers if h not in change.satisfies]
        for handler in handlers:
            with self.progress.step(host.name, handler, "finishing the changes made before Ctrl-C"
                                    if self.interrupted.is_set() else "once, for the changes above"):
                HANDLERS[handler](ctx, waiting)
            run.done.append(handler)

    def roll_back(self, ctx, written):
        for path, kept in reversed(written):
            try:
                ctx.target.restore(path, kept)
                self.log(f"{ctx.host.name}: rolled back {path} (the K3s restart it waited for did not happen)")
            except Exception as e:  # noqa: BLE001 - the host may be gone: say so
                self.log(f"{ctx.host.name}: could not roll back {path}: {type(e).__name__}: {e}")

    def refuse_blocked(self):
        """Before the first change: every selected step on every reachable selected host is
        planned; one blocked or in error anywhere, and nothing changes anywhere."""
        unreachable = [r for r in self.results.values() if r.unreachable]
        if unreachable and self.fail_fast:
            raise Refused("--fail-fast and unreachable: " + "; ".join(f"{r.name} ({r.error})" for r in unreachable))
        blockers = [f"{r.name}: {s.id}: {s.reason}" for r in self.results.values() if not r.unreachable
                    for s in r.steps if s.status in (BLOCKED, ERROR)]
        if blockers:
            raise Refused(f"{len(blockers)} step(s) cannot run, so no host was changed:\n"
                          + "\n".join("  " + b for b in blockers))

    def refuse_unconfirmed(self, yes: bool):
        # A pending step lists what it would destroy on the cluster as it is now (waiting_for_hosts).
        destructive = [f"{r.name}: {s.id}: {s.summary}" for r in self.results.values() for s in r.steps
                       if s.status in (CHANGE, PENDING) and s.destructive]
        if destructive and not yes:
            raise Refused("destructive changes need --yes:\n" + "\n".join("  " + d for d in destructive))

    def apply(self, yes: bool = False, wait: bool = False):
        """Take every selected host's run lock, plan, refuse (changing nothing) while anything is
        blocked or destructive without `yes`, apply, check again; release the locks in every case."""
        changing = {h.name for h in self.hosts}
        if self.agents_only and set(self.only) & {s for s, _ in NODE_STEPS}:
            changing.add(self.inv.server.name)  # nodes are labelled and tested through the server
        # Checked with the facts, taken after planning where something changes (_apply).
        self.locks = RunLocks({name: self.targets[name] for name in self.targets if name in changing},
                              self.log, wait=wait)
        try:
            with self.interruptible():
                self._apply(yes)
        finally:
            self.locks.release()
        return self.results

    @contextlib.contextmanager
    def interruptible(self):
        """The first Ctrl-C lets the change in progress finish (a shell step is never cut in
        half), then stops; a second one stops at once (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_interrupt(signum, frame):
            if self.interrupted.is_set():
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.interrupted.set()
            self.log("interrupted: finishing the change in progress, then stopping (Ctrl-C again stops at once)")
        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _apply(self, yes: bool):
        self.plan()
        self.refuse_blocked()
        self.refuse_unconfirmed(yes)
        for _ in range(3):  # a host read again may change what the others plan: until it settles
            wanted = self.to_lock() - self.locks.held
            if not wanted:
                break
            # Planned on facts read without the lock: take it where something changes, read those
            # hosts again under it (one round trip each), and plan again on what they say.
            self.take_locks(wanted)
            self.plan(gather=False)
            self.refuse_blocked()
            self.refuse_unconfirmed(yes)
        server = self.inv.server
        host_ids = {s for s, _ in HOST_STEPS}
        first = [h for h in self.hosts if h.name == server.name]
        agents = [h for h in self.hosts if h.name != server.name]
        self._apply_hosts(first, host_ids)
        if not (self.fail_fast and self.failed()):
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda h: self._apply_hosts([h], host_ids), agents))
        cluster_ids = {s for s, _ in CLUSTER_STEPS} & set(self.only)
        if self.interrupted.is_set():
            if cluster_ids and server in self.hosts:
                run = self.results[server.name]
                run.not_done += [f"{s.id}: {c.summary}" for s in run.steps
                                 if s.id in cluster_ids and s.status in (CHANGE, VERIFY) for c in s.changes]
            return
        if cluster_ids and server in self.hosts and self.failed():
            lost = ", ".join(r.name for r in self.results.values() if r.error)
            self.log(f"cluster steps ({', '.join(sorted(cluster_ids))}) skipped: {lost} failed; "
                     "fix that and run provision again")
        elif cluster_ids and server in self.hosts:
            # The cluster steps were planned before the hosts changed: plan them again now (on
            # new facts when a host did change).
            if self.applied():
                self.gather(server)
            run = self.results[server.name]
            run.steps = ([s for s in run.steps if s.id not in cluster_ids]
                         + plan_steps(self.context(server), CLUSTER_STEPS, cluster_ids))
            if server.name not in self.locks.held and any(s.id in cluster_ids and s.status in (CHANGE, VERIFY)
                                                          for s in run.steps):
                self.take_locks({server.name})  # read again under the lock: planned once more
                run.steps = ([s for s in run.steps if s.id not in cluster_ids]
                             + plan_steps(self.context(server), CLUSTER_STEPS, cluster_ids))
            unconfirmed = [f"{s.id}: {s.summary}" for s in run.steps
                           if s.id in cluster_ids and s.status == CHANGE and s.destructive]
            if unconfirmed and not yes:
                # The first plan could not show these (the cluster did not answer yet): nothing
                # destructive runs unconfirmed, even after the hosts' own changes.
                run.error = ("destructive cluster changes need --yes (nothing of them was done): "
                             + "; ".join(unconfirmed))
                run.not_done += unconfirmed
                self.log(f"{server.name}: {run.error}")
                return
            self._apply_hosts([server], cluster_ids)
        elif cluster_ids and not self.failed():
            self._apply_node_shares(cluster_ids)
        if not self.failed() and not self.interrupted.is_set():
            self.recheck()

    def _apply_node_shares(self, step_ids):
        """After the agents' own steps: each node's share of the cluster steps, planned again on
        what the server now reports (the node has joined), applied through the server."""
        server = self.inv.server
        if self.applied():
            self.gather(server)  # read only: the server is not selected, its facts are what changed
        if server.name in self.results and self.results[server.name].unreachable:
            return
        ids = set(step_ids) & {s for s, _ in NODE_STEPS}
        agents = [h for h in self.hosts if h.gpus and not self.results[h.name].error]
        if not agents:
            return

        def replan():
            for host in agents:
                run = self.results[host.name]
                run.steps = [s for s in run.steps if s.id not in ids] + plan_steps(self.context(host), NODE_STEPS, ids)
            return any(s.id in ids and s.status in (CHANGE, VERIFY) for h in agents for s in self.results[h.name].steps)
        if replan() and server.name not in self.locks.held:
            self.take_locks({server.name})  # read again under the lock: planned once more
            if server.name in self.results and self.results[server.name].unreachable:
                return
            replan()
        if any(s.id in ids and s.status in (CHANGE, VERIFY) for h in agents for s in self.results[h.name].steps):
            self.upload_scripts(server)  # gpu-test.sh runs there
        for host in agents:
            self._apply_hosts([host], ids, upload=False)

    def _apply_hosts(self, hosts, step_ids, upload=True):
        for host in hosts:
            started = time.monotonic()
            try:
                self._apply_host_steps(host, step_ids, upload)
            finally:
                self.results[host.name].seconds += time.monotonic() - started

    def _apply_host_steps(self, host, step_ids, upload=True):
        run = self.results[host.name]
        if run.unreachable or run.error:
            return
        blocking = [s for s in run.steps if s.id in step_ids and s.status in (BLOCKED, ERROR)]
        if blocking:
            run.error = "; ".join(f"{s.id}: {s.reason}" for s in blocking)
            self.log(f"{host.name}: not changed: {run.error}")
            return
        if not any(s.id in step_ids and s.status in (CHANGE, VERIFY) for s in run.steps):
            return
        try:
            if upload:
                self.upload_scripts(host)
            self.apply_host(host, step_ids)
        except StepFailed as e:
            run.error = str(e)
            self.log(str(e))
        except Exception as e:  # connection lost mid-run: report it, let the others finish
            run.error, run.unreachable = f"{type(e).__name__}: {e}", True
            self.log(f"{host.name}: lost: {type(e).__name__}: {e}")

    def applied(self) -> set:
        """Hosts on which this run changed something (not counting the GPU test, a verification)."""
        return {name for name, run in self.results.items() if run.changed}

    def recheck(self):
        """Gather again the facts of every host that changed (and the server's, whose cluster
        holds the nodes), plan every host again: anything still to change is a failure. A run
        that changed nothing reads nothing twice."""
        changed = self.applied()
        if not changed:
            return
        before = {name: run.changed for name, run in self.results.items()}
        self.gather_all(changed | {self.inv.server.name})
        self.plan(gather=False)
        for name, run in self.results.items():
            run.changed = before.get(name, False)
            left = [s for s in run.steps if s.status in (CHANGE, PENDING, BLOCKED, ERROR)]
            if left and not run.error:
                run.error = "still differs after apply: " + "; ".join(
                    f"{s.id} {s.status}: {s.summary or s.reason}" for s in left)
                self.log(f"{name}: {run.error}")

    def failed(self) -> bool:
        return any(r.error for r in self.results.values())


# --- output ------------------------------------------------------------------------------------

def format_plan(results: dict, verbose: bool = False, color: bool = False) -> str:
    """The plan, a line per host and step. `verbose`: under each change what it runs (each script
    with its inputs, as a command a sysadmin could run by hand; each file it writes, with its
    content), and what the handlers run once after them. `color`: for a terminal (gpuhub.term)."""
    lines = []
    for run in results.values():
        lines.append(f"{run.name} ({run.role})" + (paint(f"  ERROR: {run.error}", "error", color)
                                                   if run.unreachable else ""))
        for step in run.steps:
            text = step.summary if step.status in (CHANGE, VERIFY, OK) else step.reason
            flags = [paint(flag, flag, color) for flag, on in (("restarts K3s", step.restarts and step.status == CHANGE),
                                                               ("DESTRUCTIVE", step.destructive))
                     if on and step.status in (CHANGE, PENDING)]
            suffix = f"  [{', '.join(flags)}]" if flags else ""
            lines.append(f"  {step.id:<12} {paint(f'{step.status:<8}', step.status, color)} {text}{suffix}")
            if verbose and step.status in (CHANGE, VERIFY):
                for change in step.changes:
                    lines.append(f"      - {change.summary}")
                    lines += [f"          {line}" for line in change.lines()
                              or [f"nothing of its own: {', '.join(change.notify)} below does it"]]
        if verbose:
            for name, what in run.handlers:
                lines.append(f"  {name:<12} {'then':<8} once, after the changes above")
                lines += [f"          {line}" for line in what]
    if verbose and any(s.status in (CHANGE, VERIFY) for r in results.values() for s in r.steps):
        lines.append(f"(the scripts run from {SCRIPTS_DIR}/ on each host: gpuhub's scripts/, uploaded there "
                     "first where their sha256 differs; what goes on stdin is described, not shown: `inv render` writes "
                     "the values for review; a Secret's values are shown nowhere)")
    return "\n".join(lines)


def host_state(run) -> str:
    return ("unreachable" if run.unreachable else "failed" if run.error
            else "interrupted" if run.not_done else "changed" if run.changed else "ok")


def format_recap(results: dict, interrupted: bool = False, color: bool = False) -> str:
    lines = ["", "RECAP" + ("  (interrupted: run it again to finish)" if interrupted else "")]
    for run in results.values():
        state = host_state(run)
        lines.append(f"  {run.name:<16} {paint(f'{state:<12}', state, color)} {run.seconds:6.1f} s")
        if run.not_done or (interrupted and run.done):
            lines += [f"      done:     {item}" for item in run.done]
            lines += [f"      not done: {item}" for item in run.not_done]
    return "\n".join(lines)


def as_json(results: dict) -> str:
    """A plan: {"hosts": {NAME: {"role", "steps": [{"id", "status", ...}], "error"?}}} (README)."""
    return json.dumps({"hosts": {name: run.as_json() for name, run in results.items()}}, indent=2)


def result_json(results: dict, interrupted: bool = False) -> str:
    """An apply: the plan's shape, each host with its recap too: "state" (ok, changed, failed,
    unreachable, interrupted), "seconds", and the changes "done" and "not_done" (README)."""
    return json.dumps({"interrupted": interrupted, "hosts": {name: dict(
        run.as_json(), state=host_state(run), seconds=round(run.seconds, 1), done=list(run.done),
        not_done=list(run.not_done)) for name, run in results.items()}}, indent=2)


def check_exit_code(results: dict) -> int:
    """plan --check: 2 when anything would change, waits or is blocked; 1 on errors."""
    if any(r.unreachable or any(s.status == ERROR for s in r.steps) for r in results.values()):
        return 1
    if any(s.status in (CHANGE, PENDING, BLOCKED) for r in results.values() for s in r.steps):
        return 2
    return 0
