"""CPL: contrastive preference learning, a policy straight from labelled segment pairs.

Source: Hejna, Rafailov, Sikchi, Finn, Niekum, Knox & Sadigh 2024, "Contrastive Preference
Learning: Learning from Human Feedback without Reinforcement Learning" (ICLR), Eq. (5) and its
conservative variant CPL(lambda) (Sec. 3.2), implemented as in the authors' code,
github.com/jhejna/cpl at b333667: ``research/algs/cpl.py`` (``CPL._get_cpl_loss``,
``biased_bce_with_logits``, ``CPL.train_step``), ``research/networks/mlp.py``
(``ContinuousMLPActor``), ``research/utils/schedules.py`` and the state-based config
``configs/mw_state_dense/cpl.yaml``.

* Regret preference model with the optimal advantage ``A(s, a) = alpha log pi(a|s)``: a
  segment's score is ``S = sum_t gamma^t alpha log pi(a_t|s_t)`` and
  ``P[sigma+ > sigma-] = sigmoid(S+ - lambda S-)``. The loss is the cross-entropy against the
  soft label ``y = P[left preferred]``::

      L = y * softplus(-(S_L - lambda S_R)) + (1 - y) * softplus(-(S_R - lambda S_L))

  averaged over the batch (``biased_bce_with_logits``; their ``y`` = P[second preferred]).
  ``lambda = contrastive_bias`` in ``(0, 1]``; 1 is plain CPL, the config's 0.5 the
  conservative CPL(lambda). The authors' code sums the segment undiscounted; ``discount``
  (default 1) restores the paper's ``gamma^t``.
* Policy: the config's ``ContinuousMLPActor``, a deterministic ReLU MLP (512 x 512, dropout
  0.25 after each hidden linear layer, orthogonal init with gain 1 and zero biases, tanh
  output); its log-likelihood is that of a unit-variance Gaussian up to a constant, as in the
  code: ``log pi(a|s) = -||mu(s) - a||^2``. Actions are evaluated with the mean ``mu(s)``.
* BC pre-training (``CPL.train_step``): for the first ``bc_steps`` updates the loss is the
  behaviour-cloning loss ``mean(-log pi)`` over every step of both segments of the batch; then
  the optimiser is replaced by a fresh Adam and the learning rate warms up linearly over
  ``warmup_steps`` (``linear_warmup``; the trainer steps the new schedule once right after
  creating it, so the k-th CPL update uses ``lr min(1, (k + 1) / warmup_steps)``; without BC
  pre-training the code keeps a constant rate, and so does this). Afterwards the loss is
  ``L + bc_coeff * mean(-log pi)``.
* Defaults from ``configs/mw_state_dense/cpl.yaml``: alpha 0.1, lambda 0.5, bc_coeff 0,
  bc_steps 200,000 (of 500,000; the config default is scaled to 40,000 of offline.updates
  100,000), Adam lr 1e-4, warm-up 10,000, 96 pairs per batch (64-step
  segments there).

Equal labels (``y = 0.5``): the authors' data loader gives tied segments the soft label 0.5,
and so does this loss. With ``lambda = 1`` that is the symmetric Bradley-Terry target (it
pulls the two scores together); with ``lambda < 1`` both terms reward raising *both*
segments' likelihood, so an "equal" answer acts like behaviour cloning on the pair (both are
taken as acceptable). Skipped queries carry no target and must be dropped by the caller
(:meth:`~rewardlab.algorithms.offline.common.PreferencePairs.from_labels`).

Checked against the authors' code (2026-12-03, not part of the tests: it needs their source):
their ``biased_bce_with_logits`` and :func:`cpl_loss` give the same loss, bit for bit, on
random scores and labels (0, 0.5, 1) for lambda 1, 0.5 and 0.25.

Not followed: the authors' main experiments use dense comparisons ranked by a score
(``biased_bce_with_scores``, ``mode: rank``); the store holds pairwise labels, so this is
their pairwise path (``mode: comparison``). The D4RL human-label variant (github.com/jhejna/
cpl-human, ``learner.py``) averages over steps and divides by the action range; not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewardlab.algorithms.offline.common import (
    ActionBox,
    agent_tensors,
    as_tensor,
    mlp,
    read_checkpoint,
    restore_agent,
    save_agent,
)
from rewardlab.config import CPLConfig
from rewardlab.rewards.bradley_terry import preference_accuracy

#: Name of the checkpoint files (``cpl.safetensors``, ``cpl.json``).
CHECKPOINT_NAME = "cpl"
#: The networks and optimisers a checkpoint holds (attribute names).
MODULES = ("actor",)
OPTIMIZERS = ("optimizer",)


# --------------------------------------------------------------------------------- pure math
def deterministic_log_prob(mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The reference's log-likelihood of a deterministic actor: ``-||mean - a||^2`` over the
    last dimension."""
    return -(mean - actions).square().sum(dim=-1)


def segment_scores(log_probs: torch.Tensor, alpha: float, discount: float = 1.0) -> torch.Tensor:
    """``S = sum_t discount^t alpha log pi(a_t|s_t)`` over the last (time) dimension.

    Args:
        log_probs: ``(..., T)``.

    Returns:
        ``(...)``.
    """
    t = torch.arange(log_probs.shape[-1], dtype=log_probs.dtype)
    return (alpha * log_probs * discount**t).sum(dim=-1)


def cpl_loss(scores: torch.Tensor, targets: torch.Tensor, bias: float = 1.0) -> torch.Tensor:
    """CPL(lambda)'s biased Bradley-Terry cross-entropy (``biased_bce_with_logits``).

    Args:
        scores: ``(B, 2)`` segment scores (left, right).
        targets: ``(B,)`` P[left preferred] in ``[0, 1]``.
        bias: lambda in ``(0, 1]``, the weight of the non-preferred segment's score.

    Returns:
        Scalar mean over the batch of ``y softplus(-(S_L - lambda S_R)) + (1 - y)
        softplus(-(S_R - lambda S_L))``.
    """
    left, right = scores[:, 0], scores[:, 1]
    nll_left = F.softplus(-(left - bias * right))  # -log P[left > right]
    nll_right = F.softplus(-(right - bias * left))
    return (targets * nll_left + (1.0 - targets) * nll_right).mean()


class DeterministicActor(nn.Module):
    """``mu(s) = tanh(MLP(s))`` with dropout after each hidden layer (``ContinuousMLPActor``)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], dropout: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, ortho_gain=1.0, dropout=dropout,
                       generator=generator)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


# ------------------------------------------------------------------------------------- agent
class CPL:
    """Contrastive preference learning on batches of labelled segment pairs.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        config: hyperparameters (default: the authors' state-based CPL config).
        seed: seeds the initial weights and the agent's generator (dropout masks).
        action_low: ``(act_dim,)`` lower bounds of the env's action box (default -1).
        action_high: ``(act_dim,)`` upper bounds (default 1).
    """

    def __init__(
        self, obs_dim: int, act_dim: int, config: CPLConfig | None = None, seed: int = 0,
        action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
    ) -> None:
        self.config = cfg = config or CPLConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.box = ActionBox(act_dim, action_low, action_high)
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.dropout,
                                            self.generator)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.updates = 0

    def lr(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): constant during BC pre-training, then a
        linear warm-up (only after a BC phase, as in the reference)."""
        cfg = self.config
        if cfg.bc_steps == 0 or step < cfg.bc_steps:
            return cfg.lr
        return cfg.lr * min(1.0, (step - cfg.bc_steps + 1) / cfg.warmup_steps)

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One gradient step: BC during pre-training, the CPL(lambda) loss afterwards.

        Args:
            batch: ``obs (B, 2, T, obs_dim)``, ``actions (B, 2, T, act_dim)`` in the env's box,
                ``targets (B,)`` P[left preferred] (e.g.
                :meth:`~rewardlab.algorithms.offline.common.PreferencePairs.sample`).

        Returns:
            ``train/`` metrics: ``bc_loss``, ``lr``, ``bc_phase`` (1.0 while pre-training),
            and after pre-training ``cpl_loss`` and ``accuracy`` (on decided pairs; NaN if
            none).
        """
        cfg = self.config
        obs = as_tensor(batch["obs"])
        act = self.box.to_unit(as_tensor(batch["actions"]))
        targets = as_tensor(batch["targets"])
        self.actor.train()
        log_probs = deterministic_log_prob(self.actor(obs), act)  # (B, 2, T)
        bc_loss = -log_probs.mean()
        pretraining = self.updates < cfg.bc_steps
        metrics = {"train/bc_loss": bc_loss.item(), "train/bc_phase": float(pretraining)}
        if pretraining:
            loss = bc_loss
        else:
            scores = segment_scores(log_probs, cfg.alpha, cfg.discount)  # (B, 2)
            cpl = cpl_loss(scores, targets, cfg.contrastive_bias)
            loss = cpl + cfg.bc_coeff * bc_loss
            with torch.no_grad():
                acc = preference_accuracy((scores[:, 0] - scores[:, 1]).unsqueeze(0), targets)
            metrics.update({"train/cpl_loss": cpl.item(), "train/accuracy": float(acc[0])})
        lr = self.lr(self.updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.updates == cfg.bc_steps - 1:  # pre-training done: a fresh optimiser for CPL
            self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.updates += 1
        metrics["train/lr"] = lr
        return metrics

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions ``mu(s)`` (dropout off) in the env's box, for ``(obs_dim,)``
        or ``(B, obs_dim)`` observations; float32."""
        self.actor.eval()
        out = self.box.from_unit(self.actor(as_tensor(obs))).numpy().astype(np.float32)
        self.actor.train()
        return out

    @torch.inference_mode()
    def segment_log_probs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``log pi(a_t|s_t)`` (dropout off) for ``(..., obs_dim)``/``(..., act_dim)`` arrays:
        ``(...)`` float32, e.g. to score held-out pairs."""
        self.actor.eval()
        lp = deterministic_log_prob(self.actor(as_tensor(obs)),
                                    self.box.to_unit(as_tensor(actions)))
        self.actor.train()
        return lp.numpy()

    def accuracy(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> float:
        """Share of decided pairs whose preferred segment has the higher unbiased score
        ``sum_t gamma^t alpha log pi`` (dropout off); NaN if none is decided.

        Args:
            obs: ``(M, 2, T, obs_dim)``; actions: ``(M, 2, T, act_dim)``; targets: ``(M,)``.
        """
        scores = segment_scores(torch.from_numpy(self.segment_log_probs(obs, actions)),
                                self.config.alpha, self.config.discount)
        acc = preference_accuracy((scores[:, 0] - scores[:, 1]).unsqueeze(0),
                                  as_tensor(targets))
        return float(acc[0])

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the agent (actor, Adam moments, generator)."""
        return {"generator_state": self.generator.get_state(),
                **agent_tensors(self, MODULES, OPTIMIZERS)}

    def save(self, directory: str | Path) -> None:
        """Write ``cpl.safetensors`` and ``cpl.json``."""
        save_agent(self, directory, CHECKPOINT_NAME, self.state_dict(), OPTIMIZERS)

    def load_into(self, directory: str | Path) -> None:
        """Restore a checkpoint of the same architecture into this agent (exact resume).

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        # the BC phase and the CPL phase use different optimisers: rebuild before loading
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.config.lr)
        tensors, _ = restore_agent(self, directory, CHECKPOINT_NAME, MODULES, OPTIMIZERS)
        self.generator.set_state(tensors["generator_state"])

    @classmethod
    def load(cls, directory: str | Path) -> CPL:
        """Rebuild an agent saved by :meth:`save`.

        Raises:
            RunDirError: if the checkpoint is missing or from another format version.
        """
        _, meta = read_checkpoint(directory, CHECKPOINT_NAME)
        agent = cls(meta["obs_dim"], meta["act_dim"], CPLConfig(**meta["config"]),
                    seed=meta["seed"], action_low=np.asarray(meta["action_low"]),
                    action_high=np.asarray(meta["action_high"]))
        agent.load_into(directory)
        return agent
