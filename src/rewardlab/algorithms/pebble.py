"""PEBBLE: unsupervised pre-training, then SAC on a learned reward with relabelling.

Source: Lee, Smith & Abbeel 2021, "PEBBLE: Feedback-Efficient Interactive Reinforcement
Learning via Relabeling Experience and Unsupervised Pre-training", Algorithm 1:

1. Pre-train SAC on the k-NN state-entropy intrinsic reward (Sec. 4.1, Eq. 5) for
   ``pebble.unsupervised_steps`` steps; the replay buffer is relabelled with the intrinsic
   reward of every stored state every ``pebble.intrinsic_relabel_every`` steps.
2. At each feedback round (Sec. 4.2), query the teacher, train the Bradley-Terry ensemble and
   relabel the *whole* replay buffer with the new proxy reward (one batched pass under
   ``torch.inference_mode``); after the first round the critic is re-initialised.
3. Between rounds, SAC (Stable-Baselines3) trains on the proxy reward. The true reward stays
   in ``info["true_reward"]`` and in the transition log, for the teacher and for evaluation;
   the learner never sees it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer

from rewardlab.algorithms.session import TrainingSession
from rewardlab.config import TrainConfig
from rewardlab.envs.make import env_dims
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv, RewardFn
from rewardlab.rewards.state_entropy import state_entropy_reward


def buffer_size_used(buffer: ReplayBuffer) -> int:
    """Rows of ``buffer`` holding data."""
    return buffer.buffer_size if buffer.full else buffer.pos


def relabel_replay_buffer(model: SAC, reward_fn: RewardFn) -> int:
    """Overwrite every stored reward with ``reward_fn(obs, action)`` in one batched call.

    Actions are stored in the policy's [-1, 1] scale; they are mapped back to the env's
    action space first, as the reward model was trained on env actions.

    Returns:
        The number of transitions relabelled.
    """
    buf = model.replay_buffer
    size = buffer_size_used(buf)
    if size == 0:
        return 0
    obs = buf.observations[:size].reshape(size * buf.n_envs, -1)
    actions = model.policy.unscale_action(buf.actions[:size].reshape(size * buf.n_envs, -1))
    buf.rewards[:size] = reward_fn(obs, actions).reshape(size, buf.n_envs)
    return size * buf.n_envs


def relabel_intrinsic(model: SAC, k: int) -> None:
    """Relabel the buffer with PEBBLE's state-entropy reward (Eq. 5) of each next state."""
    buf = model.replay_buffer
    size = buffer_size_used(buf)
    if size <= k:
        return
    next_obs = buf.next_observations[:size].reshape(size * buf.n_envs, -1)
    reference = buf.observations[:size].reshape(size * buf.n_envs, -1)
    reward = state_entropy_reward(next_obs, reference, k)
    buf.rewards[:size] = reward.reshape(size, buf.n_envs)


def reset_critic(model: SAC, seed: int) -> None:
    """Re-initialise the critic and its target and reset the critic optimiser (PEBBLE Alg. 1)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.critic.modules():
            if module is not model.critic and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    model.critic_target.load_state_dict(model.critic.state_dict())
    model.critic.optimizer = model.policy.optimizer_class(
        model.critic.parameters(), lr=model.lr_schedule(1.0), **model.policy.optimizer_kwargs
    )


def build_sac(config: TrainConfig, env: LearnedRewardVecEnv, seed: int) -> SAC:
    """SB3 SAC with the run's settings on the proxy-reward env."""
    s = config.pebble.sac
    return SAC(
        "MlpPolicy", env,
        learning_rate=s.learning_rate, buffer_size=s.buffer_size,
        batch_size=s.batch_size, tau=s.tau, gamma=s.gamma, learning_starts=s.learning_starts,
        train_freq=s.train_freq, gradient_steps=s.gradient_steps,
        policy_kwargs={"net_arch": list(s.net_arch)}, seed=seed, device="cpu", verbose=0,
    )


def train_pebble(
    config: TrainConfig, run_dir: Path, resume: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Train PEBBLE as configured, writing everything to ``run_dir``.

    Args:
        config: the run config (``algorithm == "pebble"``).
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
    env, log = session.make_proxy_env(1, config.log_capacity)
    model = build_sac(config, env, seeds["agent"])
    model.set_logger(session.sb3_logger())
    pcfg = config.pebble
    seconds = session.learner.counters.seconds
    step = 0
    next_intrinsic = pcfg.intrinsic_relabel_every if pcfg.unsupervised_steps > 0 else None
    if resume:
        next_intrinsic = session.load_checkpoint(model, log).get("next_intrinsic")
        step = model.num_timesteps
        if session.reward_model.updates > 0:
            if session.overopt.reference is None:  # checkpoint predates the saved reference
                session.overopt.on_reward_update(model, step, {})
            env.reward_fn = session.overopt.wrap_reward(session.reward_model.reward, model)
            # the reward model may have been retrained on labels newer than the checkpoint
            relabel_replay_buffer(model, env.reward_fn)
        session.message(f"resumed {run_dir} at step {step}")

    interrupted = False
    session.start_progress(step)
    session.interrupt.install()
    try:
        while step < config.total_steps:
            events = [config.total_steps, session.next_eval, session.next_checkpoint,
                      step + 1000, session.learner.next_round_step(step), next_intrinsic]
            target = min(e for e in events if e is not None and e > step)
            model.learn(target - step, reset_num_timesteps=False, progress_bar=False)
            step = model.num_timesteps

            if next_intrinsic is not None and step >= next_intrinsic:
                t0 = time.perf_counter()
                relabel_intrinsic(model, pcfg.knn_k)
                seconds["relabel"] += time.perf_counter() - t0
                following = step + pcfg.intrinsic_relabel_every
                next_intrinsic = following if following < pcfg.unsupervised_steps else None
            guard = session.overopt
            disc = guard.after_rollout(model, log, 1000)
            if disc:
                session.log(step, disc)
            if session.learner.round_due(step):
                first = session.reward_model.updates == 0
                metrics = session.learner.run_round(log, step)
                if session.reward_model.updates == 0:  # no usable label yet: keep pre-training
                    session.record_round(step, metrics)
                    session.after_chunk(model, log, step, {"next_intrinsic": next_intrinsic})
                    continue
                if guard.on_reward_update(model, step, metrics):
                    session.stop_requested = True
                agent_reward = guard.wrap_reward(session.reward_model.reward, model)
                t0 = time.perf_counter()
                relabel_replay_buffer(model, agent_reward)
                seconds["relabel"] += time.perf_counter() - t0
                env.reward_fn = agent_reward
                next_intrinsic = None
                if first and pcfg.reset_critic and pcfg.unsupervised_steps > 0:
                    reset_critic(model, seeds["agent"])
                metrics["time/relabel_s"] = seconds["relabel"]
                session.record_round(step, metrics)
            if not session.stop_requested:
                session.after_chunk(model, log, step, {"next_intrinsic": next_intrinsic})
            if session.stop_requested:  # early-stopping mitigation
                session.stop_early(model, step)
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.interrupt.uninstall()
    return session.close(model, log, interrupted, {"next_intrinsic": next_intrinsic})
