"""Ring 2: rendered artifacts through the real validators (chart schema, Kubernetes schemas,
the device plugin's config model, TOML as containerd reads it, shellcheck)."""
import shutil
import subprocess

import pytest
import yaml

from testdata import DATA, ROOT, SHARED, good_inventories
from gpuhub import inventory, render, validate

Z2JH = SHARED / "reference" / "z2jh"
BASE = (DATA / "k3s" / "base-v3.toml").read_text()
BASE_DEFAULT_RUNTIME = (DATA / "k3s" / "base-v3-default-runtime.toml").read_text()
INVENTORIES = good_inventories()


def rendered(path, secrets):
    inv = inventory.load(str(path))
    files, _ = render.render_all(inv, secrets)
    return inv, {name: a.text for name, a in files.items()}


@pytest.mark.parametrize("chart", ["3.2.1", "4.4.0"])
@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_hub_values_pass_the_chart_schema(path, chart, secrets):
    if not (Z2JH / chart / "values.schema.yaml").exists():
        pytest.skip(f"chart reference {Z2JH / chart} is absent (it lives in ../shared/reference)")
    _, files = rendered(path, secrets)
    values = yaml.safe_load(files["cluster/jupyterhub-values.yaml"])
    assert validate.z2jh_problems(values, Z2JH / chart) == []


def test_chart_schema_check_catches_a_misspelled_key(secrets):
    if not (Z2JH / "4.4.0").exists():
        pytest.skip("chart reference absent (../shared/reference/z2jh)")
    _, files = rendered(ROOT / "hosts.yaml", secrets)
    values = yaml.safe_load(files["cluster/jupyterhub-values.yaml"])
    values["proxy"]["https"]["letsencrypt"]["contactEmial"] = "x@example.org"
    values["ingress"] = {"enabled": "yes"}
    problems = validate.z2jh_problems(values, Z2JH / "4.4.0")
    assert any("contactEmial" in p for p in problems)
    assert any(p.startswith("ingress.enabled") for p in problems)


def kubernetes_version(inv):
    import kubernetes_validate
    major, minor = inventory.names.k3s_version(inv.cluster["k3s_version"])[:2]
    wanted = f"{major}.{minor}.0"
    return wanted if wanted <= kubernetes_validate.latest_version() else kubernetes_validate.latest_version()


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_gpu_test_jobs_pass_kubernetes_validate_strict(path, secrets):
    pytest.importorskip("kubernetes_validate", reason="pip install 'gpuhub[test]'")
    inv, files = rendered(path, secrets)
    jobs = [yaml.safe_load(files["cluster/gpu-test.yaml"])]
    jobs += [render.gpu_test_job(inv, host) for host in inv.gpu_hosts]
    for job in jobs:
        assert validate.manifest_problems(job, kubernetes_version(inv)) == []


def test_strict_kubernetes_validation_catches_an_unknown_field(secrets):
    pytest.importorskip("kubernetes_validate", reason="pip install 'gpuhub[test]'")
    inv, files = rendered(ROOT / "hosts.yaml", secrets)
    job = yaml.safe_load(files["cluster/gpu-test.yaml"])
    job["spec"]["template"]["spec"]["runtimeClass"] = "nvidia"
    assert validate.manifest_problems(job, kubernetes_version(inv))


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_device_plugin_sharing_configs_match_the_documented_model(path, secrets):
    _, files = rendered(path, secrets)
    values = yaml.safe_load(files["cluster/device-plugin-values.yaml"])
    assert not ("name" in values["config"] and "map" in values["config"])  # never both
    for name, text in values["config"]["map"].items():
        assert validate.sharing_config_problems(text) == [], name


def test_sharing_model_catches_rename_under_flags():
    # The known silent failure (NVIDIA/k8s-device-plugin#1433): the plugin ignores it.
    text = "version: v1\nflags:\n  migStrategy: none\n  renameByDefault: true\n"
    assert validate.sharing_config_problems(text) == [
        "flags.renameByDefault: unknown key, ignored by the device plugin"]
    text = yaml.safe_dump({"version": "v1", "sharing": {"timeSlicing": {
        "resources": [{"name": "nvidia.com/gpu", "replicas": 1, "replica": 4}]}}})
    problems = validate.sharing_config_problems(text)
    assert any("replica: unknown key" in p and "did you mean 'replicas'" in p for p in problems)
    assert any("replicas: must be a whole number of at least 2" in p for p in problems)


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_k3s_configs_use_known_flags(path, secrets):
    inv, files = rendered(path, secrets)
    for host in inv.hosts.values():
        config = yaml.safe_load(files[f"hosts/{host.name}/k3s-config.yaml"])
        assert validate.k3s_config_problems(config, host.role) == []


def test_k3s_flag_check_catches_a_typo_and_a_server_flag_on_an_agent():
    assert validate.k3s_config_problems({"node-lable": ["a=b"]}, "agent") == [
        "k3s agent config: unknown key 'node-lable' (did you mean 'node-label'?)"]
    assert validate.k3s_config_problems({"disable": ["traefik"]}, "agent")
    assert validate.k3s_config_problems({"token": "K10abc"}, "agent")


class TestContainerdTemplate:
    def template(self, secrets):
        _, files = rendered(DATA / "inventories" / "good" / "template.yaml", secrets)
        return files["hosts/srv/containerd/config-v3.toml.tmpl"]

    @pytest.mark.parametrize("default_runtime", [False, True])
    def test_parses_with_no_table_declared_twice(self, secrets, default_runtime):
        base = BASE_DEFAULT_RUNTIME if default_runtime else BASE
        assert validate.containerd_template_problems(self.template(secrets), base, default_runtime) == []

    def test_against_the_shared_reference_sample(self, secrets):
        sample = SHARED / "reference" / "k3s" / "config-v3.generated.sample.toml"
        if not sample.exists():
            pytest.skip(f"{sample} is absent (it lives in ../shared/reference)")
        assert validate.containerd_template_problems(self.template(secrets), sample.read_text()) == []

    def test_check_catches_a_redeclared_runtime(self, secrets):
        # The original recipe's mistake: re-declaring a runtime K3s already emits (k3s-io/docs#566).
        broken = self.template(secrets) + "\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
        problems = validate.containerd_template_problems(broken, BASE)
        assert problems and "containerd template" in problems[0]

    def test_unconditional_default_table_breaks_with_default_runtime(self):
        template = '{{ template "base" . }}\n[plugins.\'io.containerd.cri.v1.runtime\'.containerd]\n  default_runtime_name = "nvidia"\n'
        assert validate.containerd_template_problems(template, BASE) == []
        assert validate.containerd_template_problems(template, BASE_DEFAULT_RUNTIME, True)


def test_shellcheck_passes_on_scripts():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it)")
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    assert scripts, "scripts/ holds no shell steps"
    # The test harness and the simulated install script are held to the same bar.
    scripts += [str(ROOT / "tests" / "hosts" / n) for n in ("up.sh", "down.sh")]
    scripts.append(str(ROOT / "tests" / "sim" / "install.sh"))
    result = subprocess.run(["shellcheck", "--severity=style", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.stem)
def test_hub_config_and_profiles_load_into_the_real_classes(path, secrets):
    pytest.importorskip("jupyterhub", reason="pip install 'gpuhub[hubcheck]'")
    from gpuhub import hubcheck
    _, files = rendered(path, secrets)
    assert hubcheck.check_hub_values(yaml.safe_load(files["cluster/jupyterhub-values.yaml"])) == []


def test_prepuller_off_passes_the_chart_schema(secrets):
    if not (Z2JH / "4.4.0" / "values.schema.yaml").exists():
        pytest.skip("chart reference absent (../shared/reference/z2jh)")
    from testdata import load_inventory
    inv = load_inventory("seed", hub__image_prepuller=False)
    values = yaml.safe_load(render.render_all(inv, secrets)[0]["cluster/jupyterhub-values.yaml"].text)
    assert values["prePuller"]["hook"]["enabled"] is False
    assert validate.z2jh_problems(values, Z2JH / "4.4.0") == []


def test_a_hub_overlay_goes_through_the_chart_schema(secrets, tmp_path):
    """The overlay is merged before the checks: a key the chart does not have is caught there."""
    if not (Z2JH / "4.4.0" / "values.schema.yaml").exists():
        pytest.skip("chart reference absent (../shared/reference/z2jh)")
    data = yaml.safe_load((DATA / "inventories" / "good" / "overlays.yaml").read_text())
    (tmp_path / "hub.yaml").write_text("singleuser:\n  storage:\n    capcity: 100Gi\n")
    data["hub"]["values_overlay"], data["gpu"]["plugin_values_overlay"] = "hub.yaml", None
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(data))
    _, files = rendered(tmp_path / "hosts.yaml", secrets)
    problems = validate.z2jh_problems(yaml.safe_load(files["cluster/jupyterhub-values.yaml"]), Z2JH / "4.4.0")
    assert any("capcity" in p for p in problems), problems
