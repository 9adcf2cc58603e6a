"""The REST API of `malhug serve`, over a results store filled by real scans of generated files.

Most tests go through FastAPI's TestClient (the full ASGI stack, no socket); one starts the real
`malhug serve` command on 127.0.0.1 and talks HTTP to it. The malicious fixture is a pickle whose
`__reduce__` names os.system('id'): it is scanned, never loaded.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from malhug.scanner import scan_file
from malhug.service.api.app import create_app
from malhug.service.keys import content_key, fingerprint, result_key
from malhug.service.queue import open_queue
from malhug.service.settings import ServiceSettings
from malhug.service.store.models import FileResult
from malhug.service.store.store import Store
from postgres_server import postgres_or_skip

TOKEN = "t-" + secrets.token_hex(16)
HOST = "127.0.0.1"
SOURCE = "http://127.0.0.1:9"  # never contacted: the store only names it


class _Call:
    """Pickles as a call of `func(*args)` (its __reduce__); never unpickled by the tests."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def make_fixtures(folder: Path) -> dict[str, Path]:
    """evil: os.system('id') (malicious); benign: plain data (clean); odd: an unknown class
    (suspicious); broken: a truncated stream (inconclusive)."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        "evil": pickle.dumps(_Call(os.system, ("id",))),
        "benign": pickle.dumps({"weights": [0.5, 1.5, 2.5], "name": "tiny"}),
        "odd": pickle.dumps(_Call(io.StringIO, ("x",))),
        "broken": pickle.dumps({"numbers": list(range(64))})[:-5],
    }
    paths = {}
    for name, data in blobs.items():
        paths[name] = folder / f"{name}.pkl"
        paths[name].write_bytes(data)
    return paths


@dataclass
class World:
    settings: ServiceSettings
    store: Store
    queue: object
    scans: dict
    keys: dict  # fixture name -> content key
    repo_ids: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # repo name -> (kind, priority, {commit: [(path, fixture)]})
    gone: set = field(default_factory=set)


PENDING = "pending"  # a file whose result never arrives


def fill_store(world: World, spec: dict, gone=()) -> None:
    """Record the repos of `spec`, saving each file's real scan result under its result key."""
    for name, (kind, priority, commits) in spec.items():
        repo_id = world.store.upsert_repo(SOURCE, kind, name, priority)
        world.repo_ids[name] = repo_id
        for commit, files in commits.items():
            rows = []
            for path, fixture in files:
                key = world.keys[fixture]
                rkey = result_key(key, path)
                if fixture != PENDING:
                    world.store.save_result(rkey, key, fingerprint(), world.scans[fixture])
                rows.append((path, key, rkey, 10 if fixture == PENDING else world.scans[fixture].size))
            world.store.record_revision(repo_id, commit, rows)
    for name in gone:
        world.store.mark_gone(SOURCE, spec[name][0], name)
    world.spec.update(spec)
    world.gone.update(gone)


def new_world(root: Path, token: str | None = TOKEN, database_url: str | None = None) -> World:
    settings = ServiceSettings(state_dir=root / "state", api_token=token, database_url=database_url)
    store = Store(settings.store_url)
    queue = open_queue(settings)
    paths = make_fixtures(root / "fixtures")
    scans = {name: scan_file(path) for name, path in paths.items()}
    keys = {name: content_key(sha256=result.sha256) for name, result in scans.items()}
    keys[PENDING] = content_key(sha256=hashlib.sha256(b"never scanned").hexdigest())
    return World(settings, store, queue, scans, keys)


COMMIT = [c * 40 for c in "abcdef"]
SPEC = {
    "acme/evil-model": ("model", 50, {COMMIT[0]: [("weights.pkl", "benign")],
                                      COMMIT[1]: [("weights.pkl", "benign"), ("extra/payload.pkl", "evil")]}),
    "acme/odd-data": ("dataset", 5, {COMMIT[2]: [("data/odd.pkl", "odd"), ("data/broken.pkl", "broken")]}),
    "acme/pending-model": ("model", 1, {COMMIT[3]: [("new.pkl", PENDING)]}),
    "mirror/copy-of-evil": ("model", 0, {COMMIT[4]: [("model.pkl", "evil")]}),
    **{f"bulk/clean-{n:02d}": ("model", 0, {COMMIT[5]: [("w.pkl", "benign")]}) for n in range(25)},
}
GONE = ("bulk/clean-24",)


@pytest.fixture(scope="module")
def postgres():
    server = postgres_or_skip()
    yield server
    server.cleanup()


BACKENDS = ["sqlite", "postgresql"]


def database_url(request, backend: str) -> str | None:
    """None (SQLite in the state folder) or a new database on the test PostgreSQL server."""
    if backend == "sqlite":
        return None
    return request.getfixturevalue("postgres").create_database("api_" + secrets.token_hex(4))


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory):
    world = new_world(tmp_path_factory.mktemp("service-api"), database_url=database_url(request, request.param))
    fill_store(world, SPEC, GONE)
    yield world
    world.queue.close()
    world.store.dispose()


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(world.settings, world.store, world.queue)) as client:
        yield client


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def get(client, url, **params):
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def expected_repo_verdicts(world: World) -> Counter:
    """The verdict each repo must have: the worst of its last commit's files (pending if any is)."""
    order = ["clean", "inconclusive", "suspicious", "malicious"]
    verdicts = Counter()
    for name, (_kind, _priority, commits) in world.spec.items():
        if name in world.gone:
            continue
        last = list(commits.values())[-1]
        if any(fixture == PENDING for _path, fixture in last):
            verdicts["pending"] += 1
            continue
        verdicts[max((str(world.scans[f].verdict) for _p, f in last), key=order.index)] += 1
    return verdicts


# -- repos -----------------------------------------------------------------------------------------

def test_fixtures_scan_to_every_verdict(world):
    assert {name: str(result.verdict) for name, result in world.scans.items()} == {
        "evil": "malicious", "benign": "clean", "odd": "suspicious", "broken": "inconclusive"}


def test_repos_are_paged_without_gaps_or_repeats(client, world):
    seen = []
    for page in (1, 2, 3):
        data = get(client, "/api/v1/repos", page=page, per_page=12, sort="name")
        assert data["total"] == len(SPEC) and data["page"] == page and data["per_page"] == 12
        seen += [item["name"] for item in data["items"]]
    assert seen == sorted(SPEC)
    assert get(client, "/api/v1/repos", page=4, per_page=12)["items"] == []
    by_priority = [item["name"] for item in get(client, "/api/v1/repos", per_page=2)["items"]]
    assert by_priority == ["acme/evil-model", "acme/odd-data"]


@pytest.mark.parametrize("params, names", [
    ({"verdict": "malicious"}, {"acme/evil-model", "mirror/copy-of-evil"}),
    ({"verdict": "suspicious"}, {"acme/odd-data"}),
    ({"pending": "true"}, {"acme/pending-model"}),
    ({"kind": "dataset"}, {"acme/odd-data"}),
    ({"q": "EVIL"}, {"acme/evil-model", "mirror/copy-of-evil"}),
    ({"q": "clean-2", "gone": "false"}, {f"bulk/clean-{n}" for n in range(20, 24)}),
    ({"gone": "true"}, {"bulk/clean-24"}),
    ({"q": "%"}, set()),  # a wildcard character is searched for as itself
])
def test_repo_filters(client, params, names):
    data = get(client, "/api/v1/repos", per_page=200, **params)
    assert {item["name"] for item in data["items"]} == names
    assert data["total"] == len(names)


def test_repo_detail_has_revisions_and_the_last_revisions_files_with_evidence(client, world):
    repo_id = world.repo_ids["acme/evil-model"]
    data = get(client, f"/api/v1/repos/{repo_id}")
    assert data["name"] == "acme/evil-model" and data["verdict"] == "malicious"
    assert data["last_commit"] == COMMIT[1]
    assert [rev["commit"] for rev in data["revisions"]] == [COMMIT[1], COMMIT[0]]
    assert [rev["files"] for rev in data["revisions"]] == [2, 1]
    files = {f["path"]: f for f in data["last_revision"]["file_list"]}
    assert set(files) == {"weights.pkl", "extra/payload.pkl"}
    evil = files["extra/payload.pkl"]
    assert evil["verdict"] == "malicious" and evil["format"] == "pickle"
    assert evil["content_key"] == world.keys["evil"]
    finding = evil["findings"][0]
    assert finding["rule"] == "pickle-dangerous-callable" and finding["severity"] == "critical"
    assert "system('id')" in finding["evidence"]
    assert files["weights.pkl"]["verdict"] == "clean" and files["weights.pkl"]["findings"] == []

    pending = get(client, f"/api/v1/repos/{world.repo_ids['acme/pending-model']}")
    assert pending["verdict"] is None
    assert pending["last_revision"]["file_list"][0]["verdict"] is None

    broken = get(client, f"/api/v1/repos/{world.repo_ids['acme/odd-data']}")["last_revision"]["file_list"]
    problem_files = [f for f in broken if f["problems"]]
    assert [f["path"] for f in problem_files] == ["data/broken.pkl"]
    assert "truncated" in problem_files[0]["problems"][0]["reason"]


def test_revisions_routes(client, world):
    repo_id = world.repo_ids["acme/evil-model"]
    page = get(client, f"/api/v1/repos/{repo_id}/revisions", per_page=1, page=2)
    assert page["total"] == 2 and [rev["commit"] for rev in page["items"]] == [COMMIT[0]]
    revision = get(client, f"/api/v1/revisions/{page['items'][0]['id']}")
    assert revision["repo"]["name"] == "acme/evil-model" and revision["verdict"] == "clean"
    assert [f["path"] for f in revision["file_list"]] == ["weights.pkl"]
    assert client.get("/api/v1/revisions/999999").status_code == 404
    assert client.get("/api/v1/repos/999999/revisions").status_code == 404
    assert client.get("/api/v1/repos/999999").status_code == 404


def test_file_by_content_key(client, world):
    data = get(client, f"/api/v1/files/{world.keys['evil']}")
    assert data["verdict"] == "malicious" and data["triage_state"] in ("open", "escalated")
    assert len(data["results"]) == 1 and data["results"][0]["fingerprint"] == fingerprint()
    assert {(loc["repo"], loc["path"]) for loc in data["locations"]} == {
        ("acme/evil-model", "extra/payload.pkl"), ("mirror/copy-of-evil", "model.pkl")}
    assert data["locations_total"] == 2
    pending = get(client, f"/api/v1/files/{world.keys[PENDING]}")
    assert pending["verdict"] is None and pending["results"] == []
    unknown = "sha256:" + "0" * 64
    assert client.get(f"/api/v1/files/{unknown}").status_code == 404


# -- findings and search ---------------------------------------------------------------------------

def findings(client, **params) -> list[dict]:
    return get(client, "/api/v1/findings", per_page=200, **params)["items"]


def test_findings_list_newest_results_with_their_repos(client, world):
    items = findings(client)
    expected = sum(len(world.scans[name].findings) for name in ("evil", "benign", "odd", "broken"))
    assert len(items) == expected
    evil = [item for item in items if item["content_key"] == world.keys["evil"]]
    assert evil and all(item["repos"] == 2 for item in evil)
    assert {loc["repo"] for loc in evil[0]["locations"]} == {"acme/evil-model", "mirror/copy-of-evil"}
    ranks = ["info", "low", "medium", "high", "critical"]
    severities = [ranks.index(item["severity"]) for item in items]
    assert severities == sorted(severities, reverse=True)


@pytest.mark.parametrize("params, fixtures", [
    ({"verdict": "malicious"}, {"evil"}),
    ({"verdict": "suspicious"}, {"odd"}),
    ({"verdict": "clean"}, set()),
    ({"severity": "critical"}, {"evil"}),
    ({"min_severity": "medium"}, {"evil", "odd"}),
    ({"category": "command_exec"}, {"evil"}),
    ({"rule": "pickle-unknown-global"}, {"odd"}),
    ({"repo": "mirror/copy-of-evil"}, {"evil"}),
    ({"repo": "acme/odd-data"}, {"odd"}),
    ({"repo": "bulk/clean-01"}, set()),
    ({"q": "system"}, {"evil"}),
    ({"q": "payload"}, {"evil"}),  # a path of the file
    ({"q": "StringIO"}, {"odd"}),
    ({"q": "pickle_dangerous"}, set()),  # "_" is no wildcard (the rule is pickle-dangerous-...)
    ({"q": "%"}, set()),
])
def test_finding_filters(client, world, params, fixtures):
    found = {next(name for name, key in world.keys.items() if key == item["content_key"])
             for item in findings(client, **params)}
    assert found == fixtures


def test_findings_pagination(client):
    everything = findings(client)
    paged = []
    for page in range(1, len(everything) + 1):
        data = get(client, "/api/v1/findings", per_page=1, page=page)
        assert data["total"] == len(everything)
        paged += [item["id"] for item in data["items"]]
    assert paged == [item["id"] for item in everything]


def test_search_names_and_paths(client, world):
    data = get(client, "/api/v1/search", q="evil")
    assert {repo["name"] for repo in data["repos"]} == {"acme/evil-model", "mirror/copy-of-evil"}
    assert data["files"] == []
    data = get(client, "/api/v1/search", q="payload")
    assert data["repos"] == []
    assert [(f["repo"], f["path"], f["verdict"]) for f in data["files"]] == [
        ("acme/evil-model", "extra/payload.pkl", "malicious")]
    assert len(get(client, "/api/v1/search", q="w.pkl", limit=5)["files"]) == 5


# -- overview --------------------------------------------------------------------------------------

def test_stats_match_the_store(client, world):
    data = get(client, "/api/v1/stats", days=7)
    verdicts = expected_repo_verdicts(world)
    assert data["repos_total"] == len(SPEC) and data["repos_gone"] == len(GONE)
    assert data["repos_pending"] == verdicts["pending"] == 1
    assert data["repos_scanned"] == len(SPEC) - len(GONE) - verdicts["pending"]
    for verdict in ("clean", "inconclusive", "suspicious", "malicious"):
        assert data["repos_by_verdict"][verdict] == verdicts[verdict], verdict
    assert data["files_by_verdict"] == {"clean": 1, "inconclusive": 1, "suspicious": 1, "malicious": 1}
    assert data["files_scanned"] == 4 and data["files_pending"] == 1
    assert data["malicious_by_category"] == [{"category": "command_exec", "files": 1}]
    assert len(data["over_time"]) == 7
    days = [day["day"] for day in data["over_time"]]
    assert days == sorted(days) and len(set(days)) == 7
    per_verdict = {v: sum(day[v] for day in data["over_time"]) for v in ("clean", "inconclusive", "suspicious",
                                                                         "malicious")}
    assert per_verdict == data["files_by_verdict"]  # every result was stored within the week
    assert data["queue"] == world.queue.depth()
    assert data["fingerprint"] == fingerprint()


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/api/v1/findings?verdict=evil",
    "/api/v1/findings?severity=extreme",
    "/api/v1/findings?page=-1",
    "/api/v1/findings?page=0",
    "/api/v1/findings?per_page=0",
    "/api/v1/findings?per_page=100000",
    "/api/v1/findings?q=" + "x" * 201,
    "/api/v1/findings?rule=" + "r" * 129,
    "/api/v1/findings?triage=maybe",
    "/api/v1/findings?verdcit=malicious",  # a misspelt filter must not match everything
    "/api/v1/repos?kind=tool",
    "/api/v1/repos?pending=perhaps",
    "/api/v1/search",
    "/api/v1/search?q=",
    "/api/v1/stats?days=0",
    "/api/v1/repos/-3",
    "/api/v1/repos/abc",
    "/api/v1/files/md5:1234",
    "/api/v1/files/sha256:" + "g" * 64,
])
def test_bad_input_is_a_422_naming_the_field(client, url):
    response = client.get(url)
    assert response.status_code == 422, url
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] and detail[0]["msg"]


@pytest.mark.parametrize("route, body", [
    ("accept", {}),  # a reason is required
    ("accept", {"reason": "   "}),
    ("accept", {"reason": "x" * 2001}),
    ("accept", {"reason": "fine", "actor": "a" * 129}),
    ("accept", {"reason": "fine", "rule": ""}),
    ("accept", {"reason": "fine", "unknown": 1}),
    ("escalate", {"reason": 5}),
    ("rescan", {"priority": "high"}),
])
def test_bad_bodies_are_refused(client, world, route, body):
    history = f"/api/v1/files/{world.keys['odd']}/triage"
    before = client.get(history).json()
    response = client.post(f"/api/v1/files/{world.keys['odd']}/{route}", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert client.get(history).json() == before
    assert world.queue.depth()["queued"] == 0


def test_a_body_that_is_not_json_is_refused(client, world):
    response = client.post(f"/api/v1/files/{world.keys['odd']}/accept", content=b"reason=fine",
                           headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 422


# -- authentication --------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["accept", "escalate", "rescan"])
def test_writes_need_the_token(client, world, route):
    url = f"/api/v1/files/{world.keys['benign']}/{route}"
    before = client.get(f"/api/v1/files/{world.keys['benign']}/triage").json()
    missing = client.post(url, json={"reason": "x"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.post(url, json={"reason": "x"}, headers=auth(TOKEN + "x"))
    assert wrong.status_code == 401
    basic = client.post(url, json={"reason": "x"}, headers={"Authorization": "Basic " + TOKEN})
    assert basic.status_code == 401
    assert client.get(f"/api/v1/files/{world.keys['benign']}/triage").json() == before
    assert world.queue.depth()["queued"] == 0


def test_without_a_configured_token_writes_are_forbidden_and_reads_open(world):
    settings = replace(world.settings, api_token=None)
    with TestClient(create_app(settings, world.store, world.queue)) as client:
        response = client.post(f"/api/v1/files/{world.keys['odd']}/accept", json={"reason": "x"},
                               headers=auth())
        assert response.status_code == 403
        assert "MALHUG_API_TOKEN" in response.json()["detail"]
        assert client.get("/api/v1/repos").status_code == 200


# -- triage ----------------------------------------------------------------------------------------

def test_accept_and_escalate_are_recorded_and_filterable(client, world):
    odd, evil = world.keys["odd"], world.keys["evil"]
    assert {f["content_key"] for f in findings(client, triage="open")} >= {odd, evil}

    accepted = client.post(f"/api/v1/files/{odd}/accept", headers=auth(),
                           json={"reason": "io.StringIO is harmless here", "actor": "alice"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["decision"] == "accepted" and accepted.json()["actor"] == "alice"

    rule = world.scans["evil"].findings[0].rule
    escalated = client.post(f"/api/v1/files/{evil}/escalate", headers=auth(), json={"rule": rule})
    assert escalated.status_code == 201 and escalated.json()["rule"] == rule

    assert {f["content_key"] for f in findings(client, triage="accepted")} == {odd}
    assert {f["content_key"] for f in findings(client, triage="escalated")} == {evil}
    assert odd not in {f["content_key"] for f in findings(client, triage="open")}
    assert get(client, f"/api/v1/files/{odd}")["triage_state"] == "accepted"

    history = get(client, f"/api/v1/files/{odd}/triage")
    assert [(h["decision"], h["reason"], h["actor"]) for h in history] == [
        ("accepted", "io.StringIO is harmless here", "alice")]

    # the latest decision wins
    assert client.post(f"/api/v1/files/{odd}/escalate", headers=auth(), json={}).status_code == 201
    assert get(client, f"/api/v1/files/{odd}")["triage_state"] == "escalated"
    assert [h["decision"] for h in get(client, f"/api/v1/files/{odd}/triage")] == ["escalated", "accepted"]

    unknown = "git:" + "1" * 40
    assert client.post(f"/api/v1/files/{unknown}/accept", headers=auth(), json={"reason": "x"}).status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_rescan_queues_the_file_again(request, tmp_path, backend):
    world = new_world(tmp_path, database_url=database_url(request, backend))
    try:
        fill_store(world, {"acme/again": ("model", 3, {COMMIT[0]: [("model.pkl", "odd")]})})
        old_key = result_key(world.keys["benign"], "old.pkl", "0.0.1+0000000000000000")
        world.store.save_result(old_key, world.keys["benign"], "0.0.1+0000000000000000", world.scans["benign"])
        other = world.store.upsert_repo(SOURCE, "model", "acme/older", 1)
        world.store.record_revision(other, COMMIT[1], [("old.pkl", world.keys["benign"], old_key, 5)])
        with TestClient(create_app(world.settings, world.store, world.queue)) as client:
            assert world.queue.depth()["queued"] == 0
            url = f"/api/v1/files/{world.keys['odd']}/rescan"
            first = client.post(url, headers=auth(), json={"reason": "rules changed", "actor": "bob"})
            assert first.status_code == 202, first.text
            assert first.json()["queued"] is True and first.json()["triage"]["decision"] == "rescan"
            assert world.queue.depth()["queued"] == 1
            assert client.post(url, headers=auth()).json()["queued"] is False  # one live job per key
            assert world.queue.depth()["queued"] == 1
            # the old result is dropped, so the worker really scans again; the verdict stays meanwhile
            assert get(client, f"/api/v1/files/{world.keys['odd']}")["results"] == []
            assert get(client, f"/api/v1/repos/{world.repo_ids['acme/again']}")["verdict"] == "suspicious"

            claim = world.queue.claim("test-worker", 30)
            job = claim.job
            assert (job.key, job.content_key, job.fingerprint) == (
                result_key(world.keys["odd"], "model.pkl"), world.keys["odd"], fingerprint())
            assert (job.source, job.repo_type, job.repo_id, job.revision, job.path) == (
                SOURCE, "model", "acme/again", COMMIT[0], "model.pkl")
            assert job.sha256 == world.keys["odd"].split(":")[1] and job.priority == 1000
            assert world.store.save_result(job.key, job.content_key, job.fingerprint, world.scans["odd"])
            world.queue.complete(claim)
            assert get(client, f"/api/v1/files/{world.keys['odd']}")["verdict"] == "suspicious"
            revision = get(client, f"/api/v1/repos/{world.repo_ids['acme/again']}")["last_revision"]
            assert revision["completed_at"] is not None and revision["verdict"] == "suspicious"

            # a file recorded under an older fingerprint gets a fresh key, and its revision is re-keyed
            stale = client.post(f"/api/v1/files/{world.keys['benign']}/rescan", headers=auth())
            assert stale.status_code == 202
            fresh = result_key(world.keys["benign"], "old.pkl")
            assert stale.json()["key"] == fresh != old_key
            assert world.store.known_results([old_key]) == {old_key}  # the old fingerprint's result stays
            files = get(client, f"/api/v1/repos/{other}")["last_revision"]["file_list"]
            assert files[0]["result_key"] == fresh and files[0]["verdict"] is None
            assert world.queue.depth()["queued"] == 1

            history = get(client, f"/api/v1/files/{world.keys['odd']}/triage")
            assert [(h["decision"], h["actor"]) for h in history] == [("rescan", "api"), ("rescan", "bob")]
            assert client.post(f"/api/v1/files/sha256:{'5' * 64}/rescan", headers=auth()).status_code == 404
    finally:
        world.queue.close()
        world.store.dispose()


# -- OpenAPI ---------------------------------------------------------------------------------------

def test_openapi_spec_lists_every_route_and_resolves(client):
    spec = get(client, "/openapi.json")
    assert spec["openapi"].startswith("3.") and spec["info"]["title"] == "malhug"
    paths = spec["paths"]
    expected = {
        "/api/v1/repos": {"get"}, "/api/v1/repos/{repo_id}": {"get"},
        "/api/v1/repos/{repo_id}/revisions": {"get"}, "/api/v1/revisions/{revision_id}": {"get"},
        "/api/v1/files/{content_key}": {"get"}, "/api/v1/findings": {"get"}, "/api/v1/search": {"get"},
        "/api/v1/stats": {"get"}, "/api/v1/files/{content_key}/triage": {"get"},
        "/api/v1/files/{content_key}/accept": {"post"}, "/api/v1/files/{content_key}/escalate": {"post"},
        "/api/v1/files/{content_key}/rescan": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
    assert not any(path in paths for path in ("/", "/findings", "/metrics"))  # pages stay out of the API
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["responses"], (path, method)
            assert bool(operation.get("security")) == (method == "post"), (path, method)
    verdict = spec["components"]["schemas"]["VerdictName"]
    assert verdict["enum"] == ["clean", "inconclusive", "suspicious", "malicious"]

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    all_refs = set(refs(spec))
    assert all_refs
    for ref in all_refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref


# -- metrics ---------------------------------------------------------------------------------------

def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.parametrize("backend", BACKENDS)
def test_metrics_match_the_store_and_queue(request, tmp_path, backend):
    world = new_world(tmp_path, database_url=database_url(request, backend))
    try:
        fill_store(world, {"acme/m": ("model", 1, {COMMIT[0]: [("a.pkl", "evil"), ("b.pkl", "benign"),
                                                               ("c.pkl", "odd")]}),
                           "acme/n": ("model", 1, {COMMIT[1]: [("e.pkl", "benign")]}),
                           "acme/p": ("model", 1, {COMMIT[2]: [("d.pkl", PENDING)]})})
        run = world.store.start_run("once", SOURCE)
        world.store.finish_run(run, repos_checked=2, errors=3, error_text="hub answered 500")
        from malhug.service.jobs import ScanJob

        def job(n):
            return ScanJob(key=f"k{n}", content_key=world.keys["benign"], fingerprint=fingerprint(), source=SOURCE,
                           repo_type="model", repo_id="acme/m", revision=COMMIT[0], path=f"{n}.pkl")

        for n in range(3):
            world.queue.submit(job(n))
        claim = world.queue.claim("metrics-test", 60)
        for _attempt in range(world.settings.max_attempts):  # the poison cap
            world.queue.fail(claim, "boom")
            claim = world.queue.claim("metrics-test", 60)
        depth = world.queue.depth()
        assert depth["poisoned"] == 1

        with TestClient(create_app(world.settings, world.store, world.queue)) as client:
            samples = scrape(client)
        for state in ("queued", "running", "poisoned"):
            assert samples[("malhug_queue_jobs", (("state", state),))] == depth[state]
        assert samples[("malhug_jobs_poisoned", ())] == 1
        with world.store.session() as session:
            by_verdict = dict(session.execute(select(FileResult.verdict, func.count())
                                              .group_by(FileResult.verdict)).all())
            seconds = list(session.scalars(select(FileResult.seconds)))
        for verdict in ("clean", "inconclusive", "suspicious", "malicious"):
            assert samples[("malhug_files_scanned_total", (("verdict", verdict),))] == by_verdict.get(verdict, 0)
        assert samples[("malhug_repos", (("verdict", "malicious"),))] == 1
        assert samples[("malhug_repos", (("verdict", "clean"),))] == 1
        assert samples[("malhug_repos", (("verdict", "pending"),))] == 1
        assert samples[("malhug_scan_seconds_count", ())] == len(seconds) == 3
        assert samples[("malhug_scan_seconds_sum", ())] == pytest.approx(sum(seconds))
        assert samples[("malhug_scan_seconds_bucket", (("le", "+Inf"),))] == 3
        assert samples[("malhug_scan_seconds_bucket", (("le", "0.01"),))] == sum(s <= 0.01 for s in seconds)
        assert samples[("malhug_scan_seconds_bucket", (("le", "300.0"),))] == 3
        assert samples[("malhug_scan_rate_files_per_minute", ())] == pytest.approx(3 / 10)
        assert samples[("malhug_scan_run_errors_total", ())] == 3
        assert samples[("malhug_metrics_source_up", (("source", "store"),))] == 1
        assert samples[("malhug_metrics_source_up", (("source", "queue"),))] == 1
    finally:
        world.queue.close()
        world.store.dispose()


# -- the real server -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_up(base: str, process: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"malhug serve exited with {process.returncode}: {process.stdout.read()}")
        try:
            if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("malhug serve did not answer in time")


def start_server(world: World, token: str | None = TOKEN) -> tuple[subprocess.Popen, str]:
    """`malhug serve` on 127.0.0.1 over the world's store and queue, in its own process."""
    port = free_port()
    env = {**os.environ, "MALHUG_STATE_DIR": str(world.settings.state_dir)}
    for name in ("MALHUG_API_TOKEN", "MALHUG_DATABASE_URL", "MALHUG_QUEUE"):
        env.pop(name, None)
    if world.settings.database_url:
        env["MALHUG_DATABASE_URL"] = world.settings.database_url
    if token:
        env["MALHUG_API_TOKEN"] = token
    process = subprocess.Popen([sys.executable, "-m", "malhug", "serve", "--host", HOST, "--port", str(port),
                                "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://{HOST}:{port}"
    try:
        wait_until_up(base, process)
    except BaseException:
        stop_server(process)
        raise
    return process, base


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def test_malhug_serve_answers_over_http(world):
    process, base = start_server(world)
    try:
        with httpx.Client(base_url=base, timeout=10.0) as http:
            stats = http.get("/api/v1/stats").json()
            assert stats["repos_total"] == len(SPEC) and stats["files_scanned"] == 4
            page = http.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            policy = page.headers["content-security-policy"]
            assert "unsafe-inline" not in policy and "script-src 'self'" in policy
            assert page.headers["x-content-type-options"] == "nosniff"
            assert http.get("/static/dashboard.css").status_code == 200
            key = world.keys["broken"]
            assert http.post(f"/api/v1/files/{key}/escalate", json={}).status_code == 401
            done = http.post(f"/api/v1/files/{key}/escalate", json={"reason": "look again"}, headers=auth())
            assert done.status_code == 201, done.text
            assert http.get(f"/api/v1/files/{key}/triage").json()[0]["reason"] == "look again"
            families = {f.name for f in text_string_to_metric_families(http.get("/metrics").text)}
            assert {"malhug_queue_jobs", "malhug_files_scanned", "malhug_scan_seconds"} <= families
            assert http.get("/docs").status_code == 404  # no viewer that loads scripts from elsewhere
    finally:
        stop_server(process)
    assert re.search(r"no API token", process.stdout.read() or "") is None


# -- limits and failures ---------------------------------------------------------------------------

def test_an_oversize_body_is_refused_before_it_is_read(client, world):
    response = client.post(f"/api/v1/files/{world.keys['odd']}/accept", headers=auth(),
                           content=b'{"reason": "' + b"x" * 70_000 + b'"}')
    assert response.status_code == 413
    form = client.post(f"/files/{world.keys['odd']}/triage", content=b"reason=" + b"x" * 20_000,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 413
    assert client.get(f"/api/v1/files/{world.keys['odd']}/triage").status_code == 200


def test_a_store_that_cannot_be_reached_is_a_503_and_metrics_say_so(tmp_path):
    settings = ServiceSettings(state_dir=tmp_path, api_token=TOKEN)
    store = Store(settings.store_url)
    store.dispose()
    Path(settings.store_url.removeprefix("sqlite:///")).unlink()
    Path(settings.store_url.removeprefix("sqlite:///")).mkdir()  # the database cannot be opened any more
    queue = open_queue(settings)
    try:
        with TestClient(create_app(settings, store, queue)) as client:
            response = client.get("/api/v1/repos")
            assert response.status_code == 503 and "unavailable" in response.json()["detail"]
            samples = scrape(client)
            assert samples[("malhug_metrics_source_up", (("source", "store"),))] == 0
            assert samples[("malhug_metrics_source_up", (("source", "queue"),))] == 1
    finally:
        queue.close()


def test_dashboard_pages_answer_and_refuse_bad_input(client, world):
    evil = world.keys["evil"]
    for path in ("/", "/findings", "/findings?verdict=malicious&q=system", "/repos", "/repos?kind=dataset",
                 f"/repos/{world.repo_ids['acme/evil-model']}", f"/files/{evil}", "/search", "/search?q=evil"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "extra/payload.pkl" in client.get(f"/repos/{world.repo_ids['acme/evil-model']}").text
    for path in ("/repos/999999", "/repos/0", f"/files/sha256:{'7' * 64}", "/files/not-a-key"):
        assert client.get(path).status_code == 404, path
    for path in ("/findings?verdict=evil", "/findings?page=-1", "/repos?per_page=0", "/search?q=" + "x" * 201):
        page = client.get(path)
        assert page.status_code == 422 and 'class="flash error"' in page.text, path
    unknown = client.post(f"/files/{evil}/triage", data={"token": TOKEN, "action": "delete-everything"})
    assert unknown.status_code == 422
