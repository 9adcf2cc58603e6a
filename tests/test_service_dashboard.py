"""The dashboard in headless Chromium against a real `malhug serve` on 127.0.0.1: the overview,
the findings filters, a repo page with its evidence, triage done through the page, and names,
paths and evidence carrying script that must be shown as text and never run."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from malhug.scanner import scan_file
from malhug.service.keys import content_key
from test_service_api import COMMIT, TOKEN, _Call, fill_store, new_world, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCRIPT_EVIDENCE = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2;alert(2)\">"
HOSTILE_REPO = "xss/<img src=x onerror=alert(3)>"
HOSTILE_PATH = "<script>alert(4);window.__xss=4</script>.pkl"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")

SPEC = {
    "acme/evil-model": ("model", 50, {COMMIT[0]: [("weights.pkl", "benign"), ("extra/payload.pkl", "evil")]}),
    "acme/odd-data": ("dataset", 5, {COMMIT[1]: [("data/odd.pkl", "odd"), ("data/broken.pkl", "broken")]}),
    "acme/clean-model": ("model", 2, {COMMIT[2]: [("model.pkl", "benign")]}),
    HOSTILE_REPO: ("model", 1, {COMMIT[3]: [(HOSTILE_PATH, "xss")]}),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("service-dashboard")
    world = new_world(root)
    hostile = root / "fixtures" / "xss.pkl"
    hostile.write_bytes(pickle.dumps(_Call(os.system, (f"echo '{SCRIPT_EVIDENCE}'",))))
    world.scans["xss"] = scan_file(hostile)
    world.keys["xss"] = content_key(sha256=world.scans["xss"].sha256)
    fill_store(world, SPEC)
    process, base = start_server(world)
    yield world, base
    stop_server(process)
    world.queue.close()
    world.store.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page whose dialogs (alert, confirm...) and console errors are recorded."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        return path

    def close(self):
        self.context.close()


@pytest.fixture
def watched(browser):
    page = Watched(browser)
    yield page
    page.close()


def api(base: str, path: str, **params):
    response = httpx.get(base + path, params=params, timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()


def test_overview(served, watched, tmp_path):
    world, base = served
    stats = api(base, "/api/v1/stats")
    page = watched.page
    page.goto(base + "/")
    assert page.title().startswith("Overview")
    assert page.locator("#repos-scanned").inner_text() == str(stats["repos_scanned"]) == "4"
    assert page.locator("#files-scanned").inner_text() == str(stats["files_scanned"])
    assert page.locator("#repos-malicious").inner_text() == "2"
    assert page.locator("#queue-queued").inner_text() == "0"
    assert page.locator("#categories").inner_text().count("command_exec") == 1
    bars = page.locator("#verdict-chart rect.bar")
    assert bars.count() == sum(1 for day in stats["over_time"] for v in ("clean", "inconclusive", "suspicious",
                                                                         "malicious") if day[v]) >= 4
    assert float(bars.first.get_attribute("height")) > 0
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"  # CSS loaded
    watched.shot(tmp_path, "overview")
    assert watched.dialogs == [] and watched.console_errors == []


def test_findings_filter(served, watched, tmp_path):
    world, base = served
    page = watched.page
    page.goto(base + "/findings")
    everything = api(base, "/api/v1/findings", per_page=200)["total"]
    assert page.locator("#finding-count").inner_text().startswith(f"{everything} finding")
    page.select_option("#finding-filters select[name=verdict]", "suspicious")
    page.click("#finding-filters button[type=submit]")
    page.wait_for_url(re.compile(r"verdict=suspicious"))
    assert parse_qs(urlsplit(page.url).query)["verdict"] == ["suspicious"]
    expected = api(base, "/api/v1/findings", verdict="suspicious")["items"]
    rows = page.locator("tr.finding-row")
    assert rows.count() == len(expected) >= 1
    assert all(rows.nth(i).locator(".badge.v-suspicious").count() == 1 for i in range(rows.count()))
    assert "data/odd.pkl" in page.locator("#findings").inner_text()

    page.fill("#finding-filters input[name=q]", "system")
    page.select_option("#finding-filters select[name=verdict]", "")
    page.click("#finding-filters button[type=submit]")
    page.wait_for_url(re.compile(r"q=system"))
    text = page.locator("#findings").inner_text()
    assert "extra/payload.pkl" in text and "data/odd.pkl" not in text
    watched.shot(tmp_path, "findings")

    page.goto(base + "/findings?page=-2")  # refused with the reason, not a crash
    assert "greater than or equal to 1" in page.locator(".flash.error").inner_text()
    assert watched.dialogs == []


def test_repo_page_shows_file_verdicts_and_evidence(served, watched, tmp_path):
    world, base = served
    page = watched.page
    page.goto(base + f"/repos/{world.repo_ids['acme/evil-model']}")
    assert page.locator("#repo-name").inner_text() == "acme/evil-model"
    assert page.locator("#repo-verdict").inner_text() == "malicious"
    rows = page.locator("tr.file-row")
    assert rows.count() == 2
    first = rows.nth(0)  # the worst file first
    assert "extra/payload.pkl" in first.inner_text() and first.locator(".badge.v-malicious").count() == 1
    assert "posix.system('id')" in first.locator("pre.evidence").inner_text()
    assert rows.nth(1).locator(".badge.v-clean").count() == 1
    watched.shot(tmp_path, "repo")
    page.click(f"a[href='/files/{world.keys['evil']}']")
    page.wait_for_url(re.compile("/files/"))
    assert page.locator("#file-verdict").inner_text() == "malicious"
    assert page.locator("#locations").inner_text().count("acme/evil-model") == 1


def test_triage_through_the_page(served, watched, tmp_path):
    world, base = served
    key = world.keys["odd"]
    page = watched.page
    page.goto(base + f"/files/{key}")
    assert page.locator("#triage-state").inner_text() == "open"

    page.fill("#triage-form input[name=reason]", "harmless helper class")
    page.fill("#triage-form input[name=actor]", "carol")
    page.fill("#triage-form input[name=token]", "not-the-token")
    page.click("#triage-form button[value=accept]")
    assert "valid API token" in page.locator(".flash.error").inner_text()
    assert api(base, f"/api/v1/files/{key}/triage") == []

    page.fill("#triage-form input[name=token]", TOKEN)
    page.click("#triage-form button[value=accept]")
    page.wait_for_url(re.compile(r"done=accepted"))
    assert "accepted" in page.locator(".flash.ok").inner_text()
    assert page.locator("#triage-state").inner_text() == "accepted"
    assert "harmless helper class" in page.locator("#triage-history").inner_text()
    history = api(base, f"/api/v1/files/{key}/triage")
    assert [(h["decision"], h["reason"], h["actor"]) for h in history] == [
        ("accepted", "harmless helper class", "carol")]
    watched.shot(tmp_path, "triage")

    # the token is remembered for the tab: a re-scan needs no typing
    assert page.input_value("#triage-form input[name=token]") == TOKEN
    page.click("#triage-form button[value=rescan]")
    page.wait_for_url(re.compile(r"done=queued"))
    assert world.queue.depth()["queued"] == 1
    assert [h["decision"] for h in api(base, f"/api/v1/files/{key}/triage")] == ["rescan", "accepted"]

    page.click("#triage-form button[value=accept]")  # no reason: refused, nothing recorded
    assert "reason" in page.locator(".flash.error").inner_text()
    assert len(api(base, f"/api/v1/files/{key}/triage")) == 2
    assert watched.dialogs == []


def test_hostile_names_paths_and_evidence_are_shown_as_text(served, watched, tmp_path):
    world, base = served
    page = watched.page
    key = world.keys["xss"]
    pages = [f"/repos/{world.repo_ids[HOSTILE_REPO]}", f"/files/{key}", "/findings?q=script",
             "/search?q=script", "/", "/repos", "/findings?" + urlencode({"repo": HOSTILE_REPO})]
    for number, path in enumerate(pages):
        page.goto(base + path)
        assert page.evaluate("window.__xss") is None, path
        assert page.evaluate("document.querySelectorAll('script').length") == 1, path  # dashboard.js only
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0, path
        watched.shot(tmp_path, f"hostile-{number}")
    page.goto(base + f"/repos/{world.repo_ids[HOSTILE_REPO]}")
    assert page.locator("#repo-name").inner_text() == HOSTILE_REPO
    assert HOSTILE_PATH in page.locator("#files").inner_text()
    assert SCRIPT_EVIDENCE in page.locator("pre.evidence").inner_text()
    page.goto(base + "/search?q=script")
    assert HOSTILE_PATH in page.locator("#file-hits").inner_text()
    raw = httpx.get(base + f"/files/{key}", timeout=10.0).text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in raw and "<script>window" not in raw
    assert watched.dialogs == []
    assert not [e for e in watched.console_errors if "Content Security Policy" in e]
