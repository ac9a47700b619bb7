"""Self-contained HTML reports of over-optimisation: one run, or several runs overlaid.

``rewardlab report RUN_DIR --html`` and ``rewardlab compare RUN_DIR ...`` call
:func:`write_run_report` and :func:`write_compare_report`. Everything is read from the run
directory (``metrics.jsonl``, ``summary.json``, ``config.yaml``, ``checkpoints/latest``); plots
are embedded as base64 PNG, so the file can be mailed or archived on its own.

A run report shows:

* gold (true) and proxy (learned) return of the same evaluation episodes against env steps,
  with feedback rounds, the detected over-optimisation event and any early stop marked;
* gold (and proxy) return against ``d = sqrt(KL(pi || pi_ref))`` with the two Gao et al. 2022 fits
  (:func:`rewardlab.diagnostics.overoptimization.fit_gao`) and their peaks;
* the reward model per feedback round: held-out accuracy and ECE, and accuracy and ECE on the
  round's fresh queries before retraining; Spearman correlation of proxy and gold returns over
  the evaluation episodes; ensemble disagreement on the policy's states;
* EPIC distance (Gleave et al. 2021) between the final learned reward and the true reward, for
  testbed envs whose true reward is known in closed form.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from rewardlab.diagnostics.metrics import read_metrics, series  # noqa: E402
from rewardlab.diagnostics.overoptimization import (  # noqa: E402
    GaoFit,
    fit_gao,
    gold_proxy_curves,
)
from rewardlab.errors import RunDirError  # noqa: E402

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


def _load_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    if not (run_dir / "metrics.jsonl").exists():
        raise RunDirError(f"{run_dir}: not a run directory (no metrics.jsonl)")
    rows = read_metrics(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    return rows, summary, config or {}


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


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _plot_curves(rows: list[dict[str, Any]], title: str) -> str:
    c = gold_proxy_curves(rows)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.errorbar(c["step"], c["eval/gold_return"], yerr=c["eval/gold_return_std"], fmt="o-",
                color="tab:blue", capsize=2, label="gold (true) return")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("gold return", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(c["step"], c["eval/proxy_return"], "s--", color="tab:orange",
             label="proxy (learned) return")
    ax2.set_ylabel("proxy return (standardised)", color="tab:orange")
    for x in series(rows, "feedback/round")[0]:
        ax.axvline(x, color="grey", alpha=0.2, lw=0.8)
    for key, color, label in (("diagnostics/overoptimization_step", "red", "over-optimisation"),
                              ("diagnostics/early_stop_step", "green", "early stop")):
        for x in series(rows, key)[1][:1]:
            ax.axvline(x, color=color, ls=":", lw=1.5, label=label)
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _proxy_against_distance(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(d, proxy)`` at the evaluations where both are finite."""
    c = gold_proxy_curves(rows)
    d = _value_at(rows, "diagnostics/sqrt_kl", c["step"])
    ok = np.isfinite(d) & np.isfinite(c["eval/proxy_return"])
    return d[ok], c["eval/proxy_return"][ok]


def _plot_gao(d: np.ndarray, gain: np.ndarray, fits: dict[str, GaoFit | str],
              proxy: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ax.plot(d, gain, "o", color="tab:blue", label="gold - reference (evaluations)")
    if proxy is not None and proxy[0].size:
        ax2 = ax.twinx()
        ax2.plot(proxy[0], proxy[1], "s", mfc="none", color="tab:orange",
                 label="proxy return (right axis)")
        ax2.set_ylabel("proxy return (standardised)", color="tab:orange")
        ax2.legend(fontsize=7, loc="lower right")
    if d.size:
        grid = np.linspace(0, max(float(d.max()) * 1.1, 1e-3), 200)
        for form, style in (("bon", "-"), ("rl", "--")):
            fit = fits.get(form)
            if isinstance(fit, GaoFit):
                ax.plot(grid, fit.predict(grid), style,
                        label=f"{form}: alpha={fit.alpha:.2f}, beta={fit.beta:.2f}, "
                        f"R2={fit.r2:.2f}")
                if math.isfinite(fit.peak_d) and fit.peak_d <= grid[-1]:
                    ax.plot([fit.peak_d], [fit.peak_gold], "k^", ms=7)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("d = sqrt(KL(pi || pi_ref)) on visited states (sqrt-nats)")
    ax.set_ylabel("gold return - reference")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("gold and proxy against distance from the reference policy (Gao et al. 2022)",
                 fontsize=9)
    return _png(fig)


def _plot_reward_model(rows: list[dict[str, Any]]) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("reward_model/heldout_accuracy", "o-"),
                       ("reward_model/fresh_accuracy", "s--")):
        s, v = series(rows, key)
        ax1.plot(s, v, style, label=key.split("/")[1])
    for key, style in (("reward_model/heldout_ece", "o-"), ("reward_model/fresh_ece", "s--")):
        s, v = series(rows, key)
        ax1.plot(s, v, style, label=key.split("/")[1])
    ax1.set_xlabel("environment steps (feedback rounds)")
    ax1.set_ylim(-0.02, 1.02)
    ax1.legend(fontsize=7)
    ax1.set_title("reward model per round", fontsize=9)
    s, v = series(rows, "eval/proxy_gold_spearman")
    ax2.plot(s, v, "o-", color="tab:purple", label="Spearman(proxy, gold), eval episodes")
    ax2.set_ylim(-1.05, 1.05)
    ax2.set_xlabel("environment steps")
    ax3 = ax2.twinx()
    s, v = series(rows, "reward_model/disagreement_on_policy")
    ax3.plot(s, v, "^:", color="tab:gray", label="ensemble disagreement on policy")
    handles = [h for a in (ax2, ax3) for h in a.get_legend_handles_labels()[0]]
    ax2.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower left")
    ax2.set_title("proxy/gold agreement on fresh rollouts", fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------------- html

_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:1.6em}.note{color:#555;font-size:13px}"
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return html.escape(str(value))


def _table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the self-contained HTML report of one run (default ``RUN_DIR/report.html``).

    Raises:
        RunDirError: if ``run_dir`` holds no ``metrics.jsonl``.
    """
    run_dir = Path(run_dir)
    rows, summary, config = _load_run(run_dir)
    env_id = str(config.get("env", {}).get("id", summary.get("env", "?")))
    algo = config.get("algorithm", summary.get("algorithm", "?"))
    oo = summary.get("overoptimization", {})
    parts = [f"<p class='note'>{html.escape(str(algo))} on {html.escape(env_id)}, seed "
             f"{_fmt(config.get('seed'))}; teacher {html.escape(str(config.get('teacher', {})))}"
             f"; teacher_bias {_fmt(config.get('teacher_bias'))}; reward reduction "
             f"{_fmt(config.get('reward_model', {}).get('reduction'))}; mitigation "
             f"{html.escape(json.dumps(config.get('mitigation', {})))}</p>"]

    head = outcome(run_dir) if gold_proxy_curves(rows)["step"].size else {}
    event = next((r for r in rows if r.get("diagnostics/gold_drop") is not None), None)
    stop = next((r for r in rows if r.get("diagnostics/early_stop_step") is not None), None)
    epic = epic_to_gold(run_dir, env_id)
    facts = [
        ("final gold return", head.get("gold_final")), ("peak gold return", head.get("gold_peak")),
        ("peak-to-final gold drop", head.get("gold_drop")),
        ("proxy gain (first to last eval)", head.get("proxy_gain")),
        ("reference policy frozen at step", oo.get("reference_step")),
        ("over-optimisation detected at step",
         None if event is None else int(event["diagnostics/overoptimization_step"])),
        ("  gold peak step / drop / p-value", None if event is None else
         f"{int(event['diagnostics/gold_peak_step'])} / {event['diagnostics/gold_drop']:.2f} / "
         f"{event['diagnostics/p_value']:.2g}"),
        ("early stop at step (rolled back to)", None if stop is None else
         f"{int(stop['diagnostics/early_stop_step'])} "
         f"({int(stop['diagnostics/early_stop_rollback_step'])}): {oo.get('early_stop_reason')}"),
        ("EPIC distance, final learned reward vs true reward", epic),
    ]
    parts.append("<h2>Summary</h2>" + _table(["figure", "value"], facts))
    parts.append("<h2>Gold and proxy return</h2>" + _plot_curves(rows, f"{algo} on {env_id}"))

    d, gain, fits = gao_analysis(rows, oo.get("reference_step"))
    parts.append("<h2>Over-optimisation curve</h2><p class='note'>d is the square root of "
                 "the mean over the evaluation episodes' states of the closed-form KL between "
                 "the current and the reference Gaussian action distributions (pre-squash for "
                 "SAC); the reference is the policy at the first reward update.</p>")
    parts.append(_plot_gao(d, gain, fits, _proxy_against_distance(rows)))
    fit_rows = []
    for form, fit in fits.items():
        if isinstance(fit, GaoFit):
            fit_rows.append([form, fit.alpha, fit.beta, fit.r2, fit.peak_d, fit.peak_gold])
        else:
            fit_rows.append([form, fit, None, None, None, None])
    parts.append(_table(["form", "alpha", "beta", "R2", "peak d", "peak gold gain"], fit_rows))

    parts.append("<h2>Reward model</h2>" + _plot_reward_model(rows))
    round_rows = [r for r in rows if r.get("feedback/round") is not None]
    parts.append(_table(
        ["step", "round", *[k for k, _ in ROUND_KEYS]],
        [[r["step"], int(r["feedback/round"]), *[r.get(key) for _, key in ROUND_KEYS]]
         for r in round_rows],
    ))
    c = gold_proxy_curves(rows)
    evals = [[int(s), g, p, sd, k, sp] for s, g, p, sd, k, sp in zip(
        c["step"], c["eval/gold_return"], c["eval/proxy_return"],
        _value_at(rows, "diagnostics/sqrt_kl", c["step"]),
        _value_at(rows, "diagnostics/policy_kl", c["step"]),
        _value_at(rows, "eval/proxy_gold_spearman", c["step"]), strict=True)]
    parts.append("<h2>Evaluations</h2>" + _table(
        ["step", "gold", "proxy", "sqrt KL", "KL (nats)", "Spearman"], evals))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(_page(f"RewardLab run report: {run_dir.name}", "".join(parts)),
                   encoding="utf-8")
    return out


def write_compare_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write one HTML page overlaying several runs (gold, proxy, gold against sqrt KL).

    Raises:
        RunDirError: if a directory holds no ``metrics.jsonl``.
        ValueError: if ``run_dirs`` is empty.
    """
    if not run_dirs:
        raise ValueError("run_dirs: give at least one run directory")
    runs = [(Path(r), *_load_run(Path(r))) for r in run_dirs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    table = []
    for run_dir, rows, summary, _config in runs:
        c = gold_proxy_curves(rows)
        label = run_dir.name
        axes[0].plot(c["step"], c["eval/gold_return"], "o-", ms=3, label=label)
        axes[1].plot(c["step"], c["eval/proxy_return"], "s--", ms=3, label=label)
        oo = summary.get("overoptimization", {})
        d, gain, fits = gao_analysis(rows, oo.get("reference_step"))
        axes[2].plot(d, gain, "o", ms=3, label=label)
        head = outcome(run_dir)
        event = next((r for r in rows if r.get("diagnostics/gold_drop") is not None), None)
        rl = fits.get("rl")
        table.append([label, head["gold_final"], head["gold_peak"], head["gold_drop"],
                      head["proxy_gain"],
                      None if event is None else int(event["diagnostics/overoptimization_step"]),
                      oo.get("early_stopped_at"),
                      rl.peak_d if isinstance(rl, GaoFit) else None])
    for ax, title in zip(axes, ("gold return", "proxy return (standardised)",
                                "gold - reference vs sqrt KL"), strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sqrt KL" if "KL" in title else "environment steps")
    axes[0].legend(fontsize=6)
    body = _png(fig) + _table(
        ["run", "gold final", "gold peak", "gold drop", "proxy gain", "over-opt step",
         "early stop", "Gao RL peak d"], table)
    out = Path(out)
    out.write_text(_page("RewardLab run comparison", body), encoding="utf-8")
    return out
