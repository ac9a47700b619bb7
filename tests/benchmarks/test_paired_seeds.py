"""benchmarks/paired_seeds.py: the paired comparison of two core.py tables."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
ps = importlib.import_module("paired_seeds")


def test_sign_flip_p_against_hand_counted_patterns():
    # +1, +1, +1: only all-plus and all-minus reach |mean| 1 -> 2 of 8
    assert ps.sign_flip_p(np.array([1.0, 1.0, 1.0])) == pytest.approx(0.25)
    # +2, -1: (+,+) and (-,-) give |mean| 0.5, the other two 1.5 -> all 4 reach 0.5
    assert ps.sign_flip_p(np.array([2.0, -1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 to"):
        ps.sign_flip_p(np.array([]))


def test_compare_pairs_the_common_seeds():
    table = {"parts": {"default": {"runs": [
        {"method": "pebble", "seed": s, "final_gold_return": g}
        for s, g in ((0, 10.0), (1, 20.0), (2, 30.0))] + [
        {"method": "true_reward", "seed": 0, "final_gold_return": 99.0}]}}}
    old = ps.final_golds(table, "default", "pebble")
    assert old == {0: 10.0, 1: 20.0, 2: 30.0}
    res = ps.compare(old, {1: 25.0, 2: 20.0, 7: 0.0})
    assert res["seeds"] == [1, 2] and res["differences"] == [5.0, -10.0]
    assert res["mean_difference"] == -2.5 and res["improved"] == 1
    assert res["old"]["min"] == 20.0 and res["new"]["mean"] == 22.5
    with pytest.raises(ValueError, match="no seed"):
        ps.compare(old, {9: 1.0})


def test_an_unknown_revision_is_a_clear_error(capsys):
    assert ps.main(["no-such-rev", "HEAD"]) == 2
    assert "no-such-rev: no benchmarks/results/core.json" in capsys.readouterr().out
