"""Learned reward: a Bradley-Terry ensemble with training, normalisation and checkpoints.

Sources: Christiano et al. 2017, "Deep reinforcement learning from human preferences" (Eq. 1,
ensemble of predictors, output normalisation); Lee et al. 2021, "PEBBLE" (Eq. 4; each member
trained on its own shuffle of all labels; training stops once training accuracy exceeds 97%).
The agent-facing reward is a reduction over members (mean, or a conservative one after Coste et
al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization": ``mean - k * std``,
``mean - k * var`` or the member minimum), standardised with statistics measured on recent
experience.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rewardlab.config import RewardModelConfig
from rewardlab.errors import RunDirError
from rewardlab.rewards.bradley_terry import (
    bradley_terry_loss,
    preference_accuracy,
    preference_logits,
)
from rewardlab.rewards.dynamics import consistency_loss
from rewardlab.rewards.ensemble import NumpyEnsemble, RewardEnsemble

#: Rows per forward pass when predicting on large arrays (keeps memory flat).
PREDICT_CHUNK = 65536
#: Largest number of rows predicted with the NumPy copy of the weights (:class:`NumpyEnsemble`)
#: instead of torch: the agent's per-step reward (one row per env), where torch's per-call
#: overhead outweighs the arithmetic.
NUMPY_ROWS = 64
#: Activation elements per member (rows x widest hidden layer) in one forward/backward chunk
#: of a training batch: 2 MiB of float32, so a chunk's activations stay in cache.
FIT_CHUNK_ELEMENTS = 2048 * 256


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products natively (``avx512_bf16`` or ``amx_bf16``
    among the flags of ``/proc/cpuinfo``); ``False`` where that cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_dtype(precision: str) -> torch.dtype:
    """The autocast dtype of reward-model training for ``reward_model.precision``."""
    if precision == "bfloat16" or (precision == "auto" and native_bfloat16()):
        return torch.bfloat16
    return torch.float32


def holdout_mask(query_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Deterministic held-out split by query id (Knuth multiplicative hash).

    Args:
        query_ids: ``(N,)`` int64 database ids.
        fraction: expected fraction held out, in ``[0, 1)``.

    Returns:
        ``(N,)`` bool, True for held-out queries. The same id is always on the same side.
    """
    hashed = (query_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return (hashed.astype(np.float64) / 2**32) < fraction


def crop_mask(
    shape: tuple[int, ...] | torch.Size, t_len: int, crop: int, generator: torch.Generator
) -> torch.Tensor:
    """SURF's temporal cropping (Park et al. 2022, Sec. 4.2) as a mask over segment steps.

    Each segment keeps one contiguous window of ``t_len - U{0, ..., 2 * crop}`` steps at a
    uniformly random offset, drawn independently per segment (so the two sides of a pair are
    cropped differently, as in SURF). SURF cuts segments ``crop`` steps longer on each side
    and crops lengths within ``crop`` of the labelled length; RewardLab's stored segment is
    exactly what was labelled, so the window stays inside it.

    Args:
        shape: leading shape of the segments, e.g. ``(members, pairs, 2)``.
        t_len: steps per segment ``T``.
        crop: ``crop_steps``; needs ``2 * crop < t_len``.
        generator: the draws' generator.

    Returns:
        ``(*shape, T)`` float32, 1 inside each segment's window and 0 outside.

    Raises:
        ValueError: if ``2 * crop >= t_len`` (no step would be left).
    """
    if 2 * crop >= t_len:
        raise ValueError(f"crop_steps ({crop}): 2 * crop_steps must be below the segment "
                         f"length ({t_len})")
    shape = tuple(shape)
    lengths = t_len - torch.randint(0, 2 * crop + 1, shape, generator=generator)
    starts = (torch.rand(shape, generator=generator) * (t_len - lengths + 1)).long()
    steps = torch.arange(t_len)
    return ((steps >= starts[..., None]) & (steps < (starts + lengths)[..., None])).float()


class RewardModel:
    """Bradley-Terry reward ensemble: fit on labelled segment pairs, predict per-step rewards.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        config: architecture and training settings.
        seed: seeds the initial weights and the training shuffles.
        device: torch device (``"cpu"`` by default).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: RewardModelConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.config = config or RewardModelConfig()
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        #: SURF's draws (unlabelled-pair order, crop windows) have a stream of their own, so
        #: turning SURF on leaves the labelled shuffles as they were
        self.surf_generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = RewardEnsemble(
                obs_dim,
                act_dim,
                self.config.members,
                self.config.hidden_sizes,
                self.config.activation,
                self.config.output_activation,
                embed_sizes=((self.config.state_embed, self.config.action_embed)
                             if self.config.architecture == "reed" else None),
            ).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.reward_mean = 0.0
        self.reward_std = 1.0
        self.updates = 0
        #: NumPy snapshot of the weights and the parameters' version counters it was taken at
        self._numpy_net: tuple[tuple[int, ...], NumpyEnsemble] | None = None
        self._parameters = list(self.net.parameters())  # loading copies into these in place
        #: autocast dtype of the training passes (``config.precision`` resolved on this CPU)
        self.train_dtype = training_dtype(self.config.precision)

    # ------------------------------------------------------------------ training
    def fit(
        self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray,
        unlabeled_obs: np.ndarray | None = None, unlabeled_actions: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Train every member on the labelled pairs until accurate or out of epochs.

        Each member draws its own permutation of the queries each epoch (bootstrapped order,
        PEBBLE); all members step together in one batched forward/backward pass. The forward
        and backward passes run under bfloat16 autocast when :attr:`train_dtype` says so (the
        weights, the Adam state and the Bradley-Terry logits stay float32).

        With unlabelled pairs and ``config.unlabeled_weight > 0`` this is SURF (Park et al.
        2022, "SURF: Semi-supervised Reward Learning with Data Augmentation for
        Feedback-efficient Preference-based RL", Eq. 5-6 and Alg. 1): every gradient step also
        takes ``unlabeled_batch_multiple`` unlabelled pairs per labelled one (each member its
        own shuffle); a member labels an unlabelled pair with its own prediction on the whole
        segments and trains on it only when ``max(P, 1 - P) >= pseudo_label_threshold``, with
        weight ``unlabeled_weight``. With ``config.crop_steps > 0`` (SURF's temporal cropping)
        every training pass, labelled and pseudo-labelled, sums each segment's reward over a
        random window of its steps (:func:`crop_mask`). The stopping accuracy is always on the
        whole labelled segments.

        Args:
            obs: ``(N, 2, T, obs_dim)`` float32 segment pairs (index 0 = left).
            actions: ``(N, 2, T, act_dim)`` float32.
            targets: ``(N,)`` float32 P[left preferred] in {0, 0.5, 1}.
            unlabeled_obs: optional ``(U, 2, T, obs_dim)`` float32 unlabelled segment pairs.
            unlabeled_actions: ``(U, 2, T, act_dim)`` float32, given with ``unlabeled_obs``.

        Returns:
            ``{"loss", "train_accuracy", "epochs"}``: the last epoch's mean labelled loss per
            member, the members' mean training accuracy and the number of epochs run; with
            unlabelled pairs also ``pseudo_labeled_fraction``, the share of (member,
            unlabelled pair) draws of the last epoch confident enough to train on.

        Raises:
            ValueError: if there are no pairs or the shapes disagree.
        """
        n = obs.shape[0]
        if n == 0:
            raise ValueError("fit: no labelled pairs to train on")
        if actions.shape[:3] != obs.shape[:3] or targets.shape != (n,):
            raise ValueError(
                f"fit: shapes disagree: obs {obs.shape}, actions {actions.shape}, "
                f"targets {targets.shape}"
            )
        cfg = self.config
        k = cfg.members
        x_all = torch.from_numpy(np.concatenate([obs, actions], axis=-1)).to(self.device)
        y_all = torch.from_numpy(np.asarray(targets, dtype=np.float32)).to(self.device)
        t_len, width = x_all.shape[2], x_all.shape[3]
        u_obs, u_act = unlabeled_obs, unlabeled_actions
        semi = (u_obs is not None and u_act is not None and u_obs.shape[0] > 0
                and cfg.unlabeled_weight > 0)
        if semi:
            assert u_obs is not None and u_act is not None  # narrowed by ``semi``
            if u_obs.shape[1:] != obs.shape[1:] or u_act.shape != (*u_obs.shape[:3],
                                                                    actions.shape[3]):
                raise ValueError(f"fit: unlabelled pairs {u_obs.shape} / {u_act.shape} do not "
                                 f"match the labelled {obs.shape} / {actions.shape}")
            xu_all = torch.from_numpy(np.concatenate([u_obs, u_act], axis=-1)).to(self.device)
            n_unlabeled = xu_all.shape[0]
        mu = cfg.unlabeled_batch_multiple if semi else 0
        batch = min(cfg.batch_size, n)
        self.net.train()
        low = self.train_dtype != torch.float32
        loss_value, acc, epoch, pseudo = float("nan"), 0.0, 0, float("nan")
        # Each batch is pushed through in chunks of FIT_CHUNK_ELEMENTS activations per member and
        # the gradients accumulated (each chunk's loss weighted by its share of the batch, so
        # the step is the batch's): the activations of a chunk stay in cache, so the
        # memory-bound activation and copy kernels run faster on CPU than in one pass over the
        # whole batch (see benchmarks/reward_throughput.py). A chunk of c labelled pairs
        # carries its mu * c unlabelled ones in the same forward pass.
        chunk = max(1, FIT_CHUNK_ELEMENTS // (2 * t_len * max(cfg.hidden_sizes) * (1 + mu)))
        for epoch in range(1, cfg.max_epochs + 1):  # noqa: B007 (epoch is reported)
            order = torch.argsort(torch.rand(k, n, generator=self.generator), dim=1)
            if semi:
                order_u = torch.argsort(
                    torch.rand(k, n_unlabeled, generator=self.surf_generator), dim=1
                ).to(self.device)
                cursor, confident, drawn = 0, 0, 0
            total_loss, correct, decided = 0.0, torch.zeros(k), 0
            for start in range(0, n, batch):
                idx = order[:, start : start + batch].to(self.device)  # (K, b)
                b = idx.shape[1]
                self.optimizer.zero_grad(set_to_none=True)
                for c0 in range(0, b, chunk):
                    cidx = idx[:, c0 : c0 + chunk]  # (K, c)
                    c = cidx.shape[1]
                    x = x_all[cidx]  # (K, c, 2, T, width)
                    y = y_all[cidx]  # (K, c)
                    if semi:  # this chunk's share of the step's mu * b unlabelled pairs
                        pos = (cursor + mu * c0 + torch.arange(mu * c, device=self.device)
                               ) % n_unlabeled
                        x = torch.cat([x, xu_all[order_u[:, pos]]], dim=1)
                    rows = x.shape[1]
                    with torch.autocast(self.device.type, dtype=self.train_dtype, enabled=low):
                        r = self.net.forward_members(x.reshape(k, rows * 2 * t_len, width))
                    r = r.float().reshape(k, rows, 2, t_len)
                    logits = preference_logits(r[:, :c])  # whole segments: the accuracy
                    loss = bradley_terry_loss(self._cropped_logits(r[:, :c], logits), y,
                                              lapse=cfg.lapse_rate)
                    total_loss += loss.item() * c / k
                    if semi:
                        u_logits = preference_logits(r[:, c:])
                        with torch.no_grad():
                            conf = torch.sigmoid(u_logits.abs()) >= cfg.pseudo_label_threshold
                            labels_u = (u_logits > 0).float()
                            confident += int(conf.sum())
                            drawn += conf.numel()
                        loss = loss + cfg.unlabeled_weight * bradley_terry_loss(
                            self._cropped_logits(r[:, c:], u_logits), labels_u, conf.float())
                    (loss * (c / b)).backward()
                    with torch.no_grad():
                        dec = y != 0.5
                        correct += (((logits > 0) == (y > 0.5)) & dec).sum(dim=1).cpu()
                        decided += int(dec[0].sum())
                self.optimizer.step()
                if semi:
                    cursor = (cursor + mu * b) % n_unlabeled
            loss_value = total_loss / n
            acc = float(correct.mean()) / decided if decided else 1.0
            if semi:
                pseudo = confident / drawn
            if acc > cfg.target_accuracy:
                break
        self.net.eval()
        self.updates += 1
        out = {"loss": loss_value, "train_accuracy": acc, "epochs": float(epoch)}
        if semi:
            out["pseudo_labeled_fraction"] = pseudo
        return out

    def fit_dynamics(
        self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, seed: int
    ) -> dict[str, float]:
        """REED's self-future-consistency task (Metcalf et al. 2023; :mod:`rewardlab.rewards.
        dynamics`): train every member's encoder and hidden layers to predict the next state's
        embedding from ``(s_t, a_t)``, before the preference fit.

        Each member draws its own order of the transitions every epoch (the reference gives
        each member its own shuffled loader); all members step together in one batched pass. A
        fresh Adam optimiser (``config.sfc_lr``) is made for each call, as the reference makes
        a new optimiser every round, so nothing of it needs a checkpoint.

        Args:
            obs: ``(N, obs_dim)`` float32 states ``s_t``.
            actions: ``(N, act_dim)`` float32 actions ``a_t``.
            next_obs: ``(N, obs_dim)`` float32 next states ``s_{t+1}``.
            seed: seeds the shuffles (the caller derives it from the run seed and the round,
                so a resumed run draws the same).

        Returns:
            ``{"sfc_loss", "sfc_epochs", "sfc_transitions"}``: the last epoch's mean loss (sum
            over members of ``-cos``, so ``-members`` at best), the epochs run and ``N``.

        Raises:
            ValueError: if the model has no REED architecture or the shapes disagree.
        """
        heads = self.net.dynamics
        if heads is None:
            raise ValueError("fit_dynamics: reward_model.architecture is not 'reed'")
        n = obs.shape[0]
        if actions.shape[0] != n or next_obs.shape != obs.shape:
            raise ValueError(f"fit_dynamics: shapes disagree: obs {obs.shape}, actions "
                             f"{actions.shape}, next_obs {next_obs.shape}")
        cfg = self.config
        if n < 2:
            return {"sfc_loss": float("nan"), "sfc_epochs": 0.0, "sfc_transitions": float(n)}
        k = cfg.members
        x_all = torch.from_numpy(np.concatenate([obs, actions], axis=-1)).to(self.device)
        next_all = torch.from_numpy(np.ascontiguousarray(next_obs)).to(self.device)
        shared = [p for m in self.net.net[:-2] for p in m.parameters()]
        optimizer = torch.optim.Adam([*shared, *heads.parameters()], lr=cfg.sfc_lr)
        generator = torch.Generator().manual_seed(seed)
        batch = min(cfg.sfc_batch_size, n)
        self.net.train()
        loss_value = float("nan")
        for _ in range(cfg.sfc_epochs):
            order = torch.argsort(torch.rand(k, n, generator=generator), dim=1)
            total, steps = 0.0, 0
            for start in range(0, n - 1, batch):  # a last batch of 1 has no batch statistics
                idx = order[:, start : start + batch].to(self.device)  # (K, b)
                predicted = heads.predict(self.net.representation(x_all[idx]))
                with torch.no_grad():
                    target = heads.project(self.net.state_embedding(next_all[idx]))
                loss = consistency_loss(predicted, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                steps += 1
            loss_value = total / max(steps, 1)
        self.net.eval()
        return {"sfc_loss": loss_value, "sfc_epochs": float(cfg.sfc_epochs),
                "sfc_transitions": float(n)}

    def _cropped_logits(self, step_rewards: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
        """The training logits of ``step_rewards (K, rows, 2, T)``: ``whole`` (the logits of the
        whole segments) without cropping, else the logits of random windows (:func:`crop_mask`,
        drawn from :attr:`surf_generator`)."""
        if not self.config.crop_steps:
            return whole
        mask = crop_mask(step_rewards.shape[:3], step_rewards.shape[3], self.config.crop_steps,
                         self.surf_generator).to(step_rewards.device)
        return preference_logits(step_rewards * mask)

    # ---------------------------------------------------------------- prediction
    def predict_members(
        self, obs: np.ndarray, actions: np.ndarray, fast: bool = False
    ) -> np.ndarray:
        """Raw per-member rewards: up to :data:`NUMPY_ROWS` rows with a NumPy copy of the
        weights (the agent's per-step reward, where torch's per-call overhead dominates),
        more in chunks under ``torch.inference_mode``.

        Args:
            obs: ``(..., obs_dim)`` float32.
            actions: ``(..., act_dim)`` float32, same leading shape.
            fast: compute in :attr:`train_dtype` (bfloat16 autocast where training uses it):
                for ranking candidate queries, not for the agent's reward.

        Returns:
            ``(K, ...)`` float32, unnormalised member rewards.
        """
        lead = obs.shape[:-1]
        rows = math.prod(lead)
        low = fast and self.train_dtype != torch.float32
        if 0 < rows <= NUMPY_ROWS and self.device.type == "cpu" and not low:
            x = np.concatenate([np.asarray(obs, dtype=np.float32).reshape(rows, self.obs_dim),
                                np.asarray(actions, dtype=np.float32).reshape(rows, self.act_dim)],
                               axis=1)
            return self._numpy_snapshot()(x).reshape(self.config.members, *lead)
        return self._predict_torch(obs, actions, low)

    @torch.inference_mode()
    def _predict_torch(self, obs: np.ndarray, actions: np.ndarray, low: bool) -> np.ndarray:
        """:meth:`predict_members` in torch, in chunks of :data:`PREDICT_CHUNK` rows."""
        lead = obs.shape[:-1]
        flat_obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.obs_dim)
        flat_act = torch.as_tensor(actions, dtype=torch.float32).reshape(-1, self.act_dim)
        with torch.autocast(self.device.type, dtype=self.train_dtype, enabled=low):
            outs = [
                self.net(flat_obs[i : i + PREDICT_CHUNK].to(self.device),
                         flat_act[i : i + PREDICT_CHUNK].to(self.device)).float().cpu()
                for i in range(0, flat_obs.shape[0], PREDICT_CHUNK)
            ]
        out = torch.cat(outs, dim=1) if outs else torch.zeros(self.config.members, 0)
        return out.reshape(self.config.members, *lead).numpy()

    def _numpy_snapshot(self) -> NumpyEnsemble:
        """The NumPy copy of the current weights, retaken whenever a parameter has changed
        (torch bumps a tensor's version counter on every in-place write: optimizer steps,
        ``load_state_dict``, direct edits)."""
        versions = tuple(p._version for p in self._parameters)
        if self._numpy_net is None or self._numpy_net[0] != versions:
            self._numpy_net = (versions, NumpyEnsemble(self.net))
        return self._numpy_net[1]

    def reduce(self, member_rewards: np.ndarray) -> np.ndarray:
        """Combine ``(K, ...)`` member rewards into the agent's reward ``(...)`` (unnormalised).

        ``mean``; ``mean_minus_std``: ``mean - k std``; ``mean_minus_var``: ``mean - k var``
        (Coste et al. 2023, uncertainty-weighted optimisation, UWO); ``min``: the smallest
        member (Coste et al. 2023, worst-case optimisation, WCO). Standard deviations and
        variances are over members (ddof 0).
        """
        reduction = self.config.reduction
        if reduction == "min":
            return member_rewards.min(axis=0)
        mean = member_rewards.mean(axis=0)
        if reduction == "mean_minus_std":
            return mean - self.config.k_std * member_rewards.std(axis=0)
        if reduction == "mean_minus_var":
            return mean - self.config.k_std * member_rewards.var(axis=0)
        return mean

    def reward(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The proxy reward the agent sees: reduced over members, then standardised.

        Args:
            obs: ``(..., obs_dim)`` float32.
            actions: ``(..., act_dim)`` float32.

        Returns:
            ``(...)`` float32 proxy reward (unitless; mean 0 and std 1 on the experience the
            last :meth:`update_normalization` saw, when ``config.normalize``).
        """
        reduced = self.reduce(self.predict_members(obs, actions))
        return ((reduced - self.reward_mean) / self.reward_std).astype(np.float32)

    def update_normalization(self, obs: np.ndarray, actions: np.ndarray) -> None:
        """Re-measure the proxy reward's mean and std on ``(N, obs_dim)``/``(N, act_dim)`` data.

        Christiano et al. 2017 (Sec. 2.2.3) normalise the predictor to a fixed scale; here the
        standardisation is measured on the agent's recent experience so the critic sees a
        stable scale whatever the ensemble's raw output range. No-op unless ``normalize``.
        """
        if not self.config.normalize or obs.shape[0] == 0:
            return
        reduced = self.reduce(self.predict_members(obs, actions))
        self.reward_mean = float(reduced.mean())
        self.reward_std = float(max(reduced.std(), 1e-6))

    @torch.inference_mode()
    def preference_probs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Each member's P[left preferred] for segment pairs.

        Args:
            obs: ``(M, 2, T, obs_dim)`` float32.
            actions: ``(M, 2, T, act_dim)`` float32.

        Returns:
            ``(K, M)`` float32 probabilities (Bradley-Terry, Christiano et al. 2017 Eq. 1).
        """
        rewards = torch.from_numpy(self.predict_members(obs, actions))  # (K, M, 2, T)
        return torch.sigmoid(preference_logits(rewards)).numpy()

    @torch.inference_mode()
    def selection_probs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """:meth:`preference_probs` computed in :attr:`train_dtype`, for ranking a round's
        candidate pairs by disagreement or entropy (about 3x faster under bfloat16; the
        ranking, not the probabilities' last digits, is what selection uses).

        Args:
            obs: ``(M, 2, T, obs_dim)`` float32; actions: ``(M, 2, T, act_dim)`` float32.

        Returns:
            ``(K, M)`` float32 probabilities.
        """
        rewards = torch.from_numpy(self.predict_members(obs, actions, fast=True))
        return torch.sigmoid(preference_logits(rewards)).numpy()

    def accuracy(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> float:
        """Mean over members of the accuracy on decided queries (NaN if none is decided).

        Args:
            obs: ``(N, 2, T, obs_dim)`` float32; actions ``(N, 2, T, act_dim)`` float32;
            targets: ``(N,)`` float32 P[left preferred].
        """
        if obs.shape[0] == 0:
            return float("nan")
        rewards = torch.from_numpy(self.predict_members(obs, actions))
        acc = preference_accuracy(preference_logits(rewards), torch.from_numpy(targets))
        return float(acc.mean())

    # --------------------------------------------------------------- checkpoints
    def save(self, directory: str | Path) -> None:
        """Write ``reward_model.safetensors`` (weights and Adam state) and ``reward_model.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in
                   self.net.state_dict().items()}
        opt_state = self.optimizer.state_dict()
        for pid, state in opt_state["state"].items():
            for name, value in state.items():
                tensors[f"adam.{pid}.{name}"] = torch.as_tensor(value).cpu().contiguous()
        tensors["generator_state"] = self.generator.get_state()
        tensors["surf_generator_state"] = self.surf_generator.get_state()
        save_file(tensors, str(directory / "reward_model.safetensors"))
        meta = {
            "format_version": 1,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": self.config.model_dump(mode="json"),
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
            "updates": self.updates,
        }
        (directory / "reward_model.json").write_text(json.dumps(meta, indent=2))

    def load_into(self, directory: str | Path) -> None:
        """Restore weights, Adam state, normalisation, update count and generator saved by
        :meth:`save` into this model (same architecture).

        Raises:
            RunDirError: if the files are missing or from another format version.
        """
        loaded = RewardModel.load(directory, device=str(self.device))
        self.net.load_state_dict(loaded.net.state_dict())
        self.optimizer.load_state_dict(loaded.optimizer.state_dict())
        self.reward_mean, self.reward_std = loaded.reward_mean, loaded.reward_std
        self.updates = loaded.updates
        self.generator.set_state(loaded.generator.get_state())
        self.surf_generator.set_state(loaded.surf_generator.get_state())

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> RewardModel:
        """Rebuild a model saved by :meth:`save`.

        Raises:
            RunDirError: if the files are missing or from another format version.
        """
        directory = Path(directory)
        meta_path = directory / "reward_model.json"
        weights_path = directory / "reward_model.safetensors"
        if not meta_path.exists() or not weights_path.exists():
            raise RunDirError(f"{directory}: no reward_model.json/.safetensors checkpoint")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != 1:
            raise RunDirError(
                f"{meta_path}: unsupported format_version {meta.get('format_version')}"
            )
        model = cls(meta["obs_dim"], meta["act_dim"], RewardModelConfig(**meta["config"]),
                    device=device)
        tensors = load_file(str(weights_path))
        model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        params = list(model.net.parameters())
        for i, p in enumerate(params):
            if f"adam.{i}.step" in tensors:
                model.optimizer.state[p] = {
                    "step": tensors[f"adam.{i}.step"],
                    "exp_avg": tensors[f"adam.{i}.exp_avg"],
                    "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"],
                }
        model.generator.set_state(tensors["generator_state"])
        if "surf_generator_state" in tensors:  # absent from checkpoints written before SURF
            model.surf_generator.set_state(tensors["surf_generator_state"])
        model.reward_mean = float(meta["reward_mean"])
        model.reward_std = float(meta["reward_std"])
        model.updates = int(meta["updates"])
        return model
