"""Run one fuzz target (or all of them, one input each in turn) under atheris.

    python tests/fuzz/run.py --target pickle --runs 1000000
    python tests/fuzz/run.py --target all --seconds 30
    python tests/fuzz/run.py --list

The seed corpus is written first (tests/fuzz/make_seeds.py) into --corpus (default
tests/fuzz/corpus/TARGET), and inputs libFuzzer finds that reach new code are added to it.
A crash is an exception escaping the target, or an input running longer than --timeout
seconds; libFuzzer saves it as crash-* / timeout-* under --artifacts and exits non-zero.
Extra arguments after `--` go to libFuzzer as they are.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "helpers")]

# modules that read no scanned input (the hub client, the service, reports) are left alone
SKIPPED = ("malhug.__main__", "malhug.service", "malhug.sources", "malhug.report", "malhug.cli", "malhug.policy",
           "malhug.isolation", "malhug.cache")


def _import_instrumented() -> dict:
    import atheris

    with atheris.instrument_imports(include=["malhug"]):
        import malhug

        for info in pkgutil.walk_packages(malhug.__path__, "malhug."):
            if not info.name.startswith(SKIPPED):
                try:
                    importlib.import_module(info.name)
                except ImportError:
                    pass
        import targets
    targets.read_hdf5_in_forked_children()
    return targets.TARGETS


def _all_targets(targets: dict):
    names = sorted(targets)

    def target(data: bytes) -> None:
        if data:
            targets[names[data[0] % len(names)]](data[1:])

    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="all")
    parser.add_argument("--runs", type=int, default=None, help="inputs to run (libFuzzer -runs)")
    parser.add_argument("--seconds", type=int, default=None, help="stop after this long")
    parser.add_argument("--timeout", type=int, default=30, help="seconds one input may take")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--artifacts", type=Path, default=Path.cwd())
    parser.add_argument("--list", action="store_true")
    parser.add_argument("libfuzzer", nargs="*")
    args = parser.parse_args()

    import atheris

    targets = _import_instrumented()
    if args.list:
        print("\n".join(["all"] + sorted(targets)))
        return 0
    if args.target != "all" and args.target not in targets:
        parser.error(f"unknown target {args.target!r}; --list shows them")
    corpus = args.corpus or HERE / "corpus" / args.target
    _seed(corpus, args.target)
    target = _all_targets(targets) if args.target == "all" else targets[args.target]
    args.artifacts.mkdir(parents=True, exist_ok=True)
    flags = [f"-timeout={args.timeout}", "-rss_limit_mb=2048", "-max_len=65536",
             f"-artifact_prefix={args.artifacts}/", "-print_final_stats=1"]
    if args.runs is not None:
        flags.append(f"-runs={args.runs}")
    if args.seconds is not None:
        flags.append(f"-max_total_time={args.seconds}")
    atheris.Setup([sys.argv[0], *flags, *args.libfuzzer, str(corpus)], target)
    atheris.Fuzz()
    return 0


def _seed(corpus: Path, target: str) -> None:
    """Seeds for the target (for `all`, each prefixed with the byte that selects its target)."""
    import make_seeds

    from targets import TARGETS

    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    if target != "all":
        for index, seed in enumerate(make_seeds.SEEDS[target]()):
            (corpus / f"seed-{index:03d}").write_bytes(seed)
        return
    for selector, name in enumerate(sorted(TARGETS)):
        for index, seed in enumerate(make_seeds.SEEDS[name]()):
            (corpus / f"seed-{name}-{index:03d}").write_bytes(bytes([selector]) + seed)


if __name__ == "__main__":
    sys.exit(main())
