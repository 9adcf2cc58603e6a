"""A short fuzz run of every target: atheris (coverage guided) when it is installed, else
hypothesis on random bytes. The longer run is `python tests/fuzz/run.py --target NAME --runs N`."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import make_seeds  # noqa: E402
from targets import TARGETS  # noqa: E402

SMOKE_SECONDS = 20
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_runs_through_its_target(target):
    seeds = make_seeds.SEEDS[target]()
    assert seeds, f"no seeds for {target}"
    for seed in seeds:
        TARGETS[target](seed)


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris is not installed")
def test_short_coverage_guided_run_of_all_targets_finds_no_crash(tmp_path):
    artifacts = tmp_path / "artifacts"
    done = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), "--target", "all", "--seconds", str(SMOKE_SECONDS),
         "--timeout", "30", "--corpus", str(tmp_path / "corpus"), "--artifacts", str(artifacts)],
        capture_output=True, text=True, timeout=SMOKE_SECONDS + 120, cwd=tmp_path)
    log = done.stderr[-6000:]
    assert done.returncode == 0, log
    assert not list(artifacts.glob("crash-*")) and not list(artifacts.glob("timeout-*")), log
    assert "Done" in done.stderr


@pytest.mark.skipif(HAVE_ATHERIS, reason="atheris runs the coverage-guided smoke test instead")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(t for t in TARGETS if t != "hdf5")), st.binary(max_size=4096))
def test_random_bytes_through_every_target(target, data):
    TARGETS[target](data)
