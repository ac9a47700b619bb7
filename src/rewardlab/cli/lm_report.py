"""``rewardlab report RUN_DIR`` and ``rewardlab compare`` in the terminal, for language-model runs.

:func:`rewardlab.cli.main._print_report` hands a language-model run
(:func:`rewardlab.diagnostics.lm_curves.is_lm_run`) to :func:`print_lm_report`: the task,
algorithm, base model, labels, teacher or judge (with judge-vs-gold agreement), the reward
model's held-out accuracy and ECE, one table row per evaluation (gold, proxy, sqrt KL,
ensemble disagreement), the over-optimisation sentence if the alarm fired, whether the observed
gold peaked and fell, and the Gao et al. 2022 fit of the run's optimiser (Eq. 1 for best-of-n,
Eq. 2 otherwise) with its peak. The sentences are those of ``report.html``
(:func:`~rewardlab.diagnostics.lm_curves.describe_lm_fit`,
:func:`~rewardlab.diagnostics.lm_curves.describe_lm_peak`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rewardlab.diagnostics.lm_curves import (
    bon_event_note,
    describe_lm_fit,
    describe_lm_peak,
    gao_form_for,
    lm_benchmark_fields,
    lm_eval_curves,
)

__all__ = ["print_lm_compare", "print_lm_report"]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def print_lm_report(
    run_dir: Path, rows: list[dict[str, Any]], summary: Mapping[str, Any],
    console: Console, print_feedback: Callable[[Path, Console], None],
) -> None:
    """Print the terminal report of one language-model run.

    Args:
        run_dir: the run directory.
        rows: its ``metrics.jsonl`` rows.
        summary: its ``summary.json`` (may be empty).
        console: where to print.
        print_feedback: prints the feedback store's counts and answers (the control report's).
    """
    from rewardlab.diagnostics.report_lm import judge_text, last_value, run_labels

    config_path = run_dir / "config.yaml"
    try:
        config = (yaml.safe_load(config_path.read_text()) if config_path.exists() else {}) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    lm = config.get("lm") if isinstance(config.get("lm"), Mapping) else {}
    algo = str(config.get("algorithm", summary.get("algorithm", "?")))
    bon = algo == "bon"
    curves = lm_eval_curves(rows)
    table = Table(title=f"language-model run {run_dir}")
    headers = ["step", *(["n"] if bon else []), "gold", "proxy", "sqrt KL", "disagr."]
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for i, step in enumerate(curves["step"]):
        n = curves["eval/bon_n"][i]
        cells = [str(int(step)), *([_num(n, 0)] if bon else [])]
        cells += [_num(curves[k][i]) for k in ("eval/gold_return", "eval/proxy_return",
                                                "eval/sqrt_kl",
                                                "reward_model/disagreement_on_policy")]
        table.add_row(*cells)
    console.print(table)

    task = lm.get("task", summary.get("task", "?"))
    head = f"algorithm {algo} on task {task}, base model {lm.get('base_model', '?')}"
    seed = config.get("seed", summary.get("seed"))
    if seed is not None:
        head += f", seed {seed}"
    ns = curves["eval/bon_n"][curves["eval/bon_n"] == curves["eval/bon_n"]]
    if bon and ns.size:
        head += f": {ns.size} values of n ({int(ns.min())} to {int(ns.max())})"
    elif summary:
        head += f": {summary.get('steps', '?')} optimizer steps"
    if summary:
        if summary.get("wall_time_s") is not None:
            head += f" in {float(summary['wall_time_s']):.0f} s"
        if summary.get("status"):
            head += f" ({summary['status']})"
    console.print(escape(head))
    labels = run_labels(rows, summary)
    teacher = f"teacher {judge_text(config, summary)}"
    agree = last_value(rows, "feedback/judge_gold_agreement")
    if agree is not None:
        teacher += f", judge-vs-gold agreement {agree:.0%}"
    console.print(escape(f"labels: {'-' if labels is None else int(labels)}; {teacher}"))
    acc = last_value(rows, "reward_model/heldout_accuracy")
    ece = last_value(rows, "reward_model/heldout_ece")
    if acc is not None or ece is not None:
        console.print(f"reward model (last round): held-out accuracy {_num(acc, 2)}, "
                      f"held-out ECE {_num(ece, 3)}")
    if (run_dir / "feedback.db").exists():
        print_feedback(run_dir, console)

    event = next((r for r in rows if r.get("diagnostics/overoptimization_step") is not None),
                 None)
    if event is not None:
        from rewardlab.diagnostics.overoptimization import describe_overoptimization

        note = bon_event_note(event, curves) if bon else ""
        console.print(f"[yellow]{escape(describe_overoptimization(event))}[/]"
                      + (f" {escape(note)}" if note else ""))
    if curves["step"].size:
        fields = lm_benchmark_fields(rows, gao_form_for(algo))
        d = curves["eval/sqrt_kl"]
        d_max = float(d[d == d].max()) if (d == d).any() else None
        console.print(escape(describe_lm_peak(fields)))
        console.print(escape(describe_lm_fit(fields, d_max)))
    else:
        console.print("no evaluation logged yet")
    if (run_dir / "report.html").exists():
        console.print(f"HTML report: {run_dir / 'report.html'}")


def print_lm_compare(run_dirs: Sequence[Path], console: Console) -> None:
    """Print the comparison table of language-model runs (gold at the first evaluation, at the
    peak and at the end; sqrt KL at the observed and at the fitted peak).

    Raises:
        RunDirError: as :func:`rewardlab.diagnostics.report_lm.lm_compare_rows`.
    """
    from rewardlab.diagnostics.report_lm import lm_compare_rows

    table = Table(title="language-model runs")
    for header in ("run", "algo", "gold first", "at peak", "at end", "sqrt KL at peak",
                   "fitted d*"):
        table.add_column(header, justify="left" if header in ("run", "algo") else "right")
    for r in lm_compare_rows(run_dirs):
        fit_d = r["sqrt_kl_at_peak_fit"]
        table.add_row(escape(r["run"]), r["algorithm"], _num(r["gold_first"]),
                      _num(r["gold_peak"]), _num(r["gold_final"]), _num(r["sqrt_kl_at_peak"]),
                      "none (rising)" if fit_d == math.inf else _num(fit_d))
    console.print(table)

