"""A cluster gpuhub did not build (issue 10, "Taking over"): releases adopted by the names the
inventory gives, and everything that would replace or break what runs there is destructive, with
the evidence, or refused."""
import json

from gpuhub import facts, render
from gpuhub.steps import cluster
from test_plan import NOW, converged, ctx_for, load, revision


def with_facts(inv, host, secrets, **over):
    fx = converged(inv, host, secrets)
    fx.values.update(over)
    return fx


def by_hand(number, status, chart, version):
    """A revision whose helm records lack gpuhub's managed-by label (installed by hand)."""
    return dict(revision(number, status, chart, version), managed=False)


def test_a_hub_release_installed_by_hand_is_adopted_only_as_a_destructive_change_that_says_what_it_replaces(secrets):
    inv = load("seed", hub__release="hub", hub__namespace="jupyter")
    theirs = {"hub": {"config": {"JupyterHub": {"authenticator_class": "generic-oauth"}}},
              "singleuser": {"profileList": [{"display_name": "Theirs"}]}}
    fx = with_facts(inv, inv.hosts["workstation"], secrets, hub_release=[by_hand(7, "deployed", "jupyterhub", "4.4.0")],
                    hub_values=theirs)
    plan = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets))
    assert plan.status == "change" and plan.destructive
    summary = plan.changes[0].summary
    assert "adopt" in summary and "jupyter/hub" in summary and "installed without gpuhub" in summary
    assert "managed-by=gpuhub" in summary and "differ in hub, proxy, singleuser" in summary
    # Once gpuhub has upgraded it (the label is on its records), a later change is an ordinary one.
    fx.values["hub_release"] = [revision(8, "deployed", "jupyterhub", "4.4.0")]
    again = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets))
    assert again.status == "change" and not again.destructive and "adopt" not in again.changes[0].summary


def test_an_adopted_release_with_gpuhubs_values_already_needs_nothing(secrets):
    inv = load()
    fx = converged(inv, inv.hosts["workstation"], secrets,
                   plugin_release=[by_hand(2, "deployed", "nvidia-device-plugin", "0.20.0")])
    assert cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets)).status == "ok"


def test_a_release_name_holding_another_chart_is_refused_never_replaced(secrets):
    inv = load("seed", gpu__plugin_release="gpu-operator", gpu__plugin_namespace="gpu-operator")
    fx = converged(inv, inv.hosts["workstation"], secrets,
                   plugin_release=[by_hand(3, "deployed", "gpu-operator", "v25.3.0")])
    plan = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets))
    assert plan.status == "blocked" and not plan.changes
    assert "gpu-operator/gpu-operator is the chart gpu-operator v25.3.0, not nvidia-device-plugin" in plan.reason
    assert "gpu.plugin_release" in plan.reason


def test_a_second_device_plugin_or_hub_beside_the_labs_own_is_refused_with_the_settings_that_adopt_it(secrets):
    """The inventory names no release, the cluster runs the lab's own under other names: gpuhub
    would install a second device plugin (the GPUs registered twice) and a second hub (ports 80
    and 443 taken): blocked, with the inventory lines that point gpuhub at the lab's releases."""
    inv = load("seed")
    theirs = {"nvidia-device-plugin": ["kube-system/nvdp-lab"], "jupyterhub": ["jupyter/hub"],
              "cert-manager": ["cert-manager/cert-manager"]}
    fx = with_facts(inv, inv.hosts["workstation"], secrets, plugin_release=[], hub_release=[], chart_releases=theirs)
    plugin = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets))
    assert plugin.status == "blocked" and not plugin.changes
    assert "device plugin runs already as release kube-system/nvdp-lab (chart nvidia-device-plugin), not as " \
           "nvidia-device-plugin/nvdp" in plugin.reason
    assert "set gpu.plugin_release: nvdp-lab and gpu.plugin_namespace: kube-system in the inventory" in plugin.reason
    hub = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets))
    assert hub.status == "blocked" and not hub.changes
    assert "JupyterHub runs already as release jupyter/hub" in hub.reason
    assert "set hub.release: hub and hub.namespace: jupyter in the inventory" in hub.reason
    # Named in the inventory, the lab's releases are the ones gpuhub plans for (an adoption).
    named = load("seed", gpu__plugin_release="nvdp-lab", gpu__plugin_namespace="kube-system")
    fx = with_facts(named, named.hosts["workstation"], secrets, chart_releases=theirs,
                    plugin_release=[by_hand(2, "deployed", "nvidia-device-plugin", "0.20.0")], plugin_values={})
    adopted = cluster.plan_plugin(ctx_for(named, "workstation", fx, secrets))
    assert adopted.status == "change" and adopted.destructive and "adopt" in adopted.changes[0].summary


def test_the_device_plugin_release_is_read_and_upgraded_under_the_name_the_inventory_gives(secrets):
    inv = load("seed", gpu__plugin_release="nvidia-device-plugin", gpu__plugin_namespace="kube-system")
    probes = facts.cluster_probes(cluster.plugin_release(inv), cluster.hub_release(inv))
    assert "app.kubernetes.io/instance=nvidia-device-plugin" in json.dumps(
        facts.plugin_pod_labels(cluster.plugin_release(inv)))
    assert {"cluster", "releases", "now"} <= set(probes)
    fx = with_facts(inv, inv.hosts["workstation"], secrets,
                    plugin_release=[by_hand(1, "deployed", "nvidia-device-plugin", "0.17.0")], plugin_values={})
    plan = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets))
    helm = [a for c in plan.changes for a in c.actions if a.kind == "script"][0]
    assert helm.env["RELEASE"] == "nvidia-device-plugin" and helm.env["NAMESPACE"] == "kube-system"
    assert plan.destructive and "chart 0.17.0 -> 0.20.0" in plan.changes[0].summary
    assert cluster.plugin_daemonsets(cluster.plugin_release(inv))[0] == "nvidia-device-plugin"


def test_renaming_a_gpu_resource_that_running_pods_hold_is_destructive_and_names_them(secrets):
    """A cluster built by hand shares its GPU as plain nvidia.com/gpu (not renamed); gpuhub's
    default renames it nvidia.com/gpu.shared, which the lab's model server no longer finds."""
    inv = load()
    host = inv.hosts["workstation"]
    plain = {"ready": True, "labels": {}, "capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"}}
    held = [{"name": "models/vllm-0", "node": "workstation", "phase": "Running", "resources": {"nvidia.com/gpu": 2}},
            {"name": "jhub/jupyter-ada", "node": "workstation", "phase": "Running",
             "resources": {"nvidia.com/gpu.shared": 1}}]
    fx = with_facts(inv, host, secrets, nodes={"workstation": plain}, gpu_pods=held,
                    plugin_values=json.loads(json.dumps(render.device_plugin_values(load("not-renamed")))))
    plan = cluster.plan_plugin(ctx_for(inv, "workstation", fx, secrets))
    assert plan.status == "change" and plan.destructive
    text = " ".join(c.summary for c in plan.changes)
    assert "models/vllm-0 holds 2 nvidia.com/gpu on workstation, which will offer nvidia.com/gpu.shared" in text
    assert "jupyter-ada" not in text  # it asks for what the node will offer
    # Left as the lab had it (rename_shared: false), nothing is stranded.
    kept = load("seed", gpu__rename_shared=False)
    fx.values["plugin_values"] = {}
    same = cluster.plan_plugin(ctx_for(kept, "workstation", fx, secrets))
    assert same.status == "change" and not same.destructive


def test_a_chart_3_to_4_move_is_destructive_unless_the_old_slug_scheme_is_kept(secrets):
    for scheme, destructive in ((None, True), ("safe", True), ("escape", False)):
        inv = load("seed", **({"hub__slug_scheme": scheme} if scheme else {}))
        fx = converged(inv, inv.hosts["workstation"], secrets, hub_release=[revision(4, "deployed", "jupyterhub", "3.3.8")])
        plan = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets))
        assert plan.status == "change" and plan.destructive is destructive, scheme
        summary = plan.changes[0].summary
        assert "chart 3.3.8 -> 4.4.0" in summary
        assert ("'safe' slug scheme" in summary) is destructive and ("hub.slug_scheme: escape" in summary) is destructive
    values = render.jupyterhub_values(load("seed", hub__slug_scheme="escape"), secrets.with_stand_ins(), render.Notes())
    assert values["hub"]["config"]["KubeSpawner"] == {"slug_scheme": "escape"}
    assert NOW  # the revisions above are an hour old by the server's clock


def test_a_new_home_storage_class_says_the_existing_homes_stay_where_they_are(secrets):
    """KubeSpawner keeps a claim it finds: changing hub.storage_class moves nobody's home, and the
    plan says how many stay on the old class instead of implying they move."""
    inv = load("seed", hub__storage_class="zfs-homes")
    before = json.loads(json.dumps(render.jupyterhub_values(load(), secrets, render.Notes())))
    from gpuhub.secret import digested
    homes = [{"namespace": "jhub", "claim": f"claim-{u}", "storage_class": "local-path"} for u in ("ada", "bob")]
    fx = with_facts(inv, inv.hosts["workstation"], secrets, hub_values=digested(before),
                    storage={"classes": {"local-path": "rancher.io/local-path"}, "volumes": homes})
    before_class = render.jupyterhub_values(load(), secrets, render.Notes())["singleuser"].get("storage")
    assert before_class is None  # the default: no class named, the cluster's default (local-path)
    plan = cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets))
    summary = plan.changes[0].summary
    assert "2 existing home volume(s) stay on local-path" in summary
    assert "only new homes are made on zfs-homes" in summary and not plan.destructive


def test_a_step_waiting_on_its_hosts_lists_what_it_would_destroy_on_the_cluster_as_it_is_now(secrets):
    """The hand-built cluster answers while k3s.install still changes its config: gpu.plugin and
    hub.launch wait for that, but their destructive changes on the cluster as it is now are in the
    first plan (and need --yes before any host changes), not found only after the hosts changed."""
    from gpuhub import plan as plans
    inv = load("seed", hub__release="hub", hub__namespace="jupyter")
    fx = with_facts(inv, inv.hosts["workstation"], secrets, k3s_config_sha="0" * 64,
                    hub_release=[by_hand(12, "deployed", "jupyterhub", "4.4.0")], hub_values={"hub": {}})
    run = plans.Run(inv, {n: None for n in inv.hosts}, secrets, log=lambda line: None)
    run.facts = {"workstation": fx}
    steps = {s.id: s for s in run.plan(gather=False)["workstation"].steps}
    assert steps["k3s.install"].status == "change"
    hub = steps["hub.launch"]
    assert hub.status == "pending" and hub.destructive
    assert hub.reason.startswith("waits on k3s.install / gpu.runtime; on the cluster as it is now it would: ")
    assert "installed without gpuhub" in hub.reason
    assert steps["gpu.plugin"].status == "pending" and not steps["gpu.plugin"].destructive
    assert "[DESTRUCTIVE]" in [line for line in plans.format_plan(run.results).splitlines() if "hub.launch" in line][0]
    try:
        run.refuse_unconfirmed(yes=False)
    except plans.Refused as e:
        assert "workstation: hub.launch: " in str(e)
    else:
        raise AssertionError("a pending step's destructive changes need --yes")
    # A bare cluster (nothing answers yet) waits as before, with nothing to list.
    fx.values["nodes"] = None
    assert cluster.plan_hub(ctx_for(inv, "workstation", fx, secrets, earlier={})).status == "pending"


def test_a_second_device_plugin_found_while_the_hosts_still_change_stops_the_run_before_any_change(secrets):
    """k3s.install would rewrite the config (its own change, not destructive here); the cluster
    answers already and runs the lab's device plugin under another name. The plugin step's block
    cannot be lifted by the hosts' changes, so it shows in the first plan, and the run refuses to
    change anything at all, where a `pending` would have let K3s restart before refusing."""
    from gpuhub import plan as plans
    inv = load("seed")
    fx = with_facts(inv, inv.hosts["workstation"], secrets, k3s_config_sha="0" * 64, plugin_release=[],
                    chart_releases={"nvidia-device-plugin": ["kube-system/nvdp-lab"]})
    run = plans.Run(inv, {n: None for n in inv.hosts}, secrets, log=lambda line: None)
    run.facts = {"workstation": fx}
    steps = {s.id: s for s in run.plan(gather=False)["workstation"].steps}
    assert steps["k3s.install"].status == "change"
    plugin = steps["gpu.plugin"]
    assert plugin.status == "blocked", plugin
    assert plugin.reason.startswith("device plugin runs already as release kube-system/nvdp-lab")
    assert plugin.reason.endswith("(on the cluster as it is now; the step waits on k3s.install / gpu.runtime)")
    try:
        run.refuse_blocked()
    except plans.Refused as e:
        assert "gpu.plugin" in str(e)
    else:
        raise AssertionError("a lasting block stops the whole run")
    # A release that may only be busy (pending, young) is no lasting block: the step waits as before.
    fx.values.update(chart_releases={}, plugin_release=[dict(revision(1, "pending-install", "nvidia-device-plugin",
                                                                     "0.20.0"), updated=NOW - 5)])
    assert {s.id: s for s in run.plan(gather=False)["workstation"].steps}["gpu.plugin"].status == "pending"
