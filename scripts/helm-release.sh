#!/usr/bin/env bash
# Install or upgrade one helm release on this K3s server (KUBECONFIG /etc/rancher/k3s/k3s.yaml):
#   helm upgrade --cleanup-on-fail --install RELEASE CHART [--repo CHART_REPO] \
#     --version CHART_VERSION --namespace NAMESPACE --create-namespace --values VALUES_FILE \
#     --timeout TIMEOUT_Ss --labels managed-by=gpuhub
# or repair one that an interrupted run left pending-* (helm refuses to upgrade it: "another
# operation (install/upgrade/rollback) is in progress"):
#   ACTION=rollback: helm rollback RELEASE REVISION --namespace NAMESPACE --timeout TIMEOUT_Ss
#   ACTION=uninstall: helm uninstall RELEASE --namespace NAMESPACE --timeout TIMEOUT_Ss
#     (deletes the release's objects: for JupyterHub, the hub database's volume)
# No global helm repository state is used or left behind (--repo, or a local chart archive).
# The values may hold secrets (gpuhub's own hold none: the hub's OAuth credentials come from a
# Kubernetes Secret, secret-apply.sh; a site's values may). gpuhub streams them on stdin
# (VALUES_BYTES): they go into a private folder under /run (memory, not disk) that this script
# made and removes when it exits, however it exits. A VALUES_FILE given instead is DELETED on
# exit too, so pass a copy when running by hand.
#
# Inputs (environment):
#   ACTION         upgrade (default), rollback or uninstall
#   RELEASE        release name (DNS label: lower-case letters, digits, '-'; required)
#   NAMESPACE      namespace (DNS label; required)
#   TIMEOUT_S      how long helm may wait, in seconds (its --timeout; default 300, helm's own):
#                  JupyterHub's first install pulls every profile image on every node first
#   REVISION       ACTION=rollback: the revision to go back to (the last deployed)
#   The rest for ACTION=upgrade only:
#   CHART          path on this host of a chart archive (.tgz, airgap), or a chart name used
#                  with CHART_REPO (or repo/chart) (required)
#   CHART_REPO     optional: the chart repository's URL, e.g. https://hub.jupyter.org/helm-chart/
#   CHART_VERSION  the pinned chart version, e.g. 4.4.0 (required)
#   VALUES_BYTES   read exactly this many bytes of values (YAML or JSON) from stdin, or
#   VALUES_FILE    the values file, mode 0600 (no group/other access; removed on exit)
# Output (stdout): "changed release NAMESPACE/RELEASE", "rolled back release NAMESPACE/RELEASE to
#   revision N" or "uninstalled release NAMESPACE/RELEASE" (helm's own output is kept quiet).
# Exit status: 0 installed/upgraded; 1 helm failed (the tail of its stderr on stderr);
#   2 bad input (nothing changed on the cluster).
#
# Example (by hand, as root, on the server; jupyterhub-values.yaml as `inv render` writes it, the
# OAuth credentials' Secret already there: secret-apply.sh):
#   RELEASE=jhub NAMESPACE=jhub CHART=jupyterhub CHART_REPO=https://hub.jupyter.org/helm-chart/ \
#     CHART_VERSION=4.4.0 VALUES_BYTES=$(stat -c %s rendered/cluster/jupyterhub-values.yaml) \
#     scripts/helm-release.sh < rendered/cluster/jupyterhub-values.yaml
set -euo pipefail

me=helm-release
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

VALUES_FILE="${VALUES_FILE:-}"
VALUES_BYTES="${VALUES_BYTES:-}"
workdir=""
private=""
cleanup() {
  if [ -n "$VALUES_FILE" ]; then rm -f -- "$VALUES_FILE"; fi
  if [ -n "$private" ]; then rm -rf -- "$private"; fi
  if [ -n "$workdir" ]; then rm -rf -- "$workdir"; fi
}
# First thing: whatever happens next (bash runs this on exit, on INT, TERM and HUP too), the
# secret-bearing values do not outlive the run.
trap cleanup EXIT
if [ -n "$VALUES_BYTES" ]; then
  [[ "$VALUES_BYTES" =~ ^[1-9][0-9]{0,7}$ ]] || bad "VALUES_BYTES must be a byte count, not '$VALUES_BYTES'"
  [ -z "$VALUES_FILE" ] || bad "give VALUES_BYTES (values on stdin) or VALUES_FILE, not both"
  private=$(mktemp -d /run/gpuhub-values.XXXXXX)  # 0700, root's, in memory
  VALUES_FILE="$private/values"
  (umask 077 && head -c "$VALUES_BYTES" > "$VALUES_FILE")
  [ "$(stat -c %s -- "$VALUES_FILE")" = "$VALUES_BYTES" ] \
    || fail "read $(stat -c %s -- "$VALUES_FILE") bytes of values on stdin, not the $VALUES_BYTES announced"
fi

ACTION="${ACTION:-upgrade}"
RELEASE="${RELEASE:-}"
NAMESPACE="${NAMESPACE:-}"
TIMEOUT_S="${TIMEOUT_S:-300}"
REVISION="${REVISION:-}"
CHART="${CHART:-}"
CHART_REPO="${CHART_REPO:-}"
CHART_VERSION="${CHART_VERSION:-}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml

dns_label='^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$'
[[ "$RELEASE" =~ $dns_label ]] \
  || bad "RELEASE must be a DNS label (a-z, 0-9, '-', at most 53 characters), not '$RELEASE'"
[[ "$NAMESPACE" =~ $dns_label ]] \
  || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-', at most 53 characters), not '$NAMESPACE'"
[[ "$TIMEOUT_S" =~ ^[1-9][0-9]{0,5}$ ]] || bad "TIMEOUT_S must be a number of seconds, not '$TIMEOUT_S'"
case "$ACTION" in
  upgrade) ;;
  rollback|uninstall)
    if [ "$ACTION" = rollback ]; then
      [[ "$REVISION" =~ ^[1-9][0-9]{0,8}$ ]] || bad "REVISION must be a revision number, not '$REVISION'"
    fi
    command -v helm >/dev/null || fail "helm is not installed (helm-install.sh)"
    [ -r "$KUBECONFIG" ] || fail "$KUBECONFIG is missing: is this a running K3s server?"
    workdir=$(mktemp -d)
    if [ "$ACTION" = rollback ]; then
      args=(rollback "$RELEASE" "$REVISION"); done="rolled back release $NAMESPACE/$RELEASE to revision $REVISION"
    else
      args=(uninstall "$RELEASE"); done="uninstalled release $NAMESPACE/$RELEASE"
    fi
    if ! helm "${args[@]}" --namespace "$NAMESPACE" --timeout "${TIMEOUT_S}s" > "$workdir/out" 2> "$workdir/err"; then
      tail -n 20 -- "$workdir/err" >&2
      fail "helm $ACTION of release $NAMESPACE/$RELEASE failed"
    fi
    echo "$done"
    exit 0 ;;
  *) bad "ACTION must be upgrade, rollback or uninstall, not '$ACTION'" ;;
esac
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
[ -n "$VALUES_FILE" ] || bad "set VALUES_BYTES (values on stdin) or VALUES_FILE to the values file (0600)"
[ -f "$VALUES_FILE" ] || bad "VALUES_FILE '$VALUES_FILE' is not a file"
perms=$(stat -c '%a' -- "$VALUES_FILE")
[ $((8#$perms & 8#077)) -eq 0 ] \
  || bad "VALUES_FILE '$VALUES_FILE' may hold secrets but is mode $perms: make it 0600"
command -v helm >/dev/null || fail "helm is not installed (helm-install.sh)"
[ -r "$KUBECONFIG" ] || fail "$KUBECONFIG is missing: is this a running K3s server?"

args=(upgrade --cleanup-on-fail --install "$RELEASE" "$CHART")
if [ -n "$CHART_REPO" ]; then args+=(--repo "$CHART_REPO"); fi
args+=(--version "$CHART_VERSION" --namespace "$NAMESPACE" --create-namespace --values "$VALUES_FILE")
args+=(--timeout "${TIMEOUT_S}s")
# gpuhub's mark on the release's helm records (a label on each revision's Secret, kept by later
# upgrades: helm v3.17.3 pkg/action/upgrade.go mergeCustomLabels): a release without it was
# installed some other way, and gpuhub's plan says so before replacing its values.
args+=(--labels managed-by=gpuhub)

workdir=$(mktemp -d)
if ! helm "${args[@]}" > "$workdir/out" 2> "$workdir/err"; then
  tail -n 20 -- "$workdir/err" >&2
  fail "helm upgrade --install of release $NAMESPACE/$RELEASE (chart $CHART $CHART_VERSION) failed"
fi
echo "changed release $NAMESPACE/$RELEASE"
