"""Python sources by threat family: each malicious shape is named for its family, benign ones stay quiet.

The fixtures (tests/helpers/script_fixtures.py) are written to disk and scanned; none is run.
"""
from __future__ import annotations

import pytest

import malhug
from malhug.findings import Severity, Verdict
from script_fixtures import BENIGN, MALICIOUS


def _scan(fixture, tmp_path):
    path = tmp_path / fixture.filename
    path.write_text(fixture.source, encoding="utf-8")
    return malhug.scan(str(path))


def _describe(report) -> str:
    found = [f"{f.rule} {f.severity} {f.category}: {f.message}" for f in report.findings()]
    problems = [p.reason for file in report.files for p in file.problems]
    return "; ".join(found + problems) or "no findings"


@pytest.mark.parametrize("fixture", MALICIOUS, ids=lambda f: f.name)
def test_malicious_script_is_named_for_its_family(fixture, tmp_path):
    report = _scan(fixture, tmp_path)
    categories = {finding.category for finding in report.findings()}
    if fixture.family == "poc":
        assert report.verdict.rank >= Verdict.SUSPICIOUS.rank, _describe(report)
    else:
        assert str(report.verdict) == "malicious", _describe(report)
    assert fixture.family in categories, f"{fixture.notes} -> {_describe(report)}"


@pytest.mark.parametrize("fixture", BENIGN, ids=lambda f: f.name)
def test_benign_script_is_clean(fixture, tmp_path):
    report = _scan(fixture, tmp_path)
    assert str(report.verdict) == "clean", _describe(report)
    loud = [f for f in report.findings() if f.severity > Severity.INFO]
    assert not loud, _describe(report)
