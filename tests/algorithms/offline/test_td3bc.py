import json

import numpy as np
import pytest
import torch

from rewardlab.algorithms.offline.common import rng_from_state, rng_state
from rewardlab.algorithms.offline.td3bc import (
    TD3BC,
    smoothed_target_actions,
    state_stats,
    td3bc_actor_loss,
)
from rewardlab.config import TD3BCConfig
from tests.algorithms.offline.conftest import ACT_DIM, OBS_DIM, policy_accuracy

SMALL = TD3BCConfig(hidden_sizes=(64, 64))


def _agent(data, config=SMALL, seed=0, **kwargs):
    mean, std = state_stats(data.observations)
    return TD3BC(OBS_DIM, ACT_DIM, config, seed=seed, obs_mean=mean, obs_std=std, **kwargs)


def test_actor_loss_and_lambda_by_hand():
    q1 = torch.tensor([1.0, -3.0], requires_grad=True)
    pi = torch.tensor([[0.5], [0.0]])
    a = torch.tensor([[0.0], [1.0]])
    loss, lmbda = td3bc_actor_loss(q1, pi, a, alpha=2.5)
    # lambda = 2.5 / mean(|1|, |-3|) = 1.25; -1.25 * mean(q1) = 1.25; MSE = (0.25 + 1) / 2
    assert lmbda.item() == pytest.approx(1.25)
    assert loss.item() == pytest.approx(1.25 + 0.625)
    loss.backward()  # lambda is a constant: dL/dq1 = -lambda / B
    torch.testing.assert_close(q1.grad, torch.tensor([-0.625, -0.625]))


def test_target_policy_smoothing_by_hand():
    out = smoothed_target_actions(torch.tensor([[0.9, -0.2]]), torch.tensor([[1.0, -4.0]]),
                                  noise_std=0.2, noise_clip=0.5)
    # noise 0.2 and -0.8 -> clipped to -0.5; 1.1 -> clipped to the box
    torch.testing.assert_close(out, torch.tensor([[1.0, -0.7]]))


def test_state_stats_by_hand():
    mean, std = state_stats(np.array([[0.0, 1.0], [2.0, 1.0]], np.float32))
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(std, [1.0 + 1e-3, 1e-3])


def test_normalisation_needs_statistics():
    with pytest.raises(ValueError, match="obs_mean"):
        TD3BC(OBS_DIM, ACT_DIM, SMALL)
    TD3BC(OBS_DIM, ACT_DIM, TD3BCConfig(hidden_sizes=(8,), normalize_states=False))


def test_actor_and_targets_update_every_policy_freq_steps(bandit):
    agent = _agent(bandit)
    rng = np.random.default_rng(0)
    target_before = [p.clone() for p in agent.target_actor.parameters()]
    first = agent.update(bandit.sample(32, rng))
    assert "train/actor_loss" not in first  # update 1: critic only
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.target_actor.parameters(),
                                                  strict=True))
    second = agent.update(bandit.sample(32, rng))
    assert {"train/actor_loss", "train/bc_loss", "train/lambda"} <= second.keys()
    assert not all(torch.equal(a, b) for a, b in zip(target_before,
                                                     agent.target_actor.parameters(),
                                                     strict=True))


def test_critic_loss_matches_the_td3_target(bandit):
    cfg = TD3BCConfig(hidden_sizes=(16,), discount=0.9)
    agent = _agent(bandit, cfg, seed=2)
    batch = bandit.sample(16, np.random.default_rng(1))
    batch["terminals"][:8] = 0.0
    obs, nxt = agent._norm(batch["observations"]), agent._norm(batch["next_observations"])
    gen = torch.Generator().manual_seed(0)
    gen.set_state(agent.generator.get_state())
    with torch.no_grad():
        noise = (torch.randn((16, 1), generator=gen) * 0.2).clamp(-0.5, 0.5)
        nxt_a = (agent.target_actor(nxt) + noise).clamp(-1, 1)
        tq = agent.target_critic(torch.cat([nxt, nxt_a], -1)).min(0).values
        y = batch["rewards"] + 0.9 * (1 - batch["terminals"]) * tq
        q = agent.critic(torch.cat([obs, batch["actions"]], -1))
    expected = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    assert agent.update(batch)["train/critic_loss"] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.learning
def test_td3bc_picks_the_better_action(bandit):
    agent = _agent(bandit)
    rng = np.random.default_rng(0)
    for _ in range(400):
        agent.update(bandit.sample(256, rng))
    assert policy_accuracy(agent.act, np.random.default_rng(5)) > 0.9


def _train(agent, data, rng, steps):
    return [agent.update(data.sample(64, rng)) for _ in range(steps)]


def test_same_seed_same_result_and_other_seed_differs(bandit):
    obs = bandit.observations[:10]
    a, b, c = (_agent(bandit, seed=s) for s in (0, 0, 1))
    for agent in (a, b, c):
        _train(agent, bandit, np.random.default_rng(7), 6)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert not np.array_equal(a.act(obs), c.act(obs))


def test_save_load_gives_identical_outputs_and_exact_resume(bandit, tmp_path):
    agent = _agent(bandit, seed=3, action_low=np.array([-0.5]), action_high=np.array([1.5]))
    rng = np.random.default_rng(11)
    _train(agent, bandit, rng, 5)  # odd: the resumed run's first update is an actor update
    agent.save(tmp_path)
    (tmp_path / "rng.json").write_text(json.dumps(rng_state(rng)))
    resumed = TD3BC.load(tmp_path)
    obs = bandit.observations[:20]
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    rng2 = rng_from_state(json.loads((tmp_path / "rng.json").read_text()))
    assert _train(agent, bandit, rng, 5) == _train(resumed, bandit, rng2, 5)
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    for key, value in agent.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
