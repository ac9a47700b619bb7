"""Tests of the feedback store: round trips, transactions, durability, export.

Tests taking ``store`` or ``store_url`` (see ``conftest.py``) run on both SQLite and a
throwaway PostgreSQL server; the rest are about the SQLite backend (run directories,
pragmas, file corruption, crash safety). PostgreSQL-only tests are in ``test_postgres.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine

from rewardlab.errors import (
    AlreadyAnsweredError,
    ConflictError,
    DuplicateAnnotatorError,
    InvalidNameError,
    NothingToUndoError,
    RecordError,
    StaleRoundError,
    StoreError,
    UnknownAnnotatorError,
    UnknownIdError,
    UnknownPreferenceError,
    UnknownQueryError,
    UnknownSegmentError,
)
from rewardlab.store import DB_FILENAME, SCHEMA_VERSION, FeedbackStore
from rewardlab.types import Label, Preference, Query
from tests.helpers import ACT_DIM, OBS_DIM, SEGMENT_LENGTH, random_segments

T = SEGMENT_LENGTH

# ---------------------------------------------------------------------- both backends


def test_segments_round_trip(store: FeedbackStore) -> None:
    segs = random_segments(5)
    ids = store.records.add_segments(segs)
    assert ids == sorted(ids) and len(set(ids)) == 5
    order = [ids[3], ids[0], ids[4], ids[0]]
    loaded = store.records.get_segments(order)
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
    assert [s.true_rewards is None for s in store.records.get_segments(ids)] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert store.records.add_segments([]) == []
    with pytest.raises(StoreError, match=r"unknown segment ids: 2000000000\b"):
        store.records.get_segments([ids[0], 2_000_000_000])


def test_segments_keep_their_dataset_provenance(store: FeedbackStore) -> None:
    """A segment cut from an offline dataset keeps its dataset id; others have none."""
    online, offline = random_segments(2)
    offline = dataclasses.replace(offline, dataset_id="rewardlab/hopper/medium-replay-v0")
    ids = store.records.add_segments([online, offline])
    got = store.records.get_segments(ids)
    assert [s.dataset_id for s in got] == [None, "rewardlab/hopper/medium-replay-v0"]
    assert (got[1].episode_id, got[1].start_step) == (offline.episode_id, offline.start_step)
    with pytest.raises(StoreError, match="Segment.dataset_id"):
        store.records.add_segments([dataclasses.replace(online, dataset_id="x" * 256)])


def test_upgrades_a_version_2_database(store_url: str) -> None:
    """v2 -> v4 on both backends: segments gain a null dataset_id, rows and ids are kept."""
    with FeedbackStore(store_url) as s:
        old = s.records.add_segments(random_segments(2))
        [q] = s.records.add_queries([(old[0], old[1])], round=0)
    engine = create_engine(store_url)
    with engine.begin() as con:  # what version 2 looked like: no segments.dataset_id
        con.exec_driver_sql("ALTER TABLE segments DROP COLUMN dataset_id")
        con.exec_driver_sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()
    with FeedbackStore(store_url) as s:
        assert [seg.dataset_id for seg in s.records.get_segments(old)] == [None, None]
        seg = dataclasses.replace(random_segments(1)[0], dataset_id="rewardlab/hopper/expert-v0")
        [new] = s.records.add_segments([seg])
        assert new == old[1] + 1  # the id sequence goes on
        assert s.records.get_segments([new])[0].dataset_id == "rewardlab/hopper/expert-v0"
        assert s.records.get_queries() == [Query(old[0], old[1], 0, q)]
    engine = create_engine(store_url)
    with engine.connect() as con:
        version = con.exec_driver_sql(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    engine.dispose()
    assert version == [(SCHEMA_VERSION,)] == [("4",)]
    with FeedbackStore(store_url) as s:  # reopening a version 4 database changes nothing
        assert s.summary.counts()["segments"] == 3


def test_get_segments_unknown_id(store: FeedbackStore) -> None:
    ids = store.records.add_segments(random_segments(2))
    with pytest.raises(StoreError, match=r"unknown segment ids: 98, 99"):
        store.records.get_segments([ids[0], 99, 98])


#: Ids no stored row can have: negative, or beyond signed 64 bits.
OUT_OF_RANGE = [-1, -(2**63), 2**63, 2**64, 2**70, 10**100]


def test_out_of_range_ids_are_unknown_with_typed_errors(store: FeedbackStore) -> None:
    """Ids outside 0..2**63-1 are reported as unknown (typed), never sent to the database."""
    records, annotation = store.records, store.annotation
    a, b = records.add_segments(random_segments(2))
    [q] = records.add_queries([(a, b)], round=0)
    aid, _ = annotation.add_annotator("alice")
    for bad in OUT_OF_RANGE:
        with pytest.raises(UnknownSegmentError, match=rf"unknown segment ids: .*{bad}") as err:
            records.get_segments([a, bad])
        assert err.value.ids == (bad,)
        with pytest.raises(UnknownQueryError) as qerr:
            records.get_queries([q, bad, bad])
        assert qerr.value.ids == (bad,)
        with pytest.raises(UnknownAnnotatorError):
            annotation.next_query_for(bad)
        with pytest.raises(UnknownPreferenceError):
            annotation.delete_preference(bad)
        assert records.answers_of("alice", [q, bad]) == {}
        assert records.used_answers([bad]) == []
        if bad >= 0:  # a Preference or a Query refuses negative ids itself (RecordError)
            with pytest.raises(UnknownQueryError):
                records.add_preferences([Preference(bad, Label.LEFT, "o")])
            with pytest.raises(UnknownQueryError):
                annotation.add_answer(Preference(bad, Label.LEFT, "alice"))
            with pytest.raises(UnknownSegmentError):
                records.add_queries([(a, bad)], round=0)
    with pytest.raises(UnknownAnnotatorError, match=r"unknown annotator id 999\b"):
        annotation.next_query_for(999)
    assert annotation.next_query_for(aid) == records.get_queries([q])[0]
    assert store.summary.counts() == dict(
        segments=2, queries=1, preferences=0, answered=0, skipped=0, pending=1
    )


def test_store_errors_are_one_family() -> None:
    for err in (UnknownSegmentError, UnknownQueryError, UnknownAnnotatorError,
                UnknownPreferenceError):
        assert issubclass(err, UnknownIdError) and issubclass(err, StoreError)
    for err in (AlreadyAnsweredError, StaleRoundError, DuplicateAnnotatorError,
                NothingToUndoError):
        assert issubclass(err, ConflictError) and issubclass(err, StoreError)
    assert issubclass(InvalidNameError, StoreError) and issubclass(InvalidNameError, ValueError)


def test_many_ids_span_several_in_chunks(store: FeedbackStore) -> None:
    segs = random_segments(1100, seed=3, length=2)
    ids = store.records.add_segments(segs)
    assert len(set(ids)) == 1100
    loaded = store.records.get_segments(ids[::-1])
    assert [s.segment_id for s in loaded] == ids[::-1]
    np.testing.assert_array_equal(loaded[0].obs, segs[-1].obs)
    np.testing.assert_array_equal(loaded[-1].actions, segs[0].actions)


def test_queries_round_trip_and_validation(store: FeedbackStore) -> None:
    a, b, c = store.records.add_segments(random_segments(3))
    qids = store.records.add_queries([(a, b), (c, a), (b, c)], round=2, source="disagreement")
    assert qids == sorted(qids) and len(set(qids)) == 3
    assert store.records.get_queries() == [
        Query(a, b, 2, qids[0]),
        Query(c, a, 2, qids[1]),
        Query(b, c, 2, qids[2]),
    ]
    assert [q.query_id for q in store.records.get_queries([qids[2], qids[0], qids[2]])] == [
        qids[2],
        qids[0],
        qids[2],
    ]
    with pytest.raises(StoreError, match=r"unknown query ids: 1234\b"):
        store.records.get_queries([1234])
    with pytest.raises(RecordError):
        store.records.add_queries([(a, a)], round=0)
    with pytest.raises(StoreError, match=r"unknown segment ids: 77\b"):
        store.records.add_queries([(a, b), (a, 77)], round=3)
    assert len(store.records.get_queries()) == 3  # nothing of the failed calls was written
    assert store.summary.counts()["queries"] == 3


def test_pending_queries_limit_keeps_the_lowest_ids(store: FeedbackStore) -> None:
    a, b, c = store.records.add_segments(random_segments(3))
    q = store.records.add_queries([(a, b), (b, c), (a, c)], round=0)
    store.records.add_preference(Preference(q[0], Label.LEFT, "alice"))
    assert [x.query_id for x in store.records.pending_queries(round=0, limit=1)] == [q[1]]
    assert [x.query_id for x in store.records.pending_queries(limit=5)] == q[1:]


def test_preferences_round_trip_and_pending(store: FeedbackStore) -> None:
    a, b, c = store.records.add_segments(random_segments(3))
    q0 = store.records.add_queries([(a, b), (b, c)], round=0)
    q1 = store.records.add_queries([(a, c)], round=1)
    prefs = [
        Preference(q0[1], Label.RIGHT, "alice", timestamp=1_700_000_000.123456),
        Preference(q1[0], "equal", "bob", timestamp=101.0),
    ]
    pids = store.records.add_preferences(prefs)
    assert pids == sorted(pids) and len(pids) == 2
    assert store.records.preferences() == prefs  # float timestamps round-trip exactly
    assert [q.query_id for q in store.records.pending_queries()] == [q0[0]]
    assert [q.query_id for q in store.records.pending_queries(round=0)] == [q0[0]]
    assert store.records.pending_queries(round=1) == []
    store.records.add_preference(Preference(q0[0], Label.SKIP, "alice", timestamp=102.0))
    assert store.records.pending_queries() == []
    left, right, labels = store.records.labelled_pairs()
    assert (left, right) == ([b, a], [c, c])
    assert labels.dtype == np.int8 and labels.tolist() == [Label.RIGHT, Label.EQUAL]
    left, right, labels = store.records.labelled_pairs(include_skipped=True)
    assert (left, right) == ([a, b, a], [b, c, c])
    assert labels.tolist() == [Label.SKIP, Label.RIGHT, Label.EQUAL]


def test_reopen_keeps_every_label(store_url: str) -> None:
    with FeedbackStore(store_url) as s:
        a, b = s.records.add_segments(random_segments(2))
        qids = s.records.add_queries([(a, b)] * 10, round=0)
        prefs = [Preference(q, Label(q % 4), "oracle", timestamp=float(q)) for q in qids]
        for p in prefs:
            s.records.add_preference(p)
    with FeedbackStore(store_url) as s, FeedbackStore(store_url) as t:
        assert s.records.preferences() == prefs
        assert t.summary.counts()["answered"] == 10
        [extra] = s.records.add_queries([(b, a)], round=1)
        s.records.add_preference(Preference(extra, Label.LEFT, "oracle"))
        # a second store on the same database sees the committed answer at once
        with pytest.raises(StoreError, match=rf"already answered: {extra}\b"):
            t.records.add_preference(Preference(extra, Label.RIGHT, "oracle"))
    with FeedbackStore(store_url) as s:
        assert s.summary.counts() == dict(
            segments=2, queries=11, preferences=11, answered=11, skipped=2, pending=0
        )


def test_double_answer_writes_nothing(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(random_segments(2))
    q = store.records.add_queries([(a, b)] * 4, round=0)
    store.records.add_preference(Preference(q[0], Label.LEFT, "oracle"))
    with pytest.raises(StoreError, match=rf"already answered: {q[0]}\b"):
        store.records.add_preferences(
            [
                Preference(q[1], Label.LEFT, "oracle"),
                Preference(q[0], Label.RIGHT, "oracle"),
                Preference(q[2], Label.RIGHT, "oracle"),
            ]
        )
    with pytest.raises(StoreError, match=rf"answered twice in one call: {q[3]}\b"):
        store.records.add_preferences(
            [Preference(q[3], Label.LEFT, "oracle"), Preference(q[3], Label.RIGHT, "oracle")]
        )
    assert [p.query_id for p in store.records.preferences()] == [q[0]]
    assert store.records.preferences()[0].label == Label.LEFT
    assert store.summary.counts() == dict(
        segments=2, queries=4, preferences=1, answered=1, skipped=0, pending=3
    )
    # the store is still usable after the failed transactions
    store.records.add_preferences([Preference(q[1], Label.RIGHT, "oracle")])
    assert store.summary.counts()["answered"] == 2


def test_unknown_query_id_writes_nothing(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(random_segments(2))
    [q] = store.records.add_queries([(a, b)], round=0)
    with pytest.raises(StoreError, match=r"unknown query ids: 999\b"):
        store.records.add_preferences(
            [Preference(q, Label.LEFT, "oracle"), Preference(999, Label.LEFT, "oracle")]
        )
    with pytest.raises(StoreError, match=r"unknown query ids: 2000000000\b"):
        store.records.add_preferences([Preference(2_000_000_000, Label.LEFT, "oracle")])
    assert store.records.preferences() == []


def test_training_arrays(store: FeedbackStore) -> None:
    segs = random_segments(4, seed=1)
    s = store.records.add_segments(segs)
    qids = store.records.add_queries(
        [(s[0], s[1]), (s[2], s[3]), (s[3], s[0]), (s[1], s[2])], round=0
    )
    store.records.add_preferences(
        [
            Preference(qids[0], Label.LEFT, "o"),
            Preference(qids[1], Label.SKIP, "o"),
            Preference(qids[2], Label.EQUAL, "o"),
        ]
    )
    arrays = store.records.training_arrays()
    assert arrays["obs"].shape == (2, 2, T, OBS_DIM) and arrays["obs"].dtype == np.float32
    assert arrays["actions"].shape == (2, 2, T, ACT_DIM) and arrays["actions"].dtype == np.float32
    assert arrays["labels"].dtype == np.int8 and arrays["labels"].tolist() == [1, 2]
    assert arrays["query_ids"].dtype == np.int64
    assert arrays["query_ids"].tolist() == [qids[0], qids[2]]
    np.testing.assert_array_equal(arrays["obs"][0, 0], segs[0].obs)
    np.testing.assert_array_equal(arrays["obs"][0, 1], segs[1].obs)
    np.testing.assert_array_equal(arrays["obs"][1, 0], segs[3].obs)
    np.testing.assert_array_equal(arrays["actions"][1, 1], segs[0].actions)
    with_skip = store.records.training_arrays(include_skipped=True)
    assert with_skip["obs"].shape == (3, 2, T, OBS_DIM)
    assert with_skip["labels"].tolist() == [1, 3, 2]
    np.testing.assert_array_equal(with_skip["actions"][1, 0], segs[2].actions)


def test_training_arrays_empty_and_ragged(store: FeedbackStore) -> None:
    empty = store.records.training_arrays()
    assert empty["obs"].shape == (0, 2, 0, 0) and empty["labels"].shape == (0,)
    a, b = store.records.add_segments(random_segments(2))
    [c] = store.records.add_segments(random_segments(1, seed=5, length=T + 1))
    q = store.records.add_queries([(a, b), (a, c)], round=0)
    store.records.add_preferences(
        [Preference(q[0], Label.LEFT, "o"), Preference(q[1], Label.RIGHT, "o")]
    )
    with pytest.raises(StoreError, match="differing"):
        store.records.training_arrays()


def test_counts(store: FeedbackStore) -> None:
    assert store.summary.counts() == dict(
        segments=0, queries=0, preferences=0, answered=0, skipped=0, pending=0
    )
    a, b, c = store.records.add_segments(random_segments(3))
    q = store.records.add_queries([(a, b), (b, c), (a, c), (c, a)], round=0)
    store.records.add_preferences(
        [Preference(q[0], Label.LEFT, "o"), Preference(q[1], Label.SKIP, "o")]
    )
    assert store.summary.counts() == dict(
        segments=3, queries=4, preferences=2, answered=2, skipped=1, pending=2
    )


def test_export_jsonl_and_parquet(store: FeedbackStore, tmp_path: Path) -> None:
    segs = random_segments(3)
    a, b, c = store.records.add_segments(segs)
    q = store.records.add_queries([(a, b), (b, c), (c, a)], round=4)
    store.records.add_preferences(
        [
            Preference(q[1], Label.RIGHT, "alice", timestamp=10.0),
            Preference(q[0], Label.SKIP, "bob", timestamp=11.0),
        ]
    )
    n = store.summary.export(tmp_path / "out" / "prefs.jsonl")
    text = (tmp_path / "out" / "prefs.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert n == len(rows) == 2
    first = rows[0]
    assert first["query_id"] == q[1] and first["round"] == 4
    assert (first["left_id"], first["right_id"], first["source"]) == (b, c, "uniform")
    assert (first["label"], first["teacher_id"], first["timestamp"]) == ("right", "alice", 10.0)
    assert first["left_true_return"] is None  # segment b has no true rewards
    assert first["right_true_return"] == pytest.approx(segs[2].true_return)
    assert rows[1]["label"] == "skip"
    assert rows[1]["left_true_return"] == pytest.approx(segs[0].true_return)

    assert store.summary.export(tmp_path / "prefs.parquet") == 2
    table = pq.read_table(tmp_path / "prefs.parquet").to_pylist()
    assert [r["query_id"] for r in table] == [q[1], q[0]]
    assert [r["label"] for r in table] == ["right", "skip"]
    assert table[0]["left_true_return"] is None
    assert table[0]["right_true_return"] == pytest.approx(segs[2].true_return)

    with pytest.raises(StoreError, match=r"\.jsonl, \.parquet"):
        store.summary.export(tmp_path / "prefs.csv")


def test_export_empty(store: FeedbackStore, tmp_path: Path) -> None:
    assert store.summary.export(tmp_path / "e.parquet") == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
    assert store.summary.export(tmp_path / "e.jsonl") == 0


# ---------------------------------------------------------------------- SQLite only


def test_open_creates_the_database_in_the_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "new" / "run"
    with FeedbackStore.open(run) as s:
        ids = s.records.add_segments(random_segments(3))
        assert s.url == f"sqlite:///{run.resolve() / DB_FILENAME}"
    assert (run / DB_FILENAME).is_file()
    with FeedbackStore.open(run) as s:  # reopening finds the same database
        assert [seg.segment_id for seg in s.records.get_segments(ids)] == ids
        assert s.summary.counts()["segments"] == 3


def test_open_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create run directory"):
        FeedbackStore.open(blocker / "run")
    with pytest.raises(StoreError, match="invalid database URL"):
        FeedbackStore("not a url")
    with pytest.raises(StoreError, match="cannot open"):
        FeedbackStore(f"sqlite:///{tmp_path}/missing/dir/feedback.db")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / DB_FILENAME).write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError, match="not a database"):
        FeedbackStore.open(garbage)


def test_schema_version_mismatch(tmp_path: Path) -> None:
    FeedbackStore.open(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_FILENAME) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version '99'"):
        FeedbackStore.open(tmp_path)


def test_closed_store_and_in_memory_url() -> None:
    s = FeedbackStore("sqlite://")
    assert s.records.add_segments(random_segments(2)) == [1, 2]
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.summary.counts()


def test_sqlite_pragmas(sqlite_store: FeedbackStore) -> None:
    engine = sqlite_store.db.engine
    assert engine is not None
    with engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_store_does_not_import_torch() -> None:
    code = "import sys, rewardlab.store; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


CHILD = textwrap.dedent(
    """
    import sys

    import numpy as np

    from rewardlab.store import FeedbackStore
    from rewardlab.types import Label, Preference, Segment

    store = FeedbackStore.open(sys.argv[1])
    rng = np.random.default_rng(0)
    segs = [
        Segment(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)), None, "Test-v0", i, 0)
        for i in range(2)
    ]
    a, b = store.records.add_segments(segs)
    qids = store.records.add_queries([(a, b)] * 2000, round=0)
    for q in qids:
        store.records.add_preference(Preference(q, Label(q % 3), "oracle"))
        print(q, flush=True)
    print("done", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL semantics")
def test_sigkill_loses_no_committed_label(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    printed: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while len(printed) < 200:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"child exited early: {proc.stderr.read()}"  # type: ignore[union-attr]
            if line.isdigit():
                printed.append(int(line))
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    reader.join(timeout=30)
    while (line := lines.get_nowait()) is not None:  # ids printed before the kill landed
        if line.isdigit():
            printed.append(int(line))
    proc.stdin.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]

    with FeedbackStore.open(run) as store:
        stored = {p.query_id: p.label for p in store.records.preferences()}
        assert store.summary.counts()["queries"] == 2000
    missing = [q for q in printed if q not in stored]
    assert not missing, f"{len(missing)} committed labels lost, e.g. {missing[:5]}"
    assert all(stored[q] == Label(q % 3) for q in printed)
    assert len(stored) - len(printed) <= 1  # at most the one in flight when killed
    con = sqlite3.connect(run / DB_FILENAME)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
