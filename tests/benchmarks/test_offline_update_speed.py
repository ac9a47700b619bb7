"""benchmarks/offline_update_speed.py: the BENCHMARKS.md section rendered from a record."""

from __future__ import annotations


def test_render_shows_both_sides_and_the_speedup(update_speed):
    side = {"updates_per_s": 40.0, "updates_per_cpu_s": 80.0, "ms_per_update_cpu": 12.5}
    rec = {
        "command": "python benchmarks/offline_update_speed.py", "date_utc": "d",
        "machine": {"cpu": "X", "cpu_count": 2, "torch": "t"},
        "load_average_at_start": [1.0, 1.0, 1.0], "load_average_at_end": [2.0, 1.0, 1.0],
        "settings": {"batch_size": 256, "hidden_sizes": [256, 256], "obs_dim": 17,
                     "act_dim": 6, "updates": 600, "rounds": 6},
        "old": {**side, "implementation": "PyTorch"},
        "new": {"updates_per_s": 100.0, "updates_per_cpu_s": 200.0, "ms_per_update_cpu": 5.0,
                "implementation": "JAX", "compile_s": 3.0},
        "speedup": 2.5, "speedup_cpu": 2.5, "first_update_max_rel_diff": 1e-7,
    }
    text = update_speed.render(rec)
    assert text.startswith("<!-- offline_update_speed:begin -->")
    assert "| old (PyTorch) | 40.0 | 80.0 | 12.5 |" in text
    assert "| new (JAX) | 100.0 | 200.0 | 5.0 |" in text
    assert "Speedup 2.50x wall, 2.50x CPU" in text
