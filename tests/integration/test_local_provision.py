"""`inv provision` run ON a test host, so the local code path (invoke's Context, no SSH) runs
for real: the checkout and wheels of its dependencies are copied in and installed offline."""
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

from sim.build_bundle import K3S_VERSION, build_bundle
from sim.hardware import give_gpus
from test_simulation import BARE_HOST
from testdata import ROOT

pytestmark = pytest.mark.integration

HOST = "gpu1"
SITE = "/root/site"
CHECKOUT = "/root/gpuhub"
VENV = "/root/venv"


def checkout_files():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [name for name in listed if name.split("/")[0] in ("gpuhub", "scripts", "templates")
            or name in ("tasks.py", "pyproject.toml", "hosts.yaml")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder),
                             "--only-binary=:all:", "invoke>=2.2,<3", "fabric>=3.2,<4", "pyyaml>=6", "jinja2>=3.1"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"pip download failed in CI: {result.stderr[-500:]}")
        pytest.skip(f"cannot download wheels (no package index?): {result.stderr.strip()[-200:]}")
    return folder


@pytest.fixture(scope="module")
def local_site(testhosts, wheels, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    bundle = build_bundle(folder / "sim")
    testhosts.run(HOST, BARE_HOST)
    give_gpus(testhosts, HOST, bundle, 1)
    archive = folder / "gpuhub.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in checkout_files():
            tar.add(ROOT / name, arcname=name)
        for wheel in wheels.iterdir():
            tar.add(wheel, arcname=f"wheels/{wheel.name}")
        for key in ("k3s", "install_script", "images", "helm", "plugin_chart", "hub_chart_4.4.0"):
            tar.add(bundle[key], arcname=f"bundle/{bundle[key].name}")
        for deb in bundle["toolkit_packages"]:
            tar.add(deb, arcname=f"bundle/{deb.name}")
    testhosts.put(HOST, archive, "/root/gpuhub.tar.gz", 0o600)
    inventory = {
        "hub": {"hostname": "hub.lab.test", "letsencrypt_email": "admin@lab.test",
                "github": {"organizations": ["lab"]}},
        "hosts": {HOST: {"role": "server", "gpus": 1, "local": True}},
        "airgap": {"k3s_binary": f"{CHECKOUT}/bundle/k3s", "k3s_install_script": f"{CHECKOUT}/bundle/install.sh",
                   "k3s_images": f"{CHECKOUT}/bundle/{bundle['images'].name}",
                   "helm_binary": f"{CHECKOUT}/bundle/helm",
                   "plugin_chart": f"{CHECKOUT}/bundle/{bundle['plugin_chart'].name}",
                   "hub_chart": f"{CHECKOUT}/bundle/{bundle['hub_chart_4.4.0'].name}",
                   "toolkit_packages": [f"{CHECKOUT}/bundle/{deb.name}" for deb in bundle["toolkit_packages"]]},
    }
    testhosts.put(HOST, yaml.safe_dump(inventory).encode(), f"{SITE}/hosts.yaml", 0o644)
    testhosts.put(HOST, b"github_client_id: local-id\ngithub_client_secret: local-secret\n",
                  f"{SITE}/secrets.yaml", 0o600)
    testhosts.run(HOST, f"mkdir -p {CHECKOUT} && tar -xzf /root/gpuhub.tar.gz -C {CHECKOUT} && "
                        f"python3 -m venv {VENV} && {VENV}/bin/pip install --quiet --no-index "
                        f"--find-links {CHECKOUT}/wheels 'invoke>=2.2,<3' 'fabric>=3.2,<4' pyyaml jinja2",
                  timeout=300)
    yield testhosts
    testhosts.run(HOST, BARE_HOST + f"; rm -rf {CHECKOUT} {VENV} {SITE} /root/gpuhub.tar.gz", check=False)


def inv(hosts, *args):
    return hosts.run(HOST, f"cd {CHECKOUT} && {VENV}/bin/inv {' '.join(args)} --inventory {SITE}/hosts.yaml",
                     check=False, timeout=300)


def test_inv_provision_converges_on_the_machine_it_runs_on(local_site):
    plan = inv(local_site, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "gpu1 (server)" in plan.stdout and f"install K3s {K3S_VERSION} (airgap)" in plan.stdout
    result = inv(local_site, "provision")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu1: gpu.test: passed on GPU 0" in result.stderr
    assert "local-secret" not in result.stdout + result.stderr
    started = local_site.run(HOST, "systemctl show -p ExecMainStartTimestampMonotonic k3s").stdout
    again = inv(local_site, "provision")
    assert again.returncode == 0, again.stderr
    assert "changed" not in again.stderr[again.stderr.index("RECAP"):]
    assert local_site.run(HOST, "systemctl show -p ExecMainStartTimestampMonotonic k3s").stdout == started
    assert inv(local_site, "plan", "--check").returncode == 0
