"""The scanners under test, each run as a subprocess and its answer mapped to one verdict.

    python bench/peers.py install        # create bench/.cache/peers-venv with the pinned peers
    python bench/peers.py check          # show versions and a smoke run of each tool
    python bench/peers.py run TOOL PATH  # one measured run, printed as JSON

Tools:
  malhug      `python -m malhug scan PATH --format json` with the project's virtualenv
              (override the interpreter with MALHUG_PYTHON). Exit codes: 0 clean,
              1 findings, 2 inconclusive, 3 error; the verdict is read from the JSON report.
  picklescan  `picklescan -p PATH` (console script; note `python -m picklescan` always exits 0).
              Exit codes: 0 no dangerous global, 1 dangerous globals found, 2 scan error
              (2 wins over 1, so the summary line "Dangerous globals: N" is read as well).
  modelscan   `modelscan scan -p PATH -r json -o FILE`, run from an empty folder so that no
              stray modelscan-settings.toml is picked up. Exit codes: 0 clean, 1 issues,
              2 scan errors (wins over 1, so the JSON "issues" list is read as well),
              3 no supported file was scanned, 4 usage error.

Peers for Python sources (bench/run_scripts.py):
  guarddog    `guarddog pypi scan DIR --output-format json` (a local folder; a single file is
              copied into an empty folder first, as guarddog reports nothing for a bare file).
              Exit code 0 either way; any source-code rule with a match = malicious. The
              rules that matched and guarddog's own risk label are kept in `extra`.
  bandit      `bandit -f json -q -r PATH`. Exit 0 no issue, 1 issues; any issue of severity
              MEDIUM or HIGH = malicious, LOW only = clean; a file bandit could not parse
              (JSON "errors") = error. Every issue is kept in `extra`.

More model-file peers (bench/run_accuracy.py):
  fickling    `fickling --check-safety --json-output FILE PATH` (Trail of Bits). Exit codes:
              0 the pickle is LIKELY_SAFE, 1 a worse severity, 2 or a traceback: it could not
              read the file (fickling's command line takes one pickle stream, so PyTorch zips
              and other containers are errors). A file holding several pickles gets one JSON
              object per pickle; the worst severity is the answer: LIKELY_SAFE = clean, any
              other (POSSIBLY_UNSAFE, SUSPICIOUS, LIKELY_UNSAFE, LIKELY_OVERTLY_MALICIOUS,
              OVERTLY_MALICIOUS) = malicious.
  modelaudit  `modelaudit scan --format json --no-cache PATH` (promptfoo), with its own
              virtualenv (bench/.cache/modelaudit-venv: its dependencies conflict with
              guarddog's) and PROMPTFOO_DISABLE_TELEMETRY=1. Exit codes: 0 no issue,
              1 issues, 2 scan errors. Any issue of severity `warning` or `critical` =
              malicious (that is what makes it exit 1; `info` and `debug` issues do not);
              exit 0 = clean; exit 2 without such issue, or no JSON = error.

Every run gives one of these verdicts:
  malicious / suspicious  the tool flagged the file (`flagged` is true)
  clean                   the tool scanned and found nothing
  inconclusive            malhug could not fully read the input (never counted as clean)
  skipped                 the tool scanned nothing (modelscan exit 3: unsupported file)
  error / timeout         the tool failed or ran out of time
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
PEERS_VENV = CACHE / "peers-venv"
REQUIREMENTS = BENCH / "requirements-peers.txt"
MODELAUDIT_VENV = CACHE / "modelaudit-venv"
MODELAUDIT_REQUIREMENTS = BENCH / "requirements-modelaudit.txt"
MEASURE = BENCH / "_measure.py"

TOOLS = ("malhug", "picklescan", "modelscan")
MODEL_TOOLS = TOOLS + ("fickling", "modelaudit")
SCRIPT_TOOLS = ("malhug", "guarddog", "bandit")
ALL_TOOLS = MODEL_TOOLS + tuple(t for t in SCRIPT_TOOLS if t not in MODEL_TOOLS)
FLAGGED = ("malicious", "suspicious")
DEFAULT_TIMEOUT = 1800.0
MALHUG_ARGS: list[str] = []  # extra arguments for every malhug run (run_accuracy.py: --no-cache)


def malhug_python() -> str:
    return os.environ.get("MALHUG_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def peer_bin(name: str) -> Path:
    if name == "modelaudit":
        return MODELAUDIT_VENV / "bin" / name
    return PEERS_VENV / "bin" / name


# ---------------------------------------------------------------- installing the peers

def compile_malhug() -> None:
    """Write malhug's bytecode (.pyc) before timing it. pip compiles the peers' bytecode when it
    installs them; an editable install of malhug writes its own on first import, unless
    PYTHONDONTWRITEBYTECODE is set, when every run would compile every module from source."""
    subprocess.run([malhug_python(), "-m", "compileall", "-q", str(ROOT / "src" / "malhug")],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})


def install_peers(force: bool = False, modelaudit: bool = True) -> None:
    """Create the isolated peers virtualenvs and install the pinned peer scanners into them,
    and compile malhug's bytecode so that every tool starts from compiled modules."""
    compile_malhug()
    targets = [(PEERS_VENV, REQUIREMENTS)] + ([(MODELAUDIT_VENV, MODELAUDIT_REQUIREMENTS)] if modelaudit else [])
    for where, requirements in targets:
        if force or not (where / "bin" / "python").exists():
            print(f"creating {where}", file=sys.stderr)
            venv.EnvBuilder(with_pip=True, clear=True).create(where)
        python = str(where / "bin" / "python")
        if not force and _pins_satisfied(python, requirements):
            continue
        print(f"installing peers from {requirements.name}", file=sys.stderr)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(requirements)], check=True)


def _pinned(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.split("[", 1)[0].strip().lower()] = version.strip()
    return pins


def _pins_satisfied(python: str, requirements: Path = REQUIREMENTS) -> bool:
    done = subprocess.run([python, "-m", "pip", "freeze", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return False
    have = {}
    for line in done.stdout.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            have[name.strip().lower()] = version.strip()
    return all(have.get(name) == version for name, version in _pinned(requirements).items())


def tool_versions(tools=TOOLS) -> dict[str, str]:
    versions = {}
    peer_python = str(PEERS_VENV / "bin" / "python")
    probes = {
        "malhug": [malhug_python(), "-m", "malhug", "--version"],
        "picklescan": [peer_python, "-c", "import importlib.metadata as m; print(m.version('picklescan'))"],
        "modelscan": [str(peer_bin("modelscan")), "--version"],
        # guarddog --version tries to refresh its package lists from the network first
        "guarddog": [peer_python, "-c", "import importlib.metadata as m; print(m.version('guarddog'))"],
        "bandit": [peer_python, "-c", "import importlib.metadata as m; print(m.version('bandit'))"],
        "fickling": [peer_python, "-c", "import importlib.metadata as m; print(m.version('fickling'))"],
        "modelaudit": [str(MODELAUDIT_VENV / "bin" / "python"), "-c",
                       "import importlib.metadata as m; print(m.version('modelaudit'))"],
    }
    for tool in tools:
        command = probes[tool]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            text = (done.stdout or done.stderr).strip().splitlines()
            versions[tool] = text[-1] if text else f"exit {done.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            versions[tool] = f"unavailable ({exc})"
    return versions


# ---------------------------------------------------------------- running a tool

@dataclass
class Run:
    tool: str
    path: str
    verdict: str
    exit_code: int | None
    seconds: float
    peak_mb: float
    read_mb: float | None
    detail: str = ""
    per_file: dict = field(default_factory=dict)  # folder runs: file (relative) -> verdict
    extra: dict = field(default_factory=dict)  # tool-specific facts kept for other mappings

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGGED

    def to_dict(self) -> dict:
        data = asdict(self)
        data["flagged"] = self.flagged
        data["seconds"] = round(self.seconds, 3)
        data["peak_mb"] = round(self.peak_mb, 1)
        data["read_mb"] = None if self.read_mb is None else round(self.read_mb, 1)
        return data


def command_for(tool: str, path: str, workdir: Path) -> list[str]:
    if tool == "malhug":
        return [malhug_python(), "-m", "malhug", "scan", path, "--format", "json", *MALHUG_ARGS]
    if tool == "picklescan":
        return [str(peer_bin("picklescan")), "-p", path]
    if tool == "modelscan":
        return [str(peer_bin("modelscan")), "scan", "-p", path, "-r", "json",
                "-o", str(workdir / "modelscan-report.json")]
    if tool == "guarddog":
        return [str(peer_bin("guarddog")), "pypi", "scan", _guarddog_target(path, workdir),
                "--output-format", "json"]
    if tool == "bandit":
        return [str(peer_bin("bandit")), "-f", "json", "-q", "-r", path]
    if tool == "fickling":
        return [str(peer_bin("fickling")), "--check-safety", "--json-output",
                str(workdir / "fickling-report.json"), path]
    if tool == "modelaudit":
        # telemetry off (it would otherwise wait on the network), settings and cache in the
        # scratch folder
        return ["env", "PROMPTFOO_DISABLE_TELEMETRY=1", f"HOME={workdir}",
                str(peer_bin("modelaudit")), "scan", "--format", "json", "--no-cache", path]
    raise ValueError(f"unknown tool {tool!r}")


def _guarddog_target(path: str, workdir: Path) -> str:
    """guarddog scans folders and archives; a lone source file is copied into an empty folder."""
    if not Path(path).is_file():
        return path
    folder = workdir / "guarddog-target"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(path, folder / Path(path).name)
    return str(folder)


def run_tool(tool: str, path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT,
             keep_output: Path | None = None) -> Run:
    """Run one tool on one file or folder in a fresh measured process; map its answer."""
    path = str(Path(path).resolve())
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-", dir=_tmp_root()) as tmp:
        workdir = Path(tmp)
        out, err, measured = workdir / "stdout", workdir / "stderr", workdir / "measure.json"
        wrapper = [sys.executable, str(MEASURE), "--out", str(measured), "--stdout", str(out),
                   "--stderr", str(err), "--timeout", str(timeout), "--cwd", str(workdir), "--"]
        subprocess.run(wrapper + command_for(tool, path, workdir), check=True)
        m = json.loads(measured.read_text())
        stdout = out.read_text(errors="replace")
        stderr = err.read_text(errors="replace")
        report = ""
        for name in ("modelscan-report.json", "fickling-report.json"):
            report_file = workdir / name
            if report_file.exists():
                report = report_file.read_text(errors="replace")
        if keep_output is not None:
            keep_output.mkdir(parents=True, exist_ok=True)
            (keep_output / f"{tool}.stdout").write_text(stdout)
            (keep_output / f"{tool}.stderr").write_text(stderr)
    run = Run(tool, path, "error", m["exit_code"], m["seconds"], m["peak_rss_kib"] / 1024,
              None if m["read_bytes"] is None else m["read_bytes"] / 1e6)
    if m["timed_out"]:
        run.verdict, run.detail = "timeout", f"killed after {timeout:g}s"
        return run
    interpret = {"malhug": _interpret_malhug, "picklescan": _interpret_picklescan,
                 "modelscan": _interpret_modelscan, "guarddog": _interpret_guarddog,
                 "bandit": _interpret_bandit, "fickling": _interpret_fickling,
                 "modelaudit": _interpret_modelaudit}[tool]
    interpret(run, stdout, stderr, report)
    return run


def _tmp_root() -> str:
    root = CACHE / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def _relative(source: str, base: str) -> str:
    """The scanned file a tool's message is about, relative to the scanned folder. Members
    are named `file:member` by both peers, so the longest existing prefix is the file."""
    parts = source.split(":")
    for end in range(len(parts), 0, -1):
        candidate = Path(base, ":".join(parts[:end]))  # absolute sources replace base
        if candidate.exists():
            source = str(candidate)
            break
    try:
        return str(Path(source).resolve().relative_to(base))
    except ValueError:
        return source


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])[:300]


def _interpret_malhug(run: Run, stdout: str, stderr: str, report: str) -> None:
    try:
        data = json.loads(stdout)
    except ValueError:
        run.verdict, run.detail = "error", f"exit {run.exit_code}: {_tail(stderr)}"
        return
    files = data.get("files", [])
    base = run.path if Path(run.path).is_dir() else str(Path(run.path).parent)
    run.per_file = {_relative(f["path"], base): f["verdict"] for f in files}
    run.verdict = data.get("summary", {}).get("verdict", "error")
    if run.exit_code == 3:
        run.verdict = "error"
    notes = []
    for f in files:
        for finding in f.get("findings", [])[:2]:
            notes.append(f"{finding.get('rule')}: {finding.get('evidence', '')[:80]}")
        for problem in f.get("problems", [])[:2]:
            notes.append(f"problem: {problem.get('reason', '')[:120]}")
        if len(notes) >= 3:
            break
    run.detail = "; ".join(notes[:3])


_PS_COUNT = re.compile(r"^(Scanned files|Infected files|Dangerous globals|Suspicious globals): (\d+)", re.M)
_PS_FOUND = re.compile(r"^(.*): dangerous import '(.*)' FOUND", re.M)
_PS_ERROR = re.compile(r"^ERROR: parsing pickle in (.*?): ", re.M)


def _interpret_picklescan(run: Run, stdout: str, stderr: str, report: str) -> None:
    counts = {name: int(value) for name, value in _PS_COUNT.findall(stdout)}
    dangerous = counts.get("Dangerous globals", 0)
    found = _PS_FOUND.findall(stdout)
    base = run.path if Path(run.path).is_dir() else str(Path(run.path).parent)
    for source, _ in found:
        run.per_file[_relative(source, base)] = "malicious"
    for source in _PS_ERROR.findall(stdout):
        run.per_file.setdefault(_relative(source, base), "error")
    if dangerous or found or run.exit_code == 1:
        run.verdict = "malicious"
        run.detail = "; ".join(sorted({g for _, g in found}))[:200]
        if run.exit_code == 2:
            run.detail = "scan error too; " + run.detail
    elif run.exit_code == 0 and "Scanned files" in counts:
        run.verdict = "clean"
        notes = []
        if counts.get("Suspicious globals"):
            notes.append(f"{counts['Suspicious globals']} suspicious (unlisted) globals, not flagged")
        if "could not parse" in stdout:
            notes.append("could not parse as pickle; reported clean")
        run.detail = "; ".join(notes)
    else:
        run.verdict = "error"
        run.detail = f"exit {run.exit_code}: {_tail(stdout + stderr)}"


def _interpret_modelscan(run: Run, stdout: str, stderr: str, report: str) -> None:
    try:
        data = json.loads(report)
    except ValueError:
        data = None
    if data is None:
        run.verdict = "skipped" if run.exit_code == 3 else "error"
        run.detail = f"exit {run.exit_code}: {_tail(stdout + stderr)}"
        return
    issues = data.get("issues", [])
    errors = data.get("errors", [])
    base = run.path if Path(run.path).is_dir() else str(Path(run.path).parent)
    for issue in issues:
        run.per_file[_relative(str(issue.get("source", "")), base)] = "malicious"
    for error in errors:
        if error.get("source"):
            run.per_file.setdefault(_relative(str(error["source"]), base), "error")
    if issues:
        run.verdict = "malicious"
        operators = sorted({f"{i.get('module')}.{i.get('operator')}" for i in issues})
        run.detail = "; ".join(operators)[:200]
        if errors:
            run.detail = "scan errors too; " + run.detail
    elif run.exit_code == 0:
        run.verdict = "clean"
    elif run.exit_code == 3 and not errors:
        run.verdict, run.detail = "skipped", "no supported file scanned"
    else:
        run.verdict = "error"
        first = errors[0] if errors else {}
        run.detail = f"exit {run.exit_code}: {str(first.get('description', first))[:200]}"


def _json_object(text: str):
    """The JSON object in a tool's stdout (guarddog may print log lines around it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(text[start:end + 1])
    except ValueError:
        return None


def _interpret_guarddog(run: Run, stdout: str, stderr: str, report: str) -> None:
    data = _json_object(stdout)
    if not isinstance(data, dict) or "results" not in data:
        run.verdict, run.detail = "error", f"exit {run.exit_code}: {_tail(stdout + stderr)}"
        return
    base = run.path if Path(run.path).is_dir() else str(Path(run.path).parent)
    hits = {}
    for rule, result in (data.get("results") or {}).items():
        if isinstance(result, list):
            matches = [m for m in result if m]
        else:
            matches = [result] if result else []
        if not matches:
            continue
        hits[rule] = len(matches)
        for match in matches:
            location = str(match.get("location", "")) if isinstance(match, dict) else ""
            source = location.rsplit(":", 1)[0] if location else ""
            if source:
                name = Path(source).name if Path(run.path).is_file() else source
                run.per_file[_relative(name, base)] = "malicious"
    risk = data.get("risk_score") or {}
    run.extra = {"rules": sorted(hits), "risk_label": risk.get("label"), "risk_score": risk.get("score"),
                 "errors": data.get("errors") or {}}
    if hits:
        run.verdict = "malicious"
        run.detail = "; ".join(f"{rule} x{n}" for rule, n in sorted(hits.items()))[:300]
    elif data.get("errors"):
        run.verdict = "error"
        run.detail = str(data["errors"])[:300]
    else:
        run.verdict = "clean"


BANDIT_FLAGGED = ("MEDIUM", "HIGH")


def _interpret_bandit(run: Run, stdout: str, stderr: str, report: str) -> None:
    data = _json_object(stdout)
    if not isinstance(data, dict) or "results" not in data or run.exit_code not in (0, 1):
        run.verdict, run.detail = "error", f"exit {run.exit_code}: {_tail(stdout + stderr)}"
        return
    base = run.path if Path(run.path).is_dir() else str(Path(run.path).parent)
    issues = []
    for result in data["results"]:
        issue = {"file": _relative(str(result.get("filename", "")), base), "test": result.get("test_id"),
                 "name": result.get("test_name"), "severity": result.get("issue_severity"),
                 "confidence": result.get("issue_confidence"), "line": result.get("line_number")}
        issues.append(issue)
        if issue["severity"] in BANDIT_FLAGGED:
            run.per_file[issue["file"]] = "malicious"
        else:
            run.per_file.setdefault(issue["file"], "clean")
    errors = [f"{_relative(str(e.get('filename', '')), base)}: {e.get('reason', '')}" for e in data.get("errors", [])]
    for error in errors:
        run.per_file.setdefault(error.split(": ", 1)[0], "error")
    run.extra = {"issues": issues, "errors": errors}
    flagged = [i for i in issues if i["severity"] in BANDIT_FLAGGED]
    if flagged:
        run.verdict = "malicious"
    elif errors:
        run.verdict = "error"
    else:
        run.verdict = "clean"
    shown = flagged or issues
    run.detail = "; ".join(f"{i['test']} {i['severity']}/{i['confidence']}" for i in shown[:6])
    if errors:
        run.detail = ("errors: " + "; ".join(errors) + "; " + run.detail)[:300]


FICKLING_SEVERITIES = ("LIKELY_SAFE", "POSSIBLY_UNSAFE", "SUSPICIOUS", "LIKELY_UNSAFE",
                       "LIKELY_OVERTLY_MALICIOUS", "OVERTLY_MALICIOUS")


def _json_objects(text: str) -> list:
    """Every JSON value written back to back in text (fickling appends one per pickle)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return values
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            return values
        values.append(value)


def _interpret_fickling(run: Run, stdout: str, stderr: str, report: str) -> None:
    results = [r for r in _json_objects(report) if isinstance(r, dict) and "severity" in r]
    severities = [r["severity"] for r in results]
    worst = max(severities, key=lambda s: FICKLING_SEVERITIES.index(s) if s in FICKLING_SEVERITIES else 0,
                default=None)
    run.extra = {"severities": severities}
    if worst is None or run.exit_code not in (0, 1):
        run.verdict, run.detail = "error", f"exit {run.exit_code}: {_tail(stdout + stderr)}"
        return
    if worst == "LIKELY_SAFE" and run.exit_code == 0:
        run.verdict = "clean"
        return
    run.verdict = "malicious"
    analysis = next((r.get("analysis", "") for r in results if r["severity"] == worst), "")
    run.detail = f"{worst}: {analysis.splitlines()[0] if analysis else ''}"[:300]


MODELAUDIT_FLAGGED = ("warning", "critical")


def _interpret_modelaudit(run: Run, stdout: str, stderr: str, report: str) -> None:
    data = _json_object(stdout)
    if not isinstance(data, dict) or "issues" not in data:
        run.verdict, run.detail = "error", f"exit {run.exit_code}: {_tail(stdout + stderr)}"
        return
    issues = [i for i in data.get("issues") or [] if isinstance(i, dict)]
    flagged = [i for i in issues if str(i.get("severity", "")).lower() in MODELAUDIT_FLAGGED]
    run.extra = {"issues": [{"severity": i.get("severity"), "rule": i.get("rule_code"),
                             "message": str(i.get("message", ""))[:200]} for i in issues[:20]],
                 "has_errors": data.get("has_errors")}
    if flagged or run.exit_code == 1:
        run.verdict = "malicious"
        shown = flagged or issues
        run.detail = "; ".join(f"{i.get('severity')} {i.get('rule_code')}: {str(i.get('message', ''))[:90]}"
                               for i in shown[:3])[:300]
    elif run.exit_code == 0:
        run.verdict = "clean"
    else:
        run.verdict = "error"
        errors = [str(i.get("message", "")) for i in issues] or [_tail(stdout + stderr)]
        run.detail = f"exit {run.exit_code}: {errors[0][:200]}"


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("install", "check", "run"):
        print(__doc__)
        return 2
    if argv[0] == "install":
        install_peers(force="--force" in argv)
        print(json.dumps(tool_versions(ALL_TOOLS), indent=2))
        return 0
    if argv[0] == "check":
        install_peers()
        print(json.dumps(tool_versions(ALL_TOOLS), indent=2))
        return 0
    tool, path = argv[1], argv[2]
    print(json.dumps(run_tool(tool, path).to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
