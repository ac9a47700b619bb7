"""Core records: segments of behaviour, queries over pairs of them, and preferences.

These records are the vocabulary every other module speaks. They hold NumPy arrays (never
torch tensors) and check shapes and dtypes at construction, so a malformed record fails where
it is made, with a message naming the field.

Label convention (shared with the store, the teachers and the reward model): a query shows a
*left* and a *right* segment; ``Label.LEFT`` means the left segment is preferred. As a soft
Bradley-Terry target, P[left preferred] is 1.0 for LEFT, 0.0 for RIGHT and 0.5 for EQUAL
(Christiano et al. 2017, "Deep reinforcement learning from human preferences", Sec. 2.2.3).
"""

from __future__ import annotations

import enum
import time
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from rewardlab.errors import RecordError

#: Maximum length of short names: env ids, teacher and annotator ids, query sources, store meta
#: values (the store's string columns, and the config's annotator names).
NAME_LENGTH = 255

#: Largest id of a stored record (segments, queries, preferences, annotators): ids are signed
#: 64-bit integers, so anything beyond names no record.
MAX_ID = 2**63 - 1

# Unicode categories refused in a name: control (Cc, incl. \x00-\x1f and \x7f), format (Cf,
# e.g. zero-width and bidi marks) and line/paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class Label(enum.IntEnum):
    """The answer to a query. Integer codes are stable: they are stored in the database."""

    RIGHT = 0
    """The right segment is preferred."""
    LEFT = 1
    """The left segment is preferred."""
    EQUAL = 2
    """Both segments are equally preferable (soft target 0.5)."""
    SKIP = 3
    """The teacher gave no answer ("can't tell"); the query is not used for training."""

    @classmethod
    def parse(cls, value: str | int | Label) -> Label:
        """Parse a label from its name (``"left"``, case-insensitive) or integer code.

        Raises:
            RecordError: if ``value`` names no label.
        """
        if isinstance(value, Label):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, (int, np.integer)):
            try:
                return cls(int(value))
            except ValueError:
                pass
        allowed = ", ".join(m.name.lower() for m in cls)
        raise RecordError(f"label: {value!r} is not a label; allowed: {allowed}")


#: Soft target P[left preferred] for each label code; NaN for SKIP. Index with ``Label`` codes.
LABEL_TARGETS = np.array([0.0, 1.0, 0.5, np.nan], dtype=np.float32)


def _as_float32(name: str, value: object, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise RecordError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise RecordError(f"{name}: expected a float array, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise RecordError(f"{name}: contains NaN or infinite values")
    return arr


def _check_steps(name: str, arr: np.ndarray, length: int) -> None:
    if arr.shape[0] != length:
        raise RecordError(f"{name}: expected {length} steps to match obs, got {arr.shape[0]}")


@dataclass(frozen=True)
class Segment:
    """A contiguous piece of one episode, shown to a teacher as one side of a query.

    Attributes:
        obs: ``(T, obs_dim)`` float32, the observation at each step (the state the action
            was taken in).
        actions: ``(T, act_dim)`` float32, the action taken at each step.
        true_rewards: ``(T,)`` float32, the environment's (gold) reward of each step, or
            ``None`` when unknown (e.g. for clips a person labels with no gold reward).
        env_id: the Gymnasium id of the environment, e.g. ``"HalfCheetah-v5"``.
        episode_id: index of the episode the segment was cut from (>= 0).
        start_step: step within that episode of the segment's first element (>= 0).
        segment_id: database id once stored, else ``None``.
        render_states: ``(T, state_dim)`` float64 simulator state at each step (for MuJoCo
            envs ``concat(qpos, qvel)``), from which the segment can be rendered to a clip for a
            person; ``None`` when not recorded.
        dataset_id: the offline dataset the segment was cut from (e.g. a Minari id such as
            ``"rewardlab/halfcheetah/medium-replay-v0"``; ``episode_id`` and ``start_step`` then
            index that dataset's episodes), or ``None`` for a segment of the run's own
            experience.

    Raises:
        RecordError: on a wrong shape, dtype, non-finite value, or inconsistent lengths.
    """

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray | None
    env_id: str
    episode_id: int
    start_step: int
    segment_id: int | None = None
    render_states: np.ndarray | None = None
    dataset_id: str | None = None

    def __post_init__(self) -> None:
        obs = _as_float32("Segment.obs", self.obs, 2)
        actions = _as_float32("Segment.actions", self.actions, 2)
        length = obs.shape[0]
        if length < 1:
            raise RecordError("Segment.obs: a segment needs at least one step")
        _check_steps("Segment.actions", actions, length)
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "actions", actions)
        if self.true_rewards is not None:
            rewards = _as_float32("Segment.true_rewards", self.true_rewards, 1)
            _check_steps("Segment.true_rewards", rewards, length)
            object.__setattr__(self, "true_rewards", rewards)
        if self.render_states is not None:
            states = _as_float32("Segment.render_states", self.render_states, 2)
            _check_steps("Segment.render_states", states, length)
            # validated as float, kept in float64: simulator states need the precision
            object.__setattr__(
                self, "render_states", np.asarray(self.render_states, dtype=np.float64)
            )
        if not isinstance(self.env_id, str) or not self.env_id:
            raise RecordError("Segment.env_id: must be a non-empty string such as 'Hopper-v5'")
        if self.dataset_id is not None and (
            not isinstance(self.dataset_id, str) or not self.dataset_id
        ):
            raise RecordError(
                "Segment.dataset_id: must be None or a non-empty string such as "
                f"'rewardlab/hopper/medium-v0', got {self.dataset_id!r}"
            )
        for name in ("episode_id", "start_step"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise RecordError(f"Segment.{name}: must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def length(self) -> int:
        """Number of steps T."""
        return int(self.obs.shape[0])

    @property
    def true_return(self) -> float | None:
        """Sum of the true rewards (undiscounted), or ``None`` when unknown."""
        return None if self.true_rewards is None else float(self.true_rewards.sum())


#: Largest token id a :class:`TextSegment` holds (ids are stored as int32).
MAX_TOKEN_ID = 2**31 - 1


def _check_text(name: str, value: object) -> str:
    """A string that every store backend can hold: UTF-8 encodable, no NUL character."""
    if not isinstance(value, str):
        raise RecordError(f"{name}: must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise RecordError(
            f"{name}: contains a NUL character (U+0000), which PostgreSQL text cannot hold; "
            "replace it (e.g. with U+FFFD) before making the record"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(
            f"{name}: is not valid Unicode text (a lone surrogate at position {exc.start}); "
            "decode token bytes with errors='replace'"
        ) from None
    return value


def _as_token_ids(name: str, value: object) -> np.ndarray:
    """A ``(n,)`` int32 copy of a 1-d array of token ids in ``[0, MAX_TOKEN_ID]``."""
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise RecordError(f"{name}: expected a 1-d array of token ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int32)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise RecordError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() > MAX_TOKEN_ID:
        raise RecordError(
            f"{name}: token ids must be in [0, {MAX_TOKEN_ID}], got range "
            f"[{int(arr.min())}, {int(arr.max())}]"
        )
    return arr.astype(np.int32)


@dataclass(frozen=True)
class TextSegment:
    """A language model's completion of a prompt, shown to a teacher as one side of a query.

    The text counterpart of :class:`Segment`: a query compares two completions (normally of the
    same prompt). Its gold score plays the part of a segment's true return: a text segment is a
    one-step episode whose single reward is ``gold`` (see :attr:`true_rewards`), so the scripted
    teachers of :mod:`rewardlab.feedback.teachers` answer text queries unchanged.

    Attributes:
        prompt: the prompt text (may be empty, e.g. for unconditional sampling).
        completion: the generated continuation, decoded (may be empty).
        prompt_ids: ``(P,)`` int32 token ids of the prompt, ``P >= 0``.
        completion_ids: ``(C,)`` int32 token ids of the completion, ``C >= 0``.
        task_id: which task and model produced it, e.g. ``"sentiment/gpt2-tiny"`` (the text
            counterpart of ``Segment.env_id``; at most 255 characters when stored).
        prompt_id: index of the prompt in the task's prompt set (>= 0); completions of the
            same prompt share it.
        sample_id: index of this completion among the samples drawn (>= 0).
        gold: the task's gold score of the completion (e.g. VADER compound), or ``None`` when
            unknown (e.g. text that people label with no gold scorer). Never shown to the
            learner.
        segment_id: database id once stored, else ``None``.

    Both strings must be UTF-8 encodable (no lone surrogates) and free of NUL characters
    (PostgreSQL text cannot hold ``U+0000``).

    Raises:
        RecordError: on a non-string or unencodable text, token ids that are not a 1-d integer
            array in ``[0, 2**31 - 1]``, a non-finite gold score, an empty ``task_id`` or a
            negative index.
    """

    prompt: str
    completion: str
    prompt_ids: np.ndarray
    completion_ids: np.ndarray
    task_id: str
    prompt_id: int = 0
    sample_id: int = 0
    gold: float | None = None
    segment_id: int | None = None

    def __post_init__(self) -> None:
        _check_text("TextSegment.prompt", self.prompt)
        _check_text("TextSegment.completion", self.completion)
        for name in ("prompt_ids", "completion_ids"):
            ids = _as_token_ids(f"TextSegment.{name}", getattr(self, name))
            object.__setattr__(self, name, ids)
        if not isinstance(self.task_id, str) or not self.task_id:
            raise RecordError(
                "TextSegment.task_id: must be a non-empty string such as 'sentiment/gpt2-tiny'"
            )
        if self.gold is not None:
            if isinstance(self.gold, bool) or not isinstance(
                self.gold, (int, float, np.integer, np.floating)
            ):
                raise RecordError(
                    f"TextSegment.gold: must be a real number or None, got {self.gold!r}"
                )
            if not np.isfinite(self.gold):
                raise RecordError(f"TextSegment.gold: must be finite, got {self.gold!r}")
            object.__setattr__(self, "gold", float(self.gold))
        for name in ("prompt_id", "sample_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise RecordError(f"TextSegment.{name}: must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.segment_id is not None:
            if isinstance(self.segment_id, bool) or not isinstance(
                self.segment_id, (int, np.integer)
            ):
                raise RecordError(
                    f"TextSegment.segment_id: must be an integer or None, got {self.segment_id!r}"
                )
            object.__setattr__(self, "segment_id", int(self.segment_id))

    @property
    def length(self) -> int:
        """Number of steps: 1 (a completion is scored once, as a whole)."""
        return 1

    @property
    def true_rewards(self) -> np.ndarray | None:
        """``(1,)`` float32 ``[gold]``: the one-step reward of the completion, or ``None``."""
        return None if self.gold is None else np.array([self.gold], dtype=np.float32)

    @property
    def true_return(self) -> float | None:
        """The gold score (the return of a one-step episode), or ``None`` when unknown."""
        return self.gold


@dataclass(frozen=True)
class Query:
    """A request for a preference between two stored segments.

    Attributes:
        left_id: database id of the left segment.
        right_id: database id of the right segment (different from ``left_id``).
        round: index of the feedback round the query was asked in (>= 0).
        query_id: database id once stored, else ``None``.

    Raises:
        RecordError: if an id is negative or both ids are equal.
    """

    left_id: int
    right_id: int
    round: int = 0
    query_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("left_id", "right_id", "round"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise RecordError(f"Query.{name}: must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.left_id == self.right_id:
            raise RecordError("Query.right_id: a query needs two different segments")


@dataclass(frozen=True)
class Preference:
    """A teacher's answer to one query.

    Attributes:
        query_id: database id of the query answered.
        label: the answer; ``Label.SKIP`` records that the teacher declined.
        teacher_id: who answered, e.g. ``"oracle"`` or an annotator's name.
        timestamp: seconds since the Unix epoch (UTC) when the answer was given.

    Raises:
        RecordError: on a negative query id, an unknown label or an empty teacher id.
    """

    query_id: int
    label: Label
    teacher_id: str
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.query_id, (int, np.integer)) or self.query_id < 0:
            raise RecordError(
                f"Preference.query_id: must be an integer >= 0, got {self.query_id!r}"
            )
        object.__setattr__(self, "query_id", int(self.query_id))
        object.__setattr__(self, "label", Label.parse(self.label))
        if not isinstance(self.teacher_id, str) or not self.teacher_id:
            raise RecordError("Preference.teacher_id: must be a non-empty string")
        object.__setattr__(self, "timestamp", float(self.timestamp))

    @property
    def target(self) -> float:
        """Soft Bradley-Terry target P[left preferred] (NaN for a skipped query)."""
        return float(LABEL_TARGETS[self.label])


def scripted_teacher_ids() -> frozenset[str]:
    """Names a scripted teacher answers under: the preset names and aliases (lower case).

    From :data:`rewardlab.config.TEACHER_PRESETS` and ``TEACHER_ALIASES``, imported
    here lazily (the config layer imports neither torch nor SQLAlchemy).
    """
    from rewardlab.config import TEACHER_ALIASES, TEACHER_PRESETS

    names = {*TEACHER_PRESETS, *TEACHER_ALIASES, *(c.name for c in TEACHER_PRESETS.values())}
    return frozenset(n.lower() for n in names)


def check_annotator_name(name: object) -> None:
    """Check the name of a person who labels in the web app (the one rule for every path).

    An annotator's name is the ``teacher_id`` of their answers, and answers of people are told
    apart from scripted ones by that id: so it must not be a scripted teacher's id (any case).
    It is shown in the web app, logs and reports: so it must have no control or invisible
    characters.

    Args:
        name: the proposed name.

    Raises:
        ValueError: naming the name and the problem, if it is not a string, is empty, has
            surrounding whitespace, is longer than :data:`NAME_LENGTH` characters, contains
            a character of Unicode category Cc/Cf/Zl/Zp (e.g. ``\\x00``-``\\x1f``, ``\\x7f``,
            a zero-width space), or is a scripted teacher's id (``oracle``, ``stochastic``,
            ``mistake``, ``skip``, ``equal``, ``myopic``, ``noisy``).
    """
    if not isinstance(name, str):
        raise ValueError(f"annotator name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ValueError(f"annotator name {name!r} is empty")
    if name != name.strip():
        raise ValueError(f"annotator name {name!r} has leading or trailing whitespace")
    if len(name) > NAME_LENGTH:
        raise ValueError(
            f"annotator name {name[:20]!r}... is {len(name)} characters long; "
            f"at most {NAME_LENGTH}"
        )
    for ch in name:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise ValueError(
                f"annotator name {name!r} contains the control or invisible character "
                f"U+{ord(ch):04X}"
            )
    reserved = scripted_teacher_ids()
    if name.lower() in reserved:
        raise ValueError(
            f"annotator name {name!r} is the id of a scripted teacher (reserved: "
            f"{', '.join(sorted(reserved))}); people's answers are told apart from scripted "
            "ones by name, so choose another"
        )
