"""Preference PPO: PPO on a reward learned from preferences over segment pairs.

Source: Christiano et al. 2017, "Deep reinforcement learning from human preferences", Sec. 2.2:
the policy is optimised with an on-policy policy-gradient method (here Stable-Baselines3 PPO,
as in their MuJoCo experiments' successor implementations) on the predicted reward, which a
vectorised-environment wrapper computes for all environments in one batched call; the reward
predictor, an ensemble trained with the Bradley-Terry loss, is refit at each feedback round on
every label so far and normalised to a stable scale. Its members are small MLPs by default
(2 x 32, :data:`rewardlab.config.PREF_PPO_REWARD_MODEL_DEFAULTS`; PEBBLE's 3 x 256 made the fit
most of the run's wall time). The true reward is kept in
``info["true_reward"]`` and never shown to the learner.

:func:`train_pref_ppo` is the whole method, top to bottom: each pass of its loop runs one PPO
rollout and update, then, in this order, the regulariser, the feedback round, the reward fit,
evaluation with early stopping, and the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from stable_baselines3 import PPO

from rewardlab.algorithms import training as t
from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.policies import frozen_copy
from rewardlab.algorithms.progress import TrainingProgress, safe_console
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import PPOConfig, TrainConfig
from rewardlab.diagnostics.early_stopping import EarlyStopping
from rewardlab.diagnostics.plots import plot_gold_vs_proxy
from rewardlab.envs.make import env_dims
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv
from rewardlab.envs.testbed import teacher_view
from rewardlab.feedback.human import AnnotationServer
from rewardlab.feedback.rounds import (
    effective_schedule,
    feedback_round,
    next_round_step,
    queries_asked,
)
from rewardlab.rewards.model import RewardModel
from rewardlab.seeding import child_seeds


def build_ppo(ppo: PPOConfig, env: LearnedRewardVecEnv, seed: int) -> PPO:
    """SB3 PPO with the ``ppo`` settings on the proxy-reward env."""
    return PPO(
        "MlpPolicy", env,
        n_steps=ppo.n_steps, batch_size=ppo.batch_size, n_epochs=ppo.n_epochs,
        learning_rate=ppo.learning_rate, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda,
        clip_range=ppo.clip_range, ent_coef=ppo.ent_coef,
        use_sde=ppo.use_sde, sde_sample_freq=ppo.sde_sample_freq,
        policy_kwargs={"net_arch": list(ppo.net_arch)}, seed=seed, device="cpu", verbose=0,
    )


def train_pref_ppo(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    console: Console | None = None,
    server: AnnotationServer | None = None,
) -> dict[str, Any]:
    """Train preference PPO as configured, writing everything to ``run_dir``.

    Args:
        config: the run config (``algorithm == "pref_ppo"``).
        run_dir: the run directory (see :mod:`rewardlab.algorithms.run_dir`).
        resume: continue the run in ``run_dir`` from its newest checkpoint (from step 0,
            reusing its stored labels, if it has none).
        console: where progress goes (default: standard error).
        server: the annotation web app people answer in (``teacher=human``).

    Returns:
        The run summary (also written to ``run_dir/summary.json``).

    Raises:
        RunDirError: if ``run_dir`` already holds a run (new run) or holds none (resume).
        ConfigError: if the env cannot be made.
    """
    # ---- set-up: every component from its own config section and its own seed
    dims = env_dims(config.env)
    seeds = child_seeds(config.seed)
    run = RunDir.resume(run_dir, config) if resume else RunDir.create(run_dir, config)
    ui = TrainingProgress(console or safe_console(), "pref_ppo", config.total_steps,
                          config.progress_bar)
    store = t.open_store(config.store_url, run.path)
    teacher = t.build_teacher(config, seeds["teacher"])
    signals = StopSignals()
    human = t.build_human(config, run, store, teacher, ui, server, signals.check)
    judge = teacher_view(config.teacher_bias) if config.teacher_bias else None
    n_envs = config.ppo.n_envs
    schedule = effective_schedule(config.feedback, config.mitigation, config.total_steps,
                                    n_envs)
    reward_model = RewardModel(dims.obs_dim, dims.act_dim, config.reward_model,
                               seed=seeds["reward_model"])
    rngs = {"queries": np.random.default_rng(seeds["queries"]), "teacher": teacher.rng}
    capacity = max(config.log_capacity // n_envs, config.feedback.segment_len + 1)
    env, log = t.make_proxy_env(config.env, dims, n_envs, capacity, seeds["env"],
                                config.record_render_states)
    model = build_ppo(config.ppo, env, seeds["agent"])
    rollout = config.ppo.n_steps * n_envs
    model.set_logger(run.sb3_logger())
    evaluator = t.Evaluator(config.env, config.eval.episodes, seeds["eval_env"], ui.message)
    mcfg = config.mitigation
    early_stop = EarlyStopping(mcfg)
    state = t.LoopState(next_checkpoint=config.checkpoint_every)
    reference = trusted = regularizer = None

    # ---- resume: restore the checkpoint, rebuild the agent's reward, replay the alarm
    if run.checkpoint_state is not None:
        state, reference, trusted = t.restore_training(run, model, log, reward_model, rngs)
        early_stop.load_state(state.early_stop)
        if reference is not None:
            regularizer = t.build_regularizer(mcfg, model, reference, config.env,
                                              seeds["mitigation"])
        if reward_model.updates > 0:
            env.reward_fn = t.agent_reward(reward_model, regularizer)
        evaluator.replay(run)
        ui.message(f"resumed {run.path} at step {state.step}")
    clock = Stopwatch(state.elapsed_s)

    def checkpoint() -> None:
        state.elapsed_s, state.early_stop = clock.elapsed(), early_stop.state()
        t.save_training(run, state, model, log, reward_model, reference, trusted, rngs)

    last_eval: dict[str, float] = {}
    interrupted = stop = False
    ui.start(state.step)

    with signals:
        try:
            while True:
                step = state.step
                # -- evaluation (first at step 0: every curve starts at the untrained policy)
                final = step >= config.total_steps and state.last_eval_step != step
                if step >= state.next_eval or stop or final:
                    last_eval, trusted, stop = evaluator.evaluate(
                        step, model, reward_model, reference, early_stop, trusted, stop)
                    last_eval["time/elapsed_s"] = clock.elapsed()
                    state.last_eval_step = step  # before the row: a kill never repeats it
                    state.next_eval = (step // config.eval.every + 1) * config.eval.every
                    run.log(step, last_eval)
                # -- checkpoint (periodic, and always at the end)
                done = stop or step >= config.total_steps
                if step >= state.next_checkpoint or done:
                    checkpoint()
                    state.next_checkpoint = step + config.checkpoint_every
                if done:
                    break
                signals.check()
                ui.update(step, t.progress_status(queries_asked(schedule, state.rounds),
                                                  schedule.total_budget, last_eval))
                if human is not None:
                    human.training(step, next_round_step(schedule, state.rounds))

                # -- one PPO rollout and update on the current reward (unless a round is still
                # due at this step: several due at one rollout boundary are asked in turn),
                # then the regulariser's discriminator follows the latest experience
                due = next_round_step(schedule, state.rounds)
                if due is None or due > step:
                    model.learn(rollout, reset_num_timesteps=False, progress_bar=False,
                                callback=signals.callback())
                    step = state.step = model.num_timesteps
                    signals.check()
                    disc = t.fit_discriminator(regularizer, log, config.ppo.n_steps,
                                               mcfg.discriminator_steps)
                    if disc:
                        run.log(step, disc)

                # -- feedback round, reward fit, the agent's new reward
                if due is None or step < due:
                    continue
                result = feedback_round(
                    round=state.rounds, step=step,
                    schedule=schedule, log=log, store=store, teacher=teacher,
                    rng=rngs["queries"], env_id=config.env.id,
                    episode_limit=dims.episode_limit,
                    prob_fn=reward_model.selection_probs if reward_model.updates else None,
                    judge=judge, human=human,
                )
                state.add_seconds(result.seconds)
                metrics = t.refit_after_round(
                    reward_model, store, result, config.reward_model.holdout_fraction,
                    (teacher.teacher_id,) if human and config.human.mixed else (), log, state,
                    schedule.segment_len, seeds["diagnostics"])
                if reward_model.updates == 0:  # no usable label yet: reward stays 0
                    state.rounds += 1
                    t.log_round(run, ui, schedule, state.rounds, step, metrics)
                    continue
                if reference is None:  # the reference policy: the one at the first update
                    reference = frozen_copy(model.policy)
                    state.reference_step = step
                    regularizer = t.build_regularizer(mcfg, model, reference, config.env,
                                                      seeds["mitigation"])
                early_stop.reward_updated()
                if early_stop.check_calibration(
                    step, metrics.get("reward_model/fresh_ece", float("nan"))
                ) == "trust":
                    trusted = t.policy_weights(model.policy)
                stop = early_stop.stopped_at is not None
                env.reward_fn = t.agent_reward(reward_model, regularizer)
                state.rounds += 1  # only now: a round cut short by a kill is asked again
                t.log_round(run, ui, schedule, state.rounds, step, metrics)
        except KeyboardInterrupt:
            interrupted = True
            state.step = model.num_timesteps
            checkpoint()  # before any output: the terminal may be gone
            ui.stop()
            ui.message(f"interrupted at step {state.step}: checkpoint saved; continue with "
                       f"`rewardlab train --resume {run.path}`")

    # ---- finish: plot, summary, close
    ui.stop()
    if human is not None:
        human.close(state.step, interrupted)
    plot = plot_gold_vs_proxy(run.path, f"pref_ppo on {config.env.id}")
    summary = t.summarize(config, state, interrupted, last_eval, store, early_stop, plot)
    run.write_summary(summary)
    env.close()
    evaluator.close()
    store.close()
    run.close()
    return summary
