"""Shared fast presets for end-to-end tests (tiny nets, the PointGoal toy task)."""

from __future__ import annotations

import numpy as np

POINT_GOAL = "rewardlab.envs.toy:PointGoal-v0"


def fast_overrides(algorithm: str = "pebble", total_steps: int = 3000) -> list[str]:
    """Overrides that train in well under a minute on one core."""
    common = [
        f"algorithm={algorithm}", f"env.id={POINT_GOAL}", f"total_steps={total_steps}",
        "feedback.segment_len=25", "feedback.total_budget=100", "feedback.queries_per_round=20",
        "reward_model.hidden_sizes=[64, 64]", "eval.episodes=5", "progress_bar=false",
        "torch_threads=1",
    ]
    if algorithm == "pebble":
        return common + [
            "pebble.unsupervised_steps=500", "pebble.sac.learning_starts=500",
            "pebble.sac.net_arch=[64, 64]", "feedback.first_round_at=500",
            "feedback.round_every=500", "eval.every=1000", "checkpoint_every=1000",
        ]
    return common + [
        "ppo.n_envs=4", "ppo.n_steps=256", "feedback.first_round_at=1024",
        "feedback.round_every=1024", "eval.every=4096", "checkpoint_every=4096",
    ]


def permutation_p_value(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                        n_perm: int = 20000) -> float:
    """One-sided permutation test p-value of mean(a) > mean(b) (with the +1 correction)."""
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    perms = np.argsort(rng.random((n_perm, pooled.size)), axis=1)
    shuffled = pooled[perms]
    diffs = shuffled[:, : a.size].mean(1) - shuffled[:, a.size :].mean(1)
    return float((1 + (diffs >= observed).sum()) / (n_perm + 1))
