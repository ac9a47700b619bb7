"""Segments, queries and answers: what the training loop reads and writes.

:class:`Records` (``FeedbackStore.records``) stores segments, queries over pairs of them and
teachers' answers, and reads back the arrays a reward model trains on. The module-level
helpers (:func:`insert_preferences`, :func:`current_round_in`, ...) work inside a transaction
of the caller, so :class:`~rewardlab.store.annotation.Annotation` reuses them. This module never
imports torch.

Segments are of two kinds in one table: control segments (:class:`~rewardlab.types.Segment`:
observations and actions; :meth:`Records.add_segments`, :meth:`Records.get_segments`,
:meth:`Records.training_arrays`) and text segments (:class:`~rewardlab.types.TextSegment`: a
prompt and a language model's completion; :meth:`Records.add_text_segments`,
:meth:`Records.get_text_segments`, :meth:`Records.text_training_pairs`). Queries, answers and
assignments are the same for both; a query compares two segments of one kind, and a reader of
one kind refuses the other with :class:`~rewardlab.errors.SegmentKindError`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rewardlab.errors import (
    AlreadyAnsweredError,
    SegmentKindError,
    StaleRoundError,
    StoreError,
    UnknownQueryError,
    UnknownSegmentError,
)
from rewardlab.store.annotators import Answer
from rewardlab.store.codec import (
    check_ids,
    check_length,
    chunks,
    decode_array,
    encode_array,
    format_ids,
    storable,
)
from rewardlab.store.engine import Database
from rewardlab.store.schema import CONTROL, TEXT, PreferenceRow, QueryRow, SegmentRow
from rewardlab.types import Label, Preference, Query, Segment, TextSegment

__all__ = ["Records", "TextPairs"]


@dataclass(frozen=True)
class TextPairs:
    """Answered text queries, one entry per used answer, for fitting a text reward model.

    Attributes:
        left: the left completion of each answer (N :class:`TextSegment`; a segment in several
            queries is the same object each time).
        right: the right completion of each answer (N).
        labels: ``(N,)`` int8 :class:`~rewardlab.types.Label` codes.
        query_ids: ``(N,)`` int64 ids of the queries answered (query id order).
    """

    left: list[TextSegment]
    right: list[TextSegment]
    labels: np.ndarray
    query_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


def to_query(row: QueryRow) -> Query:
    """The :class:`Query` of a row."""
    return Query(left_id=row.left_id, right_id=row.right_id, round=row.round, query_id=row.id)


def to_answer(row: PreferenceRow, round: int) -> Answer:
    """The :class:`Answer` of a preference row and its query's round."""
    return Answer(
        preference_id=row.id,
        query_id=row.query_id,
        round=round,
        label=Label(row.label),
        teacher_id=row.teacher_id,
        timestamp=row.timestamp,
    )


def current_round_in(session: Session) -> int | None:
    """The largest ``round`` of any query (``None``: no query), read in ``session``."""
    return session.scalar(select(func.max(QueryRow.round)))


def segment_rows(session: Session, ids: Sequence[int]) -> dict[int, SegmentRow]:
    """The rows of these segment ids, by id.

    Raises:
        UnknownSegmentError: naming the ids that are not stored.
    """
    unique = sorted(set(ids))
    rows: dict[int, SegmentRow] = {}
    for chunk in chunks(storable(unique)):
        for row in session.scalars(select(SegmentRow).where(SegmentRow.id.in_(chunk))):
            rows[row.id] = row
    missing = [i for i in unique if i not in rows]
    if missing:
        raise UnknownSegmentError(
            f"feedback store: unknown segment ids: {format_ids(missing)}", tuple(missing)
        )
    return rows


def require_kind(rows: Collection[SegmentRow], kind: str, action: str, hint: str) -> None:
    """Raise :class:`SegmentKindError` naming the rows that are not of ``kind``.

    Args:
        rows: segment rows.
        kind: :data:`~rewardlab.store.schema.CONTROL` or :data:`~rewardlab.store.schema.TEXT`.
        action: what needs that kind, for the message (``"get_segments"``).
        hint: what to use instead, for the message.
    """
    wrong = sorted({r.id for r in rows if (r.kind or CONTROL) != kind})
    if wrong:
        raise SegmentKindError(
            f"feedback store: {action} reads {kind} segments, but segment ids "
            f"{format_ids(wrong)} are not; {hint}",
            tuple(wrong),
        )


def to_text_segment(row: SegmentRow) -> TextSegment:
    """The :class:`TextSegment` of a text row (token ids decoded)."""
    what = f"text segment {row.id}"
    if row.prompt is None or row.completion is None or row.prompt_ids is None or (
        row.completion_ids is None
    ):
        raise StoreError(f"feedback store: {what} misses its prompt or completion")
    return TextSegment(
        prompt=row.prompt,
        completion=row.completion,
        prompt_ids=decode_array(row.prompt_ids, f"{what} prompt_ids"),
        completion_ids=decode_array(row.completion_ids, f"{what} completion_ids"),
        task_id=row.env_id,
        prompt_id=row.episode_id,
        sample_id=row.start_step,
        gold=row.gold,
        segment_id=row.id,
    )


def text_segment_row(seg: TextSegment, now: float) -> SegmentRow:
    """The row of a text segment (checked: a :class:`TextSegment`, short enough a task id).

    Raises:
        StoreError: if ``seg`` is not a :class:`TextSegment` or its task id is too long.
    """
    if not isinstance(seg, TextSegment):
        raise StoreError(f"feedback store: expected a TextSegment, got {type(seg).__name__}")
    check_length("TextSegment.task_id", seg.task_id)
    return SegmentRow(
        kind=TEXT,
        env_id=seg.task_id,
        episode_id=seg.prompt_id,
        start_step=seg.sample_id,
        length=1,
        obs_dim=0,
        act_dim=0,
        obs=b"",
        actions=b"",
        true_rewards=None,
        render_states=None,
        created_at=now,
        dataset_id=None,
        prompt=seg.prompt,
        completion=seg.completion,
        prompt_ids=encode_array(seg.prompt_ids),
        completion_ids=encode_array(seg.completion_ids),
        gold=seg.gold,
    )


def to_segment(row: SegmentRow) -> Segment:
    """The :class:`Segment` of a control row (arrays decoded)."""
    what = f"segment {row.id}"
    return Segment(
        obs=decode_array(row.obs, f"{what} obs"),
        actions=decode_array(row.actions, f"{what} actions"),
        true_rewards=(
            None
            if row.true_rewards is None
            else decode_array(row.true_rewards, f"{what} true_rewards")
        ),
        env_id=row.env_id,
        episode_id=row.episode_id,
        start_step=row.start_step,
        segment_id=row.id,
        render_states=(
            None
            if row.render_states is None
            else decode_array(row.render_states, f"{what} render_states")
        ),
        dataset_id=row.dataset_id,
    )


def preference_rows(prefs: Sequence[Preference]) -> list[PreferenceRow]:
    """Rows for these answers, checked before any transaction.

    Raises:
        StoreError: if an item is not a :class:`Preference`, a teacher id is too long, or a
            ``(query_id, teacher_id)`` pair occurs twice.
    """
    rows = []
    for pref in prefs:
        if not isinstance(pref, Preference):
            raise StoreError(f"feedback store: expected a Preference, got {type(pref).__name__}")
        check_length("Preference.teacher_id", pref.teacher_id)
        rows.append(
            PreferenceRow(
                query_id=pref.query_id,
                label=int(pref.label),
                teacher_id=pref.teacher_id,
                timestamp=pref.timestamp,
            )
        )
    pairs: set[tuple[int, str]] = set()
    repeated: set[int] = set()
    for row in rows:
        key = (row.query_id, row.teacher_id)
        if key in pairs:
            repeated.add(row.query_id)
        pairs.add(key)
    if repeated:
        raise StoreError(
            f"feedback store: query ids answered twice in one call: {format_ids(repeated)} "
            "(by the same teacher)"
        )
    return rows


def insert_preferences(
    session: Session, rows: Sequence[PreferenceRow], current_round_only: bool
) -> list[int]:
    """Insert answer rows (from :func:`preference_rows`) in the caller's write transaction.

    Args:
        session: a write transaction (:meth:`Database.transaction` with ``write=True``).
        rows: the rows.
        current_round_only: refuse answers to queries of older rounds than the current one.

    Returns:
        The new preference ids, in order.

    Raises:
        UnknownQueryError: naming the query ids that are not stored.
        AlreadyAnsweredError: naming the query ids already answered by the same teacher
            (also when a concurrent writer answered first).
        StaleRoundError: with ``current_round_only``, naming queries of older rounds.
    """
    if not rows:
        return []
    pairs = {(row.query_id, row.teacher_id) for row in rows}
    seen = {q for q, _ in pairs}
    found: dict[int, int] = {}
    answered: dict[str, set[int]] = {}
    for chunk in chunks(storable(seen)):
        for qid, rnd in session.execute(
            select(QueryRow.id, QueryRow.round).where(QueryRow.id.in_(chunk))
        ):
            found[qid] = rnd
        for qid, teacher in session.execute(
            select(PreferenceRow.query_id, PreferenceRow.teacher_id).where(
                PreferenceRow.query_id.in_(chunk)
            )
        ):
            if (qid, teacher) in pairs:
                answered.setdefault(teacher, set()).add(qid)
    unknown = seen - set(found)
    if unknown:
        raise UnknownQueryError(
            f"feedback store: unknown query ids: {format_ids(unknown)}", tuple(sorted(unknown))
        )
    if answered:
        parts = [f"{format_ids(ids)} by {t!r}" for t, ids in sorted(answered.items())]
        raise AlreadyAnsweredError(
            f"feedback store: query ids already answered: {'; '.join(parts)}"
        )
    if current_round_only:
        current = current_round_in(session)
        stale = {q for q in seen if found[q] != current}
        if stale:
            rounds = sorted({found[q] for q in stale})
            raise StaleRoundError(
                f"feedback store: stale round: query ids {format_ids(stale)} belong to "
                f"round {', '.join(map(str, rounds))}, the current round is {current}"
            )
    session.add_all(rows)
    try:
        session.flush()
    except IntegrityError:
        # another writer answered one of these queries since the check above
        raise AlreadyAnsweredError(
            "feedback store: query ids already answered (by a concurrent writer): "
            f"{format_ids(seen)}"
        ) from None
    return [row.id for row in rows]


class Records:
    """Segments, queries and answers of one run: ``FeedbackStore(...).records``.

    Every write method is one transaction of :attr:`db`: it stores everything it was given
    or, on any error, nothing, and once it returns its rows are committed durably.

    Args:
        db: the store's database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_segments(self, segments: Sequence[Segment]) -> list[int]:
        """Store segments in one transaction.

        Args:
            segments: the segments; each holds ``obs (T, obs_dim)``, ``actions (T, act_dim)``
                and optionally ``true_rewards (T,)``, all float32, and its provenance
                (``env_id``, ``episode_id``, ``start_step``, and ``dataset_id`` for a segment of
                an offline dataset). Their ``segment_id`` is ignored.

        Returns:
            The new segment ids, in the order given.

        Raises:
            StoreError: if an item is not a :class:`Segment`, a string is too long, or the
                database write fails (then nothing is stored).
        """
        rows = []
        for seg in segments:
            if not isinstance(seg, Segment):
                raise StoreError(f"feedback store: expected a Segment, got {type(seg).__name__}")
            check_length("Segment.env_id", seg.env_id)
            if seg.dataset_id is not None:
                check_length("Segment.dataset_id", seg.dataset_id)
            rows.append(
                SegmentRow(
                    env_id=seg.env_id,
                    episode_id=seg.episode_id,
                    start_step=seg.start_step,
                    length=seg.length,
                    obs_dim=int(seg.obs.shape[1]),
                    act_dim=int(seg.actions.shape[1]),
                    obs=encode_array(seg.obs),
                    actions=encode_array(seg.actions),
                    true_rewards=(
                        None if seg.true_rewards is None else encode_array(seg.true_rewards)
                    ),
                    render_states=(
                        None if seg.render_states is None else encode_array(seg.render_states)
                    ),
                    created_at=time.time(),
                    dataset_id=seg.dataset_id,
                    kind=CONTROL,
                )
            )
        if not rows:
            return []
        with self.db.transaction("add segments", write=True) as session:
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def get_segments(self, ids: Sequence[int]) -> list[Segment]:
        """Load segments by id.

        Args:
            ids: segment ids; repeats are allowed.

        Returns:
            The segments in the order asked, with ``segment_id`` set and float32 arrays.

        Raises:
            UnknownSegmentError: naming the ids that are not stored.
            SegmentKindError: naming the ids of text segments (read those with
                :meth:`get_text_segments`).
            StoreError: if an id is not an integer, or the database read fails.
        """
        wanted = check_ids("segment ids", ids)
        with self.db.transaction("read segments") as session:
            rows = segment_rows(session, wanted)
        require_kind(rows.values(), CONTROL, "get_segments", "read them with get_text_segments")
        return [to_segment(rows[i]) for i in wanted]

    # ------------------------------------------------------------------ text segments

    def add_text_segments(self, segments: Sequence[TextSegment]) -> list[int]:
        """Store a language model's completions as text segments, in one transaction.

        Text segments live in the ``segments`` table with the control ones (``kind = 'text'``),
        so queries, answers, annotators and assignments treat both alike.

        Args:
            segments: the completions; each holds its ``prompt`` and ``completion`` text, their
                ``(P,)``/``(C,)`` int32 token ids, its ``task_id``, ``prompt_id``,
                ``sample_id`` and optional ``gold`` score. Their ``segment_id`` is ignored.

        Returns:
            The new segment ids, in the order given.

        Raises:
            StoreError: if an item is not a :class:`TextSegment`, a task id is longer than
                255 characters, or the database write fails (then nothing is stored).
        """
        now = time.time()
        rows = [text_segment_row(seg, now) for seg in segments]
        if not rows:
            return []
        with self.db.transaction("add text segments", write=True) as session:
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def get_text_segments(self, ids: Sequence[int]) -> list[TextSegment]:
        """Load text segments by id.

        Args:
            ids: segment ids; repeats are allowed.

        Returns:
            The text segments in the order asked, with ``segment_id`` set and int32 token ids.

        Raises:
            UnknownSegmentError: naming the ids that are not stored.
            SegmentKindError: naming the ids of control segments (read those with
                :meth:`get_segments`).
            StoreError: if an id is not an integer, or the database read fails.
        """
        wanted = check_ids("segment ids", ids)
        with self.db.transaction("read text segments") as session:
            rows = segment_rows(session, wanted)
        require_kind(rows.values(), TEXT, "get_text_segments", "read them with get_segments")
        decoded = {i: to_text_segment(row) for i, row in rows.items()}
        return [decoded[i] for i in wanted]

    def segment_kinds(self, ids: Sequence[int]) -> list[str]:
        """The kind of each segment: ``"control"`` (:class:`Segment`) or ``"text"``
        (:class:`TextSegment`).

        Args:
            ids: segment ids; repeats are allowed.

        Returns:
            One kind per id, in the order asked.

        Raises:
            UnknownSegmentError: naming the ids that are not stored.
            StoreError: if an id is not an integer, or the database read fails.
        """
        wanted = check_ids("segment ids", ids)
        unique = sorted(set(wanted))
        kinds: dict[int, str] = {}
        with self.db.transaction("read segment kinds") as session:
            for chunk in chunks(storable(unique)):
                for seg_id, kind in session.execute(
                    select(SegmentRow.id, SegmentRow.kind).where(SegmentRow.id.in_(chunk))
                ):
                    kinds[seg_id] = kind or CONTROL
        missing = [i for i in unique if i not in kinds]
        if missing:
            raise UnknownSegmentError(
                f"feedback store: unknown segment ids: {format_ids(missing)}", tuple(missing)
            )
        return [kinds[i] for i in wanted]

    # ------------------------------------------------------------------ queries

    def add_queries(
        self, pairs: Sequence[tuple[int, int]], round: int, source: str = "uniform"
    ) -> list[int]:
        """Store queries over pairs of stored segments, in one transaction.

        Args:
            pairs: ``(left_id, right_id)`` segment id pairs.
            round: the feedback round the queries are asked in (>= 0).
            source: how the pairs were selected, e.g. ``"uniform"`` or ``"disagreement"``.

        Returns:
            The new query ids, in the order given.

        Raises:
            RecordError: if a pair is not a valid :class:`Query` (negative or equal ids).
            UnknownSegmentError: naming the segment ids that are not stored.
            SegmentKindError: if a pair holds a control and a text segment.
            StoreError: if the source is empty or too long, or the write fails (nothing is
                stored on any error).
        """
        if not isinstance(source, str) or not source:
            raise StoreError("feedback store: query source must be a non-empty string")
        check_length("query source", source)
        queries = [Query(left_id=left, right_id=right, round=round) for left, right in pairs]
        if not queries:
            return []
        now = time.time()
        rows = [
            QueryRow(
                left_id=q.left_id, right_id=q.right_id, round=q.round, source=source, created_at=now
            )
            for q in queries
        ]
        segment_ids = [i for q in queries for i in (q.left_id, q.right_id)]
        with self.db.transaction("add queries", write=True) as session:
            found = segment_rows(session, segment_ids)
            mixed = sorted(
                {
                    i
                    for q in queries
                    if (found[q.left_id].kind or CONTROL) != (found[q.right_id].kind or CONTROL)
                    for i in (q.left_id, q.right_id)
                }
            )
            if mixed:
                raise SegmentKindError(
                    "feedback store: a query compares two segments of the same kind; these "
                    f"pairs mix a control and a text segment: segment ids {format_ids(mixed)}",
                    tuple(mixed),
                )
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def get_queries(self, ids: Sequence[int] | None = None) -> list[Query]:
        """Load queries.

        Args:
            ids: query ids to load (repeats allowed), or ``None`` for every query.

        Returns:
            The queries with ``query_id`` set: in the order asked, or in id order for ``None``.

        Raises:
            UnknownQueryError: naming the ids that are not stored.
            StoreError: if an id is not an integer, or the database read fails.
        """
        with self.db.transaction("read queries") as session:
            if ids is None:
                rows = list(session.scalars(select(QueryRow).order_by(QueryRow.id)))
                return [to_query(row) for row in rows]
            wanted = check_ids("query ids", ids)
            by_id: dict[int, QueryRow] = {}
            for chunk in chunks(storable(wanted)):
                for row in session.scalars(select(QueryRow).where(QueryRow.id.in_(chunk))):
                    by_id[row.id] = row
        missing = sorted({i for i in wanted if i not in by_id})
        if missing:
            raise UnknownQueryError(
                f"feedback store: unknown query ids: {format_ids(missing)}", tuple(missing)
            )
        return [to_query(by_id[i]) for i in wanted]

    def pending_queries(self, round: int | None = None, limit: int | None = None) -> list[Query]:
        """Queries that have no preference yet, in id order.

        Args:
            round: only queries of this round, or ``None`` for every round.
            limit: at most this many (the lowest ids), or ``None`` for all.

        Raises:
            StoreError: if the database read fails.
        """
        stmt = (
            select(QueryRow)
            .outerjoin(PreferenceRow, PreferenceRow.query_id == QueryRow.id)
            .where(PreferenceRow.id.is_(None))
            .order_by(QueryRow.id)
        )
        if round is not None:
            stmt = stmt.where(QueryRow.round == int(round))
        if limit is not None:
            stmt = stmt.limit(int(limit))
        with self.db.transaction("read pending queries") as session:
            return [to_query(row) for row in session.scalars(stmt)]

    def current_round(self) -> int | None:
        """The current feedback round: the largest ``round`` of any query (``None``: none).

        Raises:
            StoreError: if the database read fails.
        """
        with self.db.transaction("read the current round") as session:
            return current_round_in(session)

    # ------------------------------------------------------------------ preferences

    def add_preferences(self, prefs: Sequence[Preference]) -> list[int]:
        """Store answers to queries, in one transaction, durably committed before returning.

        A query may be answered by several teachers (e.g. annotators), at most once by each.
        Either every preference of the call is stored or, on any error, none is.

        Args:
            prefs: the answers; each names a stored query that its ``teacher_id`` has not
                answered yet, and a ``(query_id, teacher_id)`` pair occurs at most once per call.

        Returns:
            The new preference ids, in the order given.

        Raises:
            UnknownQueryError: naming the query ids that are not stored.
            AlreadyAnsweredError: naming the query ids already answered by the same teacher
                (also when a concurrent writer answered first).
            StoreError: naming the query ids repeated (same teacher) in the call, or if the
                write fails.
        """
        rows = preference_rows(prefs)
        if not rows:
            return []
        with self.db.transaction("add preferences", write=True) as session:
            return insert_preferences(session, rows, current_round_only=False)

    def add_preference(self, pref: Preference) -> int:
        """Store one answer; see :meth:`add_preferences`.

        Returns:
            The new preference id.

        Raises:
            UnknownQueryError: if the query is unknown.
            AlreadyAnsweredError: if the same teacher already answered it.
            StoreError: if the write fails.
        """
        return self.add_preferences([pref])[0]

    def preferences(self) -> list[Preference]:
        """Every stored answer (SKIP included), in the order they were stored.

        Raises:
            StoreError: if the database read fails.
        """
        with self.db.transaction("read preferences") as session:
            rows = session.scalars(select(PreferenceRow).order_by(PreferenceRow.id)).all()
        return [
            Preference(
                query_id=row.query_id,
                label=Label(row.label),
                teacher_id=row.teacher_id,
                timestamp=row.timestamp,
            )
            for row in rows
        ]

    def labelled_pairs(
        self, include_skipped: bool = False
    ) -> tuple[list[int], list[int], np.ndarray]:
        """Segment ids and labels of the answers, one per preference, in query id order.

        A query answered by several teachers occurs once per answer (in the order stored).

        Args:
            include_skipped: also return queries answered ``Label.SKIP``.

        Returns:
            ``(left_ids, right_ids, labels)``: segment id lists of length N and an ``(N,)``
            int8 array of :class:`Label` codes.

        Raises:
            StoreError: if the database read fails.
        """
        rows = self._answered(include_skipped)
        left = [r[1] for r in rows]
        right = [r[2] for r in rows]
        labels = np.array([r[3] for r in rows], dtype=np.int8)
        return left, right, labels

    def _answered(
        self,
        include_skipped: bool,
        fallback_teachers: Collection[str] = (),
        query_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, int, int, int]]:
        """``(query_id, left_id, right_id, label)`` of the answers used, in query id order.

        Answers of ``fallback_teachers`` count only for queries that no other teacher
        answered (a SKIP by another teacher included: a person's "can't tell" overrides).
        """
        stmt = (
            select(
                QueryRow.id, QueryRow.left_id, QueryRow.right_id, PreferenceRow.label,
                PreferenceRow.teacher_id,
            )
            .join(PreferenceRow, PreferenceRow.query_id == QueryRow.id)
            .order_by(QueryRow.id, PreferenceRow.id)
        )
        if query_ids is not None:
            stmt = stmt.where(QueryRow.id.in_(storable(check_ids("query ids", query_ids))))
        fallback = set(fallback_teachers)
        if not fallback and not include_skipped:
            stmt = stmt.where(PreferenceRow.label != int(Label.SKIP))
        with self.db.transaction("read labelled pairs") as session:
            rows = session.execute(stmt).all()
        if fallback:
            overridden = {r[0] for r in rows if r[4] not in fallback}
            rows = [r for r in rows if r[4] not in fallback or r[0] not in overridden]
            if not include_skipped:
                rows = [r for r in rows if r[3] != int(Label.SKIP)]
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def used_answers(
        self, query_ids: Sequence[int], fallback_teachers: Collection[str] = ()
    ) -> list[tuple[int, int]]:
        """``(query_id, label)`` of the answers training uses for these queries (SKIPs too).

        Args:
            query_ids: the queries (at most a round's worth: they go in one ``IN`` clause).
            fallback_teachers: as in :meth:`training_arrays`.

        Returns:
            One pair per used answer, in query id then answer order.

        Raises:
            StoreError: if an id is not an integer or the read fails.
        """
        rows = self._answered(True, fallback_teachers, query_ids)
        return [(r[0], r[3]) for r in rows]

    def training_arrays(
        self, include_skipped: bool = False, fallback_teachers: Collection[str] = ()
    ) -> dict[str, np.ndarray]:
        """Stacked arrays of the answers, for training a reward model.

        One row per preference (skipped ones left out unless ``include_skipped``): a query
        answered by two annotators gives two rows with the same ``query_ids`` entry, so a split
        by query id keeps them on the same side. Pair index 0 along axis 1 is the left segment,
        1 the right one.

        Args:
            include_skipped: also include queries answered ``Label.SKIP``.
            fallback_teachers: teachers whose answers count only where nobody else answered
                the query, e.g. the scripted teacher that pre-labels queries a person audits
                (mixed mode): a person's answer, "can't tell" included, overrides it.

        Returns:
            A dict with, for N answers to queries of segments with T steps (query id order):
            ``obs`` ``(N, 2, T, obs_dim)`` float32, ``actions`` ``(N, 2, T, act_dim)``
            float32, ``labels`` ``(N,)`` int8 :class:`Label` codes and ``query_ids`` ``(N,)``
            int64. With no answer, ``obs`` and ``actions`` have shape ``(0, 2, 0, 0)``.

        Raises:
            SegmentKindError: if an answered query is over text segments (read those with
                :meth:`text_training_pairs`).
            StoreError: if the segments differ in length, ``obs_dim`` or ``act_dim``, or the
                database read fails.
        """
        rows = self._answered(include_skipped, fallback_teachers)
        query_ids = np.array([r[0] for r in rows], dtype=np.int64)
        labels = np.array([r[3] for r in rows], dtype=np.int8)
        if not rows:
            empty = np.zeros((0, 2, 0, 0), dtype=np.float32)
            return {"obs": empty, "actions": empty.copy(), "labels": labels, "query_ids": query_ids}
        pair_ids = np.array([(r[1], r[2]) for r in rows], dtype=np.int64)  # (N, 2)
        seg_ids, inverse = np.unique(pair_ids, return_inverse=True)
        with self.db.transaction("read training arrays") as session:
            seg_rows = segment_rows(session, seg_ids.tolist())
        require_kind(
            seg_rows.values(), CONTROL, "training_arrays",
            "answers to text queries are read with text_training_pairs",
        )
        ordered = [seg_rows[int(i)] for i in seg_ids]
        shapes = {(r.length, r.obs_dim, r.act_dim) for r in ordered}
        if len(shapes) != 1:
            raise StoreError(
                "feedback store: cannot stack segments of differing (length, obs_dim, act_dim): "
                f"{sorted(shapes)}"
            )
        obs = np.stack([decode_array(r.obs, f"segment {r.id} obs") for r in ordered])
        actions = np.stack([decode_array(r.actions, f"segment {r.id} actions") for r in ordered])
        index = inverse.reshape(pair_ids.shape)  # (N, 2) rows of the (S, ...) arrays
        return {
            "obs": obs.astype(np.float32, copy=False)[index],
            "actions": actions.astype(np.float32, copy=False)[index],
            "labels": labels,
            "query_ids": query_ids,
        }

    def text_training_pairs(
        self, include_skipped: bool = False, fallback_teachers: Collection[str] = ()
    ) -> TextPairs:
        """The answers to text queries with their two completions, for a text reward model.

        The text counterpart of :meth:`training_arrays`: one entry per used answer (a query
        answered by two people gives two entries with the same query id), in query id order.

        Args:
            include_skipped: also include queries answered ``Label.SKIP``.
            fallback_teachers: as in :meth:`training_arrays`.

        Returns:
            A :class:`TextPairs` (empty when nothing is answered).

        Raises:
            SegmentKindError: if an answered query is over control segments (read those with
                :meth:`training_arrays`).
            StoreError: if the database read fails.
        """
        rows = self._answered(include_skipped, fallback_teachers)
        query_ids = np.array([r[0] for r in rows], dtype=np.int64)
        labels = np.array([r[3] for r in rows], dtype=np.int8)
        if not rows:
            return TextPairs([], [], labels, query_ids)
        wanted = sorted({i for r in rows for i in (r[1], r[2])})
        with self.db.transaction("read text training pairs") as session:
            seg_rows = segment_rows(session, wanted)
        require_kind(
            seg_rows.values(), TEXT, "text_training_pairs",
            "answers to control queries are read with training_arrays",
        )
        decoded = {i: to_text_segment(row) for i, row in seg_rows.items()}
        return TextPairs(
            left=[decoded[r[1]] for r in rows],
            right=[decoded[r[2]] for r in rows],
            labels=labels,
            query_ids=query_ids,
        )

    def answers_of(self, teacher_id: str, query_ids: Sequence[int]) -> dict[int, Label]:
        """One teacher's answers to the given queries (queries it did not answer are absent).

        Raises:
            StoreError: if an id is not an integer, or the database read fails.
        """
        wanted = storable(check_ids("query ids", query_ids))
        found: dict[int, Label] = {}
        with self.db.transaction("read a teacher's answers") as session:
            for chunk in chunks(wanted):
                for qid, label in session.execute(
                    select(PreferenceRow.query_id, PreferenceRow.label).where(
                        PreferenceRow.teacher_id == teacher_id, PreferenceRow.query_id.in_(chunk)
                    )
                ):
                    found[qid] = Label(label)
        return found
