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
