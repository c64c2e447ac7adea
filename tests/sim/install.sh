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
#  - writes k3s-killall.sh and k3s(-agent)-uninstall.sh;
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

cat > "$KILLALL" <<'KILLALL_EOF'
#!/bin/sh
# SIMULATION of k3s-killall.sh: stop K3s and everything it started.
for service in k3s k3s-agent; do systemctl stop "$service" 2>/dev/null || true; done
rm -rf /run/k3s
KILLALL_EOF
chmod 755 "$KILLALL"

cat > "$UNINSTALL" <<UNINSTALL_EOF
#!/bin/sh
# SIMULATION of ${UNINSTALL##*/}: deletes what the real one deletes.
set -x
$KILLALL
systemctl disable $SYSTEM_NAME 2>/dev/null || true
rm -f "$UNIT" "$ENVFILE"
systemctl daemon-reload
for cmd in kubectl crictl ctr; do [ -L "$BIN_DIR/\$cmd" ] && rm -f "$BIN_DIR/\$cmd"; done
rm -rf /etc/rancher/k3s /run/k3s /run/flannel /var/lib/rancher/k3s /var/lib/kubelet
rm -f "$BIN_DIR/k3s" "$KILLALL"
rm -f "$UNINSTALL"
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
