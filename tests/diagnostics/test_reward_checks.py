"""random_pair_accuracy: the ensemble's preferences on random pairs of experience vs gold."""

from __future__ import annotations

import numpy as np

from rewardlab.data.transitions import TransitionLog
from rewardlab.diagnostics.reward_checks import random_pair_accuracy


class _Ensemble:
    """Two members that prefer the segment with the larger sum of obs[..., 0] (or smaller)."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def preference_probs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        score = self.sign * obs[..., 0].sum(axis=-1)  # (n, 2)
        p_left = 1.0 / (1.0 + np.exp(score[:, 1] - score[:, 0]))
        return np.stack([p_left, p_left])  # (members, n)


def _log(gold_is_obs: bool) -> TransitionLog:
    rng = np.random.default_rng(0)
    log = TransitionLog(400, 1, 2, 1)
    for t in range(400):
        obs = rng.normal(size=(1, 2)).astype(np.float32)
        reward = obs[:, 0] if gold_is_obs else np.full(1, np.nan)
        log.add(obs, np.zeros((1, 1), np.float32), reward, np.array([t % 20 == 19]))
    return log


def test_right_and_reversed_ensembles_score_one_and_zero():
    log = _log(gold_is_obs=True)
    rng = np.random.default_rng(1)
    assert random_pair_accuracy(_Ensemble(1.0), log, 200, 5, rng) == 1.0
    assert random_pair_accuracy(_Ensemble(-1.0), log, 200, 5, rng) == 0.0


def test_no_gold_reward_gives_nan():
    log = _log(gold_is_obs=False)
    acc = random_pair_accuracy(_Ensemble(1.0), log, 50, 5, np.random.default_rng(0))
    assert np.isnan(acc)
