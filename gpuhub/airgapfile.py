"""What an airgap file is, read from its own bytes (standard library only: loading the inventory
never runs a command, and these checks run at every load, so none decompresses a large file).

Each check returns what it found (an architecture, a chart's name and version) or raises
`AirgapFileError` with what the file is instead. A message never quotes the file's bytes: a
path may name /etc/shadow, and its lines must not reach a terminal or a log.

The formats, from their sources:
- ELF (the K3s and helm binaries, both static Go executables): the ELF header, System V gABI
  "ELF Header" (also Linux `include/uapi/linux/elf.h`): `\\x7fELF`, EI_CLASS 2 = 64-bit, EI_DATA
  1 = little-endian, e_type 2 (EXEC) or 3 (DYN, a position-independent executable), e_machine at
  offset 18: 62 EM_X86_64, 183 EM_AARCH64 (`include/uapi/linux/elf-em.h`).
- Chart archives: helm v3.17.3 `pkg/chart/loader/archive.go`: `ensureArchive` wants gzip
  (`\\x1f\\x8b\\x08`, `isGZipApplication`); `LoadArchiveFiles` strips each member's first path
  component, so Chart.yaml is `ANY/Chart.yaml` (a top-level `Chart.yaml` is refused, "chart yaml
  not in base directory"), and refuses more than 100 MiB decompressed in all or 5 MiB in one
  file (`MaxDecompressedChartSize`, `MaxDecompressedFileSize`). With a local archive helm installs
  what the archive holds, whatever `--version` says: its Chart.yaml must be the pinned version.
- K3s airgap images: K3s (release-1.34 `pkg/agent/containerd/containerd.go` `preloadFile`, and
  `watcher.go` `isFileSupported`) imports each file of `agent/images/` whose name ends (case
  matters) in one of rancher/wharfie's `tarfile.SupportedExtensions` (v0.7.1
  `pkg/tarfile/tarfile.go`: .tar .tar.lz4 .tar.bz2 .tbz .tar.gz .tgz .tar.zst .tzst), opened by
  extension (`GetOpener`), through containerd's importer (`client.Import`), which takes a
  docker-archive (`manifest.json` at the top) or an OCI image layout (`index.json` + `oci-layout`).
  `.txt` (a list of images to pull) needs a registry, which an airgap has not.
"""
from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from pathlib import Path

from . import yamlfile

MiB, GiB = 1 << 20, 1 << 30
# Upper bounds, far above the real files (K3s v1.3x ~70 MiB, helm 3.17 ~55 MiB, the K3s images
# .tar ~700 MiB, a chart ~100 KiB, a toolkit .deb ~5 MiB), so that a wrong path (a disk image,
# /dev/zero through a link) is refused before anything reads or uploads it.
MAX_BYTES = {
    "k3s_binary": 512 * MiB, "helm_binary": 512 * MiB, "k3s_install_script": 1 * MiB,
    "k3s_images": 16 * GiB, "plugin_chart": 100 * MiB, "hub_chart": 100 * MiB, "cert_manager_chart": 100 * MiB,
    "toolkit_packages": 512 * MiB,
}
WHAT = {
    "k3s_binary": "the K3s binary", "helm_binary": "the helm binary", "k3s_install_script": "K3s's install script",
    "k3s_images": "K3s's airgap images tarball", "plugin_chart": "a chart archive", "hub_chart": "a chart archive",
    "cert_manager_chart": "a chart archive",
    "toolkit_packages": "a Debian package",
}

ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
# The same architectures as Debian names them (toolkit packages) and as K3s names its release
# files (k3s / k3s-arm64, k3s-airgap-images-amd64 / -arm64).
DEBIAN_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}

IMAGE_EXTENSIONS = (".tar", ".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar.zst", ".tzst")
CHART_MAX_TOTAL = 100 * MiB
CHART_MAX_FILE = 5 * MiB
HEAD = 4096


class AirgapFileError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def regular(path: Path, key: str) -> None:
    """A regular file within the key's bound (gpuhub.yamlfile's rule for the inventory itself)."""
    try:
        yamlfile.regular_file(path, WHAT[key], MAX_BYTES[key])
    except yamlfile.FileProblem as e:
        raise AirgapFileError(str(e)) from None


def _head(path: Path, size: int = HEAD) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise AirgapFileError(f"cannot read {path}: {e.strerror}") from None


def describe(head: bytes) -> str:
    """What a file looks like, by its first bytes, without quoting any of them."""
    if not head:
        return "an empty file"
    for magic, name in ((b"\x7fELF", "an ELF file"), (b"\x1f\x8b", "a gzip file"),
                        (b"\x28\xb5\x2f\xfd", "a zstd file"), (b"BZh", "a bzip2 file"),
                        (b"\x04\x22\x4d\x18", "an lz4 file"), (b"\xfd7zXZ\x00", "an xz file"),
                        (b"!<arch>\n", "an ar archive (a Debian package?)"), (b"PK\x03\x04", "a zip file"),
                        (b"#!", "a script")):
        if head.startswith(magic):
            return name
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "a tar archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a cut at the end of the sample is not proof
            return "binary data of no format gpuhub knows"
    return "a text file" if b"\x00" not in head else "binary data of no format gpuhub knows"


def elf_arch(path: Path) -> str:
    """The architecture of an ELF executable ('x86_64', 'aarch64'), else AirgapFileError."""
    head = _head(path, 64)
    if not head.startswith(b"\x7fELF"):
        raise AirgapFileError(f"{path} is {describe(_head(path))}, not an ELF executable")
    if len(head) < 20 or head[4] != 2 or head[5] != 1:
        raise AirgapFileError(f"{path} is an ELF file but not 64-bit little-endian, as x86_64 and aarch64 "
                              "executables are")
    e_type = int.from_bytes(head[16:18], "little")
    if e_type not in (2, 3):
        kind = {1: "an object file (.o)", 4: "a core dump"}.get(e_type, f"ELF type {e_type}")
        raise AirgapFileError(f"{path} is {kind}, not an executable")
    machine = int.from_bytes(head[18:20], "little")
    if machine not in ELF_MACHINES:
        raise AirgapFileError(f"{path} is an executable for ELF machine {machine}, not x86_64 (62) or "
                              "aarch64 (183), the architectures NVIDIA's container toolkit is built for")
    return ELF_MACHINES[machine]


def shell_script(path: Path) -> None:
    """A text file whose first line starts a shell (K3s's install.sh: `#!/bin/sh`)."""
    head = _head(path)
    first = head.split(b"\n", 1)[0]
    if not first.startswith(b"#!") or b"\x00" in head:
        raise AirgapFileError(f"{path} is {describe(head)}, not a shell script (no #! line)",
                              "K3s's install script: curl -sfL https://get.k3s.io -o install.sh")
    words = first[2:].split()
    shell = os.path.basename(words[0]) if words else b""
    if shell == b"env" and len(words) > 1:
        shell = words[1]
    if shell not in (b"sh", b"bash", b"dash", b"ash", b"ksh", b"zsh"):
        raise AirgapFileError(f"{path} starts with #! but not a shell's (it runs "
                              f"{shell.decode('ascii', 'replace')[:40] or 'nothing'}), not an install script")


def chart(path: Path) -> tuple:
    """(name, version) from a chart archive's Chart.yaml, read as helm reads it (module docstring)."""
    head = _head(path)
    if not head.startswith(b"\x1f\x8b\x08"):
        raise AirgapFileError(f"{path} is {describe(head)}, not a chart archive (a gzip tarball, as `helm pull` "
                              "or `helm package` writes it)")
    total = 0
    try:
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                if member.isdir() or member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                    continue
                parts = member.name.replace("\\", "/").split("/")
                if parts[0] == "Chart.yaml":
                    raise AirgapFileError(f"{path} has Chart.yaml at its top, not in the chart's folder "
                                          "(helm: chart yaml not in base directory)")
                total += member.size
                if member.size > CHART_MAX_FILE or total > CHART_MAX_TOTAL:
                    raise AirgapFileError(f"{path} holds more than helm reads from a chart ({CHART_MAX_FILE} bytes "
                                          f"a file, {CHART_MAX_TOTAL} in all)")
                if "/".join(parts[1:]) == "Chart.yaml" and member.isfile():
                    return _chart_metadata(path, archive.extractfile(member).read())
    except AirgapFileError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise AirgapFileError(f"{path} is a damaged gzip tarball ({type(e).__name__}: {e})"[:300]) from None
    raise AirgapFileError(f"{path} is a gzip tarball without NAME/Chart.yaml: not a chart archive")


def _chart_metadata(path: Path, data: bytes) -> tuple:
    try:
        meta = yamlfile.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, yamlfile.YAMLProblem) as e:
        raise AirgapFileError(f"{path}: its Chart.yaml cannot be read ({e})"[:300]) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or meta.get("version") is None:
        raise AirgapFileError(f"{path}: its Chart.yaml has no name and version")
    return meta["name"], str(meta["version"])


def images_extension(path: Path) -> str:
    name = path.name
    return next((ext for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True) if name.endswith(ext)), "")


_COMPRESSION = {  # extension: (magic, what, how to read the first tar header with the standard library)
    ".tar.gz": (b"\x1f\x8b", "gzip", "gz"), ".tgz": (b"\x1f\x8b", "gzip", "gz"),
    ".tar.bz2": (b"BZh", "bzip2", "bz2"), ".tbz": (b"BZh", "bzip2", "bz2"),
    ".tar.zst": (b"\x28\xb5\x2f\xfd", "zstd", "zst"), ".tzst": (b"\x28\xb5\x2f\xfd", "zstd", "zst"),
    ".tar.lz4": (b"\x04\x22\x4d\x18", "lz4", None),
}


def images(path: Path) -> None:
    """K3s's airgap images: a tarball K3s imports (module docstring), of the kind its name says,
    whose top holds manifest.json (docker save) or index.json + oci-layout (an OCI layout).

    An uncompressed .tar is listed whole (tarfile seeks from header to header: cheap). A
    compressed one must carry its compression's magic number; where the standard library
    decompresses it (gzip, bzip2; zstd from Python 3.14) it is listed for its first
    IMAGES_LIST_BUDGET bytes: a small wrong file (a chart, a tarball of something else) is found,
    a large one is not decompressed whole (hundreds of MB) at every load. lz4, and zstd before
    3.14, are checked by their magic number only."""
    ext = images_extension(path)
    if not ext:
        hint = ("a .txt image list needs a registry to pull from" if path.name.endswith(".txt")
                else "K3s imports only files named *" + " *".join(IMAGE_EXTENSIONS))
        raise AirgapFileError(f"{path}: K3s would not import it: its name ends in none of K3s's image "
                              "tarball extensions", hint + " (e.g. k3s-airgap-images-amd64.tar.zst from the "
                              "K3s release page)")
    head = _head(path)
    if ext == ".tar":
        if not (len(head) >= 262 and head[257:262] == b"ustar"):
            raise AirgapFileError(f"{path} is {describe(head)}, not a tar archive")
        with open(path, "rb") as raw:
            _image_members(path, raw, "r:", None)
        return
    magic, kind, how = _COMPRESSION[ext]
    if not head.startswith(magic):
        raise AirgapFileError(f"{path} is {describe(head)}, not the {kind}-compressed tarball its name says "
                              "(K3s picks the decompressor by the name)")
    opened = _decompressing(path, how)
    if opened is None:
        return
    with opened as stream:
        _image_members(path, stream, "r|", IMAGES_LIST_BUDGET, kind)


IMAGES_LIST_BUDGET = 32 * MiB  # of decompressed data: about a tenth of a second of gzip


def _decompressing(path: Path, how):
    """A reader of the decompressed file, or None where this Python has no decompressor for it."""
    if how == "gz":
        return gzip.open(path, "rb")
    if how == "bz2":
        import bz2
        return bz2.open(path, "rb")
    if how == "zst":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            return None
        return zstd.open(path, "rb")
    return None


def _image_members(path: Path, fileobj, mode: str, budget, kind: str = "") -> None:
    top = set()
    try:
        with tarfile.open(fileobj=fileobj, mode=mode) as archive:
            for member in archive:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if "/" not in name.rstrip("/"):
                    top.add(name.rstrip("/"))
                if "manifest.json" in top or {"index.json", "oci-layout"} <= top:
                    return
                if budget is not None and member.offset > budget:
                    return  # large, and a tarball so far: not decompressed further
    except tarfile.ReadError:
        raise AirgapFileError(f"{path} is {kind}-compressed, but what it holds is not a tar archive" if kind
                              else f"{path} is a damaged tar archive") from None
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
        damaged = f"is {kind}-compressed, but what it holds is damaged" if kind else "is a damaged tar archive"
        raise AirgapFileError(f"{path} {damaged} ({type(e).__name__})") from None
    raise AirgapFileError(f"{path} is a tar archive but not of container images: no manifest.json "
                          "(docker save) nor index.json + oci-layout (an OCI image layout) at its top",
                          "K3s's k3s-airgap-images-ARCH.tar.zst from its release page, or `docker save` output")


def images_arch(path: Path):
    """The architecture K3s's own images file names (k3s-airgap-images-amd64.tar.zst), or None."""
    stem = path.name[:-len(images_extension(path))] if images_extension(path) else path.name
    for debian, arch in DEBIAN_ARCH.items():
        if stem.endswith(f"-{debian}"):
            return arch
    return None

