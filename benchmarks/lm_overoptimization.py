"""Language-model over-optimisation: a miniature of Gao et al. 2022 on RewardLab's text track.

Usage::

    python benchmarks/lm_overoptimization.py [--tasks sentiment [polarity_concise]]
        [--optimizers bon grpo] [--labels 50 150 500] [--seeds 0 1 2]
        [--variants plain mean_minus_std min beta_0.1 early_stop] [--base-model DIR]
        [--workers 2] [--address RAY_ADDRESS] [--no-ray] [--overhead auto|run|skip]
        [--out-dir benchmarks/runs/lm_overoptimization] [--records FILE]
        [--dry-run] [--aggregate-only] [--no-write]

Issue 13, item 8 (Gao, Schulman & Hilton 2022, "Scaling Laws for Reward Model
Overoptimization", in miniature). For each task (default ``sentiment``: gold = VADER compound
of the completion; ``polarity_concise`` optional), each proxy label count (:data:`LABELS`,
50 / 150 / 500: a 10x span) and each seed, a Bradley-Terry reward-model ensemble (the ``lm``
defaults: 3 members on the base model's backbone) is fit on that many ``oracle`` labels of
same-prompt pairs of the base policy's completions, all asked in round 0 before any
optimisation (``feedback.total_budget = feedback.queries_per_round = labels``: one fixed proxy
per (task, labels, seed), the same for both optimisers and every variant), and then optimised:

* ``bon``: best-of-n on the base policy, n in :data:`BON_N` (1 ... 256; analytic
  ``KL = log n - (n - 1) / n``, Gao Eq. 1 fit ``d (alpha - beta d)``);
* ``grpo``: GRPO through TRL for :data:`GRPO_STEPS` optimizer steps, evaluated every
  :data:`EVAL_EVERY` (Monte-Carlo KL to the base policy, Gao Eq. 2 fit
  ``d (alpha - beta log d)``).

Variants (``variant``), each against the plain proxy of the same (task, labels, seed):

* ``plain``: the ensemble mean (``lm.rm_reduction=mean``), the unmitigated proxy;
* ``mean_minus_std`` and ``min``: conservative ensembles (Coste et al. 2023,
  ``lm.rm_reduction``; k = ``lm.rm_k_std`` = 1);
* ``beta_0.1`` (``beta_x``, x the coefficient): GRPO with KL coefficient ``lm.beta=0.1``
  instead of the default 0.03 (best-of-n has no KL coefficient, so ``bon`` has no such row);
* ``early_stop``: *no runs of its own*: the ``plain`` runs stopped at the evaluation where the
  over-optimisation alarm fired (``diagnostics/overoptimization_step``, the
  :class:`~rewardlab.diagnostics.overoptimization.DivergenceMonitor` every LM run feeds). As
  ``benchmarks/overoptimization.py`` reports an early-stopped control run by the evaluation of
  the policy it stopped with (``gold final`` of the rolled-back policy), its ``gold_final`` is
  the gold of the evaluation at the alarm step, ``gold_peak`` and ``sqrt_kl_at_peak`` are
  those of the evaluations up to it; a run whose alarm never fired is counted as run to the
  end (``stopped`` counts the seeds that did stop). The alarm reads gold, so this measures the
  best case of stopping on a gold-vs-proxy signal, not a rule a user without gold could run.

Every run is an ordinary ``rewardlab train`` run directory (:func:`rewardlab.algorithms.train`
with the overrides :func:`run_overrides` lists, ``--dry-run`` prints them), key
``task/optimizer/lLABELS/variant/sSEED``, in ``<out-dir>/runs/``. Execution and records follow
``benchmarks/offline.py`` and reuse ``benchmarks/feedback_efficiency.py``'s functions: the
unfinished runs are Ray Tune trials (``--workers`` at a time, one CPU each, each pinned to a
core of its own with ``core.claim_core``; ``--no-ray`` runs them one by one in this process);
each finished run appends, in one write stamped with a per-attempt id, its evaluations
(``kind: "eval"``, ``step`` and the ``metrics`` of the evaluation: ``eval/gold_return``,
``eval/proxy_return``, ``eval/kl``, ``eval/sqrt_kl``, ``eval/bon_n``, ...) and one
``kind: "done"`` record (the run's ``settings``, CPU and wall time, the alarm event, the last
``reward_model/*`` metrics) to ``benchmarks/results/lm_overoptimization_runs.jsonl``, kept in
git, so the grid can be run in pieces across sessions. A run with a ``done`` record made with
the settings its key runs now is skipped; a finished run with other settings (a changed
default, another base model: ``base_model_key``) is stale: run again and left out of the table
until then. Without ``--base-model`` the runs use RewardLab's own base model, pretrained once
by this script before the first run (``ensure_base_model``; cached, reused afterwards).

Wrapper cost: ``--overhead auto`` (default; ``run`` to measure again, ``skip`` never)
measures, once, RewardLab's GRPO, DPO and reward training against the same TRL trainer called
directly, with ``benchmarks/lm_wrapper_overhead.py``'s functions (its defaults: the tests' tiny
GPT-2, 5 alternating repeats after a warm-up, CPU time) in a child process pinned to a free
core, and appends it as a ``kind: "wrapper_overhead"`` record; the newest such record gives
the JSON's ``wrapper_overhead`` ({trainer: fractional slowdown}, target within 0.10).

Sizing (for the default grid in about 3-4 CPU-hours on this machine, 2 logical CPUs, AMD
EPYC). Measured (README "Language models"): the default job, GRPO for 300 steps of 32
completions on 400 labels at step 0, with 21 evaluations of 64 samples, took 169 s of CPU with
the base model cached; pretraining the base model once took 208 s of CPU. The grid runs 36
GRPO runs (3 label counts x 4 run variants x 3 seeds) and 27 best-of-n runs (3 label counts x
3 run variants x 3 seeds); ``early_stop`` costs nothing:

* GRPO: the default job's settings (:data:`GRPO_STEPS` = 300, :data:`EVAL_EVERY` = 15, 512
  training prompts, 16 evaluation prompts x 4 samples), so 169 s a run; the reward-model fit
  scales with the labels (3 members x 4 epochs over 85% of them), a few seconds less at 50 and
  more at 500 than at 400, so about 170 s a run on average: 36 x 170 s = 6,120 s (1.7 h). 300
  steps because the default job's gold peaked at step 135 and its alarm fired at step 195 on
  400 labels: 500 labels should peak later, and fewer steps could miss it;
* best-of-n: no training; one draw of 256 completions for each of the 64 evaluation slots
  (16,384 completions of up to 16 tokens), each scored by the 3-member proxy and by gold, plus
  the round-0 sampling and the reward-model fit. Not measured yet: estimated at about 100 s a
  run from the GRPO job (whose 9,600 training completions each also take a backward pass and a
  reference forward pass): 27 x 100 s = 2,700 s (0.75 h);
* wrapper overhead (6 alternating pairs of 20 GRPO steps, 2 DPO epochs and 2 reward-model
  epochs on the tiny GPT-2): about 120 s; pretraining the base model once: 208 s.

Total about 6,120 + 2,700 + 120 + 208 = 9,150 s = 2.5 CPU-hours, about 1.3 h of wall time with
``--workers 2``; if best-of-n costs twice the estimate, 3.3 CPU-hours. ``--tasks sentiment
polarity_concise`` doubles the grid (about 5 CPU-hours). The ``done`` records carry each run's
``cpu_time_s``, so the first runs measure what this paragraph estimates.

Aggregation: per (task, optimizer, labels, variant), over seeds, the fields of
:func:`rewardlab.diagnostics.lm_curves.lm_benchmark_fields` for each run: ``gold_peak``
(largest mean gold over the evaluations), ``gold_final`` (last evaluation), ``sqrt_kl_at_peak``
(observed ``d = sqrt(KL)`` at the best evaluation), each as the mean and ``*_per_seed``, and
the fitted Gao peak (``sqrt_kl_at_peak_fit``, ``gold_peak_fit``) per seed and from one fit to
every seed's evaluations pooled (``gao_fit``: gains over each seed's own ``d = 0`` gold); for
the mitigations, the paired difference to ``plain`` on the seeds both have
(``gold_peak_minus_plain``, ``gold_final_minus_plain``). Results go to
``benchmarks/results/lm_overoptimization.json``, the plot
``benchmarks/results/lm_overoptimization.png`` (gold and proxy against ``sqrt KL`` of the
plain proxy, one panel per optimizer and label count, with the fitted Gao curves) and the
``lm_overoptimization`` section of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import importlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py: thread env, machine info, markdown, claim_core)
import feedback_efficiency as fe  # noqa: E402  (records, Ray trials: shared bookkeeping)

REPO = core.REPO
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_OUT = REPO / "benchmarks" / "runs" / "lm_overoptimization"
SECTION = "lm_overoptimization"
TITLE = "Language-model over-optimisation (a miniature of Gao et al. 2022)"

TASKS = ("sentiment",)
OPTIONAL_TASKS = ("polarity_concise",)
OPTIMIZERS = ("bon", "grpo")
#: Labels of each proxy reward model (a 10x span).
LABELS = (50, 150, 500)
FULL_SEEDS = (0, 1, 2)
#: Best-of-n grid (ascending; ``lm.bon_n``).
BON_N = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: GRPO optimizer steps and the steps between evaluations (the default job's).
GRPO_STEPS = 300
EVAL_EVERY = 15
TEACHER = "oracle"
#: The larger KL coefficient of the ``beta_x`` variant (the default ``lm.beta`` is 0.03).
LARGE_BETA = 0.1
BETA_VARIANT = f"beta_{LARGE_BETA:g}"
#: Variants that are runs of their own -> their extra overrides; and the optimizers they apply to.
RUN_VARIANTS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "mean_minus_std": ("lm.rm_reduction=mean_minus_std",),
    "min": ("lm.rm_reduction=min",),
    BETA_VARIANT: (f"lm.beta={LARGE_BETA:g}",),
}
VARIANT_OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "plain": OPTIMIZERS, "mean_minus_std": OPTIMIZERS, "min": OPTIMIZERS,
    BETA_VARIANT: ("grpo",), "early_stop": OPTIMIZERS}
#: Variants read off other runs (no runs of their own): variant -> the runs' variant.
DERIVED_VARIANTS = {"early_stop": "plain"}
VARIANTS = (*RUN_VARIANTS, *DERIVED_VARIANTS)
PLAIN = "plain"
DEFAULT_WORKERS = 2
REWARD_METRIC_PREFIX = "reward_model/"
#: The alarm's key in a run's evaluation rows and summary.
ALARM_KEY = "diagnostics/overoptimization_step"
#: Top-level config sections a language-model run does not read (the config refuses any change
#: to them), left out of the staleness check.
UNUSED = ("env", "total_steps", "dataset", "eval", "checkpoint_every", "reward_model",
          "pebble", "ppo", "offline", "iql", "td3bc", "cpl", "preference_transformer",
          "mitigation", "teacher_bias", "log_capacity", "record_render_states", "human",
          "progress_bar")


# ----------------------------------------------------------------------------- runs

def run_key(task: str, optimizer: str, labels: int, variant: str, seed: int) -> str:
    """The run's id: ``task/optimizer/lLABELS/variant/sSEED``."""
    return f"{task}/{optimizer}/l{labels}/{variant}/s{seed}"


def parse_key(key: str) -> dict[str, Any]:
    """Inverse of :func:`run_key`."""
    task, optimizer, labels, variant, seed = key.split("/")
    return {"task": task, "optimizer": optimizer, "labels": int(labels[1:]),
            "variant": variant, "seed": int(seed[1:])}


def run_overrides(task: str, optimizer: str, labels: int, variant: str, seed: int,
                  base_model: str | None = None) -> list[str]:
    """Config overrides of one run: the optimizer (GRPO for :data:`GRPO_STEPS` steps evaluated
    every :data:`EVAL_EVERY`, or best-of-n over :data:`BON_N`), ``labels`` ``oracle`` labels
    all in round 0, the variant's overrides (:data:`RUN_VARIANTS`), one thread, no progress
    bar, and ``lm.base_model`` when given.

    Raises:
        ValueError: naming the option, on an unknown task, optimizer or variant, a derived
            variant (it has no runs), a variant the optimizer has no row for, or fewer than 2
            labels.
    """
    from rewardlab.config import LM_ALGORITHMS

    if task not in (*TASKS, *OPTIONAL_TASKS):
        raise ValueError(f"--tasks: unknown task {task!r}; choose from {TASKS + OPTIONAL_TASKS}")
    if optimizer not in OPTIMIZERS or optimizer not in LM_ALGORITHMS:
        raise ValueError(f"--optimizers: unknown optimizer {optimizer!r}; choose from "
                         f"{OPTIMIZERS}")
    if variant not in RUN_VARIANTS:
        raise ValueError(f"--variants: {variant!r} is not a variant with runs of its own; "
                         f"choose from {tuple(RUN_VARIANTS)}")
    if optimizer not in VARIANT_OPTIMIZERS[variant]:
        raise ValueError(f"--variants: {variant} does not apply to {optimizer}")
    if labels < 2:
        raise ValueError(f"--labels {labels}: a proxy needs at least 2 labels")
    out = [f"algorithm={optimizer}", f"lm.task={task}", f"seed={seed}",
           f"feedback.total_budget={labels}", f"feedback.queries_per_round={labels}",
           f"teacher.preset={TEACHER}", *core.BASE]
    if optimizer == "grpo":
        out += [f"lm.steps={GRPO_STEPS}", f"lm.eval_every={EVAL_EVERY}"]
    else:
        out.append(f"lm.bon_n=[{','.join(map(str, BON_N))}]")
    if base_model is not None:
        out.append(f"lm.base_model={base_model}")
    return [*out, *RUN_VARIANTS[variant]]


def key_overrides(key: str, base_model: str | None = None) -> list[str]:
    """:func:`run_overrides` of a run key."""
    k = parse_key(key)
    return run_overrides(k["task"], k["optimizer"], k["labels"], k["variant"], k["seed"],
                         base_model)


def key_config(key: str, base_model: str | None = None) -> Any:
    """The :class:`~rewardlab.config.TrainConfig` the run of ``key`` trains now."""
    from rewardlab.config import load_config

    return load_config(None, key_overrides(key, base_model))


def base_model_key(config: Any) -> str:
    """What the base policy is: the ``lm.base_model`` path, or for RewardLab's own model the
    cache key of its recipe (:meth:`~rewardlab.lm.base_config.BaseModelConfig.cache_key`; a
    changed recipe makes every run stale). Computed, never pretrained."""
    if config.lm.base_model is not None:
        return str(Path(config.lm.base_model).resolve())
    from rewardlab.lm.base_config import BaseModelConfig

    return f"rewardlab:{BaseModelConfig().cache_key()}"


def run_settings(config: Any) -> dict[str, Any]:
    """The settings a language-model run reads, as JSON (:data:`UNUSED` left out), with the
    :func:`base_model_key`."""
    out = json.loads(json.dumps(config.model_dump(mode="json", exclude=set(UNUSED))))
    out["base_model_key"] = base_model_key(config)
    return out


def make_planner(base_model: str | None = None) -> Any:
    """``run key -> the settings it would train now`` (``fe.Planner``) for ``base_model``."""
    return lambda key: run_settings(key_config(key, base_model))


def reward_model_metrics(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The last logged value of every numeric ``reward_model/*`` key in ``rows``."""
    last: dict[str, float | None] = {}
    for row in rows:
        for name, value in row.items():
            if name.startswith(REWARD_METRIC_PREFIX) and (
                    value is None or isinstance(value, (int, float))):
                last[name] = value
    return last


def run_records(key: str, run_dir: Path, config: Any, wall_time_s: float, cpu_time_s: float,
                overrides: list[str]) -> list[dict[str, Any]]:
    """The records of a finished run directory: one ``eval`` record per evaluation (its
    ``metrics``: the :data:`~rewardlab.diagnostics.lm_curves.LM_EVAL_KEYS` logged, and the
    alarm's step where it fired) and the ``done`` record."""
    from rewardlab.diagnostics.lm_curves import LM_EVAL_KEYS
    from rewardlab.diagnostics.metrics import read_metrics

    rows = read_metrics(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    base = {"run": key, "attempt": uuid.uuid4().hex, **parse_key(key)}
    evals: dict[int, dict[str, float]] = {}
    for row in rows:
        if row.get("eval/gold_return") is None:
            continue
        keep = {k: float(row[k]) for k in (*LM_EVAL_KEYS, ALARM_KEY) if row.get(k) is not None}
        evals.setdefault(int(row["step"]), {}).update(keep)
    out = [{"kind": "eval", **base, "step": s, "gold_return": evals[s]["eval/gold_return"],
            "metrics": evals[s]} for s in sorted(evals)]
    out.append({
        "kind": "done", **base, "status": summary.get("status"),
        "settings": run_settings(config), "overrides": overrides,
        "wall_time_s": wall_time_s, "cpu_time_s": cpu_time_s,
        "overoptimization": summary.get("overoptimization"),
        "reward_model": reward_model_metrics(rows), "base_model": summary.get("base_model"),
        "run_dir": os.path.relpath(run_dir, REPO) if run_dir.is_relative_to(REPO)
        else str(run_dir),
        "finished_utc": core.utc_now(), "machine": core.machine_info()})
    return out


def execute(key: str, out_dir: Path, base_model: str | None = None) -> list[dict[str, Any]]:
    """Train one run in ``out_dir/runs/<key>`` from scratch (an unfinished earlier attempt is
    deleted first) and return its records.

    Raises:
        RuntimeError: if the run did not finish (its summary's ``status``).
    """
    import torch

    from rewardlab.algorithms import train

    torch.set_num_threads(1)
    overrides = key_overrides(key, base_model)
    config = key_config(key, base_model)
    run_dir = out_dir / "runs" / key.replace("/", "_")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    w0, c0 = time.perf_counter(), time.process_time()
    summary = train(config, run_dir)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if summary.get("status") != "finished":
        raise RuntimeError(f"{key}: run ended with status {summary.get('status')!r}")
    return run_records(key, run_dir, config, wall, cpu, overrides)


# ----------------------------------------------------------------------------- trials

def run_trial(params: dict[str, Any]) -> dict[str, Any] | None:
    """One run as a trial (``params`` = ``{"key", "out_dir", "records", "base_model"}``):
    ``fe.run_trial`` with :func:`execute` (pinned to a free core, one thread, records appended
    by the trial, a failure printed, not raised).

    Returns:
        The run's ``done`` record, or None if it failed.
    """
    base_model = params.get("base_model")
    return fe.run_trial(params, lambda key, out: execute(key, out, base_model))


def ray_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable: :func:`run_trial` of ``config["params"]``."""
    run_trial(config["params"])


def run_on_ray(todo: list[str], out_dir: Path, jsonl: Path, workers: int, address: str | None,
               name: str, base_model: str | None) -> None:
    """Every run of ``todo`` as a Ray Tune trial of :func:`ray_trial`, ``workers`` at a time
    (``rewardlab.algorithms.sweep.run_on_ray`` with ``fe.trial_env_vars``)."""
    from rewardlab.algorithms.sweep import run_on_ray as ray_run

    trainable = importlib.import_module("lm_overoptimization").ray_trial  # pickled by reference
    params = [{"key": k, "out_dir": str(out_dir), "records": str(jsonl),
               "base_model": base_model} for k in todo]
    ray_run(trainable, params, name, out_dir / "ray", max_concurrent=workers,
            cpus_per_trial=1, address=address, env_vars=fe.trial_env_vars(), log_to_driver=True)


# ----------------------------------------------------------------------------- wrapper cost

def measure_wrapper_overhead(repeats: int = 5, grpo_steps: int = 20, epochs: int = 2,
                             base: str | None = None) -> dict[str, Any]:
    """``benchmarks/lm_wrapper_overhead.py``'s measurement (its ``bench_grpo``, ``bench_dpo``
    and ``bench_reward`` with its defaults), in this process, one torch thread.

    Returns:
        ``{"torch_threads", "base", "results": {trainer: ...}, "wrapper_overhead": {trainer:
        fractional CPU-time slowdown}}``.
    """
    import tempfile

    import torch

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the measurement builds the tests' tiny GPT-2
    import lm_wrapper_overhead as wo

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if base is None:
            from tests.lm.tiny_text_model import build_tiny_lm

            base_dir = build_tiny_lm(work / "tiny_lm")
        else:
            base_dir = Path(base)
        results = {"grpo": wo.bench_grpo(base_dir, work, repeats, grpo_steps),
                   "dpo": wo.bench_dpo(base_dir, work, repeats, epochs),
                   "reward": wo.bench_reward(base_dir, work, repeats, epochs)}
    return {"torch_threads": torch.get_num_threads(),
            "base": base or "tests.lm.tiny_text_model.build_tiny_lm",
            "settings": {"repeats": repeats, "grpo_steps": grpo_steps, "epochs": epochs},
            "results": results,
            "wrapper_overhead": {name: r["cpu_slowdown"] for name, r in results.items()}}


def in_pinned_child(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a fresh (spawned) child process pinned to a free core with one torch
    thread (``core.pin_worker``; the core's lock is released when the child ends); returns its
    result. ``fn`` must be a module-level function (pickled by reference)."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx,
                                                initializer=core.pin_worker) as pool:
        return pool.submit(fn, *args).result()


def run_wrapper_overhead(jsonl: Path, command: str) -> dict[str, Any]:
    """Measure the wrapper cost (:func:`measure_wrapper_overhead`) in a child process pinned to
    a free core and append it to ``jsonl`` as a ``kind: "wrapper_overhead"`` record
    (returned)."""
    report = in_pinned_child(measure_wrapper_overhead)
    record = {"kind": "wrapper_overhead", "measured_utc": core.utc_now(), "command": command,
              "machine": core.machine_info(), **report}
    fe.append_records(jsonl, [record])
    return record


def latest_overhead(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest ``wrapper_overhead`` record (file order), or None."""
    found = [r for r in records if r.get("kind") == "wrapper_overhead"]
    return found[-1] if found else None


# ----------------------------------------------------------------------------- aggregate

def eval_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished run's evaluations as ``metrics.jsonl``-like rows (``step`` + metrics)."""
    return [{"step": int(e["step"]), **e["metrics"]} for e in run["evals"]]


def alarm_step(run: dict[str, Any]) -> int | None:
    """The step the over-optimisation alarm fired at in a finished run, or None."""
    event = run["done"].get("overoptimization") or {}
    if event.get(ALARM_KEY) is not None:
        return int(event[ALARM_KEY])
    steps = [e["step"] for e in run["evals"] if e["metrics"].get(ALARM_KEY) is not None]
    return int(min(steps)) if steps else None


def stopped_rows(rows: list[dict[str, Any]], stop: int | None) -> list[dict[str, Any]]:
    """``rows`` up to and including step ``stop`` (all of them when ``stop`` is None)."""
    return rows if stop is None else [r for r in rows if r["step"] <= stop]


def _finite_mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _json_num(x: Any) -> Any:
    """Non-finite floats as None (strict JSON); everything else unchanged."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def pooled_gao_fit(runs_rows: list[list[dict[str, Any]]], form: str) -> dict[str, Any]:
    """One Gao fit to every seed's evaluations pooled: each seed's gain over its own gold at its
    smallest ``d``, fitted by :func:`rewardlab.diagnostics.gao_fit.fit_gao`.

    Returns:
        ``{"form", "alpha", "beta", "r2", "peak_d", "peak_gold" (absolute: mean reference gold
        + fitted peak gain), "gold_ref" (mean reference gold), "points"}``; NaN values and a
        ``reason`` when there is no fit.
    """
    from rewardlab.diagnostics.gao_fit import fit_gao
    from rewardlab.diagnostics.lm_curves import lm_eval_curves, lm_gao_analysis

    ds, gains, refs = [], [], []
    for rows in runs_rows:
        a = lm_gao_analysis(lm_eval_curves(rows), form)
        if a.d.size:
            ds.append(a.d)
            gains.append(a.gain)
            refs.append(a.gold_ref)
    out: dict[str, Any] = {"form": form, "alpha": math.nan, "beta": math.nan, "r2": math.nan,
                           "peak_d": math.nan, "peak_gold": math.nan,
                           "gold_ref": float(np.mean(refs)) if refs else math.nan,
                           "points": int(sum(d.size for d in ds)), "reason": None}
    try:
        fit = fit_gao(np.concatenate(ds) if ds else np.zeros(0),
                      np.concatenate(gains) if gains else np.zeros(0), form)
    except ValueError as err:
        out["reason"] = str(err)
        return out
    out.update(alpha=fit.alpha, beta=fit.beta, r2=fit.r2, peak_d=fit.peak_d,
               peak_gold=out["gold_ref"] + fit.peak_gold)
    return out


def run_fields(runs: dict[str, dict[str, Any]]) -> dict[tuple, dict[int, dict[str, Any]]]:
    """``{(task, optimizer, labels, variant): {seed: fields}}``: :func:`~rewardlab.diagnostics.
    lm_curves.lm_benchmark_fields` of each finished run (and, for each variant of
    :data:`DERIVED_VARIANTS`, of its source runs cut at the alarm), with the run's ``rows``
    used and its ``stopped_at`` step (derived variants) kept beside them."""
    from rewardlab.diagnostics.lm_curves import gao_form_for, lm_benchmark_fields

    out: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for key, run in runs.items():
        k = parse_key(key)
        rows = eval_rows(run)
        if not rows:
            continue
        form = gao_form_for(k["optimizer"])
        fields = lm_benchmark_fields(rows, form)
        group = (k["task"], k["optimizer"], k["labels"], k["variant"])
        out[group][k["seed"]] = {**fields, "rows": rows, "stopped_at": None, "run": key}
        for derived, source in DERIVED_VARIANTS.items():
            if k["variant"] != source or k["optimizer"] not in VARIANT_OPTIMIZERS[derived]:
                continue
            stop = alarm_step(run)
            cut = stopped_rows(rows, stop)
            out[(k["task"], k["optimizer"], k["labels"], derived)][k["seed"]] = {
                **lm_benchmark_fields(cut, form), "rows": cut, "stopped_at": stop, "run": key}
    return dict(out)


#: The per-seed fields each row carries (``<name>_per_seed``) and averages (``<name>``).
ROW_FIELDS = ("gold_first", "gold_peak", "gold_final", "sqrt_kl_at_peak", "sqrt_kl_final",
              "gold_drop", "sqrt_kl_at_peak_fit", "gold_peak_fit", "gao_r2")


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The result rows, one per (task, optimizer, labels, variant) with finished runs.

    Each row: ``task``, ``optimizer``, ``labels``, ``variant``, ``seeds``; for each field of
    :data:`ROW_FIELDS` (from ``lm_benchmark_fields``: ``gold_peak``, ``gold_final``,
    ``sqrt_kl_at_peak`` observed, ``sqrt_kl_at_peak_fit`` and ``gold_peak_fit`` of each seed's
    own Gao fit, ...) its mean over seeds (finite values only; None if none) and
    ``<field>_per_seed``; ``gao_fit`` (:func:`pooled_gao_fit`); ``peaked_then_fell`` (seeds
    whose gold fell after its peak); ``alarm_fired`` (seeds whose alarm fired: for
    ``early_stop``, the seeds stopped early); for every variant but ``plain``,
    ``gold_peak_minus_plain`` / ``gold_final_minus_plain``: mean paired difference to the
    ``plain`` row on the seeds both have (None without plain runs); the reward models' mean
    held-out accuracy and mean CPU time a run. Non-finite numbers are None.
    """
    runs = fe.completed_runs(records)
    fields = run_fields(runs)
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows: list[dict[str, Any]] = []
    for group in sorted(fields, key=lambda g: (g[0], OPTIMIZERS.index(g[1])
                                               if g[1] in OPTIMIZERS else 9, g[2],
                                               order.get(g[3], 99))):
        task, optimizer, labels, variant = group
        per = fields[group]
        seeds = sorted(per)
        row: dict[str, Any] = {"task": task, "optimizer": optimizer, "labels": labels,
                               "variant": variant, "seeds": seeds}
        for name in ROW_FIELDS:
            values = [float(per[s][name]) for s in seeds]
            row[name] = _finite_mean(values)
            row[f"{name}_per_seed"] = [_json_num(v) for v in values]
        row["gao_form"] = per[seeds[0]]["gao_form"]
        row["gao_fit"] = {k: _json_num(v) for k, v in pooled_gao_fit(
            [per[s]["rows"] for s in seeds], row["gao_form"]).items()}
        row["peaked_then_fell"] = sum(bool(per[s]["peaked_then_fell"]) for s in seeds)
        source = [runs[per[s]["run"]] for s in seeds]
        row["alarm_fired"] = sum(alarm_step(r) is not None for r in source)
        if variant in DERIVED_VARIANTS:
            row["stopped_at_per_seed"] = [per[s]["stopped_at"] for s in seeds]
        row["heldout_accuracy"] = _finite_mean([
            (r["done"].get("reward_model") or {}).get("reward_model/heldout_accuracy")
            for r in source])
        row["cpu_time_s"] = (None if variant in DERIVED_VARIANTS else
                             _finite_mean([r["done"].get("cpu_time_s") for r in source]))
        rows.append(row)
    plain = {(r["task"], r["optimizer"], r["labels"]): r for r in rows if r["variant"] == PLAIN}
    for r in rows:
        if r["variant"] == PLAIN:
            continue
        p = plain.get((r["task"], r["optimizer"], r["labels"]))
        for name in ("gold_peak", "gold_final"):
            diff = None
            if p is not None:
                mine = dict(zip(r["seeds"], r[f"{name}_per_seed"], strict=True))
                theirs = dict(zip(p["seeds"], p[f"{name}_per_seed"], strict=True))
                common = [s for s in mine if s in theirs and mine[s] is not None
                          and theirs[s] is not None]
                diff = _finite_mean([mine[s] - theirs[s] for s in common])
            r[f"{name}_minus_plain"] = diff
    return rows


def grid_complete(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` fill the issue's grid: every default task x optimizer x label count x
    variant that applies to the optimizer, all of :data:`FULL_SEEDS`."""
    have = {(r["task"], r["optimizer"], r["labels"], r["variant"]) for r in rows
            if set(r["seeds"]) >= set(FULL_SEEDS)}
    return all((t, o, n, v) in have for t in TASKS for o in OPTIMIZERS for n in LABELS
               for v in VARIANTS if o in VARIANT_OPTIMIZERS[v])


# ----------------------------------------------------------------------------- plot

def plot_curves(records: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> Path:
    """Gold and proxy against ``sqrt KL`` of the ``plain`` runs: for each task, one panel per
    optimizer (rows) and label count (columns); every seed's evaluations as points (gold
    filled, proxy hollow on a second axis: the proxy is in standardised reward-model units)
    and the pooled Gao fit of gold (:func:`pooled_gao_fit`) as a line, its peak marked.

    Returns:
        ``path`` (a PNG; one file, the tasks stacked).
    """
    import matplotlib

    matplotlib.use("Agg")  # a headless command; set here, where the plot is made
    import matplotlib.pyplot as plt

    from rewardlab.diagnostics.gao_fit import gao_curve

    runs = fe.completed_runs(records)
    plain = [r for r in rows if r["variant"] == PLAIN]
    tasks = sorted({r["task"] for r in plain}) or ["—"]
    labels = sorted({r["labels"] for r in plain}) or [0]
    n_rows = len(tasks) * len(OPTIMIZERS)
    fig, axes = plt.subplots(n_rows, len(labels), figsize=(4.2 * len(labels), 3.2 * n_rows),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ti, task in enumerate(tasks):
        for oi, opt in enumerate(OPTIMIZERS):
            for li, n in enumerate(labels):
                ax = axes[ti * len(OPTIMIZERS) + oi][li]
                ax.set_title(f"{task}: {opt}, {n} labels", fontsize=9)
                ax.set_xlabel("sqrt KL (sqrt nats)")
                ax.set_ylabel("gold")
                row = next((r for r in plain if (r["task"], r["optimizer"], r["labels"])
                            == (task, opt, n)), None)
                if row is None:
                    ax.text(0.5, 0.5, "no finished run", ha="center", transform=ax.transAxes)
                    continue
                twin = ax.twinx()
                twin.set_ylabel("proxy (standardised)", fontsize=8)
                d_max = 0.0
                for si, seed in enumerate(row["seeds"]):
                    rws = eval_rows(runs[run_key(task, opt, n, PLAIN, seed)])
                    d = np.array([r.get("eval/sqrt_kl", np.nan) for r in rws], dtype=float)
                    g = np.array([r.get("eval/gold_return", np.nan) for r in rws], dtype=float)
                    p = np.array([r.get("eval/proxy_return", np.nan) for r in rws], dtype=float)
                    c = colors[si % len(colors)]
                    ax.plot(d, g, "o", color=c, ms=3, label=f"gold s{seed}")
                    twin.plot(d, p, "o", mfc="none", color=c, ms=3, alpha=0.6)
                    if np.isfinite(d).any():
                        d_max = max(d_max, float(np.nanmax(d)))
                fit = row["gao_fit"]
                if fit.get("alpha") is not None and d_max > 0:
                    xs = np.linspace(0.0, d_max * 1.05, 200)
                    ys = fit["gold_ref"] + gao_curve(xs, fit["alpha"], fit["beta"], fit["form"])
                    ax.plot(xs, ys, "k-", lw=1.2, label=f"Gao fit (R² {fit['r2'] or 0:.2f})")
                    pd_ = fit.get("peak_d")
                    if pd_ is not None and 0 < pd_ <= d_max * 1.05:
                        ax.axvline(pd_, color="k", ls=":", lw=1)
                ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Gold (filled) and proxy (hollow) against sqrt KL, plain proxy; line: fitted "
                 "Gao et al. 2022 curve (bon Eq. 1, grpo Eq. 2)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- report

NOTES = [
    "Gold: the task's gold score of each completion (sentiment: VADER compound in [-1, 1]), "
    "mean over the evaluation samples (GRPO: 16 held-out prompts x 4 fresh samples at each "
    "evaluation; best-of-n: the same 64 slots, the best of n by the proxy). `d` = sqrt KL "
    "(sqrt nats; GRPO Monte-Carlo KL(policy || base), best-of-n log n - (n-1)/n). Peak = the "
    "evaluation with the largest mean gold; final = the last (GRPO step 300, best-of-256); "
    "fit = Gao et al. 2022 Eq. 1 (bon) / Eq. 2 (grpo), one least-squares fit to every seed's "
    "gains pooled. Means over seeds; per-seed values in the JSON.",
    "Variants: `plain` ensemble mean; `mean_minus_std` / `min` conservative ensembles "
    "(`lm.rm_reduction`, k = 1); `beta_0.1` GRPO with `lm.beta=0.1` (default 0.03); "
    "`early_stop` the plain runs cut at the evaluation where the over-optimisation alarm fired "
    "(gold at that step; no alarm: the run's end); `alarm fired` = seeds whose alarm fired "
    "(for `early_stop`: the seeds stopped early). "
    "`Δ final vs plain`: mean paired difference in final gold on the same seeds (same labels, "
    "same proxy fit). Coefficients chosen a priori, not tuned on any seed.",
    "Sized for about 2.5 CPU-hours (the arithmetic is in `benchmarks/lm_overoptimization.py`'s "
    "docstring); `cpu time` is the measured CPU time a run.",
]


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else \
        f"{x:.{digits}f}"


def render_section(rec: dict[str, Any]) -> str:
    begin, end = core.section_markers(SECTION)
    sel, rows = rec["selection"], rec["rows"]
    lines = [begin, *fe.grid_header(rec, TITLE, "lm_overoptimization.py"),
             f"- Selection: tasks {', '.join(sel['tasks'])}; optimizers "
             f"{', '.join(sel['optimizers'])}; labels {', '.join(map(str, sel['labels']))}; "
             f"variants {', '.join(sel['variants'])}; seeds {', '.join(map(str, sel['seeds']))}"]
    if not rec.get("grid_complete"):
        lines.append("- **Not the issue's full grid yet**: read these rows as the cells "
                     "filled so far.")
    lines += ["",
              "| task | optimizer | labels | variant | seeds | gold peak | gold final | "
              "sqrt KL at peak | fitted peak: sqrt KL / gold | Δ final vs plain | alarm fired | "
              "RM held-out acc. | cpu time (s) |",
              "|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        fit = r["gao_fit"]
        peak = ("—" if fit.get("alpha") is None else
                "∞ (still rising)" if fit.get("peak_d") is None else
                f"{_f(fit['peak_d'], 2)} / {_f(fit['peak_gold'])}")
        n = len(r["seeds"])
        lines.append(
            f"| {r['task']} | {r['optimizer']} | {r['labels']} | {r['variant']} | "
            f"{', '.join(map(str, r['seeds']))} | {_f(r['gold_peak'])} | "
            f"{_f(r['gold_final'])} | {_f(r['sqrt_kl_at_peak'], 2)} | {peak} | "
            f"{_f(r.get('gold_final_minus_plain'))} | {r['alarm_fired']}/{n} | "
            f"{_f(r['heldout_accuracy'], 2)} | {_f(r['cpu_time_s'], 0)} |")
    if not rows:
        lines.append("| — | no finished run yet | | | | | | | | | | | |")
    over = rec.get("wrapper_overhead")
    lines += [""]
    if over:
        lines.append("Wrapper cost (RewardLab's trainer against the same TRL trainer called "
                     "directly, fractional CPU-time slowdown, target <= 0.10; "
                     f"`benchmarks/lm_wrapper_overhead.py`'s measurement, "
                     f"{rec.get('wrapper_overhead_measured_utc')}): "
                     + ", ".join(f"{k} {v:+.3f}" for k, v in over.items()) + ".")
    else:
        lines.append("Wrapper cost: not measured yet (`--overhead run`).")
    if rec.get("plot"):
        lines += ["", f"Plot: `{rec['plot']}`."]
    for note in rec["notes"]:
        lines += ["", note]
    lines += ["", end]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS),
                   choices=[*TASKS, *OPTIONAL_TASKS])
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    p.add_argument("--labels", nargs="+", type=int, default=list(LABELS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=list(FULL_SEEDS))
    p.add_argument("--base-model", default=None,
                   help="a local causal-LM directory for every run (default: RewardLab's own, "
                   "pretrained once before the first run)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help="runs at once (Ray Tune trials, 1 CPU each)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (ray.init address)")
    p.add_argument("--no-ray", action="store_true",
                   help="run the runs one after another in this process instead of on Ray")
    p.add_argument("--overhead", choices=["auto", "run", "skip"], default="auto",
                   help="wrapper-cost measurement: auto (once, if no record yet), run (again), "
                   "skip")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--dry-run", action="store_true",
                   help="list the selected runs and their config overrides; run nothing")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; aggregate the finished runs of the selection")
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    p.add_argument("--records", type=Path, default=None,
                   help="JSONL record file (default: "
                   "benchmarks/results/lm_overoptimization_runs.jsonl)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers: at least 1")
    if any(n < 2 for n in args.labels):
        p.error("--labels: each at least 2")
    if args.base_model is not None:
        args.base_model = str(Path(args.base_model).resolve())
    return args


def selected_keys(args: argparse.Namespace) -> list[str]:
    """Run keys of the selection, seed by seed, then task, label count and optimizer, the plain
    run first, so a selection cut short holds whole seeds. A derived variant (``early_stop``)
    selects the runs it is read from."""
    keys = []
    variants = list(dict.fromkeys(DERIVED_VARIANTS.get(v, v) for v in args.variants))
    variants.sort(key=lambda v: v != PLAIN)
    for seed in args.seeds:
        for task in args.tasks:
            for labels in args.labels:
                for opt in args.optimizers:
                    keys += [run_key(task, opt, labels, v, seed) for v in variants
                             if opt in VARIANT_OPTIMIZERS[v]]
    return list(dict.fromkeys(keys))


def selected_rows(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``rows`` of the selected variants only (a plain run selected for ``early_stop`` alone
    does not add a ``plain`` row)."""
    return [r for r in rows if r["variant"] in args.variants]


def ensure_base(base_model: str | None) -> None:
    """Pretrain RewardLab's base model once before the runs (cached: reused if present), so
    parallel trials never pretrain it twice; in a child pinned to a free core
    (:func:`in_pinned_child`). Nothing to do with ``--base-model``."""
    if base_model is not None:
        return
    print(f"{core.utc_now()}: base model: RewardLab's own (pretrained once, then cached)",
          flush=True)
    print(f"base model at {in_pinned_child(_base_model_dir)}", flush=True)


def _base_model_dir() -> str:
    from rewardlab.lm.base_model import ensure_base_model

    return str(ensure_base_model(progress=False))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("lm_overoptimization.py", argv)
    out_dir = args.out_dir.resolve()
    jsonl = (args.records or RESULTS_DIR / f"{SECTION}_runs.jsonl").resolve()
    keys = selected_keys(args)
    overrides = {key: key_overrides(key, args.base_model) for key in keys}  # refuse bad ones
    planned = make_planner(args.base_model)
    found = fe.read_records(jsonl)
    done, current = fe.completed_runs(found), fe.current_runs(found, planned)
    stale = fe.stale_runs({k: done[k] for k in keys if k in done and k not in current}, planned)
    todo = [] if args.aggregate_only else [k for k in keys if k not in current]
    n_done = sum(k in current for k in keys)
    measure = not args.aggregate_only and (
        args.overhead == "run" or (args.overhead == "auto" and latest_overhead(found) is None))
    if args.dry_run:
        for key in keys:
            state = ("done" if key in current else "to run" if key not in stale else
                     f"stale, runs again: differs in {', '.join(stale[key][:4])}")
            print(f"{key} [{state}]: {shlex.join(overrides[key])}")
        print(f"{len(keys)} runs selected, {n_done} done, {len(todo)} to run; wrapper overhead "
              f"{'to measure' if measure else 'not measured now'}; records in {jsonl}; "
              "nothing run (--dry-run)")
        return 0
    print(f"{core.utc_now()}: {len(keys)} runs selected, {n_done} done, {len(todo)} to run "
          f"({'in this process' if args.no_ray else 'on Ray Tune'}, "
          f"{1 if args.no_ray else args.workers} at a time); records in {jsonl}", flush=True)
    if measure:
        print(f"{core.utc_now()}: measuring the wrapper overhead", flush=True)
        run_wrapper_overhead(jsonl, command)
    if todo:
        ensure_base(args.base_model)
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.no_ray:
            for key in todo:
                run_trial({"key": key, "out_dir": str(out_dir), "records": str(jsonl),
                           "base_model": args.base_model})
        else:
            from rewardlab.errors import RewardLabError

            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            try:
                run_on_ray(todo, out_dir, jsonl, args.workers, args.address,
                           f"{SECTION}-{stamp}", args.base_model)
            except RewardLabError as err:  # e.g. a worker died; the finished runs still count
                print(f"Ray: {err}", flush=True)
    records = fe.read_records(jsonl)
    finished = fe.current_runs(records, planned)
    failed = [k for k in todo if k not in finished]
    selection = set(keys)
    chosen = [r for r in records if r.get("run") in selection]
    for key, diff in sorted(fe.stale_runs({k: v for k, v in fe.completed_runs(chosen).items()
                                           if k not in finished}, planned).items()):
        print(f"left out (stale: differs in {', '.join(diff[:4])}): {key}", flush=True)
    chosen = fe.current_records(chosen, planned)
    rows = selected_rows(aggregate(chosen), args)
    overhead = latest_overhead(records)
    rec = {"command": command, "section": SECTION, "written_utc": core.utc_now(),
           "machine": core.machine_info(), "workers": 1 if args.no_ray else args.workers,
           "runner": fe.runner_name(args),
           "jsonl": os.path.relpath(jsonl, REPO) if jsonl.is_relative_to(REPO) else str(jsonl),
           "selection": {"tasks": args.tasks, "optimizers": args.optimizers,
                         "labels": args.labels, "variants": args.variants,
                         "seeds": args.seeds, "base_model": args.base_model},
           "sizing": {"grpo_steps": GRPO_STEPS, "eval_every": EVAL_EVERY,
                      "bon_n": list(BON_N), "large_beta": LARGE_BETA, "teacher": TEACHER},
           "runs_selected": len(keys), "runs_completed": len(fe.completed_runs(chosen)),
           "grid_complete": grid_complete(rows), "rows": rows,
           "wrapper_overhead": None if overhead is None else overhead["wrapper_overhead"],
           "wrapper_overhead_measured_utc": None if overhead is None
           else overhead.get("measured_utc"),
           "wrapper_overhead_detail": None if overhead is None else overhead.get("results"),
           "plot": None, "notes": NOTES, "format_version": 1}
    for r in rows:
        print(f"{r['task']} {r['optimizer']} l{r['labels']} {r['variant']}: gold peak "
              f"{_f(r['gold_peak'])} at sqrt KL {_f(r['sqrt_kl_at_peak'], 2)}, final "
              f"{_f(r['gold_final'])}, seeds {r['seeds']}", flush=True)
    if failed:
        print(f"{len(failed)} run(s) failed (see above): {', '.join(failed)}", flush=True)
    if args.no_write:
        print(render_section(rec))
    else:
        plot = plot_curves(chosen, rows, RESULTS_DIR / f"{SECTION}.png")
        rec["plot"] = os.path.relpath(plot, REPO) if plot.is_relative_to(REPO) else str(plot)
        results = RESULTS_DIR / f"{SECTION}.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(rec, indent=2, allow_nan=False) + "\n")
        core.write_markdown_section(core.BENCHMARKS_MD, *core.section_markers(SECTION),
                                    render_section(rec))
        print(f"wrote {os.path.relpath(results, REPO)}, {rec['plot']} and BENCHMARKS.md",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
