"""The hub's helm release as helm really treats it, through `fab provision` on the simulated hosts
(gpu1 server, gpu2 and gpu3 agents, as in test_provision).

The simulated helm imitates helm v3.17.3 (tests/sim/README.md): a revision is recorded pending
before the chart's hooks run, and stays so when helm dies (its SSH session dropped); `helm list`
shows only deployed and failed releases unless given --all; an upgrade of a pending release fails
with "another operation (install/upgrade/rollback) is in progress". Zero to JupyterHub's
pre-install / pre-upgrade hook pulls every profile image on every node, each pull taking the
node's /etc/gpuhub-sim/image-pull-seconds, and helm waits for it up to --timeout.
"""
import json
import time

import pytest

from test_provision import HOSTS, module_site

pytestmark = pytest.mark.integration

SIM = "/etc/gpuhub-sim"
HELM = "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm"
CPU_IMAGE = "quay.io/jupyter/scipy-notebook"


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    yield from module_site(testhosts, tmp_path_factory, "helm-releases")


def pull_seconds(site, seconds):
    for host in HOSTS:
        site.sh(host, f"mkdir -p {SIM} && echo {seconds} > {SIM}/image-pull-seconds")


def fault(site, name, value=None):
    if value is None:
        site.sh("gpu1", f"rm -f {SIM}/faults/{name}")
    else:
        site.sh("gpu1", f"mkdir -p {SIM}/faults && echo {value} > {SIM}/faults/{name}")


def history(site):
    return json.loads(site.sh("gpu1", f"{HELM} history jhub -n jhub -o json").stdout)


def listed(site, *flags):
    return {r["name"]: r["status"] for r in json.loads(site.sh("gpu1", f"{HELM} list -A -o json {' '.join(flags)}").stdout)}


def test_a_first_install_whose_image_pulls_outlast_the_helm_timeout_fails_clearly_and_a_longer_one_passes(site):
    """The first install pulls three images per node (network tools, the CPU image, the GPU
    image); at 4 s each a 10 s timeout cannot do, and the error says what each node still pulls."""
    pull_seconds(site, 4)
    short = site.fab("provision", inventory_file=site.write_inventory(hub__helm_timeout="10s"))
    assert short.returncode == 1
    assert "hub.launch failed: helm gave up after hub.helm_timeout (10s) waiting for the chart's image pull" \
        in short.stderr, short.stderr
    assert "pulling quay.io/jupyter/" in short.stderr and "a slow link needs a longer hub.helm_timeout" in short.stderr
    assert history(site)[-1]["status"] == "failed"
    # The hook's pods went on pulling after helm gave up: what they pulled stays on the nodes.
    pull_seconds(site, 6)
    long = site.fab("provision", inventory_file=site.write_inventory(hub__helm_timeout="2m"))
    assert long.returncode == 0, long.stderr
    assert "JupyterHub is up" in long.stderr
    assert history(site)[-1]["status"] == "deployed"


def test_while_helm_waits_for_the_pulls_each_node_says_what_it_pulls(site):
    """A new CPU image on every node takes 14 s: longer than one progress interval (10 s)."""
    pull_seconds(site, 14)
    result = site.fab("provision", inventory_file=site.write_inventory(
        hub__helm_timeout="2m", hub__profiles__cpu__image=f"{CPU_IMAGE}:2026-09-01"))
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines()
                if line.startswith("gpu1: hub.launch: waiting for helm to deploy jhub/jhub, up to ") and " pulling " in line]
    assert progress, result.stderr
    assert f"gpu2 pulling {CPU_IMAGE}:2026-09-01" in progress[0]
    pull_seconds(site, 0)


def test_an_interrupted_upgrade_is_hidden_by_helm_list_and_rolled_back_once_old(site):
    """helm dies mid-upgrade (an SSH session that dropped two hours ago): helm 3's `list` hides the
    release, and gpuhub, reading its history, rolls it back to the last deployed revision and
    upgrades it again."""
    inventory = site.write_inventory(hub__helm_timeout="2m", hub__profiles__cpu__image=f"{CPU_IMAGE}:2026-09-01",
                                     hub__profiles__cpu__description="CPU only, 8 GB.")
    fault(site, "helm-killed", 7200)
    killed = site.fab("provision", inventory_file=inventory)
    fault(site, "helm-killed")
    assert killed.returncode == 1
    assert history(site)[-1]["status"] == "pending-upgrade"
    assert "jhub" not in listed(site) and listed(site, "--all")["jhub"] == "pending-upgrade"
    deployed = max(r["revision"] for r in history(site) if r["status"] == "deployed")
    plan = site.plan(inventory)
    step = plan["gpu1"]["hub.launch"]
    assert step["status"] == "change" and not step["destructive"]
    assert f"roll back to revision {deployed}, the last deployed" in step["summary"], step
    repaired = site.fab("provision", inventory_file=inventory)
    assert repaired.returncode == 0, repaired.stderr
    assert f"rolled back release jhub/jhub to revision {deployed}" in repaired.stderr
    assert [r["status"] for r in history(site)][-2:] == ["superseded", "deployed"]
    assert site.plan(inventory)["gpu1"]["hub.launch"]["status"] == "ok"


def test_a_pending_release_younger_than_the_helm_timeout_is_left_alone(site):
    """Another person's run may still be at it: blocked, nothing changed anywhere; once older than
    the step's own helm timeout, it is repaired."""
    inventory = site.write_inventory(hub__helm_timeout="15s", hub__profiles__cpu__description="CPU only.")
    fault(site, "helm-killed", 0)
    site.fab("provision", inventory_file=inventory)
    fault(site, "helm-killed")
    before = history(site)
    assert before[-1]["status"] == "pending-upgrade"
    blocked = site.fab("provision", inventory_file=inventory)
    assert blocked.returncode == 1
    assert "another helm run may still be at it" in blocked.stderr, blocked.stderr
    assert history(site) == before
    time.sleep(16)
    assert site.fab("provision", inventory_file=inventory).returncode == 0
    assert history(site)[-1]["status"] == "deployed"


def releases_marked(site, namespace):
    """Release Secrets of `namespace` that carry gpuhub's label (helm --labels managed-by=gpuhub)."""
    found = json.loads(site.sh("gpu1", f"k3s kubectl get secrets -n {namespace} -l owner=helm,managed-by=gpuhub "
                                       "-o json").stdout)["items"]
    return sorted(s["metadata"]["name"] for s in found)


def test_a_hub_release_installed_by_hand_is_adopted_only_with_yes_and_then_carries_gpuhubs_mark(site):
    """A lab's own hub (release lab/hub, installed with helm by hand, no gpuhub label): pointed
    at it (hub.release/namespace), gpuhub's plan reads it, marks the upgrade destructive (its values
    replace the lab's) and refuses it without --yes; with --yes it upgrades, and its records then
    carry gpuhub's label, so the next run is converged and an ordinary change after that is not
    destructive."""
    assert releases_marked(site, "jhub"), "gpuhub's own release carries its label"
    site.sh("gpu1", f"echo '{{\"hub\": {{\"config\": {{\"JupyterHub\": {{\"authenticator_class\": \"dummy\"}}}}}}}}' | "
                    f"{HELM} upgrade --install hub jupyterhub --repo https://hub.jupyter.org/helm-chart/ "
                    "--version 4.4.0 -n lab --create-namespace -f -")
    assert releases_marked(site, "lab") == []
    inventory = site.write_inventory(hub__release="hub", hub__namespace="lab", hub__helm_timeout="2m")
    # K3s stopped: the first plan cannot read the cluster (its steps only wait for k3s.install to
    # start it). The adoption appears once K3s answers, after the hosts' own changes: refused then,
    # without --yes, and nothing of it done.
    site.sh("gpu1", "systemctl stop k3s")
    started = site.fab("provision", inventory_file=inventory)
    assert started.returncode == 1, started.stderr
    assert "destructive cluster changes need --yes (nothing of them was done): hub.launch: " in started.stderr, \
        started.stderr
    assert releases_marked(site, "lab") == []
    step = site.plan(inventory)["gpu1"]["hub.launch"]
    assert step["status"] == "change" and step["destructive"], step
    assert "adopt" in step["summary"] and "installed without gpuhub" in step["summary"], step
    before = history_of(site, "hub", "lab")
    refused = site.fab("provision", inventory_file=inventory)
    assert refused.returncode == 1 and "destructive changes need --yes" in refused.stderr, refused.stderr
    assert history_of(site, "hub", "lab") == before
    adopted = site.fab("provision", "--yes", inventory_file=inventory)
    assert adopted.returncode == 0, adopted.stderr
    assert releases_marked(site, "lab"), "the adopted release's new revision carries gpuhub's label"
    assert site.plan(inventory)["gpu1"]["hub.launch"]["status"] == "ok"
    later = site.plan(site.write_inventory(hub__release="hub", hub__namespace="lab", hub__helm_timeout="2m",
                                           hub__profiles__cpu__description="CPU only, 4 GB."))["gpu1"]["hub.launch"]
    assert later["status"] == "change" and not later["destructive"], later
    site.sh("gpu1", f"{HELM} uninstall hub -n lab")


def history_of(site, release, namespace):
    return json.loads(site.sh("gpu1", f"{HELM} history {release} -n {namespace} -o json").stdout)
