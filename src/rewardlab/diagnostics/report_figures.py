"""The figures of the control-run reports (:mod:`rewardlab.diagnostics.report_html`), each
returned as an embedded base64 PNG ``<img>`` so a page is one self-contained file.

* :func:`plot_curves`: gold and proxy return of the same evaluation episodes against env steps
  (or gradient updates), with feedback rounds, the over-optimisation event and early stop;
* :func:`plot_gao`: gold gain (and proxy) against ``d = sqrt(KL(pi || pi_ref))`` with the two
  Gao et al. 2022 fits and their peaks;
* :func:`plot_reward_model`: the reward model per feedback round (accuracy, ECE), Spearman
  correlation of proxy and gold returns, and ensemble disagreement on the policy's states.

:func:`png` embeds any figure (also used by :mod:`rewardlab.diagnostics.report_lm_figures`).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rewardlab.diagnostics.gao_fit import GaoFit
from rewardlab.diagnostics.metrics import series
from rewardlab.diagnostics.plots import draw_gold_proxy, figure_png, new_figure, step_axis

__all__ = ["FORM_NAMES", "plot_curves", "plot_gao", "plot_reward_model", "png"]

#: How the report names each Gao et al. 2022 functional form.
FORM_NAMES = {"bon": "best-of-n (Eq. 1)", "rl": "RL (Eq. 2)"}


def png(fig: Figure, alt: str) -> str:
    """``fig`` as an ``<img>`` with an embedded base64 PNG (``figure_png``) and alt text."""
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def plot_curves(rows: list[dict[str, Any]], title: str,
                x_label: str = "environment steps") -> str:
    """Gold and proxy return against ``x_label`` (:func:`~rewardlab.diagnostics.plots.
    draw_gold_proxy`), as an embedded PNG."""
    fig = new_figure(8.5, 4.8)
    draw_gold_proxy(fig, rows, title, x_label)
    return png(fig, f"gold and proxy return against {x_label}")


def plot_gao(d: np.ndarray, gain: np.ndarray, fits: dict[str, GaoFit | str],
             proxy: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """Gold gain against ``d`` with the Gao et al. 2022 fits and their peaks, as an embedded PNG.

    Args:
        d: ``(n,)`` float64, ``sqrt(KL(pi || pi_ref))`` of each evaluation, sqrt-nats.
        gain: ``(n,)`` float64, gold return minus the reference's (gold-return units).
        fits: ``{"bon": GaoFit or reason, "rl": GaoFit or reason}`` (only fits are drawn).
        proxy: optional ``(d (m,), proxy return (m,))`` drawn on a right-hand axis.
    """
    fig = new_figure(8.5, 4.8)
    ax = fig.subplots()
    handles: list[Any] = []
    ax.plot(d, gain, "o", color="tab:blue", ms=5, zorder=3)
    handles.append(Line2D([], [], color="tab:blue", marker="o", ls="",
                          label="gold return - reference, per evaluation (left axis)"))
    if proxy is not None and proxy[0].size:
        ax2 = ax.twinx()
        ax2.plot(proxy[0], proxy[1], "s", mfc="none", color="tab:orange", ms=5)
        ax2.set_ylabel("proxy return (learned reward, standardised)", color="tab:orange")
        ax2.tick_params(axis="y", colors="tab:orange")
        handles.append(Line2D([], [], color="tab:orange", marker="s", mfc="none", ls="",
                              label="proxy return, per evaluation (right axis)"))
    if d.size:
        grid = np.linspace(0, max(float(d.max()) * 1.1, 1e-3), 200)
        for form, style, color in (("bon", "-", "tab:green"), ("rl", "--", "tab:purple")):
            fit = fits.get(form)
            if isinstance(fit, GaoFit):
                ax.plot(grid, fit.predict(grid), style, color=color)
                handles.append(Line2D([], [], color=color, ls=style, label=(
                    f"{FORM_NAMES[form]} fit: alpha={fit.alpha:.3g}, beta={fit.beta:.3g}, "
                    f"R²={fit.r2:.2f}")))
                if math.isfinite(fit.peak_d) and fit.peak_d <= grid[-1]:
                    ax.plot([fit.peak_d], [fit.peak_gold], "^", color=color, ms=9, mec="k")
                    handles.append(Line2D([], [], color=color, marker="^", mec="k", ls="",
                                          label=f"{FORM_NAMES[form]} fitted peak"))
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("d = sqrt(KL(π ‖ π_ref)) over the evaluation states (sqrt-nats)")
    ax.set_ylabel("gold return - reference (true reward per episode)", color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.grid(True, alpha=0.3)
    ax.set_title("Gold and proxy against distance from the reference policy (Gao et al. 2022)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return png(fig, "gold gain against sqrt KL with the Gao et al. 2022 fits")


def _round_series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Feedback rounds and values of ``key`` (offline runs log every round at update 0)."""
    pairs = [(int(r["feedback/round"]), float(r[key])) for r in rows
             if r.get(key) is not None and r.get("feedback/round") is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_reward_model(rows: list[dict[str, Any]], x_label: str = "environment steps",
                      offline: bool = False) -> str:
    """The reward model per feedback round (accuracy and ECE, held-out and fresh) beside the
    proxy/gold Spearman and ensemble disagreement against ``x_label``, as an embedded PNG.
    Offline runs plot the rounds by number (all asked before the first update) and add the
    random-pair accuracy against gold."""
    fig = new_figure(10.0, 4.4)
    ax1, ax2 = fig.subplots(1, 2)
    keys = (("reward_model/heldout_accuracy", "o-", "tab:blue"),
            ("reward_model/fresh_accuracy", "s--", "tab:blue"),
            ("reward_model/heldout_ece", "o-", "tab:red"),
            ("reward_model/fresh_ece", "s--", "tab:red"))
    if offline:
        keys += (("reward_model/random_pair_accuracy", "^:", "tab:green"),)
    for key, style, color in keys:
        s, v = _round_series(rows, key) if offline else series(rows, key)
        what = key.split("/")[1].replace("heldout", "held-out").replace("_", " ")
        what = what.replace("ece", "ECE").replace("random pair", "random-pair (vs gold)")
        ax1.plot(s, v, style, color=color, ms=4, label=what)
    if offline:
        ax1.set_xlabel("feedback round (all asked before the first update)")
        ax1.xaxis.get_major_locator().set_params(integer=True)
    else:
        step_axis(ax1, "environment steps (feedback rounds)")
    ax1.set_ylabel("accuracy and ECE (probability, 0 to 1)")
    ax1.set_ylim(-0.02, 1.02)
    ax1.grid(True, alpha=0.3)
    ax1.set_title("Reward model per feedback round", fontsize=10)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2,
               frameon=False)

    s, v = series(rows, "eval/proxy_gold_spearman")
    ax2.plot(s, v, "o-", color="tab:purple", ms=4)
    ax2.set_ylim(-1.05, 1.05)
    ax2.set_ylabel("Spearman rank correlation", color="tab:purple")
    ax2.tick_params(axis="y", colors="tab:purple")
    step_axis(ax2, x_label)
    ax2.grid(True, axis="y", alpha=0.3)
    ax3 = ax2.twinx()
    s, v = series(rows, "reward_model/disagreement_on_policy")
    ax3.plot(s, v, "^:", color="tab:gray", ms=4)
    ax3.set_ylabel("ensemble std of per-step reward (model units)", color="dimgray")
    handles = [
        Line2D([], [], color="tab:purple", marker="o", label="Spearman(proxy, gold), episodes"),
        Line2D([], [], color="tab:gray", marker="^", ls=":",
               label="ensemble disagreement on the policy's states (right axis)"),
    ]
    ax2.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2),
               ncols=1, frameon=False)
    ax2.set_title("Proxy/gold agreement on the evaluation episodes", fontsize=10)
    return png(fig, "reward model accuracy, calibration and agreement with the gold reward")
