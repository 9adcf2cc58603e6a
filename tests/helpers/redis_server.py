"""A throwaway redis-server on 127.0.0.1 for the queue tests.

It listens on a free port, keeps its data in a temporary folder with an append-only file
written on every command (so `stop()` then `start()` keeps queued messages, as a production
broker with persistence would), and is stopped by the process id it was started with.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
HOST = "127.0.0.1"
START_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def available() -> bool:
    return Path(REDIS_SERVER).exists()


class RedisServer:
    """start(), stop() (graceful, data kept), kill() (SIGKILL), cleanup(); `url` names db 0."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="malhug-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> "RedisServer":
        if self.process is not None and self.process.poll() is None:
            return self
        command = [REDIS_SERVER, "--bind", HOST, "--port", str(self.port), "--dir", str(self.folder),
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                   "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
                   "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   + (self.folder / "redis.log").read_text(errors="replace")[-2000:])
            if self.ping():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {START_SECONDS} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """Shut down gracefully (SIGTERM: the append-only file is flushed)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.cleanup()
