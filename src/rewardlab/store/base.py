"""Connection, schema and transactions of the feedback store.

:class:`StoreBase` opens the database (SQLite in WAL mode with ``synchronous=FULL`` by default,
or any SQLAlchemy URL), creates or upgrades the schema, and gives every read and write method
of the store one transaction (``_read`` / ``_write``), turning SQLAlchemy errors into
:class:`~rewardlab.errors.StoreError`. The array codecs and id helpers shared by the store's
modules live here too. This module never imports torch.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import AddConstraint, UniqueConstraint

from rewardlab.errors import StoreError
from rewardlab.store.schema import (
    SCHEMA_VERSION,
    Base,
    MetaRow,
    PreferenceRow,
)
from rewardlab.types import NAME_LENGTH

#: File name of the SQLite database inside a run directory.
DB_FILENAME = "feedback.db"

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



class StoreBase:
    """The database connection and transactions of a :class:`~rewardlab.store.FeedbackStore`.

    The constructor's argument (a SQLAlchemy URL) and errors are documented on
    :class:`~rewardlab.store.FeedbackStore`, the class to use.
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
    def open(cls, run_dir: str | os.PathLike[str]) -> Self:
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

    def __enter__(self) -> Self:
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
