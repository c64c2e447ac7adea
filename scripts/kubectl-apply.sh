#!/usr/bin/env bash
# Apply one manifest, read from stdin, on this K3s server (KUBECONFIG /etc/rancher/k3s/k3s.yaml):
# gpuhub's HTTPS objects (the hub's TLS Secret, cert-manager's ClusterIssuer).
# The manifest may hold a private key (a kubernetes.io/tls Secret): it is read from stdin
# (MANIFEST_BYTES) into memory and handed to kubectl on its stdin, never written to disk.
# Right after cert-manager is installed its webhook may not answer yet and refuses objects of
# its kinds ("failed calling webhook"): the apply is retried until TIMEOUT.
#
# Inputs (environment):
#   MANIFEST_BYTES  read exactly this many bytes of manifest (YAML or JSON) from stdin (required)
#   NAMESPACE       optional: made first when missing (the hub's, before its release exists)
#   TIMEOUT         seconds to keep retrying (default 120)
# Output (stdout): kubectl's line, e.g. "secret/gpuhub-hub-tls configured".
# Exit status: 0 applied; 1 kubectl kept failing (its last error on stderr); 2 bad input.
#
# Example (by hand, as root, on the server):
#   MANIFEST_BYTES=$(stat -c %s rendered/cluster/cluster-issuer.yaml) \
#     scripts/kubectl-apply.sh < rendered/cluster/cluster-issuer.yaml
set -euo pipefail

me=kubectl-apply
bad() { echo "$me: $*" >&2; exit 2; }

MANIFEST_BYTES="${MANIFEST_BYTES:-}"
NAMESPACE="${NAMESPACE:-}"
TIMEOUT="${TIMEOUT:-120}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S=/usr/local/bin/k3s

[[ "$MANIFEST_BYTES" =~ ^[1-9][0-9]{0,7}$ ]] || bad "MANIFEST_BYTES must be a byte count, not '$MANIFEST_BYTES'"
if [ -n "$NAMESPACE" ]; then
  [[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
    || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-'), not '$NAMESPACE'"
fi
[[ "$TIMEOUT" =~ ^[1-9][0-9]{0,5}$ ]] || bad "TIMEOUT must be a positive number of seconds, not '$TIMEOUT'"
[ -x "$K3S" ] || { echo "$me: $K3S is missing (is K3s installed?)" >&2; exit 1; }

# Into a shell variable: memory only (bash keeps the bytes; NUL bytes cannot occur in a manifest).
manifest=$(head -c "$MANIFEST_BYTES"; echo x)
manifest="${manifest%x}"
[ "$(printf %s "$manifest" | wc -c)" -eq "$MANIFEST_BYTES" ] \
  || bad "read fewer bytes of manifest on stdin than the $MANIFEST_BYTES announced"

# K3s's own kubectl: the install script links /usr/local/bin/kubectl only where no kubectl is on
# PATH yet (k3s install.sh, release-1.34, create_symlinks), so `kubectl` may be another one.
kubectl() { "$K3S" kubectl "$@"; }

if [ -n "$NAMESPACE" ]; then
  # Idempotent, unlike `kubectl create namespace`: the hub's namespace may exist already.
  printf '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "%s"}}' "$NAMESPACE" \
    | kubectl apply -f - >/dev/null
fi
deadline=$((SECONDS + TIMEOUT))
while :; do
  # Server-side, as gpuhub's field manager: a client-side apply would copy the whole object, a
  # TLS key or a token included, into its last-applied-configuration annotation, which `kubectl
  # describe` shows (kubectl v0.34.9 pkg/cmd/apply/apply.go, CreateApplyAnnotation on the
  # client-side path only; see secret-apply.sh).
  if out=$(printf %s "$manifest" | kubectl apply --server-side --field-manager=gpuhub --force-conflicts -f - 2>&1); then
    echo "$out"
    exit 0
  fi
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 2
done
echo "$out" | tail -n 5 >&2
echo "$me: kubectl apply kept failing for ${TIMEOUT}s" >&2
exit 1
