#!/usr/bin/env bash
# Install or upgrade K3s (server or agent) with the official install script, never starting it:
# the caller restarts K3s once, later, after every step that needs a restart (k3s-restart.sh).
# Lay /etc/rancher/k3s/config.yaml down before running this. The install script sees only PATH
# and the variables this script sets (no proxy, K3S_* or CONTAINERD_* variable of the caller's
# environment), so its downloads (without K3S_BINARY) go without the caller's proxy, too.
#
# Inputs (environment):
#   K3S_ROLE            server | agent (required)
#   K3S_VERSION         the pinned version, e.g. v1.33.5+k3s1 (required)
#   K3S_INSTALL_SCRIPT  path on this host of the install script (airgap); empty: download
#                       https://get.k3s.io
#   K3S_BINARY          optional path on this host of the K3s binary (airgap): installed as
#                       /usr/local/bin/k3s (0755) and the install script told to skip its download;
#                       it must be executable and its version must be K3S_VERSION
#   K3S_IMAGES          optional path on this host of the images tarball (airgap): copied into
#                       /var/lib/rancher/k3s/agent/images/ under its own file name
#   K3S_URL             agents only (required there): https://SERVER:6443
#   K3S_TOKEN_FILE      agents only (required there): path of the 0600 file holding the node
#                       token; the token itself is never passed in the environment or argv
# Output (stdout), one line per thing:
#   "changed k3s VERSION" / "unchanged k3s VERSION" (the binary's version before vs after),
#   "changed|unchanged /var/lib/rancher/k3s/agent/images/NAME" (with K3S_IMAGES),
#   "changed /etc/systemd/system/UNIT" for each unit or unit env file the install script rewrote.
# Exit status: 0 done; 1 the install failed (message on stderr); 2 bad input (nothing changed).
#
# Example (airgap agent, by hand, as root):
#   K3S_ROLE=agent K3S_VERSION=v1.33.5+k3s1 K3S_INSTALL_SCRIPT=/root/bundle/install.sh \
#     K3S_BINARY=/root/bundle/k3s K3S_URL=https://10.0.0.1:6443 \
#     K3S_TOKEN_FILE=/etc/rancher/k3s/gpuhub-node-token scripts/k3s-install.sh
set -euo pipefail

me=k3s-install
bad() { echo "$me: $*" >&2; exit 2; }
fail() { echo "$me: $*" >&2; exit 1; }

BIN=/usr/local/bin/k3s
IMAGES_DIR=/var/lib/rancher/k3s/agent/images
SYSTEMD_DIR=/etc/systemd/system

K3S_ROLE="${K3S_ROLE:-}"
K3S_VERSION="${K3S_VERSION:-}"
K3S_INSTALL_SCRIPT="${K3S_INSTALL_SCRIPT:-}"
K3S_BINARY="${K3S_BINARY:-}"
K3S_IMAGES="${K3S_IMAGES:-}"
K3S_URL="${K3S_URL:-}"
K3S_TOKEN_FILE="${K3S_TOKEN_FILE:-}"

# ------------------------------------------------------------------ validate (changes nothing)
case "$K3S_ROLE" in
  server | agent) ;;
  *) bad "K3S_ROLE must be 'server' or 'agent', not '$K3S_ROLE'" ;;
esac
[[ "$K3S_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$ ]] \
  || bad "K3S_VERSION must look like v1.33.5+k3s1, not '$K3S_VERSION'"
if [ -n "$K3S_INSTALL_SCRIPT" ] && [ ! -f "$K3S_INSTALL_SCRIPT" ]; then
  bad "K3S_INSTALL_SCRIPT '$K3S_INSTALL_SCRIPT' is not a file"
fi
if [ -n "$K3S_BINARY" ]; then
  [ -f "$K3S_BINARY" ] || bad "K3S_BINARY '$K3S_BINARY' is not a file"
  [ -x "$K3S_BINARY" ] || bad "K3S_BINARY '$K3S_BINARY' is not executable (chmod 0755 it)"
  given=$("$K3S_BINARY" --version 2>/dev/null | awk 'NR == 1 { print $3 }') \
    || bad "K3S_BINARY '$K3S_BINARY' does not run ('k3s --version' failed)"
  [ "$given" = "$K3S_VERSION" ] \
    || bad "K3S_BINARY '$K3S_BINARY' is K3s '${given:-unknown}', not K3S_VERSION '$K3S_VERSION'"
fi
if [ -n "$K3S_IMAGES" ] && [ ! -f "$K3S_IMAGES" ]; then
  bad "K3S_IMAGES '$K3S_IMAGES' is not a file"
fi
if [ "$K3S_ROLE" = agent ]; then
  url_re='^https://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]+/?$'
  [[ "$K3S_URL" =~ $url_re ]] \
    || bad "K3S_URL must look like https://SERVER:6443 for an agent, not '$K3S_URL'"
  [ -n "$K3S_TOKEN_FILE" ] || bad "K3S_TOKEN_FILE (the node token's 0600 file) is required for an agent"
  [ -f "$K3S_TOKEN_FILE" ] || bad "K3S_TOKEN_FILE '$K3S_TOKEN_FILE' is not a file"
  [ -s "$K3S_TOKEN_FILE" ] \
    || bad "K3S_TOKEN_FILE '$K3S_TOKEN_FILE' is empty"
  perms=$(stat -c '%a' -- "$K3S_TOKEN_FILE")
  [ $((8#$perms & 8#077)) -eq 0 ] \
    || bad "K3S_TOKEN_FILE '$K3S_TOKEN_FILE' is readable by others (mode $perms): chmod 0600 it"
fi
if [ -z "$K3S_INSTALL_SCRIPT" ]; then
  command -v curl >/dev/null || bad "K3S_INSTALL_SCRIPT is empty and curl is missing to download it"
fi
[ -f "$(dirname -- "$0")/install-file.sh" ] || fail "$(dirname -- "$0")/install-file.sh is missing (upload it beside this script)"

# ------------------------------------------------------------------ facts before
installed_version() {
  if [ -x "$BIN" ]; then
    "$BIN" --version 2>/dev/null | awk 'NR == 1 { print $3 }' || true
  fi
}
if [ "$K3S_ROLE" = server ]; then unit=k3s; else unit=k3s-agent; fi
unit_files=("$SYSTEMD_DIR/$unit.service" "$SYSTEMD_DIR/$unit.service.env")
unit_hashes() {
  local f
  for f in "${unit_files[@]}"; do
    if [ -f "$f" ]; then sha256sum -- "$f" | awk '{ print $1 }'; else echo absent; fi
  done
}
before=$(installed_version)
mapfile -t hashes_before < <(unit_hashes)

tmpdir=$(mktemp -d)
trap 'rm -rf -- "$tmpdir"' EXIT

# SRC to DEST atomically, the previous version kept (install-file.sh, beside this script);
# its "changed/unchanged DEST" line is printed unless QUIET is given.
place() {
  local src=$1 dest=$2 mode=$3 quiet=${4:-} out
  out=$(SRC=$src DEST=$dest MODE=$mode bash "$(dirname -- "$0")/install-file.sh") || fail "could not install $dest"
  [ -n "$quiet" ] || grep -v '^backup ' <<< "$out" || true
}

# ------------------------------------------------------------------ airgap files
install_env=(INSTALL_K3S_SKIP_START=true "INSTALL_K3S_VERSION=$K3S_VERSION" "INSTALL_K3S_EXEC=$K3S_ROLE")
if [ -n "$K3S_BINARY" ]; then
  # The running K3s keeps the old inode: the rename never hits "text file busy".
  place "$K3S_BINARY" "$BIN" 0755 quiet
  install_env+=(INSTALL_K3S_SKIP_DOWNLOAD=true)
fi
if [ -n "$K3S_IMAGES" ]; then
  place "$K3S_IMAGES" "$IMAGES_DIR/$(basename -- "$K3S_IMAGES")" 0644
fi
if [ "$K3S_ROLE" = agent ]; then
  install_env+=("K3S_URL=$K3S_URL" "K3S_TOKEN_FILE=$K3S_TOKEN_FILE")
fi

script=$K3S_INSTALL_SCRIPT
if [ -z "$script" ]; then
  script="$tmpdir/install.sh"
  curl -sfL -o "$script" https://get.k3s.io || fail "could not download https://get.k3s.io"
fi

# ------------------------------------------------------------------ run the install script
# The install script copies into the unit's env file every exported K3S_* and CONTAINERD_*
# variable and every HTTP_PROXY / HTTPS_PROXY / NO_PROXY, in any letter case (k3s install.sh,
# release-1.34, create_env_file). So it runs with only PATH and what is set here: nothing of the
# session (our own inputs, a stray K3S_NODE_NAME or token, a proxy from /etc/environment) reaches
# K3s, and the env file is the same whoever runs this. A site whose K3s needs a proxy puts it in
# /etc/default/k3s (or k3s-agent), which K3s's unit reads too.
log="$tmpdir/install.log"
if ! env -i PATH="${PATH:-/usr/sbin:/usr/bin:/sbin:/bin}" "${install_env[@]}" sh "$script" > "$log" 2>&1; then
  tail -n 20 -- "$log" >&2
  fail "the K3s install script ($script) failed for $K3S_ROLE $K3S_VERSION"
fi

after=$(installed_version)
[ "$after" = "$K3S_VERSION" ] \
  || fail "after the install script $BIN reports version '${after:-none}', not '$K3S_VERSION'"
if [ "$before" = "$after" ]; then
  echo "unchanged k3s $after"
else
  echo "changed k3s $after"
fi
mapfile -t hashes_after < <(unit_hashes)
for i in "${!unit_files[@]}"; do
  if [ "${hashes_before[$i]}" != "${hashes_after[$i]}" ]; then
    echo "changed ${unit_files[$i]}"
  fi
done
