"""SARIF 2.1.0: one run, one rule per rule id, one result per finding and per problem."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..findings import Finding, Location, Problem, Report, Severity
from .rules import SCAN_INCOMPLETE, rule_text

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/malhug/"
FINGERPRINT_KEY = "malhugFinding/v1"

SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def level(severity: Severity) -> str:
    if severity >= Severity.HIGH:
        return "error"
    if severity is Severity.MEDIUM:
        return "warning"
    return "note"


def artifact_uri(path: str, cwd: str | None = None) -> str:
    """A relative URI under the working directory when the path is there, the path otherwise;
    hub and web addresses as given."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        return quote(path, safe="/:@!$&'()*+,;=-._~%")
    base = Path(cwd or os.getcwd())
    candidate = Path(path)
    absolute = candidate if candidate.is_absolute() else base / candidate
    try:
        shown = PurePosixPath(Path(os.path.normpath(absolute)).relative_to(base).as_posix())
        text = str(shown)
    except ValueError:
        text = Path(path).as_posix()
    return quote(text, safe="/:@!$&'()*+,;=-._~")


def _core(message: str) -> str:
    return re.sub(r"\d+", "#", " ".join(message.split()))


def fingerprint(rule: str, location: Location, message: str, sha256: str | None) -> str:
    where = location.line if location.line is not None else location.offset
    parts = [rule, sha256 or location.file, location.member or "", "" if where is None else str(where),
             _core(message)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class _Rules:
    def __init__(self):
        self.ids: list[str] = []
        self.severity: dict[str, Severity] = {}
        self.categories: dict[str, set] = {}

    def index(self, rule: str, severity: Severity, category: str) -> int:
        if rule not in self.severity:
            self.ids.append(rule)
            self.severity[rule] = severity
            self.categories[rule] = set()
        self.severity[rule] = max(self.severity[rule], severity)
        self.categories[rule].add(category)
        return self.ids.index(rule)

    def descriptors(self) -> list[dict]:
        out = []
        for rule in self.ids:
            text = rule_text(rule)
            severity = self.severity[rule]
            out.append({
                "id": rule,
                "name": "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", rule) if part),
                "shortDescription": {"text": text.short},
                "fullDescription": {"text": text.full},
                "help": {"text": f"{text.short}. {text.full}",
                         "markdown": f"**{_md(text.short)}**\n\n{_md(text.full)}"},
                "defaultConfiguration": {"level": level(severity)},
                "properties": {
                    "security-severity": SECURITY_SEVERITY[severity],
                    "tags": ["security"] + sorted(self.categories[rule]),
                    "precision": "high" if rule != SCAN_INCOMPLETE else "medium",
                },
            })
        return out


def _md(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _location(location: Location, cwd: str | None, evidence: str = "") -> dict:
    physical: dict = {"artifactLocation": {"uri": artifact_uri(location.file, cwd)}}
    if location.line is not None and location.line >= 1:
        region: dict = {"startLine": location.line}
        if evidence:
            region["snippet"] = {"text": evidence}
        physical["region"] = region
    out: dict = {"physicalLocation": physical}
    if location.member:
        out["logicalLocations"] = [{
            "name": location.member.rsplit(":", 1)[-1],
            "fullyQualifiedName": f"{location.file}:{location.member}",
            "kind": "resource",
        }]
    return out


def _where(location: Location) -> dict:
    props = {}
    if location.member:
        props["member"] = location.member
    if location.offset is not None:
        props["offset"] = location.offset
    return props


def _finding_result(finding: Finding, rules: _Rules, sha256: str | None, cwd: str | None) -> dict:
    index = rules.index(finding.rule, finding.severity, finding.category)
    message = finding.message + (f"\nEvidence: {finding.evidence}" if finding.evidence else "")
    result = {
        "ruleId": finding.rule,
        "ruleIndex": index,
        "level": level(finding.severity),
        "message": {"text": message},
        "locations": [_location(finding.location, cwd, finding.evidence)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(finding.rule, finding.location, finding.message, sha256)},
        "properties": {
            "severity": str(finding.severity),
            "security-severity": SECURITY_SEVERITY[finding.severity],
            "category": finding.category,
            "evidence": finding.evidence,
            **_where(finding.location),
        },
    }
    reason = getattr(finding, "suppressed", None)
    if reason is not None:
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
    return result


def _problem_result(problem: Problem, rules: _Rules, sha256: str | None, cwd: str | None) -> dict:
    index = rules.index(SCAN_INCOMPLETE, Severity.INFO, "inconclusive")
    return {
        "ruleId": SCAN_INCOMPLETE,
        "ruleIndex": index,
        "level": "note",
        "kind": "review",
        "message": {"text": f"not fully scanned (inconclusive): {problem.reason}"},
        "locations": [_location(problem.location, cwd)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(SCAN_INCOMPLETE, problem.location, problem.reason, sha256)},
        "properties": {"verdict": "inconclusive", **_where(problem.location)},
    }


def _notification(text: str, location: Location | None, cwd: str | None, severity: str) -> dict:
    out: dict = {"level": severity, "message": {"text": text}, "descriptor": {"id": SCAN_INCOMPLETE}}
    if location is not None:
        out["locations"] = [_location(location, cwd)]
    return out


def sarif_dict(report: Report, cwd: str | None = None) -> dict:
    rules = _Rules()
    results: list[dict] = []
    notifications: list[dict] = []
    for repository in report.repositories:
        for finding in repository.findings:
            results.append(_finding_result(finding, rules, None, cwd))
        for problem in repository.problems:
            results.append(_problem_result(problem, rules, None, cwd))
            notifications.append(_notification(problem.reason, problem.location, cwd, "warning"))
    for file in report.files:
        for finding in file.findings:
            results.append(_finding_result(finding, rules, file.sha256, cwd))
        for problem in file.problems:
            results.append(_problem_result(problem, rules, file.sha256, cwd))
            notifications.append(_notification(problem.reason, problem.location, cwd, "warning"))
    for error in report.errors:
        target, _, _reason = error.partition(": ")
        location = Location(target) if target and target != error else None
        problem = Problem(error, location or Location("."))
        results.append(_problem_result(problem, rules, None, cwd))
        notifications.append(_notification(error, location, cwd, "error"))
    invocation = {
        "executionSuccessful": not report.errors,
        "toolExecutionNotifications": notifications,
    }
    run = {
        "tool": {"driver": {
            "name": "malhug",
            "version": report.tool_version,
            "semanticVersion": report.tool_version,
            "informationUri": INFORMATION_URI,
            "rules": rules.descriptors(),
        }},
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"targets": list(report.targets), "summary": report.summary()},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def render_sarif(report: Report, cwd: str | None = None) -> str:
    return json.dumps(sarif_dict(report, cwd), indent=2, ensure_ascii=False) + "\n"
