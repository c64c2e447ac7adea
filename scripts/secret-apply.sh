#!/usr/bin/env bash
# Create or update one Kubernetes Secret on this K3s server from a manifest read on stdin:
#   kubectl create namespace NAMESPACE          (when it is not there yet: helm's
#                                                --create-namespace accepts one that exists,
#                                                helm v3.17.3 pkg/action/install.go ignores
#                                                AlreadyExists when it creates the namespace)
#   kubectl apply --server-side --field-manager=gpuhub --force-conflicts -f -
# Server-side apply: a client-side `kubectl apply` copies the whole object, data included, into
# the kubectl.kubernetes.io/last-applied-configuration annotation, which `kubectl describe`
# shows. Server-side apply sends the object as an apply patch and keeps no such copy when the
# field manager is not kubectl's default (kubectl v0.34.9 pkg/cmd/apply/apply.go applyOneObject:
# CreateApplyAnnotation only on the client-side path; saveLastApplyAnnotationIfNecessary returns
# at once for another --field-manager). The manifest never touches a disk here:
# head reads exactly MANIFEST_BYTES from stdin straight into kubectl.
#
# Inputs (environment):
#   NAMESPACE       the Secret's namespace (DNS label; required)
#   NAME            the Secret's name (DNS subdomain; required), which the manifest names: for messages
#   MANIFEST_BYTES  read exactly this many bytes (a v1 Secret as JSON or YAML) from stdin
# Output (stdout): "applied Secret NAMESPACE/NAME" (never a value).
# Exit status: 0 applied; 1 kubectl failed (the tail of its stderr); 2 bad input (nothing changed).
#
# Example (by hand, as root, on the server):
#   kubectl create secret generic gpuhub-github-oauth -n jhub --from-literal=client_id=... \
#     --from-literal=client_secret=... --dry-run=client -o json > /run/s.json   # a 0600 copy
#   NAMESPACE=jhub NAME=gpuhub-github-oauth MANIFEST_BYTES=$(stat -c %s /run/s.json) \
#     scripts/secret-apply.sh < /run/s.json; rm /run/s.json
set -euo pipefail

me=secret-apply
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

NAMESPACE="${NAMESPACE:-}"
NAME="${NAME:-}"
MANIFEST_BYTES="${MANIFEST_BYTES:-}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S=/usr/local/bin/k3s

[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-'), not '$NAMESPACE'"
[[ "$NAME" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]] \
  || bad "NAME must be a DNS subdomain (a-z, 0-9, '-', '.'), not '$NAME'"
[[ "$MANIFEST_BYTES" =~ ^[1-9][0-9]{0,6}$ ]] || bad "MANIFEST_BYTES must be a byte count, not '$MANIFEST_BYTES'"
[ -x "$K3S" ] || fail "$K3S is missing (is K3s installed?)"

kubectl() { "$K3S" kubectl "$@"; }

err=$(mktemp)
trap 'rm -f -- "$err"' EXIT
if ! kubectl get namespace "$NAMESPACE" > /dev/null 2> "$err"; then
  kubectl create namespace "$NAMESPACE" > /dev/null 2> "$err" \
    || { tail -n 5 -- "$err" >&2; fail "could not create namespace $NAMESPACE"; }
fi
if ! head -c "$MANIFEST_BYTES" | kubectl apply --server-side --field-manager=gpuhub --force-conflicts \
       -n "$NAMESPACE" -f - > /dev/null 2> "$err"; then
  tail -n 5 -- "$err" >&2
  fail "kubectl could not apply Secret $NAMESPACE/$NAME"
fi
echo "applied Secret $NAMESPACE/$NAME"
