"""Text queries: candidate pairs of completions of one prompt, selection by the same methods as
control queries, and the scripted teachers answering by gold scores (one-step returns)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from rewardlab.errors import RecordError
from rewardlab.feedback.judges import answer_text_queries
from rewardlab.feedback.queries import same_prompt_pairs, select_queries
from rewardlab.feedback.teachers import (
    TEACHER_PRESETS,
    ScriptedTeacher,
    label_queries,
    one_step_rewards,
)
from rewardlab.store import FeedbackStore
from rewardlab.types import Label
from tests.helpers import text_segments

LEFT, RIGHT, EQUAL, SKIP = int(Label.LEFT), int(Label.RIGHT), int(Label.EQUAL), int(Label.SKIP)


def _unordered(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(min(a, b)), int(max(a, b))) for a, b in pairs}


def test_same_prompt_pairs_enumerates_every_pair_within_each_prompt() -> None:
    prompt_ids = np.array([2, 0, 2, 1, 0, 2, 3, 0])
    pairs = same_prompt_pairs(prompt_ids, np.random.default_rng(0))
    assert pairs.dtype == np.int64 and pairs.shape == (3 + 3 + 0 + 0, 2)
    expected = {
        p for g in np.unique(prompt_ids)
        for p in combinations(np.flatnonzero(prompt_ids == g).tolist(), 2)
    }
    assert _unordered(pairs) == expected  # each unordered pair once
    assert np.all(prompt_ids[pairs[:, 0]] == prompt_ids[pairs[:, 1]])
    assert same_prompt_pairs(np.zeros(0, dtype=np.int64), np.random.default_rng(0)).shape == (0, 2)


def test_same_prompt_pairs_sides_are_random_and_seeded() -> None:
    prompt_ids = np.repeat(np.arange(50), 4)  # 50 prompts x 4 samples: 300 pairs
    a = same_prompt_pairs(prompt_ids, np.random.default_rng(1))
    b = same_prompt_pairs(prompt_ids, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    left_first = np.mean(a[:, 0] < a[:, 1])
    assert 0.4 < left_first < 0.6  # a fair coin per pair: 300 draws, 5 standard errors ~ 0.14


def test_same_prompt_pairs_samples_without_replacement_and_drops_identical_texts() -> None:
    prompt_ids = np.array([0, 0, 0, 1, 1, 1])
    texts = ["good", "good", "bad", "x", "y", "z"]
    every = same_prompt_pairs(prompt_ids, np.random.default_rng(0), completions=texts)
    assert (0, 1) not in _unordered(every) and len(every) == 2 + 3
    some = same_prompt_pairs(prompt_ids, np.random.default_rng(0), n=3, completions=texts)
    assert len(some) == 3 and len(_unordered(some)) == 3 and _unordered(some) <= _unordered(every)
    assert len(same_prompt_pairs(prompt_ids, np.random.default_rng(0), n=99)) == 6
    with pytest.raises(ValueError, match="prompt_ids: expected a 1-d integer array"):
        same_prompt_pairs(np.array([0.5, 1.0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="completions: expected 6 completions"):
        same_prompt_pairs(prompt_ids, np.random.default_rng(0), completions=["a"])
    with pytest.raises(ValueError, match="n: must be None or an integer >= 0"):
        same_prompt_pairs(prompt_ids, np.random.default_rng(0), n=-1)


def test_selection_methods_work_on_a_text_pool_unchanged() -> None:
    """select_queries takes the pool size and the ensemble's P[left]: nothing text-specific."""
    rng = np.random.default_rng(0)
    pool = same_prompt_pairs(np.repeat(np.arange(10), 3), rng)  # 30 pairs
    probs = np.full((3, len(pool)), 0.5)
    probs[:, 7] = [0.1, 0.5, 0.9]  # the members disagree most on pair 7
    probs[:, 3] = [0.5, 0.5, 0.5]
    probs[:, 12] = [0.02, 0.03, 0.01]
    pick = select_queries("disagreement", 1, len(pool), rng, probs)
    assert pick.tolist() == [7]
    entropy = select_queries("entropy", len(pool), len(pool), rng, probs)
    assert entropy[-1] == 12  # the confident pair is asked last
    uniform = select_queries("uniform", 5, len(pool), rng)
    assert len(set(uniform.tolist())) == 5 and pool[uniform].shape == (5, 2)


def test_one_step_rewards_and_teachers_on_gold_scores() -> None:
    gold = np.array([[0.9, -0.2], [-0.5, 0.4], [0.3, 0.3], [0.1, 0.1000001]])
    rewards = one_step_rewards(gold)
    assert rewards.shape == (4, 2, 1) and rewards.dtype == np.float64
    oracle = ScriptedTeacher("oracle")
    assert oracle.label_text(gold).tolist() == [LEFT, RIGHT, LEFT, RIGHT]  # ties go left
    assert oracle.stats() == {"asked": 4, "answered": 4, "skipped": 0, "equal": 0}
    with pytest.raises(RecordError, match=r"gold: expected shape \(batch, 2\)"):
        oracle.label_text(gold[:, :1])
    with pytest.raises(RecordError, match="NaN"):
        oracle.label_text(np.array([[np.nan, 0.0]]))


def test_myopic_equals_oracle_on_one_step_queries() -> None:
    gold = np.random.default_rng(3).normal(size=(500, 2))
    oracle = label_queries(one_step_rewards(gold), TEACHER_PRESETS["oracle"],
                           np.random.default_rng(0))
    myopic = label_queries(one_step_rewards(gold), TEACHER_PRESETS["myopic"],
                           np.random.default_rng(0))
    np.testing.assert_array_equal(myopic, oracle)


def test_noisy_teachers_on_gold_scores() -> None:
    rng = np.random.default_rng(4)
    gold = rng.uniform(-1, 1, size=(4000, 2))
    truth = np.where(gold[:, 0] >= gold[:, 1], LEFT, RIGHT)
    mistake = ScriptedTeacher("mistake", seed=0).label_text(gold)
    assert abs(np.mean(mistake != truth) - 0.1) < 5 * np.sqrt(0.1 * 0.9 / 4000)
    equal = ScriptedTeacher("equal", seed=0)
    equal.set_margin(2.0, 1, 1)  # margin = mean gold of recent one-step samples
    labels = equal.label_text(gold)
    close = np.abs(gold[:, 0] - gold[:, 1]) < 0.1 * 2.0
    assert np.all((labels == EQUAL) == close)
    skip = ScriptedTeacher("skip", seed=0)
    skip.set_margin(5.0, 1, 1)  # threshold 0.5: skip unless the better completion beats it
    labels = skip.label_text(gold)
    assert np.all((labels == SKIP) == ~(gold.max(axis=1) > 0.5))
    stochastic = ScriptedTeacher("stochastic", seed=0).label_text(gold)
    p_left = 1 / (1 + np.exp(-(gold[:, 0] - gold[:, 1])))  # beta = 1, in gold units
    assert abs(np.mean(stochastic == LEFT) - p_left.mean()) < 5 * np.sqrt(0.25 / 4000)


def test_scripted_teacher_answers_stored_text_queries(tmp_path: Path) -> None:
    with FeedbackStore.open(tmp_path) as store:
        segs = text_segments(6, prompts=2)  # prompt 0: gold 1, -1, 0; prompt 1: 0, 1, -1
        ids = store.records.add_text_segments(segs)
        prompt_ids = np.array([s.prompt_id for s in segs])
        pairs = same_prompt_pairs(prompt_ids, np.random.default_rng(0))
        qids = store.records.add_queries([(ids[a], ids[b]) for a, b in pairs], round=0)
        teacher = ScriptedTeacher("oracle")
        labels = answer_text_queries(store, qids, teacher)
        gold = np.array([[segs[a].gold, segs[b].gold] for a, b in pairs])
        np.testing.assert_array_equal(labels, np.where(gold[:, 0] >= gold[:, 1], LEFT, RIGHT))
        # idempotent: a second call asks nothing and returns the stored answers
        again = answer_text_queries(store, [*qids, qids[0]], teacher)
        np.testing.assert_array_equal(again, [*labels, labels[0]])
        assert teacher.stats()["asked"] == len(qids)
        stored = store.records.text_training_pairs()
        assert stored.labels.tolist() == labels.tolist()
        # a completion without gold cannot be answered by a scripted teacher
        blind = store.records.add_text_segments(text_segments(2, prompts=1, with_gold=False))
        [q] = store.records.add_queries([tuple(blind)], round=1)
        with pytest.raises(RecordError, match="no gold score"):
            answer_text_queries(store, [q], teacher)
        # nor can any teacher compare completions of two prompts
        [q2] = store.records.add_queries([(ids[0], ids[1])], round=1)
        with pytest.raises(RecordError, match="different prompts"):
            answer_text_queries(store, [q2], teacher)
        assert store.summary.counts()["preferences"] == len(qids)
