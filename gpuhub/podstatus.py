#!/usr/bin/env python3
"""Why a pod is not running as it should, read where Kubernetes keeps it.

One pure function, standard library only, so that it serves twice: gpuhub's facts import it, and
the GPU test runs this very file on the server (`scripts/pod-why.py` is a link to it), where
python3 reads `kubectl get pods -o json` from stdin and prints `NAME PHASE WHY` per pod.

Where the reasons are (core/v1 PodStatus, kubernetes/api v0.34 core/v1/types.go):
- `status.reason` (+ `message`): pod-level CamelCase reasons only, e.g. `Evicted`,
  `UnexpectedAdmissionError`, `OutOfnvidia.com/gpu`, `DeadlineExceeded`;
- the `PodScheduled` condition with status False: reason `Unschedulable` (or `SchedulingGated`),
  message the scheduler's ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. ..."), the
  same text as the pod's FailedScheduling event;
- `initContainerStatuses[]` / `containerStatuses[]`: `state.waiting` {reason, message} for
  CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ContainerCreating;
  `state.terminated` {exitCode, signal, reason, message} for a container that ended (Error,
  OOMKilled, Completed); `lastState.terminated` for the previous run of a restarting one.
"""
from __future__ import annotations

import json
import sys

# Says only that init containers still run; their own entries say what they wait for
# (kubelet pkg/kubelet/kubelet_pods.go, the main containers' waiting reason meanwhile).
_NOT_A_REASON = {"PodInitializing"}


def _join(reason, message) -> str:
    reason, message = (reason or "").strip(), (message or "").strip()
    return f"{reason}: {message}" if reason and message else reason or message


def _ended(terminated: dict) -> str:
    code = terminated.get("exitCode")
    text = terminated.get("reason") or "exited"
    if terminated.get("signal"):
        text += f" (signal {terminated['signal']})"
    elif code is not None:
        text += f" (exit code {code})"
    return _join(text, terminated.get("message"))


def why(pod: dict) -> str:
    """What keeps `pod` (a core/v1 Pod as `kubectl get -o json` prints it) from running, or ''."""
    status = pod.get("status") or {}
    parts = []
    if status.get("reason"):
        parts.append(_join(status["reason"], status.get("message")))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            parts.append(_join(condition.get("reason") or "Unschedulable", condition.get("message")))
    for kind, key in (("init container", "initContainerStatuses"), ("container", "containerStatuses")):
        for container in status.get(key) or []:
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            last = (container.get("lastState") or {}).get("terminated")
            if waiting and waiting.get("reason") not in _NOT_A_REASON:
                text = _join(waiting.get("reason"), waiting.get("message"))
                if last:
                    text += f" (last run: {_ended(last)})"
            elif terminated and terminated.get("exitCode") not in (0, None):
                text = _ended(terminated)
            else:
                continue
            parts.append(f"{kind} {container.get('name', '?')}: {text}")
    return "; ".join(parts)


def main() -> int:
    """stdin: a Pod or a List of them (kubectl get pods -o json); stdout: `NAME PHASE WHY`."""
    data = json.load(sys.stdin)
    for pod in data["items"] if "items" in data else [data]:
        name = (pod.get("metadata") or {}).get("name", "?")
        phase = (pod.get("status") or {}).get("phase") or "Unknown"
        print(f"{name} {phase} {why(pod)}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
