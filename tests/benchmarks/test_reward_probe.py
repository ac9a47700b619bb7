"""benchmarks/reward_probe.py: the table aggregates every variant and label count it measured."""

from __future__ import annotations

import numpy as np
import pytest


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


def test_flip_labels_flips_decided_labels_only_at_about_the_fraction(probe):
    labels = np.array([0, 1, 2] * 2000, dtype=np.int8)
    flipped = probe.flip_labels(labels, 0.1, seed=0)
    changed = flipped != labels
    assert not changed[labels == 2].any()  # EQUAL answers stay
    assert 0.08 < changed[labels < 2].mean() < 0.12
    assert set(flipped[changed & (labels == 0)]) == {1}
    assert (probe.flip_labels(labels, 0.0, seed=0) == labels).all()
    with pytest.raises(ValueError, match="--flip"):
        probe.flip_labels(labels, 1.5, seed=0)


def test_render_lists_only_the_variants_measured_and_names_the_flips(probe):
    rows = [{"labels": 100, "variant": v, "seed": 0, "accuracy": 0.8, "fit_s": 1.0}
            for v in ("run's own (default)", "lapse_rate=0.2")]
    record = {"command": "python benchmarks/reward_probe.py RUN --flip 0.1", "run_command": "r",
              "seeds": [0], "date": "d", "machine": {"cpu": "c"}, "rows": rows, "note": "n",
              "section": "reward_probe_flip", "flip": 0.1, "flip_seed": 3}
    text = probe.render(record)
    begin, end = probe.section_markers("reward_probe_flip")
    assert text.startswith(begin) and text.endswith(end)
    assert "with 10% of the labels flipped" in text and "draws seeded 3" in text
    assert "| lapse_rate=0.2 | 0.800 (0.800-0.800), 1.0 s |" in text
    assert "max_epochs=10" not in text
