"""Judge teachers that read scores (a lexicon, a trained reward model), agreement with gold
(hand-computed rates and Cohen's kappa), and judges answering stored text queries."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardlab.errors import ConfigError, RecordError
from rewardlab.feedback.judges import (
    ScorerJudge,
    agreement_by_round,
    answer_text_queries,
    judge_agreement,
)
from rewardlab.feedback.queries import same_prompt_pairs
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.store import FeedbackStore
from rewardlab.types import Label
from tests.helpers import text_segments

LEFT, RIGHT, EQUAL, SKIP = int(Label.LEFT), int(Label.RIGHT), int(Label.EQUAL), int(Label.SKIP)


def count_good(prompts: list[str], completions: list[str]) -> np.ndarray:
    """A toy reward model: how often a completion says 'good'."""
    return np.array([c.split().count("good") for c in completions], dtype=np.float32)


def test_scorer_judge_prefers_the_higher_score_in_one_batch() -> None:
    calls: list[int] = []

    def scorer(prompts: list[str], completions: list[str]) -> np.ndarray:
        calls.append(len(completions))
        return count_good(prompts, completions)

    judge = ScorerJudge(scorer, judge_id="judge:count-good")
    labels = judge.label(
        ["p"] * 4,
        ["good good", "bad", "good", "good day"],
        ["good", "good", "good", "a good day"],
    )
    assert labels.dtype == np.int8 and labels.tolist() == [LEFT, RIGHT, EQUAL, EQUAL]
    assert calls == [8]  # both sides scored in one call
    assert judge.stats() == {"asked": 4, "left": 1, "right": 1, "equal": 2}
    tolerant = ScorerJudge(count_good, tie_tolerance=1.0)
    assert tolerant.judge_id == "judge:scorer"
    assert tolerant.label(["p"] * 2, ["good good", "good good good"], ["good", "x"]).tolist() == [
        EQUAL, LEFT,
    ]


def test_scorer_judge_errors() -> None:
    with pytest.raises(ConfigError, match="judge.scorer: must be callable"):
        ScorerJudge("vader")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="judge.tie_tolerance"):
        ScorerJudge(count_good, tie_tolerance=-0.1)
    with pytest.raises(ConfigError, match="judge.judge_id"):
        ScorerJudge(count_good, judge_id="")
    judge = ScorerJudge(count_good)
    with pytest.raises(RecordError, match="2 prompts, 1 left and 1 right"):
        judge.label(["p", "q"], ["a"], ["b"])
    broken = ScorerJudge(lambda p, c: np.zeros(1))
    with pytest.raises(RecordError, match="must return 4 finite scores, got shape"):
        broken.label(["p", "q"], ["a", "b"], ["c", "d"])


def test_agreement_and_kappa_by_hand() -> None:
    gold = np.array([LEFT, LEFT, RIGHT, RIGHT, LEFT, RIGHT, SKIP, LEFT])
    judge = np.array([LEFT, RIGHT, RIGHT, RIGHT, LEFT, LEFT, LEFT, SKIP])
    got = judge_agreement(judge, gold)
    # compared: the first 6; agreeing: 0, 2, 3, 4 -> 4/6. Judge: 3 L, 3 R; gold: 3 L, 3 R,
    # so p_e = (3*3 + 3*3) / 36 = 0.5 and kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert got["n"] == 8 and got["compared"] == 6 and got["agreeing"] == 4
    assert got["agreement"] == pytest.approx(4 / 6)
    assert got["kappa"] == pytest.approx(1 / 3)
    assert got["judge_skipped"] == 1 and got["judge_equal"] == 0
    perfect = judge_agreement(np.array([LEFT, RIGHT, EQUAL]), np.array([LEFT, RIGHT, EQUAL]))
    assert perfect["agreement"] == 1.0 and perfect["kappa"] == pytest.approx(1.0)
    constant = judge_agreement(np.array([LEFT, LEFT]), np.array([LEFT, LEFT]))
    assert constant["agreement"] == 1.0 and math.isnan(constant["kappa"])  # p_e = 1
    empty = judge_agreement(np.array([SKIP]), np.array([LEFT]))
    assert empty["compared"] == 0 and math.isnan(empty["agreement"])
    with pytest.raises(ValueError, match="expected two"):
        judge_agreement(np.array([LEFT]), np.array([LEFT, RIGHT]))
    with pytest.raises(ValueError, match="Label codes 0-3"):
        judge_agreement(np.array([7]), np.array([LEFT]))


def test_judge_answers_stored_queries_and_agreement_per_round(tmp_path: Path) -> None:
    """Gold (oracle) and a judge answer the same text queries over two rounds; the agreement
    per round is what the labels say."""
    with FeedbackStore.open(tmp_path) as store:
        segs = text_segments(12, prompts=3)
        ids = store.records.add_text_segments(segs)
        pairs = same_prompt_pairs(np.array([s.prompt_id for s in segs]),
                                  np.random.default_rng(0))
        half = len(pairs) // 2
        q0 = store.records.add_queries([(ids[a], ids[b]) for a, b in pairs[:half]], round=0)
        q1 = store.records.add_queries([(ids[a], ids[b]) for a, b in pairs[half:]], round=1)
        oracle = ScriptedTeacher("oracle")
        gold0 = answer_text_queries(store, q0, oracle)
        gold1 = answer_text_queries(store, q1, oracle)
        judge = ScorerJudge(count_good, judge_id="judge:count-good")
        j0 = answer_text_queries(store, q0, judge)
        j1 = answer_text_queries(store, q1, judge)
        assert judge.stats()["asked"] == len(pairs)
        report = agreement_by_round(store, "judge:count-good", "oracle")
        assert sorted(report) == [0, 1]
        assert report[0] == judge_agreement(j0, gold0)
        assert report[1] == judge_agreement(j1, gold1)
        assert report[0]["n"] == len(q0) and report[1]["n"] == len(q1)
        assert list(agreement_by_round(store, "judge:count-good", "oracle", rounds=[1])) == [1]
        # both teachers' answers are kept, one per teacher per query
        assert store.summary.counts()["preferences"] == 2 * len(pairs)


def test_judges_do_not_import_torch() -> None:
    code = (
        "import sys; import rewardlab.feedback.judges;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
