#!/usr/bin/env bash
# Install or upgrade one helm release on this K3s server (KUBECONFIG /etc/rancher/k3s/k3s.yaml):
#   helm upgrade --cleanup-on-fail --install RELEASE CHART [--repo CHART_REPO] \
#     --version CHART_VERSION --namespace NAMESPACE --create-namespace --values VALUES_FILE
# No global helm repository state is used or left behind (--repo, or a local chart archive).
# VALUES_FILE may hold secrets (the hub's OAuth client secret): it is DELETED when this script
# exits, whatever happens (even on bad input), so pass a copy when running by hand.
#
# Inputs (environment):
#   RELEASE        release name (DNS label: lower-case letters, digits, '-'; required)
#   NAMESPACE      namespace (DNS label; required)
#   CHART          path on this host of a chart archive (.tgz, airgap), or a chart name used
#                  with CHART_REPO (or repo/chart) (required)
#   CHART_REPO     optional: the chart repository's URL, e.g. https://hub.jupyter.org/helm-chart/
#   CHART_VERSION  the pinned chart version, e.g. 4.4.0 (required)
#   VALUES_FILE    the values file, mode 0600 (no group/other access; required; removed on exit)
# Output (stdout): "changed release NAMESPACE/RELEASE" (helm's own output is kept quiet).
# Exit status: 0 installed/upgraded; 1 helm failed (the tail of its stderr on stderr);
#   2 bad input (nothing changed on the cluster).
#
# Example (by hand, as root, on the server):
#   install -m 0600 build/cluster/jupyterhub-values.yaml /root/jhub-values.yaml
#   RELEASE=jhub NAMESPACE=jhub CHART=jupyterhub CHART_REPO=https://hub.jupyter.org/helm-chart/ \
#     CHART_VERSION=4.4.0 VALUES_FILE=/root/jhub-values.yaml scripts/helm-release.sh
set -euo pipefail

me=helm-release
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

VALUES_FILE="${VALUES_FILE:-}"
workdir=""
cleanup() {
  if [ -n "$VALUES_FILE" ]; then rm -f -- "$VALUES_FILE"; fi
  if [ -n "$workdir" ]; then rm -rf -- "$workdir"; fi
}
# First thing: whatever happens next, the secret-bearing values file does not outlive the run.
trap cleanup EXIT

RELEASE="${RELEASE:-}"
NAMESPACE="${NAMESPACE:-}"
CHART="${CHART:-}"
CHART_REPO="${CHART_REPO:-}"
CHART_VERSION="${CHART_VERSION:-}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml

dns_label='^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$'
[[ "$RELEASE" =~ $dns_label ]] \
  || bad "RELEASE must be a DNS label (a-z, 0-9, '-', at most 53 characters), not '$RELEASE'"
[[ "$NAMESPACE" =~ $dns_label ]] \
  || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-', at most 53 characters), not '$NAMESPACE'"
[ -n "$CHART" ] || bad "set CHART to a chart archive's path or a chart name"
if [ -f "$CHART" ]; then
  : # a local chart archive (airgap)
elif [[ "$CHART" == /* || "$CHART" == ./* || "$CHART" == *.tgz ]]; then
  bad "CHART '$CHART' is not a file"
elif ! [[ "$CHART" =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?$ ]]; then
  bad "CHART must be a chart archive's path or a chart name like jupyterhub, not '$CHART'"
elif [ -z "$CHART_REPO" ] && [[ "$CHART" != */* ]]; then
  bad "CHART '$CHART' is a bare chart name: set CHART_REPO to its repository's URL"
fi
if [ -n "$CHART_REPO" ]; then
  [[ "$CHART_REPO" =~ ^https?://[^[:space:]\'\"]+$ ]] \
    || bad "CHART_REPO must be an http(s) URL, not '$CHART_REPO'"
fi
[[ "$CHART_VERSION" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] \
  || bad "CHART_VERSION must be a pinned version like 4.4.0, not '$CHART_VERSION'"
[ -n "$VALUES_FILE" ] || bad "set VALUES_FILE to the values file (0600)"
[ -f "$VALUES_FILE" ] || bad "VALUES_FILE '$VALUES_FILE' is not a file"
perms=$(stat -c '%a' -- "$VALUES_FILE")
[ $((8#$perms & 8#077)) -eq 0 ] \
  || bad "VALUES_FILE '$VALUES_FILE' may hold secrets but is mode $perms: make it 0600"
command -v helm >/dev/null || fail "helm is not installed (helm-install.sh)"
[ -r "$KUBECONFIG" ] || fail "$KUBECONFIG is missing: is this a running K3s server?"

args=(upgrade --cleanup-on-fail --install "$RELEASE" "$CHART")
if [ -n "$CHART_REPO" ]; then args+=(--repo "$CHART_REPO"); fi
args+=(--version "$CHART_VERSION" --namespace "$NAMESPACE" --create-namespace --values "$VALUES_FILE")

workdir=$(mktemp -d)
if ! helm "${args[@]}" > "$workdir/out" 2> "$workdir/err"; then
  tail -n 20 -- "$workdir/err" >&2
  fail "helm upgrade --install of release $NAMESPACE/$RELEASE (chart $CHART $CHART_VERSION) failed"
fi
echo "changed release $NAMESPACE/$RELEASE"
