"""Airgap files are what their keys say, read from their own bytes when the inventory loads, and
every mistake is one message with the key path, what the file is, and what to do."""
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile

import pytest
import yaml

from gpuhub import airgapfile, inventory
from gpuhub.inventory import InventoryError
from sim import build_bundle as sim

BASE = {"hub": {"hostname": "hub.example.org", "letsencrypt_email": "a@example.org",
                "github": {"organizations": ["lab"]}},
        "hosts": {"gpu1": {"role": "server", "gpus": 1}}}


def load(tmp_path, airgap, **sections):
    data = json.loads(json.dumps(BASE))
    data["airgap"] = airgap
    for key, value in sections.items():
        data[key].update(value)
    source = tmp_path / "hosts.yaml"
    source.write_text(yaml.safe_dump(data))
    return inventory.load(str(source))


def problems(tmp_path, airgap, **sections):
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, airgap, **sections)
    return str(caught.value)


def elf(path, machine=62, klass=2, e_type=2):
    """An ELF header alone (64 bytes): enough for the check, which reads no further."""
    header = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", klass, 1, 1, 0, 0, b"", e_type, machine, 1,
                         0, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    path.write_bytes(header)
    return path.name


def tar_bytes(members: dict, compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:" + compression) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def chart(path, name="jupyterhub", version="4.4.0", top=None):
    text = f"apiVersion: v2\nname: {name}\nversion: {version}\n".encode()
    path.write_bytes(tar_bytes({f"{top or name}/Chart.yaml": text, f"{top or name}/values.yaml": b"{}\n"}, "gz"))
    return path.name


class TestTheSimulatedBundle:
    """The integration tests' bundle passes the same checks as users' real files."""

    def test_the_simulated_k3s_and_helm_are_x86_64_executables(self, tmp_path):
        if os.uname().machine != "x86_64":
            pytest.skip("the simulation's launcher is written for x86_64 only")
        path = tmp_path / "k3s"
        path.write_bytes(sim.elf_program("print('simulation')\n"))
        assert airgapfile.elf_arch(path) == "x86_64"

    def test_the_simulated_images_are_an_oci_layout_in_a_zstd_frame(self, tmp_path):
        path = tmp_path / "k3s-airgap-images-amd64.tar.zst"
        path.write_bytes(sim.zstd_frame(sim.oci_layout_tar()))
        airgapfile.images(path)
        assert airgapfile.images_arch(path) == "x86_64"
        (tmp_path / "images.tar").write_bytes(sim.oci_layout_tar())
        airgapfile.images(tmp_path / "images.tar")

    @pytest.mark.parametrize("size", [0, 5, 128 * 1024, 300 * 1024 + 7])
    def test_the_zstd_frame_is_what_a_real_decoder_reads(self, tmp_path, size):
        if not shutil.which("zstd"):
            pytest.skip("the zstd tool is not installed")
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        (tmp_path / "f.zst").write_bytes(sim.zstd_frame(data))
        out = subprocess.run(["zstd", "-dc", str(tmp_path / "f.zst")], capture_output=True, check=True)
        assert out.stdout == data

    def test_a_whole_airgap_section_of_simulated_files_loads(self, tmp_path):
        if os.uname().machine != "x86_64":
            pytest.skip("the simulation's launcher is written for x86_64 only")
        for name in ("k3s", "helm"):
            (tmp_path / name).write_bytes(sim.elf_program("pass\n"))
        shutil.copyfile(sim.HERE / "install.sh", tmp_path / "install.sh")
        (tmp_path / "k3s-airgap-images-amd64.tar.zst").write_bytes(sim.zstd_frame(sim.oci_layout_tar()))
        sim._chart(tmp_path, "nvidia-device-plugin", "0.20.0")
        sim._chart(tmp_path, "jupyterhub", "4.4.0")
        inv = load(tmp_path, {"k3s_binary": "k3s", "k3s_install_script": "install.sh", "helm_binary": "helm",
                              "k3s_images": "k3s-airgap-images-amd64.tar.zst",
                              "plugin_chart": "nvidia-device-plugin-0.20.0.tgz", "hub_chart": "jupyterhub-4.4.0.tgz"})
        assert inv.airgap_file("k3s_binary") == tmp_path / "k3s"


class TestBinaries:
    def test_a_text_file_a_32_bit_elf_an_object_file_and_arm32_are_refused(self, tmp_path):
        (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        elf(tmp_path / "elf32", klass=1)
        elf(tmp_path / "object.o", e_type=1)
        elf(tmp_path / "arm", machine=40)
        text = problems(tmp_path, {"k3s_binary": "passwd", "k3s_install_script": "passwd", "helm_binary": "elf32"})
        assert f"airgap.k3s_binary: {tmp_path / 'passwd'} is a text file, not an ELF executable (the K3s " \
               "binary of the release page" in text
        assert "airgap.helm_binary: " in text and "is an ELF file but not 64-bit little-endian" in text
        assert "root:x" not in text  # what a file holds is never quoted
        text = problems(tmp_path, {"helm_binary": "object.o"})
        assert "is an object file (.o), not an executable" in text
        text = problems(tmp_path, {"helm_binary": "arm"})
        assert "is an executable for ELF machine 40, not x86_64 (62) or aarch64 (183)" in text

    def test_binaries_for_two_architectures_are_refused(self, tmp_path):
        elf(tmp_path / "k3s", machine=62)
        elf(tmp_path / "helm", machine=183)
        (tmp_path / "install.sh").write_text("#!/bin/sh\n")
        (tmp_path / "k3s-airgap-images-arm64.tar").write_bytes(sim.oci_layout_tar())
        text = problems(tmp_path, {"k3s_binary": "k3s", "k3s_install_script": "install.sh", "helm_binary": "helm",
                                   "k3s_images": "k3s-airgap-images-arm64.tar"})
        assert f"airgap.helm_binary: {tmp_path / 'helm'} is for aarch64, but airgap.k3s_binary is for x86_64 " \
               "(every host gets the same files" in text
        assert "airgap.k3s_images: " in text and "is for aarch64, but airgap.k3s_binary is for x86_64" in text

    def test_aarch64_throughout_loads(self, tmp_path):
        elf(tmp_path / "k3s-arm64", machine=183)
        elf(tmp_path / "helm", machine=183, e_type=3)  # a position-independent executable
        (tmp_path / "install.sh").write_text("#!/usr/bin/env bash\n")
        load(tmp_path, {"k3s_binary": "k3s-arm64", "k3s_install_script": "install.sh", "helm_binary": "helm"})


class TestInstallScript:
    @pytest.mark.parametrize("content, found", [
        (b"\x7fELF\x02\x01\x01", "is an ELF file, not a shell script (no #! line)"),
        (b"echo hi\n", "is a text file, not a shell script (no #! line)"),
        (b"#!/usr/bin/python3\nprint()\n", "starts with #! but not a shell's (it runs python3)"),
        (b"", "is an empty file, not a shell script"),
    ])
    def test_what_is_not_a_shell_script(self, tmp_path, content, found):
        elf(tmp_path / "k3s")
        (tmp_path / "install.sh").write_bytes(content)
        text = problems(tmp_path, {"k3s_binary": "k3s", "k3s_install_script": "install.sh"})
        assert f"airgap.k3s_install_script: {tmp_path / 'install.sh'} {found}" in text


class TestCharts:
    def test_a_values_file_another_chart_and_another_version(self, tmp_path):
        (tmp_path / "values.yaml").write_text("hub: {}\n")
        chart(tmp_path / "jupyterhub-4.4.0.tgz")
        chart(tmp_path / "jupyterhub-3.2.1.tgz", version="3.2.1")
        text = problems(tmp_path, {"plugin_chart": "jupyterhub-4.4.0.tgz", "hub_chart": "values.yaml"})
        assert f"airgap.plugin_chart: {tmp_path / 'jupyterhub-4.4.0.tgz'} is the chart 'jupyterhub' '4.4.0', " \
               "not nvidia-device-plugin (give the nvidia-device-plugin chart archive: helm pull " in text
        assert f"airgap.hub_chart: {tmp_path / 'values.yaml'} is a text file, not a chart archive" in text
        text = problems(tmp_path, {"hub_chart": "jupyterhub-3.2.1.tgz"})
        assert "is jupyterhub '3.2.1', not hub.chart_version 4.4.0 (helm installs what the archive holds: " \
               "give jupyterhub-4.4.0.tgz, or set hub.chart_version: '3.2.1')" in text
        # ... and pinned to what the file holds, it loads
        load(tmp_path, {"hub_chart": "jupyterhub-3.2.1.tgz"}, hub={"chart_version": "3.2.1"})

    def test_cert_managers_chart_for_an_ingress_hub_is_checked_and_then_uploaded_for_helm(self, tmp_path, secrets):
        from gpuhub.inventory import CERT_MANAGER_CHART
        from gpuhub.steps import cluster
        chart(tmp_path / "cm.tgz", name="cert-manager", version=CERT_MANAGER_CHART)
        chart(tmp_path / "old.tgz", name="cert-manager", version="v1.15.0")
        text = problems(tmp_path, {"cert_manager_chart": "old.tgz"})
        assert f"is cert-manager 'v1.15.0', not hub.cert_manager.chart_version {CERT_MANAGER_CHART}" in text
        chart(tmp_path / "jupyterhub.tgz")
        assert "is the chart 'jupyterhub' '4.4.0', not cert-manager (give the cert-manager chart archive: helm pull " \
               "cert-manager --repo https://charts.jetstack.io --version VERSION)" in problems(
                   tmp_path, {"cert_manager_chart": "jupyterhub.tgz"})
        inv = load(tmp_path, {"cert_manager_chart": "cm.tgz"}, hub={"https": "ingress"})
        actions = cluster.helm_upgrade(inv, "hub.launch", "cert-manager/cert-manager", "cert_manager_chart",
                                       "https://charts.jetstack.io", CERT_MANAGER_CHART, {}, 300)
        assert actions[0].kind == "upload" and actions[0].local == tmp_path / "cm.tgz"
        assert actions[1].env["CHART"] == "/var/lib/gpuhub/work/cm.tgz" and actions[1].env["CHART_REPO"] == ""

    def test_the_chart_folder_may_have_any_name_as_for_helm(self, tmp_path):
        chart(tmp_path / "c.tgz", top="renamed")
        load(tmp_path, {"hub_chart": "c.tgz"})

    def test_what_helm_would_not_load(self, tmp_path):
        (tmp_path / "top.tgz").write_bytes(tar_bytes({"Chart.yaml": b"name: jupyterhub\nversion: 4.4.0\n"}, "gz"))
        (tmp_path / "none.tgz").write_bytes(tar_bytes({"jupyterhub/values.yaml": b"{}"}, "gz"))
        (tmp_path / "big.tgz").write_bytes(tar_bytes({"jupyterhub/big": b"\0" * (5 * 1024 * 1024 + 1)}, "gz"))
        (tmp_path / "cut.tgz").write_bytes((tmp_path / "none.tgz").read_bytes()[:30])
        (tmp_path / "noversion.tgz").write_bytes(tar_bytes({"jupyterhub/Chart.yaml": b"name: jupyterhub\n"}, "gz"))
        for name, found in [("top.tgz", "has Chart.yaml at its top, not in the chart's folder"),
                            ("none.tgz", "is a gzip tarball without NAME/Chart.yaml"),
                            ("big.tgz", "holds more than helm reads from a chart (5242880 bytes a file"),
                            ("cut.tgz", "is a damaged gzip tarball"),
                            ("noversion.tgz", ": its Chart.yaml has no name and version")]:
            assert f"airgap.hub_chart: {tmp_path / name}{'' if found[0] == ':' else ' '}{found}" in \
                problems(tmp_path, {"hub_chart": name}), name


class TestImages:
    @pytest.mark.parametrize("name, content, found", [
        ("images.txt", b"docker.io/rancher/mirrored-pause:3.6\n",
         ": K3s would not import it: its name ends in none of K3s's image tarball extensions (a .txt image list"),
        ("images.tar.xz", b"\xfd7zXZ\x00", ": K3s would not import it"),
        ("images.tar.zst", b"\x1f\x8b\x08\x00", " is a gzip file, not the zstd-compressed tarball its name says"),
        ("images.tar", b"hello\n", " is a text file, not a tar archive"),
        ("images.tar", tar_bytes({"etc/passwd": b"root:x"}), " is a tar archive but not of container images: "
         "no manifest.json (docker save) nor index.json + oci-layout"),
        ("images.tar.gz", tar_bytes({"jupyterhub/Chart.yaml": b"name: x"}, "gz"), " is a tar archive but not of "
         "container images"),
        ("images.tar.gz", __import__("gzip").compress(b"just text\n" * 100), " is gzip-compressed, but what it "
         "holds is not a tar archive"),
        ("images.tar.bz2", b"BZh9garbage", " is bzip2-compressed, but what it holds is damaged"),
    ])
    def test_what_k3s_would_not_import(self, tmp_path, name, content, found):
        (tmp_path / name).write_bytes(content)
        assert f"airgap.k3s_images: {tmp_path / name}{found}" in problems(tmp_path, {"k3s_images": name})

    @pytest.mark.parametrize("name, members, compression", [
        ("k3s-airgap-images-amd64.tar", {"manifest.json": b"[]", "repositories": b"{}"}, ""),
        ("docker-save.tar.gz", {"blobs/sha256/aa": b"", "index.json": b"{}", "manifest.json": b"[]",
                                "oci-layout": b"{}"}, "gz"),
        ("images.tgz", {"./oci-layout": b"{}", "./index.json": b"{}"}, "gz"),
        ("images.tbz", {"manifest.json": b"[]"}, "bz2"),
    ])
    def test_image_archives_load(self, tmp_path, name, members, compression):
        (tmp_path / name).write_bytes(tar_bytes(members, compression))
        load(tmp_path, {"k3s_images": name})


    def test_a_large_compressed_tarball_is_listed_for_its_start_only(self, tmp_path, monkeypatch):
        """Listing all of a compressed tarball means decompressing all of it at every load: past
        the budget, a tarball that has shown no manifest yet is taken as it is."""
        monkeypatch.setattr(airgapfile, "IMAGES_LIST_BUDGET", 4096)
        members = {f"blobs/sha256/{i:064x}": b"x" * 1024 for i in range(8)}
        (tmp_path / "images.tar.gz").write_bytes(tar_bytes(dict(members, **{"manifest.json": b"[]"}), "gz"))
        load(tmp_path, {"k3s_images": "images.tar.gz"})
        (tmp_path / "small.tar.gz").write_bytes(tar_bytes({"blobs/sha256/a": b"x"}, "gz"))
        assert "is a tar archive but not of container images" in problems(tmp_path, {"k3s_images": "small.tar.gz"})


class TestNotRegularFiles:
    """A path to a device, a pipe, a folder, a huge file, or a file only root may read, is refused
    before any byte of it is read (the inventory's own rule, gpuhub.yamlfile.regular_file)."""

    def test_devices_pipes_folders_and_links_to_them(self, tmp_path):
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "folder").mkdir()
        (tmp_path / "zero").symlink_to("/dev/zero")
        text = problems(tmp_path, {"k3s_binary": "zero", "k3s_install_script": "fifo", "helm_binary": "folder",
                                   "toolkit_packages": ["/dev/null"], "k3s_images": "gone.tar"})
        assert f"airgap.k3s_binary: {tmp_path / 'zero'} is not a regular file (a device or a pipe?), not the " \
               "K3s binary" in text
        assert f"airgap.k3s_install_script: {tmp_path / 'fifo'} is not a regular file" in text
        assert f"airgap.helm_binary: {tmp_path / 'folder'} is a folder, not the helm binary" in text
        assert "airgap.toolkit_packages[0]: /dev/null is not a regular file (a device or a pipe?), not a Debian " \
               "package" in text
        assert f"airgap.k3s_images: cannot read {tmp_path / 'gone.tar'}: No such file or directory (paths are " \
               "relative to the inventory file)" in text

    def test_a_file_over_its_bound(self, tmp_path, monkeypatch):
        monkeypatch.setitem(airgapfile.MAX_BYTES, "k3s_install_script", 10)
        elf(tmp_path / "k3s")
        (tmp_path / "install.sh").write_text("#!/bin/sh\n# more than ten bytes\n")
        assert f"airgap.k3s_install_script: {tmp_path / 'install.sh'} is 32 bytes: more than 10 is not K3s's " \
               "install script" in problems(tmp_path, {"k3s_binary": "k3s", "k3s_install_script": "install.sh"})

    def test_system_files_by_path_by_link_and_by_dot_dot(self, tmp_path):
        (tmp_path / "passwd").symlink_to("/etc/passwd")
        up = "../" * len(tmp_path.parts) + "etc/passwd"
        text = problems(tmp_path, {"k3s_binary": "/etc/shadow", "k3s_install_script": "passwd", "helm_binary": up})
        if os.geteuid() == 0:
            assert "airgap.k3s_binary: /etc/shadow is a text file, not an ELF executable" in text
        else:
            assert "airgap.k3s_binary: cannot read /etc/shadow: Permission denied" in text
        assert f"airgap.k3s_install_script: {tmp_path / 'passwd'} is a text file, not a shell script" in text
        assert "airgap.helm_binary: " in text and "etc/passwd is a text file, not an ELF executable" in text
        assert "root:" not in text
