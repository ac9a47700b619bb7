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
labels. The HTTP client is the standard library's ``urllib`` (no new dependency). This module
never imports torch.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from rewardlab.errors import ConfigError, JudgeError, RecordError
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

#: The question of the ``sentiment`` task; tasks carry their own
#: (:attr:`rewardlab.lm.tasks.TextTask.judge_question`).
DEFAULT_QUESTION = "Which continuation is more positive?"

#: The user message sent for each query; ``{question}``, ``{prompt}``, ``{a}`` and ``{b}`` are
#: filled in (a template may leave out ``{prompt}``; it must hold the other three).
DEFAULT_PROMPT_TEMPLATE = (
    "{question}\n\n"
    "Prompt: {prompt}\n\n"
    "Continuation A: {a}\n\n"
    "Continuation B: {b}\n\n"
    "Answer with a single letter: A or B."
)

#: HTTP statuses worth retrying: timeouts, rate limits and server errors.
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# "A", "B.", "**B**", "(A)", "Answer: B", "The answer is A", "Continuation A is better": starts
# with the letter (upper case, so the article "a" is not read as A), after optional markup and
# an optional "answer:"/"continuation" lead-in.
_CHOICE = re.compile(
    r"^[\W_]*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:\-]?[\W_]*)?(?:continuation\s+)?"
    r"(?-i:([AB]))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_TIE = re.compile(r"^[\W_]*(tie|equal|equally|both|neither|same)\b", re.IGNORECASE)


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


def _check_pairs(
    prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    prompts, left, right = list(prompts), list(left), list(right)
    if not len(prompts) == len(left) == len(right):
        raise RecordError(
            f"judge: got {len(prompts)} prompts, {len(left)} left and {len(right)} right "
            "completions; pass one of each per query"
        )
    for what, texts in (("prompts", prompts), ("left", left), ("right", right)):
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise RecordError(f"judge: {what} must be strings, got {type(bad).__name__}")
    return prompts, left, right


def _check_id(judge_id: object) -> str:
    if not isinstance(judge_id, str) or not judge_id or len(judge_id) > 255:
        raise ConfigError(
            f"judge.judge_id: must be a non-empty string of at most 255 characters, got "
            f"{judge_id!r}"
        )
    return judge_id


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
        self.judge_id = _check_id(
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
        prompts, left, right = _check_pairs(prompts, left, right)
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


def parse_choice(content: str) -> str | None:
    """Read a chat judge's answer: ``"A"``, ``"B"``, ``"tie"`` or ``None`` (unreadable).

    ``A``/``B`` when the reply starts with that capital letter as a word, after optional
    markup (``**``, quotes, brackets) and an optional ``Answer:``/``The answer is``/
    ``Continuation`` lead-in ("B", "**A**", "Answer: B.", "Continuation A is more positive"),
    or is the lone letter in any case ("a"); ``tie`` when it starts with tie, equal(ly), both,
    neither or same; otherwise ``None`` (e.g. "I cannot decide", "a better one is B"). Only the
    start of the reply is read, as the prompt asks for a single letter: a reply opening with
    the article "A" ("A better one is B") reads as A.
    """
    text = content.strip()
    if text.strip(" \t\n.*\"'()[]").upper() in ("A", "B"):
        return text.strip(" \t\n.*\"'()[]").upper()
    found = _CHOICE.match(text)
    if found:
        return found.group(1)
    if _TIE.match(text):
        return "tie"
    return None


class OpenAIJudge:
    """A judge that asks a chat model behind an OpenAI-compatible endpoint, one query a request.

    Each query is sent to ``POST {base_url}/chat/completions`` as one user message (the
    ``prompt_template`` filled with the question, the prompt and the two completions as A and
    B, in a random order per query drawn from ``seed``), with ``temperature`` 0 and a small
    ``max_tokens``. The reply's ``choices[0].message.content`` is read by
    :func:`parse_choice`; ``A``/``B`` are mapped back to LEFT/RIGHT; a tie gets ``on_tie``
    (default EQUAL) and an unreadable reply ``on_unparseable`` (default SKIP: not used for
    training); both are counted in :meth:`stats`.

    Errors: connection failures (refused, reset, timed out, a broken response) and HTTP
    408/409/425/429/5xx are retried ``max_retries`` times, waiting ``retry_backoff *
    2**(attempt - 1)`` seconds before retry ``attempt`` (1, 2, ...); other HTTP
    errors (400, 401, 404, ...) fail at once; a 200 reply that is not JSON or lacks the message
    content fails at once (a server that answers malformed once will again). Every failure is a
    :class:`~rewardlab.errors.JudgeError` naming the URL and the cause; answers already given
    in the call are lost with it (nothing is stored by the judge itself).

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"`` (http or https).
        model: the model name the server expects.
        api_key: sent as ``Authorization: Bearer <api_key>`` when given (never logged).
        timeout: seconds to wait for each response (> 0).
        max_retries: extra attempts after a retryable failure (>= 0).
        prompt_template: the user message; must contain ``{question}``, ``{a}`` and ``{b}``
            and may contain ``{prompt}`` (:data:`DEFAULT_PROMPT_TEMPLATE`).
        question: the question asked (e.g. the task's ``judge_question``).
        seed: seed of the A/B order (>= 0).
        judge_id: the teacher id its answers are stored under; default ``"judge:" + model``.
        on_tie: label of a tie answer.
        on_unparseable: label of an unreadable answer.
        max_tokens: ``max_tokens`` of the request (>= 1).
        retry_backoff: seconds before the first retry (>= 0), doubled for each further one.

    Raises:
        ConfigError: naming the argument, on an invalid value.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        question: str = DEFAULT_QUESTION,
        seed: int = 0,
        judge_id: str | None = None,
        on_tie: Label | str = Label.EQUAL,
        on_unparseable: Label | str = Label.SKIP,
        max_tokens: int = 8,
        retry_backoff: float = 0.5,
    ) -> None:
        parsed = urllib.parse.urlparse(base_url) if isinstance(base_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"judge.base_url: must be an http(s) URL such as 'http://127.0.0.1:8000/v1', "
                f"got {base_url!r}"
            )
        if not isinstance(model, str) or not model:
            raise ConfigError("judge.model: must be a non-empty model name")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ConfigError("judge.api_key: must be None or a non-empty string")
        for name, value, positive in (("timeout", timeout, True),
                                      ("retry_backoff", retry_backoff, False)):
            real = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not real or not math.isfinite(value) or value < 0 or (positive and value == 0):
                bound = "> 0" if positive else ">= 0"
                raise ConfigError(f"judge.{name}: must be a finite number {bound}, got {value!r}")
        for name, value, low in (("max_retries", max_retries, 0), ("seed", seed, 0),
                                 ("max_tokens", max_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"judge.{name}: must be an integer >= {low}, got {value!r}")
        if not isinstance(prompt_template, str):
            raise ConfigError("judge.prompt_template: must be a string")
        missing = [k for k in ("{question}", "{a}", "{b}") if k not in prompt_template]
        if missing:
            raise ConfigError(
                f"judge.prompt_template: must contain {', '.join(missing)} (and may contain "
                "{prompt})"
            )
        try:
            prompt_template.format(question="", prompt="", a="", b="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"judge.prompt_template: only {{question}}, {{prompt}}, {{a}} and {{b}} may be "
                f"filled in (double other braces): {exc!r}"
            ) from None
        if not isinstance(question, str) or not question:
            raise ConfigError("judge.question: must be a non-empty string")
        try:
            self.on_tie = Label.parse(on_tie)
            self.on_unparseable = Label.parse(on_unparseable)
        except RecordError as exc:
            raise ConfigError(f"judge.on_tie/on_unparseable: {exc}") from None
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.prompt_template = prompt_template
        self.question = question
        self.max_tokens = int(max_tokens)
        self.retry_backoff = float(retry_backoff)
        self.judge_id = _check_id(judge_id if judge_id is not None else f"judge:{model}")
        self.rng = np.random.default_rng(int(seed))
        self._counts = {
            "asked": 0, "left": 0, "right": 0, "ties": 0, "unparseable": 0, "retries": 0,
            "shown_swapped": 0,
        }

    # ------------------------------------------------------------------ HTTP

    def _request(self, content: str) -> dict[str, Any]:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "temperature": 0,
                "max_tokens": self.max_tokens,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._counts["retries"] += 1
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", errors="replace")
                last = f"HTTP {exc.code} {exc.reason}: {detail}"
                if exc.code in _RETRY_STATUSES:
                    continue
                raise JudgeError(f"judge {self.judge_id}: {self.url} answered {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError,
                    http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"cannot connect: {reason}"
                continue
            return self._decode(raw)
        raise JudgeError(
            f"judge {self.judge_id}: {self.url} failed after {self.max_retries + 1} attempts; "
            f"last error: {last}"
        )

    def _decode(self, raw: bytes) -> dict[str, Any]:
        shown = raw[:200].decode("utf-8", errors="replace")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url} answered malformed JSON: {shown!r}"
            ) from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url} answered JSON without "
                f"choices[0].message.content: {shown!r}"
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url}: choices[0].message.content is not a "
                f"string: {shown!r}"
            )
        return {"content": content}

    # ------------------------------------------------------------------ judging

    def message(self, prompt: str, a: str, b: str) -> str:
        """The user message asking about completions ``a`` (shown first) and ``b``."""
        return self.prompt_template.format(question=self.question, prompt=prompt, a=a, b=b)

    def label(
        self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
    ) -> np.ndarray:
        """Answer ``n`` text queries, one request each (sides shown in a random order).

        Args:
            prompts: the prompt of each query.
            left: the left completion of each query.
            right: the right completion of each query.

        Returns:
            ``(n,)`` int8 :class:`~rewardlab.types.Label` codes: LEFT/RIGHT, ``on_tie`` for a
            tie and ``on_unparseable`` for an unreadable reply.

        Raises:
            RecordError: if the inputs differ in number or are not strings.
            JudgeError: if the endpoint fails (after retries) or answers malformed JSON.
        """
        prompts, left, right = _check_pairs(prompts, left, right)
        n = len(prompts)
        swap = self.rng.random(n) < 0.5  # (n,) True: the right completion is shown as A
        labels = np.empty(n, dtype=np.int8)
        for i in range(n):  # one HTTP request per query
            a, b = (right[i], left[i]) if swap[i] else (left[i], right[i])
            choice = parse_choice(self._request(self.message(prompts[i], a, b))["content"])
            if choice is None:
                labels[i] = self.on_unparseable
                self._counts["unparseable"] += 1
            elif choice == "tie":
                labels[i] = self.on_tie
                self._counts["ties"] += 1
            else:
                prefers_left = (choice == "A") != bool(swap[i])
                labels[i] = Label.LEFT if prefers_left else Label.RIGHT
                self._counts["left" if prefers_left else "right"] += 1
        self._counts["asked"] += n
        self._counts["shown_swapped"] += int(swap.sum())
        return labels

    def stats(self) -> dict[str, int]:
        """``asked``; ``left``/``right`` (read answers); ``ties``; ``unparseable``;
        ``retries`` (extra requests after failures); ``shown_swapped`` (queries shown with the
        right completion as A)."""
        return dict(self._counts)

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.url!r}, model={self.model!r}, judge_id={self.judge_id!r})"


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
