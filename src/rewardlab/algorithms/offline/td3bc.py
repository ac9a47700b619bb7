"""TD3+BC: TD3 with a behaviour-cloning term, on plain arrays.

Source: Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning"
(NeurIPS), Eq. (3)-(5), and the authors' code (github.com/sfujim/TD3_BC, ``TD3_BC.py``,
``main.py``, ``utils.py``), followed step by step:

* states standardised by the dataset's per-feature mean and std (+ 1e-3), Eq. (5)
  (``ReplayBuffer.normalize_states``; :func:`state_stats`), for both ``s`` and ``s'``;
* critic: TD3's clipped double Q, ``y = r + gamma (1 - terminal) min_i Q_i'(s', a')`` with
  target policy smoothing ``a' = clip(pi'(s') + clip(N(0, 0.2^2), -0.5, 0.5), -1, 1)`` (noise
  scaled by the max action), loss ``MSE(Q1, y) + MSE(Q2, y)``;
* every ``policy_freq = 2`` critic updates (counting from 1): the actor minimises
  ``-lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2`` with ``lambda = alpha / mean|Q1(s, pi(s))|``
  (detached, ``alpha = 2.5``), Eq. (4), then both targets move by Polyak averaging (0.005);
* networks: ReLU MLPs 256 x 256 with PyTorch's default init; the actor's output is
  ``max_action * tanh``; Adam 3e-4 for both; batch 256; gamma 0.99.

Actions are mapped from the env's box to ``[-1, 1]`` before the networks see them; for the
``[-1, 1]`` boxes of the MuJoCo locomotion tasks (max action 1) this is the reference exactly.

Checked against the authors' code (2026-12-03, not part of the tests: it needs their source):
``TD3_BC.TD3_BC.train`` run beside :meth:`TD3BC.update` from the same weights, batches and
smoothing noise gives the same actions to 5e-7 after 200 updates (float32 rounding differences
between their two ``nn.Linear`` critics and our batched twin critic grow chaotically after).

Library decision: torchrl 0.14.1's ``TD3BCLoss`` computes the same losses but draws its
smoothing noise from the global torch generator (``torch.randn_like``), needs its networks as
``TensorDictModule`` wrappers with an action spec, and owns target parameters through its
``TensorDictParams`` machinery; see :mod:`rewardlab.algorithms.offline.iql` for the rest of the
reasoning. This file is the reference's ~60 lines of math with explicit randomness and exact
resume.
"""

from __future__ import annotations

import copy
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
    mlp,
    polyak_update,
    read_checkpoint,
    restore_agent,
    save_agent,
)
from rewardlab.config import TD3BCConfig

#: Name of the checkpoint files (``td3bc.safetensors``, ``td3bc.json``).
CHECKPOINT_NAME = "td3bc"
#: The networks and optimisers a checkpoint holds (attribute names).
MODULES = ("actor", "critic", "target_actor", "target_critic")
OPTIMIZERS = ("actor_opt", "critic_opt")


# --------------------------------------------------------------------------------- pure math
def state_stats(observations: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and ``std + eps`` of a dataset's observations (TD3+BC Eq. 5).

    Returns:
        ``(mean, std)``, each ``(obs_dim,)`` float32 (std with ``ddof=0``, as NumPy's default).
    """
    observations = np.asarray(observations, dtype=np.float64)
    return (observations.mean(axis=0).astype(np.float32),
            (observations.std(axis=0) + eps).astype(np.float32))


def td3bc_actor_loss(
    q1: torch.Tensor, policy_actions: torch.Tensor, actions: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """TD3+BC's actor loss (Eq. 4): ``-lambda mean Q1 + MSE(pi(s), a)``.

    Args:
        q1: ``(B,)`` ``Q1(s, pi(s))``.
        policy_actions: ``(B, A)`` ``pi(s)``.
        actions: ``(B, A)`` dataset actions.
        alpha: the BC trade-off; ``lambda = alpha / mean|Q1|`` (no gradient through lambda).

    Returns:
        ``(loss, lambda)``.
    """
    lmbda = alpha / q1.abs().mean().detach()
    return -lmbda * q1.mean() + (policy_actions - actions).square().mean(), lmbda


def smoothed_target_actions(
    target_actions: torch.Tensor, noise: torch.Tensor, noise_std: float, noise_clip: float
) -> torch.Tensor:
    """TD3's target policy smoothing: ``clip(a' + clip(noise_std * noise, +-noise_clip), -1, 1)``.

    Args:
        target_actions: ``(B, A)`` target actor's actions in ``[-1, 1]``.
        noise: ``(B, A)`` standard normal draws.
    """
    eps = (noise * noise_std).clamp(-noise_clip, noise_clip)
    return (target_actions + eps).clamp(-1.0, 1.0)


class TanhActor(nn.Module):
    """``pi(s) = tanh(MLP(s))`` in ``[-1, 1]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


# ------------------------------------------------------------------------------------- agent
class TD3BC:
    """TD3+BC on transition batches.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        config: hyperparameters (default: the paper's).
        seed: seeds the initial weights and the agent's generator for the smoothing noise.
        obs_mean: ``(obs_dim,)`` dataset observation mean (:func:`state_stats`); required with
            ``config.normalize_states`` (the default).
        obs_std: ``(obs_dim,)`` dataset observation std + eps.
        action_low: ``(act_dim,)`` lower bounds of the env's action box (default -1).
        action_high: ``(act_dim,)`` upper bounds (default 1).

    Raises:
        ValueError: if state normalisation is on and the statistics are missing or malformed.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, config: TD3BCConfig | None = None, seed: int = 0,
        obs_mean: np.ndarray | None = None, obs_std: np.ndarray | None = None,
        action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
    ) -> None:
        self.config = cfg = config or TD3BCConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        if cfg.normalize_states:
            if obs_mean is None or obs_std is None:
                raise ValueError("TD3BC: normalize_states needs obs_mean and obs_std (from "
                                 "state_stats(dataset observations))")
            mean, std = np.asarray(obs_mean, np.float32), np.asarray(obs_std, np.float32)
        else:
            mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
        if mean.shape != (obs_dim,) or std.shape != (obs_dim,) or not (std > 0).all():
            raise ValueError(f"TD3BC: obs_mean/obs_std must have shape ({obs_dim},) with std > 0")
        self.obs_mean, self.obs_std = torch.from_numpy(mean), torch.from_numpy(std)
        self.box = ActionBox(act_dim, action_low, action_high)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = TanhActor(obs_dim, act_dim, cfg.hidden_sizes)
            self.critic = EnsembleMLP(2, obs_dim + act_dim, cfg.hidden_sizes)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0

    def _norm(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One critic update, and on every ``policy_freq``-th call an actor and target update.

        Args:
            batch: ``observations (B, obs_dim)`` (raw, not normalised), ``actions (B,
                act_dim)`` in the env's box, ``rewards (B,)``, ``next_observations (B,
                obs_dim)``, ``terminals (B,)`` (1/True = terminated), arrays or tensors.

        Returns:
            ``train/`` metrics: ``critic_loss``, ``q_mean``, and on actor updates
            ``actor_loss``, ``bc_loss`` and ``lambda``.
        """
        cfg = self.config
        self.updates += 1
        obs = self._norm(as_tensor(batch["observations"]))
        next_obs = self._norm(as_tensor(batch["next_observations"]))
        act = self.box.to_unit(as_tensor(batch["actions"]))
        rew = as_tensor(batch["rewards"])
        not_done = 1.0 - as_tensor(batch["terminals"])

        with torch.no_grad():
            noise = torch.randn(act.shape, generator=self.generator)
            next_act = smoothed_target_actions(self.target_actor(next_obs), noise,
                                               cfg.policy_noise, cfg.noise_clip)
            target_q = self.target_critic(torch.cat([next_obs, next_act], -1)).min(dim=0).values
            target = rew + not_done * cfg.discount * target_q
        q = self.critic(torch.cat([obs, act], dim=-1))  # (2, B)
        critic_loss = (q - target).square().mean(dim=1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        metrics = {"train/critic_loss": critic_loss.item(), "train/q_mean": q.mean().item()}

        if self.updates % cfg.policy_freq == 0:
            pi = self.actor(obs)
            q1 = self.critic(torch.cat([obs, pi], dim=-1))[0]
            actor_loss, lmbda = td3bc_actor_loss(q1, pi, act, cfg.alpha)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            polyak_update(self.target_critic, self.critic, cfg.polyak)
            polyak_update(self.target_actor, self.actor, cfg.polyak)
            metrics.update({
                "train/actor_loss": actor_loss.item(),
                "train/bc_loss": (pi.detach() - act).square().mean().item(),
                "train/lambda": float(lmbda),
            })
        return metrics

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions in the env's box for raw observations ``(obs_dim,)`` or
        ``(B, obs_dim)``; float32, shape ``(act_dim,)`` or ``(B, act_dim)``."""
        return self.box.from_unit(self.actor(self._norm(as_tensor(obs)))).numpy().astype(
            np.float32)

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the agent (networks, targets, Adam moments, normaliser, generator)."""
        return {"obs_mean": self.obs_mean, "obs_std": self.obs_std,
                "generator_state": self.generator.get_state(),
                **agent_tensors(self, MODULES, OPTIMIZERS)}

    def save(self, directory: str | Path) -> None:
        """Write ``td3bc.safetensors`` and ``td3bc.json``."""
        save_agent(self, directory, CHECKPOINT_NAME, self.state_dict(), OPTIMIZERS)

    def load_into(self, directory: str | Path) -> None:
        """Restore a checkpoint of the same architecture into this agent (exact resume).

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        tensors, _ = restore_agent(self, directory, CHECKPOINT_NAME, MODULES, OPTIMIZERS)
        self.obs_mean, self.obs_std = tensors["obs_mean"], tensors["obs_std"]
        self.generator.set_state(tensors["generator_state"])

    @classmethod
    def load(cls, directory: str | Path) -> TD3BC:
        """Rebuild an agent saved by :meth:`save`.

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        tensors, meta = read_checkpoint(directory, CHECKPOINT_NAME)
        agent = cls(meta["obs_dim"], meta["act_dim"], TD3BCConfig(**meta["config"]),
                    seed=meta["seed"], obs_mean=tensors["obs_mean"].numpy(),
                    obs_std=tensors["obs_std"].numpy(),
                    action_low=np.asarray(meta["action_low"]),
                    action_high=np.asarray(meta["action_high"]))
        agent.load_into(directory)
        return agent
