"""Policy: configuration discovery and validation, suppressions, baselines, rule selection,
verdicts judged again, and include/exclude/max-file-size through the scanner options."""
from __future__ import annotations

import datetime
import json
import os
import textwrap

import pytest

import opcodes as op

from malhug.cli import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCONCLUSIVE, FAIL_ON, exit_code
from malhug.findings import Finding, Location, Report, Severity, Verdict
from malhug.policy import (
    Config, ConfigError, apply, load_baseline, load_config, parse_size, path_matches, visible,
    write_baseline,
)
from malhug.policy import FAIL_ON as POLICY_FAIL_ON
from malhug.scanner import ScanOptions, scan_paths

TODAY = datetime.date(2025, 6, 1)
CRITICAL = op.call("os", "system", "id")  # pickle-dangerous-callable, critical
MEDIUM = op.call("mymodule", "helper")  # pickle-unknown-global, medium
CLEAN = op.proto(2) + op.empty_dict() + op.stop()


def _write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git project with a malicious, a suspicious and a clean pickle; scans run from its root."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "models" / "evil.pkl").write_bytes(CRITICAL)
    (root / "models" / "odd.pkl").write_bytes(MEDIUM)
    (root / "data").mkdir()
    (root / "data" / "ok.pkl").write_bytes(CLEAN)
    monkeypatch.chdir(root)
    return root


def _scan(config: Config, *targets):
    return scan_paths(list(targets) or ["."], config.scan_options(ScanOptions(memo=None)))


def _file(report, name):
    return next(f for f in report.files if f.path.endswith(name))


# -- discovery ------------------------------------------------------------------------------

def test_no_config_gives_defaults(project):
    config = load_config(None, str(project))
    assert config == Config(root=str(project))
    assert config.fail_on == "suspicious" and config.path is None


def test_malhug_toml_found_in_parent_folders(project):
    _write(project, "malhug.toml", 'fail_on = "high"\nexclude = ["data"]\n')
    config = load_config(None, str(project / "models"))
    assert config.fail_on == "high" and config.exclude == ("data",)
    assert config.path == str(project / "malhug.toml") and config.root == str(project)


def test_pyproject_tool_table(project):
    _write(project, "pyproject.toml", """
        [project]
        name = "x"
        [tool.malhug]
        min_severity = "medium"
        max_file_size = "10MB"
        timeout = 30
    """)
    config = load_config(None, str(project))
    assert config.min_severity is Severity.MEDIUM
    assert config.max_file_size == 10 * 1024 * 1024 and config.timeout == 30.0


def test_pyproject_without_table_is_skipped_and_malhug_toml_wins(project):
    _write(project, "pyproject.toml", '[project]\nname = "x"\n')
    assert load_config(None, str(project)).path is None
    _write(project, "pyproject.toml", '[tool.malhug]\nfail_on = "low"\n')
    _write(project, "malhug.toml", 'fail_on = "critical"\n')
    assert load_config(None, str(project)).fail_on == "critical"


def test_search_stops_at_the_git_root(tmp_path):
    _write(tmp_path, "malhug.toml", 'fail_on = "critical"\n')
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert load_config(None, str(tmp_path / "repo")).path is None


def test_explicit_path(tmp_path, project):
    explicit = _write(tmp_path, "elsewhere.toml", 'rules = ["pickle-*"]\nbaseline = "b.json"\n')
    config = load_config(str(explicit), str(project))
    assert config.rules == ("pickle-*",)
    assert config.baseline == str(tmp_path / "b.json")  # relative to the config's folder
    pyproject = _write(tmp_path, "sub/pyproject.toml", '[tool.malhug]\nexclude_rules = ["pattern-*"]\n')
    assert load_config(str(pyproject), str(project)).exclude_rules == ("pattern-*",)


@pytest.mark.parametrize("text, message", [
    ("fail_on = ", "not valid TOML"),
    ('fail_on = "sometimes"', "fail_on"),
    ('min_severity = "huge"', "min_severity"),
    ('unknown_key = 1', "unknown key"),
    ('rules = "pickle-*"', "list of strings"),
    ('exclude = [""]', "non-empty"),
    ('max_file_size = "lots"', "max_file_size"),
    ('max_file_size = -1', "negative"),
    ("timeout = 0", "timeout"),
    ("timeout = true", "timeout"),
    ('suppressions = "all"', "list of tables"),
    ('[[suppressions]]\nfile = "*.pkl"\nreason = "x"', "needs a rule"),
    ('[[suppressions]]\nrule = "pickle-*"\nreason = "x"', "exactly one of file"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nsha256 = "' + "0" * 64 + '"\nreason = "x"', "exactly one"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"', "needs a reason"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nreason = "  "', "needs a reason"),
    ('[[suppressions]]\nrule = "r"\nsha256 = "abc"\nreason = "x"', "64 hexadecimal"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nreason = "x"\nexpires = "next week"', "YYYY-MM-DD"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nreason = "x"\nexpires = "2025-02-30"', "not a real date"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nreason = "x"\nexpires = 2025-01-01T10:00:00', "YYYY-MM-DD"),
    ('[[suppressions]]\nrule = "r"\nfile = "a"\nreason = "x"\nowner = "me"', "unknown key"),
])
def test_malformed_config_is_an_error(project, text, message):
    _write(project, "malhug.toml", text + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, str(project))
    assert str(project / "malhug.toml") in str(caught.value)


def test_explicit_path_problems(tmp_path, project):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(str(tmp_path / "missing.toml"), str(project))
    pyproject = _write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"no \[tool.malhug\]"):
        load_config(str(pyproject), str(project))


def test_config_error_is_a_value_error_so_the_cli_exits_3():
    assert issubclass(ConfigError, ValueError)
    assert POLICY_FAIL_ON == FAIL_ON


def test_toml_dates_and_strings_both_parse(project):
    _write(project, "malhug.toml", """
        [[suppressions]]
        rule = "a"
        file = "x"
        reason = "r"
        expires = 2030-01-02
        [[suppressions]]
        rule = "b"
        sha256 = "%s"
        reason = "r"
        expires = "2030-01-03"
    """ % ("AB" * 32))
    first, second = load_config(None, str(project)).suppressions
    assert first.expires == datetime.date(2030, 1, 2) and second.expires == datetime.date(2030, 1, 3)
    assert second.sha256 == "ab" * 32


def test_sizes():
    assert parse_size(5) == 5 and parse_size("5") == 5 and parse_size("2k") == 2048
    assert parse_size("1.5 GiB") == 3 * 1024 ** 3 // 2 and parse_size("100MB") == 100 * 1024 ** 2
    with pytest.raises(ConfigError):
        parse_size("5 parsecs")


# -- merging the command line over the file ---------------------------------------------------

def test_command_line_wins(project):
    _write(project, "malhug.toml", 'fail_on = "high"\nexclude = ["data"]\ntimeout = 5\n')
    config = load_config(None, str(project)).merged(
        fail_on="critical", exclude=None, rules="pickle-*, python-*", max_file_size="1k",
        baseline="base.json")
    assert config.fail_on == "critical"
    assert config.exclude == ("data",)  # not given on the command line: the file's value
    assert config.rules == ("pickle-*", "python-*") and config.max_file_size == 1024
    assert config.timeout == 5.0 and config.baseline == str(project / "base.json")
    with pytest.raises(ConfigError, match="fail_on"):
        config.merged(fail_on="never")
    with pytest.raises(ConfigError, match="unknown option"):
        config.merged(colour="red")


def test_scan_options_carry_limits(project):
    config = Config(include=("*.pkl",), exclude=("data",), max_file_size=10, timeout=7)
    options = config.scan_options()
    assert options.include == ("*.pkl",) and options.exclude == ("data",)
    assert options.max_file_size == 10 and options.limits.seconds_per_file == 7.0
    assert Config().scan_options(ScanOptions(memo=None)) == ScanOptions(memo=None)


# -- globs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, path, expected", [
    ("*.pkl", "a/b/x.pkl", True),
    ("*.pkl", "a/b/x.pkl.txt", False),
    ("models/*.pkl", "org/models/x.pkl", True),
    ("models/*.pkl", "models/sub/x.pkl", False),
    ("models/**/*.pkl", "models/sub/deep/x.pkl", True),
    ("models/**/*.pkl", "models/x.pkl", True),
    ("data", "data/x/y.bin", True),
    ("data", "metadata/y.bin", False),
    ("/data", "sub/data/y.bin", False),
    ("/data", "data/y.bin", True),
    ("**", "anything/at/all", True),
    ("x.PKL", "x.pkl", False),
])
def test_globs(pattern, path, expected):
    assert path_matches(pattern, path) is expected


# -- suppressions ------------------------------------------------------------------------------

def _config(project, text):
    _write(project, "malhug.toml", text)
    return load_config(None, str(project))


def test_suppression_by_rule_and_glob_makes_the_file_clean(project):
    raw = _scan(Config())
    assert _file(raw, "evil.pkl").verdict is Verdict.MALICIOUS
    assert exit_code(raw, "suspicious") == EXIT_FINDINGS
    config = _config(project, """
        [[suppressions]]
        rule = "pickle-dangerous-callable"
        file = "models/evil.pkl"
        reason = "test fixture, reviewed"
        [[suppressions]]
        rule = "pickle-unknown-*"
        file = "odd.pkl"
        reason = "our own module"
    """)
    report, warnings = apply(raw, config, today=TODAY)
    assert warnings == []
    evil = _file(report, "evil.pkl")
    assert evil.verdict is Verdict.CLEAN
    assert all(m.verdict is Verdict.CLEAN for m in evil.members)
    assert [f.suppressed for f in evil.findings] == ["test fixture, reviewed"]
    assert _file(report, "odd.pkl").verdict is Verdict.CLEAN
    assert report.repositories[0].verdict is Verdict.CLEAN
    assert report.verdict is Verdict.CLEAN
    for fail_on in FAIL_ON:
        assert exit_code(report, fail_on) == EXIT_CLEAN
    # still in the report, marked
    data = json.loads(json.dumps(_file(report, "evil.pkl").to_dict()))
    assert data["findings"][0]["suppressed"] == {"reason": "test fixture, reviewed"}
    assert report.summary()["findings"] == 0 and report.summary()["suppressed"] == 2
    assert list(report.findings()) == [] and len(list(report.findings(suppressed=True))) == 2


def test_unsuppressed_findings_have_no_suppressed_key(project):
    report = _scan(Config())
    finding = _file(report, "evil.pkl").findings[0]
    assert "suppressed" not in finding.to_dict()
    assert Finding.from_dict(finding.to_dict()) == finding
    marked = Finding.from_dict(dict(finding.to_dict(), suppressed={"reason": "r"}))
    assert marked.suppressed == "r" and marked.to_dict()["suppressed"] == {"reason": "r"}


def test_suppression_of_another_rule_or_file_does_not_apply(project):
    config = _config(project, """
        [[suppressions]]
        rule = "pickle-unknown-global"
        file = "models/evil.pkl"
        reason = "wrong rule"
        [[suppressions]]
        rule = "pickle-dangerous-callable"
        file = "data/*.pkl"
        reason = "wrong file"
    """)
    report, _ = apply(_scan(Config()), config, today=TODAY)
    assert _file(report, "evil.pkl").verdict is Verdict.MALICIOUS
    assert exit_code(report, "suspicious") == EXIT_FINDINGS


def test_suppression_by_sha256(project):
    raw = _scan(Config())
    digest = _file(raw, "evil.pkl").sha256
    config = _config(project, f"""
        [[suppressions]]
        rule = "*"
        sha256 = "{digest.upper()}"
        reason = "known fixture"
    """)
    report, _ = apply(raw, config, today=TODAY)
    assert _file(report, "evil.pkl").verdict is Verdict.CLEAN
    assert _file(report, "odd.pkl").verdict is Verdict.SUSPICIOUS  # other content


def test_suppression_by_sha256_follows_the_content(project, tmp_path):
    (tmp_path / "copy.pkl").write_bytes(CRITICAL)
    digest = _scan(Config(), str(tmp_path / "copy.pkl")).files[0].sha256
    config = Config(suppressions=load_config(None, str(_write_suppression(tmp_path, digest))).suppressions)
    report, _ = apply(_scan(Config(), str(tmp_path / "copy.pkl")), config, today=TODAY)
    assert report.files[0].verdict is Verdict.CLEAN


def _write_suppression(folder, digest):
    sub = folder / "cfg"
    _write(sub, "malhug.toml", f'[[suppressions]]\nrule = "pickle-*"\nsha256 = "{digest}"\nreason = "r"\n')
    return sub


def test_expired_suppressions_do_not_apply_and_warn(project):
    config = _config(project, """
        [[suppressions]]
        rule = "pickle-dangerous-callable"
        file = "evil.pkl"
        reason = "until the model is retrained"
        expires = "2025-05-31"
    """)
    raw = _scan(Config())
    report, warnings = apply(raw, config, today=TODAY)
    assert _file(report, "evil.pkl").verdict is Verdict.MALICIOUS
    assert len(warnings) == 1 and "expired on 2025-05-31" in warnings[0]
    assert "until the model is retrained" in warnings[0]
    # the day it expires it still holds
    report, warnings = apply(raw, config, today=datetime.date(2025, 5, 31))
    assert _file(report, "evil.pkl").verdict is Verdict.CLEAN and warnings == []


def test_problems_cannot_be_suppressed(project):
    (project / "models" / "broken.pkl").write_bytes(op.proto(2) + op.global_("mymodule", "helper"))
    config = Config(root=str(project), suppressions=_config(project, """
        [[suppressions]]
        rule = "*"
        file = "**"
        reason = "everything"
    """).suppressions)
    report, _ = apply(_scan(Config()), config, today=TODAY)
    broken = _file(report, "broken.pkl")
    assert broken.problems and broken.verdict is Verdict.INCONCLUSIVE
    assert exit_code(report, "suspicious") == EXIT_INCONCLUSIVE


def test_suppression_of_a_member(project):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner/a.pkl", CRITICAL)
        archive.writestr("inner/b.pkl", CRITICAL)
    (project / "models" / "bundle.zip").write_bytes(buffer.getvalue())
    config = _config(project, """
        [[suppressions]]
        rule = "pickle-dangerous-callable"
        file = "bundle.zip"
        member = "inner/a.pkl"
        reason = "only this one"
    """)
    report, _ = apply(_scan(Config()), config, today=TODAY)
    bundle = _file(report, "bundle.zip")
    assert bundle.verdict is Verdict.MALICIOUS
    member_verdicts = {m.name: m.verdict for m in bundle.members}
    assert member_verdicts["inner/a.pkl"] is Verdict.CLEAN
    assert member_verdicts["inner/b.pkl"] is Verdict.MALICIOUS


# -- rule selection and what is shown ----------------------------------------------------------

def test_rules_and_exclude_rules_drop_findings(project):
    raw = _scan(Config())
    only = apply(raw, Config(rules=("pickle-unknown-*",)), today=TODAY).report
    assert {f.rule for f in only.findings(suppressed=True)} == {"pickle-unknown-global"}
    assert _file(only, "evil.pkl").verdict is Verdict.CLEAN
    assert _file(only, "odd.pkl").verdict is Verdict.SUSPICIOUS
    without = apply(raw, Config(exclude_rules=("pickle-unknown-global",)), today=TODAY).report
    assert _file(without, "odd.pkl").verdict is Verdict.CLEAN
    assert _file(without, "evil.pkl").verdict is Verdict.MALICIOUS


def test_min_severity_only_hides(project):
    raw = _scan(Config())
    config = Config(min_severity=Severity.HIGH)
    report = apply(raw, config, today=TODAY).report
    odd = _file(report, "odd.pkl")
    assert odd.verdict is Verdict.SUSPICIOUS  # unchanged
    assert not any(visible(f, config) for f in odd.findings)
    assert all(visible(f, config) for f in _file(report, "evil.pkl").findings)
    assert all(visible(f, Config()) for f in report.findings())


# -- baselines ---------------------------------------------------------------------------------

def test_baseline_round_trip_and_only_new_findings_fail(project):
    raw = _scan(Config())
    path = project / "malhug-baseline.json"
    assert write_baseline(raw, path) == len(list(raw.findings()))
    text = path.read_text()
    assert str(project) not in text  # nothing absolute
    data = json.loads(text)
    assert {e["path"] for e in data["findings"]} == {"models/evil.pkl", "models/odd.pkl"}
    loaded = load_baseline(path)
    assert len(loaded.entries) == len(data["findings"])

    config = Config(root=str(project)).merged(baseline=str(path))
    report, _ = apply(raw, config, today=TODAY)
    assert report.verdict is Verdict.CLEAN and exit_code(report, "low") == EXIT_CLEAN
    assert {f.suppressed for f in report.findings(suppressed=True)} == {"baseline"}

    # a new malicious file is new; so is a second payload in a known file
    (project / "models" / "new.pkl").write_bytes(op.call("subprocess", "check_output", "id"))
    report, _ = apply(_scan(Config()), config, today=TODAY)
    assert _file(report, "new.pkl").verdict is Verdict.MALICIOUS
    assert _file(report, "evil.pkl").verdict is Verdict.CLEAN
    assert exit_code(report, "suspicious") == EXIT_FINDINGS


def test_baseline_holds_from_another_folder_and_for_moved_content(project, tmp_path, monkeypatch):
    path = project / "baseline.json"
    write_baseline(_scan(Config()), path)
    # the same project scanned from another working directory, by absolute path
    monkeypatch.chdir(tmp_path)
    report, _ = apply(_scan(Config(), str(project)), Config(baseline=str(path)), today=TODAY)
    assert report.verdict is Verdict.CLEAN
    # the same content under another name is known by its sha256
    os.rename(project / "models" / "evil.pkl", project / "models" / "renamed.pkl")
    report, _ = apply(_scan(Config(), str(project)), Config(baseline=str(path)), today=TODAY)
    assert _file(report, "renamed.pkl").verdict is Verdict.CLEAN


def test_baseline_fingerprint_ignores_offsets_but_not_payloads(tmp_path, monkeypatch):
    from malhug.findings import FileResult

    def report_with(message, evidence, offset):
        finding = Finding("r", Severity.HIGH, "code_exec", message, Location("a.py", None, offset, None), evidence)
        file = FileResult("a.py", "python", Verdict.MALICIOUS, (finding,), (), (), None, 1)
        return Report((file,), "0")

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "b.json"
    write_baseline(report_with("calls eval @12", "eval(x)", 12), path)
    config = Config(root=str(tmp_path), baseline=str(path))
    assert apply(report_with("calls eval @40", "eval(x)", 40), config).report.verdict is Verdict.CLEAN
    assert apply(report_with("calls eval @40", "eval(y)", 40), config).report.verdict is Verdict.MALICIOUS


def test_baseline_does_not_keep_suppressed_findings(project):
    config = _config(project, """
        [[suppressions]]
        rule = "*"
        file = "evil.pkl"
        reason = "temporary"
        expires = "2025-12-31"
    """)
    report, _ = apply(_scan(Config()), config, today=TODAY, baseline=False)
    path = project / "b.json"
    write_baseline(report, path)
    assert {e["path"] for e in json.loads(path.read_text())["findings"]} == {"models/odd.pkl"}


def test_malformed_or_missing_baseline_is_an_error(project):
    with pytest.raises(ConfigError, match="no such baseline"):
        apply(_scan(Config()), Config(baseline=str(project / "none.json")))
    (project / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_baseline(project / "bad.json")
    (project / "bad.json").write_text('{"malhug_baseline": 1, "findings": [{"rule": 1}]}')
    with pytest.raises(ConfigError, match=r"findings\[0\]"):
        load_baseline(project / "bad.json")
    (project / "bad.json").write_text('{"findings": []}')
    with pytest.raises(ConfigError, match="not a malhug baseline"):
        load_baseline(project / "bad.json")


# -- include / exclude / max file size through the scanner ---------------------------------------

def test_exclude_leaves_files_out_of_the_report(project):
    report = _scan(Config(exclude=("models",)))
    assert [f.path for f in report.files] == ["./data/ok.pkl"] or \
        [os.path.basename(f.path) for f in report.files] == ["ok.pkl"]
    assert report.verdict is Verdict.CLEAN
    assert report.repositories[0].files == tuple(f.path for f in report.files)


def test_include_keeps_only_matching_files(project):
    (project / "notes.txt").write_text("hello")
    report = _scan(Config(include=("*.pkl",), exclude=("odd.pkl",)))
    assert sorted(os.path.basename(f.path) for f in report.files) == ["evil.pkl", "ok.pkl"]


def test_files_over_max_size_are_listed_not_analysed(project):
    (project / "models" / "big.pkl").write_bytes(CLEAN + b"\x00" * 100)
    report = _scan(Config(max_file_size=50))
    big = _file(report, "big.pkl")
    assert big.verdict is Verdict.INCONCLUSIVE and not big.findings
    assert "max_file_size" in big.problems[0].reason and "not analysed" in big.problems[0].reason
    assert _file(report, "evil.pkl").verdict is Verdict.MALICIOUS  # small files still read
    # a file named on the command line too
    single = _scan(Config(max_file_size=50), str(project / "models" / "big.pkl"))
    assert single.files[0].verdict is Verdict.INCONCLUSIVE
    assert exit_code(single, "critical") == EXIT_INCONCLUSIVE
    # and a suppression cannot make it clean
    config = Config(root=str(project), suppressions=_config(project, """
        [[suppressions]]
        rule = "*"
        file = "**"
        reason = "everything"
    """).suppressions)
    assert _file(apply(report, config, today=TODAY).report, "big.pkl").verdict is Verdict.INCONCLUSIVE


def test_explicit_files_ignore_include_and_exclude(project):
    report = _scan(Config(exclude=("*.pkl",)), str(project / "models" / "evil.pkl"))
    assert report.files[0].verdict is Verdict.MALICIOUS
