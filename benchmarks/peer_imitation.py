"""RewardLab's preference PPO against imitation 1.0.1's preference comparisons, side by side.

Usage::

    python benchmarks/peer_imitation.py [--env Pendulum-v1] [--steps 100000] [--comparisons 200]
                                        [--seeds 0 1 2 3 4] [--eval-episodes 20] [--no-write]

Both sides learn a reward from ``--comparisons`` synthetic preferences of a perfect oracle on the
true reward (Christiano et al. 2017) while training Stable-Baselines3 PPO on it for ``--steps``
env steps, with the SAME PPO hyperparameters (``PPO_SETTINGS``; SB3's default 64 x 64 MlpPolicy):
on Pendulum-v1 RL-zoo's tuned ones (rl-baselines3-zoo ``hyperparams/ppo.yml``); on HalfCheetah-v4
RewardLab's PPOConfig defaults, since RL-zoo's tuned HalfCheetah PPO needs observation and reward
normalisation (VecNormalize) and policy settings (log_std_init, ortho_init, ReLU) that RewardLab's
PPOConfig does not have. HalfCheetah is v4 on both sides: imitation's pinned gymnasium 0.29 has no
v5 (and needs ``gymnasium[mujoco]==0.29.1`` with ``mujoco==3.1.6`` in its venv, installed by
:func:`imitation_venv.ensure_imitation_venv`). Segments are the same length on both sides
(``--segment-len``, 100 as in imitation's tutorial).

* RewardLab: :func:`rewardlab.algorithms.train` with ``algorithm=pref_ppo``, the ``oracle``
  teacher, ``torch_threads=1``; queries spread evenly: ``--comparisons / QUERY_ROUNDS`` per round,
  ``QUERY_ROUNDS`` rounds evenly spaced over the run, the first after the first PPO rollout
  (RewardLab defaults otherwise: its reward ensemble and disagreement-based query selection).
* imitation 1.0.1, following its tutorial "Learning a Reward Function using Preference
  Comparisons" (Pendulum-v1): ``BasicRewardNet`` with ``RunningNorm`` input normalisation,
  ``PreferenceModel``, ``RandomFragmenter``, ``SyntheticGatherer`` (``temperature=0``: the
  deterministic oracle, like RewardLab's), ``BasicRewardTrainer`` with ``CrossEntropyRewardLoss``
  (3 epochs), ``AgentTrainer`` (exploration_frac 0.05) and
  ``PreferenceComparisons(...).train(total_timesteps, total_comparisons)`` with the tutorial's
  schedule (10% of the comparisons first, the rest on a hyperbolic schedule). imitation trains
  the agent ``num_iterations + 1`` times (once more after the initial comparisons) for
  ``total_timesteps // num_iterations`` steps each, and SB3 PPO always finishes a rollout; so
  ``num_iterations`` is the number of PPO rollouts in the budget minus one and
  ``total_timesteps`` is ``num_iterations`` rollouts: every iteration trains exactly one rollout
  and both sides take the same env steps (``steps`` in each run record, read from the agent).
  It runs in its own virtualenv (:mod:`imitation_venv`) as a subprocess of this script
  (``--side imitation``).

Measured per run: the true return of the final policy (mean and std over ``--eval-episodes``
deterministic episodes on a fresh gymnasium env, reset seeds ``EVAL_SEED + 1000 * seed + i``,
the same protocol and code on both sides) and the wall time of the whole training call (setting
up and training, imports, virtualenv creation and the final evaluation excluded). The runs go one
after another, alternating sides per seed, each in a fresh process with one torch thread and one
BLAS/OpenMP thread. Every finished run is appended to
``benchmarks/results/peer_imitation_runs.jsonl`` (kept in git); a rerun skips runs already there
with the same settings. Results go to ``benchmarks/results/peer_imitation.json`` and to the
``peer_imitation`` section of ``BENCHMARKS.md`` (HalfCheetah-v4: ``peer_imitation_halfcheetah``;
``--reward-model matched``: ``_matched`` appended) unless ``--no-write``.

``--reward-model matched`` gives RewardLab imitation's reward-learning budget (its reward
network's width and epochs per round, :data:`REWARD_MODELS`) and runs both sides again: the
default comparison shows RewardLab's recipe against imitation's, the matched one the two
implementations at equal reward-learning compute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# benchmarks/core.py (stdlib-only at import); importing it also pins one BLAS/OpenMP thread
from core import (  # noqa: E402
    BENCHMARKS_MD,
    REPO,
    command_line,
    git_state,
    machine_info,
    section_markers,
    utc_now,
    write_markdown_section,
)
from imitation_venv import (  # noqa: E402
    IMITATION_VENV,
    IMITATION_VERSION,
    ensure_imitation_venv,
    run_side,
)

RESULTS_DIR = REPO / "benchmarks" / "results"
#: Finished runs, one JSON line each (small; kept in git so a comparison can be re-aggregated).
RUNS_FILE = RESULTS_DIR / "peer_imitation_runs.jsonl"
#: Results-file stem and BENCHMARKS.md section name per env (``_matched`` appended for
#: ``--reward-model matched``).
SECTIONS = {"Pendulum-v1": "peer_imitation", "HalfCheetah-v4": "peer_imitation_halfcheetah"}
#: RewardLab's reward model per ``--reward-model``: ``default`` (PEBBLE's ensemble, trained to
#: 97% accuracy each round) or ``matched`` to imitation's tutorial reward learning: its reward
#: network's width (BasicRewardNet: 32 x 32) and its epochs per round (``reward_epochs``: 3);
#: RewardLab keeps its 3-member ensemble and disagreement-based query selection.
REWARD_MODELS: dict[str, tuple[str, ...]] = {
    "default": (),
    "matched": ("reward_model.hidden_sizes=[32,32]", "reward_model.max_epochs=3"),
}
SIDES = ("rewardlab", "imitation")
EVAL_SEED = 100_000
#: RewardLab asks its queries in this many equal rounds, after each of the first rollouts.
QUERY_ROUNDS = 20
#: PEBBLE's schedule (``--rewardlab-method pebble``): the feedback-efficiency harness's.
PEBBLE_ROUNDS, PEBBLE_PRETRAIN_FRACTION, PEBBLE_MIN_PRETRAIN = 10, 0.05, 1000

#: PPO hyperparameters per env; both sides use them unchanged.
PPO_SETTINGS: dict[str, dict[str, Any]] = {
    # RL-zoo's tuned ones (rl-baselines3-zoo hyperparams/ppo.yml, "# Tuned"); batch_size is
    # SB3's default there
    "Pendulum-v1": {
        "n_envs": 4, "n_steps": 1024, "batch_size": 64, "gae_lambda": 0.95, "gamma": 0.9,
        "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2,
        "use_sde": True, "sde_sample_freq": 4,
    },
    # RewardLab's PPOConfig defaults (SB3's, but 4 envs x 512 steps)
    "HalfCheetah-v4": {
        "n_envs": 4, "n_steps": 512, "batch_size": 64, "gae_lambda": 0.95, "gamma": 0.99,
        "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 3e-4, "clip_range": 0.2,
        "use_sde": False, "sde_sample_freq": -1,
    },
}
PPO_SOURCE = {
    "Pendulum-v1": "RL-zoo's tuned settings (rl-baselines3-zoo hyperparams/ppo.yml)",
    "HalfCheetah-v4": "RewardLab's PPOConfig defaults (RL-zoo's tuned HalfCheetah PPO needs "
    "VecNormalize and policy settings RewardLab's PPOConfig lacks)",
}
NET_ARCH = (64, 64)  # SB3's default MlpPolicy for PPO (separate policy and value networks)

#: imitation's tutorial settings (docs/tutorials/5_train_preference_comparisons.ipynb).
IMITATION_TUTORIAL = {
    "reward_net": "BasicRewardNet(normalize_input_layer=RunningNorm)",
    "reward_epochs": 3, "exploration_frac": 0.05, "transition_oversampling": 1,
    "initial_comparison_frac": 0.1, "initial_epoch_multiplier": 4,
    "query_schedule": "hyperbolic", "fragmenter": "RandomFragmenter(warning_threshold=0)",
    "gatherer": "SyntheticGatherer(temperature=0)",
    "reward_hidden_sizes": [32, 32],  # BasicRewardNet's default hid_sizes
}


# ----------------------------------------------------------------------------- shared

def rollout_size(env_id: str) -> int:
    """Env steps per PPO rollout (``n_envs * n_steps``)."""
    hp = PPO_SETTINGS[env_id]
    return hp["n_envs"] * hp["n_steps"]


def num_rollouts(env_id: str, steps: int) -> int:
    """PPO rollouts needed to reach ``steps`` env steps (SB3 finishes the last one)."""
    return math.ceil(steps / rollout_size(env_id))


def imitation_iterations(env_id: str, steps: int) -> int:
    """imitation's ``num_iterations`` for one PPO rollout per agent training (see module doc)."""
    return max(1, num_rollouts(env_id, steps) - 1)


def query_rounds(env_id: str, steps: int, comparisons: int) -> int:
    """RewardLab's feedback rounds: ``QUERY_ROUNDS``, fewer if the run has fewer rollouts
    (a round falls after each rollout but the last) or fewer comparisons.

    Raises:
        ValueError: if ``comparisons`` does not split into equal rounds.
    """
    rounds = min(QUERY_ROUNDS, comparisons, max(1, num_rollouts(env_id, steps) - 1))
    if comparisons % rounds:
        raise ValueError(f"--comparisons ({comparisons}) must split into {rounds} equal rounds")
    return rounds


def evaluate_policy(predict: Any, env_id: str, seed: int, episodes: int) -> dict[str, Any]:
    """True return of the deterministic policy ``predict(obs) -> action`` on a fresh env.

    Episode ``i`` resets with seed ``EVAL_SEED + 1000 * seed + i``. Runs on either side's
    gymnasium (0.29 in the imitation venv; Pendulum-v1 is the same there).

    Returns:
        ``{"return_mean", "return_std", "episodes", "returns"}`` (undiscounted true returns).
    """
    import gymnasium as gym
    import numpy as np

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + 1000 * seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(predict(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    arr = np.asarray(returns)
    return {"return_mean": float(arr.mean()), "return_std": float(arr.std()),
            "episodes": episodes, "returns": returns}


# ----------------------------------------------------------------------------- sides

def section_name(env_id: str, reward_model: str, method: str = "pref_ppo") -> str:
    """Results-file stem and BENCHMARKS.md section of a comparison."""
    return (SECTIONS[env_id] + ("" if method == "pref_ppo" else f"_{method}")
            + ("" if reward_model == "default" else f"_{reward_model}"))


def rewardlab_overrides(env_id: str, seed: int, steps: int, comparisons: int,
                        segment_len: int, reward_model: str = "default") -> list[str]:
    """``--set`` overrides of the RewardLab run (RewardLab defaults for everything else;
    ``reward_model``: a key of :data:`REWARD_MODELS`)."""
    hp = PPO_SETTINGS[env_id]
    rollout = rollout_size(env_id)
    rounds = query_rounds(env_id, steps, comparisons)
    per_round = comparisons // rounds
    every = rollout * max(1, (num_rollouts(env_id, steps) - 1) // rounds)
    ppo = [f"ppo.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in hp.items()]
    return [
        "algorithm=pref_ppo", f"env.id={env_id}", f"seed={seed}", f"total_steps={steps}",
        "torch_threads=1", "progress_bar=false", "teacher=oracle",
        *ppo, f"ppo.net_arch=[{','.join(map(str, NET_ARCH))}]",
        f"feedback.total_budget={comparisons}", f"feedback.queries_per_round={per_round}",
        f"feedback.round_every={every}", f"feedback.first_round_at={rollout}",
        f"feedback.segment_len={segment_len}",
        # one in-run evaluation (1 episode) and one checkpoint, both at the end: the final
        # policy is read back from the checkpoint and evaluated outside the timed call
        f"eval.every={steps}", "eval.episodes=1", f"checkpoint_every={steps}",
        *REWARD_MODELS[reward_model],
    ]


def pebble_overrides(env_id: str, seed: int, steps: int, comparisons: int, segment_len: int,
                     reward_model: str = "default") -> list[str]:
    """``--set`` overrides of a RewardLab PEBBLE run: its defaults (the CrossQ backbone, the
    reward ensemble, disagreement-based queries), with the feedback-efficiency harness's
    schedule scaled to ``steps`` (:data:`PEBBLE_PRETRAIN_FRACTION` of the steps, at least
    :data:`PEBBLE_MIN_PRETRAIN`, of unsupervised pre-training, then :data:`PEBBLE_ROUNDS`
    equal query rounds evenly spaced over the rest).

    Raises:
        ValueError: if ``steps`` cannot hold the schedule or ``comparisons`` does not split
            into equal rounds.
    """
    unsup = max(PEBBLE_MIN_PRETRAIN, int(steps * PEBBLE_PRETRAIN_FRACTION))
    if steps < 2 * unsup:
        raise ValueError(f"--rewardlab-steps {steps}: too few for PEBBLE's schedule; use at "
                         f"least {2 * unsup}")
    if comparisons % PEBBLE_ROUNDS:
        raise ValueError(f"--comparisons ({comparisons}) must split into {PEBBLE_ROUNDS} equal "
                         "rounds")
    return [
        "algorithm=pebble", f"env.id={env_id}", f"seed={seed}", f"total_steps={steps}",
        "torch_threads=1", "progress_bar=false", "teacher=oracle",
        f"feedback.total_budget={comparisons}",
        f"feedback.queries_per_round={comparisons // PEBBLE_ROUNDS}",
        f"feedback.round_every={(steps - unsup) // PEBBLE_ROUNDS}",
        f"feedback.first_round_at={unsup}", f"pebble.unsupervised_steps={unsup}",
        f"feedback.segment_len={segment_len}",
        f"eval.every={steps}", "eval.episodes=1", f"checkpoint_every={steps}",
        *REWARD_MODELS[reward_model],
    ]


def rewardlab_side(env_id: str, seed: int, steps: int, comparisons: int, segment_len: int,
                   episodes: int, run_dir: Path, reward_model: str = "default",
                   method: str = "pref_ppo", rewardlab_steps: int | None = None
                   ) -> dict[str, Any]:
    """One RewardLab run (``method``: preference PPO, or PEBBLE for ``rewardlab_steps``); the
    timed call is :func:`rewardlab.algorithms.train`."""
    if method == "pebble":
        return pebble_side(env_id, seed, rewardlab_steps or steps, comparisons, segment_len,
                           episodes, run_dir, reward_model)
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from rewardlab.algorithms import train
    from rewardlab.algorithms.checkpoint import load_sb3
    from rewardlab.algorithms.pref_ppo import build_ppo
    CHECKPOINT_DIR = "checkpoints/latest"
    from rewardlab.config import build_config

    torch.set_num_threads(1)
    config = build_config({}, rewardlab_overrides(env_id, seed, steps, comparisons,
                                                  segment_len, reward_model))
    t0 = time.perf_counter()
    summary = train(config, run_dir)
    wall = time.perf_counter() - t0
    # the final policy, restored from the run's final checkpoint into a fresh PPO
    model = build_ppo(config.ppo, make_vec_env(env_id, n_envs=config.ppo.n_envs, seed=seed), seed)
    load_sb3(model, run_dir / CHECKPOINT_DIR)
    ev = evaluate_policy(lambda o: model.predict(o, deterministic=True)[0], env_id, seed,
                         episodes)
    return {**ev, "wall_s": wall, "steps": int(summary["steps"]),
            "comparisons": int(summary["store"]["queries"]),
            "feedback_seconds": summary["feedback"]["seconds"],
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def pebble_side(env_id: str, seed: int, steps: int, comparisons: int, segment_len: int,
                episodes: int, run_dir: Path, reward_model: str = "default") -> dict[str, Any]:
    """One RewardLab PEBBLE run (:func:`pebble_overrides`), its final policy restored from
    the run's last checkpoint and evaluated outside the timed call."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from rewardlab.algorithms import train
    from rewardlab.algorithms.backbones import build_agent, load_agent
    from rewardlab.config import build_config

    torch.set_num_threads(1)
    config = build_config({}, pebble_overrides(env_id, seed, steps, comparisons, segment_len,
                                               reward_model))
    t0 = time.perf_counter()
    summary = train(config, run_dir)
    wall = time.perf_counter() - t0
    sac = config.pebble.sac.model_copy(update={"buffer_size": 1000})
    model = build_agent(config.pebble.backbone, sac, make_vec_env(env_id, n_envs=1, seed=seed),
                        seed)
    load_agent(model, run_dir / "checkpoints/latest")
    ev = evaluate_policy(lambda o: model.predict(o, deterministic=True)[0], env_id, seed,
                         episodes)
    return {**ev, "wall_s": wall, "steps": int(summary["steps"]),
            "comparisons": int(summary["store"]["queries"]),
            "feedback_seconds": summary["feedback"]["seconds"],
            "backbone": config.pebble.backbone,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def imitation_side(env_id: str, seed: int, steps: int, comparisons: int, segment_len: int,
                   episodes: int, run_dir: Path, reward_model: str = "default") -> dict[str, Any]:
    """One imitation 1.0.1 preference-comparisons run (inside the imitation venv).

    Follows imitation's tutorial; the timed part builds the components and calls
    ``PreferenceComparisons.train``. Imports nothing from RewardLab. ``reward_model`` (which
    RewardLab reward model this run is compared with) changes nothing here.
    """
    import imitation
    import numpy as np
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util import logger as imit_logger
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    hp = dict(PPO_SETTINGS[env_id])
    n_envs = hp.pop("n_envs")
    iterations = imitation_iterations(env_id, steps)
    t = IMITATION_TUTORIAL
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    venv = make_vec_env(env_id, rng=rng, n_envs=n_envs)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space,
                                normalize_input_layer=RunningNorm)
    fragmenter = pc.RandomFragmenter(warning_threshold=0, rng=rng)
    gatherer = pc.SyntheticGatherer(temperature=0, rng=rng)
    preference_model = pc.PreferenceModel(reward_net)
    reward_trainer = pc.BasicRewardTrainer(
        preference_model=preference_model, loss=pc.CrossEntropyRewardLoss(),
        epochs=t["reward_epochs"], rng=rng)
    agent = PPO("MlpPolicy", venv, **hp, policy_kwargs={"net_arch": list(NET_ARCH)},
                seed=seed, device="cpu", verbose=0)
    trajectory_generator = pc.AgentTrainer(
        algorithm=agent, reward_fn=reward_net, venv=venv,
        exploration_frac=t["exploration_frac"], rng=rng)
    logger = imit_logger.configure(str(run_dir), ["log"])
    pref = pc.PreferenceComparisons(
        trajectory_generator, reward_net, num_iterations=iterations, fragmenter=fragmenter,
        preference_gatherer=gatherer, reward_trainer=reward_trainer,
        fragment_length=segment_len, transition_oversampling=t["transition_oversampling"],
        initial_comparison_frac=t["initial_comparison_frac"], allow_variable_horizon=False,
        initial_epoch_multiplier=t["initial_epoch_multiplier"],
        query_schedule=t["query_schedule"], custom_logger=logger)
    pref.train(total_timesteps=iterations * rollout_size(env_id),
               total_comparisons=comparisons)
    wall = time.perf_counter() - t0
    ev = evaluate_policy(lambda o: agent.predict(o, deterministic=True)[0], env_id, seed,
                         episodes)
    return {**ev, "wall_s": wall, "steps": int(agent.num_timesteps),
            "comparisons": len(pref.dataset), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "imitation": imitation.__version__}


# ----------------------------------------------------------------------------- runs

def run_key(rec: dict[str, Any]) -> tuple:
    """What makes two run records the same run (for resuming). Each comparison
    (``reward_model``, and the hidden widths RewardLab's reward model had: a changed default
    starts a new comparison) runs both sides, so that they share a run of the script."""
    return (rec["side"], rec["env"], rec["seed"], rec["budget_steps"], rec["budget_comparisons"],
            rec["segment_len"], rec["eval_episodes"], rec.get("reward_model", "default"),
            rec.get("rewardlab_method", "pref_ppo"), rec.get("rewardlab_steps"),
            rewardlab_widths(rec))


def rewardlab_widths(rec: dict[str, Any]) -> tuple[int, ...] | None:
    """The hidden widths of RewardLab's reward model in the comparison ``rec`` belongs to
    (``None`` for records made before they were recorded)."""
    widths = rec.get("rewardlab_hidden_sizes")
    return None if widths is None else tuple(widths)


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The run records in the JSONL file ``path`` (none if missing); later duplicates win."""
    if not path.exists():
        return []
    by_key: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            by_key[run_key(rec)] = rec
    return list(by_key.values())


def schedule(seeds: list[int]) -> list[tuple[str, int]]:
    """Run order: seed by seed, alternating which side goes first (``(side, seed)`` pairs)."""
    order = []
    for i, seed in enumerate(seeds):
        sides = SIDES if i % 2 == 0 else SIDES[::-1]
        order += [(side, seed) for side in sides]
    return order


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-side medians over runs and whether RewardLab beats imitation on both.

    Args:
        runs: run records with ``side``, ``seed``, ``return_mean``, ``wall_s`` (and more).

    Returns:
        ``{side: {"median_return", "median_wall_s", "runs": [...]}}`` for each side present
        (runs sorted by seed), plus ``"target_met"`` (RewardLab's median return higher AND
        median wall time lower; None unless both sides have runs) and the ``"return_gap"``
        (RewardLab minus imitation, median return) and ``"wall_ratio"`` (RewardLab over
        imitation, median wall time).
    """
    out: dict[str, Any] = {}
    for side in SIDES:
        mine = sorted((r for r in runs if r["side"] == side), key=lambda r: r["seed"])
        if mine:
            out[side] = {
                "median_return": statistics.median(r["return_mean"] for r in mine),
                "median_wall_s": statistics.median(r["wall_s"] for r in mine),
                "runs": mine,
            }
    if all(s in out for s in SIDES):
        rl, im = out["rewardlab"], out["imitation"]
        out["return_gap"] = rl["median_return"] - im["median_return"]
        out["wall_ratio"] = rl["median_wall_s"] / im["median_wall_s"]
        out["target_met"] = bool(rl["median_return"] > im["median_return"]
                                 and rl["median_wall_s"] < im["median_wall_s"])
    else:
        out["return_gap"] = out["wall_ratio"] = out["target_met"] = None
    return out


def rewardlab_steps(args: argparse.Namespace) -> int:
    """RewardLab's env steps: ``--rewardlab-steps`` (PEBBLE), else ``--steps``."""
    return args.rewardlab_steps or args.steps


def side_config(args: argparse.Namespace) -> dict[str, Any]:
    """Both sides' settings, for the results file."""
    common = {"env": args.env, "total_timesteps": args.steps, "comparisons": args.comparisons,
              "segment_len": args.segment_len, "teacher": "perfect oracle on the true reward",
              "ppo": {**PPO_SETTINGS[args.env], "net_arch": list(NET_ARCH),
                      "source": PPO_SOURCE[args.env]},
              "torch_threads": 1}
    from rewardlab.config import RewardModelConfig, build_config

    pebble = args.rewardlab_method == "pebble"
    overrides = (pebble_overrides(args.env, 0, rewardlab_steps(args), args.comparisons,
                                  args.segment_len, args.reward_model) if pebble else
                 rewardlab_overrides(args.env, 0, args.steps, args.comparisons, args.segment_len,
                                     args.reward_model))
    config = build_config({}, overrides)
    rm: RewardModelConfig = config.reward_model
    rounds = PEBBLE_ROUNDS if pebble else query_rounds(args.env, args.steps, args.comparisons)
    extra = ({"total_timesteps": rewardlab_steps(args), "backbone": config.pebble.backbone,
              "unsupervised_steps": config.pebble.unsupervised_steps} if pebble else {})
    return {
        "rewardlab": {**common, **extra, "algorithm": args.rewardlab_method,
                      "reward_model": {"members": rm.members,
                                       "hidden_sizes": list(rm.hidden_sizes),
                                       "target_accuracy": rm.target_accuracy,
                                       "max_epochs": rm.max_epochs,
                                       "choice": args.reward_model},
                      "overrides": overrides[1:],
                      "query_rounds": rounds},
        "imitation": {**common, "version": IMITATION_VERSION,
                      "num_iterations": imitation_iterations(args.env, args.steps),
                      "train_total_timesteps": imitation_iterations(args.env, args.steps)
                      * rollout_size(args.env),
                      **IMITATION_TUTORIAL},
    }


# ----------------------------------------------------------------------------- report

def run_dates(rec: dict[str, Any]) -> str:
    """``first to last`` finishing date of the runs in ``rec`` ("-" without runs)."""
    dates = sorted(r["date_utc"] for side in SIDES for r in rec.get(side, {}).get("runs", []))
    return f"{dates[0]} to {dates[-1]}" if dates else "-"


def side_torch(rec: dict[str, Any], side: str) -> str:
    """The torch version(s) the side's runs reported ("-" without runs)."""
    versions = sorted({r["torch"] for r in rec.get(side, {}).get("runs", [])})
    return "/".join(versions) or "-"


def markers(env_id: str, reward_model: str = "default",
            method: str = "pref_ppo") -> tuple[str, str]:
    """The BENCHMARKS.md begin/end markers of a comparison's section."""
    return section_markers(section_name(env_id, reward_model, method))


def task_lines(rec: dict[str, Any]) -> list[str]:
    """The task and settings lines of a preference-PPO comparison."""
    cfg = rec["config"]["rewardlab"]
    hp = cfg["ppo"]
    rm = cfg["reward_model"]
    choice = rm.get("choice", "default")
    return [
        f"- Task: {cfg['env']}, {cfg['total_timesteps']} env steps, {cfg['comparisons']} oracle "
        f"comparisons of {cfg['segment_len']}-step segments. Same SB3 PPO on both sides, "
        f"{hp['source']}: {hp['n_envs']} envs x {hp['n_steps']} steps, batch "
        f"{hp['batch_size']}, {hp['n_epochs']} epochs, lr {hp['learning_rate']}, gamma "
        f"{hp['gamma']}, GAE {hp['gae_lambda']}, clip {hp['clip_range']}, "
        + (f"gSDE (sample freq {hp['sde_sample_freq']})" if hp["use_sde"] else "Gaussian noise")
        + ", 64 x 64 MLP.",
        f"- RewardLab `pref_ppo`: reward ensemble of {rm['members']} MLPs of "
        f"{' x '.join(map(str, rm['hidden_sizes']))} units, refit each round until "
        f"{rm['target_accuracy']:.0%} training accuracy or {rm['max_epochs']} epochs"
        + (" (RewardLab's default)" if choice == "default" else
           " (imitation's reward-network width and epochs per round)")
        + f", disagreement-based queries, {cfg['query_rounds']} equal query rounds spread "
        "over the run. imitation "
        f"{rec['config']['imitation']['version']} as in its Pendulum tutorial "
        "(`BasicRewardNet` + `RunningNorm`, `RandomFragmenter`, `SyntheticGatherer`, "
        "`BasicRewardTrainer`, hyperbolic query schedule, "
        f"{rec['config']['imitation']['num_iterations']} + 1 agent trainings of one PPO "
        "rollout each), "
        "in its own virtualenv.",
    ]


def pebble_task_lines(rec: dict[str, Any]) -> list[str]:
    """The task and settings lines of a comparison with RewardLab's PEBBLE."""
    cfg, im = rec["config"]["rewardlab"], rec["config"]["imitation"]
    hp, rm = cfg["ppo"], cfg["reward_model"]
    return [
        f"- Task: {cfg['env']}, {cfg['comparisons']} oracle comparisons of "
        f"{cfg['segment_len']}-step segments. imitation {im['version']} as in its Pendulum "
        "tutorial (`BasicRewardNet` + `RunningNorm`, `RandomFragmenter`, `SyntheticGatherer`, "
        f"`BasicRewardTrainer`, hyperbolic query schedule, {im['num_iterations']} + 1 agent "
        f"trainings of one PPO rollout each, {im['total_timesteps']} env steps; SB3 PPO with "
        f"{hp['source']}: {hp['n_envs']} envs x {hp['n_steps']} steps, 64 x 64 MLP), in its "
        "own virtualenv.",
        f"- RewardLab `pebble` at its defaults for {cfg['total_timesteps']} env steps: the "
        f"{cfg['backbone']} backbone, {cfg['unsupervised_steps']} steps of unsupervised "
        f"pre-training, then {cfg['query_rounds']} equal query rounds evenly spaced over the "
        f"rest (the feedback-efficiency harness's schedule), a reward ensemble of "
        f"{rm['members']} MLPs of {' x '.join(map(str, rm['hidden_sizes']))} units refit each "
        f"round until {rm['target_accuracy']:.0%} training accuracy or {rm['max_epochs']} "
        "epochs, disagreement-based queries.",
    ]


def render_section(rec: dict[str, Any]) -> str:
    """The BENCHMARKS.md section (between the markers), every figure from ``rec``."""
    cfg = rec["config"]["rewardlab"]
    m = rec["machine"]
    rm = cfg["reward_model"]
    choice = rm.get("choice", "default")
    method = cfg.get("algorithm", "pref_ppo")
    begin, end = markers(cfg["env"], choice, method)
    title = "" if choice == "default" else ", reward learning matched to imitation's"
    if method == "pebble":
        title += ", RewardLab's PEBBLE at its defaults"
    lines = [
        begin,
        f"## RewardLab against imitation 1.0.1 on {cfg['env']}{title} "
        "(`benchmarks/peer_imitation.py`)",
        "",
        f"- Command: `{rec['command']}`",
        f"- Date (UTC): {rec['date_utc']} (runs finished {run_dates(rec)}, kept in "
        "`benchmarks/results/peer_imitation_runs.jsonl`); seeds "
        f"{', '.join(map(str, rec['seeds']))}",
        f"- Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, Python {m['python']}; torch "
        f"{side_torch(rec, 'rewardlab')} (RewardLab) and {side_torch(rec, 'imitation')} "
        "(imitation); one run at a time, alternating sides per seed, 1 torch "
        "and 1 BLAS thread each (machine shared with other work: 1-min load average "
        f"{rec['load_average_at_start'][0]:.2f} at start)",
        *(task_lines(rec) if method == "pref_ppo" else pebble_task_lines(rec)),
        f"- Return: true return of the final policy, mean of {rec['eval_episodes']} "
        "deterministic episodes (same evaluation code and reset seeds on both sides). Wall: "
        "the training call (setup + training; imports and evaluation excluded).",
        "",
        "| side | median return | median wall (s) | returns by seed | wall (s) by seed |",
        "|---|---:|---:|---|---|",
    ]
    for side in SIDES:
        if side not in rec:
            continue
        s = rec[side]
        rets = ", ".join(f"{r['return_mean']:.0f}" for r in s["runs"])
        walls = ", ".join(f"{r['wall_s']:.0f}" for r in s["runs"])
        lines.append(f"| {side} | {s['median_return']:.1f} | {s['median_wall_s']:.1f} | "
                     f"{rets} | {walls} |")
    lines += ["", rec["note"], "", end]
    return "\n".join(lines)


def explain(rec: dict[str, Any]) -> str:
    """The sentence under the table, every figure from ``rec``."""
    if rec["target_met"] is None:
        return "Only one side has finished runs; the target cannot be judged."
    rl, im = rec["rewardlab"], rec["imitation"]
    verdict = "met" if rec["target_met"] else "NOT met"
    text = (
        f"Target (RewardLab higher median return and lower median wall time): **{verdict}**. "
        f"Median return RewardLab {rl['median_return']:.1f} vs imitation "
        f"{im['median_return']:.1f} (difference {rec['return_gap']:+.1f}); median wall time "
        f"{rl['median_wall_s']:.1f} s vs {im['median_wall_s']:.1f} s (RewardLab takes "
        f"{rec['wall_ratio']:.2f}x imitation's time)."
    )
    parts = feedback_breakdown(rl["runs"])
    if parts:
        text += (" RewardLab's feedback loop inside that time (median over runs, s): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + ".")
    rm = rec["config"]["rewardlab"]["reward_model"]
    same_ppo = rec["config"]["rewardlab"].get("algorithm", "pref_ppo") == "pref_ppo"
    if (rl["median_wall_s"] >= im["median_wall_s"] and rm.get("choice", "default") == "default"
            and same_ppo):
        cfg_im = rec["config"]["imitation"]
        text += (
            " Both sides run the same PPO for the same steps, so the difference is the reward "
            f"model: RewardLab's default here is an ensemble of {rm['members']} MLPs of "
            f"{' x '.join(map(str, rm['hidden_sizes']))} units, refit at every round until "
            f"{rm['target_accuracy']:.0%} training accuracy (at most {rm['max_epochs']} epochs) "
            "and queried on every env step for the agent's reward, against imitation's single "
            f"BasicRewardNet of {' x '.join(map(str, cfg_im['reward_hidden_sizes']))} units "
            f"trained {cfg_im['reward_epochs']} epochs per iteration."
        )
    return text


def feedback_breakdown(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per feedback-loop part over the runs that recorded them (``{}`` if none).

    Args:
        runs: RewardLab run records; ``feedback_seconds`` maps a part (e.g. ``reward_training``)
            to the seconds it took in that run.
    """
    recorded = [r["feedback_seconds"] for r in runs if r.get("feedback_seconds")]
    keys = sorted({k for sec in recorded for k in sec})
    return {k: statistics.median(sec.get(k, 0.0) for sec in recorded) for k in keys}


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--env", default="Pendulum-v1", choices=sorted(PPO_SETTINGS))
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    p.add_argument("--comparisons", type=int, default=200, help="oracle comparisons per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--segment-len", type=int, default=100,
                   help="steps per compared segment (imitation: fragment_length), both sides")
    p.add_argument("--eval-episodes", type=int, default=20,
                   help="deterministic episodes evaluating each final policy")
    p.add_argument("--reward-model", choices=list(REWARD_MODELS), default="default",
                   help="RewardLab's reward model: its default, or matched to imitation's "
                   "reward-network width and epochs per round")
    p.add_argument("--rewardlab-method", choices=["pref_ppo", "pebble"], default="pref_ppo",
                   help="RewardLab's side: preference PPO with imitation's PPO settings, or "
                   "PEBBLE at its defaults (CrossQ) for --rewardlab-steps")
    p.add_argument("--rewardlab-steps", type=int, default=None,
                   help="PEBBLE's env steps (at most --steps; default --steps)")
    p.add_argument("--runs-file", type=Path, default=RUNS_FILE,
                   help="JSONL of finished runs (appended; finished runs are skipped)")
    p.add_argument("--no-write", action="store_true",
                   help="print only; leave the results file and BENCHMARKS.md alone")
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("steps", "comparisons", "segment_len", "eval_episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.rewardlab_steps is not None and not 1 <= args.rewardlab_steps <= args.steps:
        p.error("--rewardlab-steps must be between 1 and --steps")
    if args.rewardlab_steps is not None and args.rewardlab_method != "pebble":
        p.error("--rewardlab-steps is for --rewardlab-method pebble")
    try:
        query_rounds(args.env, args.steps, args.comparisons)
        if args.rewardlab_method == "pebble":
            pebble_overrides(args.env, 0, rewardlab_steps(args), args.comparisons,
                             args.segment_len)
    except ValueError as err:
        p.error(f"{err}; pick a multiple")
    return args


def side_args(args: argparse.Namespace, side: str, seed: int, run_dir: Path) -> list[str]:
    return ["--side", side, "--seed", str(seed), "--run-dir", str(run_dir), "--env", args.env,
            "--steps", str(args.steps), "--comparisons", str(args.comparisons),
            "--segment-len", str(args.segment_len), "--eval-episodes", str(args.eval_episodes),
            "--reward-model", args.reward_model, "--rewardlab-method", args.rewardlab_method,
            *(["--rewardlab-steps", str(args.rewardlab_steps)] if args.rewardlab_steps else [])]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side is not None:  # one run, in a child process
        args.run_dir.mkdir(parents=True, exist_ok=True)
        if args.side == "rewardlab":
            res = rewardlab_side(args.env, args.seed, args.steps, args.comparisons,
                                 args.segment_len, args.eval_episodes, args.run_dir,
                                 args.reward_model, args.rewardlab_method, args.rewardlab_steps)
        else:
            res = imitation_side(args.env, args.seed, args.steps, args.comparisons,
                                 args.segment_len, args.eval_episodes, args.run_dir,
                                 args.reward_model)
        print(json.dumps(res))
        return 0
    command = command_line("peer_imitation.py", argv)
    imitation_py = ensure_imitation_venv(IMITATION_VENV)
    load_at_start = list(os.getloadavg())
    args.runs_file.parent.mkdir(parents=True, exist_ok=True)
    done = {run_key(r) for r in read_runs(args.runs_file)}
    script = Path(__file__).resolve()
    config = side_config(args)
    widths = config["rewardlab"]["reward_model"]["hidden_sizes"]
    for side, seed in schedule(args.seeds):
        rec = {"side": side, "env": args.env, "seed": seed, "budget_steps": args.steps,
               "budget_comparisons": args.comparisons, "segment_len": args.segment_len,
               "eval_episodes": args.eval_episodes, "reward_model": args.reward_model,
               "rewardlab_method": args.rewardlab_method,
               "rewardlab_steps": (rewardlab_steps(args) if args.rewardlab_method == "pebble"
                                   else None),
               "rewardlab_hidden_sizes": widths}
        if run_key(rec) in done:
            print(f"{side} seed {seed}: already in {args.runs_file}, skipped", flush=True)
            continue
        py = imitation_py if side == "imitation" else Path(sys.executable)
        with tempfile.TemporaryDirectory(prefix=f"peer-{side}-s{seed}-") as tmp:
            res = run_side(py, script, side_args(args, side, seed, Path(tmp) / "run"), side,
                           log=args.runs_file.with_suffix(".log"))
        rec.update(res, date_utc=utc_now())
        with args.runs_file.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{side} seed {seed}: return {res['return_mean']:.1f} +- {res['return_std']:.1f}, "
              f"wall {res['wall_s']:.1f} s, {res['steps']} steps, {res['comparisons']} "
              "comparisons", flush=True)
    wanted = {(s, seed) for s, seed in schedule(args.seeds)}
    runs = [r for r in read_runs(args.runs_file)
            if (r["side"], r["seed"]) in wanted and r["env"] == args.env
            and r["budget_steps"] == args.steps and r["budget_comparisons"] == args.comparisons
            and r["segment_len"] == args.segment_len
            and r["eval_episodes"] == args.eval_episodes
            and r.get("reward_model", "default") == args.reward_model
            and r.get("rewardlab_method", "pref_ppo") == args.rewardlab_method
            and r.get("rewardlab_steps") == (rewardlab_steps(args)
                                             if args.rewardlab_method == "pebble" else None)
            and rewardlab_widths(r) == tuple(widths)]
    rec = {**aggregate(runs), "command": command, "date_utc": utc_now(),
           "machine": machine_info(), "git": git_state(), "seeds": args.seeds,
           "eval_episodes": args.eval_episodes, "config": config,
           "load_average_at_start": load_at_start}
    rec["note"] = explain(rec)
    section = render_section(rec)
    if args.no_write:
        print(section)
        return 0
    name = section_name(args.env, args.reward_model, args.rewardlab_method)
    results = RESULTS_DIR / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(rec, indent=2) + "\n")
    write_markdown_section(BENCHMARKS_MD, *markers(args.env, args.reward_model,
                                                   args.rewardlab_method), section)
    print(f"wrote {results.relative_to(REPO)} and BENCHMARKS.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
