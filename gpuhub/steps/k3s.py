"""k3s.install and k3s.reset."""
from __future__ import annotations

import hashlib
import time

from .. import facts as f
from .. import k3sflags, names, render
from ..secret import Secret
from ..target import StepFailed
from . import (RESTART_K3S, SCRIPTS_DIR, WORK_DIR, Change, Context, StepPlan, blocked, call, changes,
               command_deadline, needs, ok, script, upload)

INSTALL, RESET = "k3s.install", "k3s.reset"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def airgap_upload(inv, key: str, path: str, mode: int = 0o644, machine: str = None):
    """(the path on the host, [its upload]) for airgap file `key` (the one for `machine`, the
    host's `uname -m`, when the inventory lists files per architecture), or ("", [])."""
    local = inv.airgap_file(key, machine)
    if local is None:
        return "", []
    return path, [upload(path, local=local, mode=mode, backup=False)]


def airgap_arch_problem(inv, arch, keys=("k3s_binary", "k3s_images", "helm_binary")) -> str:
    """'' when the airgap binaries (checked alike when the inventory was loaded) are for this
    host's architecture (`uname -m`), else what to fix; an unknown architecture is not judged.
    With files per architecture, a host whose architecture lacks one the others have is told
    which key to add (inventory.airgap_missing)."""
    from ..airgapfile import elf_arch
    for key in keys:
        missing = inv.airgap_missing(key, arch)
        if missing:
            return missing
    if arch not in ("x86_64", "aarch64"):
        return ""
    for key in ("k3s_binary", "helm_binary"):
        path = inv.airgap_file(key, arch) if key in keys else None
        if path and elf_arch(path) != arch:
            return (f"airgap.{key} {path} is built for {elf_arch(path)}, this host is {arch}: give the "
                    f"{'arm64' if arch == 'aarch64' else 'amd64'} release")
    return ""


@needs(host=('systemd', 'arch', 'k3s_version', 'unit_k3s', 'unit_k3s_agent', 'k3s_config_sha', 'k3s_config_keys', 'agent_token_sha', 'helm_sha', 'helm_version', 'traefik_pods', 'ingresses'), server=('server_token_sha',))
def plan_install(ctx: Context) -> StepPlan:
    host, fx, inv = ctx.host, ctx.facts, ctx.inv
    if fx["systemd"] != "yes":
        return blocked(INSTALL, "no systemd on this host: K3s runs as a systemd service")
    # helm runs on the server only: an agent never gets helm_binary.
    wrong = airgap_arch_problem(inv, fx["arch"], ("k3s_binary", "k3s_images")
                                + (("helm_binary",) if host.role == "server" else ()))
    if wrong:
        return blocked(INSTALL, wrong)
    wanted_version = inv.cluster["k3s_version"]
    installed = fx["k3s_version"]
    skipped = skipped_minor(installed, wanted_version)
    if skipped:
        return blocked(INSTALL, skipped)
    unit = fx["unit_k3s"] if host.role == "server" else fx["unit_k3s_agent"]
    running = installed is not None and unit["active"]
    config = render.k3s_config(inv, host)
    config_text = render.dump(config)
    items = []

    if fx["k3s_config_sha"] != sha256(config_text):
        verb = "write" if fx["k3s_config_sha"] is None else "update"
        breaks = traefik_dependents(ctx)
        extra = inv.k3s_extra_config(host.role)
        named = f" (with cluster.k3s_extra_config keys: {', '.join(extra)})" if extra else ""
        if breaks:
            named += f": disables Traefik, which serves {breaks}: they stop answering"
        dropped = dropped_keys(fx["k3s_config_keys"], config, host.role)
        if dropped:
            named += (f"; DROPS keys the file on the host sets: {', '.join(dropped)} (keep them under "
                      "cluster.k3s_extra_config)")
        items.append(Change(f"{verb} {f.K3S_CONFIG}{named}", actions=[upload(f.K3S_CONFIG, config_text, 0o600)],
                            restarts=running, destructive=bool(dropped or breaks), notify=(RESTART_K3S,)))
    if host.role == "agent":
        server_sha = ctx.server_facts["server_token_sha"] if ctx.server_facts else None
        if server_sha is None or fx["agent_token_sha"] != server_sha:
            items.append(Change(f"copy the node token from {inv.server.name} into {f.AGENT_TOKEN} (0600)",
                                actions=[call(f"read {f.SERVER_TOKEN} on {inv.server.name} (over SSH, into memory) "
                                              f"and write it to {f.AGENT_TOKEN} here, mode 0600; never shown",
                                              copy_token)],
                                restarts=running, notify=(RESTART_K3S,)))
    if installed != wanted_version:
        downgrade = is_downgrade(installed, wanted_version)
        summary = (f"install K3s {wanted_version}" if installed is None
                   else f"downgrade K3s {installed} -> {wanted_version} (K3s supports upgrades only: its "
                        "datastore and the cluster's objects may already be in the newer release's form)"
                   if downgrade else f"upgrade K3s {installed} -> {wanted_version}")
        if inv.airgap_file("k3s_binary", fx["arch"]):
            summary += " (airgap)"
        items.append(Change(summary, actions=install_k3s(inv, host, fx["arch"]), restarts=installed is not None,
                            destructive=downgrade, notify=(RESTART_K3S,)))
    elif not (unit["active"] and unit["enabled"]) and not items:
        items.append(Change(f"start and enable {ctx.k3s_unit}", notify=(RESTART_K3S,)))
    if host.role == "server":
        helm = helm_change(ctx)
        if helm:
            items.append(helm)
    return changes(INSTALL, items, note=f"K3s {installed} {ctx.k3s_unit} active, config as rendered")


def traefik_dependents(ctx: Context) -> str:
    """The Ingresses (other than the hub's own, which its next release drops) that the running
    Traefik serves, when the config about to be written disables it ("" otherwise): the evidence
    that makes the change destructive. K3s deploys Traefik as a packaged AddOn; started with
    `disable: [traefik]` it no longer deploys it and removes the one deployed before (docs.k3s.io,
    installation/packaged-components, "Disabling AddOns"; not re-read in K3s's source here)."""
    if ctx.host.role != "server" or "traefik" not in render.k3s_config(ctx.inv, ctx.host).get("disable", []):
        return ""
    if not ctx.facts["traefik_pods"]:
        return ""  # Traefik is not running: nothing it serves now
    hub = f"{ctx.inv.hub['namespace']}/{ctx.inv.hub['release']}"
    others = [i for i in ctx.facts["ingresses"] or [] if i["release"] != hub]
    if not others:
        return ""
    return "Ingress " + ", ".join(f"{i['namespace']}/{i['name']}" + (f" ({', '.join(i['hosts'])})" if i["hosts"]
                                                                      else "") for i in others)


def dropped_keys(present, config: dict, role: str = "server") -> list:
    """The keys of the host's config.yaml (names only: the facts never read a value, which may be
    the cluster's token) that the rendered one lacks. Keys gpuhub writes itself are its own to
    change (a runtime mode switch drops default-runtime); any other key was written by hand or
    came from cluster.k3s_extra_config, and the running K3s uses it."""
    # A key this host's K3s command does not take (cluster-cidr in an agent's file) is ignored by
    # it: dropping it changes nothing. One gpuhub's flag list does not know may be newer: counted.
    return [k for k in present or () if k not in config and k not in k3sflags.GPUHUB_OWNED
            and (role in k3sflags.roles_for(k) or not k3sflags.roles_for(k))]


def is_downgrade(installed, wanted: str) -> bool:
    """Whether `wanted` is older than the K3s `installed` here (an unreadable version is not judged)."""
    have, want = names.k3s_version(installed or ""), names.k3s_version(wanted)
    return bool(have and want and want < have)


def skipped_minor(installed, wanted: str) -> str:
    """Why going from `installed` to `wanted` is refused, or '': an upgrade that skips a minor
    release. K3s's manual-upgrade docs (docs.k3s.io/upgrades/manual, "Release Channels" tip):
    the Kubernetes version skew policy applies, and a plan must not skip intermediate minor
    versions. Refused rather than confirmed with --yes: no flag makes the skip supported, and the
    way round is plain (one provision per minor)."""
    have, want = names.k3s_version(installed or ""), names.k3s_version(wanted)
    if not (have and want) or want[:2] <= have[:2] or want[1] == have[1] + 1:
        return ""
    step = f"v{have[0]}.{have[1] + 1}"
    return (f"K3s {installed} -> {wanted} skips the {step} line: K3s upgrades one minor release at a time "
            f"(docs.k3s.io/upgrades/manual); set cluster.k3s_version to a {step}.x+k3s1 release, provision, "
            f"then step on one minor at a time to {want[0]}.{want[1]}")


def helm_change(ctx: Context):
    airgap = ctx.inv.airgap_file("helm_binary", ctx.facts["arch"])
    wanted = ctx.inv.cluster["helm_version"]
    if airgap is not None:
        if ctx.facts["helm_sha"] == hashlib.sha256(airgap.read_bytes()).hexdigest():
            return None
        summary = "install helm (airgap)"
    else:
        if ctx.facts["helm_version"] == wanted:
            return None
        summary = f"install helm {wanted}"
    env = {"HELM_VERSION": wanted}
    path, uploads = airgap_upload(ctx.inv, "helm_binary", f"{WORK_DIR}/helm", 0o755, ctx.facts["arch"])
    if path:
        env["HELM_BINARY"] = path
    return Change(summary, actions=uploads + [script(INSTALL, "helm-install.sh", env)])


def copy_token(ctx: Context):
    """The server's node token, read over SSH into memory and written 0600 on the agent:
    never in argv, never printed."""
    token = ctx.server_target.run(f"cat {f.SERVER_TOKEN}")
    if not token.ok or not token.stdout.strip():
        raise StepFailed(ctx.host.name, INSTALL, f"read {f.SERVER_TOKEN} on {ctx.inv.server.name}", token,
                         reason="the server has no node token yet")
    secret = Secret(token.stdout.strip())  # from now on masked in output, refused in any command line
    # No backup: the server holds the token; a stale copy would only be a secret lying around.
    ctx.target.put_text(secret.reveal() + "\n", f.AGENT_TOKEN, 0o600, backup=False)


def install_k3s(inv, host, machine: str = None) -> list:
    """The airgap files (when given; those for `machine`, the host's `uname -m`), then k3s-install.sh."""
    env = {"K3S_ROLE": host.role, "K3S_VERSION": inv.cluster["k3s_version"]}
    images = inv.airgap_file("k3s_images", machine)
    uploads = []
    for key, path, mode in (("k3s_install_script", f"{WORK_DIR}/k3s-install.sh", 0o755),
                            ("k3s_binary", f"{WORK_DIR}/k3s", 0o755),
                            ("k3s_images", f"{WORK_DIR}/{images.name}" if images else "", 0o644)):
        env[key.upper()], more = airgap_upload(inv, key, path, mode, machine)
        uploads += more
    if host.role == "agent":
        env["K3S_URL"] = inv.server_url
        env["K3S_TOKEN_FILE"] = f.AGENT_TOKEN
    return uploads + [script(INSTALL, "k3s-install.sh", env, wait="the K3s install (download, unit start)")]


READY_TIMEOUT_S = 120       # for the unit to be active again (k3s-restart.sh)
NODE_READY_TIMEOUT_S = 90   # then for the node to say, freshly, that it is Ready with its runtimes
CONTAINERD_LOG = "/var/lib/rancher/k3s/agent/containerd/containerd.log"


def restart_k3s(ctx: Context, written=()):
    """The handler: restart K3s once and check it works, or put back the files this run wrote
    for it (`written`: (path, previous version kept)) and restart K3s with them.

    Checked before the restart (nothing restarted when it fails): an agent's server answers on
    6443 and its node token is the server's; with nvidia as the default runtime, the toolkit is
    there (K3s refuses to start without it). After: the unit is active (k3s-restart.sh, bounded:
    an agent that cannot join would block `systemctl restart` forever), then the node reports,
    freshly, Ready and, on a GPU host with the toolkit, an nvidia runtime handler: what containerd
    actually loaded (a template naming a runtime it lacks costs containerd its CRI plugin, while
    K3s runs on)."""
    env = restart_env(ctx)
    since = server_clock(ctx)
    size = ctx.target.run(f"stat -c %s {CONTAINERD_LOG}").stdout.strip()
    logged = int(size) if size.isdigit() else 0  # containerd's log before this restart: bytes
    try:
        if ctx.host.role == "agent":
            check_agent_token(ctx)
        with ctx.waiting(RESTART_K3S, f"{ctx.k3s_unit} to be active again"):
            ctx.script("k3s-restart.sh", INSTALL, env, timeout=command_deadline(READY_TIMEOUT_S))
        wait_node(ctx, since, logged)
    except StepFailed as failed:
        raise rolled_back(ctx, failed, written) from None


def restart_env(ctx: Context, require_runtime: bool = True) -> dict:
    return host_restart_env(ctx.inv, ctx.host, require_runtime)


def host_restart_env(inv, host, require_runtime: bool = True) -> dict:
    """k3s-restart.sh's inputs. No NODE_NAME: the node is checked here, through the server, for
    servers and agents alike (wait_node)."""
    env = {"K3S_UNIT": "k3s" if host.role == "server" else "k3s-agent", "READY_TIMEOUT": str(READY_TIMEOUT_S)}
    if host.role == "agent":
        env["SERVER_URL"] = inv.server_url
    if require_runtime and host.gpus and inv.nvidia_is_default:
        env["REQUIRE_RUNTIME"] = "nvidia"
    return env


def restart_lines(inv, host) -> list:
    """What the restart-k3s handler runs, for `--verbose` (restart_k3s does it)."""
    restart = script(INSTALL, "k3s-restart.sh", host_restart_env(inv, host))
    first = ([f"check that {inv.server.name} answers on 6443 and that {f.AGENT_TOKEN} holds its node token "
              "(by digest)"] if host.role == "agent" else [])
    return first + restart.lines() + [
        f"then, through {inv.server.name}: wait up to {NODE_READY_TIMEOUT_S} s for node {host.name} to report "
        "Ready after the restart" + (" and, once the toolkit is there, an nvidia runtime handler" if host.gpus else ""),
        "on failure: put back the files written for it and restart K3s with them"]


def server_clock(ctx: Context) -> float:
    result = ctx.server_target.run("date +%s")
    return float(result.stdout.strip()) if result.ok and result.stdout.strip().isdigit() else 0.0


def check_agent_token(ctx: Context):
    """The agent's copy of the node token is the server's (an agent with another one would retry
    forever): compared by digest, the token itself never leaves the hosts' files."""
    digest = f.parse_sha256(ctx.target.run(f"tr -d '\\n' < {f.AGENT_TOKEN} | sha256sum").stdout, 0)
    wanted = ctx.server_facts["server_token_sha"] if ctx.server_facts else None
    if wanted and digest != wanted:
        raise StepFailed(ctx.host.name, INSTALL, "", reason=f"the node token in {f.AGENT_TOKEN} is not "
                         f"{ctx.inv.server.name}'s: nothing restarted (run provision with the server too)",
                         before_restart=True)


def wait_node(ctx: Context, since: float, logged: int = 0):
    """The node's Ready condition, posted after the restart (`since`, the server's clock), and its
    runtime handlers (core/v1 NodeStatus.runtimeHandlers), read through the server. A node that
    is not Ready while containerd's log (past its first `logged` bytes) says its CRI plugin did
    not load fails at once: that does not mend by waiting."""
    expect_nvidia = bool(ctx.host.gpus) and ctx.target.run(
        "PATH=/usr/local/nvidia/toolkit:$PATH command -v nvidia-container-runtime").ok
    state = {"seen": "the node has not reported since the restart"}
    with ctx.waiting(RESTART_K3S, f"node {ctx.host.name} to report Ready after the restart",
                     detail=lambda: state["seen"]):
        deadline = time.monotonic() + NODE_READY_TIMEOUT_S
        while True:
            node = f.parse_node(*_run(ctx.server_target, f"{f.KUBECTL} get node {ctx.host.name} -o json"))
            if node and node["heartbeat"] is not None and node["heartbeat"] >= since - 1:
                handlers = node["runtime_handlers"]
                if node["ready"] and (not expect_nvidia or "nvidia" in handlers):
                    return
                state["seen"] = (f"node {ctx.host.name} is not Ready: {node['ready_message'] or 'no reason given'}"
                                 if not node["ready"] else
                                 f"node {ctx.host.name} reports no nvidia runtime handler (it has: "
                                 f"{', '.join(h or '(default)' for h in handlers) or 'none'})")
                if not node["ready"] and cri_refused(ctx, logged):
                    raise StepFailed(ctx.host.name, INSTALL, "", reason=f"after the restart, {state['seen']}: "
                                     "containerd did not load its CRI plugin")
            if time.monotonic() > deadline:
                raise StepFailed(ctx.host.name, INSTALL, "", reason=f"after the restart, {state['seen']} "
                                 f"(waited {NODE_READY_TIMEOUT_S} s)")
            time.sleep(2)


def cri_refused(ctx: Context, logged: int) -> bool:
    """containerd logged, since the restart, that its CRI runtime plugin failed to load (containerd
    v2.1.5 cmd/containerd/server/server.go: "failed to load plugin" id=io.containerd.cri.v1.runtime)."""
    new = ctx.target.run(f"tail -c +{int(logged) + 1} {CONTAINERD_LOG}").stdout
    return any("failed to load plugin" in line and "io.containerd.cri.v1.runtime" in line for line in new.splitlines())


def _run(target, command: str):
    result = target.run(command)
    return result.stdout, result.exited


def rolled_back(ctx: Context, failed: "StepFailed", written) -> "StepFailed":
    """Put back the files this run wrote for the restart, restart K3s with them when it had been
    restarted, and say what happened with containerd's own log (K3s does not put it in the journal)."""
    restarted = not failed.before_restart and not (failed.result is not None and failed.result.exited == 3)
    lines = [failed.details]
    undone = []
    for path, kept in reversed(list(written)):
        try:
            ctx.target.restore(path, kept)
            undone.append(path)
        except Exception as e:  # noqa: BLE001 - say it, keep going with the others
            lines.append(f"could not restore {path}: {e}")
    if undone:
        ctx.log(f"{ctx.host.name}: rolled back {', '.join(undone)}")
        lines.append(f"rolled back {', '.join(undone)}" + (" and restarted K3s with them" if restarted else ""))
        if restarted:
            try:
                ctx.target.check(f"{SCRIPTS_DIR}/k3s-restart.sh", INSTALL, env=restart_env(ctx, False),
                                 timeout=command_deadline(READY_TIMEOUT_S))
            except StepFailed as again:
                lines.append(f"{ctx.k3s_unit} did not come back after the rollback either: {again.details}")
    log = ctx.target.run(f"tail -n 6 {CONTAINERD_LOG}")
    if restarted and log.ok and log.stdout.strip():
        lines.append(f"{CONTAINERD_LOG} ends with:\n" + "\n".join("      " + line for line in log.stdout.splitlines()))
    return StepFailed(ctx.host.name, INSTALL, "restart-k3s", reason="\n    ".join(lines))


@needs(host=('k3s_units', 'k3s_version', 'unit_k3s', 'unit_k3s_agent', 'storage_kib'), server=('storage',))
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
    env = {"K3S_ROLE": ctx.host.role, "DESTROY_USER_DATA": "true" if ctx.destroy_user_data else "false"}
    said, uploads = storage_said(ctx)
    if uploads:
        env["VOLUME_RECORD"] = VOLUME_RECORD
    reset = script(RESET, "k3s-reset.sh", env, wait="K3s's uninstall")
    return StepPlan(RESET, "change", changes=[Change(f"uninstall K3s ({role}); {data}; {said}",
                                                     actions=[*uploads, reset], restarts=True, destructive=True)])


# The record of which volume is whose, put beside the backup (k3s-reset.sh VOLUME_RECORD).
VOLUME_RECORD = f"{WORK_DIR}/users-volumes.json"


def storage_said(ctx: Context):
    """What the reset does to users' volumes, per StorageClass, from the cluster's own objects
    (read on the server); and the upload of the record of whose volume is which. Without them
    (the cluster is down, or this run does not reach the server) nothing is taken for safe: the
    local-path folder is backed up as always and the plan says what it could not tell."""
    import json
    from .. import storage
    cluster = ctx.server_facts.get("storage") if ctx.server_facts is not None else None
    if cluster is None:
        return (f"storage classes: could not be read (the cluster does not answer on {ctx.inv.server.name}): "
                f"only {storage.STORAGE_DIR} is backed up; volumes of any other class are not known"), []
    others = set(ctx.inv.hosts) - {ctx.host.name}  # K3s's node names are the inventory's (k3s_config)
    lines = storage.class_lines(cluster, ctx.host.name, ctx.destroy_user_data, others)
    rows = storage.record(cluster, ctx.host.name, ctx.destroy_user_data, others)
    said = "storage classes: " + ("; ".join(lines) if lines else "none")
    if not rows:
        return said, []
    text = json.dumps({"node": ctx.host.name, "volumes": rows}, indent=1, sort_keys=True) + "\n"
    said += f"; a record of whose volume is which ({len(rows)}) is written beside the backup"
    return said, [upload(VOLUME_RECORD, text, mode=0o600, backup=False)]
