import json
import math

import numpy as np
import pytest
import torch

from rewardlab.algorithms.offline.common import rng_from_state, rng_state
from rewardlab.algorithms.offline.cpl import (
    CPL,
    cpl_loss,
    deterministic_log_prob,
    segment_scores,
)
from rewardlab.config import CPLConfig
from rewardlab.rewards.bradley_terry import bradley_terry_loss
from tests.algorithms.offline.conftest import ACT_DIM, OBS_DIM, policy_accuracy

SMALL = CPLConfig(hidden_sizes=(64, 64), bc_steps=50, warmup_steps=20, lr=1e-3)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_log_prob_of_the_deterministic_actor_by_hand():
    lp = deterministic_log_prob(torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert lp.item() == pytest.approx(-(0.25 + 1.0))


def test_cpl_logits_and_loss_for_two_segments_of_length_three_by_hand():
    log_probs = torch.tensor([[[-1.0, -2.0, -3.0], [-0.5, -0.5, -1.0]]])  # (1 pair, 2, T=3)
    scores = segment_scores(log_probs, alpha=0.1, discount=0.9)
    s_left = 0.1 * (-1.0 + 0.9 * -2.0 + 0.81 * -3.0)  # -0.523
    s_right = 0.1 * (-0.5 + 0.9 * -0.5 + 0.81 * -1.0)  # -0.176
    torch.testing.assert_close(scores, torch.tensor([[s_left, s_right]]))
    lam = 0.5
    left_pref = _softplus(-(s_left - lam * s_right))  # -log sigmoid(S+ - lambda S-)
    right_pref = _softplus(-(s_right - lam * s_left))
    assert cpl_loss(scores, torch.tensor([1.0]), lam).item() == pytest.approx(left_pref)
    assert cpl_loss(scores, torch.tensor([0.0]), lam).item() == pytest.approx(right_pref)
    assert cpl_loss(scores, torch.tensor([0.5]), lam).item() == pytest.approx(
        0.5 * (left_pref + right_pref))


def test_unbiased_cpl_is_bradley_terry_on_the_scores():
    scores = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.1, -0.1]])
    targets = torch.tensor([1.0, 0.0, 0.5])
    expected = bradley_terry_loss((scores[:, 0] - scores[:, 1]).unsqueeze(0), targets)
    torch.testing.assert_close(cpl_loss(scores, targets, bias=1.0), expected)


def test_equal_label_with_bias_raises_both_segments_likelihood():
    scores = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    cpl_loss(scores, torch.tensor([0.5]), bias=0.5).backward()
    assert (scores.grad < 0).all()  # gradient descent raises both scores
    unbiased = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    cpl_loss(unbiased, torch.tensor([0.5]), bias=1.0).backward()
    torch.testing.assert_close(unbiased.grad, torch.zeros(1, 2))  # already equal: no push


def test_bc_pretraining_then_fresh_optimiser_and_warmup(bandit_pairs):
    cfg = CPLConfig(hidden_sizes=(8,), bc_steps=3, warmup_steps=4, lr=1e-3)
    agent = CPL(OBS_DIM, ACT_DIM, cfg)
    assert [agent.lr(s) for s in (0, 2, 3, 4, 6, 7, 100)] == pytest.approx(
        [1e-3, 1e-3, 0.25e-3, 0.5e-3, 1e-3, 1e-3, 1e-3])
    rng = np.random.default_rng(0)
    phases = [agent.update(bandit_pairs.sample(8, rng)) for _ in range(3)]
    assert all(m["train/bc_phase"] == 1.0 and "train/cpl_loss" not in m for m in phases)
    assert not agent.optimizer.state  # replaced after the last BC step
    m = agent.update(bandit_pairs.sample(8, rng))
    assert m["train/bc_phase"] == 0.0 and "train/cpl_loss" in m and m["train/lr"] == 0.25e-3
    no_bc = CPL(OBS_DIM, ACT_DIM, CPLConfig(hidden_sizes=(8,), bc_steps=0, lr=1e-3))
    assert no_bc.lr(0) == 1e-3  # the reference warms up only after a BC phase


def test_bc_loss_and_cpl_loss_reported_are_the_papers(bandit_pairs):
    cfg = CPLConfig(hidden_sizes=(8,), dropout=0.0, bc_steps=0, alpha=0.5,
                    contrastive_bias=0.7, bc_coeff=0.0)
    agent = CPL(OBS_DIM, ACT_DIM, cfg, seed=4)
    batch = bandit_pairs.sample(5, np.random.default_rng(2))
    with torch.no_grad():
        mu = agent.actor(batch["obs"])
    lp = -((mu - batch["actions"]) ** 2).sum(-1).numpy()  # (5, 2, 3)
    s = 0.5 * lp.sum(-1)
    y = batch["targets"].numpy()
    expected = np.mean([yi * _softplus(-(a - 0.7 * b)) + (1 - yi) * _softplus(-(b - 0.7 * a))
                        for yi, (a, b) in zip(y, s, strict=True)])
    m = agent.update(batch)
    assert m["train/cpl_loss"] == pytest.approx(expected, rel=1e-5)
    assert m["train/bc_loss"] == pytest.approx(-lp.mean(), rel=1e-5)


@pytest.mark.learning
def test_cpl_picks_the_better_action(bandit_pairs):
    agent = CPL(OBS_DIM, ACT_DIM, SMALL, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        agent.update(bandit_pairs.sample(96, rng))
    assert policy_accuracy(agent.act, np.random.default_rng(5)) > 0.9
    assert agent.accuracy(bandit_pairs.obs, bandit_pairs.actions, bandit_pairs.targets) > 0.9


def _train(agent, data, rng, steps):
    return [agent.update(data.sample(32, rng)) for _ in range(steps)]


def test_same_seed_same_result_and_other_seed_differs(bandit_pairs):
    obs = bandit_pairs.obs[:10, 0, 0]
    a, b, c = (CPL(OBS_DIM, ACT_DIM, SMALL, seed=s) for s in (0, 0, 1))
    for agent in (a, b, c):
        _train(agent, bandit_pairs, np.random.default_rng(7), 4)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert not np.array_equal(a.act(obs), c.act(obs))


def test_save_load_gives_identical_outputs_and_exact_resume_across_the_bc_switch(
    bandit_pairs, tmp_path
):
    cfg = CPLConfig(hidden_sizes=(32, 32), bc_steps=4, warmup_steps=3, lr=1e-3)
    agent = CPL(OBS_DIM, ACT_DIM, cfg, seed=3, action_low=np.array([-2.0]),
                action_high=np.array([1.0]))
    rng = np.random.default_rng(11)
    _train(agent, bandit_pairs, rng, 3)  # the next update ends BC and resets the optimiser
    agent.save(tmp_path)
    (tmp_path / "rng.json").write_text(json.dumps(rng_state(rng)))
    resumed = CPL.load(tmp_path)
    obs = bandit_pairs.obs[:20, 1, 2]
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    rng2 = rng_from_state(json.loads((tmp_path / "rng.json").read_text()))
    assert _train(agent, bandit_pairs, rng, 6) == _train(resumed, bandit_pairs, rng2, 6)
    np.testing.assert_array_equal(agent.act(obs), resumed.act(obs))
    for key, value in agent.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
