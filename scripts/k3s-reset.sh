#!/usr/bin/env bash
# Uninstall K3s, first copying users' volumes (the local-path provisioner keeps every PVC, so
# users' home directories, under /var/lib/rancher/k3s/storage, which the uninstall deletes) to
# BACKUP_ROOT/<UTC time>/storage. Refuses, changing nothing, when BACKUP_ROOT lacks the room.
# Order: checks, k3s-killall.sh (no notebook writes during the copy), copy, uninstall script(s).
# A second reset finds nothing installed and does nothing.
#
# K3s's install script writes one unit per role (k3s.service, k3s-agent.service) with an uninstall
# script named after it (k3s-uninstall.sh, k3s-agent-uninstall.sh). While any other k3s*.service
# exists, an uninstall script removes only its own unit and exits 0, keeping the binary and all
# data (k3s install.sh, release-1.34, create_uninstall). So this script uninstalls every K3s unit
# on the host (the other role's first, K3S_ROLE's last), refuses when a k3s*.service has no
# uninstall script (not K3s's own: K3s could not be removed while it exists), and checks after the
# uninstall that the binary, the units and the data are gone.
# k3s-killall.sh has no `set -e`: its exit status is that of its last command (an ip6tables
# pipeline: 127 without the iptables package), so it is judged by its effect instead: no K3s unit
# active and no K3s process left.
#
# Inputs (environment):
#   K3S_ROLE           server | agent (required): the role gpuhub installed; its uninstall
#                      script runs last
#   BACKUP_ROOT        absolute path, default /var/backups/gpuhub (created 0700 when missing);
#                      each backup folder in it is 0700
#   DESTROY_USER_DATA  true | false (default false): true skips the backup, volumes are lost
#   VOLUME_RECORD      optional: a file saying which user's volume is which (gpuhub writes it from
#                      the cluster's PVs and PVCs before the reset), moved to
#                      BACKUP_ROOT/<UTC time>/users-volumes.json (0600): volumes that outlive the
#                      uninstall in place (ZFS, LVM) are found again by it
# Output (stdout), one line per thing:
#   "unchanged k3s (not installed)"                                     nothing to do
#   "backed up N KiB of users' volumes to BACKUP_ROOT/YYYYmmddTHHMMSSZ"  (holds storage/)
#   "skipped backup of N KiB of users' volumes (DESTROY_USER_DATA=true)"
#   "recorded users' volumes in BACKUP_ROOT/YYYYmmddTHHMMSSZ/users-volumes.json"
#   "removed unit UNIT" for each K3s unit, then "removed k3s"
# Exit status: 0 done; 1 refused (not enough room, a k3s* unit that is not K3s's: nothing changed)
#   or failed, with the reason on stderr (K3s still running after killall, or a failed copy:
#   K3s stopped but installed, no backup made; something left after the uninstall);
#   2 bad input (nothing changed).
#
# Example (by hand, as root):
#   K3S_ROLE=server scripts/k3s-reset.sh
#   K3S_ROLE=agent BACKUP_ROOT=/srv/backups scripts/k3s-reset.sh
set -euo pipefail

me=k3s-reset
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

BIN_DIR=/usr/local/bin
STORAGE=/var/lib/rancher/k3s/storage

K3S_ROLE="${K3S_ROLE:-}"
BACKUP_ROOT="${BACKUP_ROOT:-/var/backups/gpuhub}"
DESTROY_USER_DATA="${DESTROY_USER_DATA:-false}"
VOLUME_RECORD="${VOLUME_RECORD:-}"

case "$K3S_ROLE" in
  server | agent) ;;
  *) bad "K3S_ROLE must be 'server' or 'agent', not '$K3S_ROLE'" ;;
esac
case "$BACKUP_ROOT" in
  /*) ;;
  *) bad "BACKUP_ROOT must be an absolute path, not '$BACKUP_ROOT'" ;;
esac
case "$BACKUP_ROOT/" in
  /var/lib/rancher/k3s/* | /etc/rancher/k3s/* | /var/lib/kubelet/* | /run/k3s/*)
    bad "BACKUP_ROOT '$BACKUP_ROOT' is inside what the uninstall deletes" ;;
esac
case "$DESTROY_USER_DATA" in
  true | false) ;;
  *) bad "DESTROY_USER_DATA must be 'true' or 'false', not '$DESTROY_USER_DATA'" ;;
esac
if [ -n "$VOLUME_RECORD" ] && [ ! -f "$VOLUME_RECORD" ]; then
  bad "VOLUME_RECORD '$VOLUME_RECORD' is not a file"
fi

DATA_DIR=/var/lib/rancher/k3s
SYSTEMD_DIR=/etc/systemd/system
KILLALL="$BIN_DIR/k3s-killall.sh"
KILL_WAIT=5  # seconds for K3s's processes to exit after killall

shopt -s nullglob
uninstall_scripts=("$BIN_DIR"/k3s*-uninstall.sh)
if [ "${#uninstall_scripts[@]}" -eq 0 ] && [ ! -e "$BIN_DIR/k3s" ]; then
  echo "unchanged k3s (not installed)"
  exit 0
fi

# The k3s*.service units of this host (names without .service).
k3s_units() {
  local path name
  for path in "$SYSTEMD_DIR"/k3s*.service; do
    name=${path##*/}
    echo "${name%.service}"
  done
}

# ------------------------------------------------------------------ units: all K3s's own?
mapfile -t units < <(k3s_units)
foreign=()
for unit in "${units[@]}"; do
  [ -e "$BIN_DIR/$unit-uninstall.sh" ] || foreign+=("$unit.service")
done
for path in /etc/init.d/k3s*; do foreign+=("$path"); done
if [ "${#foreign[@]}" -gt 0 ]; then
  fail "refusing to uninstall: ${foreign[*]}: not written by K3s's install script (no uninstall" \
    "script $BIN_DIR/NAME-uninstall.sh), and K3s's uninstall keeps the K3s binary and all its data" \
    "while another k3s* service exists; remove or rename it (systemctl disable --now UNIT; rm" \
    "$SYSTEMD_DIR/UNIT), then reset again"
fi
role_unit=k3s
[ "$K3S_ROLE" = server ] || role_unit=k3s-agent
ordered=()  # the uninstall scripts, K3S_ROLE's last: it is the one that removes K3s itself
for script in "${uninstall_scripts[@]}"; do
  [ "$script" = "$BIN_DIR/$role_unit-uninstall.sh" ] || ordered+=("$script")
done
[ ! -e "$BIN_DIR/$role_unit-uninstall.sh" ] || ordered+=("$BIN_DIR/$role_unit-uninstall.sh")

log=$(mktemp)
trap 'rm -f -- "$log"' EXIT
run_logged() {
  if ! "$@" >> "$log" 2>&1; then
    tail -n 20 -- "$log" >&2
    fail "$* failed"
  fi
}

# "PID: ARGS" of each process of K3s: what runs from the binaries K3s unpacks under DATA_DIR/data/
# (the real k3s re-executes itself from there, then starts containerd; the containerd shims), and
# "BIN_DIR/k3s server|agent" itself (argv[1] when a script runs under its interpreter, like the
# tests' simulation). kubectl, crictl and ctr, run through K3s's binary, are clients, not K3s.
k3s_processes() {
  local -A unpacked=()
  local path dir argv i
  while IFS= read -r path; do
    path=${path#/proc/}
    unpacked[${path%/exe}]=1
  done < <(find /proc/[0-9]*/exe -maxdepth 0 -lname "$DATA_DIR/data/*" 2>/dev/null)
  for dir in /proc/[0-9]*; do
    mapfile -d '' -t argv 2>/dev/null < "$dir/cmdline" || continue
    [ "${#argv[@]}" -gt 0 ] || continue  # a kernel thread or a zombie
    case "${argv[0]##*/}" in kubectl | crictl | ctr) continue ;; esac
    if [ -n "${unpacked[${dir#/proc/}]:-}" ]; then
      echo "${dir#/proc/}: ${argv[*]}"
      continue
    fi
    for i in 0 1; do
      if [ "${argv[i]:-}" = "$BIN_DIR/k3s" ]; then
        case "${argv[i + 1]:-}" in
          server | agent) echo "${dir#/proc/}: ${argv[*]}"; break ;;
        esac
      fi
    done
  done
}

# What of K3s still runs: "unit NAME active" and "process PID: ARGS" lines.
k3s_running() {
  local unit names
  mapfile -t names < <(k3s_units)
  for unit in "${names[@]}" k3s k3s-agent; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then echo "unit $unit active"; fi
  done | sort -u
  # a token given on the command line is not printed
  k3s_processes | sed -E 's/^/process /; s/((--token|--agent-token|-t)[= ])[^ ]+/\1***/g'
}

# ------------------------------------------------------------------ users' volumes: room?
backup=false
if [ -d "$STORAGE" ] && [ -n "$(find "$STORAGE" -mindepth 1 -maxdepth 1 -print -quit)" ]; then
  size_kib=$(du -sk -- "$STORAGE" | awk '{ print $1 }')
  if [ "$DESTROY_USER_DATA" = true ]; then
    echo "skipped backup of $size_kib KiB of users' volumes (DESTROY_USER_DATA=true)"
  else
    backup=true
    # df on BACKUP_ROOT, or on its nearest existing parent: nothing is created before the check.
    probe=$BACKUP_ROOT
    while [ ! -d "$probe" ]; do probe=$(dirname -- "$probe"); done
    free_kib=$(df -Pk -- "$probe" | awk 'NR == 2 { print $4 }')
    need_kib=$((size_kib + (size_kib + 9) / 10))
    if [ "$free_kib" -lt "$need_kib" ]; then
      fail "refusing to uninstall: users' volumes in $STORAGE take $size_kib KiB, the backup needs" \
        "$need_kib KiB (10% margin) but the filesystem of $BACKUP_ROOT has $free_kib KiB free;" \
        "free space, set BACKUP_ROOT elsewhere, or set DESTROY_USER_DATA=true to lose them"
    fi
  fi
fi

# ------------------------------------------------------------------ stop K3s, then copy
# Stopped first so that no notebook writes while its volume is copied (a consistent backup).
# killall's exit status says nothing (see the top): what is left running decides.
killall_status=none
if [ -x "$KILLALL" ]; then
  killall_status=0
  "$KILLALL" >> "$log" 2>&1 || killall_status=$?
fi
deadline=$((SECONDS + KILL_WAIT))
while running=$(k3s_running) && [ -n "$running" ] && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 0.5
done
if [ -n "$running" ]; then
  if [ "$killall_status" = none ]; then
    fail "K3s is running and there is no $KILLALL to stop it; nothing was uninstalled:" \
      "$(echo "$running" | paste -sd ';' -)"
  fi
  echo "--- last 20 lines of $KILLALL (exit status $killall_status) ---" >&2
  tail -n 20 -- "$log" >&2
  fail "K3s still runs after $KILLALL: $(echo "$running" | paste -sd ';' -);" \
    "nothing was backed up or uninstalled: stop what is left, then reset again"
fi
if [ "$backup" = true ] || [ -n "$VOLUME_RECORD" ]; then
  if [ ! -d "$BACKUP_ROOT" ]; then
    mkdir -p -- "$BACKUP_ROOT"
    chmod 0700 -- "$BACKUP_ROOT"
  fi
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  dest="$BACKUP_ROOT/$stamp"
  n=1
  while ! mkdir -m 0700 -- "$dest" 2>/dev/null; do
    [ "$n" -lt 100 ] || fail "cannot create a backup folder under $BACKUP_ROOT (K3s is stopped," \
      "nothing uninstalled)"
    dest="$BACKUP_ROOT/$stamp-$n"
    n=$((n + 1))
  done
  if [ "$backup" = true ] && ! cp -a -- "$STORAGE" "$dest/storage"; then
    rm -rf -- "$dest"
    fail "copying $STORAGE to $dest/storage failed: K3s is stopped but nothing was uninstalled" \
      "(k3s-restart.sh starts it again)"
  fi
  [ "$backup" = false ] || echo "backed up $size_kib KiB of users' volumes to $dest"
  if [ -n "$VOLUME_RECORD" ]; then
    install -m 0600 -- "$VOLUME_RECORD" "$dest/users-volumes.json"
    rm -f -- "$VOLUME_RECORD"
    echo "recorded users' volumes in $dest/users-volumes.json"
  fi
fi

# ------------------------------------------------------------------ uninstall
if [ "${#ordered[@]}" -gt 0 ]; then
  for script in "${ordered[@]}"; do
    run_logged sh "$script"
  done
else
  # Only the binary is there (an install that stopped early): remove what an install lays down.
  for link in kubectl crictl ctr; do
    if [ -L "$BIN_DIR/$link" ] && [ "$(readlink -- "$BIN_DIR/$link")" = k3s ]; then
      rm -f -- "$BIN_DIR/$link"
    fi
  done
  rm -rf -- /etc/rancher/k3s "$DATA_DIR" /var/lib/kubelet
  rm -f -- "$BIN_DIR/k3s"
fi

# An uninstall script exits 0 even where it kept everything: check what it was to remove.
left=()
[ ! -e "$BIN_DIR/k3s" ] || left+=("$BIN_DIR/k3s")
for path in "$SYSTEMD_DIR"/k3s*.service; do left+=("$path"); done
for script in "$BIN_DIR"/k3s*-uninstall.sh; do left+=("$script"); done
# Only files count: the uninstall keeps mount points (empty folders) inside DATA_DIR.
for dir in "$DATA_DIR" /etc/rancher/k3s; do
  file=$(find "$dir" ! -type d -print -quit 2>/dev/null || true)
  [ -z "$file" ] || left+=("files under $dir (e.g. $file)")
done
if [ "${#left[@]}" -gt 0 ]; then
  tail -n 20 -- "$log" >&2
  fail "the K3s uninstall left $(printf '%s; ' "${left[@]}")K3s is stopped but not removed"
fi
for unit in "${units[@]}"; do
  echo "removed unit $unit"
done
echo "removed k3s"
