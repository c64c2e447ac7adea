"""Lay out the SIMULATED toolchain as an airgap bundle (the shape users give gpuhub with real files).

    bundle/
      k3s/k3s                                  the K3s binary        (simk3s.py, VERSION set)
      k3s/install.sh                           the install script    (install.sh)
      k3s/k3s-airgap-images-amd64.tar.zst      the images tarball    (a placeholder)
      helm/helm                                the helm CLI          (simk3s.py run as helm)
      charts/nvidia-device-plugin-0.20.0.tgz   chart archives        (Chart.yaml only)
      charts/jupyterhub-4.4.0.tgz, jupyterhub-3.2.1.tgz
      toolkit/nvidia-container-toolkit_<v>_all.deb   a real .deb installing simulated binaries
    driver/nvidia-smi                          NOT part of the bundle: stands for the host's driver
    driver/pci-view                            NOT part of the bundle: lays the host's PCI bus in sysfs

Run: python3 tests/sim/build_bundle.py DEST [--k3s-version v1.37.1+k3s1]
"""
from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _pinned_k3s_version() -> str:
    import sys
    sys.path.insert(0, str(HERE.parent.parent))
    from gpuhub.inventory import K3S_VERSION as pinned
    return pinned

# The integration tests run the K3s version gpuhub pins by default (the one users get).
K3S_VERSION = _pinned_k3s_version()
TOOLKIT_VERSION = "1.17.8-1"
PLUGIN_CHART = "0.20.0"
HUB_CHARTS = ("4.4.0", "3.2.1")

RUNTIME = """#!/bin/sh
# SIMULATION of nvidia-container-runtime (NVIDIA container toolkit). NOT PRODUCT CODE.
case "${1:-}" in
  --version) echo "NVIDIA Container Runtime version 1.17.8 (simulation)" ;;
  *) echo "nvidia-container-runtime (SIMULATION): containers are not run on simulated hosts" >&2; exit 1 ;;
esac
"""
CTK = """#!/bin/sh
# SIMULATION of nvidia-ctk. NOT PRODUCT CODE.
echo "NVIDIA Container Toolkit CLI version 1.17.8 (simulation)"
"""


def _chart(dest: Path, name: str, version: str) -> Path:
    path = dest / f"{name}-{version}.tgz"
    chart = (f"apiVersion: v2\nname: {name}\nversion: {version}\n"
             "description: SIMULATION of the chart archive (Chart.yaml only) for gpuhub tests\n").encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size, info.mode, info.mtime = len(chart), 0o644, 0
        archive.addfile(info, io.BytesIO(chart))
    return path


def _toolkit_deb(dest: Path, version: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "usr" / "bin").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: nvidia-container-toolkit\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: gpuhub tests <tests@invalid>\n"
            "Description: SIMULATION of the NVIDIA container toolkit for gpuhub tests\n"
            " Installs nvidia-container-runtime and nvidia-ctk stand-ins; runs no container.\n")
        for name, text in (("nvidia-container-runtime", RUNTIME), ("nvidia-ctk", CTK)):
            path = root / "usr" / "bin" / name
            path.write_text(text)
            path.chmod(0o755)
        out = dest / f"nvidia-container-toolkit_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                       check=True, capture_output=True)
    return out


def build_bundle(dest: Path, k3s_version: str = K3S_VERSION, toolkit_version: str = TOOLKIT_VERSION) -> dict:
    """Write the bundle under dest/bundle and the driver stand-in under dest/driver; return paths."""
    dest = Path(dest)
    if not re.match(r"^v\d+\.\d+\.\d+\+k3s\d+$", k3s_version):
        raise ValueError(f"not a K3s version: {k3s_version}")
    bundle, driver = dest / "bundle", dest / "driver"
    for d in ("k3s", "helm", "charts", "toolkit"):
        (bundle / d).mkdir(parents=True, exist_ok=True)
    driver.mkdir(parents=True, exist_ok=True)
    program = (HERE / "simk3s.py").read_text().replace('VERSION = "v0.0.0+k3s1"', f'VERSION = "{k3s_version}"', 1)
    paths = {"k3s": bundle / "k3s" / "k3s", "helm": bundle / "helm" / "helm",
             "install_script": bundle / "k3s" / "install.sh",
             "images": bundle / "k3s" / "k3s-airgap-images-amd64.tar.zst",
             "nvidia_smi": driver / "nvidia-smi", "pci_view": driver / "pci-view"}
    paths["k3s"].write_text(program)
    paths["helm"].write_text(program)
    shutil.copyfile(HERE / "install.sh", paths["install_script"])
    shutil.copyfile(HERE / "nvidia-smi", paths["nvidia_smi"])
    shutil.copyfile(HERE / "pci-view", paths["pci_view"])
    for key in ("k3s", "helm", "install_script", "nvidia_smi", "pci_view"):
        paths[key].chmod(0o755)
    paths["images"].write_bytes(b"SIMULATION: no container images\n")
    paths["plugin_chart"] = _chart(bundle / "charts", "nvidia-device-plugin", PLUGIN_CHART)
    for version in HUB_CHARTS:
        paths[f"hub_chart_{version}"] = _chart(bundle / "charts", "jupyterhub", version)
    paths["toolkit"] = _toolkit_deb(bundle / "toolkit", toolkit_version)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--k3s-version", default=K3S_VERSION)
    options = parser.parse_args()
    for key, path in build_bundle(options.dest, options.k3s_version).items():
        print(f"{key}\t{path}")
