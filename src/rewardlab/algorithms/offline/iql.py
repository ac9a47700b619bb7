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

Speed: the update runs as one jitted JAX function
(:func:`~rewardlab.algorithms.offline.iql_step.iql_step`, the same math with PyTorch's Adam,
clamp and lerp reproduced), about 2.5x less CPU time per update than PyTorch eager on this
machine (``benchmarks/offline_update_speed.py``); the networks, their initialisation,
:meth:`IQL.act` and the checkpoints stay PyTorch modules and ``torch.optim.Adam`` state, so
checkpoints are unchanged and load both ways. A test keeps the former PyTorch update as the
reference.

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

import jax.numpy as jnp
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
    read_checkpoint,
    restore_agent,
    save_agent,
)
from rewardlab.algorithms.offline.iql_step import METRICS, State, StepConfig, iql_step
from rewardlab.config import IQLConfig

#: Name of the checkpoint files (``iql.safetensors``, ``iql.json``).
CHECKPOINT_NAME = "iql"
#: The networks and optimisers a checkpoint holds (attribute names).
MODULES = ("actor", "critic", "value", "target_critic")
OPTIMIZERS = ("actor_opt", "critic_opt", "value_opt")

_LOG_2PI = math.log(2.0 * math.pi)
#: ``torch.optim.Adam``'s default betas, which the three optimisers use (and the JAX step too).
_ADAM_BETAS = (0.9, 0.999)


# --------------------------------------------------------------------------------- pure math
# (PyTorch forms of the losses; the update runs their JAX twins in iql_step)
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

    The networks and optimisers are PyTorch modules (initialisation, :meth:`act`, checkpoints),
    and the update runs as one jitted JAX function on a copy of their tensors
    (:func:`~rewardlab.algorithms.offline.iql_step.iql_step`: the same math, about 2.5x less
    CPU time per update). Whichever side was used last holds the live tensors and the other is
    refreshed when next needed: :meth:`update` reads the modules again after they were handed
    out (``agent.actor``, :meth:`act`, :meth:`state_dict`, :meth:`load_into`, ...), and those
    read the training state after an update, so the modules can be read and written as before.

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
            actor = GaussianActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.log_std_min,
                                  cfg.log_std_max)
            critic = EnsembleMLP(2, obs_dim + act_dim, cfg.hidden_sizes, math.sqrt(2.0))
            value = mlp(obs_dim, cfg.hidden_sizes, 1, ortho_gain=math.sqrt(2.0))
        self._modules: dict[str, nn.Module] = {
            "actor": actor, "critic": critic, "value": value,
            "target_critic": copy.deepcopy(critic).requires_grad_(False),
        }
        self._optimizers: dict[str, torch.optim.Adam] = {
            "actor_opt": torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr),
            "critic_opt": torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr),
            "value_opt": torch.optim.Adam(value.parameters(), lr=cfg.value_lr),
        }
        self._step_config = StepConfig(
            layers=len(cfg.hidden_sizes) + 1, expectile=cfg.expectile, beta=cfg.beta,
            max_weight=cfg.max_weight, discount=cfg.discount, polyak=cfg.polyak,
            log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max)
        self._state: State | None = None  # the training state while it is the live copy
        self._adam_steps = 0  # steps each optimiser has taken (equal for the three)
        self._last_actor_lr = cfg.actor_lr
        self.updates = 0

    # ------------------------------------------------- the modules (PyTorch side)
    @property
    def actor(self) -> GaussianActor:
        """The Gaussian policy ``pi(a|s)``."""
        return self._torch_side()[0]["actor"]  # type: ignore[return-value]

    @property
    def critic(self) -> EnsembleMLP:
        """The twin critics ``Q_1, Q_2``: ``(N, obs_dim + act_dim) -> (2, N)``."""
        return self._torch_side()[0]["critic"]  # type: ignore[return-value]

    @property
    def value(self) -> nn.Sequential:
        """The value network ``V(s)``: ``(N, obs_dim) -> (N, 1)``."""
        return self._torch_side()[0]["value"]  # type: ignore[return-value]

    @property
    def target_critic(self) -> EnsembleMLP:
        """The Polyak-averaged target critics."""
        return self._torch_side()[0]["target_critic"]  # type: ignore[return-value]

    @property
    def actor_opt(self) -> torch.optim.Adam:
        """The actor's Adam (its state: the moments and step the updates reached)."""
        return self._torch_side()[1]["actor_opt"]

    @property
    def critic_opt(self) -> torch.optim.Adam:
        """The critics' Adam."""
        return self._torch_side()[1]["critic_opt"]

    @property
    def value_opt(self) -> torch.optim.Adam:
        """The value network's Adam."""
        return self._torch_side()[1]["value_opt"]

    def _torch_side(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Adam]]:
        """The modules and optimisers, holding the training state (copied back from JAX if an
        update ran since they were last handed out); they are the live copy from now on."""
        if self._state is not None:
            state, self._state = self._state, None
            with torch.inference_mode(False):  # normal tensors, even when called from act()
                self._copy_to_torch(state)
        return self._modules, self._optimizers

    def _copy_to_torch(self, state: State) -> None:
        for name, module in self._modules.items():
            for key, param in module.named_parameters():
                param.data.copy_(torch.from_numpy(np.array(state[name][key])))
        for name, opt in self._optimizers.items():
            net = name.removesuffix("_opt")
            for key, param in self._modules[net].named_parameters():
                opt.state[param] = {  # torch.optim.Adam's per-parameter state
                    "step": torch.tensor(float(self._adam_steps), dtype=torch.float32),
                    "exp_avg": torch.from_numpy(np.array(state[f"{net}_m"][key])),
                    "exp_avg_sq": torch.from_numpy(np.array(state[f"{net}_v"][key])),
                }
        self._optimizers["actor_opt"].param_groups[0]["lr"] = self._last_actor_lr

    def _jax_side(self) -> State:
        """The training state as JAX arrays (read from the modules if they were handed out)."""
        if self._state is None:
            state: State = {}
            steps = set()
            for name, module in self._modules.items():
                state[name] = {k: jnp.array(p.detach().numpy(), copy=True)
                               for k, p in module.named_parameters()}
            for name, opt in self._optimizers.items():
                net = name.removesuffix("_opt")
                m, v = {}, {}
                for key, param in self._modules[net].named_parameters():
                    per_param = opt.state.get(param, {})
                    steps.add(float(per_param["step"]) if per_param else 0.0)
                    zeros = torch.zeros_like(param)
                    m[key] = jnp.array(per_param.get("exp_avg", zeros).numpy(), copy=True)
                    v[key] = jnp.array(per_param.get("exp_avg_sq", zeros).numpy(), copy=True)
                state[f"{net}_m"], state[f"{net}_v"] = m, v
            if len(steps) != 1:
                raise RuntimeError(f"IQL: the optimisers' step counts differ ({sorted(steps)}); "
                                   "the three Adam optimisers step together")
            self._adam_steps = int(steps.pop())
            self._state = state
        return self._state

    def actor_lr(self, step: int) -> float:
        """The actor's learning rate at update ``step`` (0-based)."""
        cfg = self.config
        if cfg.actor_schedule == "constant":
            return cfg.actor_lr
        return cosine_lr(cfg.actor_lr, step, cfg.total_updates)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One IQL update on a batch of transitions (Eq. 5-7, in the order of the module
        docstring; computed by :func:`~rewardlab.algorithms.offline.iql_step.iql_step`).

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
        state = self._jax_side()
        arrays = (
            as_tensor(batch["observations"]).numpy(),
            self.box.to_unit(as_tensor(batch["actions"])).numpy(),
            as_tensor(batch["rewards"]).numpy(),
            as_tensor(batch["next_observations"]).numpy(),
            as_tensor(batch["terminals"]).numpy(),
        )
        # torch.optim.Adam's bias corrections, in float64 as it computes them
        t = self._adam_steps + 1
        bias1, bc2_sqrt = 1.0 - _ADAM_BETAS[0] ** t, (1.0 - _ADAM_BETAS[1] ** t) ** 0.5
        lr = self.actor_lr(self.updates)
        scalars = np.array([cfg.value_lr / bias1, lr / bias1, cfg.critic_lr / bias1, bc2_sqrt],
                           dtype=np.float32)
        # the old state's buffers are donated to the step (reused for the new one)
        self._state, metrics = iql_step(state, arrays, scalars, self._step_config)
        self._adam_steps = t
        self._last_actor_lr = lr
        self.updates += 1
        values = np.asarray(metrics, dtype=np.float64).tolist()
        return {**{f"train/{k}": x for k, x in zip(METRICS, values, strict=True)},
                "train/actor_lr": lr}

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
