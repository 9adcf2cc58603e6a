"""Real remote code nobody here wrote: every modeling/configuration/tokenization/processing file
of a pinned transformers release (the kind of code `trust_remote_code` runs), scanned by malhug.

    python bench/run_real_code.py [--version 4.57.1]

The wheel is downloaded from PyPI into bench/.cache (never installed, never imported); the
files are only read. Prints the verdicts and every finding above info (each one is a false
positive: these files are benign), and writes bench/results/real-code.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "real-code"
RESULTS = HERE / "results"
PREFIXES = ("modeling_", "configuration_", "tokenization_", "processing_", "image_processing_",
            "feature_extraction_")


def fetch(version: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob(f"transformers-{version}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        f"transformers=={version}", "-d", str(CACHE)], check=True)
        wheels = list(CACHE.glob(f"transformers-{version}-*.whl"))
    target = CACHE / f"transformers-{version}"
    if not target.exists():
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in wheel.namelist():
                if name.startswith("transformers/models/") and name.rsplit("/", 1)[-1].startswith(PREFIXES):
                    wheel.extract(name, target)
    return target / "transformers" / "models"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="4.57.1")
    args = parser.parse_args()
    import malhug
    from malhug.scanner import scan_file

    root = fetch(args.version)
    files = sorted(p for p in root.rglob("*.py") if p.name.startswith(PREFIXES))
    verdicts: Counter = Counter()
    flagged = []
    started = time.perf_counter()
    for path in files:
        result = scan_file(path)
        verdicts[str(result.verdict)] += 1
        for finding in result.findings:
            if finding.severity > malhug.Severity.INFO:
                flagged.append({"file": str(path.relative_to(root)), "line": finding.location.line,
                                "rule": finding.rule, "message": finding.message})
    seconds = time.perf_counter() - started
    summary = {"transformers": args.version, "malhug": malhug.__version__, "files": len(files),
               "verdicts": dict(verdicts), "findings_above_info": flagged, "seconds": round(seconds, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real-code.json").write_text(json.dumps(summary, indent=2))
    print(f"transformers {args.version}: {len(files)} files in {seconds:.1f}s: {dict(verdicts)}")
    for item in flagged:
        print(f"  {item['file']}:{item['line']} {item['rule']}: {item['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
