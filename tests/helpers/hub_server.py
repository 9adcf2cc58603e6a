"""Local Hugging Face hubs on loopback for the hub tests and the remote benchmark.

`Olah` serves plain git repositories (`<mirrors>/<models|datasets|spaces>/<org>/<name>`) with
the olah mirror server, offline. `MiniHub` is a small hub of its own: folders served as
repositories at one commit each, through the endpoints huggingface_hub calls (revision info,
tree listing, `/resolve/`), with Range support that can be switched off, LFS metadata (sha256)
for large files, private and gated repositories, and a body that can be cut short on purpose.
Both bind 127.0.0.1 only and are stopped by the process id they were started with.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

HOST = "127.0.0.1"
START_SECONDS = 40.0
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "fixture", "GIT_AUTHOR_EMAIL": "fixture@example.invalid",
    "GIT_COMMITTER_NAME": "fixture", "GIT_COMMITTER_EMAIL": "fixture@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# -- git repositories ---------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, **GIT_ENV)
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def make_git_repo(root: Path, commits: list[dict]) -> list[str]:
    """One commit per dict of {path: bytes | Path | None (delete)}; returns their shas, oldest first."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    shas = []
    for number, files in enumerate(commits, 1):
        for name, content in files.items():
            path = root / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.move(str(content), path)
            else:
                path.write_bytes(content)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"commit {number}")
        shas.append(git(root, "rev-parse", "HEAD"))
    return shas


# -- olah -------------------------------------------------------------------------------------------
class Olah:
    """olah-cli serving `<workdir>/mirrors` offline on a free loopback port."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.mirrors = self.workdir / "mirrors"
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = self.workdir / "olah.log"

    def start(self) -> "Olah":
        self.mirrors.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "{HOST}"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.workdir / "cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            f'mirror-netloc = "{HOST}:{self.port}"\n'
            f'mirror-lfs-netloc = "{HOST}:{self.port}"\n'
            "\n[accessibility]\n"
            "offline = true\n")
        command = [_olah_cli(), "-c", str(config)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited ({self.process.returncode}): {self._log_tail()}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/api/models/none/none/revision/main",
                                       timeout=2)
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer: it is serving
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not answer within {START_SECONDS:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the session it was started in
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _olah_cli() -> str:
    beside = Path(sys.executable).with_name("olah-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("olah-cli")
    if not found:
        raise RuntimeError("olah-cli not found: pip install -e '.[test]'")
    return found


# -- a small hub with Range ------------------------------------------------------------------------
@dataclass
class HubRepo:
    type: str
    repo_id: str
    folder: Path
    sha: str
    files: list = field(default_factory=list)  # dicts as the tree API lists them
    private: bool = False
    gated: bool = False


class MiniHub:
    """Folders served as hub repositories, each at one commit, over HTTP on loopback."""

    def __init__(self, honour_range: bool = True, lfs_min: int = 1 << 20, token: str | None = None):
        self.honour_range = honour_range
        self.lfs_min = lfs_min
        self.token = token  # what private and gated repositories accept
        self.cut_after: int | None = None  # close /resolve/ bodies after this many bytes
        self.redirect_to_cdn = False  # answer /resolve/ with a redirect to another origin
        self.redirects = 0
        self.cdn_requests = 0
        self.cdn_requests_with_token = 0
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.body_bytes = 0
        self.range_requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def add(self, repo_type: str, repo_id: str, folder: Path, *, private: bool = False,
            gated: bool = False, sha256: dict | None = None) -> str:
        """Serve `folder` as a repository; `sha256` may give known digests of large files."""
        folder = Path(folder)
        files = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            if relative.split("/")[0] == ".git":
                continue
            size = path.stat().st_size
            entry = {"type": "file", "oid": hashlib.sha1(relative.encode()).hexdigest(),
                     "size": size, "path": relative}
            if size >= self.lfs_min:
                digest = (sha256 or {}).get(relative) or _sha256_of(path)
                entry["lfs"] = {"oid": digest, "size": size, "pointerSize": 134}
            files.append(entry)
        sha = hashlib.sha1(json.dumps([repo_type, repo_id, files]).encode()).hexdigest()
        self.repos[(repo_type, repo_id)] = HubRepo(repo_type, repo_id, folder, sha, files,
                                                   private, gated)
        return sha

    def handler_base(self) -> type:
        """The request handler class to serve with (a subclass may answer more routes)."""
        return _HubHandler

    def start(self) -> "MiniHub":
        hub = self

        class Handler(self.handler_base()):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def count(self, sent: int) -> None:
        with self._lock:
            self.body_bytes += sent


class _HubHandler(BaseHTTPRequestHandler):
    hub: MiniHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        match = re.match(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?(.*)$",
                         path)
        if match:
            kind, repo_id, action, revision, rest = match.groups()
            repo = self._repo(kind[:-1], repo_id, revision)
            if repo is None:
                return
            if action == "revision":
                return self._json(self._info(repo))
            recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(self._tree(repo, rest.strip("/"), recursive))
        match = re.match(r"^/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match:
            prefix, repo_id, revision, file_path = match.groups()
            kind = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
            repo = self._repo(kind, repo_id, revision, resolve=True)
            if repo is not None and self.hub.redirect_to_cdn:
                self._redirect(f"/cdn/{kind}/{repo_id}/{quote(file_path)}")
            elif repo is not None:
                self._file(repo, file_path, head)
            return
        match = re.match(r"^/cdn/(model|dataset|space)/([^/]+/[^/]+)/(.+)$", path)
        if match:
            kind, repo_id, file_path = match.groups()
            with self.hub._lock:
                self.hub.cdn_requests += 1
                self.hub.cdn_requests_with_token += "authorization" in self.headers
            repo = self.hub.repos.get((kind, repo_id))
            if repo is not None:
                return self._file(repo, file_path, head)
        self._error(404, "EntryNotFound", "not found")

    def _repo(self, kind: str, repo_id: str, revision: str, resolve: bool = False):
        repo = self.hub.repos.get((kind, repo_id))
        authorised = self.headers.get("authorization") == f"Bearer {self.hub.token}"
        if repo is None or (repo.private and not authorised):
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if revision not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None
        if resolve and repo.gated and not authorised:
            self._error(403, "GatedRepo", "Access to this repository is restricted")
            return None
        return repo

    def _redirect(self, path: str) -> None:
        """To another origin (localhost instead of 127.0.0.1), as the hub sends LFS files to a CDN."""
        with self.hub._lock:
            self.hub.redirects += 1
        self.send_response(302)
        self.send_header("Location", f"http://localhost:{self.server.server_address[1]}{path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _info(self, repo: HubRepo) -> dict:
        return {"id": repo.repo_id, "sha": repo.sha, "private": repo.private,
                "gated": "manual" if repo.gated else False, "disabled": False,
                "siblings": [{"rfilename": f["path"]} for f in repo.files]}

    def _tree(self, repo: HubRepo, under: str, recursive: bool) -> list:
        prefix = under + "/" if under else ""
        entries, folders = [], set()
        for entry in repo.files:
            if not entry["path"].startswith(prefix):
                continue
            rest = entry["path"][len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            for depth in range(1, rest.count("/") + 1):
                folders.add(prefix + "/".join(rest.split("/")[:depth]))
            entries.append(entry)
        folder_entries = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(),
                           "size": 0, "path": f} for f in sorted(folders)]
        return folder_entries + entries

    def _file(self, repo: HubRepo, file_path: str, head: bool) -> None:
        entry = next((f for f in repo.files if f["path"] == file_path), None)
        if entry is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        size = entry["size"]
        start, end, status = 0, size, 200
        wanted = _parse_range(self.headers.get("range"), size)
        if wanted is not None:
            with self.hub._lock:
                self.hub.range_requests += 1
            if self.hub.honour_range:
                start, end, status = wanted[0], wanted[1], 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes" if self.hub.honour_range else "none")
        self.send_header("ETag", f'"{entry.get("lfs", {}).get("oid") or entry["oid"]}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if head:
            return
        self._send_body(repo.folder / file_path, start, end)

    def _send_body(self, path: Path, start: int, end: int) -> None:
        limit = self.hub.cut_after
        sent = 0
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                while start + sent < end:
                    size = min(256 * 1024, end - start - sent)
                    if limit is not None:
                        size = min(size, limit - sent)
                        if size <= 0:
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                    chunk = handle.read(size)
                    if not chunk:
                        return
                    # counted before the write, so the count never lags what a client has read
                    self.hub.count(len(chunk))
                    self.wfile.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client stopped reading: that is allowed

    def _json(self, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or size == 0:
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last or 0)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    return (start, end) if start < end else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_url(endpoint: str, repo_type: str, repo_id: str) -> str:
    return f"{endpoint}/{TYPE_PREFIX[repo_type]}{quote(repo_id)}"


# -- pytest fixtures (import them into a test module) ------------------------------------------------
try:
    import pytest
except ImportError:  # the benchmark imports this module without pytest
    pytest = None

BIG_TENSOR_BYTES = 50 * 1000 * 1000


def torch_checkpoint(path: Path, tensor_bytes: int = 4096, tensors: int = 1) -> Path:
    """A benign state dict of zero float32 tensors, saved by torch.save (zip, stored members)."""
    import torch

    each = max(1, tensor_bytes // 4 // tensors)
    torch.save({f"layer{i}.weight": torch.zeros(each) for i in range(tensors)}, path)
    return path


def safetensors_file(path: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"embed": np.zeros((4, 4), dtype=np.float32)}, str(path))
    return path


def malicious_pickle() -> bytes:
    """`os.system('id')` as a pickle: GLOBAL, argument tuple, REDUCE (written, never loaded)."""
    return b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


@dataclass
class OlahFixture:
    endpoint: str
    heads: dict  # "models/acme/tiny" -> list of commit shas, oldest first
    big_size: int


def build_olah_repos(mirrors: Path, scratch: Path) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    config = json.dumps({"model_type": "tiny", "hidden_size": 4}).encode()
    heads = {}
    heads["models/acme/tiny"] = make_git_repo(mirrors / "models/acme/tiny", [
        {"pytorch_model.bin": torch_checkpoint(scratch / "tiny.bin"),
         "model.safetensors": safetensors_file(scratch / "tiny.safetensors"),
         "config.json": config, "README.md": b"# tiny\nA test model.\n",
         "extra/notes.txt": b"notes\n"},
        {"config.json": config.replace(b"4", b"8")},
    ])
    heads["models/acme/evil"] = make_git_repo(mirrors / "models/acme/evil", [
        {"pytorch_model.bin": torch_checkpoint(scratch / "evil-benign.bin"), "config.json": config},
        {"pytorch_model.bin": malicious_pickle()},
    ])
    heads["datasets/acme/corpus"] = make_git_repo(mirrors / "datasets/acme/corpus", [
        {"README.md": b"# corpus\n", "data/train.jsonl": b'{"text": "hello"}\n'},
        {"data/train.jsonl": b'{"text": "hello"}\n{"text": "world"}\n'},
    ])
    heads["models/acme/big"] = make_git_repo(mirrors / "models/acme/big", [
        {"pytorch_model.bin": torch_checkpoint(scratch / "big.bin", BIG_TENSOR_BYTES, 4),
         "config.json": config},
    ])
    return heads


if pytest is not None:
    @pytest.fixture(scope="session")
    def olah_hub(tmp_path_factory):
        """olah serving acme/tiny, acme/evil, acme/big and datasets/acme/corpus from git."""
        workdir = tmp_path_factory.mktemp("olah")
        server = Olah(workdir)
        heads = build_olah_repos(server.mirrors, workdir / "scratch")
        big = server.mirrors / "models/acme/big/pytorch_model.bin"
        with server:
            yield OlahFixture(server.endpoint, heads, big.stat().st_size)

    @pytest.fixture(scope="session")
    def mini_hub(tmp_path_factory):
        """A range-capable hub: acme/big (50 MB checkpoint), a private and a gated repository."""
        root = tmp_path_factory.mktemp("minihub")
        big = root / "big"
        big.mkdir()
        torch_checkpoint(big / "pytorch_model.bin", BIG_TENSOR_BYTES, 4)
        (big / "config.json").write_text('{"model_type": "tiny"}')
        small = root / "small"
        small.mkdir()
        torch_checkpoint(small / "pytorch_model.bin")
        hub = MiniHub(token="hf_fixture_token_example")
        hub.add("model", "acme/big", big)
        hub.add("model", "acme/private", small, private=True)
        hub.add("model", "acme/gated", small, gated=True)
        with hub:
            yield hub
