"""Steps: read facts, compare with the wanted state, return Changes. They never apply anything;
`gpuhub.plan` does. A step's `plan(ctx)` returns a StepPlan with one of the statuses below."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .. import facts as f
from .. import paths

OK, CHANGE, PENDING, BLOCKED, VERIFY, ERROR = "ok", "change", "pending", "blocked", "verify", "error"
RESTART_K3S = "restart-k3s"
SCRIPTS_DIR = f.SCRIPTS_DIR
WORK_DIR = "/var/lib/gpuhub/work"
LOCAL_SCRIPTS = paths.SCRIPTS  # the checkout's scripts/, or the wheel's copy


# What a command may take beyond the wait it was given (its own TIMEOUT, helm's --timeout):
# starting up, the last poll, printing the failure. A command that waits is never cut by the
# host's general deadline (GPUHUB_COMMAND_TIMEOUT), which is for the commands that do not.
COMMAND_MARGIN_S = 120


def command_deadline(wait_s: int) -> int:
    return int(wait_s) + COMMAND_MARGIN_S


@dataclass
class Action:
    """One thing a change does, as data: what `--verbose` shows and what apply runs, from the
    same record, so a reviewed plan is what happens. Kinds:
      script: scripts/NAME on the host with `env` (and `stdin`, shown only by `stdin_label`:
              a Secret's manifest, the hub's values), while saying it waits for `wait`;
      upload: `text` (or the local file `local`) to the path `what`, mode `mode`;
      remove: the path `what`, kept as the previous version;
      call:   `run(ctx)`, Python that `what` describes (a poll through kubectl, a token copy).
    `on="server"`: through the cluster's server (a node's share of the cluster steps)."""
    kind: str
    what: str
    step: str = ""
    env: dict = field(default_factory=dict)
    stdin: str = None
    stdin_label: str = ""
    text: str = None
    text_label: str = ""  # what an upload's text is, shown instead of it
    local: object = None
    mode: int = 0o644
    backup: bool = True
    timeout: int = None
    wait: str = ""
    run: Callable = None
    on: str = ""
    around: Callable = None  # a script run as around(ctx, run): a watch of its own while it waits

    def execute(self, ctx):
        ctx = ctx.on_server() if self.on == "server" else ctx
        if self.kind == "script":
            def run(c):
                return c.script(self.what, self.step, self.env, stdin=self.stdin, timeout=self.timeout)
            if self.around is not None:
                return self.around(ctx, run)
            if not self.wait:
                return run(ctx)
            with ctx.waiting(self.step, self.wait):
                return run(ctx)
        if self.kind == "upload":
            if self.local is not None:
                return ctx.target.put_file(self.local, self.what, self.mode, backup=self.backup)
            return ctx.target.put_text(self.text, self.what, self.mode, backup=self.backup)
        if self.kind == "remove":
            return ctx.target.remove(self.what)
        return self.run(ctx)

    def lines(self) -> list:
        """What `--verbose` prints: a command a sysadmin could run by hand, or what is done."""
        import shlex
        where = " (on the server)" if self.on == "server" else ""
        if self.kind == "script":
            inputs = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in self.env.items())
            command = f"{'env ' + inputs + ' ' if inputs else ''}{SCRIPTS_DIR}/{self.what}"
            lines = [f"run{where}: {command}"]
            if self.stdin_label:
                lines.append(f"  stdin: {self.stdin_label}")
            return lines
        if self.kind == "upload":
            keep = ", previous version kept" if self.backup else ""
            if self.local is not None:
                return [f"upload{where}: {self.local} -> {self.what} (mode {self.mode:04o}{keep})"]
            lines = [f"write{where}: {self.what} (mode {self.mode:04o}, {len(self.text.encode())} bytes{keep})"]
            if self.text_label:
                return lines + [f"  content: {self.text_label}"]
            shown = self.text.splitlines()
            return lines + [f"  | {line}" for line in shown[:40]] + (
                [f"  | ... ({len(shown) - 40} more lines)"] if len(shown) > 40 else [])
        if self.kind == "remove":
            return [f"remove{where}: {self.what} (previous version kept)"]
        return [f"gpuhub{where}: {self.what}"]


def script(step: str, name: str, env: dict, **more) -> Action:
    return Action("script", name, step=step, env=dict(env), **more)


def upload(path: str, text: str = None, mode: int = 0o644, **more) -> Action:
    return Action("upload", path, text=text, mode=mode, **more)


def call(what: str, run: Callable, **more) -> Action:
    return Action("call", what, run=run, **more)


@dataclass
class Change:
    summary: str
    apply: Callable = None  # apply(ctx) -> None; raises target.StepFailed. Default: run `actions`
    restarts: bool = False      # K3s restarts: running notebooks die
    destructive: bool = False   # needs --yes
    notify: tuple = ()          # handlers to run once per host after its changes
    satisfies: tuple = ()       # handlers this change performs itself (a restart it already did)
    actions: tuple = ()         # what it does, as data (Action); `--verbose` shows them

    def __post_init__(self):
        self.actions = tuple(self.actions)
        if self.apply is None:
            self.apply = self.run_actions

    def run_actions(self, ctx):
        for action in self.actions:
            action.execute(ctx)

    def lines(self) -> list:
        return [line for action in self.actions for line in action.lines()]


@dataclass
class StepPlan:
    id: str
    status: str
    changes: list = field(default_factory=list)
    reason: str = ""
    note: str = ""  # why nothing to do, for `ok`
    # Blocked by what the cluster holds, which no host step's change lifts (another chart's
    # release under the name): shown even while the step still waits on its hosts.
    lasting: bool = False

    @property
    def summary(self) -> str:
        if self.changes:
            return "; ".join(c.summary for c in self.changes)
        return self.note

    @property
    def restarts(self) -> bool:
        return any(c.restarts for c in self.changes)

    @property
    def destructive(self) -> bool:
        return any(c.destructive for c in self.changes)

    def as_json(self) -> dict:
        return {"id": self.id, "status": self.status, "summary": self.summary,
                "restarts": self.restarts, "destructive": self.destructive, "reason": self.reason}


def needs(host=(), server=()):
    """What a step's plan reads: facts of its own host, and of the cluster's server (each a
    probe of gpuhub.facts). Declared here, in one place per step, they are gathered with every
    other fact in one round trip per host; the plan sees only these (Facts.only) and runs no
    command of its own (plan.plan_steps), so a new step cannot add a round trip by accident."""
    def declare(plan):
        plan.needs = (tuple(host), tuple(server))
        return plan
    return declare


def ok(step_id: str, note: str = "") -> StepPlan:
    return StepPlan(step_id, OK, note=note)


def blocked(step_id: str, reason: str, lasting: bool = False) -> StepPlan:
    return StepPlan(step_id, BLOCKED, reason=reason, lasting=lasting)


def pending(step_id: str, reason: str) -> StepPlan:
    return StepPlan(step_id, PENDING, reason=reason)


def changes(step_id: str, items: list, note: str = "") -> StepPlan:
    return StepPlan(step_id, CHANGE, changes=items) if items else ok(step_id, note)


@dataclass
class Context:
    """What a step sees: the inventory, one host, its facts and target; the server's too."""
    inv: object
    host: object
    facts: object
    target: object
    server_facts: object = None
    server_target: object = None
    secrets: object = None
    earlier: dict = field(default_factory=dict)  # step id -> StepPlan, for this host so far
    destroy_user_data: bool = False
    log: Callable = print
    # The GPU test runs on the nodes whose host changed in this run (or all, when the device
    # plugin changed), on every GPU node with --verify or `gpu.test` itself, else not at all: a
    # converged run changes nothing and starts no Job (issue 13).
    verify: bool = False
    changed_hosts: frozenset = frozenset()
    progress: object = None  # gpuhub.progress.Progress of the run; one of its own otherwise

    def waiting(self, step: str, what: str, detail=None):
        """A block that waits: says every few seconds what for and for how long (gpuhub.progress)."""
        if self.progress is None:
            from ..progress import Progress
            self.progress = Progress(self.log)
        return self.progress.waiting(self.host.name, step, what, detail)

    def on_server(self) -> "Context":
        """This run, acting on the cluster's server: cluster changes go through its kubectl."""
        if self.host.name == self.inv.server.name:
            return self
        return replace(self, host=self.inv.server, facts=self.server_facts, target=self.server_target, earlier={})

    @property
    def k3s_unit(self) -> str:
        return "k3s" if self.host.role == "server" else "k3s-agent"

    def changed_before(self, *step_ids) -> bool:
        return any(self.earlier.get(s) is not None and self.earlier[s].status in (CHANGE, PENDING)
                   for s in step_ids)

    def script(self, name: str, step: str, env: dict, stdin: str = None, timeout: int = None):
        """Run scripts/NAME on the host (uploaded by the plan before any change)."""
        from ..target import StepFailed
        try:
            result = self.target.check(f"{SCRIPTS_DIR}/{name}", step, env=env, stdin=stdin, timeout=timeout)
        except StepFailed as e:
            self._log_lines(step, e.result.stdout)  # what it did before failing (e.g. "restored ...")
            raise
        self._log_lines(step, result.stdout)
        return result

    def _log_lines(self, step: str, text: str):
        for line in text.splitlines():
            if line.strip():
                self.log(f"{self.host.name}: {step}: {line.strip()}")
