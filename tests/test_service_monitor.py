"""The monitor against a real olah serving local git repositories, a folder of git mirrors, an
explicit repository list and a hub whose API lists repositories; the embedded queue and worker
scan what it queues and the store's verdicts follow."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hub_server import HOST, MiniHub, Olah, _HubHandler, git, make_git_repo
from sqlalchemy import select

from malhug.findings import Verdict
from malhug.service import keys
from malhug.service.fetch import TransientFetchError, display_path, scan_job
from malhug.service.handle import service_handlers
from malhug.service.jobs import ScanJob
from malhug.service.monitor import gitmirror
from malhug.service.monitor.monitor import PRIORITY_BACKFILL, PRIORITY_NEW_COMMIT, check_once, watch
from malhug.service.monitor.sources import (GitMirrorsSource, HubEndpointSource, RepoListSource, SourceError,
                                            popularity)
from malhug.service.queue import open_queue
from malhug.service.settings import ServiceSettings
from malhug.service.store.models import Repo, ScanRun
from malhug.service.store.store import Store
from malhug.service.worker import work

CONFIG = json.dumps({"model_type": "tiny", "hidden_size": 4}).encode()
README = b"# a model\nShared by many repositories.\n"
WEIGHTS = pickle.dumps([0.0] * 16, protocol=2)  # the same weights in every repository


class InertCall:
    """Pickled with a `__reduce__` that names `os.system('id')`: the pickle is written, never loaded."""

    def __reduce__(self):
        return (os.system, ("id",))


def malicious_pickle() -> bytes:
    return pickle.dumps(InertCall(), protocol=2)


def benign_pickle() -> bytes:
    return pickle.dumps({"weights": [0.0, 1.0], "name": "tiny"}, protocol=2)


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


def put_lfs_object(repo: Path, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    target = gitmirror.lfs_object(repo / ".git", oid)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return oid


def commit(repo: Path, files: dict) -> str:
    """Another commit on an existing repository: {path: bytes | None (delete)}."""
    for name, content in files.items():
        path = repo / name
        if content is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "update")
    return git(repo, "rev-parse", "HEAD")


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def olah(tmp_path_factory):
    """One olah for the module; each test adds repositories under an organisation of its own."""
    server = Olah(tmp_path_factory.mktemp("olah"))
    with server:
        yield server


@pytest.fixture(autouse=True)
def hub_environment(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


class Service:
    """A store and an embedded queue in a temporary state folder, and a worker to drain it."""

    def __init__(self, state: Path):
        self.settings = ServiceSettings.from_env({}, state_dir=state, lease_seconds=60.0)
        state.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.settings.store_url)
        self.queue = open_queue(self.settings)

    def queued_jobs(self) -> list[ScanJob]:
        """The jobs waiting in the embedded queue (read from its SQLite file, as a second reader)."""
        import sqlite3

        db = sqlite3.connect(self.settings.queue_file)
        try:
            rows = db.execute("SELECT body FROM jobs WHERE state = 'queued' ORDER BY id").fetchall()
        finally:
            db.close()
        return [ScanJob.from_json(body) for (body,) in rows]

    def drain(self, timeout: float = 60.0) -> int:
        handlers = service_handlers(self.settings)
        deadline = time.monotonic() + timeout
        try:
            return work(self.queue, handlers, max_attempts=self.settings.max_attempts,
                        lease_seconds=self.settings.lease_seconds, drain=True,
                        stop=lambda: time.monotonic() > deadline, poll_seconds=0.05)
        finally:
            handlers.close()

    def repo(self, source: str, kind: str, name: str) -> Repo | None:
        with self.store.session() as session:
            return session.scalar(select(Repo).where(Repo.source == source, Repo.kind == kind,
                                                     Repo.name == name))

    def runs(self) -> list[ScanRun]:
        with self.store.session() as session:
            return list(session.scalars(select(ScanRun).order_by(ScanRun.id)))

    def close(self) -> None:
        self.queue.close()
        self.store.dispose()


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path / "state")
    yield service
    service.close()


def shared_repos(mirrors: Path, org: str, count: int) -> dict[str, str]:
    """`count` model repositories that share most of their files; name -> head commit."""
    heads = {}
    for number in range(count):
        name = f"{org}/model-{number}"
        heads[name] = make_git_repo(mirrors / "models" / name, [{
            "config.json": CONFIG, "README.md": README, "weights.bin": WEIGHTS,
            "model.pkl": benign_pickle(), "own.txt": f"repository {number}\n".encode(),
        }])[-1]
    return heads


def list_file(tmp_path: Path, names) -> Path:
    path = tmp_path / "repos.txt"
    path.write_text("# the repositories to watch\n" + "\n".join(names) + "\n")
    return path


# -- one pass, dedup, incremental ----------------------------------------------------------------------
def test_first_pass_queues_every_distinct_file_once_and_a_second_pass_nothing(olah, service, tmp_path):
    heads = shared_repos(olah.mirrors, "shared", 6)
    source = HubEndpointSource(olah.endpoint, list_file=list_file(tmp_path, heads))
    first = check_once(source, service.store, service.queue)
    # olah lists no repositories through its API: the list file is the listing
    assert first.mode == "backfill"
    assert first.repos_checked == 6 and first.revisions_new == 6 and first.errors == 0
    # 4 files shared by all six + one own file each
    assert first.files_referenced == 30
    assert first.files_queued == 4 + 6
    assert first.files_known == 30 - 10
    assert service.queue.depth()["queued"] == 10
    jobs = service.queued_jobs()
    assert len({job.key for job in jobs}) == 10
    assert all(job.source == olah.endpoint and job.priority >= PRIORITY_BACKFILL for job in jobs)
    for name, head in heads.items():
        assert service.store.repo_commit(olah.endpoint, "model", name) == head

    second = check_once(source, service.store, service.queue)
    assert second.mode == "watch"
    assert (second.repos_checked, second.repos_unchanged, second.revisions_new, second.files_queued) == (6, 6, 0, 0)
    assert service.queue.depth()["queued"] == 10
    runs = service.runs()
    assert [(r.mode, r.repos_checked, r.files_queued) for r in runs] == [("backfill", 6, 10), ("watch", 6, 0)]
    assert all(r.finished_at is not None for r in runs)


def test_a_new_commit_queues_only_its_changed_file_and_the_verdict_follows(olah, service):
    heads = shared_repos(olah.mirrors, "incr", 2)
    source = RepoListSource(olah.endpoint, list(heads))
    check_once(source, service.store, service.queue)
    assert service.drain() == 6  # 4 shared + 2 own files
    repo = service.repo(olah.endpoint, "model", "incr/model-0")
    assert repo.verdict == "clean" and repo.last_commit == heads["incr/model-0"]

    head = commit(olah.mirrors / "models/incr/model-0", {"extra/evil.pkl": malicious_pickle()})
    result = check_once(source, service.store, service.queue)
    assert (result.mode, result.revisions_new, result.repos_unchanged, result.files_queued) == ("watch", 1, 1, 1)
    assert (result.files_referenced, result.files_changed) == (6, 1)
    (job,) = service.queued_jobs()
    assert (job.path, job.revision, job.repo_id) == ("extra/evil.pkl", head, "incr/model-0")
    assert job.priority >= PRIORITY_NEW_COMMIT
    assert service.repo(olah.endpoint, "model", "incr/model-0").last_commit == head
    assert service.drain() == 1
    repo = service.repo(olah.endpoint, "model", "incr/model-0")
    assert repo.verdict == "malicious"
    assert service.repo(olah.endpoint, "model", "incr/model-1").verdict == "clean"
    stored = service.store.result(job.key)
    assert stored.path == f"hf://incr/model-0@{head[:12]}/extra/evil.pkl"
    assert any("system" in finding.evidence for finding in stored.findings)


def test_a_changed_file_is_found_by_comparing_hub_listings(olah, service):
    heads = shared_repos(olah.mirrors, "edit", 1)
    source = RepoListSource(olah.endpoint, list(heads))
    check_once(source, service.store, service.queue)
    service.drain()
    commit(olah.mirrors / "models/edit/model-0", {"model.pkl": malicious_pickle(), "own.txt": None})
    result = check_once(source, service.store, service.queue)
    assert (result.files_queued, result.files_referenced, result.files_changed) == (1, 4, 1)
    (job,) = service.queued_jobs()
    assert job.path == "model.pkl"
    service.drain()
    assert service.repo(olah.endpoint, "model", "edit/model-0").verdict == "malicious"


# -- the three sources ------------------------------------------------------------------------------------
def test_git_mirrors_source_keys_lfs_files_by_sha256_and_diffs_commits(tmp_path, service):
    mirrors = tmp_path / "mirrors"
    weights = benign_pickle() * 40
    repo = mirrors / "models/acme/lfs-model"
    first = make_git_repo(repo, [{"config.json": CONFIG, "model.pkl": lfs_pointer(weights)}])[-1]
    oid = put_lfs_object(repo, weights)
    make_git_repo(mirrors / "datasets/acme/corpus", [{"data/train.jsonl": b'{"text": "hi"}\n'}])
    source = GitMirrorsSource(mirrors)
    assert [(r.kind, r.name) for r in source.repos(["model", "dataset"])] == [
        ("model", "acme/lfs-model"), ("dataset", "acme/corpus")]
    entries = {e.path: e for e in source.files(source.repos(["model"])[0], first)}
    assert entries["model.pkl"].content_key == f"sha256:{oid}" and entries["model.pkl"].size == len(weights)
    assert entries["config.json"].content_key == "git:" + keys.git_blob_id(CONFIG)

    result = check_once(source, service.store, service.queue)
    assert (result.repos_checked, result.files_queued) == (2, 3)
    service.drain()
    assert service.repo(source.location, "model", "acme/lfs-model").verdict == "clean"
    assert service.repo(source.location, "dataset", "acme/corpus").verdict == "clean"

    evil = malicious_pickle()
    second = commit(repo, {"model.pkl": lfs_pointer(evil), "README.md": README})
    put_lfs_object(repo, evil)
    assert source.changed_paths(source.repos(["model"])[0], first, second) == {"model.pkl", "README.md"}
    result = check_once(source, service.store, service.queue)
    assert (result.revisions_new, result.files_queued) == (1, 2)
    service.drain()
    assert service.repo(source.location, "model", "acme/lfs-model").verdict == "malicious"
    key = keys.result_key(f"sha256:{hashlib.sha256(evil).hexdigest()}", "model.pkl")
    stored = service.store.result(key)
    assert stored.verdict is Verdict.MALICIOUS
    assert stored.path == f"{source.location}/models/acme/lfs-model@{second[:12]}/model.pkl"


def test_repo_list_source_checks_only_the_listed_repositories(olah, service):
    heads = shared_repos(olah.mirrors, "listed", 3)
    make_git_repo(olah.mirrors / "datasets/listed/corpus", [{"data.csv": b"a,b\n1,2\n"}])
    source = RepoListSource(olah.endpoint, ["listed/model-0", "hf://datasets/listed/corpus",
                                            "models/listed/model-2"])
    result = check_once(source, service.store, service.queue, kinds=("model", "dataset"))
    assert result.repos_checked == 3 and result.errors == 0
    assert service.store.repo_commit(olah.endpoint, "model", "listed/model-1") is None
    assert service.store.repo_commit(olah.endpoint, "model", "listed/model-2") == heads["listed/model-2"]
    service.drain()
    assert service.repo(olah.endpoint, "dataset", "listed/corpus").verdict == "clean"


class ListingHub(MiniHub):
    """A MiniHub that also lists its repositories through `/api/models` and `/api/datasets`,
    with the download and like counts the test gives. Every file gets LFS metadata (its sha256),
    so content identity does not rest on MiniHub's path-derived blob ids."""

    def __init__(self, counts: dict):
        super().__init__(lfs_min=1)
        self.counts = counts  # repo id -> (downloads, likes)

    def handler_base(self) -> type:
        class ListingHandler(_HubHandler):
            def do_GET(self):
                hub = self.hub
                path = self.path.split("?", 1)[0].rstrip("/")
                if path in ("/api/models", "/api/datasets"):
                    kind = path.rsplit("/", 1)[1][:-1]
                    listing = [{"id": repo.repo_id, "sha": repo.sha,
                                "downloads": hub.counts.get(repo.repo_id, (0, 0))[0],
                                "likes": hub.counts.get(repo.repo_id, (0, 0))[1]}
                               for (repo_kind, _), repo in sorted(hub.repos.items()) if repo_kind == kind]
                    listing.sort(key=lambda item: -item["downloads"])
                    return self._json(listing)
                return super().do_GET()

        return ListingHandler


def test_hub_endpoint_source_lists_through_the_api_most_popular_first(tmp_path, service):
    counts = {"pop/famous": (5_000_000, 900), "pop/quiet": (3, 0), "pop/middle": (12_000, 40)}
    hub = ListingHub(counts)
    for name in counts:
        folder = tmp_path / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_bytes(CONFIG)
        (folder / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5], "name": name}, protocol=2))
        hub.add("model", name, folder)
    with hub:
        source = HubEndpointSource(hub.endpoint)
        refs = source.repos(["model"])
        assert [r.name for r in refs] == ["pop/famous", "pop/middle", "pop/quiet"]
        assert refs[0].priority == popularity(5_000_000, 900) > refs[1].priority > refs[2].priority
        assert all(r.commit for r in refs)  # the listing gives commits: no request per repository
        entries = source.files(refs[0], refs[0].commit)
        assert {e.path: e.content_key for e in entries}["config.json"] == \
            "sha256:" + hashlib.sha256(CONFIG).hexdigest()
        seen = []
        check_once(source, service.store, service.queue, kinds=("model",),
                   on_repo=lambda ref, outcome: seen.append((ref.name, outcome)))
        assert seen == [("pop/famous", "new"), ("pop/middle", "new"), ("pop/quiet", "new")]
        jobs = sorted(service.queued_jobs(), key=lambda job: -job.priority)
        assert jobs[0].repo_id == "pop/famous" and jobs[-1].repo_id == "pop/quiet"
        service.drain()
        assert service.repo(hub.endpoint, "model", "pop/middle").verdict == "clean"


def test_an_endpoint_without_a_listing_needs_a_list_file(olah, service):
    with pytest.raises(SourceError, match="list file"):
        HubEndpointSource(olah.endpoint).repos(["model"])
    result = check_once(HubEndpointSource(olah.endpoint), service.store, service.queue)
    assert result.errors == 1 and result.repos_checked == 0
    (run,) = service.runs()
    assert run.errors == 1 and "list file" in run.error_text


# -- repositories that disappear, rules that change -------------------------------------------------------
def test_a_repository_that_disappears_is_marked_gone_and_the_pass_goes_on(olah, service, tmp_path):
    heads = shared_repos(olah.mirrors, "gone", 3)
    source = HubEndpointSource(olah.endpoint, list_file=list_file(tmp_path, heads))
    check_once(source, service.store, service.queue)
    shutil.rmtree(olah.mirrors / "models/gone/model-1")
    commit(olah.mirrors / "models/gone/model-2", {"own.txt": b"changed\n"})
    seen = []
    result = check_once(source, service.store, service.queue,
                        on_repo=lambda ref, outcome: seen.append((ref.name, outcome)))
    assert result.repos_gone == 1 and result.errors == 0 and result.revisions_new == 1
    assert sorted(seen) == [("gone/model-0", "unchanged"), ("gone/model-1", "gone"), ("gone/model-2", "changed")]
    assert service.repo(olah.endpoint, "model", "gone/model-1").gone is True
    assert service.repo(olah.endpoint, "model", "gone/model-2").gone is False


def test_a_mirror_that_disappears_from_the_folder_is_marked_gone(tmp_path, service):
    mirrors = tmp_path / "mirrors"
    for name in ("keep", "drop"):
        make_git_repo(mirrors / "models/acme" / name, [{"config.json": CONFIG}])
    source = GitMirrorsSource(mirrors)
    check_once(source, service.store, service.queue)
    shutil.move(mirrors / "models/acme/drop", tmp_path / "drop")
    result = check_once(source, service.store, service.queue)
    assert result.repos_gone == 1 and result.errors == 0 and result.repos_checked == 1
    assert service.repo(source.location, "model", "acme/drop").gone is True
    assert service.repo(source.location, "model", "acme/keep").gone is False
    shutil.move(tmp_path / "drop", mirrors / "models/acme/drop")  # back, at the same commit
    result = check_once(source, service.store, service.queue)
    assert result.repos_gone == 0 and result.repos_unchanged == 2
    assert service.repo(source.location, "model", "acme/drop").gone is False


def test_a_stopped_pass_ends_at_the_next_repository_and_marks_nothing_gone(tmp_path, service):
    mirrors = tmp_path / "mirrors"
    for name in ("a", "b", "c"):
        make_git_repo(mirrors / "models/acme" / name, [{"config.json": CONFIG}])
    source = GitMirrorsSource(mirrors)
    check_once(source, service.store, service.queue)
    shutil.rmtree(mirrors / "models/acme/c")
    commit(mirrors / "models/acme/a", {"README.md": README})
    stop = threading.Event()

    def stop_after_first(ref, outcome):
        stop.set()

    result = check_once(source, service.store, service.queue, stop=stop, on_repo=stop_after_first)
    assert result.repos_checked == 1 and result.repos_gone == 0
    assert service.repo(source.location, "model", "acme/c").gone is False
    (run,) = service.runs()[1:]
    assert run.finished_at is not None and run.repos_checked == 1


def test_a_fingerprint_change_requeues_the_stale_files(tmp_path, service):
    mirrors = tmp_path / "mirrors"
    for number in range(2):
        make_git_repo(mirrors / f"models/acme/m{number}", [{"config.json": CONFIG, "model.pkl": benign_pickle()}])
    source = GitMirrorsSource(mirrors)
    old = "0.0.1+rules-before"
    first = check_once(source, service.store, service.queue, print_=old)
    assert first.files_queued == 2
    service.drain()
    assert service.repo(source.location, "model", "acme/m0").verdict == "clean"

    current = keys.fingerprint()
    result = check_once(source, service.store, service.queue, print_=current)
    assert result.repos_unchanged == 2 and result.revisions_new == 0
    assert result.files_rescan == 2  # the two distinct files, once each although two repos hold them
    assert {job.fingerprint for job in service.queued_jobs()} == {current}
    assert service.store.stale_files(current) == []  # the revisions wait for the new results
    again = check_once(source, service.store, service.queue, print_=current)
    assert again.files_rescan == 0
    service.drain()
    expected = {keys.result_key("git:" + keys.git_blob_id(CONFIG), "config.json", current),
                keys.result_key("git:" + keys.git_blob_id(benign_pickle()), "model.pkl", current)}
    assert service.store.known_results(expected) == expected
    assert service.repo(source.location, "model", "acme/m1").verdict == "clean"


def test_a_new_commit_after_a_fingerprint_change_also_queues_its_unchanged_files(tmp_path, service):
    mirrors = tmp_path / "mirrors"
    repo = mirrors / "models/acme/m"
    make_git_repo(repo, [{"config.json": CONFIG, "model.pkl": benign_pickle()}])
    source = GitMirrorsSource(mirrors)
    check_once(source, service.store, service.queue, print_="0.0.1+rules-before")
    service.drain()
    commit(repo, {"model.pkl": malicious_pickle()})
    result = check_once(source, service.store, service.queue)
    assert (result.revisions_new, result.files_changed, result.files_queued) == (1, 1, 2)
    assert sorted(job.path for job in service.queued_jobs()) == ["config.json", "model.pkl"]
    service.drain()
    assert service.repo(source.location, "model", "acme/m").verdict == "malicious"


# -- fetching one file -----------------------------------------------------------------------------------
def job_for(source: str, kind: str, name: str, revision: str, path: str, content: str, size=None) -> ScanJob:
    return ScanJob(key=keys.result_key(content, path), content_key=content, fingerprint=keys.fingerprint(),
                   source=source, repo_type=kind, repo_id=name, revision=revision, path=path, size=size,
                   sha256=content.split(":", 1)[1] if content.startswith("sha256:") else None)


def test_an_lfs_pointer_whose_object_is_missing_is_inconclusive(tmp_path):
    mirrors = tmp_path / "mirrors"
    data = b"never stored" * 20
    head = make_git_repo(mirrors / "models/acme/nolfs", [{"model.bin": lfs_pointer(data)}])[-1]
    oid = hashlib.sha256(data).hexdigest()
    job = job_for(str(mirrors), "model", "acme/nolfs", head, "model.bin", f"sha256:{oid}", len(data))
    result = scan_job(job)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "not in the mirror's LFS store" in result.problems[0].reason
    assert result.path == display_path(job) == f"{mirrors}/models/acme/nolfs@{head[:12]}/model.bin"


def test_fetch_fails_closed_for_missing_files_and_retries_network_errors(tmp_path, olah):
    mirrors = tmp_path / "mirrors"
    head = make_git_repo(mirrors / "models/acme/tiny", [{"model.pkl": malicious_pickle()}])[-1]
    blob = "git:" + keys.git_blob_id(malicious_pickle())
    found = scan_job(job_for(str(mirrors), "model", "acme/tiny", head, "model.pkl", blob))
    assert found.verdict is Verdict.MALICIOUS
    missing = scan_job(job_for(str(mirrors), "model", "acme/tiny", head, "other.pkl", blob))
    assert missing.verdict is Verdict.INCONCLUSIVE and "has no file" in missing.problems[0].reason
    gone = scan_job(job_for(str(mirrors), "model", "acme/absent", head, "model.pkl", blob))
    assert gone.verdict is Verdict.INCONCLUSIVE and "no longer in the mirror" in gone.problems[0].reason

    heads = shared_repos(olah.mirrors, "fetch", 1)
    remote = scan_job(job_for(olah.endpoint, "model", "fetch/model-0", heads["fetch/model-0"], "model.pkl",
                              "git:" + keys.git_blob_id(benign_pickle()), len(benign_pickle())))
    assert remote.verdict is Verdict.CLEAN and remote.format != "unknown"
    absent = scan_job(job_for(olah.endpoint, "model", "fetch/model-0", heads["fetch/model-0"], "absent.pkl",
                              blob))
    assert absent.verdict is Verdict.INCONCLUSIVE
    closed = f"http://{HOST}:{_closed_port()}"
    with pytest.raises(TransientFetchError):
        scan_job(job_for(closed, "model", "fetch/model-0", heads["fetch/model-0"], "model.pkl", blob, 10))


def _closed_port() -> int:
    from hub_server import free_port

    return free_port()


# -- end to end: the command, and a new commit's time to verdict -----------------------------------------
def test_monitor_command_once_with_workers_scans_a_mirror(tmp_path):
    mirrors = tmp_path / "mirrors"
    make_git_repo(mirrors / "models/acme/evil", [{"config.json": CONFIG, "model.pkl": malicious_pickle()}])
    make_git_repo(mirrors / "models/acme/fine", [{"config.json": CONFIG}])
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALHUG_")}
    done = subprocess.run([sys.executable, "-m", "malhug", "monitor", "--mirrors", str(mirrors), "--once",
                           "--workers", "1", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 repositories checked" in done.stdout and "2 files queued" in done.stdout
    store = Store(f"sqlite:///{state / 'store.sqlite'}", create=False)
    try:
        with store.session() as session:
            verdicts = dict(session.execute(select(Repo.name, Repo.verdict)).all())
    finally:
        store.dispose()
    assert verdicts == {"acme/evil": "malicious", "acme/fine": "clean"}


def test_new_commit_to_verdict_with_the_embedded_queue_and_workers(olah, service):
    from malhug.service.worker import run_pool

    heads = shared_repos(olah.mirrors, "live", 2)
    source = RepoListSource(olah.endpoint, list(heads))
    stop = threading.Event()
    passes = []
    monitor = threading.Thread(target=watch, args=(source, service.store, service.queue),
                               kwargs={"interval": 0.5, "stop": stop, "on_pass": passes.append}, daemon=True)
    pool = threading.Thread(target=run_pool, args=(service.settings, 1), kwargs={"stop": stop}, daemon=True)
    monitor.start()
    pool.start()
    try:
        assert _wait(lambda: service.repo(olah.endpoint, "model", "live/model-1") is not None and
                     service.repo(olah.endpoint, "model", "live/model-1").verdict == "clean", 90)
        started = time.monotonic()
        commit(olah.mirrors / "models/live/model-1", {"evil.pkl": malicious_pickle()})
        assert _wait(lambda: service.repo(olah.endpoint, "model", "live/model-1").verdict == "malicious", 60)
        latency = time.monotonic() - started
        assert latency < 60
        assert service.repo(olah.endpoint, "model", "live/model-0").verdict == "clean"
        assert passes and passes[0].mode == "backfill"
    finally:
        stop.set()
        monitor.join(timeout=30)
        pool.join(timeout=60)
    assert not monitor.is_alive() and not pool.is_alive()


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except AttributeError:
            pass
        time.sleep(0.1)
    return False
