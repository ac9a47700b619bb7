import copy
import json
import math

import numpy as np
import pytest
import torch

from rewardlab.algorithms.offline.common import (
    agent_tensors,
    as_tensor,
    cosine_lr,
    polyak_update,
    rng_from_state,
    rng_state,
)
from rewardlab.algorithms.offline.iql import (
    IQL,
    MODULES,
    OPTIMIZERS,
    awr_weights,
    episode_ends,
    expectile_loss,
    gaussian_log_prob,
    normalize_rewards,
)
from rewardlab.config import IQLConfig
from tests.algorithms.offline.conftest import ACT_DIM, OBS_DIM, policy_accuracy

SMALL = IQLConfig(hidden_sizes=(64, 64), total_updates=500)


def test_expectile_loss_by_hand():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # weights tau where diff > 0, 1 - tau elsewhere: 0.7*4 + 0.3*1 + 0.7*0.25 + 0.3*9 = 5.975
    assert expectile_loss(diff, 0.7).item() == pytest.approx(5.975 / 4)
    # tau = 0.5 is half the mean squared error
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1 + 0.25 + 9) / 4)


def test_awr_weights_by_hand_and_capped_at_100():
    w = awr_weights(torch.tensor([1.0, 2.0, 10.0]), torch.tensor([1.0, 1.0, 0.0]), beta=3.0)
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(3.0), 100.0]))


def test_gaussian_log_prob_by_hand():
    lp = gaussian_log_prob(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.0]]),
                           torch.tensor([[1.0, 2.0]]))
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    expected = (-half_log_2pi) + (-0.5 * 0.25 - math.log(2.0) - half_log_2pi)
    assert lp.item() == pytest.approx(expected)


def test_episode_ends_from_terminals_and_observation_jumps():
    obs = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]], np.float32)
    next_obs = np.array([[1.0], [2.0], [3.0], [11.0], [12.0]], np.float32)
    terminals = np.array([True, False, False, False, False])
    # step 0 terminated; step 2's next obs (3) is not row 3's obs (10): a truncation
    np.testing.assert_array_equal(episode_ends(obs, next_obs, terminals),
                                  [True, False, True, False, True])


def test_normalize_rewards_by_hand():
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 0.5], np.float32)
    ends = np.array([False, False, True, False, True, True])
    # episode returns 3, 4, 0.5: spread 3.5
    out = normalize_rewards(rewards, ends)
    np.testing.assert_allclose(out, rewards * 1000.0 / 3.5, rtol=1e-6)
    np.testing.assert_allclose(normalize_rewards(rewards, ends, shift=0.5),
                               rewards * 1000.0 / 3.5 + 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="same return"):
        normalize_rewards(np.ones(4, np.float32), np.array([False, True, False, True]))


def test_actor_learning_rate_follows_the_cosine_schedule():
    agent = IQL(OBS_DIM, ACT_DIM, IQLConfig(hidden_sizes=(8,), total_updates=4))
    assert [agent.actor_lr(s) for s in (0, 2, 4)] == pytest.approx([3e-4, 1.5e-4, 0.0])
    const = IQL(OBS_DIM, ACT_DIM, IQLConfig(hidden_sizes=(8,), actor_schedule="constant"))
    assert const.actor_lr(10**6) == 3e-4


def test_one_update_matches_the_papers_losses(bandit):
    """The reported losses are Eq. 5-7 evaluated on the networks as they were at each stage."""
    cfg = IQLConfig(hidden_sizes=(16,), expectile=0.8, beta=2.0, discount=0.9)
    agent = IQL(OBS_DIM, ACT_DIM, cfg, seed=1)
    batch = bandit.sample(32, np.random.default_rng(0))
    batch["terminals"][:16] = 0.0  # some bootstrapped steps
    obs, act = batch["observations"], batch["actions"]
    with torch.no_grad():
        q_t = agent.target_critic(torch.cat([obs, act], -1)).min(0).values
        v0 = agent.value(obs).squeeze(-1)
    metrics = agent.update(batch)
    diff = (q_t - v0).numpy()
    expected_v = np.mean(np.where(diff > 0, 0.8, 0.2) * diff**2)
    assert metrics["train/value_loss"] == pytest.approx(expected_v, rel=1e-5)
    assert agent.updates == 1


@pytest.mark.learning
def test_iql_picks_the_better_action(bandit):
    agent = IQL(OBS_DIM, ACT_DIM, SMALL, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(500):
        agent.update(bandit.sample(256, rng))
    assert policy_accuracy(agent.act, np.random.default_rng(5)) > 0.9


def _train(agent, data, rng, steps):
    return [agent.update(data.sample(64, rng)) for _ in range(steps)]


def test_same_seed_same_result_and_other_seed_differs(bandit):
    obs = bandit.observations[:10]
    a, b, c = (IQL(OBS_DIM, ACT_DIM, SMALL, seed=s) for s in (0, 0, 1))
    for agent in (a, b, c):
        _train(agent, bandit, np.random.default_rng(7), 5)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert not np.array_equal(a.act(obs), c.act(obs))


def test_save_load_gives_identical_outputs_and_exact_resume(bandit, tmp_path):
    agent = IQL(OBS_DIM, ACT_DIM, SMALL, seed=3, action_low=np.array([-2.0]),
                action_high=np.array([2.0]))
    rng = np.random.default_rng(11)
    _train(agent, bandit, rng, 5)
    agent.save(tmp_path)
    (tmp_path / "rng.json").write_text(json.dumps(rng_state(rng)))
    resumed = IQL.load(tmp_path)
    obs = bandit.observations[:20]
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    rng2 = rng_from_state(json.loads((tmp_path / "rng.json").read_text()))
    assert _train(agent, bandit, rng, 5) == _train(resumed, bandit, rng2, 5)
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    assert resumed.updates == 10
    for key, value in agent.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


# ------------------------------------------------------------ the update against PyTorch
class TorchReferenceIQL:
    """The PyTorch-eager update IQL had before its step moved to JAX (commit 694dbe3), kept
    as the reference the jitted step must reproduce: three ``torch.optim.Adam`` steps, the
    value network run twice after its step, then Polyak averaging."""

    def __init__(self, agent: IQL) -> None:
        self.cfg, self.box = agent.config, agent.box
        self.actor = copy.deepcopy(agent.actor)
        self.critic = copy.deepcopy(agent.critic)
        self.value = copy.deepcopy(agent.value)
        self.target_critic = copy.deepcopy(agent.target_critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=self.cfg.value_lr)
        self.updates = 0

    def update(self, batch):
        cfg = self.cfg
        obs = as_tensor(batch["observations"])
        act = self.box.to_unit(as_tensor(batch["actions"]))
        rew = as_tensor(batch["rewards"])
        next_obs = as_tensor(batch["next_observations"])
        not_done = 1.0 - as_tensor(batch["terminals"])
        obs_act = torch.cat([obs, act], dim=-1)
        with torch.no_grad():
            q_target = self.target_critic(obs_act).min(dim=0).values
        v = self.value(obs).squeeze(-1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()
        with torch.no_grad():
            v_new = self.value(obs).squeeze(-1)
            adv = q_target - v_new
            weights = awr_weights(q_target, v_new, cfg.beta, cfg.max_weight)
        lr = cosine_lr(cfg.actor_lr, self.updates, cfg.total_updates)
        for group in self.actor_opt.param_groups:
            group["lr"] = lr
        mean, std = self.actor(obs)
        actor_loss = -(weights * gaussian_log_prob(act, mean, std)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            target = rew + cfg.discount * not_done * self.value(next_obs).squeeze(-1)
        q = self.critic(obs_act)
        critic_loss = (q - target).square().sum(dim=0).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        polyak_update(self.target_critic, self.critic, cfg.polyak)
        self.updates += 1
        return {"train/value_loss": value_loss.item(), "train/critic_loss": critic_loss.item(),
                "train/actor_loss": actor_loss.item(), "train/v_mean": v.mean().item(),
                "train/q_mean": q.mean().item(), "train/adv_mean": float(adv.mean()),
                "train/weight_mean": float(weights.mean()), "train/actor_lr": lr}


def test_update_matches_the_pytorch_reference_over_many_updates(bandit):
    """The jitted step computes what the PyTorch update computed: the same metrics (relative
    1e-4; float32 rounding differs between XLA and MKL) over 30 updates, then the same weights,
    Adam moments and steps, including across a hand-over to the modules (act) mid-run."""
    cfg = IQLConfig(hidden_sizes=(32, 32), expectile=0.8, beta=2.0, discount=0.9,
                    polyak=0.05, total_updates=30)
    agent = IQL(OBS_DIM, ACT_DIM, cfg, seed=2, action_low=np.array([-2.0]),
                action_high=np.array([1.0]))
    ref = TorchReferenceIQL(agent)
    rng = np.random.default_rng(4)
    for i in range(30):
        batch = bandit.sample(64, rng)
        batch["terminals"][: 8 * (i % 4)] = 0.0  # some bootstrapped steps
        got, want = agent.update(batch), ref.update(batch)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (i, key)
        if i == 14:  # hand the state to the modules and back
            agent.act(bandit.observations[:3])
    for name in ("actor", "critic", "value", "target_critic"):
        for (key, p), q in zip(getattr(agent, name).named_parameters(),
                               getattr(ref, name).parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=f"{name}.{key}")
    # the checkpoint's tensors are those the PyTorch update's agent had (same keys, shapes)
    want_tensors = agent_tensors(ref, MODULES, OPTIMIZERS)
    assert {k: v.shape for k, v in agent.state_dict().items()} == {
        k: v.shape for k, v in want_tensors.items()}
    for name in ("actor_opt", "critic_opt", "value_opt"):
        got_state = getattr(agent, name).state_dict()
        want_state = getattr(ref, name).state_dict()
        assert got_state["param_groups"] == want_state["param_groups"]
        for pid, per_param in want_state["state"].items():
            assert float(got_state["state"][pid]["step"]) == float(per_param["step"]) == 30
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(got_state["state"][pid][key], per_param[key],
                                           rtol=1e-3, atol=1e-8, msg=f"{name}.{pid}.{key}")


def test_update_reads_weights_written_into_the_modules(bandit):
    """Writing into a module between updates (e.g. loading weights) is what the next update
    starts from."""
    agent = IQL(OBS_DIM, ACT_DIM, IQLConfig(hidden_sizes=(16,)), seed=0)
    rng = np.random.default_rng(0)
    agent.update(bandit.sample(32, rng))
    with torch.no_grad():
        for p in agent.value.parameters():
            p.zero_()
    ref = TorchReferenceIQL(agent)
    ref.updates = 1
    ref.value_opt.load_state_dict(agent.value_opt.state_dict())
    ref.actor_opt.load_state_dict(agent.actor_opt.state_dict())
    ref.critic_opt.load_state_dict(agent.critic_opt.state_dict())
    batch = bandit.sample(32, rng)
    got, want = agent.update(batch), ref.update(batch)
    assert got["train/v_mean"] == 0.0 == want["train/v_mean"]
    assert got["train/value_loss"] == pytest.approx(want["train/value_loss"], rel=1e-5)
