"""The hub's OAuth credentials in a Kubernetes Secret, on the simulated hosts (gpu1 alone, a
one-node cluster): hub.launch creates gpuhub's own Secret through kubectl's stdin, the hub's
values reference it and hold no credential, a second run is converged, new credentials are an
"update Secret" that restarts the hub; with hub.github.existing_secret the site's Secret is used,
and the simulated kubelet refuses to start a hub whose Secret lacks the key (as Kubernetes does).
"""
import base64
import json

import pytest

from test_provision import module_site

pytestmark = pytest.mark.integration

ONE_NODE = {"gpu1": {"role": "server", "address": "10.250.0.11", "gpus": 1}}
KUBECTL = "k3s kubectl"
SECRET = "gpuhub-github-oauth"
FIRST, ROTATED = "sim-client-secret", "sim-rotated-secret-0123"


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    yield from module_site(testhosts, tmp_path_factory, "oauth-secret")


def inventory(site, **changes):
    return site.write_inventory(hosts=ONE_NODE, **changes)


def plan_hub(site, inventory_file, **env):
    result = site.fab("plan", "--json", hosts=["gpu1"], inventory_file=inventory_file, **env)
    assert result.returncode == 0, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["hosts"]["gpu1"]["steps"]}
    return steps["hub.launch"], result


def secret(site, name=SECRET):
    return json.loads(site.sh("gpu1", f"{KUBECTL} get secret {name} -n jhub -o json").stdout)


def hub_pod(site):
    pods = json.loads(site.sh("gpu1", f"{KUBECTL} get pods -n jhub -l component=hub -o json").stdout)["items"]
    assert len(pods) == 1, pods
    return pods[0]


def hub_values(site):
    return site.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm get values jhub -n jhub -o json").stdout


def test_provision_creates_the_secret_and_the_values_hold_no_credential(site):
    result = site.fab("provision", hosts=["gpu1"], inventory_file=inventory(site))
    assert result.returncode == 0, result.stderr
    assert "JupyterHub is up" in result.stderr
    stored = secret(site)
    assert base64.b64decode(stored["data"]["client_secret"]).decode() == FIRST
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "gpuhub"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in stored["metadata"].get("annotations", {})
    values = hub_values(site)
    assert FIRST not in values and "sim-client-id" not in values and "secretKeyRef" in values
    assert hub_pod(site)["status"]["phase"] == "Running"
    assert FIRST not in result.stdout + result.stderr
    assert FIRST not in site.sh("gpu1", "cat /var/log/gpuhub-sim/argv.log", check=False).stdout


def test_a_second_run_is_converged(site):
    step, _ = plan_hub(site, inventory(site))
    assert step["status"] == "ok", step


def test_new_credentials_update_the_secret_and_restart_the_hub(site):
    before = hub_pod(site)["metadata"]["name"]
    step, planned = plan_hub(site, inventory(site), GPUHUB_GITHUB_CLIENT_SECRET=ROTATED)
    assert step["status"] == "change"
    assert step["summary"].startswith("update Secret jhub/gpuhub-github-oauth (the hub's GitHub OAuth credentials: "
                                      "client_secret changed)"), step
    assert "update JupyterHub release jhub/jhub values (hub)" in step["summary"]
    assert ROTATED not in planned.stdout + planned.stderr
    result = site.fab("provision", hosts=["gpu1"], inventory_file=inventory(site), GPUHUB_GITHUB_CLIENT_SECRET=ROTATED)
    assert result.returncode == 0, result.stderr
    assert base64.b64decode(secret(site)["data"]["client_secret"]).decode() == ROTATED
    assert hub_pod(site)["metadata"]["name"] != before  # a new pod, which reads the new credentials
    assert plan_hub(site, inventory(site), GPUHUB_GITHUB_CLIENT_SECRET=ROTATED)[0]["status"] == "ok"


def test_an_existing_secret_that_is_missing_blocks_and_then_is_used_without_local_secrets(site):
    existing = inventory(site, hub__github__existing_secret={"name": "lab-github", "client_id_key": "id",
                                                             "client_secret_key": "secret"})
    no_secrets = {"GPUHUB_GITHUB_CLIENT_ID": "", "GPUHUB_GITHUB_CLIENT_SECRET": ""}
    step, _ = plan_hub(site, existing, **no_secrets)
    assert step["status"] == "blocked"
    assert step["reason"].startswith("Secret jhub/lab-github (hub.github.existing_secret.name) does not exist")
    made = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-github", "namespace": "jhub"},
            "stringData": {"id": "lab-client-id", "secret": "lab-client-secret"}}
    site.sh("gpu1", f"echo '{json.dumps(made)}' | {KUBECTL} apply --server-side -f -")
    result = site.fab("provision", hosts=["gpu1"], inventory_file=existing, **no_secrets)
    assert result.returncode == 0, result.stderr
    assert "lab-github" in hub_values(site) and hub_pod(site)["status"]["phase"] == "Running"
    assert plan_hub(site, existing, **no_secrets)[0]["status"] == "ok"


def test_the_simulated_kubelet_refuses_a_hub_whose_secret_lacks_the_key(site):
    """Kubernetes starts no container whose env names a key its Secret lacks: the pod waits in
    CreateContainerConfigError (the simulation's hub_environment cites the kubelet)."""
    broken = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-github", "namespace": "jhub"},
              "stringData": {"id": "lab-client-id"}}
    site.sh("gpu1", f"echo '{json.dumps(broken)}' | {KUBECTL} apply --server-side -f -")
    waiting = hub_pod(site)["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError",
                       "message": "couldn't find key secret in Secret jhub/lab-github"}


def test_secret_apply_refuses_bad_input_and_changes_nothing(site):
    before = site.sh("gpu1", f"{KUBECTL} get secrets -n jhub -o name").stdout
    for env, named in (("NAMESPACE='j hub' NAME=x MANIFEST_BYTES=2", "NAMESPACE"),
                       ("NAMESPACE=jhub NAME='Bad;name' MANIFEST_BYTES=2", "NAME"),
                       ("NAMESPACE=jhub NAME=x MANIFEST_BYTES=0", "MANIFEST_BYTES")):
        result = site.sh("gpu1", f"echo {{}} | env {env} /var/lib/gpuhub/scripts/secret-apply.sh", check=False)
        assert result.returncode == 2 and named in result.stderr, (env, result.stderr)
    assert site.sh("gpu1", f"{KUBECTL} get secrets -n jhub -o name").stdout == before
