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
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rewardlab.config import OFFLINE_ALGORITHMS
from rewardlab.diagnostics.gao_fit import GaoFit, fit_gao
from rewardlab.diagnostics.lm_curves import is_lm_run
from rewardlab.diagnostics.metrics import gold_proxy_curves, read_metrics, series
from rewardlab.diagnostics.overoptimization import describe_overoptimization
from rewardlab.diagnostics.plots import (
    draw_gold_proxy,
    figure_png,
    new_figure,
    reference_returns,
    step_axis,
)
from rewardlab.errors import RunDirError

#: Keys of the per-round reward-model table (label, metric key).
ROUND_KEYS = (
    ("queries", "feedback/queries_answered"),
    ("held-out acc", "reward_model/heldout_accuracy"),
    ("held-out ECE", "reward_model/heldout_ece"),
    ("fresh acc", "reward_model/fresh_accuracy"),
    ("fresh ECE", "reward_model/fresh_ece"),
    ("pool disagreement", "feedback/pool_disagreement"),
)

#: Canonical-sample and coverage sizes of the EPIC estimate in a report.
EPIC_CANON, EPIC_COVERAGE = 256, 512


def _load_meta(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, config)`` of a run directory (each ``{}`` when absent), without reading its
    metrics: enough to tell a language-model run (:func:`is_lm_run`) before loading rows.

    Raises:
        RunDirError: if ``run_dir`` holds no ``metrics.jsonl``.
    """
    if not (run_dir / "metrics.jsonl").exists():
        raise RunDirError(f"{run_dir}: not a run directory (no metrics.jsonl)")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    return summary, config or {}


def _load_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """``(rows, summary, config)`` of a run directory (:func:`_load_meta` and its metrics)."""
    summary, config = _load_meta(run_dir)
    return read_metrics(run_dir), summary, config


def _value_at(rows: list[dict[str, Any]], key: str, steps: np.ndarray) -> np.ndarray:
    """``(len(steps),)`` last logged value of ``key`` at each step (NaN where absent)."""
    s, v = series(rows, key)
    table = dict(zip(s, v, strict=True))
    return np.array([table.get(int(x), math.nan) for x in steps], dtype=np.float64)


def outcome(run_dir: str | Path) -> dict[str, float]:
    """Headline figures of a run, from its evaluations.

    Returns:
        ``gold_final`` (gold return of the last evaluation), ``gold_peak`` (best evaluation),
        ``gold_drop = gold_peak - gold_final`` (>= 0, gold-return units) and ``proxy_gain``
        (proxy return of the last evaluation minus the first finite one, in the proxy's
        standardised units; these are re-standardised at every reward update, so it is a
        coarse signal), plus ``steps`` of the last evaluation.

    Raises:
        RunDirError: if the run has no metrics or no evaluation.
    """
    rows, _, _ = _load_run(Path(run_dir))
    c = gold_proxy_curves(rows)
    gold, proxy = c["eval/gold_return"], c["eval/proxy_return"]
    ok = np.isfinite(gold)
    if not ok.any():
        raise RunDirError(f"{run_dir}: no evaluation logged")
    finite_proxy = proxy[np.isfinite(proxy)]
    peak, final = float(gold[ok].max()), float(gold[ok][-1])
    return {
        "gold_final": final,
        "gold_peak": peak,
        "gold_drop": peak - final,
        "proxy_gain": float(finite_proxy[-1] - finite_proxy[0]) if finite_proxy.size else math.nan,
        "steps": float(c["step"][ok][-1]),
    }


def gao_analysis(
    rows: list[dict[str, Any]], reference_step: int | None
) -> tuple[np.ndarray, np.ndarray, dict[str, GaoFit | str]]:
    """Gold gain against ``d = sqrt(KL)`` and the two Gao et al. 2022 fits.

    The gold gain is ``gold - gold_ref`` with ``gold_ref`` the last evaluation at or before the
    reference step (the first reward update), else the first evaluation.

    Returns:
        ``(d (n,), gain (n,), {"bon": GaoFit or reason, "rl": GaoFit or reason})``.
    """
    c = gold_proxy_curves(rows)
    steps, gold = c["step"], c["eval/gold_return"]
    d = _value_at(rows, "diagnostics/sqrt_kl", steps)
    ok = np.isfinite(gold)
    if not ok.any():
        return np.zeros(0), np.zeros(0), {"bon": "no evaluations", "rl": "no evaluations"}
    before = ok & (steps <= (reference_step if reference_step is not None else -1))
    gold_ref = float(gold[before][-1]) if before.any() else float(gold[ok][0])
    use = ok & np.isfinite(d)
    d_use, gain = d[use], gold[use] - gold_ref
    fits: dict[str, GaoFit | str] = {}
    for form in ("bon", "rl"):
        try:
            fits[form] = fit_gao(d_use, gain, form)  # type: ignore[arg-type]
        except ValueError as err:
            fits[form] = str(err)
    return d_use, gain, fits


def epic_to_gold(run_dir: Path, env_id: str, seed: int = 0) -> float | None:
    """EPIC distance between the run's final learned reward and the true reward.

    Only for testbed envs (:data:`rewardlab.envs.testbed.GOLD_REWARDS`), whose true reward is
    a known function of ``(s, a)``. Canonical sample ``D_S x D_A``: ``EPIC_CANON`` states and
    actions uniform on the observation and action boxes; coverage: ``EPIC_COVERAGE``
    transitions drawn from the run's transition log, next states from the testbed dynamics;
    ``gamma`` 0.99 (Gleave et al. 2021).

    Returns:
        The distance in ``[0, 1]``, or None when it cannot be computed for this run.
    """
    from rewardlab.envs.testbed import GOLD_REWARDS, next_positions

    ckpt = run_dir / "checkpoints" / "latest"
    gold = GOLD_REWARDS.get(env_id)
    if gold is None or not (ckpt / "reward_model.json").exists():
        return None
    from rewardlab.diagnostics.reward_eval import epic_distance
    from rewardlab.rewards.model import RewardModel

    model = RewardModel.load(ckpt)
    if model.updates == 0:
        return None
    with np.load(ckpt / "transition_log.npz", allow_pickle=False) as data:
        written = int(data["counters"][0])
        obs = data["obs"].reshape(-1, data["obs"].shape[-1])
        actions = data["actions"].reshape(-1, data["actions"].shape[-1])
        rows = min(written, data["obs"].shape[0]) * data["obs"].shape[1]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, rows, size=EPIC_COVERAGE)
    s, a = obs[pick].astype(np.float64), actions[pick].astype(np.float64)
    s_canon = rng.uniform(-1.0, 1.0, size=(EPIC_CANON, s.shape[1]))
    a_canon = rng.uniform(-1.0, 1.0, size=(EPIC_CANON, a.shape[1]))

    def learned(s_: np.ndarray, a_: np.ndarray, _next: np.ndarray) -> np.ndarray:
        return model.reward(s_.astype(np.float32), a_.astype(np.float32))

    def true(s_: np.ndarray, a_: np.ndarray, _next: np.ndarray) -> np.ndarray:
        return gold(s_, a_)

    value = epic_distance(learned, true, s, a, next_positions(s, a), s_canon, a_canon, 0.99)
    return None if math.isnan(value) else float(value)


# ---------------------------------------------------------------------------------- plots


def _png(fig: Figure, alt: str) -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _plot_curves(rows: list[dict[str, Any]], title: str,
                 x_label: str = "environment steps") -> str:
    fig = new_figure(8.5, 4.8)
    draw_gold_proxy(fig, rows, title, x_label)
    return _png(fig, f"gold and proxy return against {x_label}")


def _proxy_against_distance(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(d, proxy)`` at the evaluations where both are finite."""
    c = gold_proxy_curves(rows)
    d = _value_at(rows, "diagnostics/sqrt_kl", c["step"])
    ok = np.isfinite(d) & np.isfinite(c["eval/proxy_return"])
    return d[ok], c["eval/proxy_return"][ok]


def _plot_gao(d: np.ndarray, gain: np.ndarray, fits: dict[str, GaoFit | str],
              proxy: tuple[np.ndarray, np.ndarray] | None = None) -> str:
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
                    f"{_FORM_NAMES[form]} fit: alpha={fit.alpha:.3g}, beta={fit.beta:.3g}, "
                    f"R²={fit.r2:.2f}")))
                if math.isfinite(fit.peak_d) and fit.peak_d <= grid[-1]:
                    ax.plot([fit.peak_d], [fit.peak_gold], "^", color=color, ms=9, mec="k")
                    handles.append(Line2D([], [], color=color, marker="^", mec="k", ls="",
                                          label=f"{_FORM_NAMES[form]} fitted peak"))
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("d = sqrt(KL(π ‖ π_ref)) over the evaluation states (sqrt-nats)")
    ax.set_ylabel("gold return - reference (true reward per episode)", color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.grid(True, alpha=0.3)
    ax.set_title("Gold and proxy against distance from the reference policy (Gao et al. 2022)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _png(fig, "gold gain against sqrt KL with the Gao et al. 2022 fits")


def _round_series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Feedback rounds and values of ``key`` (offline runs log every round at update 0)."""
    pairs = [(int(r["feedback/round"]), float(r[key])) for r in rows
             if r.get(key) is not None and r.get("feedback/round") is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _plot_reward_model(rows: list[dict[str, Any]], x_label: str = "environment steps",
                       offline: bool = False) -> str:
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
    return _png(fig, "reward model accuracy, calibration and agreement with the gold reward")


# ---------------------------------------------------------------------------------- html

_FORM_NAMES = {"bon": "best-of-n (Eq. 1)", "rl": "RL (Eq. 2)"}

_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "img{max-width:100%}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "table.settings td{text-align:left}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:1.6em}.note{color:#555;font-size:13px}"
    ".alarm{background:#fff3f0;border-left:4px solid #d33;padding:6px 10px}"
)


def _fmt(value: Any, digits: int = 3) -> str:
    """Table cell text: ``-`` for missing/NaN, integers without a decimal point, floats to
    ``digits`` significant digits (never in exponent form above 1), text HTML-escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:.1f}"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _setting(value: Any) -> str:
    """Plain-text value of a config setting: never a Python repr of a dict or list."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        parts = [f"{k} {_setting(v)}" for k, v in value.items() if v is not None]
        return ", ".join(parts) if parts else "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting(v) for v in value) or "-"
    if isinstance(value, float):
        return _fmt(value)
    return str(value)


def _table(header: Sequence[str], body: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in body)
    attr = f" class='{cls}'" if cls else ""
    return f"<table{attr}><tr>{head}</tr>{rows}</table>"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")


def _teacher_text(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    teacher = config.get("teacher")
    if not isinstance(teacher, Mapping):
        asked = summary.get("feedback", {}).get("teacher") or {}
        return _setting(teacher) if teacher is not None else ("scripted" if asked else "-")
    name = teacher.get("preset") or teacher.get("name") or "?"
    extra = {k: v for k, v in teacher.items() if k not in ("preset", "name") and v is not None}
    return f"{name} ({_setting(extra)})" if extra else str(name)


def _settings_tables(config: Mapping[str, Any], summary: Mapping[str, Any],
                     run_dir: Path) -> str:
    """The run's header: what was trained, on what, taught by whom, with which mitigations."""
    env = config.get("env") if isinstance(config.get("env"), Mapping) else {}
    fb = config.get("feedback") if isinstance(config.get("feedback"), Mapping) else {}
    rm = config.get("reward_model") if isinstance(config.get("reward_model"), Mapping) else {}
    feedback = "-"
    if fb:
        feedback = (f"{_setting(fb.get('total_budget'))} queries, "
                    f"{_setting(fb.get('queries_per_round'))} per round, "
                    f"{_setting(fb.get('segment_len'))}-step segments, "
                    f"selection {_setting(fb.get('method'))}")
    reward_model = "-"
    if rm:
        reward_model = (f"{_setting(rm.get('members'))} members, reduction "
                        f"{_setting(rm.get('reduction'))}")
    rows = [
        ("algorithm", _setting(config.get("algorithm", summary.get("algorithm")))),
        ("environment", _setting(env.get("id", summary.get("env")))),
        ("seed", _setting(config.get("seed", summary.get("seed")))),
        *_run_length_rows(config, summary),
        ("teacher", _teacher_text(config, summary)),
        ("teacher bias", _setting(config.get("teacher_bias")) if config else "-"),
        ("feedback", feedback),
        ("reward model", reward_model),
        ("run directory", str(run_dir)),
    ]
    out = "<h2>Run</h2>" + _table(["setting", "value"], rows, cls="settings")
    mitigation = config.get("mitigation")
    online = config.get("algorithm") not in OFFLINE_ALGORITHMS  # offline runs refuse them
    if online and isinstance(mitigation, Mapping) and mitigation:
        out += "<h2>Mitigation</h2>" + _table(
            ["setting", "value"],
            [(f"mitigation.{k}", _setting(v)) for k, v in mitigation.items()], cls="settings")
    return out


def _run_length_rows(config: Mapping[str, Any], summary: Mapping[str, Any]) -> list[
    tuple[str, str]
]:
    """Settings rows of how long the run trained: env steps, or for offline runs the
    gradient updates, the dataset and the reward the agent trained on."""
    if config.get("algorithm") not in OFFLINE_ALGORITHMS:
        return [("environment steps", _setting(summary.get("steps", config.get("total_steps"))))]
    off = config.get("offline") if isinstance(config.get("offline"), Mapping) else {}
    reward = summary.get("reward") or {}
    kind = (f"{reward.get('kind')}" + (f" ({reward['model']})" if reward.get("model") else "")
            if reward else _setting(off.get("reward")))
    if reward.get("factor") is not None:
        kind += (f", rescaled x{_fmt(reward['factor'])} + {_fmt(reward.get('shift'))} "
                 "(IQL's return-spread normalisation)")
    return [
        ("gradient updates", _setting(summary.get("steps", off.get("updates")))),
        ("dataset", _setting(config.get("dataset", summary.get("dataset")))),
        ("training reward", kind),
    ]


def _peak_text(fit: GaoFit | str, d: np.ndarray) -> tuple[str, str]:
    """``(peak d, peak gold gain)`` cells of a Gao fit: words, never ``inf``."""
    if not isinstance(fit, GaoFit):
        return "-", "-"
    if math.isinf(fit.peak_d):
        return "no finite peak: fitted gold still rising at the last point", "-"
    if fit.peak_d == 0.0:
        return "0 (fitted gold falls from the start)", _fmt(fit.peak_gold)
    text = _fmt(fit.peak_d)
    if d.size and fit.peak_d > float(d.max()):
        text += f" (beyond the largest measured d, {_fmt(float(d.max()))})"
    return text, _fmt(fit.peak_gold)


def _event_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``metrics.jsonl`` row of the over-optimisation event (the first), or None."""
    return next((r for r in rows if r.get("diagnostics/overoptimization_step") is not None),
                None)


def _gao_section(rows: list[dict[str, Any]], oo: Mapping[str, Any]) -> str:
    """The over-optimisation curve: gold gain against sqrt KL, with the Gao et al. fits."""
    d, gain, fits = gao_analysis(rows, oo.get("reference_step"))
    parts = ["<h2>Over-optimisation curve</h2><p class='note'>d is the square root of "
             "the mean over the evaluation episodes' states of the closed-form KL between "
             "the current and the reference Gaussian action distributions (pre-squash for "
             "SAC); the reference is the policy at the first reward update.</p>",
             _plot_gao(d, gain, fits, _proxy_against_distance(rows))]
    fit_rows = []
    for form, fit in fits.items():
        if isinstance(fit, GaoFit):
            peak_d, peak_gold = _peak_text(fit, d)
            fit_rows.append([_FORM_NAMES[form], fit.alpha, fit.beta, fit.r2, peak_d, peak_gold])
        else:
            fit_rows.append([_FORM_NAMES[form], f"no fit: {fit}", None, None, None, None])
    parts.append(_table(["form", "alpha", "beta", "R²", "peak d (sqrt-nats)",
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
               *[_value_at(rows, key, c["step"]) for key, _ in extra],
               _value_at(rows, "eval/proxy_gold_spearman", c["step"])]
    body = [[int(values[0]), *values[1:]] for values in zip(*columns, strict=True)]
    return "<h2>Evaluations</h2>" + _table(
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
    summary, config = _load_meta(run_dir)
    if is_lm_run(config, summary):  # decided before the metrics are read: that page reads them
        from rewardlab.diagnostics.report_lm import write_lm_run_report

        return write_lm_run_report(run_dir, out)
    rows = read_metrics(run_dir)
    env_id = str((config.get("env") or {}).get("id", summary.get("env", "?")))
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    offline = algo in OFFLINE_ALGORITHMS
    x_label = "gradient updates" if offline else "environment steps"
    oo = summary.get("overoptimization", {})
    parts = [_settings_tables(config, summary, run_dir)]

    head = outcome(run_dir) if gold_proxy_curves(rows)["step"].size else {}
    event = _event_row(rows)
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
         f"{_fmt(event.get('diagnostics/p_value'), 2)}"),
    ]
    if not offline:
        facts += [
            ("early stop at step (rolled back to)", None if stop is None else
             f"{int(stop['diagnostics/early_stop_step'])} "
             f"({int(stop['diagnostics/early_stop_rollback_step'])}): "
             f"{oo.get('early_stop_reason')}"),
            ("EPIC distance, final learned reward vs true reward", epic),
        ]
    parts.append("<h2>Summary</h2>" + _table(["figure", "value"], facts))
    where = f"{algo} on {config.get('dataset') or env_id}"
    parts.append("<h2>Gold and proxy return</h2>" + _plot_curves(rows, where, x_label))
    if offline:
        parts.append("<p class='note'>x axis: gradient updates of the agent. The proxy return "
                     "is the return under the reward the agent trained on (learned, then "
                     "rescaled); none for CPL or the true reward.</p>")
    else:
        parts.append(_gao_section(rows, oo))

    parts.append("<h2>Reward model</h2>" + _plot_reward_model(rows, x_label, offline))
    round_rows = [r for r in rows if r.get("feedback/round") is not None]
    round_keys = ROUND_KEYS + ((("random-pair acc (vs gold)",
                                 "reward_model/random_pair_accuracy"),) if offline else ())
    parts.append(_table(
        ["update" if offline else "step", "round", *[k for k, _ in round_keys]],
        [[r["step"], int(r["feedback/round"]), *[r.get(key) for _, key in round_keys]]
         for r in round_rows],
    ))
    parts.append(_evaluations_table(rows, offline))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(_page(f"RewardLab run report: {run_dir.name}", "".join(parts)),
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
    metas = [(Path(r), *_load_meta(Path(r))) for r in run_dirs]
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
        event = _event_row(rows)
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
    body = _png(fig, "runs overlaid") + _table(
        ["run", "gold final", "gold peak", "gold drop", "proxy gain", "over-opt. step",
         "early stop", "Gao RL peak d"], table)
    out = Path(out)
    out.write_text(_page("RewardLab run comparison", body), encoding="utf-8")
    return out
