"""Tests of annotators, several answers per query, assignment, undo and agreement (SQLite)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rewardlab.errors import (
    AlreadyAnsweredError,
    DuplicateAnnotatorError,
    InvalidNameError,
    NothingToUndoError,
    StaleRoundError,
    StoreError,
    UnknownQueryError,
)
from rewardlab.store import DB_FILENAME, SCHEMA_VERSION, FeedbackStore
from rewardlab.types import Label, Preference
from tests.helpers import fake_segments

T = 5


@pytest.fixture
def store(tmp_path: Path):
    with FeedbackStore.open(tmp_path / "run") as s:
        yield s


def test_annotator_tokens_are_hashed(store: FeedbackStore, tmp_path: Path) -> None:
    aid, token = store.annotation.add_annotator("alice")
    bid, other = store.annotation.add_annotator("bob")
    assert aid != bid and token != other and len(token) >= 43
    assert store.annotation.annotator_for_token(token) == (aid, "alice")
    assert store.annotation.annotator_for_token(other) == (bid, "bob")
    assert store.annotation.annotator_for_token("nope") is None
    assert store.annotation.annotator_for_token("") is None
    assert [a.name for a in store.annotation.annotators()] == ["alice", "bob"]
    with pytest.raises(DuplicateAnnotatorError, match="'alice' already exists"):
        store.annotation.add_annotator("alice")
    for bad in ("", "  ", " carol", "x" * 256, "oracle", "Noisy", "MYOPIC", "skip", "a\x00b",
                "a\nb", "a\x7fb", "a\x85b", "a\u200bb", "a\u202eb", "a\u2028b", "a\u2029b", 7):
        with pytest.raises(InvalidNameError, match="annotator name"):
            store.annotation.add_annotator(bad)  # type: ignore[arg-type]
    store.annotation.add_annotator("Ada Lovelace-2 (é)")  # spaces inside and accents are fine
    with sqlite3.connect(tmp_path / "run" / DB_FILENAME) as con:
        stored = [r[0] for r in con.execute("SELECT token_sha256 FROM annotators ORDER BY id")]
    con.close()
    assert stored[:2] == [hashlib.sha256(t.encode()).hexdigest() for t in (token, other)]
    assert len(store.annotation.annotators()) == 3


def test_several_teachers_answer_one_query(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(fake_segments(2, length=T))
    q = store.records.add_queries([(a, b), (b, a)], round=0)
    store.records.add_preferences(
        [Preference(q[0], Label.LEFT, "alice"), Preference(q[0], Label.RIGHT, "bob")]
    )
    with pytest.raises(AlreadyAnsweredError, match=rf"already answered: {q[0]} by 'alice'"):
        store.records.add_preferences(
            [Preference(q[1], Label.LEFT, "alice"), Preference(q[0], Label.LEFT, "alice")]
        )
    with pytest.raises(StoreError, match="twice in one call"):
        store.records.add_preferences(
            [Preference(q[1], Label.LEFT, "carol"), Preference(q[1], Label.SKIP, "carol")]
        )
    with pytest.raises(UnknownQueryError, match="unknown query ids: 99"):
        store.records.add_preferences([Preference(99, Label.LEFT, "carol")])
    store.records.add_preference(Preference(q[1], Label.SKIP, "alice"))
    assert store.summary.counts() == dict(
        segments=2, queries=2, preferences=3, answered=2, skipped=1, pending=0
    )
    arrays = store.records.training_arrays()
    assert arrays["query_ids"].tolist() == [q[0], q[0]]
    assert arrays["labels"].tolist() == [Label.LEFT, Label.RIGHT]
    assert arrays["obs"].shape == (2, 2, T, 3) and arrays["labels"].dtype == np.int8
    with_skipped = store.records.training_arrays(include_skipped=True)
    assert with_skipped["query_ids"].tolist() == [q[0], q[0], q[1]]
    assert store.records.pending_queries() == []


def test_add_answer_refuses_stale_rounds(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(fake_segments(2, length=T))
    [old] = store.records.add_queries([(a, b)], round=0)
    assert store.annotation.add_answer(Preference(old, Label.LEFT, "alice")) > 0
    [new] = store.records.add_queries([(b, a)], round=1)
    assert store.records.current_round() == 1
    with pytest.raises(StaleRoundError, match="stale round"):
        store.annotation.add_answer(Preference(old, Label.LEFT, "bob"))
    with pytest.raises(UnknownQueryError):
        store.annotation.add_answer(Preference(12345, Label.LEFT, "bob"))
    store.annotation.add_answer(Preference(new, Label.EQUAL, "bob"))
    assert store.summary.counts()["preferences"] == 2


def test_assignment_overlap_one_and_two(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(fake_segments(2, length=T))
    x = store.annotation.add_annotator("x")[0]
    assert store.annotation.next_query_for(x) is None  # no queries yet
    q = store.records.add_queries([(a, b)] * 3, round=0)
    alice, _ = store.annotation.add_annotator("alice")
    bob, _ = store.annotation.add_annotator("bob")
    first = store.annotation.next_query_for(alice)
    assert first is not None and first.query_id == q[0]
    assert store.annotation.next_query_for(alice).query_id == q[0]  # refresh: the same query
    assert store.annotation.next_query_for(bob).query_id == q[1]  # overlap 1: never the same
    assert store.annotation.next_query_for(bob, overlap=2).query_id == q[1]  # own assignment first
    store.annotation.add_answer(Preference(q[0], Label.LEFT, "alice"))
    assert store.annotation.next_query_for(alice).query_id == q[2]
    store.annotation.add_answer(Preference(q[2], Label.LEFT, "alice"))
    assert store.annotation.next_query_for(alice) is None  # q[1] is bob's
    assert store.annotation.next_query_for(alice, overlap=2).query_id == q[1]
    with pytest.raises(StoreError, match="overlap"):
        store.annotation.next_query_for(alice, overlap=0)
    with pytest.raises(StoreError, match="unknown annotator"):
        store.annotation.next_query_for(999)
    # a new round replaces the old one
    [r1] = store.records.add_queries([(b, a)], round=1)
    assert store.annotation.next_query_for(bob).query_id == r1


def test_undo_and_recent(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(fake_segments(2, length=T))
    q = store.records.add_queries([(a, b)] * 3, round=0)
    alice, _ = store.annotation.add_annotator("alice")
    p0 = store.annotation.add_answer(Preference(q[0], Label.LEFT, "alice", timestamp=1.0))
    store.annotation.add_answer(Preference(q[1], Label.RIGHT, "alice", timestamp=2.0))
    store.annotation.add_answer(Preference(q[2], Label.RIGHT, "bob", timestamp=3.0))
    recent = store.annotation.preferences_by("alice")
    assert [r.query_id for r in recent] == [q[1], q[0]]
    assert recent[1].preference_id == p0 and recent[1].label == Label.LEFT
    assert store.annotation.preferences_by("alice", limit=1)[0].query_id == q[1]
    assert store.annotation.preferences_by("alice", round=3) == []
    assert store.annotation.undo_last("alice").query_id == q[1]
    assert store.annotation.delete_preference(p0).query_id == q[0]
    with pytest.raises(StoreError, match="unknown preference id"):
        store.annotation.delete_preference(p0)
    with pytest.raises(NothingToUndoError, match="nothing to undo"):
        store.annotation.undo_last("alice")
    assert [p.teacher_id for p in store.records.preferences()] == ["bob"]
    # undo returns the query to the annotator: assigned, unanswered queries come first
    assert store.annotation.next_query_for(alice).query_id == q[0]


def test_agreement(store: FeedbackStore) -> None:
    a, b = store.records.add_segments(fake_segments(2, length=T))
    q = store.records.add_queries([(a, b)] * 4, round=0)
    assert store.summary.agreement() == dict(overlapping=0, compared=0, agreeing=0, fraction=None)
    store.records.add_preferences(
        [
            Preference(q[0], Label.LEFT, "alice"),
            Preference(q[0], Label.LEFT, "bob"),
            Preference(q[1], Label.LEFT, "alice"),
            Preference(q[1], Label.RIGHT, "bob"),
            Preference(q[2], Label.SKIP, "alice"),
            Preference(q[2], Label.EQUAL, "bob"),
            Preference(q[3], Label.EQUAL, "alice"),
        ]
    )
    assert store.summary.agreement() == dict(overlapping=3, compared=2, agreeing=1, fraction=0.5)


def test_upgrades_a_version_1_database(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    with sqlite3.connect(run / DB_FILENAME) as con:
        con.executescript(
            """
            CREATE TABLE meta (key VARCHAR(255) PRIMARY KEY, value VARCHAR(255) NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE segments (id INTEGER PRIMARY KEY, env_id VARCHAR(255) NOT NULL,
                episode_id BIGINT NOT NULL, start_step BIGINT NOT NULL, length INTEGER NOT NULL,
                obs_dim INTEGER NOT NULL, act_dim INTEGER NOT NULL, obs BLOB NOT NULL,
                actions BLOB NOT NULL, true_rewards BLOB, render_states BLOB,
                created_at FLOAT NOT NULL);
            CREATE TABLE queries (id INTEGER PRIMARY KEY, left_id INTEGER NOT NULL
                REFERENCES segments (id), right_id INTEGER NOT NULL REFERENCES segments (id),
                round INTEGER NOT NULL, source VARCHAR(255) NOT NULL, created_at FLOAT NOT NULL,
                CONSTRAINT ck_queries_distinct CHECK (left_id <> right_id));
            CREATE TABLE preferences (id INTEGER PRIMARY KEY, query_id INTEGER NOT NULL
                REFERENCES queries (id), label INTEGER NOT NULL,
                teacher_id VARCHAR(255) NOT NULL, timestamp FLOAT NOT NULL, UNIQUE (query_id),
                CONSTRAINT ck_preferences_label CHECK (label IN (0, 1, 2, 3)));
            """
        )
    con.close()
    with FeedbackStore.open(run) as s:
        a, b = s.records.add_segments(fake_segments(2, length=T))
        [q] = s.records.add_queries([(a, b)], round=0)
        s.records.add_preference(Preference(q, Label.LEFT, "oracle", timestamp=1.0))
    # pretend the answer above was stored by version 1: reset the version and reopen
    with sqlite3.connect(run / DB_FILENAME) as con:
        con.execute("UPDATE meta SET value = '1'")
    con.close()
    with FeedbackStore.open(run) as s:
        assert s.records.preferences() == [Preference(q, Label.LEFT, "oracle", timestamp=1.0)]
        s.records.add_preference(Preference(q, Label.RIGHT, "alice"))
        assert s.summary.counts()["preferences"] == 2
    with sqlite3.connect(run / DB_FILENAME) as con:
        assert con.execute("SELECT value FROM meta").fetchall() == [(SCHEMA_VERSION,)]
    con.close()


def test_people_override_a_fallback_teacher(store: FeedbackStore) -> None:
    """Mixed mode: scripted pre-labels count only where no person answered."""
    segs = store.records.add_segments(fake_segments(6, length=T))
    q = store.records.add_queries(
        [(segs[0], segs[1]), (segs[2], segs[3]), (segs[4], segs[5])], round=0
    )
    store.annotation.add_annotator("ada")
    store.records.add_preferences([Preference(i, Label.LEFT, "oracle") for i in q])
    store.records.add_preferences(
        [Preference(q[0], Label.RIGHT, "ada"), Preference(q[1], Label.SKIP, "ada")]
    )
    plain = store.records.training_arrays()
    assert plain["query_ids"].tolist() == [q[0], q[0], q[1], q[2]]
    mixed = store.records.training_arrays(fallback_teachers={"oracle"})
    # q0: ada's RIGHT replaces oracle's LEFT; q1: ada's "can't tell" drops it; q2: oracle
    assert mixed["query_ids"].tolist() == [q[0], q[2]]
    assert mixed["labels"].tolist() == [Label.RIGHT, Label.LEFT]
    assert mixed["obs"].shape == (2, 2, T, 3)
    used = store.records.used_answers(q, fallback_teachers=("oracle",))
    assert used == [(q[0], Label.RIGHT), (q[1], Label.SKIP), (q[2], Label.LEFT)]
    assert store.records.used_answers([q[2]]) == [(q[2], Label.LEFT)]


def test_round_answers_count_people_only(store: FeedbackStore) -> None:
    segs = store.records.add_segments(fake_segments(4, length=T))
    q0 = store.records.add_queries([(segs[0], segs[1])], round=0)
    q1 = store.records.add_queries([(segs[2], segs[3]), (segs[1], segs[2])], round=1)
    store.annotation.add_annotator("ada")
    store.annotation.add_annotator("bob")
    store.records.add_preferences([Preference(i, Label.LEFT, "oracle") for i in (*q0, *q1)])
    store.records.add_preferences([
        Preference(q1[0], Label.LEFT, "ada"), Preference(q1[0], Label.SKIP, "bob"),
        Preference(q1[1], Label.EQUAL, "bob"),
    ])
    ids, people = store.annotation.round_answers(1)
    assert ids.tolist() == q1 and people.tolist() == [2, 1]
    ids, people = store.annotation.round_answers(0)
    assert ids.tolist() == q0 and people.tolist() == [0]
    assert store.annotation.round_answers(7)[0].size == 0
    assert store.records.answers_of("oracle", [*q0, *q1]) == dict.fromkeys([*q0, *q1], Label.LEFT)
    assert store.records.answers_of("bob", q1) == {q1[0]: Label.SKIP, q1[1]: Label.EQUAL}
    # progress counts people's answers only (the oracle's pre-labels are open to people)
    p = store.annotation.progress("ada")
    assert (p["round_size"], p["answered_in_round"], p["mine_in_round"]) == (2, 2, 1)
    assert (p["answered_total"], p["total_queries"]) == (2, 3)
