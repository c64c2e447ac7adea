#!/usr/bin/env bash
# Install the NVIDIA container toolkit when it is missing (K3s finds nvidia-container-runtime at
# its next start and adds the nvidia runtime to containerd). The driver is never installed here.
# Airgap: the given .deb files; online: the pinned version from NVIDIA's apt repository
# (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html).
#
# Inputs (environment):
#   TOOLKIT_PACKAGES  optional: space-separated paths on this host of .deb files (airgap), all
#                     installed with one `dpkg -i`, which enforces their Depends: the toolkit
#                     1.17.x is nvidia-container-toolkit, nvidia-container-toolkit-base (which holds
#                     nvidia-container-runtime), libnvidia-container-tools, libnvidia-container1
#                     (NVIDIA/nvidia-container-toolkit v1.17.8 packaging/debian/control)
#   TOOLKIT_VERSION   the pinned version, e.g. 1.17.8-1 (required without TOOLKIT_PACKAGES)
# Output (stdout), one line per thing:
#   "unchanged nvidia-container-toolkit"                 nvidia-container-runtime is on PATH
#   "changed|unchanged /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg" and
#   "changed|unchanged /etc/apt/sources.list.d/nvidia-container-toolkit.list"  (online)
#   "changed nvidia-container-toolkit VERSION"
# Exit status: 0 done; 1 failed or not an apt-based distribution (online mode), with the reason
#   on stderr; 2 bad input (nothing changed).
#
# Examples (by hand, as root):
#   TOOLKIT_VERSION=1.17.8-1 scripts/toolkit-install.sh
#   TOOLKIT_PACKAGES="/root/bundle/libnvidia-container1_1.17.8-1_amd64.deb /root/bundle/..." \
#     scripts/toolkit-install.sh
set -euo pipefail

me=toolkit-install
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
SOURCES=/etc/apt/sources.list.d/nvidia-container-toolkit.list
REPO=https://nvidia.github.io/libnvidia-container

TOOLKIT_PACKAGES="${TOOLKIT_PACKAGES:-}"
TOOLKIT_VERSION="${TOOLKIT_VERSION:-}"

read -r -a packages <<< "$TOOLKIT_PACKAGES"
for deb in "${packages[@]}"; do
  case "$deb" in
    *.deb) ;;
    *) bad "TOOLKIT_PACKAGES: '$deb' is not a .deb file name" ;;
  esac
  [ -f "$deb" ] || bad "TOOLKIT_PACKAGES: '$deb' is not a file"
done
if [ "${#packages[@]}" -eq 0 ]; then
  [[ "$TOOLKIT_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.~+]+)?$ ]] \
    || bad "TOOLKIT_VERSION must look like 1.17.8-1 (or set TOOLKIT_PACKAGES), not '$TOOLKIT_VERSION'"
fi

if command -v nvidia-container-runtime >/dev/null 2>&1; then
  echo "unchanged nvidia-container-toolkit"
  exit 0
fi

installed() {
  command -v nvidia-container-runtime >/dev/null 2>&1 \
    || fail "nvidia-container-runtime is still not on PATH after installing the toolkit"
  echo "changed nvidia-container-toolkit $(dpkg-query -W -f='${Version}' nvidia-container-toolkit 2>/dev/null || echo '?')"
}

tmpdir=$(mktemp -d)
trap 'rm -rf -- "$tmpdir"' EXIT
log="$tmpdir/log"
run_logged() {
  if ! "$@" >> "$log" 2>&1; then
    tail -n 20 -- "$log" >&2
    fail "$* failed"
  fi
}

# ------------------------------------------------------------------ airgap: package files
if [ "${#packages[@]}" -gt 0 ]; then
  command -v dpkg >/dev/null || fail "TOOLKIT_PACKAGES are .deb files but this host has no dpkg"
  run_logged dpkg -i -- "${packages[@]}"
  installed
  exit 0
fi

# ------------------------------------------------------------------ online: NVIDIA's apt repository
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  fail "only apt-based distributions (Debian, Ubuntu) are supported; install" \
    "nvidia-container-toolkit $TOOLKIT_VERSION by hand, or give TOOLKIT_PACKAGES"
fi
command -v curl >/dev/null || fail "curl is needed to fetch NVIDIA's repository key"
export DEBIAN_FRONTEND=noninteractive
if ! command -v gpg >/dev/null; then
  run_logged apt-get update
  run_logged apt-get install -y gpg
fi

# SRC to DEST atomically, the previous version kept (install-file.sh, beside this script).
place() {
  local out
  out=$(SRC=$1 DEST=$2 MODE=0644 bash "$(dirname -- "$0")/install-file.sh") || fail "could not install $2"
  grep -v '^backup ' <<< "$out" || true
}

curl -fsSL -o "$tmpdir/gpgkey" "$REPO/gpgkey" || fail "could not download $REPO/gpgkey"
gpg --batch --yes --dearmor -o "$tmpdir/keyring.gpg" "$tmpdir/gpgkey" \
  || fail "gpg --dearmor of $REPO/gpgkey failed"
# $(ARCH) is apt's own variable (the host's architecture), not the shell's.
# shellcheck disable=SC2016
printf 'deb [signed-by=%s] %s/stable/deb/$(ARCH) /\n' "$KEYRING" "$REPO" > "$tmpdir/list"
place "$tmpdir/keyring.gpg" "$KEYRING"
place "$tmpdir/list" "$SOURCES"

run_logged apt-get update
# The lib packages pinned too: apt would otherwise pick their newest version and refuse.
run_logged apt-get install -y \
  "nvidia-container-toolkit=$TOOLKIT_VERSION" \
  "nvidia-container-toolkit-base=$TOOLKIT_VERSION" \
  "libnvidia-container-tools=$TOOLKIT_VERSION" \
  "libnvidia-container1=$TOOLKIT_VERSION"
installed
