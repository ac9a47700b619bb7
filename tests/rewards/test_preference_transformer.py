import math

import numpy as np
import pytest
import torch

from rewardlab.config import PreferenceTransformerConfig
from rewardlab.errors import RunDirError
from rewardlab.rewards.preference_transformer import (
    PreferenceTransformer,
    preference_attention,
    warmup_cosine_lr,
)

TINY = PreferenceTransformerConfig(embd_dim=16, n_head=2, pref_attn_dim=8, epochs=2,
                                   batch_size=16, max_len=50)
FAST = PreferenceTransformerConfig(embd_dim=32, pref_attn_dim=16, epochs=15, batch_size=64,
                                   lr=3e-4)


def _oracle_pairs(rng: np.random.Generator, n: int, t: int = 6):
    """Pairs labelled by the return under r = s_0 + a_0; gaps below 1 are answered "equal"."""
    obs = rng.normal(size=(n, 2, t, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2, t, 1)).astype(np.float32)
    returns = (obs[..., 0] + act[..., 0]).sum(-1)
    gap = returns[:, 0] - returns[:, 1]
    targets = np.where(np.abs(gap) < 1.0, 0.5, (gap > 0).astype(np.float32))
    return obs, act, targets.astype(np.float32)


def test_preference_attention_by_hand():
    q = torch.tensor([[1.0], [0.0]])
    k = torch.tensor([[1.0], [2.0]])
    r = torch.tensor([1.0, 3.0])
    weights, score = preference_attention(q, k, r)
    # row 0: softmax(1, 2); row 1: softmax(0, 0) = (1/2, 1/2); w = mean over rows
    row0 = [math.e / (math.e + math.e**2), math.e**2 / (math.e + math.e**2)]
    w = [(row0[0] + 0.5) / 2, (row0[1] + 0.5) / 2]
    torch.testing.assert_close(weights, torch.tensor(w))
    z = [row0[0] * 1 + row0[1] * 3, 0.5 * 1 + 0.5 * 3]  # z_i = sum_j a_ij r_j
    assert score.item() == pytest.approx(sum(z) / 2)
    assert score.item() == pytest.approx(w[0] * 1 + w[1] * 3)


def test_warmup_cosine_schedule_values():
    lr = [warmup_cosine_lr(1e-4, s, total=100, warmup=10) for s in (0, 5, 10, 55, 100, 120)]
    assert lr == pytest.approx([1e-4, 5.5e-4, 1e-3, 5.5e-4, 1e-4, 1e-4])


def test_outputs_are_consistent_and_shaped():
    model = PreferenceTransformer(3, 1, TINY, seed=0)
    rng = np.random.default_rng(0)
    obs, act, _ = _oracle_pairs(rng, 5, t=7)
    r, w, s = model.predict(obs, act)
    assert r.shape == w.shape == (5, 2, 7) and s.shape == (5, 2)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(s, (w * r).sum(-1), rtol=1e-5, atol=1e-6)
    probs = model.preference_probs(obs, act)
    assert probs.shape == (1, 5)
    np.testing.assert_allclose(probs[0], 1 / (1 + np.exp(-(s[:, 0] - s[:, 1]))), rtol=1e-5)
    np.testing.assert_array_equal(model.reward(obs, act), r)
    np.testing.assert_array_equal(model.importance_weights(obs, act), w)


def test_per_step_reward_is_causal():
    model = PreferenceTransformer(3, 1, TINY, seed=1)
    rng = np.random.default_rng(1)
    obs, act, _ = _oracle_pairs(rng, 2, t=8)
    obs2, act2 = obs.copy(), act.copy()
    obs2[..., 5:, :] += 3.0
    act2[..., 5:, :] *= -1.0
    r1, r2 = model.reward(obs, act), model.reward(obs2, act2)
    np.testing.assert_allclose(r1[..., :5], r2[..., :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(r1[..., 5:], r2[..., 5:])


def test_relabel_matches_a_window_per_step():
    model = PreferenceTransformer(3, 1, TINY, seed=2)
    rng = np.random.default_rng(2)
    lengths, window = [3, 9, 5, 1, 6], 4  # episodes shorter and longer than the window
    n = sum(lengths)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    ends = np.zeros(n, dtype=bool)
    ends[np.cumsum(lengths) - 1] = True
    out = model.relabel(obs, act, ends, window=window)
    expected, start = [], 0
    for length in lengths:  # reference: the window of the episode's steps ending at each step
        for i in range(start, start + length):
            first = max(start, i - window + 1)
            expected.append(model.reward(obs[first:i + 1][None], act[first:i + 1][None])[0, -1])
        start += length
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="window"):
        model.relabel(obs, act, ends)  # no fit yet, no window given


@pytest.mark.learning
def test_fits_oracle_preferences_to_90_percent_heldout_accuracy():
    obs, act, targets = _oracle_pairs(np.random.default_rng(0), 1000)
    model = PreferenceTransformer(3, 1, FAST, seed=0)
    fit = model.fit(obs[:800], act[:800], targets[:800])
    assert fit["epochs"] == 15 and model.updates == 1 and model.segment_len == 6
    assert model.accuracy(obs[800:], act[800:], targets[800:]) > 0.9


def test_same_seed_same_model():
    obs, act, targets = _oracle_pairs(np.random.default_rng(3), 40)
    a, b, c = (PreferenceTransformer(3, 1, TINY, seed=s) for s in (0, 0, 1))
    fits = [m.fit(obs, act, targets) for m in (a, b, c)]
    assert fits[0] == fits[1]
    np.testing.assert_array_equal(a.reward(obs, act), b.reward(obs, act))
    assert not np.array_equal(a.reward(obs, act), c.reward(obs, act))


def test_save_load_identical_outputs_and_identical_continued_training(tmp_path):
    obs, act, targets = _oracle_pairs(np.random.default_rng(4), 40)
    model = PreferenceTransformer(3, 1, TINY, seed=5)
    model.fit(obs[:20], act[:20], targets[:20])
    model.save(tmp_path)
    loaded = PreferenceTransformer.load(tmp_path)
    np.testing.assert_array_equal(model.reward(obs, act), loaded.reward(obs, act))
    assert loaded.segment_len == 6 and loaded.steps == model.steps
    assert model.fit(obs, act, targets) == loaded.fit(obs, act, targets)
    np.testing.assert_array_equal(model.preference_probs(obs, act),
                                  loaded.preference_probs(obs, act))
    with pytest.raises(RunDirError):
        PreferenceTransformer.load(tmp_path / "missing")


def test_fit_refuses_bad_shapes_and_long_segments():
    model = PreferenceTransformer(3, 1, TINY)
    obs, act, targets = _oracle_pairs(np.random.default_rng(5), 4)
    with pytest.raises(ValueError, match="no labelled pairs"):
        model.fit(obs[:0], act[:0], targets[:0])
    with pytest.raises(ValueError, match="expected"):
        model.fit(obs, act[:, :, :3], targets)
    long_obs, long_act, _ = _oracle_pairs(np.random.default_rng(5), 4, t=51)
    with pytest.raises(ValueError, match="max_len"):
        model.fit(long_obs, long_act, targets)
