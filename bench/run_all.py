"""Everything in one command: install the pinned peers, write the fixtures, measure.

    python bench/run_all.py [--quick] [--repeat N] [--skip-corpus] [--skip-scripts] [--skip-accuracy]
                            [--delete-fixtures]

--quick uses 20 MB and 200 MB checkpoints and a 200 MB byte string (about 1 GB of fixtures,
a couple of minutes); the default uses 200 MB and 2 GB checkpoints and a 1.5 GB byte string
(about 10.5 GB of fixtures on disk). Results: bench/results/speed.json (speed-quick.json with
--quick), bench/results/corpus.json and bench/results/scripts.json (Python sources: malhug,
guarddog and bandit), then the accuracy run on every corpus (bench/results/accuracy.json, its
plots, and the results page docs/benchmarks.md).
Any Python 3.10+ can run this script; fixtures are written with the project's virtualenv
(it has torch and numpy), or with MALHUG_PYTHON when set.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import make_results_page  # noqa: E402
import run_accuracy  # noqa: E402
import run_corpus  # noqa: E402
import run_scripts  # noqa: E402
import run_speed  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and fixture (median time)")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--skip-scripts", action="store_true", help="skip the Python-source benchmark")
    parser.add_argument("--skip-accuracy", action="store_true",
                        help="skip the accuracy run against the peers (about 25 minutes)")
    parser.add_argument("--delete-fixtures", action="store_true", help="remove the big fixtures when done")
    args = parser.parse_args(argv)

    peers.install_peers()
    subprocess.run([peers.malhug_python(), str(BENCH / "make_fixtures.py")] + (["--quick"] if args.quick else []),
                   check=True)
    speed_json = peers.RESULTS / ("speed-quick.json" if args.quick else "speed.json")
    run_speed.main(["--repeat", str(args.repeat), "--output", str(speed_json)])
    if not args.skip_corpus:
        run_corpus.main([])
    if not args.skip_scripts:
        run_scripts.main([])
    if not args.skip_accuracy:
        run_accuracy.main([])
        make_results_page.main([])
    if args.delete_fixtures:
        shutil.rmtree(BENCH / ".cache" / "fixtures", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
