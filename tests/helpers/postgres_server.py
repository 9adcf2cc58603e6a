"""A throwaway PostgreSQL cluster on loopback for the tests.

`PostgresServer` runs initdb on a temporary folder, then the postmaster on 127.0.0.1 at a free port,
with its unix sockets in the same folder. When the tests run as root, both run as the `postgres`
OS user (the folder is handed to it), since PostgreSQL refuses to run as root. Loopback
connections are trusted: the cluster lives for one test session and is deleted afterwards.
`stop()` and `start()` again on the same data folder let fault tests restart the server; the
postmaster is only ever signalled by the process id it was started with.

    with PostgresServer() as server:
        url = server.create_database("store")   # postgresql+psycopg://postgres@127.0.0.1:PORT/store
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
OS_USER = "postgres"


def find_bindir() -> Path | None:
    """The folder with initdb and postgres (Debian keeps them off PATH), or None."""
    candidates = [os.environ.get("MALHUG_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    return None


def _version(folder: str) -> int:
    try:
        return int(Path(folder).parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder (see the module's docstring)."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, postgres) not found")
        self.root = Path(tempfile.mkdtemp(prefix="malhug-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._as_user = _os_user() if os.geteuid() == 0 else None
        if self._as_user is not None:
            os.chown(self.root, self._as_user.pw_uid, self._as_user.pw_gid)
        self._initdb()

    # -- lifecycle --------------------------------------------------------------------------------
    def _run_kwargs(self) -> dict:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC",
               "HOME": str(self.root)}
        kwargs = {"env": env, "cwd": str(self.root)}
        if self._as_user is not None:
            kwargs.update(user=self._as_user.pw_uid, group=self._as_user.pw_gid, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        done = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                              capture_output=True, text=True, timeout=120, **self._run_kwargs())
        if done.returncode != 0:
            self.cleanup()
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> "PostgresServer":
        if self.running:
            return self
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-h", HOST, "-p", str(self.port),
                 "-k", str(self.root), "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=60", "-c", "shared_buffers=32MB"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._run_kwargs())
        finally:
            log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}): {self.log_tail()}")
            done = subprocess.run([str(self.bindir / "pg_isready"), "-h", HOST, "-p", str(self.port), "-U",
                                   "postgres", "-t", "2"], capture_output=True, timeout=10)
            if done.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections within {START_SECONDS:.0f}s: {self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients disconnected, data kept); SIGKILL if it does not stop."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- databases ------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        done = subprocess.run([str(self.bindir / "createdb"), "-h", HOST, "-p", str(self.port), "-U", "postgres",
                               name], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _os_user():
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise FileNotFoundError(f"running as root needs the {OS_USER!r} OS user to run PostgreSQL") from None


def postgres_or_skip():
    """A started server, or pytest.skip when PostgreSQL is not installed (the caller cleans up)."""
    import pytest

    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    server = PostgresServer()
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise
