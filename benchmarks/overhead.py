"""Overhead of preference learning: PEBBLE's feedback machinery against its plain agent (issue 4).

Usage::

    python benchmarks/overhead.py [--env HalfCheetah-v5] [--steps 20000] [--queries 500]
        [--seed 0] [--methods pebble_rm_3x128_b32 pebble_rm_3x128 pebble ...]
        [--out-dir benchmarks/runs/feedback_efficiency] [--no-write]

Runs (or reuses, when already finished) one PEBBLE run with the oracle teacher (RewardLab's
default reward model for PEBBLE, 3 x 128 fit in minibatches of 32: the harness's
``pebble_rm_3x128_b32``, ``fe.DEFAULT_PEBBLE_VARIANT``) and one run of the
same agent on the true reward (the harness's ``true_reward``: ``pebble.backbone`` with the same
settings), through the feedback-efficiency harness (``benchmarks/feedback_efficiency.py``, which
runs them with ``benchmarks/core.py``'s runners as Ray Tune trials, each pinned to a core; same
agent hyperparameters, derived seeds, evaluation protocol, one thread), then reports:

* ``fraction``: wall time PEBBLE spends in query selection, the teacher, reward-model training
  (fit, held-out accuracy, normalisation) and replay-buffer relabelling (the run's
  ``feedback.seconds``), divided by the run's total wall time;
* the difference in total wall time between the PEBBLE run and the reference run.

The default budget is issue 11's (item 6): 500 queries in 20k steps, five times the
labels-per-step density of the headline grid (500 queries in 100k steps). Every other
finished oracle PEBBLE run of the harness at the same env, step budget and seed is listed too
(e.g. the 500-query runs of the feedback-efficiency table), to show how the fraction grows with
the density of labels.

``--methods`` adds PEBBLE variants of the harness (e.g. ``pebble``, with PEBBLE's 3 x 256 reward
model, ``pebble_rm_2x64``, ``pebble_rm_bf16``: another size or a lower precision) at the same
budget and seed, each
row with its fraction, its final gold return and its reward model's accuracy on random pairs of
the run's own experience (``reward_model/random_pair_accuracy`` of the last round), to show what
a cheaper reward model costs in accuracy. The headline figure stays the default's.

Results go to ``benchmarks/results/overhead.json`` and to the ``overhead`` section of
``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py)
import feedback_efficiency as fe  # noqa: E402  (benchmarks/feedback_efficiency.py)

RESULTS_JSON = core.REPO / "benchmarks" / "results" / "overhead.json"
BEGIN, END = "<!-- overhead:begin -->", "<!-- overhead:end -->"
PARTS = ("queries", "teacher", "reward_training", "relabel")
TARGET_FRACTION = 0.10
#: The headline run's method: the harness variant with RewardLab's default reward model.
HEADLINE = fe.DEFAULT_PEBBLE_VARIANT


def breakdown(pebble_done: dict[str, Any], reference_done: dict[str, Any],
              final_gold: float | None = None) -> dict[str, Any]:
    """The overhead figures of one PEBBLE run against one run of the same agent on the true
    reward (harness ``done`` records).

    Args:
        final_gold: the PEBBLE run's gold return at its last evaluation, if known.

    Returns:
        ``fraction`` (feedback seconds / PEBBLE wall seconds), ``breakdown`` (seconds and
        fraction per part), wall times in seconds and the PEBBLE - reference difference, the
        run's ``method``, ``final_gold_return`` and ``random_pair_accuracy`` (its last
        reward model on random pairs of its experience; None in records made before the
        harness kept it).
    """
    rm = pebble_done.get("reward_model") or {}
    seconds = pebble_done["feedback_seconds"]
    wall = float(pebble_done["wall_time_s"])
    total = sum(float(seconds[p]) for p in PARTS)
    ref_wall = float(reference_done["wall_time_s"])
    return {
        "method": pebble_done.get("method", "pebble"),
        "queries": pebble_done["queries"], "queries_asked": pebble_done.get("queries_asked"),
        "fraction": total / wall, "feedback_seconds": total,
        "breakdown": {p: {"seconds": float(seconds[p]), "fraction": float(seconds[p]) / wall}
                      for p in PARTS},
        "pebble_wall_s": wall, "reference_wall_s": ref_wall,
        "wall_difference_s": wall - ref_wall, "wall_ratio": wall / ref_wall,
        "pebble_run": pebble_done["run"], "reference_run": reference_done["run"],
        "backbone": pebble_done.get("backbone"), "final_gold_return": final_gold,
        "random_pair_accuracy": rm.get("reward_model/random_pair_accuracy"),
    }


def final_gold(run: dict[str, Any]) -> float | None:
    """The gold return at a harness run's last evaluation (``{"done", "evals"}``)."""
    return run["evals"][-1]["gold_return"] if run.get("evals") else None


def render_section(rec: dict[str, Any]) -> str:
    lines = [BEGIN, "## Overhead of preference learning (`benchmarks/overhead.py`)", "",
             f"- Command: `{rec['command']}`",
             f"- Date (UTC): {rec['written_utc']}",
             f"- Machine: {rec['machine']['cpu']}, {rec['machine']['cpu_count']} logical CPUs, "
             f"torch {rec['machine']['torch']}; each run pinned to a core of its own, 1 thread "
             "(machine shared with other work)",
             f"- Runs: {rec['env']}, {rec['steps']} env steps, seed {rec['seed']}, oracle "
             f"teacher; PEBBLE and the same agent (backbone {rec.get('backbone') or '—'}) on the "
             "true reward with identical settings (`benchmarks/feedback_efficiency.py` schedule)",
             "",
             "| method | queries | env steps per label | query selection (s) | teacher (s) | "
             "reward training (s) | relabel (s) | "
             "feedback total (s) | PEBBLE wall (s) | fraction | true-reward wall (s) | "
             "PEBBLE − true-reward wall (s) | final gold return | random-pair accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rec["rows"]:
        b = r["breakdown"]
        lines.append(
            f"| {r.get('method', 'pebble')} | {r['queries']} | "
            f"{rec['steps'] / r['queries']:.0f} | "
            f"{b['queries']['seconds']:.1f} | {b['teacher']['seconds']:.2f} | "
            f"{b['reward_training']['seconds']:.1f} | {b['relabel']['seconds']:.1f} | "
            f"{r['feedback_seconds']:.1f} | {r['pebble_wall_s']:.0f} | "
            f"{100 * r['fraction']:.1f}% | {r['reference_wall_s']:.0f} | "
            f"{r['wall_difference_s']:+.0f} ({100 * (r['wall_ratio'] - 1):+.0f}%) | "
            f"{fe._f(r.get('final_gold_return'), 0)} | {fe._f(r.get('random_pair_accuracy'))} |")
    head = rec["rows"][0] if rec["rows"] else None
    head_method = head.get("method", "pebble") if head else None
    if head:
        verdict = "meets" if rec["fraction"] <= TARGET_FRACTION else "misses"
        named = (f"`{head_method}`: RewardLab's default reward model" if head_method == HEADLINE
                 else f"`{head_method}`")
        lines += ["", f"Headline ({named}, seed {rec['seed']}, {head['queries']} queries "
                  f"in {rec['steps']} steps, one label "
                  f"per {rec['steps'] / head['queries']:.0f} env steps; the core HalfCheetah "
                  "benchmark and the issue's headline grid have one per 200): "
                  "fraction "
                  f"{100 * rec['fraction']:.1f}%, which {verdict} the issue's target of at most "
                  f"{100 * TARGET_FRACTION:.0f}%."]
    variants = [r for r in rec["rows"][1:] if r.get("method", "pebble") != head_method]
    if variants:
        lines += ["", "Variant rows (`--methods`) are the same run with another reward model "
                  "(`benchmarks/feedback_efficiency.py`'s PEBBLE variants of those names; "
                  "`pebble` has PEBBLE's 3 x 256): "
                  + "; ".join(f"`{r['method']}` fraction {100 * r['fraction']:.1f}% ("
                              + ("meets" if r["fraction"] <= TARGET_FRACTION else "misses")
                              + " the target)" for r in variants)
                  + ". Random-pair accuracy is the last round's reward model on random "
                  "pairs of 50-step segments of the run's own experience, judged by the gold "
                  "return (`reward_model/random_pair_accuracy`), so a cheaper model's loss of "
                  "accuracy shows beside its saving; one seed, so the gold returns are a probe, "
                  "not a comparison."]
    if len(rec["rows"]) > 1 + len(variants):
        lines += ["", f"The other `{head_method}` rows are the harness's other oracle runs at "
                  "the same "
                  "env, steps and seed (e.g. those of the feedback-efficiency table): the "
                  "fraction grows with the density of labels, since every round retrains the "
                  "ensemble on all labels so far and scores a candidate pool ten times the "
                  "round's size."]
    lines += ["", "Fraction = (query selection + teacher + reward-model training + replay "
              "relabelling) / PEBBLE's total wall time, from the run's `feedback.seconds`. "
              "Reward training includes the fit, the held-out accuracy and the re-measured "
              "normalisation; relabelling includes the intrinsic-reward relabels of the "
              "pre-training phase. The wall difference against the same agent on the true reward "
              "also holds what the fraction "
              "leaves out: the per-step proxy reward, transition logging, the feedback store, "
              "proxy returns in evaluations and run-to-run noise on a shared machine.",
              "", END]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=500, help="oracle queries of the headline run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=[HEADLINE],
                   choices=list(fe.PEBBLE_VARIANTS),
                   help=f"PEBBLE variants to run at the same budget (the headline is {HEADLINE}, "
                   "RewardLab's default reward model, always run)")
    p.add_argument("--workers", type=int, default=2, help="runs side by side (Ray trials)")
    p.add_argument("--out-dir", type=Path, default=fe.DEFAULT_OUT)
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("overhead.py", argv)
    out_dir = args.out_dir.resolve()
    jsonl = fe.default_records("feedback_efficiency")
    ref_key = fe.run_key(args.env, fe.REFERENCE, None, 0, args.steps, args.seed)
    pebble_key = fe.run_key(args.env, HEADLINE, "oracle", args.queries, args.steps, args.seed)
    variants = [m for m in dict.fromkeys(args.methods) if m != HEADLINE]
    variant_keys = [fe.run_key(args.env, m, "oracle", args.queries, args.steps, args.seed)
                    for m in variants]
    fe_argv = ["--envs", args.env, "--methods", fe.REFERENCE, HEADLINE, *variants,
               "--teachers", "oracle",
               "--queries", str(args.queries), "--seeds", str(args.seed), "--steps",
               str(args.steps), "--out-dir", str(out_dir), "--no-write",
               "--workers", str(args.workers)]
    if fe.main(fe_argv) != 0:  # runs whichever of the two is not finished yet
        print("a run failed; see above", flush=True)
        return 1
    runs = fe.current_runs(fe.read_records(jsonl))  # stale runs left out
    reference = runs[ref_key]["done"]
    others = sorted(
        (k for k in runs if k != pebble_key and fe.parse_key(k) | {"queries": 0}
         == fe.parse_key(pebble_key) | {"queries": 0}), key=lambda k: fe.parse_key(k)["queries"])
    rows = [breakdown(runs[k]["done"], reference, final_gold(runs[k]))
            for k in [pebble_key, *variant_keys, *others]]
    rec = {"fraction": rows[0]["fraction"], "env": args.env, "steps": args.steps,
           "seed": args.seed, "queries": args.queries, "breakdown": rows[0]["breakdown"],
           "backbone": rows[0]["backbone"],
           "wall_difference_s": rows[0]["wall_difference_s"],
           "target_fraction": TARGET_FRACTION, "target_met": rows[0]["fraction"] <= TARGET_FRACTION,
           "rows": rows, "command": command, "written_utc": core.utc_now(),
           "machine": core.machine_info(), "jsonl": os.path.relpath(jsonl, core.REPO)}
    for r in rows:
        print(f"{r['method']}, {r['queries']} queries: fraction {100 * r['fraction']:.1f}% "
              f"({r['feedback_seconds']:.1f} of {r['pebble_wall_s']:.0f} s); true reward "
              f"{r['reference_wall_s']:.0f} s; difference {r['wall_difference_s']:+.0f} s",
              flush=True)
    if args.no_write:
        print(render_section(rec))
        return 0
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(rec, indent=2) + "\n")
    core.write_markdown_section(core.BENCHMARKS_MD, BEGIN, END, render_section(rec))
    print(f"wrote {os.path.relpath(RESULTS_JSON, core.REPO)} and BENCHMARKS.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
