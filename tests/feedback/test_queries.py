import numpy as np
import pytest
from pydantic import ValidationError

from rewardlab.config import FeedbackSchedule
from rewardlab.feedback.queries import binary_entropy, select_queries


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


def test_schedule_rounds_and_budget():
    s = FeedbackSchedule(total_budget=50, queries_per_round=20, round_every=100, first_round_at=10)
    assert not s.round_due(5, 0, None)
    assert s.round_due(10, 0, None)
    assert not s.round_due(50, 20, 10)
    assert s.round_due(110, 20, 10)
    assert s.round_size(40) == 10
    assert not s.round_due(1000, 50, 500)


def test_schedule_validation_names_the_problem():
    with pytest.raises(ValidationError, match="queries_per_round"):
        FeedbackSchedule(total_budget=5, queries_per_round=10)
