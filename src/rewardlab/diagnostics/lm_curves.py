"""Gold vs proxy of language-model runs: evaluation curves, the Gao et al. 2022 fit, and the
benchmark figures (peak and final gold, ``sqrt(KL)`` at the peak).

Pure NumPy (no torch, no plotting), shared by ``rewardlab report``/``report.html``/``compare``
for language-model runs and by the language-model over-optimisation benchmark. The rows are
those of a run's ``metrics.jsonl`` (:func:`rewardlab.diagnostics.metrics.read_metrics`), written
as the language-model run contract says:

* ``step``: the optimizer step (grpo, rloo, dpo, online_dpo), or for best-of-n the index of
  ``n`` in its grid, with ``eval/bon_n`` holding ``n``;
* ``eval/gold_return`` (and ``_std``, ddof 0) and ``eval/proxy_return`` (and ``_std``): mean
  gold score and mean proxy score (the learned reward as optimised) of the same evaluation
  samples, ``eval/samples`` of them;
* ``eval/kl``: ``KL(pi || pi_ref)`` per completion in nats (Monte Carlo, logged unclamped, so
  slightly negative estimates near the reference stay visible; for best-of-n the analytic
  ``log n - (n - 1) / n``) and ``eval/sqrt_kl`` its square root (0 for a negative estimate),
  the ``d`` axis of Gao, Schulman & Hilton 2022, "Scaling Laws for Reward Model
  Overoptimization";
* ``reward_model/disagreement_on_policy``: the ensemble's std of member scores on the samples.

:func:`lm_benchmark_fields` turns such rows into the benchmark row fields ``gold_peak``,
``gold_final`` and ``sqrt_kl_at_peak`` (observed, and from the fitted Gao curve).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.config import LM_ALGORITHMS  # the one list of language-model algorithms
from rewardlab.diagnostics.gao_fit import GaoFit, GaoForm, fit_gao
from rewardlab.errors import RunDirError

__all__ = [
    "LM_ALGORITHMS",
    "LM_EVAL_KEYS",
    "LMGaoAnalysis",
    "bon_event_note",
    "describe_lm_fit",
    "describe_lm_peak",
    "gao_form_for",
    "is_lm_run",
    "lm_benchmark_fields",
    "lm_eval_curves",
    "lm_gao_analysis",
    "read_lm_samples",
]


#: Per-evaluation metric keys :func:`lm_eval_curves` extracts (besides ``step``).
LM_EVAL_KEYS = (
    "eval/gold_return",
    "eval/gold_return_std",
    "eval/proxy_return",
    "eval/proxy_return_std",
    "eval/samples",
    "eval/kl",
    "eval/sqrt_kl",
    "eval/bon_n",
    "eval/mean_completion_tokens",
    "reward_model/disagreement_on_policy",
)


def is_lm_run(config: Mapping[str, Any], summary: Mapping[str, Any]) -> bool:
    """Whether a run directory holds a language-model run.

    Args:
        config: the run's ``config.yaml`` as a mapping (may be empty).
        summary: the run's ``summary.json`` as a mapping (may be empty).

    Returns:
        True when ``summary["track"] == "lm"``, or (no track recorded) when the config's or the
        summary's ``algorithm`` is one of :data:`LM_ALGORITHMS`.
    """
    if summary.get("track") is not None:
        return summary.get("track") == "lm"
    return (config.get("algorithm") or summary.get("algorithm")) in LM_ALGORITHMS


def gao_form_for(algorithm: str) -> GaoForm:
    """The Gao et al. 2022 functional form of an optimiser: ``"bon"`` (Eq. 1,
    ``d (alpha - beta d)``) for best-of-n sampling, ``"rl"`` (Eq. 2,
    ``d (alpha - beta log d)``) for every other (policy-updating) method."""
    return "bon" if algorithm == "bon" else "rl"


def lm_eval_curves(rows: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The evaluations of a language-model run, one entry per evaluation step.

    Keeps every step at which ``eval/gold_return`` is logged (non-null); several rows at the
    same step are merged, a later non-null value overriding an earlier one (rows re-logged after
    a resume). A key missing at an evaluation is NaN; ``eval/sqrt_kl`` missing where ``eval/kl``
    is logged and ``>= 0`` is filled with ``sqrt(eval/kl)``.

    Args:
        rows: ``metrics.jsonl`` rows, each with an int ``step``.

    Returns:
        ``{"step": (n,) int64 ascending, key: (n,) float64 for key in LM_EVAL_KEYS}``; gold and
        proxy in their own score units, ``eval/kl`` in nats, ``eval/sqrt_kl`` in sqrt-nats.

    Raises:
        ValueError: if a row holding ``eval/gold_return`` has no ``step``.
    """
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        present = {k: float(row[k]) for k in LM_EVAL_KEYS if row.get(k) is not None}
        if not present:
            continue
        if row.get("step") is None:
            raise ValueError(f"rows: a row with eval keys has no 'step': {dict(row)!r}")
        merged.setdefault(int(row["step"]), {}).update(present)
    steps = sorted(s for s, v in merged.items() if "eval/gold_return" in v)
    out: dict[str, np.ndarray] = {"step": np.asarray(steps, dtype=np.int64)}
    for key in LM_EVAL_KEYS:
        out[key] = np.asarray([merged[s].get(key, math.nan) for s in steps], dtype=np.float64)
    kl, d = out["eval/kl"], out["eval/sqrt_kl"]
    fill = ~np.isfinite(d) & np.isfinite(kl) & (kl >= 0)
    out["eval/sqrt_kl"] = np.where(fill, np.sqrt(np.where(fill, kl, 0.0)), d)
    return out


@dataclass(frozen=True)
class LMGaoAnalysis:
    """Gold gain against ``d = sqrt(KL)`` and its Gao et al. 2022 fit, for one run.

    Attributes:
        form: ``"bon"`` (Eq. 1) or ``"rl"`` (Eq. 2).
        step: ``(n,)`` int64, steps of the evaluations used (finite gold and ``d >= 0``).
        d: ``(n,)`` float64, ``eval/sqrt_kl`` of those evaluations (sqrt-nats).
        gold: ``(n,)`` float64, their mean gold score.
        gold_ref: gold of the reference evaluation, the first one (in step order) at the
            smallest ``d`` (``d = 0``: the reference policy itself), NaN when there is none.
        d_ref: ``d`` of the reference evaluation (0 for a run that evaluated its reference
            policy; a larger value makes the fit's ``R(0) = 0`` an approximation).
        fit: the :class:`GaoFit` of ``gold - gold_ref`` against ``d``, or None.
        reason: why there is no fit (None when there is one).
    """

    form: GaoForm
    step: np.ndarray
    d: np.ndarray
    gold: np.ndarray
    gold_ref: float
    d_ref: float
    fit: GaoFit | None
    reason: str | None

    @property
    def gain(self) -> np.ndarray:
        """``(n,)`` float64, ``gold - gold_ref`` (gold-score units)."""
        return self.gold - self.gold_ref

    def predict_gold(self, d: np.ndarray) -> np.ndarray:
        """Fitted gold score (absolute, ``gold_ref + R(d)``) at ``d`` (``(...)`` sqrt-nats).

        Raises:
            ValueError: if there is no fit.
        """
        if self.fit is None:
            raise ValueError(f"no Gao fit: {self.reason}")
        return self.gold_ref + self.fit.predict(d)


def lm_gao_analysis(curves: Mapping[str, np.ndarray], form: GaoForm) -> LMGaoAnalysis:
    """Fit Gao et al. 2022's gold-vs-``d`` law to a language-model run's evaluations.

    Gao, Schulman & Hilton 2022, Eq. 1 (best-of-n) ``R(d) = d (alpha - beta d)`` or Eq. 2 (RL)
    ``R(d) = d (alpha - beta log d)``, ``d = sqrt(KL(pi || pi_ref))``, fitted by
    :func:`rewardlab.diagnostics.gao_fit.fit_gao` to ``R = gold - gold_ref``, with
    ``gold_ref`` the gold score of the evaluation at the smallest ``d`` (``d = 0``).

    Args:
        curves: as returned by :func:`lm_eval_curves`.
        form: ``"bon"`` or ``"rl"`` (:func:`gao_form_for`).

    Returns:
        An :class:`LMGaoAnalysis`; its ``fit`` is None (with the ``reason``) when fewer than two
        distinct positive ``d`` are measured.

    Raises:
        ValueError: if ``form`` is neither ``"bon"`` nor ``"rl"``.
    """
    if form not in ("bon", "rl"):
        raise ValueError(f"form: must be 'bon' or 'rl', got {form!r}")
    d_all, gold_all = curves["eval/sqrt_kl"], curves["eval/gold_return"]
    use = np.isfinite(gold_all) & np.isfinite(d_all) & (d_all >= 0)
    step, d, gold = curves["step"][use], d_all[use], gold_all[use]
    if not use.any():
        return LMGaoAnalysis(form, step, d, gold, math.nan, math.nan, None,
                             "no evaluation logs both eval/gold_return and eval/sqrt_kl")
    ref = int(np.argmin(d))  # the first of the smallest (argmin returns the first)
    gold_ref, d_ref = float(gold[ref]), float(d[ref])
    try:
        fit: GaoFit | None = fit_gao(d, gold - gold_ref, form)
        reason = None
    except ValueError as err:
        fit, reason = None, str(err)
    return LMGaoAnalysis(form, step, d, gold, gold_ref, d_ref, fit, reason)


def lm_benchmark_fields(rows: Iterable[Mapping[str, Any]], form: GaoForm) -> dict[str, Any]:
    """The benchmark row fields of one language-model run, from its evaluation rows.

    Observed figures come from the evaluations (:func:`lm_eval_curves`); the peak is the
    first evaluation holding the largest mean gold score. Fitted figures come from
    :func:`lm_gao_analysis` (Gao et al. 2022, Eq. 1 for ``form="bon"``, Eq. 2 for ``"rl"``).

    Args:
        rows: ``metrics.jsonl`` rows of the run (or any rows with the same keys).
        form: ``"bon"`` or ``"rl"`` (:func:`gao_form_for` of the run's algorithm).

    Returns:
        A dict, gold in gold-score units, ``d`` in sqrt-nats, NaN where not measurable:

        * ``evals``: number of evaluations;
        * ``gold_first``, ``gold_peak``, ``gold_final``: mean gold of the first, the best and
          the last evaluation; ``step_at_peak``: the best one's step (int) and
          ``bon_n_at_peak`` its ``eval/bon_n`` (best-of-n runs; NaN otherwise);
        * ``sqrt_kl_at_peak``: observed ``d`` at the best evaluation; ``sqrt_kl_final``: at the
          last;
        * ``gold_drop = gold_peak - gold_final`` (``>= 0``) and ``gold_drop_se``, the standard
          error of that difference from the two evaluations' sample stds and counts
          (``sqrt(std_p^2 / (k_p - 1) + std_f^2 / (k_f - 1))``, stds ddof 0; NaN when not
          logged; 0 when the peak is the last evaluation);
        * ``peaked_then_fell``: the best evaluation is not the last and gold then fell
          (``gold_drop > 0``);
        * ``gao_form``, ``gao_alpha``, ``gao_beta``, ``gao_r2``: the fit (NaN without one);
        * ``sqrt_kl_at_peak_fit``: ``d`` at the fitted curve's maximum (``inf`` when the fitted
          curve has no maximum, 0 when it falls from the start); ``gold_peak_fit``: the fitted
          gold there, absolute (reference gold + fitted gain).

    Raises:
        ValueError: if no row holds ``eval/gold_return``, or ``form`` is unknown.
    """
    curves = lm_eval_curves(rows)
    gold = curves["eval/gold_return"]
    if gold.size == 0:
        raise ValueError("rows: no evaluation (no row holds eval/gold_return)")
    peak = int(np.argmax(gold))  # the first of the largest
    last = gold.size - 1
    std, k = curves["eval/gold_return_std"], curves["eval/samples"]
    with np.errstate(divide="ignore", invalid="ignore"):
        se = math.sqrt(std[peak] ** 2 / (k[peak] - 1) + std[last] ** 2 / (k[last] - 1))
    gao = lm_gao_analysis(curves, form)
    fit = gao.fit
    return {
        "evals": int(gold.size),
        "gold_first": float(gold[0]),
        "gold_peak": float(gold[peak]),
        "gold_final": float(gold[last]),
        "step_at_peak": int(curves["step"][peak]),
        "bon_n_at_peak": float(curves["eval/bon_n"][peak]),
        "sqrt_kl_at_peak": float(curves["eval/sqrt_kl"][peak]),
        "sqrt_kl_final": float(curves["eval/sqrt_kl"][last]),
        "gold_drop": float(gold[peak] - gold[last]),
        "gold_drop_se": 0.0 if peak == last else se,
        "peaked_then_fell": bool(peak < last and gold[last] < gold[peak]),
        "gao_form": form,
        "gao_alpha": math.nan if fit is None else fit.alpha,
        "gao_beta": math.nan if fit is None else fit.beta,
        "gao_r2": math.nan if fit is None else fit.r2,
        "sqrt_kl_at_peak_fit": math.nan if fit is None else fit.peak_d,
        "gold_peak_fit": math.nan if fit is None else gao.gold_ref + fit.peak_gold,
    }


def read_lm_samples(run_dir: str | Path) -> dict[int, list[dict[str, Any]]]:
    """Text samples a language-model run saved, by evaluation step.

    Reads every ``run_dir/samples/*.jsonl`` (sorted by name); each line a JSON object with
    ``step`` (int), ``prompt`` and ``completion`` (str) and optionally ``gold`` and ``proxy``
    (float). A torn last line (a killed run) and lines that are not such objects are skipped.

    Args:
        run_dir: the run directory.

    Returns:
        ``{step: [row, ...]}`` in file order; empty when the run saved no samples.

    Raises:
        RunDirError: if ``samples/`` exists but a file in it cannot be read.
    """
    out: dict[int, list[dict[str, Any]]] = {}
    folder = Path(run_dir) / "samples"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise RunDirError(f"{path}: cannot read the samples file ({err})") from err
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (isinstance(row, dict) and isinstance(row.get("step"), int)
                    and isinstance(row.get("completion"), str)):
                out.setdefault(int(row["step"]), []).append(row)
    return out


_FORM_TEXT = {"bon": "best-of-n fit (Gao et al. 2022 Eq. 1, R = d (alpha - beta d))",
              "rl": "RL fit (Gao et al. 2022 Eq. 2, R = d (alpha - beta log d))"}


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def describe_lm_fit(fields: Mapping[str, Any], d_max: float | None = None) -> str:
    """One sentence on the Gao fit of :func:`lm_benchmark_fields`'s ``fields``.

    Example: ``"RL fit (Gao et al. 2022 Eq. 2, R = d (alpha - beta log d)): alpha 0.84, beta
    0.41, R² 0.97; fitted peak at sqrt KL 2.3 with gold 0.62"``.

    Args:
        fields: as returned by :func:`lm_benchmark_fields`.
        d_max: the largest measured ``d``; a fitted peak beyond it is said to be.

    Returns:
        Plain text (no markup), never ``inf``.
    """
    head = _FORM_TEXT[str(fields["gao_form"])]
    alpha = fields["gao_alpha"]
    if not math.isfinite(alpha):
        return f"{head}: no fit (needs at least two distinct positive sqrt KL values)"
    r2 = fields["gao_r2"]
    text = (f"{head}: alpha {_num(alpha)}, beta {_num(fields['gao_beta'])}"
            + ("" if not math.isfinite(r2) else f", R² {r2:.2f}"))
    peak_d, peak_gold = fields["sqrt_kl_at_peak_fit"], fields["gold_peak_fit"]
    if math.isinf(peak_d):
        return text + "; no finite fitted peak (the fitted gold still rises at the largest d)"
    if peak_d == 0.0:
        return text + "; fitted gold falls from d = 0 (no gain from optimising the proxy)"
    text += f"; fitted peak at sqrt KL {_num(peak_d)} with gold {_num(peak_gold)}"
    if d_max is not None and math.isfinite(d_max) and peak_d > d_max:
        text += f" (beyond the largest measured sqrt KL, {_num(d_max)})"
    return text


def describe_lm_peak(fields: Mapping[str, Any], step_name: str = "step") -> str:
    """One sentence on whether the observed gold peaked and then fell.

    Example: ``"observed gold peaked at step 40 (sqrt KL 2.1, gold 0.6) then fell to 0.41 at
    the end (drop 0.19, standard error 0.04)"``.

    Args:
        fields: as returned by :func:`lm_benchmark_fields`.
        step_name: what ``step`` counts; a best-of-n peak is named by its ``n`` instead.

    Returns:
        Plain text (no markup).
    """
    d, n = fields["sqrt_kl_at_peak"], fields.get("bon_n_at_peak", math.nan)
    at = f"n = {int(n)}" if math.isfinite(n) else f"{step_name} {fields['step_at_peak']}"
    where = (f"{at} ("
             + ("" if not math.isfinite(d) else f"sqrt KL {_num(d)}, ")
             + f"gold {_num(fields['gold_peak'])})")
    if not fields["peaked_then_fell"]:
        return (f"observed gold did not fall after its peak: best at {where}, the last of "
                f"{fields['evals']} evaluations")
    se = fields["gold_drop_se"]
    return (f"observed gold peaked at {where} then fell to {_num(fields['gold_final'])} at the "
            f"end (drop {_num(fields['gold_drop'])}"
            + ("" if not math.isfinite(se) else f", standard error {_num(se)}") + ")")


def bon_event_note(event: Mapping[str, Any], curves: Mapping[str, np.ndarray]) -> str:
    """The ``n`` behind a best-of-n run's over-optimisation event, whose steps index the n grid.

    Args:
        event: the ``metrics.jsonl`` row of the event (``diagnostics/overoptimization_step``,
            ``diagnostics/gold_peak_step``).
        curves: the run's :func:`lm_eval_curves`.

    Returns:
        E.g. ``"(steps index the n grid: detected at n = 16, gold peak at n = 4)"``; ``""``
        when the run logged no ``eval/bon_n`` at those steps.
    """
    n_at = dict(zip(curves["step"].tolist(), curves["eval/bon_n"].tolist(), strict=True))
    detected = n_at.get(int(event["diagnostics/overoptimization_step"]), math.nan)
    peak = n_at.get(int(event.get("diagnostics/gold_peak_step", -1)), math.nan)
    if not (math.isfinite(detected) and math.isfinite(peak)):
        return ""
    return (f"(steps index the n grid: detected at n = {int(detected)}, gold peak at "
            f"n = {int(peak)})")
