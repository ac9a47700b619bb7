"""Database schema of the feedback store (SQLAlchemy 2 typed declarative mapping).

Only portable column types are used (Integer, BigInteger, Float, String, Text, LargeBinary), so
the same schema works on SQLite (the default, one ``feedback.db`` per run directory) and on
PostgreSQL.

Arrays are stored as NumPy ``.npy`` bytes (``np.save`` with ``allow_pickle=False``), never as
pickles. Timestamps are float seconds since the Unix epoch (UTC), like
:attr:`rewardlab.types.Preference.timestamp`.

Tables:
    ``meta``: key/value pairs; ``schema_version`` is :data:`SCHEMA_VERSION`.
    ``segments``: one row per :class:`rewardlab.types.Segment` (``kind = 'control'``) or
        :class:`rewardlab.types.TextSegment` (``kind = 'text'``). Both kinds share the table so
        that queries, answers, annotators and assignments keep one code path. A text row holds
        ``prompt``/``completion`` (text), ``prompt_ids``/``completion_ids`` (``.npy`` int32) and
        ``gold`` (float or null); its ``env_id`` is the task id, ``episode_id`` the prompt
        index, ``start_step`` the sample index, ``length`` 1, ``obs_dim``/``act_dim`` 0 and
        ``obs``/``actions`` empty bytes. Control rows have null text columns.
    ``queries``: one row per :class:`rewardlab.types.Query` (a pair of segment ids).
    ``preferences``: answers to queries; a query may be answered by several teachers, at most
        once by each (``(query_id, teacher_id)`` is unique); ``label`` holds the integer code of
        :class:`rewardlab.types.Label`.
    ``annotators``: people who label in the web app; only the SHA-256 of a login token is kept.
    ``assignments``: which annotator was handed which query (``(query_id, annotator_id)`` unique).

Schema history: version 1 allowed one answer per query (``preferences.query_id`` unique) and had
no ``annotators``/``assignments`` tables; version 2 had no ``segments.dataset_id`` (the offline
dataset a segment was cut from); version 3 had no text segments (``segments.kind``, ``prompt``,
``completion``, ``prompt_ids``, ``completion_ids``, ``gold``). The store upgrades a version 1,
2 or 3 database to version 4 when it opens it (rows and ids kept; old segments get a null
``dataset_id``, ``kind = 'control'`` and null text columns).
"""

from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rewardlab.types import NAME_LENGTH

#: 64-bit ids everywhere; SQLite needs plain INTEGER for its auto-increment primary keys.
Id = BigInteger().with_variant(Integer(), "sqlite")

#: Version of this schema, stored in ``meta`` under ``schema_version``.
SCHEMA_VERSION = "4"


#: ``segments.kind`` of a :class:`rewardlab.types.Segment` (observations and actions).
CONTROL = "control"
#: ``segments.kind`` of a :class:`rewardlab.types.TextSegment` (a prompt and its completion).
TEXT = "text"
#: Width of the ``segments.kind`` column.
KIND_LENGTH = 16


def _now() -> float:
    return time.time()


class Base(DeclarativeBase):
    """Declarative base of the feedback store tables."""


class MetaRow(Base):
    """A key/value pair describing the database (e.g. ``schema_version``)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(NAME_LENGTH))


class SegmentRow(Base):
    """A stored segment. ``obs``/``actions``/``true_rewards`` are ``.npy`` float32 bytes;
    ``render_states`` (simulator states for rendering clips) ``.npy`` float64 bytes;
    ``dataset_id`` names the offline dataset it was cut from (null: the run's own experience),
    ``episode_id``/``start_step`` then index that dataset (schema version 3). ``kind`` is
    ``'control'`` or ``'text'``; a text segment's columns are described in the module
    docstring (schema version 4)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    env_id: Mapped[str] = mapped_column(String(NAME_LENGTH))
    episode_id: Mapped[int] = mapped_column(BigInteger)
    start_step: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    obs_dim: Mapped[int] = mapped_column(Integer)
    act_dim: Mapped[int] = mapped_column(Integer)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    actions: Mapped[bytes] = mapped_column(LargeBinary)
    true_rewards: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    render_states: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)
    dataset_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    kind: Mapped[str] = mapped_column(
        String(KIND_LENGTH), default=CONTROL, server_default=CONTROL
    )
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    completion: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_ids: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    completion_ids: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    gold: Mapped[float | None] = mapped_column(Float, nullable=True)


class QueryRow(Base):
    """A stored query: a left and a right segment asked about in a feedback round."""

    __tablename__ = "queries"
    __table_args__ = (CheckConstraint("left_id <> right_id", name="ck_queries_distinct"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    left_id: Mapped[int] = mapped_column(Id, ForeignKey("segments.id"), index=True)
    right_id: Mapped[int] = mapped_column(Id, ForeignKey("segments.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(NAME_LENGTH), default="uniform")
    created_at: Mapped[float] = mapped_column(Float, default=_now)


class PreferenceRow(Base):
    """A stored answer to a query; a teacher answers a query at most once (unique pair)."""

    __tablename__ = "preferences"
    __table_args__ = (
        CheckConstraint("label IN (0, 1, 2, 3)", name="ck_preferences_label"),
        UniqueConstraint("query_id", "teacher_id", name="uq_preferences_query_teacher"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    query_id: Mapped[int] = mapped_column(Id, ForeignKey("queries.id"))
    label: Mapped[int] = mapped_column(Integer)
    teacher_id: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    timestamp: Mapped[float] = mapped_column(Float)


class AnnotatorRow(Base):
    """A person who labels in the web app; ``token_sha256`` is the hex SHA-256 of the token."""

    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=_now)


class AssignmentRow(Base):
    """A query handed to an annotator (at most once per pair)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("query_id", "annotator_id", name="uq_assignments_query_annotator"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    query_id: Mapped[int] = mapped_column(Id, ForeignKey("queries.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(Id, ForeignKey("annotators.id"), index=True)
    assigned_at: Mapped[float] = mapped_column(Float, default=_now)
