"""The local Hugging Face cache: every snapshot a repository, every shared blob read once."""
from __future__ import annotations

import hashlib
import os

import pytest

import opcodes as op

from malhug import scanner
from malhug.findings import Verdict
from malhug.scanner import ScanOptions, scan_repository
from malhug.sources.hf_cache import HfCacheError, default_hf_cache_root, hf_cache_repositories

EVIL = op.call("os", "system", "id")
BENIGN = op.proto(2) + op.empty_dict() + op.stop()
CONFIG = b'{"model_type": "bert", "hidden_size": 8}\n'
C1, C2, C3, C4, C5, C6, C7 = ("%040x" % n for n in range(1, 8))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeCache:
    """Writes the hub cache layout: blobs named by hash, snapshot files as relative links."""

    def __init__(self, root):
        self.root = root

    def blob(self, repo: str, data: bytes, name: str | None = None) -> str:
        name = name or _sha(data)
        blobs = self.root / repo / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        (blobs / name).write_bytes(data)
        return name

    def link(self, repo: str, commit: str, path: str, target: str) -> None:
        link = self.root / repo / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)

    def file(self, repo: str, commit: str, path: str, data: bytes, name: str | None = None) -> None:
        blob = self.blob(repo, data, name)
        depth = path.count("/")
        self.link(repo, commit, path, "../" * (depth + 2) + "blobs/" + blob)

    def ref(self, repo: str, name: str, commit: str) -> None:
        ref = self.root / repo / "refs" / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)


@pytest.fixture
def hub(tmp_path):
    root = tmp_path / "hub"
    cache = FakeCache(root)
    # two snapshots of one model share its config and its (malicious) weights
    for commit in (C1, C2):
        cache.file("models--org--alpha", commit, "config.json", CONFIG, name=_git_sha(CONFIG))
        cache.file("models--org--alpha", commit, "model.pkl", EVIL)
    cache.ref("models--org--alpha", "main", C2)
    # the same malicious weights cached by another repository
    cache.file("models--other--beta", C3, "model.pkl", EVIL)
    cache.file("models--other--beta", C3, "sub/dir/notes.md", b"# notes\n")
    # a clean model
    cache.file("models--org--clean", C4, "config.json", CONFIG, name=_git_sha(CONFIG))
    cache.file("models--org--clean", C4, "model.pkl", BENIGN)
    cache.ref("models--org--clean", "main", C4)
    # a dataset whose download did not finish: a partial blob, a link to a blob not there yet
    missing = _sha(b"the data that never arrived")
    cache.blob("datasets--org--partial", b"half of it", name=missing + ".incomplete")
    cache.file("datasets--org--partial", C5, "README.md", b"# a dataset\n")
    cache.link("datasets--org--partial", C5, "data.pkl", "../../blobs/" + missing)
    # a space with links that leave its folder
    (tmp_path / "outside.txt").write_text("not part of any repository")
    cache.file("spaces--org--escape", C6, "app.py", b"print('hello')\n")
    cache.link("spaces--org--escape", C6, "leak.txt", "../../../../outside.txt")
    cache.link("spaces--org--escape", C6, "abs.txt", str(tmp_path / "outside.txt"))
    # things in a cache root that are not repositories
    (root / ".locks" / "models--org--alpha").mkdir(parents=True)
    (root / "version.txt").write_text("1")
    return root


@pytest.fixture
def analysed(monkeypatch):
    calls = []
    real = scanner.analyse

    def counting(stream, ctx, member, name="", **kwargs):
        calls.append(name)
        return real(stream, ctx, member, name=name, **kwargs)

    monkeypatch.setattr(scanner, "analyse", counting)
    return calls


def _scan_all(repositories, options=None):
    options = options or ScanOptions()
    out = {}
    for repo in repositories:
        result, files = scan_repository(repo, options)
        out[(repo.id, repo.revision)] = (result, {f.path: f for f in files})
    return out


def test_every_snapshot_is_a_repository(hub):
    repos = hf_cache_repositories(hub)
    found = sorted((r.id, r.type, r.revision) for r in repos)
    assert found == sorted([
        ("org/alpha", "model", C1), ("org/alpha", "model", C2), ("other/beta", "model", C3),
        ("org/clean", "model", C4), ("org/partial", "dataset", C5), ("org/escape", "space", C6),
    ])
    beta = next(r for r in repos if r.id == "other/beta")
    assert beta.location == str(hub / "models--other--beta" / "snapshots" / C3)
    assert sorted(f.path for f in beta.files) == ["model.pkl", "sub/dir/notes.md"]
    assert all(f.sha256 is None for f in beta.files)  # blob names are claims, hashed when read
    assert {beta.display(f) for f in beta.files} == {
        str(hub / "models--other--beta" / "snapshots" / C3 / "model.pkl"),
        str(hub / "models--other--beta" / "snapshots" / C3 / "sub" / "dir" / "notes.md"),
    }


def test_malicious_blob_reported_at_every_path_and_read_once(hub, analysed):
    results = _scan_all(hf_cache_repositories(hub))
    evil_paths = [
        hub / "models--org--alpha" / "snapshots" / C1 / "model.pkl",
        hub / "models--org--alpha" / "snapshots" / C2 / "model.pkl",
        hub / "models--other--beta" / "snapshots" / C3 / "model.pkl",
    ]
    files = {path: file for _, by_path in results.values() for path, file in by_path.items()}
    for path in map(str, evil_paths):
        assert files[path].verdict is Verdict.MALICIOUS
        assert files[path].sha256 == _sha(EVIL)
        assert files[path].findings
        assert {f.location.file for f in files[path].findings} == {path}
    evil_reads = [name for name in analysed if name.endswith("model.pkl") and "clean" not in name]
    assert len(evil_reads) == 1
    config_reads = [name for name in analysed if name.endswith("config.json")]
    assert len(config_reads) == 1  # alpha's two snapshots and the clean model share it
    for key in (("org/alpha", C1), ("org/alpha", C2), ("other/beta", C3)):
        assert results[key][0].verdict is Verdict.MALICIOUS


def test_benign_snapshot_is_clean(hub):
    results = _scan_all(hf_cache_repositories(hub))
    repo, files = results[("org/clean", C4)]
    assert repo.verdict is Verdict.CLEAN
    assert {f.verdict for f in files.values()} == {Verdict.CLEAN}
    assert len(files) == 2


def test_unfinished_download_is_inconclusive(hub):
    results = _scan_all(hf_cache_repositories(hub))
    repo, files = results[("org/partial", C5)]
    assert repo.verdict is Verdict.INCONCLUSIVE
    assert any("did not finish" in p.reason and ".incomplete" in p.reason for p in repo.problems)
    data = files[str(hub / "datasets--org--partial" / "snapshots" / C5 / "data.pkl")]
    assert data.verdict is Verdict.INCONCLUSIVE
    assert "missing blob" in data.problems[0].reason
    readme = files[str(hub / "datasets--org--partial" / "snapshots" / C5 / "README.md")]
    assert readme.verdict is Verdict.CLEAN


def test_links_leaving_the_repository_are_not_read(hub, analysed):
    results = _scan_all(hf_cache_repositories(hub))
    repo, files = results[("org/escape", C6)]
    snapshot = hub / "spaces--org--escape" / "snapshots" / C6
    for name in ("leak.txt", "abs.txt"):
        result = files[str(snapshot / name)]
        assert result.verdict is Verdict.INCONCLUSIVE
        assert "link leaves the repository" in result.problems[0].reason
    assert not any("outside" in name or name.endswith(("leak.txt", "abs.txt")) for name in analysed)
    assert repo.verdict is Verdict.INCONCLUSIVE


def test_a_blob_named_after_other_content_is_not_trusted(tmp_path):
    """A blob name is only a claim: content named like a known clean blob is still read."""
    cache = FakeCache(tmp_path / "hub")
    cache.file("models--org--clean", C4, "model.pkl", BENIGN)
    cache.file("models--org--liar", C7, "model.pkl", EVIL, name=_sha(BENIGN))
    results = _scan_all(hf_cache_repositories(tmp_path / "hub"))
    assert results[("org/clean", C4)][0].verdict is Verdict.CLEAN
    assert results[("org/liar", C7)][0].verdict is Verdict.MALICIOUS


def test_one_cached_repository_folder_can_be_named(hub):
    repos = hf_cache_repositories(hub / "models--org--alpha")
    assert sorted(r.revision for r in repos) == [C1, C2]


def test_an_interrupted_first_download_is_still_reported(tmp_path):
    cache = FakeCache(tmp_path / "hub")
    cache.blob("models--org--new", b"partial", name=_sha(b"x") + ".incomplete")
    (repo,) = hf_cache_repositories(tmp_path / "hub")
    result, files = scan_repository(repo, ScanOptions())
    assert files == [] and result.verdict is Verdict.INCONCLUSIVE


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "b"))
    assert default_hf_cache_root() == tmp_path / "a"
    monkeypatch.delenv("HF_HUB_CACHE")
    assert default_hf_cache_root() == tmp_path / "b" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_hf_cache_root() == tmp_path / "home" / ".cache" / "huggingface" / "hub"


def test_a_missing_cache_is_an_error(tmp_path):
    with pytest.raises(HfCacheError):
        hf_cache_repositories(tmp_path / "nothing here")
