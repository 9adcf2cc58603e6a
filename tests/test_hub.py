"""Hub repositories end to end: olah serving git repositories, and a small range-capable hub."""
from __future__ import annotations

import io
import json
import random

import pytest

from hub_server import BIG_TENSOR_BYTES, free_port, mini_hub, olah_hub  # noqa: F401

from malhug.cli import EXIT_FINDINGS, EXIT_INCONCLUSIVE, main
from malhug.findings import Verdict
from malhug.scanner import ScanOptions, scan_paths
from malhug.sources import remote_file
from malhug.sources.hub import HubError, HubRef, open_hub_repository, parse_target
from malhug.sources.remote_file import RemoteFile, RemoteReadError

TOKEN = "hf_fixture_token_example"


@pytest.fixture(autouse=True)
def hub_environment(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.fixture
def olah(olah_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", olah_hub.endpoint)
    return olah_hub


@pytest.fixture
def mini(mini_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", mini_hub.endpoint)
    mini_hub.honour_range = True
    mini_hub.cut_after = None
    mini_hub.body_bytes = 0
    yield mini_hub
    mini_hub.honour_range = True
    mini_hub.cut_after = None
    mini_hub.redirect_to_cdn = False


def scan_one(target):
    report = scan_paths([target])
    assert not report.errors, report.errors
    (repository,) = report.repositories
    return report, repository


# -- olah: git repositories -------------------------------------------------------------------------
def test_model_repository_resolves_the_commit_and_lists_every_file(olah):
    report, repository = scan_one("hf://acme/tiny")
    head = olah.heads["models/acme/tiny"][-1]
    assert report.verdict is Verdict.CLEAN
    assert repository.revision == head
    assert repository.id == "acme/tiny"
    assert repository.type == "model"
    assert repository.location == "hf://acme/tiny"
    prefix = f"hf://acme/tiny@{head[:12]}/"
    assert sorted(f.path for f in report.files) == [prefix + p for p in (
        "README.md", "config.json", "extra/notes.txt", "model.safetensors", "pytorch_model.bin")]
    formats = {f.path.rsplit("/", 1)[-1]: f.format for f in report.files}
    assert formats["pytorch_model.bin"] == "torch_zip"
    assert formats["model.safetensors"] == "safetensors"
    assert repository.total_bytes == sum(f.size for f in report.files)
    assert 0 < repository.fetched_bytes


def test_malicious_file_is_named_by_its_repository_path(olah):
    report, repository = scan_one("hf://acme/evil")
    head = olah.heads["models/acme/evil"][-1]
    assert report.verdict is Verdict.MALICIOUS
    assert repository.verdict is Verdict.MALICIOUS
    finding = next(f for f in report.findings() if "system" in f.evidence)
    assert finding.location.file == f"hf://acme/evil@{head[:12]}/pytorch_model.bin"


def test_two_revisions_give_two_verdicts(olah):
    old, new = olah.heads["models/acme/evil"]
    before, repo_before = scan_one(f"hf://acme/evil@{old}")
    after, repo_after = scan_one("hf://acme/evil@main")
    assert repo_before.revision == old and repo_after.revision == new
    assert before.verdict is Verdict.CLEAN
    assert after.verdict is Verdict.MALICIOUS


def test_dataset_repository(olah):
    report, repository = scan_one("hf://datasets/acme/corpus@main")
    assert repository.type == "dataset"
    assert repository.revision == olah.heads["datasets/acme/corpus"][-1]
    assert report.verdict is Verdict.CLEAN
    assert any(f.path.endswith("/data/train.jsonl") and f.path.startswith("hf://datasets/acme/corpus@")
               for f in report.files)


def test_web_address_under_the_endpoint_with_a_folder(olah):
    report, repository = scan_one(f"{olah.endpoint}/acme/tiny/tree/main/extra")
    assert repository.revision == olah.heads["models/acme/tiny"][-1]
    assert [f.path.rsplit("@", 1)[1][13:] for f in report.files] == ["extra/notes.txt"]


def test_old_revision_by_sha(olah):
    old = olah.heads["models/acme/tiny"][0]
    report, repository = scan_one(f"{olah.endpoint}/acme/tiny/tree/{old}")
    assert repository.revision == old
    assert report.verdict is Verdict.CLEAN


def test_missing_repository_is_an_error_and_exit_2(olah, capsys):
    report = scan_paths(["hf://acme/missing"])
    assert report.repositories == () and report.files == ()
    assert len(report.errors) == 1
    assert "acme/missing not found or private: set HF_TOKEN" in report.errors[0]
    assert report.verdict is Verdict.INCONCLUSIVE
    assert main(["scan", "hf://acme/missing"]) == EXIT_INCONCLUSIVE
    assert "not found" in capsys.readouterr().out


def test_missing_revision(olah):
    report = scan_paths(["hf://acme/tiny@no-such-branch"])
    assert "revision 'no-such-branch' not found" in report.errors[0]


def test_exit_code_of_a_malicious_repository(olah, capsys):
    assert main(["scan", "hf://acme/evil"]) == EXIT_FINDINGS


def test_a_server_that_ignores_range_is_streamed_once_and_counted(olah, caplog):
    """olah answers a Range request for a mirrored file with 200 and the whole body, so reading
    the end of a zip downloads all of it; the body is kept in a temporary file as it passes, and
    the later reads (local headers, data.pkl, the digest of a file without LFS sha256) are local."""
    report, repository = scan_one("hf://acme/big")
    assert report.verdict is Verdict.CLEAN
    assert repository.total_bytes > olah.big_size >= BIG_TENSOR_BYTES
    assert olah.big_size <= repository.fetched_bytes <= repository.total_bytes + 4096
    assert "ignores HTTP Range requests" in caplog.text


def test_without_room_to_keep_the_body_each_pass_streams_it_again(olah, monkeypatch):
    monkeypatch.setattr(remote_file, "SPILL_MAX_BYTES", 0)
    report, repository = scan_one("hf://acme/big")
    assert report.verdict is Verdict.CLEAN
    assert 2 * olah.big_size <= repository.fetched_bytes <= 3 * repository.total_bytes + (1 << 20)


def test_offline_mode_refuses_clearly(olah, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = scan_paths(["hf://acme/tiny"])
    assert "HF_HUB_OFFLINE is set" in report.errors[0]


def test_unreachable_endpoint(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    report = scan_paths(["hf://acme/tiny"])
    assert "cannot reach http://127.0.0.1:" in report.errors[0]
    assert main(["scan", "hf://acme/tiny"]) == EXIT_INCONCLUSIVE


# -- a range-capable hub ------------------------------------------------------------------------------
def test_range_reads_fetch_a_small_share_of_a_large_checkpoint(mini):
    report, repository = scan_one("hf://acme/big")
    assert report.verdict is Verdict.CLEAN
    assert repository.total_bytes > BIG_TENSOR_BYTES
    assert repository.fetched_bytes < repository.total_bytes / 50
    # every byte the client counts was sent; the server may have sent a little more into a
    # connection that the client then dropped
    assert repository.fetched_bytes <= mini.body_bytes < repository.total_bytes / 50
    checkpoint = next(f for f in report.files if f.path.endswith("pytorch_model.bin"))
    assert checkpoint.format == "torch_zip"
    assert checkpoint.sha256 and len(checkpoint.sha256) == 64  # from the LFS metadata
    assert repository.notes == ()


def test_isolated_workers_make_the_ranged_reads_and_report_what_they_fetched(mini):
    report = scan_paths(["hf://acme/big"], ScanOptions(isolation=True))
    assert not report.errors, report.errors
    (repository,) = report.repositories
    assert report.verdict is Verdict.CLEAN
    assert 0 < repository.fetched_bytes <= mini.body_bytes < repository.total_bytes / 50
    checkpoint = next(f for f in report.files if f.path.endswith("pytorch_model.bin"))
    assert checkpoint.format == "torch_zip"


def test_isolated_hub_payload_is_found(olah):
    report = scan_paths(["hf://acme/evil"], ScanOptions(isolation=True))
    assert report.verdict is Verdict.MALICIOUS
    assert main(["scan", "hf://acme/evil", "--no-cache"]) == EXIT_FINDINGS  # the CLI isolates by default


def test_a_worker_dying_on_a_hub_file_leaves_that_file_inconclusive(olah, monkeypatch):
    import isolation_hooks

    from malhug import isolation

    monkeypatch.setattr(isolation, "worker_task", isolation_hooks.remote_dies_task)
    report = scan_paths(["hf://acme/tiny"], ScanOptions(isolation=True))
    assert report.files and all(f.verdict is Verdict.INCONCLUSIVE for f in report.files)
    assert all(any(p.reason.startswith("worker ") for p in f.problems) for f in report.files)


def test_without_range_the_whole_body_is_streamed_once(mini):
    mini.honour_range = False
    report, repository = scan_one("hf://acme/big")
    assert report.verdict is Verdict.CLEAN
    assert BIG_TENSOR_BYTES < repository.fetched_bytes <= repository.total_bytes + 4096
    assert BIG_TENSOR_BYTES < mini.body_bytes <= repository.total_bytes + (1 << 20)
    assert "ignored HTTP Range" in repository.notes[0]


def test_private_repository_needs_the_token(mini, monkeypatch, capsys):
    report = scan_paths(["hf://acme/private"])
    assert "not found or private: set HF_TOKEN" in report.errors[0]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    report, repository = scan_one("hf://acme/private")
    assert report.verdict is Verdict.CLEAN and repository.fetched_bytes > 0
    main(["scan", "hf://acme/private", "--format", "json", "-v"])
    output = capsys.readouterr()
    assert TOKEN not in output.out + output.err
    assert json.loads(output.out)["repositories"][0]["id"] == "acme/private"


def test_redirects_are_followed_once_per_file_and_never_carry_the_token(mini, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    mini.redirect_to_cdn = True
    mini.redirects = mini.cdn_requests = mini.cdn_requests_with_token = 0
    report, repository = scan_one("hf://acme/private")
    assert report.verdict is Verdict.CLEAN
    assert mini.redirects == len(report.files)
    assert mini.cdn_requests >= mini.redirects
    assert mini.cdn_requests_with_token == 0
    report, repository = scan_one("hf://acme/big")
    assert report.verdict is Verdict.CLEAN
    assert mini.redirects < mini.cdn_requests
    assert repository.fetched_bytes < repository.total_bytes / 50


def test_gated_repository_without_access(mini):
    report = scan_paths(["hf://acme/gated"])
    assert "gated" in report.errors[0] and "HF_TOKEN" in report.errors[0]


def test_connection_cut_mid_read_is_inconclusive_not_clean(mini):
    mini.honour_range = False
    mini.cut_after = 1 << 20
    report, repository = scan_one("hf://acme/big")
    checkpoint = next(f for f in report.files if f.path.endswith("pytorch_model.bin"))
    assert checkpoint.verdict is Verdict.INCONCLUSIVE
    assert any("cannot read" in p.reason for p in checkpoint.problems)
    assert report.verdict is Verdict.INCONCLUSIVE


# -- the remote file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("honour_range", [True, False])
def test_remote_file_reads_like_a_local_file(mini, honour_range):
    mini.honour_range = honour_range
    repo = open_hub_repository("hf://acme/big")
    entry = next(f for f in repo.files if f.path == "pytorch_model.bin")
    local = (mini.repos[("model", "acme/big")].folder / entry.path).read_bytes()
    rng = random.Random(7)
    with entry.open() as remote:
        assert remote.seekable() and remote.readable()
        assert remote.seek(0, io.SEEK_END) == len(local)
        assert remote.read(10) == b""
        for _ in range(40):
            offset = rng.choice([rng.randrange(len(local)), rng.randrange(4096),
                                 len(local) - rng.randrange(1, 70000)])
            size = rng.choice([1, 22, 4096, 70000, 300000])
            remote.seek(offset)
            assert remote.read(size) == local[offset:offset + size]
            assert remote.tell() == min(offset + size, len(local))
    with pytest.raises(ValueError):
        remote.read(1)


def test_remote_read_failure_is_an_os_error(mini):
    mini.cut_after = 1000
    repo = open_hub_repository("hf://acme/big")
    entry = next(f for f in repo.files if f.path == "pytorch_model.bin")
    with entry.open() as remote:
        remote.seek(5 << 20)
        with pytest.raises(RemoteReadError) as caught:
            remote.read(100)
    assert isinstance(caught.value, OSError)
    assert "pytorch_model.bin" in str(caught.value)


def test_remote_file_on_a_refused_connection(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/acme/x/resolve/main/f.bin"
    with RemoteFile(url, 1000, connect_timeout=2, read_timeout=2) as remote:
        with pytest.raises(OSError, match="cannot connect"):
            remote.read(10)


# -- targets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target,expected", [
    ("hf://acme/tiny", HubRef("model", "acme/tiny")),
    ("hf://acme/tiny@v1.0", HubRef("model", "acme/tiny", "v1.0")),
    ("hf://models/acme/tiny@main/sub/f.bin", HubRef("model", "acme/tiny", "main", "sub/f.bin")),
    ("hf://datasets/acme/corpus@main", HubRef("dataset", "acme/corpus", "main")),
    ("hf://spaces/acme/demo", HubRef("space", "acme/demo")),
    ("hf://acme/tiny@refs/pr/3/x.py", HubRef("model", "acme/tiny", "refs/pr/3", "x.py")),
    ("hf://acme/tiny@refs%2Fpr%2F3", HubRef("model", "acme/tiny", "refs/pr/3")),
    ("hf://gpt2", HubRef("model", "gpt2")),
    ("https://huggingface.co/acme/tiny", HubRef("model", "acme/tiny")),
    ("https://huggingface.co/acme/tiny/tree/dev/onnx", HubRef("model", "acme/tiny", "dev", "onnx")),
    ("https://huggingface.co/acme/tiny/blob/main/model.bin?download=true",
     HubRef("model", "acme/tiny", "main", "model.bin")),
    ("https://huggingface.co/datasets/acme/corpus/tree/main",
     HubRef("dataset", "acme/corpus", "main")),
    ("https://huggingface.co/spaces/acme/demo", HubRef("space", "acme/demo")),
    ("https://huggingface.co/gpt2/resolve/main/config.json",
     HubRef("model", "gpt2", "main", "config.json")),
    ("http://127.0.0.1:9/acme/tiny/tree/main", HubRef("model", "acme/tiny", "main")),
])
def test_targets(target, expected):
    assert parse_target(target, "http://127.0.0.1:9") == expected


@pytest.mark.parametrize("target", [
    "hf://", "hf://a/b/c@main", "hf://acme/tiny@main/../x", "https://huggingface.co/acme/tiny/settings",
    "https://example.invalid/acme/tiny", "hf://acme/ti ny",
])
def test_bad_targets(target):
    with pytest.raises(HubError):
        parse_target(target, "http://127.0.0.1:9")


# -- code taken from another repository ------------------------------------------------------------
def test_remote_code_in_another_repository_is_fetched_and_scanned(mini, tmp_path):
    front = tmp_path / "front"
    front.mkdir()
    (front / "config.json").write_text(
        '{"model_type": "tiny", "auto_map": {"AutoModel": "acme/helpers--modeling_tiny.TinyModel"}}')
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "modeling_tiny.py").write_text(
        "import os\n\nclass TinyModel:\n    def __init__(self, config):\n        os.system('id')\n")
    mini.add("model", "acme/front", front)
    mini.add("model", "acme/helpers", helpers)

    report = scan_paths(["hf://acme/front"])
    front_result, helpers_result = report.repositories
    assert front_result.references == ("acme/helpers",)
    assert any(f.rule == "repo-cross-repo-code" for f in front_result.findings)
    assert helpers_result.id == "acme/helpers"
    assert str(helpers_result.verdict) == "malicious"
    assert report.verdict is Verdict.MALICIOUS

    local = scan_paths([str(front)])
    assert len(local.repositories) == 1  # a local folder does not reach the network by itself
    followed = scan_paths([str(front)], ScanOptions(follow_remote_code=True))
    assert [r.id for r in followed.repositories][1:] == ["acme/helpers"]
