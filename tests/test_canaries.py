"""Nothing scanned ever runs: payloads that would leave a marker file, connect to a listener,
print a token or import a planted package, scanned in workers and in-process, leave no trace."""
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import zipfile

import pytest

import isolation_hooks
from malhug import isolation
from malhug.scanner import ScanOptions, scan_paths

TOKEN = "MALHUG-CANARY-7f3a9c"
PACKAGE = "malhug_canary_pkg"
ABSENT = "malhug_canary_absent_module"
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _global_call(module, name, arg):
    """GLOBAL module name, one string argument, REDUCE: written opcode by opcode."""
    text = pickle.dumps((arg,), protocol=2)[2:-1]  # the argument tuple, without PROTO and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + text + b"R."


@pytest.fixture
def canaries(tmp_path):
    root = tmp_path
    marker = root / "marker"
    packages = root / "packages" / PACKAGE
    packages.mkdir(parents=True)
    (packages / "__init__.py").write_text(f"open({str(root / 'imported')!r}, 'w').write('imported')\n")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    corpus = root / "corpus"
    corpus.mkdir()
    touch = f"touch {marker}"
    (corpus / "system.pkl").write_bytes(pickle.dumps(_Call(os.system, touch)))
    (corpus / "connect.pkl").write_bytes(pickle.dumps(_Call(socket.create_connection, ("127.0.0.1", port))))
    (corpus / "print.pkl").write_bytes(pickle.dumps(_Call(print, TOKEN)))
    (corpus / "exec.pkl").write_bytes(_global_call("builtins", "exec", f"print({TOKEN!r})"))
    (corpus / "planted.pkl").write_bytes(_global_call(PACKAGE, "run", "id"))
    (corpus / "absent.pkl").write_bytes(_global_call(ABSENT, "run", "id"))
    (corpus / "importlib.pkl").write_bytes(_global_call("importlib", "import_module", PACKAGE))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps(_Call(os.system, touch)))
        archive.writestr("model/version", "3\n")
    (corpus / "model.pt").write_bytes(buffer.getvalue())
    (corpus / "dataset.py").write_text(
        f"import {PACKAGE}\nimport socket\n"
        f"open({str(marker)!r}, 'w').write('ran')\n"
        f"socket.create_connection(('127.0.0.1', {port}))\n"
        f"print({TOKEN!r})\n")
    template = ("{{ cycler.__init__.__globals__.os.popen('" + touch + "').read() }}"
                "{{ lipsum.__globals__['__builtins__']['print']('" + TOKEN + "') }}")
    (corpus / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    try:
        import numpy

        array = numpy.array([_Call(os.system, touch)], dtype=object)
        numpy.save(corpus / "objects.npy", array, allow_pickle=True)
    except ImportError:
        pass
    yield {"root": root, "corpus": corpus, "marker": marker, "imported": root / "imported",
           "listener": listener, "packages": str(root / "packages")}
    listener.close()


def _assert_untouched(canaries):
    assert not canaries["marker"].exists()
    assert not canaries["imported"].exists()
    import select

    readable, _, _ = select.select([canaries["listener"]], [], [], 1.0)
    assert not readable, "a scanned payload connected to the listener"


def _assert_seen(report):
    verdicts = {os.path.basename(f.path): str(f.verdict) for f in report.files}
    for name in ("system.pkl", "connect.pkl", "exec.pkl", "model.pt"):
        assert verdicts[name] == "malicious", (name, verdicts)


def test_in_process_scan_runs_and_imports_nothing(canaries, monkeypatch):
    monkeypatch.syspath_prepend(canaries["packages"])
    scan_paths([canaries["corpus"] / "print.pkl"], ScanOptions(isolation=False))  # readers loaded
    before = set(sys.modules)
    report = scan_paths([canaries["corpus"]], ScanOptions(isolation=False, memo=None))
    added = set(sys.modules) - before
    assert not {PACKAGE, ABSENT} & added
    assert not {name for name in added if name.startswith("malhug_canary")}
    _assert_seen(report)
    _assert_untouched(canaries)


@pytest.mark.skipif(not isolation.available(), reason="isolation needs POSIX")
@pytest.mark.parametrize("start", ["exec", "fork"])
def test_workers_run_and_import_nothing(canaries, monkeypatch, tmp_path, start):
    reports = tmp_path / "modules"
    reports.mkdir()
    monkeypatch.setenv(isolation_hooks.MODULES_REPORT, str(reports))
    monkeypatch.syspath_prepend(canaries["packages"])  # the workers get the same sys.path
    monkeypatch.setattr(isolation, "worker_task", isolation_hooks.modules_task)
    if start == "fork":  # forked even beside a fixture's server thread, which workers never touch
        monkeypatch.setattr(isolation, "_can_fork", lambda: True)
    report = scan_paths([canaries["corpus"]], ScanOptions(memo=None, workers=2, isolation=True,
                                                                worker_start=start))
    _assert_seen(report)
    _assert_untouched(canaries)
    records = [json.loads(path.read_text()) for path in reports.iterdir()]
    assert len(records) == len(report.files)
    for record in records:
        named = [m for m in record["added"] if m.startswith("malhug_canary") or m in (PACKAGE, ABSENT)]
        assert not named, record


@pytest.mark.parametrize("mode", [[], ["--no-isolation"], ["--workers", "2"]])
def test_command_line_prints_nothing_of_the_payloads(canaries, mode, tmp_path):
    out = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([canaries["packages"], SRC]))
    done = subprocess.run(
        [sys.executable, "-m", "malhug", "scan", str(canaries["corpus"]), "--no-cache", "--format",
         "json", "-o", str(out), *mode], capture_output=True, text=True, env=env, timeout=300,
        cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert TOKEN not in done.stderr
    report = json.loads(out.read_text())
    assert report["summary"]["verdict"] == "malicious"
    _assert_untouched(canaries)
