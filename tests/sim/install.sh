#!/bin/sh
# SIMULATION of the K3s install script (https://get.k3s.io), airgap path only. NOT PRODUCT CODE.
# Imitates what gpuhub relies on, and what the real script does that gpuhub must cope with. Each
# behaviour cites its source: k3s-io/k3s install.sh on branch release-1.34 (read in the
# maintainers' release branches mirrored at github:muicoder/k3s), by function name. The text
# below is this project's own; see tests/sim/README.md.
#  - INSTALL_K3S_SKIP_DOWNLOAD=true: the binary is already in $INSTALL_K3S_BIN_DIR/k3s;
#  - server, or agent when K3S_URL is set (or INSTALL_K3S_EXEC starts with "agent");
#  - the unit's env file (0600) gets every exported K3S_*/CONTAINERD_* and proxy variable, quoted;
#  - links kubectl, crictl, ctr unless that command exists (in BIN_DIR or on PATH);
#  - writes k3s-killall.sh and k3s(-agent)-uninstall.sh, which behave as the real ones do;
#  - re-running with unchanged binary, unit and env file does not restart the service
#    ("No change detected so skipping service start"), unless INSTALL_K3S_FORCE_RESTART=true.
set -eu

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

BIN_DIR="${INSTALL_K3S_BIN_DIR:-/usr/local/bin}"
SYSTEMD_DIR="${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}"
[ "${INSTALL_K3S_SKIP_DOWNLOAD:-false}" = true ] \
  || fatal "(SIMULATION) nothing can be downloaded here: set INSTALL_K3S_SKIP_DOWNLOAD=true with the binary in $BIN_DIR/k3s"
[ -x "$BIN_DIR/k3s" ] || fatal "Executable k3s binary not found at $BIN_DIR/k3s"

CMD_K3S_EXEC="${INSTALL_K3S_EXEC:-}"
case "$CMD_K3S_EXEC" in
  agent*) CMD=agent ;;
  server*) CMD=server ;;
  *) if [ -n "${K3S_URL:-}" ]; then CMD=agent; else CMD=server; fi
     CMD_K3S_EXEC="$CMD $CMD_K3S_EXEC" ;;
esac
if [ "$CMD" = agent ]; then
  [ -n "${K3S_URL:-}" ] || grep -q '^server:' /etc/rancher/k3s/config.yaml 2>/dev/null \
    || fatal "K3S_URL (or server: in config.yaml) is required for an agent"
  SYSTEM_NAME=k3s-agent
else
  SYSTEM_NAME=k3s
fi
# setup_env: the uninstall script is named after the unit, SYSTEM_NAME-uninstall.sh.
UNINSTALL="$BIN_DIR/$SYSTEM_NAME-uninstall.sh"
KILLALL="$BIN_DIR/k3s-killall.sh"
UNIT="$SYSTEMD_DIR/$SYSTEM_NAME.service"
ENVFILE="$SYSTEMD_DIR/$SYSTEM_NAME.service.env"

hashes() { sha256sum "$BIN_DIR/k3s" "$UNIT" "$ENVFILE" 2>/dev/null || true; }
PRE_INSTALL_HASHES=$(hashes)

# create_symlinks: a link is made only where BIN_DIR has no such file AND no command of that name
# is on PATH (e.g. a distribution's kubectl in /usr/bin: then K3s's kubectl is only reachable as
# `k3s kubectl`); INSTALL_K3S_SYMLINK=skip makes none, =force replaces both cases.
for cmd in kubectl crictl ctr; do
  if [ "${INSTALL_K3S_SYMLINK:-}" = skip ]; then
    break
  elif [ -e "$BIN_DIR/$cmd" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
    info "Skipping $BIN_DIR/$cmd symlink to k3s, already exists"
  elif found=$(command -v "$cmd" 2>/dev/null) && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
    info "Skipping $BIN_DIR/$cmd symlink to k3s, command exists in PATH at $found"
  else
    ln -sf k3s "$BIN_DIR/$cmd"; info "Creating $BIN_DIR/$cmd symlink to k3s"
  fi
done

# create_killall. The real script: puts K3s's own userspace tools (DATA_DIR/data/*/bin and its
# aux/) on PATH; traces every command (set -x); stops every non-empty k3s*.service of
# /etc/systemd/system; kills the containerd shims and their children (a K3s started by hand,
# outside systemd, survives it); unmounts and removes /run/k3s and kubelet's pod mounts; deletes
# the CNI interfaces and /var/lib/cni; then rewrites iptables and ip6tables without K3s's rules,
# each as `*-save | filters | *-restore`. It has no `set -e`, so its exit status is the last
# pipeline's: 127 where ip6tables-restore is missing (as on these test hosts).
cat > "$KILLALL" <<'KILLALL_EOF'
#!/bin/sh
# SIMULATION of k3s-killall.sh (k3s install.sh release-1.34, create_killall). NOT PRODUCT CODE.
# No `set -e`, as in the real one: the exit status is that of the last pipeline.
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
for tools in "$K3S_DATA_DIR"/data/*/bin; do
  [ -d "$tools" ] && PATH="$PATH:$tools:$tools/aux"
done
export PATH
set -x
for unit in /etc/systemd/system/k3s*.service; do
  [ -s "$unit" ] && systemctl stop "${unit##*/}"
done
rm -rf /run/k3s /var/lib/cni
# The real one restores the filtered rules; the simulation only checks them (--test), so it never
# changes a firewall, and ends with the same exit status.
for family in iptables ip6tables; do
  "$family-save" | grep -v -e KUBE- -e CNI- | grep -iv flannel | "$family-restore" --test
done
KILLALL_EOF
chmod 755 "$KILLALL"

# create_uninstall. The real one (set -x, no set -e): runs killall, disables its own unit, removes
# its unit and env file, and deletes itself when it exits. While any other k3s*.service (or
# /etc/init.d/k3s*) is left it stops there, printing "Additional k3s services installed, skipping
# uninstall of k3s" and exiting 0, with the binary and all data kept. Otherwise it removes the
# kubectl/crictl/ctr links (any symlink of those names in BIN_DIR), /etc/rancher/k3s, /run/k3s,
# /run/flannel, the data dir (keeping only mount points inside it: not simulated, the test hosts
# mount nothing there), /var/lib/kubelet, the binary and killall.
cat > "$UNINSTALL" <<UNINSTALL_EOF
#!/bin/sh
# SIMULATION of ${UNINSTALL##*/} (k3s install.sh release-1.34, create_uninstall). NOT PRODUCT CODE.
set -x
$KILLALL
if command -v systemctl; then
  systemctl disable $SYSTEM_NAME
  systemctl reset-failed $SYSTEM_NAME
  systemctl daemon-reload
fi
rm -f "$UNIT" "$ENVFILE"
self_delete() { rm -f "$UNINSTALL"; }
trap self_delete EXIT
others=no
for other in "$SYSTEMD_DIR"/k3s*.service /etc/init.d/k3s*; do
  if [ -e "\$other" ]; then others=yes; fi
done
if [ "\$others" = yes ]; then
  set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
  exit 0
fi
for cmd in kubectl crictl ctr; do
  if [ -L "$BIN_DIR/\$cmd" ]; then rm -f "$BIN_DIR/\$cmd"; fi
done
rm -rf /etc/rancher/k3s /run/k3s /run/flannel /var/lib/rancher/k3s /var/lib/kubelet
rm -f "$BIN_DIR/k3s" "$KILLALL"
UNINSTALL_EOF
chmod 755 "$UNINSTALL"

# systemd_disable then create_env_file: the old unit and env file go first; the new env file
# (0600) lists every exported K3S_* and CONTAINERD_* variable, then every variable whose name
# starts with NO_PROXY, HTTP_PROXY or HTTPS_PROXY in any letter case, as the shell's `export`
# prints them without the word "export": quoted, NAME='value' under dash (Debian's sh), NAME="value"
# under bash as sh; sorted by name. systemd's EnvironmentFile= removes the quotes.
systemctl disable "$SYSTEM_NAME" >/dev/null 2>&1 || true
rm -f "$UNIT" "$ENVFILE"
exported() { export -p | sed -n 's/^export //p'; }
umask 077
{ exported | grep -E '^(K3S|CONTAINERD)_' || true
  exported | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' || true
} > "$ENVFILE"
chmod 600 "$ENVFILE"
umask 022

# create_systemd_service_file: [Install] comes before [Service]; three optional env files; root,
# unlimited limits, two modprobe pre-start commands allowed to fail; ExecStart continued over
# lines, the command on the second, each further argument single-quoted on a line of its own,
# each line ending in a backslash (the last one continued into an empty line).
set -f  # split CMD_K3S_EXEC into words, expanding no pattern
# shellcheck disable=SC2086
set -- $CMD_K3S_EXEC
set +f
exec_lines="    $1 \\"
shift
for arg in "$@"; do
  exec_lines="$exec_lines
	'$arg' \\"
done
cat > "$UNIT" <<UNIT_EOF
[Unit]
Description=Lightweight Kubernetes (SIMULATION, gpuhub tests)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$ENVFILE
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$BIN_DIR/k3s \\
$exec_lines

UNIT_EOF

# service_enable_and_start: INSTALL_K3S_SKIP_ENABLE=true neither enables nor starts;
# INSTALL_K3S_SKIP_START=true enables only; with the binary, unit and env file as they were before
# (sha256) the service is not restarted, whether it runs or not.
[ "${INSTALL_K3S_SKIP_ENABLE:-false}" != true ] || exit 0
systemctl enable "$UNIT" >/dev/null 2>&1
systemctl daemon-reload
if [ "${INSTALL_K3S_SKIP_START:-false}" = true ]; then
  exit 0
fi
if [ "$PRE_INSTALL_HASHES" = "$(hashes)" ] && [ "${INSTALL_K3S_FORCE_RESTART:-false}" != true ]; then
  info "No change detected so skipping service start"; exit 0
fi
info "Starting $SYSTEM_NAME"
systemctl restart "$SYSTEM_NAME"
