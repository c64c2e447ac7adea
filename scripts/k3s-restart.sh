#!/usr/bin/env bash
# Restart the K3s unit once and wait, with a deadline, until it works: the unit active and, on a
# server given NODE_NAME, the node Ready. The caller collects every reason to restart K3s and
# calls this once. K3s's units are Type=notify with TimeoutStartSec=0 (K3s install.sh), so a
# plain `systemctl restart` of an agent that cannot join never returns (the agent retries every
# 2 s, forever: K3s pkg/agent/run.go). Hence: check what can be checked first, restart without
# blocking, and wait here, with a deadline, saying why it failed.
#
# Inputs (environment):
#   K3S_UNIT         k3s | k3s-agent (required)
#   NODE_NAME        optional; with K3S_UNIT=k3s, wait for this node to be Ready (agents have no
#                    kubeconfig: their caller waits on the server)
#   READY_TIMEOUT    seconds to wait for the unit (and node) (default 120)
#   SERVER_URL       agents: https://SERVER:6443; checked reachable before anything is restarted
#   REQUIRE_RUNTIME  nvidia: K3s must find nvidia-container-runtime (default-runtime: nvidia
#                    makes K3s refuse to start without it); checked before restarting
#   CHECK_ONLY       true: validate the inputs and exit
# Output: "restarted UNIT" (stdout), then "ready node/NODE_NAME" when it waited for the node.
# Exit status: 0 restarted (and Ready); 1 the restart or the wait failed (the unit's last 20
#   journal lines on stderr); 2 bad input; 3 a check before the restart failed: nothing was
#   restarted.
#
# Example (by hand, as root, on an agent):
#   K3S_UNIT=k3s-agent SERVER_URL=https://10.0.0.1:6443 scripts/k3s-restart.sh
set -euo pipefail

me=k3s-restart
bad() { echo "$me: $*" >&2; exit 2; }
K3S=/usr/local/bin/k3s

K3S_UNIT="${K3S_UNIT:-}"
NODE_NAME="${NODE_NAME:-}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
SERVER_URL="${SERVER_URL:-}"
REQUIRE_RUNTIME="${REQUIRE_RUNTIME:-}"

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
server_host="" server_port=""
if [ -n "$SERVER_URL" ]; then
  url_re='^https://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]+)/?$'
  [[ "$SERVER_URL" =~ $url_re ]] || bad "SERVER_URL must look like https://SERVER:6443, not '$SERVER_URL'"
  server_host=${BASH_REMATCH[1]#[} server_host=${server_host%]} server_port=${BASH_REMATCH[2]}
fi
case "$REQUIRE_RUNTIME" in
  "" | nvidia) ;;
  *) bad "REQUIRE_RUNTIME must be empty or 'nvidia', not '$REQUIRE_RUNTIME'" ;;
esac
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
refuse() {
  echo "$me: $*; $K3S_UNIT was not restarted" >&2
  exit 3
}

systemctl cat "$K3S_UNIT.service" >/dev/null 2>&1 \
  || { echo "$me: unit $K3S_UNIT is not installed (run k3s-install.sh first)" >&2; exit 1; }

# ------------------------------------------------------------------ before: what can be checked
if [ -n "$server_host" ]; then
  # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$server_host" "$server_port" 2>/dev/null \
    || refuse "the server $server_host:$server_port does not answer from this agent (is K3s running there? a firewall?)"
fi
if [ "$REQUIRE_RUNTIME" = nvidia ]; then
  # Where K3s looks for it (pkg/agent/containerd/config_linux.go: /usr/local/nvidia/toolkit, then PATH).
  PATH="/usr/local/nvidia/toolkit:$PATH" command -v nvidia-container-runtime >/dev/null \
    || refuse "default-runtime: nvidia needs the NVIDIA container toolkit (nvidia-container-runtime), which" \
              "is not installed: K3s would refuse to start"
fi

# ------------------------------------------------------------------ restart, without blocking
# Many restarts in a row hit systemd's start limit (StartLimitBurst): clear the count first.
systemctl reset-failed "$K3S_UNIT" >/dev/null 2>&1 || true
systemctl enable --quiet "$K3S_UNIT" || fail "systemctl enable $K3S_UNIT failed"
restarts=$(systemctl show -p NRestarts --value "$K3S_UNIT" 2>/dev/null || echo 0)
systemctl restart --no-block "$K3S_UNIT" || fail "systemctl restart $K3S_UNIT failed"
deadline=$((SECONDS + READY_TIMEOUT))
sleep 1
while :; do
  state=$(systemctl is-active "$K3S_UNIT" 2>/dev/null || true)
  [ "$state" != active ] || break
  [ "$state" != failed ] || fail "$K3S_UNIT failed to start"
  # Restart=always: K3s that exits at start comes back in a loop; one exit is enough to say so.
  now=$(systemctl show -p NRestarts --value "$K3S_UNIT" 2>/dev/null || echo 0)
  [ "${now:-0}" -le "${restarts:-0}" ] || fail "$K3S_UNIT exited while starting (systemd restarts it in a loop)"
  [ "$SECONDS" -lt "$deadline" ] || fail "$K3S_UNIT did not finish starting within ${READY_TIMEOUT}s (state: $state)"
  sleep 1
done
echo "restarted $K3S_UNIT"

if [ "$K3S_UNIT" = k3s ] && [ -n "$NODE_NAME" ]; then
  # Right after a (first) start the API may not answer yet and the node may not be registered:
  # kubectl wait fails at once then, so retry it until the deadline.
  last=""
  while :; do
    left=$((deadline - SECONDS))
    [ "$left" -ge 1 ] || left=1
    if last=$("$K3S" kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout="${left}s" 2>&1); then
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
