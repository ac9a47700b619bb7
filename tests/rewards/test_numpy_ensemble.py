"""The NumPy copy of the reward ensemble behind the agent's per-step reward."""

import numpy as np
import pytest
import torch
from torch import nn

from rewardlab.config import RewardModelConfig
from rewardlab.rewards.ensemble import NumpyEnsemble, numpy_activation
from rewardlab.rewards.model import NUMPY_ROWS, RewardModel


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "tanh", "elu"])
@pytest.mark.parametrize("output_activation", ["none", "tanh"])
def test_numpy_copy_matches_the_torch_ensemble(activation, output_activation):
    cfg = RewardModelConfig(members=4, hidden_sizes=(32, 16), activation=activation,
                            output_activation=output_activation)
    model = RewardModel(5, 2, cfg, seed=3)
    rng = np.random.default_rng(0)
    obs = (3 * rng.normal(size=(7, 5))).astype(np.float32)  # both sides of every activation
    act = rng.uniform(-1, 1, size=(7, 2)).astype(np.float32)
    x = torch.from_numpy(np.concatenate([obs, act], axis=1))
    with torch.no_grad():
        expected = model.net(x[:, :5], x[:, 5:]).numpy()
    got = NumpyEnsemble(model.net)(np.concatenate([obs, act], axis=1))
    assert got.shape == (4, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_small_and_large_batches_give_the_same_rewards():
    model = RewardModel(4, 2, RewardModelConfig(hidden_sizes=(32, 32)), seed=0)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(NUMPY_ROWS + 1, 4)).astype(np.float32)
    act = rng.normal(size=(NUMPY_ROWS + 1, 2)).astype(np.float32)
    whole = model.predict_members(obs, act)  # torch: above NUMPY_ROWS rows
    rows = np.concatenate([model.predict_members(obs[i:i + 1], act[i:i + 1])
                           for i in range(obs.shape[0])], axis=1)  # NumPy, one row a call
    np.testing.assert_allclose(rows, whole, rtol=1e-5, atol=1e-6)
    assert model.reward(obs[:3], act[:3]).shape == (3,)
    assert model.predict_members(obs[:6].reshape(2, 3, 4), act[:6].reshape(2, 3, 2)).shape \
        == (3, 2, 3)


def test_the_copy_follows_every_change_of_the_weights(tmp_path):
    rng = np.random.default_rng(2)
    model = RewardModel(3, 1, RewardModelConfig(hidden_sizes=(16,), max_epochs=3), seed=0)
    obs1, act1 = np.ones((1, 3), np.float32), np.ones((1, 1), np.float32)
    before = model.predict_members(obs1, act1).copy()
    # a fit (optimizer steps)
    obs = rng.normal(size=(40, 2, 5, 3)).astype(np.float32)
    act = rng.normal(size=(40, 2, 5, 1)).astype(np.float32)
    model.fit(obs, act, (obs.sum(axis=(2, 3))[:, 0] > obs.sum(axis=(2, 3))[:, 1]).astype(
        np.float32))
    after_fit = model.predict_members(obs1, act1).copy()
    assert not np.allclose(after_fit, before)
    np.testing.assert_allclose(after_fit, model._predict_torch(obs1, act1, False), rtol=1e-5)
    # a direct edit
    with torch.no_grad():
        model.net.net[0].bias.add_(1.0)
    np.testing.assert_allclose(model.predict_members(obs1, act1),
                               model._predict_torch(obs1, act1, False), rtol=1e-5)
    # loading other weights into the model
    other = RewardModel(3, 1, RewardModelConfig(hidden_sizes=(16,), max_epochs=3), seed=9)
    other.save(tmp_path)
    model.load_into(tmp_path)
    np.testing.assert_allclose(model.predict_members(obs1, act1),
                               other.predict_members(obs1, act1), rtol=1e-5)


def test_unknown_layers_are_refused():
    with pytest.raises(ValueError, match="no NumPy version of Sigmoid"):
        numpy_activation(nn.Sigmoid())
