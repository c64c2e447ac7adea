"""`init`'s starter inventory (gpuhub/starter.py) from given facts, and the PCI ID lookup over
recorded excerpts of pci.ids (tests/data/pci_ids). Nothing here reads this machine: facts are
given, or come from a fake target."""
import re
import subprocess

import pytest
import yaml

from gpuhub import facts, inventory, starter
from gpuhub.target import Result
from testdata import DATA

PCI_IDS = DATA / "pci_ids"
H200 = {"slot": "0000:18:00.0", "device": "0x2335", "class": "0x030200"}
RTX4090 = {"slot": "0000:65:00.0", "device": "0x2684", "class": "0x030000"}
NAMES = {"file": "/usr/share/misc/pci.ids", "version": "2026.08.22",
         "names": {"0x2335": "GH100 [H200 SXM 141GB]", "0x2684": "AD102 [GeForce RTX 4090]"}}
NO_NAMES = {"file": None, "version": None, "names": {}}
# What only the site knows, as a user fills it in.
FILLED = {"<hub.your-lab.example.org>": "hub.lab.example.org", "<you@your-lab.example.org>": "admin@lab.example.org",
          "<your-github-org>": "example-lab", "<your-github-login>": "example-admin",
          "<this-machine>": "gpu-ws1"}
PLACEHOLDER_PATHS = {"hub.hostname", "hub.letsencrypt_email", "hub.github.organizations[0]", "hub.admin_users[0]"}


def problems_of(path):
    with pytest.raises(inventory.InventoryError) as error:
        inventory.load(str(path))
    return error.value.problems


def starter_file(tmp_path, machine, name="hosts.yaml"):
    path = tmp_path / name
    starter.write_new(path, starter.text(machine))
    return path


def filled_in(path):
    text = path.read_text()
    for placeholder, value in FILLED.items():
        text = text.replace(placeholder, value)
    path.write_text(text)
    return inventory.load(str(path))


# --- the PCI ID database: the probe's awk over recorded excerpts of pci.ids -----------------

def probe_over(devices, *files):
    """The probe's own shell command, run over test data files in place of the host's pci.ids."""
    probe = facts.pci_names_probe(devices, files=tuple(str(f) for f in files))
    result = subprocess.run(["sh", "-c", probe.command], capture_output=True, text=True, timeout=30)
    return probe.parse(result.stdout, result.returncode)


def test_models_come_from_nvidias_section_only():
    found = probe_over(["0x2335", "0x2330", "0x2684", "0x22ba"], PCI_IDS / "current.ids")
    assert found["names"] == {"0x2335": "GH100 [H200 SXM 141GB]", "0x2330": "GH100 [H100 SXM5 80GB]",
                              "0x2684": "AD102 [GeForce RTX 4090]",
                              "0x22ba": "AD102 High Definition Audio Controller"}
    assert found["version"] == "2026.08.22" and found["file"].endswith("current.ids")


def test_an_id_another_vendor_uses_is_not_taken_for_an_nvidia_model():
    """Debian 12's pci.ids has no 10de 2335 (the H200) yet, but Intel's 2335: no name, never Intel's."""
    found = probe_over(["0x2335", "0x2330"], PCI_IDS / "debian-12.ids")
    assert found["names"] == {"0x2330": "GH100[H100 SXM5 80GB]"} and found["version"] == "2023.04.10"
    machine = starter.machine("gpu-ws1", [H200], found)
    assert machine.gpus[0]["model"] == "NVIDIA device 0x2335"


def test_subsystem_lines_and_unlisted_devices_are_not_names():
    found = probe_over(["0x147d", "0x0fe7"], PCI_IDS / "current.ids")
    assert found["names"] == {"0x0fe7": "GK107GL [GRID K100 vGPU]"}  # 147d is a subsystem (two tabs)


def test_the_first_readable_database_is_read_and_none_is_data(tmp_path):
    found = probe_over(["0x2335"], tmp_path / "missing.ids", PCI_IDS / "current.ids", PCI_IDS / "debian-12.ids")
    assert found["file"] == str(PCI_IDS / "current.ids")
    assert probe_over(["0x2335"], tmp_path / "missing.ids") == NO_NAMES


def test_only_ids_shaped_as_sysfs_prints_them_reach_the_shell():
    command = facts.pci_names_probe(["0x2335", "0x2335", "0x2684; rm -rf /", "$(reboot)", "0X22BA"]).command
    assert "ids='22ba 2335'" in command
    assert "rm -rf" not in command and "reboot" not in command


# --- the host's name --------------------------------------------------------------------------

@pytest.mark.parametrize("said, name", [
    ("gpu-ws1", "gpu-ws1"), ("GPU-WS1.lab.example.org", "gpu-ws1"), ("lab_ws_3", "lab-ws-3"),
    ("-ws-", "ws"), ("no", "no"), ("1234", "1234"), ("a" * 80, "a" * 63),
    ("localhost", None), ("localhost.localdomain", None), ("", None), (None, None), ("___", None),
    ("ü", None),
])
def test_the_machine_name_becomes_a_host_name_or_nothing(said, name):
    assert starter.host_name(said) == name


# --- the starter text -------------------------------------------------------------------------

def test_the_starter_is_yaml_refused_for_exactly_its_placeholders_then_loads(tmp_path):
    path = starter_file(tmp_path, starter.machine("gpu-ws1.lab.example.org", [H200, RTX4090], NAMES))
    data = yaml.safe_load(path.read_text())
    assert data["hosts"] == {"gpu-ws1": {"role": "server", "local": True, "gpus": 2, "sharing": "timeslice"}}
    problems = problems_of(path)
    assert {p.path for p in problems} == PLACEHOLDER_PATHS and len(problems) == len(PLACEHOLDER_PATHS)
    assert all("placeholder text left in" in p.message for p in problems)
    loaded = filled_in(path)
    host = loaded.hosts["gpu-ws1"]
    assert (host.role, host.gpus, host.sharing, host.local) == ("server", 2, "timeslice", True)
    assert loaded.hub["hostname"] == "hub.lab.example.org" and loaded.local_host is host
    assert loaded.cluster["k3s_version"] == inventory.K3S_VERSION


def test_each_gpu_is_a_comment_with_its_slot_and_model(tmp_path):
    text = starter.text(starter.machine("gpu-ws1", [H200, RTX4090], NAMES))
    lines = [line.strip() for line in text.splitlines()]
    assert "#   0000:18:00.0  GH100 [H200 SXM 141GB]  (10de:2335)" in lines
    assert "#   0000:65:00.0  AD102 [GeForce RTX 4090]  (10de:2684)" in lines
    assert any("models from /usr/share/misc/pci.ids (version 2026.08.22)" in line for line in lines)
    assert any(line.startswith("# none: whole GPUs") for line in lines)


def test_without_a_pci_id_database_the_models_are_device_ids(tmp_path):
    text = starter.text(starter.machine("gpu-ws1", [H200], NO_NAMES))
    assert "#   0000:18:00.0  NVIDIA device 0x2335  (10de:2335)" in [line.strip() for line in text.splitlines()]
    assert "apt install pci.ids" in text


def test_no_gpu_is_still_a_valid_starter(tmp_path):
    path = starter_file(tmp_path, starter.machine("cpu-box", [], NO_NAMES))
    assert "# No NVIDIA GPU was found on this machine's PCI bus" in path.read_text()
    assert {p.path for p in problems_of(path)} == PLACEHOLDER_PATHS
    assert filled_in(path).hosts["cpu-box"].gpus == 0


def test_a_machine_without_a_usable_name_gets_a_placeholder_name(tmp_path):
    path = starter_file(tmp_path, starter.machine("localhost", [H200], NAMES))
    assert "uname -n said 'localhost'" in path.read_text()
    problems = problems_of(path)
    assert {p.path for p in problems} == PLACEHOLDER_PATHS | {"hosts.<this-machine>"}
    assert starter.placeholder_fields(starter.machine("localhost", [], NO_NAMES))[-1] == "hosts.<this-machine>"
    assert filled_in(path).hosts["gpu-ws1"].gpus == 1


def test_a_host_name_yaml_would_misread_is_quoted(tmp_path):
    """`no` and `1234` are DNS labels; unquoted, YAML would read them as false and a number."""
    for said in ("no", "1234"):
        path = starter_file(tmp_path, starter.machine(said, [], NO_NAMES), name=f"{said}.yaml")
        assert list(filled_in(path).hosts) == [said]


def test_what_the_machine_says_stays_on_its_comment_line():
    text = starter.text(starter.machine("gpu-ws1\n  evil: 1", [dict(H200, slot="0000:18:00.0\nx: 1")],
                                        {"file": "/p\n", "version": None, "names": {"0x2335": "GH100\r\nhub: 1"}}))
    data = yaml.safe_load(text)
    assert set(data) == {"cluster", "gpu", "hub", "hosts"} and "x" not in data["hosts"]["gpu-ws1-evil-1"]


# --- facts from the machine: read as the login user, two reads ---------------------------------

class LoginTarget:
    """Answers gather's script from given outputs; anything run as root fails the test."""

    def __init__(self, outputs):
        self.outputs, self.commands = outputs, []

    def run(self, command, stdin=None, timeout=None):
        raise AssertionError("init must not need root")

    def run_as_login(self, command, timeout=None):
        self.commands.append(command)
        marker = command.split("'", 2)[1].split(" ")[0]
        names = re.findall(rf"echo '{marker} begin (\w+)'", command)
        body = "".join(f"{marker} begin {n}\n{self.outputs[n][0]}{marker} end {n} {self.outputs[n][1]}\n"
                       for n in names if n in self.outputs)
        return Result(body, "", 0)


PCI_LISTING = ("0000:00:00.0 0x8086 0x09a2 0x060000\n0000:18:00.0 0x10de 0x2335 0x030200\n"
               "0000:18:00.1 0x10de 0x22ba 0x040300\n")


def test_read_machine_asks_the_database_only_for_the_gpus_found():
    target = LoginTarget({"hostname": ("gpu-ws1\n", 0), "pci_gpus": (PCI_LISTING, 0),
                          "pci_names": ("file /usr/share/misc/pci.ids\n\t2335  GH100 [H200 SXM 141GB]\n", 0)})
    machine = starter.read_machine(target)
    assert machine.name == "gpu-ws1" and machine.pci_ids == "/usr/share/misc/pci.ids"
    assert machine.gpus == [{"slot": "0000:18:00.0", "device": "0x2335", "model": "GH100 [H200 SXM 141GB]"}]
    assert len(target.commands) == 2 and "ids=2335 " in target.commands[1]  # not the audio function's 22ba


def test_read_machine_without_gpus_reads_once():
    target = LoginTarget({"hostname": ("", 1), "pci_gpus": ("", 0)})
    machine = starter.read_machine(target)
    assert (machine.name, machine.gpus, len(target.commands)) == (None, [], 1)


# --- the file: never over anything ---------------------------------------------------------

def test_an_existing_file_link_or_folder_is_never_replaced(tmp_path):
    kept = tmp_path / "hosts.yaml"
    kept.write_text("mine\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    for name in ("hosts.yaml", "dangling", "folder"):
        with pytest.raises(starter.InitError, match=f"{name} exists.*never overwrites"):
            starter.out_path(str(tmp_path / name))
        with pytest.raises(starter.InitError, match=f"{name} exists"):
            starter.write_new(tmp_path / name, "new\n")
    assert kept.read_text() == "mine\n" and not (tmp_path / "nowhere").exists()


def test_a_new_file_is_written_whole_and_a_missing_folder_is_named(tmp_path):
    starter.write_new(tmp_path / "new.yaml", "text\n")
    assert (tmp_path / "new.yaml").read_text() == "text\n"
    with pytest.raises(starter.InitError, match="the folder .*missing does not exist"):
        starter.write_new(tmp_path / "missing" / "hosts.yaml", "text\n")
    with pytest.raises(starter.InitError, match="--out is given but empty"):
        starter.out_path("  ")
