"""Reward over-optimisation alarm: gold/proxy divergence detection and its one-sentence report.

Pure NumPy/SciPy maths (no torch, no training loops):

* :func:`detect_divergence` flags, noise-aware, the first evaluation at which the gold (true)
  return has fallen significantly below its running peak while the proxy (learned-reward) return
  has risen since that peak and is still rising: the signature of reward hacking (Gao et al.
  2022). :class:`DivergenceMonitor` runs it online, one evaluation at a time, and
  :func:`describe_overoptimization` words the event identically for the terminal,
  ``rewardlab report`` and ``report.html``; :data:`EVENT_KEYS` are the metric keys it is
  logged under.

The Gao et al. 2022 fits are in :mod:`rewardlab.diagnostics.gao_fit`, the policy KL of their
``d`` axis in :mod:`rewardlab.diagnostics.policy_kl`, and a run's evaluation curves come from
:func:`rewardlab.diagnostics.metrics.gold_proxy_curves`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "EVENT_KEYS",
    "DivergenceEvent",
    "DivergenceMonitor",
    "describe_overoptimization",
    "detect_divergence",
]

#: Fewest evaluations (with a finite gold return) for the robust, series-based noise estimate.
MIN_EVALS_ROBUST = 5

# 1 / Phi^{-1}(3/4): turns a median absolute deviation into a Gaussian standard deviation.
_MAD_TO_STD = 1.482602218505602


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
