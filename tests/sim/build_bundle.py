"""Lay out the SIMULATED toolchain as an airgap bundle (the shape users give gpuhub with real files).

    bundle/
      k3s/k3s                                  the K3s binary        (an ELF launcher + simk3s.py, VERSION set)
      k3s/install.sh                           the install script    (install.sh)
      k3s/k3s-airgap-images-amd64.tar.zst      the images tarball    (an empty OCI image layout, zstd)
      helm/helm                                the helm CLI          (the same program, run as helm)
      charts/nvidia-device-plugin-0.20.0.tgz   chart archives        (Chart.yaml only)
      charts/jupyterhub-4.4.0.tgz, jupyterhub-3.2.1.tgz
      toolkit/*_<v>_<arch>.deb                 the toolkit's four real .deb files (simulated binaries)
    driver/nvidia-smi                          NOT part of the bundle: stands for the host's driver
    driver/pci-view                            NOT part of the bundle: lays the host's PCI bus in sysfs

Run: python3 tests/sim/build_bundle.py DEST [--k3s-version v1.37.1+k3s1]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import marshal
import platform
import re
import struct
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
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


# --- the K3s and helm "binaries": ELF files, as gpuhub requires of the real ones ---------------
# gpuhub's inventory refuses a K3s or helm binary that is not an ELF executable for x86_64 or
# aarch64 (gpuhub/airgapfile.py), which a Python script is not. So the simulation is wrapped,
# not the check weakened: the file is a real ELF executable (a launcher of 119 bytes of x86_64
# code, written for this bundle) with the simulation appended as a zip archive holding
# __main__.py. Python runs a zip file given as its script, reading the archive from its end
# (zipimport), so bytes before it do not matter. The launcher does what the simulation's former
# `#!/usr/bin/env python3` line made the kernel do, and the processes look the same:
#   execve("/usr/bin/env", ["/usr/bin/env", "python3", AT_EXECFN, argv[1], ...], envp)
# where AT_EXECFN (from the auxiliary vector, getauxval(3)) is the path the program was run by:
# /usr/local/bin/kubectl for the kubectl link, so the simulation still tells k3s, kubectl and
# helm apart by the name it runs as, and `k3s server` still shows as "python3 /usr/local/bin/k3s
# server" (what scripts/k3s-reset.sh looks for). If execve fails it exits 127, as a shell does.
#
#   mov rcx,[rsp]; lea rdx,[rsp+rcx*8+16]        ; argc; envp
#   mov rax,rdx; 1: cmp qword [rax],0; lea rax,[rax+8]; jne 1b     ; past envp's NULL: auxv
#   2: mov rbx,[rax]; test rbx,rbx; jz 4f; cmp rbx,31; je 3f; add rax,16; jmp 2b   ; AT_EXECFN
#   3: mov rbx,[rax+8]; mov [rsp+8],rbx           ; argv[0] := AT_EXECFN
#   lea rbx,[rip+python]; mov [rsp],rbx           ; the argc slot := "python3"
#   lea rdi,[rip+env]; mov [rsp-8],rdi; lea rsi,[rsp-8]   ; new argv starts one slot lower
#   mov eax,59; syscall                           ; execve(env, argv, envp)
#   4: mov edi,127; mov eax,60; syscall           ; exit(127)
#   env: "/usr/bin/env\0"  python: "python3\0"
# Only x86_64 is written (the machines the tests run on): elsewhere build_bundle says so.
X86_64_LAUNCHER = bytes.fromhex(
    "488b0c24488d54cc104889d048833800488d400875f6488b184885db74384883fb1f74064883c010ebec"
    "488b580848895c2408488d1d3500000048891c24488d3d1d00000048897c24f8488d7424f8b83b000000"
    "0f05bf7f000000b83c0000000f052f7573722f62696e2f656e7600707974686f6e3300")
ELF_BASE = 0x400000
EM_X86_64 = 62


def elf_program(text: str, machine: str = None) -> bytes:
    """The simulation `text` as an ELF executable for this machine (see above)."""
    machine = machine or platform.machine()
    if machine != "x86_64":
        raise RuntimeError(f"the simulated K3s/helm launcher is written for x86_64 only, not {machine}: "
                           "gpuhub requires ELF binaries of the real architecture (tests/sim/README.md)")
    headers = 64 + 56  # ELF64 header, one program header
    size = headers + len(X86_64_LAUNCHER)
    # System V gABI ELF64 header: ident (magic, class 64, little-endian, version 1), ET_EXEC,
    # e_machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize, shnum,
    # shstrndx; then one PT_LOAD (readable, executable) mapping the header and the code.
    elf = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"", 2, EM_X86_64, 1,
                      ELF_BASE + headers, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    elf += struct.pack("<IIQQQQQQ", 1, 5, 0, ELF_BASE, ELF_BASE, size, size, 0x1000)
    buffer = io.BytesIO(elf + X86_64_LAUNCHER)
    with zipfile.ZipFile(buffer, "a") as archive:  # appended: offsets count from the file's start
        info = zipfile.ZipInfo("__main__.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, text)
        # Its bytecode beside it, as a PEP 552 unchecked hash-based .pyc, which zipimport prefers to
        # the source (importlib._bootstrap_external / zipimport._zip_searchorder): Python never caches
        # a script's bytecode, and compiling 2,400 lines on every kubectl call was a third of each
        # simulated call's time. Another Python's magic number makes zipimport compile the source.
        code = compile(text, "__main__.py", "exec", dont_inherit=True)
        pyc = (importlib.util.MAGIC_NUMBER + struct.pack("<I", 0b01)
               + importlib.util.source_hash(text.encode()) + marshal.dumps(code))
        info = zipfile.ZipInfo("__main__.pyc", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, pyc)
    return buffer.getvalue()


# --- the images tarball: a real (empty) image archive, zstd-compressed as K3s's own ------------

def oci_layout_tar() -> bytes:
    """An OCI image layout (image-spec v1.1 image-layout.md: `oci-layout` + `index.json`) with no
    image: containerd's importer takes it, gpuhub's check recognises it, nothing is imported."""
    members = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
               "index.json": json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                         "manifests": []}).encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zstd_frame(data: bytes) -> bytes:
    """`data` as one zstd frame of raw (stored) blocks: RFC 8878 section 3.1.1. The standard
    library compresses zstd only from Python 3.14, and CI need not have the zstd tool; a stored
    frame is valid zstd that any decoder (K3s's klauspost/compress, `zstd -d`) reads."""
    # Frame_Header_Descriptor 0xA0: Frame_Content_Size_flag 2 (4 bytes), Single_Segment_flag
    # (no Window_Descriptor; the window is the content size), no checksum, no dictionary.
    out = b"\x28\xb5\x2f\xfd" + bytes([0xA0]) + struct.pack("<I", len(data))
    block = 128 * 1024  # Block_Maximum_Size: min(Window_Size, 128 KiB)
    chunks = [data[i:i + block] for i in range(0, len(data), block)] or [b""]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        # Block_Header, 3 bytes little-endian: Last_Block (bit 0), Block_Type 0 = Raw (bits 1-2),
        # Block_Size (bits 3-23).
        out += (int(last) | (len(chunk) << 3)).to_bytes(3, "little") + chunk
    return out


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
    paths["k3s"].write_bytes(elf_program(program))
    paths["helm"].write_bytes(elf_program(program))
    shutil.copyfile(HERE / "install.sh", paths["install_script"])
    shutil.copyfile(HERE / "nvidia-smi", paths["nvidia_smi"])
    shutil.copyfile(HERE / "pci-view", paths["pci_view"])
    for key in ("k3s", "helm", "install_script", "nvidia_smi", "pci_view"):
        paths[key].chmod(0o755)
    paths["images"].write_bytes(zstd_frame(oci_layout_tar()))
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
