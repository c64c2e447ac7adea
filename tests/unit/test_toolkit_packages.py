"""The airgap toolkit is four packages: loading the inventory reads each .deb's control data and
names what is missing or at another version, before anything reaches a host."""
import importlib.util
import io
import tarfile

import pytest
import yaml

from gpuhub import debfile, inventory
from gpuhub.inventory import InventoryError

VERSION = "1.17.8-1"
FOUR = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1")


def deb(path, package, version=VERSION, member="control.tar.gz"):
    """A .deb as deb(5) lays it out (ar: debian-binary, control.tar.*, data.tar.*), control only."""
    control = f"Package: {package}\nVersion: {version}\nArchitecture: amd64\nDescription: test\n one line\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if member.endswith(".gz") else "w") as archive:
        info = tarfile.TarInfo("./control")
        info.size = len(control)
        archive.addfile(info, io.BytesIO(control))
    members = [("debian-binary", b"2.0\n"), (member, buffer.getvalue()), ("data.tar.gz", b"")]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + b"\n" * (len(data) % 2)
    path.write_bytes(out)
    return path


def load(tmp_path, files):
    data = {"hub": {"hostname": "hub.example.org", "letsencrypt_email": "a@example.org",
                    "github": {"organizations": ["lab"]}},
            "hosts": {"gpu1": {"role": "server", "gpus": 1}},
            "airgap": {"toolkit_packages": [p.name for p in files]}}
    source = tmp_path / "hosts.yaml"
    source.write_text(yaml.safe_dump(data))
    return inventory.load(str(source))


def test_the_four_packages_at_the_pinned_version_load(tmp_path):
    files = [deb(tmp_path / f"{name}_{VERSION}_amd64.deb", name) for name in FOUR]
    assert load(tmp_path, files).airgap["toolkit_packages"] == [p.name for p in files]


def test_a_missing_package_is_named_before_anything_is_uploaded(tmp_path):
    """Today's single-package bundle: nvidia-container-toolkit alone, whose Depends dpkg refuses."""
    files = [deb(tmp_path / "nvidia-container-toolkit_1.17.8-1_amd64.deb", "nvidia-container-toolkit")]
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, files)
    text = str(caught.value)
    for name in FOUR[1:]:
        assert f"airgap.toolkit_packages: {name} 1.17.8-1 is missing" in text
    assert "nvidia-container-toolkit 1.17.8-1 is missing" not in text


def test_another_version_and_an_unreadable_file_are_named(tmp_path):
    files = [deb(tmp_path / "a.deb", FOUR[0]), deb(tmp_path / "b.deb", FOUR[1]),
             deb(tmp_path / "c.deb", FOUR[2], version="1.17.7-1"),
             deb(tmp_path / "d.deb", FOUR[3], member="control.tar.zst")]
    (tmp_path / "e.deb").write_text("not a package\n")
    files.append(tmp_path / "e.deb")
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, files)
    text = str(caught.value)
    assert f"airgap.toolkit_packages[2]: {tmp_path / 'c.deb'} is libnvidia-container-tools 1.17.7-1, " \
           "not gpu.toolkit_version 1.17.8-1" in text
    if importlib.util.find_spec("compression") is None:  # zstd is the standard library's from Python 3.14
        assert f"airgap.toolkit_packages[3]: {tmp_path / 'd.deb'}: its control member is zstd-compressed" in text
    assert f"airgap.toolkit_packages[4]: {tmp_path / 'e.deb'}: not a Debian package" in text


def test_control_fields_of_a_real_dpkg_deb(tmp_path):
    """dpkg-deb's own archive (the simulated bundle's), when dpkg-deb is here."""
    import shutil
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    from sim.build_bundle import toolkit_debs
    fields = [debfile.control(p) for p in toolkit_debs(tmp_path)]
    assert [f["Package"] for f in fields] == ["libnvidia-container1", "libnvidia-container-tools",
                                              "nvidia-container-toolkit-base", "nvidia-container-toolkit"]
    assert fields[3]["Depends"] == ("nvidia-container-toolkit-base (= 1.17.8-1), libnvidia-container-tools "
                                    "(>= 1.17.8-1), libnvidia-container-tools (<< 2.0.0)")
