"""Judge teachers: text queries answered by a scorer other than gold, and their agreement with it.

AI feedback (Bai et al. 2022, "Constitutional AI", Sec. 4; Lee et al. 2023, "RLAIF") replaces
the person who compares two completions by a model. Here a judge answers a text query (two
completions of one prompt, :class:`rewardlab.types.TextSegment`) with a
:class:`~rewardlab.types.Label`, and its labels are compared with the gold oracle's on the same
queries (:func:`judge_agreement`), so how good the judge is gets measured, never assumed.

Judges (each has ``judge_id``, ``label(prompts, left, right) -> (n,) int8`` and ``stats()``):

* :class:`ScorerJudge`: any scorer ``(prompts, completions) -> (n,) scores``: a task's lexicon
  judge (:attr:`rewardlab.lm.tasks.TextTask.judge`) or a reward model RewardLab trained. The
  side with the higher score is preferred; scores within ``tie_tolerance`` are EQUAL.
* :class:`OpenAIJudge`: a chat model behind an OpenAI-compatible ``/chat/completions``
  endpoint that a user runs (vLLM, llama.cpp's server, Ollama, a hosted API), asked a pairwise
  question ("Which continuation is more positive? Answer A or B"). To cancel position bias
  (Zheng et al. 2023, "Judging LLM-as-a-Judge", Sec. 3.3) each query's completions are shown
  as A and B in a random order (a seeded coin per query) and the answer is mapped back.

:func:`answer_text_queries` answers stored text queries with a judge or a scripted teacher
(gold scores, :meth:`~rewardlab.feedback.teachers.ScriptedTeacher.label_text`) and stores the
labels. :class:`OpenAIJudge` and :func:`parse_choice` live in
:mod:`rewardlab.feedback.chat_judge` and are re-exported here. This module never imports torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from rewardlab.errors import ConfigError, RecordError
from rewardlab.feedback.chat_judge import (
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_QUESTION,
    OpenAIJudge,
    check_judge_id,
    check_pairs,
    parse_choice,
)
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.store.store import FeedbackStore
from rewardlab.types import Label, Preference

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "DEFAULT_QUESTION",
    "OpenAIJudge",
    "PairJudge",
    "ScorerJudge",
    "agreement_by_round",
    "answer_text_queries",
    "judge_agreement",
    "parse_choice",
]

#: A scorer of completions: ``(prompts, completions) -> (n,) scores`` (higher is better).
Scorer = Callable[[list[str], list[str]], np.ndarray]


class PairJudge(Protocol):
    """What :func:`answer_text_queries` needs of a judge."""

    judge_id: str

    def label(
        self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
    ) -> np.ndarray:
        """``(n,)`` int8 :class:`~rewardlab.types.Label` codes of ``n`` text queries."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters of the answers given so far."""
        ...


class ScorerJudge:
    """A judge that prefers the completion a scorer rates higher.

    ``LEFT`` if ``s(left) - s(right) > tie_tolerance``, ``RIGHT`` if ``s(right) - s(left) >
    tie_tolerance``, else ``EQUAL``. Both sides are scored in one call of ``2n`` completions (so
    a reward model sees one batch).

    Args:
        scorer: ``(prompts, completions) -> (n,)`` real scores, e.g. ``task.judge`` (a lexicon,
            :mod:`rewardlab.lm.tasks`) or a trained text reward model.
        judge_id: the teacher id its answers are stored under; default ``"judge:" +
            scorer.name`` (or ``"judge:scorer"``).
        tie_tolerance: score difference at or below which the answer is EQUAL (>= 0).

    Raises:
        ConfigError: if ``scorer`` is not callable, the id is empty or longer than 255
            characters, or ``tie_tolerance`` is negative or not finite.
    """

    def __init__(
        self, scorer: Scorer, judge_id: str | None = None, tie_tolerance: float = 0.0
    ) -> None:
        if not callable(scorer):
            raise ConfigError("judge.scorer: must be callable (prompts, completions) -> scores")
        if isinstance(tie_tolerance, bool) or not isinstance(tie_tolerance, (int, float)) or not (
            0.0 <= float(tie_tolerance) < math.inf
        ):
            raise ConfigError(
                f"judge.tie_tolerance: must be a finite number >= 0, got {tie_tolerance!r}"
            )
        self.scorer = scorer
        self.judge_id = check_judge_id(
            judge_id if judge_id is not None else f"judge:{getattr(scorer, 'name', 'scorer')}"
        )
        self.tie_tolerance = float(tie_tolerance)
        self._counts = {"asked": 0, "left": 0, "right": 0, "equal": 0}

    def scores(
        self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
    ) -> np.ndarray:
        """``(n, 2)`` float64 scores of the left and right completions.

        Raises:
            RecordError: if the inputs differ in number or are not strings, or the scorer
                returns other than ``2n`` finite scores.
        """
        prompts, left, right = check_pairs(prompts, left, right)
        n = len(prompts)
        raw = np.asarray(self.scorer(prompts + prompts, left + right), dtype=np.float64)
        if raw.shape != (2 * n,) or not np.all(np.isfinite(raw)):
            raise RecordError(
                f"judge {self.judge_id}: the scorer must return {2 * n} finite scores, got "
                f"shape {raw.shape}"
            )
        return raw.reshape(2, n).T

    def label(
        self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
    ) -> np.ndarray:
        """Answer ``n`` text queries.

        Args:
            prompts: the prompt of each query.
            left: the left completion of each query.
            right: the right completion of each query.

        Returns:
            ``(n,)`` int8 :class:`~rewardlab.types.Label` codes (LEFT, RIGHT or EQUAL).

        Raises:
            RecordError: see :meth:`scores`.
        """
        s = self.scores(prompts, left, right)
        diff = s[:, 0] - s[:, 1]
        labels = np.full(diff.shape[0], int(Label.EQUAL), dtype=np.int8)
        labels[diff > self.tie_tolerance] = Label.LEFT
        labels[diff < -self.tie_tolerance] = Label.RIGHT
        self._count(labels)
        return labels

    def _count(self, labels: np.ndarray) -> None:
        self._counts["asked"] += int(labels.shape[0])
        for name, code in (("left", Label.LEFT), ("right", Label.RIGHT), ("equal", Label.EQUAL)):
            self._counts[name] += int(np.count_nonzero(labels == code))

    def stats(self) -> dict[str, int]:
        """``asked``, ``left``, ``right``, ``equal``: answers given so far."""
        return dict(self._counts)

    def __repr__(self) -> str:
        return f"ScorerJudge({self.judge_id!r}, tie_tolerance={self.tie_tolerance})"


# ---------------------------------------------------------------------- store and agreement


def answer_text_queries(
    store: FeedbackStore, query_ids: Sequence[int], teacher: PairJudge | ScriptedTeacher
) -> np.ndarray:
    """Answer stored text queries with a judge or a scripted teacher, and store the answers.

    Idempotent like a feedback round: queries this teacher answered already are not asked
    again. A scripted teacher answers by the completions' gold scores
    (:meth:`~rewardlab.feedback.teachers.ScriptedTeacher.label_text`); a judge by its own
    reading of the prompt and the two completions. All new answers are stored in one
    transaction (under ``teacher.teacher_id`` / ``judge.judge_id``).

    Args:
        store: the feedback store holding the queries.
        query_ids: the queries, over text segments that complete the same prompt.
        teacher: a judge (:class:`ScorerJudge`, :class:`OpenAIJudge`) or a
            :class:`~rewardlab.feedback.teachers.ScriptedTeacher`.

    Returns:
        ``(n,)`` int8 labels of ``query_ids`` by this teacher (stored earlier or now).

    Raises:
        UnknownQueryError: naming unknown query ids.
        SegmentKindError: if a query is over control segments.
        RecordError: if a query compares completions of different prompts, or a scripted
            teacher meets a completion without a gold score.
        JudgeError: if a chat judge fails (then nothing is stored).
    """
    teacher_id = teacher.teacher_id if isinstance(teacher, ScriptedTeacher) else teacher.judge_id
    queries = store.records.get_queries(query_ids)
    before = store.records.answers_of(teacher_id, query_ids)
    todo = list({q.query_id: q for q in queries if q.query_id not in before}.values())
    found = dict(before)
    if todo:
        segs = store.records.get_text_segments([i for q in todo for i in (q.left_id, q.right_id)])
        left, right = segs[0::2], segs[1::2]
        differ = [q.query_id for q, a, b in zip(todo, left, right, strict=True)
                  if a.prompt != b.prompt]
        if differ:
            raise RecordError(
                f"text queries {differ[:10]} compare completions of different prompts; a "
                "text query compares two completions of one prompt (same_prompt_pairs)"
            )
        if isinstance(teacher, ScriptedTeacher):
            no_gold = sorted({s.segment_id for s in segs if s.gold is None})
            if no_gold:
                raise RecordError(
                    f"text segments {no_gold[:10]} have no gold score, so a scripted teacher "
                    "cannot answer their queries"
                )
            gold = np.array([[a.gold, b.gold] for a, b in zip(left, right, strict=True)])
            labels = teacher.label_text(gold)
        else:
            labels = teacher.label(
                [s.prompt for s in left], [s.completion for s in left],
                [s.completion for s in right],
            )
        now = time.time()
        store.records.add_preferences([
            Preference(q.query_id, Label(int(lab)), teacher_id, now)
            for q, lab in zip(todo, labels, strict=True)
        ])
        found.update({q.query_id: Label(int(lab)) for q, lab in zip(todo, labels, strict=True)})
    return np.array([int(found[q.query_id]) for q in queries], dtype=np.int8)


def judge_agreement(judge_labels: np.ndarray, gold_labels: np.ndarray) -> dict[str, float | int]:
    """How often a judge gives the gold oracle's answer, on the same queries.

    Only queries both answered (neither SKIP) are compared, over the three answers LEFT, RIGHT
    and EQUAL. Cohen's kappa (Cohen 1960) corrects the agreement for chance: ``kappa = (p_o -
    p_e) / (1 - p_e)`` with ``p_o`` the agreement and ``p_e = sum_k p_judge(k) p_gold(k)``.

    Args:
        judge_labels: ``(n,)`` int :class:`~rewardlab.types.Label` codes of the judge.
        gold_labels: ``(n,)`` int codes of the gold oracle on the same queries.

    Returns:
        ``n``: queries; ``compared``: those neither skipped; ``agreeing``; ``agreement``:
        ``agreeing / compared``; ``kappa`` (NaN when nothing is compared, or ``p_e = 1``);
        ``judge_skipped``, ``judge_equal``: the judge's SKIP and EQUAL answers.

    Raises:
        ValueError: if the arrays are not 1-d of equal length or hold codes other than 0-3.
    """
    judge = np.asarray(judge_labels)
    gold = np.asarray(gold_labels)
    if judge.ndim != 1 or judge.shape != gold.shape:
        raise ValueError(
            f"judge_labels and gold_labels: expected two (n,) arrays, got {judge.shape} and "
            f"{gold.shape}"
        )
    for name, arr in (("judge_labels", judge), ("gold_labels", gold)):
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0
                         or arr.max() > int(Label.SKIP)):
            raise ValueError(f"{name}: expected Label codes 0-3")
    keep = (judge != Label.SKIP) & (gold != Label.SKIP)
    j, g = judge[keep].astype(np.int64), gold[keep].astype(np.int64)
    compared = int(keep.sum())
    agreeing = int((j == g).sum())
    agreement = agreeing / compared if compared else math.nan
    kappa = math.nan
    if compared:
        p_e = float(np.dot(np.bincount(j, minlength=3)[:3], np.bincount(g, minlength=3)[:3]))
        p_e /= compared**2
        if p_e < 1.0:
            kappa = (agreement - p_e) / (1.0 - p_e)
    return {
        "n": int(judge.shape[0]),
        "compared": compared,
        "agreeing": agreeing,
        "agreement": agreement,
        "kappa": kappa,
        "judge_skipped": int((judge == Label.SKIP).sum()),
        "judge_equal": int((judge == Label.EQUAL).sum()),
    }


def agreement_by_round(
    store: FeedbackStore, judge_id: str, gold_id: str, rounds: Sequence[int] | None = None
) -> dict[int, dict[str, float | int]]:
    """Judge-vs-gold agreement per feedback round, from the answers in the store.

    For each round, the queries both ``judge_id`` and ``gold_id`` answered are compared with
    :func:`judge_agreement` (``n`` counts those queries).

    Args:
        store: the feedback store.
        judge_id: the judge's teacher id (e.g. ``"judge:textblob_polarity"``).
        gold_id: the gold oracle's teacher id (e.g. ``"oracle"``).
        rounds: the rounds to report, or ``None`` for every round with a query.

    Returns:
        ``{round: judge_agreement(...)}`` in round order.

    Raises:
        StoreError: if the store cannot be read.
    """
    queries = store.records.get_queries()
    wanted = None if rounds is None else {int(r) for r in rounds}
    ids = [q.query_id for q in queries if wanted is None or q.round in wanted]
    judge = store.records.answers_of(judge_id, ids)
    gold = store.records.answers_of(gold_id, ids)
    by_round: dict[int, tuple[list[int], list[int]]] = {}
    for q in queries:
        if wanted is not None and q.round not in wanted:
            continue
        pair = by_round.setdefault(q.round, ([], []))
        if q.query_id in judge and q.query_id in gold:
            pair[0].append(int(judge[q.query_id]))
            pair[1].append(int(gold[q.query_id]))
    return {
        r: judge_agreement(np.array(j, dtype=np.int64), np.array(g, dtype=np.int64))
        for r, (j, g) in sorted(by_round.items())
    }
