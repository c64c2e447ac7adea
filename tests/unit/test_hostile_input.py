"""Hostile and mistaken input: every one is a message, never a traceback, within bounds."""
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuhub import inventory
from gpuhub.inventory import InventoryError
from testdata import DATA, load_inventory

GOOD = (DATA / "inventories" / "good" / "seed.yaml").read_text()


def problems_of(path):
    with pytest.raises(InventoryError) as caught:
        inventory.load(str(path))
    return str(caught.value)


def test_a_device_a_folder_and_a_huge_file_are_not_read(tmp_path):
    assert "/dev/zero is not a regular file" in problems_of("/dev/zero")
    assert "is a folder, not an inventory" in problems_of(tmp_path)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# x\n" * 300_000)
    assert "bytes: more than 1048576 is not an inventory" in problems_of(huge)


def test_deep_nesting_is_refused_quickly(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("hosts: " + "[" * 100_000 + "]" * 100_000 + "\n")
    started = time.monotonic()
    assert "nested more than 32 levels deep" in problems_of(deep)
    assert time.monotonic() - started < 5


def test_a_long_value_is_quoted_by_its_start_and_length():
    with pytest.raises(InventoryError) as caught:
        load_inventory(hub__hostname="x" * 50_000_000 + ".org!")
    message = str(caught.value)
    assert "... (50000005 characters)" in message and len(message) < 2000


@pytest.mark.parametrize("given, variable", [("", None), (None, "")])
def test_an_empty_inventory_path_is_an_error_not_the_shipped_example(monkeypatch, given, variable):
    if variable is None:
        monkeypatch.delenv("GPUHUB_INVENTORY", raising=False)
    else:
        monkeypatch.setenv("GPUHUB_INVENTORY", variable)
    with pytest.raises(InventoryError, match="empty"):
        inventory.load(given)


class TestSecretsFiles:
    def test_a_named_secrets_file_must_exist(self, monkeypatch, tmp_path):
        monkeypatch.setenv("GPUHUB_SECRETS", str(tmp_path / "nope.yaml"))
        with pytest.raises(InventoryError, match=r"GPUHUB_SECRETS: names .*nope.yaml, which does not exist"):
            inventory.load_secrets()

    def test_a_dangling_link_and_a_folder_are_errors(self, monkeypatch, tmp_path):
        monkeypatch.delenv("GPUHUB_SECRETS", raising=False)
        (tmp_path / "hosts.yaml").write_text(GOOD)
        (tmp_path / "secrets.yaml").symlink_to(tmp_path / "gone.yaml")
        with pytest.raises(InventoryError, match="is a link to nothing"):
            inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        (tmp_path / "secrets.yaml").unlink()
        (tmp_path / "secrets.yaml").mkdir()
        with pytest.raises(InventoryError, match="is not a file") as caught:
            inventory.load_secrets(str(tmp_path / "hosts.yaml"))
        assert "chmod" not in str(caught.value)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_any_bytes_give_an_inventory_or_problems(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "hosts.yaml"
    path.write_bytes(data)
    try:
        inventory.load(str(path))
    except InventoryError as e:
        assert len(str(e)) < 20_000


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["cluster", "gpu", "hub", "hosts", "airgap", "other"]), yaml_values, max_size=5))
def test_any_yaml_document_gives_an_inventory_or_problems(data):
    try:
        inventory.parse(data)
    except InventoryError as e:
        assert len(str(e)) < 20_000


def _leaves(spec, path=""):
    """Every key path of the inventory schema, a host's name as hosts.*."""
    from gpuhub.schema import ListOf, ListOrSection, MapOf, Section, TextOrSection
    if isinstance(spec, Section):
        for key, field in spec.fields.items():
            yield from _leaves(field, f"{path}.{key}" if path else key)
    elif isinstance(spec, ListOrSection):  # both forms (hub.profiles: a list or a mapping)
        yield from _leaves(spec.listed, path)
        yield from _leaves(spec.section, path)
    elif isinstance(spec, ListOf) and isinstance(spec.item, (Section, TextOrSection)):
        yield from _leaves(spec.item, f"{path}[0]")
    elif isinstance(spec, TextOrSection):
        yield from _leaves(spec.section, path)
    elif isinstance(spec, MapOf):
        yield f"{path}.*"
        yield from _leaves(spec.item, f"{path}.*")
    else:
        yield path


def _general(path: str) -> str:
    """hosts.gpu1.role -> hosts.*.role, hub.profiles.cpu.image -> hub.profiles.*.image, [2] dropped."""
    path = re.sub(r"\[\d+\]", "", path)
    path = re.sub(r"^hosts\.[^.]+", "hosts.*", path)
    path = re.sub(r"^hub\.environment\.[^.]+", "hub.environment.*", path)
    path = re.sub(r"^cluster\.k3s_extra_config\.[^.]+", "cluster.k3s_extra_config.*", path)
    return re.sub(r"^hub\.profiles\.[^.]+", "hub.profiles.*", path)


def test_the_corpus_is_large_and_covers_every_field_of_the_schema():
    """At least 40 bad inventories, and every key of the schema is the path of an expected
    message in one of them (issue 11: every field that reaches a shell, a path, a name, a
    template or a URL)."""
    corpus = sorted((DATA / "inventories" / "bad").glob("*.yaml"))
    assert len(corpus) >= 40
    covered = {_general(re.split(r":(?: |$)", line, maxsplit=1)[0])
               for path in corpus
               for line in re.findall(r"^# expect: (.*)$", path.read_text(errors="replace"), re.MULTILINE)}
    missing = sorted({_general(p) for p in _leaves(inventory.INVENTORY)} - covered)
    assert not missing, f"no bad inventory expects a message about: {', '.join(missing)}"


def test_profile_texts_in_any_script_and_with_punctuation_are_fine():
    inv = load_inventory(hub__profiles={"cpu": {"display_name": "Nur CPU – für alle (日本語 OK)",
                                                "description": "Ohne GPU: 2 Kerne, 8 GB; \"Zitate\" sind ok."}})
    assert inv.hub["profiles"]["cpu"]["display_name"].startswith("Nur CPU")
