"""The feedback store: segments, queries and preference labels in one transactional database.

By default the store is a SQLite file ``feedback.db`` in the run directory, opened in WAL mode
with ``synchronous=FULL``: every write method runs in one transaction, and once it returns the
data is committed durably, so a run killed at any moment loses no returned label. Any other
SQLAlchemy URL (e.g. ``postgresql+psycopg://...``) works with the same schema.

This module never imports torch: it speaks NumPy only.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import case, create_engine, delete, event, func, inspect, select
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import AddConstraint, UniqueConstraint

from rewardlab.errors import StoreError
from rewardlab.store.annotators import (
    AlreadyAnsweredError,
    Annotator,
    Answer,
    NothingToUndoError,
    StaleRoundError,
    UnknownQueryError,
    hash_token,
    new_token,
)
from rewardlab.store.schema import (
    NAME_LENGTH,
    SCHEMA_VERSION,
    AnnotatorRow,
    AssignmentRow,
    Base,
    MetaRow,
    PreferenceRow,
    QueryRow,
    SegmentRow,
)
from rewardlab.types import Label, Preference, Query, Segment

#: File name of the SQLite database inside a run directory.
DB_FILENAME = "feedback.db"

#: Suffixes :meth:`FeedbackStore.export` accepts.
EXPORT_SUFFIXES = (".jsonl", ".parquet")

# Connection execution option marking a write transaction (SQLite: ``BEGIN IMMEDIATE``).
_WRITE_OPTION = "rewardlab_write"
# Ids per ``IN (...)`` clause, well below every backend's bound-parameter limit.
_CHUNK = 500


def _encode_array(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _decode_array(blob: bytes, what: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise StoreError(f"feedback store: {what} is not a valid .npy array: {exc}") from exc


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _format_ids(ids: Sequence[int], limit: int = 20) -> str:
    ids = sorted(set(ids))
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _check_ids(name: str, ids: Sequence[int]) -> list[int]:
    out = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise StoreError(f"feedback store: {name} must be integers, got {value!r}")
        out.append(int(value))
    return out


def _check_name(name: str, value: str) -> None:
    if len(value) > NAME_LENGTH:
        raise StoreError(
            f"feedback store: {name} is {len(value)} characters long; at most {NAME_LENGTH}"
        )


def _already_answered(by_teacher: dict[str, set[int]]) -> str:
    parts = [f"{_format_ids(ids)} by {t!r}" for t, ids in sorted(by_teacher.items())]
    return f"feedback store: query ids already answered: {'; '.join(parts)}"


def _to_answer(row: PreferenceRow, round: int) -> Answer:
    return Answer(
        preference_id=row.id,
        query_id=row.query_id,
        round=round,
        label=Label(row.label),
        teacher_id=row.teacher_id,
        timestamp=row.timestamp,
    )


def _install_sqlite_hooks(engine: Engine) -> None:
    """Set the durability pragmas on each new SQLite connection and take over ``BEGIN``.

    pysqlite's own transaction handling begins a transaction only before the first write, so
    a read-then-write method would read outside its transaction. The driver is put in
    autocommit mode and SQLAlchemy's ``begin`` emits ``BEGIN`` itself (``BEGIN IMMEDIATE`` for
    writes, which takes the write lock up front and waits for it), as the SQLAlchemy SQLite
    documentation recommends.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


class FeedbackStore:
    """Segments, queries and preference labels of one run, in a SQL database.

    Every write method is one transaction: it either stores everything it was given or, on
    any error, nothing. Once a write method returns, its rows are committed durably (SQLite:
    WAL journal with ``synchronous=FULL``).

    Use :meth:`open` for the default SQLite file in a run directory, or pass any SQLAlchemy
    URL. The store is a context manager; :meth:`close` releases its connections.

    Args:
        url: SQLAlchemy database URL, e.g. ``"sqlite:////abs/run/feedback.db"`` or
            ``"postgresql+psycopg://user@host/db"``. Tables are created if missing.

    Raises:
        StoreError: if the URL is invalid, its driver is not installed, the database cannot
            be opened or created, or it holds a different schema version.
    """

    def __init__(self, url: str | URL) -> None:
        shown = url.render_as_string(hide_password=True) if isinstance(url, URL) else str(url)
        try:
            engine = create_engine(url)
        except ArgumentError as exc:
            raise StoreError(f"feedback store: invalid database URL {shown!r}: {exc}") from exc
        except ImportError as exc:
            raise StoreError(
                f"feedback store: the database driver for {shown!r} is not installed: {exc}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"feedback store: cannot open {shown!r}: {exc}") from exc
        self._engine: Engine | None = engine
        self._url = engine.url.render_as_string(hide_password=True)
        if engine.dialect.name == "sqlite":
            _install_sqlite_hooks(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        try:
            self._initialise()
        except StoreError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"feedback store: cannot open {self._url!r}: {detail}") from exc

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> FeedbackStore:
        """Open (creating if needed) the SQLite store ``feedback.db`` in a run directory.

        Args:
            run_dir: the run directory; created with its parents if missing.

        Returns:
            The open store.

        Raises:
            StoreError: if the directory cannot be created or written, or the database cannot
                be opened.
        """
        path = Path(run_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"feedback store: cannot create run directory {path}: {exc}") from exc
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"feedback store: run directory {path} is not writable")
        return cls(URL.create("sqlite", database=str(path.resolve() / DB_FILENAME)))

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The database URL (password hidden)."""
        return self._url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine is None

    def close(self) -> None:
        """Release every connection. Idempotent; the store cannot be used afterwards."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({self._url!r}{', closed' if self.closed else ''})"

    def _initialise(self) -> None:
        assert self._engine is not None
        Base.metadata.create_all(self._engine)
        with self._write("initialise the schema") as session:
            row = session.get(MetaRow, "schema_version")
            if row is None:
                session.add(MetaRow(key="schema_version", value=SCHEMA_VERSION))
            elif row.value == "1":
                self._upgrade_from_v1(session)
                row.value = SCHEMA_VERSION
            elif row.value != SCHEMA_VERSION:
                raise StoreError(
                    f"feedback store: {self._url!r} has schema version {row.value!r}; "
                    f"this version of rewardlab reads version {SCHEMA_VERSION!r}"
                )

    @staticmethod
    def _upgrade_from_v1(session: Session) -> None:
        """Allow several answers per query: ``preferences.query_id`` unique -> unique pair.

        The new ``annotators`` and ``assignments`` tables were already made by ``create_all``.
        SQLite cannot drop a constraint, so its table is rebuilt (rows and ids kept); other
        backends drop the old unique constraint and add the new one and the teacher index.
        """
        conn = session.connection()
        table = PreferenceRow.__table__
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("ALTER TABLE preferences RENAME TO preferences_v1")
            named = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'preferences_v1' AND sql IS NOT NULL"
            ).scalars()
            for index_name in list(named):  # explicit indexes keep their names: free them
                quoted = conn.dialect.identifier_preparer.quote(index_name)
                conn.exec_driver_sql(f"DROP INDEX {quoted}")
            table.create(conn)
            conn.exec_driver_sql(
                "INSERT INTO preferences (id, query_id, label, teacher_id, timestamp) "
                "SELECT id, query_id, label, teacher_id, timestamp FROM preferences_v1"
            )
            conn.exec_driver_sql("DROP TABLE preferences_v1")
            return
        for old in inspect(conn).get_unique_constraints("preferences"):
            if old["column_names"] == ["query_id"] and old["name"]:
                quoted = conn.dialect.identifier_preparer.quote(old["name"])
                conn.exec_driver_sql(f"ALTER TABLE preferences DROP CONSTRAINT {quoted}")
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint):
                conn.execute(AddConstraint(constraint))
        for index in table.indexes:
            index.create(conn)

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn SQLAlchemy errors into :class:`StoreError` naming the action."""
        if self._engine is None:
            raise StoreError(f"feedback store: cannot {action}: the store is closed")
        try:
            yield
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"feedback store: cannot {action} ({self._url}): {detail}") from exc

    @contextmanager
    def _read(self, action: str) -> Iterator[Session]:
        with self._guard(action), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _write(self, action: str) -> Iterator[Session]:
        with self._guard(action), self._sessions() as session, session.begin():
            session.connection(execution_options={_WRITE_OPTION: True})
            yield session

    # ------------------------------------------------------------------ segments

    def add_segments(self, segments: Sequence[Segment]) -> list[int]:
        """Store segments in one transaction.

        Args:
            segments: the segments; each holds ``obs (T, obs_dim)``, ``actions (T, act_dim)``
                and optionally ``true_rewards (T,)``, all float32. Their ``segment_id`` is
                ignored.

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
            _check_name("Segment.env_id", seg.env_id)
            rows.append(
                SegmentRow(
                    env_id=seg.env_id,
                    episode_id=seg.episode_id,
                    start_step=seg.start_step,
                    length=seg.length,
                    obs_dim=int(seg.obs.shape[1]),
                    act_dim=int(seg.actions.shape[1]),
                    obs=_encode_array(seg.obs),
                    actions=_encode_array(seg.actions),
                    true_rewards=(
                        None if seg.true_rewards is None else _encode_array(seg.true_rewards)
                    ),
                    render_states=(
                        None if seg.render_states is None else _encode_array(seg.render_states)
                    ),
                    created_at=time.time(),
                )
            )
        if not rows:
            return []
        with self._write("add segments") as session:
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
            StoreError: naming the ids that are not stored, or if the database read fails.
        """
        wanted = _check_ids("segment ids", ids)
        with self._read("read segments") as session:
            rows = self._segment_rows(session, wanted)
        return [self._to_segment(rows[i]) for i in wanted]

    @staticmethod
    def _segment_rows(session: Session, ids: Sequence[int]) -> dict[int, SegmentRow]:
        unique = sorted(set(ids))
        rows: dict[int, SegmentRow] = {}
        for chunk in _chunks(unique):
            for row in session.scalars(select(SegmentRow).where(SegmentRow.id.in_(chunk))):
                rows[row.id] = row
        missing = [i for i in unique if i not in rows]
        if missing:
            raise StoreError(f"feedback store: unknown segment ids: {_format_ids(missing)}")
        return rows

    @staticmethod
    def _to_segment(row: SegmentRow) -> Segment:
        what = f"segment {row.id}"
        return Segment(
            obs=_decode_array(row.obs, f"{what} obs"),
            actions=_decode_array(row.actions, f"{what} actions"),
            true_rewards=(
                None
                if row.true_rewards is None
                else _decode_array(row.true_rewards, f"{what} true_rewards")
            ),
            env_id=row.env_id,
            episode_id=row.episode_id,
            start_step=row.start_step,
            segment_id=row.id,
            render_states=(
                None
                if row.render_states is None
                else _decode_array(row.render_states, f"{what} render_states")
            ),
        )

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
            StoreError: naming the segment ids that are not stored, or if the write fails
                (then nothing is stored).
        """
        if not isinstance(source, str) or not source:
            raise StoreError("feedback store: query source must be a non-empty string")
        _check_name("query source", source)
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
        with self._write("add queries") as session:
            self._check_segments_exist(session, segment_ids)
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    @staticmethod
    def _check_segments_exist(session: Session, ids: Sequence[int]) -> None:
        unique = sorted(set(ids))
        found: set[int] = set()
        for chunk in _chunks(unique):
            found.update(session.scalars(select(SegmentRow.id).where(SegmentRow.id.in_(chunk))))
        missing = [i for i in unique if i not in found]
        if missing:
            raise StoreError(f"feedback store: unknown segment ids: {_format_ids(missing)}")

    def get_queries(self, ids: Sequence[int] | None = None) -> list[Query]:
        """Load queries.

        Args:
            ids: query ids to load (repeats allowed), or ``None`` for every query.

        Returns:
            The queries with ``query_id`` set: in the order asked, or in id order for ``None``.

        Raises:
            StoreError: naming the ids that are not stored, or if the database read fails.
        """
        with self._read("read queries") as session:
            if ids is None:
                rows = list(session.scalars(select(QueryRow).order_by(QueryRow.id)))
                return [self._to_query(row) for row in rows]
            wanted = _check_ids("query ids", ids)
            by_id: dict[int, QueryRow] = {}
            for chunk in _chunks(sorted(set(wanted))):
                for row in session.scalars(select(QueryRow).where(QueryRow.id.in_(chunk))):
                    by_id[row.id] = row
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise StoreError(f"feedback store: unknown query ids: {_format_ids(missing)}")
        return [self._to_query(by_id[i]) for i in wanted]

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
        with self._read("read pending queries") as session:
            return [self._to_query(row) for row in session.scalars(stmt)]

    @staticmethod
    def _to_query(row: QueryRow) -> Query:
        return Query(left_id=row.left_id, right_id=row.right_id, round=row.round, query_id=row.id)

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
        return self._add_preferences(prefs, current_round_only=False)

    def add_answer(self, pref: Preference) -> int:
        """Store one answer to a query of the current round (as the web app does).

        Like :meth:`add_preference`, and in the same transaction checks that the query belongs
        to the current round (the largest ``round`` of any query).

        Returns:
            The new preference id.

        Raises:
            UnknownQueryError: if the query is not stored.
            StaleRoundError: if the query is from an older round than the current one.
            AlreadyAnsweredError: if ``pref.teacher_id`` already answered the query.
            StoreError: if the write fails (nothing is stored on any error).
        """
        return self._add_preferences([pref], current_round_only=True)[0]

    def _add_preferences(self, prefs: Sequence[Preference], current_round_only: bool) -> list[int]:
        rows = []
        for pref in prefs:
            if not isinstance(pref, Preference):
                raise StoreError(
                    f"feedback store: expected a Preference, got {type(pref).__name__}"
                )
            _check_name("Preference.teacher_id", pref.teacher_id)
            rows.append(
                PreferenceRow(
                    query_id=pref.query_id,
                    label=int(pref.label),
                    teacher_id=pref.teacher_id,
                    timestamp=pref.timestamp,
                )
            )
        if not rows:
            return []
        pairs: set[tuple[int, str]] = set()
        repeated: set[int] = set()
        for row in rows:
            key = (row.query_id, row.teacher_id)
            if key in pairs:
                repeated.add(row.query_id)
            pairs.add(key)
        if repeated:
            raise StoreError(
                f"feedback store: query ids answered twice in one call: {_format_ids(repeated)} "
                "(by the same teacher)"
            )
        seen = {q for q, _ in pairs}
        with self._write("add preferences") as session:
            found: dict[int, int] = {}
            answered: dict[str, set[int]] = {}
            for chunk in _chunks(sorted(seen)):
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
                    f"feedback store: unknown query ids: {_format_ids(unknown)}"
                )
            if answered:
                raise AlreadyAnsweredError(_already_answered(answered))
            if current_round_only:
                current = session.scalar(select(func.max(QueryRow.round)))
                stale = {q for q in seen if found[q] != current}
                if stale:
                    rounds = sorted({found[q] for q in stale})
                    raise StaleRoundError(
                        f"feedback store: stale round: query ids {_format_ids(stale)} belong to "
                        f"round {', '.join(map(str, rounds))}, the current round is {current}"
                    )
            session.add_all(rows)
            try:
                session.flush()
            except IntegrityError:
                # another writer answered one of these queries since the check above
                raise AlreadyAnsweredError(
                    "feedback store: query ids already answered (by a concurrent writer): "
                    f"{_format_ids(seen)}"
                ) from None
            return [row.id for row in rows]

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
        with self._read("read preferences") as session:
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
            stmt = stmt.where(QueryRow.id.in_(_check_ids("query ids", query_ids)))
        fallback = set(fallback_teachers)
        if not fallback and not include_skipped:
            stmt = stmt.where(PreferenceRow.label != int(Label.SKIP))
        with self._read("read labelled pairs") as session:
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
        with self._read("read training arrays") as session:
            seg_rows = self._segment_rows(session, seg_ids.tolist())
        ordered = [seg_rows[int(i)] for i in seg_ids]
        shapes = {(r.length, r.obs_dim, r.act_dim) for r in ordered}
        if len(shapes) != 1:
            raise StoreError(
                "feedback store: cannot stack segments of differing (length, obs_dim, act_dim): "
                f"{sorted(shapes)}"
            )
        obs = np.stack([_decode_array(r.obs, f"segment {r.id} obs") for r in ordered])
        actions = np.stack([_decode_array(r.actions, f"segment {r.id} actions") for r in ordered])
        index = inverse.reshape(pair_ids.shape)  # (N, 2) rows of the (S, ...) arrays
        return {
            "obs": obs.astype(np.float32, copy=False)[index],
            "actions": actions.astype(np.float32, copy=False)[index],
            "labels": labels,
            "query_ids": query_ids,
        }

    # ------------------------------------------------------------------ annotators

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

    def agreement(self) -> dict[str, float | int | None]:
        """Agreement between teachers on queries several of them answered.

        Returns:
            ``overlapping``: queries answered by at least two distinct teachers;
            ``compared``: those of them with at least two non-SKIP answers (a SKIP neither
            agrees nor disagrees, so a query with fewer non-SKIP answers is not compared);
            ``agreeing``: compared queries whose non-SKIP answers are all the same label;
            ``fraction``: ``agreeing / compared``, or ``None`` when nothing was compared.

        Raises:
            StoreError: if the database read fails.
        """
        stmt = (
            select(PreferenceRow.query_id, PreferenceRow.teacher_id, PreferenceRow.label)
            .where(
                PreferenceRow.query_id.in_(
                    select(PreferenceRow.query_id)
                    .group_by(PreferenceRow.query_id)
                    .having(func.count(PreferenceRow.teacher_id.distinct()) >= 2)
                )
            )
            .order_by(PreferenceRow.query_id)
        )
        with self._read("read agreement") as session:
            rows = session.execute(stmt).all()
        labels: dict[int, list[int]] = {}
        for qid, _teacher, label in rows:
            labels.setdefault(qid, []).append(label)
        compared = agreeing = 0
        for answers in labels.values():
            real = [a for a in answers if a != int(Label.SKIP)]
            if len(real) >= 2:
                compared += 1
                agreeing += len(set(real)) == 1
        return {
            "overlapping": len(labels),
            "compared": compared,
            "agreeing": agreeing,
            "fraction": agreeing / compared if compared else None,
        }

    # ------------------------------------------------------------------ summaries

    def counts(self) -> dict[str, int]:
        """Row counts.

        Returns:
            ``segments`` and ``queries`` stored; ``preferences``: answers stored (a query may
            have several, one per teacher); ``answered``: queries with at least one answer
            (SKIP included); ``skipped``: answered queries whose every answer is
            ``Label.SKIP`` (so none of their answers is used for training); ``pending``:
            queries with no answer (``queries - answered``).

        Raises:
            StoreError: if the database read fails.
        """
        per_query = (
            select(
                PreferenceRow.query_id,
                func.min(case((PreferenceRow.label == int(Label.SKIP), 1), else_=0)).label(
                    "all_skip"
                ),
            )
            .group_by(PreferenceRow.query_id)
            .subquery()
        )
        with self._read("count rows") as session:
            n_segments = session.scalar(select(func.count()).select_from(SegmentRow)) or 0
            n_queries = session.scalar(select(func.count()).select_from(QueryRow)) or 0
            n_prefs = session.scalar(select(func.count()).select_from(PreferenceRow)) or 0
            n_answered = session.scalar(select(func.count()).select_from(per_query)) or 0
            n_skipped = (
                session.scalar(
                    select(func.count()).select_from(per_query).where(per_query.c.all_skip == 1)
                )
                or 0
            )
        return {
            "segments": n_segments,
            "queries": n_queries,
            "preferences": n_prefs,
            "answered": n_answered,
            "skipped": n_skipped,
            "pending": n_queries - n_answered,
        }

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every stored answer, joined with its query, to a JSONL or Parquet file.

        One row per preference, in the order stored, with the fields ``query_id``, ``round``,
        ``left_id``, ``right_id``, ``source``, ``label`` (lower-case name), ``teacher_id``,
        ``timestamp`` (epoch seconds) and ``left_true_return`` / ``right_true_return`` (sum
        of the segment's true rewards, or null when unknown).

        Args:
            path: output file; ``.jsonl`` writes JSON lines, ``.parquet`` a Parquet table.
                Parent directories are created.

        Returns:
            The number of rows written.

        Raises:
            StoreError: on any other suffix (naming the allowed ones), or if the database read
                or the file write fails.
        """
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix not in EXPORT_SUFFIXES:
            raise StoreError(
                f"feedback store: cannot export to {out.name!r}: the suffix must be one of "
                f"{', '.join(EXPORT_SUFFIXES)}"
            )
        stmt = (
            select(
                PreferenceRow.query_id,
                QueryRow.round,
                QueryRow.left_id,
                QueryRow.right_id,
                QueryRow.source,
                PreferenceRow.label,
                PreferenceRow.teacher_id,
                PreferenceRow.timestamp,
            )
            .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
            .order_by(PreferenceRow.id)
        )
        with self._read("export preferences") as session:
            joined = session.execute(stmt).all()
            returns = self._true_returns(session, {i for r in joined for i in (r[2], r[3])})
        records = [
            {
                "query_id": r[0],
                "round": r[1],
                "left_id": r[2],
                "right_id": r[3],
                "source": r[4],
                "label": Label(r[5]).name.lower(),
                "teacher_id": r[6],
                "timestamp": r[7],
                "left_true_return": returns.get(r[2]),
                "right_true_return": returns.get(r[3]),
            }
            for r in joined
        ]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".jsonl":
                with out.open("w", encoding="utf-8") as fh:
                    for rec in records:
                        fh.write(json.dumps(rec) + "\n")
            else:
                self._write_parquet(out, records)
        except OSError as exc:
            raise StoreError(f"feedback store: cannot write {out}: {exc}") from exc
        return len(records)

    @staticmethod
    def _true_returns(session: Session, ids: set[int]) -> dict[int, float]:
        returns: dict[int, float] = {}
        for chunk in _chunks(sorted(ids)):
            stmt = select(SegmentRow.id, SegmentRow.true_rewards).where(SegmentRow.id.in_(chunk))
            for seg_id, blob in session.execute(stmt):
                if blob is not None:
                    rewards = _decode_array(blob, f"segment {seg_id} true_rewards")
                    returns[seg_id] = float(rewards.sum(dtype=np.float32))
        return returns

    @staticmethod
    def _write_parquet(out: Path, records: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("query_id", pa.int64()),
                ("round", pa.int64()),
                ("left_id", pa.int64()),
                ("right_id", pa.int64()),
                ("source", pa.string()),
                ("label", pa.string()),
                ("teacher_id", pa.string()),
                ("timestamp", pa.float64()),
                ("left_true_return", pa.float64()),
                ("right_true_return", pa.float64()),
            ]
        )
        table = pa.Table.from_pylist(records, schema=schema)
        try:
            pq.write_table(table, out)
        except pa.ArrowException as exc:
            raise StoreError(f"feedback store: cannot write {out}: {exc}") from exc
