"""Inventory validation: every bad input names its key path and a hint; good ones load."""
import os
import re
from pathlib import Path

import pytest

from gpuhub import inventory
from gpuhub.inventory import InventoryError

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories"
BAD = sorted((DATA / "bad").glob("*.yaml"))


def expectations(path: Path):
    return re.findall(r"^# expect: (.*)$", path.read_text(errors="replace"), re.MULTILINE)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_inventory_names_each_problem(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(InventoryError) as caught:
        inventory.load(str(path))
    message = str(caught.value)
    for line in expected:
        assert line in message, f"expected {line!r} in:\n{message}"


def test_all_problems_are_reported_together():
    with pytest.raises(InventoryError) as caught:
        inventory.load(str(DATA / "bad" / "bad-github-image.yaml"))
    assert len(caught.value.problems) == 4


def test_shipped_example_and_good_inventories_load():
    from testdata import good_inventories
    for path in good_inventories():
        inv = inventory.load(str(path))
        assert inv.server.role == "server"


def test_defaults_are_filled_in():
    inv = inventory.load(str(DATA / "good" / "seed.yaml"))
    assert inv.cluster["k3s_version"] == inventory.K3S_VERSION
    assert inv.hub["chart_version"] == "4.4.0"
    assert inv.gpu["runtime"] == "runtimeclass"
    host = inv.hosts["workstation"]
    assert (host.replicas, host.gpu_resource, host.allocatable) == (8, "nvidia.com/gpu.shared", 8)


def test_per_host_replicas_and_order():
    inv = inventory.load(str(DATA / "good" / "multi-node.yaml"))
    assert [h.name for h in inv.ordered_hosts()] == ["head", "a100", "rtx1", "rtx2"]
    assert inv.hosts["rtx1"].allocatable == 12
    assert inv.hosts["rtx2"].replicas == 4  # gpu.replicas
    assert inv.hosts["a100"].gpu_resource == "nvidia.com/gpu"
    assert inv.hosts["head"].gpu_resource is None


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(InventoryError, match=r"cannot read .*nope.yaml.*--inventory FILE"):
        inventory.load(str(tmp_path / "nope.yaml"))


def test_inventory_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUHUB_INVENTORY", str(tmp_path / "site.yaml"))
    assert inventory.inventory_path() == tmp_path / "site.yaml"
    assert inventory.inventory_path("other.yaml") == Path("other.yaml")


def test_unknown_host_lookup_names_known_ones():
    inv = inventory.load(str(DATA / "good" / "multi-node.yaml"))
    with pytest.raises(InventoryError, match="no host named 'gpu7'.*known hosts: head, a100, rtx1, rtx2"):
        inv.host("gpu7")


class TestSecrets:
    def _clear(self, monkeypatch):
        for variable in inventory.SECRET_ENV.values():
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv("GPUHUB_SECRETS", raising=False)

    def test_from_environment_and_masked(self, monkeypatch, tmp_path):
        self._clear(monkeypatch)
        monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "id-123")
        monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_SECRET", "very-secret")
        secrets = inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        secret = secrets.require("github_client_secret")["github_client_secret"]
        assert secret.reveal() == "very-secret"
        assert str(secret) == f"{secret}" == repr(secret) == "***"
        assert "very-secret" not in repr(secrets) and "***" in repr(secrets)

    @pytest.mark.parametrize("text, shown", [
        ("github_client_secret: 1234567890123\n", "expected text, got ***"),
        ("github_client_secret: \"ab{your-secret}cd\"\n", "placeholder text left in: ***"),
    ])
    def test_a_bad_secret_is_never_echoed(self, monkeypatch, tmp_path, text, shown):
        self._clear(monkeypatch)
        file = tmp_path / "secrets.yaml"
        file.write_text(text)
        os.chmod(file, 0o600)
        with pytest.raises(InventoryError) as raised:
            inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        assert shown in str(raised.value)
        assert "1234567890123" not in str(raised.value) and "your-secret" not in str(raised.value)

    def test_file_beside_inventory_must_be_0600(self, monkeypatch, tmp_path):
        self._clear(monkeypatch)
        file = tmp_path / "secrets.yaml"
        file.write_text("github_client_id: abc\ngithub_client_secret: def\n")
        os.chmod(file, 0o644)
        with pytest.raises(InventoryError, match=r"mode 0644 lets other users read.*chmod 600"):
            inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        os.chmod(file, 0o600)
        secrets = inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        assert secrets.get("github_client_id") == "abc"
        assert secrets.origin["github_client_secret"] == str(file)

    def test_environment_wins_over_file(self, monkeypatch, tmp_path):
        self._clear(monkeypatch)
        file = tmp_path / "s.yaml"
        file.write_text("github_client_id: from-file\n")
        os.chmod(file, 0o600)
        monkeypatch.setenv("GPUHUB_SECRETS", str(file))
        monkeypatch.setenv("GPUHUB_GITHUB_CLIENT_ID", "from-env")
        assert inventory.load_secrets().get("github_client_id") == "from-env"

    def test_unknown_key_in_secrets_file(self, monkeypatch, tmp_path):
        self._clear(monkeypatch)
        file = tmp_path / "secrets.yaml"
        file.write_text("github_client_secrt: x\n")
        os.chmod(file, 0o600)
        with pytest.raises(InventoryError, match="secrets.github_client_secrt: unknown key .did you mean 'github_client_secret'"):
            inventory.load_secrets(str(tmp_path / "hosts.yaml"))

    def test_missing_secret_names_the_variables(self, monkeypatch, tmp_path):
        self._clear(monkeypatch)
        secrets = inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        with pytest.raises(InventoryError, match="set GPUHUB_GITHUB_CLIENT_ID and GPUHUB_GITHUB_CLIENT_SECRET"):
            secrets.require("github_client_id", "github_client_secret")
