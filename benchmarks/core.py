"""Core RewardLab benchmarks: the default job, and PEBBLE versus SAC-on-true-reward on HalfCheetah.

Usage::

    python benchmarks/core.py [--part default|halfcheetah|all] [--seeds 0 1 2] [--workers 2]
                              [--out-dir benchmarks/runs] [--records FILE] [--smoke]
                              [--no-write] [--set KEY=VALUE ...]

Parts:

* ``default``: the default config (``rewardlab train`` with no overrides except
  ``progress_bar=false torch_threads=1 seed=S``), plus a uniformly random policy on the same env
  as a reference.
* ``halfcheetah``: PEBBLE on HalfCheetah-v5 (100k env steps, 500 oracle queries) next to
  Stable-Baselines3 SAC trained on the true reward with the same SAC hyperparameters, the same
  derived seeds (:func:`rewardlab.seeding.child_seeds`) and the same evaluation protocol
  (:func:`rewardlab.diagnostics.evaluation.evaluate`, deterministic policy, same episodes and
  eval steps).

Every run writes to ``<out-dir>/<part>/<method>-s<seed>/``. The script is resumable: a run whose
``summary.json`` (PEBBLE) or ``result.json`` (SAC) exists is not rerun; an unfinished run
directory is deleted and the run started again from scratch. Each finished run also appends its
figures and its whole config, in one line, to ``--records`` (default
``benchmarks/results/core_runs.jsonl``, committed): on a machine without the run directory a
recorded run with the same config (:func:`same_run`) is not rerun either, and its recorded
figures go into the table, so a measurement spread over several sessions (and machines) adds
up. Results go to ``benchmarks/results/core.json`` and to the ``core`` section of
``BENCHMARKS.md`` (between ``<!-- core:begin -->`` and ``<!-- core:end -->``), unless
``--smoke`` or ``--no-write`` is given (then only ``<out-dir>/core.json`` and
``<out-dir>/core-preview.md`` are written). ``--set KEY=VALUE`` (repeatable) adds a config
override to every run, for an ablation of the defaults; it implies ``--no-write``, and with
``--records benchmarks/results/core_runs.jsonl`` its runs are recorded there, so that if the
override later becomes the default the recorded runs count for the defaults' table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: One BLAS/OpenMP/XLA thread per process, JAX on the CPU: set (unless already set) at import,
#: so inherited by spawned workers, and before any jax import; Ray workers get them as env_vars.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_PLATFORMS": "cpu",
}
for _var, _value in THREAD_ENV.items():
    os.environ.setdefault(_var, _value)

REPO = Path(__file__).resolve().parent.parent
RESULTS_JSON = REPO / "benchmarks" / "results" / "core.json"
#: One ``done`` line per finished run (:func:`run_record`), so runs outlive their directories.
RECORDS = REPO / "benchmarks" / "results" / "core_runs.jsonl"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
BEGIN, END = "<!-- core:begin -->", "<!-- core:end -->"
MD_HEADER = (
    "# RewardLab benchmarks\n\n"
    "Every table below is written by the script named beside it; do not edit the numbers by "
    "hand.\n"
)

PARTS = ("default", "halfcheetah")
RANDOM_EPISODES = 10
RANDOM_SEED = 0

BASE = ["progress_bar=false", "torch_threads=1"]
HALFCHEETAH = [
    "env.id=HalfCheetah-v5", "total_steps=100000", "feedback.total_budget=500",
    "feedback.queries_per_round=50", "feedback.round_every=5000", "feedback.first_round_at=5000",
    "feedback.segment_len=50", "pebble.unsupervised_steps=5000", "eval.every=10000",
    "eval.episodes=5", "checkpoint_every=50000", "log_capacity=100000",
    # PEBBLE's 3 x 256 reward model fit in minibatches of 128, with which this part was
    # measured (RewardLab's default for PEBBLE is 3 x 128 in minibatches of 32 since:
    # rewardlab.config.RewardModelConfig)
    "reward_model.hidden_sizes=[256, 256, 256]", "reward_model.batch_size=128",
]
#: Shrinks either part to a couple of minutes (smoke test only; never reported).
SMOKE = [
    "total_steps=3000", "pebble.unsupervised_steps=1000", "feedback.first_round_at=1000",
    "feedback.round_every=1000", "eval.every=1000", "checkpoint_every=3000",
    # the two rounds due before step 3000 (preflight refuses a budget they cannot spend)
    "feedback.queries_per_round=20", "feedback.total_budget=40",
]


@dataclass(frozen=True)
class Job:
    """One benchmark run."""

    part: str
    #: "pebble" (rewardlab.train), "true_reward" (the same agent on the gold reward) or
    #: "sac_true_reward" (SB3 SAC on the gold reward)
    method: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: str

    @property
    def name(self) -> str:
        return f"{self.part}/{self.method}-s{self.seed}"


def part_overrides(part: str, smoke: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """The config overrides of ``part``, then ``extra`` (``--set``; ``seed=S`` is appended per
    run)."""
    base = HALFCHEETAH if part == "halfcheetah" else []
    return [*base, *BASE, *(SMOKE if smoke else []), *extra]


def make_jobs(parts: list[str], seeds: list[int], out_dir: Path, smoke: bool,
              extra: tuple[str, ...] = ()) -> list[Job]:
    """Longest runs first (HalfCheetah), so two workers finish at about the same time.
    ``extra``: overrides (``--set KEY=VALUE``) added to every run of every part, after the
    part's own."""
    jobs = []
    for part in sorted(parts, key=lambda p: p != "halfcheetah"):
        methods = (["pebble", "sac_true_reward"] if part == "halfcheetah"
                   else ["pebble", "true_reward"])
        for seed in seeds:
            for method in methods:
                run_dir = out_dir / part / f"{method}-s{seed}"
                jobs.append(Job(part, method, seed,
                                (*part_overrides(part, smoke, extra), f"seed={seed}"),
                                str(run_dir)))
    return jobs


# ----------------------------------------------------------------------------- machine

#: Vector extensions named after the CPU model, widest first: a virtual machine reports
#: "AMD EPYC" for hosts that differ by about 2x in this code's speed (AVX-512 or not).
SIMD_LEVELS = ("avx512_bf16", "avx512f", "avx2", "avx")


def simd_level(flags: str) -> str | None:
    """The widest of :data:`SIMD_LEVELS` among ``/proc/cpuinfo``'s ``flags`` (None: none)."""
    present = set(flags.split())
    return next((level for level in SIMD_LEVELS if level in present), None)


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``, else ``platform.processor()``), followed by its
    widest vector extension in parentheses when ``/proc/cpuinfo`` lists one, e.g.
    ``"AMD EPYC (avx2)"``."""
    name, level = "", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not name and key.strip().lower() == "model name":
                name = value.strip()
            elif level is None and key.strip().lower() == "flags":
                level = simd_level(value)
    except OSError:
        pass
    name = name or platform.processor() or "unknown"
    return f"{name} ({level})" if level else name


#: Distributions whose versions decide a run's numbers beside torch's (simulation, JAX agents,
#: datasets): recorded with each run, since two hosts with other versions of these make, e.g.,
#: other offline datasets from the same command and seed.
NUMERIC_LIBRARIES = ("numpy", "jax", "jaxlib", "flax", "sbx-rl", "stable-baselines3", "mujoco",
                     "gymnasium", "minari")


def library_versions() -> dict[str, str | None]:
    """``{distribution: version}`` of :data:`NUMERIC_LIBRARIES` (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    def one(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {name: one(name) for name in NUMERIC_LIBRARIES}


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_model(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
    }


def git_state() -> dict[str, Any]:
    """The commit and the uncommitted changes under ``src/`` (the code a run used)."""
    import subprocess

    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "src_changes": git("status", "--porcelain", "--", "src").splitlines()}


def command_line(script: str, argv: list[str] | None) -> str:
    """The command a benchmark table records: ``python <sys.argv>`` when run from the shell,
    ``python benchmarks/<script> <argv>`` when ``main(argv)`` is called directly."""
    return shlex.join(["python", *(sys.argv if argv is None else
                                   [f"benchmarks/{script}", *argv])])


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------- workers

def pin_worker() -> None:
    """Pool initializer: one torch thread per worker, and the worker pinned to a core no other
    benchmark process holds (:func:`claim_core`).

    XLA's CPU client keeps an Eigen thread pool however ``XLA_FLAGS`` are set (seen as
    ``tf_XLAEigen`` threads taking ~0.3 core each beside the main thread), so one core per
    process is enforced with the CPU affinity.
    """
    import torch

    torch.set_num_threads(1)
    claim_core()


#: Where :func:`claim_core` keeps its lock files, ``rewardlab-core-<i>.lock``.
CORE_LOCK_DIR = Path("/tmp")
_claimed: tuple[int, Any] | None = None  # (core, open lock file) of this process


def claim_core(lock_dir: Path | None = None) -> int | None:
    """Pin this process to a CPU core no other claimant holds; return it (None: not pinned).

    Tries the cores of ``os.sched_getaffinity(0)`` in order and takes the first whose lock
    file ``<lock_dir>/rewardlab-core-<i>.lock`` it can lock (exclusive, non-blocking
    ``fcntl.flock``); the file stays open, so the lock holds for the life of the process and
    is released by the kernel when it ends, however it ends. Every thread of the process is
    pinned to that core (threads started later inherit it). A second call in the same process
    returns the core of the first. If every core is taken, or the platform has no CPU
    affinity, nothing is pinned and None is returned.
    """
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    if not hasattr(os, "sched_getaffinity"):
        return None
    import fcntl

    lock_dir = CORE_LOCK_DIR if lock_dir is None else Path(lock_dir)
    for index in sorted(os.sched_getaffinity(0)):
        try:
            lock = (lock_dir / f"rewardlab-core-{index}.lock").open("a")
        except OSError:  # e.g. another user's lock file: not ours to take
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process
            lock.close()
            continue
        _claimed = (index, lock)
        _pin_all_threads(index)
        return index
    return None


def _pin_all_threads(index: int) -> None:
    """Set the CPU affinity of every thread of this process to ``{index}``."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]  # the calling thread
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {index})
        except OSError:  # a thread that ended meanwhile
            pass


def _done_file(job: Job) -> Path:
    name = "summary.json" if job.method == "pebble" else "result.json"
    return Path(job.run_dir) / name


#: Config sections a reference run (the agent on the true reward) does not read.
UNUSED_BY_REFERENCE = ("feedback", "teacher", "human", "reward_model", "mitigation", "ppo",
                       "teacher_bias", "store_url", "checkpoint_every", "log_capacity",
                       "record_render_states", "progress_bar")


def same_run(job: Job, found: Any, expected: Any) -> bool:
    """Whether a finished run's config ``found`` is the run ``job`` asks for: equal configs,
    or for a true-reward reference equal in every section it reads (so a change to, e.g.,
    the reward model does not redo the references)."""
    if job.method == "pebble":
        return found == expected
    drop = set(UNUSED_BY_REFERENCE)
    return found.model_dump(exclude=drop) == expected.model_dump(exclude=drop)


def is_done(job: Job) -> bool:
    if not _done_file(job).exists():
        return False
    if job.method == "pebble":
        summary = json.loads(_done_file(job).read_text())
        return not summary.get("interrupted", False)
    return True


def run_record(job: Job, row: dict[str, Any]) -> dict[str, Any]:
    """The ``done`` line of a finished run: its :func:`collect` figures (``row``) and the
    config it trained with, read from its ``config.yaml`` (the whole config, so a later run
    of the harness can tell with :func:`same_run` whether it is the run it asks for)."""
    import yaml

    config = yaml.safe_load((Path(job.run_dir) / "config.yaml").read_text())
    return {"kind": "done", "run": job.name, "part": job.part, "method": job.method,
            "seed": job.seed, "overrides": list(job.overrides), "config": config,
            "row": row, "recorded_utc": utc_now()}


def recorded_rows(jobs: list[Job], records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{job name: collected row}`` of the ``jobs`` with a ``done`` record made with the config
    the job asks for now (:func:`same_run`; keys a record predates are read as
    :func:`rewardlab.config.load_run_config` reads a saved config): the latest such record, so
    a later attempt with other settings does not hide it. A record whose config this version
    refuses is passed over."""
    from rewardlab.config import build_config, load_config, with_saved_run_defaults
    from rewardlab.errors import ConfigError

    by_name = {job.name: job for job in jobs}
    expected = {name: load_config(None, list(job.overrides)) for name, job in by_name.items()}
    out = {}
    for rec in records:
        job = by_name.get(rec.get("run")) if rec.get("kind") == "done" else None
        if job is None or "config" not in rec:
            continue
        try:
            found = build_config(with_saved_run_defaults(rec["config"]), None)
        except ConfigError:  # a config this version refuses: not the run asked for
            continue
        if same_run(job, found, expected[job.name]):
            out[job.name] = rec["row"]
    return out


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` as JSON lines with one ``write`` to a file opened ``O_APPEND``, then
    ``fsync``: a crash leaves whole lines, and two processes appending at once never
    interleave their lines (the record files of every harness)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (e.g. a signal); O_APPEND appends the rest
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def run_job(job: Job) -> dict[str, Any]:
    """Run one job in a worker process; everything is written to ``job.run_dir``."""
    import torch

    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    if run_dir.exists():  # an unfinished earlier attempt: start again from scratch
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    started = utc_now()
    if job.method == "pebble":
        _run_pebble(job, run_dir)
    else:
        _run_true_reward(job, run_dir)
    meta = {"job": job.name, "overrides": list(job.overrides), "started_utc": started,
            "finished_utc": utc_now(), "machine": machine_info(), "pid": os.getpid(),
            "torch_threads": torch.get_num_threads(), "git": git_state()}
    (run_dir / "bench.json").write_text(json.dumps(meta, indent=2))
    return collect(job)


def _run_pebble(job: Job, run_dir: Path) -> None:
    from rich.console import Console
    from rich.markup import escape

    from rewardlab.algorithms import train
    from rewardlab.config import load_config

    config = load_config(None, list(job.overrides))
    console = Console(stderr=True, width=120, force_terminal=False)
    # Prefix the library's status lines with the run name (two workers share one log).
    console.print = _prefixed(console.print, escape(f"[{job.name}]"))
    train(config, run_dir, console=console)


def _prefixed(fn: Any, prefix: str) -> Any:
    def wrapper(*objects: Any, **kwargs: Any) -> Any:
        return fn(prefix, *objects, **kwargs)

    return wrapper


def _run_true_reward(job: Job, run_dir: Path) -> None:
    """The same agent on the true reward (:func:`rewardlab.algorithms.reference.train_true_reward`):
    ``true_reward`` is ``pebble.backbone`` as configured, ``sac_true_reward`` SB3 SAC."""
    from rewardlab.algorithms.reference import train_true_reward
    from rewardlab.config import load_config

    overrides = list(job.overrides)
    if job.method == "sac_true_reward":
        overrides.append("pebble.backbone=sac")
    config = load_config(None, overrides)
    run_dir.rmdir()  # train_true_reward makes it

    def report(row: dict[str, Any]) -> None:
        print(f"[{job.name}] step {row['step']}: gold {row['eval/gold_return']:.1f}", flush=True)

    train_true_reward(config, run_dir, on_eval=report)


# ----------------------------------------------------------------------------- collect

def _num(x: Any) -> float | None:
    """A finite float, or None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def collect(job: Job) -> dict[str, Any]:
    """The figures of a finished run, read back from its directory."""
    run_dir = Path(job.run_dir)
    meta_path = run_dir / "bench.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    row: dict[str, Any] = {"part": job.part, "method": job.method, "seed": job.seed,
                           "run_dir": os.path.relpath(run_dir, REPO)}
    if job.method == "pebble":
        summary = json.loads((run_dir / "summary.json").read_text())
        evals = [r for r in _read_jsonl(run_dir / "metrics.jsonl") if "eval/gold_return" in r]
        row.update(
            env=summary["env"], steps=summary["steps"], wall_time_s=summary["wall_time_s"],
            queries=summary["store"]["queries"],
            queries_answered=summary["store"]["answered"],
            first_eval_step=evals[0]["step"] if evals else None,
            first_gold_return=_num(evals[0]["eval/gold_return"]) if evals else None,
            final_eval_step=evals[-1]["step"] if evals else None,
            final_gold_return=_num(summary["final_eval"].get("eval/gold_return")),
            final_proxy_return=_num(summary["final_eval"].get("eval/proxy_return")),
            final_heldout_accuracy=_num(
                summary["final_eval"].get("reward_model/heldout_accuracy")),
            gold_curve=[[r["step"], _num(r["eval/gold_return"])] for r in evals],
        )
    else:
        result = json.loads((run_dir / "result.json").read_text())
        evals = result["evals"]
        row.update(
            env=result["env"], steps=result["steps"], wall_time_s=result["wall_time_s"],
            queries=None, queries_answered=None,
            first_eval_step=evals[0]["step"], first_gold_return=evals[0]["eval/gold_return"],
            final_eval_step=evals[-1]["step"], final_gold_return=evals[-1]["eval/gold_return"],
            final_proxy_return=None, final_heldout_accuracy=None,
            gold_curve=[[r["step"], r["eval/gold_return"]] for r in evals],
        )
    row["finished_utc"] = meta.get("finished_utc") or dt.datetime.fromtimestamp(
        _done_file(job).stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    row["machine"] = meta.get("machine")
    return row


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def random_policy_reference(env_id: str) -> dict[str, Any]:
    """Gold return of a uniformly random policy (seeded resets and action sampling)."""
    return policy_reference(env_id, "random")


def policy_reference(env_id: str, kind: str) -> dict[str, Any]:
    """Gold return of a ``random`` (uniform, seeded) or ``do_nothing`` (zero action) policy
    over :data:`RANDOM_EPISODES` evaluation episodes with seeded resets."""
    import gymnasium as gym
    import numpy as np

    from rewardlab.diagnostics.evaluation import evaluate

    env = gym.make(env_id)
    env.action_space.seed(RANDOM_SEED)
    zero = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
    policy = ((lambda _obs: env.action_space.sample()) if kind == "random"
              else (lambda _obs: zero))
    res = evaluate(env, policy, None, RANDOM_EPISODES, seed=RANDOM_SEED)
    env.close()
    g = res.gold_returns
    return {"env": env_id, "policy": kind, "episodes": RANDOM_EPISODES, "seed": RANDOM_SEED,
            "gold_return_mean": float(g.mean()), "gold_return_std": float(g.std()),
            "gold_returns": [float(x) for x in g]}


def headline(rec: dict[str, Any]) -> dict[str, Any]:
    """The default job against its references (issue 11, item 3): ``final_gold_mean`` (PEBBLE,
    mean over seeds), ``true_reward_return`` (the same agent on the true reward, same steps),
    ``random_return``, ``do_nothing_return``, ``normalized_score`` = (G - R) / (S - R),
    ``wall_time_median_s`` (PEBBLE) and ``above_do_nothing``."""
    agg = rec["aggregates"]
    out: dict[str, Any] = {
        "random_return": rec["random_policy"]["gold_return_mean"],
        "do_nothing_return": rec["do_nothing_policy"]["gold_return_mean"],
    }
    pebble, true = agg.get("pebble", {}), agg.get("true_reward", {})
    if "final_gold_return" in pebble:
        out["final_gold_mean"] = pebble["final_gold_return"]["mean"]
        out["above_do_nothing"] = out["final_gold_mean"] > out["do_nothing_return"]
        walls = [w for w in pebble["wall_time_s"]["per_seed"].values() if w is not None]
        out["wall_time_median_s"] = statistics.median(walls)
    if "final_gold_return" in true:
        out["true_reward_return"] = true["final_gold_return"]["mean"]
    if "final_gold_mean" in out and "true_reward_return" in out:
        gap = out["true_reward_return"] - out["random_return"]
        out["normalized_score"] = ((out["final_gold_mean"] - out["random_return"]) / gap
                                   if gap > 0 else None)
    return out


# ----------------------------------------------------------------------------- aggregate

METRICS = ("wall_time_s", "first_gold_return", "final_gold_return", "final_proxy_return",
           "queries")


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean and sample std (n-1) over seeds of each figure, and each seed's value."""
    out: dict[str, dict[str, Any]] = {}
    for method in sorted({r["method"] for r in rows}):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
        agg: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for key in METRICS:
            vals = [r[key] for r in mine if r.get(key) is not None]
            if not vals:
                continue
            agg[key] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else None,
                "n": len(vals),
                "per_seed": {str(r["seed"]): r.get(key) for r in mine},
            }
        out[method] = agg
    return out


# ----------------------------------------------------------------------------- report

def _f(x: Any, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ms(agg: dict[str, Any], key: str, digits: int = 1) -> str:
    a = agg.get(key)
    if not a:
        return "—"
    if a["std"] is None:
        return f"{a['mean']:.{digits}f} (n={a['n']})"
    return f"{a['mean']:.{digits}f} ± {a['std']:.{digits}f}"


def render_part(part: str, rec: dict[str, Any]) -> str:
    lines = [f"### {'Default job' if part == 'default' else 'HalfCheetah-v5: PEBBLE vs SAC'}",
             ""]
    machines = {json.dumps(r["machine"], sort_keys=True) for r in rec["runs"] if r["machine"]}
    finished = sorted(r["finished_utc"] for r in rec["runs"])
    lines += [
        f"- Command: `{rec['command']}` (script `benchmarks/core.py`)",
        f"- Seeds: {', '.join(str(s) for s in rec['seeds'])}",
        f"- Date (UTC): table written {rec['written_utc']}; runs finished "
        f"{finished[0]} … {finished[-1]}" if finished else f"- Date (UTC): {rec['written_utc']}",
    ]
    for m in sorted(machines):
        info = json.loads(m)
        libs = "".join(f", {k} {v}" for k, v in (info.get("libraries") or {}).items() if v)
        lines.append(
            f"- Machine: {info['cpu']}, {info['cpu_count']} logical CPUs, torch {info['torch']}"
            f"{libs}, Python {info['python']} ({info['platform']}); each run pinned to a core "
            "of its own, 1 torch thread"
        )
    reused = rec.get("recorded_runs", 0)
    lines.append(
        f"- Runs: {len(rec['runs']) - reused} made by this invocation ({rec['workers']} at a "
        f"time), {reused} recorded by earlier ones in `benchmarks/results/core_runs.jsonl` "
        "(their wall times are from the machine each ran on, last column)"
        if reused else f"- Runs: all made by this invocation, {rec['workers']} at a time")
    lines.append(f"- Overrides: `{' '.join(rec['overrides'])}` (`seed=S` per run)")
    missing = rec.get("missing", [])
    if missing:
        lines.append(f"- Not completed (absent from the table): {', '.join(missing)}")
    lines.append("")
    lines.append("Per run:")
    lines.append("")
    if part == "default":
        lines += [
            "| method | seed | env | steps | queries | wall time (s) | gold return, first eval "
            "(step) | gold return, final eval (step) | proxy return, final | CPU |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rec["runs"]:
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['env']} | {r['steps']} | {r['queries']} | "
                f"{_f(r['wall_time_s'], 0)} | {_f(r['first_gold_return'])} "
                f"({r['first_eval_step']}) | {_f(r['final_gold_return'])} "
                f"({r['final_eval_step']}) | {_f(r['final_proxy_return'], 2)} | "
                f"{(r.get('machine') or {}).get('cpu', '—')} |"
            )
    else:
        lines += [
            "| method | seed | steps | queries | wall time (s) | gold return, final eval | "
            "proxy return, final |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rec["runs"]:
            q = "—" if r["queries"] is None else str(r["queries"])
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['steps']} | {q} | "
                f"{_f(r['wall_time_s'], 0)} | {_f(r['final_gold_return'])} | "
                f"{_f(r['final_proxy_return'], 2)} |"
            )
    lines += ["", "Mean ± sample std (n−1) over seeds:", "",
              "| method | seeds | wall time (s) | gold return, first eval | "
              "gold return, final eval | proxy return, final |",
              "|---|---|---:|---:|---:|---:|"]
    for method, agg in rec["aggregates"].items():
        lines.append(
            f"| {method} | {', '.join(map(str, agg['seeds']))} | {_ms(agg, 'wall_time_s', 0)} | "
            f"{_ms(agg, 'first_gold_return')} | {_ms(agg, 'final_gold_return')} | "
            f"{_ms(agg, 'final_proxy_return', 2)} |"
        )
    ref = rec.get("random_policy")
    if ref:
        lines += ["", f"Reference: a uniformly random policy on {ref['env']} scores a gold return "
                  f"of {ref['gold_return_mean']:.1f} ± {ref['gold_return_std']:.1f} (mean ± std "
                  f"over {ref['episodes']} episodes, seed {ref['seed']})."]
    still = rec.get("do_nothing_policy")
    if still:
        lines[-1] += (f" A do-nothing (zero-action) policy scores {still['gold_return_mean']:.1f} "
                      f"± {still['gold_return_std']:.1f}.")
    if "normalized_score" in rec:
        lines += ["", f"**Headline:** PEBBLE's final gold return {rec['final_gold_mean']:.1f} "
                  f"(mean over seeds) against {rec['true_reward_return']:.1f} for the same agent "
                  f"on the true reward at the same step: normalised score (G - R) / (S - R) = "
                  f"**{_f(rec['normalized_score'], 3)}** (R = random policy); "
                  f"{'above' if rec['above_do_nothing'] else 'not above'} the do-nothing "
                  f"policy; median wall time {rec['wall_time_median_s']:.0f} s per run."]
    note = ("Gold return = true environment return of the deterministic policy, mean over the "
            "eval episodes (`eval.episodes`); proxy return = the same episodes under the learned, "
            "normalised reward (PEBBLE only).")
    if "true_reward" in rec["aggregates"]:
        note += (" `true_reward` is the same agent (`pebble.backbone`, `pebble.sac` settings) "
                 "trained on the true reward from step 0, with the same seeds and eval protocol "
                 "(`rewardlab.algorithms.reference.train_true_reward`).")
    if "sac_true_reward" in rec["aggregates"]:
        note += (" `sac_true_reward` is SB3 SAC trained on the true reward with PEBBLE's SAC "
                 "hyperparameters, seeds and eval protocol.")
    lines += ["", note]
    return "\n".join(lines)


def render_section(results: dict[str, Any]) -> str:
    body = [BEGIN, "## Core benchmarks (`benchmarks/core.py`)", ""]
    for part in PARTS:
        if part in results.get("parts", {}):
            body += [render_part(part, results["parts"][part]), ""]
        else:
            label = "Default job" if part == "default" else "HalfCheetah-v5: PEBBLE vs SAC"
            body += [f"### {label}", "", "Not run yet.", ""]
    body.append(END)
    return "\n".join(body)


def write_markdown(path: Path, section: str) -> None:
    write_markdown_section(path, BEGIN, END, section)


def section_markers(name: str) -> tuple[str, str]:
    """The BENCHMARKS.md ``<!-- NAME:begin -->`` / ``<!-- NAME:end -->`` markers of a section."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_markdown_section(path: Path, begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` (or append the section).

    ``section`` includes both markers. Written atomically (a temporary file, then a rename).
    """
    text = path.read_text() if path.exists() else MD_HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=None,
                   help="run directories (default benchmarks/runs, or benchmarks/runs/smoke "
                   "with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny runs (total_steps=3000) for a quick check; implies --no-write")
    p.add_argument("--no-write", action="store_true",
                   help="do not touch benchmarks/results/core.json or BENCHMARKS.md")
    p.add_argument("--records", type=Path, default=None,
                   help="JSONL file each finished run is appended to, and recorded runs are "
                   "reused from (default benchmarks/results/core_runs.jsonl; "
                   "<out-dir>/core_runs.jsonl with --smoke or --no-write)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a config override added to every run (repeatable), for an ablation "
                   "of the defaults; implies --no-write, so the table of the defaults stays")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("core.py", argv)
    out_dir = args.out_dir or (REPO / "benchmarks" / "runs" / ("smoke" if args.smoke else ""))
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    write = not (args.smoke or args.no_write or args.overrides)
    extra = tuple(args.overrides)
    from rewardlab.config import load_config, load_run_config
    from rewardlab.errors import ConfigError

    if extra:  # checked here, before any run starts: a bad key names itself
        try:
            load_config(None, list(extra))
        except ConfigError as exc:
            print(f"--set: {exc}", flush=True)
            return 2
    records_path = (args.records or (RECORDS if write else out_dir / "core_runs.jsonl")).resolve()
    if records_path.is_dir():
        print(f"--records: {records_path} is a directory; give a JSONL file", flush=True)
        return 2
    os.chdir(out_dir)  # MuJoCo writes MUJOCO_LOG.TXT to the working directory: keep it here
    parts = list(PARTS) if args.part == "all" else [args.part]
    jobs = make_jobs(parts, args.seeds, out_dir, args.smoke, extra)
    recorded = recorded_rows(jobs, _read_jsonl(records_path))

    # Refuse to reuse a finished run made with another config (e.g. a smoke run).
    todo = []
    for job in jobs:
        if not is_done(job) and job.name in recorded:
            print(f"skip  {job.name}: recorded in {records_path.name} with the same config",
                  flush=True)
        elif is_done(job):
            expected = load_config(None, list(job.overrides))
            try:  # compared as configs (a field added since takes the value the run used)
                same = same_run(job, load_run_config(Path(job.run_dir) / "config.yaml"),
                                expected)
            except Exception:
                same = False
            if not same:
                print(f"ERROR {job.name}: {job.run_dir} holds a finished run with another config;"
                      " move it away or use another --out-dir", flush=True)
                return 2
            print(f"skip  {job.name}: already done ({_done_file(job).name} exists)", flush=True)
        else:
            todo.append(job)
    print(f"{utc_now()}: {len(todo)} of {len(jobs)} runs to do, {args.workers} workers, "
          f"out dir {out_dir}", flush=True)

    failed: list[str] = []
    t_start = time.perf_counter()
    if todo:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx,
                                 initializer=pin_worker) as pool:
            futures: dict[Future, Job] = {}
            for job in todo:
                futures[pool.submit(run_job, job)] = job
                print(f"queue {job.name} -> {job.run_dir}", flush=True)
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=60, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures[fut]
                    try:
                        r = fut.result()
                    except Exception:  # report it and go on with the other runs
                        failed.append(job.name)
                        print(f"FAILED {job.name}:\n{traceback.format_exc()}", flush=True)
                        continue
                    append_records(records_path, [run_record(job, r)])
                    print(
                        f"{utc_now()}: done {job.name}: {r['steps']} steps, "
                        f"{r['wall_time_s']:.0f} s, queries {r['queries']}, gold first "
                        f"{_f(r['first_gold_return'])} final {_f(r['final_gold_return'])}, "
                        f"proxy final {_f(r['final_proxy_return'], 2)} "
                        f"[{len(futures) - len(pending)}/{len(futures)} finished, "
                        f"{(time.perf_counter() - t_start) / 60:.1f} min]", flush=True)

    # Aggregate everything finished for the parts asked for.
    results: dict[str, Any] = {"parts": {}}
    target = RESULTS_JSON if write else out_dir / "core.json"
    if target.exists():
        results = json.loads(target.read_text())
        results.setdefault("parts", {})
    for part in parts:
        pjobs = [j for j in jobs if j.part == part]
        here = {j.name for j in pjobs if is_done(j)}  # run directories on this machine
        rows = [collect(j) if j.name in here else recorded[j.name] for j in pjobs
                if j.name in here or j.name in recorded]
        missing = [j.name for j in pjobs if j.name not in here and j.name not in recorded]
        if not rows:
            print(f"{part}: no finished runs; nothing recorded", flush=True)
            continue
        reused = len(rows) - len(here)
        prev = results["parts"].get(part)
        if (prev and not missing and not any(j in todo for j in pjobs)
                and prev.get("runs") == json.loads(json.dumps(rows))):
            # Nothing new: keep the record (and the command) of the invocation that ran them.
            print(f"{part}: no new runs; keeping the table written by `{prev['command']}`",
                  flush=True)
            prev["recorded_runs"] = reused
            continue
        rec: dict[str, Any] = {
            "command": command, "seeds": args.seeds, "workers": args.workers,
            "written_utc": utc_now(), "overrides": part_overrides(part, args.smoke, extra),
            "smoke": args.smoke, "runs": rows, "missing": missing,
            "recorded_runs": reused,
            "aggregates": aggregate(rows), "machine_writer": machine_info(),
        }
        if part == "default":
            rec["random_policy"] = random_policy_reference(rows[0]["env"])
            rec["do_nothing_policy"] = policy_reference(rows[0]["env"], "do_nothing")
            rec.update(headline(rec))
        elif part == "halfcheetah":
            rec["random_policy"] = random_policy_reference("HalfCheetah-v5")
        results["parts"][part] = rec
        for method, agg in rec["aggregates"].items():
            print(f"{part}/{method}: final gold {_ms(agg, 'final_gold_return')}, "
                  f"wall {_ms(agg, 'wall_time_s', 0)} s, seeds {agg['seeds']}", flush=True)
    results["format_version"] = 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    section = render_section(results)
    if write:
        write_markdown(BENCHMARKS_MD, section)
        print(f"wrote {os.path.relpath(target, REPO)} and BENCHMARKS.md", flush=True)
    else:
        (out_dir / "core-preview.md").write_text(section + "\n")
        print(f"wrote {target} and {out_dir / 'core-preview.md'} (BENCHMARKS.md untouched)",
              flush=True)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
