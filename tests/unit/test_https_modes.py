"""hub.https three ways: the inventory's checks of each mode, what each renders, and what
hub.launch and k3s.install plan from given facts."""
import datetime
import json
import os

import pytest
import yaml

from gpuhub import facts, inventory, render, tlsfile
from gpuhub.steps import cluster, k3s
from test_https import serve  # noqa: F401,F811 - the loopback TLS server fixture
from test_plan import bare, converged, ctx_for, sha
from testdata import DATA
from tlscerts import make_ca, make_server_cert

HOSTNAME = "jupyter.physics.example.edu"  # seed.yaml's


def seed() -> dict:
    return yaml.safe_load((DATA / "inventories" / "good" / "seed.yaml").read_text())


def site(tmp_path, cert=None, key=None, key_mode=0o600, **hub):
    """seed.yaml in tmp_path with `hub` keys set; cert/key PEM bytes written beside it."""
    data = seed()
    data["hub"].update(hub)
    if cert is not None:
        (tmp_path / "hub.crt").write_bytes(cert)
        data["hub"]["tls_certificate"] = "hub.crt"
    if key is not None:
        (tmp_path / "hub.key").write_bytes(key)
        os.chmod(tmp_path / "hub.key", key_mode)
        data["hub"]["tls_key"] = "hub.key"
    return inventory.parse(data, str(tmp_path / "hosts.yaml"))


def problems(tmp_path, **kw) -> str:
    with pytest.raises(inventory.InventoryError) as e:
        site(tmp_path, **kw)
    return str(e.value)


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def pair(ca):
    return make_server_cert(HOSTNAME, ca)


class TestInventory:
    def test_the_default_is_letsencrypt_and_needs_the_email(self, tmp_path):
        assert site(tmp_path).hub["https"] == "letsencrypt"
        assert "hub.letsencrypt_email: is required with hub.https: letsencrypt" in problems(
            tmp_path, letsencrypt_email=None)

    def test_certificate_needs_both_files_but_no_email(self, tmp_path, pair):
        inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate", letsencrypt_email=None)
        assert inv.tls_pair().names == (HOSTNAME,)
        text = problems(tmp_path, https="certificate")
        assert "hub.tls_certificate: is required with hub.https: certificate" in text
        assert "hub.tls_key: is required with hub.https: certificate" in text

    def test_a_key_of_another_certificate(self, tmp_path, ca, pair):
        other = make_server_cert(HOSTNAME, ca)
        text = problems(tmp_path, cert=pair[0], key=other[1], https="certificate")
        assert "hub.tls_key:" in text and "is not the key of the certificate" in text

    def test_a_certificate_for_another_name(self, tmp_path, ca):
        cert, key = make_server_cert("other.example.edu", ca)
        text = problems(tmp_path, cert=cert, key=key, https="certificate")
        assert f"does not cover hub.hostname {HOSTNAME}: it names other.example.edu" in text

    def test_an_expired_certificate(self, tmp_path, ca):
        cert, key = make_server_cert(HOSTNAME, ca, expired=True)
        text = problems(tmp_path, cert=cert, key=key, https="certificate")
        assert "hub.tls_certificate:" in text and "expired on" in text and "renew it" in text

    def test_a_key_others_can_read_is_refused(self, tmp_path, pair):
        text = problems(tmp_path, cert=pair[0], key=pair[1], key_mode=0o644, https="certificate")
        assert "mode 0644 lets other users read the private key" in text and "chmod 600" in text

    def test_files_that_are_not_pem(self, tmp_path, pair):
        text = problems(tmp_path, cert=b"not a certificate\n", key=pair[1], https="certificate")
        assert "holds no PEM certificate" in text
        text = problems(tmp_path, cert=pair[0], key=pair[0], https="certificate")
        assert "hub.tls_key:" in text and "holds no PEM private key" in text

    def test_an_encrypted_key_is_refused_with_the_way_out(self, tmp_path, pair):
        from cryptography.hazmat.primitives import serialization
        key = serialization.load_pem_private_key(pair[1], None).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"))
        text = problems(tmp_path, cert=pair[0], key=key, https="certificate")
        assert "encrypted with a passphrase" in text and "openssl pkey" in text

    def test_a_missing_file_names_the_key(self, tmp_path):
        data = seed()
        data["hub"].update(https="certificate", tls_certificate="nope.crt", tls_key="nope.key")
        with pytest.raises(inventory.InventoryError) as e:
            inventory.parse(data, str(tmp_path / "hosts.yaml"))
        assert "hub.tls_certificate: cannot read" in str(e.value)

    def test_wildcards_stand_for_one_label(self):
        assert tlsfile.covers("*.physics.example.edu", HOSTNAME)
        assert not tlsfile.covers("*.example.edu", HOSTNAME)
        assert not tlsfile.covers("*.jupyter.physics.example.edu", HOSTNAME)

    def test_a_certificate_not_valid_yet(self, tmp_path, pair):
        (tmp_path / "c").write_bytes(pair[0])
        (tmp_path / "k").write_bytes(pair[1])
        os.chmod(tmp_path / "k", 0o600)
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
        with pytest.raises(tlsfile.TLSFileError) as e:
            tlsfile.load_pair(tmp_path / "c", tmp_path / "k", HOSTNAME, now=past)
        assert "is valid only from" in str(e.value) and "clock" in e.value.hint


class TestRender:
    def test_letsencrypt_is_todays_setup(self, tmp_path, secrets):
        inv = site(tmp_path)
        values = render.jupyterhub_values(inv, secrets, render.Notes())
        assert values["proxy"] == {"https": {"enabled": True, "type": "letsencrypt", "hosts": [HOSTNAME],
                                             "letsencrypt": {"contactEmail": "it@physics.example.edu"}}}
        assert "ingress" not in values
        assert render.k3s_config(inv, inv.server)["disable"] == ["traefik"]

    def test_certificate_points_the_proxy_at_the_secret_and_keeps_the_key_out(self, tmp_path, pair, secrets):
        inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate")
        files, _ = render.render_all(inv, secrets)
        values = yaml.safe_load(files["cluster/jupyterhub-values.yaml"].text)
        assert values["proxy"]["https"] == {"enabled": True, "type": "secret", "hosts": [HOSTNAME], "secret": {
            "name": render.HUB_TLS_SECRET, "key": "tls.key", "crt": "tls.crt"}}
        key_body = pair[1].decode().splitlines()[1]
        assert not any(key_body in f.text for f in files.values())  # no rendered file holds the key
        assert render.k3s_config(inv, inv.server)["disable"] == ["traefik"]

    def test_the_tls_secret(self, tmp_path, pair):
        import base64
        inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate")
        secret = render.tls_secret(inv, inv.tls_pair())
        assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["namespace"] == "jhub"
        assert base64.b64decode(secret["data"]["tls.key"]) == pair[1]
        assert secret["metadata"]["annotations"][render.TLS_DIGEST_ANNOTATION] == inv.tls_pair().digest

    def test_ingress_keeps_traefik_and_gives_the_hub_an_ingress(self, tmp_path, secrets):
        inv = site(tmp_path, https="ingress")
        config = render.k3s_config(inv, inv.server)
        assert "disable" not in config
        files, _ = render.render_all(inv, secrets)
        values = yaml.safe_load(files["cluster/jupyterhub-values.yaml"].text)
        assert values["proxy"] == {"service": {"type": "ClusterIP"}, "https": {"enabled": False}}
        assert values["ingress"] == {
            "enabled": True, "ingressClassName": "traefik", "hosts": [HOSTNAME],
            "annotations": {"cert-manager.io/cluster-issuer": render.CLUSTER_ISSUER},
            "tls": [{"hosts": [HOSTNAME], "secretName": render.INGRESS_TLS_SECRET}]}
        issuer = yaml.safe_load(files["cluster/cluster-issuer.yaml"].text)
        assert issuer["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]
        assert issuer["spec"]["acme"]["server"] == inventory.LETSENCRYPT_ACME
        assert yaml.safe_load(files["cluster/cert-manager-values.yaml"].text) == {"crds": {"enabled": True}}

    def test_only_ingress_renders_cert_manager_files(self, tmp_path, secrets):
        files, _ = render.render_all(site(tmp_path), secrets)
        assert not any("cert-manager" in name or "issuer" in name for name in files)


def hub_facts(inv, secrets, **over):
    return converged(inv, inv.server, secrets, **over)


def plan_hub(inv, secrets, fx):
    return cluster.plan_hub(ctx_for(inv, inv.server.name, fx, secrets=secrets))


def deployed_cert_manager(inv):
    from test_plan import revision
    return {"certmanager_release": [revision(1, "deployed", "cert-manager", inv.hub["cert_manager"]["chart_version"])],
            "certmanager_values": render.cert_manager_values()}


class TestPlanHub:
    def test_certificate_mode_creates_the_secret_before_the_release(self, tmp_path, pair, secrets):
        inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate")
        p = plan_hub(inv, secrets, hub_facts(inv, secrets, gpuhub_secrets={}))
        assert p.status == "change"
        first = p.changes[0]
        assert first.summary.startswith(f"create Secret jhub/{render.HUB_TLS_SECRET} (kubernetes.io/tls: the "
                                         f"certificate for {HOSTNAME}, valid until ")
        action = first.actions[0]
        assert action.what == "kubectl-apply.sh" and action.env["NAMESPACE"] == "jhub"
        shown = "\n".join(first.lines())
        key_body = pair[1].decode().splitlines()[1]
        assert key_body not in shown and key_body not in json.dumps(action.env)  # shown: never the key
        assert json.loads(action.stdin)["data"]["tls.key"]  # it goes on stdin

    def test_certificate_mode_converged_is_ok_and_a_renewed_file_updates(self, tmp_path, ca, pair, secrets):
        inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate")
        current = {f"jhub/{render.HUB_TLS_SECRET}": {"digest": inv.tls_pair().digest}}
        p = plan_hub(inv, secrets, hub_facts(inv, secrets, gpuhub_secrets=current))
        assert p.status == "ok" and "institution's certificate" in p.note
        renewed = make_server_cert(HOSTNAME, ca)
        inv = site(tmp_path, cert=renewed[0], key=renewed[1], https="certificate")
        p = plan_hub(inv, secrets, hub_facts(inv, secrets, gpuhub_secrets=current))
        assert [c.summary.split(" (")[0] for c in p.changes] == [f"update Secret jhub/{render.HUB_TLS_SECRET}"]

    def test_ingress_mode_installs_cert_manager_then_the_issuer_then_the_hub(self, tmp_path, secrets):
        inv = site(tmp_path, https="ingress")
        fx = hub_facts(inv, secrets, certmanager_release=[], certmanager_pods=[], cluster_issuers=None)
        fx.values["hub_values"] = None  # the hub's release as the guide's mode left it
        p = plan_hub(inv, secrets, fx)
        summaries = [c.summary for c in p.changes]
        assert summaries[0] == f"install cert-manager release cert-manager/cert-manager (chart {inventory.CERT_MANAGER_CHART})"
        assert summaries[1].startswith(f"create ClusterIssuer {render.CLUSTER_ISSUER} (ACME HTTP-01 through Traefik")
        assert "JupyterHub release jhub/jhub values" in summaries[2]
        helm = p.changes[0].actions[-1]
        assert helm.env["CHART"] == "cert-manager" and helm.env["CHART_REPO"] == "https://charts.jetstack.io"
        assert json.loads(helm.stdin) == {"crds": {"enabled": True}}

    def test_ingress_mode_converged_is_ok(self, tmp_path, secrets):
        inv = site(tmp_path, https="ingress")
        issuer = render.cluster_issuer(inv)
        fx = hub_facts(inv, secrets, **deployed_cert_manager(inv), certmanager_pods=[], cluster_issuers={
            render.CLUSTER_ISSUER: {"digest": issuer["metadata"]["annotations"][render.SPEC_DIGEST_ANNOTATION],
                                    "ready": True}})
        p = plan_hub(inv, secrets, fx)
        assert p.status == "ok" and "cert-manager (gpuhub release cert-manager/cert-manager)" in p.note

    def test_a_cert_manager_gpuhub_did_not_install_is_used_as_it_is(self, tmp_path, secrets):
        inv = site(tmp_path, https="ingress")
        pods = [{"name": "cert-manager-7d4b5d8b9c-abcde", "node": "workstation", "labels": {}, "phase": "Running",
                 "owner": "ReplicaSet/cert-manager-7d4b5d8b9c", "reason": "", "ready": True}]
        fx = hub_facts(inv, secrets, certmanager_release=[], certmanager_pods=pods, cluster_issuers={})
        p = plan_hub(inv, secrets, fx)
        summaries = [c.summary for c in p.changes]
        assert not any("install cert-manager" in s for s in summaries)
        assert summaries[0].startswith(f"create ClusterIssuer {render.CLUSTER_ISSUER}")

    def test_an_issuer_of_another_acme_server_is_updated(self, tmp_path, secrets):
        inv = site(tmp_path, https="ingress",
                   cert_manager={"acme_server": "https://acme-staging-v02.api.letsencrypt.org/directory"})
        fx = hub_facts(inv, secrets, **deployed_cert_manager(inv), certmanager_pods=[],
                       cluster_issuers={render.CLUSTER_ISSUER: {"digest": "old", "ready": True}})
        p = plan_hub(inv, secrets, fx)
        assert p.changes[0].summary == (f"update ClusterIssuer {render.CLUSTER_ISSUER} (ACME HTTP-01 through Traefik, "
                                        "https://acme-staging-v02.api.letsencrypt.org/directory)")


def running_traefik(inv, ingresses, **over):
    traefik = [{"name": "traefik-5d45fc8cc9-r8g6b", "node": inv.server.name, "labels": {}, "phase": "Running",
                "owner": "ReplicaSet/traefik-5d45fc8cc9", "reason": "", "ready": True}]
    return bare(k3s_version=inv.cluster["k3s_version"], unit_k3s={"active": True, "enabled": True},
                helm_version=inv.cluster["helm_version"], traefik_pods=traefik, ingresses=ingresses,
                **{"k3s_config_sha": "0" * 64, **over})  # the config of the ingress mode


class TestLeavingIngressMode:
    """From ingress to letsencrypt/certificate: k3s.install disables Traefik again."""

    def test_disabling_traefik_that_serves_other_ingresses_is_destructive_with_the_evidence(self, tmp_path):
        inv = site(tmp_path)
        ingresses = [{"namespace": "monitoring", "name": "grafana", "release": "monitoring/grafana",
                      "hosts": ["grafana.lab.example.org"]},
                     {"namespace": "jhub", "name": "jupyterhub", "release": "jhub/jhub", "hosts": [HOSTNAME]}]
        p = k3s.plan_install(ctx_for(inv, inv.server.name, running_traefik(inv, ingresses)))
        change = p.changes[0]
        assert change.destructive and p.destructive
        assert change.summary == ("update /etc/rancher/k3s/config.yaml: disables Traefik, which serves Ingress "
                                  "monitoring/grafana (grafana.lab.example.org): they stop answering")
        assert "jupyterhub" not in change.summary  # the hub's own: its next release drops it

    def test_only_the_hubs_own_ingress_is_not_destructive(self, tmp_path):
        inv = site(tmp_path)
        ingresses = [{"namespace": "jhub", "name": "jupyterhub", "release": "jhub/jhub", "hosts": [HOSTNAME]}]
        p = k3s.plan_install(ctx_for(inv, inv.server.name, running_traefik(inv, ingresses)))
        assert p.changes[0].summary == "update /etc/rancher/k3s/config.yaml" and not p.destructive

    def test_ingress_mode_keeps_traefik_and_breaks_nothing(self, tmp_path):
        inv = site(tmp_path, https="ingress")
        ingresses = [{"namespace": "monitoring", "name": "grafana", "release": None, "hosts": []}]
        fx = running_traefik(inv, ingresses, k3s_config_sha=sha(render.dump(render.k3s_config(inv, inv.server))))
        p = k3s.plan_install(ctx_for(inv, inv.server.name, fx))
        assert p.status == "ok"


def test_the_cluster_probe_lists_ingresses_in_the_same_kubectl_call():
    probes = facts.cluster_probes("nvidia-device-plugin/nvdp", "jhub/jhub")
    assert probes["cluster"].command.endswith(f"get {facts.CLUSTER_TYPES} -A -o json")
    assert "ingresses" in facts.CLUSTER_TYPES.split(",")
    assert "get secrets -A -l app.kubernetes.io/managed-by=gpuhub" in probes["gpuhub_secrets"].command
    assert probes["gpuhub_secrets"].apart and probes["cluster_issuers"].apart  # beside the releases, one round trip
    # Each mode reads only what it needs: the default reads neither, so a converged run pays no extra kubectl.
    assert "gpuhub_secrets" not in facts.cluster_probes("a/b", "c/d", "letsencrypt")
    assert set(facts.cluster_probes("a/b", "c/d", "certificate")) - set(facts.cluster_probes("a/b", "c/d", "letsencrypt")) \
        == {"gpuhub_secrets"}


class TestAudit:
    """The audit follows hub.https: Traefik present in ingress mode, absent otherwise; the hub's
    certificate checked by one handshake in every mode, with the renewal advice of the mode."""
    TRAEFIK = [{"name": "traefik-abc", "node": "workstation", "phase": "Running", "ready": True, "reason": "",
                "labels": {}}]

    def test_traefik_must_run_in_ingress_mode_and_not_otherwise(self, tmp_path):
        from gpuhub import audit
        ingress, plain = site(tmp_path, https="ingress"), site(tmp_path)
        with_traefik, without = bare(traefik_pods=self.TRAEFIK), bare(traefik_pods=[])
        assert audit.check_traefik(ingress, ingress.server, with_traefik, with_traefik).ok
        missing = audit.check_traefik(ingress, ingress.server, without, without)
        assert not missing.ok and "with hub.https: ingress it serves the hub" in missing.message
        assert "no `disable: [traefik]`" in missing.fix and missing.evidence == "no Traefik pod"
        assert not audit.check_traefik(plain, plain.server, with_traefik, with_traefik).ok
        assert audit.check_traefik(plain, plain.server, without, without).ok

    @pytest.mark.parametrize("mode,advice", [("letsencrypt", "autohttps"), ("ingress", "describe certificate"),
                                             ("certificate", "hub.tls_certificate")])
    def test_an_expired_hub_certificate_says_who_renews_it(self, mode, advice, tmp_path, ca, serve):  # noqa: F811
        from gpuhub import https
        from tlscerts import ca_pem
        (tmp_path / "ca.pem").write_bytes(ca_pem(ca))
        port = serve(*make_server_cert(HOSTNAME, ca, expired=True))
        finding = https.check_certificate(HOSTNAME, address="127.0.0.1", port=port, cafile=str(tmp_path / "ca.pem"),
                                          mode=mode, timeout=5)
        assert not finding.ok and "expired" in finding.message and advice in finding.fix


def test_a_renewed_certificate_restarts_the_proxy_a_first_one_does_not(tmp_path, ca, pair, secrets):
    inv = site(tmp_path, cert=pair[0], key=pair[1], https="certificate")
    first = plan_hub(inv, secrets, hub_facts(inv, secrets, gpuhub_secrets={})).changes[0]
    assert [a.kind for a in first.actions] == ["script"]
    renewed = plan_hub(inv, secrets, hub_facts(inv, secrets, gpuhub_secrets={f"jhub/{render.HUB_TLS_SECRET}": {"digest": "old"}}))
    change = renewed.changes[0]
    assert change.summary.endswith("; restart the proxy to serve it")
    assert change.actions[1].lines() == ["gpuhub (on the server): run /usr/local/bin/k3s kubectl rollout restart deployment/proxy "
                                         "-n jhub"]


class TestDNS01:
    """hub.cert_manager.dns01_provider: cloudflare: the ClusterIssuer solves DNS-01 with the API
    token from the secrets (dns_api_token / GPUHUB_DNS_API_TOKEN), kept in a Secret."""
    TOKEN = "cf-token-0123456789abcdefghijklmnopqrstuv"

    def inv(self, tmp_path):
        return site(tmp_path, https="ingress", cert_manager={"dns01_provider": "cloudflare"})

    def test_the_issuer_solves_dns01_with_the_tokens_secret(self, tmp_path):
        issuer = render.cluster_issuer(self.inv(tmp_path))
        assert issuer["spec"]["acme"]["solvers"] == [{"dns01": {"cloudflare": {"apiTokenSecretRef": {
            "name": render.DNS_TOKEN_SECRET, "key": render.DNS_TOKEN_KEY}}}}]

    def test_the_token_goes_into_a_secret_and_never_into_the_plan(self, tmp_path, monkeypatch, secrets):
        monkeypatch.setenv("GPUHUB_DNS_API_TOKEN", self.TOKEN)
        secrets = inventory.load_secrets()
        inv = self.inv(tmp_path)
        fx = hub_facts(inv, secrets, **deployed_cert_manager(inv), certmanager_pods=[], cluster_issuers={},
                       gpuhub_secrets={})
        p = plan_hub(inv, secrets, fx)
        change = p.changes[0]
        assert change.summary == (f"create Secret cert-manager/{render.DNS_TOKEN_SECRET} (the DNS provider's API "
                                  "token for DNS-01)")
        assert self.TOKEN not in "\n".join(line for c in p.changes for line in c.lines() + [c.summary])
        assert p.changes[1].summary.startswith(f"create ClusterIssuer {render.CLUSTER_ISSUER} (ACME DNS-01 through "
                                               "cloudflare")
        digest = secrets.get("dns_api_token").digest()
        fx.values["gpuhub_secrets"] = {f"cert-manager/{render.DNS_TOKEN_SECRET}": {"digest": digest}}
        assert not any("Secret" in c.summary for c in plan_hub(inv, secrets, fx).changes)

    def test_a_missing_token_blocks_and_names_the_variable(self, tmp_path, monkeypatch, secrets):
        monkeypatch.delenv("GPUHUB_DNS_API_TOKEN", raising=False)
        secrets = inventory.load_secrets()
        inv = self.inv(tmp_path)
        fx = hub_facts(inv, secrets, **deployed_cert_manager(inv), certmanager_pods=[], cluster_issuers={})
        p = plan_hub(inv, secrets, fx)
        assert p.status == "blocked" and "GPUHUB_DNS_API_TOKEN" in p.reason


def test_the_ok_note_names_a_cert_manager_gpuhub_did_not_install(tmp_path, secrets):
    inv = site(tmp_path, https="ingress")
    issuer = render.cluster_issuer(inv)
    pods = [{"name": "cert-manager-7d4b5d8b9c-abcde", "node": "workstation", "labels": {}, "phase": "Running",
             "owner": None, "reason": "", "ready": True}]
    fx = hub_facts(inv, secrets, certmanager_release=[], certmanager_pods=pods, cluster_issuers={
        render.CLUSTER_ISSUER: {"digest": issuer["metadata"]["annotations"][render.SPEC_DIGEST_ANNOTATION],
                                "ready": True}})
    p = plan_hub(inv, secrets, fx)
    assert p.status == "ok" and "cert-manager runs already (pod cert-manager-7d4b5d8b9c-abcde)" in p.note
