"""Reward over-optimisation: Gao scaling-law fits, gold/proxy divergence detection, policy KL.

Pure NumPy/SciPy maths (no torch, no training loops) for the over-optimisation lab:

* :func:`fit_gao` fits the functional forms of Gao, Schulman & Hilton 2022, "Scaling Laws for
  Reward Model Overoptimization" (Eq. 1 best-of-n, Eq. 2 RL) to gold reward against
  ``d = sqrt(KL(pi || pi_init))`` and locates the peak of the fitted curve.
* :func:`detect_divergence` flags, noise-aware, the first evaluation at which the gold (true)
  return has fallen significantly below its running peak while the proxy (learned-reward) return
  has risen since that peak and is still rising: the signature of reward hacking.
  :class:`DivergenceMonitor` runs it online, one evaluation at a time, and
  :func:`describe_overoptimization` words the event identically for the terminal,
  ``rewardlab report`` and ``report.html``.
* :func:`kl_gaussian_policies` / :func:`mean_state_kl` give the closed-form KL between diagonal
  Gaussian policies, the ``d`` axis of the Gao plots.
* :func:`gold_proxy_curves` pulls the evaluation curves out of ``metrics.jsonl`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "EVAL_KEYS",
    "EVENT_KEYS",
    "DivergenceEvent",
    "DivergenceMonitor",
    "GaoFit",
    "describe_overoptimization",
    "detect_divergence",
    "fit_gao",
    "gao_curve",
    "gold_proxy_curves",
    "kl_gaussian_policies",
    "mean_state_kl",
]

GaoForm = Literal["bon", "rl"]

#: Metric keys :func:`gold_proxy_curves` extracts (besides ``step``).
EVAL_KEYS = (
    "eval/gold_return",
    "eval/proxy_return",
    "eval/gold_return_std",
    "eval/episode_length",
)

#: Fewest evaluations (with a finite gold return) for the robust, series-based noise estimate.
MIN_EVALS_ROBUST = 5

# 1 / Phi^{-1}(3/4): turns a median absolute deviation into a Gaussian standard deviation.
_MAD_TO_STD = 1.482602218505602


# --------------------------------------------------------------------------------------------
# Gao et al. 2022 functional forms
# --------------------------------------------------------------------------------------------


def _check_form(form: str) -> None:
    if form not in ("bon", "rl"):
        raise ValueError(f"form: must be 'bon' or 'rl', got {form!r}")


def _d_log_d(d: np.ndarray) -> np.ndarray:
    """``d * log(d)`` with its limit 0 at ``d = 0`` (no warning)."""
    positive = d > 0
    return np.where(positive, d * np.log(np.where(positive, d, 1.0)), 0.0)


def _gao_features(d: np.ndarray, form: str) -> np.ndarray:
    """Design matrix ``(n, 2)`` such that ``R(d) = X @ [alpha, beta]``."""
    if form == "bon":
        return np.stack([d, -(d**2)], axis=-1)
    return np.stack([d, -_d_log_d(d)], axis=-1)


def gao_curve(d: np.ndarray, alpha: float, beta: float, form: GaoForm) -> np.ndarray:
    """Gold reward predicted by a Gao et al. 2022 functional form.

    Gao, Schulman & Hilton 2022, "Scaling Laws for Reward Model Overoptimization", Eq. 1
    (best-of-n) ``R_bon(d) = d (alpha - beta d)`` and Eq. 2 (RL)
    ``R_RL(d) = d (alpha - beta log d)``, with ``R_RL(0) = 0`` (the limit of ``d log d``).

    Args:
        d: ``(...)`` float, ``d = sqrt(KL(pi || pi_init))`` in sqrt-nats, ``>= 0``.
        alpha: coefficient ``alpha`` (gold-reward units per sqrt-nat).
        beta: coefficient ``beta`` (gold-reward units per nat for ``"bon"``, per sqrt-nat for
            ``"rl"``).
        form: ``"bon"`` (Eq. 1) or ``"rl"`` (Eq. 2).

    Returns:
        ``(...)`` float64 gold reward relative to the initial policy (same shape as ``d``).

    Raises:
        ValueError: if ``form`` is unknown or ``d`` has negative or NaN entries.
    """
    _check_form(form)
    d = np.asarray(d, dtype=np.float64)
    if np.any(~(d >= 0)):
        raise ValueError("d: must be >= 0 (d = sqrt(KL)) and not NaN")
    return _gao_features(d, form) @ np.array([alpha, beta], dtype=np.float64)


@dataclass(frozen=True)
class GaoFit:
    """Least-squares fit of a Gao et al. 2022 functional form (Eq. 1 or Eq. 2).

    Attributes:
        form: ``"bon"`` (``R = d (alpha - beta d)``) or ``"rl"`` (``R = d (alpha - beta log d)``).
        alpha: fitted ``alpha`` (gold-reward units per sqrt-nat).
        beta: fitted ``beta``.
        r2: coefficient of determination ``1 - SS_res / SS_tot`` with ``SS_tot`` about the mean
            of ``gold``. The model has no intercept, so ``r2`` can be negative for a bad fit;
            NaN when ``gold`` is constant.
        peak_d: ``d`` in ``[0, inf]`` at which the fitted curve is largest over ``d >= 0``:
            ``alpha / (2 beta)`` (bon) or ``exp(alpha / beta - 1)`` (rl) when ``beta > 0``
            (for bon with ``alpha <= 0`` and ``beta > 0`` the maximum is at the boundary
            ``d = 0``). With ``beta <= 0`` there is no interior peak: ``inf`` when the curve grows
            without bound (``beta < 0``, or ``beta == 0`` and ``alpha > 0``), else ``0.0``.
        peak_gold: the fitted curve at ``peak_d`` (``alpha^2 / (4 beta)`` for bon,
            ``beta * peak_d`` for rl; ``inf`` when unbounded). Gold units, relative to the
            initial policy.
    """

    form: GaoForm
    alpha: float
    beta: float
    r2: float
    peak_d: float
    peak_gold: float

    def predict(self, d: np.ndarray) -> np.ndarray:
        """Fitted gold reward at ``d`` (``(...)`` float, sqrt-nats) -> ``(...)`` float64."""
        return gao_curve(d, self.alpha, self.beta, self.form)


def _gao_peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    """``(argmax, max)`` of the fitted curve over ``d >= 0``; see :class:`GaoFit`."""
    if beta > 0:
        if form == "bon":
            if alpha <= 0:
                return 0.0, 0.0
            return alpha / (2.0 * beta), alpha**2 / (4.0 * beta)
        # d/dd [d (alpha - beta log d)] = alpha - beta log d - beta = 0
        exponent = alpha / beta - 1.0
        if exponent > 709.0:  # exp overflows float64: peak beyond representable d
            return math.inf, math.inf
        peak_d = math.exp(exponent)
        return peak_d, beta * peak_d
    if beta < 0 or alpha > 0:
        return math.inf, math.inf
    return 0.0, 0.0


def fit_gao(d: np.ndarray, gold: np.ndarray, form: GaoForm) -> GaoFit:
    """Fit Gao et al. 2022's gold-reward scaling law by linear least squares.

    Gao, Schulman & Hilton 2022, "Scaling Laws for Reward Model Overoptimization": with
    ``d = sqrt(KL(pi || pi_init))``, Eq. 1 ``R_bon(d) = d (alpha_bon - beta_bon d)`` for
    best-of-n sampling (there ``KL_bon = log n - (n - 1) / n``) and Eq. 2
    ``R_RL(d) = d (alpha_RL - beta_RL log d)`` for RL. Both are linear in ``(alpha, beta)``
    with features ``[d, -d^2]`` and ``[d, -d log d]`` (``d log d -> 0`` at ``d = 0``), so the
    fit is ordinary least squares (``np.linalg.lstsq``), no intercept.

    Args:
        d: ``(n,)`` float, ``sqrt(KL(pi || pi_init))`` of each policy, in sqrt-nats, ``>= 0``
            (e.g. ``sqrt(mean_state_kl(...))``).
        gold: ``(n,)`` float, the gold (true) reward of each policy *minus the initial
            policy's* (so that ``R(0) = 0``), in gold-return units.
        form: ``"bon"`` (Eq. 1) or ``"rl"`` (Eq. 2).

    Returns:
        A :class:`GaoFit` with ``alpha``, ``beta``, ``r2`` and the peak of the fitted curve
        (``peak_d = alpha / (2 beta)`` for bon, ``exp(alpha / beta - 1)`` for rl when
        ``beta > 0``; ``inf`` when the fitted curve has no maximum, see :class:`GaoFit`).

    Raises:
        ValueError: if ``form`` is unknown; if ``d`` or ``gold`` is not 1-D, their shapes
            differ, they hold non-finite values or ``d`` is negative; if the features have
            rank < 2 (fewer than two distinct informative ``d`` values, e.g. all ``d = 0``).
    """
    _check_form(form)
    d = np.asarray(d, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"d: expected a 1-D array, got shape {d.shape}")
    if gold.shape != d.shape:
        raise ValueError(f"gold: expected shape {d.shape} (like d), got {gold.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("d: must be finite and >= 0 (d = sqrt(KL))")
    if not np.all(np.isfinite(gold)):
        raise ValueError("gold: must be finite")
    x = _gao_features(d, form)
    coef, _, rank, _ = np.linalg.lstsq(x, gold, rcond=None)
    if rank < 2:
        raise ValueError(
            f"d: the {form!r} features have rank {rank} < 2; need at least two distinct "
            "positive d values (and, for 'rl', not only d in {0, 1})"
        )
    alpha, beta = float(coef[0]), float(coef[1])
    resid = gold - x @ coef
    ss_res = float(resid @ resid)
    centred = gold - gold.mean()
    ss_tot = float(centred @ centred)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    peak_d, peak_gold = _gao_peak(alpha, beta, form)
    return GaoFit(form=form, alpha=alpha, beta=beta, r2=r2, peak_d=peak_d, peak_gold=peak_gold)


# --------------------------------------------------------------------------------------------
# Divergence detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DivergenceEvent:
    """First evaluation at which gold fell significantly below its peak while proxy rose.

    :func:`describe_overoptimization` turns it (or its logged ``diagnostics/`` keys) into the
    one sentence every report prints.

    Attributes:
        step: env step of the detecting evaluation (the detection step).
        peak_step: env step of the running gold peak it was compared against.
        peak_gold: gold return at ``peak_step`` (gold-return units).
        gold_at_detection: gold return at ``step``.
        drop: ``peak_gold - gold_at_detection`` (> 0, gold-return units).
        proxy_gain_since_peak: proxy return at ``step`` minus proxy return at ``peak_step``
            (proxy units; always > 0 in an event, see :func:`detect_divergence`).
        p_value: one-sided p-value of "gold at ``step`` is below gold at ``peak_step``",
            Bonferroni-adjusted for all ``n (n - 1) / 2`` (earlier, later) pairs of the
            series' ``n`` evaluations and capped at 1; compared against ``alpha``.
    """

    step: int
    peak_step: int
    peak_gold: float
    gold_at_detection: float
    drop: float
    proxy_gain_since_peak: float
    p_value: float


def _as_series(name: str, value: Any, n: int) -> np.ndarray:
    """A scalar or ``(n,)`` array as an ``(n,)`` float64 array, else ValueError naming it."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or shape ({n},), got {arr.shape}")
    return arr


def _window_slopes(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` over each trailing window of ``window`` points.

    Entry ``i`` uses points ``max(0, i - window + 1) .. i`` with finite ``y``; NaN when fewer
    than two such points. Vectorised with ``sliding_window_view``.
    """
    pad = np.full(window - 1, np.nan)
    xs = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, x]), window)
    ys = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, y]), window)
    ok = np.isfinite(xs) & np.isfinite(ys)
    cnt = ok.sum(axis=1)
    x0 = np.where(ok, xs, 0.0)
    y0 = np.where(ok, ys, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = x0.sum(axis=1) / cnt
        my = y0.sum(axis=1) / cnt
        dx = np.where(ok, xs - mx[:, None], 0.0)
        dy = np.where(ok, ys - my[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * dy).sum(axis=1) / sxx
    return np.where((cnt >= 2) & (sxx > 0), slope, np.nan)


def detect_divergence(
    steps: np.ndarray,
    gold: np.ndarray,
    proxy: np.ndarray,
    gold_std: np.ndarray | float | None = None,
    n_episodes: np.ndarray | int | None = None,
    window: int = 3,
    alpha: float = 0.05,
    min_drop: float | None = None,
    *,
    std_ddof: int = 0,
    min_proxy_gain: float = 0.0,
    last_only: bool = False,
) -> DivergenceEvent | None:
    """First evaluation at which gold has fallen significantly below its running peak while the
    proxy is still rising (the reward over-optimisation picture of Gao et al. 2022).

    At evaluation ``i`` the running peak ``j`` is the earliest evaluation holding the largest gold
    return among ``0..i``. Evaluation ``i`` fires when all hold:

    1. ``drop = gold[j] - gold[i] > 0`` and, if given, ``drop >= min_drop``;
    2. the drop is significant: the one-sided p-value of "the mean gold return at ``i`` is below
       the one at ``j``", times ``n (n - 1) / 2`` (Bonferroni correction, Dunn 1961, over every
       (earlier, later) pair of the ``n`` evaluations, which covers choosing the peak after
       seeing the data and testing at every evaluation), is ``<= alpha``. So ``alpha`` bounds
       the probability of *any* false alarm over the whole series when gold never truly
       decreases (a noisy plateau is the worst case). The test is

       * **Welch's t-test** (Welch 1947, "The generalization of 'Student's' problem when
         several different population variances are involved", Biometrika 34) when
         ``gold_std`` and ``n_episodes`` are given: ``t = drop / sqrt(s_j^2/k_j + s_i^2/k_i)``
         with Welch-Satterthwaite degrees of freedom
         ``(v_j + v_i)^2 / (v_j^2/(k_j - 1) + v_i^2/(k_i - 1))``, ``v = s^2/k``, where ``s`` is
         the sample (ddof 1) standard deviation of the episode gold returns and ``k`` the
         episode count (``gold_std`` is converted from ddof ``std_ddof``; the logger's
         ``eval/gold_return_std`` is ``np.std``, ddof 0);
       * **a studentised test with a robust noise estimate from the series** otherwise: the
         per-evaluation noise is ``sigma = 1.4826 * MAD(diff(gold)) / sqrt(2)`` (Hampel 1974:
         median absolute deviation of the first differences about their median, which removes
         a locally linear trend; a difference of two independent evaluations has standard
         deviation ``sigma * sqrt(2)``), the statistic is ``t = drop / (sigma * sqrt(2))`` and
         its reference is Student's t with ``(n - 1) / 2`` degrees of freedom rather than the
         normal, to allow for the uncertainty of the MAD (about 37 % Gaussian efficiency): on
         simulated Gaussian plateaus (n = 5..200) the family-wise false-alarm rate is then about
         ``0.4 alpha``, while a plain z-test exceeds ``alpha`` (0.13 at n = 30, alpha = 0.05).
         It uses the whole series, needs at least ``MIN_EVALS_ROBUST`` (5) evaluations (else
         None) and assumes independent, homoscedastic, roughly Gaussian evaluation noise. If
         ``sigma == 0`` (noise-free data) any positive drop is significant.
    3. the proxy rises: its return has grown since the gold peak,
       ``proxy_gain_since_peak = proxy[i] - proxy[j] > min_proxy_gain`` (default 0, so strictly
       positive; NaN, e.g. no reward model yet at the peak, never fires), **and** it is still
       rising now: the least-squares slope of proxy against step over the last ``window``
       evaluations (``i - window + 1 .. i``, finite proxies only) is > 0, or ``proxy[i]``
       exceeds every earlier finite proxy return. The proxy condition is a direction, not a
       significance test: the proxy returns of two evaluations are scored by different reward
       models (retrained and re-standardised at every feedback round), so the spread of one
       evaluation's episodes says little about the uncertainty of their difference, and the
       false-alarm guarantee rests on the gold test alone. ``min_proxy_gain`` (proxy units)
       asks for a larger rise.

    Evaluations with a non-finite gold return are dropped first. Note that ``n`` (and, in the
    robust mode, ``sigma``) depend on the whole series passed in, so a detection on a prefix of
    the series need not persist once later evaluations are added.

    Args:
        steps: ``(n,)`` int-like env steps of the evaluations, strictly increasing.
        gold: ``(n,)`` float mean gold (true) return per evaluation (``eval/gold_return``).
        proxy: ``(n,)`` float mean proxy (learned-reward) return of the same episodes
            (``eval/proxy_return``; NaN where no reward model existed yet).
        gold_std: ``(n,)`` or scalar float, per-evaluation standard deviation of the episode
            gold returns (``eval/gold_return_std``), ``>= 0``; NaN makes that evaluation
            untestable. Must be given together with ``n_episodes``.
        n_episodes: ``(n,)`` or scalar int, episodes per evaluation, ``>= 2``.
        window: number of trailing evaluations (``>= 2``) for the proxy slope.
        alpha: family-wise false-alarm level in (0, 1).
        min_drop: optional minimum drop in gold-return units (``>= 0``) for practical, on top
            of statistical, significance.
        std_ddof: delta degrees of freedom ``gold_std`` was computed with (0 or 1).
        min_proxy_gain: the proxy return must have risen by more than this (proxy units,
            finite, ``>= 0``) since the gold peak.
        last_only: test only the last evaluation (with a finite gold return), as an online
            monitor does at each new evaluation, so the event's ``step`` is that evaluation's.

    Returns:
        The :class:`DivergenceEvent` of the first firing evaluation (with ``last_only``, of the
        last evaluation if it fires), or None.

    Raises:
        ValueError: if ``steps``, ``gold`` or ``proxy`` are not 1-D of equal length, ``steps``
            are not finite and strictly increasing, only one of ``gold_std``/``n_episodes`` is
            given, ``gold_std < 0``, ``n_episodes`` is not an integer ``>= 2``,
            ``window < 2``, ``alpha`` not in (0, 1), ``min_drop < 0``, ``min_proxy_gain`` is
            negative or not finite, or ``std_ddof`` not in {0, 1}; the message names the
            argument.
    """
    steps_a = np.asarray(steps, dtype=np.float64)
    gold_a = np.asarray(gold, dtype=np.float64)
    proxy_a = np.asarray(proxy, dtype=np.float64)
    if steps_a.ndim != 1:
        raise ValueError(f"steps: expected a 1-D array, got shape {steps_a.shape}")
    n_all = steps_a.shape[0]
    if gold_a.shape != (n_all,):
        raise ValueError(f"gold: expected shape ({n_all},) like steps, got {gold_a.shape}")
    if proxy_a.shape != (n_all,):
        raise ValueError(f"proxy: expected shape ({n_all},) like steps, got {proxy_a.shape}")
    if not np.all(np.isfinite(steps_a)) or np.any(np.diff(steps_a) <= 0):
        raise ValueError("steps: must be finite and strictly increasing")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window: must be an integer >= 2, got {window!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha!r}")
    if min_drop is not None and not min_drop >= 0:
        raise ValueError(f"min_drop: must be >= 0 or None, got {min_drop!r}")
    if std_ddof not in (0, 1):
        raise ValueError(f"std_ddof: must be 0 or 1, got {std_ddof!r}")
    if not (math.isfinite(min_proxy_gain) and min_proxy_gain >= 0):
        raise ValueError(f"min_proxy_gain: must be finite and >= 0, got {min_proxy_gain!r}")
    if (gold_std is None) != (n_episodes is None):
        raise ValueError("gold_std, n_episodes: give both (Welch test) or neither (robust)")
    welch = gold_std is not None
    if welch:
        std_a = _as_series("gold_std", gold_std, n_all)
        k_a = _as_series("n_episodes", n_episodes, n_all)
        if np.any(std_a < 0):
            raise ValueError("gold_std: must be >= 0 (NaN marks an untestable evaluation)")
        if not np.all(np.isfinite(k_a)) or np.any(k_a != np.round(k_a)) or np.any(k_a < 2):
            raise ValueError("n_episodes: must be integers >= 2")

    keep = np.isfinite(gold_a)
    steps_a, gold_a, proxy_a = steps_a[keep], gold_a[keep], proxy_a[keep]
    n = gold_a.shape[0]
    if n < 2 or (not welch and n < MIN_EVALS_ROBUST):
        return None
    idx = np.arange(n)

    # Running peak: the earliest index holding the running maximum of gold.
    new_peak = np.ones(n, dtype=bool)
    new_peak[1:] = gold_a[1:] > np.maximum.accumulate(gold_a)[:-1]
    peak_idx = np.maximum.accumulate(np.where(new_peak, idx, 0))
    drop = gold_a[peak_idx] - gold_a

    with np.errstate(divide="ignore", invalid="ignore"):
        if welch:
            std_a, k_a = std_a[keep], k_a[keep]
            var_mean = std_a**2 * (k_a - std_ddof) / (k_a - 1.0) / k_a  # s^2 / k, s ddof 1
            v_p, k_p = var_mean[peak_idx], k_a[peak_idx]
            v_sum = v_p + var_mean
            df = v_sum**2 / (v_p**2 / (k_p - 1.0) + var_mean**2 / (k_a - 1.0))
            p_raw = stats.t.sf(drop / np.sqrt(v_sum), df)
            zero_se = v_sum == 0
        else:
            diffs = np.diff(gold_a)
            sigma = _MAD_TO_STD * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2.0)
            se_pair = sigma * math.sqrt(2.0)
            p_raw = stats.t.sf(drop / se_pair, (n - 1) / 2.0) if se_pair > 0 else np.ones(n)
            zero_se = np.full(n, se_pair == 0)
    p_raw = np.where(zero_se, np.where(drop > 0, 0.0, 1.0), p_raw)
    p_raw = np.where(peak_idx == idx, 1.0, p_raw)  # current eval is its own peak
    n_pairs = n * (n - 1) / 2.0
    p_adj = np.minimum(1.0, p_raw * n_pairs)  # NaN (untestable) stays NaN and never fires

    slope = _window_slopes(steps_a, proxy_a, window)
    prev_best = np.full(n, -np.inf)
    prev_best[1:] = np.fmax.accumulate(np.where(np.isfinite(proxy_a), proxy_a, -np.inf))[:-1]
    new_high = np.isfinite(proxy_a) & np.isfinite(prev_best) & (proxy_a > prev_best)
    rising = (slope > 0) | new_high
    proxy_gain = proxy_a - proxy_a[peak_idx]  # NaN compares False: never fires

    fires = (drop > 0) & (p_adj <= alpha) & rising & (proxy_gain > min_proxy_gain)
    if min_drop is not None:
        fires &= drop >= min_drop
    if last_only:
        fires[:-1] = False
    if not fires.any():
        return None
    i = int(np.argmax(fires))
    j = int(peak_idx[i])
    return DivergenceEvent(
        step=int(steps_a[i]),
        peak_step=int(steps_a[j]),
        peak_gold=float(gold_a[j]),
        gold_at_detection=float(gold_a[i]),
        drop=float(drop[i]),
        proxy_gain_since_peak=float(proxy_gain[i]),
        p_value=float(p_adj[i]),
    )


# --------------------------------------------------------------------------------------------
# KL between diagonal Gaussian policies
# --------------------------------------------------------------------------------------------


def kl_gaussian_policies(
    mean_p: np.ndarray, std_p: np.ndarray, mean_q: np.ndarray, std_q: np.ndarray
) -> np.ndarray:
    """Per-state ``KL(p || q)`` between diagonal Gaussian action distributions, in nats.

    Closed form for ``p = N(mu_p, diag(sigma_p^2))``, ``q = N(mu_q, diag(sigma_q^2))``
    (the Kullback & Leibler 1951 divergence; standard univariate-Gaussian closed form, summed
    over the independent action dimensions), used for the ``d = sqrt(KL)`` axis of Gao et al.
    2022::

        KL = sum_k [ log(sigma_q,k / sigma_p,k)
                     + (sigma_p,k^2 + (mu_p,k - mu_q,k)^2) / (2 sigma_q,k^2) - 1/2 ].

    Args:
        mean_p: ``(N, act_dim)`` float, mean of ``p`` at each of ``N`` states.
        std_p: ``(N, act_dim)`` float, standard deviation of ``p`` (``> 0``).
        mean_q: ``(N, act_dim)`` float, mean of ``q``.
        std_q: ``(N, act_dim)`` float, standard deviation of ``q`` (``> 0``).

        The four are broadcast together (e.g. a state-independent ``(act_dim,)`` std, as in
        SB3's PPO); the broadcast shape must be 2-D.

    Returns:
        ``(N,)`` float64, ``KL(p(.|s_n) || q(.|s_n)) >= 0`` in nats.

    Raises:
        ValueError: if the inputs do not broadcast to a 2-D shape, hold non-finite values, or a
            standard deviation is ``<= 0``; the message names the argument.
    """
    arrays = {
        "mean_p": np.asarray(mean_p, dtype=np.float64),
        "std_p": np.asarray(std_p, dtype=np.float64),
        "mean_q": np.asarray(mean_q, dtype=np.float64),
        "std_q": np.asarray(std_q, dtype=np.float64),
    }
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: must be finite")
        if name.startswith("std") and np.any(arr <= 0):
            raise ValueError(f"{name}: standard deviations must be > 0")
    try:
        mp, sp, mq, sq = np.broadcast_arrays(*arrays.values())
    except ValueError as err:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise ValueError(
            f"mean_p, std_p, mean_q, std_q: shapes do not broadcast: {shapes}"
        ) from err
    if mp.ndim != 2:
        raise ValueError(
            f"mean_p, std_p, mean_q, std_q: expected to broadcast to (N, act_dim), got {mp.shape}"
        )
    ratio = (sp / sq) ** 2
    per_dim = 0.5 * (ratio + ((mp - mq) / sq) ** 2 - 1.0 - np.log(ratio))
    return np.maximum(per_dim.sum(axis=1), 0.0)


def mean_state_kl(
    mean_p: np.ndarray, std_p: np.ndarray, mean_q: np.ndarray, std_q: np.ndarray
) -> float:
    """Mean per-state KL between two diagonal Gaussian policies over visited states, in nats.

    Estimator: ``(1/N) sum_n KL(pi(.|s_n) || pi_init(.|s_n))`` on states ``s_n`` visited by the
    *current* policy ``pi = p`` (a Monte Carlo estimate of ``E_{s ~ d_pi} KL(pi || pi_init)``,
    the per-step KL; the per-trajectory KL of Gao et al. 2022 is ``T`` times it for ``T``-step
    episodes). Use ``d = sqrt(mean_state_kl(...))`` as the ``d`` axis of :func:`fit_gao`. For SB3
    Gaussian policies pass the distribution's mean and std; for squashed-Gaussian (SAC, tanh)
    policies pass the pre-squash Gaussian: KL is invariant under the invertible tanh, so it is
    also the KL of the squashed actions. (For PPO's clipped actions the pre-clip KL is an upper
    bound, by the data-processing inequality.) See :func:`kl_gaussian_policies`.

    Args:
        mean_p, std_p: ``(N, act_dim)`` float, current policy ``pi`` at the visited states.
        mean_q, std_q: ``(N, act_dim)`` float, initial/reference policy ``pi_init`` there.

    Returns:
        The mean KL in nats (float, ``>= 0``).

    Raises:
        ValueError: as :func:`kl_gaussian_policies`, or if ``N == 0``.
    """
    kl = kl_gaussian_policies(mean_p, std_p, mean_q, std_q)
    if kl.shape[0] == 0:
        raise ValueError("mean_p: no states (N == 0)")
    return float(kl.mean())


# --------------------------------------------------------------------------------------------
# metrics.jsonl helpers
# --------------------------------------------------------------------------------------------


def gold_proxy_curves(rows: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Evaluation curves from ``metrics.jsonl`` rows, aligned by env step.

    Data plumbing (no paper), feeding :func:`detect_divergence`. Takes the rows as
    :func:`rewardlab.diagnostics.metrics.read_metrics` returns them and keeps every step at which
    at least one of :data:`EVAL_KEYS` is logged (non-null). Several rows at the same step are
    merged, a later non-null value overriding an earlier one (e.g. rows re-logged after a
    resume); a key missing at a step is NaN.

    Args:
        rows: metric rows, each with an int ``"step"`` and namespaced keys.

    Returns:
        ``{"step": (n,) int64 sorted ascending, "eval/gold_return": (n,) float64,
        "eval/proxy_return": (n,) float64, "eval/gold_return_std": (n,) float64,
        "eval/episode_length": (n,) float64}``; returns in return units, length in env steps.

    Raises:
        ValueError: if a row with an eval key has no ``"step"``.
    """
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        present = {k: row[k] for k in EVAL_KEYS if row.get(k) is not None}
        if not present:
            continue
        if row.get("step") is None:
            raise ValueError(f"rows: a row with eval keys has no 'step': {dict(row)!r}")
        merged.setdefault(int(row["step"]), {}).update(
            {k: float(v) for k, v in present.items()}
        )
    step_list = sorted(merged)
    out: dict[str, np.ndarray] = {"step": np.asarray(step_list, dtype=np.int64)}
    for key in EVAL_KEYS:
        out[key] = np.asarray(
            [merged[s].get(key, math.nan) for s in step_list], dtype=np.float64
        )
    return out


class DivergenceMonitor:
    """Online over-optimisation alarm: feed each evaluation, get the event once.

    Wraps :func:`detect_divergence` (Welch test on the evaluation episodes, ``last_only``) for
    use during training. Only evaluations with a finite proxy return (i.e. once a reward model
    exists) are considered, and at each :meth:`update` only the evaluation just added is
    tested: gold significantly below its running peak while the proxy return rose since that
    peak and is still rising. So the event's ``step`` is always the ``step`` of the
    :meth:`update` call that returned it (the step the training loop logs it at), and an event is
    returned the first time, never again.

    Args:
        n_episodes: evaluation episodes behind each gold mean (integer >= 2).
        alpha: series-wise false-alarm level (see :func:`detect_divergence`).

    Raises:
        ValueError: if ``n_episodes`` is not an integer >= 2 or ``alpha`` not in (0, 1).
    """

    def __init__(self, n_episodes: int, alpha: float = 0.05) -> None:
        if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or (
            n_episodes < 2
        ):
            raise ValueError(f"n_episodes: must be an integer >= 2, got {n_episodes!r}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha!r}")
        self.n_episodes = int(n_episodes)
        self.alpha = alpha
        self.history: list[tuple[int, float, float, float]] = []
        self.event: DivergenceEvent | None = None

    def update(
        self, step: int, gold: float, proxy: float, gold_std: float
    ) -> DivergenceEvent | None:
        """Add one evaluation (gold/proxy means in return units, ``gold_std`` with ddof 0).

        Returns:
            The :class:`DivergenceEvent` (with ``event.step == step``) the first time divergence
            is detected at this evaluation, else None.

        Raises:
            ValueError: as :func:`detect_divergence`, e.g. if ``step`` is not larger than the
                previous evaluation's or ``gold_std < 0``.
        """
        if self.event is not None or not np.isfinite(proxy):
            return None
        self.history.append((int(step), float(gold), float(proxy), float(gold_std)))
        if len(self.history) < 2:
            return None
        steps, golds, proxies, stds = (np.array(c) for c in zip(*self.history, strict=True))
        self.event = detect_divergence(
            steps, golds, proxies, gold_std=stds, n_episodes=self.n_episodes, alpha=self.alpha,
            last_only=True,
        )
        return self.event


#: ``diagnostics/`` metric keys of a logged over-optimisation event, by :class:`DivergenceEvent`
#: field (what the training loop logs and :func:`describe_overoptimization` reads).
EVENT_KEYS = {
    "step": "diagnostics/overoptimization_step",
    "peak_step": "diagnostics/gold_peak_step",
    "drop": "diagnostics/gold_drop",
    "proxy_gain_since_peak": "diagnostics/proxy_gain_since_peak",
    "p_value": "diagnostics/p_value",
}


def describe_overoptimization(event: DivergenceEvent | Mapping[str, Any]) -> str:
    """The one sentence that reports an over-optimisation event everywhere.

    The terminal during training, ``rewardlab report`` and ``report.html`` all print this, so
    they name the same steps: the detection step (the evaluation at which the alarm fired,
    ``DivergenceEvent.step`` = ``diagnostics/overoptimization_step``, also the ``step`` of the
    ``metrics.jsonl`` row holding the event) and the step of the gold peak it was compared with.
    Example: ``"over-optimisation detected at step 15000: gold return 12.3 below its peak at
    step 10000 while the proxy return rose 40.1 (p = 0.003)"``.

    Args:
        event: a :class:`DivergenceEvent`, or a mapping holding the logged keys of
            :data:`EVENT_KEYS` (e.g. the ``metrics.jsonl`` row of the event; ``p_value`` is
            optional).

    Returns:
        The sentence (plain text, no markup; gold in gold-return units, proxy in its
        standardised units). Amounts of at least 1 are given to one decimal, smaller ones to
        two significant digits (a language-model gold score lies in ``[-1, 1]``: its drop of
        0.04 must not read "0.0").

    Raises:
        ValueError: if a mapping lacks one of the required keys or holds a null or non-numeric
            value there; the message names the key.
        TypeError: if ``event`` is neither a :class:`DivergenceEvent` nor a mapping.
    """
    if isinstance(event, DivergenceEvent):
        values: dict[str, Any] = {f: getattr(event, f) for f in EVENT_KEYS}
    elif isinstance(event, Mapping):
        values = {}
        for field, key in EVENT_KEYS.items():
            raw = event.get(key)
            if raw is None:
                if field == "p_value":
                    values[field] = None
                    continue
                raise ValueError(f"{key}: missing from the event (keys {sorted(event)})")
            try:
                values[field] = float(raw)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{key}: expected a number, got {raw!r}") from err
    else:
        raise TypeError(
            f"event: expected a DivergenceEvent or a mapping, got {type(event).__name__}"
        )
    p = values["p_value"]
    p_text = "" if p is None or not math.isfinite(p) else f" (p = {p:.2g})"
    return (
        f"over-optimisation detected at step {int(values['step'])}: gold return "
        f"{_amount(values['drop'])} below its peak at step {int(values['peak_step'])} while the "
        f"proxy return rose {_amount(values['proxy_gain_since_peak'])}{p_text}"
    )


def _amount(value: float) -> str:
    """``12.3`` for amounts of at least 1, ``0.043`` (two significant digits) below."""
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2g}"
