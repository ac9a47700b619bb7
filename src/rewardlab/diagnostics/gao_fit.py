"""Gao, Schulman & Hilton 2022, "Scaling Laws for Reward Model Overoptimization": the gold
reward of a policy against its distance ``d = sqrt(KL(pi || pi_init))`` from the initial one.

Pure NumPy:

* :func:`gao_curve` evaluates the functional forms (Eq. 1 best-of-n, Eq. 2 RL);
* :func:`fit_gao` fits them to measured ``(d, gold)`` by linear least squares and locates the
  peak of the fitted curve (:class:`GaoFit`).

The ``d`` axis of control runs comes from :func:`rewardlab.diagnostics.policy_kl.mean_state_kl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["GaoFit", "GaoForm", "fit_gao", "gao_curve"]

GaoForm = Literal["bon", "rl"]


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
