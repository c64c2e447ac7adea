"""A strict model of the cert-manager.io/v1 objects gpuhub makes or makes cert-manager make
(ClusterIssuer; the Certificate its ingress-shim creates from the hub's Ingress). cert-manager
cannot run here, so its API is written down from its source, cert-manager v1.21.1:

- fields (json names; without omitempty = required): pkg/apis/certmanager/v1/types_issuer.go
  (IssuerSpec, IssuerConfig), types_certificate.go (CertificateSpec), pkg/apis/acme/v1/
  types_issuer.go (ACMEIssuer, ACMEChallengeSolver, ...HTTP01, ...HTTP01Ingress, ...DNS01,
  CertificateDNSNameSelector), pkg/apis/meta/v1/types.go (SecretKeySelector, IssuerReference);
- the rules its webhook adds: internal/apis/certmanager/validation/issuer.go (exactly one issuer
  type; ACME server and privateKeySecretRef.name required; one solver type per solver; one HTTP01
  type; at most one of ingressClassName, name, class) and certificate.go (secretName and
  issuerRef.name required; some name to certify).

Unknown fields are errors (the CRDs' structural schemas prune or refuse them; a typo would be
lost silently). Sub-objects gpuhub never sets (pod templates, other issuer types, other DNS
providers' settings) are accepted as opaque mappings: named, not modelled."""
from __future__ import annotations

OPAQUE = object()  # a mapping whose inside is not modelled
STR, BOOL, INT = str, bool, int


def obj(fields: dict, required=()):
    return {"fields": fields, "required": tuple(required)}


def list_of(model):
    return {"list": model}


def map_of_str():
    return {"map": STR}


SECRET_KEY_SELECTOR = obj({"name": STR, "key": STR}, required=("name",))
ISSUER_REF = obj({"name": STR, "kind": STR, "group": STR}, required=("name",))
SELECTOR = obj({"matchLabels": map_of_str(), "dnsNames": list_of(STR), "dnsZones": list_of(STR)})
HTTP01_INGRESS = obj({"serviceType": STR, "ingressClassName": STR, "class": STR, "name": STR,
                      "podTemplate": OPAQUE, "ingressTemplate": OPAQUE})
HTTP01 = obj({"ingress": HTTP01_INGRESS, "gatewayHTTPRoute": OPAQUE})
DNS01_PROVIDERS = ("akamai", "cloudDNS", "cloudflare", "route53", "azureDNS", "digitalocean", "acmeDNS", "rfc2136",
                   "webhook")
CLOUDFLARE = obj({"email": STR, "apiKeySecretRef": SECRET_KEY_SELECTOR, "apiTokenSecretRef": SECRET_KEY_SELECTOR})
DNS01 = obj({"cnameStrategy": STR, **{p: OPAQUE for p in DNS01_PROVIDERS}, "cloudflare": CLOUDFLARE})
SOLVER = obj({"selector": SELECTOR, "http01": HTTP01, "dns01": DNS01})
ACME = obj({"email": STR, "server": STR, "preferredChain": STR, "caBundle": STR, "skipTLSVerify": BOOL,
            "externalAccountBinding": OPAQUE, "privateKeySecretRef": SECRET_KEY_SELECTOR,
            "solvers": list_of(SOLVER), "disableAccountKeyGeneration": BOOL, "enableDurationFeature": BOOL,
            "profile": STR}, required=("server", "privateKeySecretRef"))
ISSUER_TYPES = ("acme", "ca", "vault", "selfSigned", "venafi")
ISSUER_SPEC = obj({"acme": ACME, **{t: OPAQUE for t in ISSUER_TYPES if t != "acme"}})
CERTIFICATE_SPEC = obj({
    "subject": OPAQUE, "literalSubject": STR, "commonName": STR, "duration": STR, "renewBefore": STR,
    "renewBeforePercentage": INT, "renewal": OPAQUE, "dnsNames": list_of(STR), "ipAddresses": list_of(STR),
    "uris": list_of(STR), "otherNames": OPAQUE, "emailAddresses": list_of(STR), "secretName": STR,
    "secretTemplate": OPAQUE, "keystores": OPAQUE, "issuerRef": ISSUER_REF, "isCA": BOOL, "usages": list_of(STR),
    "privateKey": OPAQUE, "signatureAlgorithm": STR, "encodeUsagesInRequest": BOOL, "revisionHistoryLimit": INT,
    "additionalOutputFormats": OPAQUE, "nameConstraints": OPAQUE}, required=("secretName", "issuerRef"))
METADATA = obj({"name": STR, "namespace": STR, "labels": map_of_str(), "annotations": map_of_str(),
                "ownerReferences": OPAQUE}, required=("name",))


def _shape(value, model, path: str) -> list:
    if model is OPAQUE:
        return [] if isinstance(value, dict) else [f"{path}: must be a mapping"]
    if model in (STR, BOOL, INT):
        ok = isinstance(value, model) and not (model is INT and isinstance(value, bool))
        return [] if ok else [f"{path}: must be a {model.__name__}, not {type(value).__name__}"]
    if "list" in model:
        if not isinstance(value, list):
            return [f"{path}: must be a list"]
        return [p for i, item in enumerate(value) for p in _shape(item, model["list"], f"{path}[{i}]")]
    if "map" in model:
        if not isinstance(value, dict):
            return [f"{path}: must be a mapping"]
        return [p for k, v in value.items() for p in _shape(v, model["map"], f"{path}.{k}")]
    if not isinstance(value, dict):
        return [f"{path}: must be a mapping"]
    problems = [f"{path}.{k}: unknown field" for k in value if k not in model["fields"]]
    problems += [f"{path}.{k}: required" for k in model["required"] if value.get(k) in (None, "")]
    for k, v in value.items():
        if k in model["fields"]:
            problems += _shape(v, model["fields"][k], f"{path}.{k}")
    return problems


def _top(doc: dict, kind: str, namespaced: bool) -> list:
    problems = [f"{k}: unknown field" for k in doc if k not in ("apiVersion", "kind", "metadata", "spec", "status")]
    if doc.get("apiVersion") != "cert-manager.io/v1":
        problems.append(f"apiVersion: {doc.get('apiVersion')!r}, expected cert-manager.io/v1")
    if doc.get("kind") != kind:
        problems.append(f"kind: {doc.get('kind')!r}, expected {kind}")
    problems += _shape(doc.get("metadata"), METADATA, "metadata")
    if namespaced != bool((doc.get("metadata") or {}).get("namespace")):
        problems.append("metadata.namespace: " + ("required" if namespaced else f"a {kind} is cluster-scoped"))
    return problems


def _one_of(spec: dict, names, path: str, none: str, many: str) -> list:
    given = [n for n in names if spec.get(n) is not None]
    if not given:
        return [f"{path}: {none}"]
    return [f"{path}: {many} ({', '.join(given)})"] if len(given) > 1 else []


def _object(doc: dict, kind: str, spec_model, namespaced: bool):
    """(problems of the object's envelope and its spec's shape, the spec when its shape is right)."""
    problems = _top(doc, kind, namespaced)
    shape = _shape(doc.get("spec"), spec_model, "spec")
    return problems + shape, (None if shape else doc["spec"])


def cluster_issuer_problems(doc: dict) -> list:
    problems, spec = _object(doc, "ClusterIssuer", ISSUER_SPEC, namespaced=False)
    if spec is None:
        return problems
    problems += _one_of(spec, ISSUER_TYPES, "spec", "at least one issuer must be configured",
                        "may not specify more than one issuer type")
    acme = spec.get("acme")
    if acme:
        if not acme["privateKeySecretRef"].get("name"):
            problems.append("spec.acme.privateKeySecretRef.name: private key secret name is a required field")
        for i, solver in enumerate(acme.get("solvers") or []):
            where = f"spec.acme.solvers[{i}]"
            problems += _one_of(solver, ("http01", "dns01"), where, "no solver type configured",
                                "may not specify more than one solver type in a single solver")
            if solver.get("http01") is not None:
                problems += _one_of(solver["http01"], ("ingress", "gatewayHTTPRoute"), f"{where}.http01",
                                    "no HTTP01 solver type configured", "only 1 HTTP01 solver type may be configured")
                ingress = solver["http01"].get("ingress") or {}
                if len([k for k in ("ingressClassName", "name", "class") if ingress.get(k)]) > 1:
                    problems.append(f"{where}.http01.ingress: only one of 'ingressClassName', 'name' or 'class' "
                                    "should be specified")
            if solver.get("dns01") is not None:
                problems += _one_of(solver["dns01"], DNS01_PROVIDERS, f"{where}.dns01",
                                    "no DNS01 provider configured", "may not specify more than one provider type")
    return problems


def certificate_problems(doc: dict) -> list:
    problems, spec = _object(doc, "Certificate", CERTIFICATE_SPEC, namespaced=True)
    if spec is None:
        return problems
    if not any(spec.get(k) for k in ("commonName", "literalSubject", "dnsNames", "uris", "emailAddresses",
                                     "ipAddresses", "otherNames")):
        problems.append("spec: at least one of commonName, dnsNames, uris, ipAddresses, emailAddresses or "
                        "otherNames must be set")
    return problems


def certificate_for_ingress(ingress: dict) -> list:
    """What the ingress-shim makes of an annotated Ingress (cert-manager v1.21.1
    pkg/controller/certificate-shim/sync.go buildCertificates): per tls entry a Certificate in
    the Ingress's namespace, named after its secretName, for its hosts, issued by the annotation's
    (Cluster)Issuer."""
    notes = ingress["metadata"].get("annotations") or {}
    if "cert-manager.io/cluster-issuer" in notes:
        ref = {"name": notes["cert-manager.io/cluster-issuer"], "kind": "ClusterIssuer", "group": "cert-manager.io"}
    elif "cert-manager.io/issuer" in notes:
        ref = {"name": notes["cert-manager.io/issuer"], "kind": "Issuer", "group": "cert-manager.io"}
    else:
        return []
    return [{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
             "metadata": {"name": tls["secretName"], "namespace": ingress["metadata"]["namespace"]},
             "spec": {"dnsNames": list(tls.get("hosts") or []), "secretName": tls["secretName"], "issuerRef": ref}}
            for tls in ingress["spec"].get("tls") or []]
