"""Offline preference RL: IQL on learned rewards and CPL against IQL on the true reward.

Usage::

    python benchmarks/offline.py [--datasets HalfCheetah-v5/medium-replay ...]
        [--methods iql_true iql_mlp iql_pt cpl] [--queries 100 500] [--seeds 0 1 2 3 4]
        [--updates 10000] [--cpl-updates 1000] [--workers 2] [--address RAY_ADDRESS]
        [--out-dir benchmarks/runs/offline] [--records FILE] [--make-datasets]
        [--rerun-other-generations] [--dry-run] [--aggregate-only] [--no-ray] [--no-write]

The defaults are the grid of issue 12 (item 8): the ``medium-replay`` datasets of
HalfCheetah-v5, Hopper-v5 and Walker2d-v5 and the ``medium-expert`` dataset of HalfCheetah-v5
(``rewardlab/<env>/<tier>-v1``, made locally by ``rewardlab dataset make``, with SBX SAC for
HalfCheetah-v5 and SBX CrossQ for the others: :data:`DATASET_BACKBONES`);
on each, 5 seeds of

* ``iql_true``: IQL on the dataset's true reward (``offline.reward=true``): the reference;
* ``iql_mlp``: IQL on the MLP-ensemble reward learned from 100 and from 500 ``oracle`` queries
  (disagreement-based selection, the online default);
* ``iql_pt``: IQL on the Preference Transformer reward learned from 500 ``oracle`` queries
  (uniform selection: the config refuses disagreement for the transformer, one model; uniform
  also fits it once, after the last round, instead of after every round as entropy would);
* ``cpl``: CPL from 500 ``oracle`` queries (no reward model; CPL's rounds are uniform). With
  the same seed, ``iql_pt`` and ``cpl`` select uniformly from the same generator, so they
  label the same 500 pairs ("CPL from the same 500 labels"; a test checks it on a small
  dataset).

``--queries`` replaces the budgets of every learned method (default: :data:`METHOD_QUERIES`).
Every combination is one run, key ``env/tier/method/qQUERIES/uUPDATES/sSEED``, trained with
:func:`rewardlab.algorithms.train` (the run of ``rewardlab train --set algorithm=iql|cpl --set
dataset=ID ...``; :func:`run_overrides` lists the settings, ``--dry-run`` prints them). The
budget is labelled in :data:`ROUNDS` rounds before the first update, 50-step segments.

Datasets: ``--make-datasets`` runs ``rewardlab dataset make --env ENV --tiers ...`` for the
selected datasets first (one process per env, ``--workers`` at a time, each pinned to a core of
its own; ``--no-ray``: one at a time; the command caches the expert's training and
reuses a complete tier, so a second call trains nothing), under ``MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``) as the command itself reads it. Cost once: nearly all of it the
100,000-step expert of each env (:data:`DATASET_BACKBONES`,
``rewardlab/algorithms/dataset_tiers.py``), not counted below. Without the flag a missing
dataset stops the script before any run starts, naming the command that makes it.

Sizing (``IQL_UPDATES``, ``CPL_UPDATES``, evaluations), for the 100 runs of the grid in about
12 CPU-hours on this machine (2 logical CPUs, AMD EPYC). Measured on
2026-12-03 with ``taskset -c 1`` on a core shared with other work (load average 3.7): one IQL
update (batch 256, 256 x 256 networks, 17-d observations, 6-d actions) 5.6 ms of CPU time since
the update became one jitted JAX step (``benchmarks/offline_update_speed.py``: 177 updates per
CPU-second against 73 for the PyTorch update it replaced, which took 28 ms of wall time on that
shared core; the first update of a run also compiles, a few CPU-seconds); one CPL update
(96 pairs of 2 x 50 steps, 512 x 512 actor) 514 ms; one Preference Transformer epoch over
450 pairs of 50 steps 2.3 s, so a 100-epoch fit about 230 s. The grid is 80 IQL runs and 20
CPL runs:

* IQL: 80 runs x 50,000 updates x 5.6 ms = 22,400 s (6.2 h);
* CPL: 20 runs x 1,000 updates x 514 ms = 10,280 s (2.9 h); a CPL update sees 9,600
  state-actions, an IQL update 256, so 1,000 CPL updates pass 9.6 M state-actions through the
  actor against IQL's 2.6 M, about 190 passes over the 500 labelled pairs;
* labelling and reward fits: an MLP-ensemble fit (3 members of 3 x 256, early stopping at
  97% train accuracy) took 6.3 s on 100 random labelled pairs and 20.5 s on 500 (7-9 epochs
  of the 50 allowed, on an easy synthetic preference); refit after each of the 10 rounds on
  the labels so far, about 60 s a run at 100 queries and 150 s at 500 (allowing for more
  epochs on real labels): 20 x 60 + 20 x 150 = 4,200 s (1.2 h); Preference Transformer, one
  230 s fit + relabelling about 20 s: 20 x 250 = 5,000 s (1.4 h);
* evaluation: :data:`EVAL_POINTS` + 1 evaluations (update 0 and every quarter) of
  :data:`EVAL_EPISODES` deterministic 1,000-step episodes plus the random and do-nothing
  references at update 0, about 35 episodes at 0.27 s (HalfCheetah-v5 with the IQL actor,
  measured): about 10 s a run, 1,000 s (0.3 h).

Total about 42,900 s = 11.9 CPU-hours, about 6 h of wall time with ``--workers 2``;
the table's last note gives the compute measured on the host that ran it. IQL's
paper trains for 1,000,000 updates and CPL's for 500,000: these are short runs, compared like
with like (every IQL row has the same updates as its ``iql_true`` reference); the runs
recorded at 10,000 updates, before the JAX step, have other keys (``u10000``) and stay out of
the default selection. CPL's
behaviour-cloning phase and learning-rate warm-up keep the authors' shares of the run (40% and
10%: ``cpl.bc_steps``, ``cpl.warmup_steps``).

Execution and records follow ``benchmarks/feedback_efficiency.py`` and reuse its functions:
the unfinished runs are Ray Tune trials (``--workers`` at a time, one CPU each, each pinned to a
core of its own with ``core.claim_core``; ``--no-ray`` runs them one by one in this process);
each finished run appends, in one write stamped with a per-attempt id, its evaluations
(``kind: "eval"``: ``update``, ``gold_return``, ``normalized_score``; ``step`` = ``update`` for
the shared bookkeeping) and one ``kind: "done"`` record (the run's ``settings``, wall time,
the dataset, the reward model's accuracy metrics, last values of ``reward_model/*`` from the
run's ``metrics.jsonl``) to ``benchmarks/results/offline_runs.jsonl``. A run with a ``done``
record made with the settings its key runs now is skipped; a finished run with other settings
is stale: run again and left out of the table until then. The datasets are made on each
machine, and a machine with other library versions makes other data from the same command;
``--rerun-other-generations`` runs again the selected finished runs that used another
generation of their dataset (:func:`dataset_generation`) than the one on this machine, so that
every method of a seed is trained on the same data.

Aggregation: per (dataset, method, queries, updates), the D4RL normalised score of each seed's
final evaluation (``eval/normalized_score``: 100 x (G - random) / (expert - random), the
dataset's ``ref_min_score``/``ref_max_score``), its interquartile mean and 95%
stratified-bootstrap CI (``rliable``, as ``feedback_efficiency.iqm_ci``), the reference
``true_reward_reference`` (the IQM of ``iql_true`` on the same dataset and updates) and
``ratio_to_true`` = IQM / reference. Target (issue 12): ratio >= 0.90 for IQL on a reward
learned from 500 oracle queries (``iql_mlp`` and ``iql_pt``), on each dataset. Results go to
``benchmarks/results/offline.json`` and the ``offline`` section of ``BENCHMARKS.md`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import math
import os
import queue
import shlex
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py: thread env, machine info, markdown, claim_core)
import feedback_efficiency as fe  # noqa: E402  (records, Ray trials, IQM: shared bookkeeping)

REPO = core.REPO
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_OUT = REPO / "benchmarks" / "runs" / "offline"
SECTION = "offline"
TITLE = "Offline preference RL: IQL on learned rewards and CPL"

#: The issue's datasets, ``ENV/TIER`` (``rewardlab/<env slug>/<tier>-v<DATASET_VERSION>``).
DATASETS = ("HalfCheetah-v5/medium-replay", "Hopper-v5/medium-replay",
            "Walker2d-v5/medium-replay", "HalfCheetah-v5/medium-expert")
DATASET_VERSION = 1
#: The agent each env's tiers come from (``rewardlab dataset make --backbone``). One agent did
#: not serve all three envs, each failing a different way, so the choice is per env:
#: - HalfCheetah-v5: SBX SAC, as D4RL's SAC. CrossQ (version 0) reached "medium" within 10,000
#:   steps, so its medium-replay held 10 episodes, too few to learn from (IQL on its true
#:   reward: normalised 15.7 after 50,000 updates, below the medium policy's 33). With SAC the
#:   medium-replay holds 45 episodes (45,000 steps) and IQL on its true reward reached 52.3 (s0).
#: - Hopper-v5, Walker2d-v5: SBX CrossQ. SAC's 100,000-step Hopper expert reached only 404 (it
#:   stayed at 190-440 from 5,000 steps on), so "medium" came at the first snapshot and its
#:   medium-replay held 5,000 steps. With CrossQ the terminating episodes make a medium-replay
#:   of many episodes: Hopper's expert reached 3,439, "medium" (1,163) first passed at 30,000
#:   steps, 154 episodes; Walker2d's expert 3,824, "medium" (1,279) at 60,000 steps, 312
#:   episodes (``rewardlab dataset make --env ENV --tiers medium-replay,medium,expert
#:   --version 1 --backbone crossq``, 32-33 min each on a core of its own).
DATASET_BACKBONES = {"HalfCheetah-v5": "sbx_sac", "Hopper-v5": "crossq", "Walker2d-v5": "crossq"}
#: Config overrides of each method (on top of :func:`run_overrides`' common ones).
METHODS: dict[str, tuple[str, ...]] = {
    "iql_true": ("algorithm=iql", "offline.reward=true"),
    "iql_mlp": ("algorithm=iql", "offline.reward=learned", "offline.reward_model=mlp",
                "feedback.method=disagreement"),
    "iql_pt": ("algorithm=iql", "offline.reward=learned", "offline.reward_model=transformer",
               "feedback.method=uniform"),
    "cpl": ("algorithm=cpl", "feedback.method=uniform"),
}
REFERENCE = "iql_true"
#: Query budgets of each method in the issue's grid (``--queries`` replaces the learned ones).
METHOD_QUERIES: dict[str, tuple[int, ...]] = {
    "iql_true": (0,), "iql_mlp": (100, 500), "iql_pt": (500,), "cpl": (500,)}
TEACHER = "oracle"
#: Feedback rounds the budget is asked in (all before the first update).
ROUNDS = 10
SEGMENT_LEN = 50
#: Gradient updates per run (see the module docstring for the arithmetic).
IQL_UPDATES = 50_000
CPL_UPDATES = 1_000
#: CPL's behaviour-cloning and warm-up shares of the run (the authors' 40k and 10k of 100k).
CPL_BC_FRACTION, CPL_WARMUP_FRACTION = 0.4, 0.1
#: Evaluations after update 0 (evenly spaced; the last at the final update) and their episodes.
EVAL_POINTS = 4
EVAL_EPISODES = 5
FULL_SEEDS = (0, 1, 2, 3, 4)
#: The issue's target: ratio to the true-reward IQM for IQL on 500 learned-reward queries.
TARGETS = {("iql_mlp", 500): 0.90, ("iql_pt", 500): 0.90}
DEFAULT_WORKERS = 2
#: Sections of the config a method's runs do not read (left out of the staleness check).
UNUSED = {
    "iql_true": ("env", "pebble", "ppo", "human", "mitigation", "feedback", "teacher",
                 "reward_model", "preference_transformer", "cpl", "td3bc", "total_steps"),
    "iql_mlp": ("env", "pebble", "ppo", "human", "mitigation", "preference_transformer", "cpl",
                "td3bc", "total_steps"),
    "iql_pt": ("env", "pebble", "ppo", "human", "mitigation", "cpl", "td3bc", "total_steps"),
    "cpl": ("env", "pebble", "ppo", "human", "mitigation", "reward_model",
            "preference_transformer", "iql", "td3bc", "total_steps"),
}


# ----------------------------------------------------------------------------- runs

def run_key(dataset: str, method: str, queries: int, updates: int, seed: int) -> str:
    """The run's id: ``env/tier/method/qQUERIES/uUPDATES/sSEED`` (q0 for ``iql_true``)."""
    if method == REFERENCE:
        queries = 0
    return f"{dataset}/{method}/q{queries}/u{updates}/s{seed}"


def parse_key(key: str) -> dict[str, Any]:
    """Inverse of :func:`run_key` (``dataset`` is ``env/tier``)."""
    env, tier, method, q, u, s = key.split("/")
    return {"dataset": f"{env}/{tier}", "env": env, "tier": tier, "method": method,
            "queries": int(q[1:]), "updates": int(u[1:]), "seed": int(s[1:])}


def dataset_id(dataset: str) -> str:
    """The Minari id of ``ENV/TIER``: ``rewardlab/<env slug>/<tier>-v<DATASET_VERSION>``."""
    from rewardlab.data.offline import tier_dataset_id

    env, tier = dataset.split("/")
    return tier_dataset_id(env, tier, DATASET_VERSION)


def run_overrides(dataset: str, method: str, queries: int, updates: int,
                  seed: int) -> list[str]:
    """Config overrides of one run: the method's (:data:`METHODS`), the dataset, ``updates``
    gradient updates with :data:`EVAL_POINTS` evaluations of :data:`EVAL_EPISODES` episodes
    after update 0 and one checkpoint at the end (and after each round), the budget in
    :data:`ROUNDS` rounds of 50-step segments from the ``oracle`` teacher; CPL's BC and
    warm-up phases scaled to the run.

    Raises:
        ValueError: naming the option, on an unknown method or dataset, a learned method
            without queries, or too few updates for the schedule.
    """
    if method not in METHODS:
        raise ValueError(f"--methods: unknown method {method!r}; choose from {tuple(METHODS)}")
    if dataset.count("/") != 1:
        raise ValueError(f"--datasets: expected ENV/TIER such as HalfCheetah-v5/medium-replay, "
                         f"got {dataset!r}")
    if updates < 2 * EVAL_POINTS or (method == "cpl" and updates < 20):
        raise ValueError(f"--updates {updates}: too few for the schedule")
    out = [*METHODS[method], f"dataset={dataset_id(dataset)}", f"seed={seed}",
           f"offline.updates={updates}", f"offline.eval_every={updates // EVAL_POINTS}",
           f"offline.checkpoint_every={updates}", f"eval.episodes={EVAL_EPISODES}", *core.BASE]
    if method != REFERENCE:
        if queries < 2:
            raise ValueError(f"--queries {queries}: {method} needs a budget of at least 2")
        out += [f"feedback.total_budget={queries}",
                f"feedback.queries_per_round={math.ceil(queries / ROUNDS)}",
                f"feedback.segment_len={SEGMENT_LEN}", f"teacher.preset={TEACHER}"]
    if method == "cpl":
        out += [f"cpl.bc_steps={int(updates * CPL_BC_FRACTION)}",
                f"cpl.warmup_steps={max(1, int(updates * CPL_WARMUP_FRACTION))}"]
    return out


def key_overrides(key: str) -> list[str]:
    """:func:`run_overrides` of a run key."""
    k = parse_key(key)
    return run_overrides(k["dataset"], k["method"], k["queries"], k["updates"], k["seed"])


def key_config(key: str) -> Any:
    """The :class:`~rewardlab.config.TrainConfig` the run of ``key`` trains now (before the
    env is taken from the dataset, so no dataset is read)."""
    from rewardlab.config import load_config

    return load_config(None, key_overrides(key))


#: Keys of the ``feedback`` section no offline run reads: its rounds are all asked before the
#: first update, so the online env-step schedule does not apply (``FeedbackSchedule``).
UNUSED_FEEDBACK = ("round_every", "first_round_at")


def run_settings(config: Any, method: str) -> dict[str, Any]:
    """The settings a run of ``method`` reads, as JSON (:data:`UNUSED` and
    :data:`UNUSED_FEEDBACK` left out; ``env`` too: it comes from the dataset, recorded in the
    ``done`` record's ``dataset`` fields)."""
    exclude: dict[str, Any] = {section: True for section in UNUSED[method]}
    if "feedback" not in exclude:
        exclude["feedback"] = set(UNUSED_FEEDBACK)
    return json.loads(json.dumps(config.model_dump(mode="json", exclude=exclude)))


def planned_settings(key: str) -> dict[str, Any]:
    """:func:`run_settings` of the run ``key`` would train now."""
    return run_settings(key_config(key), parse_key(key)["method"])


def run_records(key: str, run_dir: Path, wall_time_s: float) -> list[dict[str, Any]]:
    """The eval and done records of the finished run in ``run_dir`` (a fresh attempt id)."""
    k = parse_key(key)
    rows = fe.read_records(run_dir / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    base = {"run": key, "attempt": uuid.uuid4().hex, **k}
    evals = [{"kind": "eval", **base, "step": int(r["step"]), "update": int(r["step"]),
              "gold_return": r["eval/gold_return"],
              "normalized_score": r.get("eval/normalized_score")}
             for r in rows if r.get("eval/gold_return") is not None]
    done = {"kind": "done", **base, "final_update": int(summary["steps"]),
            "settings": planned_settings(key), "wall_time_s": wall_time_s,
            "dataset_id": summary.get("dataset"), "dataset_steps": summary.get("dataset_steps"),
            "dataset_normalized_score": summary.get("dataset_normalized_score"),
            "dataset_fingerprint": summary.get("dataset_fingerprint"),
            "env_id": summary.get("env"), "reward": summary.get("reward"),
            "reward_model": fe.reward_model_metrics(run_dir / "metrics.jsonl"),
            "feedback_seconds": (summary.get("feedback") or {}).get("seconds"),
            "interrupted": summary.get("interrupted"), "overrides": key_overrides(key),
            "run_dir": str(run_dir), "finished_utc": core.utc_now(),
            "machine": core.machine_info()}
    return [*evals, done]


def execute(key: str, out_dir: Path) -> list[dict[str, Any]]:
    """Train one run in ``out_dir/runs/<key>`` from scratch (an unfinished earlier attempt is
    deleted first) and return its records.

    Raises:
        fe.RunInterrupted: if the run was interrupted (``fe.raise_if_interrupted``).
    """
    import shutil

    import torch

    from rewardlab.algorithms import train

    torch.set_num_threads(1)
    config = key_config(key)
    run_dir = out_dir / "runs" / key.replace("/", "_")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train(config, run_dir)
    fe.raise_if_interrupted(run_dir)
    return run_records(key, run_dir, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- trials

def run_trial(params: dict[str, Any]) -> dict[str, Any] | None:
    """One run as a trial (``params`` = ``{"key", "out_dir", "records"}``): ``fe.run_trial``
    with this module's :func:`execute` (pinned to a free core, one thread, records appended by
    the trial, a failure printed, not raised; an interrupted run raises ``fe.RunInterrupted``).

    Returns:
        The run's ``done`` record, or None if it failed.
    """
    return fe.run_trial(params, execute)


def ray_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable: :func:`run_trial` of ``config["params"]``."""
    run_trial(config["params"])


def run_on_ray(todo: list[str], out_dir: Path, jsonl: Path, workers: int, address: str | None,
               name: str) -> None:
    """Every run of ``todo`` as a Ray Tune trial of :func:`ray_trial` (``fe.run_on_ray``),
    ``workers`` at a time."""
    trainable = importlib.import_module("offline").ray_trial  # pickled by reference
    fe.run_on_ray(todo, out_dir, jsonl, workers, address, name, trainable=trainable)


# ----------------------------------------------------------------------------- datasets

def dataset_backbone(env: str) -> str:
    """The agent ``env``'s tiers come from (:data:`DATASET_BACKBONES`; CrossQ, the dataset
    command's default, for an env not listed)."""
    return DATASET_BACKBONES.get(env, "crossq")


def dataset_make_commands(datasets: list[str]) -> list[list[str]]:
    """``rewardlab dataset make`` of each env of ``datasets``, with the tiers it needs (a
    ``medium-expert`` tier makes ``medium`` and ``expert`` on the way)."""
    tiers: dict[str, list[str]] = {}
    for d in datasets:
        env, tier = d.split("/")
        tiers.setdefault(env, [])
        if tier not in tiers[env]:
            tiers[env].append(tier)
    return [[sys.executable, "-m", "rewardlab.cli.main", "dataset", "make", "--env", env,
             "--tiers", ",".join(ts), "--version", str(DATASET_VERSION),
             "--backbone", dataset_backbone(env), "--no-progress"]
            for env, ts in tiers.items()]


def missing_datasets(datasets: list[str]) -> list[str]:
    """The datasets of ``datasets`` not on this machine, complete (``MINARI_DATASETS_PATH``)."""
    from rewardlab.data.offline import METADATA_KEY, dataset_metadata
    from rewardlab.errors import MissingDatasetError

    missing = []
    for d in datasets:
        try:
            own = dataset_metadata(dataset_id(d)).get(METADATA_KEY)
        except MissingDatasetError:
            own = None
        if not isinstance(own, dict) or not own.get("complete"):
            missing.append(d)
    return missing


def make_datasets(datasets: list[str], dry_run: bool = False, workers: int = 1) -> int:
    """Run :func:`dataset_make_commands` (cached: a complete tier is reused), ``workers`` at a
    time, each pinned to a core of its own (of this process's cores, in order) with one
    thread: a machine that starts without the datasets makes the three envs' in about half
    the wall time with ``workers=2``. A failed command does not stop the others.

    Returns:
        0, or the exit code of the first command (in order) that failed."""
    from rewardlab.data.offline import datasets_root

    print(f"datasets under {datasets_root()} (MINARI_DATASETS_PATH)", flush=True)
    commands = dataset_make_commands(datasets)
    if dry_run:
        for cmd in commands:
            print(f"would run: {shlex.join(['rewardlab', *cmd[3:]])}")
        return 0
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    slots = max(1, min(workers, len(cores)))
    free: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    for core_id in (cores[:slots] if slots > 1 else [None]):
        free.put(core_id)

    def run_one(cmd: list[str]) -> int:
        shown = shlex.join(["rewardlab", *cmd[3:]])
        pin = free.get()  # a core no other running command holds (None: not pinned)
        try:
            print(f"{core.utc_now()}: {shown}" + ("" if pin is None else f" (core {pin})"),
                  flush=True)
            code = subprocess.run(
                cmd, env={**os.environ, **core.THREAD_ENV},
                preexec_fn=None if pin is None else functools.partial(
                    os.sched_setaffinity, 0, {pin})).returncode
        finally:
            free.put(pin)
        print(f"{shown} failed with exit code {code}" if code else
              f"{core.utc_now()}: done {shown}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=slots) as pool:
        codes = list(pool.map(run_one, commands))
    return next((c for c in codes if c), 0)


# ----------------------------------------------------------------------------- aggregate

def _group(k: dict[str, Any]) -> tuple[str, str, int, int]:
    return (k["dataset"], k["method"], k["queries"], k["updates"])


def final_scores(runs: dict[str, dict[str, Any]]) -> dict[tuple, dict[int, float]]:
    """``{(dataset, method, queries, updates): {seed: normalised score}}`` at each run's final
    evaluation (runs without a normalised score, e.g. a dataset without reference scores,
    left out)."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for key, run in runs.items():
        if run["evals"] and run["evals"][-1].get("normalized_score") is not None:
            k = parse_key(key)
            out[_group(k)][k["seed"]] = float(run["evals"][-1]["normalized_score"])
    return dict(out)


def aggregate(records: list[dict[str, Any]], reps: int = fe.BOOTSTRAP_REPS
              ) -> list[dict[str, Any]]:
    """The result rows, one per (dataset, method, queries, updates) with finished runs.

    Each row: ``task`` (env), ``dataset`` (``env/tier``), ``dataset_id``, ``method``,
    ``queries``, ``updates``, ``seeds``, ``normalized_score_per_seed``,
    ``gold_return_per_seed``, ``normalized_score_iqm``/``ci_low``/``ci_high`` (IQM and 95%
    stratified-bootstrap CI, ``fe.iqm_ci``), ``true_reward_reference`` (the IQM of
    ``iql_true`` on the dataset with as many updates; None without one), ``ratio_to_true``
    (IQM / reference; None when the reference is missing or not positive), ``target`` and
    ``meets_target`` (:data:`TARGETS`, else None), the mean reward-model accuracies and the
    mean wall time.
    """
    runs = fe.completed_runs(records)
    scores = final_scores(runs)
    rows: list[dict[str, Any]] = []
    for group in sorted(scores, key=lambda g: (g[0], list(METHODS).index(g[1])
                                               if g[1] in METHODS else 99, g[2], g[3])):
        dataset, method, queries, updates = group
        seeds = sorted(scores[group])
        per_seed = [scores[group][s] for s in seeds]
        iqm, lo, hi = fe.iqm_ci(per_seed, reps=reps)
        finished = [runs[run_key(dataset, method, queries, updates, s)] for s in seeds]
        accs = defaultdict(list)
        for run in finished:
            for name, value in (run["done"].get("reward_model") or {}).items():
                if value is not None:
                    accs[name].append(value)
        rows.append({
            "task": dataset.split("/")[0], "dataset": dataset,
            "dataset_id": finished[0]["done"].get("dataset_id"), "method": method,
            "queries": queries, "updates": updates, "seeds": seeds,
            "normalized_score_per_seed": per_seed,
            "gold_return_per_seed": [float(r["evals"][-1]["gold_return"]) for r in finished],
            "normalized_score_iqm": iqm, "ci_low": lo, "ci_high": hi,
            "dataset_generations": generations_of(seeds, finished),
            "heldout_accuracy": _mean(accs.get("reward_model/heldout_accuracy")),
            "random_pair_accuracy": _mean(accs.get("reward_model/random_pair_accuracy")),
            "heldout_ece": _mean(accs.get("reward_model/heldout_ece")),
            "wall_time_s": _mean([r["done"].get("wall_time_s") for r in finished
                                  if r["done"].get("wall_time_s") is not None])})
    refs = {(r["dataset"], r["updates"]): r["normalized_score_iqm"] for r in rows
            if r["method"] == REFERENCE}
    for r in rows:
        # CPL runs its own update budget: its reference is the dataset's iql_true row with
        # the most updates
        ref = refs.get((r["dataset"], r["updates"]))
        if ref is None and r["method"] == "cpl":
            same = [(u, v) for (d, u), v in refs.items() if d == r["dataset"]]
            ref = max(same)[1] if same else None
        r["true_reward_reference"] = ref
        r["ratio_to_true"] = (None if ref is None or ref <= 0
                              else r["normalized_score_iqm"] / ref)
        target = TARGETS.get((r["method"], r["queries"]))
        r["target"] = target
        r["meets_target"] = (None if target is None or r["ratio_to_true"] is None
                             else r["ratio_to_true"] >= target)
    return rows


def dataset_generation(done: dict[str, Any]) -> str:
    """Which generation of its dataset a run's ``done`` record used: the dataset's size and
    its behaviour's normalised score (to 6 decimals), which every record carries (the content
    hash, ``dataset_fingerprint``, only those written since it existed). The datasets are made
    locally, so a machine that makes them again may make other data."""
    score = done.get("dataset_normalized_score")
    return (f"{done.get('dataset_steps')} steps, behaviour score "
            f"{'?' if score is None else f'{score:.6f}'}")


def generations_of(seeds: list[int], finished: list[dict[str, Any]]) -> dict[str, list[int]]:
    """``{dataset generation: seeds}`` of one row's finished runs (:func:`dataset_generation`
    of each run's ``done`` record), generations sorted."""
    out: dict[str, list[int]] = defaultdict(list)
    for seed, run in zip(seeds, finished, strict=True):
        out[dataset_generation(run["done"])].append(seed)
    return dict(sorted(out.items()))


def local_generation(dataset: str) -> str:
    """:func:`dataset_generation` of the dataset ``ENV/TIER`` as it is on this machine (under
    ``MINARI_DATASETS_PATH``): its size and :meth:`OfflineDataset.behaviour_score`, as a run's
    summary records them.

    Raises:
        rewardlab.errors.DatasetError: if the dataset is not on this machine."""
    from rewardlab.data.offline import load_offline_dataset

    data = load_offline_dataset(dataset_id(dataset))
    return dataset_generation({"dataset_steps": data.n_steps,
                               "dataset_normalized_score": data.behaviour_score()})


def other_generation_runs(keys: list[str], current: dict[str, dict[str, Any]],
                          local: Callable[[str], str] | None = None) -> dict[str, str]:
    """``{key: generation it used}`` of the finished runs among ``keys`` whose dataset
    generation differs from the one on this machine (``local(dataset)``, default
    :func:`local_generation`, read once per dataset). ``--rerun-other-generations`` runs them
    again, so every method of a seed uses one generation and the ratio to ``iql_true``
    compares methods on the same data.

    Raises:
        rewardlab.errors.DatasetError: as :func:`local_generation`."""
    here = functools.cache(local or local_generation)
    out = {}
    for key in keys:
        if key in current:
            used = dataset_generation(current[key]["done"])
            if used != here(parse_key(key)["dataset"]):
                out[key] = used
    return out


def generations_note(rows: list[dict[str, Any]]) -> str | None:
    """A sentence naming each dataset whose runs used more than one generation of it
    (:func:`dataset_generation`) and the seeds on each; None when every dataset's runs used
    one."""
    seen: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        for gen, seeds in (r.get("dataset_generations") or {}).items():
            seen[r["dataset"]][gen].update(seeds)
    mixed = {d: g for d, g in sorted(seen.items()) if len(g) > 1}
    if not mixed:
        return None
    return ("Datasets made again: the runs of " + " and ".join(
        f"{d} used {len(g)} generations of it: " + "; ".join(
            f"{gen} (seeds {', '.join(map(str, sorted(seeds)))})"
            for gen, seeds in sorted(g.items()))
        for d, g in mixed.items())
        + ". Each generation was made by the same command and recipe "
        "(`rewardlab dataset make`); the seeds of a row are pooled across them.")


def _mean(values: list[float] | None) -> float | None:
    return None if not values else float(sum(values) / len(values))


def winners(rows: list[dict[str, Any]], queries: int = 500) -> dict[str, str]:
    """Per dataset, the method with the highest normalised IQM among the learned ones
    (``iql_mlp``, ``iql_pt``, ``cpl``) at ``queries`` queries."""
    best: dict[str, tuple[float, str]] = {}
    for r in rows:
        if r["method"] != REFERENCE and r["queries"] == queries:
            if r["dataset"] not in best or r["normalized_score_iqm"] > best[r["dataset"]][0]:
                best[r["dataset"]] = (r["normalized_score_iqm"], r["method"])
    return {d: m for d, (_, m) in sorted(best.items())}


def grid_cells() -> list[tuple[str, str, int, int]]:
    """The issue's grid as ``(dataset, method, queries, updates)`` cells: every dataset x
    method x budget of :data:`METHOD_QUERIES` at :data:`IQL_UPDATES` (:data:`CPL_UPDATES` for
    CPL); each cell is run for every seed of :data:`FULL_SEEDS`."""
    return [(d, m, q, CPL_UPDATES if m == "cpl" else IQL_UPDATES)
            for d in DATASETS for m, qs in METHOD_QUERIES.items() for q in qs]


def _cell(row: dict[str, Any]) -> tuple[str, str, int, int]:
    return row["dataset"], row["method"], row["queries"], row["updates"]


def grid_complete(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` fill every cell of :func:`grid_cells` with all of :data:`FULL_SEEDS`."""
    have = {_cell(r) for r in rows if set(r["seeds"]) >= set(FULL_SEEDS)}
    return all(cell in have for cell in grid_cells())


def compute_note(rows: list[dict[str, Any]]) -> str | None:
    """A sentence on the grid's compute, from the rows of :func:`aggregate`.

    Measured: the sum of the finished runs' wall times in seconds (each run pinned to one
    core, so wall time is CPU time; a run that shared its core counts its longer wall time;
    the times are as recorded, on whichever host ran each run). Projected: every cell of
    :func:`grid_cells` at its mean run time so far, times :data:`FULL_SEEDS`; a cell with no
    finished run yet is left out and the sentence says so.

    Args:
        rows: aggregate rows with ``dataset``, ``method``, ``queries``, ``updates``, ``seeds``
            and ``wall_time_s`` (the mean over the row's runs, or None).

    Returns:
        The sentence, or None when no row has a wall time.
    """
    timed = [r for r in rows if r.get("wall_time_s") is not None]
    if not timed:
        return None
    runs = sum(len(r["seeds"]) for r in timed)
    done_h = sum(r["wall_time_s"] * len(r["seeds"]) for r in timed) / 3600
    text = (f"Measured compute: the {runs} finished runs above took {done_h:.1f} CPU-hours "
            "(one core per run; wall time = CPU time)")
    cells = {_cell(r): r["wall_time_s"] for r in timed}
    grid = grid_cells()
    known = [cells[c] for c in grid if c in cells]
    if known:
        text += (f"; at each cell's mean run time so far the issue's grid of "
                 f"{len(grid) * len(FULL_SEEDS)} runs takes about "
                 f"{sum(known) * len(FULL_SEEDS) / 3600:.1f} CPU-hours")
        if len(known) < len(grid):
            text += f" ({len(grid) - len(known)} of its {len(grid)} cells not timed yet, left out)"
    return text + "."


# ----------------------------------------------------------------------------- report

NOTES = [
    "Normalised score: D4RL's, 100 x (G - random) / (expert - random), G the mean true return "
    f"of {EVAL_EPISODES} deterministic-policy episodes at the run's final evaluation, random "
    "and expert the dataset's `ref_min_score`/`ref_max_score` (a uniformly random policy and "
    "the expert that made the dataset, `rewardlab dataset make`). IQM and 95% stratified-"
    "bootstrap CI over seeds with `rliable`. Reference: the IQM of `iql_true` (IQL on the "
    "dataset's true reward) on the same dataset; ratio = IQM / reference.",
    "Methods: `iql_mlp` IQL on the MLP-ensemble reward (disagreement-based selection), `iql_pt` "
    "IQL on the Preference Transformer reward (uniform selection), `cpl` Contrastive Preference "
    "Learning (no reward model, uniform selection, so the same pairs as `iql_pt` at the same "
    "seed); every budget from the `oracle` teacher in "
    f"{ROUNDS} rounds of {SEGMENT_LEN}-step segments before the first update. The learned "
    "reward is rescaled as IQL does for D4RL locomotion (`offline.normalize_rewards`).",
    f"Short runs, sized for the grid to fit in about 12 CPU-hours (the arithmetic is in "
    f"`benchmarks/offline.py`'s docstring): IQL {IQL_UPDATES:,} gradient updates (the paper: "
    f"1,000,000), CPL {CPL_UPDATES:,} (each over 96 pairs of 2 x 50 steps; BC for the first "
    f"{int(CPL_BC_FRACTION * 100)}%).",
]


def render_section(rec: dict[str, Any]) -> str:
    begin, end = core.section_markers(SECTION)
    sel, rows = rec["selection"], rec["rows"]
    lines = [begin, *fe.grid_header(rec, TITLE, "offline.py"),
             f"- Selection: datasets {', '.join(sel['datasets'])}; methods "
             f"{', '.join(sel['methods'])}; seeds {', '.join(map(str, sel['seeds']))}; "
             f"{sel['updates']} IQL updates, {sel['cpl_updates']} CPL updates"]
    if not rec.get("grid_complete"):
        lines.append("- **Not the issue's full grid yet**: read these rows as the cells "
                     "filled so far.")
    lines += ["",
              "| task | dataset | method | queries | updates | seeds | normalised score IQM "
              "| 95% CI | true-reward reference | ratio to true | target | reward model "
              "held-out acc. |",
              "|---|---|---|---:|---:|---|---:|---|---:|---:|---|---:|"]
    for r in rows:
        verdict = ("—" if r["meets_target"] is None else
                   f"{'meets' if r['meets_target'] else 'misses'} >= {r['target']:.2f}")
        lines.append(
            f"| {r['task']} | {r['dataset'].split('/')[1]} | {r['method']} | "
            f"{r['queries'] or '—'} | {r['updates']} | {', '.join(map(str, r['seeds']))} | "
            f"{fe._f(r['normalized_score_iqm'], 1)} | "
            f"{_ci1(r['ci_low'], r['ci_high'])} | {fe._f(r['true_reward_reference'], 1)} | "
            f"{fe._f(r['ratio_to_true'])} | {verdict} | {fe._f(r['heldout_accuracy'])} |")
    if not rows:
        lines.append("| — | no finished run yet | | | | | | | | | | |")
    best = winners(rows)
    if best:
        lines += ["", "Best learned method at 500 queries: "
                  + "; ".join(f"{d}: `{m}`" for d, m in best.items()) + "."]
    for note in rec["notes"]:
        lines += ["", note]
    lines += ["", end]
    return "\n".join(lines)


def _ci1(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:.1f}, {hi:.1f}]"


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), help="ENV/TIER")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--queries", nargs="+", type=int, default=None,
                   help="query budgets of every learned method (default: the issue's, "
                   "iql_mlp 100 and 500, iql_pt and cpl 500)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(FULL_SEEDS))
    p.add_argument("--updates", type=int, default=IQL_UPDATES, help="IQL gradient updates")
    p.add_argument("--cpl-updates", type=int, default=CPL_UPDATES, help="CPL gradient updates")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help="runs at once (Ray Tune trials, 1 CPU each)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (ray.init address)")
    p.add_argument("--no-ray", action="store_true",
                   help="run the runs one after another in this process instead of on Ray")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--make-datasets", action="store_true",
                   help="first run `rewardlab dataset make` for the selected datasets (cached)")
    p.add_argument("--rerun-other-generations", action="store_true",
                   help="run again the selected finished runs that used another generation of "
                   "their dataset than the one on this machine (datasets made again elsewhere "
                   "can differ), so each seed's methods share one generation")
    p.add_argument("--dry-run", action="store_true",
                   help="list the selected runs and their config overrides; run nothing")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; aggregate the finished runs of the selection")
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    p.add_argument("--bootstrap-reps", type=int, default=fe.BOOTSTRAP_REPS)
    p.add_argument("--records", type=Path, default=None,
                   help="JSONL record file (default: benchmarks/results/offline_runs.jsonl)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers: at least 1")
    for d in args.datasets:
        if d.count("/") != 1:
            p.error(f"--datasets: expected ENV/TIER such as HalfCheetah-v5/medium-replay, "
                    f"got {d!r}")
    return args


def selected_keys(args: argparse.Namespace) -> list[str]:
    """Run keys of the selection, seed by seed and dataset by dataset with the reference
    first, so that a selection cut short holds whole seeds."""
    keys = []
    for seed in args.seeds:
        for d in args.datasets:
            for m in sorted(args.methods, key=lambda m: m != REFERENCE):
                budgets = ((0,) if m == REFERENCE else
                           tuple(args.queries) if args.queries else METHOD_QUERIES[m])
                updates = args.cpl_updates if m == "cpl" else args.updates
                keys += [run_key(d, m, q, updates, seed) for q in budgets]
    return list(dict.fromkeys(keys))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("offline.py", argv)
    out_dir = args.out_dir.resolve()
    jsonl = (args.records or RESULTS_DIR / f"{SECTION}_runs.jsonl").resolve()
    keys = selected_keys(args)
    overrides = {key: key_overrides(key) for key in keys}  # refuse bad selections first
    if args.make_datasets and not args.aggregate_only:
        code = make_datasets(args.datasets, dry_run=args.dry_run,
                             workers=1 if args.no_ray else args.workers)
        if code:
            return code
    found = fe.read_records(jsonl)
    done, current = fe.completed_runs(found), fe.current_runs(found, planned_settings)
    stale = fe.stale_runs({k: done[k] for k in keys if k in done and k not in current},
                          planned_settings)
    other_gen: dict[str, str] = {}
    if args.rerun_other_generations and not args.aggregate_only:
        from rewardlab.errors import DatasetError

        try:
            other_gen = other_generation_runs(keys, current)
        except DatasetError as err:
            print(f"--rerun-other-generations: {err}", flush=True)
            return 2
    todo = [] if args.aggregate_only else [k for k in keys
                                           if k not in current or k in other_gen]
    n_done = sum(k in current and k not in other_gen for k in keys)
    if args.dry_run:
        for key in keys:
            state = ("done" if key in current and key not in other_gen else
                     f"done on another generation ({other_gen[key]}), runs again"
                     if key in other_gen else "to run" if key not in stale else
                     f"stale, runs again: differs in {', '.join(stale[key][:4])}")
            print(f"{key} [{state}]: {shlex.join(overrides[key])}")
        print(f"{len(keys)} runs selected, {n_done} done, {len(todo)} to run; "
              f"records in {jsonl}; nothing run (--dry-run)")
        return 0
    if todo:
        missing = missing_datasets(sorted({parse_key(k)["dataset"] for k in todo}))
        if missing:
            makes = "; ".join(shlex.join(["rewardlab", *c[3:]])
                              for c in dataset_make_commands(missing))
            print(f"missing datasets: {', '.join(missing)}; make them with --make-datasets "
                  f"(or: {makes})", flush=True)
            return 2
    print(f"{core.utc_now()}: {len(keys)} runs selected, {n_done} done, {len(todo)} to run "
          f"({'in this process' if args.no_ray else 'on Ray Tune'}, "
          f"{1 if args.no_ray else args.workers} at a time); records in {jsonl}", flush=True)
    if todo:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.no_ray:
            fe.run_in_process(todo, out_dir, jsonl, run_trial)
        else:
            from rewardlab.errors import RewardLabError

            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            try:
                run_on_ray(todo, out_dir, jsonl, args.workers, args.address,
                           f"{SECTION}-{stamp}")
            except RewardLabError as err:  # e.g. a worker died; the finished runs still count
                print(f"Ray: {err}", flush=True)
    records = fe.read_records(jsonl)
    finished = fe.current_runs(records, planned_settings)
    failed = [k for k in todo if k not in finished]
    selection = set(keys)
    chosen = [r for r in records if r.get("run") in selection]
    for key, diff in sorted(fe.stale_runs({k: v for k, v in fe.completed_runs(chosen).items()
                                           if k not in finished}, planned_settings).items()):
        print(f"left out (stale: differs in {', '.join(diff[:4])}): {key}", flush=True)
    chosen = fe.current_records(chosen, planned_settings)
    rows = aggregate(chosen, reps=args.bootstrap_reps)
    rec = {"command": command, "section": SECTION, "written_utc": core.utc_now(),
           "machine": core.machine_info(), "workers": 1 if args.no_ray else args.workers,
           "runner": fe.runner_name(args),
           "jsonl": os.path.relpath(jsonl, REPO),
           "selection": {"datasets": args.datasets, "methods": args.methods,
                         "queries": args.queries, "seeds": args.seeds,
                         "updates": args.updates, "cpl_updates": args.cpl_updates},
           "sizing": {"iql_updates": IQL_UPDATES, "cpl_updates": CPL_UPDATES,
                      "eval_points": EVAL_POINTS, "eval_episodes": EVAL_EPISODES},
           "runs_selected": len(keys), "runs_completed": len(fe.completed_runs(chosen)),
           "reference_method": REFERENCE, "grid_complete": grid_complete(rows),
           "winners_500": winners(rows), "rows": rows,
           "notes": [*NOTES, *filter(None, [compute_note(rows), generations_note(rows)])],
           "format_version": 1}
    for r in rows:
        print(f"{r['dataset']} {r['method']} q{r['queries']} u{r['updates']}: IQM "
              f"{fe._f(r['normalized_score_iqm'], 1)} {_ci1(r['ci_low'], r['ci_high'])}, "
              f"ratio to true {fe._f(r['ratio_to_true'])}, seeds {r['seeds']}", flush=True)
    if failed:
        print(f"{len(failed)} run(s) failed (see above): {', '.join(failed)}", flush=True)
    if args.no_write:
        print(render_section(rec))
    else:
        results = RESULTS_DIR / f"{SECTION}.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(rec, indent=2) + "\n")
        core.write_markdown_section(core.BENCHMARKS_MD, *core.section_markers(SECTION),
                                    render_section(rec))
        print(f"wrote {os.path.relpath(results, REPO)} and BENCHMARKS.md", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
