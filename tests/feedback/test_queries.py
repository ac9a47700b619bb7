import numpy as np
import pytest
from pydantic import ValidationError

from rewardlab.config import FeedbackSchedule
from rewardlab.data.transitions import TransitionLog
from rewardlab.feedback.queries import binary_entropy, select_queries
from rewardlab.feedback.rounds import (
    next_round_step,
    round_size,
    round_step,
    sample_candidate_pairs,
    total_rounds,
)


def test_disagreement_picks_largest_member_std():
    probs = np.array([[0.5, 0.1, 0.9, 0.5], [0.5, 0.9, 0.1, 0.6]])
    idx = select_queries("disagreement", 2, 4, np.random.default_rng(0), probs)
    assert set(idx.tolist()) == {1, 2}


def test_entropy_picks_most_uncertain():
    probs = np.array([[0.5, 0.99, 0.01, 0.7], [0.5, 0.99, 0.01, 0.7]])
    idx = select_queries("entropy", 1, 4, np.random.default_rng(0), probs)
    assert idx.tolist() == [0]
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(np.log(2))


def test_uniform_is_seeded_and_without_replacement():
    a = select_queries("uniform", 10, 50, np.random.default_rng(1))
    b = select_queries("uniform", 10, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10


def test_schedule_is_a_fixed_grid_that_spends_the_budget():
    s = FeedbackSchedule(total_budget=50, queries_per_round=20, round_every=100, first_round_at=10)
    assert total_rounds(s) == 3
    assert [round_step(s, r) for r in range(3)] == [10, 110, 210]
    assert [round_size(s, r) for r in range(4)] == [20, 20, 10, 0]
    assert [next_round_step(s, done) for done in range(4)] == [10, 110, 210, None]


def test_schedule_validation_names_the_problem():
    with pytest.raises(ValidationError, match="queries_per_round"):
        FeedbackSchedule(total_budget=5, queries_per_round=10)


def _log_of_episodes(n_episodes: int, length: int, identical: bool = False) -> TransitionLog:
    """A log of ``n_episodes`` episodes of ``length`` steps (all the same if ``identical``)."""
    rng = np.random.default_rng(0)
    log = TransitionLog(n_episodes * length, 1, 3, 2)
    episode = rng.normal(size=(length, 5)).astype(np.float32)
    for _ in range(n_episodes):
        if not identical:
            episode = rng.normal(size=(length, 5)).astype(np.float32)
        for t in range(length):
            log.add(episode[t : t + 1, :3], episode[t : t + 1, 3:], np.zeros(1),
                    np.array([t == length - 1]))
    return log


def test_candidates_never_pair_a_segment_with_itself_or_a_copy():
    # 40 episodes of exactly one window each (segment = episode, as Reacher's default run),
    # a pool of 200 pairs: far more pairs than windows, so windows repeat across pairs
    log = _log_of_episodes(40, 50)
    windows, pairs = sample_candidate_pairs(log, 200, 50, np.random.default_rng(1))
    assert pairs.shape == (200, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert len(windows["episode_ids"]) == 40  # each distinct window gathered once
    left, right = windows["obs"][pairs[:, 0]], windows["obs"][pairs[:, 1]]
    assert not (left == right).all(axis=(1, 2)).any()
    # with enough windows, every window is used at most once
    log = _log_of_episodes(10, 60)
    windows, pairs = sample_candidate_pairs(log, 50, 5, np.random.default_rng(2))
    assert len(np.unique(pairs)) == pairs.size == 100


def test_identical_episodes_are_never_compared():
    log = _log_of_episodes(3, 10, identical=True)
    with pytest.raises(ValueError, match="identical"):
        sample_candidate_pairs(log, 20, 10, np.random.default_rng(0))
