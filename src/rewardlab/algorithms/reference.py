"""The reference every preference run is judged against: the same agent on the true reward.

Issue-style normalised scores ((G - R) / (S - R), Lee et al. 2021's "B-Pref" protocol) need S,
the return of the very agent PEBBLE trains (``pebble.backbone`` with the ``pebble.sac``
settings) when it is given the environment's own reward from step 0: no teacher, no reward
model, no unsupervised pre-training. :func:`train_true_reward` runs it with the run's derived
seeds and the same evaluation protocol (``eval.every``, ``eval.episodes``, deterministic policy,
the ``eval_env`` seed stream, an evaluation at step 0), and writes ``metrics.jsonl`` rows with
the same ``eval/gold_return`` keys and a ``result.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from rewardlab.algorithms.backbones import build_agent, limit_jax_threads
from rewardlab.config import TrainConfig, dump_config
from rewardlab.diagnostics.evaluation import evaluate
from rewardlab.envs.make import make_env
from rewardlab.errors import RunDirError
from rewardlab.seeding import child_seeds


def train_true_reward(
    config: TrainConfig, run_dir: str | Path,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.pebble.backbone`` on the true reward for ``config.total_steps`` env steps.

    Args:
        config: a PEBBLE run config; its ``env``, ``seed``, ``total_steps``, ``eval`` and
            ``pebble.backbone``/``pebble.sac`` sections are used, the feedback sections ignored.
        run_dir: a new directory (``config.yaml``, ``metrics.jsonl``, ``result.json``).
        on_eval: called with each evaluation row (e.g. to print progress).

    Returns:
        The ``result.json`` content: ``evals`` (rows with ``step``, ``eval/gold_return``, ...),
        ``final_eval``, ``wall_time_s`` (seconds, evaluations included), ``seeds``.

    Raises:
        RunDirError: if ``run_dir`` already holds a ``result.json``.
    """
    import torch

    run = Path(run_dir)
    if (run / "result.json").exists():
        raise RunDirError(f"{run} already holds a finished reference run; choose a new run_dir")
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.torch_threads)
    if config.pebble.backbone != "sac":
        limit_jax_threads(config.torch_threads)
    (run / "config.yaml").write_text(dump_config(config))
    seeds = child_seeds(config.seed)  # the same derived streams a PEBBLE run uses
    sac = config.pebble.sac.model_copy(
        update={"buffer_size": min(config.pebble.sac.buffer_size, config.total_steps)})
    t0 = time.perf_counter()
    venv = make_vec_env(lambda: make_env(config.env), n_envs=1, seed=seeds["env"])
    model = build_agent(config.pebble.backbone, sac, venv, seeds["agent"])
    eval_env = make_env(config.env)

    def policy(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    evals: list[dict[str, Any]] = []
    with (run / "metrics.jsonl").open("w") as metrics:
        step = 0
        while True:
            res = evaluate(eval_env, policy, None, config.eval.episodes, seed=seeds["eval_env"])
            row = {"step": step, "eval/gold_return": float(res.gold_returns.mean()),
                   "eval/gold_return_std": float(res.gold_returns.std()),
                   "eval/gold_returns": [float(g) for g in res.gold_returns],
                   "eval/episode_length": float(res.lengths.mean()),
                   "time/elapsed_s": time.perf_counter() - t0}
            evals.append(row)
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            if on_eval is not None:
                on_eval(row)
            if step >= config.total_steps:
                break
            chunk = min(config.eval.every, config.total_steps - step)
            model.learn(chunk, reset_num_timesteps=False, progress_bar=False)
            step = model.num_timesteps
    venv.close()
    eval_env.close()
    result = {"method": "true_reward", "backbone": config.pebble.backbone, "env": config.env.id,
              "seed": config.seed, "steps": step, "total_steps": config.total_steps,
              "wall_time_s": time.perf_counter() - t0, "final_eval": evals[-1], "evals": evals,
              "seeds": seeds}
    (run / "result.json").write_text(json.dumps(result, indent=2))
    return result
