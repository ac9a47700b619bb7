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
completions at the first evaluation, at the gold peak and at the end. This module renders the
pages; the figures are drawn by :mod:`rewardlab.diagnostics.report_lm_figures`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.diagnostics.lm_curves import (
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
from rewardlab.diagnostics.report_data import event_row, load_run
from rewardlab.diagnostics.report_lm_figures import (
    FORM_NAMES,
    plot_lm_compare,
    plot_lm_curves,
    plot_lm_gao,
    plot_lm_reward_model,
)
from rewardlab.diagnostics.report_markup import (
    fmt,
    html_page,
    html_table,
    setting_text,
    teacher_text,
)
from rewardlab.errors import RunDirError

__all__ = [
    "LM_ROUND_KEYS",
    "SAMPLES_SHOWN",
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
    teacher = teacher_text(config, summary)
    judge = _lm(config).get("judge")
    return teacher if judge in (None, "", "none") else f"{teacher}; judge {setting_text(judge)}"




def _settings(config: Mapping[str, Any], summary: Mapping[str, Any], rows: list[dict[str, Any]],
              run_dir: Path) -> str:
    lm = _lm(config)
    rm = config.get("reward_model") if isinstance(config.get("reward_model"), Mapping) else {}
    algo = config.get("algorithm", summary.get("algorithm"))
    reward_model = "-"
    if rm:
        reward_model = (f"{setting_text(rm.get('members'))} members, reduction "
                        f"{setting_text(rm.get('reduction'))}")
    steps = summary.get("steps", lm.get("steps"))
    rows_out = [
        ("algorithm", setting_text(algo)),
        ("task", setting_text(lm.get("task", summary.get("task")))),
        ("base model", setting_text(lm.get("base_model"))),
        ("seed", setting_text(config.get("seed", summary.get("seed")))),
        ("n values evaluated" if algo == "bon" else "optimizer steps", setting_text(steps)),
        ("teacher / judge", judge_text(config, summary)),
        ("labels (preferences answered)", fmt(run_labels(rows, summary))),
        ("reward model", reward_model),
        ("status", setting_text(summary.get("status"))),
        ("wall time (s)", fmt(summary.get("wall_time_s"))),
        ("run directory", str(run_dir)),
    ]
    out = "<h2>Run</h2>" + html_table(["setting", "value"], rows_out, cls="settings")
    if lm:
        out += "<h2>Language-model settings</h2>" + html_table(
            ["setting", "value"], [(f"lm.{k}", setting_text(v)) for k, v in lm.items()],
            cls="settings")
    mitigation = config.get("mitigation")
    if isinstance(mitigation, Mapping) and mitigation:
        out += "<h2>Mitigation</h2>" + html_table(
            ["setting", "value"],
            [(f"mitigation.{k}", setting_text(v)) for k, v in mitigation.items()], cls="settings")
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
            means += f", mean gold {fmt(float(np.mean(golds)))}"
        if proxies:
            means += f", mean proxy {fmt(float(np.mean(proxies)))}"
        parts.append(f"<h3>{html.escape(what)}: step {step} ({means})</h3>")
        parts.append(html_table(["prompt", "completion", "gold", "proxy"], [
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
    rows, summary, config = load_run(run_dir)
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    bon = algo == "bon"
    form = gao_form_for(algo)
    curves = lm_eval_curves(rows)
    parts = [_settings(config, summary, rows, run_dir)]
    event = event_row(rows)
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
         f"{fmt(fields['gold_drop'])} ({fmt(fields['gold_drop_se'])})"),
        ("reward model: final held-out accuracy",
         last_value(rows, "reward_model/heldout_accuracy")),
        ("reward model: final held-out ECE", last_value(rows, "reward_model/heldout_ece")),
        ("judge-vs-gold agreement (last round)",
         last_value(rows, "feedback/judge_gold_agreement")),
        ("over-optimisation detected at step", "not detected" if event is None else
         int(event["diagnostics/overoptimization_step"])),
    ]
    parts.append("<h2>Summary</h2>" + html_table(["figure", "value"], facts))
    if fields is not None:
        d_max = float(gao.d.max()) if gao.d.size else None
        parts.append("<p>" + html.escape(describe_lm_peak(fields)) + ".<br>"
                     + html.escape(describe_lm_fit(fields, d_max)) + ".</p>")
    task = _lm(config).get("task", summary.get("task", "?"))
    parts.append("<h2>Gold and proxy score</h2>"
                 + plot_lm_curves(rows, curves, f"{algo} on {task}", bon))
    parts.append(
        "<h2>Over-optimisation curve</h2><p class='note'>d is the square root of the KL "
        "divergence of the policy from the reference (base) policy per completion, in nats, "
        + ("analytic for best-of-n: log n - (n - 1)/n" if bon else
           "a Monte-Carlo estimate over the evaluation samples")
        + "; the fit is of gold minus its value at the smallest d (the reference evaluation, "
        f"step {fmt(int(gao.step[int(np.argmin(gao.d))]) if gao.d.size else None)}, "
        f"d = {fmt(gao.d_ref)}).</p>"
        + plot_lm_gao(gao, curves))
    fit = gao.fit
    if fit is not None:
        peak = (f"{fmt(fit.peak_d)}" if math.isfinite(fit.peak_d)
                else "no finite peak: fitted gold still rising")
        fit_row = [FORM_NAMES[form], fit.alpha, fit.beta, fit.r2, peak,
                   gao.gold_ref + fit.peak_gold if math.isfinite(fit.peak_gold) else None]
    else:
        fit_row = [FORM_NAMES[form], f"no fit: {gao.reason}", None, None, None, None]
    parts.append(html_table(["form", "alpha", "beta", "R²", "fitted peak d* (sqrt-nats)",
                             "fitted gold at d*"], [fit_row]))
    parts.append("<h2>Reward model</h2>" + plot_lm_reward_model(rows, curves, bon))
    round_rows = [r for r in rows if r.get("feedback/round") is not None]
    if round_rows:
        parts.append(html_table(["step", "round", *[k for k, _ in LM_ROUND_KEYS]], [
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
    parts.append("<h2>Evaluations</h2>" + html_table(
        ["n-grid index" if bon else "step", *[label for _, label in columns]], body))
    parts.append(_samples_section(run_dir, curves))
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(html_page(f"RewardLab language-model run report: {run_dir.name}",
                             "".join(parts)), encoding="utf-8")
    return out


def _load_lm_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """``(rows, summary, config)`` of a language-model run directory.

    Raises:
        RunDirError: if it holds no ``metrics.jsonl`` or is not a language-model run.
    """
    rows, summary, config = load_run(run_dir)
    if not is_lm_run(config, summary):
        raise RunDirError(f"{run_dir}: not a language-model run")
    return rows, summary, config


def _compare_row(run_dir: Path, rows: list[dict[str, Any]], summary: Mapping[str, Any],
                 config: Mapping[str, Any]) -> dict[str, Any]:
    """A loaded run's row of :func:`lm_compare_rows`.

    Raises:
        RunDirError: if the run has no evaluation.
    """
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    try:
        fields = lm_benchmark_fields(rows, gao_form_for(algo))
    except ValueError as err:
        raise RunDirError(f"{run_dir}: no evaluation logged ({err})") from err
    return {"run": run_dir.name, "algorithm": algo, **fields}


def lm_compare_rows(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per language-model run for ``rewardlab compare``: its name, algorithm, and
    :func:`~rewardlab.diagnostics.lm_curves.lm_benchmark_fields`.

    Raises:
        RunDirError: if a directory holds no ``metrics.jsonl``, is not a language-model run or
            has no evaluation.
    """
    return [_compare_row(Path(r), *_load_lm_run(Path(r))) for r in run_dirs]


def write_lm_compare_report(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write one HTML page overlaying several language-model runs.

    Gold and proxy against steps, and gold against ``d = sqrt(KL)`` with each run's Gao fit
    (Eq. 1 for best-of-n runs, Eq. 2 otherwise) and its fitted peak
    (:func:`~rewardlab.diagnostics.report_lm_figures.plot_lm_compare`), then a table of gold at
    the first evaluation, at the peak and at the end, and ``sqrt(KL)`` at the peak (observed
    and fitted). Each run's ``metrics.jsonl`` is read once.

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
    table, run_curves = [], []
    for run_dir in map(Path, run_dirs):
        rows, summary, config = _load_lm_run(run_dir)
        table.append(_compare_row(run_dir, rows, summary, config))
        run_curves.append(lm_eval_curves(rows))
    body = plot_lm_compare(table, run_curves) + html_table(
        ["run", "algorithm", "gold first", "gold at peak", "gold at end", "drop (s.e.)",
         "sqrt KL at peak", "fitted d*", "fitted gold at d*", "fit R²"],
        [[r["run"], r["algorithm"], r["gold_first"], r["gold_peak"], r["gold_final"],
          f"{fmt(r['gold_drop'])} ({fmt(r['gold_drop_se'])})", r["sqrt_kl_at_peak"],
          r["sqrt_kl_at_peak_fit"], r["gold_peak_fit"], r["gao_r2"]] for r in table])
    body += ("<p class='note'>Gold at peak: the best evaluation's mean gold; sqrt KL at peak: "
             "its d. Fitted d*: the maximum of the run's Gao fit (Eq. 1 for best-of-n, Eq. 2 "
             "otherwise; ∞ when the fitted gold is still rising).</p>")
    out = Path(out)
    out.write_text(html_page("RewardLab language-model run comparison", body), encoding="utf-8")
    return out
