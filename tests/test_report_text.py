"""The terminal report: plain and deterministic when piped, colour and progress on a terminal."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

import opcodes as op

from malhug import __version__
from malhug.findings import FileResult, Finding, Location, Problem, Report, Severity, Verdict
from malhug.report.text_report import render_text

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _report() -> Report:
    source = FileResult("loader.py", "python", Verdict.MALICIOUS, (
        Finding("python-command-exec", Severity.HIGH, "command_exec", "runs `id` (os.system) when the code is loaded",
                Location("loader.py", None, None, 12), "os.system('id')"),
    ), (), (), None, 100)
    broken = FileResult("broken.pkl", "pickle", Verdict.INCONCLUSIVE, (),
                        (Problem("pickle stream broken at offset 3", Location("broken.pkl", None, 3)),), (), None, 3)
    hostile = FileResult("x.pkl", "pickle", Verdict.SUSPICIOUS, (
        Finding("pickle-unknown-global", Severity.MEDIUM, "unknown", "imports evil\x1b]0;owned\x07.helper",
                Location("x.pkl", "a:b", 9), "_v0 = evil\x1b[2J.helper()"),
    ), (), (), None, 9)
    clean = FileResult("clean.pkl", "pickle", Verdict.CLEAN, (), (), (), None, 3)
    return Report((source, broken, hostile, clean), __version__, ("x",), ("missing.pkl: no such file or folder",))


def test_plain_report_is_deterministic():
    report = _report()
    text = render_text(report)
    assert text == render_text(report)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07" in text
    lines = text.splitlines()
    assert "loader.py: MALICIOUS (python)" in lines
    assert "      12 | os.system('id')" in lines
    assert "      at loader.py line 12  (python-command-exec)" in lines
    assert "  [inconclusive] pickle stream broken at offset 3" in lines
    assert "error: missing.pkl: no such file or folder" in lines
    assert "clean.pkl" not in text.split("summary:")[0]
    summary = text.split("summary:")[1]
    assert "MALICIOUS" in summary and "INCONCLUSIVE" in summary and "(1 clean file(s) not listed" in summary
    assert lines[-1] == (f"malhug {__version__}: 4 file(s) scanned: 1 clean, 1 inconclusive, 1 suspicious, "
                         "1 malicious; 2 finding(s), 2 problem(s); verdict MALICIOUS")


def test_quiet_and_verbose():
    report = _report()
    quiet = render_text(report, quiet=True).splitlines()
    assert quiet[0] == "loader.py line 12: high python-command-exec: runs `id` (os.system) when the code is loaded"
    assert "broken.pkl @3: inconclusive: pickle stream broken at offset 3" in quiet
    assert "error: missing.pkl: no such file or folder" in quiet
    assert len(quiet) == 5
    verbose = render_text(report, verbose=True)
    assert "clean.pkl: CLEAN (pickle)" in verbose


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def _in_pty(argv, env) -> tuple[str, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the scanner, its terminal is the pty
        try:
            os.execve(sys.executable, [sys.executable, "-m", "malhug", *argv], env)
        finally:
            os._exit(127)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace"), os.waitstatus_to_exitcode(status)


@pytest.fixture
def targets(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(op.call("os", "system", "id"))
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(op.proto(2) + op.none())
    return [str(evil), str(broken)]


def test_terminal_has_colour_and_progress(targets):
    out, code = _in_pty(["scan", "--no-cache", *targets], _env())
    assert code == 1
    assert "\x1b[" in out
    assert "scanning" in out and "2/2 files" in out  # the progress bar on stderr
    assert "MALICIOUS" in out and "os.system('id')" in out
    assert "pickle stream broken" in out and "summary" in out


def test_terminal_without_progress_or_colour(targets):
    out, code = _in_pty(["scan", "--no-cache", "--no-progress", *targets], _env())
    assert code == 1 and "scanning" not in out and "\x1b[" in out
    out, code = _in_pty(["scan", "--no-cache", *targets], _env(NO_COLOR="1"))
    assert code == 1 and "\x1b[" not in out and "scanning" not in out
    assert "evil.pkl: MALICIOUS (pickle)" in out


def test_piped_output_is_plain(targets):
    proc = subprocess.run([sys.executable, "-m", "malhug", "scan", "--no-cache", *targets],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "scanning" not in proc.stderr
    assert "evil.pkl: MALICIOUS (pickle)" in proc.stdout


def test_suppressed_findings_only_with_verbose():
    from dataclasses import replace

    accepted = replace(Finding("pickle-unknown-global", Severity.MEDIUM, "unknown", "imports mymodule.helper",
                               Location("a.pkl", None, 3)), suppressed="baseline")
    report = Report((FileResult("a.pkl", "pickle", Verdict.CLEAN, (accepted,), (), (), None, 3),), __version__)
    assert "mymodule" not in render_text(report)
    assert "mymodule" not in render_text(report, quiet=True)
    assert "(suppressed: baseline)" in render_text(report, verbose=True)
    assert "1 suppressed" in render_text(report).splitlines()[-1]
