"""benchmarks/overhead.py's arithmetic on synthetic harness records: no training."""

from __future__ import annotations

import pytest


def test_fraction_is_feedback_seconds_over_pebble_wall(overhead):
    pebble = {"run": "p", "backbone": "crossq", "queries": 100, "queries_asked": 100,
              "wall_time_s": 200.0,
              "feedback_seconds": {"queries": 1.0, "teacher": 0.5, "reward_training": 6.0,
                                   "relabel": 2.5}}
    reference = {"run": "s", "wall_time_s": 180.0}
    out = overhead.breakdown(pebble, reference)
    assert out["fraction"] == pytest.approx(10.0 / 200.0)
    assert out["breakdown"]["reward_training"] == {"seconds": 6.0, "fraction": 0.03}
    assert out["wall_difference_s"] == pytest.approx(20.0)
    assert out["wall_ratio"] == pytest.approx(200.0 / 180.0)
    assert out["reference_wall_s"] == 180.0 and out["reference_run"] == "s"
    assert out["backbone"] == "crossq"
