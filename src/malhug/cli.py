"""The command line: parse, call the API, write reports, exit with a code CI can act on.

Exit codes: 0 clean; 1 a finding at or above --fail-on; 2 nothing at the gate but something
could not be fully scanned; 3 usage or internal error.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .findings import Report, Severity, Verdict

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
    scan.add_argument("--format", choices=("text", "json"), default="text")
    scan.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of stdout")
    scan.add_argument("--fail-on", choices=FAIL_ON, default="suspicious",
                      help="what makes the exit code 1 (default: a suspicious or malicious verdict)")
    scan.add_argument("-v", "--verbose", action="store_true", help="show clean files and every member")
    scan.add_argument("-q", "--quiet", action="store_true", help="one line per problem")
    scan.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                      help="override a limit (see malhug.limits.Limits), e.g. seconds_per_file=60")
    return parser


def exit_code(report: Report, fail_on: str) -> int:
    if fail_on == "suspicious":
        failed = any(f.verdict in (Verdict.SUSPICIOUS, Verdict.MALICIOUS) for f in report.files)
    else:
        gate = Severity.parse(fail_on)
        failed = any(finding.severity >= gate for finding in report.findings())
    if failed:
        return EXIT_FINDINGS
    # below the gate, findings do not fail the run; what was not fully read still does
    if report.errors or any(f.verdict is Verdict.INCONCLUSIVE or f.problems for f in report.files):
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "scan" and not args.paths and args.hf_cache is None:
        parser.error("nothing to scan: name a TARGET or use --hf-cache")
    try:
        from .report import render
        from .scanner import ScanOptions, scan_paths

        options = ScanOptions(limits=_limits(args.limit), cache=_cache(args),
                              follow_remote_code=True if args.fetch_remote_code else None)
        report = scan_paths(list(args.paths) + _hf_cache_targets(args.hf_cache), options)
        text = render(report, args.format, **({"verbose": args.verbose, "quiet": args.quiet}
                                              if args.format == "text" else {}))
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
        return exit_code(report, args.fail_on)
    except ValueError as exc:
        print(f"malhug: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # an internal error must never look like a clean scan
        print(f"malhug: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
