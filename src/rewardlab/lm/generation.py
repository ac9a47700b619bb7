"""Sampling completions, their log-probabilities, and the KL divergence to a reference policy.

Conventions every language-model piece of RewardLab shares:

- A sample is a prompt and the completion the policy generated for it, kept as text and as the
  **generated token ids** (:class:`TextSamples`): re-tokenizing a completion's text can give
  other ids, and the log-probabilities, the KL and the feedback store use the ids.
- A completion ends after the first EOS token, which is kept in its ids (the choice to stop
  has a probability) and dropped from its text; a completion that reached ``max_new_tokens``
  has no EOS.
- Batches are laid out ``[pad ... pad | prompt | completion | pad ... pad]``: prompts
  left-padded, completions right-padded (:meth:`TextSamples.batch`). Position ids count real
  tokens only (``cumsum(attention_mask) - 1``, as ``model.generate`` does), so a sequence's
  log-probabilities do not depend on the padding around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rewardlab.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TextSamples:
    """Completions sampled from a policy, ``n_per_prompt`` per prompt, prompt-major.

    Sample ``i`` answers prompt ``i // n_per_prompt`` of the prompts given to
    :func:`sample_completions`; ``prompts[i]`` repeats that prompt for convenience.

    Attributes:
        prompts: ``N`` prompt texts (``N = n_prompts * n_per_prompt``).
        completions: ``N`` completion texts (special tokens dropped).
        prompt_ids: ``N`` lists of the prompt's token ids (unpadded).
        completion_ids: ``N`` lists of the generated token ids (unpadded; EOS kept if
            generated).
        n_per_prompt: completions per prompt.
        pad_token_id: the id :meth:`batch` pads with.
        eos_token_id: the id that ended completions (``None`` if the tokenizer has none).
    """

    prompts: list[str]
    completions: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    n_per_prompt: int
    pad_token_id: int
    eos_token_id: int | None

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not (len(self.completions) == len(self.prompt_ids) == len(self.completion_ids) == n):
            raise ValueError(
                f"TextSamples: prompts, completions, prompt_ids and completion_ids must have "
                f"the same length, got {n}, {len(self.completions)}, {len(self.prompt_ids)}, "
                f"{len(self.completion_ids)}")
        if self.n_per_prompt < 1 or n % self.n_per_prompt:
            raise ValueError(f"TextSamples: n_per_prompt={self.n_per_prompt} must be >= 1 and "
                             f"divide the number of samples {n}")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def prompt_index(self) -> np.ndarray:
        """``(N,)`` int64: which prompt each sample answers."""
        return np.arange(len(self), dtype=np.int64) // self.n_per_prompt

    @property
    def stopped(self) -> np.ndarray:
        """``(N,)`` bool: whether each completion ended with EOS (else it hit the length cap)."""
        return np.array([bool(c) and c[-1] == self.eos_token_id for c in self.completion_ids],
                        dtype=bool)

    def batch(self, indices: Any = None) -> dict[str, torch.Tensor]:
        """Prompt and completion of each sample as one padded batch.

        Args:
            indices: which samples (default all), anything that indexes a list by position.

        Returns:
            ``input_ids``, ``attention_mask`` and ``completion_mask``, each ``(B, P + C)``
            (``P``/``C``: longest prompt/completion of the selection): ``input_ids`` int64,
            the masks int64 (1 on real tokens / on completion tokens). Prompts are
            left-padded and completions right-padded with ``pad_token_id``.
        """
        rows = range(len(self)) if indices is None else np.arange(len(self))[indices].tolist()
        rows = [rows] if isinstance(rows, int) else list(rows)
        p_len = np.array([len(self.prompt_ids[i]) for i in rows], dtype=np.int64)
        c_len = np.array([len(self.completion_ids[i]) for i in rows], dtype=np.int64)
        width_p, width_c = int(p_len.max(initial=0)), int(c_len.max(initial=0))
        ids = np.full((len(rows), width_p + width_c), self.pad_token_id, dtype=np.int64)
        col = np.arange(width_p + width_c)[None, :]  # (1, P + C)
        prompt_mask = (col >= (width_p - p_len)[:, None]) & (col < width_p)
        completion_mask = (col >= width_p) & (col < (width_p + c_len)[:, None])
        ids[prompt_mask] = np.concatenate([self.prompt_ids[i] for i in rows] or [[]])
        ids[completion_mask] = np.concatenate([self.completion_ids[i] for i in rows] or [[]])
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy((prompt_mask | completion_mask).astype(np.int64)),
            "completion_mask": torch.from_numpy(completion_mask.astype(np.int64)),
        }


def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    n_per_prompt: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> TextSamples:
    """Sample ``n_per_prompt`` completions of each prompt with ``model.generate``.

    The defaults sample from the policy itself (temperature 1, no top-k or top-p truncation):
    what a Monte-Carlo estimate of KL(policy || reference) (:func:`kl_to_reference`) needs.
    Randomness: ``torch.manual_seed(seed)`` inside :func:`torch.random.fork_rng`, so the global
    RNG is left as it was and the same seed, inputs and ``batch_size`` give the same samples.
    The model samples in eval mode (dropout off) and is returned to its mode afterwards.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer; needs a pad token (:func:`~rewardlab.lm.base_model.load_policy`
            sets one).
        prompts: prompt texts; an empty prompt is generated from the BOS (else EOS) token.
        n_per_prompt: completions per prompt.
        max_new_tokens: most tokens per completion.
        temperature: softmax temperature (> 0).
        top_k: keep the ``top_k`` most likely tokens (0: all).
        top_p: nucleus sampling mass (1: all).
        seed: seed of the sampling.
        batch_size: most sequences per ``generate`` call (prompts are not split across calls).

    Returns:
        :class:`TextSamples`, prompt-major.

    Raises:
        ConfigError: naming the argument, on a value out of range or a prompt longer than the
            model's context leaves room for.
    """
    if n_per_prompt < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ConfigError(f"n_per_prompt, max_new_tokens, batch_size: must be >= 1, got "
                          f"{n_per_prompt}, {max_new_tokens}, {batch_size}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature: must be a finite number > 0, got {temperature}")
    if top_k < 0 or not 0 < top_p <= 1:
        raise ConfigError(f"top_k must be >= 0 and top_p in (0, 1], got {top_k}, {top_p}")
    if tokenizer.pad_token_id is None:
        raise ConfigError("tokenizer: has no pad token; load the policy with "
                          "rewardlab.lm.base_model.load_policy or set tokenizer.pad_token")
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else (
        tokenizer.eos_token_id)
    encoded = [list(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    for i, ids in enumerate(encoded):
        if not ids:
            if start_id is None:
                raise ConfigError(f"prompts[{i}]: empty, and the tokenizer has no BOS or EOS "
                                  "token to start from")
            ids.append(start_id)
    limit = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None)
    longest = max((len(ids) for ids in encoded), default=0)
    if limit is not None and longest + max_new_tokens > limit:
        raise ConfigError(f"max_new_tokens: a prompt of {longest} tokens plus {max_new_tokens} "
                          f"new tokens exceeds the model's {limit} positions")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    per_call = max(1, batch_size // n_per_prompt)  # prompts per generate call
    prompt_ids: list[list[int]] = []
    completion_ids: list[list[int]] = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for lo in range(0, len(encoded), per_call):
            chunk = encoded[lo:lo + per_call]
            width = max(len(ids) for ids in chunk)
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk], dtype=torch.int64)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk],
                                dtype=torch.int64)
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens,
                num_return_sequences=n_per_prompt, pad_token_id=pad, eos_token_id=eos,
            )  # (len(chunk) * n_per_prompt, width + generated) int64, prompt-major
            for j, row in enumerate(out[:, width:].tolist()):
                if eos is not None and eos in row:
                    row = row[:row.index(eos) + 1]
                prompt_ids.append(chunk[j // n_per_prompt])
                completion_ids.append(row)
    model.train(was_training)
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return TextSamples(
        prompts=[p for p in prompts for _ in range(n_per_prompt)], completions=texts,
        prompt_ids=[list(p) for p in prompt_ids], completion_ids=completion_ids,
        n_per_prompt=n_per_prompt, pad_token_id=int(pad),
        eos_token_id=None if eos is None else int(eos))


def sequence_logprobs(model: PreTrainedModel, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities of the completion tokens, one forward pass.

    ``log pi(y | x) = sum_t log pi(y_t | x, y_<t)`` over the positions where ``completion_mask``
    is 1 (the first token of a row must not be one: it has no context). Gradients flow if the
    caller has them enabled; wrap in ``torch.no_grad()`` otherwise.

    Args:
        model: a causal LM.
        input_ids: ``(batch, seq_len)`` int64.
        attention_mask: ``(batch, seq_len)`` 0/1, 1 on real tokens (any padding layout).
        completion_mask: ``(batch, seq_len)`` 0/1, 1 on the tokens to score.

    Returns:
        ``(batch,)`` float32.
    """
    attention_mask = attention_mask.long()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # as generate() makes them
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids).logits[:, :-1].float()  # (batch, T - 1, vocab)
    targets = input_ids[:, 1:]  # (batch, T - 1)
    token_lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    scored = completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    # where, not a product: rows of pure padding may hold NaN logits
    return torch.where(scored, token_lp, torch.zeros_like(token_lp)).sum(-1)


def sqrt_kl(kl: float) -> float:
    """Gao et al. 2022's distance ``d = sqrt(KL)`` of a KL estimate (nats -> sqrt-nats).

    A Monte-Carlo KL estimate can be slightly negative (the policy close to its reference);
    the square root of a negative number is undefined, so a negative estimate gives ``d = 0``.
    The estimate itself is always logged unclamped beside it (``eval/kl`` next to
    ``eval/sqrt_kl``), so a negative one stays visible. NaN stays NaN.
    """
    return math.sqrt(max(kl, 0.0)) if not math.isnan(kl) else math.nan


def kl_to_reference(policy: PreTrainedModel, reference: PreTrainedModel, samples: TextSamples,
                    batch_size: int = 64) -> dict[str, Any]:
    """Monte-Carlo estimate of KL(policy || reference) on completions sampled from the policy.

    ``KL = E_{x, y ~ pi}[log pi(y | x) - log pi_ref(y | x)]``, estimated by the mean over
    samples of ``sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)]`` (nats per
    completion). Gao et al. 2022 ("Scaling Laws for Reward Model Overoptimization") measure
    distance from the initial policy by ``d = sqrt(KL)``. Unbiased only if the samples were
    drawn from ``policy`` at temperature 1 without truncation (the defaults of
    :func:`sample_completions`); a finite-sample estimate can be slightly negative: ``kl`` is
    returned as estimated, unclamped, and ``sqrt_kl`` is :func:`sqrt_kl` of it
    (``sqrt(max(kl, 0))``, 0 for a negative estimate). Both models must share the tokenizer.

    Args:
        policy: the policy the samples came from.
        reference: the reference policy (e.g. the base model).
        samples: completions of ``policy``.
        batch_size: sequences per forward pass.

    Returns:
        ``{"kl": float (nats per completion, may be negative), "sqrt_kl": float (>= 0),
        "kl_std_error": float (standard error of the mean; nan for one sample),
        "per_sample": (N,) float64 array, "n": N}``.
    """
    per_sample = np.empty(len(samples), dtype=np.float64)
    modes = policy.training, reference.training
    policy.eval()
    reference.eval()
    try:
        with torch.no_grad():
            for lo in range(0, len(samples), batch_size):
                b = samples.batch(slice(lo, lo + batch_size))
                args = (b["input_ids"], b["attention_mask"], b["completion_mask"])
                diff = sequence_logprobs(policy, *args) - sequence_logprobs(reference, *args)
                per_sample[lo:lo + len(diff)] = diff.double().numpy()
    finally:
        policy.train(modes[0])
        reference.train(modes[1])
    n = len(per_sample)
    kl = float(per_sample.mean()) if n else float("nan")
    return {"kl": kl, "sqrt_kl": sqrt_kl(kl),
            "kl_std_error": float(per_sample.std(ddof=1) / math.sqrt(n)) if n > 1 else
            float("nan"),
            "per_sample": per_sample, "n": n}
