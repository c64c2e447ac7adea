"""Lay out the SIMULATED toolchain as an airgap bundle (the shape users give gpuhub with real files).

    bundle/
      k3s/k3s                                  the K3s binary        (simk3s.py, VERSION set)
      k3s/install.sh                           the install script    (install.sh)
      k3s/k3s-airgap-images-amd64.tar.zst      the images tarball    (a placeholder)
      helm/helm                                the helm CLI          (simk3s.py run as helm)
      charts/nvidia-device-plugin-0.20.0.tgz   chart archives        (Chart.yaml only)
      charts/jupyterhub-4.4.0.tgz, jupyterhub-3.2.1.tgz
      toolkit/*_<v>_<arch>.deb                 the toolkit's four real .deb files (simulated binaries)
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

STAND_IN = """#!/bin/sh
# SIMULATION of {name} (NVIDIA container toolkit {version}). NOT PRODUCT CODE.
case "${{1:-}}" in
  --version) echo "{name} version {upstream} (simulation)" ;;
  *) echo "{name} (SIMULATION): containers are not run on simulated hosts" >&2; exit 1 ;;
esac
"""

# NVIDIA container toolkit v1.17.8 on Debian/Ubuntu: four binary packages, each with its real
# Depends and the files it installs (Architecture: any, built per architecture).
# - nvidia-container-toolkit-base, nvidia-container-toolkit: NVIDIA/nvidia-container-toolkit tag
#   v1.17.8 packaging/debian/control (@VERSION@ = 1.17.8-1, @LIBNVIDIA_CONTAINER_TOOLS_VERSION@ =
#   1.17.8-1 from versions.mk / docker/docker.mk) and packaging/debian/*.install (base:
#   nvidia-container-runtime, nvidia-ctk, nvidia-cdi-hook; toolkit: nvidia-container-runtime-hook).
#   ${misc:Depends} is empty for these packages.
# - libnvidia-container-tools (nvidia-container-cli), libnvidia-container1 (the library):
#   libnvidia-container pkg/deb/control declares only ${shlibs:Depends}, ${misc:Depends}; the
#   rendered Depends of the published 1.17.8 .debs could NOT be verified (the repository was out of
#   reach, research notes section 7). The tools' dependency on the library comes from dpkg-shlibdeps;
#   the version bound here (>= VERSION) is an assumption, and the libc6/libcap2/... shlibs
#   dependencies are left out (every Debian host has them).
TOOLKIT_PACKAGES = {
    "libnvidia-container1": {"depends": "", "files": {"lib": ["libnvidia-container.so.1"]},
                             "more": "Multi-Arch: same\n", "description": "NVIDIA container runtime library"},
    "libnvidia-container-tools": {"depends": "libnvidia-container1 (>= {version})",
                                  "files": {"bin": ["nvidia-container-cli"]},
                                  "description": "NVIDIA container runtime library (command-line tools)"},
    "nvidia-container-toolkit-base": {
        "depends": "", "files": {"bin": ["nvidia-container-runtime", "nvidia-ctk", "nvidia-cdi-hook"]},
        "more": "Breaks: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook, "
                "nvidia-container-toolkit (<= 1.10.0-1)\n"
                "Replaces: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook\n",
        "description": "NVIDIA Container Toolkit Base"},
    "nvidia-container-toolkit": {
        "depends": "nvidia-container-toolkit-base (= {version}), libnvidia-container-tools (>= {version}), "
                   "libnvidia-container-tools (<< 2.0.0)",
        "files": {"bin": ["nvidia-container-runtime-hook"]},
        "more": "Breaks: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook\n"
                "Replaces: nvidia-container-runtime (<= 3.5.0-1), nvidia-container-runtime-hook\n",
        "description": "NVIDIA Container toolkit"},
}
MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}


def _chart(dest: Path, name: str, version: str) -> Path:
    path = dest / f"{name}-{version}.tgz"
    chart = (f"apiVersion: v2\nname: {name}\nversion: {version}\n"
             "description: SIMULATION of the chart archive (Chart.yaml only) for gpuhub tests\n").encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size, info.mode, info.mtime = len(chart), 0o644, 0
        archive.addfile(info, io.BytesIO(chart))
    return path


def _deb(dest: Path, name: str, version: str, arch: str) -> Path:
    spec = TOOLKIT_PACKAGES[name]
    upstream = version.split("-")[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        depends = spec["depends"].format(version=version)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
            + (f"Depends: {depends}\n" if depends else "") + spec.get("more", "")
            + "Maintainer: gpuhub tests <tests@invalid>\n"
            f"Description: SIMULATION of {spec['description']} for gpuhub tests\n"
            " Installs stand-ins; runs no container.\n")
        for kind, files in spec["files"].items():
            folder = root / "usr" / ("bin" if kind == "bin" else f"lib/{MULTIARCH.get(arch, '')}".rstrip("/"))
            folder.mkdir(parents=True, exist_ok=True)
            for file in files:
                path = folder / file
                path.write_text(STAND_IN.format(name=file, version=version, upstream=upstream) if kind == "bin"
                                else f"SIMULATION of {file} {version}: not a library\n")
                path.chmod(0o755 if kind == "bin" else 0o644)
        out = dest / f"{name}_{version}_{arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                       check=True, capture_output=True)
    return out


def toolkit_debs(dest: Path, version: str = TOOLKIT_VERSION, names=tuple(TOOLKIT_PACKAGES)) -> list:
    """The toolkit's packages (all four unless `names`) as real .deb files in `dest`."""
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()
    return [_deb(dest, name, version, arch) for name in names]


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
    paths["toolkit_packages"] = toolkit_debs(bundle / "toolkit", toolkit_version)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--k3s-version", default=K3S_VERSION)
    options = parser.parse_args()
    for key, path in build_bundle(options.dest, options.k3s_version).items():
        for one in path if isinstance(path, list) else [path]:
            print(f"{key}\t{one}")
