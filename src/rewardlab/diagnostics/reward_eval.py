"""Evaluating a learned reward against the true one: calibration, ranking and EPIC distance.

Pure NumPy/SciPy (no torch):

* :func:`expected_calibration_error` of the predicted preference probabilities
  (Naeini et al. 2015; Guo et al. 2017);
* :func:`rank_correlation`, Spearman's rho between proxy and gold returns;
* :func:`canonicalize` and :func:`epic_distance`, the Equivalent-Policy Invariant Comparison
  pseudometric of Gleave, Dennis, Legg, Russell & Leike 2021, "Quantifying Differences in Reward
  Functions" (ICLR), which is 0 between rewards that differ only by potential shaping and a
  positive rescaling, and therefore induce the same optimal policies.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats

__all__ = [
    "RewardFn",
    "canonicalize",
    "epic_distance",
    "expected_calibration_error",
    "rank_correlation",
]

#: Vectorised reward ``(s (B, *obs_shape), a (B, *act_shape), s_next (B, *obs_shape)) -> (B,)``.
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

#: Default largest number of transitions passed to ``reward_fn`` in one call by
#: :func:`canonicalize` (bounds the memory of the ``(N, M)`` Monte Carlo evaluations).
DEFAULT_CHUNK = 1 << 16

# Relative size below which a canonical reward's spread is treated as round-off.
_ROUNDOFF = 1e-9


# --------------------------------------------------------------------------------------------
# Calibration and ranking
# --------------------------------------------------------------------------------------------


def expected_calibration_error(
    probs: np.ndarray, outcomes: np.ndarray, n_bins: int = 10
) -> float:
    """Expected calibration error of predicted preference probabilities.

    Naeini, Cooper & Hauskrecht 2015, "Obtaining Well Calibrated Probabilities Using Bayesian
    Binning" (AAAI), and Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
    Networks" (ICML), Sec. 2, the binned ECE estimator::

        ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|,

    over ``n_bins`` equal-width bins ``B_b = ((b-1)/n_bins, b/n_bins]`` of the predicted
    probability (``p = 0`` falls in the first bin), where ``conf`` is the mean predicted
    ``P[left preferred]`` and ``acc`` the observed frequency of "left preferred" in the bin.
    This is the calibration of ``P[left]`` itself (both classes), not Guo's top-label variant.

    Args:
        probs: ``(n,)`` float in ``[0, 1]``, predicted ``P[left segment preferred]``.
        outcomes: ``(n,)`` float, 1 = left preferred, 0 = right preferred; NaN entries
            (e.g. skipped queries) are ignored together with their ``probs``. Soft outcomes in
            ``[0, 1]`` are allowed (an EQUAL answer as 0.5 counts half).
        n_bins: number of equal-width bins, ``>= 1``.

    Returns:
        ECE in ``[0, 1]`` (probability units); NaN when no outcome is finite.

    Raises:
        ValueError: if ``probs``/``outcomes`` are not 1-D of equal length, a used ``probs``
            entry is not in ``[0, 1]``, an ``outcomes`` entry is outside ``[0, 1]``, or
            ``n_bins`` is not an integer ``>= 1``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: must be an integer >= 1, got {n_bins!r}")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"probs: expected a 1-D array, got shape {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"outcomes: expected shape {p.shape} like probs, got {y.shape}")
    used = ~np.isnan(y)
    p, y = p[used], y[used]
    if np.any(~((y >= 0) & (y <= 1))):
        raise ValueError("outcomes: must be in [0, 1] (1 = left preferred) or NaN")
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("probs: must be in [0, 1] wherever the outcome is not NaN")
    if p.size == 0:
        return math.nan
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(
        bins, weights=p, minlength=n_bins
    )
    return float(np.abs(gap).sum() / p.size)


def rank_correlation(proxy_returns: np.ndarray, gold_returns: np.ndarray) -> float:
    """Spearman rank correlation between proxy (learned-reward) and gold (true) returns.

    Spearman 1904, "The proof and measurement of association between two things": Pearson
    correlation of the ranks (ties get average ranks), via ``scipy.stats.spearmanr``. Pairs
    with a non-finite entry are dropped.

    Args:
        proxy_returns: ``(n,)`` float, returns under the learned reward.
        gold_returns: ``(n,)`` float, true returns of the same episodes/segments.

    Returns:
        rho in ``[-1, 1]``; NaN with fewer than 3 finite pairs or if either side is constant.

    Raises:
        ValueError: if the inputs are not 1-D of equal length.
    """
    x = np.asarray(proxy_returns, dtype=np.float64)
    y = np.asarray(gold_returns, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"proxy_returns: expected a 1-D array, got shape {x.shape}")
    if y.shape != x.shape:
        raise ValueError(
            f"gold_returns: expected shape {x.shape} like proxy_returns, got {y.shape}"
        )
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = stats.spearmanr(x, y).statistic
    return float(rho)


# --------------------------------------------------------------------------------------------
# EPIC
# --------------------------------------------------------------------------------------------


def _check_transitions(
    s: np.ndarray, a: np.ndarray, s_next: np.ndarray, s_canon: np.ndarray, a_canon: np.ndarray
) -> None:
    n = s.shape[0] if s.ndim else None
    if s.ndim < 1 or n == 0:
        raise ValueError(f"s: expected shape (N, obs_dim) with N >= 1, got {s.shape}")
    if s_next.shape != s.shape:
        raise ValueError(f"s_next: expected shape {s.shape} like s, got {s_next.shape}")
    if a.ndim < 1 or a.shape[0] != n:
        raise ValueError(f"a: expected shape ({n}, act_dim) like s, got {a.shape}")
    if s_canon.ndim != s.ndim or s_canon.shape[1:] != s.shape[1:] or s_canon.shape[0] == 0:
        raise ValueError(
            f"s_canon: expected shape (M, {', '.join(map(str, s.shape[1:]))}) with M >= 1, "
            f"got {s_canon.shape}"
        )
    m = s_canon.shape[0]
    if a_canon.ndim != a.ndim or a_canon.shape[1:] != a.shape[1:] or a_canon.shape[0] != m:
        raise ValueError(
            f"a_canon: expected shape ({m}, {', '.join(map(str, a.shape[1:]))}) like "
            f"s_canon and a, got {a_canon.shape}"
        )


def _call_reward(name: str, reward_fn: RewardFn, s, a, s_next) -> np.ndarray:
    """``reward_fn`` on a batch, checked to give ``(B,)`` (or ``(B, 1)``) finite values."""
    b = s.shape[0]
    r = np.asarray(reward_fn(s, a, s_next), dtype=np.float64)
    if r.shape not in ((b,), (b, 1)):
        raise ValueError(f"{name}: must return shape ({b},) for a batch of {b}, got {r.shape}")
    r = r.reshape(b)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name}: returned non-finite rewards")
    return r


def _mean_over_canon(
    name: str,
    reward_fn: RewardFn,
    x: np.ndarray,
    a_pair: np.ndarray,
    s_pair: np.ndarray,
    chunk: int,
) -> np.ndarray:
    """``g(x_i) = (1/M) sum_k R(x_i, A_k, S'_k)`` for every row of ``x``: ``(L,)``.

    Evaluates the ``(L, M)`` grid in chunks of at most ``max(chunk, M)`` transitions.
    """
    m = a_pair.shape[0]
    rows = max(1, chunk // m)
    out = np.empty(x.shape[0], dtype=np.float64)
    for lo in range(0, x.shape[0], rows):
        xs = x[lo : lo + rows]
        c = xs.shape[0]
        r = _call_reward(
            name,
            reward_fn,
            np.repeat(xs, m, axis=0),
            np.tile(a_pair, (c,) + (1,) * (a_pair.ndim - 1)),
            np.tile(s_pair, (c,) + (1,) * (s_pair.ndim - 1)),
        )
        out[lo : lo + c] = r.reshape(c, m).mean(axis=1)
    return out


def canonicalize(
    reward_fn: RewardFn,
    s: np.ndarray,
    a: np.ndarray,
    s_next: np.ndarray,
    s_canon: np.ndarray,
    a_canon: np.ndarray,
    gamma: float,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """Canonically shaped reward ``C(R)`` on a batch of transitions (Monte Carlo estimate).

    Gleave et al. 2021, "Quantifying Differences in Reward Functions", Def. 4.1::

        C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')],

    with ``S, S' ~ D_S`` and ``A ~ D_A`` independent. The expectations are sample means over
    the canonical sample: the ``M`` pairs ``(A_k, S'_k) = (a_canon[k], s_canon[(k + M//2) % M])``
    (the half-length cyclic shift decouples an action from the state it was taken in, or its
    successor, when the canonical sample comes from consecutive transitions) and, for the last
    term, ``S`` over all rows of ``s_canon`` (so ``(2N + M) * M`` reward evaluations, done as
    ``(rows, M)`` grids in chunks of about ``chunk_size`` transitions). Potential shaping
    ``gamma Phi(s') - Phi(s)`` cancels *exactly* under this empirical distribution, and a
    constant offset cancels too.

    Args:
        reward_fn: vectorised reward ``(s (B, obs_dim), a (B, act_dim), s_next (B, obs_dim))
            -> (B,)`` float (``(B, 1)`` is accepted).
        s: ``(N, obs_dim)`` states of the transitions to canonicalise (any trailing shape,
            e.g. images, works the same).
        a: ``(N, act_dim)`` actions (``(N,)`` for discrete actions).
        s_next: ``(N, obs_dim)`` next states.
        s_canon: ``(M, obs_dim)`` samples of the state distribution ``D_S``.
        a_canon: ``(M, act_dim)`` samples of the action distribution ``D_A``.
        gamma: discount in ``[0, 1]``.
        chunk_size: largest number of transitions per ``reward_fn`` call (at least ``M``).

    Returns:
        ``(N,)`` float64 canonical rewards ``C(R)(s_n, a_n, s'_n)``, in the reward's units.

    Raises:
        ValueError: if the shapes are inconsistent (message names the array), ``gamma`` is not
            in ``[0, 1]``, ``chunk_size < 1``, or ``reward_fn`` returns a wrong shape or
            non-finite values.
    """
    s, a, s_next = np.asarray(s), np.asarray(a), np.asarray(s_next)
    s_canon, a_canon = np.asarray(s_canon), np.asarray(a_canon)
    _check_transitions(s, a, s_next, s_canon, a_canon)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: must be in [0, 1], got {gamma!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or (
        chunk_size < 1
    ):
        raise ValueError(f"chunk_size: must be an integer >= 1, got {chunk_size!r}")
    c, _ = _canonicalize(reward_fn, "reward_fn", s, a, s_next, s_canon, a_canon, gamma, chunk_size)
    return c


def _canonicalize(
    reward_fn: RewardFn,
    name: str,
    s: np.ndarray,
    a: np.ndarray,
    s_next: np.ndarray,
    s_canon: np.ndarray,
    a_canon: np.ndarray,
    gamma: float,
    chunk: int,
) -> tuple[np.ndarray, float]:
    """``(C(R) (N,), scale)``; ``scale`` = largest |reward| seen, for round-off checks."""
    n, m = s.shape[0], s_canon.shape[0]
    s_pair = np.roll(s_canon, -(m // 2), axis=0)  # s_pair[k] = s_canon[(k + M//2) % M]
    r = _call_reward(name, reward_fn, s, a, s_next)
    g = _mean_over_canon(
        name, reward_fn, np.concatenate([s, s_next, s_canon]), a_canon, s_pair, chunk
    )
    g_s, g_next, g_canon = g[:n], g[n : 2 * n], g[2 * n :]
    scale = max(float(np.abs(r).max()), float(np.abs(g).max()))
    return r + gamma * g_next - g_s - gamma * g_canon.mean(), scale


def epic_distance(
    reward_a: RewardFn,
    reward_b: RewardFn,
    s: np.ndarray,
    a: np.ndarray,
    s_next: np.ndarray,
    s_canon: np.ndarray,
    a_canon: np.ndarray,
    gamma: float = 0.99,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> float:
    """EPIC distance between two reward functions.

    Gleave et al. 2021, "Quantifying Differences in Reward Functions": canonicalise both rewards
    (Def. 4.1, see :func:`canonicalize`, with the same canonical sample) and take the Pearson
    distance (Def. 4.2) over the coverage transitions ``(s, a, s_next) ~ D``::

        D_EPIC(R_A, R_B) = sqrt(1 - rho(C(R_A), C(R_B))) / sqrt(2).

    0 for rewards equal up to potential shaping and positive rescaling, 1 for a negated reward,
    about ``1/sqrt(2) ~ 0.71`` for unrelated rewards.

    Args:
        reward_a: vectorised reward ``(s, a, s_next) -> (B,)``, see :func:`canonicalize`.
        reward_b: the other reward, same signature.
        s: ``(N, obs_dim)`` coverage states (``N >= 2``).
        a: ``(N, act_dim)`` coverage actions.
        s_next: ``(N, obs_dim)`` coverage next states.
        s_canon: ``(M, obs_dim)`` samples of ``D_S`` for the canonicalisation.
        a_canon: ``(M, act_dim)`` samples of ``D_A``.
        gamma: discount in ``[0, 1]``.
        chunk_size: largest number of transitions per reward call.

    Returns:
        The distance in ``[0, 1]`` (unitless); NaN if a canonical reward is constant over the
        coverage sample (Pearson correlation undefined: that reward is equivalent to zero).

    Raises:
        ValueError: as :func:`canonicalize` (naming ``reward_a``/``reward_b`` for a bad reward
            output), or if ``N < 2``.
    """
    s, a, s_next = np.asarray(s), np.asarray(a), np.asarray(s_next)
    s_canon, a_canon = np.asarray(s_canon), np.asarray(a_canon)
    _check_transitions(s, a, s_next, s_canon, a_canon)
    if s.shape[0] < 2:
        raise ValueError(f"s: need at least 2 coverage transitions, got {s.shape[0]}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: must be in [0, 1], got {gamma!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or (
        chunk_size < 1
    ):
        raise ValueError(f"chunk_size: must be an integer >= 1, got {chunk_size!r}")
    ca, scale_a = _canonicalize(
        reward_a, "reward_a", s, a, s_next, s_canon, a_canon, gamma, chunk_size
    )
    cb, scale_b = _canonicalize(
        reward_b, "reward_b", s, a, s_next, s_canon, a_canon, gamma, chunk_size
    )
    ca = ca - ca.mean()
    cb = cb - cb.mean()
    # A canonical reward that is constant up to round-off (e.g. pure potential shaping) has no
    # defined correlation.
    if ca.std() <= _ROUNDOFF * scale_a or cb.std() <= _ROUNDOFF * scale_b:
        return math.nan
    rho = float(ca @ cb) / math.sqrt(float(ca @ ca) * float(cb @ cb))
    rho = min(1.0, max(-1.0, rho))
    return math.sqrt(1.0 - rho) / math.sqrt(2.0)
