#!/usr/bin/env bash
# up.sh - bring up N throw-away "SSH test hosts" gpu1..gpuN on this machine (idempotent).
#
# Network (TESTHOSTS_MODE):
#   netns    (default) host gpuN = network namespace th-gpuN, eth0 = 10.250.0.(10+N)/24,
#            veth to a bridge thbr0 = 10.250.0.1/24 in the root namespace.  No default
#            route in the namespaces and no forwarding: traffic only goes between this
#            machine and its own test hosts (and between the hosts, over the bridge).
#   loopback no namespaces; each host's sshd listens on 127.0.0.(10+N):22.
#
# Host implementation (TESTHOSTS_IMPL):
#   ns      (default, ~0.25 s per host) unshare -m -u: hostname gpuN and a copy-on-write
#           view of /etc /var /usr /opt /root /srv (overlayfs: this machine's dirs are the
#           read-only lower layer, writes go to $TESTHOSTS_STATE/gpuN/upper/...), private tmpfs
#           /run and /tmp; Debian's /usr/sbin/sshd runs in the foreground.  No systemd:
#           `systemctl` does not work inside (use nspawn hosts for services).
#   nspawn  (~1.5 s for 3 hosts + a one-off debootstrap, ~80 s) a Debian bookworm rootfs
#           (debootstrap --variant=minbase, built once per machine and cached in
#           $TESTHOSTS_ROOTFS) booted with `systemd-nspawn -b`, one overlay per host on top
#           of it: real systemd as PID 1 of the host, sshd as ssh.service,
#           `systemctl daemon-reload/enable --now/is-active` work.
#
# Outputs (in $TESTHOSTS_STATE, default /tmp/testhosts):
#   id_ed25519[.pub] client key     ssh_config  Host gpuN -> HostName, key, known_hosts
#   known_hosts      host keys      hosts.txt   "name address" lines
#   inventory.ini    ansible inventory          bridge  the bridge these hosts hang on
#   gpuN/{pid,mntns,netns,cgroups,impl,log,keys/,upper/,work/,merged/}
#
# Usage: tests/hosts/up.sh [COUNT]        (root; COUNT default 3)
# Env:   TESTHOSTS_STATE   state dir (default /tmp/testhosts)
#        TESTHOSTS_MODE    netns | loopback              TESTHOSTS_IMPL  ns | nspawn
#        TESTHOSTS_SUBNET  first three octets (10.250.0) TESTHOSTS_BRIDGE  bridge (thbr0)
#        TESTHOSTS_BRIDGE_ADDR  bridge address ($SUBNET.1)
#        TESTHOSTS_PREFIXLEN    prefix length of bridge and hosts (24)
#        TESTHOSTS_OFFSET       host N gets $SUBNET.(OFFSET+N) (10)
#        TESTHOSTS_NETNS_PREFIX netns (and veth) name = PREFIX + gpuN (th-)
#        TESTHOSTS_ROOTFS  nspawn rootfs cache (/var/tmp/gpuhub-testhosts-rootfs-bookworm)
#        TESTHOSTS_MIRROR  Debian mirror for debootstrap (default: the one apt uses)
#        TESTHOSTS_OVERLAY_DIRS TESTHOSTS_KEEP_ROOT_RC (ns hosts only)
# Needs: iproute2, util-linux, openssh-server, openssh-client;
#        for TESTHOSTS_IMPL=nspawn also debootstrap and systemd-container.
set -euo pipefail

COUNT="${1:-${TESTHOSTS_COUNT:-3}}"
STATE="${TESTHOSTS_STATE:-/tmp/testhosts}"
MODE="${TESTHOSTS_MODE:-netns}"
IMPL="${TESTHOSTS_IMPL:-ns}"
SUBNET="${TESTHOSTS_SUBNET:-10.250.0}"
BRIDGE="${TESTHOSTS_BRIDGE:-thbr0}"
BRIDGE_ADDR="${TESTHOSTS_BRIDGE_ADDR:-$SUBNET.1}"
PREFIXLEN="${TESTHOSTS_PREFIXLEN:-24}"
OFFSET="${TESTHOSTS_OFFSET:-10}"
NETNS_PREFIX="${TESTHOSTS_NETNS_PREFIX:-th-}"
OVERLAY_DIRS="${TESTHOSTS_OVERLAY_DIRS:-/etc /var /usr /opt /root /srv}"
ROOTFS="${TESTHOSTS_ROOTFS:-/var/tmp/gpuhub-testhosts-rootfs-bookworm}"
MIRROR="${TESTHOSTS_MIRROR:-}"

# What goes into the nspawn rootfs.  python3 + python3-yaml: the simulated k3s/kubectl/helm
# are Python scripts using PyYAML.  Change ROOTFS_VERSION (or the list) and every cached
# rootfs with another marker is rebuilt on the next nspawn up.
ROOTFS_PACKAGES="systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,python3-yaml,iproute2,procps,ca-certificates,curl"
ROOTFS_VERSION="gpuhub-testhosts 2 bookworm minbase $ROOTFS_PACKAGES"

die() { echo "up.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
need() { command -v "$1" >/dev/null || die "missing $1 (apt-get install $2)"; }
need ip iproute2; need unshare util-linux; need setsid util-linux; need ssh-keygen openssh-client
need ssh-keyscan openssh-client; [ -x /usr/sbin/sshd ] || die "missing sshd (apt-get install openssh-server)"
case "$IMPL" in
  ns) ;;
  nspawn) need systemd-nspawn systemd-container; need debootstrap debootstrap; need flock util-linux ;;
  *) die "TESTHOSTS_IMPL must be ns or nspawn, not '$IMPL'" ;;
esac
case "$MODE" in netns|loopback) ;; *) die "TESTHOSTS_MODE must be netns or loopback, not '$MODE'" ;; esac
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive number, not '$COUNT'"

mkdir -p "$STATE"; chmod 700 "$STATE"
# keys persist across down/up (down.sh --purge removes them) so known_hosts stays valid
[ -f "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C testhosts-client -f "$STATE/id_ed25519"
PUBKEY="$(cat "$STATE/id_ed25519.pub")"

addr_of() { if [ "$MODE" = loopback ]; then echo "127.0.0.$((10 + $1))"; else echo "$SUBNET.$((OFFSET + $1))"; fi; }

# alive and not a zombie (this VM's PID 1 reaps orphans late)
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# the pid recorded for a host is still that host's process (not a recycled pid)
host_alive() {  # $1 = host dir
  local pid want
  pid="$(cat "$1/pid" 2>/dev/null)" || return 1
  if [ "$(cat "$1/impl" 2>/dev/null)" = nspawn ]; then want=systemd-nspawn; else want=sshd; fi
  running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$want" ]
}
netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$1"; }
# the cgroup hierarchies systemd (and so systemd-nspawn) works in: cgroup2 and named v1 "systemd"
cgroup_roots() { awk '$3=="cgroup2" || ($3=="cgroup" && $4 ~ /(^|,)name=systemd(,|$)/) {print $2}' /proc/mounts | sort -u; }

# ---------------------------------------------------------------- nspawn rootfs (once)
build_rootfs() {
  [ "$(cat "$ROOTFS/.testhosts-ready" 2>/dev/null)" = "$ROOTFS_VERSION" ] && return 0
  mkdir -p "$(dirname "$ROOTFS")"
  exec 9>"$ROOTFS.lock"                 # one build at a time (parallel test sessions)
  flock 9
  if [ "$(cat "$ROOTFS/.testhosts-ready" 2>/dev/null)" = "$ROOTFS_VERSION" ]; then exec 9>&-; return 0; fi
  if grep -qF "lowerdir=$ROOTFS," /proc/mounts; then
    die "$ROOTFS is outdated but still in use by running nspawn hosts: run down.sh for them first"
  fi
  if [ -z "$MIRROR" ]; then   # the mirror apt is configured with (deb822 or one-line format)
    MIRROR="$(sed -n 's/^URIs:[[:space:]]*\([^ ]*debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
    [ -n "$MIRROR" ] || MIRROR="$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
    [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
  fi
  local new="$ROOTFS.new"
  echo "up.sh: debootstrap bookworm into $ROOTFS from $MIRROR (once per machine, ~80 s, ~275 MB)"
  rm -rf "$new"
  debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" \
    bookworm "$new" "$MIRROR" > "$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; rm -rf "$new"; die "debootstrap failed (log: $ROOTFS.log)"; }
  rm -f "$new"/var/cache/apt/archives/*.deb "$new"/etc/ssh/ssh_host_*
  : > "$new/etc/machine-id"                       # each host gets its own
  # units that only slow a test host down
  for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
           fstrim.timer e2scrub_reap.service getty@tty1.service console-getty.service; do
    ln -sf /dev/null "$new/etc/systemd/system/$u"
  done
  printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\nMaxStartups 200\nMaxSessions 100\n' \
    > "$new/etc/ssh/sshd_config.d/00-testhosts.conf"
  echo "$ROOTFS_VERSION" > "$new/.testhosts-ready"
  # swap in atomically: an interrupted build never looks ready
  rm -rf "$ROOTFS.old"; [ -e "$ROOTFS" ] && mv "$ROOTFS" "$ROOTFS.old"
  mv "$new" "$ROOTFS"; rm -rf "$ROOTFS.old"
  exec 9>&-
}
if [ "$IMPL" = nspawn ]; then build_rootfs; fi

# ---------------------------------------------------------------- network
if [ "$MODE" = netns ]; then
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_ADDR/$PREFIXLEN" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  echo "$BRIDGE" > "$STATE/bridge"      # down.sh deletes it once no host is left on it
  # `ip netns add` bind-mounts /run/netns onto itself the first time: down.sh undoes that
  # when it was us and no namespace is left
  mountpoint -q /run/netns || touch "$STATE/run-netns-mount"
fi

: > "$STATE/hosts.txt.new"
for i in $(seq 1 "$COUNT"); do echo "gpu$i $(addr_of "$i")" >> "$STATE/hosts.txt.new"; done
HOSTS_LINES="$(awk '{print $2, $1}' "$STATE/hosts.txt.new")"   # /etc/hosts lines for every host

# ---------------------------------------------------------------- per host: start
started=()
for i in $(seq 1 "$COUNT"); do
  name="gpu$i"; ns="$NETNS_PREFIX$name"; addr="$(addr_of "$i")"; hdir="$STATE/$name"
  mkdir -p "$hdir/keys"
  [ -f "$hdir/keys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$hdir/keys/ssh_host_ed25519_key"

  if host_alive "$hdir"; then
    echo "up.sh: $name already up ($addr, pid $(cat "$hdir/pid"))"; continue
  fi
  if [ -f "$hdir/impl" ] && [ "$(cat "$hdir/impl")" != "$IMPL" ]; then
    die "$name was made with TESTHOSTS_IMPL=$(cat "$hdir/impl"); run down.sh --purge first"
  fi
  echo "$IMPL" > "$hdir/impl"

  netexec=()
  if [ "$MODE" = netns ]; then
    # a namespace of that name that this state dir did not make belongs to other test hosts
    if netns_exists "$ns" && [ "$(cat "$hdir/netns" 2>/dev/null)" != "$ns" ]; then
      die "network namespace $ns exists but was not made for $STATE (other test hosts are up?): run their down.sh first"
    fi
    echo "$ns" > "$hdir/netns"
    netns_exists "$ns" || ip netns add "$ns"
    if ! ip link show "$ns" >/dev/null 2>&1; then          # host end is named like the netns
      ip link add "$ns" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$ns" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$addr/$PREFIXLEN" dev eth0
    ip -n "$ns" link set eth0 up
    netexec=(ip netns exec "$ns")
  fi

  if [ "$IMPL" = ns ]; then
    for d in $OVERLAY_DIRS; do mkdir -p "$hdir/upper$d"; rm -rf "$hdir/work$d"; mkdir -p "$hdir/work$d"; done
    # Everything in sh -c runs inside the host's own mount+UTS namespace.  No --fork:
    # ip execs unshare, unshare execs sh, sh execs sshd -> $! is sshd's pid.
    # shellcheck disable=SC2016
    setsid "${netexec[@]}" unshare --mount --uts --propagation private -- /bin/sh -ec '
      name=$1 addr=$2 hdir=$3 overlay_dirs=$4 hosts_lines=$5 pubkey=$6 keep_rc=$7
      for d in $overlay_dirs; do
        mount -t overlay "th-$name" -o "lowerdir=$d,upperdir=$hdir/upper$d,workdir=$hdir/work$d" "$d"
      done
      mount -t tmpfs -o mode=755 "th-$name-run" /run; mkdir -p -m 755 /run/sshd
      hostname "$name"; echo "$name" > /etc/hostname
      printf "127.0.0.1 localhost\n127.0.1.1 %s\n%s\n" "$name" "$hosts_lines" > /etc/hosts
      rm -f /etc/ssh/ssh_host_*; cp "$hdir"/keys/ssh_host_ed25519_key* /etc/ssh/
      chmod 600 /etc/ssh/ssh_host_ed25519_key
      # fresh-host dotfiles: this machine'"'"'s /root/.bashrc (pyenv init) adds ~90 ms per ssh command
      [ "$keep_rc" = 1 ] || cp /etc/skel/.bashrc /etc/skel/.profile /root/
      mkdir -p -m 700 /root/.ssh; echo "$pubkey" > /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys
      printf "%s\n" "ListenAddress $addr" "PermitRootLogin prohibit-password" "PasswordAuthentication no" \
        "KbdInteractiveAuthentication no" "UsePAM no" "UseDNS no" "HostKey /etc/ssh/ssh_host_ed25519_key" \
        "PidFile /run/sshd.pid" "MaxStartups 200" "MaxSessions 100" > /etc/ssh/sshd_config.d/00-testhosts.conf
      mount -t tmpfs -o mode=1777 "th-$name-tmp" /tmp    # last: hides $hdir from the host
      exec /usr/sbin/sshd -D -e
    ' sh "$name" "$addr" "$hdir" "$OVERLAY_DIRS" "$HOSTS_LINES" "$PUBKEY" "${TESTHOSTS_KEEP_ROOT_RC:-0}" \
      </dev/null >"$hdir/log" 2>&1 &
    pid=$!
  else  # nspawn
    mkdir -p "$hdir/upper" "$hdir/merged"
    if ! mountpoint -q "$hdir/merged"; then
      rm -rf "$hdir/work"; mkdir -p "$hdir/work"
      mount -t overlay "th-$name" -o "lowerdir=$ROOTFS,upperdir=$hdir/upper,workdir=$hdir/work" "$hdir/merged"
    fi
    m="$hdir/merged"
    echo "$name" > "$m/etc/hostname"
    printf "127.0.0.1 localhost\n127.0.1.1 %s\n%s\n" "$name" "$HOSTS_LINES" > "$m/etc/hosts"
    [ -s "$m/etc/machine-id" ] || tr -d - < /proc/sys/kernel/random/uuid > "$m/etc/machine-id"
    rm -f "$m"/etc/ssh/ssh_host_*; cp "$hdir"/keys/ssh_host_ed25519_key* "$m/etc/ssh/"; chmod 600 "$m/etc/ssh/ssh_host_ed25519_key"
    echo "HostKey /etc/ssh/ssh_host_ed25519_key" > "$m/etc/ssh/sshd_config.d/01-hostkey.conf"
    if [ "$MODE" = loopback ]; then echo "ListenAddress $addr" > "$m/etc/ssh/sshd_config.d/02-listen.conf"; fi
    install -d -m 700 "$m/root/.ssh"; echo "$PUBKEY" > "$m/root/.ssh/authorized_keys"; chmod 600 "$m/root/.ssh/authorized_keys"
    netopt=(); if [ "$MODE" = netns ]; then netopt=(--network-namespace-path="/run/netns/$ns"); fi
    unitopt=(); cgroups=""
    if [ ! -d /run/systemd/system ]; then
      # No systemd as PID 1 (no machined, no scopes): --register=no --keep-unit, and nspawn
      # puts the container in <its own cgroup>/payload.  Started from the root cgroup, every
      # host would share /payload (one ssh.service cgroup for all, `systemctl status` EIO
      # errors): so each host gets its own cgroup first, removed again by down.sh.
      unitopt=(--keep-unit)
      cg="testhosts-$name-$(printf %s "$STATE" | md5sum | cut -c1-8)"
      : > "$hdir/cgroups"
      while read -r root; do
        mkdir -p "$root/$cg"; echo "$root/$cg" >> "$hdir/cgroups"; cgroups="$cgroups $root/$cg"
      done < <(cgroup_roots)
    fi
    # the sh moves itself into the host's cgroups, then execs nspawn: $! is nspawn's pid
    # shellcheck disable=SC2016
    setsid /bin/sh -ec 'for c in $1; do echo $$ > "$c/cgroup.procs"; done; shift; exec "$@"' sh "$cgroups" \
      systemd-nspawn -q -D "$m" -b -M "$name" --register=no "${unitopt[@]}" \
      "${netopt[@]}" --console=read-only </dev/null >"$hdir/log" 2>&1 &
    pid=$!
  fi
  echo "$pid" > "$hdir/pid"
  started+=("$i")
done

# ---------------------------------------------------------------- per host: wait
# All hosts boot in parallel; wait until each one's sshd answers with *its own* host key
# (up to 60 s: booting systemd on a busy machine).
for i in "${started[@]}"; do
  name="gpu$i"; addr="$(addr_of "$i")"; hdir="$STATE/$name"; pid="$(cat "$hdir/pid")"
  hostkey="$(cut -d' ' -f2 "$hdir/keys/ssh_host_ed25519_key.pub")"
  ok=0
  for _ in $(seq 1 600); do
    if ssh-keyscan -T 1 -t ed25519 "$addr" 2>/dev/null | grep -qF "$hostkey"; then ok=1; break; fi
    running "$pid" || { echo "up.sh: $name died:" >&2; tail -20 "$hdir/log" >&2; exit 1; }
    sleep 0.1
  done
  [ "$ok" = 1 ] || { tail -20 "$hdir/log" >&2; die "$name: no sshd with its host key at $addr after 60 s"; }
  # the host's own mount namespace, for down.sh to find leftovers (never the root one)
  if [ "$IMPL" = ns ]; then readlink "/proc/$pid/ns/mnt" > "$hdir/mntns"
  else child="$(cat /proc/"$pid"/task/*/children 2>/dev/null | awk '{print $1; exit}')"
       if [ -n "$child" ]; then readlink "/proc/$child/ns/mnt" > "$hdir/mntns"; fi; fi
  echo "up.sh: $name up at $addr ($IMPL, pid $pid)"
done
mv "$STATE/hosts.txt.new" "$STATE/hosts.txt"

# ---------------------------------------------------------------- client-side files
# ssh multiplex sockets: $STATE/cm-%C, unless that is too long for a unix socket (108 bytes;
# %C = 40 hex digits): then a short dir of its own, recorded for down.sh
CM_DIR="$STATE"
if [ $(( ${#STATE} + 4 + 40 )) -ge 100 ]; then
  CM_DIR="/tmp/testhosts-cm-$(printf %s "$STATE" | md5sum | cut -c1-12)"
  mkdir -p "$CM_DIR"; chmod 700 "$CM_DIR"; echo "$CM_DIR" > "$STATE/cm-dir"
fi
: > "$STATE/known_hosts"; : > "$STATE/ssh_config"
echo "[gpu]" > "$STATE/inventory.ini"
while read -r name addr; do
  echo "$addr $(cut -d' ' -f1,2 "$STATE/$name/keys/ssh_host_ed25519_key.pub")" >> "$STATE/known_hosts"
  cat >> "$STATE/ssh_config" <<EOF
Host $name
  HostName $addr
  User root
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  # only used when ControlMaster is on (testinfra's ssh backend turns it on, with
  # ControlPersist=60s); down.sh closes those master processes
  ControlPath $CM_DIR/cm-%C

EOF
  echo "$name" >> "$STATE/inventory.ini"      # resolved through ssh_config (-F below)
done < "$STATE/hosts.txt"
cat >> "$STATE/inventory.ini" <<EOF
[gpu:vars]
ansible_user=root
ansible_ssh_private_key_file=$STATE/id_ed25519
ansible_ssh_common_args='-F $STATE/ssh_config'
ansible_python_interpreter=/usr/bin/python3
EOF
echo "up.sh: try: ssh -F $STATE/ssh_config gpu1 hostname"
