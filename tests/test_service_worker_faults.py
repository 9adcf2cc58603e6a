"""Workers under fire, on both backends: a worker process killed with SIGKILL in the middle of a
scan, a file that kills every worker that reads it (the poison cap), a broker restarted while
jobs are in flight, a scan past its time limit. The workers are the real ones (a spawned pool
over SQLite, a Celery worker over a real redis-server) running the probe handlers of
test_service_queue.py."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from malhug.findings import Verdict
from malhug.service.worker import PoolOptions, run_pool
from test_service_queue import (  # noqa: F401 - fixtures
    MAX_ATTEMPTS, PROBE_HANDLERS, _flush, _marker, _settings, alerts, make_job, redis_server, runs, served,
    start_celery_worker, stop_process, stored, stored_result, wait_for,
)


def test_a_worker_killed_in_the_middle_of_a_scan_loses_nothing(served):
    blocked = make_job(served.files, "block")
    bystanders = [make_job(served.files, "ok") for _ in range(3)]
    served.submit(blocked)
    marker = _marker(served.settings.state_dir, "block", blocked.key)
    wait_for(marker.exists, "the scan to start")
    victim = int(marker.read_text())
    assert victim != os.getpid()
    served.submit(*bystanders)
    os.kill(victim, signal.SIGKILL)

    results = wait_for(lambda: served.settled([blocked, *bystanders]), "the redelivered job to complete")
    assert results == {job.key: ["clean"] for job in [blocked, *bystanders]}  # none lost, none twice
    wait_for(served.idle, "the queue to empty")
    attempts = runs(served.settings, blocked.key)
    assert len(attempts) == 2 and attempts[0][1] == victim and attempts[1][1] != victim
    assert all(len(runs(served.settings, job.key)) == 1 for job in bystanders)


def test_a_file_that_always_kills_its_worker_is_poisoned_after_the_cap(served):
    deadly, healthy = make_job(served.files, "crash"), make_job(served.files, "ok")
    served.submit(deadly, healthy)
    results = wait_for(lambda: served.settled([deadly, healthy]), "the poisoned result")
    assert results == {deadly.key: ["inconclusive"], healthy.key: ["clean"]}
    wait_for(served.idle, "the queue to empty")
    assert len(runs(served.settings, deadly.key)) == MAX_ATTEMPTS  # never run again after the cap
    result = stored_result(served.settings, deadly.key)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert any("worker handling the file was lost" in problem.reason for problem in result.problems)
    assert ("poisoned", "log") in alerts(served.settings, deadly.content_key)


@pytest.mark.parametrize("served", ["celery"], indirect=True)
def test_the_broker_restarted_during_a_run_loses_no_job(served, redis_server):
    jobs = [make_job(served.files, "slow") for _ in range(6)]
    served.submit(*jobs)
    wait_for(lambda: len(stored(served.settings, [job.key for job in jobs])) >= 1, "the first result")
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    results = wait_for(lambda: served.settled(jobs), "every job after the restart", timeout=90)
    assert results == {job.key: ["clean"] for job in jobs}
    wait_for(served.idle, "the queue to empty", timeout=60)
    assert all(1 <= len(runs(served.settings, job.key)) <= 2 for job in jobs)


def test_embedded_time_limits_fail_the_attempt_then_poison(tmp_path):
    """Soft limit: the scan is interrupted and the attempt fails. Hard limit (a scan that does
    not notice the soft one): the worker process ends itself, is replaced, and the job counts the
    attempt; either way the file ends poisoned, not stuck."""
    settings = _settings(tmp_path / "state", "sqlite", "redis://127.0.0.1:1/0")
    files = tmp_path / "files"
    hung = make_job(files, "hang")
    from malhug.service.queue import open_queue

    queue = open_queue(settings)
    queue.submit(hung)
    queue.close()
    options = PoolOptions(handlers=PROBE_HANDLERS, soft_time_limit=None, time_limit=0.5, poll_seconds=0.05)
    stop = threading.Event()
    timer = threading.Timer(60, stop.set)  # never hang the suite
    timer.start()
    try:
        assert run_pool(settings, 1, stop=stop, drain=True, options=options, grace_seconds=10) == 0
    finally:
        timer.cancel()
    assert not stop.is_set()
    assert len(runs(settings, hung.key)) == MAX_ATTEMPTS
    result = stored_result(settings, hung.key)
    assert result.verdict is Verdict.INCONCLUSIVE

    soft = make_job(files, "hang")
    queue = open_queue(settings)
    queue.submit(soft)
    queue.close()
    options = PoolOptions(handlers=PROBE_HANDLERS, soft_time_limit=0.3, time_limit=30, poll_seconds=0.05)
    assert run_pool(settings, 1, drain=True, options=options, grace_seconds=10) == 0
    assert len(runs(settings, soft.key)) == MAX_ATTEMPTS
    reasons = " ".join(problem.reason for problem in stored_result(settings, soft.key).problems)
    assert "soft time limit of 0.3 s exceeded" in reasons


def test_celery_time_limits_fail_the_attempt_then_poison(redis_server, tmp_path):
    """Soft limit: SoftTimeLimitExceeded inside the scan fails the attempt. Hard limit (a scan
    that ignores the soft one): the pool kills the child, the message goes back to the queue
    (task_acks_on_timeout off) and the next delivery counts it; both files end poisoned."""
    broker = redis_server.url.rsplit("/", 1)[0] + "/3"
    _flush(broker)
    settings = _settings(tmp_path / "state", "celery", broker)
    files = tmp_path / "files"
    hung, stubborn = make_job(files, "hang"), make_job(files, "stubborn")
    from malhug.service.queue import open_queue

    queue = open_queue(settings)
    try:
        assert queue.submit(hung) and queue.submit(stubborn)
    finally:
        queue.close()
    log = tmp_path / "celery-worker.log"
    worker = start_celery_worker(settings, log, "--soft-time-limit", "0.3", "--time-limit", "1")
    try:
        found = wait_for(lambda: (found := stored(settings, [hung.key, stubborn.key])) and len(found) == 2
                         and found, "both files to be poisoned")
    except AssertionError:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        stop_process(worker)
    assert found == {hung.key: ["inconclusive"], stubborn.key: ["inconclusive"]}
    assert len(runs(settings, hung.key)) == MAX_ATTEMPTS
    assert len(runs(settings, stubborn.key)) == MAX_ATTEMPTS
    soft_reasons = " ".join(problem.reason for problem in stored_result(settings, hung.key).problems)
    assert "SoftTimeLimitExceeded" in soft_reasons
    hard_reasons = " ".join(problem.reason for problem in stored_result(settings, stubborn.key).problems)
    assert "worker handling the file was lost" in hard_reasons
