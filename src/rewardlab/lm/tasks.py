"""Text tasks with a gold reward the learner never sees, and a judge scorer distinct from gold.

A :class:`TextTask` says how prompts are cut from the corpus (``prompt_words``), how long a
completion may be (``max_new_tokens``), and holds two scorers of completions:

* ``gold``: the task's true reward. It labels queries through the scripted teachers (as a
  segment's true return does for control tasks) and is logged beside the proxy reward at every
  evaluation, but no learner (reward model, policy) ever reads it.
* ``judge``: a different scorer of the same intent (another lexicon), for the judge teacher of
  :mod:`rewardlab.feedback.judges`: AI feedback whose agreement with gold is measured, not
  assumed.

Tasks (:data:`TASK_NAMES`, :func:`make_task`):

``sentiment``
    Continue a corpus prompt positively. Gold: VADER's compound score of the completion, in
    ``[-1, 1]`` (Hutto & Gilbert 2014, "VADER: A Parsimonious Rule-based Model for Sentiment
    Analysis of Social Media Text", ICWSM; ``vaderSentiment`` 3.3.2). Judge: TextBlob polarity.
    VADER is gameable on purpose: repeating "good great love" scores ~0.99, so a proxy that
    learns it is over-optimised in an honest, measurable way.
``polarity_concise``
    Continue positively, briefly and without repeating words. Gold: :class:`ConcisePolarity`
    over TextBlob's polarity (Loria, "TextBlob: Simplified Text Processing",
    textblob.readthedocs.io, 0.20.1; its ``PatternAnalyzer`` is the lexicon of De Smedt &
    Daelemans 2012, "Pattern for Python", JMLR 13): polarity minus a length and a repetition
    penalty, and 0 for a completion of fewer than ``min_words`` words. Judge: the same
    constraints over VADER's compound score.

Scorers score the completion only; they take the prompts too (checked to match in number) so
that every scorer, including a trained reward model or a chat judge, has one signature:
``scorer(prompts, completions) -> (n,) float32``. The lexicon packages are the ``lm`` extra
(``pip install -e ".[lm]"``) and are imported when a scorer is built. This module never imports
torch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError, RecordError

__all__ = [
    "TASK_NAMES",
    "ConcisePolarity",
    "TextBlobPolarity",
    "TextScorer",
    "TextTask",
    "VaderCompound",
    "check_texts",
    "count_words",
    "make_task",
]

#: A scorer of completions: ``(prompts, completions) -> (n,) float32`` scores.
TextScorer = Callable[[list[str], list[str]], np.ndarray]

#: A word for the length and repetition rules: a run of letters, with inner apostrophes
#: ("don't"); digits, punctuation and emoji are not words.
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")

_EXTRA_HINT = 'install the language-model extra: pip install -e ".[lm]"'


def check_texts(prompts: Sequence[str], completions: Sequence[str]) -> tuple[list[str], list[str]]:
    """The prompts and completions as lists, checked to be strings of equal number.

    Raises:
        RecordError: if the numbers differ or an item is not a string.
    """
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise RecordError(
            f"scorer: got {len(prompts)} prompts but {len(completions)} completions; "
            "pass one prompt per completion"
        )
    for what, texts in (("prompts", prompts), ("completions", completions)):
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise RecordError(f"scorer: {what} must be strings, got {type(bad).__name__}")
    return prompts, completions


def count_words(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words and distinct words (case-folded) of each text.

    Returns:
        ``(n_words, n_distinct)``: two ``(n,)`` int64 arrays.
    """
    words = [_WORD.findall(t.casefold()) for t in texts]
    n_words = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    n_distinct = np.fromiter((len(set(w)) for w in words), dtype=np.int64, count=len(words))
    return n_words, n_distinct


def _scores(values: Any, n: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.float64, count=n).astype(np.float32)


@dataclass(frozen=True)
class VaderCompound:
    """VADER's compound sentiment of each completion, in ``[-1, 1]`` (Hutto & Gilbert 2014).

    The analyser (lexicon and emoji table) is built once, when the scorer is made; VADER scores
    one string per call, so a batch is a loop over its completions.

    Raises:
        ConfigError: when made, if ``vaderSentiment`` is not installed.
    """

    name: str = "vader_compound"
    """Name of the scorer (in logs and judge ids)."""
    _analyzer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise ConfigError(f"lm.task: VADER is not installed ({exc}); {_EXTRA_HINT}") from None
        object.__setattr__(self, "_analyzer", SentimentIntensityAnalyzer())

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Score completions.

        Args:
            prompts: ``n`` prompts (unused: the completion alone is scored).
            completions: ``n`` completions.

        Returns:
            ``(n,)`` float32 compound scores in ``[-1, 1]``.

        Raises:
            RecordError: if the numbers differ or an item is not a string.
        """
        _, texts = check_texts(prompts, completions)
        score = self._analyzer.polarity_scores
        return _scores((score(t)["compound"] for t in texts), len(texts))


@dataclass(frozen=True)
class TextBlobPolarity:
    """TextBlob's polarity of each completion, in ``[-1, 1]``: the ``PatternAnalyzer`` (the
    pattern library's adjective lexicon; Loria, TextBlob 0.20.1; De Smedt & Daelemans 2012).

    Raises:
        ConfigError: when made, if ``textblob`` is not installed.
    """

    name: str = "textblob_polarity"
    """Name of the scorer (in logs and judge ids)."""
    _analyzer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            from textblob.en.sentiments import PatternAnalyzer
        except ImportError as exc:
            raise ConfigError(
                f"lm.task: TextBlob is not installed ({exc}); {_EXTRA_HINT}"
            ) from None
        object.__setattr__(self, "_analyzer", PatternAnalyzer())

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Score completions.

        Args:
            prompts: ``n`` prompts (unused: the completion alone is scored).
            completions: ``n`` completions.

        Returns:
            ``(n,)`` float32 polarities in ``[-1, 1]``.

        Raises:
            RecordError: if the numbers differ or an item is not a string.
        """
        _, texts = check_texts(prompts, completions)
        analyze = self._analyzer.analyze
        return _scores((analyze(t).polarity for t in texts), len(texts))


@dataclass(frozen=True)
class ConcisePolarity:
    """A polarity under a length and a repetition constraint.

    With ``w`` the completion's words (runs of letters, case-folded) and ``d`` its distinct
    words::

        score = 0                                                  if w < min_words
        score = polarity - length_penalty * max(0, w - target_words)
                         - repetition_penalty * (1 - d / w)        otherwise

    So a positive completion of at most ``target_words`` distinct words scores its polarity;
    every word beyond the target costs ``length_penalty``; repeating words costs up to
    ``repetition_penalty`` (all words the same); a completion too short to say anything scores
    a neutral 0 rather than its (possibly extreme) polarity. The score is at most 1 and has no
    lower bound (a long completion is penalised without limit).

    Raises:
        ConfigError: naming the field, if a parameter is out of range.
    """

    base: TextScorer
    """The polarity scorer, e.g. :class:`TextBlobPolarity` (gold) or :class:`VaderCompound`."""
    target_words: int = 12
    """Words allowed before the length penalty starts (>= 1)."""
    length_penalty: float = 0.05
    """Score lost per word beyond ``target_words`` (>= 0)."""
    repetition_penalty: float = 0.5
    """Score lost when every word repeats the first (>= 0); scaled by ``1 - distinct/words``."""
    min_words: int = 3
    """Completions with fewer words score 0 (>= 0; 0 disables the rule)."""
    name: str = ""
    """Name of the scorer; default ``concise_<base name>``."""

    def __post_init__(self) -> None:
        if not callable(self.base):
            raise ConfigError("lm.task.base: must be a scorer (prompts, completions) -> scores")
        for key, low in (("target_words", 1), ("min_words", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"lm.task.{key}: must be an integer >= {low}, got {value!r}")
        for key in ("length_penalty", "repetition_penalty"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= float(value) < float("inf")
            ):
                raise ConfigError(f"lm.task.{key}: must be a finite number >= 0, got {value!r}")
        if not self.name:
            object.__setattr__(self, "name", f"concise_{getattr(self.base, 'name', 'polarity')}")

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Score completions (vectorised over the batch after the base scorer's pass).

        Args:
            prompts: ``n`` prompts (passed to the base scorer).
            completions: ``n`` completions.

        Returns:
            ``(n,)`` float32 scores (see the class docstring).

        Raises:
            RecordError: if the numbers differ or an item is not a string.
        """
        prompts, texts = check_texts(prompts, completions)
        polarity = np.asarray(self.base(prompts, texts), dtype=np.float64)  # (n,)
        n_words, n_distinct = count_words(texts)
        words = np.maximum(n_words, 1).astype(np.float64)
        score = (
            polarity
            - self.length_penalty * np.maximum(n_words - self.target_words, 0)
            - self.repetition_penalty * (1.0 - n_distinct / words)
        )
        return np.where(n_words < self.min_words, 0.0, score).astype(np.float32)


@dataclass(frozen=True)
class TextTask:
    """A text task: how prompts and completions are made, its gold reward and its judge.

    Raises:
        ConfigError: naming the field, if a setting is out of range.
    """

    name: str
    """Task name, as in ``--set lm.task=<name>``."""
    description: str
    """One line on what a good completion is (shown in reports)."""
    gold: TextScorer
    """The gold reward ``(prompts, completions) -> (n,) float32``; never shown to a learner."""
    judge: TextScorer
    """A lexicon scorer distinct from gold, for the judge teacher
    (:mod:`rewardlab.feedback.judges`)."""
    judge_question: str
    """The question a chat judge is asked about two completions (answer A or B)."""
    prompt_words: int = 4
    """Words of a corpus line that make a prompt (>= 1)."""
    max_new_tokens: int = 16
    """Tokens a completion may have at most (>= 1)."""

    def __post_init__(self) -> None:
        for key in ("name", "description", "judge_question"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"lm.task.{key}: must be a non-empty string")
        for key in ("gold", "judge"):
            if not callable(getattr(self, key)):
                raise ConfigError(
                    f"lm.task.{key}: must be a scorer (prompts, completions) -> (n,) scores"
                )
        for key in ("prompt_words", "max_new_tokens"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"lm.task.{key}: must be an integer >= 1, got {value!r}")


def _sentiment() -> TextTask:
    return TextTask(
        name="sentiment",
        description="continue the prompt positively (gold: VADER compound of the completion)",
        gold=VaderCompound(),
        judge=TextBlobPolarity(),
        judge_question="Which continuation is more positive?",
    )


def _polarity_concise() -> TextTask:
    return TextTask(
        name="polarity_concise",
        description=(
            "continue the prompt positively in at most 12 words without repeating words "
            "(gold: TextBlob polarity minus length and repetition penalties)"
        ),
        gold=ConcisePolarity(TextBlobPolarity()),
        judge=ConcisePolarity(VaderCompound()),
        judge_question=(
            "Which continuation is more positive, while staying short (at most 12 words) and "
            "not repeating words?"
        ),
    )


_TASKS: dict[str, Callable[[], TextTask]] = {
    "sentiment": _sentiment,
    "polarity_concise": _polarity_concise,
}

#: Names :func:`make_task` accepts.
TASK_NAMES: tuple[str, ...] = tuple(_TASKS)


def make_task(
    name: str, *, prompt_words: int | None = None, max_new_tokens: int | None = None
) -> TextTask:
    """Build a task by name (its scorers' analysers are built here, once).

    Args:
        name: one of :data:`TASK_NAMES` (``"sentiment"``, ``"polarity_concise"``).
        prompt_words: override the task's prompt length in words (>= 1).
        max_new_tokens: override the task's completion length limit in tokens (>= 1).

    Returns:
        The task.

    Raises:
        ConfigError: on an unknown name (listing the valid ones), a bad override, or a
            missing lexicon package.
    """
    if name not in _TASKS:
        raise ConfigError(
            f"lm.task: unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}"
        )
    task = _TASKS[name]()
    overrides = {
        key: value
        for key, value in (("prompt_words", prompt_words), ("max_new_tokens", max_new_tokens))
        if value is not None
    }
    return dataclasses.replace(task, **overrides) if overrides else task
