"""Over-optimisation benchmark: plain preference PPO vs each mitigation on the testbed.

Usage::

    python benchmarks/overoptimization.py [--settings hazard narrow decoy] [--seeds 1 2 3 4 5]
                                          [--variants plain min ...] [--out-dir DIR]
                                          [--no-write]

For every testbed setting (:data:`rewardlab.envs.testbed.SETTINGS`), variant and seed, one
preference-PPO run (:data:`BASE` overrides, 20480 env steps, 100 scripted-teacher queries) is
trained in-process, one after another (one torch thread). Each run writes to
``<out-dir>/<setting>/<variant>-s<seed>/``; a run whose ``summary.json`` exists is not rerun (an
unfinished one is deleted and restarted). Per run the figures are those of
:func:`rewardlab.diagnostics.report_data.outcome`: ``gold_final`` (gold return of the last
evaluation), ``gold_drop`` (best evaluation minus last, >= 0) and ``proxy_gain`` (proxy return
of the last evaluation minus the first one); the table gives mean and sample std over seeds.

Results go to ``benchmarks/results/overoptimization.json`` and to the ``overoptimization``
section of ``BENCHMARKS.md`` (between ``<!-- overoptimization:begin -->`` and
``<!-- overoptimization:end -->``) unless ``--no-write``.

Mitigation coefficients (:data:`VARIANTS`) were chosen on seed 0 only; the reported seeds are
1-5.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# benchmarks/core.py; importing it also pins one BLAS/OpenMP thread per process
from core import (  # noqa: E402
    BENCHMARKS_MD,
    REPO,
    machine_info,
    utc_now,
    write_markdown_section,
)

RESULTS_JSON = REPO / "benchmarks" / "results" / "overoptimization.json"
BEGIN, END = "<!-- overoptimization:begin -->", "<!-- overoptimization:end -->"

#: Shared config of every run (preference PPO on a 50-step point task).
BASE = (
    "algorithm=pref_ppo", "total_steps=20480", "ppo.n_envs=4", "ppo.n_steps=256",
    "ppo.net_arch=[64, 64]", "feedback.segment_len=25", "feedback.total_budget=100",
    "feedback.queries_per_round=20", "feedback.round_every=4096", "feedback.first_round_at=1024",
    "reward_model.hidden_sizes=[64, 64]", "eval.every=2048", "eval.episodes=10",
    "checkpoint_every=1000000", "progress_bar=false", "torch_threads=1",
    "record_render_states=false",
)

#: Variant name -> extra overrides ("plain" = none). Coefficients chosen on seed 0.
VARIANTS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "ensemble_mean_minus_2std": ("reward_model.reduction=mean_minus_std",
                                 "reward_model.k_std=2"),
    "ensemble_min": ("reward_model.reduction=min",),
    "early_stop_disagreement": ("mitigation.early_stop=disagreement",
                                "mitigation.early_stop_ratio=1.15"),
    "early_stop_calibration": ("mitigation.early_stop=calibration",
                               "mitigation.early_stop_ece=0.25"),
    "chi2_occupancy": ("mitigation.regularizer=chi2_occupancy", "mitigation.reg_coef=0.5"),
    "action_kl": ("mitigation.regularizer=action_kl", "mitigation.reg_coef=5"),
    "targeted_feedback": ("mitigation.targeted_feedback=true",),
}


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=False)
    return out.stdout.strip()


def run_one(setting: str, variant: str, seed: int, out_dir: Path) -> dict[str, Any]:
    """Train one run (or reuse a finished one) and return its figures."""
    from rewardlab.algorithms import train
    from rewardlab.config import build_config
    from rewardlab.diagnostics.metrics import read_metrics
    from rewardlab.diagnostics.report_data import outcome
    from rewardlab.envs.testbed import SETTINGS

    run_dir = out_dir / setting / f"{variant}-s{seed}"
    overrides = [*BASE, *SETTINGS[setting].overrides, *VARIANTS[variant], f"seed={seed}"]
    if not (run_dir / "summary.json").exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        train(build_config({}, overrides), run_dir)
        print(f"{setting}/{variant}-s{seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir)
    figures = outcome(run_dir)
    return {
        "setting": setting, "variant": variant, "seed": seed, **figures,
        "overoptimization_detected": any("diagnostics/gold_drop" in r for r in rows),
        "early_stopped_at": summary.get("overoptimization", {}).get("early_stopped_at"),
        "wall_time_s": summary["wall_time_s"],
    }


def _stats(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return {"mean": mean, "std": std}


def aggregate(runs: list[dict[str, Any]], settings: list[str], variants: list[str]
              ) -> list[dict[str, Any]]:
    """The machine-readable table: one entry per setting, plain and each mitigation."""
    out = []
    for setting in settings:
        entry: dict[str, Any] = {"name": setting, "mitigations": {}}
        for variant in variants:
            rs = [r for r in runs if r["setting"] == setting and r["variant"] == variant]
            if not rs:
                continue
            agg = {key: statistics.fmean(r[key] for r in rs)
                   for key in ("gold_final", "gold_drop", "proxy_gain")}
            agg.update({
                "gold_final_std": _stats([r["gold_final"] for r in rs])["std"],
                "gold_drop_std": _stats([r["gold_drop"] for r in rs])["std"],
                "seeds": [r["seed"] for r in rs],
                "overoptimization_detected": sum(r["overoptimization_detected"] for r in rs),
                "early_stopped": sum(r["early_stopped_at"] is not None for r in rs),
            })
            if variant == "plain":
                entry["plain"] = agg
            else:
                entry["mitigations"][variant] = agg
        out.append(entry)
    return out


def _f(x: float, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render_section(rec: dict[str, Any]) -> str:
    from rewardlab.envs.testbed import SETTINGS

    m = rec["machine"]
    lines = [
        BEGIN, "## Over-optimisation testbed (`benchmarks/overoptimization.py`)", "",
        f"- Command: `{rec['command']}`",
        f"- Seeds: {', '.join(map(str, rec['seeds']))} (mitigation coefficients chosen on "
        "seed 0, which is not reported)",
        f"- Date (UTC): {rec['written_utc']}; commit {rec['commit'][:10]}",
        f"- Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, torch {m['torch']}, Python "
        f"{m['python']}; runs one after another, 1 torch thread",
        f"- Shared overrides: `{' '.join(BASE)}`",
        "",
        "Gold = true return of the deterministic policy (mean of 10 eval episodes, 50 steps "
        "each). `gold final` = last evaluation (for an early-stopped run: its rolled-back "
        "policy), `gold drop` = best evaluation minus last (>= 0), `proxy gain` = proxy "
        "return of the last evaluation minus the first (standardised proxy units). Mean ± "
        "sample std over seeds; `over-opt` = runs in which the online detector "
        "(`diagnostics/overoptimization_step`) fired; `stopped` = early-stopped runs.",
        "",
    ]
    for entry in rec["settings"]:
        s = SETTINGS[entry["name"]]
        lines += [f"### `{s.name}`: {s.description}", "",
                  f"Setting overrides: `{' '.join(s.overrides)}`", "",
                  "| variant | overrides | gold final | gold drop | proxy gain | over-opt | "
                  "stopped |", "|---|---|---:|---:|---:|---:|---:|"]
        variants = ([("plain", entry["plain"])] if "plain" in entry else []) + list(
            entry["mitigations"].items())
        for name, a in variants:
            n = len(a["seeds"])
            lines.append(
                f"| {name} | `{' '.join(VARIANTS[name]) or '—'}` | {_f(a['gold_final'])} ± "
                f"{_f(a['gold_final_std'])} | {_f(a['gold_drop'])} ± {_f(a['gold_drop_std'])} | "
                f"{_f(a['proxy_gain'])} | {a['overoptimization_detected']}/{n} | "
                f"{a['early_stopped']}/{n} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_markdown(path: Path, section: str) -> None:
    write_markdown_section(path, BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    from rewardlab.envs.testbed import SETTINGS

    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "runs" / "overopt")
    p.add_argument("--no-write", action="store_true",
                   help="do not touch benchmarks/results/overoptimization.json or BENCHMARKS.md")
    args = p.parse_args(argv)
    command = shlex.join(["python", "benchmarks/overoptimization.py",
                          *(sys.argv[1:] if argv is None else argv)])
    out_dir = args.out_dir.resolve()
    commit = git_commit()  # the code the runs use (recorded before they start)
    runs = []
    for seed in args.seeds:  # seed-major, so a partial run still covers every cell
        for setting in args.settings:
            for variant in args.variants:
                runs.append(run_one(setting, variant, seed, out_dir))
    rec = {
        "command": command, "seeds": args.seeds, "written_utc": utc_now(),
        "commit": commit, "machine": machine_info(), "base_overrides": list(BASE),
        "variants": {k: list(v) for k, v in VARIANTS.items() if k in args.variants},
        "settings": aggregate(runs, args.settings, args.variants), "runs": runs,
    }
    (out_dir / "overoptimization.json").write_text(json.dumps(rec, indent=2))
    section = render_section(rec)
    print(section)
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(rec, indent=2))
        write_markdown(BENCHMARKS_MD, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
