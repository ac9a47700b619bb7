"""People in the web app: annotators, their next query, progress, answers and undo.

:class:`Annotation` (``FeedbackStore.annotation``) holds the annotation app's records and
queries: login tokens, query assignment with overlap, per-round progress, per-person answers
and undo. It shares the store's :class:`~rewardlab.store.engine.Database` with
:class:`~rewardlab.store.records.Records`. This module never imports torch.
"""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from rewardlab.errors import (
    DuplicateAnnotatorError,
    InvalidNameError,
    NothingToUndoError,
    StoreError,
    UnknownAnnotatorError,
    UnknownPreferenceError,
)
from rewardlab.store.annotators import Annotator, Answer, hash_token, new_token
from rewardlab.store.codec import check_ids, storable
from rewardlab.store.engine import Database
from rewardlab.store.records import (
    current_round_in,
    insert_preferences,
    preference_rows,
    to_answer,
    to_query,
)
from rewardlab.store.schema import AnnotatorRow, AssignmentRow, PreferenceRow, QueryRow
from rewardlab.types import Preference, Query, check_annotator_name

__all__ = ["Annotation"]


class Annotation:
    """Annotators and the annotation app's reads and writes: ``FeedbackStore(...).annotation``.

    Every write method is one transaction of :attr:`db` (all or nothing, durable on return).

    Args:
        db: the store's database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_annotator(self, name: str) -> tuple[int, str]:
        """Add a person who labels in the web app and make their login token.

        Only the SHA-256 of the token is stored: the token itself is returned once, here.

        Args:
            name: unique name following :func:`rewardlab.types.check_annotator_name`
                (non-empty, at most 255 characters, no surrounding whitespace, no control
                characters, not a scripted teacher's id); it becomes the ``teacher_id`` of the
                annotator's preferences.

        Returns:
            ``(annotator_id, token)``; ``token`` is ``secrets.token_urlsafe(32)``.

        Raises:
            InvalidNameError: if the name breaks the rules (the message says which).
            DuplicateAnnotatorError: if an annotator of that name exists.
            StoreError: if the write fails.
        """
        try:
            check_annotator_name(name)
        except ValueError as exc:
            raise InvalidNameError(f"feedback store: {exc}") from None
        token = new_token()
        row = AnnotatorRow(name=name, token_sha256=hash_token(token), created_at=time.time())
        taken = DuplicateAnnotatorError(f"feedback store: annotator name {name!r} already exists")
        with self.db.transaction("add an annotator", write=True) as session:
            if session.scalar(select(AnnotatorRow.id).where(AnnotatorRow.name == name)):
                raise taken
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise taken from None
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
        with self.db.transaction("look up a token") as session:
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
        with self.db.transaction("read annotators") as session:
            rows = session.scalars(select(AnnotatorRow).order_by(AnnotatorRow.id)).all()
        return [Annotator(r.id, r.name, r.created_at) for r in rows]

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
            UnknownAnnotatorError: if no annotator has that id.
            StoreError: if ``overlap`` is not an integer >= 1, or the database write fails.
        """
        if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 1:
            raise StoreError(f"feedback store: overlap must be an integer >= 1, got {overlap!r}")
        [annotator_id] = check_ids("annotator ids", [annotator_id])
        unknown = UnknownAnnotatorError(
            f"feedback store: unknown annotator id {annotator_id}", (annotator_id,)
        )
        if not storable([annotator_id]):
            raise unknown
        with self.db.transaction("assign a query", write=True) as session:
            name = session.scalar(select(AnnotatorRow.name).where(AnnotatorRow.id == annotator_id))
            if name is None:
                raise unknown
            current = current_round_in(session)
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
                return to_query(row)
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
                        return to_query(locked)
                    if len(set(taken)) < overlap:
                        session.add(
                            AssignmentRow(
                                query_id=qid, annotator_id=annotator_id, assigned_at=time.time()
                            )
                        )
                        session.flush()
                        return to_query(locked)
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
        with self.db.transaction("read progress") as session:
            current = current_round_in(session)
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
        with self.db.transaction("read a round's answers") as session:
            rows = session.execute(stmt).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        counts = np.array([r[1] for r in rows], dtype=np.int64)
        return ids, counts

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
        with self.db.transaction("read a teacher's preferences") as session:
            rows = session.execute(stmt).all()
        return [to_answer(pref, rnd) for pref, rnd in rows]

    def delete_preference(self, preference_id: int) -> Answer:
        """Delete one stored answer (undo); its query becomes unanswered by that teacher.

        Args:
            preference_id: the answer's id (:attr:`Answer.preference_id`, or the id
                :meth:`~rewardlab.store.records.Records.add_preferences` returned).

        Returns:
            The deleted answer.

        Raises:
            UnknownPreferenceError: if no answer has that id.
            StoreError: if the id is not an integer, or the write fails.
        """
        [preference_id] = check_ids("preference ids", [preference_id])
        unknown = UnknownPreferenceError(
            f"feedback store: unknown preference id {preference_id}", (preference_id,)
        )
        if not storable([preference_id]):
            raise unknown
        with self.db.transaction("delete a preference", write=True) as session:
            found = session.execute(
                select(PreferenceRow, QueryRow.round)
                .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
                .where(PreferenceRow.id == preference_id)
            ).first()
            if found is None:
                raise unknown
            answer = to_answer(*found)
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
        with self.db.transaction("undo an answer", write=True) as session:
            current = current_round_in(session)
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
            answer = to_answer(*found)
            session.execute(delete(PreferenceRow).where(PreferenceRow.id == answer.preference_id))
            return answer

    def add_answer(self, pref: Preference) -> int:
        """Store one person's answer to a query of the current round (as the web app does).

        Like :meth:`Records.add_preference <rewardlab.store.records.Records.add_preference>`,
        and in the same transaction checks that the query belongs to the current round (the
        largest ``round`` of any query).

        Returns:
            The new preference id.

        Raises:
            UnknownQueryError: if the query is not stored.
            StaleRoundError: if the query is from an older round than the current one.
            AlreadyAnsweredError: if ``pref.teacher_id`` already answered the query.
            StoreError: if ``pref`` is not a :class:`Preference`, or the write fails (nothing
                is stored on any error).
        """
        rows = preference_rows([pref])
        with self.db.transaction("add an answer", write=True) as session:
            return insert_preferences(session, rows, current_round_only=True)[0]
