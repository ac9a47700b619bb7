"""REED's dynamics-aware reward (Metcalf et al. 2023): architecture, self-future-consistency
fit, transitions from the log."""

import numpy as np
import pytest
import torch

from rewardlab.config import RewardModelConfig, build_config
from rewardlab.data.transitions import TransitionLog
from rewardlab.rewards.dynamics import consistency_loss, dynamics_transitions
from rewardlab.rewards.model import RewardModel

OBS, ACT = 5, 2


def _reed(**kw):
    cfg = RewardModelConfig(architecture="reed", hidden_sizes=(32, 32), sfc_batch_size=64, **kw)
    return RewardModel(OBS, ACT, cfg, seed=0)


def _dynamics(n, seed=0):
    rng = np.random.default_rng(seed)
    a_mat = rng.normal(size=(OBS, OBS)).astype(np.float32) * 0.5
    b_mat = rng.normal(size=(ACT, OBS)).astype(np.float32)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32)
    return obs, act, np.tanh(obs @ a_mat + act @ b_mat).astype(np.float32)


def test_separate_encoders_and_numpy_copy_match_torch():
    model = _reed()
    first = model.net.net[0].effective_weight().detach()
    assert first.shape == (3, OBS + ACT, 20 + 10)
    assert float(first[:, :OBS, 20:].abs().max()) == 0.0  # state inputs reach the state block
    assert float(first[:, OBS:, :20].abs().max()) == 0.0  # only, actions the action block
    obs = torch.randn(3, 7, OBS)
    acts = torch.randn(3, 7, ACT)
    full = model.net.net[1](model.net.net[0](torch.cat([obs, acts], -1)))
    torch.testing.assert_close(model.net.state_embedding(obs), full[..., :20])
    o, a = obs[0].numpy(), acts[0].numpy()
    np.testing.assert_allclose(model.predict_members(o, a),  # NumPy path (few rows)
                               model._predict_torch(o, a, low=False), atol=1e-6)


def test_consistency_fit_learns_the_dynamics_and_repeats_with_its_seed():
    obs, act, nxt = _dynamics(4000)
    model = _reed(sfc_epochs=4)
    before = model.fit_dynamics(obs, act, nxt, seed=1)["sfc_loss"]
    after = model.fit_dynamics(obs, act, nxt, seed=2)["sfc_loss"]
    assert -3.0 <= after < before  # three members, -cos >= -1 each
    # the representation carries the dynamics: true next states fit better than shuffled ones
    shuffled = nxt[np.random.default_rng(0).permutation(len(nxt))]
    true_loss = _reed(sfc_epochs=4).fit_dynamics(obs, act, nxt, seed=1)["sfc_loss"]
    shuffled_loss = _reed(sfc_epochs=4).fit_dynamics(obs, act, shuffled, seed=1)["sfc_loss"]
    assert true_loss < shuffled_loss - 0.05
    again = _reed(sfc_epochs=4)
    again.fit_dynamics(obs, act, nxt, seed=1)
    fitted = _reed(sfc_epochs=4)
    fitted.fit_dynamics(obs, act, nxt, seed=1)
    for pa, pb in zip(again.net.parameters(), fitted.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # the reward's output layer takes no part
    head = _reed()
    w0 = head.net.net[-2].weight.detach().clone()
    head.fit_dynamics(obs, act, nxt, seed=0)
    assert torch.equal(head.net.net[-2].weight, w0)


def test_consistency_loss_is_minus_cosine_summed_over_members():
    p = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]])
    t = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[2.0, 2.0], [-1.0, 0.0]]])
    assert float(consistency_loss(p, t)) == pytest.approx(-(0.5 + 0.0))


def test_fit_dynamics_refuses_a_plain_mlp_and_bad_shapes():
    obs, act, nxt = _dynamics(10)
    with pytest.raises(ValueError, match="architecture"):
        RewardModel(OBS, ACT, RewardModelConfig(), seed=0).fit_dynamics(obs, act, nxt, seed=0)
    with pytest.raises(ValueError, match="shapes"):
        _reed().fit_dynamics(obs, act, nxt[:5], seed=0)


def test_transitions_stay_inside_episodes_and_respect_the_cap():
    log = TransitionLog(100, 2, OBS, ACT)
    empty = dynamics_transitions(log, 0, np.random.default_rng(0))  # nothing logged yet
    assert [x.shape for x in empty] == [(0, OBS), (0, ACT), (0, OBS)]
    for t in range(30):
        obs = np.full((2, OBS), t, np.float32)
        log.add(obs, np.zeros((2, ACT), np.float32), np.zeros(2, np.float32),
                dones=np.array([t % 10 == 9, False]))
    obs, act, nxt = dynamics_transitions(log, 0, np.random.default_rng(0))
    # env 0: 3 episodes of 10 steps (9 transitions each); env 1: one episode of 30 steps
    assert len(obs) == 27 + 29
    np.testing.assert_array_equal(nxt[:, 0], obs[:, 0] + 1)
    capped = dynamics_transitions(log, 20, np.random.default_rng(0))
    assert len(capped[0]) == 20 and np.all(capped[2][:, 0] == capped[0][:, 0] + 1)


def test_reed_is_refused_for_offline_and_language_model_methods():
    build_config({}, ["reward_model.architecture=reed"])  # pebble: fine
    with pytest.raises(ValueError, match="reward_model.architecture"):
        build_config({}, ["algorithm=iql", "reward_model.architecture=reed"])
