"""Sweeps: a grid of config overrides times seeds, run as Ray Tune trials.

Each trial is an ordinary run directory (``OUT/<trial>/``, resumable like any run) trained by
:func:`rewardlab.algorithms.train`. Ray Tune schedules the trials: on a local Ray instance by
default (as many at once as ``max_concurrent``, one CPU and one torch thread each), or on an
existing cluster given its address. Every trial config is validated before anything starts; a
trial whose run already finished is not run again, so a sweep stopped half-way continues where
it stopped. The finished trials' figures land in ``OUT/records.jsonl``, one JSON row per trial
(``trial``, ``overrides``, ``seed``, ``run_dir``, ``final_gold_return``, ...), the record format
the benchmark aggregation reads.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardlab.config import SweepConfig, TrainConfig, build_config
from rewardlab.errors import ConfigError

RECORDS = "records.jsonl"


def trial_specs(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every trial of ``sweep``: grid points in order, times seeds.

    Returns:
        Dicts with ``name`` (e.g. ``"feedback.total_budget=100,teacher.preset=oracle,seed=0"``)
        and ``overrides`` (``--set`` strings, seed last).
    """
    keys = list(sweep.grid)
    specs = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        for seed in sweep.seeds:
            overrides = [f"{k}={json.dumps(v)}" for k, v in zip(keys, values, strict=True)]
            overrides.append(f"seed={seed}")
            specs.append({"name": ",".join(overrides), "overrides": overrides})
    return specs


def trial_config(sweep: SweepConfig, spec: dict[str, Any]) -> TrainConfig:
    """The validated config of one trial (no progress bar, one torch thread).

    Raises:
        ConfigError: naming the trial and the field.
    """
    try:
        return build_config(sweep.base, [*spec["overrides"], "progress_bar=false",
                                         "torch_threads=1"])
    except ConfigError as err:
        raise ConfigError(f"sweep trial {spec['name']}: {err}") from None


def checked_trial_config(sweep: SweepConfig, spec: dict[str, Any]) -> TrainConfig:
    """:func:`trial_config`, then the checks ``rewardlab train`` makes before it starts
    (:func:`rewardlab.algorithms.preflight.preflight`: the env, segments against episodes, a
    query budget the schedule can spend before ``total_steps``, memory, the store; an offline
    trial's dataset), so a trial that ``train`` would refuse stops the sweep before any trial
    runs. A language-model trial has only its config checks, as in ``train``.

    Raises:
        ConfigError: naming the trial and the field.
    """
    from rewardlab.algorithms.preflight import preflight, with_dataset_env

    config = trial_config(sweep, spec)
    if config.is_lm:
        return config
    try:
        preflight(with_dataset_env(config))
    except ConfigError as err:
        raise ConfigError(f"sweep trial {spec['name']}: {err}") from None
    return config


def trial_dir(out: Path, spec: dict[str, Any]) -> Path:
    """The run directory of a trial: its name with unsafe characters replaced."""
    return out / re.sub(r"[^A-Za-z0-9._=,-]+", "_", spec["name"])


def _finished(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return None if summary.get("interrupted") else summary


def _run_trial(tune_config: dict[str, Any]) -> None:
    """The Ray Tune trainable: train one trial into its run directory and report its end."""
    import torch
    from ray import tune
    from rich.console import Console

    from rewardlab.algorithms import train

    torch.set_num_threads(1)
    params = tune_config["params"]
    spec, run_dir = params["spec"], Path(params["run_dir"])
    config = trial_config(SweepConfig.model_validate(params["sweep"]), spec)
    resume = (run_dir / "config.yaml").exists()
    summary = train(config, run_dir, resume=resume, console=Console(quiet=True))
    final = summary.get("final_eval") or {}
    tune.report({"final_gold_return": final.get("eval/gold_return"),
                 "steps": summary["steps"]})


def record_of(spec: dict[str, Any], run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The records.jsonl row of a finished trial."""
    final = summary.get("final_eval") or {}
    seed = int(spec["overrides"][-1].split("=", 1)[1])
    return {
        "trial": spec["name"], "overrides": spec["overrides"][:-1], "seed": seed,
        "run_dir": str(run_dir), "algorithm": summary["algorithm"], "env": summary["env"],
        "steps": summary["steps"], "wall_time_s": summary["wall_time_s"],
        "final_gold_return": final.get("eval/gold_return"),
        "final_proxy_return": final.get("eval/proxy_return"),
        "queries": summary["store"]["queries"],
    }


def run_on_ray(
    trainable: Callable[[dict[str, Any]], None], params: list[dict[str, Any]], name: str,
    storage: Path, max_concurrent: int, cpus_per_trial: float, address: str | None = None,
    env_vars: dict[str, str] | None = None, log_to_driver: bool = False,
) -> None:
    """Run ``trainable({"params": p})`` for every ``p`` in ``params`` as Ray Tune trials.

    A local Ray instance with ``max_concurrent * cpus_per_trial`` CPUs is started (and shut
    down) unless Ray is already initialised or ``address`` names a cluster. Trials get one
    BLAS/OpenMP thread, the caller's ``MUJOCO_GL`` and ``env_vars``; their output reaches this
    process's console only with ``log_to_driver`` (of a Ray this call starts).

    Raises:
        ConfigError: if the cluster at ``address`` cannot be reached.
        RewardLabError: if Ray is not installed (``pip install rewardlab[sweep]``) or a trial
            failed.
    """
    from rewardlab.errors import RewardLabError

    try:
        import ray
        from ray import tune
    except ImportError:
        raise RewardLabError(
            "rewardlab sweep needs Ray Tune: pip install 'rewardlab[sweep]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=log_to_driver,
                     num_cpus=None if address else max(1, int(max_concurrent * cpus_per_trial)),
                     runtime_env={"env_vars": {
                         "OMP_NUM_THREADS": "1",
                         "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), **(env_vars or {})}})
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(
                f"--address: cannot connect to the Ray cluster {address!r} ({err}); "
                "give a running cluster's address, or none for a local Ray"
            ) from None
    try:
        results = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus_per_trial}),
            param_space={"params": tune.grid_search(params)},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
        ).fit()
    finally:
        if started:
            ray.shutdown()
    failed = [r for r in results if r.error is not None]
    if failed:
        raise RewardLabError(f"{len(failed)} trial(s) failed; first: {failed[0].error}")


def run_sweep(
    sweep: SweepConfig, out: str | Path, address: str | None = None,
    message: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every unfinished trial of ``sweep`` on Ray Tune; write and return the records.

    Args:
        sweep: the validated sweep.
        out: where the trials' run directories and ``records.jsonl`` go.
        address: an existing Ray cluster (``ray.init(address=...)``); ``None`` starts a local
            instance with ``max_concurrent * cpus_per_trial`` CPUs.
        message: prints a status line.

    Returns:
        One record per finished trial (also written to ``OUT/records.jsonl``).

    Raises:
        ConfigError: if a trial's config is invalid or ``rewardlab train`` would refuse it
            (:func:`checked_trial_config`), or ``out`` is a file (before anything
            starts), or the cluster at ``address`` cannot be reached.
        RewardLabError: if Ray is not installed (``pip install rewardlab[sweep]``) or a trial
            failed.
    """
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    specs = trial_specs(sweep)
    for spec in specs:
        checked_trial_config(sweep, spec)  # every trial is valid before anything starts
    todo = [s for s in specs if _finished(trial_dir(out, s)) is None]
    message(f"sweep {sweep.name}: {len(specs)} trials, {len(specs) - len(todo)} already "
            f"finished -> {out}")
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        params = [{"spec": s, "run_dir": str(trial_dir(out, s)),
                   "sweep": sweep.model_dump(mode="json")} for s in todo]
        run_on_ray(_run_trial, params, sweep.name, out / "ray", sweep.max_concurrent,
                   sweep.cpus_per_trial, address)
    records = []
    for spec in specs:
        run_dir = trial_dir(out, spec)
        summary = _finished(run_dir)
        if summary is not None:
            records.append(record_of(spec, run_dir, summary))
    tmp = out / (RECORDS + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, out / RECORDS)
    return records
