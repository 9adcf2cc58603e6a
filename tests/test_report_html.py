"""The HTML report: self-contained, escaped, and filterable in a real browser."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from malhug import __version__
from malhug.cli import main
from malhug.findings import FileResult, Finding, Location, Problem, Report, Severity, Verdict
from malhug.report.html import render_html

import opcodes as op

PAYLOAD = "<script>document.body.setAttribute('data-pwned','1')</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


def hostile_report() -> Report:
    path = "models/<b>evil</b>.pkl"
    findings = (
        Finding("pickle-dangerous-callable", Severity.CRITICAL, "command_exec",
                f"calls posix.system {IMG_PAYLOAD}", Location(path, None, 37), f"_v0 = posix.system({PAYLOAD!r})"),
        Finding("pickle-unknown-global", Severity.MEDIUM, "unknown", "imports mymodule.helper",
                Location(path, None, 60), "_v1 = mymodule.helper()"),
        Finding("pattern-curl", Severity.INFO, "download_exec", "curl piped into a shell",
                Location(path, None, 80), "curl http://x | sh"),
    )
    files = (
        FileResult(path, "pickle", Verdict.MALICIOUS, findings, (), (), None, 10),
        FileResult("broken.pkl", "pickle", Verdict.INCONCLUSIVE, (),
                   (Problem("pickle stream broken at offset 3", Location("broken.pkl", None, 3)),), (), None, 3),
        FileResult("clean.pkl", "pickle", Verdict.CLEAN, (), (), (), None, 3),
    )
    return Report(files, __version__, ("models",))


def test_self_contained_and_escaped():
    page = render_html(hostile_report())
    assert page.count("<script>") == 1 and page.count("<script") == 1
    assert "<img" not in page and "<b>evil" not in page
    assert "&lt;script&gt;document.body.setAttribute" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page
    assert "Content-Security-Policy" in page
    for text in ("pickle-dangerous-callable", "broken.pkl", "pickle stream broken at offset 3", "clean.pkl"):
        assert text in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is required under CI (apt-get install chromium)")
    pytest.skip("chromium is not installed")


def _browse(tmp_path, url: str, *extra: str) -> str:
    browser = _chromium()
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *extra, url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _page(tmp_path) -> str:
    target = tmp_path / "report.html"
    target.write_text(render_html(hostile_report()), encoding="utf-8")
    return target.as_uri()


def test_rendered_in_chromium(tmp_path):
    url = _page(tmp_path)
    dom = _browse(tmp_path, url, "--dump-dom")
    assert 'data-ready="1"' in dom  # the page's own script ran
    assert 'data-pwned="1"' not in dom  # the payloads did not
    assert 'data-shown="4"' in dom  # three findings and one problem
    assert "pickle-dangerous-callable" in dom and "_v0 = posix.system(" in dom
    assert "&lt;script&gt;document.body.setAttribute" in dom
    assert "pickle stream broken at offset 3" in dom
    shot = tmp_path / "shot.png"
    _browse(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fragment,shown,visible,hidden", [
    ("severity=high", 2, ["pickle-dangerous-callable", "pickle stream broken"], ["pickle-unknown-global"]),
    ("severity=inconclusive", 1, ["pickle stream broken"], ["pickle-dangerous-callable"]),
    ("category=download_exec", 1, ["pattern-curl"], ["pickle-unknown-global"]),
    ("q=mymodule", 1, ["pickle-unknown-global"], ["pattern-curl"]),
])
def test_filter_script(tmp_path, fragment, shown, visible, hidden):
    dom = _browse(tmp_path, _page(tmp_path) + "#" + fragment, "--dump-dom")
    assert f'data-shown="{shown}"' in dom
    rows = re.findall(r"<tr data-severity=[^>]*>.*?</tr>", dom, re.S)
    assert len(rows) == 4
    for text in visible:
        assert any(text in row and " hidden" not in row.split(">", 1)[0] for row in rows), text
    for text in hidden:
        assert all(" hidden" in row.split(">", 1)[0] for row in rows if text in row), text


def test_cli_writes_html(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(op.call("os", "system", "id"))
    out = tmp_path / "report.html"
    assert main(["scan", "--no-cache", "--format", "html", "-o", str(out), str(tmp_path / "evil.pkl")]) == 1
    page = out.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "system(&#x27;id&#x27;)" in page
