"""PostgreSQL-only tests of the feedback store, on a real, throwaway server.

The server and the per-test databases come from ``conftest.py``; the tests there skip
without the server binaries or the psycopg driver. Everything both backends must do is
tested by the ``store`` tests of ``test_store.py``, which run on PostgreSQL too; this
module checks what only PostgreSQL has: the schema as the server sees it, 64-bit ids,
concurrent writers on separate connections and errors of the server connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

from rewardlab.errors import StoreError
from rewardlab.store import FeedbackStore
from rewardlab.types import Label, Preference
from tests.helpers import random_segments

if TYPE_CHECKING:
    from tests.store.conftest import PgServer


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[FeedbackStore]:
    with FeedbackStore(pg_url) as s:
        yield s


def _dbname(store: FeedbackStore) -> str:
    return store.url.rsplit("/", 1)[1]


def test_opens_postgresql_with_schema(pg_store: FeedbackStore, pg_server: PgServer) -> None:
    assert pg_store.url.startswith("postgresql+psycopg://rewardlab@127.0.0.1:")
    assert pg_store.db.engine.dialect.name == "postgresql"
    dbname = _dbname(pg_store)
    with pg_server.connect(dbname) as con:
        tables = {
            r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert tables == {"meta", "segments", "queries", "preferences", "annotators", "assignments"}
    assert version == [("2",)]


def test_ids_are_64_bit(pg_store: FeedbackStore, pg_server: PgServer) -> None:
    with pg_server.connect(_dbname(pg_store)) as con:
        id_types = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND (column_name = 'id' OR column_name LIKE '%_id') "
            "AND data_type <> 'character varying'"
        ).fetchall()
        big = 2**40
        for table in ("segments", "queries", "preferences"):  # ids beyond 32 bits
            con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {big})")
    assert id_types and {t for _, _, t in id_types} == {"bigint"}, id_types
    segs = random_segments(2)
    a, b = pg_store.records.add_segments(segs)
    assert (a, b) == (big + 1, big + 2)
    np.testing.assert_array_equal(pg_store.records.get_segments([b])[0].obs, segs[1].obs)
    [q] = pg_store.records.add_queries([(b, a)], round=0)
    assert q == big + 1
    [p] = pg_store.records.add_preferences([Preference(q, Label.LEFT, "o")])
    assert p == big + 1
    assert pg_store.records.labelled_pairs()[:2] == ([b], [a])
    with pytest.raises(StoreError, match=rf"unknown query ids: {big + 9}\b"):
        pg_store.records.get_queries([big + 9])


def test_concurrent_answer_from_another_connection(
    pg_store: FeedbackStore, pg_server: PgServer
) -> None:
    """The unique (query, teacher) constraint backs the check: a racing answer by the same
    teacher is a StoreError, not a crash."""
    a, b = pg_store.records.add_segments(random_segments(2))
    [q] = pg_store.records.add_queries([(a, b)], round=0)
    dbname = _dbname(pg_store)
    outcome: list[BaseException | list[int]] = []

    def answer() -> None:
        try:
            outcome.append(pg_store.records.add_preferences([Preference(q, Label.RIGHT, "store")]))
        except BaseException as exc:  # reported to the main thread
            outcome.append(exc)

    with pg_server.connect(dbname, autocommit=False) as other:
        other.execute(
            "INSERT INTO preferences (query_id, label, teacher_id, timestamp) "
            "VALUES (%s, %s, 'store', 1.0)",
            (q, int(Label.LEFT)),
        )  # uncommitted: the store's check cannot see it, its INSERT waits on the unique index
        worker = threading.Thread(target=answer, daemon=True)
        worker.start()
        with pg_server.connect(dbname) as monitor:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                waiting = monitor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND wait_event_type = 'Lock'",
                    (dbname,),
                ).fetchone()
                if waiting and waiting[0] > 0:
                    break
                time.sleep(0.02)
        other.commit()
    worker.join(timeout=20)
    assert not worker.is_alive()
    [result] = outcome
    assert isinstance(result, StoreError), result
    assert "already answered" in str(result) or "unique" in str(result).lower()
    assert pg_store.records.preferences() == [Preference(q, Label.LEFT, "store", timestamp=1.0)]


def test_missing_database_is_a_store_error(pg_server: PgServer) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        FeedbackStore(pg_server.url("no_such_database"))
