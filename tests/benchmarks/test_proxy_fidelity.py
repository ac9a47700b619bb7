"""benchmarks/proxy_fidelity.py: segment sums, pair accuracy and a probe of a synthetic run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rewardlab.config import RewardModelConfig
from rewardlab.data.transitions import TransitionLog, save_log
from rewardlab.rewards.model import RewardModel


def test_segment_returns_sums_blocks_and_drops_those_across_episodes(fidelity):
    rewards = np.arange(12, dtype=np.float32).reshape(6, 2)  # 6 steps, 2 columns
    episodes = np.array([0, 0, 0, 1, 1, 1])
    out = fidelity.segment_returns(rewards, episodes, 2)
    # blocks: steps (0,1) ep 0, (2,3) straddles, (4,5) ep 1
    np.testing.assert_allclose(out, [[0 + 2, 1 + 3], [8 + 10, 9 + 11]])


def test_pair_accuracy_is_one_when_proxy_orders_as_gold_and_zero_when_reversed(fidelity):
    rng = np.random.default_rng(0)
    gold = rng.normal(size=50)
    same = np.stack([2 * gold + 1, gold], axis=1)
    reversed_ = np.stack([-gold, gold], axis=1)
    assert fidelity.pair_accuracy(same, np.random.default_rng(1), 500) == 1.0
    assert fidelity.pair_accuracy(reversed_, np.random.default_rng(1), 500) == 0.0
    flat = np.stack([gold, np.zeros(50)], axis=1)
    assert np.isnan(fidelity.pair_accuracy(flat, np.random.default_rng(1), 500))


def test_probe_run_reads_a_checkpoint_in_write_order(fidelity, tmp_path, monkeypatch):
    """A ring-buffer log that wrapped: the probe reads its rows oldest first, so "recent" is
    the last steps taken (here the last 50, where gold = -3 x proxy; before them gold = 3 x
    proxy), not the last rows of the array."""
    monkeypatch.setattr(fidelity, "RECENT", 50)
    obs_dim, act_dim, steps, capacity = 3, 2, 130, 100
    rng = np.random.default_rng(0)
    log = TransitionLog(capacity, 1, obs_dim, act_dim)
    model = RewardModel(obs_dim, act_dim, RewardModelConfig(members=2, hidden_sizes=[8]), seed=0)
    for t in range(steps):
        obs = rng.normal(size=(1, obs_dim)).astype(np.float32)
        act = rng.normal(size=(1, act_dim)).astype(np.float32)
        gold = (3.0 if t < steps - 50 else -3.0) * model.reward(obs, act)
        log.add(obs, act, gold, np.array([t % 10 == 9]))
    ckpt = tmp_path / "run" / "checkpoints" / "latest"
    ckpt.mkdir(parents=True)
    model.save(ckpt)
    save_log(log, str(ckpt / "transition_log.npz"))
    run = tmp_path / "run"
    (run / "config.yaml").write_text(yaml.safe_dump({
        "seed": 7, "total_steps": steps, "env": {"id": "Toy-v0"},
        "teacher": {"preset": "oracle"}, "feedback": {"segment_len": 5},
    }))
    (run / "summary.json").write_text(json.dumps({
        "store": {"answered": 12}, "final_eval": {"eval/gold_return": 4.5}}))
    row = fidelity.probe_run(run, {("Toy-v0", 7, steps): 9.0})
    assert row["steps"] == capacity and row["labels"] == 12 and row["seed"] == 7
    assert row["step_spearman_recent"] == pytest.approx(-1.0)
    assert row["pair_accuracy_recent"] == 0.0
    assert row["gold_per_proxy_unit"] == pytest.approx(-3.0, rel=1e-4)
    assert row["final_gold"] == 4.5 and row["reference_gold"] == 9.0
    assert "| run | 12 |" in fidelity.render(
        {"command": "c", "date": "d", "machine": {"cpu": "x", "cpu_count": 2}, "rows": [row]})
