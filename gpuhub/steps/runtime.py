"""gpu.runtime: driver preflight, NVIDIA container toolkit, containerd using it."""
from __future__ import annotations

import hashlib

from .. import facts as f
from .. import render
from . import RESTART_K3S, WORK_DIR, Change, Context, StepPlan, blocked, changes, ok, pending

RUNTIME = "gpu.runtime"


def plan_runtime(ctx: Context) -> StepPlan:
    host, fx, inv = ctx.host, ctx.facts, ctx.inv
    if not host.gpus:
        return ok(RUNTIME, "no GPUs on this host")
    smi = fx["nvidia_smi"]
    if not smi["ok"]:
        return blocked(RUNTIME, f"NVIDIA driver not working: {smi['error']}; install the driver "
                                "(gpuhub checks it, never installs it)")
    if len(smi["gpus"]) != host.gpus:
        return blocked(RUNTIME, f"the inventory expects {host.gpus} GPU(s), nvidia-smi lists {len(smi['gpus'])}; "
                                f"fix hosts.{host.name}.gpus or the hardware")
    installed = fx["k3s_version"] is not None
    k3s_pending = ctx.changed_before("k3s.install")
    items = []
    if not fx["toolkit"]:
        packages = inv.airgap_files("toolkit_packages")
        summary = f"install NVIDIA container toolkit {inv.gpu['toolkit_version']}" + (" (airgap)" if packages else "")
        items.append(Change(summary, install_toolkit, restarts=installed, notify=(RESTART_K3S,)))
    if inv.gpu["runtime"] == "template":
        template = render.containerd_template()
        if fx["template_sha"] != hashlib.sha256(template.encode()).hexdigest():
            items.append(Change("install the containerd template (nvidia as default runtime), with rollback",
                                lambda c: install_template(c, template), restarts=True, satisfies=(RESTART_K3S,)))
    elif fx["template_sha"] is not None:
        # Left from template mode: it would keep nvidia the default runtime behind the inventory's back.
        items.append(Change(f"remove the containerd template (gpu.runtime is {inv.gpu['runtime']})",
                            lambda c: c.target.check(f"rm -f {f.TEMPLATE}", RUNTIME), restarts=True,
                            notify=(RESTART_K3S,)))
    if items:
        return changes(RUNTIME, items)
    containerd = fx["containerd"]
    if containerd is None:
        if k3s_pending:
            return pending(RUNTIME, "K3s writes its containerd config when k3s.install has started it")
        return blocked(RUNTIME, "K3s has not generated a containerd config: is it running? (k3s.install)")
    want_default = inv.nvidia_is_default
    if "nvidia" not in containerd["runtimes"] or (want_default and containerd["default_runtime"] != "nvidia"):
        if k3s_pending:
            return ok(RUNTIME, "K3s's coming restart picks up nvidia-container-runtime")
        what = ("has no nvidia runtime" if "nvidia" not in containerd["runtimes"]
                else f"runs {containerd['default_runtime']} by default")
        return changes(RUNTIME, [Change(f"restart K3s: its containerd config {what}", lambda c: None,
                                        restarts=True, notify=(RESTART_K3S,))])
    mode = {"runtimeclass": "RuntimeClass nvidia", "default-runtime": "nvidia default runtime",
            "template": "nvidia default runtime (template)"}[inv.gpu["runtime"]]
    return ok(RUNTIME, f"driver {smi['gpus'][0]['driver']}, {len(smi['gpus'])} GPU(s), toolkit present, {mode}")


def install_toolkit(ctx: Context):
    packages = []
    for local in ctx.inv.airgap_files("toolkit_packages"):
        path = f"{WORK_DIR}/{local.name}"
        ctx.target.put_file(local, path)
        packages.append(path)
    ctx.script("toolkit-install.sh", RUNTIME, {"TOOLKIT_PACKAGES": " ".join(packages),
                                               "TOOLKIT_VERSION": ctx.inv.gpu["toolkit_version"]})


def install_template(ctx: Context, template: str):
    """Validated before it is uploaded (tests: validate.containerd_template_problems); the script
    swaps it in, restarts K3s, checks health, and restores the old one on failure."""
    source = f"{WORK_DIR}/config-v3.toml.tmpl"
    ctx.target.put_text(template, source, 0o644)
    ctx.script("containerd-template.sh", RUNTIME, {"TEMPLATE_SRC": source, "K3S_UNIT": ctx.k3s_unit,
                                                   "NODE_NAME": ctx.host.name})
