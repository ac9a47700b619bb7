"""Tests of the feedback store against a real, throwaway PostgreSQL server.

The module starts its own server from the Debian ``postgresql`` package binaries
(``/usr/lib/postgresql/<version>/bin``) in a temporary directory, listening on a free TCP
port of 127.0.0.1 only, with ``trust`` authentication for the ``rewardlab`` superuser. When
the tests run as root (CI), the server runs as the ``postgres`` system user through
``runuser``, since PostgreSQL refuses to run as root. Every test gets a fresh database, and
the server is stopped and its directory removed when the module ends. Without the server
binaries (or the psycopg driver) the module is skipped.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rewardlab.errors import RecordError, StoreError
from rewardlab.store import FeedbackStore
from rewardlab.types import Label, Preference, Query, Segment

psycopg = pytest.importorskip("psycopg", reason="the psycopg PostgreSQL driver is not installed")

T, OBS_DIM, ACT_DIM = 6, 4, 2
PG_USER = "rewardlab"
_db_numbers = itertools.count()


def make_segments(
    n: int, seed: int = 0, length: int = T, with_rewards: bool = True
) -> list[Segment]:
    rng = np.random.default_rng(seed)
    return [
        Segment(
            obs=rng.normal(size=(length, OBS_DIM)),
            actions=rng.uniform(-1, 1, size=(length, ACT_DIM)),
            true_rewards=rng.normal(size=length) if with_rewards and i % 2 == 0 else None,
            env_id="Hopper-v5",
            episode_id=i // 2,
            start_step=3 * i,
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------- the server


@dataclass(frozen=True)
class PgServer:
    """A running throwaway server: connect as ``rewardlab`` to 127.0.0.1:``port``."""

    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_USER,
            dbname=dbname,
            autocommit=autocommit,
            connect_timeout=10,
        )


def _pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = []
    for bindir in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(bindir)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            try:
                version = int(path.parent.name.split(".")[0])
            except ValueError:
                version = 0
            found.append((version, path))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under "
            "/usr/lib/postgresql/*/bin; install the Debian 'postgresql' package"
        )
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as 'postgres'
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        if os.access(runuser, os.X_OK):
            prefix = [runuser, "-u", "postgres", "--"]
        else:
            prefix = ["su", "-s", "/bin/sh", "-c", '"$0" "$@"', "--", "postgres"]

    # Under /tmp (not pytest's 0700 tmp dir) so that the 'postgres' user can reach it.
    root = Path(tempfile.mkdtemp(prefix="rewardlab-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")

    def run(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *map(str, args)],
            cwd=root,  # the 'postgres' user may not be able to enter the current directory
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def fail(what: str, proc: subprocess.CompletedProcess[str]) -> None:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail(
            f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{server_log}",
            pytrace=False,
        )

    pg_ctl = bindir / "pg_ctl"
    try:
        proc = run(
            bindir / "initdb",
            "-D",
            data,
            "--auth=trust",
            "-U",
            PG_USER,
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if proc.returncode != 0:
            fail("initdb", proc)
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            options = (
                f"-k {root} -h 127.0.0.1 -p {port} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=20"
            )
            proc = run(pg_ctl, "-D", data, "-l", log, "-w", "-t", "30", "-o", options, "start")
            if proc.returncode == 0:
                break
            if attempt == 2:
                fail("pg_ctl start", proc)
        yield PgServer(port=port)
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = f"rewardlab_test_{os.getpid()}_{next(_db_numbers)}"
    with pg_server.connect() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with pg_server.connect() as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(pg_url: str) -> Iterator[FeedbackStore]:
    with FeedbackStore(pg_url) as s:
        yield s


# ---------------------------------------------------------------------- tests


def test_opens_postgresql_with_schema(store: FeedbackStore, pg_server: PgServer) -> None:
    assert store.url.startswith("postgresql+psycopg://rewardlab@127.0.0.1:")
    assert store._engine is not None and store._engine.dialect.name == "postgresql"
    dbname = store.url.rsplit("/", 1)[1]
    with pg_server.connect(dbname) as con:
        tables = {
            r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert tables == {"meta", "segments", "queries", "preferences", "annotators", "assignments"}
    assert version == [("2",)]


def test_segments_round_trip(store: FeedbackStore) -> None:
    segs = make_segments(5)
    ids = store.add_segments(segs)
    assert ids == sorted(ids) and len(set(ids)) == 5
    order = [ids[3], ids[0], ids[4], ids[0]]
    loaded = store.get_segments(order)
    for got, idx in zip(loaded, [3, 0, 4, 0], strict=True):
        want = segs[idx]
        assert got.segment_id == ids[idx]
        assert got.obs.dtype == np.float32 and got.actions.dtype == np.float32
        np.testing.assert_array_equal(got.obs, want.obs)
        np.testing.assert_array_equal(got.actions, want.actions)
        if want.true_rewards is None:
            assert got.true_rewards is None
        else:
            assert got.true_rewards is not None and got.true_rewards.dtype == np.float32
            np.testing.assert_array_equal(got.true_rewards, want.true_rewards)
        assert (got.env_id, got.episode_id, got.start_step) == (
            want.env_id,
            want.episode_id,
            want.start_step,
        )
    assert [s.true_rewards is None for s in store.get_segments(ids)] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert store.add_segments([]) == []
    with pytest.raises(StoreError, match=r"unknown segment ids: 2000000000\b"):
        store.get_segments([ids[0], 2_000_000_000])


def test_many_ids_span_several_in_chunks(store: FeedbackStore) -> None:
    segs = make_segments(1100, seed=3, length=2)
    ids = store.add_segments(segs)
    assert len(set(ids)) == 1100
    loaded = store.get_segments(ids[::-1])
    assert [s.segment_id for s in loaded] == ids[::-1]
    np.testing.assert_array_equal(loaded[0].obs, segs[-1].obs)
    np.testing.assert_array_equal(loaded[-1].actions, segs[0].actions)


def test_queries_round_trip_and_validation(store: FeedbackStore) -> None:
    a, b, c = store.add_segments(make_segments(3))
    qids = store.add_queries([(a, b), (c, a), (b, c)], round=2, source="disagreement")
    assert qids == sorted(qids) and len(set(qids)) == 3
    assert store.get_queries() == [
        Query(a, b, 2, qids[0]),
        Query(c, a, 2, qids[1]),
        Query(b, c, 2, qids[2]),
    ]
    assert [q.query_id for q in store.get_queries([qids[2], qids[0], qids[2]])] == [
        qids[2],
        qids[0],
        qids[2],
    ]
    with pytest.raises(StoreError, match=r"unknown query ids: 1234\b"):
        store.get_queries([1234])
    with pytest.raises(RecordError):
        store.add_queries([(a, a)], round=0)
    with pytest.raises(StoreError, match=r"unknown segment ids: 77\b"):
        store.add_queries([(a, b), (a, 77)], round=3)
    assert len(store.get_queries()) == 3  # nothing of the failed calls was written
    assert store.counts()["queries"] == 3


def test_preferences_round_trip_and_pending(store: FeedbackStore) -> None:
    a, b, c = store.add_segments(make_segments(3))
    q0 = store.add_queries([(a, b), (b, c)], round=0)
    q1 = store.add_queries([(a, c)], round=1)
    prefs = [
        Preference(q0[1], Label.RIGHT, "alice", timestamp=1_700_000_000.123456),
        Preference(q1[0], "equal", "bob", timestamp=101.0),
    ]
    pids = store.add_preferences(prefs)
    assert pids == sorted(pids) and len(pids) == 2
    assert store.preferences() == prefs  # float timestamps round-trip exactly
    assert [q.query_id for q in store.pending_queries()] == [q0[0]]
    assert [q.query_id for q in store.pending_queries(round=0)] == [q0[0]]
    assert store.pending_queries(round=1) == []
    store.add_preference(Preference(q0[0], Label.SKIP, "alice", timestamp=102.0))
    assert store.pending_queries() == []
    left, right, labels = store.labelled_pairs()
    assert (left, right) == ([b, a], [c, c])
    assert labels.dtype == np.int8 and labels.tolist() == [Label.RIGHT, Label.EQUAL]
    left, right, labels = store.labelled_pairs(include_skipped=True)
    assert (left, right) == ([a, b, a], [b, c, c])
    assert labels.tolist() == [Label.SKIP, Label.RIGHT, Label.EQUAL]


def test_training_arrays(store: FeedbackStore) -> None:
    empty = store.training_arrays()
    assert empty["obs"].shape == (0, 2, 0, 0) and empty["labels"].shape == (0,)
    segs = make_segments(4, seed=1)
    s = store.add_segments(segs)
    qids = store.add_queries([(s[0], s[1]), (s[2], s[3]), (s[3], s[0]), (s[1], s[2])], round=0)
    store.add_preferences(
        [
            Preference(qids[0], Label.LEFT, "o"),
            Preference(qids[1], Label.SKIP, "o"),
            Preference(qids[2], Label.EQUAL, "o"),
        ]
    )
    arrays = store.training_arrays()
    assert arrays["obs"].shape == (2, 2, T, OBS_DIM) and arrays["obs"].dtype == np.float32
    assert arrays["actions"].shape == (2, 2, T, ACT_DIM) and arrays["actions"].dtype == np.float32
    assert arrays["labels"].dtype == np.int8 and arrays["labels"].tolist() == [1, 2]
    assert arrays["query_ids"].dtype == np.int64
    assert arrays["query_ids"].tolist() == [qids[0], qids[2]]
    np.testing.assert_array_equal(arrays["obs"][0, 0], segs[0].obs)
    np.testing.assert_array_equal(arrays["obs"][0, 1], segs[1].obs)
    np.testing.assert_array_equal(arrays["obs"][1, 0], segs[3].obs)
    np.testing.assert_array_equal(arrays["actions"][1, 1], segs[0].actions)
    with_skip = store.training_arrays(include_skipped=True)
    assert with_skip["obs"].shape == (3, 2, T, OBS_DIM)
    assert with_skip["labels"].tolist() == [1, 3, 2]
    np.testing.assert_array_equal(with_skip["actions"][1, 0], segs[2].actions)

    [ragged] = store.add_segments(make_segments(1, seed=5, length=T + 1))
    [q] = store.add_queries([(s[0], ragged)], round=1)
    store.add_preference(Preference(q, Label.RIGHT, "o"))
    with pytest.raises(StoreError, match="differing"):
        store.training_arrays()


def test_double_answer_writes_nothing(store: FeedbackStore) -> None:
    a, b = store.add_segments(make_segments(2))
    q = store.add_queries([(a, b)] * 4, round=0)
    store.add_preference(Preference(q[0], Label.LEFT, "oracle"))
    with pytest.raises(StoreError, match=rf"already answered: {q[0]}\b"):
        store.add_preferences(
            [
                Preference(q[1], Label.LEFT, "oracle"),
                Preference(q[0], Label.RIGHT, "oracle"),
                Preference(q[2], Label.RIGHT, "oracle"),
            ]
        )
    with pytest.raises(StoreError, match=rf"answered twice in one call: {q[3]}\b"):
        store.add_preferences(
            [Preference(q[3], Label.LEFT, "oracle"), Preference(q[3], Label.RIGHT, "oracle")]
        )
    with pytest.raises(StoreError, match=r"unknown query ids: 999999\b"):
        store.add_preferences(
            [Preference(q[1], Label.LEFT, "oracle"), Preference(999_999, Label.LEFT, "oracle")]
        )
    assert [p.query_id for p in store.preferences()] == [q[0]]
    assert store.preferences()[0].label == Label.LEFT
    assert store.counts() == dict(
        segments=2, queries=4, preferences=1, answered=1, skipped=0, pending=3
    )
    # the store is still usable after the failed transactions
    store.add_preferences([Preference(q[1], Label.RIGHT, "oracle")])
    assert store.counts()["answered"] == 2


def test_concurrent_answer_from_another_connection(
    store: FeedbackStore, pg_server: PgServer
) -> None:
    """The unique (query, teacher) constraint backs the check: a racing answer by the same
    teacher is a StoreError, not a crash."""
    a, b = store.add_segments(make_segments(2))
    [q] = store.add_queries([(a, b)], round=0)
    dbname = store.url.rsplit("/", 1)[1]
    outcome: list[BaseException | list[int]] = []

    def answer() -> None:
        try:
            outcome.append(store.add_preferences([Preference(q, Label.RIGHT, "store")]))
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
    assert store.preferences() == [Preference(q, Label.LEFT, "store", timestamp=1.0)]


def test_reopen_keeps_every_label(pg_url: str) -> None:
    with FeedbackStore(pg_url) as s:
        a, b = s.add_segments(make_segments(2))
        qids = s.add_queries([(a, b)] * 10, round=0)
        prefs = [Preference(q, Label(q % 4), "oracle", timestamp=float(q)) for q in qids]
        for p in prefs:
            s.add_preference(p)
    with FeedbackStore(pg_url) as s, FeedbackStore(pg_url) as t:
        assert s.preferences() == prefs
        assert t.counts()["answered"] == 10
        [extra] = s.add_queries([(b, a)], round=1)
        s.add_preference(Preference(extra, Label.LEFT, "oracle"))
        # a second store on the same database sees the committed answer at once
        with pytest.raises(StoreError, match=rf"already answered: {extra}\b"):
            t.add_preference(Preference(extra, Label.RIGHT, "oracle"))
    with FeedbackStore(pg_url) as s:
        assert s.counts() == dict(
            segments=2, queries=11, preferences=11, answered=11, skipped=2, pending=0
        )


def test_export_jsonl_and_parquet(store: FeedbackStore, tmp_path: Path) -> None:
    assert store.export(tmp_path / "empty.jsonl") == 0
    segs = make_segments(3)
    a, b, c = store.add_segments(segs)
    q = store.add_queries([(a, b), (b, c), (c, a)], round=4)
    store.add_preferences(
        [
            Preference(q[1], Label.RIGHT, "alice", timestamp=10.0),
            Preference(q[0], Label.SKIP, "bob", timestamp=11.0),
        ]
    )
    n = store.export(tmp_path / "out" / "prefs.jsonl")
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines()
    ]
    assert n == len(rows) == 2
    first = rows[0]
    assert first["query_id"] == q[1] and first["round"] == 4
    assert (first["left_id"], first["right_id"], first["source"]) == (b, c, "uniform")
    assert (first["label"], first["teacher_id"], first["timestamp"]) == ("right", "alice", 10.0)
    assert first["left_true_return"] is None  # segment b has no true rewards
    assert first["right_true_return"] == pytest.approx(segs[2].true_return)
    assert rows[1]["label"] == "skip"
    assert rows[1]["left_true_return"] == pytest.approx(segs[0].true_return)

    assert store.export(tmp_path / "prefs.parquet") == 2
    table = pq.read_table(tmp_path / "prefs.parquet").to_pylist()
    assert [r["query_id"] for r in table] == [q[1], q[0]]
    assert [r["label"] for r in table] == ["right", "skip"]


def test_counts(store: FeedbackStore) -> None:
    assert store.counts() == dict(
        segments=0, queries=0, preferences=0, answered=0, skipped=0, pending=0
    )
    a, b, c = store.add_segments(make_segments(3))
    q = store.add_queries([(a, b), (b, c), (a, c), (c, a)], round=0)
    store.add_preferences([Preference(q[0], Label.LEFT, "o"), Preference(q[1], Label.SKIP, "o")])
    assert store.counts() == dict(
        segments=3, queries=4, preferences=2, answered=2, skipped=1, pending=2
    )


def test_missing_database_is_a_store_error(pg_server: PgServer) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        FeedbackStore(pg_server.url("no_such_database"))
