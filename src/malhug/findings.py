"""The vocabulary every stage shares: severities, categories, findings, results, reports."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> "Severity":
        return cls[text.strip().upper()]

    def __str__(self) -> str:
        return self.name.lower()


class Verdict(str, Enum):
    CLEAN = "clean"
    INCONCLUSIVE = "inconclusive"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _VERDICT_RANK[self]

    def __str__(self) -> str:
        return self.value


_VERDICT_RANK = {
    Verdict.CLEAN: 0,
    Verdict.INCONCLUSIVE: 1,
    Verdict.SUSPICIOUS: 2,
    Verdict.MALICIOUS: 3,
}


def worst(verdicts) -> Verdict:
    """The most alarming of several verdicts (clean when there are none)."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.CLEAN)


@dataclass(frozen=True)
class Location:
    file: str
    member: str | None = None
    offset: int | None = None
    line: int | None = None

    def describe(self) -> str:
        text = self.file
        if self.member:
            text += f":{self.member}"
        if self.line is not None:
            text += f" line {self.line}"
        elif self.offset is not None:
            text += f" @{self.offset}"
        return text

    def to_dict(self) -> dict:
        return {"file": self.file, "member": self.member, "offset": self.offset, "line": self.line}

    @classmethod
    def from_dict(cls, data: dict) -> "Location":
        return cls(data["file"], data["member"], data["offset"], data["line"])


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    category: str
    message: str
    location: Location
    evidence: str = ""
    # policy (malhug.policy): why this finding is accepted (a suppression's reason, "baseline");
    # a suppressed finding stays in the report but counts towards no verdict
    suppressed: str | None = None

    def to_dict(self) -> dict:
        data = {
            "rule": self.rule,
            "severity": str(self.severity),
            "category": self.category,
            "message": self.message,
            "location": self.location.to_dict(),
            "evidence": self.evidence,
        }
        if self.suppressed is not None:
            data["suppressed"] = {"reason": self.suppressed}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        suppressed = (data.get("suppressed") or {}).get("reason")
        return cls(data["rule"], Severity.parse(data["severity"]), data["category"], data["message"],
                   Location.from_dict(data["location"]), data["evidence"], suppressed)


@dataclass(frozen=True)
class Problem:
    """Something that kept part of an input from being fully read (never hidden, never clean)."""

    reason: str
    location: Location

    def to_dict(self) -> dict:
        return {"reason": self.reason, "location": self.location.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Problem":
        return cls(data["reason"], Location.from_dict(data["location"]))


@dataclass(frozen=True)
class MemberResult:
    """One artefact inside a file (the file itself, an archive member, a nested pickle...)."""

    name: str
    format: str
    verdict: Verdict
    analysed: bool
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "format": self.format,
            "verdict": str(self.verdict),
            "analysed": self.analysed,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MemberResult":
        return cls(data["name"], data["format"], Verdict(data["verdict"]), data["analysed"], data["note"])


@dataclass(frozen=True)
class FileResult:
    path: str
    format: str
    verdict: Verdict
    findings: tuple[Finding, ...]
    problems: tuple[Problem, ...]
    members: tuple[MemberResult, ...]
    sha256: str | None
    size: int | None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": str(self.verdict),
            "findings": [f.to_dict() for f in self.findings],
            "problems": [p.to_dict() for p in self.problems],
            "members": [m.to_dict() for m in self.members],
            "sha256": self.sha256,
            "size": self.size,
            "seconds": round(self.seconds, 4),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "FileResult":
        return cls(
            path=data["path"],
            format=data["format"],
            verdict=Verdict(data["verdict"]),
            findings=tuple(Finding.from_dict(f) for f in data["findings"]),
            problems=tuple(Problem.from_dict(p) for p in data["problems"]),
            members=tuple(MemberResult.from_dict(m) for m in data["members"]),
            sha256=data["sha256"],
            size=data["size"],
            seconds=float(data["seconds"]),
        )


@dataclass(frozen=True)
class RepositoryResult:
    """A repository (a local folder, a hub repo at a commit, a cached snapshot) as a whole."""

    location: str  # what the user named: a folder, hf://org/name@sha ...
    id: str | None  # org/name on a hub
    type: str  # model | dataset | space | folder
    revision: str | None  # the commit scanned
    verdict: Verdict
    files: tuple[str, ...]  # the display paths of its files' results
    roles: tuple[tuple[str, str], ...] = ()  # (path, role): dataset_script, remote_code, ...
    findings: tuple[Finding, ...] = ()  # about the repository itself (its layout and configs)
    problems: tuple[Problem, ...] = ()
    fetched_bytes: int | None = None  # for remote repositories: bytes downloaded
    total_bytes: int | None = None  # and the size of everything in the revision
    notes: tuple[str, ...] = ()  # facts about how it was read (a server that ignored Range ...)
    references: tuple[str, ...] = ()  # other repositories whose code this one runs (auto_map)

    def to_dict(self) -> dict:
        return {
            "location": self.location,
            "id": self.id,
            "type": self.type,
            "revision": self.revision,
            "verdict": str(self.verdict),
            "files": list(self.files),
            "roles": {path: role for path, role in self.roles},
            "findings": [f.to_dict() for f in self.findings],
            "problems": [p.to_dict() for p in self.problems],
            "fetched_bytes": self.fetched_bytes,
            "total_bytes": self.total_bytes,
            "notes": list(self.notes),
            "references": list(self.references),
        }


@dataclass(frozen=True)
class Report:
    files: tuple[FileResult, ...]
    tool_version: str
    targets: tuple[str, ...] = field(default=())
    errors: tuple[str, ...] = field(default=())
    repositories: tuple[RepositoryResult, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        verdicts = [f.verdict for f in self.files] + [r.verdict for r in self.repositories]
        if self.errors:
            verdicts.append(Verdict.INCONCLUSIVE)
        return worst(verdicts)

    def findings(self, suppressed: bool = False):
        """Every finding that counts; with suppressed=True also those a policy accepted."""
        for finding in self._all_findings():
            if suppressed or finding.suppressed is None:
                yield finding

    def _all_findings(self):
        for repository in self.repositories:
            yield from repository.findings
        for file in self.files:
            yield from file.findings

    def summary(self) -> dict:
        counts = {str(v): 0 for v in Verdict}
        for file in self.files:
            counts[str(file.verdict)] += 1
        severities = {str(s): 0 for s in Severity}
        for finding in self.findings():
            severities[str(finding.severity)] += 1
        return {
            "verdict": str(self.verdict),
            "files": len(self.files),
            "verdicts": counts,
            "findings": sum(severities.values()),
            "severities": severities,
            "errors": list(self.errors),
            "suppressed": sum(1 for f in self._all_findings() if f.suppressed is not None),
        }
