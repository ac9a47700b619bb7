"""Active query selection over an oversampled candidate pool, and the feedback schedule.

Methods (Lee et al. 2021, "PEBBLE", Sec. 4.2 / App. B; Christiano et al. 2017, Sec. 2.2.4):

- ``uniform``: queries drawn uniformly from the pool.
- ``disagreement``: the pool's queries with the largest standard deviation over ensemble
  members of P[left preferred].
- ``entropy``: the largest entropy of the Bradley-Terry prediction, averaged over members
  (as in PEBBLE's released code).

The pool is ``oversample`` times larger than the number of queries asked. This module does not
import torch: it takes the ensemble's probabilities as a ``(members, pool)`` array.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

QueryMethod = Literal["uniform", "disagreement", "entropy"]


class FeedbackSchedule(BaseModel):
    """When, how many and which queries to ask."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_budget: int = Field(200, ge=1, description="Total number of queries over the run.")
    queries_per_round: int = Field(20, ge=1, description="Queries asked at each round.")
    round_every: int = Field(
        2000, ge=1, description="Environment steps between feedback rounds."
    )
    first_round_at: int = Field(
        2000, ge=0, description="Environment step of the first round (PEBBLE: end of "
        "unsupervised pre-training)."
    )
    segment_len: int = Field(50, ge=1, description="Steps per segment (PEBBLE: 50).")
    method: QueryMethod = Field("disagreement", description="Query selection method.")
    oversample: int = Field(
        10, ge=1, description="Candidate pool size as a multiple of queries_per_round."
    )
    recent_steps: int | None = Field(
        None, ge=1, description="If set, segments are cut only from the last N steps "
        "collected (per env); default: the whole log."
    )

    @model_validator(mode="after")
    def _budget_fits(self) -> FeedbackSchedule:
        if self.queries_per_round > self.total_budget:
            raise ValueError(
                f"queries_per_round ({self.queries_per_round}) exceeds total_budget "
                f"({self.total_budget}); lower queries_per_round or raise total_budget"
            )
        return self

    def round_due(self, step: int, asked: int, last_round_step: int | None) -> bool:
        """Whether a round should run at env step ``step`` given ``asked`` queries so far."""
        if asked >= self.total_budget or step < self.first_round_at:
            return False
        return last_round_step is None or step - last_round_step >= self.round_every

    def round_size(self, asked: int) -> int:
        """Queries to ask in the next round (the remainder of the budget at the end)."""
        return max(0, min(self.queries_per_round, self.total_budget - asked))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of a Bernoulli(p), elementwise; 0 at p in {0, 1}."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def query_scores(method: QueryMethod, probs: np.ndarray | None) -> np.ndarray | None:
    """Informativeness of each candidate query (higher is asked first).

    Args:
        method: ``"uniform"``, ``"disagreement"`` or ``"entropy"``.
        probs: ``(members, pool)`` float, each member's P[left preferred]; unused for uniform.

    Returns:
        ``(pool,)`` float64 scores, or ``None`` for uniform.

    Raises:
        ValueError: if an active method gets no ``(members, pool)`` array.
    """
    if method == "uniform":
        return None
    if probs is None or probs.ndim != 2:
        raise ValueError(f"{method} selection needs probs of shape (members, pool)")
    if method == "disagreement":
        return probs.std(axis=0).astype(np.float64)
    if method == "entropy":
        return binary_entropy(probs).mean(axis=0).astype(np.float64)
    raise ValueError(
        f"feedback.method: unknown {method!r}; allowed: uniform, disagreement, entropy"
    )


def select_queries(
    method: QueryMethod, n: int, pool: int, rng: np.random.Generator,
    probs: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``n`` of ``pool`` candidate queries.

    Args:
        method: selection method (see module docstring).
        n: queries to pick (<= pool).
        pool: candidate pool size.
        rng: random generator (uniform draws and tie-breaking).
        probs: ``(members, pool)`` P[left preferred] per member, for active methods.

    Returns:
        ``(n,)`` int64 indices into the pool, most informative first.
    """
    if n > pool:
        raise ValueError(f"cannot pick {n} queries from a pool of {pool}")
    scores = query_scores(method, probs)
    if scores is None:
        return rng.choice(pool, size=n, replace=False).astype(np.int64)
    jitter = rng.random(pool) * 1e-12  # random tie-breaking
    return np.argsort(-(scores + jitter), kind="stable")[:n].astype(np.int64)
