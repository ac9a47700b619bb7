"""Labelling an offline dataset: its segments, queries and answers in the feedback store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from rewardlab.data.offline import OfflineDataset
from rewardlab.errors import ConfigError, DatasetError
from rewardlab.feedback.offline import label_dataset
from rewardlab.feedback.rounds import RoundResult
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.store.store import FeedbackStore
from rewardlab.types import Label, Segment
from tests.helpers import random_offline_dataset

T = 10


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    """About 300 steps of random Hopper-v5 episodes (at most 40 steps, often fewer)."""
    return random_offline_dataset(steps=300)[0]


@pytest.fixture
def store(tmp_path: Path):
    with FeedbackStore.open(tmp_path / "run") as s:
        yield s


def _rows(dataset: OfflineDataset, seg: Segment) -> np.ndarray:
    """Rows of ``dataset`` a stored segment was cut from, found by its provenance alone."""
    [start] = np.flatnonzero((dataset.episode_ids == seg.episode_id)
                             & (dataset.steps == seg.start_step))
    return np.arange(start, start + seg.length)


def test_segments_carry_provenance_and_never_cross_episodes(
    dataset: OfflineDataset, store: FeedbackStore
) -> None:
    results = label_dataset(dataset, store, ScriptedTeacher("oracle", seed=0), budget=12,
                            segment_len=T, selection="uniform", rng=np.random.default_rng(0),
                            queries_per_round=4)
    assert [r.round for r in results] == [0, 1, 2] and all(len(r.query_ids) == 4 for r in results)
    queries = store.records.get_queries()
    assert len(queries) == 12 and sorted({q.round for q in queries}) == [0, 1, 2]
    seg_ids = sorted({i for q in queries for i in (q.left_id, q.right_id)})
    segments = store.records.get_segments(seg_ids)
    for seg in segments:
        assert seg.dataset_id == dataset.dataset_id and seg.env_id == "Hopper-v5"
        rows = _rows(dataset, seg)
        assert rows[-1] < dataset.n_steps
        assert np.all(dataset.episode_ids[rows] == seg.episode_id)  # one episode
        np.testing.assert_array_equal(dataset.steps[rows], seg.start_step + np.arange(T))
        np.testing.assert_array_equal(seg.obs, dataset.observations[rows])
        np.testing.assert_array_equal(seg.actions, dataset.actions[rows])
        np.testing.assert_array_equal(seg.true_rewards, dataset.rewards[rows])
        np.testing.assert_array_equal(seg.render_states, dataset.render_states[rows])
    # the oracle prefers the segment of higher true return (ties: left, as B-Pref)
    returns = {s.segment_id: float(s.true_rewards.sum()) for s in segments}
    answers = {p.query_id: p for p in store.records.preferences()}
    assert len(answers) == 12
    for q in queries:
        want = Label.LEFT if returns[q.left_id] >= returns[q.right_id] else Label.RIGHT
        assert answers[q.query_id].label == want and answers[q.query_id].teacher_id == "oracle"
    labels = np.concatenate([r.labels for r in results])
    ids = [i for r in results for i in r.query_ids]
    assert labels.tolist() == [int(answers[i].label) for i in ids]
    assert results[0].obs.shape == (4, 2, T, dataset.obs_dim)
    arrays = store.records.training_arrays()  # what a reward model trains on
    assert arrays["obs"].shape == (12, 2, T, dataset.obs_dim)


def test_rounds_select_actively_once_a_model_is_refitted(
    dataset: OfflineDataset, store: FeedbackStore
) -> None:
    pools: list[tuple[int, ...]] = []

    def prob_fn(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        pools.append(obs.shape)
        score = obs[:, 0, :, 0].sum(-1) - obs[:, 1, :, 0].sum(-1)  # (P,)
        members = np.arange(1.0, 4.0)[:, None]  # three members, more or less sure
        return 1.0 / (1.0 + np.exp(-members * score[None]))

    seen: list[RoundResult] = []

    def refit(result: RoundResult):
        seen.append(result)
        return prob_fn

    label_dataset(dataset, store, ScriptedTeacher("oracle"), budget=9, segment_len=T,
                  selection="disagreement", rng=np.random.default_rng(1), queries_per_round=3,
                  oversample=5, refit=refit)
    assert [r.method for r in seen] == ["uniform", "disagreement", "disagreement"]
    assert pools == [(15, 2, T, dataset.obs_dim)] * 2  # rounds 1 and 2 score a 3 x 5 pool
    with store.db.transaction("read sources") as session:
        sources = list(session.scalars(text("SELECT source FROM queries ORDER BY id")))
    assert sources == ["uniform"] * 3 + ["disagreement"] * 6


def test_labelling_again_finishes_stored_rounds_instead_of_asking_again(
    dataset: OfflineDataset, store: FeedbackStore
) -> None:
    args = dict(budget=8, segment_len=T, selection="uniform", queries_per_round=4)
    first = label_dataset(dataset, store, ScriptedTeacher("oracle"),
                          rng=np.random.default_rng(0), **args)
    again = label_dataset(dataset, store, ScriptedTeacher("oracle"),
                          rng=np.random.default_rng(5), **args)
    assert all(r.reused for r in again) and not any(r.reused for r in first)
    assert [r.query_ids for r in again] == [r.query_ids for r in first]
    counts = store.summary.counts()
    assert (counts["queries"], counts["preferences"]) == (8, 8)


def test_margin_bad_schedules_and_short_episodes(
    dataset: OfflineDataset, store: FeedbackStore
) -> None:
    teacher = ScriptedTeacher("mistake", seed=0)
    label_dataset(dataset, store, teacher, budget=2, segment_len=T, selection="uniform",
                  rng=np.random.default_rng(0))
    # B-Pref's margin: the mean true return of a segment-long slice (here: of the dataset)
    assert teacher.margin == pytest.approx(float(dataset.rewards.mean()) * T, rel=1e-6)
    with pytest.raises(ConfigError, match="queries_per_round"):
        label_dataset(dataset, store, teacher, budget=2, segment_len=T, selection="uniform",
                      rng=np.random.default_rng(0), queries_per_round=3)
    with pytest.raises(ConfigError, match="method"):
        label_dataset(dataset, store, teacher, budget=2, segment_len=T, selection="random",
                      rng=np.random.default_rng(0))
    longest = int(dataset.episode_lengths().max())
    with pytest.raises(DatasetError, match=f"longest episode: {longest} steps"):
        label_dataset(dataset, store, teacher, budget=2, segment_len=longest + 1,
                      selection="uniform", rng=np.random.default_rng(0))


@pytest.mark.e2e
def test_a_dataset_segment_renders_to_a_clip(dataset: OfflineDataset, store: FeedbackStore,
                                             tmp_path: Path) -> None:
    """The web app's clip path (ClipCache over stored segments) renders dataset segments."""
    import imageio.v2 as iio

    from rewardlab.feedback.clips import ClipCache, render_segment_frames

    label_dataset(dataset, store, ScriptedTeacher("oracle"), budget=1, segment_len=T,
                  selection="uniform", rng=np.random.default_rng(0))
    [query] = store.records.get_queries()
    seg = store.records.get_segments([query.left_id])[0]
    assert seg.render_states is not None and seg.render_states.shape == (T, 12)
    frames = render_segment_frames(seg.env_id, seg.render_states, width=64, height=48)
    assert frames.shape == (T, 48, 64, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0  # the hopper moved
    with ClipCache(tmp_path / "clips", width=64, height=48) as cache:
        path = cache.get_or_render(seg, timeout=60)
    assert path.name == f"segment-{seg.segment_id}.mp4"
    assert len(iio.mimread(path)) == T
