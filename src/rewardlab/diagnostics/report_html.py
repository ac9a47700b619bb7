"""Self-contained HTML reports of over-optimisation: one run, or several runs overlaid.

``rewardlab report RUN_DIR --html`` and ``rewardlab compare RUN_DIR ...`` call
:func:`write_run_report` and :func:`write_compare_report`. Everything is read from the run
directory (``metrics.jsonl``, ``summary.json``, ``config.yaml``, ``checkpoints/latest``); plots
are embedded as base64 PNG, so the file can be mailed or archived on its own.

A run report shows:

* gold (true) and proxy (learned) return of the same evaluation episodes against env steps,
  with feedback rounds, the detected over-optimisation event and any early stop marked;
* gold (and proxy) return against ``d = sqrt(KL(pi || pi_ref))`` with the two Gao et al. 2022 fits
  (:func:`rewardlab.diagnostics.gao_fit.fit_gao`) and their peaks;
* the reward model per feedback round: held-out accuracy and ECE, and accuracy and ECE on the
  round's fresh queries before retraining; Spearman correlation of proxy and gold returns over
  the evaluation episodes; ensemble disagreement on the policy's states;
* EPIC distance (Gleave et al. 2021) between the final learned reward and the true reward, for
  testbed envs whose true reward is known in closed form.

This module composes the pages; what they read and compute is in
:mod:`rewardlab.diagnostics.report_data`, the figures in :mod:`rewardlab.diagnostics.report_figures`
and the HTML building blocks in :mod:`rewardlab.diagnostics.report_markup`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.config import OFFLINE_ALGORITHMS
from rewardlab.diagnostics.gao_fit import GaoFit
from rewardlab.diagnostics.lm_curves import is_lm_run
from rewardlab.diagnostics.metrics import gold_proxy_curves, read_metrics
from rewardlab.diagnostics.overoptimization import describe_overoptimization
from rewardlab.diagnostics.plots import new_figure, reference_returns, step_axis
from rewardlab.diagnostics.report_data import (
    epic_to_gold,
    event_row,
    gao_analysis,
    load_meta,
    outcome,
    proxy_against_distance,
    value_at,
)
from rewardlab.diagnostics.report_figures import (
    FORM_NAMES,
    plot_curves,
    plot_gao,
    plot_reward_model,
    png,
)
from rewardlab.diagnostics.report_markup import fmt, html_page, html_table, settings_tables
from rewardlab.errors import RunDirError

#: The page writers; :func:`outcome`, :func:`gao_analysis` and :func:`epic_to_gold` live in
#: :mod:`rewardlab.diagnostics.report_data` and stay importable from here.
__all__ = ["epic_to_gold", "gao_analysis", "outcome", "write_compare_report", "write_run_report"]

#: Keys of the per-round reward-model table (label, metric key).
ROUND_KEYS = (
    ("queries", "feedback/queries_answered"),
    ("held-out acc", "reward_model/heldout_accuracy"),
    ("held-out ECE", "reward_model/heldout_ece"),
    ("fresh acc", "reward_model/fresh_accuracy"),
    ("fresh ECE", "reward_model/fresh_ece"),
    ("pool disagreement", "feedback/pool_disagreement"),
)


def _peak_text(fit: GaoFit | str, d: np.ndarray) -> tuple[str, str]:
    """``(peak d, peak gold gain)`` cells of a Gao fit: words, never ``inf``."""
    if not isinstance(fit, GaoFit):
        return "-", "-"
    if math.isinf(fit.peak_d):
        return "no finite peak: fitted gold still rising at the last point", "-"
    if fit.peak_d == 0.0:
        return "0 (fitted gold falls from the start)", fmt(fit.peak_gold)
    text = fmt(fit.peak_d)
    if d.size and fit.peak_d > float(d.max()):
        text += f" (beyond the largest measured d, {fmt(float(d.max()))})"
    return text, fmt(fit.peak_gold)


def _gao_section(rows: list[dict[str, Any]], oo: Mapping[str, Any]) -> str:
    """The over-optimisation curve: gold gain against sqrt KL, with the Gao et al. fits."""
    d, gain, fits = gao_analysis(rows, oo.get("reference_step"))
    parts = ["<h2>Over-optimisation curve</h2><p class='note'>d is the square root of "
             "the mean over the evaluation episodes' states of the closed-form KL between "
             "the current and the reference Gaussian action distributions (pre-squash for "
             "SAC); the reference is the policy at the first reward update.</p>",
             plot_gao(d, gain, fits, proxy_against_distance(rows))]
    fit_rows = []
    for form, fit in fits.items():
        if isinstance(fit, GaoFit):
            peak_d, peak_gold = _peak_text(fit, d)
            fit_rows.append([FORM_NAMES[form], fit.alpha, fit.beta, fit.r2, peak_d, peak_gold])
        else:
            fit_rows.append([FORM_NAMES[form], f"no fit: {fit}", None, None, None, None])
    parts.append(html_table(["form", "alpha", "beta", "R²", "peak d (sqrt-nats)",
                             "peak gold gain"], fit_rows))
    return "".join(parts)


def _evaluations_table(rows: list[dict[str, Any]], offline: bool) -> str:
    """One row per evaluation: gold, proxy, then the distance from the reference policy
    (online) or the D4RL normalised score (offline), and the proxy/gold Spearman."""
    c = gold_proxy_curves(rows)
    extra = (("eval/normalized_score", "normalised score (D4RL, random 0, expert 100)"),
             ("eval/normalized_score_std", "its std over episodes")) if offline else (
        ("diagnostics/sqrt_kl", "sqrt KL (sqrt-nats)"), ("diagnostics/policy_kl", "KL (nats)"))
    columns = [c["step"], c["eval/gold_return"], c["eval/proxy_return"],
               *[value_at(rows, key, c["step"]) for key, _ in extra],
               value_at(rows, "eval/proxy_gold_spearman", c["step"])]
    body = [[int(values[0]), *values[1:]] for values in zip(*columns, strict=True)]
    return "<h2>Evaluations</h2>" + html_table(
        ["update" if offline else "step", "gold return", "proxy return",
         *[label for _, label in extra], "Spearman"], body)


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of one run (default ``RUN_DIR/report.html``).

    Language-model runs (:func:`rewardlab.diagnostics.lm_curves.is_lm_run`) get their own page,
    :func:`rewardlab.diagnostics.report_lm.write_lm_run_report`. Offline runs (iql, td3bc,
    cpl) are plotted against gradient updates, with the D4RL
    normalised score and the dataset's mean return, their reward model per feedback round
    (every round is asked before the first update), and no over-optimisation curve (an
    offline agent has no reference policy to measure a distance from).

    Args:
        run_dir: the run directory.
        out: where to write the page (default ``run_dir/report.html``).

    Returns:
        The path written.

    Raises:
        RunDirError: if ``run_dir`` holds no ``metrics.jsonl``.
        OSError: if the page cannot be written.
    """
    run_dir = Path(run_dir)
    summary, config = load_meta(run_dir)
    if is_lm_run(config, summary):  # decided before the metrics are read: that page reads them
        from rewardlab.diagnostics.report_lm import write_lm_run_report

        return write_lm_run_report(run_dir, out)
    rows = read_metrics(run_dir)
    env_id = str((config.get("env") or {}).get("id", summary.get("env", "?")))
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    offline = algo in OFFLINE_ALGORITHMS
    x_label = "gradient updates" if offline else "environment steps"
    oo = summary.get("overoptimization", {})
    parts = [settings_tables(config, summary, run_dir)]

    head = outcome(run_dir) if gold_proxy_curves(rows)["step"].size else {}
    event = event_row(rows)
    stop = next((r for r in rows if r.get("diagnostics/early_stop_step") is not None), None)
    epic = None if offline else epic_to_gold(run_dir, env_id)
    refs = reference_returns(rows)
    if event is not None:
        parts.append("<h2>Over-optimisation</h2><p class='alarm'>"
                     f"{html.escape(describe_overoptimization(event))}.</p>")
    facts: list[tuple[str, Any]] = [
        ("final gold return", head.get("gold_final")), ("peak gold return", head.get("gold_peak")),
        ("peak-to-final gold drop", head.get("gold_drop")),
        ("proxy gain (first to last evaluation, standardised units)", head.get("proxy_gain")),
        ("uniformly random policy's gold return", refs.get("eval/random_return")),
        ("do-nothing (zero-action) policy's gold return", refs.get("eval/do_nothing_return")),
    ]
    if offline:
        final = summary.get("final_eval") or {}
        facts += [
            ("dataset episodes' mean gold return", refs.get("eval/dataset_return")),
            ("dataset's normalised score (D4RL)", summary.get("dataset_normalized_score")),
            ("final normalised score (D4RL)", final.get("eval/normalized_score")),
        ]
    else:
        facts.append(("reference policy frozen at step", oo.get("reference_step")))
    facts += [
        (f"over-optimisation detected at {'update' if offline else 'step'}",
         "not detected" if event is None else int(event["diagnostics/overoptimization_step"])),
        ("  gold peak it was compared with, at step",
         None if event is None else int(event["diagnostics/gold_peak_step"])),
        ("  gold drop / proxy rise since the peak / p-value", None if event is None else
         f"{event['diagnostics/gold_drop']:.2f} / "
         f"{event['diagnostics/proxy_gain_since_peak']:.2f} / "
         f"{fmt(event.get('diagnostics/p_value'), 2)}"),
    ]
    if not offline:
        facts += [
            ("early stop at step (rolled back to)", None if stop is None else
             f"{int(stop['diagnostics/early_stop_step'])} "
             f"({int(stop['diagnostics/early_stop_rollback_step'])}): "
             f"{oo.get('early_stop_reason')}"),
            ("EPIC distance, final learned reward vs true reward", epic),
        ]
    parts.append("<h2>Summary</h2>" + html_table(["figure", "value"], facts))
    where = f"{algo} on {config.get('dataset') or env_id}"
    parts.append("<h2>Gold and proxy return</h2>" + plot_curves(rows, where, x_label))
    if offline:
        parts.append("<p class='note'>x axis: gradient updates of the agent. The proxy return "
                     "is the return under the reward the agent trained on (learned, then "
                     "rescaled); none for CPL or the true reward.</p>")
    else:
        parts.append(_gao_section(rows, oo))

    parts.append("<h2>Reward model</h2>" + plot_reward_model(rows, x_label, offline))
    round_rows = [r for r in rows if r.get("feedback/round") is not None]
    round_keys = ROUND_KEYS + ((("random-pair acc (vs gold)",
                                 "reward_model/random_pair_accuracy"),) if offline else ())
    parts.append(html_table(
        ["update" if offline else "step", "round", *[k for k, _ in round_keys]],
        [[r["step"], int(r["feedback/round"]), *[r.get(key) for _, key in round_keys]]
         for r in round_rows],
    ))
    parts.append(_evaluations_table(rows, offline))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(html_page(f"RewardLab run report: {run_dir.name}", "".join(parts)),
                   encoding="utf-8")
    return out


def write_compare_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write one HTML page overlaying several runs (gold, proxy, gold against sqrt KL).

    Language-model runs are compared by
    :func:`rewardlab.diagnostics.report_lm.write_lm_compare_report`; language-model and
    control runs cannot be mixed in one page.

    Args:
        run_dirs: the run directories (at least one).
        out: where to write the page.

    Returns:
        The path written.

    Raises:
        RunDirError: if a directory holds no ``metrics.jsonl`` or no evaluation, or the runs
            mix language-model and control runs.
        ValueError: if ``run_dirs`` is empty.
        OSError: if the page cannot be written.
    """
    if not run_dirs:
        raise ValueError("run_dirs: give at least one run directory")
    metas = [(Path(r), *load_meta(Path(r))) for r in run_dirs]
    lm = [is_lm_run(config, summary) for _, summary, config in metas]
    if all(lm):  # decided before any metrics are read: that page reads them
        from rewardlab.diagnostics.report_lm import write_lm_compare_report

        return write_lm_compare_report(run_dirs, out)
    if any(lm):
        names = ", ".join(str(m[0]) for m, is_lm in zip(metas, lm, strict=True) if is_lm)
        raise RunDirError(
            f"cannot compare language-model runs ({names}) with control runs: their steps "
            "(optimizer steps vs environment steps), KL (per completion vs per state) and gold "
            "units differ; compare each kind separately"
        )
    runs = [(run_dir, read_metrics(run_dir), summary, config)
            for run_dir, summary, config in metas]
    fig = new_figure(13.0, 4.6)
    axes = fig.subplots(1, 3)
    table = []
    for run_dir, rows, summary, _config in runs:
        c = gold_proxy_curves(rows)
        label = run_dir.name
        axes[0].plot(c["step"], c["eval/gold_return"], "o-", ms=3, label=label)
        axes[1].plot(c["step"], c["eval/proxy_return"], "s--", ms=3)
        oo = summary.get("overoptimization", {})
        d, gain, fits = gao_analysis(rows, oo.get("reference_step"))
        axes[2].plot(d, gain, "o", ms=3)
        head = outcome(run_dir)
        event = event_row(rows)
        rl = fits.get("rl")
        rl_peak = _peak_text(rl, d)[0] if isinstance(rl, GaoFit) else None
        table.append([label, head["gold_final"], head["gold_peak"], head["gold_drop"],
                      head["proxy_gain"],
                      None if event is None else int(event["diagnostics/overoptimization_step"]),
                      oo.get("early_stopped_at"), rl_peak])
    for ax, title, ylabel in zip(
        axes,
        ("Gold return", "Proxy return", "Gold gain against distance"),
        ("gold return (true reward per episode)", "proxy return (standardised)",
         "gold return - reference (per episode)"), strict=True,
    ):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    offline = all(config.get("algorithm") in OFFLINE_ALGORITHMS for *_, config in runs)
    x_label = "gradient updates" if offline else "environment steps"  # mixed: steps/updates
    if not offline and any(config.get("algorithm") in OFFLINE_ALGORITHMS for *_, config in runs):
        x_label = "environment steps (online) or gradient updates (offline)"
    step_axis(axes[0], x_label)
    step_axis(axes[1], x_label)
    axes[2].set_xlabel("d = sqrt(KL(π ‖ π_ref)) (sqrt-nats)")
    fig.legend(loc="outside lower center", ncols=min(4, len(runs)), fontsize=8, frameon=False)
    body = png(fig, "runs overlaid") + html_table(
        ["run", "gold final", "gold peak", "gold drop", "proxy gain", "over-opt. step",
         "early stop", "Gao RL peak d"], table)
    out = Path(out)
    out.write_text(html_page("RewardLab run comparison", body), encoding="utf-8")
    return out
