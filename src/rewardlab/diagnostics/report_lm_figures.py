"""The figures of the language-model run reports (:mod:`rewardlab.diagnostics.report_lm`),
each returned as an embedded PNG ``<img>`` (or drawn into a given figure).

* :func:`plot_lm_curves`: gold and proxy score of the same evaluation samples against optimizer
  steps (best-of-n: against ``n``), with the gold peak, the over-optimisation alarm and the
  feedback rounds marked;
* :func:`plot_lm_gao` / :func:`draw_lm_gao`: gold and proxy against
  ``d = sqrt(KL(pi || pi_ref))`` with the Gao et al. 2022 fit of the run's optimiser (Eq. 1
  best-of-n, Eq. 2 RL) and its peak;
* :func:`plot_lm_reward_model`: the reward model per feedback round (held-out and fresh
  accuracy, ECE, judge-vs-gold agreement) and the ensemble's disagreement on the policy's
  samples;
* :func:`plot_lm_compare`: several runs overlaid (gold, proxy, gold against ``d`` with fits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rewardlab.diagnostics.lm_curves import LMGaoAnalysis, lm_gao_analysis
from rewardlab.diagnostics.metrics import series
from rewardlab.diagnostics.plots import GOLD_COLOR, PROXY_COLOR, new_figure, step_axis
from rewardlab.diagnostics.report_data import event_row
from rewardlab.diagnostics.report_figures import png

#: How the report names each Gao et al. 2022 functional form.
FORM_NAMES = {"bon": "best-of-n (Gao et al. 2022 Eq. 1)", "rl": "RL (Gao et al. 2022 Eq. 2)"}
_D_LABEL = "d = sqrt(KL(π ‖ π_ref)) per completion (sqrt-nats)"


def _x_of(curves: Mapping[str, np.ndarray], bon: bool) -> tuple[np.ndarray, str]:
    """x values and label of the step plots: ``n`` (log scale) for best-of-n runs that log it,
    else the step."""
    if bon and np.isfinite(curves["eval/bon_n"]).all() and curves["eval/bon_n"].size:
        return curves["eval/bon_n"], "n (best of n samples per prompt, log scale)"
    return curves["step"].astype(np.float64), "optimizer steps"


def plot_lm_curves(rows: list[dict[str, Any]], curves: Mapping[str, np.ndarray],
                    title: str, bon: bool) -> str:
    """Gold (left axis, mean ± std) and proxy (right axis) score of the same evaluation samples
    against optimizer steps, or against ``n`` on a log scale for a best-of-n run (``bon``),
    with the observed gold peak, the over-optimisation alarm and the feedback rounds marked.

    Args:
        rows: the run's ``metrics.jsonl`` rows; curves: its
            :func:`~rewardlab.diagnostics.lm_curves.lm_eval_curves`.
        title: the plot's title; bon: whether the run is best-of-n.

    Returns:
        The figure as an embedded PNG ``<img>``.
    """
    fig = new_figure(8.5, 4.8)
    ax = fig.subplots()
    x, x_label = _x_of(curves, bon)
    gold, std = curves["eval/gold_return"], curves["eval/gold_return_std"]
    ax.errorbar(x, gold, yerr=np.where(np.isfinite(std), std, 0.0), fmt="o-", color=GOLD_COLOR,
                capsize=2, ms=4, lw=1.5, zorder=3)
    handles: list[Any] = [Line2D([], [], color=GOLD_COLOR, marker="o", ms=4,
                                 label="gold score, mean ± std of the evaluation samples")]
    ax.set_ylabel("gold score (task's true reward, per completion)", color=GOLD_COLOR)
    ax.tick_params(axis="y", colors=GOLD_COLOR)
    proxy = curves["eval/proxy_return"]
    if np.isfinite(proxy).any():
        ax2 = ax.twinx()
        ok = np.isfinite(proxy)
        ax2.plot(x[ok], proxy[ok], "s--", color=PROXY_COLOR, ms=4, lw=1.2, zorder=3)
        ax2.set_ylabel("proxy score (learned reward as optimised)", color=PROXY_COLOR)
        ax2.tick_params(axis="y", colors=PROXY_COLOR)
        handles.append(Line2D([], [], color=PROXY_COLOR, marker="s", ls="--", ms=4,
                              label="proxy score of the same samples, right axis"))
    if gold.size:
        peak = int(np.argmax(gold))
        ax.plot([x[peak]], [gold[peak]], "*", color="red", ms=13, zorder=4)
        handles.append(Line2D([], [], color="red", marker="*", ls="", ms=10,
                              label="observed gold peak"))
    event = event_row(rows)
    if event is not None and not bon:
        ax.axvline(float(event["diagnostics/overoptimization_step"]), color="red", ls="-.",
                   lw=1.5, zorder=2)
        handles.append(Line2D([], [], color="red", ls="-.", lw=1.5, label=(
            f"over-optimisation detected at step {int(event['diagnostics/overoptimization_step'])}"
        )))
    rounds = series(rows, "feedback/round")[0]
    if not bon and rounds:
        for r in rounds:
            ax.axvline(r, color="grey", alpha=0.25, lw=0.8, zorder=1)
        handles.append(Line2D([], [], color="grey", alpha=0.5, lw=0.8, label="feedback round"))
    if x_label.startswith("n "):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x_label)
    else:
        step_axis(ax, x_label)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return png(fig, f"gold and proxy score against {x_label}")


def draw_lm_gao(fig: Figure, gao: LMGaoAnalysis, curves: Mapping[str, np.ndarray]) -> None:
    """Draw gold (left axis) and proxy (right axis) against ``d = sqrt(KL)`` into ``fig``, with
    the run's Gao et al. 2022 fit, its peak (a triangle and a dotted vertical line) and the
    observed gold peak (a star). The legend sits below the axes.

    Args:
        fig: an empty figure (:func:`rewardlab.diagnostics.plots.new_figure`).
        gao: the run's :func:`~rewardlab.diagnostics.lm_curves.lm_gao_analysis`.
        curves: the run's :func:`~rewardlab.diagnostics.lm_curves.lm_eval_curves`.
    """
    ax = fig.subplots()
    ax.plot(gao.d, gao.gold, "o", color=GOLD_COLOR, ms=5, zorder=3)
    handles: list[Any] = [Line2D([], [], color=GOLD_COLOR, marker="o", ls="",
                                 label="gold score per evaluation (left axis)")]
    if gao.gold.size:
        peak = int(np.argmax(gao.gold))
        ax.plot([gao.d[peak]], [gao.gold[peak]], "*", color="red", ms=13, zorder=4)
        handles.append(Line2D([], [], color="red", marker="*", ls="", ms=10,
                              label="observed gold peak"))
    fit = gao.fit
    if fit is not None and gao.d.size:
        top = float(gao.d.max()) * 1.1
        if math.isfinite(fit.peak_d) and fit.peak_d <= 2.0 * top:
            top = max(top, fit.peak_d * 1.1)
        grid = np.linspace(0.0, max(top, 1e-3), 200)
        ax.plot(grid, gao.predict_gold(grid), "-", color="tab:green")
        handles.append(Line2D([], [], color="tab:green", label=(
            f"{FORM_NAMES[gao.form]} fit: alpha={fit.alpha:.3g}, beta={fit.beta:.3g}, "
            f"R²={fit.r2:.2f}")))
        if math.isfinite(fit.peak_d) and fit.peak_d <= grid[-1]:
            ax.plot([fit.peak_d], [gao.gold_ref + fit.peak_gold], "^", color="tab:green",
                    ms=10, mec="k", zorder=4)
            ax.axvline(fit.peak_d, color="tab:green", ls=":", lw=1)
            handles.append(Line2D([], [], color="tab:green", marker="^", mec="k", ls="",
                                  label=f"fitted peak: d*={fit.peak_d:.3g}, "
                                        f"gold {gao.gold_ref + fit.peak_gold:.3g}"))
    if math.isfinite(gao.gold_ref):
        ax.axhline(gao.gold_ref, color="grey", lw=0.6)
    d_all, proxy = curves["eval/sqrt_kl"], curves["eval/proxy_return"]
    ok = np.isfinite(d_all) & np.isfinite(proxy)
    if ok.any():
        ax2 = ax.twinx()
        ax2.plot(d_all[ok], proxy[ok], "s", mfc="none", color=PROXY_COLOR, ms=5)
        ax2.set_ylabel("proxy score (learned reward as optimised)", color=PROXY_COLOR)
        ax2.tick_params(axis="y", colors=PROXY_COLOR)
        handles.append(Line2D([], [], color=PROXY_COLOR, marker="s", mfc="none", ls="",
                              label="proxy score per evaluation (right axis)"))
    ax.set_xlabel(_D_LABEL)
    ax.set_ylabel("gold score (mean over the evaluation samples)", color=GOLD_COLOR)
    ax.tick_params(axis="y", colors=GOLD_COLOR)
    ax.grid(True, alpha=0.3)
    ax.set_title("Gold and proxy against distance from the reference policy (Gao et al. 2022)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)


def plot_lm_gao(gao: LMGaoAnalysis, curves: Mapping[str, np.ndarray]) -> str:
    """:func:`draw_lm_gao` on a new figure, as an embedded PNG ``<img>``."""
    fig = new_figure(8.5, 4.8)
    draw_lm_gao(fig, gao, curves)
    return png(fig, "gold and proxy score against sqrt KL with the Gao et al. 2022 fit")


def _round_points(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(feedback round, value) of ``key`` at the rows that log both; (step, value) when the run
    logs no rounds."""
    pairs = [(float(r["feedback/round"]), float(r[key])) for r in rows
             if r.get(key) is not None and r.get("feedback/round") is not None]
    if not pairs:
        s, v = series(rows, key)
        return [float(x) for x in s], v
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_lm_reward_model(rows: list[dict[str, Any]], curves: Mapping[str, np.ndarray],
                          bon: bool) -> str:
    """Left: the reward model per feedback round (held-out, fresh and train accuracy, held-out
    ECE, judge-vs-gold agreement; against steps when the run logs no rounds). Right: the
    ensemble's disagreement (std of member scores) on the evaluation samples against steps
    (``n`` for best-of-n).

    Args:
        rows: the run's ``metrics.jsonl`` rows; curves: its
            :func:`~rewardlab.diagnostics.lm_curves.lm_eval_curves`; bon: whether the run is
            best-of-n.

    Returns:
        The figure as an embedded PNG ``<img>``.
    """
    fig = new_figure(10.0, 4.4)
    ax1, ax2 = fig.subplots(1, 2)
    by_round = any(r.get("feedback/round") is not None for r in rows)
    for key, style, color in (
        ("reward_model/heldout_accuracy", "o-", "tab:blue"),
        ("reward_model/fresh_accuracy", "s--", "tab:blue"),
        ("reward_model/train_accuracy", "v:", "tab:cyan"),
        ("reward_model/heldout_ece", "o-", "tab:red"),
        ("feedback/judge_gold_agreement", "D-.", "tab:green"),
    ):
        x, v = _round_points(rows, key)
        if v:
            what = key.split("/")[1].replace("heldout", "held-out").replace("_", " ")
            what = what.replace("ece", "ECE").replace("judge gold", "judge-vs-gold")
            ax1.plot(x, v, style, color=color, ms=4, label=what)
    ax1.set_xlabel("feedback round" if by_round else "optimizer steps")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylabel("accuracy, agreement and ECE (0 to 1)")
    ax1.set_ylim(-0.02, 1.02)
    ax1.grid(True, alpha=0.3)
    ax1.set_title("Reward model per feedback round", fontsize=10)
    if ax1.get_lines():
        ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2,
                   frameon=False)
    x, x_label = _x_of(curves, bon)
    dis = curves["reward_model/disagreement_on_policy"]
    ok = np.isfinite(dis)
    ax2.plot(x[ok], dis[ok], "^:", color="tab:gray", ms=4)
    if x_label.startswith("n "):
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel(x_label)
    else:
        step_axis(ax2, x_label)
    ax2.set_ylabel("ensemble std of member scores")
    ax2.grid(True, alpha=0.3)
    ax2.set_title("Ensemble disagreement on the evaluation samples", fontsize=10)
    return png(fig, "reward model accuracy and calibration per round, and ensemble "
                     "disagreement on the policy's samples")


def plot_lm_compare(table: Sequence[Mapping[str, Any]],
                    run_curves: Sequence[Mapping[str, np.ndarray]]) -> str:
    """Several language-model runs overlaid: gold and proxy against steps (against ``n`` when
    every run is best-of-n), and gold against ``d = sqrt(KL)`` with each run's Gao fit and its
    fitted peak.

    Args:
        table: one row per run with its ``run`` name, ``algorithm`` and ``gao_form``
            (:func:`rewardlab.diagnostics.report_lm.lm_compare_rows`).
        run_curves: each run's :func:`~rewardlab.diagnostics.lm_curves.lm_eval_curves`, in
            the order of ``table``.

    Returns:
        The figure as an embedded PNG ``<img>``.
    """
    fig = new_figure(13.0, 4.8)
    axes = fig.subplots(1, 3)
    # x of the step panels: n for best-of-n runs, the optimizer step otherwise; a best-of-n
    # run among RL runs appears in the distance panel only (n and steps share no axis)
    all_bon = all(r["algorithm"] == "bon" for r in table)
    any_bon = any(r["algorithm"] == "bon" for r in table)
    colors = [f"C{i % 10}" for i in range(len(table))]
    for row, curves, color in zip(table, run_curves, colors, strict=True):
        if all_bon or row["algorithm"] != "bon":
            x, _ = _x_of(curves, all_bon)
            axes[0].plot(x, curves["eval/gold_return"], "o-", ms=3, color=color)
            axes[1].plot(x, curves["eval/proxy_return"], "s--", ms=3, color=color)
        gao = lm_gao_analysis(curves, row["gao_form"])
        axes[2].plot(gao.d, gao.gold, "o", ms=3, color=color)
        if gao.fit is not None and gao.d.size:
            grid = np.linspace(0.0, max(float(gao.d.max()) * 1.05, 1e-3), 150)
            axes[2].plot(grid, gao.predict_gold(grid), "-", color=color, lw=1)
            if math.isfinite(gao.fit.peak_d) and gao.fit.peak_d <= grid[-1]:
                axes[2].plot([gao.fit.peak_d], [gao.gold_ref + gao.fit.peak_gold], "^",
                             color=color, ms=8, mec="k")
    for ax, title, ylabel in zip(
        axes, ("Gold score", "Proxy score", "Gold against distance (Gao et al. 2022 fits)"),
        ("gold score (mean over evaluation samples)", "proxy score (learned reward as optimised)",
         "gold score"), strict=True,
    ):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    for ax in axes[:2]:
        if all_bon:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("n (best of n samples per prompt, log scale)")
        else:
            step_axis(ax, "optimizer steps" + (" (RL runs; best-of-n runs: right panel only)"
                                               if any_bon else ""))
    axes[2].set_xlabel(_D_LABEL)
    handles = [Line2D([], [], color=color, marker="o", ms=3, label=r["run"])
               for r, color in zip(table, colors, strict=True)]
    handles += [Line2D([], [], color="k", ls="-", lw=1, label="fitted Gao curve"),
                Line2D([], [], color="k", marker="^", mec="k", ls="", label="fitted peak")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)),
               fontsize=8, frameon=False)
    return png(fig, "language-model runs overlaid")
