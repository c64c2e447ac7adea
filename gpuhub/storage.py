"""Where users' volumes live, told by each StorageClass's provisioner: what `k3s.reset` must back
up, what survives K3s's uninstall in place, and what is not on the host at all.

K3s's uninstall deletes /var/lib/rancher/k3s, /etc/rancher/k3s and /var/lib/kubelet (K3s
install.sh, release-1.34, k3s-uninstall.sh / create_uninstall). K3s's own local-path class keeps
each volume under /var/lib/rancher/k3s/storage (manifests/local-storage.yaml, nodePathMap
DEFAULT_LOCAL_STORAGE_PATH), so those go with it unless copied first. ZFS datasets and LVM
logical volumes made by a CSI driver are in the host's pool or volume group, which the uninstall
does not touch; networked volumes are on other machines. What no list here names is said to be
unknown, never guessed safe.
"""
from __future__ import annotations

LOCAL_PATH = "rancher.io/local-path"
# Provisioner names as their projects document them in StorageClass examples:
# openebs/zfs-localpv docs/storageclasses.md (zfs.csi.openebs.io), openebs/lvm-localpv
# docs/storageclasses.md (local.csi.openebs.io), topolvm/topolvm (CSI driver topolvm.io,
# its plugin socket /var/lib/kubelet/plugins/topolvm.io/).
NODE_LOCAL = {"zfs.csi.openebs.io": "ZFS", "local.csi.openebs.io": "LVM", "topolvm.io": "LVM"}
# kubernetes-csi/csi-driver-nfs (nfs.csi.k8s.io), kubernetes-csi/csi-driver-smb (smb.csi.k8s.io),
# ceph/ceph-csi (rbd.csi.ceph.com, cephfs.csi.ceph.com).
NETWORKED = {"nfs.csi.k8s.io": "NFS", "smb.csi.k8s.io": "SMB", "rbd.csi.ceph.com": "Ceph RBD",
             "cephfs.csi.ceph.com": "CephFS"}

STORAGE_DIR = "/var/lib/rancher/k3s/storage"
UNINSTALL_DELETES = ("/var/lib/rancher/k3s", "/etc/rancher/k3s", "/var/lib/kubelet")

# What reset does to a volume: copied to the backup first, left in place (and recorded), left
# alone (not on this host), deleted with no copy, or not known.
BACKED_UP, IN_PLACE, NETWORK, DELETED, UNKNOWN = "backed-up", "in-place", "networked", "deleted", "unknown"


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def fate(volume: dict) -> str:
    """What the uninstall does to one volume (facts.storage_view's volume). A volume with a path on
    the node (local-path's `local`/`hostPath` PVs, a hand-made local PV) is judged by that path;
    a CSI volume by its driver."""
    path = volume.get("path")
    if path:
        if _under(path, STORAGE_DIR):
            return BACKED_UP
        return DELETED if any(_under(path, d) for d in UNINSTALL_DELETES) else IN_PLACE
    provisioner = volume.get("provisioner") or ""
    if provisioner in NODE_LOCAL:
        return IN_PLACE
    if provisioner in NETWORKED:
        return NETWORK
    return UNKNOWN


def kind_of(provisioner: str) -> str:
    """A class's provisioner in words."""
    if provisioner == LOCAL_PATH:
        return "K3s's local-path"
    if provisioner in NODE_LOCAL:
        return f"node-local {NODE_LOCAL[provisioner]}"
    if provisioner in NETWORKED:
        return f"networked {NETWORKED[provisioner]}"
    return "a provisioner gpuhub does not know"


SAID = {BACKED_UP: f"under {STORAGE_DIR}, which the uninstall deletes: backed up first",
        IN_PLACE: "not deleted by the uninstall: they stay in place on the node",
        NETWORK: "not on this host: untouched",
        DELETED: "under a folder the uninstall deletes, outside what is backed up: LOST",
        UNKNOWN: "where they live is not known: NOT backed up, check them before confirming"}
SKIPPED = f"under {STORAGE_DIR}, which the uninstall deletes: DESTROYED (--destroy-user-data)"


def on_host(volumes: list, node: str, others=()) -> list:
    """The volumes that can be on `node`: all but those pinned to another of the inventory's
    nodes (`others`). One pinned to a node the inventory does not name (a cluster built by hand,
    its nodes named otherwise) may be this one's, so it counts."""
    return [v for v in volumes if v.get("node") == node or v.get("node") not in others]


def class_lines(storage: dict, node: str, destroy: bool = False, others=()) -> list:
    """One line per StorageClass (and per class a volume names that does not exist): its
    provisioner, how many of this node's volumes it has, and what the reset does to them."""
    volumes = on_host(storage["volumes"], node, others)
    names = sorted(set(storage["classes"]) | {v["storage_class"] or "" for v in volumes})
    lines = []
    for name in names:
        provisioner = storage["classes"].get(name, "")
        mine = [v for v in volumes if (v["storage_class"] or "") == name]
        label = name or "(no class)"
        what = f"{label} ({provisioner or 'no such StorageClass'}, {kind_of(provisioner)})"
        if not mine:
            lines.append(f"{what}: no volumes")
            continue
        for outcome in sorted({fate(v) for v in mine}):
            count = sum(1 for v in mine if fate(v) == outcome)
            said = SKIPPED if destroy and outcome == BACKED_UP else SAID[outcome]
            lines.append(f"{what}: {count} volume(s) {said}")
    return lines


def record(storage: dict, node: str, destroy: bool = False, others=()) -> list:
    """Which volume is whose, for the volumes that outlive the uninstall or may (everything but
    the networked ones): what a lab needs to find a user's data again after a reset."""
    rows = []
    for v in on_host(storage["volumes"], node, others):
        if fate(v) == NETWORK:
            continue
        rows.append({k: v.get(k) for k in ("namespace", "claim", "username", "servername", "storage_class",
                                           "provisioner", "persistent_volume", "volume_handle",
                                           "volume_attributes", "path", "node")}
                    | {"after_reset": "destroyed" if destroy and fate(v) == BACKED_UP else fate(v)})
    return rows
