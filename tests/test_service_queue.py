"""The job queue's contract, run against both backends: the embedded SQLite queue and Celery over
a real redis-server, with real worker processes (a spawned pool, a `malhug worker --queue celery`
process) handling jobs through malhug.service.handle and storing results in a real Store.

The worker processes load `probe_handlers` below by name. Its scan reads a real file with the
scanner, after acting out what the job's first path segment asks for: `ok` (nothing), `slow`
(0.3 s), `hang` (sleep past any time limit), `stubborn` (ignore the soft time limit), `fail` (raise), `flaky` (raise on the first attempt
only), `unavailable` (the results store is down for more attempts than the cap allows), `crash`
(SIGKILL its own process), `block` (on its first attempt, write its process id and wait to be killed), `gate`
(wait until the test opens it). Each attempt is logged in runs.sqlite in the state folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from malhug.findings import Verdict
from malhug.scanner import ScanOptions, scan_file
from malhug.service.jobs import ScanJob
from malhug.service.keys import content_key, result_key
from malhug.service.queue import Disposition, open_queue
from malhug.service.settings import ServiceSettings
from malhug.service.worker import Handlers, PoolOptions, run_pool

HERE = Path(__file__).resolve().parent
PROBE_HANDLERS = "test_service_queue:probe_handlers"
WAIT_SECONDS = 60.0
LEASE_SECONDS = 2.0
MAX_ATTEMPTS = 3
BACKENDS = ("sqlite", "celery")


# -- the probe handlers (run inside worker processes) ---------------------------------------------
def _runs_db(state_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(Path(state_dir) / "runs.sqlite"), timeout=30, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT, pid INTEGER, at REAL)")
    return db


def record_run(state_dir: Path, job: ScanJob) -> int:
    """Log one attempt; returns how many attempts this job has had."""
    db = _runs_db(state_dir)
    try:
        db.execute("INSERT INTO runs (key, pid, at) VALUES (?, ?, ?)", (job.key, os.getpid(), time.time()))
        return db.execute("SELECT COUNT(*) FROM runs WHERE key = ?", (job.key,)).fetchone()[0]
    finally:
        db.close()


def _marker(state_dir: Path, kind: str, job_key: str) -> Path:
    return Path(state_dir) / kind / hashlib.sha256(job_key.encode()).hexdigest()


def probe_handlers(settings) -> Handlers:
    from malhug.service.alerts import Alerter
    from malhug.service.handle import handle_job, poison
    from malhug.service.store import Store, StoreUnavailable

    state_dir = Path(settings.state_dir)
    store = Store(settings.store_url)
    alerter = Alerter(settings, store)

    def scan(job: ScanJob, options):
        attempt = record_run(state_dir, job)
        kind = job.path.split("/", 1)[0]
        if kind == "unavailable" and attempt <= MAX_ATTEMPTS + 1:
            raise StoreUnavailable(f"probe outage {attempt}")
        if kind == "fail" or (kind == "flaky" and attempt == 1):
            raise RuntimeError(f"probe failure {attempt} of {job.path}")
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "slow":
            time.sleep(0.3)
        if kind == "hang":
            time.sleep(WAIT_SECONDS)
        if kind == "stubborn":  # shrugs off the soft time limit: only the hard one ends it
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except Exception:  # noqa: BLE001
                    pass
        if kind in ("block", "gate"):
            marker = _marker(state_dir, kind, job.key)
            if kind == "block" and not marker.exists():
                marker.parent.mkdir(exist_ok=True)
                marker.write_text(str(os.getpid()))
                time.sleep(WAIT_SECONDS)  # until the test kills this process
                raise RuntimeError("the test never killed the blocked worker")
            deadline = time.monotonic() + WAIT_SECONDS
            while kind == "gate" and not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return scan_file(Path(job.source) / job.path, ScanOptions())

    return Handlers(handle=lambda job: handle_job(job, store, alerter, scan=scan),
                    poison=lambda job, error: poison(job, error, store, alerter),
                    close=lambda: (alerter.close(), store.dispose()),
                    postpone_on=(StoreUnavailable,), postpone_seconds=0.1)


# -- what the tests look at ----------------------------------------------------------------------
def runs(settings, key: str | None = None) -> list[tuple[str, int]]:
    db = _runs_db(settings.state_dir)
    try:
        if key is None:
            return db.execute("SELECT key, pid FROM runs ORDER BY rowid").fetchall()
        return db.execute("SELECT key, pid FROM runs WHERE key = ? ORDER BY rowid", (key,)).fetchall()
    finally:
        db.close()


def stored(settings, keys) -> dict[str, list[str]]:
    """result key -> the verdicts stored for it (a list, so a duplicate would show)."""
    from sqlalchemy import select

    from malhug.service.store import Store
    from malhug.service.store.models import FileResult

    store = Store(settings.store_url)
    try:
        with store.session() as session:
            rows = session.execute(select(FileResult.result_key, FileResult.verdict)
                                   .where(FileResult.result_key.in_(list(keys)))).all()
    finally:
        store.dispose()
    found: dict[str, list[str]] = {}
    for key, verdict in rows:
        found.setdefault(key, []).append(verdict)
    return found


def alerts(settings, content: str) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from malhug.service.store import Store
    from malhug.service.store.models import Alert

    store = Store(settings.store_url)
    try:
        with store.session() as session:
            return [tuple(row) for row in session.execute(
                select(Alert.verdict, Alert.channel).where(Alert.content_key == content)).all()]
    finally:
        store.dispose()


def stored_result(settings, key: str):
    from malhug.service.store import Store

    store = Store(settings.store_url)
    try:
        return store.result(key)
    finally:
        store.dispose()


def wait_for(predicate, what: str, timeout: float = WAIT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def make_job(files: Path, kind: str, priority: int = 0) -> ScanJob:
    """A job for a fresh text file under files/<kind>/ (unique content, so a unique key)."""
    name = uuid.uuid4().hex[:12]
    path = f"{kind}/{name}.txt"
    data = f"probe file {name} ({kind})\n".encode()
    (files / kind).mkdir(parents=True, exist_ok=True)
    (files / path).write_bytes(data)
    content = content_key(sha256=hashlib.sha256(data).hexdigest())
    return ScanJob(key=result_key(content, path), content_key=content, fingerprint="probe-fingerprint",
                   source=str(files), repo_type="model", repo_id="probe/repo", revision="0" * 40, path=path,
                   size=len(data), sha256=hashlib.sha256(data).hexdigest(), priority=priority)


def open_gate(settings, job: ScanJob) -> None:
    marker = _marker(settings.state_dir, "gate", job.key)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("open")


# -- servers and workers -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server():
    from redis_server import RedisServer, available

    if not available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.cleanup()


def _settings(state_dir: Path, backend: str, broker_url: str) -> ServiceSettings:
    state_dir.mkdir(parents=True, exist_ok=True)
    return ServiceSettings(state_dir=state_dir, queue=backend, broker_url=broker_url,
                           lease_seconds=LEASE_SECONDS, max_attempts=MAX_ATTEMPTS)


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture(params=BACKENDS)
def bare(request, tmp_path):
    """Settings for a queue no worker consumes (Celery: redis database 1, emptied first)."""
    broker = "redis://127.0.0.1:1/0"
    if request.param == "celery":
        broker = request.getfixturevalue("redis_server").url.rsplit("/", 1)[0] + "/1"
        _flush(broker)
    return _settings(tmp_path / "state", request.param, broker)


class Served:
    """A backend with worker processes running: settings, the job files folder, the workers'
    process ids (the pool's parent, or the Celery worker's main process)."""

    def __init__(self, settings: ServiceSettings, files: Path):
        self.settings, self.files = settings, files
        self.stop_workers = lambda: None
        self.pool_thread: threading.Thread | None = None
        self.celery: subprocess.Popen | None = None
        self.log: Path | None = None

    def queue(self):
        return open_queue(self.settings)

    def submit(self, *jobs: ScanJob) -> None:
        queue = self.queue()
        try:
            for job in jobs:
                assert queue.submit(job), job.key
        finally:
            queue.close()

    def settled(self, jobs) -> dict[str, list[str]]:
        found = stored(self.settings, [job.key for job in jobs])
        return found if len(found) == len(jobs) else {}

    def idle(self) -> bool:
        queue = self.queue()
        try:
            depth = queue.depth()
        finally:
            queue.close()
        return depth["queued"] == 0 and depth["running"] == 0


def start_celery_worker(settings: ServiceSettings, log: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE / "helpers"),
                                                        os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "malhug", "worker", "--queue", "celery", "--broker-url", settings.broker_url,
               "--state-dir", str(settings.state_dir), "--processes", "1", "--handlers", PROBE_HANDLERS,
               "--max-attempts", str(settings.max_attempts), "--lease-seconds", str(settings.lease_seconds),
               "--soft-time-limit", "20", "--time-limit", "30", "--max-tasks-per-child", "50", *extra]
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture(scope="session", params=BACKENDS)
def served(request, tmp_path_factory):
    """Worker processes consuming a queue, shared by the tests (each test uses its own job keys): a pool of two spawned processes (SQLite), or one Celery worker (Redis)."""
    root = tmp_path_factory.mktemp(f"served-{request.param}")
    broker = "redis://127.0.0.1:1/0"
    if request.param == "celery":
        broker = request.getfixturevalue("redis_server").url
        _flush(broker)
    backend = Served(_settings(root / "state", request.param, broker), root / "files")
    backend.files.mkdir()
    if request.param == "sqlite":
        stop = threading.Event()
        status: list[int] = []
        options = PoolOptions(handlers=PROBE_HANDLERS, soft_time_limit=20, time_limit=30, poll_seconds=0.05)
        backend.pool_thread = threading.Thread(
            target=lambda: status.append(run_pool(backend.settings, 2, stop=stop, options=options,
                                                  grace_seconds=20)), daemon=True)
        backend.pool_thread.start()

        def stop_pool():
            stop.set()
            backend.pool_thread.join(timeout=40)
            assert status == [0]
        backend.stop_workers = stop_pool
    else:
        backend.log = root / "celery-worker.log"
        backend.celery = start_celery_worker(backend.settings, backend.log)
        backend.stop_workers = lambda: stop_process(backend.celery)
    try:
        warm = make_job(backend.files, "ok")
        backend.submit(warm)
        wait_for(lambda: backend.settled([warm]), f"the {request.param} workers to start")
        yield backend
    except BaseException:
        if backend.log is not None:
            sys.stderr.write(backend.log.read_text(errors="replace")[-5000:])
        raise
    finally:
        backend.stop_workers()


# -- the contract, without workers ---------------------------------------------------------------
def test_submit_refuses_a_live_duplicate_until_the_job_is_settled(bare, tmp_path):
    queue = open_queue(bare)
    try:
        job, other = make_job(tmp_path, "ok"), make_job(tmp_path, "ok")
        assert queue.submit(job) is True
        assert queue.submit(job) is False
        assert queue.submit(dataclasses.replace(job, priority=5)) is False
        assert queue.submit(other) is True
        assert queue.depth() == {"queued": 2, "running": 0, "poisoned": 0}
        first = queue.claim("test-worker")
        assert first is not None and first.attempt == 1
        assert queue.submit(first.job) is False  # running is live too
        queue.complete(first)
        assert queue.submit(first.job) is True  # settled: the store, not the queue, decides now
        assert queue.depth()["queued"] == 2
    finally:
        queue.close()


def test_claims_come_most_urgent_first_then_oldest(bare, tmp_path):
    queue = open_queue(bare)
    try:
        jobs = [make_job(tmp_path, "ok", priority) for priority in (0, 5, 2, 5, 9, 0)]
        for job in jobs:
            assert queue.submit(job)
        order = []
        while (claim := queue.claim("test-worker")) is not None:
            order.append(claim.job.key)
            queue.complete(claim)
        expected = [jobs[i].key for i in (4, 1, 3, 2, 0, 5)]
        assert order == expected
        assert queue.depth() == {"queued": 0, "running": 0, "poisoned": 0}
    finally:
        queue.close()


def test_failed_attempts_are_retried_then_poisoned_at_the_cap(bare, tmp_path):
    queue = open_queue(bare)
    try:
        job = make_job(tmp_path, "fail")
        assert queue.submit(job)
        dispositions = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            claim = queue.claim("test-worker")
            assert claim is not None and claim.job == job and claim.attempt == attempt
            dispositions.append(queue.fail(claim, f"failure {attempt}"))
        assert dispositions == [Disposition.RETRY] * (MAX_ATTEMPTS - 1) + [Disposition.POISONED]
        assert queue.claim("test-worker") is None
        assert queue.depth() == {"queued": 0, "running": 0, "poisoned": 1}
        assert queue.last_error(job.key) == f"failure {MAX_ATTEMPTS}"
        # asked again later (a re-scan): a poisoned key starts afresh
        assert queue.submit(job) is True
        claim = queue.claim("test-worker")
        assert claim.attempt == 1
        assert queue.depth() == {"queued": 0, "running": 1, "poisoned": 0}
    finally:
        queue.close()


def _claim_all(settings, out: str) -> None:
    queue = open_queue(settings)
    taken = []
    try:
        while (claim := queue.claim(f"claimer-{os.getpid()}")) is not None:
            taken.append(claim.job.key)
            queue.complete(claim)
    finally:
        queue.close()
    Path(out).write_text("\n".join(taken))


def test_concurrent_claims_from_many_processes_never_share_a_job(bare, tmp_path):
    queue = open_queue(bare)
    jobs = [make_job(tmp_path / "files", "ok", index % 3) for index in range(30)]
    try:
        for job in jobs:
            assert queue.submit(job)
    finally:
        queue.close()
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"claimed-{index}.txt" for index in range(4)]
    processes = [context.Process(target=_claim_all, args=(bare, str(out))) for out in outs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=WAIT_SECONDS)
        assert process.exitcode == 0
    claimed = [key for out in outs for key in out.read_text().split("\n") if key]
    assert sorted(claimed) == sorted(job.key for job in jobs)  # every job once, none twice


def test_an_expired_lease_is_claimable_again_and_the_old_claim_is_void(tmp_path):
    settings = _settings(tmp_path / "state", "sqlite", "redis://127.0.0.1:1/0")
    queue = open_queue(settings)
    try:
        job = make_job(tmp_path, "ok")
        queue.submit(job)
        lost = queue.claim("worker-a", lease_seconds=0.2)
        assert queue.claim("worker-b", lease_seconds=0.2) is None  # leased
        time.sleep(0.3)
        again = queue.claim("worker-b", lease_seconds=30)
        assert again is not None and again.job == job and again.attempt == 2
        assert queue.extend(lost) is False
        queue.complete(lost)  # the first worker woke up late: nothing happens
        assert queue.fail(lost, "late") is Disposition.RETRY
        assert queue.depth() == {"queued": 0, "running": 1, "poisoned": 0}
        assert queue.extend(again) is True
        queue.complete(again)
        assert queue.depth() == {"queued": 0, "running": 0, "poisoned": 0}
    finally:
        queue.close()


# -- the contract, with worker processes ---------------------------------------------------------
def test_each_job_is_handled_once_and_its_result_stored_once(served):
    jobs = [make_job(served.files, "slow" if index % 2 else "ok") for index in range(8)]
    served.submit(*jobs)
    results = wait_for(lambda: served.settled(jobs), "every result")
    assert results == {job.key: ["clean"] for job in jobs}
    wait_for(served.idle, "the queue to empty")
    for job in jobs:
        assert len(runs(served.settings, job.key)) == 1, job.path
        assert stored_result(served.settings, job.key).path.endswith(job.path)
    # a job submitted again after its result is stored is not scanned again
    served.submit(jobs[0])
    wait_for(served.idle, "the duplicate to be settled")
    assert len(runs(served.settings, jobs[0].key)) == 1
    assert stored(served.settings, [jobs[0].key]) == {jobs[0].key: ["clean"]}


def test_workers_take_the_most_urgent_job_first(served):
    # hold every worker process on a gate, queue jobs of mixed priorities behind them
    processes = 2 if served.settings.queue == "sqlite" else 1
    gates = [make_job(served.files, "gate", 100) for _ in range(processes)]
    served.submit(*gates)
    wait_for(lambda: len({key for key, _ in runs(served.settings)} & {gate.key for gate in gates}) == processes,
             "the workers to hold the gates")
    jobs = [make_job(served.files, "ok", priority) for priority in (1, 7, 3, 9, 0)]
    served.submit(*jobs)
    for gate in gates:
        open_gate(served.settings, gate)
    wait_for(lambda: served.settled(jobs + gates), "every result")
    keys = {job.key: job.priority for job in jobs}
    started = [keys[key] for key, _ in runs(served.settings) if key in keys]
    assert sorted(started) == [0, 1, 3, 7, 9]
    # claims go strictly by priority; a job can be logged after a less urgent one only while
    # it was still starting in another worker process
    for index, priority in enumerate(started):
        overtaken = [later for later in started[index + 1:] if later > priority]
        assert len(overtaken) <= processes - 1, started


def test_a_failing_job_is_retried_then_poisoned_with_an_inconclusive_result(served):
    failing, flaky = make_job(served.files, "fail"), make_job(served.files, "flaky")
    served.submit(failing, flaky)
    results = wait_for(lambda: served.settled([failing, flaky]), "both results")
    assert results == {failing.key: ["inconclusive"], flaky.key: ["clean"]}
    wait_for(served.idle, "the queue to empty")
    assert len(runs(served.settings, failing.key)) == MAX_ATTEMPTS
    assert len(runs(served.settings, flaky.key)) == 2
    result = stored_result(served.settings, failing.key)
    assert result.verdict is Verdict.INCONCLUSIVE
    reasons = " ".join(problem.reason for problem in result.problems)
    assert f"probe failure {MAX_ATTEMPTS} of {failing.path}" in reasons
    assert ("poisoned", "log") in alerts(served.settings, failing.content_key)
    assert alerts(served.settings, flaky.content_key) == []
    queue = served.queue()
    try:
        assert queue.depth()["poisoned"] >= 1
    finally:
        queue.close()


def test_an_unreachable_store_postpones_the_job_without_spending_its_attempts(served):
    job = make_job(served.files, "unavailable")
    served.submit(job)
    results = wait_for(lambda: served.settled([job]), "the result after the outage")
    assert results == {job.key: ["clean"]}
    assert len(runs(served.settings, job.key)) == MAX_ATTEMPTS + 2
    assert alerts(served.settings, job.content_key) == []
    wait_for(served.idle, "the queue to empty")


# -- end to end: the real handler, the real command ----------------------------------------------
class _RunsId:
    """Pickles as a call of os.system('id') (the fixture is written, never loaded)."""

    def __reduce__(self):
        return (os.system, ("id",))


def _mirror_jobs(mirrors: Path) -> list[ScanJob]:
    import pickle

    from hub_server import make_git_repo

    from malhug.service.keys import fingerprint, git_blob_id

    files = {"pytorch_model.bin": pickle.dumps(_RunsId(), protocol=2), "README.md": b"# a tiny model\n"}
    commit = make_git_repo(mirrors / "models" / "acme" / "tiny", [files])[-1]
    jobs = []
    for priority, (path, data) in enumerate(files.items()):
        content = content_key(blob_id=git_blob_id(data))
        jobs.append(ScanJob(key=result_key(content, path), content_key=content, fingerprint=fingerprint(),
                            source=str(mirrors), repo_type="model", repo_id="acme/tiny", revision=commit,
                            path=path, size=len(data), priority=priority))
    return jobs


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_worker_command_scans_queued_files_isolated_and_stops_on_sigterm(backend, tmp_path, request):
    broker = "redis://127.0.0.1:1/0"
    if backend == "celery":
        broker = request.getfixturevalue("redis_server").url.rsplit("/", 1)[0] + "/2"
        _flush(broker)
    settings = _settings(tmp_path / "state", backend, broker)
    jobs = _mirror_jobs(tmp_path / "mirrors")
    queue = open_queue(settings)
    try:
        assert all(queue.submit(job) for job in jobs)
    finally:
        queue.close()
    command = [sys.executable, "-m", "malhug", "worker", "--queue", backend, "--broker-url", broker,
               "--state-dir", str(settings.state_dir), "--processes", "1", "--soft-time-limit", "30",
               "--time-limit", "40"]
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        results = wait_for(lambda: (found := stored(settings, [job.key for job in jobs])) and len(found) == 2
                           and found, "the worker command's results")
    except AssertionError:
        stop_process(worker)
        sys.stderr.write(log.read_text(errors="replace")[-5000:])
        raise
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
    malicious, readme = jobs
    assert results == {malicious.key: ["malicious"], readme.key: ["clean"]}
    report = stored_result(settings, malicious.key)
    assert any(finding.rule and "system" in (finding.evidence + finding.message) for finding in report.findings)
    assert ("malicious", "log") in alerts(settings, malicious.content_key)
    assert alerts(settings, readme.content_key) == []
