"""The `security` stage: bandit on the project's code, pip-audit on the locked environment.

Both run as tools (the `pipeline` extra installs them) with JSON output, so the stage reports
the first finding by name, place and severity rather than a wall of text; the full reports
go into the stage's log.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipway.errors import DependencyError
from shipway.pipeline.spec import SecurityOptions

__all__ = ["scan"]

SEVERITIES = ("low", "medium", "high")
EXCLUDED = (".venv", "venv", ".git", "node_modules", ".tox", "build", "dist")


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DependencyError(
            f"The security stage needs {package}, which is not installed.",
            "Install it with `pip install 'shipway[pipeline]'`.",
        )


def scan(
    o: SecurityOptions,
    directory: Path,
    sh: Callable[[list[str]], int],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    checks = [_bandit(o, directory, sh, say)]
    if o.audit:
        checks.append(_audit(o, directory, sh, say))
    return checks


def _bandit(
    o: SecurityOptions, directory: Path, sh: Callable[[list[str]], int], say: Callable[[str], None]
) -> dict[str, Any]:
    _require("bandit", "bandit")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bandit.json"
        excluded = ",".join(str(directory / d) for d in EXCLUDED)
        command = [sys.executable, "-m", "bandit", "-r", *o.paths, "-x", excluded,
                   "-f", "json", "-o", str(report), "-q"]  # fmt: skip
        if ignored := [i for i in o.ignore if i.startswith("B")]:
            command += ["--skip", ",".join(ignored)]
        code = sh(command)
        if not report.exists():
            return _check("bandit", False, None, "runs", f"bandit failed (exit {code}); see log")
        data = json.loads(report.read_text())
    floor = SEVERITIES.index(o.severity)
    found = [
        r for r in data.get("results", [])
        if SEVERITIES.index(str(r.get("issue_severity", "low")).lower()) >= floor
    ]  # fmt: skip
    for r in data.get("results", []):
        say(f"bandit {r['test_id']} {r['issue_severity']}: {r['issue_text']} "
            f"({r['filename']}:{r['line_number']})")  # fmt: skip
    bound = f"no finding of {o.severity} severity or above"
    if not found:
        files = len(data.get("metrics", {})) - 1
        return _check("bandit", True, 0, bound, f"bandit: no finding at {o.severity} or above "
                      f"in {max(files, 0)} file(s)")  # fmt: skip
    first = found[0]
    where = f"{Path(first['filename']).as_posix()}:{first['line_number']}"
    return _check(
        "bandit", False, len(found), bound,
        f"bandit found {len(found)} issue(s) at {o.severity} or above; first: {first['test_id']} "
        f"({first['issue_severity'].lower()}) {first['issue_text']} at {where}",
    )  # fmt: skip


def _audit(
    o: SecurityOptions, directory: Path, sh: Callable[[list[str]], int], say: Callable[[str], None]
) -> dict[str, Any]:
    _require("pip_audit", "pip-audit")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "-f", "json", "-o", str(report),
                   "--progress-spinner", "off"]  # fmt: skip
        what = "the current environment"
        if o.requirements:
            # A lock pins every package: audit it as written, without resolving anything.
            command += ["-r", str(directory / o.requirements), "--no-deps", "--disable-pip"]
            what = o.requirements
        if o.osv_url:
            command += ["--vulnerability-service", "osv", "--osv-url", o.osv_url]
        for vuln in o.ignore:
            if not vuln.startswith("B"):
                command += ["--ignore-vuln", vuln]
        code = sh(command)
        if not report.exists():
            return _check("pip-audit", False, None, "runs",
                          f"pip-audit could not audit {what} (exit {code}); see the log: is the "
                          "vulnerability service reachable? (osv_url sets another)")  # fmt: skip
        data = json.loads(report.read_text())
    deps = data.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    unaudited = [d for d in deps if d.get("skip_reason")]
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions") or []) or "no fix yet"
            say(f"pip-audit {d['name']} {d.get('version')}: {v['id']} (fixed in {fixed})")
    for d in unaudited:
        say(f"pip-audit could not audit {d['name']}: {d['skip_reason']}")
    bound = "no known vulnerability"
    if vulnerable:
        d = vulnerable[0]
        v = d["vulns"][0]
        fixed = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        return _check(
            "pip-audit", False, len(vulnerable), bound,
            f"pip-audit: {len(vulnerable)} vulnerable package(s) in {what}; first: {d['name']} "
            f"{d.get('version')} has {v['id']} (fixed in {fixed})",
        )  # fmt: skip
    if unaudited and len(unaudited) == len(deps):
        return _check("pip-audit", False, None, bound,
                      f"pip-audit could audit none of the {len(deps)} package(s) of {what} "
                      f"({unaudited[0]['skip_reason']})")  # fmt: skip
    note = f", {len(unaudited)} not auditable" if unaudited else ""
    detail = f"pip-audit: {len(deps)} package(s) of {what}, none vulnerable{note}"
    return _check("pip-audit", True, 0, bound, detail)


def _check(name: str, passed: bool, value: Any, bound: str, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "value": value, "bound": bound, "detail": detail}
