"""People in the web app: annotators, their next query, progress, undo.

:class:`AnnotationStore` adds the annotation app's records and queries (login tokens, query
assignment with overlap, per-round progress, per-person answers and undo) to
:class:`~rewardlab.store.records.RecordStore`. This module never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from rewardlab.errors import StoreError
from rewardlab.store.annotators import (
    Annotator,
    Answer,
    NothingToUndoError,
    hash_token,
    new_token,
)
from rewardlab.store.base import _check_ids, _check_name, _chunks
from rewardlab.store.records import RecordStore, _to_answer
from rewardlab.store.schema import (
    AnnotatorRow,
    AssignmentRow,
    PreferenceRow,
    QueryRow,
)
from rewardlab.types import Label, Query


class AnnotationStore(RecordStore):
    """Annotators and the annotation app's reads and writes.

    See :class:`~rewardlab.store.FeedbackStore` for the transaction and durability guarantees.
    """

    def add_annotator(self, name: str) -> tuple[int, str]:
        """Add a person who labels in the web app and make their login token.

        Only the SHA-256 of the token is stored: the token itself is returned once, here.

        Args:
            name: unique, non-empty name (at most 255 characters, no surrounding whitespace);
                it becomes the ``teacher_id`` of the annotator's preferences.

        Returns:
            ``(annotator_id, token)``; ``token`` is ``secrets.token_urlsafe(32)``.

        Raises:
            StoreError: if the name is empty, too long, has surrounding whitespace or is taken,
                or the write fails.
        """
        if not isinstance(name, str) or not name.strip():
            raise StoreError("feedback store: an annotator name must be a non-empty string")
        if name != name.strip():
            raise StoreError(
                f"feedback store: annotator name {name!r} has leading or trailing whitespace"
            )
        _check_name("annotator name", name)
        token = new_token()
        row = AnnotatorRow(name=name, token_sha256=hash_token(token), created_at=time.time())
        with self._write("add an annotator") as session:
            taken = session.scalar(select(AnnotatorRow.id).where(AnnotatorRow.name == name))
            if taken is not None:
                raise StoreError(f"feedback store: annotator name {name!r} already exists")
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise StoreError(
                    f"feedback store: annotator name {name!r} already exists"
                ) from None
            return row.id, token

    def annotator_for_token(self, token: str) -> tuple[int, str] | None:
        """The annotator a login token belongs to.

        Args:
            token: the token :meth:`add_annotator` returned.

        Returns:
            ``(annotator_id, name)``, or ``None`` for an unknown token (or a non-string).

        Raises:
            StoreError: if the database read fails.
        """
        if not isinstance(token, str) or not token:
            return None
        digest = hash_token(token)
        with self._read("look up a token") as session:
            row = session.execute(
                select(AnnotatorRow.id, AnnotatorRow.name).where(
                    AnnotatorRow.token_sha256 == digest
                )
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def annotators(self) -> list[Annotator]:
        """Every annotator, in id order.

        Raises:
            StoreError: if the database read fails.
        """
        with self._read("read annotators") as session:
            rows = session.scalars(select(AnnotatorRow).order_by(AnnotatorRow.id)).all()
        return [Annotator(r.id, r.name, r.created_at) for r in rows]

    def current_round(self) -> int | None:
        """The current feedback round: the largest ``round`` of any query (``None``: none).

        Raises:
            StoreError: if the database read fails.
        """
        with self._read("read the current round") as session:
            return session.scalar(select(func.max(QueryRow.round)))

    def next_query_for(self, annotator_id: int, overlap: int = 1) -> Query | None:
        """The query an annotator should label next, assigned to them in the same transaction.

        Only queries of the current round (the largest ``round``) are handed out. First, the
        lowest-id query already assigned to this annotator and not answered by them (so a page
        refresh, or an undo, shows the same query again). Else the lowest-id query that this
        annotator has neither answered nor been assigned and that fewer than ``overlap``
        distinct annotators have been assigned; it is assigned to them before returning. With
        ``overlap=1`` no two annotators get the same query.

        Args:
            annotator_id: id of the annotator (see :meth:`add_annotator`).
            overlap: how many annotators may be assigned each query (>= 1).

        Returns:
            The query (``query_id`` set), or ``None`` when nothing is pending for them.

        Raises:
            StoreError: if ``overlap`` is not an integer >= 1, the annotator is unknown, or the
                database write fails.
        """
        if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 1:
            raise StoreError(f"feedback store: overlap must be an integer >= 1, got {overlap!r}")
        [annotator_id] = _check_ids("annotator ids", [annotator_id])
        with self._write("assign a query") as session:
            name = session.scalar(select(AnnotatorRow.name).where(AnnotatorRow.id == annotator_id))
            if name is None:
                raise StoreError(f"feedback store: unknown annotator id {annotator_id}")
            current = session.scalar(select(func.max(QueryRow.round)))
            if current is None:
                return None
            mine = select(AssignmentRow.query_id).where(AssignmentRow.annotator_id == annotator_id)
            answered = select(PreferenceRow.query_id).where(PreferenceRow.teacher_id == name)
            in_round = (QueryRow.round == current, QueryRow.id.not_in(answered))
            row = session.scalars(
                select(QueryRow)
                .where(*in_round, QueryRow.id.in_(mine))
                .order_by(QueryRow.id)
                .limit(1)
            ).first()
            if row is not None:
                return self._to_query(row)
            n_assigned = (
                select(func.count(AssignmentRow.annotator_id.distinct()))
                .where(AssignmentRow.query_id == QueryRow.id)
                .correlate(QueryRow)
                .scalar_subquery()
            )
            for _ in range(100):  # a candidate taken concurrently is skipped (PostgreSQL)
                candidates = session.scalars(
                    select(QueryRow.id)
                    .where(*in_round, QueryRow.id.not_in(mine), n_assigned < int(overlap))
                    .order_by(QueryRow.id)
                    .limit(20)
                ).all()
                if not candidates:
                    return None
                for qid in candidates:
                    # lock the query row (a no-op on SQLite, whose write lock is held already)
                    locked = session.scalars(
                        select(QueryRow).where(QueryRow.id == qid).with_for_update()
                    ).one()
                    taken = session.scalars(
                        select(AssignmentRow.annotator_id).where(AssignmentRow.query_id == qid)
                    ).all()
                    if annotator_id in taken:
                        return self._to_query(locked)
                    if len(set(taken)) < overlap:
                        session.add(
                            AssignmentRow(
                                query_id=qid, annotator_id=annotator_id, assigned_at=time.time()
                            )
                        )
                        session.flush()
                        return self._to_query(locked)
            raise StoreError("feedback store: cannot assign a query: too much contention")

    def progress(self, teacher_id: str) -> dict[str, int | None]:
        """Labelling progress by people (annotators), overall and of one teacher.

        Only answers of annotators count as answered here, so queries a scripted teacher
        pre-labelled for a person to audit (mixed mode) still show as open to people.

        Returns:
            ``round`` (current round, ``None`` without queries); ``round_size``: queries in
            it; ``answered_in_round``: those with at least one annotator's answer;
            ``mine_in_round``: answers of ``teacher_id`` in it; ``answered_total``: queries
            with at least one annotator's answer; ``total_queries``; ``mine_total``: answers
            of ``teacher_id``.

        Raises:
            StoreError: if the database read fails.
        """
        answered_q = (
            select(PreferenceRow.query_id)
            .where(PreferenceRow.teacher_id.in_(select(AnnotatorRow.name)))
            .distinct()
            .subquery()
        )
        with self._read("read progress") as session:
            current = session.scalar(select(func.max(QueryRow.round)))
            total = session.scalar(select(func.count()).select_from(QueryRow)) or 0
            answered_total = session.scalar(select(func.count()).select_from(answered_q)) or 0
            mine_total = (
                session.scalar(
                    select(func.count())
                    .select_from(PreferenceRow)
                    .where(PreferenceRow.teacher_id == teacher_id)
                )
                or 0
            )
            round_size = answered_in_round = mine_in_round = 0
            if current is not None:
                round_size = (
                    session.scalar(select(func.count()).where(QueryRow.round == current)) or 0
                )
                answered_in_round = (
                    session.scalar(
                        select(func.count())
                        .select_from(QueryRow)
                        .where(QueryRow.round == current, QueryRow.id.in_(select(answered_q)))
                    )
                    or 0
                )
                mine_in_round = (
                    session.scalar(
                        select(func.count())
                        .select_from(PreferenceRow)
                        .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
                        .where(QueryRow.round == current, PreferenceRow.teacher_id == teacher_id)
                    )
                    or 0
                )
        return {
            "round": current,
            "round_size": round_size,
            "answered_in_round": answered_in_round,
            "mine_in_round": mine_in_round,
            "answered_total": answered_total,
            "total_queries": total,
            "mine_total": mine_total,
        }

    def round_answers(self, round: int) -> tuple[np.ndarray, np.ndarray]:
        """The queries of one round and how many annotators (people) answered each.

        Args:
            round: the feedback round.

        Returns:
            ``(query_ids, people)``: ``(n,)`` int64 ids in id order and ``(n,)`` int64 counts
            of distinct annotators who answered each query (any label, SKIP included).

        Raises:
            StoreError: if the database read fails.
        """
        people = (
            select(func.count(PreferenceRow.teacher_id.distinct()))
            .where(
                PreferenceRow.query_id == QueryRow.id,
                PreferenceRow.teacher_id.in_(select(AnnotatorRow.name)),
            )
            .correlate(QueryRow)
            .scalar_subquery()
        )
        stmt = select(QueryRow.id, people).where(QueryRow.round == int(round)).order_by(QueryRow.id)
        with self._read("read a round's answers") as session:
            rows = session.execute(stmt).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        counts = np.array([r[1] for r in rows], dtype=np.int64)
        return ids, counts

    def answers_of(self, teacher_id: str, query_ids: Sequence[int]) -> dict[int, Label]:
        """One teacher's answers to the given queries (queries it did not answer are absent).

        Raises:
            StoreError: if the database read fails.
        """
        wanted = _check_ids("query ids", query_ids)
        found: dict[int, Label] = {}
        with self._read("read a teacher's answers") as session:
            for chunk in _chunks(wanted):
                for qid, label in session.execute(
                    select(PreferenceRow.query_id, PreferenceRow.label).where(
                        PreferenceRow.teacher_id == teacher_id, PreferenceRow.query_id.in_(chunk)
                    )
                ):
                    found[qid] = Label(label)
        return found

    def preferences_by(
        self, teacher_id: str, round: int | None = None, limit: int | None = None
    ) -> list[Answer]:
        """One teacher's answers, newest first.

        Args:
            teacher_id: the teacher (an annotator's name).
            round: only answers to queries of this round, or ``None`` for every round.
            limit: at most this many answers, or ``None`` for all.

        Raises:
            StoreError: if the database read fails.
        """
        stmt = (
            select(PreferenceRow, QueryRow.round)
            .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
            .where(PreferenceRow.teacher_id == teacher_id)
            .order_by(PreferenceRow.id.desc())
        )
        if round is not None:
            stmt = stmt.where(QueryRow.round == int(round))
        if limit is not None:
            stmt = stmt.limit(int(limit))
        with self._read("read a teacher's preferences") as session:
            rows = session.execute(stmt).all()
        return [_to_answer(pref, rnd) for pref, rnd in rows]

    def delete_preference(self, preference_id: int) -> Answer:
        """Delete one stored answer (undo); its query becomes unanswered by that teacher.

        Args:
            preference_id: the answer's id (:attr:`Answer.preference_id`, or the id
                :meth:`add_preferences` returned).

        Returns:
            The deleted answer.

        Raises:
            StoreError: if no answer has that id, or the write fails.
        """
        [preference_id] = _check_ids("preference ids", [preference_id])
        with self._write("delete a preference") as session:
            found = session.execute(
                select(PreferenceRow, QueryRow.round)
                .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
                .where(PreferenceRow.id == preference_id)
            ).first()
            if found is None:
                raise StoreError(f"feedback store: unknown preference id {preference_id}")
            answer = _to_answer(*found)
            session.execute(delete(PreferenceRow).where(PreferenceRow.id == preference_id))
            return answer

    def undo_last(self, teacher_id: str) -> Answer:
        """Delete a teacher's most recent answer in the current round, in one transaction.

        Returns:
            The deleted answer.

        Raises:
            NothingToUndoError: if the teacher has no answer in the current round.
            StoreError: if the write fails.
        """
        with self._write("undo an answer") as session:
            current = session.scalar(select(func.max(QueryRow.round)))
            found = session.execute(
                select(PreferenceRow, QueryRow.round)
                .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
                .where(PreferenceRow.teacher_id == teacher_id, QueryRow.round == current)
                .order_by(PreferenceRow.id.desc())
                .limit(1)
            ).first()
            if found is None:
                raise NothingToUndoError(
                    f"feedback store: nothing to undo: {teacher_id!r} has no answer in the "
                    f"current round ({current})"
                )
            answer = _to_answer(*found)
            session.execute(delete(PreferenceRow).where(PreferenceRow.id == answer.preference_id))
            return answer
