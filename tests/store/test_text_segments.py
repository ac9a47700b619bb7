"""Text segments (a language model's completions) in the feedback store: round trips, queries
over them, the readers that refuse the wrong kind, transactions, and the version 3 -> 4 upgrade.

Tests taking ``store`` or ``store_url`` run on SQLite and on a throwaway PostgreSQL server.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine

from rewardlab.errors import SegmentKindError, StoreError, UnknownSegmentError
from rewardlab.store import DB_FILENAME, SCHEMA_VERSION, FeedbackStore
from rewardlab.types import Label, Preference, Query, TextSegment
from tests.helpers import random_segments, text_segments

V3_DUMP = Path(__file__).parent / "data" / "feedback_v3.sql"


def _assert_same(got: TextSegment, want: TextSegment, segment_id: int) -> None:
    assert got.segment_id == segment_id
    assert (got.prompt, got.completion, got.task_id) == (want.prompt, want.completion, want.task_id)
    assert (got.prompt_id, got.sample_id, got.gold) == (want.prompt_id, want.sample_id, want.gold)
    for name in ("prompt_ids", "completion_ids"):
        assert getattr(got, name).dtype == np.int32
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_text_segments_round_trip_with_unicode(store: FeedbackStore) -> None:
    segs = text_segments(4, with_gold=True)
    odd = TextSegment(
        prompt="Straße — 日本語の文章は\n\ttabs, ‏עברית‏ and 🙂 emoji",
        completion="",  # an empty completion (EOS at once) is a valid sample
        prompt_ids=np.array([0, 5, 2**31 - 1], dtype=np.int64),
        completion_ids=np.zeros(0, dtype=np.int64),
        task_id="polarity_concise/model-α",
        prompt_id=7,
        sample_id=123456789012,
        gold=None,
    )
    ids = store.records.add_text_segments([*segs, odd])
    assert len(set(ids)) == 5 and ids == sorted(ids)
    order = [ids[4], ids[0], ids[2], ids[0]]
    got = store.records.get_text_segments(order)
    for g, i in zip(got, [4, 0, 2, 0], strict=True):
        _assert_same(g, [*segs, odd][i], ids[i])
    assert got[0].completion_ids.shape == (0,) and got[0].gold is None
    assert store.records.segment_kinds([ids[0], ids[4]]) == ["text", "text"]
    assert store.records.add_text_segments([]) == []
    assert store.summary.counts()["segments"] == 5


def test_both_kinds_share_the_table_and_readers_refuse_the_wrong_kind(
    store: FeedbackStore,
) -> None:
    control = store.records.add_segments(random_segments(2))
    text = store.records.add_text_segments(text_segments(2))
    assert store.records.segment_kinds([text[1], control[0], text[0]]) == [
        "text", "control", "text",
    ]
    with pytest.raises(SegmentKindError, match=rf"get_segments reads control .* {text[0]}\b") as e:
        store.records.get_segments([control[0], text[0]])
    assert e.value.ids == (text[0],)
    with pytest.raises(SegmentKindError, match="read them with get_segments"):
        store.records.get_text_segments([text[1], control[1]])
    with pytest.raises(UnknownSegmentError, match="999999"):
        store.records.segment_kinds([text[0], 999_999])
    # a query pairs two segments of one kind; a mixed batch stores no query at all
    with pytest.raises(SegmentKindError, match="mix a control and a text segment"):
        store.records.add_queries([(text[0], text[1]), (control[0], text[0])], round=0)
    assert store.records.get_queries() == []


def test_text_queries_answers_and_training_readers(store: FeedbackStore, tmp_path: Path) -> None:
    segs = text_segments(4)
    a, b, c, d = store.records.add_text_segments(segs)
    q = store.records.add_queries([(a, c), (b, d), (c, d)], round=0, source="disagreement")
    assert store.records.get_queries() == [
        Query(a, c, 0, q[0]), Query(b, d, 0, q[1]), Query(c, d, 0, q[2]),
    ]
    store.records.add_preferences([
        Preference(q[0], Label.LEFT, "oracle", 1.0),
        Preference(q[1], Label.SKIP, "oracle", 2.0),
        Preference(q[2], Label.RIGHT, "oracle", 3.0),
    ])
    pairs = store.records.text_training_pairs()
    assert len(pairs) == 2
    assert pairs.query_ids.tolist() == [q[0], q[2]] and pairs.query_ids.dtype == np.int64
    assert pairs.labels.tolist() == [Label.LEFT, Label.RIGHT] and pairs.labels.dtype == np.int8
    assert [s.segment_id for s in pairs.left] == [a, c]
    assert [s.completion for s in pairs.right] == [segs[2].completion, segs[3].completion]
    assert len(store.records.text_training_pairs(include_skipped=True)) == 3
    # the control-segment reader says what to use instead, rather than failing deep inside
    with pytest.raises(SegmentKindError, match="read with text_training_pairs"):
        store.records.training_arrays()
    # the ids-only readers work for both kinds
    left, right, labels = store.records.labelled_pairs()
    assert (left, right, labels.tolist()) == ([a, c], [c, d], [1, 0])
    # export: a completion's gold score is its (one-step) true return
    assert store.summary.export(tmp_path / "text.jsonl") == 3
    rows = [json.loads(line) for line in (tmp_path / "text.jsonl").read_text().splitlines()]
    assert [(r["left_true_return"], r["right_true_return"]) for r in rows] == [
        (segs[0].gold, segs[2].gold), (segs[1].gold, segs[3].gold), (segs[2].gold, segs[3].gold),
    ]


def test_control_answers_are_refused_by_the_text_reader(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(random_segments(2))
    [q] = store.records.add_queries([(a, b)], round=0)
    store.records.add_preference(Preference(q, Label.LEFT, "oracle"))
    with pytest.raises(SegmentKindError, match="read with training_arrays"):
        store.records.text_training_pairs()
    assert store.records.training_arrays()["labels"].tolist() == [Label.LEFT]


def test_text_reader_of_an_empty_store(store: FeedbackStore) -> None:
    pairs = store.records.text_training_pairs()
    assert len(pairs) == 0 and pairs.labels.shape == (0,) and pairs.query_ids.shape == (0,)


def test_a_bad_item_in_a_batch_stores_nothing(store: FeedbackStore) -> None:
    good = text_segments(3)
    with pytest.raises(StoreError, match="expected a TextSegment, got Segment"):
        store.records.add_text_segments([good[0], good[1], random_segments(1)[0], good[2]])
    with pytest.raises(StoreError, match="TextSegment.task_id"):
        store.records.add_text_segments([good[0], dataclasses.replace(good[1], task_id="t" * 256)])
    assert store.summary.counts()["segments"] == 0


def test_a_database_failure_mid_batch_stores_nothing(sqlite_store: FeedbackStore) -> None:
    """The database refuses the third row of a batch (a trigger): the first two are rolled
    back with it."""
    url = sqlite_store.url
    engine = create_engine(url)
    with engine.begin() as con:
        con.exec_driver_sql(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON segments WHEN NEW.completion = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
        )
    engine.dispose()
    segs = text_segments(4)
    segs[2] = dataclasses.replace(segs[2], completion="boom")
    with pytest.raises(StoreError, match="boom refused"):
        sqlite_store.records.add_text_segments(segs)
    assert sqlite_store.summary.counts()["segments"] == 0
    ok = sqlite_store.records.add_text_segments(text_segments(2))
    assert len(ok) == 2


def test_upgrades_a_version_3_database_made_by_rewardlab(tmp_path: Path) -> None:
    """A version 3 database written by rewardlab before text segments (an SQL dump of it) is
    upgraded to version 4 on open: every row and id is kept, old segments are control ones."""
    path = tmp_path / DB_FILENAME
    con = sqlite3.connect(path)
    con.executescript(V3_DUMP.read_text())
    con.close()
    with FeedbackStore.open(tmp_path) as s:
        assert s.summary.counts() == {
            "segments": 3, "queries": 2, "preferences": 1, "answered": 1, "skipped": 0,
            "pending": 1,
        }
        old = s.records.get_segments([1, 2, 3])
        assert [seg.dataset_id for seg in old] == [None, None, "rewardlab/hopper/medium-v0"]
        np.testing.assert_array_equal(old[0].obs, np.arange(6, dtype=np.float32).reshape(3, 2))
        assert old[1].true_rewards is None and old[2].true_return == pytest.approx(12.0)
        assert s.records.segment_kinds([1, 2, 3]) == ["control"] * 3
        assert [(a.name, a.annotator_id) for a in s.annotation.annotators()] == [("ada", 1)]
        assert s.annotation.next_query_for(1) == Query(1, 2, 0, 1)  # its assignment is kept
        assert s.records.preferences()[0] == Preference(1, Label.LEFT, "oracle", 1.5e9)
        new = s.records.add_text_segments(text_segments(2))
        assert new == [4, 5]  # the id sequence goes on
        [q] = s.records.add_queries([(4, 5)], round=1)
        assert q == 3
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta").fetchall() == [(SCHEMA_VERSION,)] == [("4",)]
    assert con.execute("SELECT kind FROM segments ORDER BY id").fetchall() == [
        ("control",), ("control",), ("control",), ("text",), ("text",),
    ]
    con.close()


def test_upgrades_version_3_on_both_backends(store_url: str) -> None:
    """v3 -> v4 where v3 is this schema without the text columns, on SQLite and PostgreSQL."""
    with FeedbackStore(store_url) as s:
        old = s.records.add_segments(random_segments(2))
        [q] = s.records.add_queries([(old[0], old[1])], round=0)
    engine = create_engine(store_url)
    with engine.begin() as con:
        for column in ("kind", "prompt", "completion", "prompt_ids", "completion_ids", "gold"):
            con.exec_driver_sql(f"ALTER TABLE segments DROP COLUMN {column}")
        con.exec_driver_sql("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    engine.dispose()
    with FeedbackStore(store_url) as s:
        assert s.records.segment_kinds(old) == ["control", "control"]
        assert len(s.records.get_segments(old)) == 2
        new = s.records.add_text_segments(text_segments(1))
        assert new == [old[1] + 1]
        assert s.records.get_queries() == [Query(old[0], old[1], 0, q)]
    with FeedbackStore(store_url) as s:  # reopening a version 4 database changes nothing
        assert s.summary.counts()["segments"] == 3
