"""Prometheus metrics, computed from the store and the queue at scrape time.

Workers may be many processes on many machines (Celery), so counters kept in one process's
memory would be wrong: every value here is read from the shared store and queue when
Prometheus scrapes /metrics, and is right whichever process answers.

malhug_queue_jobs{state}                 jobs queued, running, poisoned (queue.depth())
malhug_files_scanned_total{verdict}      stored results by verdict
malhug_repos{verdict}                    existing repos by verdict of their last revision ("pending")
malhug_scan_seconds                      histogram of per-file scan time (from stored results)
malhug_scan_rate_files_per_minute        files scanned over the last ten minutes, per minute
malhug_jobs_poisoned                     jobs given up after the maximum attempts
malhug_scan_run_errors_total             errors counted by monitor passes
malhug_alerts_total{channel,status}      alerts sent and failed
malhug_metrics_source_up{source}         1 when the store / the queue could be read
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from .store.models import Alert

log = logging.getLogger("malhug.metrics")

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RATE_WINDOW_SECONDS = 600.0
QUEUE_STATES = ("queued", "running", "poisoned")

__all__ = ["CONTENT_TYPE_LATEST", "ServiceCollector", "metrics_registry", "render"]


class ServiceCollector(Collector):
    """One collector reading the store and the queue on every scrape."""

    def __init__(self, store, queue=None):
        self.store = store
        self.queue = queue

    def collect(self):
        up = GaugeMetricFamily("malhug_metrics_source_up", "1 when the source could be read at scrape time",
                               labels=["source"])
        yield from self._queue_metrics(up)
        yield from self._store_metrics(up)
        yield up

    def _queue_metrics(self, up):
        depth = None
        if self.queue is not None:
            try:
                depth = self.queue.depth()
            except Exception as exc:  # a broker down must not take /metrics down
                log.warning("queue depth unavailable: %s", exc)
        up.add_metric(["queue"], 1.0 if depth is not None else 0.0)
        if depth is None:
            return
        jobs = GaugeMetricFamily("malhug_queue_jobs", "jobs in the queue by state", labels=["state"])
        for state in sorted(set(QUEUE_STATES) | set(depth)):
            jobs.add_metric([state], float(depth.get(state, 0)))
        yield jobs
        yield GaugeMetricFamily("malhug_jobs_poisoned", "jobs given up after the maximum attempts",
                                value=float(depth.get("poisoned", 0)))

    def _store_metrics(self, up):
        from .api.queries import metric_counts

        try:
            with self.store.session() as session:
                counts = metric_counts(session, LATENCY_BUCKETS, RATE_WINDOW_SECONDS)
                alerts = session.execute(select(Alert.channel, Alert.status, func.count())
                                         .group_by(Alert.channel, Alert.status)).all()
        except Exception as exc:
            log.warning("store unavailable for metrics: %s", exc)
            up.add_metric(["store"], 0.0)
            return
        up.add_metric(["store"], 1.0)

        scanned = CounterMetricFamily("malhug_files_scanned", "stored scan results by verdict", labels=["verdict"])
        for verdict in ("clean", "inconclusive", "suspicious", "malicious"):
            scanned.add_metric([verdict], float(counts["files_by_verdict"].get(verdict, 0)))
        yield scanned

        repos = GaugeMetricFamily("malhug_repos", "existing repos by the verdict of their last revision",
                                  labels=["verdict"])
        for verdict in ("clean", "inconclusive", "suspicious", "malicious", "pending"):
            repos.add_metric([verdict], float(counts["repos_by_verdict"].get(verdict, 0)))
        yield repos

        latency = HistogramMetricFamily("malhug_scan_seconds", "seconds spent scanning one file")
        buckets = [(_bound(bound), float(n)) for bound, n in zip(LATENCY_BUCKETS, counts["buckets"])]
        buckets.append(("+Inf", float(counts["count"])))
        latency.add_metric([], buckets, sum_value=counts["seconds_sum"])
        yield latency

        yield GaugeMetricFamily("malhug_scan_rate_files_per_minute",
                                "files scanned over the last ten minutes, per minute",
                                value=counts["recent"] * 60.0 / RATE_WINDOW_SECONDS)
        yield CounterMetricFamily("malhug_scan_run_errors", "errors counted by monitor passes",
                                  value=float(counts["run_errors"]))
        sent = CounterMetricFamily("malhug_alerts", "alerts by channel and status", labels=["channel", "status"])
        for channel, status, n in alerts:
            sent.add_metric([channel, status], float(n))
        yield sent


def _bound(value: float) -> str:
    return repr(float(value))


def metrics_registry(store, queue=None) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the service collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(store, queue))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of the registry."""
    return generate_latest(registry)
