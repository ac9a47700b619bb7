"""What the language-model optimisers share: text scorers, sampling, KL to the reference, the
TRL reward adapter and the gold-vs-proxy evaluation callback.

* A **text scorer** is any callable ``(prompts, completions) -> (n,)`` float array: a gold
  reward (e.g. VADER), a judge, or a :class:`~rewardlab.rewards.text_model.TextRewardEnsemble`.
* The **KL** of a policy to its reference is the Monte Carlo estimate on the policy's own
  samples, ``KL(pi || pi_ref) = E_{x, y ~ pi}[log pi(y|x) - log pi_ref(y|x)]`` in nats per
  completion (sequence level, summed over completion tokens, EOS included; Stiennon et al. 2020,
  Gao et al. 2022 plot gold and proxy against ``sqrt(KL)``). It is unbiased; single estimates
  can be slightly negative when the policy is close to the reference.

Sampling and log-probabilities here are local stand-ins for ``rewardlab.lm.generation`` (written
in parallel); they use ``model.generate`` with TRL's sampling defaults (temperature 1, top-k
off, top-p 1) so the KL estimate is of the distribution the trainers sample.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, TrainerCallback

#: ``(prompts, completions) -> (n,)`` float scores of ``n`` completions of their prompts.
TextScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Samples:
    """Sampled completions, one row per completion (prompts repeated ``n`` times each)."""

    prompts: list[str]
    """``(n_total,)`` the prompt of each completion."""
    completions: list[str]
    """``(n_total,)`` decoded completions (special tokens removed)."""
    prompt_ids: torch.Tensor
    """``(n_total, P)`` int64 left-padded prompt token ids."""
    prompt_mask: torch.Tensor
    """``(n_total, P)`` int64 attention mask of the prompts."""
    completion_ids: torch.Tensor
    """``(n_total, C)`` int64 sampled token ids (padding after the first EOS)."""
    completion_mask: torch.Tensor
    """``(n_total, C)`` int64, 1 up to and including the first EOS."""


def completion_mask(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """``(n, C)`` int64 mask of the tokens up to and including each row's first EOS."""
    is_eos = (ids == eos_token_id).long()
    return ((is_eos.cumsum(dim=1) - is_eos) == 0).long()


@torch.no_grad()
def sample(
    model,  # noqa: ANN001 (a transformers causal LM)
    tokenizer,  # noqa: ANN001
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 64,
) -> Samples:
    """Sample ``n`` completions of each prompt (batched ``model.generate``, temperature 1).

    The global torch RNG is seeded inside ``torch.random.fork_rng`` and restored afterwards, so
    the caller's random streams are untouched. The model is put in eval mode and restored.

    Args:
        model: a causal LM; tokenizer: its tokenizer (a pad token is required).
        prompts: P prompts; n: completions per prompt (rows ``i*n .. i*n+n-1`` are prompt i's).
        max_new_tokens: completion length cap (tokens); seed: the sampling seed.
        batch_size: completions per ``generate`` call.

    Returns:
        :class:`Samples` with ``P * n`` rows.
    """
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_config = GenerationConfig(
        do_sample=True, max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
        pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    rows = [p for p in prompts for _ in range(n)]
    enc = tokenizer(rows, padding=True, return_tensors="pt")
    tokenizer.padding_side = side
    outs = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            ids = enc["input_ids"][start : start + batch_size]
            mask = enc["attention_mask"][start : start + batch_size]
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config)
            outs.append(out[:, ids.shape[1]:])
    model.train(was_training)
    width = max(o.shape[1] for o in outs)
    comp = torch.cat([torch.nn.functional.pad(o, (0, width - o.shape[1]), value=pad)
                      for o in outs])
    cmask = completion_mask(comp, tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(comp.masked_fill(cmask == 0, pad), skip_special_tokens=True)
    return Samples(rows, texts, enc["input_ids"], enc["attention_mask"], comp, cmask)


@torch.no_grad()
def completion_logprobs(model, samples: Samples, batch_size: int = 64) -> torch.Tensor:  # noqa: ANN001
    """``log pi(y|x)`` of each sampled completion under ``model``, summed over its tokens.

    Positions follow the attention mask (as ``generate`` numbers them for left-padded prompts).

    Returns:
        ``(n_total,)`` float64 log-probabilities (nats).
    """
    was_training = model.training
    model.eval()
    ids = torch.cat([samples.prompt_ids, samples.completion_ids], dim=1)
    mask = torch.cat([samples.prompt_mask, samples.completion_mask], dim=1)
    p_len = samples.prompt_ids.shape[1]
    if p_len == 0:
        raise ValueError("prompts: log-probabilities need a non-empty prompt")
    out = []
    for start in range(0, ids.shape[0], batch_size):
        i, m = ids[start : start + batch_size], mask[start : start + batch_size]
        pos = (m.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=i, attention_mask=m, position_ids=pos).logits  # (b, L, V)
        logp = torch.log_softmax(logits[:, p_len - 1 : -1].double(), dim=-1)  # (b, C, V)
        tok = logp.gather(-1, i[:, p_len:, None]).squeeze(-1)  # (b, C)
        out.append((tok * m[:, p_len:]).sum(dim=1))
    model.train(was_training)
    return torch.cat(out)


def text_logprobs(
    model,  # noqa: ANN001
    tokenizer,  # noqa: ANN001
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 64,
) -> torch.Tensor:
    """``log pi(completion | prompt)`` of given texts, ``(n,)`` float64 nats (every completion
    token counts, special tokens written in the text included, e.g. a trailing EOS)."""
    side = tokenizer.padding_side
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        tokenizer.padding_side = "left"
        p = tokenizer(list(prompts), padding=True, return_tensors="pt", add_special_tokens=False)
        tokenizer.padding_side = "right"
        c = tokenizer(list(completions), padding=True, return_tensors="pt",
                      add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    ids = c["input_ids"].masked_fill(c["attention_mask"] == 0, pad)
    samples = Samples(list(prompts), list(completions), p["input_ids"], p["attention_mask"],
                      ids, c["attention_mask"])
    return completion_logprobs(model, samples, batch_size)


def kl_to_reference(policy, reference, samples: Samples) -> float:  # noqa: ANN001
    """Monte Carlo ``KL(policy || reference)`` in nats per completion on the policy's samples."""
    diff = completion_logprobs(policy, samples) - completion_logprobs(reference, samples)
    return float(diff.mean())


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
    ``proxy`` (means over samples), ``gold_std``, ``proxy_std``, ``kl`` (nats per completion),
    ``sqrt_kl`` (``sqrt(max(kl, 0))``), ``trl_kl`` (NaN if none; TRL's is a per-token mean, not
    per completion), ``beta`` (the trainer's KL coefficient, NaN if it has none) and
    ``disagreement`` (mean over samples of the std of ensemble member scores, NaN without
    ``member_scores``).

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
        self.rows: list[dict[str, float]] = []
        self._last_step = -1

    def evaluate(self, model, step: int, log_history: Sequence[dict] = (),  # noqa: ANN001
                 beta: float = math.nan) -> dict[str, float]:
        """Sample, score and measure the KL now; append and return the row."""
        s = sample(model, self.tokenizer, self.prompts, self.samples_per_prompt,
                   self.max_new_tokens, self.seed)
        gold = np.asarray(self.gold(s.prompts, s.completions), dtype=np.float64)
        proxy = np.asarray(self.proxy(s.prompts, s.completions), dtype=np.float64)
        kl = kl_to_reference(model, self.reference, s)
        trl_kl = next((float(r["kl"]) for r in reversed(log_history) if "kl" in r), math.nan)
        disagreement = math.nan
        if self.member_scores is not None:
            disagreement = float(np.asarray(self.member_scores(s.prompts, s.completions))
                                 .std(axis=0).mean())
        row = {"step": float(step), "gold": float(gold.mean()), "proxy": float(proxy.mean()),
               "gold_std": float(gold.std()), "proxy_std": float(proxy.std()), "kl": kl,
               "sqrt_kl": math.sqrt(max(kl, 0.0)), "trl_kl": trl_kl, "beta": beta,
               "disagreement": disagreement, "samples": float(len(s.completions))}
        self.rows.append(row)
        self._last_step = step
        if self.jsonl_path is not None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
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
