#!/usr/bin/env bash
# down.sh - stop the SSH test hosts made by up.sh (idempotent).
#
#  * closes ssh ControlMaster processes whose sockets live in $TESTHOSTS_STATE
#    (testinfra's ssh backend and ansible leave them running for 60 s);
#  * TESTHOSTS_IMPL=nspawn hosts: SIGTERM to every host's systemd-nspawn at once (= clean
#    poweroff of the containers), SIGKILL after 15 s, then unmounts each host's overlay;
#  * every host: stops, by pid, what is left in the host's own mount namespace (ns hosts:
#    sshd and whatever a test started through it) and in its network namespace;
#  * nspawn hosts on a machine without systemd: removes the host's own cgroups;
#  * netns mode: deletes the host's veth and the network namespace that up.sh recorded in
#    gpuN/netns, and the bridge recorded in $TESTHOSTS_STATE/bridge once no host of any
#    state dir is left on it.
# Only what up.sh recorded in $TESTHOSTS_STATE is touched.  Keeps $TESTHOSTS_STATE (keys,
# per-host upper dirs = host state) unless --purge.  Never touches the nspawn rootfs cache.
#
# Usage: tests/hosts/down.sh [--purge]        (root; env: TESTHOSTS_STATE)
set -uo pipefail

STATE="${TESTHOSTS_STATE:-/tmp/testhosts}"
PURGE=0
case "${1:-}" in
  --purge) PURGE=1 ;;
  "") ;;
  *) echo "usage: down.sh [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }
[ -d "$STATE" ] || { echo "down.sh: nothing to do ($STATE does not exist)"; exit 0; }
STATE="$(cd "$STATE" && pwd -P)"
# the machine's own mount namespace: PID 1's (may be unreadable, e.g. in a microVM) and ours
ROOT_MNTNS="$(readlink /proc/1/ns/mnt 2>/dev/null || true)"
OWN_MNTNS="$(readlink /proc/self/ns/mnt)"

running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$1"; }

pids_in_mntns() {   # $1 = "mnt:[inode]" recorded by up.sh; never the machine's own
  local p
  { [ -z "$1" ] || [ "$1" = "$ROOT_MNTNS" ] || [ "$1" = "$OWN_MNTNS" ]; } && return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
  done
}

stop_pids() {       # $1 = seconds to wait after TERM, then KILL the survivors
  local wait_s="$1" p alive=(); shift
  [ $# -eq 0 ] && return 0
  kill -TERM "$@" 2>/dev/null
  for _ in $(seq 1 $((wait_s * 10))); do
    alive=(); for p in "$@"; do if running "$p"; then alive+=("$p"); fi; done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${alive[@]}" 2>/dev/null
  local left
  for _ in $(seq 1 30); do      # KILL is asynchronous: wait (max 3 s) so umount finds them gone
    left=(); for p in "${alive[@]}"; do if running "$p"; then left+=("$p"); fi; done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  return 0
}

shopt -s nullglob
# ssh multiplex masters (sockets cm-* from ssh_config, ansible-cp/* from ansible.cfg); with a
# long $STATE path up.sh put the cm-* sockets in a short dir of their own ($STATE/cm-dir)
CM_DIR="$(cat "$STATE/cm-dir" 2>/dev/null || true)"
case "$CM_DIR" in /tmp/testhosts-cm-*) ;; *) CM_DIR="" ;; esac
for sock in "$STATE"/cm-* ${CM_DIR:+"$CM_DIR"/cm-*} "$STATE"/ansible-cp/*; do
  [ -S "$sock" ] && ssh -o ControlPath="$sock" -O exit th-dummy >/dev/null 2>&1 </dev/null
  rm -f "$sock"
done
if [ -n "$CM_DIR" ]; then rmdir "$CM_DIR" 2>/dev/null; rm -f "$STATE/cm-dir"; fi

# nspawn hosts: power them all off in parallel
nspawn_pids=()
for hdir in "$STATE"/gpu*/; do
  hdir="${hdir%/}"; pid="$(cat "$hdir/pid" 2>/dev/null || true)"
  if [ "$(cat "$hdir/impl" 2>/dev/null)" = nspawn ] && [ -n "$pid" ] \
     && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd-nspawn ]; then
    nspawn_pids+=("$pid")
  fi
done
stop_pids 15 "${nspawn_pids[@]}"

for hdir in "$STATE"/gpu*/; do
  hdir="${hdir%/}"; name="$(basename "$hdir")"; n=0
  impl="$(cat "$hdir/impl" 2>/dev/null || echo ns)"
  pid="$(cat "$hdir/pid" 2>/dev/null || true)"
  ns="$(cat "$hdir/netns" 2>/dev/null || true)"      # only a namespace up.sh made for us
  if [ "$impl" = nspawn ] && [ -n "$pid" ] && printf '%s\n' "${nspawn_pids[@]}" | grep -qxF "$pid"; then n=1; fi
  pids=()
  if [ -f "$hdir/mntns" ]; then mapfile -t pids < <(pids_in_mntns "$(cat "$hdir/mntns")"); fi
  if [ "$impl" = ns ] && [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = sshd ]; then pids+=("$pid"); fi
  if [ -n "$ns" ] && netns_exists "$ns"; then
    mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null)
  fi
  if [ ${#pids[@]} -gt 0 ]; then
    mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -un)
    stop_pids 3 "${pids[@]}"; n=$((n + ${#pids[@]}))
  fi
  if [ "$impl" = nspawn ]; then
    if mountpoint -q "$hdir/merged"; then
      umount "$hdir/merged" 2>/dev/null || { sleep 1; umount "$hdir/merged"; } || umount -l "$hdir/merged"
    fi
    rmdir "/run/systemd/nspawn/propagate/$name" 2>/dev/null   # nspawn leaves it when /run is not tmpfs
    if [ -f "$hdir/cgroups" ]; then      # the host's own cgroups (up.sh), deepest first
      while read -r cg; do
        case "$cg" in /sys/fs/cgroup/*/testhosts-*|/sys/fs/cgroup/testhosts-*) ;; *) continue ;; esac
        for _ in 1 2 3 4 5; do
          [ -d "$cg" ] || break
          find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null; [ -d "$cg" ] && sleep 0.2
        done
        [ -d "$cg" ] && echo "down.sh: could not remove cgroup $cg" >&2
      done < "$hdir/cgroups"
      rm -f "$hdir/cgroups"
    fi
  fi
  rm -f "$hdir/pid" "$hdir/mntns"
  if [ -n "$ns" ]; then
    ip link show "$ns" >/dev/null 2>&1 && ip link del "$ns"      # the veth pair, at once
    netns_exists "$ns" && ip netns del "$ns"
    rm -f "$hdir/netns"
  fi
  echo "down.sh: $name down ($impl, stopped $n process(es))"
done

if [ -f "$STATE/bridge" ]; then
  br="$(cat "$STATE/bridge")"
  if ip link show "$br" >/dev/null 2>&1; then
    if [ -z "$(ip -o link show master "$br" 2>/dev/null)" ]; then
      ip link del "$br" && echo "down.sh: bridge $br deleted"
    else
      echo "down.sh: bridge $br kept: other test hosts are still on it"
    fi
  fi
  rm -f "$STATE/bridge"
fi

if [ -f "$STATE/run-netns-mount" ]; then   # up.sh's `ip netns add` made /run/netns a mount
  if mountpoint -q /run/netns && [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns && rm -f "$STATE/run-netns-mount"
    rmdir /run/netns 2>/dev/null     # iproute2 makes it again when needed
  fi
fi
# what systemd-nspawn leaves in /run when the machine has no systemd (empty dirs only)
rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null

if [ "$PURGE" = 1 ]; then
  if grep -qF " $STATE/" /proc/mounts; then
    echo "down.sh: not purging $STATE: something is still mounted below it" >&2; exit 1
  fi
  rm -rf "$STATE"; echo "down.sh: purged $STATE"
fi
exit 0
