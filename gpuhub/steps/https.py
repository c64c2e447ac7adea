"""hub.launch's HTTPS prerequisites, by hub.https: the TLS Secret of an institution's
certificate, or cert-manager and its ClusterIssuer for the Ingress. Changes as data; applied by
the plan before the hub's release, which refers to them."""
from __future__ import annotations

import json
import shlex

from .. import facts as f
from .. import render
from ..inventory import CERT_MANAGER_CHART_REPO
from . import Change, call, command_deadline, script

HUB = "hub.launch"
CERT_MANAGER_TIMEOUT_S = 300  # helm's own default: cert-manager's chart has only a short startupapicheck hook
APPLY_TIMEOUT_S = 120         # cert-manager's webhook answers within a minute or two of its install


class HTTPSBlocked(Exception):
    """The mode cannot be set up on this cluster as it is: the reason says what to do."""


# The facts these read (plan_hub declares them).
NEEDS = ("certmanager_release", "certmanager_values", "certmanager_pods", "gpuhub_secrets", "cluster_issuers")


def https_changes(ctx, release_change) -> list:
    """What hub.https needs before the hub's release: [] when it is all there."""
    mode = ctx.inv.hub["https"]
    if mode == "certificate":
        return tls_secret_changes(ctx)
    if mode == "ingress":
        return cert_manager_changes(ctx, release_change) + dns_token_changes(ctx) + issuer_changes(ctx)
    return []


def apply_manifest(manifest: dict, label: str, namespace: str = "") -> object:
    text = json.dumps(manifest)
    env = {"MANIFEST_BYTES": str(len(text.encode())), "TIMEOUT": str(APPLY_TIMEOUT_S)}
    if namespace:
        env["NAMESPACE"] = namespace
    return script(HUB, "kubectl-apply.sh", env, stdin=text, stdin_label=label,
                  timeout=command_deadline(APPLY_TIMEOUT_S))


def tls_secret_changes(ctx) -> list:
    inv = ctx.inv
    pair = inv.tls_pair()  # InventoryError when the files changed for the worse since loading
    where = f"{inv.hub['namespace']}/{render.HUB_TLS_SECRET}"
    current = (ctx.facts["gpuhub_secrets"] or {}).get(where)
    if current and current["digest"] == pair.digest:
        return []
    verb = "update" if current else "create"
    label = (f"the Secret as JSON: kubernetes.io/tls from hub.tls_certificate and hub.tls_key (the key "
             f"included, never shown); certificate valid until {pair.not_after:%Y-%m-%d}")
    actions = [apply_manifest(render.tls_secret(inv, pair), label, inv.hub["namespace"])]
    if current:
        # configurable-http-proxy reads --ssl-cert/--ssl-key once, when it starts (Z2JH 4.4.0
        # templates/proxy/deployment.yaml mounts the Secret; its checksum annotation covers only
        # the chart's own proxy Secret): a renewed certificate is served after a restart.
        actions.append(restart_proxy(inv))
    return [Change(f"{verb} Secret {where} (kubernetes.io/tls: the certificate for {inv.hub['hostname']}, "
                   f"valid until {pair.not_after:%Y-%m-%d})" + ("; restart the proxy to serve it" if current else ""),
                   actions=actions)]


def restart_proxy(inv):
    """The proxy Deployment, "proxy" while the chart's fullnameOverride is unset (Z2JH 4.4.0
    templates/_helpers-names.tpl jupyterhub.proxy.fullname)."""
    command = f"{f.KUBECTL} rollout restart deployment/proxy -n {shlex.quote(inv.hub['namespace'])}"
    return call(f"run {command}", lambda c: c.target.check(command, HUB), on="server")


def foreign_cert_manager(ctx) -> str:
    """Evidence of a cert-manager gpuhub did not install ("" when none): its controller's pods, or
    its CRDs (the ClusterIssuer listing answers)."""
    pods = ctx.facts["certmanager_pods"] or []
    if pods:
        return "cert-manager runs already (pod " + ", ".join(p["name"] for p in pods) + ")"
    if ctx.facts["cluster_issuers"] is not None:
        return "cert-manager's CRDs are installed already"
    return ""


def cert_manager_changes(ctx, release_change) -> list:
    """cert-manager's release, unless a cert-manager gpuhub did not install is there (then it is
    left alone: two controllers would fight over every Certificate)."""
    version = ctx.inv.hub["cert_manager"]["chart_version"]
    ours = f.release_view(ctx.facts["certmanager_release"])
    if ours is None and foreign_cert_manager(ctx):
        return []
    change = release_change(ctx, HUB, f.CERT_MANAGER_RELEASE, "cert_manager_chart", CERT_MANAGER_CHART_REPO, version,
                            render.cert_manager_values(), ctx.facts["certmanager_values"], "cert-manager",
                            CERT_MANAGER_TIMEOUT_S, "certmanager_release")
    return [change] if change else []


def dns_token_changes(ctx) -> list:
    """DNS-01: the provider's API token from the secrets, as a Secret cert-manager reads; the
    plan names it, never its value. InventoryError (blocked) when the token is not given."""
    if not ctx.inv.hub["cert_manager"]["dns01_provider"]:
        return []
    token = ctx.secrets.require("dns_api_token")["dns_api_token"]
    where = f"{render.CERT_MANAGER_NAMESPACE}/{render.DNS_TOKEN_SECRET}"
    current = (ctx.facts["gpuhub_secrets"] or {}).get(where)
    if current and current["digest"] == token.digest():
        return []
    label = "the Secret as JSON: the DNS provider's API token from dns_api_token, never shown"
    return [Change(f"{'update' if current else 'create'} Secret {where} (the DNS provider's API token for DNS-01)",
                   actions=[apply_manifest(render.dns_token_secret(token), label, render.CERT_MANAGER_NAMESPACE)])]


def issuer_changes(ctx) -> list:
    issuer = render.cluster_issuer(ctx.inv)
    current = (ctx.facts["cluster_issuers"] or {}).get(render.CLUSTER_ISSUER)
    if current and current["digest"] == issuer["metadata"]["annotations"][render.SPEC_DIGEST_ANNOTATION]:
        return []
    acme = issuer["spec"]["acme"]
    verb = "update" if current else "create"
    label = f"cluster/cluster-issuer.yaml as `inv render` writes it, as JSON ({acme['server']})"
    provider = ctx.inv.hub["cert_manager"]["dns01_provider"]
    how = f"ACME DNS-01 through {provider}" if provider else "ACME HTTP-01 through Traefik"
    return [Change(f"{verb} ClusterIssuer {render.CLUSTER_ISSUER} ({how}, {acme['server']})",
                   actions=[apply_manifest(issuer, label)])]


def https_note(ctx) -> str:
    """What `ok` says about HTTPS."""
    mode = ctx.inv.hub["https"]
    if mode == "ingress":
        foreign = foreign_cert_manager(ctx) if f.release_view(ctx.facts["certmanager_release"]) is None else ""
        return f"; HTTPS through Traefik, cert-manager ({foreign or 'gpuhub release ' + f.CERT_MANAGER_RELEASE})"
    if mode == "certificate":
        return f"; HTTPS with the institution's certificate (Secret {render.HUB_TLS_SECRET})"
    return "; HTTPS by the chart's Let's Encrypt proxy"
