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
class Change:
    summary: str
    apply: Callable  # apply(ctx) -> None; raises target.StepFailed
    restarts: bool = False      # K3s restarts: running notebooks die
    destructive: bool = False   # needs --yes
    notify: tuple = ()          # handlers to run once per host after its changes
    satisfies: tuple = ()       # handlers this change performs itself (a restart it already did)


@dataclass
class StepPlan:
    id: str
    status: str
    changes: list = field(default_factory=list)
    reason: str = ""
    note: str = ""  # why nothing to do, for `ok`

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


def ok(step_id: str, note: str = "") -> StepPlan:
    return StepPlan(step_id, OK, note=note)


def blocked(step_id: str, reason: str) -> StepPlan:
    return StepPlan(step_id, BLOCKED, reason=reason)


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
