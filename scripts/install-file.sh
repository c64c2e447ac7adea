#!/usr/bin/env bash
# Install one file atomically and keep the version it replaces: gpuhub's one way of laying a
# file down on a host. Every upload and every script that places a file goes through here.
#   1. a temp file in DEST's own folder (so the last step is a rename on one filesystem),
#      holding SRC's bytes, with MODE, owned by root, flushed to disk (fsync);
#   2. the current DEST copied to BACKUP_ROOT/DEST (the previous version: what a rollback, or a
#      person, restores), unless BACKUP=false;
#   3. the temp file renamed over DEST, and DEST's folder flushed.
# An interruption leaves DEST either as it was or complete, never half-written.
# ACTION=remove takes DEST away the same way (the previous version kept); ACTION=restore puts
# back what a rollback needs: the kept previous version, or nothing when there was none.
#
# Inputs (environment):
#   SRC          the new content (a file; required)
#   DEST         absolute target path (required)
#   MODE         octal, e.g. 0600 (default 0644)
#   BACKUP       true | false (default true): false for work files and secret-bearing files
#                that must not outlive their use
#   BACKUP_ROOT  absolute folder for previous versions (default /var/backups/gpuhub/files; 0700)
#   REMOVE_SRC   true: SRC is a staging file and goes away in every case (renamed into place
#                when it is already in DEST's folder). Default false.
#   ACTION       install (default: needs SRC) | remove | restore
#   PREVIOUS     with ACTION=restore: kept (put BACKUP_ROOT/DEST back) | none (DEST did not exist
#                before: remove it)
# Output (stdout): "unchanged DEST" (same bytes and mode: nothing written), or
#   "backup BACKUP_ROOT/DEST" (when there was a previous version) then "changed DEST";
#   remove: "backup ..." then "removed DEST", or "unchanged DEST (absent)";
#   restore: "restored DEST" or "removed DEST".
# Exit status: 0 done; 1 failed (the reason on stderr: a full disk is named as such, with the
#   path and the space left; DEST is untouched); 2 bad input (nothing changed).
#
# Example (by hand, as root):
#   SRC=rendered/hosts/gpu1/k3s-config.yaml DEST=/etc/rancher/k3s/config.yaml MODE=0600 \
#     scripts/install-file.sh
set -euo pipefail

me=install-file
bad() { echo "$me: $*" >&2; exit 2; }

SRC="${SRC:-}"
DEST="${DEST:-}"
MODE="${MODE:-0644}"
BACKUP="${BACKUP:-true}"
BACKUP_ROOT="${BACKUP_ROOT:-/var/backups/gpuhub/files}"
REMOVE_SRC="${REMOVE_SRC:-false}"
ACTION="${ACTION:-install}"
PREVIOUS="${PREVIOUS:-}"

tmp=""
cleanup() {
  if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi
  if [ "$REMOVE_SRC" = true ] && [ -n "$SRC" ] && [ "$SRC" != "$DEST" ]; then rm -f -- "$SRC"; fi
}
trap cleanup EXIT

case "$REMOVE_SRC" in true | false) ;; *) bad "REMOVE_SRC must be 'true' or 'false', not '$REMOVE_SRC'" ;; esac
case "$ACTION" in
  install)
    [ -n "$SRC" ] || bad "set SRC to the file to install"
    [ -f "$SRC" ] || bad "SRC '$SRC' is not a file" ;;
  remove) ;;
  restore)
    case "$PREVIOUS" in kept | none) ;; *) bad "PREVIOUS must be 'kept' or 'none' with ACTION=restore, not '$PREVIOUS'" ;; esac ;;
  *) bad "ACTION must be install, remove or restore, not '$ACTION'" ;;
esac
case "$DEST" in
  /*) ;;
  *) bad "DEST must be an absolute path, not '$DEST'" ;;
esac
case "$DEST" in */ | */. | */.. | *//* | */../* | */./*) bad "DEST '$DEST' is not a plain file path" ;; esac
[ ! -d "$DEST" ] || bad "DEST '$DEST' is a folder"
[[ "$MODE" =~ ^0?[0-7]{3}$ ]] || bad "MODE must be octal such as 0644, not '$MODE'"
case "$BACKUP" in true | false) ;; *) bad "BACKUP must be 'true' or 'false', not '$BACKUP'" ;; esac
case "$BACKUP_ROOT" in
  /*) ;;
  *) bad "BACKUP_ROOT must be an absolute path, not '$BACKUP_ROOT'" ;;
esac

dir=$(dirname -- "$DEST")
backup="$BACKUP_ROOT$DEST"

# Says how much room is left where a write failed: a full disk must read as one.
write_failed() {  # WHAT PATH
  local free
  free=$(df -Pk -- "$(dirname -- "$2")" 2>/dev/null | awk 'NR == 2 { print $4 }')
  if [ -n "$free" ] && [ "$free" -lt 64 ]; then
    echo "$me: no space left on device: $1 $2 ($free KiB free on its filesystem)" >&2
  else
    echo "$me: could not $1 $2${free:+ ($free KiB free on its filesystem)}" >&2
  fi
  exit 1
}

# The previous version, copied beside its place in BACKUP_ROOT and renamed: never half a file.
keep_previous() {
  local btmp
  if [ ! -d "$BACKUP_ROOT" ]; then
    mkdir -p -- "$BACKUP_ROOT" || write_failed "create" "$BACKUP_ROOT/"
    chmod 0700 -- "$BACKUP_ROOT"
  fi
  mkdir -p -- "$(dirname -- "$backup")" || write_failed "create the folder of" "$backup"
  btmp=$(mktemp -- "$(dirname -- "$backup")/.gpuhub-install.XXXXXX") || write_failed "back up to" "$backup"
  if ! cp -p -- "$DEST" "$btmp" || ! sync -- "$btmp" || ! mv -f -- "$btmp" "$backup"; then
    rm -f -- "$btmp"
    write_failed "back up to" "$backup"
  fi
  echo "backup $backup"
}

if [ "$ACTION" = remove ]; then
  if [ ! -e "$DEST" ]; then
    echo "unchanged $DEST (absent)"
    exit 0
  fi
  if [ "$BACKUP" = true ]; then keep_previous; fi
  rm -f -- "$DEST"
  sync -- "$dir" 2>/dev/null || true
  echo "removed $DEST"
  exit 0
fi
if [ "$ACTION" = restore ]; then
  if [ "$PREVIOUS" = none ]; then
    rm -f -- "$DEST"
    echo "removed $DEST"
    exit 0
  fi
  [ -f "$backup" ] || { echo "$me: no previous version of $DEST in $backup to restore" >&2; exit 1; }
  SRC=$backup
  BACKUP=false
fi

# Files are root's (run by hand as another user, for a test: that user's).
owner=$(id -u)
if [ -f "$DEST" ] && cmp -s -- "$SRC" "$DEST" \
   && [ "$((8#$(stat -c '%a' -- "$DEST")))" -eq "$((8#$MODE))" ] && [ "$(stat -c '%u' -- "$DEST")" = "$owner" ]; then
  echo "unchanged $DEST"
  exit 0
fi

mkdir -p -- "$dir" || write_failed "create the folder of" "$DEST"
if [ "$REMOVE_SRC" = true ] && [ "$(dirname -- "$SRC")" = "$dir" ]; then
  tmp=$SRC  # staged in DEST's folder already: renamed into place, never copied
else
  tmp=$(mktemp -- "$dir/.gpuhub-install.XXXXXX") || write_failed "create a temporary file beside" "$DEST"
  cat -- "$SRC" > "$tmp" || write_failed "write" "$DEST"
fi
[ "$owner" != 0 ] || chown 0:0 -- "$tmp"
chmod -- "$MODE" "$tmp"
sync -- "$tmp" || write_failed "flush" "$DEST"

if [ "$BACKUP" = true ] && [ -e "$DEST" ]; then keep_previous; fi
mv -f -- "$tmp" "$DEST"
tmp=""
sync -- "$dir" 2>/dev/null || true
if [ "$ACTION" = restore ]; then echo "restored $DEST"; else echo "changed $DEST"; fi
