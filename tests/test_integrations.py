"""Integrations: the pre-commit hook (run for real), the GitHub Action, the Dockerfile, and the
documentation site (built strictly; every rule id the code can report is documented)."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
GIT_ENV = {
    "GIT_AUTHOR_NAME": "fixture", "GIT_AUTHOR_EMAIL": "fixture@example.invalid",
    "GIT_COMMITTER_NAME": "fixture", "GIT_COMMITTER_EMAIL": "fixture@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
}
# bytes only: a protocol-2 pickle of {} and one that would call os.system('id') when loaded
BENIGN_PICKLE = b"\x80\x02}q\x00."
MALICIOUS_PICKLE = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


def _tool(module: str):
    """A tool the test extra installs: required in CI, skipped elsewhere when missing."""
    try:
        __import__(module)
    except ImportError:
        if IN_CI:
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


# -- pre-commit ---------------------------------------------------------------------------------

def _hooks() -> list:
    return yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())


def test_hook_manifest():
    (hook,) = _hooks()
    assert hook["id"] == "malhug" and hook["entry"] == "malhug scan"
    assert hook["language"] == "python" and hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    for name in ("m.pkl", "a/b/model.PT", "w.pth", "pytorch_model.bin", "x.ckpt", "j.joblib", "a.npy",
                 "a.npz", "m.h5", "m.hdf5", "m.keras", "saved_model.pb", "m.onnx", "m.gguf",
                 "m.safetensors", "a.zip", "a.tar", "a.tar.gz", "a.7z", "loader.py", "n.ipynb"):
        assert files.search(name), name
    for name in ("README.md", "config.json", "image.png", "pkl.txt"):
        assert not files.search(name), name


def _checkout_copy(folder: Path) -> str:
    """The working tree as a git repository of its own (pre-commit installs hooks from a
    commit; the tree being tested may have uncommitted changes). Returns the commit."""
    for name in ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, folder / name)
    shutil.copytree(ROOT / "src", folder / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    _git(folder, "init", "-q")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "malhug under test")
    return _git(folder, "rev-parse", "HEAD").strip()


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **GIT_ENV),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pre_commit_hook_for_real(tmp_path):
    """pre-commit builds the hook's environment from the checkout (dependencies from the
    package index, never torch) and fails the commit of a malicious pickle."""
    _tool("pre_commit")
    hooks_repo = tmp_path / "malhug-src"
    hooks_repo.mkdir()
    rev = _checkout_copy(hooks_repo)
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks_repo.as_posix()}\n    rev: {rev}\n    hooks:\n      - id: malhug\n")
    (project / "weights.pkl").write_bytes(BENIGN_PICKLE)
    _git(project, "add", ".pre-commit-config.yaml", "weights.pkl")
    env = dict(os.environ, **GIT_ENV, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
               MALHUG_CACHE_DIR=str(tmp_path / "verdicts"), PRE_COMMIT_COLOR="never")
    env.pop("VIRTUAL_ENV", None)

    def run_hook():
        return subprocess.run([sys.executable, "-m", "pre_commit", "run", "malhug"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=900)

    benign = run_hook()
    assert benign.returncode == 0, benign.stdout + benign.stderr
    assert "Passed" in benign.stdout

    (project / "evil.pkl").write_bytes(MALICIOUS_PICKLE)
    _git(project, "add", "evil.pkl")
    malicious = run_hook()
    assert malicious.returncode == 1, malicious.stdout + malicious.stderr
    assert "Failed" in malicious.stdout and "MALICIOUS" in malicious.stdout
    assert "evil.pkl" in malicious.stdout

    # the hook's environment has malhug and its dependencies, and no torch
    (env_python,) = [p for p in (tmp_path / "pre-commit-home").glob("repo*/py_env-*/bin/python")]
    probe = subprocess.run([str(env_python), "-c",
                            "import importlib.util as u; print(bool(u.find_spec('malhug')), "
                            "bool(u.find_spec('torch')))"], capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["True", "False"], probe.stdout + probe.stderr


# -- GitHub Action -------------------------------------------------------------------------------

def test_action_is_a_composite_action_with_sarif_upload():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"target", "fail-on", "sarif", "args"}
    assert not any("token" in name.lower() for name in action["inputs"])  # tokens come from env
    steps = action["runs"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    upload = next(step for step in steps if step.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert "inputs.sarif != ''" in upload["if"] and "always()" in upload["if"]
    install = next(step for step in steps if "pip install" in step.get("run", ""))
    assert "GITHUB_ACTION_PATH" in install["run"]  # malhug from the action's own folder
    scan = next(step for step in steps if step.get("id") == "scan")
    assert "malhug" in scan["run"] and "--format sarif" in scan["run"]
    for step in steps:  # inputs reach scripts through env only (no script injection)
        assert "${{" not in step.get("run", ""), step
    # the gate fails after the upload, with malhug's exit code
    assert "exit" in steps[-1]["run"] and steps.index(upload) < len(steps) - 1


def test_action_scan_script_runs_the_cli_it_describes(tmp_path):
    """The scan step's bash, run with a stand-in `malhug` that records its arguments."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    scan = next(step for step in action["runs"]["steps"] if step.get("id") == "scan")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "malhug"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$ARGS_FILE"\nexit 1\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               ARGS_FILE=str(tmp_path / "args"), GITHUB_OUTPUT=str(tmp_path / "output"),
               MALHUG_TARGET="hf://org/name", MALHUG_FAIL_ON="high", MALHUG_SARIF="out.sarif",
               MALHUG_ARGS="--config ci/malhug.toml *.pkl")
    done = subprocess.run(["bash", "-e", "-c", scan["run"]], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["scan", "hf://org/name", "--fail-on", "high", "--no-progress", "--format", "text",
                    "--format", "sarif", "-o", "out.sarif", "--config", "ci/malhug.toml", "*.pkl"]
    assert (tmp_path / "output").read_text().strip() == "exit-code=1"


def test_the_action_flags_exist_in_the_cli():
    from malhug.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["scan", "x", "--fail-on", "high", "--format", "text", "--format", "sarif",
                              "-o", "out.sarif"] + (["--no-progress"] if "--no-progress" in
                                                     _scan_options(parser) else []))
    assert args.command == "scan"
    assert "--no-progress" in _scan_options(parser)


def _scan_options(parser) -> set:
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {option for action in sub.choices["scan"]._actions for option in action.option_strings}


# -- Dockerfile (no container engine here: checked as text, never built by the tests) -----------

DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                       "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                       "SHELL", "MAINTAINER"}


def _dockerfile() -> list[tuple[str, str]]:
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        pending += " " + stripped
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword, rest.strip()))
        pending = ""
    assert not pending, "a continuation line runs past the end of the Dockerfile"
    return instructions


def test_dockerfile_instructions():
    instructions = _dockerfile()
    for keyword, _ in instructions:
        assert keyword.upper() == keyword and keyword in DOCKER_INSTRUCTIONS, keyword
    assert instructions[0][0] == "FROM" and re.fullmatch(r"python:3\.\d+-slim", instructions[0][1])
    entrypoint = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["malhug"]]
    assert any(keyword == "RUN" and "pip install ." in rest for keyword, rest in instructions)
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for needed in ("pyproject.toml", "README.md", "LICENSE", "src"):
        assert needed in copied  # what `pip install .` needs (README and LICENSE are in pyproject)
        assert (ROOT / needed).exists()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


# -- documentation -------------------------------------------------------------------------------

def test_mkdocs_build_strict(tmp_path):
    _tool("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "rules" / "index.html").is_file()


def test_every_page_is_in_the_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    listed = set(pages(config["nav"]))
    docs = ROOT / "docs"
    assert listed == {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}


def rule_ids_in_code() -> tuple[set, set]:
    """Every rule id the code can report: literal ids given to Finding (and to the repository
    layout's _finding), the template rule names, ids built from a prefix and a category (the
    code engine's `<kind>-<behaviour>`, TensorFlow's `tf-<category>`, `tflite-flex-<category>`),
    and `pattern-<id>` for every YARA-X rule. Returns (ids, prefixes of computed ids)."""
    ids, prefixes = set(), set()
    for path in (ROOT / "src" / "malhug").rglob("*.py"):
        if "policy" in path.parts or "report" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            index = {"Finding": 0, "_finding": 1}.get(name)
            if index is None or len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                ids.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                prefixes.add(arg.values[0].value)
    families = {rule.split("-")[0] for rule in ids}
    shape = re.compile(r"(%s)-[a-z0-9]+(-[a-z0-9]+)*" % "|".join(sorted(families)))
    # rule names kept in tables (templates: ("include", "template-include") ...)
    for path in (ROOT / "src" / "malhug" / "formats").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and shape.fullmatch(node.value):
                ids.add(node.value)

    from malhug.code.behaviours import COMPOSITE
    from malhug.code.patterns import rule_ids
    from malhug.rules import CATEGORIES

    behaviours = {c.replace("_", "-") for c in set(CATEGORIES) | set(COMPOSITE)}
    ids |= {f"pattern-{rule}" for rule in rule_ids()}
    prefixes.discard("pattern-")
    try:
        from malhug.formats.tensorflow import HOST_OPS
    except ImportError:
        HOST_OPS = {}
    op_categories = {rule.category.replace("_", "-") for rule in HOST_OPS.values()}
    # in graphs, reads of remote file systems and debug servers are reported as network
    for prefix, extra in (("tf-", {"network"}), ("tflite-flex-", set())):
        if prefix in prefixes:
            ids |= {prefix + category for category in op_categories | extra}
            prefixes.discard(prefix)
    return ids, prefixes | {f"<kind>-{b}" for b in behaviours}


def test_every_rule_id_is_documented():
    text = (ROOT / "docs" / "rules.md").read_text()
    ids, computed = rule_ids_in_code()
    assert len(ids) > 40
    missing = sorted(rule for rule in ids if f"`{rule}`" not in text)
    assert not missing, f"rule ids used in the code but not in docs/rules.md: {missing}"
    # ids the engine builds from the unit kind and a behaviour: each behaviour is listed
    for item in computed:
        if item.startswith("<kind>-"):
            assert f"`{item[len('<kind>-'):]}`" in text or f"-{item[len('<kind>-'):]}`" in text, item
        else:
            assert f"`{item}" in text, item


def test_json_report_page_documents_suppressed():
    text = (ROOT / "docs" / "json-report.md").read_text()
    assert '"suppressed"' in text and "reason" in text
