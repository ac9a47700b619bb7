"""Tests of the B-Pref scripted teachers (Lee et al. 2021, Sec. 3.2)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from rewardlab.config import TEACHER_PRESETS, TeacherConfig, teacher_preset
from rewardlab.errors import ConfigError, RecordError
from rewardlab.feedback.teachers import ScriptedTeacher, discounted_segment_returns, label_queries
from rewardlab.types import Label

LEFT, RIGHT, EQUAL, SKIP = int(Label.LEFT), int(Label.RIGHT), int(Label.EQUAL), int(Label.SKIP)


def _tolerance(p: float, n: int) -> float:
    """Five binomial standard errors (plus a hair so p in {0, 1} is exact)."""
    return 5.0 * math.sqrt(p * (1.0 - p) / n) + 1e-12


def _random_rewards(seed: int, batch: int = 4000, length: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 2, length))


# --------------------------------------------------------------------------------------------
# oracle


def test_oracle_picks_higher_return_and_ties_go_left() -> None:
    rewards = _random_rewards(0)
    labels = label_queries(rewards, TEACHER_PRESETS["oracle"], np.random.default_rng(0))
    assert labels.dtype == np.int8 and labels.shape == (rewards.shape[0],)
    sums = rewards.sum(axis=2)
    expected = np.where(sums[:, 0] >= sums[:, 1], LEFT, RIGHT)
    np.testing.assert_array_equal(labels, expected)

    tied = np.zeros((3, 2, 4))
    tied[1] = 1.0
    tied[2, :, 0] = -2.5
    ties = label_queries(tied, TeacherConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(ties, [LEFT, LEFT, LEFT])


def test_oracle_never_skips_or_answers_equal_even_with_negative_returns() -> None:
    rewards = -np.abs(_random_rewards(1))  # all returns negative
    for margin in (0.0, 5.0, -5.0):
        labels = label_queries(rewards, TeacherConfig(), np.random.default_rng(0), margin)
        assert set(np.unique(labels).tolist()) <= {LEFT, RIGHT}


def test_empty_batch() -> None:
    labels = label_queries(
        np.zeros((0, 2, 5)), TEACHER_PRESETS["stochastic"], np.random.default_rng(0)
    )
    assert labels.shape == (0,) and labels.dtype == np.int8


# --------------------------------------------------------------------------------------------
# stochastic (Bradley-Terry)


def test_stochastic_left_frequency_matches_sigmoid_per_bucket() -> None:
    beta = 1.0
    config = teacher_preset("stochastic")
    assert config.beta == beta
    diffs = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    n, length = 21000, 5
    rng = np.random.default_rng(123)
    bucket = rng.integers(0, diffs.size, size=n)
    base = rng.normal(size=(n, length))  # same per-step level for both sides
    rewards = np.stack([base, base], axis=1)
    rewards[:, 0, -1] += diffs[bucket]  # R_left - R_right = diff exactly (gamma = 1)
    labels = label_queries(rewards, config, np.random.default_rng(7))
    assert set(np.unique(labels).tolist()) <= {LEFT, RIGHT}
    for k, diff in enumerate(diffs):
        in_bucket = bucket == k
        count = int(in_bucket.sum())
        p = 1.0 / (1.0 + math.exp(-beta * diff))
        freq = float(np.mean(labels[in_bucket] == LEFT))
        assert abs(freq - p) < _tolerance(p, count), (diff, freq, p, count)


def test_noisy_alias_and_large_differences_are_stable() -> None:
    config = teacher_preset("Noisy")
    assert config == TEACHER_PRESETS["stochastic"]
    rewards = np.zeros((200, 2, 3))
    rewards[:100, 0, 0] = 1e6  # left hugely better
    rewards[100:, 1, 0] = 1e6  # right hugely better
    labels = label_queries(rewards, config, np.random.default_rng(0))
    np.testing.assert_array_equal(labels[:100], LEFT)
    np.testing.assert_array_equal(labels[100:], RIGHT)


# --------------------------------------------------------------------------------------------
# mistake


def test_mistake_flip_frequency() -> None:
    rewards = _random_rewards(2, batch=20000)
    oracle = label_queries(rewards, teacher_preset("oracle"), np.random.default_rng(0))
    config = teacher_preset("mistake")
    assert config.eps_mistake == 0.1
    labels = label_queries(rewards, config, np.random.default_rng(1))
    assert set(np.unique(labels).tolist()) <= {LEFT, RIGHT}
    flipped = float(np.mean(labels != oracle))
    assert abs(flipped - 0.1) < _tolerance(0.1, rewards.shape[0])


def test_mistake_one_always_flips() -> None:
    rewards = _random_rewards(3, batch=500)
    oracle = label_queries(rewards, TeacherConfig(), np.random.default_rng(0))
    labels = label_queries(rewards, TeacherConfig(eps_mistake=1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(labels, np.where(oracle == LEFT, RIGHT, LEFT))


# --------------------------------------------------------------------------------------------
# skip and equal


def test_skip_exactly_low_return_queries() -> None:
    rewards = _random_rewards(4, length=5)
    config = teacher_preset("skip")
    margin = 12.0
    labels = label_queries(rewards, config, np.random.default_rng(0), margin=margin)
    sums = rewards.sum(axis=2)
    should_skip = sums.max(axis=1) <= config.eps_skip * margin
    assert 0 < should_skip.sum() < should_skip.size  # the case is non-trivial
    np.testing.assert_array_equal(labels == SKIP, should_skip)
    oracle = label_queries(rewards, TeacherConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(labels[~should_skip], oracle[~should_skip])


def test_skip_boundary_matches_bpref() -> None:
    """B-Pref keeps a pair only if the larger return is > the threshold: equal is skipped."""
    config = TeacherConfig(eps_skip=0.5)  # threshold 0.5 * 4.0 = 2.0 exactly
    rewards = np.zeros((4, 2, 2))
    rewards[0, 0] = [1.0, 1.0]  # max return exactly 2.0 -> skipped
    rewards[1, 1] = [1.0, 1.0 + 2.0**-40]  # just above -> kept
    rewards[2, :] = [1.0, 0.5]  # both 1.5 -> skipped
    rewards[3, 1] = [1.5, 1.0]  # right 2.5 -> kept, answered RIGHT
    labels = label_queries(rewards, config, np.random.default_rng(0), margin=4.0)
    np.testing.assert_array_equal(labels, [SKIP, RIGHT, SKIP, RIGHT])
    teacher = ScriptedTeacher(config)
    teacher.set_margin(40.0, segment_len=5, max_episode_steps=100)  # margin 2.0, thres 1.0
    assert teacher.thres_skip == 1.0
    at = np.zeros((1, 2, 2))
    at[0, 0] = [0.5, 0.5]
    assert teacher.label(at).tolist() == [SKIP]
    assert teacher.stats() == {"asked": 1, "answered": 0, "skipped": 1, "equal": 0}


def test_equal_boundary_matches_bpref() -> None:
    """B-Pref answers equal only if |R_0 - R_1| < threshold (strict)."""
    config = TeacherConfig(eps_equal=0.25)  # threshold 0.25 * 4.0 = 1.0 exactly
    rewards = np.zeros((3, 2, 2))
    rewards[0, 0] = [0.5, 0.5]  # difference exactly 1.0 -> not equal, LEFT
    rewards[1, 1] = [0.5, 0.5 - 2.0**-40]  # just below -> EQUAL
    labels = label_queries(rewards, config, np.random.default_rng(0), margin=4.0)
    np.testing.assert_array_equal(labels, [LEFT, EQUAL, EQUAL])


def _bpref_get_label(r_t_1, r_t_2, thres_skip, thres_equal, gamma):  # noqa: ANN001, ANN202
    """Transcription of B-Pref's ``RewardModel.get_label`` (rll-research/BPref,
    reward_model.py) for a rational teacher without mistakes; ``r_t_i`` are ``(batch, T, 1)``.
    Returns the kept indices and their labels (0 first better, 1 second better, -1 equal)."""
    keep = np.arange(r_t_1.shape[0])
    sum_r_t_1 = np.sum(r_t_1, axis=1)
    sum_r_t_2 = np.sum(r_t_2, axis=1)
    if thres_skip > 0:
        max_r_t = np.maximum(sum_r_t_1, sum_r_t_2)
        max_index = (max_r_t > thres_skip).reshape(-1)
        keep, r_t_1, r_t_2 = keep[max_index], r_t_1[max_index], r_t_2[max_index]
        sum_r_t_1 = np.sum(r_t_1, axis=1)
        sum_r_t_2 = np.sum(r_t_2, axis=1)
    margin_index = (np.abs(sum_r_t_1 - sum_r_t_2) < thres_equal).reshape(-1)
    seg_size = r_t_1.shape[1]
    temp_r_t_1 = r_t_1.copy()
    temp_r_t_2 = r_t_2.copy()
    for index in range(seg_size - 1):
        temp_r_t_1[:, : index + 1] *= gamma
        temp_r_t_2[:, : index + 1] *= gamma
    sum_r_t_1 = np.sum(temp_r_t_1, axis=1)
    sum_r_t_2 = np.sum(temp_r_t_2, axis=1)
    labels = 1 * (sum_r_t_1 < sum_r_t_2)
    labels[margin_index] = -1
    return keep, labels.reshape(-1)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_matches_bpref_get_label_on_integer_returns(gamma: float) -> None:
    """Integer rewards put many segment returns exactly on the thresholds and on ties."""
    rng = np.random.default_rng(11)
    rewards = rng.integers(-2, 3, size=(3000, 2, 4)).astype(np.float64)
    config = TeacherConfig(eps_skip=0.5, eps_equal=0.25, gamma=gamma)
    margin = 4.0  # thresholds 2.0 (skip) and 1.0 (equal), exactly representable
    ours = label_queries(rewards, config, np.random.default_rng(0), margin=margin)
    keep, theirs = _bpref_get_label(
        rewards[:, 0, :, None], rewards[:, 1, :, None], 2.0, 1.0, gamma
    )
    expected = np.full(rewards.shape[0], SKIP)
    expected[keep] = np.select([theirs == -1, theirs == 1], [EQUAL, RIGHT], LEFT)
    sums = rewards.sum(axis=2)
    assert np.any(sums.max(axis=1) == 2.0) and np.any(np.abs(sums[:, 0] - sums[:, 1]) == 1.0)
    assert {SKIP, EQUAL, LEFT, RIGHT} <= set(expected.tolist())
    np.testing.assert_array_equal(ours, expected)


def test_skip_inactive_without_positive_threshold() -> None:
    rewards = -np.abs(_random_rewards(5))
    config = teacher_preset("skip")
    for margin in (0.0, -10.0):
        labels = label_queries(rewards, config, np.random.default_rng(0), margin=margin)
        assert not np.any(labels == SKIP)


def test_equal_exactly_close_return_queries() -> None:
    rewards = _random_rewards(6, length=5)
    config = teacher_preset("equal")
    margin = 10.0
    labels = label_queries(rewards, config, np.random.default_rng(0), margin=margin)
    sums = rewards.sum(axis=2)
    should_equal = np.abs(sums[:, 0] - sums[:, 1]) < config.eps_equal * margin
    assert 0 < should_equal.sum() < should_equal.size
    np.testing.assert_array_equal(labels == EQUAL, should_equal)
    oracle = label_queries(rewards, TeacherConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(labels[~should_equal], oracle[~should_equal])


def test_skip_overrides_equal() -> None:
    rewards = np.zeros((2, 2, 3))
    rewards[1, :, 0] = 5.0  # equal and high
    config = TeacherConfig(eps_skip=0.1, eps_equal=0.1)
    labels = label_queries(rewards, config, np.random.default_rng(0), margin=10.0)
    np.testing.assert_array_equal(labels, [SKIP, EQUAL])


# --------------------------------------------------------------------------------------------
# myopic


def test_myopic_prefers_recent_reward() -> None:
    rewards = np.zeros((1, 2, 5))
    rewards[0, 0, 0] = 1.0  # left: reward early, larger sum
    rewards[0, 1, -1] = 0.9  # right: reward late, smaller sum
    config = teacher_preset("myopic")
    assert config.gamma == 0.9
    assert label_queries(rewards, TeacherConfig(), np.random.default_rng(0))[0] == LEFT
    assert label_queries(rewards, config, np.random.default_rng(0))[0] == RIGHT
    returns = discounted_segment_returns(rewards, 0.9)
    np.testing.assert_allclose(returns, [[0.9**4, 0.9]])


def test_discounted_segment_returns_hand_computed() -> None:
    rewards = np.array([[[1.0, 2.0, 3.0], [4.0, 0.0, -1.0]]])
    returns = discounted_segment_returns(rewards, 0.5)
    assert returns.shape == (1, 2) and returns.dtype == np.float64
    np.testing.assert_allclose(returns, [[0.25 * 1 + 0.5 * 2 + 3, 0.25 * 4 + 0 - 1]])
    np.testing.assert_allclose(discounted_segment_returns(rewards, 1.0), rewards.sum(axis=2))
    with pytest.raises(ConfigError, match="teacher.gamma"):
        discounted_segment_returns(rewards, 0.0)


# --------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta", 0.0),
        ("beta", -1.0),
        ("beta", math.nan),
        ("beta", "big"),
        ("gamma", 1.5),
        ("gamma", 0.0),
        ("eps_mistake", 1.1),
        ("eps_mistake", -0.1),
        ("eps_skip", -0.1),
        ("eps_skip", math.inf),
        ("eps_equal", -1.0),
        ("name", ""),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"teacher\.{field}"):
        TeacherConfig(**{field: value})


def test_config_message_example_and_valid_values() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.gamma: must be in \(0, 1\], got 1\.5"):
        TeacherConfig(gamma=1.5)
    config = TeacherConfig(beta=2, gamma=1, eps_mistake=1)
    assert isinstance(config.beta, float) and config.beta == 2.0
    assert TeacherConfig().rational and not config.rational


def test_presets_change_one_parameter_each() -> None:
    oracle = TeacherConfig()
    assert set(TEACHER_PRESETS) == {"oracle", "stochastic", "mistake", "skip", "equal", "myopic"}
    for name, config in TEACHER_PRESETS.items():
        assert config.name == name
        changed = [
            f
            for f in ("beta", "gamma", "eps_mistake", "eps_skip", "eps_equal")
            if getattr(config, f) != getattr(oracle, f)
        ]
        assert len(changed) == (0 if name == "oracle" else 1), (name, changed)


def test_unknown_preset_lists_allowed_names() -> None:
    with pytest.raises(ConfigError) as info:
        teacher_preset("grumpy")
    message = str(info.value)
    assert "grumpy" in message
    for name in (*TEACHER_PRESETS, "noisy"):
        assert name in message


def test_preset_overrides() -> None:
    config = teacher_preset("mistake", eps_mistake=0.3)
    assert config.eps_mistake == 0.3 and config.name == "mistake"
    assert teacher_preset(name="myopic", gamma=0.5).gamma == 0.5
    with pytest.raises(ConfigError, match=r"teacher\.eps_mistake"):
        teacher_preset("mistake", eps_mistake=3.0)
    with pytest.raises(ConfigError, match=r"teacher\.temperature"):
        teacher_preset("oracle", temperature=1.0)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 3, 5)),
        np.zeros((4, 2)),
        np.zeros((4, 2, 0)),
        np.zeros((2, 4, 2, 5)),
        np.zeros((4, 2, 5), dtype=bool),
        np.full((4, 2, 5), np.nan),
    ],
)
def test_bad_rewards_raise(bad: np.ndarray) -> None:
    with pytest.raises(RecordError, match="true_rewards"):
        label_queries(bad, TeacherConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError):
        ScriptedTeacher(seed=0).label(bad)


def test_bad_margin_raises() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.margin"):
        label_queries(np.zeros((1, 2, 3)), TeacherConfig(), np.random.default_rng(0), math.inf)


def test_integer_rewards_accepted() -> None:
    rewards = np.array([[[1, 2], [0, 0]], [[0, 0], [3, 0]]], dtype=np.int64)
    labels = label_queries(rewards, TeacherConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(labels, [LEFT, RIGHT])


# --------------------------------------------------------------------------------------------
# ScriptedTeacher: seeding, margin, counters


def test_same_seed_same_labels() -> None:
    rewards = _random_rewards(8, batch=1000)
    config = teacher_preset("stochastic", eps_mistake=0.2)
    a = ScriptedTeacher(config, seed=11).label(rewards)
    b = ScriptedTeacher(config, seed=11).label(rewards)
    c = ScriptedTeacher(config, seed=12).label(rewards)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    d = label_queries(rewards, config, np.random.default_rng(11))
    np.testing.assert_array_equal(a, d)


def test_set_margin_and_thresholds() -> None:
    teacher = ScriptedTeacher("skip", seed=0)
    assert teacher.teacher_id == "skip" and teacher.margin == 0.0
    margin = teacher.set_margin(mean_episode_return=500.0, segment_len=50, max_episode_steps=1000)
    assert margin == pytest.approx(25.0) and teacher.margin == pytest.approx(25.0)
    assert teacher.thres_skip == pytest.approx(2.5) and teacher.thres_equal == 0.0
    with pytest.raises(ConfigError, match=r"teacher\.segment_len"):
        teacher.set_margin(1.0, 0, 1000)
    with pytest.raises(ConfigError, match=r"teacher\.max_episode_steps"):
        teacher.set_margin(1.0, 50, 0)
    with pytest.raises(ConfigError, match=r"teacher\.margin"):
        teacher.set_margin(math.nan, 50, 1000)


def test_counters() -> None:
    config = TeacherConfig(name="both", eps_skip=0.1, eps_equal=0.1)
    teacher = ScriptedTeacher(config, seed=3, teacher_id="sim-1")
    assert teacher.teacher_id == "sim-1"
    assert teacher.stats() == {"asked": 0, "answered": 0, "skipped": 0, "equal": 0}
    teacher.margin = 10.0
    rewards = _random_rewards(9, batch=300, length=4)
    labels = np.concatenate([teacher.label(rewards[:100]), teacher.label(rewards[100:])])
    n_skip = int(np.sum(labels == SKIP))
    n_equal = int(np.sum(labels == EQUAL))
    assert n_skip > 0 and n_equal > 0
    assert teacher.stats() == {
        "asked": 300,
        "answered": 300 - n_skip,
        "skipped": n_skip,
        "equal": n_equal,
    }


def test_teacher_constructor_validation() -> None:
    with pytest.raises(ConfigError, match=r"teacher\.seed"):
        ScriptedTeacher(seed=-1)
    with pytest.raises(ConfigError, match=r"teacher\.teacher_id"):
        ScriptedTeacher(teacher_id="")
    with pytest.raises(ConfigError, match="allowed"):
        ScriptedTeacher("grumpy")


def test_module_does_not_import_torch() -> None:
    code = "import sys, rewardlab.feedback.teachers; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
