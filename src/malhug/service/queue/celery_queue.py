"""The distributed job queue: Celery over a Redis broker (RabbitMQ works too).

Every job is one Celery task message on the `malhug` queue. The app is configured for
at-least-once delivery of long scans:

- task_acks_late: a message is acknowledged after its job is settled, not when it is received;
- task_reject_on_worker_lost: a worker process that dies (kill -9, out of memory) puts its
  message back, and so does a task past its hard time limit (task_acks_on_timeout off);
- worker_prefetch_multiplier 1: a worker holds one message per process, so urgent jobs are not
  stuck behind another worker's backlog; worker_max_tasks_per_child recycles processes;
- task_soft_time_limit / task_time_limit: the soft limit fails the attempt from inside the
  scan, the hard one kills the process (and the message is redelivered).

Alongside the broker, a Redis (the broker itself when it is Redis, else MALHUG_REDIS_URL)
keeps what Celery does not: `SET NX` on the job key refuses a second live job for the same
result key, and `INCR` counts each job's deliveries, so a file that always kills its worker is
poisoned after `max_attempts` deliveries (an inconclusive result and an alert) instead of
looping forever.

The JobQueue methods work on both sides: `submit` publishes; a Celery worker's task turns each
delivery into a Claim and settles it through `complete`/`fail` (malhug.service.worker), and
`claim` takes a message straight from the broker for a worker of one's own.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from ..jobs import ScanJob
from .base import Claim, Disposition, JobQueue

log = logging.getLogger(__name__)

TASK_NAME = "malhug.scan_file"
QUEUE_NAME = "malhug"
PRIORITY_LEVELS = 10  # broker priorities 0..9; job priorities above 9 share the top level
DEDUPE_SECONDS = 24 * 3600  # a live-job marker outlives a backfill's backlog, yet cannot block a key for long
DEFAULT_SOFT_TIME_LIMIT = 300.0
DEFAULT_TIME_LIMIT = 360.0
DEFAULT_MAX_TASKS_PER_CHILD = 200
HANDLER_RETRY_SECONDS = 2.0


def coordination_url(settings) -> str:
    """The Redis that keeps the de-duplication markers and delivery counts."""
    url = os.environ.get("MALHUG_REDIS_URL")
    if url:
        return url
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        return settings.broker_url
    raise ValueError("with a broker other than Redis, set MALHUG_REDIS_URL to a Redis for the "
                     "job de-duplication markers and delivery counts")


def broker_priority(broker_url: str, priority: int) -> int:
    """A job priority (higher first) as the broker's message priority. Redis serves 0 first;
    RabbitMQ serves the highest first."""
    level = max(0, min(PRIORITY_LEVELS - 1, int(priority)))
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return PRIORITY_LEVELS - 1 - level
    return level


def celery_config(settings, *, soft_time_limit: float | None = DEFAULT_SOFT_TIME_LIMIT,
                  time_limit: float | None = DEFAULT_TIME_LIMIT,
                  max_tasks_per_child: int | None = DEFAULT_MAX_TASKS_PER_CHILD) -> dict:
    """The Celery settings of the scan queue (see the module's docstring for why each)."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a broker restart is waited out, not fatal
        "broker_transport_options": {
            # Redis: a message not acknowledged this long after delivery goes back to the queue
            # (a worker machine that vanished). It must exceed the hard time limit.
            "visibility_timeout": max(settings.lease_seconds, (time_limit or 0) * 1.25),
            "queue_order_strategy": "priority",
            "priority_steps": list(range(PRIORITY_LEVELS)),
        },
        "task_default_queue": QUEUE_NAME,
        "task_queue_max_priority": PRIORITY_LEVELS,  # RabbitMQ: x-max-priority
        "task_default_priority": broker_priority(settings.broker_url, 0),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure": True,  # the task settles its own failures; what escapes is bookkeeping
        "task_acks_on_timeout": False,  # past the hard limit: redelivered, and counted
        "task_soft_time_limit": soft_time_limit,
        "task_time_limit": time_limit,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": max_tasks_per_child,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def make_app(settings, *, handlers: str | None = None, **limits):
    """A Celery app for the scan queue, with the scan task registered. `handlers` names the
    handlers factory ("module:function") its worker processes run (malhug.service.worker)."""
    from celery import Celery

    from ..worker import DEFAULT_HANDLERS

    app = Celery("malhug", set_as_current=False)
    app.conf.update(celery_config(settings, **limits))
    app.conf.malhug_settings = settings
    app.conf.malhug_handlers = handlers or DEFAULT_HANDLERS

    @app.task(name=TASK_NAME, bind=True)
    def scan_file(task, job_json: str) -> str:
        return _run_delivery(task, job_json)

    return app


_process = threading.local()


def _process_state(app):
    """The queue connection and handlers of this worker process (built after the fork)."""
    state = getattr(_process, "state", None)
    if state is None or state[0] != os.getpid():
        from ..worker import load_handlers

        settings = app.conf.malhug_settings
        queue = CeleryQueue(settings, app=app)
        handlers = load_handlers(app.conf.malhug_handlers, settings)
        state = _process.state = (os.getpid(), queue, handlers)
    return state[1], state[2]


def _run_delivery(task, job_json: str) -> str:
    """One delivery of a job: count it, handle it, settle it. A queue or broker failure while
    settling puts the message back instead of losing the job."""
    from celery.exceptions import Reject, SoftTimeLimitExceeded

    from ..worker import process_claim

    try:
        queue, handlers = _process_state(task.app)
    except Exception as exc:  # noqa: BLE001 - the store or Redis cannot be reached yet
        log.exception("cannot start the job handlers; the message goes back to the queue")
        time.sleep(HANDLER_RETRY_SECONDS)
        raise Reject(str(exc), requeue=True) from exc
    try:
        claim = queue.deliver(ScanJob.from_json(job_json), task.request.id)
        return process_claim(queue, claim, handlers, queue.max_attempts)
    except (*queue.connection_errors, SoftTimeLimitExceeded) as exc:
        # Redis or the broker went away, or the soft limit struck while the job was being
        # settled: the message goes back, and the next delivery counts this one
        log.warning("job not settled (%s: %s); the message goes back to the queue", type(exc).__name__, exc)
        raise Reject(str(exc), requeue=True) from exc


class CeleryQueue(JobQueue):
    """The JobQueue over Celery: publishing, de-duplication, delivery counts and the poison cap."""

    def __init__(self, settings, *, app=None):
        import redis

        self.settings = settings
        self.app = app or make_app(settings)
        self.max_attempts = settings.max_attempts
        self.lease_seconds = float(self.app.conf.broker_transport_options.get("visibility_timeout",
                                                                               settings.lease_seconds))
        self.redis = redis.Redis.from_url(coordination_url(settings), socket_timeout=10,
                                          socket_connect_timeout=5, health_check_interval=10)
        with self.app.connection_for_write() as connection:  # not connected: only its error classes
            broker_errors = tuple(connection.connection_errors)
        self.connection_errors = (redis.ConnectionError, redis.TimeoutError, *broker_errors)
        self._held: dict[str, object] = {}  # claim id -> broker message, for claims made here
        self._reader = None
        self._consumer_queue = None

    # -- keys kept in Redis ----------------------------------------------------------------------
    @staticmethod
    def _live_key(key: str) -> str:
        return f"malhug:queue:live:{key}"

    @staticmethod
    def _attempts_key(key: str) -> str:
        return f"malhug:queue:attempts:{key}"

    RUNNING = "malhug:queue:running"
    POISONED = "malhug:queue:poisoned"
    ERRORS = "malhug:queue:errors"

    # -- JobQueue --------------------------------------------------------------------------------
    def submit(self, job: ScanJob) -> bool:
        if not self.redis.set(self._live_key(job.key), job.to_json(), nx=True, ex=DEDUPE_SECONDS):
            return False
        try:
            with self.redis.pipeline() as pipe:
                pipe.delete(self._attempts_key(job.key))
                pipe.srem(self.POISONED, job.key)
                pipe.hdel(self.ERRORS, job.key)
                pipe.execute()
            self._publish(job)
        except Exception:
            self.redis.delete(self._live_key(job.key))
            raise
        return True

    def claim(self, worker: str, lease_seconds: float | None = None) -> Claim | None:
        """Take one message straight from the broker (highest priority first). The broker's
        visibility timeout is the lease: `lease_seconds` cannot shorten it per message."""
        message = self._reader_queue().get(no_ack=False, accept=["json"])
        if message is None:
            return None
        args = message.decode()[0]
        claim = self.deliver(ScanJob.from_json(args[0]), message.headers.get("id") or message.delivery_tag,
                             worker=worker)
        self._held[claim.job_id] = message
        return claim

    def deliver(self, job: ScanJob, delivery_id: str, worker: str | None = None) -> Claim:
        """Count one delivery of a job and mark it running: the Claim a worker settles."""
        with self.redis.pipeline() as pipe:
            pipe.incr(self._attempts_key(job.key))
            pipe.expire(self._attempts_key(job.key), DEDUPE_SECONDS)
            pipe.hset(self.RUNNING, job.key, json.dumps({"worker": worker or _worker_name(),
                                                         "since": time.time(), "delivery": delivery_id}))
            attempt = pipe.execute()[0]
        return Claim(job_id=str(delivery_id), job=job, attempt=int(attempt),
                     lease_expires=time.time() + self.lease_seconds)

    def complete(self, claim: Claim) -> None:
        self._forget(claim.job.key)
        self._ack(claim)

    def fail(self, claim: Claim, error: str) -> Disposition:
        key = claim.job.key
        if claim.attempt >= self.max_attempts:
            self._forget(key)
            with self.redis.pipeline() as pipe:
                pipe.sadd(self.POISONED, key)
                pipe.hset(self.ERRORS, key, error)
                pipe.execute()
            self._ack(claim)
            return Disposition.POISONED
        with self.redis.pipeline() as pipe:
            pipe.hset(self.ERRORS, key, error)
            pipe.hdel(self.RUNNING, key)
            pipe.execute()
        self._publish(claim.job)  # the next attempt; the live marker stays held
        self._ack(claim)
        return Disposition.RETRY

    def postpone(self, claim: Claim, seconds: float, reason: str) -> None:
        """Put a job back for later without counting this delivery (the results store was
        unreachable): the count goes down again and the job is published with a countdown."""
        key = claim.job.key
        with self.redis.pipeline() as pipe:
            pipe.decr(self._attempts_key(key))
            pipe.hset(self.ERRORS, key, reason)
            pipe.hdel(self.RUNNING, key)
            pipe.execute()
        self._publish(claim.job, countdown=seconds)
        self._ack(claim)

    def depth(self) -> dict[str, int]:
        with self.app.connection_for_read() as connection:
            declared = self._queue_definition()(connection.default_channel).queue_declare()
        return {"queued": int(declared.message_count), "running": int(self.redis.hlen(self.RUNNING)),
                "poisoned": int(self.redis.scard(self.POISONED))}

    def last_error(self, key: str) -> str | None:
        value = self.redis.hget(self.ERRORS, key)
        return value.decode() if value is not None else None

    def close(self) -> None:
        for message in self._held.values():  # claims never settled go back to the queue
            try:
                message.requeue()
            except Exception:  # noqa: BLE001 - the broker restores unacked messages anyway
                pass
        self._held.clear()
        if self._reader is not None:
            self._reader.release()
            self._reader = None
        self.redis.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _publish(self, job: ScanJob, countdown: float | None = None) -> None:
        self.app.send_task(TASK_NAME, args=[job.to_json()], queue=QUEUE_NAME, countdown=countdown,
                           priority=broker_priority(self.settings.broker_url, job.priority))

    def _forget(self, key: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self._live_key(key))
            pipe.delete(self._attempts_key(key))
            pipe.hdel(self.RUNNING, key)
            pipe.execute()

    def _ack(self, claim: Claim) -> None:
        message = self._held.pop(claim.job_id, None)
        if message is not None:
            message.ack()

    def _queue_definition(self):
        """The scan queue as Celery declares it (exchange, routing key, maximum priority)."""
        return self.app.amqp.queues[QUEUE_NAME]

    def _reader_queue(self):
        if self._consumer_queue is None:
            self._reader = self.app.connection_for_read()
            self._consumer_queue = self._queue_definition()(self._reader.default_channel)
            self._consumer_queue.declare()
        return self._consumer_queue


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def __getattr__(name: str):
    """`celery -A malhug.service.queue.celery_queue worker` finds `app`, configured from the
    MALHUG_* environment."""
    if name in ("app", "celery"):
        from ..settings import ServiceSettings

        value = make_app(ServiceSettings.from_env(), handlers=os.environ.get("MALHUG_WORKER_HANDLERS"))
        globals()[name] = value
        return value
    raise AttributeError(name)
