"""Active query selection over an oversampled candidate pool.

Methods (Lee et al. 2021, "PEBBLE", Sec. 4.2 / App. B; Christiano et al. 2017, Sec. 2.2.4):

- ``uniform``: queries drawn uniformly from the pool.
- ``disagreement``: the pool's queries with the largest standard deviation over ensemble
  members of P[left preferred].
- ``entropy``: the largest entropy of the Bradley-Terry prediction, averaged over members
  (as in PEBBLE's released code).

The pool is ``oversample`` times larger than the number of queries asked. This module does not
import torch: it takes the ensemble's probabilities as a ``(members, pool)`` array. The schedule
of rounds (:class:`~rewardlab.config.FeedbackSchedule`) is the ``feedback`` config section.
"""

from __future__ import annotations

import numpy as np

from rewardlab.config import QueryMethod


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
