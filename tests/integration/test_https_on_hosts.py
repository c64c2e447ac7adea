"""hub.https: ingress on the simulated hosts (gpu1 server, gpu2 and gpu3 agents, as in
test_provision): K3s keeps Traefik, gpuhub installs cert-manager and its ClusterIssuer, the
hub gets an Ingress, and cert-manager's ingress-shim (simulated: tests/sim/simk3s.py, from
cert-manager v1.21.1) issues its Certificate. Then back to letsencrypt with another Ingress
in the cluster: disabling Traefik is destructive, with that Ingress as the evidence."""
import base64
import json
import os
import shlex

import pytest

from test_provision import module_site
from tlscerts import make_ca, make_server_cert

pytestmark = pytest.mark.integration


def get(site, what):
    return json.loads(site.sh("gpu1", f"k3s kubectl get {what} -o json").stdout)


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    yield from module_site(testhosts, tmp_path_factory, "https-modes")


STATE = "/var/lib/rancher/k3s/server/sim-cluster.json"  # the simulated cluster's objects (simk3s.DB)


def test_ingress_mode_keeps_traefik_and_cert_manager_issues_the_hubs_certificate(site):
    inventory_file = site.write_inventory(hub__https="ingress")
    result = site.fab("provision", inventory_file=inventory_file)
    assert result.returncode == 0, result.stderr
    assert "install cert-manager release cert-manager/cert-manager" in result.stderr
    assert "traefik" not in site.sh("gpu1", "cat /etc/rancher/k3s/config.yaml").stdout
    pods = get(site, "pods -A")["items"]
    assert any(p["metadata"]["labels"].get("app.kubernetes.io/name") == "traefik" for p in pods)
    [issuer] = get(site, "clusterissuers.cert-manager.io")["items"]
    assert issuer["metadata"]["name"] == "gpuhub-letsencrypt"
    assert issuer["status"]["conditions"][0]["status"] == "True"
    [certificate] = get(site, "certificates.cert-manager.io -n jhub")["items"]
    assert certificate["spec"]["dnsNames"] == ["hub.lab.test"]
    assert certificate["status"]["conditions"][0]["status"] == "True"
    secret = get(site, "secrets -n jhub")["items"]
    assert any(s["metadata"]["name"] == "gpuhub-hub-ingress-tls" and s["type"] == "kubernetes.io/tls" for s in secret)
    # Converged: a second plan changes nothing, cert-manager included.
    planned = site.plan(inventory_file)
    assert {s["status"] for host in planned.values() for s in host.values()} <= {"ok"}, planned
    assert "cert-manager (gpuhub release cert-manager/cert-manager)" in planned["gpu1"]["hub.launch"]["summary"]


def test_leaving_ingress_mode_with_another_ingress_is_destructive_and_needs_yes(site):
    """A hand-made Ingress that Traefik serves (a lab's Grafana), then hub.https: letsencrypt."""
    grafana = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "grafana", "namespace": "monitoring"},
               "spec": {"ingressClassName": "traefik", "rules": [{"host": "grafana.lab.test", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "grafana", "port": {"number": 80}}}}]}}]}}
    site.sh("gpu1", "python3 -c " + shlex.quote(
        f"import json; p = {STATE!r}; s = json.load(open(p)); s['ingresses'] = [{json.dumps(grafana)}]; "
        "json.dump(s, open(p, 'w'))"))
    inventory_file = site.write_inventory()
    planned = site.plan(inventory_file)
    install = planned["gpu1"]["k3s.install"]
    assert install["destructive"] is True
    assert ("disables Traefik, which serves Ingress monitoring/grafana (grafana.lab.test): they stop answering"
            in install["summary"])
    refused = site.fab("provision", inventory_file=inventory_file)
    assert refused.returncode == 1
    assert "traefik" not in site.sh("gpu1", "cat /etc/rancher/k3s/config.yaml").stdout  # nothing changed


def test_certificate_mode_serves_the_institutions_files_from_a_tls_secret(site):
    """Then the institution's certificate (still with Grafana's Ingress: --yes). The Secret holds
    the key; the plan, the values and the hosts' files of gpuhub do not."""
    cert, key = make_server_cert("hub.lab.test", make_ca())
    (site.folder / "hub.crt").write_bytes(cert)
    (site.folder / "hub.key").write_bytes(key)
    os.chmod(site.folder / "hub.key", 0o600)
    inventory_file = site.write_inventory(hub__https="certificate", hub__tls_certificate="hub.crt",
                                          hub__tls_key="hub.key")
    result = site.fab("provision", "--yes", inventory_file=inventory_file)
    assert result.returncode == 0, result.stderr
    assert "create Secret jhub/gpuhub-hub-tls (kubernetes.io/tls: the certificate for hub.lab.test" in result.stderr
    key_line = key.decode().splitlines()[1]
    assert key_line not in result.stderr + result.stdout
    [secret] = [s for s in get(site, "secrets -n jhub")["items"] if s["metadata"]["name"] == "gpuhub-hub-tls"]
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.key"]) == key
    # Applied server-side: no last-applied-configuration copy of the key on the object.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (secret["metadata"].get("annotations") or {})
    values = json.loads(site.sh("gpu1", "KUBECONFIG=/etc/rancher/k3s/k3s.yaml helm get values jhub -n jhub -o json")
                        .stdout)
    assert values["proxy"]["https"]["type"] == "secret" and key_line not in json.dumps(values)
    assert site.sh("gpu1", f"grep -rl -- {shlex.quote(key_line)} /var/lib/gpuhub /etc/rancher /run 2>/dev/null",
                   check=False).stdout == ""
    planned = site.plan(inventory_file)
    assert {s["status"] for host in planned.values() for s in host.values()} <= {"ok"}, planned
