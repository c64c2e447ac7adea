"""The hub's OAuth credentials live in a Kubernetes Secret: the values reference it and hold
none; hub.launch creates or updates gpuhub's own Secret (value on kubectl's stdin, never shown),
knows from digests when it holds the local secrets, and with hub.github.existing_secret uses
the site's Secret instead, blocking when it or its keys are missing."""
import base64
import json

import pytest

from gpuhub import facts, inventory, kube_secret, plan, render
from gpuhub.steps import cluster
from test_plan import converged, ctx_for, load, oauth_secret_fact, secret_listing

EXISTING = {"name": "lab-github", "client_id_key": "id", "client_secret_key": "secret"}


def plan_hub(inv, secrets, **over):
    fx = converged(inv, inv.hosts["workstation"], secrets, **over)
    return cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=secrets)), fx


def texts(step) -> str:
    """Everything a person can see of a step's plan: summaries, reasons, --verbose lines, JSON."""
    return "\n".join([step.summary, step.reason, json.dumps(step.as_json())] +
                     [line for c in step.changes for line in c.lines()])


class TestValues:
    def test_the_values_reference_gpuhubs_secret_and_carry_only_a_digest(self, secrets):
        inv = load()
        values = render.jupyterhub_values(inv, secrets, render.Notes())
        text = render.dump(values)
        assert "test-client-secret" not in text and "test-client-id" not in text
        assert values["hub"]["extraEnv"]["GITHUB_CLIENT_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "gpuhub-github-oauth", "key": "client_id"}
        digest = values["hub"]["annotations"][render.OAUTH_DIGEST_ANNOTATION]
        assert digest == kube_secret.data_digest("jhub", "gpuhub-github-oauth", {
            "client_id": "test-client-id", "client_secret": "test-client-secret"})

    def test_new_credentials_are_a_new_digest_on_the_hub_pod(self, secrets, monkeypatch):
        inv = load()
        before = render.jupyterhub_values(inv, secrets, render.Notes())["hub"]["annotations"]
        monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_SECRET", "rotated-client-secret")
        after = render.jupyterhub_values(inv, inventory.load_secrets(), render.Notes())["hub"]["annotations"]
        assert before != after

    def test_an_existing_secret_needs_no_local_secrets(self, monkeypatch):
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_ID", raising=False)
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_SECRET", raising=False)
        inv = load(hub__github__existing_secret=EXISTING)
        values = render.jupyterhub_values(inv, inventory.load_secrets(), render.Notes())
        assert values["hub"]["extraEnv"] == {
            "GITHUB_CLIENT_ID": {"valueFrom": {"secretKeyRef": {"name": "lab-github", "key": "id"}}},
            "GITHUB_CLIENT_SECRET": {"valueFrom": {"secretKeyRef": {"name": "lab-github", "key": "secret"}}}}
        assert "annotations" not in values["hub"]

    def test_the_real_authenticator_finds_its_credentials_in_the_hub_environment(self, secrets):
        pytest.importorskip("oauthenticator", reason="pip install 'gpuhub[hubcheck]'")
        from gpuhub import hubcheck
        values = json.loads(json.dumps(render.jupyterhub_values(load(), secrets, render.Notes())))
        assert hubcheck.check_hub_values(values) == []
        del values["hub"]["extraEnv"]["GITHUB_CLIENT_SECRET"]
        assert hubcheck.check_hub_values(values) == [
            "hub.config.GitHubOAuthenticator.client_secret: not set, and hub.extraEnv sets none of "
            "GITHUB_CLIENT_SECRET, OAUTH_CLIENT_SECRET, which GitHubOAuthenticator reads it from"]
        values["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"] = {"valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}
        assert hubcheck.check_hub_values(values) == []  # the generic fallback the class reads too


class TestManagedSecret:
    def test_converged_is_ok(self, secrets):
        p, _ = plan_hub(load(), secrets)
        assert p.status == "ok", p.summary

    def test_missing_is_created_first_and_named_without_its_values(self, secrets):
        p, _ = plan_hub(load(), secrets, hub_secret={"found": False})
        assert p.status == "change"
        assert p.changes[0].summary == ("create Secret jhub/gpuhub-github-oauth (the hub's GitHub OAuth "
                                        "credentials: client_id, client_secret)")
        [action] = p.changes[0].actions
        sent = json.loads(action.stdin)
        assert base64.b64decode(sent["data"]["client_secret"]).decode() == "test-client-secret"
        assert sent["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "gpuhub"}
        shown = texts(p)
        assert "test-client-secret" not in shown and sent["data"]["client_secret"] not in shown

    def test_a_changed_secret_is_an_update_naming_the_key(self, secrets):
        inv = load()
        p, _ = plan_hub(inv, secrets, hub_secret=oauth_secret_fact(inv, secrets, client_secret="old-secret-value"))
        assert p.status == "change"
        assert p.changes[0].summary == ("update Secret jhub/gpuhub-github-oauth (the hub's GitHub OAuth "
                                        "credentials: client_secret changed)")
        assert "old-secret-value" not in texts(p) and "test-client-secret" not in texts(p)

    def test_a_secret_of_that_name_gpuhub_did_not_write_is_never_replaced(self, secrets):
        inv = load()
        listing = secret_listing("jhub", "gpuhub-github-oauth", {"client_id": "a", "client_secret": "b"}, labels={})
        p, _ = plan_hub(inv, secrets, hub_secret=facts.parse_secret(listing, 0, "jhub", "gpuhub-github-oauth"))
        assert p.status == "blocked" and "gpuhub did not create it" in p.reason

    def test_no_local_secrets_blocks_naming_the_variables(self, secrets, monkeypatch):
        inv = load()
        fx = converged(inv, inv.hosts["workstation"], secrets, hub_secret={"found": False})
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_SECRET")
        p = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=inventory.load_secrets()))
        assert p.status == "blocked" and "GPUHUB_GITHUB_CLIENT_SECRET" in p.reason

    def test_unreadable_secret_blocks(self, secrets):
        p, _ = plan_hub(load(), secrets, hub_secret=None)
        assert p.status == "blocked" and "could not read Secret jhub/gpuhub-github-oauth" in p.reason

    def test_the_probe_reads_that_one_secret_by_name(self):
        probe = facts.cluster_probes("a/b", "jhub/jhub", hub_secret="jhub/lab-github")["hub_secret"]
        assert probe.command.endswith("get secrets -n jhub --field-selector metadata.name=lab-github -o json")

    def test_the_plan_gathers_the_secret_the_inventory_names(self):
        inv = load(hub__github__existing_secret=EXISTING)
        run = plan.Run(inv, {n: None for n in inv.hosts}, None, log=lambda line: None)
        probes = run.probes_for(inv.hosts["workstation"])
        assert "--field-selector metadata.name=lab-github" in probes["hub_secret"].command


class TestExistingSecret:
    def fact(self, data):
        return facts.parse_secret(secret_listing("jhub", "lab-github", data, labels={}), 0, "jhub", "lab-github")

    def test_present_with_both_keys_is_ok_and_nothing_is_created(self, monkeypatch):
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_ID", raising=False)
        monkeypatch.delenv("GPUHUB_GITHUB_CLIENT_SECRET", raising=False)
        inv = load(hub__github__existing_secret=EXISTING)
        fx = converged(inv, inv.hosts["workstation"], inventory.load_secrets().with_stand_ins(),
                       hub_secret=self.fact({"id": "lab-id", "secret": "lab-secret"}))
        p = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets=inventory.load_secrets()))
        assert p.status == "ok", p.summary + p.reason

    def test_missing_blocks_with_what_to_do(self, secrets):
        inv = load(hub__github__existing_secret=EXISTING)
        p, _ = plan_hub(inv, secrets, hub_secret={"found": False})
        assert p.status == "blocked"
        assert p.reason.startswith("Secret jhub/lab-github (hub.github.existing_secret.name) does not exist: "
                                   "create it with keys id and secret")

    def test_a_missing_key_blocks_naming_the_keys_it_has(self, secrets):
        inv = load(hub__github__existing_secret=EXISTING)
        p, _ = plan_hub(inv, secrets, hub_secret=self.fact({"id": "x", "client_secret": "lab-secret-value"}))
        assert p.status == "blocked"
        assert "has no key secret (its keys: client_secret, id)" in p.reason
        assert "lab-secret-value" not in texts(p)
