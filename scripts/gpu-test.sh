#!/usr/bin/env bash
# Run one GPU test Job on this K3s server (KUBECONFIG /etc/rancher/k3s/k3s.yaml) and report:
# delete any old Job of that name, apply JOB_FILE, wait for it to complete, print its pod's log.
# When it does not complete, say why, from where Kubernetes keeps it (pod-why.py beside this
# script, run with python3): a Pending pod's PodScheduled condition and FailedScheduling events
# (e.g. "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. ..."), a container's waiting
# reason (ImagePullBackOff ...) or exit code with the pod's log, or the Job's FailedCreate
# events when it has no pod.
# The Job is deleted at the end in every case.
#
# Inputs (environment):
#   JOB_FILE   path on this host of the Job manifest (YAML; required)
#   JOB_NAME   the Job's metadata.name in JOB_FILE (DNS label; required)
#   NAMESPACE  the Job's namespace (default: default)
#   TIMEOUT    seconds to wait for completion (default 300)
# Output (stdout), on success: the pod's log (the Job's `nvidia-smi -L` line "GPU 0: ... (UUID:
#   ...)" first, then the sample's, e.g. "Test PASSED"), then "succeeded job/JOB_NAME".
# Exit status: 0 the Job completed; 1 it failed, stayed Pending (the scheduler's reasons on
#   stderr) or timed out; 2 bad input (nothing changed).
#
# Example (by hand, as root, on the server):
#   JOB_FILE=/root/gpu-test-gpu2.yaml JOB_NAME=gpu-test-gpu2 scripts/gpu-test.sh
set -euo pipefail

me=gpu-test
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

JOB_FILE="${JOB_FILE:-}"
JOB_NAME="${JOB_NAME:-}"
NAMESPACE="${NAMESPACE:-default}"
TIMEOUT="${TIMEOUT:-300}"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S=/usr/local/bin/k3s

[ -n "$JOB_FILE" ] || bad "set JOB_FILE to the Job manifest's path"
[ -f "$JOB_FILE" ] || bad "JOB_FILE '$JOB_FILE' is not a file"
[[ "$JOB_NAME" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || bad "JOB_NAME must be a DNS label (a-z, 0-9, '-'), not '$JOB_NAME'"
[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
  || bad "NAMESPACE must be a DNS label (a-z, 0-9, '-'), not '$NAMESPACE'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]{0,5}$ ]] || bad "TIMEOUT must be a positive number of seconds, not '$TIMEOUT'"
[ -x "$K3S" ] || fail "$K3S is missing (is K3s installed?)"

# K3s's own kubectl: the install script links /usr/local/bin/kubectl only where no kubectl is on
# PATH yet (k3s install.sh, release-1.34, create_symlinks), so `kubectl` may be another one.
k() { "$K3S" kubectl -n "$NAMESPACE" "$@"; }
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() { k delete job "$JOB_NAME" --ignore-not-found >/dev/null 2>&1 || true; }

# Job specs are immutable: a Job left by an earlier run must go before the new one is applied.
out=$(k delete job "$JOB_NAME" --ignore-not-found 2>&1) || fail "could not delete the old job $JOB_NAME: $out"
trap cleanup EXIT
out=$(k apply -f "$JOB_FILE" 2>&1) || fail "kubectl apply -f $JOB_FILE failed: $out"
k get job "$JOB_NAME" >/dev/null 2>&1 \
  || fail "$JOB_FILE did not create job $JOB_NAME in namespace $NAMESPACE (check metadata.name/namespace)"

# Waits in short slices so a Job that failed is reported at once, not after TIMEOUT.
deadline=$((SECONDS + TIMEOUT))
result=timeout
while :; do
  left=$((deadline - SECONDS))
  slice=$((left < 5 ? left : 5))
  [ "$slice" -ge 1 ] || slice=1
  if k wait --for=condition=complete "job/$JOB_NAME" --timeout="${slice}s" >/dev/null 2>&1; then
    result=complete
    break
  fi
  if k wait --for=condition=failed "job/$JOB_NAME" --timeout=0s >/dev/null 2>&1; then
    result=failed
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || break
done

if [ "$result" = complete ]; then
  k logs "job/$JOB_NAME" || fail "job $JOB_NAME completed but its log could not be read"
  echo "succeeded job/$JOB_NAME"
  exit 0
fi

# ------------------------------------------------------------------ why not
# Each pod's reason is read where Kubernetes keeps it, by pod-why.py beside this script (the
# PodScheduled condition, the containers' waiting/terminated states, status.reason; never
# status.reason alone, which holds only pod-level reasons such as Evicted).
why="$(dirname -- "$0")/pod-why.py"
if ! command -v python3 >/dev/null || [ ! -f "$why" ]; then
  {
    echo "$me: job $JOB_NAME did not complete ($result) in ${TIMEOUT}s; its pods and events" \
      "(install python3, and keep pod-why.py beside this script, for the reasons alone):"
    k get pods -l "job-name=$JOB_NAME" -o wide 2>&1 || true
    k get events 2>&1 | tail -n 20 || true
  } >&2
  exit 1
fi
# The messages of events REASON about object NAME, one per line, each once.
events() {
  k get events --field-selector "involvedObject.name=$1" -o json 2>/dev/null | python3 -c '
import json, sys
for e in json.load(sys.stdin).get("items", []):
    if e.get("reason") == sys.argv[1]:
        print(e.get("message", "").strip())
' "$2" 2>/dev/null | sort -u || true
}
# "NAME PHASE WHY" per pod of the Job.
pods=$(k get pods -l "job-name=$JOB_NAME" -o json 2>/dev/null | python3 "$why" 2>/dev/null || true)
if [ -z "$pods" ]; then
  # No pod at all: the API refused it (e.g. "pod rejected: RuntimeClass "nvidia" not found"),
  # which the Job controller reports on the Job as FailedCreate.
  created=$(events "$JOB_NAME" FailedCreate)
  fail "job $JOB_NAME did not complete ($result) in ${TIMEOUT}s and has no pod${created:+: $created}"
fi
while read -r pod phase reason; do
  [ -n "$pod" ] || continue
  if [ "$phase" = Pending ]; then
    # The scheduler's events say what the PodScheduled condition says: each message once.
    while read -r message; do
      [ -n "$message" ] && [[ "$reason" != *"$message"* ]] && reason="${reason:+$reason; }$message"
    done <<< "$(events "$pod" FailedScheduling)"
    fail "job $JOB_NAME did not complete in ${TIMEOUT}s: pod $pod is Pending:" \
      "${reason:-no reason given (yet)}"
  fi
  {
    if [ "$result" = failed ]; then
      echo "$me: job $JOB_NAME failed: pod $pod is $phase${reason:+: $reason}; its log:"
    else
      echo "$me: job $JOB_NAME did not complete in ${TIMEOUT}s: pod $pod is $phase${reason:+: $reason}; its log:"
    fi
    k logs "$pod" 2>&1 | tail -n 20 || true
  } >&2
  exit 1
done <<< "$pods"
fail "job $JOB_NAME did not complete in ${TIMEOUT}s and has no pod"
