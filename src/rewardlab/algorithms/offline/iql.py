"""IQL: offline RL with implicit Q-learning, on plain arrays.

Source: Kostrikov, Nair & Levine 2022, "Offline Reinforcement Learning with Implicit
Q-Learning" (ICLR), and the authors' code (github.com/ikostrikov/implicit_q_learning, files
``critic.py``, ``actor.py``, ``learner.py``, ``policy.py``, ``train_offline.py``,
``configs/mujoco_config.py``), followed step by step:

* value loss, Eq. (5): ``L_V = E[L_2^tau(Q_target(s, a) - V(s))]`` with the expectile loss
  ``L_2^tau(u) = |tau - 1(u < 0)| u^2`` (code: weight ``tau`` where ``u > 0``, else
  ``1 - tau``), ``Q_target = min(Q1_target, Q2_target)``;
* Q loss, Eq. (6): ``L_Q = E[(r + gamma (1 - terminal) V(s') - Q_i(s, a))^2]`` summed over
  the twin critics, with the *just updated* ``V`` (no target value network);
* policy extraction by advantage-weighted regression, Eq. (7):
  ``L_pi = -E[exp(beta (Q_target(s, a) - V(s))) log pi(a|s)]``, the weight capped at 100;
* one update = value step, actor step, critic step, then Polyak averaging of the target
  critics (``learner._update_jit``'s order); the target critics start as copies.

Networks (``policy.NormalTanhPolicy`` with ``state_dependent_std=False,
tanh_squash_distribution=False``, ``value_net.py``): ReLU MLPs 256 x 256 with orthogonal
init (gain sqrt 2) and zero biases; the actor is a Gaussian whose mean is ``tanh`` of the MLP
output and whose log std is a state-independent parameter (init 0) clipped to [-5, 2]; the
deterministic action for evaluation is the mean. The actor's learning rate follows a cosine
decay to 0 over the run (``optax.cosine_decay_schedule``), the others are constant (Adam, 3e-4).
D4RL locomotion rewards are rescaled by ``1000 / (max episode return - min episode return)``:
:func:`normalize_rewards`, applied by the caller.

Actions are mapped from the env's box to ``[-1, 1]`` before the networks see them (the
identity for the ``[-1, 1]`` boxes of HalfCheetah, Hopper and Walker2d).

Checked against the authors' code (2026-12-03, not part of the tests: it needs their source):
their ``critic.update_v``, ``critic.update_q``, ``actor.update`` and ``learner._update_jit``,
run in JAX from the same weights and batches (with a minimal stand-in for their
``common.Model`` and a diagonal Gaussian for tfp's), agree with :meth:`IQL.update` to 1e-5
after 200 updates, cosine actor schedule included.

Library decision: torchrl 0.14.1's ``IQLLoss`` installs with our torch 2.13.0 and implements
the same three losses, but its networks must be ``TensorDictModule``/``ProbabilisticActor``
wrappers with functional ``TensorDictParams``, target parameters and value estimators owned by
the loss module (plain tensors are only accepted through its keyword dispatch on top of that
machinery); its defaults differ from the paper (expectile 0.5, temperature 1, smooth-L1 Q loss);
and it brings seven packages (torchrl, tensordict, hoptorch, pyvers, orjson, importlib_metadata,
lazy-importer) for about forty lines of loss math. A one-file implementation keeps plain
modules, explicit generators and safetensors checkpoints with exact resume.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rewardlab.algorithms.offline.common import (
    ActionBox,
    EnsembleMLP,
    agent_tensors,
    as_tensor,
    cosine_lr,
    mlp,
    polyak_update,
    read_checkpoint,
    restore_agent,
    save_agent,
)
from rewardlab.config import IQLConfig

#: Name of the checkpoint files (``iql.safetensors``, ``iql.json``).
CHECKPOINT_NAME = "iql"
#: The networks and optimisers a checkpoint holds (attribute names).
MODULES = ("actor", "critic", "value", "target_critic")
OPTIMIZERS = ("actor_opt", "critic_opt", "value_opt")

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------- pure math
def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean asymmetric squared loss ``|tau - 1(u < 0)| u^2`` of ``u = diff`` (IQL Eq. 5).

    Args:
        diff: ``(B,)`` ``Q(s, a) - V(s)``.
        expectile: tau in ``(0, 1)``; 0.5 gives half the mean squared error.
    """
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.square()).mean()


def awr_weights(
    q: torch.Tensor, v: torch.Tensor, beta: float, max_weight: float = 100.0
) -> torch.Tensor:
    """Advantage weights ``min(exp(beta (Q - V)), max_weight)`` of IQL's policy loss (Eq. 7)."""
    return torch.exp(beta * (q - v)).clamp(max=max_weight)


def gaussian_log_prob(
    actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Log density of ``actions (B, A)`` under a diagonal Gaussian, summed over ``A``: ``(B,)``."""
    z = (actions - mean) / std
    return (-0.5 * z.square() - torch.log(std) - 0.5 * _LOG_2PI).sum(dim=-1)


def episode_ends(
    observations: np.ndarray, next_observations: np.ndarray, terminals: np.ndarray,
    atol: float = 1e-6,
) -> np.ndarray:
    """Where episodes end in a flat dataset, by the authors' rule (``D4RLDataset``).

    A step ends an episode if it terminated, or if the next row's observation is not this row's
    next observation (a truncation or a jump to another episode); the last row always ends one.

    Args:
        observations: ``(N, obs_dim)``; next_observations: ``(N, obs_dim)``;
        terminals: ``(N,)`` bool.
        atol: the largest L2 distance still counted as continuous.

    Returns:
        ``(N,)`` bool.
    """
    ends = np.asarray(terminals, dtype=bool).copy()
    if ends.size:
        gap = np.linalg.norm(observations[1:] - next_observations[:-1], axis=1) > atol
        ends[:-1] |= gap
        ends[-1] = True
    return ends


def return_spread(rewards: np.ndarray, ends: np.ndarray) -> float:
    """``max - min`` undiscounted episode return over the episodes ``ends`` delimits.

    Args:
        rewards: ``(N,)`` float per-step rewards, episodes one after the other.
        ends: ``(N,)`` bool, True at each episode's last step.

    Returns:
        The spread, in reward units (``>= 0``).

    Raises:
        ValueError: if the shapes differ or no episode is delimited.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    ends = np.asarray(ends, dtype=bool)
    if rewards.shape != ends.shape or rewards.ndim != 1:
        raise ValueError(f"rewards {rewards.shape} and ends {ends.shape} must be equal 1-d shapes")
    if not ends.any():
        raise ValueError("normalize_rewards: no episode end; mark at least the last step")
    episode = np.concatenate([[0], np.cumsum(ends)[:-1]])  # episode index of each step
    returns = np.bincount(episode, weights=rewards)[: int(ends.sum())]
    return float(returns.max() - returns.min())


def normalize_rewards(
    rewards: np.ndarray, ends: np.ndarray, scale: float = 1000.0, shift: float = 0.0
) -> np.ndarray:
    """IQL's D4RL locomotion reward scaling: ``r * scale / (max_return - min_return) + shift``.

    Returns are undiscounted sums over the episodes that ``ends`` delimits (the authors'
    ``normalize`` in ``train_offline.py``; Preference Transformer's ``train_offline.py`` applies
    the same to a learned reward and then adds ``shift = 0.5`` on locomotion tasks).

    Args:
        rewards: ``(N,)`` float.
        ends: ``(N,)`` bool episode ends, e.g. from :func:`episode_ends`.
        scale: the target spread of episode returns (1000, the episode limit).
        shift: added to every reward after scaling.

    Returns:
        ``(N,)`` float32.

    Raises:
        ValueError: if the shapes differ, no episode is delimited or all returns are equal.
    """
    spread = return_spread(rewards, ends)
    if spread <= 0.0:
        raise ValueError("normalize_rewards: every episode has the same return; cannot rescale")
    return (np.asarray(rewards, dtype=np.float64) * (scale / spread) + shift).astype(np.float32)


# ---------------------------------------------------------------------------------- networks
class GaussianActor(nn.Module):
    """``pi(a|s) = N(tanh(MLP(s)), exp(clip(log_std))^2)`` with a state-independent log std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], log_std_min: float,
                 log_std_max: float) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, ortho_gain=math.sqrt(2.0))
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tanh(self.net(obs))
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return mean, std.expand_as(mean)


# ------------------------------------------------------------------------------------- agent
class IQL:
    """Implicit Q-learning on transition batches.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        config: hyperparameters (default: the paper's D4RL locomotion settings).
        seed: seeds the initial weights (the global torch generator is left untouched).
        action_low: ``(act_dim,)`` lower bounds of the env's action box (default -1).
        action_high: ``(act_dim,)`` upper bounds (default 1).
    """

    def __init__(
        self, obs_dim: int, act_dim: int, config: IQLConfig | None = None, seed: int = 0,
        action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
    ) -> None:
        self.config = cfg = config or IQLConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.box = ActionBox(act_dim, action_low, action_high)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = GaussianActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.log_std_min,
                                       cfg.log_std_max)
            self.critic = EnsembleMLP(2, obs_dim + act_dim, cfg.hidden_sizes, math.sqrt(2.0))
            self.value = mlp(obs_dim, cfg.hidden_sizes, 1, ortho_gain=math.sqrt(2.0))
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr)
        self.updates = 0

    def actor_lr(self, step: int) -> float:
        """The actor's learning rate at update ``step`` (0-based)."""
        cfg = self.config
        if cfg.actor_schedule == "constant":
            return cfg.actor_lr
        return cosine_lr(cfg.actor_lr, step, cfg.total_updates)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One IQL update on a batch of transitions.

        Args:
            batch: ``observations (B, obs_dim)``, ``actions (B, act_dim)`` in the env's box,
                ``rewards (B,)``, ``next_observations (B, obs_dim)``, ``terminals (B,)``
                (1/True = terminated), as arrays or tensors (e.g.
                :meth:`~rewardlab.algorithms.offline.common.Transitions.sample`).

        Returns:
            ``train/`` metrics: ``value_loss``, ``critic_loss``, ``actor_loss``, ``v_mean``,
            ``q_mean``, ``adv_mean``, ``weight_mean``, ``actor_lr``.
        """
        cfg = self.config
        obs = as_tensor(batch["observations"])
        act = self.box.to_unit(as_tensor(batch["actions"]))
        rew = as_tensor(batch["rewards"])
        next_obs = as_tensor(batch["next_observations"])
        not_done = 1.0 - as_tensor(batch["terminals"])
        obs_act = torch.cat([obs, act], dim=-1)

        # 1. value: expectile regression onto the target critics' min (Eq. 5)
        with torch.no_grad():
            q_target = self.target_critic(obs_act).min(dim=0).values  # (B,)
        v = self.value(obs).squeeze(-1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        # 2. actor: advantage-weighted regression with the updated value (Eq. 7)
        with torch.no_grad():
            v_new = self.value(obs).squeeze(-1)
            adv = q_target - v_new
            weights = awr_weights(q_target, v_new, cfg.beta, cfg.max_weight)
        lr = self.actor_lr(self.updates)
        for group in self.actor_opt.param_groups:
            group["lr"] = lr
        mean, std = self.actor(obs)
        actor_loss = -(weights * gaussian_log_prob(act, mean, std)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        # 3. critics: regression onto r + gamma (1 - terminal) V(s') (Eq. 6)
        with torch.no_grad():
            target = rew + cfg.discount * not_done * self.value(next_obs).squeeze(-1)
        q = self.critic(obs_act)  # (2, B)
        critic_loss = (q - target).square().sum(dim=0).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        # 4. target critics
        polyak_update(self.target_critic, self.critic, cfg.polyak)
        self.updates += 1
        return {
            "train/value_loss": value_loss.item(),
            "train/critic_loss": critic_loss.item(),
            "train/actor_loss": actor_loss.item(),
            "train/v_mean": v.mean().item(),
            "train/q_mean": q.mean().item(),
            "train/adv_mean": float(adv.mean()),
            "train/weight_mean": float(weights.mean()),
            "train/actor_lr": lr,
        }

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (the Gaussian's mean) in the env's box.

        Args:
            obs: ``(obs_dim,)`` or ``(B, obs_dim)``.

        Returns:
            float32 actions of shape ``(act_dim,)`` or ``(B, act_dim)``.
        """
        mean, _ = self.actor(as_tensor(obs))
        return self.box.from_unit(mean.clamp(-1.0, 1.0)).numpy().astype(np.float32)

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the agent (networks, target, Adam moments) under flat keys."""
        return agent_tensors(self, MODULES, OPTIMIZERS)

    def save(self, directory: str | Path) -> None:
        """Write ``iql.safetensors`` (weights and optimiser state) and ``iql.json``."""
        save_agent(self, directory, CHECKPOINT_NAME, self.state_dict(), OPTIMIZERS)

    def load_into(self, directory: str | Path) -> None:
        """Restore a checkpoint of the same architecture into this agent (exact resume).

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        restore_agent(self, directory, CHECKPOINT_NAME, MODULES, OPTIMIZERS)

    @classmethod
    def load(cls, directory: str | Path) -> IQL:
        """Rebuild an agent saved by :meth:`save`.

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        _, meta = read_checkpoint(directory, CHECKPOINT_NAME)
        agent = cls(meta["obs_dim"], meta["act_dim"], IQLConfig(**meta["config"]),
                    seed=meta["seed"], action_low=np.asarray(meta["action_low"]),
                    action_high=np.asarray(meta["action_high"]))
        agent.load_into(directory)
        return agent
