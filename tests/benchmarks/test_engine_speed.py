"""benchmarks/engine_speed.py's aggregation and report on fake rows: no training."""

from __future__ import annotations

import pytest


def _row(agent, seed, sps, cpu_sps, returns):
    return {"agent": agent, "seed": seed, "steps": 10000, "steps_per_s": sps,
            "steps_per_cpu_s": cpu_sps, "cpu_share": 1.0, "compile_s": 2.0 if agent != "sb3_sac"
            else 0.0, "returns": returns, "final_return": returns[-1][1]}


def test_aggregate_speedup_and_returns_by_step(engine):
    rows = [_row("sb3_sac", 0, 60.0, 60.0, [[5000, 100.0], [10000, 300.0]]),
            _row("sb3_sac", 1, 40.0, 50.0, [[5000, 200.0], [10000, 500.0]]),
            _row("crossq", 0, 120.0, 110.0, [[5000, 1000.0], [10000, 2000.0]]),
            _row("crossq", 1, 100.0, 90.0, [[5000, 3000.0], [10000, 4000.0]])]
    agg = engine.aggregate(rows)
    assert list(agg) == ["sb3_sac", "crossq"]
    assert agg["sb3_sac"]["steps_per_s"] == pytest.approx(50.0)
    assert agg["sb3_sac"]["speedup_vs_sb3_sac"] == pytest.approx(1.0)
    assert agg["crossq"]["speedup_vs_sb3_sac_wall"] == pytest.approx(110.0 / 50.0)
    assert agg["crossq"]["speedup_vs_sb3_sac"] == pytest.approx(100.0 / 55.0)  # per CPU-s
    assert agg["crossq"]["returns_by_step"] == {"5000": 2000.0, "10000": 3000.0}
    assert agg["crossq"]["final_return"] == pytest.approx(3000.0)
    assert agg["crossq"]["seeds"] == [0, 1]
    rec = {"agents": agg, "env": "HalfCheetah-v5", "steps": 10000, "seeds": [0, 1],
           "workers": 2, "eval_episodes": 5, "written_utc": "now", "command": "python x",
           "machine": {"cpu": "cpu", "cpu_count": 2}}
    md = engine.render_section(rec)
    assert md.startswith(engine.BEGIN) and md.endswith(engine.END)
    assert "| SBX CrossQ [256, 256] | 100.0 | 1.82× | 110.0 ± 14.1 | 2.20× |" in md
    assert "Return @ 5k" in md and "Return @ 10k" in md


def test_compile_excess_counts_slow_steps_per_phase(engine):
    random_phase = [0.001] * 10 + [0.5]  # a slow first random step: 0.499 s of excess
    train = [0.01] * 20 + [3.0]  # the first update compiles: 2.99 s of excess
    assert engine.compile_excess(random_phase + train, 11) == pytest.approx(0.499 + 2.99)
    assert engine.compile_excess([0.01] * 5, 0) == 0.0
