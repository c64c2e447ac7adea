#!/usr/bin/env bash
# Install one file atomically, keeping the previous version as a backup.
# Every gpuhub step lays files down with this, and it is safe to run by hand:
#   SRC=build/hosts/gpu1/k3s-config.yaml DEST=/etc/rancher/k3s/config.yaml MODE=0600 \
#     scripts/install-file.sh
# Inputs (environment): SRC (file to install), DEST (target path), MODE (octal, default 0644).
# Prints "unchanged DEST" or "changed DEST" (and where the backup went); exits non-zero on error.
set -euo pipefail

: "${SRC:?set SRC to the file to install}"
: "${DEST:?set DEST to the target path}"
MODE="${MODE:-0644}"

case "$MODE" in
  [0-7][0-7][0-7] | 0[0-7][0-7][0-7]) ;;
  *) echo "install-file: MODE must be octal such as 0644, not '$MODE'" >&2; exit 2 ;;
esac
[ -f "$SRC" ] || { echo "install-file: SRC '$SRC' is not a file" >&2; exit 2; }

dir=$(dirname -- "$DEST")
mkdir -p -- "$dir"

if [ -f "$DEST" ] && cmp -s -- "$SRC" "$DEST"; then
  current=$(stat -c '%a' -- "$DEST")
  if [ "$((8#$current))" -eq "$((8#$MODE))" ]; then
    echo "unchanged $DEST"
    exit 0
  fi
fi

# Same folder as DEST, so the final rename is atomic; created 0600, so never readable by others.
tmp=$(mktemp -- "$dir/.gpuhub-install.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat -- "$SRC" > "$tmp"
chmod -- "$MODE" "$tmp"

if [ -e "$DEST" ]; then
  backup="$DEST.gpuhub-backup"
  cp -p -- "$DEST" "$backup"
  echo "backup $backup"
fi
mv -f -- "$tmp" "$DEST"
trap - EXIT
echo "changed $DEST"
