"""The FastAPI application of `malhug serve`: the REST API, the dashboard and /metrics."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ... import __version__
from ..metrics import CONTENT_TYPE_LATEST, metrics_registry, render
from ..store.store import StoreError, StoreUnavailable
from . import dashboard, routes

STATIC = Path(__file__).with_name("static")

# Everything the pages load comes from this server; no inline script or style can run.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

MAX_BODY_BYTES = 64 * 1024  # triage bodies are small; refuse anything larger before reading it

DESCRIPTION = """Verdicts of the repositories malhug watches.

Reads are open. Writes (triage: accept, escalate, rescan) need `Authorization: Bearer <token>`
with the token set by `MALHUG_API_TOKEN`; without a configured token every write is refused (403).
Names, paths and evidence in responses come from the scanned repositories: treat them as data.
"""


def create_app(settings, store=None, queue=None) -> FastAPI:
    """The application over a store (default: Store(settings.store_url)) and a queue (default:
    the configured backend, used for re-scans, the overview's pending jobs and /metrics)."""
    if store is None:
        from ..store.store import Store

        store = Store(settings.store_url)
    if queue is None:
        from ..queue import open_queue

        queue = open_queue(settings)
    app = FastAPI(title="malhug", version=__version__, description=DESCRIPTION, openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None)  # the bundled viewers load scripts from a CDN
    app.state.settings = settings
    app.state.store = store
    app.state.queue = queue
    app.state.metrics = metrics_registry(store, queue)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Refuse oversize bodies before they are read; security headers on every response."""
        if _declared_length(request) > MAX_BODY_BYTES:
            response = JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.method == "GET" and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        # the message names the store with its password hidden, never the query
        code = 503 if isinstance(exc, StoreUnavailable) else 500
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(render(app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["service"], summary="Liveness: the store answers")
    def healthz() -> dict:
        from sqlalchemy import select

        with app.state.store.session() as session:
            session.scalar(select(1))
        return {"status": "ok", "version": __version__}

    app.include_router(routes.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        return MAX_BODY_BYTES + 1
