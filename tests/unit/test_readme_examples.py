"""The README's worked examples are what gpuhub says: the takeover plans are planned here, on the
facts of the hand-built cluster the README describes, and each of their lines must be in the
README as printed (tests/data/inventories/good/lab-*.yaml are the inventories it shows)."""
import re

import pytest

from gpuhub import facts, inventory, plan
from gpuhub.inventory import Secrets
from test_plan import converged, revision
from testdata import DATA, ROOT

README = (ROOT / "README.md").read_text()
SECRETS = Secrets({"github_client_id": "Iv1.0123456789abcdef", "github_client_secret": "x" * 40,
                   "dns_api_token": "t" * 40}, {})
H100 = "{i}, NVIDIA H100 80GB HBM3, GPU-{i}, 570.133.20, 81559\n"


def by_hand(number, chart, version):
    return dict(revision(number, "deployed", chart, version), managed=False)


def hand_built(inv) -> dict:
    """Two workstations as the lab built them by hand: K3s with a config.yaml of its own, Traefik
    serving Grafana, a hub (chart 3.3.8) and a device plugin (0.17.0) installed with helm, shared
    GPUs left as nvidia.com/gpu, a model server holding one, homes on a ZFS class."""
    fx = {}
    for host in inv.hosts.values():
        f = converged(inv, host, SECRETS)
        f.values.update(k3s_config_sha="0" * 64,
                        k3s_config_keys=["write-kubeconfig-mode", "cluster-cidr", "kubelet-arg", "token"])
        if host.gpus == 2:
            f.values.update(pci_gpus=[{"slot": f"0000:{s}:00.0", "device": "0x2330", "class": "0x030200"}
                                      for s in ("18", "3b")],
                            nvidia_smi=facts.parse_nvidia_smi(H100.format(i=0) + H100.format(i=1), 0))
        fx[host.name] = f
    nodes = {n: {"ready": True, "labels": {}, "capacity": {"nvidia.com/gpu": str(h.gpus)},
                 "allocatable": {"nvidia.com/gpu": str(h.gpus)}} for n, h in inv.hosts.items()}
    existing = inv.hub["github"]["existing_secret"]["name"]
    fx[inv.server.name].values.update(
        nodes=nodes,
        traefik_pods=[{"name": "traefik-5d45fc8cc9-r8g6b", "node": "ws1", "phase": "Running", "ready": True,
                       "reason": "", "labels": {}}],
        ingresses=[{"namespace": "monitoring", "name": "grafana", "release": "monitoring/grafana",
                    "hosts": ["grafana.lab.example.org"]}],
        gpu_pods=[{"name": "models/vllm-0", "node": "ws1", "phase": "Running", "resources": {"nvidia.com/gpu": 1}}],
        plugin_release=[by_hand(3, "nvidia-device-plugin", "0.17.0")], plugin_values={"config": {}},
        hub_release=[by_hand(12, "jupyterhub", "3.3.8")],
        hub_values={"hub": {"config": {"JupyterHub": {"authenticator_class": "github"}}}, "singleuser": {}},
        hub_secret={"found": True, "managed": False, "digests": {"client_id": "d", "client_secret": "d"}}
        if existing else {"found": False},
        storage={"classes": {"zfs-homes": "zfs.csi.openebs.io"},
                 "volumes": [{"namespace": "jupyter", "claim": f"claim-{u}", "storage_class": "zfs-homes"}
                             for u in ("ada", "bob", "chen")]})
    return fx


@pytest.mark.parametrize("name", ["lab-as-found", "lab-fitted"])
def test_the_readmes_takeover_plans_are_what_gpuhub_plans(name):
    path = DATA / "inventories" / "good" / f"{name}.yaml"
    inv = inventory.load(str(path))
    run = plan.Run(inv, {n: None for n in inv.hosts}, SECRETS, log=lambda line: None)
    run.facts = hand_built(inv)
    printed = plan.format_plan(run.plan(gather=False))
    missing = [line for line in printed.splitlines() if line.strip() and line not in README]
    assert not missing, "README lacks these plan lines:\n" + "\n".join(missing)
    shown = re.sub(r"^#.*\n", "", path.read_text(), flags=re.MULTILINE)
    block = "\n".join(f"    {line}" if line.strip() else "" for line in shown.strip().splitlines())
    assert block in README, f"README does not show {path.name} as it is (indented 4, comment lines left out)"
