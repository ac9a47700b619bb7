import numpy as np
import pytest
import torch

from rewardlab.config import RewardModelConfig
from rewardlab.rewards.model import (
    RewardModel,
    crop_mask,
    holdout_mask,
    native_bfloat16,
    training_dtype,
)


def _linear_reward_data(rng: np.random.Generator, n: int, t: int = 10, od: int = 4, ad: int = 2):
    w = np.array([1.0, -0.5, 0.25, 0.0, 0.8, -0.3])
    obs = rng.normal(size=(n, 2, t, od)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2, t, ad)).astype(np.float32)
    returns = (np.concatenate([obs, act], -1) @ w).sum(-1)  # (n, 2)
    targets = (returns[:, 0] > returns[:, 1]).astype(np.float32)  # oracle labels
    return obs, act, targets


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_ensemble_reaches_90_percent_heldout_accuracy_on_oracle_labels(precision):
    rng = np.random.default_rng(0)
    obs, act, y = _linear_reward_data(rng, 1200)
    cfg = RewardModelConfig(hidden_sizes=(64, 64), max_epochs=60, target_accuracy=0.99,
                            precision=precision)
    model = RewardModel(4, 2, cfg, seed=0)
    model.fit(obs[:1000], act[:1000], y[:1000])
    assert model.accuracy(obs[1000:], act[1000:], y[1000:]) >= 0.90


def test_members_differ_and_predictions_have_documented_shapes():
    model = RewardModel(3, 1, RewardModelConfig(members=4, hidden_sizes=(16,)), seed=1)
    obs = np.zeros((5, 7, 3), np.float32)
    act = np.ones((5, 7, 1), np.float32)
    members = model.predict_members(obs, act)
    assert members.shape == (4, 5, 7) and members.dtype == np.float32
    assert members.std(axis=0).max() > 0
    assert model.reward(obs, act).shape == (5, 7)
    probs = model.preference_probs(np.zeros((6, 2, 7, 3), np.float32),
                                   np.zeros((6, 2, 7, 1), np.float32))
    assert probs.shape == (4, 6)
    np.testing.assert_allclose(probs, 0.5, atol=1e-6)  # identical segments


def test_normalization_and_conservative_reduction():
    rng = np.random.default_rng(2)
    cfg = RewardModelConfig(hidden_sizes=(16,), reduction="mean_minus_std", k_std=2.0)
    model = RewardModel(3, 1, cfg, seed=0)
    obs = rng.normal(size=(1000, 3)).astype(np.float32)
    act = rng.normal(size=(1000, 1)).astype(np.float32)
    members = model.predict_members(obs, act)
    np.testing.assert_allclose(
        model.reduce(members), members.mean(0) - 2.0 * members.std(0), rtol=1e-5
    )
    model.update_normalization(obs, act)
    r = model.reward(obs, act)
    assert abs(r.mean()) < 1e-4 and abs(r.std() - 1) < 1e-3


def test_same_seed_same_fit_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    obs, act, y = _linear_reward_data(rng, 64)
    cfg = RewardModelConfig(hidden_sizes=(16,), max_epochs=3)
    a = RewardModel(4, 2, cfg, seed=7)
    b = RewardModel(4, 2, cfg, seed=7)
    assert a.fit(obs, act, y) == b.fit(obs, act, y)
    np.testing.assert_array_equal(a.predict_members(obs, act), b.predict_members(obs, act))
    a.update_normalization(obs.reshape(-1, 4), act.reshape(-1, 2))
    a.save(tmp_path)
    c = RewardModel.load(tmp_path)
    np.testing.assert_array_equal(c.reward(obs, act), a.reward(obs, act))
    # training continues identically after a reload (Adam state and shuffle RNG restored)
    a.fit(obs, act, y)
    c.fit(obs, act, y)
    np.testing.assert_allclose(c.predict_members(obs, act), a.predict_members(obs, act), atol=1e-6)


def test_fit_rejects_bad_shapes():
    model = RewardModel(4, 2, RewardModelConfig(hidden_sizes=(8,)))
    with pytest.raises(ValueError, match="no labelled pairs"):
        model.fit(np.zeros((0, 2, 3, 4), np.float32), np.zeros((0, 2, 3, 2), np.float32),
                  np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="shapes disagree"):
        model.fit(np.zeros((2, 2, 3, 4), np.float32), np.zeros((2, 2, 4, 2), np.float32),
                  np.zeros(2, np.float32))


def test_holdout_mask_is_stable_and_near_the_fraction():
    ids = np.arange(1, 20001)
    mask = holdout_mask(ids, 0.1)
    assert abs(mask.mean() - 0.1) < 0.01
    np.testing.assert_array_equal(mask[:100], holdout_mask(ids[:100], 0.1))


def test_precision_resolves_to_an_autocast_dtype():
    import torch

    assert training_dtype("float32") == torch.float32
    assert training_dtype("bfloat16") == torch.bfloat16
    assert training_dtype("auto") == (torch.bfloat16 if native_bfloat16() else torch.float32)
    model = RewardModel(4, 2, RewardModelConfig(precision="bfloat16"), seed=0)
    assert model.train_dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.net.parameters())  # weights stay fp32


def test_selection_probs_rank_like_preference_probs():
    rng = np.random.default_rng(3)
    obs, act, y = _linear_reward_data(rng, 300)
    model = RewardModel(4, 2, RewardModelConfig(hidden_sizes=(32,), precision="bfloat16"), seed=0)
    model.fit(obs, act, y)
    exact, fast = model.preference_probs(obs, act), model.selection_probs(obs, act)
    assert fast.shape == exact.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, exact, atol=0.02)
    assert np.corrcoef(fast.std(axis=0), exact.std(axis=0))[0, 1] > 0.99  # same disagreement


# ------------------------------------------------------------------ SURF (Park et al. 2022)
def test_crop_mask_keeps_one_window_per_segment_within_the_range():
    gen = torch.Generator().manual_seed(0)
    mask = crop_mask((3, 400, 2), 20, 4, gen)
    assert mask.shape == (3, 400, 2, 20) and mask.dtype == torch.float32
    lengths = mask.sum(-1)
    assert lengths.min() == 12 and lengths.max() == 20  # T - U{0..2c}, both ends reached
    steps = torch.diff(mask, dim=-1, prepend=torch.zeros(3, 400, 2, 1))
    assert ((steps == 1).sum(-1) == 1).all()  # one contiguous window each
    starts = mask.argmax(-1)
    assert (starts[..., 0] != starts[..., 1]).any()  # the two sides are cropped apart
    assert starts.max() > 0 and (starts + lengths.long()).max() == 20
    with pytest.raises(ValueError, match="crop_steps"):
        crop_mask((1,), 10, 5, gen)


def test_surf_fit_pseudo_labels_confident_unlabelled_pairs():
    rng = np.random.default_rng(0)
    obs, act, y = _linear_reward_data(rng, 1100)
    cfg = RewardModelConfig(hidden_sizes=(64, 64), max_epochs=100, target_accuracy=1.0,
                            unlabeled_ratio=10, pseudo_label_threshold=0.95, crop_steps=2)
    model = RewardModel(4, 2, cfg, seed=0)
    fit = model.fit(obs[:100], act[:100], y[:100], obs[100:], act[100:])
    assert 0.05 < fit["pseudo_labeled_fraction"] < 1.0
    assert model.accuracy(obs[100:], act[100:], y[100:]) >= 0.85
    with pytest.raises(ValueError, match="unlabelled pairs"):
        model.fit(obs[:10], act[:10], y[:10], obs[10:20, :, :5], act[10:20, :, :5])


def test_unconfident_unlabelled_pairs_do_not_change_the_fit():
    """Pairs of two identical segments have P = 0.5 under every member: never pseudo-labelled,
    so the fit equals the supervised one (up to the chunks' summation order)."""
    rng = np.random.default_rng(1)
    obs, act, y = _linear_reward_data(rng, 200)
    same_obs = np.repeat(obs[:50, :1], 2, axis=1)
    same_act = np.repeat(act[:50, :1], 2, axis=1)
    cfg = RewardModelConfig(hidden_sizes=(32,), max_epochs=5, unlabeled_ratio=1)
    plain, surf = RewardModel(4, 2, cfg, seed=3), RewardModel(4, 2, cfg, seed=3)
    plain.fit(obs, act, y)
    fit = surf.fit(obs, act, y, same_obs, same_act)
    assert fit["pseudo_labeled_fraction"] == 0.0
    for a, b in zip(plain.net.parameters(), surf.net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_lapse_rate_fit_learns_the_reward_through_flipped_labels():
    # reward_model.lapse_rate (Christiano et al. 2017, Sec. 2.2.3) fits P = lapse / 2 +
    # (1 - lapse) * sigmoid: a teacher flipping 10% of its labels answers it with lapse 0.2
    rng = np.random.default_rng(1)
    obs, act, y = _linear_reward_data(rng, 1200)
    noisy = y.copy()
    flip = rng.random(1000) < 0.1
    noisy[:1000][flip] = 1 - noisy[:1000][flip]
    fits = {}
    for lapse in (0.0, 0.2):
        cfg = RewardModelConfig(hidden_sizes=(64, 64), max_epochs=30, lapse_rate=lapse)
        model = RewardModel(4, 2, cfg, seed=0)
        fits[lapse] = model.fit(obs[:1000], act[:1000], noisy[:1000])
        if lapse:
            assert model.accuracy(obs[1000:], act[1000:], y[1000:]) >= 0.85
    # the lapse model's loss differs from plain Bradley-Terry's on the same data and seed
    assert fits[0.2]["loss"] != pytest.approx(fits[0.0]["loss"], rel=1e-3)
