"""The command line: exit codes, options, and one run as a real process."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import opcodes as op

from malhug.cli import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, EXIT_INCONCLUSIVE, main


@pytest.fixture
def files(tmp_path):
    """One file per verdict, written as bytes."""
    paths = {
        "clean": (op.proto(2) + op.empty_dict() + op.stop(), "clean.pkl"),
        "critical": (op.call("os", "system", "id"), "critical.pkl"),
        "high": (op.call("pickle", "loads", "x"), "high.pkl"),
        "medium": (op.call("mymodule", "helper"), "medium.pkl"),
        "info": (op.proto(2) + op.empty_dict() + op.stop() + b"\x00junk", "info.pkl"),
        "inconclusive": (op.proto(2) + op.empty_dict(), "truncated.pkl"),
        "medium+broken": (op.proto(2) + op.global_("mymodule", "helper") + op.empty_tuple() + op.reduce() + b"\xff", "broken.pkl"),
    }
    out = {}
    for key, (data, name) in paths.items():
        path = tmp_path / name
        path.write_bytes(data)
        out[key] = str(path)
    return out


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr()


@pytest.mark.parametrize("key,code", [
    ("clean", EXIT_CLEAN), ("critical", EXIT_FINDINGS), ("high", EXIT_FINDINGS), ("medium", EXIT_FINDINGS),
    ("info", EXIT_CLEAN), ("inconclusive", EXIT_INCONCLUSIVE), ("medium+broken", EXIT_FINDINGS),
])
def test_default_exit_codes(files, capsys, key, code):
    assert _run(capsys, "scan", files[key])[0] == code


@pytest.mark.parametrize("gate,key,code", [
    ("critical", "medium", EXIT_CLEAN),
    ("critical", "high", EXIT_CLEAN),
    ("critical", "critical", EXIT_FINDINGS),
    ("high", "high", EXIT_FINDINGS),
    ("high", "medium", EXIT_CLEAN),
    ("medium", "medium", EXIT_FINDINGS),
    ("low", "info", EXIT_CLEAN),
    ("low", "medium", EXIT_FINDINGS),
    ("critical", "inconclusive", EXIT_INCONCLUSIVE),
    ("critical", "medium+broken", EXIT_INCONCLUSIVE),
    ("suspicious", "clean", EXIT_CLEAN),
])
def test_fail_on(files, capsys, gate, key, code):
    assert _run(capsys, "scan", "--fail-on", gate, files[key])[0] == code


def test_several_paths_worst_wins(files, capsys):
    assert _run(capsys, "scan", files["clean"], files["inconclusive"])[0] == EXIT_INCONCLUSIVE
    assert _run(capsys, "scan", files["clean"], files["inconclusive"], files["critical"])[0] == EXIT_FINDINGS


def test_folder_is_scanned(files, tmp_path, capsys):
    code, out = _run(capsys, "scan", str(tmp_path))
    assert code == EXIT_FINDINGS
    assert "critical.pkl" in out.out and "MALICIOUS" in out.out


def test_missing_path_is_not_clean(tmp_path, capsys):
    code, out = _run(capsys, "scan", str(tmp_path / "nope.pkl"))
    assert code == EXIT_INCONCLUSIVE
    assert "no such file" in out.out


@pytest.mark.parametrize("argv", [
    [], ["scan"], ["frobnicate"], ["scan", "--format", "xml", "x"], ["scan", "--fail-on", "nope", "x"],
])
def test_usage_errors_exit_3(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_ERROR


@pytest.mark.parametrize("limit", ["no_such_limit=3", "with_overrides=1", "__class__=1", "max_opcodes", "max_opcodes=lots", "max_opcodes=-1"])
def test_bad_limit_is_a_usage_error(files, capsys, limit):
    code, out = _run(capsys, "scan", "--limit", limit, files["clean"])
    assert code == EXIT_ERROR
    assert "error" in out.err


def test_limit_override_is_applied(files, capsys):
    code, _ = _run(capsys, "scan", "--limit", "seconds_per_file=60", "--limit", "kept_bytes=16", files["critical"])
    assert code == EXIT_FINDINGS


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "malhug" in capsys.readouterr().out


def test_text_report_shows_evidence(files, capsys):
    code, out = _run(capsys, "scan", files["critical"])
    assert "os.system('id')" in out.out
    assert "command_exec" in out.out


def test_text_report_hides_clean_files_unless_verbose(files, capsys):
    _, out = _run(capsys, "scan", files["clean"])
    assert "clean.pkl" not in out.out
    _, out = _run(capsys, "scan", "-v", files["clean"])
    assert "clean.pkl" in out.out and "member (file)" in out.out


def test_quiet_one_line_per_finding(files, capsys):
    _, out = _run(capsys, "scan", "-q", files["critical"], files["inconclusive"])
    lines = [line for line in out.out.splitlines() if not line.startswith("malhug ")]
    assert len(lines) == 2
    assert "critical pickle-dangerous-callable" in lines[0]
    assert "inconclusive" in lines[1]


def test_json_to_output_file(files, tmp_path, capsys):
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    code, out = _run(capsys, "scan", "--format", "json", "-o", str(report), files["critical"])
    assert code == EXIT_FINDINGS
    assert out.out == ""
    data = json.loads(report.read_text("utf-8"))
    assert data["files"][0]["verdict"] == "malicious"


def test_json_to_stdout(files, capsys):
    code, out = _run(capsys, "scan", "--format", "json", files["clean"])
    assert code == EXIT_CLEAN
    assert json.loads(out.out)["summary"]["verdict"] == "clean"


def test_as_a_process(files, tmp_path):
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    output = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "malhug", "scan", "--format", "json", "-o", str(output), files["critical"], files["clean"]],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == EXIT_FINDINGS, proc.stderr
    data = json.loads(output.read_text("utf-8"))
    assert [f["verdict"] for f in data["files"]] == ["malicious", "clean"]
    proc = subprocess.run([sys.executable, "-m", "malhug", "scan", "--limit", "bogus=1", files["clean"]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == EXIT_ERROR


def test_verdict_cache_serves_the_second_scan_and_can_be_bypassed(tmp_path, capsys, monkeypatch):
    import pickle

    from malhug import formats

    target = tmp_path / "data.pkl"
    target.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    cache_dir = tmp_path / "cache"
    assert _run(capsys, "scan", "--cache-dir", str(cache_dir), str(target))[0] == 0
    calls = []
    real = formats.analyse
    monkeypatch.setattr("malhug.scanner.analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _run(capsys, "scan", "--no-isolation", "--cache-dir", str(cache_dir), str(target))[0] == 0
    assert calls == []
    assert _run(capsys, "scan", "--no-isolation", "--no-cache", str(target))[0] == 0
    assert calls == [1]


def test_hf_cache_option_scans_the_cache_folder(tmp_path, capsys, monkeypatch):
    import hashlib
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))

    data = pickle.dumps(Payload())
    repo = tmp_path / "hub" / "models--acme--tiny"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").symlink_to(os.path.relpath(blob, snapshot))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code, out = _run(capsys, "scan", "--no-cache", "--hf-cache")
    assert code == 1
    assert "acme/tiny" in out.out and "pytorch_model.bin" in out.out
    code, out = _run(capsys, "scan", "--no-cache", "--hf-cache", str(tmp_path / "nothing"))
    assert code == 3


def test_several_formats_each_with_its_output(files, tmp_path, capsys):
    json_out, sarif_out, html_out = tmp_path / "r.json", tmp_path / "r.sarif", tmp_path / "r.html"
    code, out = _run(capsys, "scan", "--format", "json", "-o", str(json_out), "--format", "sarif", "-o", str(sarif_out),
                     "--format", "html", "-o", str(html_out), "--format", "markdown", files["critical"])
    assert code == EXIT_FINDINGS
    assert out.out.startswith("## ") and "pickle-dangerous-callable" in out.out
    assert json.loads(json_out.read_text("utf-8"))["files"][0]["verdict"] == "malicious"
    assert json.loads(sarif_out.read_text("utf-8"))["version"] == "2.1.0"
    assert html_out.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_output_before_format_still_pairs(files, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, out = _run(capsys, "scan", "-o", str(report), "--format", "json", files["critical"])
    assert code == EXIT_FINDINGS and out.out == ""
    assert json.loads(report.read_text("utf-8"))["summary"]["verdict"] == "malicious"
    text = tmp_path / "r.txt"
    code, out = _run(capsys, "scan", "-o", str(text), files["critical"])
    assert out.out == "" and "MALICIOUS" in text.read_text("utf-8")


@pytest.mark.parametrize("argv", [
    ["--format", "json", "--format", "sarif"],
    ["--format", "json", "-o", "a.json", "-o", "b.json"],
    ["--format", "json", "-o", "same", "--format", "sarif", "-o", "same"],
    ["-o", "a", "--format", "json", "--format", "sarif", "-o", "b"],
])
def test_output_usage_errors(files, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["scan", *argv, files["clean"]])
    assert exc.value.code == EXIT_ERROR
    assert list(tmp_path.iterdir()) == [] or all(p.suffix != ".json" for p in tmp_path.iterdir())


def test_markdown_escapes_table_cells(tmp_path, capsys):
    target = tmp_path / "evil|name.pkl"
    target.write_bytes(op.call("os", "system", "a | b <img src=x>"))
    code, out = _run(capsys, "scan", "--no-cache", "--format", "markdown", str(target))
    assert code == EXIT_FINDINGS
    rows = [line for line in out.out.splitlines() if line.startswith("| critical")]
    assert len(rows) == 1
    assert rows[0].count(" | ") == 5  # every pipe from the file is escaped
    outside_code = re.sub(r"(`+)(.+?)\1", "", out.out)
    assert "<img" not in outside_code  # raw HTML from a file appears only inside code spans


def test_progress_callback_sees_every_file(files, tmp_path):
    from malhug.scanner import ScanOptions, scan_paths

    seen = []
    scan_paths([files["clean"], str(tmp_path)], ScanOptions(cache=None, progress=lambda p, s: seen.append((p, s))))
    assert seen[0] == (files["clean"], os.path.getsize(files["clean"]))
    assert len(seen) == 1 + len(list(tmp_path.iterdir()))
    assert all(isinstance(size, int) for _, size in seen)


def test_explain_command(files, capsys):
    code, out = _run(capsys, "explain", files["critical"])
    assert code == EXIT_FINDINGS
    assert "os.system('id')" in out.out and "^ [critical] pickle-dangerous-callable" in out.out


def test_markdown_message_text_is_inert():
    from malhug import __version__
    from malhug.findings import FileResult, Finding, Location, Report, Severity, Verdict
    from malhug.report.markdown import render_markdown

    finding = Finding("python-code-exec", Severity.HIGH, "code_exec", "runs <script>x</script> [a](http://e) *b*",
                      Location("a.py", None, None, 3), "exec(x)")
    report = Report((FileResult("a.py", "python", Verdict.MALICIOUS, (finding,), (), (), None, 1),), __version__)
    text = render_markdown(report)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "\\[a\\](http://e)" in text and "\\*b\\*" in text
    assert "| high | code\\_exec | `python-code-exec` |" in text


# -- policy on the command line: config file, suppressions, baselines, selection -------------------
def _evil(path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))

    path.write_bytes(pickle.dumps(Payload()))
    return path


def test_a_reviewed_finding_suppressed_in_malhug_toml_passes_the_gate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _evil(tmp_path / "model.pkl")
    assert _run(capsys, "scan", "--no-cache", "model.pkl")[0] == EXIT_FINDINGS
    (tmp_path / "malhug.toml").write_text(
        '[[suppressions]]\nrule = "pickle-dangerous-callable"\nfile = "model.pkl"\n'
        'reason = "reviewed: test fixture"\n')
    code, out = _run(capsys, "scan", "--no-cache", "--format", "json", "model.pkl")
    assert code == EXIT_CLEAN
    finding = json.loads(out.out)["files"][0]["findings"][0]
    assert finding["suppressed"] == {"reason": "reviewed: test fixture"}


@pytest.mark.parametrize("config", [
    '[[suppressions]]\nrule = "pickle-dangerous-callable"\nfile = "model.pkl"\n',  # no reason
    '[[suppressions]]\nrule = "x"\nfile = "y"\nreason = "r"\nexpires = "someday"\n',
    'fail_on = "sometimes"\n',
    "not toml at all [",
])
def test_a_malformed_config_is_a_usage_error_and_suppresses_nothing(tmp_path, capsys, monkeypatch, config):
    monkeypatch.chdir(tmp_path)
    _evil(tmp_path / "model.pkl")
    (tmp_path / "malhug.toml").write_text(config)
    code, out = _run(capsys, "scan", "--no-cache", "model.pkl")
    assert code == EXIT_ERROR
    assert "malhug.toml" in out.err or "config" in out.err.lower()


def test_a_baseline_accepts_todays_findings_and_fails_on_new_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    _evil(models / "old.pkl")
    assert _run(capsys, "scan", "--no-cache", "--write-baseline", "baseline.json", "models")[0] == EXIT_FINDINGS
    assert _run(capsys, "scan", "--no-cache", "--baseline", "baseline.json", "models")[0] == EXIT_CLEAN
    new = _evil(models / "new.pkl")
    new.write_bytes(new.read_bytes().replace(b"id", b"echo"))  # a different payload, not yet reviewed
    assert _run(capsys, "scan", "--no-cache", "--baseline", "baseline.json", "models")[0] == EXIT_FINDINGS


def test_selection_options(tmp_path, capsys):
    folder = tmp_path / "repo"
    folder.mkdir()
    _evil(folder / "model.pkl")
    (folder / "notes.txt").write_text("hello\n")
    (folder / "big.bin").write_bytes(b"\0" * 4096)
    code, out = _run(capsys, "scan", "--no-cache", "--format", "json", "--exclude", "*.pkl", str(folder))
    paths = {f["path"].rsplit("/", 1)[-1] for f in json.loads(out.out)["files"]}
    assert "model.pkl" not in paths and "notes.txt" in paths
    code, out = _run(capsys, "scan", "--no-cache", "--format", "json", "--max-file-size", "1KB",
                     "--include", "*.bin", str(folder))
    files = json.loads(out.out)["files"]
    assert [f["path"].rsplit("/", 1)[-1] for f in files] == ["big.bin"]
    assert files[0]["verdict"] == "inconclusive" and code == EXIT_INCONCLUSIVE
    assert _run(capsys, "scan", "--no-cache", "--exclude-rules", "pickle-*", str(folder / "model.pkl"))[0] \
        == EXIT_CLEAN
    code, out = _run(capsys, "scan", "--no-cache", "--min-severity", "critical", "--format", "json",
                     str(folder / "model.pkl"))
    assert code == EXIT_FINDINGS  # shown or not, the finding still fails the gate
