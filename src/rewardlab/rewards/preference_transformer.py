"""Preference Transformer: a non-Markovian reward model with preference attention.

Source: Kim, Park, Shin, Lee, Abbeel & Lee 2023, "Preference Transformer: Modeling Human
Preferences using Transformers for RL" (ICLR), Sec. 4 and Fig. 2, built as in the authors'
code (github.com/csmile-1006/PreferenceTransformer at f71647b):
``flaxmodels/flaxmodels/gpt2/trajectory_gpt2.py`` (``TransRewardModel``, ``GPT2Model``),
``flaxmodels/flaxmodels/gpt2/ops.py`` (``attention``), ``JaxPref/PrefTransformer.py``
(loss, optimiser, schedule) and ``dataset_utils.py`` (``reward_from_preference_transformer``,
the relabelling).

* Tokens: each step gives an action token and a state token, ``Linear(a_t) + E(t)`` and
  ``Linear(s_t) + E(t)`` with a learned timestep embedding ``E`` over ``t = 1..T`` (no
  positional embedding besides), interleaved ``(a_1, s_1, a_2, s_2, ...)``, layer-normed and
  passed through a GPT-2 (pre-LN blocks, causal multi-head self-attention, ReLU MLP of width
  4 x embedding, dropout on embeddings, attention and residuals, final layer norm).
* Preference attention: the outputs at the state tokens ``x_t`` (which have seen
  ``(s, a)_{<=t}``) are mapped to a query ``q_t``, a key ``k_t`` and the per-step reward
  ``r_t`` (one linear layer). Bidirectional attention ``a_ij = softmax_j(q_i . k_j)`` (the code
  scales by sqrt(value width) = 1, i.e. not at all, and uses no dropout here) gives
  ``z_i = sum_j a_ij r_j``; the segment's score is ``mean_i z_i = sum_t w_t r_t`` with the
  importance weights ``w_t = mean_i a_it`` (they sum to 1).
* Loss: Bradley-Terry cross-entropy on the two scores against the soft label
  (:func:`~rewardlab.rewards.bradley_terry.bradley_terry_loss`; 0.5 for equal).
* Training: AdamW (weight decay 1e-4, optax's default), learning rate warmed up linearly from
  ``lr`` to ``10 lr`` over the first 10% of the gradient steps, then cosine-decayed back to
  ``lr`` (``optax.warmup_cosine_decay_schedule``), minibatches of shuffled labels per epoch.
* Relabelling a dataset (:meth:`PreferenceTransformer.relabel`, ``label_mode="last"``, the
  code's default): each step's reward is ``r_t`` -- the unweighted per-step reward, not
  ``w_t r_t`` -- at the last position of the window of the ``window`` steps of its episode
  that end at it (timesteps ``1..window``); an early step sees its episode from the start
  (the code left-pads and masks, which is the same because attention is causal).

Checked against the authors' code (2026-12-03, not part of the tests: it needs their source):
their Flax ``TransRewardModel`` (``use_weighted_sum=True``, 2 layers, 4 heads) with the same
weights gives the same ``r_t``, ``w_t`` and score to 6e-7, and for their left-padded, masked
relabelling window the same last-step reward as our unpadded prefix to 2e-7.

Sizes: the README's D4RL command uses embedding 256, 1 layer, 4 heads, preference width 256,
batch 256, 10,000 epochs (GPU); :class:`~rewardlab.config.PreferenceTransformerConfig`
defaults to 64 / 1 / 4 / 64, batch 256, 100 epochs for CPU (one epoch over 500 pairs of
50 steps takes about 5 s on one core; relabelling about 1.7 ms per step). Weights use
PyTorch's default init (Flax's LeCun-normal in the reference). The reference keeps the
checkpoint with the best held-out loss; here the caller decides (e.g. with
:meth:`PreferenceTransformer.accuracy`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rewardlab.config import PreferenceTransformerConfig
from rewardlab.errors import RunDirError
from rewardlab.rewards.bradley_terry import (
    bradley_terry_loss,
    preference_accuracy,
    preference_logits,
)

#: Windows per forward pass when predicting or relabelling (bounds memory).
PREDICT_CHUNK = 1024
#: The code's fill value for masked attention logits (``masked_bias``).
MASKED_LOGIT = -1e4


# --------------------------------------------------------------------------------- pure math
def preference_attention(
    query: torch.Tensor, key: torch.Tensor, rewards: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Preference attention: per-step importance weights and the weighted segment score.

    Args:
        query: ``(..., T, P)``; key: ``(..., T, P)``; rewards: ``(..., T)`` per-step ``r_t``.

    Returns:
        ``(weights, score)``: ``weights (..., T)``, ``w_t = mean_i softmax_j(q_i . k_j)_t``, and
        ``score (...)`` ``= mean_i sum_j a_ij r_j = sum_t w_t r_t``.
    """
    attn = torch.softmax(query @ key.transpose(-1, -2), dim=-1)  # (..., T_i, T_j)
    weights = attn.mean(dim=-2)
    return weights, (weights * rewards).sum(dim=-1)


def warmup_cosine_lr(base_lr: float, step: int, total: int, warmup: int) -> float:
    """``optax.warmup_cosine_decay_schedule(init=base_lr, peak=10 base_lr, warmup, total,
    end=base_lr)`` at ``step``."""
    peak = 10.0 * base_lr
    if step < warmup:
        return base_lr + (peak - base_lr) * step / warmup
    frac = min(step - warmup, total - warmup) / max(total - warmup, 1)
    return base_lr + (peak - base_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


class _Dropout(nn.Module):
    """Inverted dropout with masks from an explicit generator (never the global one)."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.rand(x.shape, generator=self.generator, device=x.device)
        return x * mask.ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1/(1-p), in place


class _Block(nn.Module):
    """GPT-2 block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d: int, heads: int, dropout: float, gen: torch.Generator) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.attn_drop, self.resid_drop, self.mlp_drop = (
            _Dropout(dropout, gen), _Dropout(dropout, gen), _Dropout(dropout, gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.training and self.attn_drop.p > 0.0:  # dropout masks from our generator
            logits = (q / math.sqrt(d // self.heads)) @ k.transpose(-1, -2)  # (B, H, n, n)
            causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            attn = torch.softmax(logits.masked_fill(~causal, MASKED_LOGIT), dim=-1)
            out = self.attn_drop(attn) @ v
        else:  # the same attention, fused (-inf instead of -1e4 changes no float32 weight)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = out.transpose(1, 2).reshape(b, n, d)
        x = x + self.resid_drop(self.proj(out))
        return x + self.mlp_drop(self.mlp(self.ln2(x)))


class PreferenceTransformerNet(nn.Module):
    """The network: ``(obs (B, T, o), actions (B, T, a))`` -> ``(r (B, T), weights (B, T),
    score (B,))``."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PreferenceTransformerConfig,
                 generator: torch.Generator) -> None:
        super().__init__()
        d = cfg.embd_dim
        self.pref_dim = cfg.pref_attn_dim
        self.embed_state, self.embed_action = nn.Linear(obs_dim, d), nn.Linear(act_dim, d)
        self.embed_timestep = nn.Embedding(cfg.max_len + 1, d)
        self.ln_in, self.ln_out = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.embed_drop = _Dropout(cfg.dropout, generator)
        self.blocks = nn.ModuleList(
            _Block(d, cfg.n_head, cfg.dropout, generator) for _ in range(cfg.n_layer))
        self.pref_head = nn.Linear(d, 2 * cfg.pref_attn_dim + 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor
    ]:
        b, t_len, _ = obs.shape
        time = self.embed_timestep(torch.arange(1, t_len + 1, device=obs.device))  # (T, d)
        tokens = torch.stack([self.embed_action(actions) + time,
                              self.embed_state(obs) + time], dim=2)  # (B, T, 2, d)
        x = self.embed_drop(self.ln_in(tokens.reshape(b, 2 * t_len, -1)))
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_out(x).reshape(b, t_len, 2, -1)[:, :, 1]  # outputs at state tokens
        q, k, r = self.pref_head(hidden).split([self.pref_dim, self.pref_dim, 1], dim=-1)
        r = r.squeeze(-1)
        weights, score = preference_attention(q, k, r)
        return r, weights, score


# ------------------------------------------------------------------------------ reward model
class PreferenceTransformer:
    """Preference Transformer reward model with :class:`~rewardlab.rewards.model.RewardModel`'s
    surface (one "member"): ``fit``, ``reward``, ``preference_probs``, ``accuracy``,
    ``save``/``load``/``load_into``, plus :meth:`relabel` for offline datasets.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        config: architecture and training settings.
        seed: seeds the initial weights and the generator of shuffles and dropout masks.
    """

    members = 1

    def __init__(self, obs_dim: int, act_dim: int,
                 config: PreferenceTransformerConfig | None = None, seed: int = 0) -> None:
        self.config = config or PreferenceTransformerConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = PreferenceTransformerNet(obs_dim, act_dim, self.config, self.generator)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        self.net.eval()
        self.updates = 0  # fit calls
        self.steps = 0  # gradient steps over all fits
        self.segment_len: int | None = None  # T of the last fit (the default relabel window)

    # ------------------------------------------------------------------------- training
    def fit(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Train for ``config.epochs`` epochs on labelled segment pairs (schedule per fit).

        Args:
            obs: ``(M, 2, T, obs_dim)`` float32 pairs (index 0 = left).
            actions: ``(M, 2, T, act_dim)`` float32.
            targets: ``(M,)`` float32 P[left preferred] in {0, 0.5, 1}.

        Returns:
            ``{"loss", "train_accuracy", "epochs"}``: the last epoch's mean loss and accuracy
            on decided pairs (dropout on), and the epochs run.

        Raises:
            ValueError: if there are no pairs, the shapes disagree or T exceeds ``max_len``.
        """
        cfg = self.config
        m = obs.shape[0]
        if m == 0:
            raise ValueError("fit: no labelled pairs to train on")
        if obs.ndim != 4 or obs.shape[1] != 2 or actions.shape[:3] != obs.shape[:3] or (
                np.shape(targets) != (m,)):
            raise ValueError(f"fit: expected obs (M, 2, T, o), actions (M, 2, T, a), targets "
                             f"(M,); got {obs.shape}, {actions.shape}, {np.shape(targets)}")
        t_len = obs.shape[2]
        if t_len > cfg.max_len:
            raise ValueError(f"fit: segments of {t_len} steps exceed max_len {cfg.max_len}")
        x_obs, x_act = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(
            actions, dtype=torch.float32)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        batch = min(cfg.batch_size, m)
        per_epoch = math.ceil(m / batch)
        total = cfg.epochs * per_epoch
        warmup = int(cfg.warmup_fraction * total)
        self.net.train()
        step = 0
        loss_sum, correct, decided = 0.0, 0.0, 0
        for _epoch in range(cfg.epochs):
            order = torch.randperm(m, generator=self.generator)
            loss_sum, correct, decided = 0.0, 0.0, 0
            for start in range(0, m, batch):
                idx = order[start:start + batch]
                b = idx.shape[0]
                for group in self.optimizer.param_groups:
                    group["lr"] = warmup_cosine_lr(cfg.lr, step, total, warmup)
                _, _, score = self.net(x_obs[idx].reshape(2 * b, t_len, -1),
                                       x_act[idx].reshape(2 * b, t_len, -1))
                logits = (score[0::2] - score[1::2]).unsqueeze(0)  # (1, b): left - right
                loss = bradley_terry_loss(logits, y[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                step += 1
                loss_sum += loss.item() * b
                with torch.no_grad():
                    dec = y[idx] != 0.5
                    correct += float((((logits[0] > 0) == (y[idx] > 0.5)) & dec).sum())
                    decided += int(dec.sum())
        self.net.eval()
        self.updates += 1
        self.steps += step
        self.segment_len = t_len
        return {"loss": loss_sum / m, "train_accuracy": correct / decided if decided else 1.0,
                "epochs": float(cfg.epochs)}

    # ------------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict(self, obs: np.ndarray, actions: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray
    ]:
        """Per-step rewards, importance weights and scores of segments (dropout off).

        Args:
            obs: ``(..., T, obs_dim)``; actions: ``(..., T, act_dim)``.

        Returns:
            ``r (..., T)``, ``w (..., T)``, ``score (...)`` (``= sum_t w_t r_t``), float32.
        """
        lead, t_len = obs.shape[:-2], obs.shape[-2]
        flat_obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, t_len, self.obs_dim)
        flat_act = torch.as_tensor(actions, dtype=torch.float32).reshape(-1, t_len, self.act_dim)
        outs = [self.net(flat_obs[i:i + PREDICT_CHUNK], flat_act[i:i + PREDICT_CHUNK])
                for i in range(0, flat_obs.shape[0], PREDICT_CHUNK)]
        r, w, s = (torch.cat(parts) if parts else torch.zeros(0) for parts in zip(*outs,
                                                                                  strict=True))
        return (r.reshape(*lead, t_len).numpy(), w.reshape(*lead, t_len).numpy(),
                s.reshape(lead).numpy())

    def reward(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-step rewards ``r_t`` of segments ``(..., T, dim)`` -> ``(..., T)`` float32 (each
        step in the context of its segment's earlier steps)."""
        return self.predict(obs, actions)[0]

    def importance_weights(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Preference-attention weights ``w_t`` of segments ``(..., T, dim)`` -> ``(..., T)``."""
        return self.predict(obs, actions)[1]

    def preference_probs(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """P[left preferred] of pairs ``(M, 2, T, dim)`` -> ``(1, M)`` (one member)."""
        r, w, _ = self.predict(obs, actions)
        logits = preference_logits(torch.from_numpy(w * r).unsqueeze(0))  # (1, M)
        return torch.sigmoid(logits).numpy()

    def accuracy(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> float:
        """Accuracy on decided pairs ``(M, 2, T, dim)`` with ``targets (M,)``; NaN if none."""
        if obs.shape[0] == 0:
            return float("nan")
        _, _, score = self.predict(obs, actions)
        logits = torch.from_numpy(score[:, 0] - score[:, 1]).unsqueeze(0)
        return float(preference_accuracy(logits, torch.as_tensor(targets))[0])

    def relabel(self, observations: np.ndarray, actions: np.ndarray, ends: np.ndarray,
                window: int | None = None) -> np.ndarray:
        """Each step's reward ``r_t`` at the end of its episode window (``label_mode="last"``).

        Args:
            observations: ``(N, obs_dim)`` a flat dataset in episode order.
            actions: ``(N, act_dim)``.
            ends: ``(N,)`` bool, True at the last step of each episode (terminated or
                truncated; e.g. :func:`rewardlab.algorithms.offline.iql.episode_ends`).
            window: steps per window (default: the segment length of the last fit).

        Returns:
            ``(N,)`` float32 rewards.

        Raises:
            ValueError: if no window is known or it exceeds ``max_len``, or shapes disagree.
        """
        window = window or self.segment_len
        if window is None or not 1 <= window <= self.config.max_len:
            raise ValueError(f"relabel: window {window} must be in [1, {self.config.max_len}] "
                             "(pass one, or fit first)")
        n = observations.shape[0]
        if actions.shape[0] != n or np.shape(ends) != (n,):
            raise ValueError("relabel: observations, actions and ends must have N rows")
        steps = np.arange(n)
        starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])  # first step of episodes
        episode_start = starts[np.searchsorted(starts, steps, side="right") - 1]
        first = np.maximum(episode_start, steps - window + 1)  # first step of each window
        position = steps - first  # where the step sits in its window
        # ``first`` never decreases along the dataset, so each chunk of distinct windows
        # serves one contiguous run of steps
        unique_first, which = np.unique(first, return_inverse=True)
        offsets = np.arange(window)
        out = np.empty(n, dtype=np.float32)
        for c in range(0, unique_first.size, PREDICT_CHUNK):
            idx = np.minimum(unique_first[c:c + PREDICT_CHUNK, None] + offsets, n - 1)
            r, _, _ = self.predict(observations[idx], actions[idx])  # (chunk, window)
            lo, hi = np.searchsorted(which, [c, c + PREDICT_CHUNK])
            out[lo:hi] = r[which[lo:hi] - c, position[lo:hi]]
        return out

    # ------------------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path) -> None:
        """Write ``preference_transformer.safetensors`` (weights, AdamW state, generator) and
        ``preference_transformer.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"opt.{pid}.{name}"] = torch.as_tensor(value).clone()
        tensors["generator_state"] = self.generator.get_state()
        save_file(tensors, str(directory / "preference_transformer.safetensors"))
        meta = {
            "format_version": 1, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "seed": self.seed, "config": self.config.model_dump(mode="json"),
            "updates": self.updates, "steps": self.steps, "segment_len": self.segment_len,
            "param_groups": opt["param_groups"],
        }
        (directory / "preference_transformer.json").write_text(json.dumps(meta, indent=2))

    def load_into(self, directory: str | Path) -> None:
        """Restore a checkpoint of the same architecture into this model.

        Raises:
            RunDirError: if the files are missing or from another format version.
        """
        tensors, meta = _read(directory)
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                pid, name = key[4:].split(".", 1)
                state.setdefault(int(pid), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.generator.set_state(tensors["generator_state"])
        self.updates, self.steps = int(meta["updates"]), int(meta["steps"])
        self.segment_len = meta["segment_len"]

    @classmethod
    def load(cls, directory: str | Path) -> PreferenceTransformer:
        """Rebuild a model saved by :meth:`save`.

        Raises:
            RunDirError: if the files are missing or from another format version.
        """
        _, meta = _read(directory)
        model = cls(meta["obs_dim"], meta["act_dim"],
                    PreferenceTransformerConfig(**meta["config"]), seed=meta["seed"])
        model.load_into(directory)
        return model


def _read(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    directory = Path(directory)
    meta_path = directory / "preference_transformer.json"
    weights_path = directory / "preference_transformer.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise RunDirError(f"{directory}: no preference_transformer.json/.safetensors checkpoint")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != 1:
        raise RunDirError(f"{meta_path}: unsupported format_version {meta.get('format_version')}")
    return load_file(str(weights_path)), meta
