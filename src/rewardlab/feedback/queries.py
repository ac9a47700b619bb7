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


def same_prompt_pairs(
    prompt_ids: np.ndarray,
    rng: np.random.Generator,
    n: int | None = None,
    completions: np.ndarray | list[str] | None = None,
) -> np.ndarray:
    """Candidate text queries: pairs of distinct completions of the same prompt.

    A text query compares two completions of one prompt (as in RLHF for language models:
    Stiennon et al. 2020, "Learning to summarize from human feedback", Sec. 3.4; Ouyang et al.
    2022, Sec. 3.5), so the prompt is held fixed and only the continuation differs. The pairs
    are a pool for :func:`select_queries` (uniform, or by the ensemble's disagreement/entropy
    over the pool). Built without a Python loop over items or pairs.

    Args:
        prompt_ids: ``(m,)`` integer prompt index of each candidate completion
            (:attr:`rewardlab.types.TextSegment.prompt_id`).
        rng: random generator (which pairs, and which side each completion is shown on).
        n: pairs wanted: ``None`` for every pair; else at most ``n`` pairs drawn uniformly
            without replacement from all of them (fewer only when fewer exist).
        completions: ``(m,)`` completion texts (or any hashable keys, e.g. token-id bytes);
            when given, pairs of two identical completions are left out (a teacher cannot
            prefer one of two equal texts).

    Returns:
        ``(P, 2)`` int64 indices into the candidates: ``[:, 0]`` the left completion, ``[:, 1]``
        the right one; the two share a prompt and differ (as items, and in text when
        ``completions`` is given). Each side is random (a fair coin per pair), so the position
        carries no information. ``n=None`` gives the pairs in prompt order.

    Raises:
        ValueError: if ``prompt_ids`` is not a 1-d integer array, ``completions`` differs in
            length, or ``n`` is negative.
    """
    groups = np.asarray(prompt_ids)
    if groups.ndim != 1 or (groups.size and not np.issubdtype(groups.dtype, np.integer)):
        raise ValueError(
            f"prompt_ids: expected a 1-d integer array, got shape {groups.shape} and dtype "
            f"{groups.dtype}"
        )
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
        raise ValueError(f"n: must be None or an integer >= 0, got {n!r}")
    m = groups.shape[0]
    order = np.argsort(groups, kind="stable")  # positions of the items, grouped by prompt
    sorted_groups = groups[order]
    _, starts, sizes = np.unique(sorted_groups, return_index=True, return_counts=True)
    ends = np.repeat(starts + sizes, sizes)  # (m,) end of the group of each sorted position
    partners = ends - np.arange(m) - 1  # later items of the same group, per sorted position
    total = int(partners.sum())
    first = np.repeat(np.arange(m), partners)  # (total,) sorted position of the left item
    offsets = np.arange(total) - np.repeat(np.cumsum(partners) - partners, partners)
    pairs = np.stack([order[first], order[first + 1 + offsets]], axis=1).astype(np.int64)
    if completions is not None:
        keys = np.asarray(completions, dtype=object)
        if keys.shape != (m,):
            raise ValueError(
                f"completions: expected {m} completions to match prompt_ids, got shape "
                f"{keys.shape}"
            )
        _, codes = np.unique(keys, return_inverse=True)
        pairs = pairs[codes[pairs[:, 0]] != codes[pairs[:, 1]]]
    if n is not None and n < pairs.shape[0]:
        pairs = pairs[np.sort(rng.choice(pairs.shape[0], size=int(n), replace=False))]
    swap = rng.random(pairs.shape[0]) < 0.5
    pairs[swap] = pairs[swap][:, ::-1]
    return pairs
