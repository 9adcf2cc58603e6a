"""Files read in worker processes: limits, deaths, recovery, and the same results as in-process."""
import io
import os
import pickle
import zipfile

import pytest

import isolation_hooks
from malhug import isolation
from malhug.cache import VerdictCache
from malhug.cli import main
from malhug.findings import Verdict
from malhug.scanner import ScanOptions, scan_file, scan_paths

pytestmark = pytest.mark.skipif(not isolation.available(), reason="isolation needs POSIX")


class _Shell:
    def __reduce__(self):
        return (os.system, ("id",))


def _write(folder, name, data):
    path = folder / name
    path.write_bytes(data)
    return path


def _mixed_folder(folder):
    folder.mkdir()
    _write(folder, "clean.pkl", pickle.dumps({"weights": [1.0, 2.0], "name": "layer"}))
    _write(folder, "evil.pkl", pickle.dumps(_Shell()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Shell()))
        archive.writestr("archive/version", "3\n")
    _write(folder, "model.zip", buffer.getvalue())
    _write(folder, "loader.py", b"import subprocess\nsubprocess.run(['echo', 'hi'])\n")
    _write(folder, "config.json", b'{"model_type": "bert"}')
    return folder


def _comparable(report):
    rows = []
    for result in report.files:
        data = result.to_dict()
        data.pop("seconds")
        rows.append(data)
    return rows


_START = {"worker_start": "exec"}


_CAN_FORK = isolation._can_fork


@pytest.fixture(autouse=True, params=["exec", "fork"])
def worker_start(request, monkeypatch):
    """Every test runs with workers started both ways: fresh interpreters and forks (forked even
    though the test process keeps a fixture's server thread, which the workers never touch)."""
    monkeypatch.setitem(_START, "worker_start", request.param)
    if request.param == "fork":
        monkeypatch.setattr(isolation, "_can_fork", lambda: True)
    return request.param


def _options(**changes):
    changes.setdefault("isolation", True)
    changes.setdefault("worker_start", _START["worker_start"])
    return ScanOptions(memo=None, **changes)


def _reporting_task(tmp_path, monkeypatch, variable: str, task):
    """Workers run `task`, which writes what it saw into the folder returned (named by `variable`)."""
    report_dir = tmp_path / variable.lower()
    report_dir.mkdir()
    monkeypatch.setenv(variable, str(report_dir))
    monkeypatch.setattr(isolation, "worker_task", task)
    return report_dir


def test_forked_workers_hold_only_their_own_pipes(tmp_path, monkeypatch, worker_start):
    folder = _mixed_folder(tmp_path / "mixed")
    report_dir = _reporting_task(tmp_path, monkeypatch, isolation_hooks.DESCRIPTORS_REPORT,
                                 isolation_hooks.descriptors_task)
    cache = VerdictCache(tmp_path / "cache.db")  # an open database the workers must not hold
    with open(tmp_path / "held-by-parent", "w"):
        report = scan_paths([folder], _options(workers=2, cache=cache))
    assert {os.path.basename(r.path): r.verdict for r in report.files}["evil.pkl"] is Verdict.MALICIOUS
    reports = [__import__("json").loads(p.read_text()) for p in report_dir.iterdir()]
    assert reports
    for seen in reports:
        assert seen["parent"] == os.getpid()
        # stdio, the two pipes, and the descriptor listing the folder
        assert len([fd for fd in seen["held"] if fd > 2]) <= 3, seen


def test_workers_are_not_forked_while_the_parent_runs_threads(monkeypatch):
    monkeypatch.setattr(isolation, "_can_fork", _CAN_FORK)
    started = {}
    for threads in (2, 1):
        monkeypatch.setattr(isolation.threading, "active_count", lambda: threads)
        pool = isolation.WorkerPool(isolation.Limits(), start="fork").prestart()
        try:
            started[threads] = type(pool._idle[0].process)
        finally:
            pool.close()
    assert started == {2: isolation.subprocess.Popen, 1: isolation._ForkedWorker}


def test_forked_workers_are_forks(tmp_path, monkeypatch, worker_start):
    """The fork half of every test here really forks: a fork's parent is this process."""
    path = _write(tmp_path, "clean.pkl", pickle.dumps([1]))
    report_dir = _reporting_task(tmp_path, monkeypatch, isolation_hooks.DESCRIPTORS_REPORT,
                                 isolation_hooks.descriptors_task)
    with isolation.WorkerPool(isolation.Limits(), start=worker_start) as pool:
        assert scan_file(path, _options(), pool).verdict is Verdict.CLEAN
        kinds = {type(worker.process) for worker in pool._idle}
    assert kinds == {isolation._ForkedWorker if worker_start == "fork" else isolation.subprocess.Popen}


def test_isolated_results_equal_in_process_results(tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    isolated = scan_paths([folder], _options())
    here = scan_paths([folder], _options(isolation=False))
    assert _comparable(isolated) == _comparable(here)
    verdicts = {os.path.basename(r.path): r.verdict for r in isolated.files}
    assert verdicts["evil.pkl"] is Verdict.MALICIOUS and verdicts["model.zip"] is Verdict.MALICIOUS
    assert verdicts["clean.pkl"] is Verdict.CLEAN
    assert [r.to_dict() for r in isolated.repositories] == [r.to_dict() for r in here.repositories]


def test_parallel_workers_keep_the_order_and_the_results(tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    for index in range(6):
        _write(folder, f"extra{index}.pkl", pickle.dumps([index]))
    parallel = scan_paths([folder], _options(workers=2))
    here = scan_paths([folder], _options(isolation=False))
    assert _comparable(parallel) == _comparable(here)


def test_single_file_is_read_in_a_worker(tmp_path, monkeypatch):
    path = _write(tmp_path, "exit.pkl", pickle.dumps([1]))
    monkeypatch.setattr(isolation, "worker_task", isolation_hooks.hostile_task)
    result = scan_file(path, _options())
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.problems[0].reason == "worker exited unexpectedly (exit code 3)"
    assert scan_file(path, _options(isolation=False)).verdict is Verdict.CLEAN


def _hostile_scan(tmp_path, monkeypatch, names, **limits):
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name in names:
        _write(folder, name, pickle.dumps([name]))
    _write(folder, "zz_evil.pkl", pickle.dumps(_Shell()))
    monkeypatch.setattr(isolation, "worker_task", isolation_hooks.hostile_task)
    base = isolation.Limits()
    report = scan_paths([folder], _options(limits=base.with_overrides(**limits)))
    return {os.path.basename(r.path): r for r in report.files}


def test_a_worker_out_of_memory_makes_its_file_inconclusive(tmp_path, monkeypatch):
    results = _hostile_scan(tmp_path, monkeypatch, ["alloc.pkl", "b_clean.pkl"],
                            worker_address_space=1024 ** 3)
    alloc = results["alloc.pkl"]
    assert alloc.verdict is Verdict.INCONCLUSIVE
    assert alloc.problems[0].reason == "worker out of memory: address space limit (1 GiB) reached"
    assert results["b_clean.pkl"].verdict is Verdict.CLEAN
    assert results["zz_evil.pkl"].verdict is Verdict.MALICIOUS


def test_a_worker_past_its_time_is_killed_and_the_scan_goes_on(tmp_path, monkeypatch):
    results = _hostile_scan(tmp_path, monkeypatch, ["sleep.pkl", "b_clean.pkl"],
                            seconds_per_file=0.5, worker_kill_grace=0.5)
    sleeper = results["sleep.pkl"]
    assert sleeper.verdict is Verdict.INCONCLUSIVE
    assert sleeper.problems[0].reason == "worker timed out after 1 s"
    assert results["b_clean.pkl"].verdict is Verdict.CLEAN
    assert results["zz_evil.pkl"].verdict is Verdict.MALICIOUS


def test_a_worker_past_its_cpu_time_is_stopped(tmp_path, monkeypatch):
    results = _hostile_scan(tmp_path, monkeypatch, ["spin.pkl"], seconds_per_file=1.0,
                            worker_cpu_margin=0.0, worker_kill_grace=30.0)
    assert results["spin.pkl"].problems[0].reason == "worker killed: CPU time limit (1 s) reached"
    assert results["zz_evil.pkl"].verdict is Verdict.MALICIOUS


def test_crashes_and_reader_errors_are_reported_and_the_pool_recovers(tmp_path, monkeypatch):
    results = _hostile_scan(tmp_path, monkeypatch, ["exit.pkl", "raise.pkl", "segv.pkl", "b_clean.pkl",
                                                    "c_exit.pkl", "d_clean.pkl"])
    reasons = {name: [p.reason for p in r.problems] for name, r in results.items()}
    assert reasons["exit.pkl"] == ["worker exited unexpectedly (exit code 3)"]
    assert reasons["raise.pkl"] == ["worker error: RuntimeError: reader bug"]
    assert reasons["segv.pkl"] == ["worker killed by SIGSEGV"]
    assert results["b_clean.pkl"].verdict is Verdict.CLEAN
    assert results["d_clean.pkl"].verdict is Verdict.CLEAN
    assert results["zz_evil.pkl"].verdict is Verdict.MALICIOUS
    for name in ("exit.pkl", "raise.pkl", "segv.pkl"):
        assert results[name].verdict is Verdict.INCONCLUSIVE


def test_workers_are_replaced_after_their_share_of_files(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(5):
        _write(folder, f"f{index}.pkl", pickle.dumps([index]))
    with isolation.WorkerPool(isolation.Limits(), tasks_per_worker=2) as pool:
        report = scan_paths([folder], _options(isolation=True))
        jobs = [(index, isolation.Job(str(path), str(path), path.stat().st_size, None, pool.limits))
                for index, path in enumerate(sorted(folder.iterdir()))]
        answers = dict(pool.run(jobs))
    assert sorted(answers) == list(range(5))
    assert [answers[i]["verdict"] for i in range(5)] == [str(r.verdict) for r in report.files]


def test_verdict_cache_and_memo_work_with_workers(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path / "mixed")
    (folder / "sub").mkdir()
    _write(folder / "sub", "evil.pkl", pickle.dumps(_Shell()))
    _write(folder, "exit.pkl", pickle.dumps(["crash"]))
    monkeypatch.setattr(isolation, "worker_task", isolation_hooks.hostile_task)
    cache = VerdictCache(tmp_path / "cache.sqlite")
    first = scan_paths([folder], ScanOptions(cache=cache, isolation=True))
    stored = cache.count()
    assert stored == len(first.files) - 2  # the copy came from the memo; the crash is not kept
    again = scan_paths([folder], ScanOptions(cache=cache, isolation=True))
    assert _comparable(again) == _comparable(first)
    assert cache.count() == stored
    crashed = {os.path.basename(r.path): r for r in again.files}["exit.pkl"]
    assert crashed.verdict is Verdict.INCONCLUSIVE


def test_progress_is_told_of_every_file(tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    seen = []
    report = scan_paths([folder], _options(progress=lambda path, size: seen.append(path)))
    assert seen == [r.path for r in report.files]


def test_cli_no_isolation_and_workers(tmp_path, capsys):
    folder = _mixed_folder(tmp_path / "mixed")
    outputs = []
    for extra in (["--no-isolation"], ["--workers", "2"], []):
        code = main(["scan", str(folder), "--no-cache", "--format", "json", "--no-progress", *extra])
        assert code == 1
        outputs.append(capsys.readouterr().out)
    import json

    reports = [json.loads(text) for text in outputs]
    for report in reports:
        for file in report["files"]:
            file.pop("seconds")
    assert reports[0]["files"] == reports[1]["files"] == reports[2]["files"]


def test_cli_rejects_zero_workers(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["scan", ".", "--workers", "0"])
    assert stop.value.code == 3


def _pids(tmp_path, monkeypatch, names):
    folder = tmp_path / "files"
    folder.mkdir()
    for name in names:
        _write(folder, name, pickle.dumps([name]))
    report_dir = _reporting_task(tmp_path, monkeypatch, isolation_hooks.PIDS_REPORT, isolation_hooks.pid_task)
    report = scan_paths([folder], _options())
    assert all(r.verdict is Verdict.CLEAN for r in report.files)
    return {name: (report_dir / name).read_text() for name in names}


def test_a_worker_that_grew_is_replaced(tmp_path, monkeypatch):
    pids = _pids(tmp_path, monkeypatch, ["a.pkl", "hoard.pkl", "z.pkl"])
    assert pids["a.pkl"] == pids["hoard.pkl"] != pids["z.pkl"]


def test_workers_of_a_large_parent_are_not_replaced_for_its_size(tmp_path, monkeypatch):
    """A process inherits the peak memory of the one that started it (even across exec): a
    worker is judged by what it grew since it was ready, not by its parent's size."""
    ballast = b"\x01" * (600 * 1024 * 1024)
    try:
        pids = _pids(tmp_path, monkeypatch, ["a.pkl", "b.pkl", "c.pkl"])
    finally:
        del ballast
    assert len(set(pids.values())) == 1


def test_a_fork_of_a_large_parent_has_its_whole_allowance(tmp_path, monkeypatch):
    """A fork starts with its parent's address space; the worker's limit comes on top of it, so
    a parent that reserved 1.5 GiB still leaves its workers room to read."""
    import mmap

    reserved = mmap.mmap(-1, 1536 * 1024 * 1024)  # address space, not memory: never touched
    try:
        pids = _pids(tmp_path, monkeypatch, ["hoard.pkl"])
    finally:
        reserved.close()
    assert pids["hoard.pkl"]
