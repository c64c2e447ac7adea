#!/usr/bin/env bash
# Restart the K3s unit once and wait until it works: the unit active and, on a server given
# NODE_NAME, the node Ready. The caller collects every reason to restart K3s and calls this once.
#
# Inputs (environment):
#   K3S_UNIT       k3s | k3s-agent (required)
#   NODE_NAME      optional; with K3S_UNIT=k3s, wait for this node to be Ready (agents have no
#                  kubeconfig: their caller waits on the server)
#   READY_TIMEOUT  seconds to wait for Ready (default 120)
#   CHECK_ONLY     true: validate the inputs and exit (containerd-template.sh checks them first)
# Output: "restarted UNIT" (stdout), then "ready node/NODE_NAME" when it waited for the node.
# Exit status: 0 restarted (and Ready); 1 the restart or the wait failed (the unit's last 20
#   journal lines on stderr); 2 bad input (nothing changed).
#
# Example (by hand, as root, on the server):
#   K3S_UNIT=k3s NODE_NAME=gpu1 scripts/k3s-restart.sh
set -euo pipefail

me=k3s-restart
bad() { echo "$me: $*" >&2; exit 2; }

K3S_UNIT="${K3S_UNIT:-}"
NODE_NAME="${NODE_NAME:-}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"

case "$K3S_UNIT" in
  k3s | k3s-agent) ;;
  *) bad "K3S_UNIT must be 'k3s' or 'k3s-agent', not '$K3S_UNIT'" ;;
esac
if [ -n "$NODE_NAME" ]; then
  [[ "$NODE_NAME" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] \
    || bad "NODE_NAME must be a Kubernetes node name (lower-case DNS name), not '$NODE_NAME'"
fi
[[ "$READY_TIMEOUT" =~ ^[1-9][0-9]{0,5}$ ]] \
  || bad "READY_TIMEOUT must be a positive number of seconds, not '$READY_TIMEOUT'"
[ "${CHECK_ONLY:-false}" = true ] && exit 0

journal_tail() {
  echo "--- last 20 journal lines of $K3S_UNIT ---" >&2
  journalctl -u "$K3S_UNIT" -n 20 --no-pager >&2 || true
}
fail() {
  echo "$me: $*" >&2
  journal_tail
  exit 1
}

systemctl cat "$K3S_UNIT.service" >/dev/null 2>&1 \
  || { echo "$me: unit $K3S_UNIT is not installed (run k3s-install.sh first)" >&2; exit 1; }

# Many restarts in a row hit systemd's start limit (StartLimitBurst): clear the count first.
systemctl reset-failed "$K3S_UNIT" >/dev/null 2>&1 || true
systemctl enable --quiet "$K3S_UNIT" || fail "systemctl enable $K3S_UNIT failed"
# K3s's units are Type=notify: restart returns once K3s reports it started, or fails.
systemctl restart "$K3S_UNIT" || fail "systemctl restart $K3S_UNIT failed"
systemctl is-active --quiet "$K3S_UNIT" || fail "$K3S_UNIT is not active after its restart"
echo "restarted $K3S_UNIT"

if [ "$K3S_UNIT" = k3s ] && [ -n "$NODE_NAME" ]; then
  # Right after a (first) start the API may not answer yet and the node may not be registered:
  # kubectl wait fails at once then, so retry it until the deadline.
  deadline=$((SECONDS + READY_TIMEOUT))
  last=""
  while :; do
    left=$((deadline - SECONDS))
    [ "$left" -ge 1 ] || left=1
    if last=$(k3s kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout="${left}s" 2>&1); then
      echo "ready node/$NODE_NAME"
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$last" >&2
      fail "node $NODE_NAME is not Ready after ${READY_TIMEOUT}s"
    fi
    systemctl is-active --quiet "$K3S_UNIT" || fail "$K3S_UNIT stopped while waiting for node $NODE_NAME"
    sleep 2
  done
fi
