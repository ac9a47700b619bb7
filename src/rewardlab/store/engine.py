"""The feedback store's database: engine, schema creation and upgrade, transactions.

:class:`Database` opens a SQLAlchemy URL (SQLite in WAL mode with ``synchronous=FULL``, or any
other backend such as PostgreSQL), creates the schema or upgrades an older one, and hands out
one transaction at a time with :meth:`Database.transaction`, turning database errors into
:class:`~rewardlab.errors.StoreError`. The store's parts (records, annotation, summaries) each
hold the same :class:`Database`. This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import AddConstraint, UniqueConstraint

from rewardlab.errors import StoreError
from rewardlab.store.schema import (
    CONTROL,
    SCHEMA_VERSION,
    Base,
    MetaRow,
    PreferenceRow,
    SegmentRow,
)

__all__ = ["Database"]

# Connection execution option marking a write transaction (SQLite: ``BEGIN IMMEDIATE``).
_WRITE_OPTION = "rewardlab_write"


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


def upgrade_from_v1(session: Session) -> None:
    """Upgrade schema version 1 to 2 in the session's transaction.

    Version 2 allows several answers per query: ``preferences.query_id`` unique becomes the
    unique pair ``(query_id, teacher_id)``. The new ``annotators`` and ``assignments`` tables
    are made by ``create_all`` beforehand. SQLite cannot drop a constraint, so its table is
    rebuilt (rows and ids kept); other backends drop the old unique constraint and add the new
    one and the teacher index.
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


def upgrade_from_v2(session: Session) -> None:
    """Upgrade schema version 2 to 3 in the session's transaction.

    Version 3 adds the nullable ``segments.dataset_id`` (the offline dataset a segment was cut
    from); existing segments keep a null one. ``ALTER TABLE ... ADD COLUMN`` of a nullable
    column works the same on SQLite and PostgreSQL. A column that exists already (a database
    whose version was reset by hand) is left alone.
    """
    conn = session.connection()
    columns = {c["name"] for c in inspect(conn).get_columns("segments")}
    if "dataset_id" in columns:
        return
    column = SegmentRow.__table__.c.dataset_id
    kind = column.type.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE segments ADD COLUMN dataset_id {kind}")


#: Columns version 4 added to ``segments`` (text segments), in the order they are added.
TEXT_COLUMNS = ("kind", "prompt", "completion", "prompt_ids", "completion_ids", "gold")


def upgrade_from_v3(session: Session) -> None:
    """Upgrade schema version 3 to 4 in the session's transaction.

    Version 4 stores text segments (a language model's prompt and completion) in the same
    ``segments`` table: it adds ``kind`` (``NOT NULL DEFAULT 'control'``, so every existing row
    becomes a control segment) and the nullable ``prompt``, ``completion``, ``prompt_ids``,
    ``completion_ids`` and ``gold``. ``ALTER TABLE ... ADD COLUMN`` with a constant default
    works the same on SQLite and PostgreSQL. Columns that exist already are left alone.
    """
    conn = session.connection()
    columns = {c["name"] for c in inspect(conn).get_columns("segments")}
    table = SegmentRow.__table__
    for name in TEXT_COLUMNS:
        if name in columns:
            continue
        kind = table.c[name].type.compile(dialect=conn.dialect)
        quoted = conn.dialect.identifier_preparer.quote(name)
        extra = f" DEFAULT '{CONTROL}' NOT NULL" if name == "kind" else ""
        conn.exec_driver_sql(f"ALTER TABLE segments ADD COLUMN {quoted} {kind}{extra}")


class Database:
    """A SQLAlchemy engine with the feedback store's schema, and its transactions.

    Opening creates the tables if missing, records :data:`~rewardlab.store.schema.SCHEMA_VERSION`
    in a new database and upgrades a version 1, 2 or 3 database in place.

    Args:
        url: SQLAlchemy database URL, e.g. ``"sqlite:////abs/run/feedback.db"`` or
            ``"postgresql+psycopg://user@host/db"``.

    Raises:
        StoreError: if the URL is invalid, its driver is not installed, the database cannot
            be opened or created, or it holds a schema version this code does not read.
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

    @property
    def url(self) -> str:
        """The database URL (password hidden)."""
        return self._url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine is None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine.

        Raises:
            StoreError: if the database is closed.
        """
        if self._engine is None:
            raise StoreError("feedback store: the store is closed")
        return self._engine

    def close(self) -> None:
        """Release every connection. Idempotent; no transaction can start afterwards."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def transaction(self, action: str, *, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A write transaction takes the write lock up front (SQLite: ``BEGIN IMMEDIATE``), so a
        read-then-write block sees no concurrent write in between; on SQLite, its commit is
        durable (WAL, ``synchronous=FULL``) once the block ends.

        Args:
            action: what the block does, for error messages (``"add segments"``).
            write: whether the block writes.

        Yields:
            The session of the transaction.

        Raises:
            StoreError: naming ``action`` if the database is closed or fails (SQLAlchemy
                errors, and ints the driver cannot bind, are turned into it); a
                :class:`StoreError` raised in the block passes unchanged (after rollback).
        """
        if self._engine is None:
            raise StoreError(f"feedback store: cannot {action}: the store is closed")
        try:
            with self._sessions() as session, session.begin():
                if write:
                    session.connection(execution_options={_WRITE_OPTION: True})
                yield session
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"feedback store: cannot {action} ({self._url}): {detail}") from exc
        except OverflowError as exc:  # sqlite3 cannot bind ints beyond 64 bits
            raise StoreError(f"feedback store: cannot {action} ({self._url}): {exc}") from exc

    def _initialise(self) -> None:
        Base.metadata.create_all(self.engine)
        with self.transaction("initialise the schema", write=True) as session:
            row = session.get(MetaRow, "schema_version")
            if row is None:
                session.add(MetaRow(key="schema_version", value=SCHEMA_VERSION))
            elif row.value in ("1", "2", "3"):
                if row.value == "1":
                    upgrade_from_v1(session)
                if row.value in ("1", "2"):
                    upgrade_from_v2(session)
                upgrade_from_v3(session)
                row.value = SCHEMA_VERSION
            elif row.value != SCHEMA_VERSION:
                raise StoreError(
                    f"feedback store: {self._url!r} has schema version {row.value!r}; "
                    f"this version of rewardlab reads version {SCHEMA_VERSION!r}"
                )

    def __repr__(self) -> str:
        return f"Database({self._url!r}{', closed' if self.closed else ''})"
