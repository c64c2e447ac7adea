#!/usr/bin/env bash
# Replace K3s's containerd template (config-v3.toml.tmpl, containerd 2) safely: install the new
# one atomically, keeping the old one, restart K3s once (sibling k3s-restart.sh), check that K3s
# runs and that its generated config.toml makes nvidia the default runtime, and roll back
# (old template back, restart again) when it does not. A template that declares a table K3s's
# base already declares stops containerd, so K3s (k3s-io/docs#566): hence the rollback.
#
# Inputs (environment):
#   TEMPLATE_SRC   the new template, uploaded to this host (required)
#   K3S_UNIT       k3s | k3s-agent (required)
#   NODE_NAME      optional, passed to k3s-restart.sh (a server then waits for the node Ready)
#   READY_TIMEOUT  optional, passed to k3s-restart.sh (default 120)
# Target: /var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl (0644), laid down by
#   install-file.sh (beside this script), which keeps the previous one as
#   /var/backups/gpuhub/files/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl.
# Output (stdout): "unchanged TARGET" (identical: no restart), or "backup BACKUP",
#   k3s-restart.sh's lines, then "changed TARGET"; on a failed health check "restored TARGET"
#   (old template back, or the new one removed when there was none) before exiting 1.
# Exit status: 0 unchanged or changed and healthy; 1 failed (rolled back; the reason and the
#   journal tail on stderr); 2 bad input (nothing changed).
#
# Example (by hand, as root, on an agent):
#   TEMPLATE_SRC=build/hosts/gpu2/containerd/config-v3.toml.tmpl K3S_UNIT=k3s-agent \
#     scripts/containerd-template.sh
set -euo pipefail

me=containerd-template
bad() { echo "$me: $*" >&2; exit 2; }

DIR=/var/lib/rancher/k3s/agent/etc/containerd
TARGET="$DIR/config-v3.toml.tmpl"
PREVIOUS="/var/backups/gpuhub/files$TARGET"
GENERATED="$DIR/config.toml"
WANTED='default_runtime_name = "nvidia"'

TEMPLATE_SRC="${TEMPLATE_SRC:-}"
K3S_UNIT="${K3S_UNIT:-}"
NODE_NAME="${NODE_NAME:-}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"

[ -n "$TEMPLATE_SRC" ] || bad "set TEMPLATE_SRC to the new template's path"
[ -f "$TEMPLATE_SRC" ] || bad "TEMPLATE_SRC '$TEMPLATE_SRC' is not a file"
restart_script="$(dirname -- "$0")/k3s-restart.sh"
install_file="$(dirname -- "$0")/install-file.sh"
for sibling in "$restart_script" "$install_file"; do
  [ -f "$sibling" ] || { echo "$me: $sibling is missing (upload it beside this script)" >&2; exit 1; }
done
# The restart's inputs are checked by the restart script itself, before anything changes here.
K3S_UNIT="$K3S_UNIT" NODE_NAME="$NODE_NAME" READY_TIMEOUT="$READY_TIMEOUT" CHECK_ONLY=true \
  bash "$restart_script" || exit $?

if [ -f "$TARGET" ] && cmp -s -- "$TEMPLATE_SRC" "$TARGET"; then
  echo "unchanged $TARGET"
  exit 0
fi

restart() {
  K3S_UNIT="$K3S_UNIT" NODE_NAME="$NODE_NAME" READY_TIMEOUT="$READY_TIMEOUT" bash "$restart_script"
}

err=$(mktemp)
trap 'rm -f -- "$err"' EXIT
had_old=false
[ ! -f "$TARGET" ] || had_old=true
# Atomic, the previous template kept in $PREVIOUS (what the rollback below restores).
placed=$(SRC=$TEMPLATE_SRC DEST=$TARGET MODE=0644 BACKUP_ROOT=/var/backups/gpuhub/files bash "$install_file") \
  || exit 1
grep '^backup ' <<< "$placed" || true

reason=""
if ! restart_out=$(restart 2>"$err"); then
  reason="K3s did not restart with the new template: $(tail -n 22 -- "$err")"
elif ! systemctl is-active --quiet "$K3S_UNIT"; then
  reason="$K3S_UNIT is not active after its restart: $(journalctl -u "$K3S_UNIT" -n 20 --no-pager 2>&1)"
elif ! grep -qF -- "$WANTED" "$GENERATED" 2>/dev/null; then
  reason="K3s's generated $GENERATED lacks '$WANTED'"
fi
[ -z "$restart_out" ] || echo "$restart_out"
if [ -z "$reason" ]; then
  echo "changed $TARGET"
  exit 0
fi

# ------------------------------------------------------------------ roll back
if [ "$had_old" = true ]; then
  SRC=$PREVIOUS DEST=$TARGET MODE=0644 BACKUP=false bash "$install_file" >/dev/null \
    || echo "$me: could not restore $TARGET from $PREVIOUS" >&2
else
  rm -f -- "$TARGET"
fi
echo "restored $TARGET"
echo "$me: $reason" >&2
echo "$me: rolled back $TARGET and restarting $K3S_UNIT with the previous one" >&2
if ! restart >/dev/null; then
  echo "$me: $K3S_UNIT did not come back after the rollback either" >&2
fi
exit 1
