"""The JSON shapes written in the README ("JSON shapes") are what `--json` prints: each documented
example is compared, key by key and type by type, with the real output of the commands on
recorded machines (tests/data/scenarios)."""
import json
import re

import pytest

from test_cli import only_probes, run
from testdata import ROOT

OPTIONAL = {"error"}  # documented as "optional: ...": present only when it applies


def documented(kind: str):
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- json: {kind} -->\n```json\n(.*?)```", text, re.S)
    assert found, f"README.md has no JSON shape for {kind}"
    return json.loads(found.group(1))


def mismatches(actual, shape, named=("$.hosts",), where="$", pattern="$") -> list:
    """Where `actual` differs from the documented `shape`. In the objects at the `named` paths the
    keys are names (hosts; an audited host's checks): each value is compared with the documented one."""
    if isinstance(shape, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {type(actual).__name__}, documented an object"]
        if pattern in named:
            model = next(iter(shape.values()))
            return [m for key, value in actual.items()
                    for m in mismatches(value, model, named, f"{where}[{key}]", f"{pattern}[]")]
        problems = [f"{where}.{k}: not documented" for k in actual if k not in shape]
        problems += [f"{where}.{k}: documented, missing" for k in shape if k not in actual and k not in OPTIONAL]
        return problems + [m for k in actual if k in shape
                           for m in mismatches(actual[k], shape[k], named, f"{where}.{k}", f"{pattern}.{k}")]
    if isinstance(shape, list):
        if not isinstance(actual, list):
            return [f"{where}: {type(actual).__name__}, documented a list"]
        return [m for i, item in enumerate(actual) if shape
                for m in mismatches(item, shape[0], named, f"{where}[{i}]", f"{pattern}[{i}]")]
    same = (isinstance(shape, bool) == isinstance(actual, bool) and isinstance(shape, (int, float)) ==
            isinstance(actual, (int, float)) and isinstance(shape, str) == isinstance(actual, str))
    return [] if same else [f"{where}: {type(actual).__name__}, documented {type(shape).__name__}"]


@pytest.mark.parametrize("args", [("plan", "--json"), ("provision", "--plan", "--json"),
                                  ("k3s.reset", "--plan", "--json"), ("gpu.runtime", "--plan", "--json")])
def test_plans_print_the_documented_shape(args, local_machine_guard):
    result = run("inv", *args, scenario="workstation")
    assert result.returncode == 0, result.stderr
    assert mismatches(json.loads(result.stdout), documented("plan")) == []
    assert only_probes([c["command"] for c in local_machine_guard.read("local")])


def test_an_apply_prints_the_documented_shape(local_machine_guard):
    """k3s.reset on a machine without K3s: an apply with nothing to do."""
    result = run("inv", "k3s.reset", "--yes", "--json", scenario="workstation")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert mismatches(data, documented("apply")) == []
    assert data["hosts"]["localhost"]["state"] == "ok" and "RECAP" in result.stderr


def test_the_audit_prints_the_documented_shape(local_machine_guard):
    result = run("inv", "audit", "--json", scenario="workstation")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert mismatches(data, documented("audit"), named=("$.hosts", "$.hosts[]")) == []
    assert {f["ok"] for f in data["hosts"]["localhost"].values()} == {True, False}


def test_the_comparison_itself_finds_a_difference():
    shape = documented("plan")
    wrong = {"hosts": {"a": {"role": "server", "steps": [{"id": "x", "status": 1}]}}}
    assert "$.hosts[a].steps[0].status: int, documented str" in mismatches(wrong, shape)
    assert "$.hosts[a].steps[0].summary: documented, missing" in mismatches(wrong, shape)
