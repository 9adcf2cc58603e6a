"""The command line: parse, call the API, write reports, exit with a code CI can act on.

Exit codes: 0 clean; 1 a finding at or above --fail-on; 2 nothing at the gate but something
could not be fully scanned; 3 usage or internal error.

`--format` may be given several times, each followed by its own `-o FILE`; one format at most
goes to standard output.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .findings import Report, Severity, Verdict
from .report import FORMATS

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCONCLUSIVE, EXIT_ERROR = 0, 1, 2, 3
FAIL_ON = ("critical", "high", "medium", "low", "suspicious")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 3, not argparse's 2 (2 means inconclusive)
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="malhug", description="Find malicious code in ML models and datasets without running it.")
    parser.add_argument("--version", action="version", version=f"malhug {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    scan = commands.add_parser("scan", help="scan files and folders")
    scan.add_argument("paths", nargs="*", metavar="TARGET",
                      help="files, folders, hf://org/name[@revision], hf://datasets/org/name, "
                           "https://huggingface.co/... URLs")
    scan.add_argument("--hf-cache", nargs="?", const="", default=None, metavar="DIR",
                      help="scan the local Hugging Face cache (default: HF_HUB_CACHE)")
    scan.add_argument("--fetch-remote-code", action="store_true",
                      help="also fetch and scan hub repositories whose code a local folder's "
                           "auto_map names (hub targets always have them scanned)")
    scan.add_argument("--no-cache", action="store_true",
                      help="do not read or store verdicts in the content-hash cache")
    scan.add_argument("--cache-dir", metavar="DIR",
                      help="where the verdict cache lives (default: MALHUG_CACHE_DIR or ~/.cache/malhug)")
    scan.add_argument("--format", choices=FORMATS, action=_FormatAction, dest="outputs", default=None,
                      help="text (default), json, sarif, html or markdown; repeatable, each with its own -o")
    scan.add_argument("-o", "--output", metavar="FILE", action=_OutputAction, dest="outputs",
                      help="write the report of the --format before it to FILE instead of stdout")
    scan.add_argument("--config", metavar="FILE",
                      help="policy file (default: malhug.toml, or [tool.malhug] in pyproject.toml, "
                           "found from the current folder up to the repository root)")
    scan.add_argument("--min-severity", choices=("info", "low", "medium", "high", "critical"),
                      help="show findings from this severity on (verdicts and the gate are unchanged)")
    scan.add_argument("--rules", metavar="IDS", help="only these rule ids or globs count (comma list)")
    scan.add_argument("--exclude-rules", metavar="IDS", help="these rule ids or globs do not count")
    scan.add_argument("--include", action="append", default=None, metavar="GLOB",
                      help="scan only paths matching (inside folders and repositories)")
    scan.add_argument("--exclude", action="append", default=None, metavar="GLOB",
                      help="leave out paths matching (inside folders and repositories)")
    scan.add_argument("--max-file-size", metavar="SIZE",
                      help="list larger files as not analysed (e.g. 500MB, 2GiB)")
    scan.add_argument("--timeout", type=float, metavar="SECONDS", help="wall time per file")
    scan.add_argument("--no-isolation", action="store_true",
                      help="read files in this process, not in resource-limited worker processes")
    scan.add_argument("--workers", type=_positive, default=1, metavar="N",
                      help="files read at once, each in its own worker process (default 1)")
    scan.add_argument("--baseline", metavar="FILE",
                      help="accept the findings recorded in FILE: only new ones count")
    scan.add_argument("--write-baseline", metavar="FILE",
                      help="record today's findings in FILE (a baseline for later scans)")
    scan.add_argument("--fail-on", choices=FAIL_ON, default=None,
                      help="what makes the exit code 1 (default: a suspicious or malicious verdict)")
    scan.add_argument("-v", "--verbose", action="store_true", help="show clean files and every member")
    scan.add_argument("-q", "--quiet", action="store_true", help="one line per problem")
    scan.add_argument("--no-progress", action="store_true",
                      help="no progress bar (it is shown only when standard error is a terminal)")
    scan.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                      help="override a limit (see malhug.limits.Limits), e.g. seconds_per_file=60")
    explain = commands.add_parser(
        "explain", help="show the code inside a file with its findings",
        description="Show the program a pickle would run (or a Python source, a notebook, chat "
                    "templates), with the findings on the lines they concern. Nothing is run.")
    explain.add_argument("target", metavar="TARGET[:MEMBER]",
                         help="a file, or a member inside it: model.pt:archive/data.pkl")
    explain.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                         help="override a limit, as for scan")
    from .service.commands import add_commands  # monitor, worker, serve (need malhug[service])

    add_commands(commands)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number from 1 up, not {text!r}")
    return value


class _FormatAction(argparse.Action):
    """Each --format starts a new (format, output) pair."""

    def __call__(self, parser, namespace, value, option_string=None):
        pairs = list(getattr(namespace, self.dest, None) or [])
        pairs.append([value, None])
        setattr(namespace, self.dest, pairs)


class _OutputAction(argparse.Action):
    """-o FILE belongs to the --format before it (or to the only --format, when it comes first)."""

    def __call__(self, parser, namespace, value, option_string=None):
        pairs = list(getattr(namespace, self.dest, None) or [])
        if not pairs:
            pairs.append([None, value])
        elif pairs[-1][1] is None:
            pairs[-1][1] = value
        else:
            parser.error(f"{option_string} {value}: the --format before it already has an output")
        setattr(namespace, self.dest, pairs)


def output_pairs(parser, outputs) -> list[tuple[str, str | None]]:
    """(format, file or None for stdout) for every report asked for."""
    pairs = [list(p) for p in (outputs or [])]
    if pairs and pairs[0][0] is None:  # -o before any --format
        leading = pairs.pop(0)[1]
        if not pairs:
            pairs = [["text", leading]]
        elif len(pairs) == 1 and pairs[0][1] is None:
            pairs[0][1] = leading
        else:
            parser.error("-o must follow the --format it is for")
    if not pairs:
        pairs = [["text", None]]
    if sum(1 for _, path in pairs if path is None) > 1:
        parser.error("only one --format can go to standard output: give the others -o FILE")
    paths = [os.path.abspath(path) for _, path in pairs if path is not None]
    if len(paths) != len(set(paths)):
        parser.error("two formats written to the same -o FILE")
    return [(fmt, path) for fmt, path in pairs]


def exit_code(report: Report, fail_on: str) -> int:
    judged = list(report.files) + list(report.repositories)
    if fail_on == "suspicious":
        failed = any(item.verdict in (Verdict.SUSPICIOUS, Verdict.MALICIOUS) for item in judged)
    else:
        gate = Severity.parse(fail_on)
        failed = any(finding.severity >= gate for finding in report.findings())
    if failed:
        return EXIT_FINDINGS
    # below the gate, findings do not fail the run; what was not fully read still does
    if report.errors or any(item.verdict is Verdict.INCONCLUSIVE or item.problems for item in judged):
        return EXIT_INCONCLUSIVE
    return EXIT_CLEAN


def _limits(pairs: list[str]):
    from dataclasses import fields

    from .limits import DEFAULT_LIMITS

    known = {f.name for f in fields(DEFAULT_LIMITS)}
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--limit takes NAME=VALUE, not {pair!r}")
        if name not in known:
            raise ValueError(f"unknown limit {name!r} (known: {', '.join(sorted(known))})")
        kind = type(getattr(DEFAULT_LIMITS, name))
        try:
            parsed = kind(value.strip())
        except ValueError:
            raise ValueError(f"--limit {name} takes a number, not {value!r}") from None
        if parsed < 0:
            raise ValueError(f"--limit {name} cannot be negative")
        overrides[name] = parsed
    return DEFAULT_LIMITS.with_overrides(**overrides)


def _cache(args):
    if args.no_cache:
        return None
    from .cache import VerdictCache

    path = None
    if args.cache_dir:
        path = os.path.join(args.cache_dir, "verdicts.sqlite")
    return VerdictCache(path)


def _hf_cache_targets(directory: str | None) -> list:
    if directory is None:
        return []
    from .sources.hf_cache import HfCacheError, hf_cache_repositories

    try:
        return list(hf_cache_repositories(directory or None))
    except HfCacheError as exc:
        raise ValueError(str(exc)) from exc


def terminal(stream) -> bool:
    """Colour and progress only on a terminal, and never under NO_COLOR or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _scan(args, parser) -> int:
    from .report import render
    from .scanner import ScanOptions, scan_paths

    outputs = output_pairs(parser, args.outputs)
    targets = list(args.paths) + _hf_cache_targets(args.hf_cache)
    progress = None
    if not (args.no_progress or args.quiet) and terminal(sys.stderr):
        from .report.progress import ScanProgress

        progress = ScanProgress(sys.stderr, total=_known_total(targets))
    config = _policy(args)
    options = config.scan_options(ScanOptions(
        limits=_limits(args.limit), cache=_cache(args),
        follow_remote_code=True if args.fetch_remote_code else None, progress=progress,
        isolation=not args.no_isolation, workers=args.workers, worker_start="fork"))
    try:
        report = scan_paths(targets, options)
    finally:
        if progress is not None:
            progress.close()
    report = _enforce(report, config, args.write_baseline)
    gate_report, report = report, _shown(report, config)
    for fmt, path in outputs:
        if fmt == "text" and path is None and terminal(sys.stdout):
            _print_terminal(report, args)
            continue
        options = {"verbose": args.verbose, "quiet": args.quiet} if fmt == "text" else {}
        text = render(report, fmt, **options)
        if path:
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
    return exit_code(gate_report, config.fail_on)


def _policy(args):
    from .policy import load_config

    config = load_config(args.config, os.getcwd())
    return config.merged(
        fail_on=args.fail_on, min_severity=args.min_severity, rules=args.rules,
        exclude_rules=args.exclude_rules, include=args.include, exclude=args.exclude,
        max_file_size=args.max_file_size, timeout=args.timeout, baseline=args.baseline)


def _enforce(report: Report, config, write_baseline_to: str | None) -> Report:
    """Suppressions, baselines and rule selection; warnings (expired suppressions) to stderr."""
    from .policy import apply, write_baseline

    result = apply(report, config, baseline=write_baseline_to is None)
    for warning in result.warnings:
        print(f"malhug: warning: {warning}", file=sys.stderr)
    if write_baseline_to:
        count = write_baseline(result.report, write_baseline_to)
        print(f"malhug: {count} finding(s) recorded in {write_baseline_to}", file=sys.stderr)
    return result.report


def _shown(report: Report, config) -> Report:
    """What reporters show: findings under --min-severity hidden, verdicts unchanged."""
    if config.min_severity is None:
        return report
    from dataclasses import replace

    from .policy import visible

    files = tuple(replace(f, findings=tuple(x for x in f.findings if visible(x, config))) for f in report.files)
    repositories = tuple(replace(r, findings=tuple(x for x in r.findings if visible(x, config)))
                         for r in report.repositories)
    return replace(report, files=files, repositories=repositories)


def _known_total(targets) -> int | None:
    """How many files a scan will read, when every target is a plain local file."""
    if all(isinstance(t, str) and os.path.isfile(t) and "://" not in t for t in targets):
        return len(targets)
    return None


def _print_terminal(report: Report, args) -> None:
    from rich.console import Console

    from .report.text_report import print_rich

    console = Console(file=sys.stdout, highlight=False, soft_wrap=False, emoji=False, markup=False)
    print_rich(report, console, verbose=args.verbose, quiet=args.quiet)


def _explain(args) -> int:
    from .explain import explain

    explanation = explain(args.target, _limits(args.limit))
    sys.stdout.write(explanation.render())  # scan-safe: malhug's own text of the explanation, no template
    return exit_code(Report((explanation.result,), __version__), "suspicious")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "scan" and not args.paths and args.hf_cache is None:
        parser.error("nothing to scan: name a TARGET or use --hf-cache")
    try:
        if args.command == "explain":
            return _explain(args)
        if getattr(args, "service_command", None) is not None:
            return args.service_command(args)
        return _scan(args, parser)
    except ValueError as exc:
        print(f"malhug: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"malhug: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # an internal error must never look like a clean scan
        print(f"malhug: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
