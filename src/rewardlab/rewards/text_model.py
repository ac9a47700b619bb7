"""A Bradley-Terry reward-model ensemble for text, on a causal language model's backbone.

Sources: Christiano et al. 2017, "Deep reinforcement learning from human preferences", Eq. (1)
(the Bradley-Terry preference model and its cross-entropy with soft labels); Ouyang et al. 2022,
"Training language models to follow instructions with human feedback", Sec. 3.5 (a language
model with its unembedding replaced by a scalar head, read at the last token); Coste et al. 2023,
"Reward Model Ensembles Help Mitigate Overoptimization" (ensembles of fine-tuned reward models,
conservative reductions ``mean - k * std`` (UWO) and ``min`` (WCO)).

Design (one code path with the control track):

* The **loss** is :func:`rewardlab.rewards.bradley_terry.bradley_terry_loss`, not TRL's
  ``RewardTrainer``. ``RewardTrainer`` (TRL 1.16, ``trl/trainer/reward_trainer.py``) trains one
  model on hard ``chosen``/``rejected`` pairs with ``-logsigmoid(r_c - r_r)``: it has no soft
  target (an EQUAL answer, P = 0.5) and no ensemble. The existing loss is the cross-entropy
  against P[left preferred] summed over members, shared with the control reward models.
* A text's **return** is the scalar head's output at its last non-pad token (the last position
  where the attention mask is 1; inputs are right-padded): a segment with a single step, so
  ``preference_logits(rewards[..., None])`` is ``R_left - R_right`` exactly as for clips.
* **Members** are K complete models (backbone copy + linear head), all fine-tuned. On a backbone
  of about a million parameters K copies are affordable on CPU, and fine-tuned members are what
  Coste et al. 2023 ensemble; a shared frozen backbone would make members differ only in a linear
  head and understate disagreement. The members start from the *same* pretrained backbone (there
  is one here) and differ by head initialisation and by each member's own shuffle of the pairs
  every epoch (PEBBLE's bootstrapped order), so their disagreement is a lower bound on the
  uncertainty of independently pretrained members. Members run one after another (a Python loop
  over K, not over pairs); each member's forward is batched over ``(batch * 2, seq)``.
* **Normalisation** (optional): :meth:`TextRewardEnsemble.normalize_on` measures the mean and
  standard deviation of the reduced score on a reference sample (e.g. the base policy's
  completions); :meth:`TextRewardEnsemble.reward` then returns ``(reduced - mean) / std``, so a
  policy optimiser sees rewards of unit scale at the reference. :meth:`score` is never normalised.

The fitting loop is :mod:`rewardlab.rewards.text_fit` (:meth:`TextRewardEnsemble.fit`) and the
held-out checks (accuracy, calibration, disagreement) :mod:`rewardlab.rewards.text_eval`
(:meth:`TextRewardEnsemble.evaluate`); this module is the ensemble itself: members, scores,
reductions, normalisation and checkpoints.

Checkpoints are ``text_reward.safetensors`` (every member's weights), ``text_reward.json``
(config, normalisation), ``backbone/config.json`` and ``tokenizer/`` (``tokenizer.json``): no
pickle.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rewardlab.errors import RunDirError
from rewardlab.rewards.bradley_terry import bradley_terry_loss, preference_logits
from rewardlab.rewards.text_eval import evaluate_ensemble
from rewardlab.rewards.text_fit import fit_ensemble

Reduction = Literal["mean", "min", "mean_minus_std"]
#: ``(prompt, left completion, right completion)``; the label says which completion is preferred.
TextPair = tuple[str, str, str]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TextRewardConfig:
    """Architecture and prediction settings of a :class:`TextRewardEnsemble`."""

    members: int = 3
    """Ensemble size K (>= 1): independently initialised and shuffled, fine-tuned models."""
    max_length: int = 64
    """Tokens of ``prompt + completion`` read per text; longer texts lose their *beginning*
    (left truncation), so the completion's end, where the return is read, is always seen."""
    reduction: Reduction = "mean"
    """How :meth:`TextRewardEnsemble.reward` combines members: ``mean``, ``min`` (WCO) or
    ``mean_minus_std`` (UWO, ``mean - k_std * std``; Coste et al. 2023)."""
    k_std: float = 1.0
    """The k of ``mean_minus_std`` (>= 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay of :meth:`TextRewardEnsemble.fit`."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip per member (as ``transformers.Trainer``'s default); 0 disables."""
    predict_batch_size: int = 64
    """Texts per forward pass in :meth:`TextRewardEnsemble.score`."""

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members: must be >= 1, got {self.members}")
        if self.max_length < 2:
            raise ValueError(f"max_length: must be >= 2 tokens, got {self.max_length}")
        if self.reduction not in ("mean", "min", "mean_minus_std"):
            raise ValueError(
                f"reduction: must be 'mean', 'min' or 'mean_minus_std', got {self.reduction!r}"
            )
        if self.k_std < 0:
            raise ValueError(f"k_std: must be >= 0, got {self.k_std}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm: must be >= 0")
        if self.predict_batch_size < 1:
            raise ValueError(f"predict_batch_size: must be >= 1, got {self.predict_batch_size}")


def reduce_scores(
    scores: np.ndarray, how: Reduction = "mean", k: float = 1.0
) -> np.ndarray:
    """Combine member scores into one score per text (Coste et al. 2023).

    Args:
        scores: ``(members, n)`` float member scores.
        how: ``"mean"``; ``"min"``: the smallest member (worst-case optimisation, WCO);
            ``"mean_minus_std"``: ``mean - k * std`` over members, ddof 0 (uncertainty-weighted
            optimisation, UWO).
        k: the std multiplier of ``mean_minus_std`` (ignored otherwise).

    Returns:
        ``(n,)`` float32.

    Raises:
        ValueError: if ``scores`` is not 2-D or ``how`` is unknown.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected shape (members, n), got {scores.shape}")
    if how == "min":
        return scores.min(axis=0).astype(np.float32)
    if how == "mean":
        return scores.mean(axis=0).astype(np.float32)
    if how == "mean_minus_std":
        return (scores.mean(axis=0) - k * scores.std(axis=0)).astype(np.float32)
    raise ValueError(f"how: must be 'mean', 'min' or 'mean_minus_std', got {how!r}")


class _Member(nn.Module):
    """One ensemble member: a transformer backbone and a linear scalar head."""

    def __init__(self, backbone: nn.Module, hidden: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scores ``(N,)`` float32 of right-padded texts ``ids``/``mask`` ``(N, L)`` int64: the
        head's output at each text's last attended position."""
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # (N, L, H)
        last = mask.sum(dim=1) - 1  # (N,)
        pooled = hidden[torch.arange(ids.shape[0]), last]  # (N, H)
        return self.head(pooled).squeeze(-1)


def _disable_dropout(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


class TextRewardEnsemble:
    """K fine-tuned reward models ``r_k(prompt + completion) -> float`` trained on preferences.

    Build with :meth:`from_base` (a ``save_pretrained`` causal-LM directory; its backbone is
    read with ``transformers.AutoModel``) or :meth:`load`.

    Args:
        members: the K members (backbone + head each).
        tokenizer: a ``transformers`` tokenizer; it is set to right padding and left truncation
            and given the EOS token as padding if it has none.
        config: settings.
        backbone_config: the backbone's ``PretrainedConfig`` (saved with the checkpoint).
    """

    def __init__(
        self,
        members: nn.ModuleList,
        tokenizer,  # noqa: ANN001 (a transformers PreTrainedTokenizerBase)
        config: TextRewardConfig,
        backbone_config,  # noqa: ANN001 (a transformers PretrainedConfig)
    ) -> None:
        if len(members) != config.members:
            raise ValueError(f"members: got {len(members)} modules for config.members="
                             f"{config.members}")
        self.members = members
        self.config = config
        self.backbone_config = backbone_config
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.reward_mean = 0.0
        self.reward_std = 1.0

    @classmethod
    def from_base(
        cls, base_path: str | Path, config: TextRewardConfig | None = None, seed: int = 0
    ) -> TextRewardEnsemble:
        """K copies of the backbone of the causal LM saved in ``base_path``, each with a new
        linear head (``nn.Linear`` default init drawn from a generator seeded with ``seed + k``).

        Raises:
            RunDirError: if ``base_path`` holds no model/tokenizer ``transformers`` can read.
        """
        from transformers import AutoModel, AutoTokenizer

        config = config or TextRewardConfig()
        try:
            backbone = AutoModel.from_pretrained(str(base_path), dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(base_path))
        except (OSError, ValueError) as err:
            raise RunDirError(f"{base_path}: not a transformers model directory ({err})") from err
        _disable_dropout(backbone)
        hidden = backbone.config.get_text_config().hidden_size
        members = nn.ModuleList()
        for k in range(config.members):
            member = _Member(copy.deepcopy(backbone), hidden)
            gen = torch.Generator().manual_seed(seed + k)
            bound = 1.0 / math.sqrt(hidden)
            nn.init.uniform_(member.head.weight, -bound, bound, generator=gen)
            nn.init.uniform_(member.head.bias, -bound, bound, generator=gen)
            members.append(member)
        return cls(members, tokenizer, config, backbone.config)

    # ------------------------------------------------------------------ tensors
    def tokenize_pairs(self, pairs: Sequence[TextPair]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of ``prompt + left`` and ``prompt + right`` for each pair.

        Returns:
            ``ids, mask``: ``(N, 2, L)`` int64, right-padded to the longest text (at most
            ``config.max_length`` tokens, left-truncated); index 0 on dim 1 is the left text.
        """
        texts = [t for p, a, b in pairs for t in (p + a, p + b)]
        ids, mask = self._tokenize(texts)
        return ids.reshape(len(pairs), 2, -1), mask.reshape(len(pairs), 2, -1)

    def _tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.config.max_length, return_tensors="pt")
        mask = enc["attention_mask"]
        if bool((mask.sum(dim=1) == 0).any()):
            raise ValueError("texts: an empty text has no token to read a reward at")
        return enc["input_ids"], mask

    def pair_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, member_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Bradley-Terry logits ``R_left - R_right`` of every member.

        Args:
            ids: ``(N, 2, L)`` int64 token ids, right-padded; mask: ``(N, 2, L)`` int64.
            member_index: optional ``(K, b)`` int64: member k reads pairs ``member_index[k]``
                (its own shuffle); all members read all N pairs when ``None``.

        Returns:
            ``(K, b)`` float32 logits (``b = N`` without ``member_index``), through
            :func:`~rewardlab.rewards.bradley_terry.preference_logits` on one-step segments.
        """
        returns = []
        for k, member in enumerate(self.members):
            sel = slice(None) if member_index is None else member_index[k]
            i, m = ids[sel], mask[sel]  # (b, 2, L)
            width = int(m.sum(dim=-1).max())  # drop the padding common to these pairs
            r = member(i[..., :width].reshape(-1, width), m[..., :width].reshape(-1, width))
            returns.append(r.reshape(-1, 2))  # (b, 2)
        step_rewards = torch.stack(returns)[..., None]  # (K, b, 2, T=1)
        return preference_logits(step_rewards)

    def loss(self, pairs: Sequence[TextPair], targets: np.ndarray) -> torch.Tensor:
        """The Bradley-Terry cross-entropy of all members on pairs (with gradient).

        Args:
            pairs: N ``(prompt, left, right)``; targets: ``(N,)`` float P[left preferred].

        Returns:
            Scalar tensor ``sum_k mean_n CE_k,n`` (:func:`bradley_terry_loss`).
        """
        ids, mask = self.tokenize_pairs(pairs)
        logits = self.pair_logits(ids, mask)
        return bradley_terry_loss(logits, torch.as_tensor(targets, dtype=torch.float32))

    def chunked_pair_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`pair_logits` of every member on all N pairs, ``predict_batch_size // 2`` pairs
        per forward pass: ``(N, 2, L)`` int64 ids and mask -> ``(K, N)`` float32."""
        step = max(1, self.config.predict_batch_size // 2)
        return torch.cat([self.pair_logits(ids[i : i + step], mask[i : i + step])
                          for i in range(0, ids.shape[0], step)], dim=1)

    # ------------------------------------------------------------------ training
    #: Fine-tune every member on labelled pairs (AdamW, constant learning rate):
    #: :func:`rewardlab.rewards.text_fit.fit_ensemble` as a method,
    #: ``ensemble.fit(pairs, targets, epochs=3, batch_size=32, lr=1e-4, seed=0,
    #: val_fraction=0.1)`` -> one row of losses and accuracies per epoch.
    fit = fit_ensemble

    # ---------------------------------------------------------------- prediction
    @torch.inference_mode()
    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Every member's raw score of each ``prompt + completion``.

        Args:
            prompts: n prompts; completions: n completions.

        Returns:
            ``(members, n)`` float32 (unnormalised).

        Raises:
            ValueError: if the lengths differ or a text is empty.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"prompts ({len(prompts)}) and completions ({len(completions)}) "
                             "must have the same length")
        self.members.eval()
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        out = np.zeros((self.config.members, len(texts)), dtype=np.float32)
        step = self.config.predict_batch_size
        for start in range(0, len(texts), step):
            ids, mask = self._tokenize(texts[start : start + step])
            for k, member in enumerate(self.members):
                out[k, start : start + ids.shape[0]] = member(ids, mask).float().numpy()
        return out

    @staticmethod
    def reduce(scores: np.ndarray, how: Reduction = "mean", k: float = 1.0) -> np.ndarray:
        """:func:`reduce_scores`: ``(members, n)`` -> ``(n,)`` by mean, min or mean - k std."""
        return reduce_scores(scores, how, k)

    def normalize_on(self, prompts: Sequence[str], completions: Sequence[str]) -> None:
        """Measure the mean and std of the reduced score (``config.reduction``) on a reference
        sample, e.g. the base policy's completions; :meth:`reward` subtracts and divides by them.
        """
        reduced = self.reduce(self.score(prompts, completions), self.config.reduction,
                              self.config.k_std)
        self.reward_mean = float(reduced.mean())
        self.reward_std = float(max(reduced.std(), 1e-6))

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """The proxy reward an optimiser sees: members reduced by ``config.reduction``, then
        standardised with the statistics of :meth:`normalize_on` (identity until it is called).

        Returns:
            ``(n,)`` float32.
        """
        reduced = self.reduce(self.score(prompts, completions), self.config.reduction,
                              self.config.k_std)
        return ((reduced - self.reward_mean) / self.reward_std).astype(np.float32)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """Same as :meth:`reward` (a text scorer ``(prompts, completions) -> (n,)``)."""
        return self.reward(prompts, completions)

    @torch.inference_mode()
    def preference_logits(self, pairs: Sequence[TextPair]) -> torch.Tensor:
        """Each member's ``R_left - R_right``, ``(members, N)`` float32."""
        self.members.eval()
        ids, mask = self.tokenize_pairs(pairs)
        return self.chunked_pair_logits(ids, mask)

    def preference_probs(self, pairs: Sequence[TextPair]) -> np.ndarray:
        """Each member's P[left preferred] ``(members, N)`` float32 (Christiano et al. Eq. 1)."""
        return torch.sigmoid(self.preference_logits(pairs)).numpy()

    #: Accuracy, calibration and disagreement on labelled pairs (NaN targets ignored):
    #: :func:`rewardlab.rewards.text_eval.evaluate_ensemble` as a method,
    #: ``ensemble.evaluate(pairs, targets, n_bins=10)`` ->
    #: :class:`~rewardlab.rewards.text_eval.PreferenceMetrics`.
    evaluate = evaluate_ensemble

    # --------------------------------------------------------------- checkpoints
    def save(self, directory: str | Path) -> None:
        """Write ``text_reward.safetensors``, ``text_reward.json`` and ``tokenizer/``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"member{k}.{name}": t.detach().cpu().contiguous()
                   for k, m in enumerate(self.members) for name, t in m.state_dict().items()}
        save_file(tensors, str(directory / "text_reward.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config),
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
        }
        (directory / "text_reward.json").write_text(json.dumps(meta, indent=2))
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        self.backbone_config.save_pretrained(str(directory / "backbone"))

    @classmethod
    def load(cls, directory: str | Path) -> TextRewardEnsemble:
        """Rebuild an ensemble written by :meth:`save`.

        Raises:
            RunDirError: if files are missing or of another format version.
        """
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = Path(directory)
        meta_path = directory / "text_reward.json"
        weights = directory / "text_reward.safetensors"
        if not meta_path.exists() or not weights.exists():
            raise RunDirError(f"{directory}: no text_reward.json/.safetensors checkpoint")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise RunDirError(f"{meta_path}: unsupported format_version "
                              f"{meta.get('format_version')}")
        config = TextRewardConfig(**meta["config"])
        backbone_config = AutoConfig.from_pretrained(str(directory / "backbone"))
        hidden = backbone_config.get_text_config().hidden_size
        tensors = load_file(str(weights))
        members = nn.ModuleList()
        for k in range(config.members):
            backbone = AutoModel.from_config(backbone_config, dtype=torch.float32)
            member = _Member(backbone, hidden)
            prefix = f"member{k}."
            member.load_state_dict(
                {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)})
            _disable_dropout(member)
            members.append(member.eval())
        model = cls(members, AutoTokenizer.from_pretrained(str(directory / "tokenizer")),
                    config, backbone_config)
        model.reward_mean = float(meta["reward_mean"])
        model.reward_std = float(meta["reward_std"])
        return model
