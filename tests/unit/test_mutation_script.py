"""tests/benchmarks/mutation.py stays runnable: every target names functions
that still exist (the script would stop with "no function ..." hours into a
run otherwise), and a sampled score's interval is the Wilson interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import mutation

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", mutation.TARGETS, ids=lambda t: t.name)
def test_target_functions_exist(target):
    ranges = mutation.function_lines(REPO / target.module, target.functions)
    assert ranges and all(a <= b for a, b in ranges)
    for test in target.tests:
        if not test.startswith("-") and "or" not in test.split():
            assert (REPO / test).is_file(), test


def test_wilson_interval_by_hand():
    # 45 of 50: centre (0.9 + z²/100) / (1 + z²/50), half-width
    # z·sqrt(0.9·0.1/50 + z²/10000) / (1 + z²/50), z = 1.96
    lo, hi = mutation.wilson_interval(45, 50)
    assert lo == pytest.approx(0.78640, abs=1e-4)
    assert hi == pytest.approx(0.95652, abs=1e-4)
    lo, hi = mutation.wilson_interval(50, 50)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.92865, abs=1e-4)
    assert mutation.wilson_interval(0, 0) == (0.0, 1.0)


def test_sampled_note_names_the_sample():
    r = {"killed": 45, "total": 50, "sampled_from": 1270}
    note = mutation.sampled(r)
    assert "sampled 50 of 1270" in note and "[78.6%, 95.7%]" in note
    assert mutation.sampled({"killed": 5, "total": 5, "sampled_from": None}) == ""
