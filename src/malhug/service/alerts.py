"""Alerts on new verdicts at or above a threshold: a JSON webhook and a log line.

An alert is de-duplicated by content: its key is content key + verdict + channel, recorded in
the store before anything is sent, so the same malicious file found in a thousand repos alerts
once per channel, and two workers finishing it at once do not both send. A webhook that is
down is logged and recorded as failed; alerting never raises into the worker that calls it.

The webhook body (one JSON object, UTF-8):

    {"event": "verdict" | "poisoned", "verdict": "malicious", "severity": "critical",
     "content_key": "sha256:...", "result_key": "...", "fingerprint": "...",
     "repo": {"source": "...", "type": "model", "id": "org/name", "revision": "<commit>"},
     "path": "pytorch_model.bin", "size": 1234, "sha256": "...",
     "findings": [{"rule", "severity", "category", "message", "evidence"}...],
     "problems": ["reason", ...], "error": null, "summary": "one line", "sent_at": "<ISO 8601>"}

Names, paths and evidence come from the scanned repository: receivers must treat them as data.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..findings import FileResult, Verdict
from .jobs import ScanJob

log = logging.getLogger("malhug.alerts")

WEBHOOK_TIMEOUT_SECONDS = 5.0
MAX_FINDINGS = 20
MAX_EVIDENCE = 500
_RANK = {"clean": 0, "inconclusive": 1, "suspicious": 2, "malicious": 3}


def dedup_key(content_key: str, verdict: str, channel: str) -> str:
    return f"{content_key}|{verdict}|{channel}"


def at_or_above(verdict: str, threshold: str) -> bool:
    return _RANK.get(verdict, 0) >= _RANK.get(threshold, _RANK["suspicious"]) and verdict != "clean"


class Alerter:
    """Sends the alerts of one service (settings.webhook_url, settings.alert_on)."""

    def __init__(self, settings, store, timeout: float = WEBHOOK_TIMEOUT_SECONDS):
        self.settings = settings
        self.store = store
        self.timeout = timeout
        self._client = None

    # -- what workers call ----------------------------------------------------------------

    def notify(self, job: ScanJob, result: FileResult) -> list[str]:
        """Alert on a new verdict when it is at or above the threshold; the channels alerted."""
        verdict = str(result.verdict)
        if not at_or_above(verdict, self.settings.alert_on):
            return []
        payload = self._payload("verdict", job, verdict, result=result)
        return self._send(job, verdict, payload)

    def poisoned(self, job: ScanJob, error: str) -> list[str]:
        """Alert that a file could not be scanned after the maximum attempts (always sent)."""
        payload = self._payload("poisoned", job, str(Verdict.INCONCLUSIVE), error=error)
        return self._send(job, "poisoned", payload)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- channels -------------------------------------------------------------------------

    def _send(self, job: ScanJob, verdict: str, payload: dict) -> list[str]:
        sent = []
        channels = ["log"] + (["webhook"] if self.settings.webhook_url else [])
        for channel in channels:
            try:
                if not self._claim(job, verdict, channel, payload.get("severity")):
                    continue
                ok = self._log(payload) if channel == "log" else self._webhook(payload)
                self.store.set_alert_status(dedup_key(job.content_key, verdict, channel), "sent" if ok else "failed")
                if ok:
                    sent.append(channel)
            except Exception:  # alerting must never break the scan that triggered it
                log.exception("alert on %s (%s) failed", job.content_key, channel)
        return sent

    def _claim(self, job: ScanJob, verdict: str, channel: str, severity: str | None) -> bool:
        return self.store.record_alert(
            dedup_key(job.content_key, verdict, channel), content_key=job.content_key, verdict=verdict,
            severity=severity, repo=f"{job.repo_type}:{job.repo_id}"[:600], path=job.path[:2048],
            channel=channel, status="sending")

    def _log(self, payload: dict) -> bool:
        log.warning("malhug alert: %s", payload["summary"])
        return True

    def _webhook(self, payload: dict) -> bool:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False,
                                        headers={"User-Agent": "malhug-alerts"})
        try:
            response = self._client.post(self.settings.webhook_url, json=payload)
        except httpx.HTTPError as exc:
            log.error("webhook %s unreachable: %s", _host(self.settings.webhook_url), exc)
            return False
        if response.status_code >= 300:
            log.error("webhook %s answered HTTP %d", _host(self.settings.webhook_url), response.status_code)
            return False
        return True

    # -- the message ----------------------------------------------------------------------

    def _payload(self, event: str, job: ScanJob, verdict: str, result: FileResult | None = None,
                 error: str | None = None) -> dict:
        findings = sorted(result.findings, key=lambda f: -int(f.severity)) if result else []
        severity = str(findings[0].severity) if findings else None
        where = f"{job.repo_type} {job.repo_id}@{job.revision[:12]}: {job.path}"
        if event == "poisoned":
            summary = f"could not be scanned after the maximum attempts ({_short(error or '', 200)}): {where}"
        else:
            top = f" ({findings[0].rule}: {_short(findings[0].message, 200)})" if findings else ""
            summary = f"{verdict}{top}: {where}"
        summary = _printable(summary)
        return {
            "event": event,
            "verdict": verdict,
            "severity": severity,
            "content_key": job.content_key,
            "result_key": job.key,
            "fingerprint": job.fingerprint,
            "repo": {"source": job.source, "type": job.repo_type, "id": job.repo_id, "revision": job.revision},
            "path": job.path,
            "size": job.size if job.size is not None else (result.size if result else None),
            "sha256": job.sha256 or (result.sha256 if result else None),
            "findings": [{"rule": f.rule, "severity": str(f.severity), "category": f.category,
                          "message": f.message, "evidence": _short(f.evidence, MAX_EVIDENCE)}
                         for f in findings[:MAX_FINDINGS]],
            "problems": [p.reason for p in result.problems][:MAX_FINDINGS] if result else [],
            "error": _short(error, 2000) if error is not None else None,
            "summary": summary,
            "sent_at": datetime.now(timezone.utc).isoformat(),
        }


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _printable(text: str) -> str:
    """Control characters escaped: a path with a newline must not forge a second log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _host(url: str) -> str:
    """The webhook's scheme and host only: its path often holds a secret (chat webhooks)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
