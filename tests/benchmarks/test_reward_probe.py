"""benchmarks/reward_probe.py: the table aggregates every variant and label count it measured."""

from __future__ import annotations


def test_render_aggregates_over_seeds(probe):
    rows = [
        {"labels": n, "variant": v, "seed": s, "accuracy": 0.5 + 0.1 * s, "fit_s": 2.0}
        for n in (40, 200) for v in probe.VARIANTS for s in (0, 1)
    ]
    record = {"command": "python benchmarks/reward_probe.py RUN", "run_command": "rewardlab train",
              "seeds": [0, 1], "date": "2026-12-02", "machine": {"cpu": "test cpu"},
              "rows": rows, "note": "note"}
    text = probe.render(record)
    begin, end = probe.section_markers("reward_probe")
    assert text.startswith(begin) and text.endswith(end)
    assert "| 40 labels | 200 labels |" in text
    for name in probe.VARIANTS:
        assert f"| {name} | 0.550 (0.500-0.600), 2.0 s | 0.550 (0.500-0.600), 2.0 s |" in text
