#!/usr/bin/env bash
# Uninstall K3s, first copying users' volumes (the local-path provisioner keeps every PVC, so
# users' home directories, under /var/lib/rancher/k3s/storage, which the uninstall deletes) to
# BACKUP_ROOT/<UTC time>/storage. Refuses, changing nothing, when BACKUP_ROOT lacks the room.
# Order: room check, k3s-killall.sh (no notebook writes during the copy), copy, uninstall script.
# A second reset finds nothing installed and does nothing.
#
# Inputs (environment):
#   K3S_ROLE           server | agent (required): picks k3s-uninstall.sh or k3s-agent-uninstall.sh
#                      (the other one when only that one exists)
#   BACKUP_ROOT        absolute path, default /var/backups/gpuhub (created 0700 when missing);
#                      each backup folder in it is 0700
#   DESTROY_USER_DATA  true | false (default false): true skips the backup, volumes are lost
# Output (stdout), one line per thing:
#   "unchanged k3s (not installed)"                                     nothing to do
#   "backed up N KiB of users' volumes to BACKUP_ROOT/YYYYmmddTHHMMSSZ"  (holds storage/)
#   "skipped backup of N KiB of users' volumes (DESTROY_USER_DATA=true)"
#   "removed k3s"
# Exit status: 0 done; 1 refused (not enough room: nothing changed) or failed, with the reason
#   on stderr (a failed copy leaves K3s stopped but installed);
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

server_uninstall="$BIN_DIR/k3s-uninstall.sh"
agent_uninstall="$BIN_DIR/k3s-agent-uninstall.sh"
if [ ! -e "$server_uninstall" ] && [ ! -e "$agent_uninstall" ] && [ ! -e "$BIN_DIR/k3s" ]; then
  echo "unchanged k3s (not installed)"
  exit 0
fi

log=$(mktemp)
trap 'rm -f -- "$log"' EXIT
run_logged() {
  if ! "$@" >> "$log" 2>&1; then
    tail -n 20 -- "$log" >&2
    fail "$* failed"
  fi
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
if [ -x "$BIN_DIR/k3s-killall.sh" ]; then
  run_logged "$BIN_DIR/k3s-killall.sh"
fi
if [ "$backup" = true ]; then
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
  if ! cp -a -- "$STORAGE" "$dest/storage"; then
    rm -rf -- "$dest"
    fail "copying $STORAGE to $dest/storage failed: K3s is stopped but nothing was uninstalled" \
      "(k3s-restart.sh starts it again)"
  fi
  echo "backed up $size_kib KiB of users' volumes to $dest"
fi

# ------------------------------------------------------------------ uninstall
if [ "$K3S_ROLE" = server ]; then
  uninstall=$server_uninstall other=$agent_uninstall
else
  uninstall=$agent_uninstall other=$server_uninstall
fi
[ -e "$uninstall" ] || uninstall=$other
if [ -e "$uninstall" ]; then
  run_logged sh "$uninstall"
else
  # Only the binary is there (an install that stopped early): remove what an install lays down.
  for link in kubectl crictl ctr; do
    if [ -L "$BIN_DIR/$link" ] && [ "$(readlink -- "$BIN_DIR/$link")" = k3s ]; then
      rm -f -- "$BIN_DIR/$link"
    fi
  done
  rm -rf -- /etc/rancher/k3s /var/lib/rancher/k3s /var/lib/kubelet
  rm -f -- "$BIN_DIR/k3s"
fi
[ ! -e "$BIN_DIR/k3s" ] || fail "$BIN_DIR/k3s is still there after the uninstall"
echo "removed k3s"
