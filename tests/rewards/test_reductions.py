"""Conservative ensemble reductions (Coste et al. 2023): hand-computed values."""

import numpy as np
import pytest

from rewardlab.config import RewardModelConfig
from rewardlab.rewards.model import RewardModel

MEMBERS = np.array([[1.0, -2.0], [3.0, 0.0], [2.0, 4.0]])  # (K=3, N=2)


@pytest.mark.parametrize(("reduction", "expected"), [
    ("mean", [2.0, 2.0 / 3.0]),
    ("min", [1.0, -2.0]),
    ("mean_minus_std", [2.0 - 0.5 * np.sqrt(2 / 3), 2 / 3 - 0.5 * np.sqrt(56 / 9)]),
    ("mean_minus_var", [2.0 - 0.5 * 2 / 3, 2 / 3 - 0.5 * 56 / 9]),
])
def test_reductions(reduction, expected):
    model = RewardModel(2, 1, RewardModelConfig(
        members=3, hidden_sizes=(4,), reduction=reduction, k_std=0.5))
    np.testing.assert_allclose(model.reduce(MEMBERS), expected, rtol=1e-12)


def test_min_is_never_above_mean():
    rng = np.random.default_rng(0)
    members = rng.normal(size=(5, 100))
    model = RewardModel(2, 1, RewardModelConfig(members=5, hidden_sizes=(4,), reduction="min"))
    assert np.all(model.reduce(members) <= members.mean(0))
