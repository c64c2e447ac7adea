"""The flag names K3s accepts, as data: its config.yaml keys are these names without the
leading dashes (one key per flag, a list for a flag given several times).

Read from K3s's own source, release-1.34 (github:muicoder/k3s, a mirror of k3s-io/k3s release
branches, commit 42052136b4c900e84b6663bc159fc3d0f6d410ef): pkg/cli/cmds/server.go `ServerFlags`
and pkg/cli/cmds/agent.go `NewAgentCommand` Flags, shared flag variables resolved from agent.go,
log.go and root.go. Not known here: the v1.37 line gpuhub pins (inventory.K3S_VERSION) is not in
that mirror; a flag added after 1.34 is refused until it is added below, one removed since is
accepted and refused by K3s at start.
"""
from __future__ import annotations

SERVER_FLAGS = frozenset((
    'advertise-address', 'advertise-port', 'agent-token', 'agent-token-file', 'airgap-extra-registry',
    'alsologtostderr', 'apiserver-bind-address', 'apiserver-port', 'bind-address', 'cluster-cidr',
    'cluster-dns', 'cluster-domain', 'cluster-init', 'cluster-reset', 'cluster-reset-restore-path', 'config',
    'container-runtime-endpoint', 'data-dir', 'datastore-cafile', 'datastore-certfile', 'datastore-endpoint',
    'datastore-keyfile', 'debug', 'default-local-storage-path', 'default-runtime', 'disable',
    'disable-agent', 'disable-apiserver', 'disable-cloud-controller', 'disable-controller-manager',
    'disable-default-registry-endpoint', 'disable-etcd', 'disable-helm-controller', 'disable-kube-proxy',
    'disable-network-policy', 'disable-scheduler', 'docker', 'egress-selector-mode', 'embedded-registry',
    'enable-pprof', 'etcd-arg', 'etcd-disable-snapshots', 'etcd-expose-metrics', 'etcd-s3',
    'etcd-s3-access-key', 'etcd-s3-bucket', 'etcd-s3-bucket-lookup-type', 'etcd-s3-config-secret',
    'etcd-s3-endpoint', 'etcd-s3-endpoint-ca', 'etcd-s3-folder', 'etcd-s3-insecure', 'etcd-s3-proxy',
    'etcd-s3-region', 'etcd-s3-retention', 'etcd-s3-secret-key', 'etcd-s3-session-token',
    'etcd-s3-skip-ssl-verify', 'etcd-s3-timeout', 'etcd-snapshot-compress', 'etcd-snapshot-dir',
    'etcd-snapshot-name', 'etcd-snapshot-reconcile-interval', 'etcd-snapshot-retention',
    'etcd-snapshot-schedule-cron', 'flannel-backend', 'flannel-cni-conf', 'flannel-conf',
    'flannel-external-ip', 'flannel-iface', 'flannel-ipv6-masq', 'helm-job-image', 'https-listen-port',
    'image-credential-provider-bin-dir', 'image-credential-provider-config', 'image-service-endpoint',
    'kine-tls', 'kube-apiserver-arg', 'kube-cloud-controller-arg', 'kube-cloud-controller-manager-arg',
    'kube-controller-arg', 'kube-controller-manager-arg', 'kube-proxy-arg', 'kube-scheduler-arg',
    'kubelet-arg', 'lb-server-port', 'log', 'node-external-dns', 'node-external-ip', 'node-internal-dns',
    'node-ip', 'node-label', 'node-name', 'node-taint', 'nonroot-devices', 'pause-image',
    'prefer-bundled-bin', 'private-registry', 'protect-kernel-defaults', 'resolv-conf', 'rootless',
    'secrets-encryption', 'secrets-encryption-provider', 'selinux', 'server', 'service-cidr',
    'service-node-port-range', 'servicelb-namespace', 'snapshotter', 'supervisor-metrics', 'supervisor-port',
    'system-default-registry', 'tls-san', 'tls-san-security', 'token', 'token-file', 'v', 'vmodule',
    'vpn-auth', 'vpn-auth-file', 'with-node-id', 'write-kubeconfig', 'write-kubeconfig-group',
    'write-kubeconfig-mode',
))

AGENT_FLAGS = frozenset((
    'airgap-extra-registry', 'alsologtostderr', 'bind-address', 'config', 'container-runtime-endpoint',
    'data-dir', 'debug', 'default-runtime', 'disable-apiserver-lb', 'disable-default-registry-endpoint',
    'docker', 'enable-pprof', 'flannel-cni-conf', 'flannel-conf', 'flannel-iface',
    'image-credential-provider-bin-dir', 'image-credential-provider-config', 'image-service-endpoint',
    'kube-proxy-arg', 'kubelet-arg', 'lb-server-port', 'log', 'node-external-dns', 'node-external-ip',
    'node-internal-dns', 'node-ip', 'node-label', 'node-name', 'node-taint', 'nonroot-devices',
    'pause-image', 'prefer-bundled-bin', 'private-registry', 'protect-kernel-defaults', 'resolv-conf',
    'rootless', 'selinux', 'server', 'snapshotter', 'token', 'token-file', 'v', 'vmodule', 'vpn-auth',
    'vpn-auth-file', 'with-node-id',
))

# Keys gpuhub writes itself (render.k3s_config) or relies on, and the setting to use instead.
GPUHUB_OWNED = {
    "node-name": "the host's name under hosts:",
    "write-kubeconfig-mode": "cluster.kubeconfig_mode",
    "disable": "gpuhub disables Traefik itself, for the hub's own HTTPS proxy",
    "tls-san": "hosts.NAME.address (the server's address is its certificate's name)",
    "server": "cluster.server and the server's hosts.NAME.address",
    "token": "nothing: gpuhub copies the server's node token to each agent's token file",
    "token-file": "nothing: gpuhub copies the server's node token to each agent's token file",
    "agent-token": "nothing: tokens never go into config.yaml",
    "agent-token-file": "nothing: tokens never go into config.yaml",
    "node-label": "nothing: gpuhub sets the GPU sharing labels it needs",
    "default-runtime": "gpu.runtime",
    "data-dir": "nothing: gpuhub's facts and reset read K3s's default /var/lib/rancher/k3s",
    "config": "nothing: this is the config file itself",
}


def roles_for(key: str) -> tuple:
    """The host roles whose K3s command takes `key`: a key only `k3s server` takes goes only
    into the server's config.yaml, one only `k3s agent` takes only into the agents'."""
    return tuple(role for role, flags in (("server", SERVER_FLAGS), ("agent", AGENT_FLAGS)) if key in flags)
