#!/usr/bin/env bash
# Install the helm CLI on a K3s server as /usr/local/bin/helm (K3s ships none).
# Airgap: the given binary; online: the pinned release from https://get.helm.sh, checked against
# its published sha256.
#
# Inputs (environment):
#   HELM_BINARY   optional: path on this host of the helm binary (airgap); installed when
#                 /usr/local/bin/helm differs from it
#   HELM_VERSION  the pinned version, e.g. v3.17.3 (required without HELM_BINARY); installed
#                 when `helm version --template '{{.Version}}'` reports another one
# Output (stdout): "unchanged /usr/local/bin/helm", or "changed /usr/local/bin/helm" (after
#   "backup /var/backups/gpuhub/files/usr/local/bin/helm" when one was replaced: install-file.sh).
# Exit status: 0 done; 1 download or install failed (reason on stderr); 2 bad input (nothing
#   changed).
#
# Examples (by hand, as root):
#   HELM_VERSION=v3.17.3 scripts/helm-install.sh
#   HELM_BINARY=/root/bundle/helm scripts/helm-install.sh
set -euo pipefail

me=helm-install
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

DEST=/usr/local/bin/helm

HELM_BINARY="${HELM_BINARY:-}"
HELM_VERSION="${HELM_VERSION:-}"

if [ -n "$HELM_BINARY" ]; then
  [ -f "$HELM_BINARY" ] || bad "HELM_BINARY '$HELM_BINARY' is not a file"
else
  [[ "$HELM_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || bad "HELM_VERSION must look like v3.17.3 (or set HELM_BINARY), not '$HELM_VERSION'"
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) bad "no helm download for this machine's architecture '$(uname -m)': set HELM_BINARY" ;;
  esac
  command -v curl >/dev/null || bad "curl is needed to download helm (or set HELM_BINARY)"
fi

install_file="$(dirname -- "$0")/install-file.sh"
[ -f "$install_file" ] || fail "$install_file is missing (upload it beside this script)"
tmpdir=$(mktemp -d)
trap 'rm -rf -- "$tmpdir"' EXIT

# SRC over DEST, atomically, the previous one kept (install-file.sh).
place() {
  SRC=$1 DEST=$DEST MODE=0755 bash "$install_file" || fail "could not install $DEST"
}

if [ -n "$HELM_BINARY" ]; then
  place "$HELM_BINARY"
  exit 0
fi

current=""
if [ -x "$DEST" ]; then
  current=$("$DEST" version --template '{{.Version}}' 2>/dev/null || true)
fi
if [ "$current" = "$HELM_VERSION" ]; then
  echo "unchanged $DEST"
  exit 0
fi

name="helm-$HELM_VERSION-linux-$arch.tar.gz"
url="https://get.helm.sh/$name"
curl -fsSL -o "$tmpdir/$name" "$url" || fail "could not download $url"
curl -fsSL -o "$tmpdir/$name.sha256sum" "$url.sha256sum" || fail "could not download $url.sha256sum"
expected=$(awk 'NR == 1 { print $1 }' "$tmpdir/$name.sha256sum")
actual=$(sha256sum -- "$tmpdir/$name" | awk '{ print $1 }')
if [ -z "$expected" ] || [ "$expected" != "$actual" ]; then
  fail "$url does not match its published sha256 ($actual, not '$expected')"
fi
tar -xzf "$tmpdir/$name" -C "$tmpdir" "linux-$arch/helm" || fail "$name holds no linux-$arch/helm"
got=$("$tmpdir/linux-$arch/helm" version --template '{{.Version}}' 2>/dev/null || true)
[ "$got" = "$HELM_VERSION" ] || fail "the downloaded helm reports version '$got', not '$HELM_VERSION'"
place "$tmpdir/linux-$arch/helm"
