"""Best-of-n sampling against a reward: sample n completions per prompt, keep the best.

Sources: Stiennon et al. 2020, "Learning to summarize from human feedback", App. G.3, and Gao,
Schulman & Hilton 2022, "Scaling Laws for Reward Model Overoptimization", Sec. 2.3 and Eq. (1):
the KL divergence of the best-of-n policy from the base policy is, analytically,

    KL_bon(n) = log n - (n - 1) / n   (nats),

so gold and proxy scores of the chosen completions can be plotted against ``sqrt(KL_bon)`` for
n in {1, 2, 4, ...} without any log-probability (Gao et al. fit ``d (alpha - beta d)`` with
``d = sqrt(KL)``). Ties in the reward go to the first sampled completion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rewardlab.algorithms.lm.common import TextScorer, sample


@dataclass(frozen=True)
class BestOfNConfig:
    """Settings of :func:`best_of_n`."""

    n: int = 4
    """Completions sampled per prompt (>= 1); n = 1 is the base policy itself."""
    max_new_tokens: int = 16
    """Completion length cap in tokens (>= 1)."""
    seed: int = 0
    """Sampling seed."""
    batch_size: int = 64
    """Completions per ``generate`` call."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n: must be >= 1 completion per prompt, got {self.n}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size: must be >= 1")


def kl_best_of_n(n: int) -> float:
    """Analytic ``KL(best-of-n || base) = log n - (n - 1) / n`` in nats (Gao et al. 2022)."""
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


@dataclass(frozen=True)
class BestOfNResult:
    """The chosen completions and what was measured on the way."""

    prompts: list[str]
    """``(P,)`` the prompts."""
    completions: list[str]
    """``(P,)`` the completion with the highest reward for each prompt."""
    rewards: np.ndarray
    """``(P,)`` float32 reward of each chosen completion."""
    all_completions: list[list[str]]
    """``(P, n)`` every sampled completion."""
    all_rewards: np.ndarray
    """``(P, n)`` float32 rewards of every sampled completion."""
    kl: float
    """Analytic KL of the best-of-n policy to the base policy (nats)."""

    @property
    def sqrt_kl(self) -> float:
        """``sqrt(kl)``, the x-axis of Gao et al. 2022's plots."""
        return math.sqrt(self.kl)


def best_of_n(
    model,  # noqa: ANN001 (a transformers causal LM)
    tokenizer,  # noqa: ANN001
    prompts: Sequence[str],
    reward: TextScorer,
    config: BestOfNConfig | None = None,
) -> BestOfNResult:
    """Sample ``config.n`` completions of each prompt and keep the one ``reward`` scores highest.

    Args:
        model: the base policy; tokenizer: its tokenizer.
        prompts: P prompts.
        reward: a text scorer ``(prompts, completions) -> (n,)`` (a proxy reward model, a judge
            or the gold reward), called once on all ``P * n`` completions.
        config: sampling settings.

    Returns:
        :class:`BestOfNResult`. Scoring the chosen completions with a second scorer (gold when
        ``reward`` is a proxy) gives the gold-vs-proxy point at ``sqrt(kl)``.
    """
    config = config or BestOfNConfig()
    n = config.n
    s = sample(model, tokenizer, prompts, n, config.max_new_tokens, config.seed,
               config.batch_size)
    scores = np.asarray(reward(s.prompts, s.completions), dtype=np.float32).reshape(-1, n)
    best = scores.argmax(axis=1)  # (P,), first index on ties
    grid = [s.completions[i * n : (i + 1) * n] for i in range(len(prompts))]
    return BestOfNResult(
        prompts=list(prompts),
        completions=[row[j] for row, j in zip(grid, best, strict=True)],
        rewards=scores[np.arange(len(prompts)), best],
        all_completions=grid,
        all_rewards=scores,
        kl=kl_best_of_n(n),
    )
