"""Ring 2 for hub.https: each mode's hub values through the chart schema and the real hub
classes; the ClusterIssuer, and the Certificate cert-manager would make from the hub's Ingress,
through the strict cert-manager model; the Ingress and the TLS Secret through kubernetes-validate."""
import os

import pytest
import yaml

from certmanager_model import certificate_for_ingress, certificate_problems, cluster_issuer_problems
from testdata import DATA, SHARED
from tlscerts import make_ca, make_server_cert
from gpuhub import inventory, render, validate

Z2JH = SHARED / "reference" / "z2jh"
MODES = ("letsencrypt", "ingress", "certificate")


def site(tmp_path, mode):
    data = yaml.safe_load((DATA / "inventories" / "good" / "seed.yaml").read_text())
    data["hub"]["https"] = mode
    if mode == "certificate":
        cert, key = make_server_cert(data["hub"]["hostname"], make_ca())
        (tmp_path / "hub.crt").write_bytes(cert)
        (tmp_path / "hub.key").write_bytes(key)
        os.chmod(tmp_path / "hub.key", 0o600)
        data["hub"].update(tls_certificate="hub.crt", tls_key="hub.key")
    return inventory.parse(data, str(tmp_path / "hosts.yaml"))


def rendered(tmp_path, mode, secrets):
    inv = site(tmp_path, mode)
    files, _ = render.render_all(inv, secrets)
    return inv, {name: yaml.safe_load(a.text) for name, a in files.items() if name.endswith(".yaml")}


def chart_ingress(values: dict, namespace: str) -> dict:
    """The Ingress Z2JH 4.4.0 renders from these values (templates/ingress.yaml): named
    `jupyterhub.ingress.fullname`, "jupyterhub" while fullnameOverride is unset (_helpers-names.tpl);
    one rule per host, path hub.baseUrl + "/" to proxy-public's port named http; tls as given."""
    ingress = values["ingress"]
    paths = [{"path": "/", "pathType": "Prefix",
              "backend": {"service": {"name": "proxy-public", "port": {"name": "http"}}}}]
    spec = {"rules": [{"host": h, "http": {"paths": paths}} for h in ingress["hosts"]], "tls": ingress["tls"]}
    if ingress.get("ingressClassName"):
        spec["ingressClassName"] = ingress["ingressClassName"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "jupyterhub", "namespace": namespace, "annotations": ingress["annotations"]},
            "spec": spec}


@pytest.mark.parametrize("chart", ["3.2.1", "4.4.0"])
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_passes_the_chart_schema(tmp_path, mode, chart, secrets):
    if not (Z2JH / chart / "values.schema.yaml").exists():
        pytest.skip(f"chart reference {Z2JH / chart} is absent (it lives in ../shared/reference)")
    _, files = rendered(tmp_path, mode, secrets)
    assert validate.z2jh_problems(files["cluster/jupyterhub-values.yaml"], Z2JH / chart) == []


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_loads_into_the_real_hub_classes(tmp_path, mode, secrets):
    pytest.importorskip("jupyterhub", reason="pip install 'gpuhub[hubcheck]'")
    from gpuhub import hubcheck
    _, files = rendered(tmp_path, mode, secrets)
    assert hubcheck.check_hub_values(files["cluster/jupyterhub-values.yaml"]) == []


def test_the_cluster_issuer_fits_cert_managers_api(tmp_path, secrets):
    _, files = rendered(tmp_path, "ingress", secrets)
    assert cluster_issuer_problems(files["cluster/cluster-issuer.yaml"]) == []


def test_the_model_catches_what_cert_managers_webhook_refuses(tmp_path, secrets):
    _, files = rendered(tmp_path, "ingress", secrets)
    issuer = files["cluster/cluster-issuer.yaml"]
    acme = issuer["spec"]["acme"]
    acme["privateKeySecretRef"] = {"nmae": "x"}
    acme["solvers"] = [{"http01": {"ingress": {"ingressClassName": "traefik", "class": "traefik"}},
                        "dns01": {"cloudflare": {"apiTokenSecretRef": {"name": "cf"}}}}, {}]
    issuer["spec"]["ca"] = {"secretName": "ca"}
    problems = cluster_issuer_problems(issuer)
    assert "spec.acme.privateKeySecretRef.nmae: unknown field" in problems
    assert "spec.acme.privateKeySecretRef.name: required" in problems
    acme["privateKeySecretRef"] = {"name": "account"}
    problems = cluster_issuer_problems(issuer)
    assert "spec: may not specify more than one issuer type (acme, ca)" in problems
    assert ("spec.acme.solvers[0]: may not specify more than one solver type in a single solver (http01, dns01)"
            in problems)
    assert ("spec.acme.solvers[0].http01.ingress: only one of 'ingressClassName', 'name' or 'class' should be "
            "specified") in problems
    assert "spec.acme.solvers[1]: no solver type configured" in problems
    del issuer["spec"]["ca"]
    issuer["metadata"]["namespace"] = "jhub"
    assert "metadata.namespace: a ClusterIssuer is cluster-scoped" in cluster_issuer_problems(issuer)


def test_the_certificate_cert_manager_makes_for_the_hub_fits_and_names_the_hub(tmp_path, secrets):
    inv, files = rendered(tmp_path, "ingress", secrets)
    ingress = chart_ingress(files["cluster/jupyterhub-values.yaml"], inv.hub["namespace"])
    [certificate] = certificate_for_ingress(ingress)
    assert certificate_problems(certificate) == []
    assert certificate["spec"]["dnsNames"] == [inv.hub["hostname"]]
    assert certificate["spec"]["issuerRef"] == {"name": render.CLUSTER_ISSUER, "kind": "ClusterIssuer",
                                                "group": "cert-manager.io"}
    assert certificate["metadata"] == {"name": render.INGRESS_TLS_SECRET, "namespace": inv.hub["namespace"]}
    certificate["spec"]["dnsName"] = certificate["spec"].pop("dnsNames")
    assert certificate_problems(certificate) == ["spec.dnsName: unknown field"]
    del certificate["spec"]["dnsName"]
    assert certificate_problems(certificate) == ["spec: at least one of commonName, dnsNames, uris, ipAddresses, "
                                                 "emailAddresses or otherNames must be set"]


def test_the_ingress_and_the_tls_secret_pass_kubernetes_validate_strict(tmp_path, secrets):
    pytest.importorskip("kubernetes_validate", reason="pip install 'gpuhub[test]'")
    from test_artifacts import kubernetes_version
    inv, files = rendered(tmp_path, "ingress", secrets)
    ingress = chart_ingress(files["cluster/jupyterhub-values.yaml"], inv.hub["namespace"])
    assert validate.manifest_problems(ingress, kubernetes_version(inv)) == []
    inv = site(tmp_path, "certificate")
    assert validate.manifest_problems(render.tls_secret(inv, inv.tls_pair()), kubernetes_version(inv)) == []


def test_a_dns01_cluster_issuer_fits_cert_managers_api(tmp_path):
    inv = site(tmp_path, "ingress")
    inv.hub["cert_manager"]["dns01_provider"] = "cloudflare"
    issuer = render.cluster_issuer(inv)
    assert cluster_issuer_problems(issuer) == []
    issuer["spec"]["acme"]["solvers"][0]["dns01"]["cloudflare"]["apiTokenSecretRef"]["nmae"] = "x"
    assert cluster_issuer_problems(issuer) == [
        "spec.acme.solvers[0].dns01.cloudflare.apiTokenSecretRef.nmae: unknown field"]


def test_the_dns_token_secret_passes_kubernetes_validate_strict(tmp_path):
    pytest.importorskip("kubernetes_validate", reason="pip install 'gpuhub[test]'")
    from test_artifacts import kubernetes_version
    from gpuhub.secret import Secret
    inv = site(tmp_path, "ingress")
    assert validate.manifest_problems(render.dns_token_secret(Secret("t" * 40)), kubernetes_version(inv)) == []
