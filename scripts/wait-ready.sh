#!/usr/bin/env bash
# Wait until every pod matching a label selector in a namespace is Ready, e.g. JupyterHub's hub
# and proxy after `helm upgrade`, on this K3s server (KUBECONFIG /etc/rancher/k3s/k3s.yaml).
# Right after an upgrade the pods may not exist yet, and `kubectl wait -l` fails at once when
# nothing matches: it is retried until TIMEOUT.
#
# Inputs (environment):
#   NAMESPACE  the pods' namespace (DNS label; required)
#   SELECTOR   label selector, e.g. component=hub or app=jupyterhub,component=proxy (required)
#   TIMEOUT    seconds to wait in all (default 300)
# Output (stdout): "ready NAMESPACE/SELECTOR".
# Exit status: 0 all Ready; 1 timed out (the pods' status on stderr); 2 bad input.
#
# Example (by hand, as root, on the server):
#   NAMESPACE=jhub SELECTOR=component=hub TIMEOUT=600 scripts/wait-ready.sh
set -euo pipefail

me=wait-ready
bad() { echo "$me: $*" >&2; exit 2; }

NAMESPACE="${NAMESPACE:-}"
SELECTOR="${SELECTOR:-}"
TIMEOUT="${TIMEOUT:-300}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S=/usr/local/bin/k3s

[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-'), not '$NAMESPACE'"
[[ "$SELECTOR" =~ ^[A-Za-z0-9._/-]+!?=[A-Za-z0-9._-]*(,[A-Za-z0-9._/-]+!?=[A-Za-z0-9._-]*)*$ ]] \
  || bad "SELECTOR must be key=value[,key=value...], not '$SELECTOR'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]{0,5}$ ]] || bad "TIMEOUT must be a positive number of seconds, not '$TIMEOUT'"
[ -x "$K3S" ] || { echo "$me: $K3S is missing (is K3s installed?)" >&2; exit 1; }

# K3s's own kubectl: the install script links /usr/local/bin/kubectl only where no kubectl is on
# PATH yet (k3s install.sh, release-1.34, create_symlinks), so `kubectl` may be another one.
kubectl() { "$K3S" kubectl "$@"; }

deadline=$((SECONDS + TIMEOUT))
last=""
while :; do
  left=$((deadline - SECONDS))
  [ "$left" -ge 1 ] || left=1
  if last=$(kubectl wait --for=condition=Ready pod -l "$SELECTOR" -n "$NAMESPACE" \
              --timeout="${left}s" 2>&1); then
    echo "ready $NAMESPACE/$SELECTOR"
    exit 0
  fi
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 2
done
{
  echo "$me: pods '$SELECTOR' in namespace $NAMESPACE are not Ready after ${TIMEOUT}s:"
  echo "$last"
  kubectl get pods -l "$SELECTOR" -n "$NAMESPACE" -o wide 2>&1 || true
} >&2
exit 1
