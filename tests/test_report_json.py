"""The JSON report follows docs/json-report.md."""
from __future__ import annotations

import hashlib
import json

import pytest

import opcodes as op

from malhug import __version__
from malhug.cli import main

_SEVERITIES = {"info", "low", "medium", "high", "critical"}
_VERDICTS = {"clean", "inconclusive", "suspicious", "malicious"}
_RULES = {"pickle-dangerous-callable", "pickle-unknown-global", "pickle-dynamic-import", "pickle-indirect-call",
          "pickle-object-tampering", "pickle-extension-import", "pickle-anomaly", "hostile-shape"}


@pytest.fixture
def report(tmp_path, capsys):
    inner = op.call("os", "system", "id")
    fixtures = {
        "evil.pkl": op.call("posix", "system", "id"),
        "clean.pkl": op.proto(2) + op.empty_list() + op.stop(),
        "broken.pkl": op.proto(2) + op.none(),
        "nested.pkl": op.proto(2) + op.global_("pickle", "loads") + op.binbytes(inner) + op.tuple1() + op.reduce() + op.stop(),
    }
    for name, data in fixtures.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "report.json"
    main(["scan", "--format", "json", "-o", str(out), str(tmp_path / "evil.pkl"), str(tmp_path / "clean.pkl"),
          str(tmp_path / "broken.pkl"), str(tmp_path / "nested.pkl"), str(tmp_path / "missing.pkl")])
    capsys.readouterr()
    data = json.loads(out.read_text("utf-8"))
    return data, tmp_path, fixtures


def _file(data, name):
    return next(f for f in data["files"] if f["path"].endswith(name))


def test_top_level(report):
    data, tmp_path, _ = report
    assert data["schema_version"] == 1
    assert data["tool"] == {"name": "malhug", "version": __version__}
    assert len(data["targets"]) == 5
    assert set(data) >= {"schema_version", "tool", "targets", "files", "summary"}


def test_file_entries(report):
    data, tmp_path, fixtures = report
    assert len(data["files"]) == 4
    for entry in data["files"]:
        assert set(entry) >= {"path", "format", "verdict", "findings", "problems", "members", "sha256", "size", "seconds"}
        assert entry["verdict"] in _VERDICTS
        name = entry["path"].rsplit("/", 1)[-1]
        assert entry["size"] == len(fixtures[name])
        assert entry["sha256"] == hashlib.sha256(fixtures[name]).hexdigest()
        assert entry["format"] == "pickle"
        for member in entry["members"]:
            assert set(member) >= {"name", "format", "verdict", "analysed", "note"}
            assert member["verdict"] in _VERDICTS


def test_finding_fields(report):
    data, tmp_path, fixtures = report
    evil = _file(data, "evil.pkl")
    assert evil["verdict"] == "malicious"
    finding = evil["findings"][0]
    assert set(finding) >= {"rule", "severity", "category", "message", "location", "evidence"}
    assert finding["rule"] == "pickle-dangerous-callable"
    assert finding["severity"] == "critical"
    assert finding["category"] == "command_exec"
    assert finding["message"] == "calls posix.system (= os.system): runs a shell command"
    assert finding["location"] == {"file": evil["path"], "member": None, "offset": fixtures["evil.pkl"].rindex(b"R"), "line": None}
    assert finding["evidence"] == "_v0 = posix.system('id')"
    for entry in data["files"]:
        for finding in entry["findings"]:
            assert finding["rule"] in _RULES
            assert finding["severity"] in _SEVERITIES
            assert set(finding["location"]) == {"file", "member", "offset", "line"}


def test_offset_points_at_the_reduce(report):
    data, tmp_path, fixtures = report
    offset = _file(data, "evil.pkl")["findings"][0]["location"]["offset"]
    assert fixtures["evil.pkl"][offset:offset + 1] == b"R"


def test_problems_of_an_inconclusive_file(report):
    data, _, _ = report
    broken = _file(data, "broken.pkl")
    assert broken["verdict"] == "inconclusive"
    assert broken["problems"] and set(broken["problems"][0]) == {"reason", "location"}
    assert "truncated" in broken["problems"][0]["reason"]


def test_nested_member_is_located(report):
    data, _, _ = report
    nested = _file(data, "nested.pkl")
    members = [f["location"]["member"] for f in nested["findings"] if f["category"] == "command_exec"]
    assert members and "pickle.loads" in members[0]
    assert any(m["name"] == members[0] and m["verdict"] == "malicious" for m in nested["members"])


def test_summary(report):
    data, _, _ = report
    summary = data["summary"]
    assert summary["verdict"] == "malicious"
    assert summary["files"] == 4
    assert summary["verdicts"] == {"clean": 1, "inconclusive": 1, "suspicious": 0, "malicious": 2}
    assert summary["findings"] == sum(len(f["findings"]) for f in data["files"])
    assert summary["findings"] == sum(summary["severities"].values())
    assert set(summary["severities"]) == _SEVERITIES
    assert len(summary["errors"]) == 1 and "missing.pkl" in summary["errors"][0]


def test_non_ascii_names_round_trip(tmp_path, capsys):
    path = tmp_path / "mod\u00e8le.pkl"
    path.write_bytes(op.call("os", "system", "\u00e9cho"))
    main(["scan", "--format", "json", str(path)])
    data = json.loads(capsys.readouterr().out)
    assert data["files"][0]["path"].endswith("mod\u00e8le.pkl")
    assert "\u00e9cho" in data["files"][0]["findings"][0]["evidence"]


def test_render_rejects_unknown_format():
    from malhug.findings import Report
    from malhug.report import render
    with pytest.raises(ValueError):
        render(Report((), __version__), "xml")
