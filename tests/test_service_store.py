"""The results store on SQLite and on a real PostgreSQL server started for the tests."""
from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
from datetime import timezone

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from sqlalchemy import func, inspect, select  # noqa: E402

from malhug.findings import FileResult, Finding, Location, Problem, Severity, Verdict  # noqa: E402
from malhug.scanner import scan_file  # noqa: E402
from malhug.service import keys  # noqa: E402
from malhug.service.store import Store, StoreError, StoreUnavailable  # noqa: E402
from malhug.service.store import migrations  # noqa: E402
from malhug.service.store.migrations.__main__ import main as migrations_main  # noqa: E402
from malhug.service.store.models import (Alert, Base, FindingRow, Repo, Revision, RevisionFile,  # noqa: E402
                                         ScanRun, Triage)
from malhug.service.store.models import FileResult as ResultRow  # noqa: E402
from postgres_server import postgres_or_skip  # noqa: E402

SOURCE = "http://127.0.0.1:1/hub"
FP1 = "0.1.0+1111111111111111"
FP2 = "0.1.0+2222222222222222"
_names = itertools.count()


class ShellPayload:
    """Pickles to a call of os.system("id"): what the scanner must call malicious."""

    def __reduce__(self):
        return (os.system, ("id",))


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres():
    server = postgres_or_skip()
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'store.sqlite'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"store_{next(_names)}")


@pytest.fixture
def store(store_url):
    with Store(store_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Real scan results of generated files: a pickle calling os.system, and a JSON config."""
    folder = tmp_path_factory.mktemp("scanned")
    (folder / "model.pkl").write_bytes(pickle.dumps(ShellPayload(), protocol=2))
    (folder / "config.json").write_text('{"hidden_size": 8}')
    return {"malicious": scan_file(folder / "model.pkl"), "clean": scan_file(folder / "config.json")}


def made(verdict: str, path: str = "file.bin", findings: int = 0) -> FileResult:
    """A FileResult with a verdict and `findings` findings, built from malhug's own classes."""
    severity = {"clean": Severity.INFO, "inconclusive": Severity.LOW, "suspicious": Severity.MEDIUM,
                "malicious": Severity.CRITICAL}[verdict]
    found = tuple(Finding(f"rule-{n}", severity, "command_exec", f"message {n}", Location(path, None, n * 10),
                          f"evidence {n}") for n in range(findings))
    problems = (Problem("truncated stream", Location(path)),) if verdict == "inconclusive" else ()
    return FileResult(path, "pickle", Verdict(verdict), found, problems, (), None, 100, 0.25)


def content(n: int) -> str:
    return keys.content_key(sha256=f"{n:064x}")


def rkey(n: int, fingerprint: str = FP1, path: str = "file.bin") -> str:
    return keys.result_key(content(n), path, fingerprint)


def files(*numbers: int, fingerprint: str = FP1) -> list[tuple]:
    return [(f"dir/f{n}.bin", content(n), rkey(n, fingerprint, f"dir/f{n}.bin"), 100 + n) for n in numbers]


def save(store: Store, n: int, verdict: str, fingerprint: str = FP1, findings: int = 0) -> bool:
    key = rkey(n, fingerprint, f"dir/f{n}.bin")
    return store.save_result(key, content(n), fingerprint, made(verdict, f"dir/f{n}.bin", findings))


def revision_row(store: Store, revision_id: int):
    with store.session() as session:
        return session.get(Revision, revision_id)


def repo_row(store: Store, repo_id: int):
    with store.session() as session:
        return session.get(Repo, repo_id)


def count(store: Store, model, *where) -> int:
    with store.session() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# -- schema ------------------------------------------------------------------------------------
def test_migrations_create_the_schema_the_models_describe(store_url):
    store = Store(store_url)
    try:
        assert migrations.current(store.engine) == migrations.head() == "0001"
        tables = set(inspect(store.engine).get_table_names())
        assert {"repos", "revisions", "revision_files", "file_results", "findings", "triage", "scan_runs",
                "alerts", "alembic_version"} <= tables
        with store.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                           Base.metadata)
        assert differences == []
    finally:
        store.dispose()
    # a second start (another process, a new version of the same schema) changes nothing
    again = Store(store_url)
    again.upsert_repo(SOURCE, "model", "org/kept")
    again.dispose()
    with Store(store_url) as third:
        assert migrations.current(third.engine) == "0001"
        assert count(third, Repo) == 1
    assert migrations_main([store_url, "--check"]) == 0


def test_upgrade_by_hand_and_create_false(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'manual.sqlite'}"
    with Store(url, create=False) as unmigrated:
        with pytest.raises(StoreError, match="no such table") as raised:
            unmigrated.known_results(["sha256:x|bin|y"])
        assert not isinstance(raised.value, StoreUnavailable)
    assert migrations_main([url, "--check"]) == 1
    assert migrations_main([url]) == 0
    assert "-> 0001" in capsys.readouterr().out
    with Store(url, create=False) as store:
        assert store.upsert_repo(SOURCE, "model", "org/a") == 1


def test_unsupported_and_unreachable_databases(tmp_path):
    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        Store("mysql+pymysql://user:secret@127.0.0.1:1/db")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailable, match="unavailable"):
        Store(f"sqlite:///{blocker / 'store.sqlite'}")


# -- repos and revisions ----------------------------------------------------------------------
def test_upsert_repo_is_idempotent_and_tracks_priority_and_gone(store):
    first = store.upsert_repo(SOURCE, "model", "org/a", priority=7)
    assert store.upsert_repo(SOURCE, "model", "org/a") == first
    other = store.upsert_repo(SOURCE, "dataset", "org/a")
    assert other != first
    assert repo_row(store, first).priority == 7  # kept when not given
    store.upsert_repo(SOURCE, "model", "org/a", priority=2)
    assert repo_row(store, first).priority == 2
    assert count(store, Repo) == 2

    assert store.repo_commit(SOURCE, "model", "org/a") is None
    assert store.repo_commit(SOURCE, "model", "org/never") is None
    store.record_revision(first, "c" * 40, files(1))
    assert store.repo_commit(SOURCE, "model", "org/a") == "c" * 40

    store.mark_gone(SOURCE, "model", "org/a")
    assert repo_row(store, first).gone is True
    assert store.upsert_repo(SOURCE, "model", "org/a") == first
    assert repo_row(store, first).gone is False


def test_record_revision_is_idempotent_per_commit(store):
    repo = store.upsert_repo(SOURCE, "model", "org/a")
    revision = store.record_revision(repo, "c1", files(1, 2))
    assert store.record_revision(repo, "c1", files(1, 2)) == revision
    assert count(store, Revision) == 1
    assert count(store, RevisionFile) == 2
    row = revision_row(store, revision)
    assert row.verdict is None and row.completed_at is None
    assert row.seen_at.tzinfo is not None and row.seen_at.utcoffset().total_seconds() == 0


def test_bad_identities_are_refused(store):
    repo = store.upsert_repo(SOURCE, "model", "org/a")
    with pytest.raises(ValueError):
        store.record_revision(repo, "c1", [("x" * 3000, content(1), rkey(1), 1)])
    with pytest.raises(ValueError):
        store.record_revision(repo, "c1", [("a\x00b", content(1), rkey(1), 1)])
    with pytest.raises(ValueError):
        store.upsert_repo(SOURCE, "model", "")
    assert count(store, Revision) == 0


# -- results ------------------------------------------------------------------------------------
def test_save_result_twice_stores_once(store, scanned):
    result = scanned["malicious"]
    assert result.verdict is Verdict.MALICIOUS and result.findings
    key = keys.result_key(keys.content_key(sha256=result.sha256), "model.pkl", FP1)
    assert store.known_results([key, "sha256:nothing|pkl|x"]) == set()
    assert store.save_result(key, keys.content_key(sha256=result.sha256), FP1, result) is True
    # the task is delivered again (a worker died after storing): nothing changes
    assert store.save_result(key, keys.content_key(sha256=result.sha256), FP1, scanned["clean"]) is False
    assert count(store, ResultRow) == 1
    assert count(store, FindingRow) == len(result.findings)
    assert store.result(key).to_dict() == result.to_dict()
    assert store.result("sha256:nothing|pkl|x") is None
    assert store.known_results([key, "sha256:nothing|pkl|x", key]) == {key}


def test_findings_rows_describe_the_result(store, scanned):
    result = scanned["malicious"]
    content_key = keys.content_key(sha256=result.sha256)
    store.save_result(keys.result_key(content_key, "model.pkl", FP1), content_key, FP1, result)
    with store.session() as session:
        rows = session.scalars(select(FindingRow).order_by(FindingRow.id)).all()
        stored = session.scalars(select(ResultRow)).one()
    assert [(r.rule, r.severity, r.category, r.offset, r.content_key) for r in rows] == [
        (f.rule, str(f.severity), f.category, f.location.offset, content_key) for f in result.findings]
    assert any(r.rule == "pickle-dangerous-callable" and r.severity == "critical" for r in rows)
    assert stored.verdict == "malicious" and stored.format == result.format and stored.fingerprint == FP1
    assert stored.scanned_at.tzinfo is not None


def test_hostile_text_is_stored_and_the_report_round_trips(store):
    """Evidence and names come from the scanned repository: NULs and undecodable bytes included."""
    evidence = "os.system('id')\x00\udcff tail"
    result = FileResult("we\udcfeird\x00.pkl", "pickle", Verdict.MALICIOUS,
                        (Finding("r" * 300, Severity.HIGH, "c" * 100, "m\x00", Location("p", "memb\x00er", 5),
                                 evidence),),
                        (Problem("cut\x00short", Location("p")),), (), None, 7, 0.0)
    assert store.save_result(rkey(9), content(9), FP1, result) is True
    assert store.result(rkey(9)) == result
    with store.session() as session:
        row = session.scalars(select(FindingRow)).one()
    assert row.evidence == "os.system('id')\\x00\\udcff tail"
    assert len(row.rule) == 128 and len(row.category) == 64 and row.member == "memb\\x00er"


def test_concurrent_workers_saving_one_result_key(store_url):
    """Two workers with their own connections store the same key at once: one wins, no error."""
    stores = [Store(store_url), Store(store_url)]
    try:
        for round_ in range(6):
            barrier = threading.Barrier(2, timeout=30)
            outcomes, errors = [], []

            def work(index):
                try:
                    barrier.wait()
                    outcomes.append(save(stores[index], 100 + round_, "suspicious", findings=2))
                except Exception as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert errors == []
            assert sorted(outcomes) == [False, True]
        assert count(stores[0], ResultRow) == 6
        assert count(stores[0], FindingRow) == 12
    finally:
        for opened in stores:
            opened.dispose()


def test_concurrent_workers_completing_one_revision(store_url):
    """Two workers store the last two files of one revision at the same moment: it completes."""
    stores = [Store(store_url), Store(store_url)]
    try:
        for round_ in range(5):
            repo = stores[0].upsert_repo(SOURCE, "model", f"org/race{round_}")
            a, b = 200 + 2 * round_, 201 + 2 * round_
            revision = stores[0].record_revision(repo, "c1", files(a, b))
            barrier = threading.Barrier(2, timeout=30)
            errors = []

            def work(index, number):
                try:
                    barrier.wait()
                    save(stores[index], number, "malicious" if index else "clean")
                except Exception as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(0, a)), threading.Thread(target=work, args=(1, b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert errors == []
            assert revision_row(stores[0], revision).verdict == "malicious"
            assert repo_row(stores[0], repo).verdict == "malicious"
    finally:
        for opened in stores:
            opened.dispose()


# -- verdict roll-up ----------------------------------------------------------------------------
def test_revision_is_pending_until_every_file_has_a_result_and_the_worst_wins(store):
    repo = store.upsert_repo(SOURCE, "model", "org/a")
    revision = store.record_revision(repo, "c1", files(1, 2, 3))
    assert save(store, 1, "clean")
    assert revision_row(store, revision).verdict is None
    assert save(store, 2, "suspicious")
    assert revision_row(store, revision).completed_at is None
    assert repo_row(store, repo).verdict is None
    assert save(store, 3, "inconclusive")
    row = revision_row(store, revision)
    assert row.verdict == "suspicious"
    assert row.completed_at is not None and row.completed_at.tzinfo is not None
    assert repo_row(store, repo).verdict == "suspicious"


def test_a_revision_of_known_files_completes_at_once(store):
    assert save(store, 1, "clean") and save(store, 2, "malicious")
    repo = store.upsert_repo(SOURCE, "model", "org/b")
    revision = store.record_revision(repo, "c1", files(1, 2))
    assert revision_row(store, revision).verdict == "malicious"
    assert repo_row(store, repo).verdict == "malicious"
    empty = store.record_revision(store.upsert_repo(SOURCE, "model", "org/empty"), "c1", [])
    assert revision_row(store, empty).verdict == "clean"


def test_forgetting_a_result_makes_its_revisions_pending_until_the_new_one(store):
    assert save(store, 1, "malicious", findings=2) and save(store, 2, "clean")
    repo = store.upsert_repo(SOURCE, "model", "org/f")
    revision = store.record_revision(repo, "c1", files(1, 2))
    assert store.forget_result(rkey(1, path="dir/f1.bin")) is True
    assert store.forget_result(rkey(1, path="dir/f1.bin")) is False
    assert store.known_results([rkey(1, path="dir/f1.bin")]) == set()
    assert count(store, FindingRow) == 0
    row = revision_row(store, revision)
    assert row.completed_at is None and row.verdict == "malicious"  # kept until the re-scan lands
    assert save(store, 1, "clean")
    row = revision_row(store, revision)
    assert row.completed_at is not None and row.verdict == "clean"
    assert repo_row(store, repo).verdict == "clean"


def test_repo_verdict_follows_its_last_commit(store):
    repo = store.upsert_repo(SOURCE, "model", "org/a")
    old = store.record_revision(repo, "c1", files(1))
    new = store.record_revision(repo, "c2", files(2))
    assert save(store, 1, "malicious")
    assert revision_row(store, old).verdict == "malicious"
    assert repo_row(store, repo).verdict is None  # c2 is still pending
    assert save(store, 2, "clean")
    assert revision_row(store, new).verdict == "clean"
    assert repo_row(store, repo).verdict == "clean"
    # a new commit that brings the malicious file back
    store.record_revision(repo, "c3", files(1, 2))
    assert repo_row(store, repo).verdict == "malicious"
    assert repo_row(store, repo).last_commit == "c3"


def test_a_file_shared_by_many_revisions_completes_them_all(store):
    many = 520  # more than one chunk of ids
    assert save(store, 2, "clean")
    with store.session(write=True) as session:
        # many repos whose last commit holds the shared file 1 and the known file 2
        repos = [Repo(source=SOURCE, kind="model", name=f"org/m{n}", last_commit="c1") for n in range(many)]
        session.add_all(repos)
        session.flush()
        revisions = [Revision(repo_id=repo.id, commit="c1") for repo in repos]
        session.add_all(revisions)
        session.flush()
        session.add_all(RevisionFile(revision_id=revision.id, path=path, content_key=content_key,
                                     result_key=result_key, size=size)
                        for revision in revisions for path, content_key, result_key, size in files(1, 2))
    other = store.record_revision(store.upsert_repo(SOURCE, "model", "org/other"), "c1", files(1, 3))
    started = time.monotonic()
    assert save(store, 1, "malicious", findings=3)
    elapsed = time.monotonic() - started
    assert count(store, Revision, Revision.verdict == "malicious") == many
    assert count(store, Repo, Repo.verdict == "malicious") == many
    assert revision_row(store, other).verdict is None  # still waits for file 3
    assert elapsed < 10, f"rolling up {many} revisions took {elapsed:.1f}s"


def test_complete_pending_sweeps_revisions_whose_results_arrived_meanwhile(store):
    repo = store.upsert_repo(SOURCE, "model", "org/a")
    revision = store.record_revision(repo, "c1", files(1))
    # a result committed by another writer that did not yet see this revision
    with store.session(write=True) as session:
        session.add(ResultRow(result_key=rkey(1, path="dir/f1.bin"), content_key=content(1), fingerprint=FP1,
                              format="pickle", verdict="inconclusive", report="{}"))
    assert revision_row(store, revision).verdict is None
    assert store.complete_pending() == 1
    assert revision_row(store, revision).verdict == "inconclusive"
    assert repo_row(store, repo).verdict == "inconclusive"
    assert store.complete_pending() == 0


# -- re-scans after a rules change ---------------------------------------------------------------
def test_stale_files_after_a_fingerprint_change(store):
    popular = store.upsert_repo(SOURCE, "model", "org/popular", priority=100)
    quiet = store.upsert_repo(SOURCE, "dataset", "org/quiet", priority=1)
    gone = store.upsert_repo(SOURCE, "model", "org/gone")
    store.record_revision(popular, "p0", files(9))  # an older revision: not re-scanned
    store.record_revision(popular, "p1", files(1, 2))
    quiet_revision = store.record_revision(quiet, "q1", files(3))
    store.record_revision(gone, "g1", files(4))
    store.mark_gone(SOURCE, "model", "org/gone")
    for n, verdict in ((1, "clean"), (2, "clean"), (3, "clean"), (4, "clean"), (9, "clean")):
        save(store, n, verdict)
    assert store.stale_files(FP1) == []

    stale = store.stale_files(FP2)
    assert [(f["name"], f["commit"], f["path"]) for f in stale] == [
        ("org/popular", "p1", "dir/f1.bin"), ("org/popular", "p1", "dir/f2.bin"), ("org/quiet", "q1", "dir/f3.bin")]
    assert stale[2].items() >= {"source": SOURCE, "kind": "dataset", "content_key": content(3), "size": 103}.items()
    assert len(store.stale_files(FP2, limit=2)) == 2

    # the monitor re-keys the quiet repo's file under the new fingerprint: pending, old verdict kept
    store.record_revision(quiet, "q1", files(3, fingerprint=FP2))
    row = revision_row(store, quiet_revision)
    assert row.completed_at is None and row.verdict == "clean"
    assert [f["name"] for f in store.stale_files(FP2)] == ["org/popular", "org/popular"]
    # the new rules find the same bytes malicious
    assert save(store, 3, "malicious", fingerprint=FP2)
    row = revision_row(store, quiet_revision)
    assert row.completed_at is not None and row.verdict == "malicious"
    assert repo_row(store, quiet).verdict == "malicious"


# -- alerts, triage, runs ----------------------------------------------------------------------
def test_record_alert_deduplicates(store):
    fields = {"content_key": content(1), "verdict": "malicious", "severity": "critical", "repo": "model:org/a",
              "path": "model.pkl", "channel": "webhook"}
    assert store.record_alert(f"{content(1)}|malicious|webhook", **fields) is True
    assert store.record_alert(f"{content(1)}|malicious|webhook", **fields) is False
    assert store.record_alert(f"{content(1)}|malicious|log", **{**fields, "channel": "log"}) is True
    store.set_alert_status(f"{content(1)}|malicious|webhook", "failed")
    with store.session() as session:
        rows = session.scalars(select(Alert).order_by(Alert.id)).all()
    assert [(r.channel, r.status) for r in rows] == [("webhook", "failed"), ("log", "sent")]
    assert rows[0].created_at.tzinfo is not None
    with pytest.raises(TypeError):
        store.record_alert("k", colour="red")


def test_triage_decisions(store):
    first = store.add_triage(content(1), "pickle-dangerous-callable", "accepted", "test fixture", "alice")
    second = store.add_triage(content(1), None, "escalated", "<script>x</script>", "bob")
    assert second != first
    with pytest.raises(ValueError, match="accepted, escalated, rescan"):
        store.add_triage(content(1), None, "ignore", "", "eve")
    with store.session() as session:
        rows = session.scalars(select(Triage).order_by(Triage.id)).all()
    assert [(r.rule, r.decision, r.reason, r.actor) for r in rows] == [
        ("pickle-dangerous-callable", "accepted", "test fixture", "alice"),
        (None, "escalated", "<script>x</script>", "bob")]


def test_scan_runs(store):
    run = store.start_run("backfill", SOURCE)
    store.finish_run(run, repos_checked=10, revisions_new=4, files_queued=7, files_known=3, errors=1,
                     error_text="org/x: 404")
    with store.session() as session:
        row = session.get(ScanRun, run)
    assert (row.mode, row.repos_checked, row.files_queued, row.files_known, row.errors, row.error_text) == (
        "backfill", 10, 7, 3, 1, "org/x: 404")
    assert row.finished_at >= row.started_at and row.finished_at.tzinfo == timezone.utc
    with pytest.raises(TypeError):
        store.finish_run(run, files_scanned=1)


# -- faults ---------------------------------------------------------------------------------------
def test_postgresql_restarted_during_a_run(postgres):
    url = postgres.create_database(f"restart_{next(_names)}")
    store = Store(url)
    try:
        repo = store.upsert_repo(SOURCE, "model", "org/a")
        revision = store.record_revision(repo, "c1", files(1, 2))
        assert save(store, 1, "clean")

        postgres.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            save(store, 2, "malicious")
        with pytest.raises(StoreUnavailable):
            store.known_results([rkey(1)])
        assert time.monotonic() - started < 30

        postgres.start()
        # the same Store, its pooled connections now dead: reconnects, nothing lost
        assert store.known_results([rkey(1, path="dir/f1.bin")]) == {rkey(1, path="dir/f1.bin")}
        assert revision_row(store, revision).verdict is None
        assert save(store, 2, "malicious") is True
        assert save(store, 2, "malicious") is False
        assert revision_row(store, revision).verdict == "malicious"
        assert store.repo_commit(SOURCE, "model", "org/a") == "c1"
    finally:
        store.dispose()
        postgres.start()
