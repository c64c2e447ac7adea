"""gpu.runtime: driver preflight, NVIDIA container toolkit, containerd using it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import facts as f
from .. import names, render
from . import (RESTART_K3S, WORK_DIR, Action, Change, Context, StepPlan, blocked, changes, needs, ok, pending, script,
               upload)

RUNTIME = "gpu.runtime"


@dataclass(frozen=True)
class Preflight:
    """What the driver preflight found: a problem (with its fix) or none, and a note."""
    problem: str = ""
    fix: str = ""
    note: str = ""

    @property
    def reason(self) -> str:
        return f"{self.problem}: {self.fix}" if self.problem else ""


def driver_preflight(host, fx) -> Preflight:
    """The GPUs `host` gives to K3s, judged against its PCI bus, which shows NVIDIA GPUs with or
    without a driver: a broken driver is a problem, never read as "no GPUs"."""
    pci = len(fx["pci_gpus"] or [])
    smi = fx["nvidia_smi"]
    on_bus = f"{pci} NVIDIA GPU(s) on the PCI bus"
    if host.gpus > pci:
        return Preflight(f"the inventory gives gpuhub {host.gpus} GPU(s), but there are {on_bus}",
                         f"fix hosts.{host.name}.gpus, or check that the card is seated and powered")
    note = (f"{pci - host.gpus} of the {on_bus} not given to gpuhub (hosts.{host.name}.gpus is {host.gpus}: "
            "a GPU kept for the display or passed through to a VM)") if pci > host.gpus else ""
    if not host.gpus:
        return Preflight(note=note)
    if not smi["ok"]:
        return Preflight(f"{on_bus}, but nvidia-smi: {smi['error']}",
                         "install the driver, or reboot after the kernel update (gpuhub checks the driver, "
                         "never installs it)", note)
    listed = len(smi["gpus"])
    if listed < host.gpus:
        return Preflight(f"{on_bus}, but nvidia-smi lists only {listed}",
                         f"a GPU the driver lost (see `dmesg` for Xid errors): reboot, or lower hosts.{host.name}.gpus",
                         note)
    if listed > host.gpus:
        return Preflight(f"nvidia-smi lists {listed} GPU(s) but hosts.{host.name}.gpus is {host.gpus}",
                         f"the device plugin offers every GPU the driver sees: set hosts.{host.name}.gpus: {listed}",
                         note)
    return Preflight(note=note)


@needs(host=('nvidia_smi', 'pci_gpus', 'toolkit', 'containerd', 'template_sha', 'k3s_version', 'arch'))
def plan_runtime(ctx: Context) -> StepPlan:
    host, fx, inv = ctx.host, ctx.facts, ctx.inv
    preflight = driver_preflight(host, fx)
    note = preflight.note
    if preflight.problem:
        return blocked(RUNTIME, preflight.reason)
    if not host.gpus:
        return ok(RUNTIME, "no GPUs given to gpuhub on this host" + (f" ({note})" if note else ""))
    smi = fx["nvidia_smi"]
    installed = fx["k3s_version"] is not None
    k3s_pending = ctx.changed_before("k3s.install")
    items = []
    if not fx["toolkit"]:
        missing = inv.airgap_missing("toolkit_packages", fx["arch"])
        if missing:
            return blocked(RUNTIME, missing)
        packages = inv.airgap_files("toolkit_packages", fx["arch"])
        summary = f"install NVIDIA container toolkit {inv.gpu['toolkit_version']}" + (" (airgap)" if packages else "")
        items.append(Change(summary, actions=install_toolkit(inv, fx["arch"]), restarts=installed, notify=(RESTART_K3S,)))
    if inv.gpu["runtime"] == "template":
        template = render.containerd_template()
        if fx["template_sha"] != hashlib.sha256(template.encode()).hexdigest():
            # Validated before it goes (tests: validate.containerd_template_problems); the restart
            # handler checks what containerd loaded and puts the old one back when it does not work.
            items.append(Change("install the containerd template (nvidia as default runtime), with rollback"
                                + template_warning(inv.cluster["k3s_version"]),
                                actions=[upload(f.TEMPLATE, template, 0o644)], restarts=True,
                                notify=(RESTART_K3S,)))
    elif fx["template_sha"] is not None:
        # Left from template mode: it would keep nvidia the default runtime behind the inventory's back.
        items.append(Change(f"remove the containerd template (gpu.runtime is {inv.gpu['runtime']})",
                            actions=[Action("remove", f.TEMPLATE)], restarts=True, notify=(RESTART_K3S,)))
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
        return changes(RUNTIME, [Change(f"restart K3s: its containerd config {what}",
                                        restarts=True, notify=(RESTART_K3S,))])
    mode = {"runtimeclass": "RuntimeClass nvidia", "default-runtime": "nvidia default runtime",
            "template": "nvidia default runtime (template)" + template_warning(inv.cluster["k3s_version"]),
            }[inv.gpu["runtime"]]
    return ok(RUNTIME, f"driver {smi['gpus'][0]['driver']}, {len(smi['gpus'])} GPU(s) (nvidia-smi) of "
                       f"{len(fx['pci_gpus'] or [])} on the PCI bus, toolkit present, {mode}" + (f"; {note}" if note else ""))


def install_toolkit(inv, machine: str = None) -> list:
    """The airgap packages (when given; those for `machine`, the host's `uname -m`), then toolkit-install.sh."""
    uploads = [upload(f"{WORK_DIR}/{local.name}", local=local, backup=False)
               for local in inv.airgap_files("toolkit_packages", machine)]
    return uploads + [script(RUNTIME, "toolkit-install.sh", {"TOOLKIT_PACKAGES": " ".join(u.what for u in uploads),
                                                             "TOOLKIT_VERSION": inv.gpu["toolkit_version"]},
                             wait="the NVIDIA container toolkit's packages")]


# K3s lines whose ContainerdConfigTemplateV3 (pkg/agent/templates/templates.go) was read and
# found as the template's fixture assumes (FACTS.md; tests/data/k3s/base-v3*.toml): release-1.32
# and release-1.34 of github:muicoder/k3s, with 1.33 between them. No later branch could be read.
TEMPLATE_CHECKED_MINORS = (32, 33, 34)


def template_warning(k3s_version: str) -> str:
    minor = names.k3s_version(k3s_version)[1]
    if minor in TEMPLATE_CHECKED_MINORS:
        return ""
    return (f" (warning: K3s v1.{minor}'s containerd base template was not checked against its source; "
            f"checked: v1.{TEMPLATE_CHECKED_MINORS[0]}-v1.{TEMPLATE_CHECKED_MINORS[-1]})")
