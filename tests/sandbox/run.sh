#!/usr/bin/env bash
# run.sh - run a command (the test suite) inside a copy-on-write sandbox of this machine that
# looks like a lab workstation, then prove it left nothing gpuhub would write. Tests only.
#
#   tests/sandbox/run.sh .venv/bin/python -m pytest      (root; what .ci/run does)
#
# The sandbox is a private mount namespace where:
#   - /etc /usr /var /opt /root are overlays: this machine's files are the read-only lower
#     layer, every write lands in an upper layer under $SANDBOX_STATE (default: a new
#     /tmp/gpuhub-sandbox.XXXXXX);
#   - /run is a private tmpfs holding /run/systemd/system, so the machine reads as booted with
#     systemd (sd_booted(3) tests exactly that path);
#   - a stub nvidia-smi (an H200 with a working driver) is first on PATH.
# /tmp, /work, /dev, /proc and /sys are this machine's own (the SSH test hosts' state lives in
# /tmp). The test-host harness (tests/hosts/up.sh, down.sh) must make namespaces, mounts and a
# bridge on the real machine, and is not product code: the tests run it through
# `nsenter --mount=$GPUHUB_SANDBOX_OUTER_MNT`, in this machine's own mount namespace.
#
# After the command ends, the upper layers and the sandbox's /run are searched for anything
# gpuhub writes on a host it provisions (K3s's files, gpuhub's state, the toolkit, helm, locks):
# any such path is a failure (exit 3), whatever the command's own exit status was. Otherwise the
# command's exit status is returned. The state folder is kept for inspection; a summary of what
# else was written (pip caches, known_hosts...) is printed.
set -euo pipefail

die() { echo "sandbox: $*" >&2; exit 2; }

if [ "${1:-}" = --inside ]; then
  state=$2 outer=$3
  shift 3
  for dir in /etc /usr /var /opt /root; do
    mkdir -p "$state/upper$dir" "$state/work$dir"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$state/upper$dir,workdir=$state/work$dir" "$dir"
  done
  mount -t tmpfs -o mode=0755 sandbox-run /run
  mkdir -p /run/systemd/system /run/gpuhub-sandbox/bin /run/lock
  # A working driver, as on a developer's workstation (output shaped like nvidia-smi 570's).
  cat > /run/gpuhub-sandbox/bin/nvidia-smi <<'STUB'
#!/bin/sh
# SANDBOX STUB of nvidia-smi (tests/sandbox/run.sh): a workstation's driver, for the sandbox only.
case "$*" in
  -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-5b2c1e7a-0d3f-4c8e-9a61-2f7d8b9c0e14)" ;;
  *--query-gpu=*) echo "0, NVIDIA H200, GPU-5b2c1e7a-0d3f-4c8e-9a61-2f7d8b9c0e14, 570.133.20, 143771" ;;
  *) echo "NVIDIA-SMI 570.133.20   Driver Version: 570.133.20   CUDA Version: 12.8" ;;
esac
STUB
  chmod 0755 /run/gpuhub-sandbox/bin/nvidia-smi
  export PATH="/run/gpuhub-sandbox/bin:$PATH" GPUHUB_SANDBOX_OUTER_MNT="$outer"
  status=0
  "$@" || status=$?
  # The sandbox's /run goes with its namespace: record it now.
  find /run -mindepth 1 ! -path '/run/gpuhub-sandbox*' ! -path /run/systemd ! -path /run/systemd/system \
    ! -path /run/lock > "$state/run.list" 2>/dev/null || true
  exit "$status"
fi

[ "$(id -u)" = 0 ] || die "needs root (mount namespaces and overlays)"
[ $# -gt 0 ] || die "usage: $0 COMMAND [ARG...]"
command -v unshare >/dev/null || die "unshare is missing (apt-get install util-linux)"
state=${SANDBOX_STATE:-$(mktemp -d /tmp/gpuhub-sandbox.XXXXXX)}
mkdir -p "$state"
echo "sandbox: copy-on-write overlays of /etc /usr /var /opt /root, systemd's /run marker and a stub" \
  "nvidia-smi; upper layers in $state" >&2

status=0
# The outer mount namespace stays reachable through this shell's pid while the command runs.
unshare --mount --propagation private -- bash "$0" --inside "$state" "/proc/$$/ns/mnt" "$@" || status=$?

# What gpuhub lays down on a host it provisions (DESIGN.md steps; scripts/*.sh outputs).
gpuhub_paths='^(etc/rancher|var/lib/rancher|var/lib/kubelet|var/lib/gpuhub|var/backups/gpuhub|run/gpuhub|run/k3s'
gpuhub_paths+='|etc/systemd/system/k3s|usr/local/bin/(k3s|kubectl|crictl|ctr|helm)'
gpuhub_paths+='|etc/apt/sources.list.d/nvidia|usr/share/keyrings/nvidia|var/lib/dpkg/info/(nvidia|libnvidia)'
gpuhub_paths+='|usr/bin/nvidia-(container|ctk)|usr/local/nvidia)'
written=$(cd "$state/upper" && find . -mindepth 2 \( -type f -o -type l -o -type d -empty \) | sed 's|^\./||' | sort)
found=$( { printf '%s\n' "$written"; sed 's|^/||' "$state/run.list" 2>/dev/null; } | grep -E "$gpuhub_paths" || true)
echo "sandbox: the command exited $status; it wrote $(printf '%s' "$written" | grep -c . || true) file(s) in the" \
  "overlays, by top folder:" >&2
printf '%s\n' "$written" | awk -F/ 'NF { print "  " $1 "/" $2 }' | sort | uniq -c | sort -rn | head -n 15 >&2
if [ -n "$found" ]; then
  echo "sandbox: FAILED: the tests wrote what gpuhub writes on a host it provisions, on the machine they run on:" >&2
  printf '%s\n' "$found" | sed 's/^/  /' | head -n 40 >&2
  exit 3
fi
echo "sandbox: nothing that gpuhub writes on a host was written on this machine" >&2
exit "$status"
