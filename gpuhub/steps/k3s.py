"""k3s.install and k3s.reset."""
from __future__ import annotations

import hashlib
import time

from .. import facts as f
from .. import render
from ..secret import Secret
from . import RESTART_K3S, WORK_DIR, Change, Context, StepPlan, blocked, changes, ok

INSTALL, RESET = "k3s.install", "k3s.reset"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upload_airgap(ctx: Context, key: str, path: str, mode: int = 0o644):
    local = ctx.inv.airgap_file(key)
    if local is None:
        return ""
    ctx.target.put_file(local, path, mode, backup=False)
    return path


def plan_install(ctx: Context) -> StepPlan:
    host, fx, inv = ctx.host, ctx.facts, ctx.inv
    if fx["systemd"] != "yes":
        return blocked(INSTALL, "no systemd on this host: K3s runs as a systemd service")
    wanted_version = inv.cluster["k3s_version"]
    installed = fx["k3s_version"]
    unit = fx["unit_k3s"] if host.role == "server" else fx["unit_k3s_agent"]
    running = installed is not None and unit["active"]
    config_text = render.dump(render.k3s_config(inv, host))
    items = []

    if fx["k3s_config_sha"] != sha256(config_text):
        verb = "write" if fx["k3s_config_sha"] is None else "update"
        items.append(Change(f"{verb} {f.K3S_CONFIG}", lambda c: c.target.put_text(config_text, f.K3S_CONFIG, 0o600),
                            restarts=running, notify=(RESTART_K3S,)))
    if host.role == "agent":
        server_sha = ctx.server_facts["server_token_sha"] if ctx.server_facts else None
        if server_sha is None or fx["agent_token_sha"] != server_sha:
            items.append(Change(f"copy the node token from {inv.server.name} into {f.AGENT_TOKEN} (0600)",
                                copy_token, restarts=running, notify=(RESTART_K3S,)))
    if installed != wanted_version:
        summary = (f"install K3s {wanted_version}" if installed is None
                   else f"upgrade K3s {installed} -> {wanted_version}")
        if inv.airgap_file("k3s_binary"):
            summary += " (airgap)"
        items.append(Change(summary, install_k3s, restarts=installed is not None, notify=(RESTART_K3S,)))
    elif not (unit["active"] and unit["enabled"]) and not items:
        items.append(Change(f"start and enable {ctx.k3s_unit}", lambda c: None, notify=(RESTART_K3S,)))
    if host.role == "server":
        helm = helm_change(ctx)
        if helm:
            items.append(helm)
    return changes(INSTALL, items, note=f"K3s {installed} {ctx.k3s_unit} active, config as rendered")


def helm_change(ctx: Context):
    airgap = ctx.inv.airgap_file("helm_binary")
    wanted = ctx.inv.cluster["helm_version"]
    if airgap is not None:
        if ctx.facts["helm_sha"] == hashlib.sha256(airgap.read_bytes()).hexdigest():
            return None
        summary = "install helm (airgap)"
    else:
        if ctx.facts["helm_version"] == wanted:
            return None
        summary = f"install helm {wanted}"

    def apply(c: Context):
        env = {"HELM_VERSION": wanted}
        if airgap is not None:
            env["HELM_BINARY"] = upload_airgap(c, "helm_binary", f"{WORK_DIR}/helm", 0o755)
        c.script("helm-install.sh", INSTALL, env)
    return Change(summary, apply)


def copy_token(ctx: Context):
    """The server's node token, read over SSH into memory and written 0600 on the agent:
    never in argv, never printed."""
    token = ctx.server_target.run(f"cat {f.SERVER_TOKEN}")
    if not token.ok or not token.stdout.strip():
        from ..target import StepFailed
        raise StepFailed(ctx.host.name, INSTALL, f"read {f.SERVER_TOKEN} on {ctx.inv.server.name}", token,
                         reason="the server has no node token yet")
    secret = Secret(token.stdout.strip())  # from now on masked in output, refused in any command line
    # No backup: the server holds the token; a stale copy would only be a secret lying around.
    ctx.target.put_text(secret.reveal() + "\n", f.AGENT_TOKEN, 0o600, backup=False)


def install_k3s(ctx: Context):
    inv, host = ctx.inv, ctx.host
    env = {"K3S_ROLE": host.role, "K3S_VERSION": inv.cluster["k3s_version"]}
    env["K3S_INSTALL_SCRIPT"] = upload_airgap(ctx, "k3s_install_script", f"{WORK_DIR}/k3s-install.sh", 0o755)
    env["K3S_BINARY"] = upload_airgap(ctx, "k3s_binary", f"{WORK_DIR}/k3s", 0o755)
    images = inv.airgap_file("k3s_images")
    env["K3S_IMAGES"] = upload_airgap(ctx, "k3s_images", f"{WORK_DIR}/{images.name}") if images else ""
    if host.role == "agent":
        server = inv.server
        env["K3S_URL"] = f"https://{server.address or server.name}:6443"
        env["K3S_TOKEN_FILE"] = f.AGENT_TOKEN
    ctx.script("k3s-install.sh", INSTALL, env)


def restart_k3s(ctx: Context):
    """The handler: restart K3s once, wait for the unit (and on a server, its node) to be ready."""
    ctx.script("k3s-restart.sh", INSTALL, {"K3S_UNIT": ctx.k3s_unit, "NODE_NAME": ctx.host.name})


def plan_reset(ctx: Context) -> StepPlan:
    fx = ctx.facts
    units = fx.get("k3s_units", {})  # k3s*.service -> has its uninstall script (K3s's own)
    installed = (fx["k3s_version"] is not None or any(units.values())
                 or fx["unit_k3s"]["enabled"] or fx["unit_k3s_agent"]["enabled"])
    if not installed:
        return ok(RESET, "K3s is not installed")
    # K3s's uninstall script keeps the binary and all data while another k3s* unit exists
    # (k3s install.sh, release-1.34, create_uninstall): k3s-reset.sh refuses such a unit.
    foreign = sorted(f"{name}.service" for name, own in units.items() if not own)
    if foreign:
        verb = "is" if len(foreign) == 1 else "are"
        return blocked(RESET, f"{', '.join(foreign)} on this host {verb} not K3s's own (no "
                              "/usr/local/bin/NAME-uninstall.sh), and K3s's uninstall keeps the K3s binary "
                              "and all data while another k3s* unit exists: remove or rename it first")
    kib = fx["storage_kib"] or 0
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if kib and ctx.destroy_user_data:
        data = f"DESTROYS {kib} KiB of users' volumes (--destroy-user-data)"
    elif kib:
        data = f"users' volumes ({kib} KiB) backed up to /var/backups/gpuhub/{stamp}/ first"
    else:
        data = "no users' volumes to keep"
    others = sorted(name for name in units if name != ctx.k3s_unit)
    role = ctx.host.role + (f", and the other K3s unit{'s' if len(others) > 1 else ''} {', '.join(others)}"
                            if others else "")

    def apply(c: Context):
        c.script("k3s-reset.sh", RESET, {"K3S_ROLE": c.host.role,
                                          "DESTROY_USER_DATA": "true" if c.destroy_user_data else "false"})
    return StepPlan(RESET, "change", changes=[Change(f"uninstall K3s ({role}); {data}", apply,
                                                     restarts=True, destructive=True)])
