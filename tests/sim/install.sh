#!/bin/sh
# SIMULATION of the K3s install script (https://get.k3s.io), airgap path only. NOT PRODUCT CODE.
# Imitates what gpuhub relies on (see tests/sim/README.md):
#  - INSTALL_K3S_SKIP_DOWNLOAD=true: the binary is already in $INSTALL_K3S_BIN_DIR/k3s;
#  - server, or agent when K3S_URL is set (or INSTALL_K3S_EXEC starts with "agent");
#  - K3S_TOKEN / K3S_TOKEN_FILE / K3S_URL go to the unit's env file (0600), never to argv;
#  - links kubectl, crictl, ctr; writes k3s-killall.sh and k3s(-agent)-uninstall.sh;
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
  SYSTEM_NAME=k3s-agent; UNINSTALL="$BIN_DIR/k3s-agent-uninstall.sh"
else
  SYSTEM_NAME=k3s; UNINSTALL="$BIN_DIR/k3s-uninstall.sh"
fi
UNIT="$SYSTEMD_DIR/$SYSTEM_NAME.service"
ENVFILE="$SYSTEMD_DIR/$SYSTEM_NAME.service.env"

hashes() { sha256sum "$BIN_DIR/k3s" "$UNIT" "$ENVFILE" 2>/dev/null || true; }
PRE_INSTALL_HASHES=$(hashes)

for cmd in kubectl crictl ctr; do
  if [ ! -e "$BIN_DIR/$cmd" ] || [ -L "$BIN_DIR/$cmd" ]; then
    ln -sf k3s "$BIN_DIR/$cmd"; info "Creating $BIN_DIR/$cmd symlink to k3s"
  fi
done

umask 077
: > "$ENVFILE.new"
for var in K3S_TOKEN K3S_TOKEN_FILE K3S_URL K3S_NODE_NAME; do
  eval "value=\${$var:-}"
  # shellcheck disable=SC2154 # set by the eval above
  [ -z "$value" ] || printf '%s=%s\n' "$var" "$value" >> "$ENVFILE.new"
done
chmod 600 "$ENVFILE.new"; mv -f "$ENVFILE.new" "$ENVFILE"
umask 022

cat > "$UNIT" <<UNIT_EOF
[Unit]
Description=Lightweight Kubernetes (SIMULATION, gpuhub tests)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-$ENVFILE
KillMode=process
Delegate=yes
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$BIN_DIR/k3s $CMD_K3S_EXEC

[Install]
WantedBy=multi-user.target
UNIT_EOF

cat > "$BIN_DIR/k3s-killall.sh" <<'KILLALL_EOF'
#!/bin/sh
# SIMULATION of k3s-killall.sh: stop K3s and everything it started.
for service in k3s k3s-agent; do systemctl stop "$service" 2>/dev/null || true; done
rm -rf /run/k3s
KILLALL_EOF
chmod 755 "$BIN_DIR/k3s-killall.sh"

UNINSTALL_NAME=$(basename "$UNINSTALL")
cat > "$UNINSTALL" <<UNINSTALL_EOF
#!/bin/sh
# SIMULATION of $UNINSTALL_NAME: deletes what the real one deletes.
set -x
$BIN_DIR/k3s-killall.sh
systemctl disable $SYSTEM_NAME 2>/dev/null || true
rm -f "$UNIT" "$ENVFILE"
systemctl daemon-reload
for cmd in kubectl crictl ctr; do [ -L "$BIN_DIR/\$cmd" ] && rm -f "$BIN_DIR/\$cmd"; done
rm -rf /etc/rancher/k3s /run/k3s /run/flannel /var/lib/rancher/k3s /var/lib/kubelet
rm -f "$BIN_DIR/k3s" "$BIN_DIR/k3s-killall.sh"
rm -f "$UNINSTALL"
UNINSTALL_EOF
chmod 755 "$UNINSTALL"

systemctl daemon-reload
[ "${INSTALL_K3S_SKIP_ENABLE:-false}" = true ] || systemctl enable "$SYSTEM_NAME" >/dev/null 2>&1
if [ "${INSTALL_K3S_SKIP_START:-false}" = true ]; then
  info "Skipping service start"; exit 0
fi
if [ "$PRE_INSTALL_HASHES" = "$(hashes)" ] && [ "${INSTALL_K3S_FORCE_RESTART:-false}" != true ] \
   && systemctl is-active --quiet "$SYSTEM_NAME"; then
  info "No change detected so skipping service start"; exit 0
fi
info "Starting $SYSTEM_NAME"
systemctl restart "$SYSTEM_NAME"
