"""The tasks' lexicon judges as judge teachers: they answer text queries by a lexicon other than
gold, and their agreement with the gold oracle is measured on the same queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewardlab.feedback.judges import ScorerJudge, agreement_by_round, answer_text_queries
from rewardlab.feedback.queries import same_prompt_pairs
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.lm.tasks import make_task
from rewardlab.store import FeedbackStore
from rewardlab.types import Label, TextSegment

CLEAR = [  # (positive, negative) completions on which any sentiment lexicon agrees
    ("a wonderful and happy day", "a terrible and sad day"),
    ("we had a great time", "we had an awful time"),
    ("the food was excellent", "the food was horrible"),
    ("she is a lovely friend", "she is a nasty enemy"),
]


def test_lexicon_judges_agree_with_gold_on_clear_pairs() -> None:
    for name in ("sentiment", "polarity_concise"):
        task = make_task(name)
        judge = ScorerJudge(task.judge, judge_id=f"judge:{task.judge.name}")
        left = [p if i % 2 else n for i, (p, n) in enumerate(CLEAR)]
        right = [n if i % 2 else p for i, (p, n) in enumerate(CLEAR)]
        labels = judge.label(["Today"] * 4, left, right)
        oracle = ScriptedTeacher("oracle").label_text(
            np.stack([task.gold(["Today"] * 4, left), task.gold(["Today"] * 4, right)], axis=1)
        )
        assert labels.tolist() == oracle.tolist() == [
            Label.RIGHT, Label.LEFT, Label.RIGHT, Label.LEFT,
        ]


def test_judge_and_gold_disagree_where_the_lexicons_do(tmp_path: Path) -> None:
    """VADER (gold of ``sentiment``) rates repeated praise ("love love love": 0.93) above a calm
    positive sentence (0.42); TextBlob (its judge) does not (0.5 < 0.6): the per-round
    agreement shows the disagreement."""
    task = make_task("sentiment")
    texts = [p for pair in CLEAR for p in pair] + [
        "love love love", "it was a nice evening",
    ]
    gold = task.gold(["Today"] * len(texts), texts)
    segs = [
        TextSegment("Today", t, [1], [2, 3], "sentiment/test", prompt_id=i // 2, sample_id=i,
                    gold=float(g))
        for i, (t, g) in enumerate(zip(texts, gold, strict=True))
    ]
    with FeedbackStore.open(tmp_path) as store:
        ids = store.records.add_text_segments(segs)
        pairs = same_prompt_pairs(np.array([s.prompt_id for s in segs]), np.random.default_rng(0))
        qids = store.records.add_queries([(ids[a], ids[b]) for a, b in pairs], round=0)
        oracle = answer_text_queries(store, qids, ScriptedTeacher("oracle"))
        judge = ScorerJudge(task.judge, judge_id="judge:textblob")
        judged = answer_text_queries(store, qids, judge)
        report = agreement_by_round(store, "judge:textblob", "oracle")[0]
    assert report["compared"] == 5
    assert report["agreeing"] == 4  # every clear pair, not the repeated praise
    assert (judged != oracle).sum() == 1
    hack = [i for i, (a, b) in enumerate(pairs) if {a, b} == {8, 9}][0]
    assert judged[hack] != oracle[hack]
