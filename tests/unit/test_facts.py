"""Fact parsers from recorded outputs: one data file per case (tests/data/facts/PARSER/CASE.yaml)."""
from pathlib import Path

import pytest
import yaml

from gpuhub import facts

CASES = sorted((Path(__file__).resolve().parent.parent / "data" / "facts").glob("*/*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parser_reads_recorded_output(case):
    data = yaml.safe_load(case.read_text())
    parser = getattr(facts, f"parse_{case.parent.name}")
    # Parsers of a probe over several objects take what the probe was for (release names).
    assert parser(data["output"], data["exit"], **data.get("args", {})) == data["expected"]


def test_every_probe_has_a_recorded_case_or_is_trivial():
    recorded = {p.parent.name for p in CASES}
    parsers = {getattr(probe.parse, "func", probe.parse).__name__.removeprefix("parse_") for probe in
               list(facts.host_probes().values()) + list(facts.cluster_probes("a/b", "c/d").values())}
    assert parsers - recorded <= {"text", "json", "pods"}


def test_script_and_split_round_trip():
    probes = {"one": facts.Probe("echo 1", facts.parse_text), "two": facts.Probe("false", facts.parse_text)}
    script = facts.script(probes, "@@m")
    assert script.count("@@m begin") == 2
    output = "@@m begin one\n1\n@@m end one 0\n@@m begin two\n@@m end two 1\n"
    assert facts.split(output, "@@m") == {"one": ("1\n", 0), "two": ("", 1)}


def run_script(probes: dict) -> dict:
    """The probe script in POSIX sh (dash here, as on Debian hosts), split back: probes of the
    test's own making, which touch nothing but the test's temporary folder."""
    import subprocess
    done = subprocess.run(["sh", "-c", facts.script(probes, "@@m")], capture_output=True, text=True, timeout=60)
    return facts.split(done.stdout, "@@m")


def test_probes_apart_run_at_the_same_time_and_their_outputs_never_mix(tmp_path):
    """Each `apart` probe waits for a file the next one writes: run one after the other, the
    first would give up (exit 9) before the next began. Long outputs (past a pipe's 64 KiB) stay
    whole and framed, every exit code is the probe's own, and no probe reads the script's stdin."""
    wait = "for i in $(seq 200); do [ -e {0} ] && break; sleep 0.05; done; [ -e {0} ] || exit 9"
    a, b = tmp_path / "a-started", tmp_path / "b-started"
    probes = {
        "first": facts.Probe("seq 1 100000", facts.parse_text, apart=True),
        "a": facts.Probe(f"touch {a}; {wait.format(b)}; echo waited-for-b", facts.parse_text, apart=True),
        "b": facts.Probe(f"touch {b}; {wait.format(a)}; exit 4", facts.parse_text, apart=True),
        "rest": facts.Probe("echo rest; cat; echo after-stdin", facts.parse_text),
    }
    raw = run_script(probes)
    assert raw["first"] == ("".join(f"{n}\n" for n in range(1, 100001)), 0)
    assert raw["a"] == ("waited-for-b\n", 0)
    assert raw["b"] == ("", 4)
    assert raw["rest"] == ("rest\nafter-stdin\n", 0)


def test_a_long_output_never_holds_its_probe_back_while_others_run(tmp_path):
    """The probe drained last writes past a pipe's 64 KiB, then marks that it finished; the one
    drained before it waits for that mark. Were its output waiting in the pipe, it could not
    finish before the other did, and the other would give up (exit 9)."""
    done = tmp_path / "long-done"
    probes = {
        "long": facts.Probe(f"seq 1 200000; touch {done}", facts.parse_text, apart=True),
        "waits": facts.Probe(f"for i in $(seq 200); do [ -e {done} ] && break; sleep 0.05; done; "
                             f"[ -e {done} ] || exit 9; echo saw-it", facts.parse_text, apart=True),
        "empty": facts.Probe("true", facts.parse_text, apart=True),
    }
    raw = run_script(probes)
    assert raw["waits"] == ("saw-it\n", 0)
    assert raw["long"] == ("".join(f"{n}\n" for n in range(1, 200001)), 0)
    assert raw["empty"] == ("", 0)


def test_a_first_probe_ends_before_any_other_starts(tmp_path):
    """The run lock's probe: the facts are read under it, never beside its taking."""
    mark = tmp_path / "lock-taken"
    probes = {
        "apart": facts.Probe(f"test -e {mark} && echo after", facts.parse_text, apart=True),
        "rest": facts.Probe(f"test -e {mark} && echo after", facts.parse_text),
        "lock": facts.Probe(f"sleep 0.3; touch {mark}; exit 75", facts.parse_text, first=True),
    }
    raw = run_script(probes)
    assert raw == {"lock": ("", 75), "apart": ("after\n", 0), "rest": ("after\n", 0)}


class FakeTarget:
    """Runs the probe script for real in a local shell: probes must be read-only shell."""

    def __init__(self, outputs):
        self.outputs, self.commands = outputs, []

    def run(self, command, stdin=None):
        self.commands.append(command)
        from gpuhub.target import Result
        marker = command.split("'", 2)[1].split(" ")[0]
        body = "".join(f"{marker} begin {name}\n{out}{marker} end {name} {rc}\n"
                       for name, (out, rc) in self.outputs.items())
        return Result(body, "", 0)


def test_gather_is_one_round_trip_and_missing_output_is_data():
    target = FakeTarget({"k3s_version": ("k3s version v1.33.5+k3s1 (abc)\n", 0)})
    gathered = facts.gather(target, facts.host_probes())
    assert len(target.commands) == 1
    assert gathered["k3s_version"] == "v1.33.5+k3s1"
    assert gathered["k3s_config_sha"] is None
    assert gathered["nvidia_smi"]["ok"] is False
