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


def test_variant_rows_carry_gold_and_random_pair_accuracy(overhead):
    reference = {"run": "s", "wall_time_s": 180.0}
    seconds = {"queries": 1.0, "teacher": 0.0, "reward_training": 4.0, "relabel": 0.0}
    base = {"run": "p", "backbone": "crossq", "queries": 500, "feedback_seconds": seconds}
    pebble = overhead.breakdown({**base, "method": "pebble", "wall_time_s": 100.0}, reference,
                                final_gold=3000.0)
    cheap = overhead.breakdown(
        {**base, "method": "pebble_rm_3x128", "wall_time_s": 60.0,
         "reward_model": {"reward_model/random_pair_accuracy": 0.81}}, reference,
        final_gold=2900.0)
    assert pebble["random_pair_accuracy"] is None  # a record from before the harness kept it
    assert (cheap["method"], cheap["final_gold_return"], cheap["random_pair_accuracy"]) == (
        "pebble_rm_3x128", 2900.0, 0.81)
    assert overhead.final_gold({"evals": [{"gold_return": 1.0}, {"gold_return": 2.5}]}) == 2.5
    assert overhead.final_gold({"evals": []}) is None
    rec = {"command": "c", "written_utc": "now", "env": "HalfCheetah-v5", "steps": 20000,
           "seed": 1, "backbone": "crossq", "fraction": pebble["fraction"],
           "machine": {"cpu": "x", "cpu_count": 2, "torch": "t"}, "rows": [pebble, cheap]}
    text = overhead.render_section(rec)
    assert "| pebble_rm_3x128 | 500 | 40 |" in text and "| 2900 | 0.81 |" in text
    assert "| 3000 | — |" in text
    # 5 s of 100 s meets the 10% target; 5 s of 60 s (8.3%) as well, each named
    assert "which meets the issue's target" in text
    assert "`pebble_rm_3x128` fraction 8.3% (meets the target)" in text
