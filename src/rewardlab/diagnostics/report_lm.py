"""HTML reports of language-model runs: one run, or several overlaid.

:func:`rewardlab.diagnostics.report_html.write_run_report` and
:func:`~rewardlab.diagnostics.report_html.write_compare_report` hand a language-model run
(:func:`rewardlab.diagnostics.lm_curves.is_lm_run`) to :func:`write_lm_run_report` and
:func:`write_lm_compare_report`. Everything is read from the run directory (``metrics.jsonl``,
``summary.json``, ``config.yaml``, optional ``samples/*.jsonl``); plots are embedded PNG.

A run report shows: the settings (the ``lm:`` section included); gold and proxy score of the
same evaluation samples against optimizer steps (best-of-n: against ``n``); gold and proxy
against ``d = sqrt(KL(pi || pi_ref))`` with the Gao et al. 2022 fit of the run's optimiser
(Eq. 1 best-of-n, Eq. 2 RL) and its peak; the reward model per feedback round (held-out and
fresh accuracy, ECE, judge-vs-gold agreement) and the ensemble's disagreement on the policy's
samples; tables of evaluations and rounds; and, when the run saved ``samples/*.jsonl``, a few
completions at the first evaluation, at the gold peak and at the end.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rewardlab.diagnostics.lm_curves import (
    LMGaoAnalysis,
    bon_event_note,
    describe_lm_fit,
    describe_lm_peak,
    gao_form_for,
    is_lm_run,
    lm_benchmark_fields,
    lm_eval_curves,
    lm_gao_analysis,
    read_lm_samples,
)
from rewardlab.diagnostics.metrics import series
from rewardlab.diagnostics.overoptimization import describe_overoptimization
from rewardlab.diagnostics.plots import GOLD_COLOR, PROXY_COLOR, new_figure, step_axis
from rewardlab.diagnostics.report_html import (
    _event_row,
    _fmt,
    _load_run,
    _page,
    _png,
    _setting,
    _table,
    _teacher_text,
)
from rewardlab.errors import RunDirError

__all__ = [
    "LM_ROUND_KEYS",
    "SAMPLES_SHOWN",
    "draw_lm_gao",
    "judge_text",
    "last_value",
    "lm_compare_rows",
    "run_labels",
    "write_lm_compare_report",
    "write_lm_run_report",
]

#: Keys of the per-round reward-model table of a language-model run (label, metric key).
LM_ROUND_KEYS = (
    ("labels", "feedback/queries_answered"),
    ("held-out acc", "reward_model/heldout_accuracy"),
    ("held-out ECE", "reward_model/heldout_ece"),
    ("train acc", "reward_model/train_accuracy"),
    ("fresh acc", "reward_model/fresh_accuracy"),
    ("judge-gold agreement", "feedback/judge_gold_agreement"),
)

#: Completions shown per chosen evaluation in the text-samples section.
SAMPLES_SHOWN = 3

_FORM_NAMES = {"bon": "best-of-n (Gao et al. 2022 Eq. 1)", "rl": "RL (Gao et al. 2022 Eq. 2)"}
_D_LABEL = "d = sqrt(KL(π ‖ π_ref)) per completion (sqrt-nats)"


def _lm(config: Mapping[str, Any]) -> Mapping[str, Any]:
    lm = config.get("lm")
    return lm if isinstance(lm, Mapping) else {}


def last_value(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """The last non-null value of ``key`` in ``rows``, or None."""
    _, values = series(list(rows), key)  # type: ignore[arg-type]
    return values[-1] if values else None


def run_labels(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> float | None:
    """Preferences answered by the end of a run: ``summary["store"]["answered"]``, else the
    last ``feedback/queries_answered``, else None."""
    store = summary.get("store")
    if isinstance(store, Mapping) and store.get("answered") is not None:
        return float(store["answered"])
    return last_value(rows, "feedback/queries_answered")


def judge_text(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """Who labelled the run: the teacher, and the ``lm`` section's judge when one is set."""
    teacher = _teacher_text(config, summary)
    judge = _lm(config).get("judge")
    return teacher if judge in (None, "", "none") else f"{teacher}; judge {_setting(judge)}"


# ---------------------------------------------------------------------------------- plots


def _x_of(curves: Mapping[str, np.ndarray], bon: bool) -> tuple[np.ndarray, str]:
    """x values and label of the step plots: ``n`` (log scale) for best-of-n runs that log it,
    else the step."""
    if bon and np.isfinite(curves["eval/bon_n"]).all() and curves["eval/bon_n"].size:
        return curves["eval/bon_n"], "n (best of n samples per prompt, log scale)"
    return curves["step"].astype(np.float64), "optimizer steps"


def _plot_lm_curves(rows: list[dict[str, Any]], curves: Mapping[str, np.ndarray],
                    title: str, bon: bool) -> str:
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
    event = _event_row(rows)
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
    return _png(fig, f"gold and proxy score against {x_label}")


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
            f"{_FORM_NAMES[gao.form]} fit: alpha={fit.alpha:.3g}, beta={fit.beta:.3g}, "
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


def _plot_lm_gao(gao: LMGaoAnalysis, curves: Mapping[str, np.ndarray]) -> str:
    fig = new_figure(8.5, 4.8)
    draw_lm_gao(fig, gao, curves)
    return _png(fig, "gold and proxy score against sqrt KL with the Gao et al. 2022 fit")


def _round_points(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(feedback round, value) of ``key`` at the rows that log both; (step, value) when the run
    logs no rounds."""
    pairs = [(float(r["feedback/round"]), float(r[key])) for r in rows
             if r.get(key) is not None and r.get("feedback/round") is not None]
    if not pairs:
        s, v = series(rows, key)
        return [float(x) for x in s], v
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _plot_lm_reward_model(rows: list[dict[str, Any]], curves: Mapping[str, np.ndarray],
                          bon: bool) -> str:
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
    return _png(fig, "reward model accuracy and calibration per round, and ensemble "
                     "disagreement on the policy's samples")


# ---------------------------------------------------------------------------------- html


def _settings(config: Mapping[str, Any], summary: Mapping[str, Any], rows: list[dict[str, Any]],
              run_dir: Path) -> str:
    lm = _lm(config)
    rm = config.get("reward_model") if isinstance(config.get("reward_model"), Mapping) else {}
    algo = config.get("algorithm", summary.get("algorithm"))
    reward_model = "-"
    if rm:
        reward_model = (f"{_setting(rm.get('members'))} members, reduction "
                        f"{_setting(rm.get('reduction'))}")
    steps = summary.get("steps", lm.get("steps"))
    rows_out = [
        ("algorithm", _setting(algo)),
        ("task", _setting(lm.get("task", summary.get("task")))),
        ("base model", _setting(lm.get("base_model"))),
        ("seed", _setting(config.get("seed", summary.get("seed")))),
        ("n values evaluated" if algo == "bon" else "optimizer steps", _setting(steps)),
        ("teacher / judge", judge_text(config, summary)),
        ("labels (preferences answered)", _fmt(run_labels(rows, summary))),
        ("reward model", reward_model),
        ("status", _setting(summary.get("status"))),
        ("wall time (s)", _fmt(summary.get("wall_time_s"))),
        ("run directory", str(run_dir)),
    ]
    out = "<h2>Run</h2>" + _table(["setting", "value"], rows_out, cls="settings")
    if lm:
        out += "<h2>Language-model settings</h2>" + _table(
            ["setting", "value"], [(f"lm.{k}", _setting(v)) for k, v in lm.items()],
            cls="settings")
    mitigation = config.get("mitigation")
    if isinstance(mitigation, Mapping) and mitigation:
        out += "<h2>Mitigation</h2>" + _table(
            ["setting", "value"],
            [(f"mitigation.{k}", _setting(v)) for k, v in mitigation.items()], cls="settings")
    return out


def _samples_section(run_dir: Path, curves: Mapping[str, np.ndarray]) -> str:
    samples = read_lm_samples(run_dir)
    head = "<h2>Text samples</h2>"
    if not samples:
        return head + ("<p class='note'>This run saved no text samples "
                       "(<code>samples/*.jsonl</code>, rows with step, prompt, completion, "
                       "gold, proxy).</p>")
    have = np.array(sorted(samples), dtype=np.int64)
    gold, steps = curves["eval/gold_return"], curves["step"]
    targets: list[tuple[str, int]] = []
    if steps.size:
        targets = [("first evaluation", int(steps[0])),
                   ("gold peak", int(steps[int(np.argmax(gold))])),
                   ("end", int(steps[-1]))]
    else:
        targets = [("first saved", int(have[0])), ("last saved", int(have[-1]))]
    parts = [head, f"<p class='note'>The first {SAMPLES_SHOWN} completions the run saved at "
                   "each evaluation (in file order, not chosen by score); the means are over "
                   "all saved samples of that evaluation.</p>"]
    shown: set[int] = set()
    for what, target in targets:
        step = int(have[np.argmin(np.abs(have - target))])  # the nearest saved evaluation
        if step in shown:
            continue
        shown.add(step)
        batch = samples[step]
        golds = [float(r["gold"]) for r in batch if isinstance(r.get("gold"), (int, float))]
        proxies = [float(r["proxy"]) for r in batch if isinstance(r.get("proxy"), (int, float))]
        means = f"{len(batch)} samples"
        if golds:
            means += f", mean gold {_fmt(float(np.mean(golds)))}"
        if proxies:
            means += f", mean proxy {_fmt(float(np.mean(proxies)))}"
        parts.append(f"<h3>{html.escape(what)}: step {step} ({means})</h3>")
        parts.append(_table(["prompt", "completion", "gold", "proxy"], [
            [str(r.get("prompt", "")), r["completion"], r.get("gold"), r.get("proxy")]
            for r in batch[:SAMPLES_SHOWN]], cls="settings"))
    return "".join(parts)


def write_lm_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of one language-model run.

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
    rows, summary, config = _load_run(run_dir)
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    bon = algo == "bon"
    form = gao_form_for(algo)
    curves = lm_eval_curves(rows)
    parts = [_settings(config, summary, rows, run_dir)]
    event = _event_row(rows)
    if event is not None:
        note = bon_event_note(event, curves) if bon else ""
        parts.append("<h2>Over-optimisation</h2><p class='alarm'>"
                     f"{html.escape(describe_overoptimization(event))}"
                     f"{' ' + html.escape(note) if note else ''}.</p>")
    gao = lm_gao_analysis(curves, form)
    fields = lm_benchmark_fields(rows, form) if curves["step"].size else None
    facts: list[tuple[str, Any]] = [
        ("evaluations", curves["step"].size),
        ("gold at the first evaluation", None if fields is None else fields["gold_first"]),
        ("peak gold (observed)", None if fields is None else fields["gold_peak"]),
        ("sqrt KL at the observed peak", None if fields is None else fields["sqrt_kl_at_peak"]),
        ("final gold", None if fields is None else fields["gold_final"]),
        ("peak-to-final gold drop (standard error)", None if fields is None else
         f"{_fmt(fields['gold_drop'])} ({_fmt(fields['gold_drop_se'])})"),
        ("reward model: final held-out accuracy",
         last_value(rows, "reward_model/heldout_accuracy")),
        ("reward model: final held-out ECE", last_value(rows, "reward_model/heldout_ece")),
        ("judge-vs-gold agreement (last round)",
         last_value(rows, "feedback/judge_gold_agreement")),
        ("over-optimisation detected at step", "not detected" if event is None else
         int(event["diagnostics/overoptimization_step"])),
    ]
    parts.append("<h2>Summary</h2>" + _table(["figure", "value"], facts))
    if fields is not None:
        d_max = float(gao.d.max()) if gao.d.size else None
        parts.append("<p>" + html.escape(describe_lm_peak(fields)) + ".<br>"
                     + html.escape(describe_lm_fit(fields, d_max)) + ".</p>")
    task = _lm(config).get("task", summary.get("task", "?"))
    parts.append("<h2>Gold and proxy score</h2>"
                 + _plot_lm_curves(rows, curves, f"{algo} on {task}", bon))
    parts.append(
        "<h2>Over-optimisation curve</h2><p class='note'>d is the square root of the KL "
        "divergence of the policy from the reference (base) policy per completion, in nats, "
        + ("analytic for best-of-n: log n - (n - 1)/n" if bon else
           "a Monte-Carlo estimate over the evaluation samples")
        + "; the fit is of gold minus its value at the smallest d (the reference evaluation, "
        f"step {_fmt(int(gao.step[int(np.argmin(gao.d))]) if gao.d.size else None)}, "
        f"d = {_fmt(gao.d_ref)}).</p>"
        + _plot_lm_gao(gao, curves))
    fit = gao.fit
    if fit is not None:
        peak = (f"{_fmt(fit.peak_d)}" if math.isfinite(fit.peak_d)
                else "no finite peak: fitted gold still rising")
        fit_row = [_FORM_NAMES[form], fit.alpha, fit.beta, fit.r2, peak,
                   gao.gold_ref + fit.peak_gold if math.isfinite(fit.peak_gold) else None]
    else:
        fit_row = [_FORM_NAMES[form], f"no fit: {gao.reason}", None, None, None, None]
    parts.append(_table(["form", "alpha", "beta", "R²", "fitted peak d* (sqrt-nats)",
                         "fitted gold at d*"], [fit_row]))
    parts.append("<h2>Reward model</h2>" + _plot_lm_reward_model(rows, curves, bon))
    round_rows = [r for r in rows if r.get("feedback/round") is not None]
    if round_rows:
        parts.append(_table(["step", "round", *[k for k, _ in LM_ROUND_KEYS]], [
            [r["step"], int(r["feedback/round"]), *[r.get(key) for _, key in LM_ROUND_KEYS]]
            for r in round_rows]))
    columns = [("eval/bon_n", "n")] if bon else []
    columns += [("eval/gold_return", "gold"), ("eval/gold_return_std", "gold std"),
                ("eval/proxy_return", "proxy"), ("eval/kl", "KL (nats)"),
                ("eval/sqrt_kl", "sqrt KL"),
                ("reward_model/disagreement_on_policy", "disagreement"),
                ("eval/samples", "samples"), ("eval/mean_completion_tokens", "tokens")]
    body = [[int(s), *[curves[k][i] for k, _ in columns]]
            for i, s in enumerate(curves["step"])]
    parts.append("<h2>Evaluations</h2>" + _table(
        ["n-grid index" if bon else "step", *[label for _, label in columns]], body))
    parts.append(_samples_section(run_dir, curves))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(_page(f"RewardLab language-model run report: {run_dir.name}",
                         "".join(parts)), encoding="utf-8")
    return out


def lm_compare_rows(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per language-model run for ``rewardlab compare``: its name, algorithm, and
    :func:`~rewardlab.diagnostics.lm_curves.lm_benchmark_fields`.

    Raises:
        RunDirError: if a directory holds no ``metrics.jsonl``, is not a language-model run or
            has no evaluation.
    """
    out = []
    for run_dir in map(Path, run_dirs):
        rows, summary, config = _load_run(run_dir)
        if not is_lm_run(config, summary):
            raise RunDirError(f"{run_dir}: not a language-model run")
        algo = str(config.get("algorithm", summary.get("algorithm", "?")))
        try:
            fields = lm_benchmark_fields(rows, gao_form_for(algo))
        except ValueError as err:
            raise RunDirError(f"{run_dir}: no evaluation logged ({err})") from err
        out.append({"run": run_dir.name, "algorithm": algo, **fields})
    return out


def write_lm_compare_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write one HTML page overlaying several language-model runs.

    Gold and proxy against steps, and gold against ``d = sqrt(KL)`` with each run's Gao fit
    (Eq. 1 for best-of-n runs, Eq. 2 otherwise) and its fitted peak, then a table of gold at
    the first evaluation, at the peak and at the end, and ``sqrt(KL)`` at the peak (observed
    and fitted).

    Args:
        run_dirs: language-model run directories (at least one).
        out: where to write the page.

    Returns:
        The path written.

    Raises:
        RunDirError: as :func:`lm_compare_rows`.
        ValueError: if ``run_dirs`` is empty.
        OSError: if the page cannot be written.
    """
    if not run_dirs:
        raise ValueError("run_dirs: give at least one run directory")
    table = lm_compare_rows(run_dirs)
    fig = new_figure(13.0, 4.8)
    axes = fig.subplots(1, 3)
    # x of the step panels: n for best-of-n runs, the optimizer step otherwise; a best-of-n
    # run among RL runs appears in the distance panel only (n and steps share no axis)
    all_bon = all(r["algorithm"] == "bon" for r in table)
    any_bon = any(r["algorithm"] == "bon" for r in table)
    colors = [f"C{i % 10}" for i in range(len(table))]
    for run_dir, row, color in zip(map(Path, run_dirs), table, colors, strict=True):
        rows, _, _ = _load_run(run_dir)
        curves = lm_eval_curves(rows)
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
    body = _png(fig, "language-model runs overlaid") + _table(
        ["run", "algorithm", "gold first", "gold at peak", "gold at end", "drop (s.e.)",
         "sqrt KL at peak", "fitted d*", "fitted gold at d*", "fit R²"],
        [[r["run"], r["algorithm"], r["gold_first"], r["gold_peak"], r["gold_final"],
          f"{_fmt(r['gold_drop'])} ({_fmt(r['gold_drop_se'])})", r["sqrt_kl_at_peak"],
          r["sqrt_kl_at_peak_fit"], r["gold_peak_fit"], r["gao_r2"]] for r in table])
    body += ("<p class='note'>Gold at peak: the best evaluation's mean gold; sqrt KL at peak: "
             "its d. Fitted d*: the maximum of the run's Gao fit (Eq. 1 for best-of-n, Eq. 2 "
             "otherwise; ∞ when the fitted gold is still rising).</p>")
    out = Path(out)
    out.write_text(_page("RewardLab language-model run comparison", body), encoding="utf-8")
    return out
