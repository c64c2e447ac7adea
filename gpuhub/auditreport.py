"""The audit's findings as people read them (one line per failed check, a summary per host) and
as programs read them (JSON). Pure functions of {host: {check: Finding}}; tests/audit calls them
when `inv audit` / `fab audit` run it (plain `pytest tests/audit` keeps pytest's own output)."""
from __future__ import annotations

import json


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def failure_line(host: str, finding) -> str:
    """host, check, what is wrong, the fix: on one line."""
    line = f"FAIL {host} {finding.check}: {_one_line(finding.message)}"
    return line + (f"; fix: {_one_line(finding.fix)}" if finding.fix else "")


def summary_line(host: str, found: dict) -> str:
    failed = [c for c, finding in found.items() if not finding.ok]
    return (f"{host:<16} {len(found) - len(failed)} ok, {len(failed)} failed"
            + (f": {', '.join(failed)}" if failed else ""))


def report_lines(findings: dict, verbose: bool = False, notes=()) -> list:
    """The failures, then one summary line per host. `verbose`: every check, with its evidence."""
    lines = [f"note: {note}" for note in notes]
    for host, found in findings.items():
        for finding in found.values():
            if not finding.ok:
                lines.append(failure_line(host, finding))
            elif verbose:
                lines.append(f"ok   {host} {finding.check}: {_one_line(finding.message)}")
            if verbose and finding.evidence:
                lines.append(f"       evidence: {_one_line(finding.evidence)}")
    if findings:
        lines.append("")
    lines += [summary_line(host, found) for host, found in findings.items()]
    return lines


def finding_json(finding) -> dict:
    return {"ok": finding.ok, "message": finding.message, "evidence": finding.evidence, "fix": finding.fix}


def as_json(findings: dict) -> dict:
    """{"hosts": {HOST: {CHECK: {"ok", "message", "evidence", "fix"}}}} (README, "JSON shapes")."""
    return {"hosts": {host: {check: finding_json(x) for check, x in found.items()}
                      for host, found in findings.items()}}


def dumps(findings: dict) -> str:
    return json.dumps(as_json(findings), indent=2)
