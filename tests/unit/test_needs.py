"""Steps declare the facts they read (steps.needs): every one is gathered in the facts' one round
trip, every probe is someone's need, and a plan that reads anything else, or tries to run a
command, is an error that says so."""
import pytest

from gpuhub import audit, facts, plan
from gpuhub.steps import StepPlan, needs
from test_plan import bare, converged, load

ALL_STEPS = plan.HOST_STEPS + plan.CLUSTER_STEPS + plan.NODE_STEPS


def gathered() -> set:
    """Every fact the probes give: one per host probe, several per expanding cluster probe."""
    names = set(facts.host_probes())
    names |= set(facts.CLUSTER_FACTS) | {f"{k}_{w}" for k in ("plugin", "hub", "certmanager") for w in ("release", "values")}
    names.add("chart_releases")
    return names | {name for name, p in facts.cluster_probes("a/b", "c/d").items() if not p.expands}


def test_every_fact_a_step_declares_is_gathered_and_every_probe_is_needed():
    declared = {name for _, step in ALL_STEPS for side in step.needs for name in side}
    assert declared <= gathered(), declared - gathered()
    assert gathered() == declared | set(plan.RUN_NEEDS) | set(audit.NEEDS), gathered() ^ (
        declared | set(plan.RUN_NEEDS) | set(audit.NEEDS))


@pytest.mark.parametrize("name", ["seed", "multi-node", "template", "default-runtime"])
def test_every_step_plans_on_what_it_declares(name, secrets):
    """Bare hosts, then converged ones: no step reads an undeclared fact or runs a command."""
    inv = load(name)
    for make in (lambda h: bare(), lambda h: converged(inv, h, secrets)):
        run = plan.Run(inv, {n: None for n in inv.hosts}, secrets, log=lambda line: None)
        run.facts = {h.name: make(h) for h in inv.hosts.values()}
        results = run.plan(gather=False)
        errors = [(n, s.id, s.reason) for n, r in results.items() for s in r.steps if s.status == "error"]
        assert errors == []
        agents = [h for h in inv.ordered_hosts() if h.role == "agent"]
        if agents:  # an agent-only run: the nodes' share of the cluster steps
            only = plan.Run(inv, {n: None for n in inv.hosts}, secrets, log=lambda line: None,
                            selected=[agents[0].name])
            only.facts = run.facts
            assert not [s for s in only.plan(gather=False)[agents[0].name].steps if s.status == "error"]


def test_a_plan_reading_an_undeclared_fact_or_running_a_command_is_an_error_that_says_so(secrets):
    inv = load()

    @needs(host=("systemd",))
    def sneaky(ctx):
        ctx.facts["k3s_version"]
        return StepPlan("sneaky", "ok")

    @needs(host=("systemd",))
    def chatty(ctx):
        ctx.target.run("cat /etc/os-release")
        return StepPlan("chatty", "ok")
    run = plan.Run(inv, {n: None for n in inv.hosts}, secrets, log=lambda line: None)
    run.facts = {"workstation": bare()}
    ctx = run.context(inv.hosts["workstation"])
    read, ran = plan.plan_steps(ctx, (("sneaky", sneaky), ("chatty", chatty)), ("sneaky", "chatty"))
    assert read.status == ran.status == "error"
    assert "sneaky reads the fact 'k3s_version' without declaring it" in read.reason
    assert "chatty's plan would use the host (run)" in ran.reason


def test_a_costly_probe_is_read_only_by_a_run_whose_steps_need_it(secrets):
    """`du` over the users' volumes is for k3s.reset: a provision (the drift check run from cron)
    never walks a lab's disks."""
    inv = load("multi-node")
    costly = {name for name, p in facts.host_probes().items() if p.costly}
    assert costly == {"storage_kib"}
    for only, wanted in ((plan.PROVISION, set()), (("k3s.reset",), costly)):
        run = plan.Run(inv, {n: None for n in inv.hosts}, secrets, only=only, log=lambda line: None)
        for host in inv.hosts.values():
            assert set(run.probes_for(host)) & costly == wanted, (only, host.name)
