"""What the language-model optimisers share: text scorers, sampling, KL to the reference, the
TRL settings every trainer takes (:class:`TRLSettings`, :func:`trl_config_kwargs`), the TRL
reward adapter and the gold-vs-proxy evaluation callback.

* A **text scorer** is any callable ``(prompts, completions) -> (n,)`` float array: a gold
  reward (e.g. VADER), a judge, or a :class:`~rewardlab.rewards.text_model.TextRewardEnsemble`.
* The **KL** of a policy to its reference is the Monte Carlo estimate on the policy's own
  samples, ``KL(pi || pi_ref) = E_{x, y ~ pi}[log pi(y|x) - log pi_ref(y|x)]`` in nats per
  completion (sequence level, summed over completion tokens, EOS included; Stiennon et al. 2020,
  Gao et al. 2022 plot gold and proxy against ``sqrt(KL)``). It is unbiased; single estimates
  can be slightly negative when the policy is close to the reference.

Sampling, log-probabilities and the KL are :mod:`rewardlab.lm.generation`'s
(:func:`~rewardlab.lm.generation.sample_completions` at TRL's sampling defaults: temperature 1,
top-k off, top-p 1, so the KL estimate is of the distribution the trainers sample).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from rewardlab.lm.generation import (
    TextSamples,
    kl_to_reference,
    sample_completions,
    sequence_logprobs,
    sqrt_kl,
)

#: ``(prompts, completions) -> (n,)`` float scores of ``n`` completions of their prompts.
TextScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class TRLSettings:
    """The TRL plumbing every optimiser's settings share (named as in TRL); the settings of
    :func:`~rewardlab.algorithms.lm.grpo.train_online_rl` and of the DPO trainers
    (:class:`~rewardlab.algorithms.lm.grpo.OnlineRLConfig`,
    :class:`~rewardlab.algorithms.lm.dpo.DPOSettings`) inherit these fields (keyword-only) and
    :func:`trl_config_kwargs` turns them into TRL config arguments.

    Raises:
        ValueError: naming ``logging_steps`` if it is below 1.
    """

    seed: int = 0
    """Seeds TRL (``transformers.set_seed``) and the data order (``data_seed``)."""
    logging_steps: int = 1
    """TRL logging cadence in optimiser steps (its ``log_history``)."""
    bf16: bool = False
    """bfloat16 autocast (TRL's default is on). Off here: it rounds the log-probabilities the
    sample-based KL is computed from (a GRPO policy equal to its reference showed KL = 0.0015
    nats instead of 0), and with gradient checkpointing it was not faster on the tiny test
    model (20 GRPO steps: 1.55/1.63 s CPU with TRL's defaults, 1.50/1.17 s without)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (TRL's default is on; it only saves memory)."""
    extra_trl_args: dict = field(default_factory=dict)
    """Further fields of the TRL config, passed as is (they override the ones set from these
    settings, e.g. ``max_steps``, ``save_strategy``/``save_steps`` for checkpoints)."""

    def __post_init__(self) -> None:
        if self.logging_steps < 1:
            raise ValueError(f"logging_steps: must be >= 1, got {self.logging_steps}")


def trl_config_kwargs(settings: TRLSettings, output_dir: str | Path,
                      **method_args: Any) -> dict[str, Any]:
    """The keyword arguments of a TRL config (``GRPOConfig``, ``DPOConfig``, ...): the
    method's own ``method_args``, the plumbing of ``settings`` (CPU, no ``report_to``, no
    checkpoint saving, no progress bar, one data-loader process, seeded, float32 unless
    ``settings.bf16``), then ``settings.extra_trl_args``, which override both."""
    plumbing = dict(
        output_dir=str(output_dir), seed=settings.seed, data_seed=settings.seed,
        logging_steps=settings.logging_steps, bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing, use_cpu=True, report_to=[],
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    return {**method_args, **plumbing, **settings.extra_trl_args}


def sample(
    model,  # noqa: ANN001 (a transformers causal LM)
    tokenizer,  # noqa: ANN001
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 64,
) -> TextSamples:
    """Sample ``n`` completions of each prompt at temperature 1, untruncated:
    :func:`rewardlab.lm.generation.sample_completions` (rows ``i*n .. i*n+n-1`` are prompt
    ``i``'s; the global RNG and the model's mode are left as they were)."""
    return sample_completions(model, tokenizer, list(prompts), n_per_prompt=n,
                              max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)


@torch.no_grad()
def text_logprobs(
    model,  # noqa: ANN001
    tokenizer,  # noqa: ANN001
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 64,
) -> torch.Tensor:
    """``log pi(completion | prompt)`` of given texts, ``(n,)`` float32 nats (every completion
    token counts, special tokens written in the text included, e.g. a trailing EOS), through
    :func:`rewardlab.lm.generation.sequence_logprobs`.

    Raises:
        ValueError: if a prompt encodes to no token (the first completion token needs context).
    """
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    if any(not ids for ids in p_ids):
        raise ValueError("prompts: log-probabilities need a non-empty prompt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples = TextSamples(list(prompts), list(completions), [list(i) for i in p_ids],
                          [list(i) for i in c_ids], 1, int(pad), tokenizer.eos_token_id)
    was_training = model.training
    model.eval()
    out = []
    for lo in range(0, len(samples), batch_size):
        b = samples.batch(slice(lo, lo + batch_size))
        out.append(sequence_logprobs(model, b["input_ids"], b["attention_mask"],
                                     b["completion_mask"]))
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


class TRLReward:
    """A text scorer in the form TRL's trainers call: ``f(prompts=, completions=, **kw)``.

    ``GRPOTrainer``/``RLOOTrainer``/``OnlineDPOTrainer`` (TRL 1.16, ``_calculate_rewards``) call
    custom reward functions as ``reward_func(prompts=..., completions=...,
    completion_ids=..., trainer_state=..., **dataset_columns)`` and expect a list of floats
    (``None`` for "no reward"); the name logged (``rewards/<name>/mean``) is ``__name__``.

    Args:
        scorer: the text scorer; name: the name TRL logs.
    """

    def __init__(self, scorer: TextScorer, name: str = "proxy") -> None:
        self.scorer = scorer
        self.__name__ = name

    def __call__(self, prompts: list[str], completions: list[str], **kwargs) -> list[float]:
        return [float(x) for x in np.asarray(self.scorer(prompts, completions)).reshape(-1)]


class GoldProxyCallback(TrainerCallback):
    """Evaluate gold and proxy scores of the same fresh samples and the KL to the reference.

    At step 0 (train begin), every ``every`` optimiser steps and at the end, it samples
    ``samples_per_prompt`` completions of each held-out prompt from the current policy (fixed
    ``seed``: the same random numbers at every evaluation), scores them with the gold and the
    proxy scorer, and estimates ``KL(policy || reference)`` on them (:func:`kl_to_reference`),
    whatever the trainer's KL coefficient. The last KL that TRL logged (``kl``, GRPO/RLOO with
    ``beta > 0``) is copied as ``trl_kl``.

    Rows (``self.rows``, and one JSON line each in ``jsonl_path`` if given): ``step``, ``gold``,
    ``proxy`` (means over samples), ``gold_std``, ``proxy_std``, ``kl`` (nats per completion:
    the Monte-Carlo estimate as is, unclamped, so it may be slightly negative near the
    reference), ``sqrt_kl`` (:func:`~rewardlab.lm.generation.sqrt_kl`: ``sqrt(max(kl, 0))``, 0
    for a negative estimate, whose square root is undefined), ``trl_kl`` (NaN if none; TRL's
    is a per-token mean, not per completion), ``beta`` (the trainer's KL coefficient, NaN if
    it has none) and ``disagreement`` (mean over samples of the std of ensemble member scores,
    NaN without ``member_scores``), ``samples`` (completions scored) and
    ``completion_tokens`` (their mean length in tokens, EOS included).

    Args:
        tokenizer: the policy's tokenizer.
        reference: the frozen reference policy (the model training started from).
        prompts: held-out prompts.
        gold: the gold scorer (never shown to the learner); proxy: the scorer being optimised.
        every: evaluation cadence in optimiser steps (>= 1).
        samples_per_prompt, max_new_tokens, seed: sampling settings.
        member_scores: optional ``(prompts, completions) -> (K, n)`` member scores, e.g.
            ``TextRewardEnsemble.score``.
        jsonl_path: optional file the rows are appended to.
        on_row: optional function called with each row once it is made (e.g. a training
            loop's logger and over-optimisation alarm).
    """

    def __init__(
        self,
        tokenizer,  # noqa: ANN001
        reference,  # noqa: ANN001
        prompts: Sequence[str],
        gold: TextScorer,
        proxy: TextScorer,
        every: int = 10,
        samples_per_prompt: int = 4,
        max_new_tokens: int = 16,
        seed: int = 0,
        member_scores: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None,
        jsonl_path: str | Path | None = None,
        on_row: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every: must be >= 1 optimiser step, got {every}")
        if not prompts:
            raise ValueError("prompts: need at least one held-out prompt to evaluate on")
        self.tokenizer = tokenizer
        self.reference = reference.eval()
        self.prompts = list(prompts)
        self.gold, self.proxy, self.member_scores = gold, proxy, member_scores
        self.every = every
        self.samples_per_prompt, self.max_new_tokens, self.seed = (
            samples_per_prompt, max_new_tokens, seed)
        self.jsonl_path = Path(jsonl_path) if jsonl_path is not None else None
        self.on_row = on_row
        self.rows: list[dict[str, float]] = []
        self._last_step = -1

    def evaluate(self, model, step: int, log_history: Sequence[dict] = (),  # noqa: ANN001
                 beta: float = math.nan) -> dict[str, float]:
        """Sample, score and measure the KL now; append and return the row."""
        s = sample(model, self.tokenizer, self.prompts, self.samples_per_prompt,
                   self.max_new_tokens, self.seed)
        gold = np.asarray(self.gold(s.prompts, s.completions), dtype=np.float64)
        proxy = np.asarray(self.proxy(s.prompts, s.completions), dtype=np.float64)
        kl = kl_to_reference(model, self.reference, s)["kl"]  # unclamped
        trl_kl = next((float(r["kl"]) for r in reversed(log_history) if "kl" in r), math.nan)
        disagreement = math.nan
        if self.member_scores is not None:
            disagreement = float(np.asarray(self.member_scores(s.prompts, s.completions))
                                 .std(axis=0).mean())
        row = {"step": float(step), "gold": float(gold.mean()), "proxy": float(proxy.mean()),
               "gold_std": float(gold.std()), "proxy_std": float(proxy.std()), "kl": kl,
               "sqrt_kl": sqrt_kl(kl), "trl_kl": trl_kl, "beta": beta,
               "disagreement": disagreement, "samples": float(len(s.completions)),
               "completion_tokens": float(np.mean([len(c) for c in s.completion_ids]))}
        self.rows.append(row)
        self._last_step = step
        if self.jsonl_path is not None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if self.on_row is not None:
            self.on_row(row)
        return row

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, D102
        if state.global_step == 0:
            self.evaluate(model, 0, beta=_beta(args))

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, D102
        if state.global_step % self.every == 0:
            self.evaluate(model, state.global_step, state.log_history, _beta(args))

    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, D102
        if state.global_step != self._last_step:
            self.evaluate(model, state.global_step, state.log_history, _beta(args))


def _beta(args) -> float:  # noqa: ANN001
    """The KL coefficient of a TRL config (OnlineDPO keeps a per-epoch list: its last)."""
    beta = getattr(args, "beta", math.nan)
    return float(beta[-1] if isinstance(beta, (list, tuple)) else beta)
