"""Feedback efficiency: return per label, normalised by SAC on the true reward (issue 4).

Usage::

    python benchmarks/feedback_efficiency.py [--envs HalfCheetah-v5 ...] [--methods pebble sac_true]
        [--teachers oracle mistake noisy] [--queries 500 ...] [--seeds 0 1 2] [--steps 300000]
        [--out-dir benchmarks/runs/feedback_efficiency] [--aggregate-only] [--no-write]

Runs every combination env x method x teacher x query budget x seed selected by the flags, one
at a time (one torch thread), then aggregates.

* ``pebble``: :func:`rewardlab.algorithms.train` with the teacher preset (``oracle``,
  ``mistake``, ``noisy``; :data:`rewardlab.config.TEACHER_PRESETS`) and the budget
  spread over :data:`ROUNDS` feedback rounds (:func:`run_overrides`).
* ``sac_true``: Stable-Baselines3 SAC on the true reward with PEBBLE's SAC hyperparameters,
  derived seeds and evaluation protocol (``benchmarks/core.py``'s runner); it takes no teacher
  or budget, so it runs once per env, step budget and seed.

Each finished run appends its evaluations (``kind: "eval"``: env step, gold return) and then
one ``kind: "done"`` record to the section's record file
``benchmarks/results/<section>_runs.jsonl`` (``--records`` to choose another), all stamped with a
per-attempt id. The record file is small and kept in git, so the grid can be run in pieces on
different machines and sessions; the run directories (``<out-dir>/runs/``, large) are not.
The harness is resumable: a run with a ``done`` record is skipped; an unfinished one is started
again from scratch (its run directory is deleted; records of an attempt without ``done`` are
ignored by the aggregation).

Normalised score of a run (the issue's) = its gold (true) return G at the final evaluation / the
mean gold return S of the ``sac_true`` runs of the same env at the same env step (both measured
by this harness); undefined while S <= 0 (HalfCheetah before SAC runs forward). So the harness
also reports (G - R) / (S - R), R being a uniformly random policy's return on the same env
(recorded once per env in the JSONL as a ``kind: "reference"`` record): 0 = random, 1 = SAC.
Per (env, method, teacher, budget, steps) the scores over seeds are aggregated with
``rliable``: interquartile mean and a 95% stratified-bootstrap confidence interval (Agarwal et
al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice").

Hopper-v5 and Walker2d-v5 are run with ``terminate_when_unhealthy=False`` for both methods:
episodes then always last the time limit, so episode ends carry no reward information the
preference learner could exploit (variable horizons leak the true reward, see imitation's
refusal of them), and SAC is evaluated on the same env, so the ratio compares like with like.

Results go to ``benchmarks/results/feedback_efficiency.json`` and to the
``feedback_efficiency`` section of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py: runners, machine info, markdown sections)

REPO = core.REPO
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_OUT = REPO / "benchmarks" / "runs" / "feedback_efficiency"

ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
#: Ablations of PEBBLE (issue 4, item 7): config overrides on top of the ``pebble`` run. The
#: ``pebble`` method itself uses disagreement-based query selection and pre-training.
PEBBLE_VARIANTS: dict[str, tuple[str, ...]] = {
    "pebble": (),
    "pebble_uniform": ("feedback.method=uniform",),
    "pebble_entropy": ("feedback.method=entropy",),
    "pebble_no_pretrain": ("pebble.unsupervised_steps=0",),
}
METHODS = (*PEBBLE_VARIANTS, "sac_true")
#: Where a selection's table goes: ``--section`` -> (BENCHMARKS.md title, results JSON).
SECTIONS = {
    "feedback_efficiency": ("Feedback efficiency", "feedback_efficiency.json"),
    "ablations": ("PEBBLE ablations: query selection and pre-training", "ablations.json"),
}
TEACHERS = ("oracle", "mistake", "noisy")
#: Envs whose episodes end early when unhealthy; run without that termination (see module doc).
UNHEALTHY_TERMINATION = ("Hopper-v5", "Walker2d-v5")
#: Feedback rounds the query budget is spread over.
ROUNDS = 10
EVAL_POINTS = 4
#: The issue's grid (the CLI defaults).
FULL_STEPS, FULL_QUERIES, FULL_SEEDS = 300_000, (100, 500, 1000), (0, 1, 2, 3, 4)
BOOTSTRAP_REPS = 20_000
BOOTSTRAP_SEED = 0
RANDOM_EPISODES, RANDOM_SEED = 10, 0


# ----------------------------------------------------------------------------- runs

def run_key(env: str, method: str, teacher: str | None, queries: int, steps: int,
            seed: int) -> str:
    """The run's id: ``env/method/teacher/qQUERIES/tSTEPS/sSEED`` (teacher ``-``, q0 for SAC)."""
    if method == "sac_true":
        teacher, queries = None, 0
    return f"{env}/{method}/{teacher or '-'}/q{queries}/t{steps}/s{seed}"


def parse_key(key: str) -> dict[str, Any]:
    """Inverse of :func:`run_key`."""
    env, method, teacher, q, t, s = key.split("/")
    return {"env": env, "method": method, "teacher": None if teacher == "-" else teacher,
            "queries": int(q[1:]), "steps": int(t[1:]), "seed": int(s[1:])}


def run_overrides(env: str, method: str, teacher: str | None, queries: int, steps: int,
                  seed: int) -> list[str]:
    """Config overrides of one run.

    Schedule (PEBBLE's ratios, Lee et al. 2021, App. B, scaled to ``steps``): unsupervised
    pre-training for 5% of the steps (at least 1000), the first feedback round when it ends, then
    :data:`ROUNDS` rounds of ``ceil(queries / ROUNDS)`` queries evenly spaced over the rest;
    :data:`EVAL_POINTS` evaluations of 5 episodes; one checkpoint, at the end.

    Raises:
        ValueError: if the steps cannot hold the schedule or the budget is below one query.
    """
    unsup = max(1000, steps // 20)
    if steps < 2 * unsup:
        raise ValueError(f"--steps {steps}: too few for the schedule; use at least {2 * unsup}")
    if method not in METHODS:
        raise ValueError(f"--methods: unknown method {method!r}; choose from {METHODS}")
    out = [f"env.id={env}", f"total_steps={steps}", f"seed={seed}",
           f"eval.every={steps // EVAL_POINTS}", "eval.episodes=5", f"checkpoint_every={steps}",
           f"log_capacity={steps}", *core.BASE]
    if env in UNHEALTHY_TERMINATION:
        out.append("env.kwargs.terminate_when_unhealthy=false")
    if method in PEBBLE_VARIANTS:
        if queries < 1:
            raise ValueError(f"--queries {queries}: pebble needs a budget of at least 1 query")
        per_round = math.ceil(queries / ROUNDS)
        out += [f"feedback.total_budget={queries}", f"feedback.queries_per_round={per_round}",
                f"feedback.round_every={max(1, (steps - unsup) // ROUNDS)}",
                f"feedback.first_round_at={unsup}", "feedback.segment_len=50",
                f"pebble.unsupervised_steps={unsup}", f"teacher.preset={teacher}",
                *PEBBLE_VARIANTS[method]]  # a variant's overrides come last and win
    return out


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a line cut short by a crash is skipped)."""
    return core._read_jsonl(path)


def completed_runs(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{run key: {"done": done record, "evals": [eval records, by step]}}`` of finished runs.

    Only the evaluations of the attempt that wrote the ``done`` record count (the last such
    attempt if a run was finished twice); one record per step.
    """
    done = {r["run"]: r for r in records if r.get("kind") == "done"}
    evals: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r.get("kind") == "eval" and r["run"] in done and r["attempt"] == done[r["run"]][
                "attempt"]:
            evals[r["run"]][int(r["step"])] = r
    return {k: {"done": d, "evals": [evals[k][s] for s in sorted(evals[k])]}
            for k, d in done.items()}


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` as JSON lines in one write, flushed and synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def execute(key: str, out_dir: Path) -> list[dict[str, Any]]:
    """Train one run in ``out_dir/runs/<key>`` (from scratch) and return its records."""
    import torch

    torch.set_num_threads(1)
    k = parse_key(key)
    overrides = run_overrides(k["env"], k["method"], k["teacher"], k["queries"], k["steps"],
                              k["seed"])
    run_dir = out_dir / "runs" / key.replace("/", "_")
    method = "pebble" if k["method"] in PEBBLE_VARIANTS else "sac_true_reward"
    job = core.Job("feedback_efficiency", method, k["seed"], tuple(overrides), str(run_dir))
    core.run_job(job)  # deletes an unfinished earlier attempt first
    row = core.collect(job)
    attempt = uuid.uuid4().hex
    base = {"run": key, "attempt": attempt, **k}
    records = [{"kind": "eval", **base, "step": int(step), "gold_return": gold}
               for step, gold in row["gold_curve"]]
    done = {"kind": "done", **base, "final_step": row["steps"],
            "wall_time_s": row["wall_time_s"], "queries_asked": row["queries"],
            "overrides": overrides, "run_dir": row["run_dir"],
            "finished_utc": row["finished_utc"], "machine": row["machine"]}
    if k["method"] in PEBBLE_VARIANTS:
        summary = json.loads((run_dir / "summary.json").read_text())
        done["feedback_seconds"] = summary["feedback"]["seconds"]
    return [*records, done]


# ----------------------------------------------------------------------------- aggregate

def sac_reference(runs: dict[str, dict[str, Any]]) -> dict[tuple[str, int, int], float]:
    """Mean gold return of the ``sac_true`` runs per ``(env, steps budget, eval step)``."""
    acc: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for key, run in runs.items():
        k = parse_key(key)
        if k["method"] == "sac_true":
            for e in run["evals"]:
                acc[(k["env"], k["steps"], int(e["step"]))].append(float(e["gold_return"]))
    return {ref: sum(v) / len(v) for ref, v in acc.items()}


def reference_returns(records: list[dict[str, Any]]) -> dict[str, float]:
    """Random-policy gold return per env from the ``kind: "reference"`` records (last wins)."""
    return {r["env"]: float(r["gold_return"]) for r in records if r.get("kind") == "reference"}


def normalized_scores(
    runs: dict[str, dict[str, Any]], random_returns: dict[str, float] | None = None
) -> dict[str, dict[tuple, dict[int, float]]]:
    """Final-evaluation normalised scores per group and seed, two ways.

    Args:
        runs: :func:`completed_runs`.
        random_returns: random-policy gold return per env (:func:`reference_returns`).

    Returns:
        ``{"ratio": {...}, "random": {...}}``, each ``{(env, method, teacher, queries, steps):
        {seed: score}}`` with G the run's gold return at its final evaluation step and S the
        mean gold return of the ``sac_true`` runs at that step:

        * ``ratio`` (the issue's definition): ``G / S``; left out where ``S <= 0`` (a ratio to a
          non-positive return has no meaning; e.g. HalfCheetah before SAC learns to run);
        * ``random``: ``(G - R) / (S - R)`` with R the env's random-policy return (0 = random,
          1 = SAC on the true reward); left out where ``S <= R`` or R is unknown.

        Groups without a SAC reference at that step are left out of both.
    """
    ref = sac_reference(runs)
    random_returns = random_returns or {}
    out: dict[str, dict[tuple, dict[int, float]]] = {"ratio": defaultdict(dict),
                                                      "random": defaultdict(dict)}
    for key, run in runs.items():
        if not run["evals"]:
            continue
        k = parse_key(key)
        last = run["evals"][-1]
        sac = ref.get((k["env"], k["steps"], int(last["step"])))
        if sac is None:
            continue
        gold = float(last["gold_return"])
        group = (k["env"], k["method"], k["teacher"], k["queries"], k["steps"])
        if sac > 0:
            out["ratio"][group][k["seed"]] = gold / sac
        rnd = random_returns.get(k["env"])
        if rnd is not None and sac > rnd:
            out["random"][group][k["seed"]] = (gold - rnd) / (sac - rnd)
    return {name: dict(groups) for name, groups in out.items()}


def curve_scores(
    runs: dict[str, dict[str, Any]], random_returns: dict[str, float]
) -> dict[tuple, dict[int, float]]:
    """Learning-curve (sample-efficiency) scores per group and seed.

    The score of a run is ``(mean_t G_t - R) / (mean_t S_t - R)`` over its evaluation steps t:
    its gold return G_t and the mean ``sac_true`` gold return S_t at each step, R the env's
    random-policy return; the normalised area under the learning curve (1 = SAC on the true
    reward all along, 0 = random). It tells apart variants that end at the same return but
    get there at different speeds. Left out where a step has no SAC reference, R is unknown or
    ``mean_t S_t <= R``.

    Returns:
        ``{(env, method, teacher, queries, steps): {seed: score}}``.
    """
    ref = sac_reference(runs)
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for key, run in runs.items():
        k = parse_key(key)
        rnd = random_returns.get(k["env"])
        sac = [ref.get((k["env"], k["steps"], int(e["step"]))) for e in run["evals"]]
        if not run["evals"] or rnd is None or any(v is None for v in sac):
            continue
        gold = sum(float(e["gold_return"]) for e in run["evals"]) / len(run["evals"])
        sac_mean = sum(sac) / len(sac)
        if sac_mean > rnd:
            group = (k["env"], k["method"], k["teacher"], k["queries"], k["steps"])
            out[group][k["seed"]] = (gold - rnd) / (sac_mean - rnd)
    return dict(out)


def iqm_ci(scores: list[float], reps: int = BOOTSTRAP_REPS,
           seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """IQM and 95% stratified-bootstrap CI of one group's per-seed scores, with ``rliable``.

    Args:
        scores: one normalised score per seed (one task, so the strata are the seeds).

    Returns:
        ``(iqm, ci_low, ci_high)``.
    """
    import numpy as np
    from rliable import library as rly
    from rliable import metrics

    arr = np.asarray(scores, dtype=np.float64).reshape(-1, 1)  # (runs, tasks=1)
    point, interval = rly.get_interval_estimates(
        {"x": arr}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
        random_state=np.random.RandomState(seed))
    return float(point["x"][0]), float(interval["x"][0][0]), float(interval["x"][1][0])


def aggregate(records: list[dict[str, Any]], reps: int = BOOTSTRAP_REPS) -> list[dict[str, Any]]:
    """The result rows: one per (env, method, teacher, queries, steps) with a SAC reference.

    ``normalized_iqm``/``ci_low``/``ci_high`` use the issue's ratio (None where undefined);
    ``random_normalized_*`` the random-to-SAC normalisation (see :func:`normalized_scores`);
    ``curve_normalized_*`` the learning-curve score (:func:`curve_scores`).
    """
    runs = completed_runs(records)
    scores = normalized_scores(runs, reference_returns(records))
    scores["curve"] = curve_scores(runs, reference_returns(records))
    ref = sac_reference(runs)
    rows = []
    groups = sorted(set(scores["ratio"]) | set(scores["random"]),
                    key=lambda g: tuple(map(str, g)))
    for group in groups:
        env, method, teacher, queries, steps = group
        seeds = sorted({seed for kind in scores.values() for seed in kind.get(group, {})})
        finals = [runs[run_key(env, method, teacher, queries, steps, s)]["evals"][-1]
                  for s in seeds]
        row: dict[str, Any] = {
            "env": env, "method": method, "teacher": teacher, "queries": queries,
            "steps": steps, "seeds": seeds, "eval_step": int(finals[0]["step"]),
            "gold_return_per_seed": [float(f["gold_return"]) for f in finals],
            "sac_reference_return": ref[(env, steps, int(finals[0]["step"]))],
            "random_reference_return": reference_returns(records).get(env)}
        for kind, prefix in (("ratio", ""), ("random", "random_"), ("curve", "curve_")):
            by_seed = scores[kind].get(group)
            if by_seed and sorted(by_seed) == seeds:
                iqm, lo, hi = iqm_ci([by_seed[s] for s in seeds], reps=reps)
                per_seed: list[float] | None = [by_seed[s] for s in seeds]
            else:
                iqm = lo = hi = per_seed = None
            row.update({f"{prefix}normalized_iqm": iqm, f"{prefix}ci_low": lo,
                        f"{prefix}ci_high": hi, f"{prefix}normalized_per_seed": per_seed})
        rows.append(row)
    return rows


def random_reference(env: str, episodes: int = RANDOM_EPISODES,
                     seed: int = RANDOM_SEED) -> dict[str, Any]:
    """A ``kind: "reference"`` record: the gold return of a uniformly random policy.

    Uses the env exactly as the runs do (:func:`run_overrides`, e.g. no unhealthy termination
    for Hopper/Walker2d) and the harness's evaluation function, with seeded resets and actions.
    """
    from rewardlab.config import load_config
    from rewardlab.diagnostics.evaluation import evaluate
    from rewardlab.envs.make import make_env

    config = load_config(None, run_overrides(env, "sac_true", None, 0, 20_000, seed))
    gym_env = make_env(config.env)
    gym_env.action_space.seed(seed)
    res = evaluate(gym_env, lambda _obs: gym_env.action_space.sample(), None, episodes, seed=seed)
    gym_env.close()
    return {"kind": "reference", "env": env, "policy": "uniform_random",
            "gold_return": float(res.gold_returns.mean()),
            "gold_return_std": float(res.gold_returns.std()), "episodes": episodes,
            "seed": seed, "env_kwargs": dict(config.env.kwargs)}


# ----------------------------------------------------------------------------- report

def render_section(rec: dict[str, Any]) -> str:
    sel = rec["selection"]
    section = rec.get("section", "feedback_efficiency")
    begin, end = markers(section)
    full = section != "feedback_efficiency" or (
            set(sel["envs"]) >= set(ENVS) and {"pebble", "sac_true"} <= set(sel["methods"])
            and set(sel["teachers"]) >= set(TEACHERS) and set(sel["queries"]) >= set(FULL_QUERIES)
            and len(sel["seeds"]) >= len(FULL_SEEDS) and rec["steps"] >= FULL_STEPS)
    lines = [begin, f"## {SECTIONS[section][0]} (`benchmarks/feedback_efficiency.py`)", "",
             f"- Command: `{rec['command']}`",
             f"- Date (UTC): {rec['written_utc']}",
             f"- Machine: {rec['machine']['cpu']}, {rec['machine']['cpu_count']} logical CPUs, "
             f"torch {rec['machine']['torch']}; runs one at a time, 1 torch thread",
             f"- Runs aggregated: {rec['runs_completed']} of the {rec['runs_selected']} selected "
             f"runs, finished, from `{rec['jsonl']}`",
             f"- Selection: envs {', '.join(sel['envs'])}; methods {', '.join(sel['methods'])}; "
             f"teachers {', '.join(sel['teachers'])}; query budgets "
             f"{', '.join(map(str, sel['queries']))}; seeds {', '.join(map(str, sel['seeds']))}; "
             f"{rec['steps']} env steps per run"]
    if not full:
        lines.append(
            f"- **Not the issue's full grid** ({', '.join(ENVS)} x {FULL_STEPS} steps x "
            f"{len(FULL_SEEDS)} seeds x budgets {', '.join(map(str, FULL_QUERIES))} x teachers "
            f"{', '.join(TEACHERS)}, hundreds of CPU-hours): only the selection above was run, "
            "on one core of a shared 2-core machine. Read these numbers as a small-budget "
            "measurement, not as the issue's answer.")
    lines += ["",
              "| env | method | teacher | queries | env steps | seeds | normalised IQM "
              "(G/S) | 95% CI | random-normalised IQM ((G-R)/(S-R)) | 95% CI | "
              "learning-curve score IQM | 95% CI | gold return G per seed |",
              "|---|---|---|---:|---:|---|---:|---|---:|---|---:|---|---|"]
    for r in rec["rows"]:
        lines.append(
            f"| {r['env']} | {r['method']} | {r['teacher'] or '—'} | "
            f"{r['queries'] if r['method'] != 'sac_true' else '—'} | {r['eval_step']} | "
            f"{', '.join(map(str, r['seeds']))} | {_f(r['normalized_iqm'])} | "
            f"{_ci(r['ci_low'], r['ci_high'])} | {_f(r['random_normalized_iqm'])} | "
            f"{_ci(r['random_ci_low'], r['random_ci_high'])} | "
            f"{_f(r.get('curve_normalized_iqm'))} | "
            f"{_ci(r.get('curve_ci_low'), r.get('curve_ci_high'))} | "
            f"{', '.join(f'{g:.0f}' for g in r['gold_return_per_seed'])} |")
    refs = sorted({(r["env"], r["eval_step"], r["sac_reference_return"],
                    r["random_reference_return"]) for r in rec["rows"]}, key=str)
    for env, step, sac, rnd in refs:
        lines += ["", f"{env}: S = mean SAC-true gold return at step {step} = {sac:.1f}; R = "
                  f"random-policy gold return = {_f(rnd, 1)} ({RANDOM_EPISODES} episodes, seed "
                  f"{RANDOM_SEED})."
                  + (" S <= 0, so the issue's ratio G/S is undefined here (—)." if sac <= 0
                     else "")]
    if not rec["rows"]:
        lines.append("| — | no finished run with a SAC reference yet | | | | | | | | | |")
    for note in rec["notes"]:
        lines += ["", note]
    lines += ["", end]
    return "\n".join(lines)


def default_records(section: str) -> Path:
    """The JSONL record file of ``section``: ``benchmarks/results/<section>_runs.jsonl``."""
    return RESULTS_DIR / f"{section}_runs.jsonl"


def markers(section: str) -> tuple[str, str]:
    """The BENCHMARKS.md begin/end markers of ``section`` (a key of :data:`SECTIONS`)."""
    return core.section_markers(section)


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


NOTES = [
    "Normalised score (the issue's) = G / S: the run's true (gold) return G at its final "
    "evaluation over the mean true return S of SAC trained on the true reward (`sac_true`, same "
    "SAC hyperparameters, derived seeds and evaluation protocol) at the same env step, both "
    "measured by this harness; undefined when S <= 0. Random-normalised score = (G - R) / "
    "(S - R) with R a uniformly random policy's return on the same env (0 = random, 1 = SAC on "
    "the true reward). Learning-curve score = (mean over the run's evaluations of G - R) / "
    "(mean over the same steps of S - R): the normalised area under the learning curve, which "
    "separates runs that end alike but learn at different speeds. "
    "IQM and 95% stratified-bootstrap CI over seeds with `rliable` (with 2-3 "
    "seeds the interval is wide and the IQM is the mean). Returns are the mean over 5 "
    "deterministic-policy episodes.",
    "PEBBLE schedule: unsupervised pre-training for 5% of the steps (at least 1000), then the "
    "budget in 10 equal rounds evenly spaced over the remaining steps, 50-step segments, "
    "disagreement-based query selection, RewardLab's default reward ensemble. Ablations "
    "(`--methods`): `pebble_uniform` / `pebble_entropy` select queries uniformly / by the "
    "entropy of the ensemble's preference probability instead of by ensemble disagreement; "
    "`pebble_no_pretrain` skips the unsupervised state-entropy pre-training (its first steps "
    "are SAC's uniform-random warm-up, the first queries come at the same step).",
    "Hopper-v5 and Walker2d-v5 (not in this table unless listed) run with "
    "`terminate_when_unhealthy=False` for every method, so episodes have a fixed length and "
    "episode ends leak no reward information to the learner.",
]


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), help="Gymnasium ids")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    p.add_argument("--queries", nargs="+", type=int, default=list(FULL_QUERIES),
                   help="query budgets (pebble)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(FULL_SEEDS))
    p.add_argument("--steps", type=int, default=FULL_STEPS, help="env steps per run")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; aggregate the finished runs of the selection")
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    p.add_argument("--bootstrap-reps", type=int, default=BOOTSTRAP_REPS)
    p.add_argument("--section", choices=list(SECTIONS), default="feedback_efficiency",
                   help="BENCHMARKS.md section and benchmarks/results/*.json to write")
    p.add_argument("--records", type=Path, default=None,
                   help="JSONL record file (default: benchmarks/results/<section>_runs.jsonl)")
    return p.parse_args(argv)


def selected_keys(args: argparse.Namespace) -> list[str]:
    """Run keys of the selection, seed by seed (SAC first), so that a selection cut short
    still holds whole seeds: each with its SAC reference and every method."""
    keys: list[str] = []
    for seed in args.seeds:
        for env in args.envs:
            if "sac_true" in args.methods:
                keys.append(run_key(env, "sac_true", None, 0, args.steps, seed))
            keys += [run_key(env, m, t, q, args.steps, seed) for m in args.methods
                     if m in PEBBLE_VARIANTS for t in args.teachers for q in args.queries]
    return list(dict.fromkeys(keys))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", *(sys.argv if argv is None else
                                      ["benchmarks/feedback_efficiency.py", *argv])])
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = (args.records or default_records(args.section)).resolve()
    keys = selected_keys(args)
    for key in keys:  # refuse bad selections before anything runs
        k = parse_key(key)
        run_overrides(k["env"], k["method"], k["teacher"], k["queries"], k["steps"], k["seed"])
    done = completed_runs(read_records(jsonl))
    todo = [] if args.aggregate_only else [k for k in keys if k not in done]
    print(f"{core.utc_now()}: {len(keys)} runs selected, {len(keys) - len(todo)} done, "
          f"{len(todo)} to run; records in {jsonl}", flush=True)
    cwd = os.getcwd()
    os.chdir(out_dir)  # MuJoCo writes MUJOCO_LOG.TXT to the working directory
    failed = []
    try:
        for i, key in enumerate(todo, 1):
            t0 = time.perf_counter()
            print(f"{core.utc_now()}: [{i}/{len(todo)}] run {key}", flush=True)
            try:
                records = execute(key, out_dir)
            except Exception as err:  # report it and go on with the other runs
                failed.append(key)
                print(f"FAILED {key}: {err!r}", flush=True)
                continue
            append_records(jsonl, records)
            print(f"{core.utc_now()}: done {key} in {time.perf_counter() - t0:.0f} s, final gold "
                  f"{records[-2]['gold_return']:.1f}", flush=True)
    finally:
        os.chdir(cwd)

    records = read_records(jsonl)
    have = reference_returns(records)
    finished = completed_runs(records)
    for env in args.envs:  # the random-policy reference, once per env with a finished run
        if env not in have and any(parse_key(k)["env"] == env for k in finished):
            append_records(jsonl, [random_reference(env)])
    records = read_records(jsonl)
    selection = set(keys)
    chosen = [r for r in records if r.get("run") in selection or (
        r.get("kind") == "reference" and r["env"] in args.envs)]
    rows = aggregate(chosen, reps=args.bootstrap_reps)
    rec = {"command": command, "section": args.section, "written_utc": core.utc_now(),
           "machine": core.machine_info(),
           "jsonl": os.path.relpath(jsonl, REPO), "steps": args.steps,
           "selection": {"envs": args.envs, "methods": args.methods, "teachers": args.teachers,
                         "queries": args.queries, "seeds": args.seeds},
           "runs_selected": len(keys), "runs_completed": len(completed_runs(chosen)),
           "rows": rows, "notes": NOTES, "format_version": 1}
    for r in rows:
        print(f"{r['env']} {r['method']} {r['teacher']} q{r['queries']} t{r['steps']}: "
              f"IQM G/S {_f(r['normalized_iqm'])} {_ci(r['ci_low'], r['ci_high'])}, "
              f"(G-R)/(S-R) {_f(r['random_normalized_iqm'])} "
              f"{_ci(r['random_ci_low'], r['random_ci_high'])}, seeds {r['seeds']}", flush=True)
    if args.no_write:
        print(render_section(rec))
    else:
        results = RESULTS_DIR / SECTIONS[args.section][1]
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(rec, indent=2) + "\n")
        core.write_markdown_section(core.BENCHMARKS_MD, *markers(args.section),
                                    render_section(rec))
        print(f"wrote {os.path.relpath(results, REPO)} and BENCHMARKS.md", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
