"""PEBBLE: unsupervised pre-training, then SAC on a learned reward with relabelling.

Source: Lee, Smith & Abbeel 2021, "PEBBLE: Feedback-Efficient Interactive Reinforcement
Learning via Relabeling Experience and Unsupervised Pre-training", Algorithm 1:

1. Pre-train SAC on the k-NN state-entropy intrinsic reward (Sec. 4.1, Eq. 5) for
   ``pebble.unsupervised_steps`` steps; the replay buffer is relabelled with the intrinsic
   reward of every stored state every ``pebble.intrinsic_relabel_every`` steps.
2. At each feedback round (Sec. 4.2), query the teacher, train the Bradley-Terry ensemble and
   relabel the *whole* replay buffer with the new proxy reward (one batched pass); after the
   first round the critic is re-initialised.
3. Between rounds, SAC trains on the proxy reward (``pebble.backbone``: Stable-Baselines3
   SAC, SBX SAC or SBX CrossQ; see :mod:`rewardlab.algorithms.backbones`). The true reward stays
   in ``info["true_reward"]`` and in the transition log, for the teacher and for evaluation;
   the learner never sees it.

:func:`train_pebble` is the whole method, top to bottom: each pass of its loop trains SAC up to
the next event, then runs, in this order, the intrinsic relabel, the feedback round, the reward
fit, the relabel, the regulariser, evaluation with early stopping, and the checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from rewardlab.algorithms import training as t
from rewardlab.algorithms.backbones import build_agent, frozen_policy, reset_critic
from rewardlab.algorithms.checkpoint import load_replay_buffer, save_replay_buffer
from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.progress import TrainingProgress, safe_console
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import TrainConfig
from rewardlab.diagnostics.early_stopping import EarlyStopping
from rewardlab.diagnostics.plots import plot_gold_vs_proxy
from rewardlab.envs.make import env_dims
from rewardlab.envs.reward_wrapper import RewardFn
from rewardlab.envs.testbed import teacher_view
from rewardlab.feedback.human import AnnotationServer
from rewardlab.feedback.rounds import (
    effective_schedule,
    feedback_round,
    next_round_step,
    queries_asked,
)
from rewardlab.rewards.model import RewardModel
from rewardlab.rewards.state_entropy import state_entropy_reward
from rewardlab.seeding import child_seeds

#: Longest stretch of SAC training between two looks at the clock, the signals and the bar.
CHUNK_STEPS = 1000


def buffer_size_used(buffer: ReplayBuffer) -> int:
    """Rows of ``buffer`` holding data."""
    return buffer.buffer_size if buffer.full else buffer.pos


def relabel_replay_buffer(model: OffPolicyAlgorithm, reward_fn: RewardFn) -> int:
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


def relabel_intrinsic(model: OffPolicyAlgorithm, k: int) -> None:
    """Relabel the buffer with PEBBLE's state-entropy reward (Eq. 5) of each next state."""
    buf = model.replay_buffer
    size = buffer_size_used(buf)
    if size <= k:
        return
    next_obs = buf.next_observations[:size].reshape(size * buf.n_envs, -1)
    reference = buf.observations[:size].reshape(size * buf.n_envs, -1)
    buf.rewards[:size] = state_entropy_reward(next_obs, reference, k).reshape(size, buf.n_envs)


def train_pebble(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    console: Console | None = None,
    server: AnnotationServer | None = None,
) -> dict[str, Any]:
    """Train PEBBLE as configured, writing everything to ``run_dir``.

    Args:
        config: the run config (``algorithm == "pebble"``).
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
    ui = TrainingProgress(console or safe_console(), "pebble", config.total_steps,
                          config.progress_bar)
    store = t.open_store(config.store_url, run.path)
    teacher = t.build_teacher(config, seeds["teacher"])
    signals = StopSignals()
    human = t.build_human(config, run, store, teacher, ui, server, signals.check)
    judge = teacher_view(config.teacher_bias) if config.teacher_bias else None
    schedule = effective_schedule(config.feedback, config.mitigation, config.total_steps, 1)
    reward_model = RewardModel(dims.obs_dim, dims.act_dim, config.reward_model,
                               seed=seeds["reward_model"])
    rngs = {"queries": np.random.default_rng(seeds["queries"]), "teacher": teacher.rng}
    env, log = t.make_proxy_env(config.env, dims, 1, config.log_capacity, seeds["env"],
                                config.record_render_states)
    model = build_agent(config.pebble.backbone, config.pebble.sac, env, seeds["agent"])
    model.set_logger(run.sb3_logger())
    evaluator = t.Evaluator(config.env, config.eval.episodes, seeds["eval_env"], ui.message)
    pcfg, mcfg = config.pebble, config.mitigation
    early_stop = EarlyStopping(mcfg)
    state = t.LoopState(next_checkpoint=config.checkpoint_every,
                        next_intrinsic=pcfg.intrinsic_relabel_every
                        if pcfg.unsupervised_steps > 0 else None)
    reference = trusted = regularizer = None

    # ---- resume: restore the checkpoint, rebuild the agent's reward, replay the alarm
    if run.checkpoint_state is not None:
        state, reference, trusted = t.restore_training(run, model, log, reward_model, rngs)
        load_replay_buffer(model.replay_buffer, run.checkpoint / "replay_buffer.npz")
        early_stop.load_state(state.early_stop)
        if reference is not None:
            regularizer = t.build_regularizer(mcfg, model, reference, config.env,
                                              seeds["mitigation"])
        if reward_model.updates > 0:  # killed mid-round, the buffer may predate the last fit
            env.reward_fn = t.agent_reward(reward_model, regularizer)
            relabel_replay_buffer(model, env.reward_fn)
        evaluator.replay(run)
        ui.message(f"resumed {run.path} at step {state.step}")
    clock = Stopwatch(state.elapsed_s)

    def checkpoint() -> None:
        state.elapsed_s, state.early_stop = clock.elapsed(), early_stop.state()
        t.save_training(run, state, model, log, reward_model, reference, trusted, rngs,
                        lambda f: save_replay_buffer(model.replay_buffer,
                                                     f / "replay_buffer.npz"))

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

                # -- SAC on the current reward up to the next event (unless a round is still
                # due at this step: then it is asked first), and what follows new experience
                due = next_round_step(schedule, state.rounds)
                if due is None or due > step:
                    events = [config.total_steps, state.next_eval, state.next_checkpoint,
                              step + CHUNK_STEPS, due, state.next_intrinsic]
                    target = min(e for e in events if e is not None and e > step)
                    model.learn(target - step, reset_num_timesteps=False, progress_bar=False,
                                callback=signals.callback())
                    step = state.step = model.num_timesteps
                    signals.check()
                    # unsupervised pre-training: relabel with the state-entropy reward
                    if state.next_intrinsic is not None and step >= state.next_intrinsic:
                        t0 = time.perf_counter()
                        relabel_intrinsic(model, pcfg.knn_k)
                        state.add_seconds({"relabel": time.perf_counter() - t0})
                        following = step + pcfg.intrinsic_relabel_every
                        state.next_intrinsic = (following if following < pcfg.unsupervised_steps
                                                else None)
                    # the regulariser's discriminator follows the latest experience
                    disc = t.fit_discriminator(regularizer, log, CHUNK_STEPS,
                                               mcfg.discriminator_steps)
                    if disc:
                        run.log(step, disc)

                # -- feedback round, reward fit, relabel
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
                if reward_model.updates == 0:  # no usable label yet: keep pre-training
                    state.rounds += 1
                    t.log_round(run, ui, schedule, state.rounds, step, metrics)
                    continue
                first_fit = reference is None
                if first_fit:  # the reference policy: the one at the first update
                    reference = frozen_policy(model.policy)
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
                t0 = time.perf_counter()
                relabel_replay_buffer(model, env.reward_fn)
                state.add_seconds({"relabel": time.perf_counter() - t0})
                state.next_intrinsic = None
                if first_fit and pcfg.reset_critic and pcfg.unsupervised_steps > 0:
                    reset_critic(model, seeds["agent"])
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
    plot = plot_gold_vs_proxy(run.path, f"pebble on {config.env.id}")
    summary = t.summarize(config, state, interrupted, last_eval, store, early_stop, plot)
    run.write_summary(summary)
    env.close()
    evaluator.close()
    store.close()
    run.close()
    return summary
