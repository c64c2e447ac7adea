"""While helm installs or upgrades the hub: which image is pulling on which node, and for how long.

Zero to JupyterHub 4.4.0, before the release's own objects, runs a hook (pre-install and
pre-upgrade, templates/image-puller/): a DaemonSet `hook-image-puller` whose init containers each
pull one image that user pods may need (the singleuser image, every profile's image, extra ones:
_helpers-daemonset.tpl) on every node that runs user pods, and a Job `hook-image-awaiter` that
completes once all those pods run. helm waits for the Job up to its --timeout and prints nothing
meanwhile (helm v3.17.3 pkg/kube/client.go watchUntilReady). CUDA notebook images are several GB:
on a slow link that is a silent half hour, then, past the timeout, "failed pre-install: timed out
waiting for the condition". So gpuhub reads the hook's pods while helm waits, through a second
command on the same connection, and says what each node is pulling (gpuhub.progress).

An init container of such a pod is pulling its image while it waits with reason
PodInitializing (the kubelet's default waiting reason, pkg/kubelet/kubelet_pods.go; the kubelet
pulls one image at a time, serializeImagePulls); ErrImagePull / ImagePullBackOff when the pull
failed (kubelet pkg/kubelet/images/image_manager.go, with the registry's error as message).
"""
from __future__ import annotations

import json
import shlex
from . import facts as f
from .target import StepFailed

PULLER = "hook-image-puller"
FAILED_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def node_pulls(pod: dict) -> dict:
    """One hook-image-puller pod -> {node, done, total, image (the one pulling, or None),
    problem ('' or why a pull fails)}."""
    status = pod.get("status") or {}
    inits = status.get("initContainerStatuses") or []
    done = sum(1 for c in inits if ((c.get("state") or {}).get("terminated") or {}).get("exitCode") == 0)
    image, problem = None, ""
    for c in inits:
        state = c.get("state") or {}
        if state.get("terminated"):
            continue
        waiting = state.get("waiting") or {}
        image = c.get("image")
        if waiting.get("reason") in FAILED_PULL:
            problem = f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
        break
    return {"node": (pod.get("spec") or {}).get("nodeName") or "?", "done": done, "total": len(inits),
            "image": image, "problem": problem}


def describe(pods: list) -> str:
    """What the hook's pods are at, one clause per node: 'gpu1 pulling IMAGE (image 2 of 4)'."""
    clauses = []
    for view in sorted((node_pulls(p) for p in pods), key=lambda v: v["node"]):
        if view["problem"]:
            clauses.append(f"{view['node']} cannot pull {view['image']}: {view['problem']}")
        elif view["image"]:
            clauses.append(f"{view['node']} pulling {view['image']} (image {view['done'] + 1} of {view['total']})")
        else:
            clauses.append(f"{view['node']} has every image")
    return "; ".join(clauses)


def puller_pods(ctx) -> list:
    """The hook's pods now (a read-only kubectl call on the server), [] when there are none."""
    namespace = shlex.quote(ctx.inv.hub["namespace"])
    result = ctx.target.run(f"{f.KUBECTL} get pods -n {namespace} -l component={PULLER} -o json")
    try:
        return json.loads(result.stdout).get("items", []) if result.ok else []
    except ValueError:
        return []


def watched(ctx, apply, what: str):
    """Run `apply(ctx)` (the hub's helm run, waiting for `what`) while the run's progress says,
    every few seconds, which image each node is pulling. When helm gives up on the hook, the
    step's error says what the nodes were still pulling and which setting gives them longer."""
    ctx = ctx.on_server()
    with ctx.waiting("hub.launch", what, detail=lambda: describe(puller_pods(ctx))) as wait:
        try:
            apply(ctx)
        except StepFailed as e:
            stderr = e.result.stderr if e.result is not None else ""
            if "timed out waiting for the condition" not in stderr or "pre-" not in stderr:
                raise
            still = describe(puller_pods(ctx)) or wait.last
            raise StepFailed(e.host, e.step, e.command, e.result, reason=(
                f"helm gave up after hub.helm_timeout ({ctx.inv.hub['helm_timeout']}) waiting for the chart's "
                "image pull (pre-install/pre-upgrade hook)" + (f": {still}" if still else "")
                + ". What was pulled stays on the nodes; a slow link needs a longer hub.helm_timeout")) from None
