"""PostgreSQL-only tests of the feedback store, on a real server.

The server (``REWARDLAB_POSTGRES_URL``'s, or a throwaway one) and the per-test databases come
from ``conftest.py``; the tests skip without a server or the psycopg driver, and fail instead
when ``REWARDLAB_REQUIRE_POSTGRES`` is set (as in ``.ci/run``). Everything both backends must do is
tested by the ``store`` tests of ``test_store.py``, which run on PostgreSQL too; this
module checks what only PostgreSQL has: the schema as the server sees it, 64-bit ids,
concurrent writers on separate connections, the upgrade of a version 1 database and errors of
the server connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from rewardlab.errors import AlreadyAnsweredError, StoreError
from rewardlab.store import SCHEMA_VERSION, FeedbackStore
from rewardlab.store.codec import encode_array
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
    url = make_url(pg_store.url)
    assert url.drivername == "postgresql+psycopg" and url.host == pg_server.host
    assert url.port == pg_server.port and url.username == pg_server.user
    assert pg_server.password is None or pg_server.password not in pg_store.url  # hidden
    assert pg_store.db.engine.dialect.name == "postgresql"
    dbname = _dbname(pg_store)
    with pg_server.connect(dbname) as con:
        tables = {
            r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert tables == {"meta", "segments", "queries", "preferences", "annotators", "assignments"}
    assert version == [(SCHEMA_VERSION,)]


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


#: Schema version 1 as SQLAlchemy created it on PostgreSQL (rewardlab before the annotation app):
#: one answer per query (``UNIQUE (query_id)``), no annotators or assignments tables.
V1_POSTGRES_DDL = """
CREATE TABLE meta (key VARCHAR(255) NOT NULL PRIMARY KEY, value VARCHAR(255) NOT NULL);
CREATE TABLE segments (id BIGSERIAL PRIMARY KEY, env_id VARCHAR(255) NOT NULL,
    episode_id BIGINT NOT NULL, start_step BIGINT NOT NULL, length INTEGER NOT NULL,
    obs_dim INTEGER NOT NULL, act_dim INTEGER NOT NULL, obs BYTEA NOT NULL,
    actions BYTEA NOT NULL, true_rewards BYTEA, render_states BYTEA,
    created_at FLOAT NOT NULL);
CREATE TABLE queries (id BIGSERIAL PRIMARY KEY,
    left_id BIGINT NOT NULL REFERENCES segments (id),
    right_id BIGINT NOT NULL REFERENCES segments (id), round INTEGER NOT NULL,
    source VARCHAR(255) NOT NULL, created_at FLOAT NOT NULL,
    CONSTRAINT ck_queries_distinct CHECK (left_id <> right_id));
CREATE INDEX ix_queries_left_id ON queries (left_id);
CREATE INDEX ix_queries_right_id ON queries (right_id);
CREATE INDEX ix_queries_round ON queries (round);
CREATE TABLE preferences (id BIGSERIAL PRIMARY KEY,
    query_id BIGINT NOT NULL REFERENCES queries (id), label INTEGER NOT NULL,
    teacher_id VARCHAR(255) NOT NULL, timestamp FLOAT NOT NULL, UNIQUE (query_id),
    CONSTRAINT ck_preferences_label CHECK (label IN (0, 1, 2, 3)));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _constraints(con, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass",
        (table,),
    ).fetchall()
    return {name: definition for name, definition in rows}


def test_upgrades_a_version_1_database(pg_url: str, pg_server: PgServer) -> None:
    """v1 -> v2 on PostgreSQL: the unique query id becomes unique (query, teacher); rows,
    ids and sequences are kept; reopening is a no-op."""
    dbname = pg_url.rsplit("/", 1)[1]
    seg_a, seg_b = random_segments(2)
    with pg_server.connect(dbname) as con:
        con.execute(V1_POSTGRES_DDL)
        for seg in (seg_a, seg_b):
            con.execute(
                "INSERT INTO segments (env_id, episode_id, start_step, length, obs_dim, "
                "act_dim, obs, actions, true_rewards, created_at) "
                "VALUES (%s, 0, 0, %s, %s, %s, %s, %s, %s, 1.0)",
                (seg.env_id, seg.length, seg.obs.shape[1], seg.actions.shape[1],
                 encode_array(seg.obs), encode_array(seg.actions),
                 None if seg.true_rewards is None else encode_array(seg.true_rewards)),
            )
        con.execute(
            "INSERT INTO queries (left_id, right_id, round, source, created_at) "
            "VALUES (1, 2, 0, 'uniform', 1.0)"
        )
        con.execute(
            "INSERT INTO preferences (query_id, label, teacher_id, timestamp) "
            "VALUES (1, %s, 'oracle', 2.0)",
            (int(Label.LEFT),),
        )
        assert "preferences_query_id_key" in _constraints(con, "preferences")
    with FeedbackStore(pg_url) as store:
        assert store.records.preferences() == [Preference(1, Label.LEFT, "oracle", 2.0)]
        [pid] = store.records.add_preferences([Preference(1, Label.RIGHT, "alice")])
        assert pid == 2  # the id sequence goes on
        with pytest.raises(AlreadyAnsweredError):
            store.records.add_preferences([Preference(1, Label.RIGHT, "oracle")])
        aid, _ = store.annotation.add_annotator("bob")
        assert store.annotation.next_query_for(aid) is not None  # the new tables work
        np.testing.assert_array_equal(store.records.get_segments([2])[0].obs, seg_b.obs)
    with pg_server.connect(dbname) as con:
        constraints = _constraints(con, "preferences")
        assert "preferences_query_id_key" not in constraints
        assert constraints["uq_preferences_query_teacher"] == "UNIQUE (query_id, teacher_id)"
        assert "ck_preferences_label" in constraints
        indexes = {r[0] for r in con.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'preferences'"
        )}
        assert "ix_preferences_teacher_id" in indexes
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        assert version == [(SCHEMA_VERSION,)]
        with pytest.raises(Exception, match="uq_preferences_query_teacher"):
            con.execute(
                "INSERT INTO preferences (query_id, label, teacher_id, timestamp) "
                "VALUES (1, 0, 'alice', 3.0)"
            )
    with FeedbackStore(pg_url) as store:  # reopening a version 2 database changes nothing
        assert store.summary.counts()["preferences"] == 2
