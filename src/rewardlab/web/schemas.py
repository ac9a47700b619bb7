"""Request and response bodies of the annotation API (pydantic models)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rewardlab.types import MAX_ID

#: A clip's file name in ``/api/clips/<name>``: ``<segment id>.mp4``, the id in ASCII digits
#: (at most 19 of them: a 64-bit id).
_CLIP_NAME = re.compile(r"([0-9]{1,19})\.mp4")


def parse_clip_name(name: str) -> int | None:
    """The segment id a clip file name ``<id>.mp4`` names.

    Args:
        name: the last path segment of ``/api/clips/<name>``.

    Returns:
        The id, or ``None`` when ``name`` is not ``<digits>.mp4`` or the id is beyond
        :data:`~rewardlab.types.MAX_ID` (such a segment cannot exist). Never raises.
    """
    found = _CLIP_NAME.fullmatch(name) if isinstance(name, str) else None
    if found is None:
        return None
    value = int(found.group(1))
    return value if value <= MAX_ID else None


#: Label names the API accepts, mapped to :class:`rewardlab.types.Label` names.
LabelName = Literal["left", "right", "equal", "skip"]


class PreferenceIn(BaseModel):
    """Body of ``POST /api/preferences``."""

    model_config = ConfigDict(extra="forbid")

    query_id: StrictInt = Field(ge=0, le=MAX_ID, description="id of the query answered")
    label: LabelName = Field(
        description="which side (clip or completion) is better: left, right, equal or skip"
    )


class PreferenceOut(BaseModel):
    """Answer of ``POST /api/preferences``."""

    preference_id: int


class ClipRef(BaseModel):
    """One side of a query: the segment and where its clip is served."""

    segment_id: int
    clip_url: str


class TextRef(BaseModel):
    """One side of a text query: a language model's completion of the query's prompt."""

    segment_id: int
    completion: str


class Progress(BaseModel):
    """Labelling progress of the current round and overall.

    ``answered_in_round`` / ``answered_total`` count queries with at least one answer (by
    anyone); ``mine_in_round`` / ``mine_total`` count this annotator's answers.
    """

    round: int | None
    answered_in_round: int
    round_size: int
    answered_total: int
    total_queries: int
    mine_in_round: int
    mine_total: int


class NextQuery(BaseModel):
    """Answer of ``GET /api/next``: the query to label.

    ``kind`` says what the two sides are: ``"clip"`` (videos of control segments, ``left`` and
    ``right`` are :class:`ClipRef`) or ``"text"`` (two completions of ``prompt``, ``left`` and
    ``right`` are :class:`TextRef`). Both are answered with the same labels.
    """

    query_id: int
    round: int
    kind: Literal["clip", "text"] = "clip"
    prompt: str | None = Field(None, description="the prompt both completions continue (text)")
    left: ClipRef | TextRef
    right: ClipRef | TextRef
    progress: Progress
    suggestion: LabelName | None = Field(
        None, description="the scripted teacher's answer that people audit (mixed mode)"
    )


class TrainingStatus(BaseModel):
    """Answer of ``GET /api/status``: what training is doing (see
    :mod:`rewardlab.feedback.run_status`); every field is ``None`` when no trainer wrote one."""

    state: Literal["training", "waiting", "finished", "stopped"] | None = None
    step: int | None = None
    total_steps: int | None = None
    round: int | None = None
    round_size: int | None = None
    answered: int | None = None
    required_answers: int | None = None
    deadline: float | None = None
    on_timeout: Literal["wait", "skip", "scripted"] | None = None
    asked: int | None = None
    budget: int | None = None
    next_round_step: int | None = None
    prelabel_teacher: str | None = None
    updated_at: float | None = None
    now: float = Field(description="server time (seconds since the Unix epoch)")


class Me(BaseModel):
    """Answer of ``GET /api/me``."""

    annotator_id: int
    name: str


class RecentAnswer(BaseModel):
    """One of the annotator's answers, in ``GET /api/recent``."""

    preference_id: int
    query_id: int
    round: int
    label: LabelName
    timestamp: float


class Recent(BaseModel):
    """Answer of ``GET /api/recent``: newest first, at most 10."""

    current_round: int | None
    answers: list[RecentAnswer]


class Undone(BaseModel):
    """Answer of ``POST /api/undo``."""

    undone: int
