import math

import numpy as np
import pytest
from scipy import stats

from rewardlab.diagnostics.reward_eval import (
    canonicalize,
    epic_distance,
    expected_calibration_error,
    rank_correlation,
)

# ---------------------------------------------------------------------------- calibration


def test_ece_hand_computed():
    probs = np.array([0.05, 0.15, 0.82, 0.88])
    outcomes = np.array([0.0, 1.0, 1.0, 1.0])
    # bins 0, 1, 8, 8: (|0 - .05| + |1 - .15| + 2 |1 - .85|) / 4
    assert expected_calibration_error(probs, outcomes) == pytest.approx(0.3)
    # NaN outcomes (skipped queries) are ignored, whatever their probs
    probs_nan = np.concatenate([probs, [np.nan, 0.5]])
    outcomes_nan = np.concatenate([outcomes, [np.nan, np.nan]])
    assert expected_calibration_error(probs_nan, outcomes_nan) == pytest.approx(0.3)
    assert expected_calibration_error([0.0, 1.0], [0.0, 1.0]) == 0.0  # edges are binned
    assert math.isnan(expected_calibration_error([0.3], [np.nan]))


def test_ece_calibrated_vs_overconfident():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.03
    y_flat = (rng.uniform(size=p.size) < 0.5).astype(float)
    overconfident = np.where(rng.uniform(size=p.size) < 0.5, 0.95, 0.05)
    assert expected_calibration_error(overconfident, y_flat) == pytest.approx(0.45, abs=0.02)


@pytest.mark.parametrize(
    ("probs", "outcomes", "n_bins", "match"),
    [
        ([0.5, 1.2], [0.0, 1.0], 10, "probs:"),
        ([0.5, 0.5], [0.0, 2.0], 10, "outcomes:"),
        ([0.5, 0.5], [0.0], 10, "outcomes:"),
        ([0.5, 0.5], [0.0, 1.0], 0, "n_bins:"),
    ],
)
def test_ece_rejects_bad_input(probs, outcomes, n_bins, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(np.array(probs), np.array(outcomes), n_bins)


# ---------------------------------------------------------------------------- ranking


def test_rank_correlation():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=30)
    proxy = gold + rng.normal(scale=0.5, size=30)
    assert rank_correlation(proxy, gold) == pytest.approx(stats.spearmanr(proxy, gold)[0])
    assert rank_correlation(np.exp(gold), gold) == pytest.approx(1.0)  # monotone transform
    assert rank_correlation(-gold, gold) == pytest.approx(-1.0)
    assert math.isnan(rank_correlation([1.0, 2.0], [1.0, 2.0]))
    assert math.isnan(rank_correlation([1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, np.nan]))
    assert math.isnan(rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="gold_returns:"):
        rank_correlation([1.0, 2.0, 3.0], [1.0, 2.0])


# ---------------------------------------------------------------------------- EPIC

OBS, ACT, GAMMA = 3, 2, 0.9
_W = np.random.default_rng(42).normal(size=(4, OBS))


def reward(s, a, s2):
    return s @ _W[0] + np.tanh(a @ np.array([1.0, -2.0])) * s[:, 0] + 0.5 * np.cos(s2 @ _W[1])


def other_reward(s, a, s2):  # unrelated to ``reward``
    return np.sin(3.0 * (s2 @ _W[2])) * a[:, 1] + (s @ _W[3]) ** 2


def potential(s):
    return np.sin(s @ _W[2]) + s[:, 0] ** 2


def shaped(s, a, s2):
    return 3.7 * reward(s, a, s2) + GAMMA * potential(s2) - potential(s)


def _sample(n, m, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, OBS))
    a = rng.uniform(-1, 1, size=(n, ACT))
    s2 = s + 0.3 * rng.normal(size=(n, OBS))
    return s, a, s2, rng.normal(size=(m, OBS)), rng.uniform(-1, 1, size=(m, ACT))


def test_canonicalize_matches_direct_monte_carlo():
    s, a, s2, sc, ac = _sample(3, 4)
    m = 4

    def g(x):  # E over the canonical pairs (a_canon[k], s_canon[(k + M//2) % M])
        return np.mean([reward(x[None], ac[k][None], sc[(k + m // 2) % m][None])[0]
                        for k in range(m)])

    mean_all = np.mean([g(sc[j]) for j in range(m)])
    expected = [reward(s[i][None], a[i][None], s2[i][None])[0] + GAMMA * g(s2[i]) - g(s[i])
                - GAMMA * mean_all for i in range(3)]
    got = canonicalize(reward, s, a, s2, sc, ac, GAMMA)
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(canonicalize(reward, s, a, s2, sc, ac, GAMMA, chunk_size=1), got)


def test_canonicalize_removes_shaping_and_constants():
    s, a, s2, sc, ac = _sample(50, 40)
    c = canonicalize(reward, s, a, s2, sc, ac, GAMMA)
    np.testing.assert_allclose(canonicalize(shaped, s, a, s2, sc, ac, GAMMA), 3.7 * c, atol=1e-9)
    const = canonicalize(lambda s, a, s2: np.full(len(s), 5.0), s, a, s2, sc, ac, GAMMA)
    np.testing.assert_allclose(const, 0.0, atol=1e-12)


def test_epic_distance_properties():
    s, a, s2, sc, ac = _sample(400, 200)
    args = (s, a, s2, sc, ac, GAMMA)
    d_self = epic_distance(reward, reward, *args)
    d_shaped = epic_distance(reward, shaped, *args)
    d_neg = epic_distance(reward, lambda *x: -reward(*x), *args)
    d_other = epic_distance(reward, other_reward, *args)
    assert d_self == pytest.approx(0.0, abs=1e-6)
    assert d_shaped < 0.05
    assert d_neg == pytest.approx(1.0, abs=1e-6)
    assert d_other > 0.3
    assert all(0.0 <= d <= 1.0 for d in (d_self, d_shaped, d_neg, d_other))
    assert epic_distance(reward, other_reward, *args) == pytest.approx(
        epic_distance(other_reward, reward, *args)
    )
    # a pure potential-shaping reward is equivalent to zero: correlation undefined
    assert math.isnan(
        epic_distance(reward, lambda s, a, s2: GAMMA * potential(s2) - potential(s), *args)
    )


def test_epic_supports_discrete_actions():
    rng = np.random.default_rng(3)
    s, s2, sc = rng.normal(size=(100, 2)), rng.normal(size=(100, 2)), rng.normal(size=(50, 2))
    a, ac = rng.integers(0, 3, 100), rng.integers(0, 3, 50)
    table = np.array([1.0, -1.0, 0.5])

    def r(s, a, s2):
        return table[a] * s[:, 0] + s2[:, 1]

    assert epic_distance(r, lambda *x: 2.0 * r(*x) + 1.0, s, a, s2, sc, ac) < 1e-6


def test_epic_rejects_bad_input():
    s, a, s2, sc, ac = _sample(10, 8)
    with pytest.raises(ValueError, match="s_canon:"):
        epic_distance(reward, reward, s, a, s2, sc[:, :2], ac)
    with pytest.raises(ValueError, match="a_canon:"):
        epic_distance(reward, reward, s, a, s2, sc, ac[:5])
    with pytest.raises(ValueError, match="s_next:"):
        canonicalize(reward, s, a, s2[:5], sc, ac, GAMMA)
    with pytest.raises(ValueError, match="gamma:"):
        epic_distance(reward, reward, s, a, s2, sc, ac, gamma=1.5)
    with pytest.raises(ValueError, match="reward_b:"):
        epic_distance(reward, lambda s, a, s2: np.zeros((len(s), 2)), s, a, s2, sc, ac)
    with pytest.raises(ValueError, match="reward_fn:"):
        canonicalize(lambda s, a, s2: np.full(len(s), np.nan), s, a, s2, sc, ac, GAMMA)
