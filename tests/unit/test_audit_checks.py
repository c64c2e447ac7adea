"""Audit checks from given facts: each failure says what, the evidence, and the fix."""
from gpuhub import audit
from test_plan import bare, converged, load


def findings(inv, name, fx, server):
    host = inv.hosts[name]
    return {f.check: f for f in (check(inv, host, fx, server) for check in audit.HOST_CHECKS) if f}


def test_converged_host_passes_every_check(secrets):
    inv = load()
    fx = converged(inv, inv.hosts["workstation"], secrets)
    fx.values.update(runtimeclasses=["nvidia"], kubeconfig_mode="600", traefik_pods=[],
                     plugin_pods=[{"name": "nvdp-nvidia-device-plugin-x7k2p", "node": "workstation", "phase": "Running",
                                   "ready": True, "reason": "", "labels": {},
                                   "owner": "DaemonSet/nvdp-nvidia-device-plugin"}],
                     hub_pods=[{"name": n, "node": "workstation", "phase": "Running", "ready": True, "reason": "",
                                "labels": {"component": n}} for n in ("hub", "proxy")])
    fx.values["nodes"]["workstation"]["labels"]["nvidia.com/gpu.replicas"] = "8"
    fx.values["nodes"]["workstation"]["version"] = inv.cluster["k3s_version"]
    got = findings(inv, "workstation", fx, fx)
    assert {c: f.ok for c, f in got.items() if not f.ok} == {}
    assert "template" not in got  # runtimeclass mode: not applicable
    assert audit.check_drift(inv, inv.hosts["workstation"], fx, fx, secrets).ok


def test_no_driver_says_what_and_how():
    inv = load()
    fx = bare(nvidia_smi={"ok": False, "error": "nvidia-smi not found (no NVIDIA driver installed)", "gpus": []})
    finding = audit.check_driver(inv, inv.hosts["workstation"], fx, fx)
    assert not finding.ok and "never installs" in finding.fix and "not found" in finding.evidence


def test_unhealthy_after_restart_is_named_with_the_heal(secrets):
    inv = load()
    fx = converged(inv, inv.hosts["workstation"], secrets)
    fx.values["nodes"]["workstation"]["allocatable"] = {"nvidia.com/gpu.shared": "0"}
    finding = audit.check_allocatable(inv, inv.hosts["workstation"], fx, fx)
    assert not finding.ok and "#426" in finding.evidence and "delete pod" in finding.fix


def test_world_readable_kubeconfig_and_traefik():
    inv = load()
    fx = bare(kubeconfig_mode="644", traefik_pods=[{"name": "traefik-abc", "node": "w", "phase": "Running",
                                                    "ready": True, "reason": "", "labels": {}}])
    assert not audit.check_kubeconfig(inv, inv.hosts["workstation"], fx, fx).ok
    assert "80/443" in audit.check_traefik(inv, inv.hosts["workstation"], fx, fx).message


def test_drift_reports_the_steps_that_would_change(secrets):
    inv = load()
    fx = converged(inv, inv.hosts["workstation"], secrets)
    fx.values["toolkit"] = None
    finding = audit.check_drift(inv, inv.hosts["workstation"], fx, fx, secrets)
    assert not finding.ok and "gpu.runtime" in finding.evidence


def test_profile_jobs_carry_the_profiles_settings():
    inv = load("multi-node")
    cpu = audit.profile_job(inv, "cpu", inv.hosts["rtx1"])["spec"]["template"]["spec"]
    assert cpu["containers"][0]["env"] == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
    assert "resources" not in cpu["containers"][0] and cpu["nodeSelector"] == {"kubernetes.io/hostname": "rtx1"}
    shared = audit.profile_job(inv, "shared-gpu", inv.hosts["rtx1"])["spec"]["template"]["spec"]
    assert shared["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu.shared": "1"}}
    assert shared["runtimeClassName"] == "nvidia"
    assert audit.profile_job(load(), "whole-gpu", load().hosts["workstation"]) is None  # not offered
