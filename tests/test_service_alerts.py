"""Alerts: a JSON webhook received by a real HTTP server on 127.0.0.1, and log alerts, with
de-duplication by content in the results store. The verdicts come from real scans of generated
pickles (the malicious one names os.system('id') in its __reduce__, and is never loaded)."""
from __future__ import annotations

import io
import json
import logging
import os
import pickle
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from malhug.scanner import scan_file
from malhug.service.alerts import Alerter
from malhug.service.jobs import ScanJob
from malhug.service.keys import content_key, fingerprint, result_key
from malhug.service.settings import ServiceSettings
from malhug.service.store.models import Alert
from malhug.service.store.store import Store

HOST = "127.0.0.1"


class _Call:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alert-fixtures")
    blobs = {"malicious": pickle.dumps(_Call(os.system, ("id",))),
             "suspicious": pickle.dumps(_Call(io.StringIO, ("x",))),
             "clean": pickle.dumps([1, 2, 3]),
             "inconclusive": pickle.dumps({"n": list(range(40))})[:-4]}
    results = {}
    for name, data in blobs.items():
        (folder / f"{name}.pkl").write_bytes(data)
        results[name] = scan_file(folder / f"{name}.pkl")
        assert str(results[name].verdict) == name
    return results


class Receiver:
    """A webhook endpoint: records each POSTed JSON body; answers `status`."""

    def __init__(self, status: int = 204):
        self.bodies: list[dict] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append({"content_type": self.headers.get("Content-Type"),
                                        "json": json.loads(self.rfile.read(length))})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield store
    store.dispose()


def job_for(result, repo="acme/model", path="pytorch_model.bin") -> ScanJob:
    key = content_key(sha256=result.sha256)
    return ScanJob(key=result_key(key, path), content_key=key, fingerprint=fingerprint(), source="http://127.0.0.1:9",
                   repo_type="model", repo_id=repo, revision="c" * 40, path=path, size=result.size,
                   sha256=result.sha256)


def alert_rows(store) -> list[tuple]:
    with store.session() as session:
        return [(a.channel, a.verdict, a.status, a.content_key) for a in
                session.scalars(select(Alert).order_by(Alert.id))]


def settings_for(tmp_path, url=None, alert_on="suspicious") -> ServiceSettings:
    return ServiceSettings(state_dir=tmp_path, webhook_url=url, alert_on=alert_on)


def test_a_malicious_file_alerts_once_however_many_repos_hold_it(tmp_path, store, scans, caplog):
    caplog.set_level(logging.WARNING, logger="malhug.alerts")
    with Receiver() as receiver:
        alerter = Alerter(settings_for(tmp_path, receiver.url), store)
        first = job_for(scans["malicious"], repo="acme/first", path="evil.pkl")
        assert sorted(alerter.notify(first, scans["malicious"])) == ["log", "webhook"]
        for n in range(3):  # the same bytes in other repos
            assert alerter.notify(job_for(scans["malicious"], repo=f"copy/{n}"), scans["malicious"]) == []
        alerter.close()
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]["json"]
    assert receiver.bodies[0]["content_type"] == "application/json"
    assert body["event"] == "verdict" and body["verdict"] == "malicious" and body["severity"] == "critical"
    assert body["content_key"] == first.content_key and body["result_key"] == first.key
    assert body["repo"] == {"source": first.source, "type": "model", "id": "acme/first", "revision": "c" * 40}
    assert body["path"] == "evil.pkl" and body["sha256"] == scans["malicious"].sha256
    assert body["findings"][0]["rule"] == "pickle-dangerous-callable"
    assert "system('id')" in body["findings"][0]["evidence"]
    assert body["error"] is None and "acme/first" in body["summary"]
    logged = [r for r in caplog.records if r.name == "malhug.alerts"]
    assert len(logged) == 1 and "malicious" in logged[0].getMessage() and "evil.pkl" in logged[0].getMessage()
    assert sorted(alert_rows(store)) == [("log", "malicious", "sent", first.content_key),
                                         ("webhook", "malicious", "sent", first.content_key)]


def test_a_new_verdict_of_the_same_content_alerts_again(tmp_path, store, scans):
    """De-duplication is by content and verdict: a verdict that worsens after a rules change alerts."""
    with Receiver() as receiver:
        alerter = Alerter(settings_for(tmp_path, receiver.url), store)
        job = job_for(scans["suspicious"])
        assert alerter.notify(job, scans["suspicious"])
        assert alerter.notify(job, scans["malicious"])  # the same content, judged worse
        assert alerter.notify(job, scans["malicious"]) == []
        alerter.close()
    assert [b["json"]["verdict"] for b in receiver.bodies] == ["suspicious", "malicious"]


@pytest.mark.parametrize("alert_on, alerting", [
    ("suspicious", {"suspicious", "malicious"}),
    ("malicious", {"malicious"}),
])
def test_threshold(tmp_path, store, scans, alert_on, alerting):
    with Receiver() as receiver:
        alerter = Alerter(settings_for(tmp_path, receiver.url, alert_on), store)
        for verdict in ("clean", "inconclusive", "suspicious", "malicious"):
            sent = alerter.notify(job_for(scans[verdict]), scans[verdict])
            assert bool(sent) == (verdict in alerting), verdict
        alerter.close()
    assert {b["json"]["verdict"] for b in receiver.bodies} == alerting
    assert {row[1] for row in alert_rows(store)} == alerting


def test_without_a_webhook_alerts_are_logged(tmp_path, store, scans, caplog):
    caplog.set_level(logging.WARNING, logger="malhug.alerts")
    alerter = Alerter(settings_for(tmp_path), store)
    job = job_for(scans["malicious"], path="odd\nname.pkl")
    assert alerter.notify(job, scans["malicious"]) == ["log"]
    assert [row[0] for row in alert_rows(store)] == ["log"]
    message = [r.getMessage() for r in caplog.records if r.name == "malhug.alerts"][0]
    assert "\n" not in message and "odd\\nname.pkl" in message  # a path cannot forge a log line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def test_a_webhook_that_is_down_is_logged_and_recorded_as_failed(tmp_path, store, scans, caplog):
    caplog.set_level(logging.WARNING, logger="malhug.alerts")
    url = f"http://{HOST}:{free_port()}/hook"  # nothing listens there
    alerter = Alerter(settings_for(tmp_path, url), store, timeout=2.0)
    job = job_for(scans["malicious"])
    assert alerter.notify(job, scans["malicious"]) == ["log"]  # no exception
    alerter.close()
    assert sorted(alert_rows(store)) == [("log", "malicious", "sent", job.content_key),
                                         ("webhook", "malicious", "failed", job.content_key)]
    errors = [r for r in caplog.records if r.name == "malhug.alerts" and r.levelno >= logging.ERROR]
    assert errors and "unreachable" in errors[0].getMessage()
    assert "/hook" not in errors[0].getMessage()  # a webhook's path may hold its secret


def test_a_webhook_answering_an_error_is_recorded_as_failed(tmp_path, store, scans, caplog):
    caplog.set_level(logging.WARNING, logger="malhug.alerts")
    with Receiver(status=500) as receiver:
        alerter = Alerter(settings_for(tmp_path, receiver.url), store)
        job = job_for(scans["suspicious"])
        assert alerter.notify(job, scans["suspicious"]) == ["log"]
        alerter.close()
    assert len(receiver.bodies) == 1
    assert ("webhook", "suspicious", "failed", job.content_key) in alert_rows(store)
    assert any("HTTP 500" in r.getMessage() for r in caplog.records if r.name == "malhug.alerts")


def test_a_store_that_fails_does_not_break_the_caller(tmp_path, scans, caplog):
    store = Store(f"sqlite:///{tmp_path / 'gone.sqlite'}")
    store.dispose()
    (tmp_path / "gone.sqlite").unlink()
    (tmp_path / "gone.sqlite").mkdir()  # the database file cannot be opened any more
    caplog.set_level(logging.WARNING, logger="malhug.alerts")
    assert Alerter(settings_for(tmp_path), store).notify(job_for(scans["malicious"]), scans["malicious"]) == []
    assert any("failed" in r.getMessage() for r in caplog.records if r.name == "malhug.alerts")


def test_poisoned_file_alert(tmp_path, store, scans):
    with Receiver() as receiver:
        alerter = Alerter(settings_for(tmp_path, receiver.url, "malicious"), store)
        job = job_for(scans["clean"], path="crashes.pkl")
        assert sorted(alerter.poisoned(job, "worker killed by signal 9")) == ["log", "webhook"]
        assert alerter.poisoned(job, "worker killed by signal 9") == []
        alerter.close()
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]["json"]
    assert body["event"] == "poisoned" and body["verdict"] == "inconclusive"
    assert body["error"] == "worker killed by signal 9" and body["findings"] == []
    assert "could not be scanned" in body["summary"] and "crashes.pkl" in body["summary"]
    assert {row[1] for row in alert_rows(store)} == {"poisoned"}
