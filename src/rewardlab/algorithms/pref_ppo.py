"""Preference PPO: PPO on a reward learned from preferences over segment pairs.

Source: Christiano et al. 2017, "Deep reinforcement learning from human preferences", Sec. 2.2:
the policy is optimised with an on-policy policy-gradient method (here Stable-Baselines3 PPO,
as in their MuJoCo experiments' successor implementations) on the predicted reward, which a
vectorised-environment wrapper computes for all environments in one batched call; the reward
predictor, an ensemble trained with the Bradley-Terry loss, is refit at each feedback round on
every label so far and normalised to a stable scale. The true reward is kept in
``info["true_reward"]`` and never shown to the learner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from stable_baselines3 import PPO

from rewardlab.algorithms.session import TrainingSession
from rewardlab.config import TrainConfig
from rewardlab.envs.make import env_dims
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv


def build_ppo(config: TrainConfig, env: LearnedRewardVecEnv, seed: int) -> PPO:
    """SB3 PPO with the run's settings on the proxy-reward env."""
    p = config.ppo
    return PPO(
        "MlpPolicy", env,
        n_steps=p.n_steps, batch_size=p.batch_size, n_epochs=p.n_epochs,
        learning_rate=p.learning_rate, gamma=p.gamma, gae_lambda=p.gae_lambda,
        clip_range=p.clip_range, ent_coef=p.ent_coef,
        use_sde=p.use_sde, sde_sample_freq=p.sde_sample_freq,
        policy_kwargs={"net_arch": list(p.net_arch)}, seed=seed, device="cpu", verbose=0,
    )


def train_pref_ppo(
    config: TrainConfig, run_dir: Path, resume: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Train preference PPO as configured, writing everything to ``run_dir``.

    Args:
        config: the run config (``algorithm == "pref_ppo"``).
        run_dir: run directory (see :mod:`rewardlab.algorithms.session`).
        resume: continue from ``run_dir/checkpoints/latest``.
        console: where progress goes.

    Returns:
        The run summary (also written to ``run_dir/summary.json``).

    Raises:
        RunDirError: when resuming a run with no checkpoint.
    """
    dims = env_dims(config.env)
    obs_dim, act_dim, limit = dims.obs_dim, dims.act_dim, dims.episode_limit
    session = TrainingSession(config, run_dir, obs_dim, act_dim, limit, console)
    seeds = session.seeds
    n_envs = config.ppo.n_envs
    capacity = max(config.log_capacity // n_envs, config.feedback.segment_len + 1)
    env, log = session.make_proxy_env(n_envs, capacity)
    model = build_ppo(config, env, seeds["agent"])
    model.set_logger(session.sb3_logger())
    rollout = config.ppo.n_steps * n_envs
    step = 0
    if resume:
        session.load_checkpoint(model, log)
        step = model.num_timesteps
        if session.reward_model.updates > 0:
            if session.overopt.reference is None:  # checkpoint predates the saved reference
                session.overopt.on_reward_update(model, step, {})
            env.reward_fn = session.overopt.wrap_reward(session.reward_model.reward, model)
        session.message(f"resumed {run_dir} at step {step}")

    interrupted = False
    session.start_progress(step)
    session.interrupt.install()
    try:
        while step < config.total_steps:
            # one PPO rollout + update at a time; rounds and evals fall on rollout boundaries
            model.learn(rollout, reset_num_timesteps=False, progress_bar=False)
            step = model.num_timesteps
            guard = session.overopt
            disc = guard.after_rollout(model, log, config.ppo.n_steps)
            if disc:
                session.log(step, disc)
            if session.learner.round_due(step):
                metrics = session.learner.run_round(log, step)
                if session.reward_model.updates > 0:  # else no usable label yet
                    if guard.on_reward_update(model, step, metrics):
                        session.stop_requested = True
                    env.reward_fn = guard.wrap_reward(session.reward_model.reward, model)
                session.record_round(step, metrics)
            if not session.stop_requested:
                session.after_chunk(model, log, step, {})
            if session.stop_requested:  # early-stopping mitigation
                session.stop_early(model, step)
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.interrupt.uninstall()
    return session.close(model, log, interrupted, {})
