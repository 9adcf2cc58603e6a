"""Inputs the fuzzers found that once broke a reader, kept as they were minimised."""
from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from targets import TARGETS  # noqa: E402

from malhug.pickle.decompile import Renderer  # noqa: E402
from malhug.pickle.machine import PickleMachine  # noqa: E402
from malhug.pickle.reader import ByteReader  # noqa: E402

# (target, input)
CRASHES = [
    # a method called on a constant rendered as `2.append({})`, which is not Python
    ("pickle", b"(lp0\nI0\naI1\naI2\n\x80\x04\x95(\x00\x00\x00\x00\x00\x00\x00}\x94aI6(\x8c\x01"),
]


@pytest.mark.parametrize("target, data", CRASHES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CRASHES)])
def test_fuzz_crash_stays_fixed(target, data):
    TARGETS[target](data)


def test_methods_on_constants_render_as_python():
    trace = PickleMachine(ByteReader(io.BytesIO(b"I2\n}a."))).run()
    source = Renderer().program(trace, 1 << 20).source
    ast.parse(source)
    assert "(2).append({})" in source
