"""`malhug serve`: the REST API, the dashboard and /metrics, run by uvicorn.

Only the standard library is imported here; FastAPI, uvicorn and SQLAlchemy are imported when
the command runs, so the scanner's own commands start fast and work without the service extras.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def add_arguments(parser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--api-token", help="the token write operations need (better: MALHUG_API_TOKEN, "
                        "which other users of the machine cannot read from the process list); "
                        "without a token every write is refused")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="uvicorn's log level (default info)")


def main(args, settings) -> int:
    import uvicorn

    from .app import create_app

    if not 0 < args.port < 65536:
        print(f"malhug: error: --port must be between 1 and 65535, not {args.port}", file=sys.stderr)
        return 3
    if args.api_token:
        settings = dataclasses.replace(settings, api_token=args.api_token)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    if not settings.api_token:
        logging.getLogger("malhug.serve").warning(
            "no API token: the API and dashboard are read-only (set MALHUG_API_TOKEN to enable triage)")
    if not _loopback(args.host):
        logging.getLogger("malhug.serve").warning(
            "listening on %s: reads are open to anyone who can reach it; put it behind TLS", args.host)
    app = create_app(settings)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False,
                    server_header=False)
    finally:
        app.state.queue.close()
        app.state.store.dispose()
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
