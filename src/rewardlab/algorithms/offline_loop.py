"""Offline preference RL: label a fixed dataset, learn a reward, train an agent on it.

:func:`train_offline` is the whole method, top to bottom, for ``algorithm`` ``iql``, ``td3bc``
and ``cpl``. Its stages, called by name in this order:

1. :func:`label_stage` -- the dataset's segments are asked in feedback rounds
   (:func:`rewardlab.feedback.offline.label_dataset`: the online query selection, scripted
   teachers or people in the web app, the run's feedback store); after each round the reward
   model is refit on every label and checked (:func:`refit_after_round`) and a checkpoint is
   written. Skipped with ``offline.reward=true``.
2. :func:`reward_stage` -- the dataset is relabelled with the learned reward (MLP ensemble, or
   Preference Transformer, Kim et al. 2023) or keeps its true one, rescaled as IQL does for
   D4RL locomotion (:mod:`rewardlab.algorithms.offline.relabel`). CPL (Hejna et al. 2024)
   skips it: it learns from the labelled pairs.
3. The training loop -- gradient updates of IQL (Kostrikov et al. 2022), TD3+BC (Fujimoto &
   Gu 2021) or CPL in chunks (:func:`train_chunk`), :func:`evaluate_stage` every
   ``offline.eval_every`` updates (first at update 0) and a checkpoint every
   ``offline.checkpoint_every`` and at the end.

Evaluations log the online keys (``eval/gold_return`` and ``eval/proxy_return`` of the same
episodes, disagreement, Spearman, reference returns at update 0, the over-optimisation alarm)
plus the D4RL normalised score (Fu et al. 2020; ``eval/normalized_score``) and the dataset's
mean episode return (``eval/dataset_return``). The proxy return is the return under the reward
the agent trained on (learned, then rescaled); NaN for CPL and the true reward. The metrics'
``step`` counts gradient updates; every feedback round is logged at update 0 with its
``feedback/round``.

Checkpoints (the agent with its optimisers and generators, the reward model, the training
rewards, the batch and labelling generators and the loop state; safetensors / ``.npy`` / JSON,
never pickle) follow every round, the relabelling, the schedule and Ctrl-C; ``--resume``
continues exactly from one, reusing stored rounds without refitting them. A run killed outright
resumes from its last checkpoint; labels are in the store as soon as they are given, and a
stored round is finished, never asked again.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from rewardlab.algorithms import training as t
from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.offline import relabel
from rewardlab.algorithms.offline.common import PreferencePairs, Transitions
from rewardlab.algorithms.offline.cpl import CPL
from rewardlab.algorithms.offline.iql import IQL
from rewardlab.algorithms.offline.loop_state import (
    X_AXIS,
    Agent,
    OfflineState,
    restore_offline,
    save_offline,
    summarize,
)
from rewardlab.algorithms.offline.relabel import LearnedReward
from rewardlab.algorithms.offline.td3bc import TD3BC, state_stats
from rewardlab.algorithms.preflight import with_dataset_env
from rewardlab.algorithms.progress import TrainingProgress, safe_console
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import TrainConfig
from rewardlab.data.offline import OfflineDataset, load_offline_dataset
from rewardlab.diagnostics.evaluation import evaluate_episodes
from rewardlab.diagnostics.plots import plot_gold_vs_proxy
from rewardlab.diagnostics.reward_checks import random_pair_accuracy
from rewardlab.diagnostics.reward_eval import rank_correlation
from rewardlab.envs.make import EnvDims, env_dims
from rewardlab.envs.testbed import teacher_view
from rewardlab.errors import ConfigError
from rewardlab.feedback.human import AnnotationServer, HumanTeacher
from rewardlab.feedback.offline import RefitFn, label_dataset
from rewardlab.feedback.rounds import ProbFn, RoundResult
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.rewards.fit import fit_reward_model
from rewardlab.rewards.model import RewardModel
from rewardlab.rewards.preference_transformer import PreferenceTransformer
from rewardlab.seeding import child_seeds
from rewardlab.store.store import FeedbackStore

#: Most gradient updates between two training-metric rows (and looks at the progress bar).
LOG_EVERY = 1000
#: Dataset rows the MLP reward is standardised on (evenly spaced over the dataset).
NORMALIZATION_ROWS = 50_000


# ------------------------------------------------------------------------ building
def build_agent(config: TrainConfig, dataset: OfflineDataset, dims: EnvDims, low: np.ndarray,
                high: np.ndarray, seed: int) -> Agent:
    """The configured agent for the dataset's widths and the env's action box ``[low, high]``
    (TD3+BC with the dataset's observation statistics)."""
    o, a = dims.obs_dim, dims.act_dim
    if config.algorithm == "iql":
        return IQL(o, a, config.iql, seed, low, high)
    if config.algorithm == "td3bc":
        mean, std = state_stats(dataset.observations, config.td3bc.state_std_eps)
        return TD3BC(o, a, config.td3bc, seed, mean, std, low, high)
    return CPL(o, a, config.cpl, seed, low, high)


def build_reward_model(config: TrainConfig, dims: EnvDims, seed: int) -> LearnedReward | None:
    """The reward model of ``offline.reward=learned`` (``None`` for CPL and the true reward)."""
    if config.algorithm == "cpl" or config.offline.reward == "true":
        return None
    if config.offline.reward_model == "transformer":
        return PreferenceTransformer(dims.obs_dim, dims.act_dim, config.preference_transformer,
                                     seed)
    return RewardModel(dims.obs_dim, dims.act_dim, config.reward_model, seed)


def batch_size(config: TrainConfig) -> int:
    """Transitions (IQL, TD3+BC) or segment pairs (CPL) per gradient update."""
    return {"iql": config.iql.batch_size, "td3bc": config.td3bc.batch_size,
            "cpl": config.cpl.batch_size}[config.algorithm]


# ------------------------------------------------------------------------ 1. labelling
def label_stage(
    config: TrainConfig, dataset: OfflineDataset, store: FeedbackStore,
    teacher: ScriptedTeacher, human: HumanTeacher | None, model: LearnedReward | None,
    rng: np.random.Generator, state: OfflineState, after_round: RefitFn,
) -> None:
    """Ask the ``feedback`` section's budget over segments of ``dataset`` in rounds.

    ``after_round(result) -> ProbFn | None`` refits and checkpoints after each round (see
    :func:`train_offline`); rounds stored before a resume are reused, never asked again.

    Raises:
        DatasetError: if the dataset holds no two segments of ``feedback.segment_len`` steps.
        KeyboardInterrupt: from the stop signals at a round's end or while people answer.
    """
    fb = config.feedback
    label_dataset(
        dataset, store, teacher, fb.total_budget, fb.segment_len, fb.method, rng,
        prob_fn_of(model), queries_per_round=fb.queries_per_round, oversample=fb.oversample,
        refit=after_round, human=human,
        judge=teacher_view(config.teacher_bias) if config.teacher_bias else None,
    )
    state.labelled = True


def prob_fn_of(model: LearnedReward | None) -> ProbFn | None:
    """The preference probabilities active selection uses (``None`` before a fit)."""
    return model.preference_probs if model is not None and model.updates > 0 else None


def refit_after_round(
    config: TrainConfig, model: LearnedReward, store: FeedbackStore, result: RoundResult,
    dataset: OfflineDataset, state: OfflineState, seed: int, fallback: tuple[str, ...],
) -> dict[str, float]:
    """The reward fit after a round and its checks (the online
    :func:`rewardlab.algorithms.training.refit_after_round` with the dataset in place of the
    agent's experience): fresh-query accuracy and ECE before the fit, the fit on every label
    (:func:`rewardlab.rewards.fit.fit_reward_model`; the MLP standardised on
    :data:`NORMALIZATION_ROWS` evenly spaced dataset rows, the transformer not at all),
    held-out accuracy and ECE, and accuracy against gold on random pairs of dataset segments."""
    fresh = t.fresh_metrics(model, result)  # type: ignore[arg-type]  (same surface)
    t0 = time.perf_counter()
    data = store.records.training_arrays(fallback_teachers=fallback)
    rows = np.unique(np.linspace(0, dataset.n_steps - 1, NORMALIZATION_ROWS).astype(np.int64))
    norm = ((dataset.observations[rows], dataset.actions[rows]) if isinstance(model, RewardModel)
            else (None, None))
    unlabeled = (t.surf_unlabeled(config.reward_model.unlabeled_ratio, data["labels"].size,
                                  dataset.transition_log(), config.feedback.segment_len, seed,
                                  result.round)
                 if isinstance(model, RewardModel) else None)
    fit = fit_reward_model(model, data, config.reward_model.holdout_fraction,  # type: ignore
                           *norm, unlabeled=unlabeled)
    state.add_seconds({"reward_training": time.perf_counter() - t0})
    if model.updates > 0:
        fit["reward_model/random_pair_accuracy"] = random_pair_accuracy(
            model, dataset.transition_log(), t.RANDOM_PAIRS,  # type: ignore[arg-type]
            config.feedback.segment_len, np.random.default_rng([seed, result.round]))
    return t.round_metrics(result, store, fresh, fit, state.seconds)


def describe_round(metrics: dict[str, float], rounds: int) -> str:
    """One terminal line about a finished labelling round."""
    acc = metrics.get("reward_model/heldout_accuracy")
    rand = metrics.get("reward_model/random_pair_accuracy")
    return (f"labelling round {int(metrics['feedback/round'])}/{rounds}: "
            f"{int(metrics['feedback/queries_answered'])} answers"
            + ("" if acc is None or math.isnan(acc) else
               f", reward model held-out accuracy {acc:.2f}")
            + ("" if rand is None or math.isnan(rand) else f", on random pairs {rand:.2f}")
            + (" (resumed round)" if metrics["feedback/reused_round"] else ""))


# ------------------------------------------------------------------------ 2. rewards
def reward_stage(config: TrainConfig, dataset: OfflineDataset, model: LearnedReward | None,
                 dims: EnvDims, state: OfflineState) -> np.ndarray:
    """The dataset's training rewards ``(N,)`` float32: relabelled with the learned reward
    (or the true one), rescaled as IQL does (:func:`relabel.rescaling`); records the rescaling
    in ``state``.

    Raises:
        ConfigError: naming ``offline.normalize_rewards`` if every episode has the same return.
    """
    t0 = time.perf_counter()
    ends = relabel.episode_end_flags(dataset)
    raw = dataset.rewards if model is None else relabel.learned_step_rewards(
        model, dataset.observations, dataset.actions, ends, config.feedback.segment_len)
    factor, shift = relabel.rescaling(raw, ends, config.offline, dims.episode_limit,
                                      learned=model is not None)
    state.reward_factor, state.reward_shift = factor, shift
    state.relabelled = True
    state.add_seconds({"relabel": time.perf_counter() - t0})
    return (raw.astype(np.float64) * factor + shift).astype(np.float32)


def training_data(config: TrainConfig, dataset: OfflineDataset, rewards: np.ndarray | None,
                  store: FeedbackStore, fallback: tuple[str, ...] = ()
                  ) -> Transitions | PreferencePairs:
    """What the agent samples batches from: the relabelled transitions (IQL, TD3+BC; a
    time-limit truncation is not terminal), or every labelled pair in the store (CPL; equal
    answers as 0.5, skips dropped; ``fallback`` teachers' answers only where nobody else
    answered, as for the reward model)."""
    if config.algorithm == "cpl":
        arrays = store.records.training_arrays(fallback_teachers=fallback)
        return PreferencePairs.from_labels(arrays["obs"], arrays["actions"], arrays["labels"])
    assert rewards is not None
    return Transitions(dataset.observations, dataset.actions, rewards,
                       dataset.next_observations, dataset.terminations)


# ------------------------------------------------------------------------ 3. training
def train_chunk(agent: Agent, data: Transitions | PreferencePairs, batch: int,
                rng: np.random.Generator, updates: int, signals: StopSignals,
                ) -> tuple[int, dict[str, float]]:
    """Up to ``updates`` gradient updates on batches drawn with ``rng``; stops early (between
    two updates) once a stop signal arrived.

    Returns:
        ``(updates done, mean of each train/ metric over them + time/updates_per_s)``.
    """
    values: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    done = 0
    while done < updates and not signals.pressed:
        for key, value in agent.update(data.sample(batch, rng)).items():
            values.setdefault(key, []).append(value)
        done += 1
    metrics = {key: float(np.mean(v)) for key, v in values.items()}
    metrics["time/updates_per_s"] = done / max(time.perf_counter() - t0, 1e-9)
    return done, metrics


def evaluate_stage(
    evaluator: t.Evaluator, agent: Agent, model: LearnedReward | None, dataset: OfflineDataset,
    state: OfflineState, window: int,
) -> dict[str, float]:
    """Gold and proxy return of the same deterministic-policy episodes, the D4RL normalised
    score and, at update 0, the random, do-nothing and dataset returns; fed to the
    over-optimisation alarm."""
    t0 = time.perf_counter()
    proxy = disagreement = None
    if model is not None:
        factor, shift = state.reward_factor, state.reward_shift

        def proxy(obs: np.ndarray, actions: np.ndarray, ends: np.ndarray) -> np.ndarray:
            return relabel.learned_step_rewards(model, obs, actions, ends, window) * factor + shift

        if isinstance(model, RewardModel):
            def disagreement(obs: np.ndarray, actions: np.ndarray) -> float:
                return float(model.predict_members(obs, actions).std(axis=0).mean())

    result = evaluate_episodes(evaluator.env, agent.act, evaluator.episodes, evaluator.seed,
                               proxy, disagreement)
    metrics = result.metrics()
    metrics["eval/proxy_gold_spearman"] = rank_correlation(result.proxy_returns,
                                                           result.gold_returns)
    if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
        scores = dataset.normalized_score(result.gold_returns)
        metrics["eval/normalized_score"] = float(np.mean(scores))
        metrics["eval/normalized_score_std"] = float(np.std(scores))
    if state.step == 0:
        metrics.update(t.reference_returns(evaluator.env, evaluator.episodes, evaluator.seed))
        metrics["eval/dataset_return"] = float(dataset.episode_returns().mean())
    metrics.update(evaluator.alarm(state.step, metrics))
    state.add_seconds({"evaluation": time.perf_counter() - t0})
    return metrics


# ------------------------------------------------------------------------ the loop
def train_offline(
    config: TrainConfig, run_dir: str | Path, resume: bool = False,
    console: Console | None = None, server: AnnotationServer | None = None,
) -> dict[str, Any]:
    """Train ``config.algorithm`` (iql, td3bc or cpl) offline on ``config.dataset``.

    Args:
        config: the run config (an offline ``algorithm`` with a ``dataset``).
        run_dir: the run directory (see :mod:`rewardlab.algorithms.run_dir`).
        resume: continue the run in ``run_dir`` from its newest checkpoint (from the start,
            reusing its stored labels, if it has none).
        console: where progress goes (default: standard error).
        server: the annotation web app people answer in (``teacher=human``).

    Returns:
        The run summary (also written to ``run_dir/summary.json``).

    Raises:
        RunDirError: if ``run_dir`` already holds a run (new run) or holds none (resume).
        ConfigError: if the dataset or env does not fit the config (see
            :func:`rewardlab.algorithms.preflight.preflight_offline`).
        DatasetError: if the dataset cannot be read or holds no two segments to compare.
    """
    # ---- set-up: every component from its own config section and its own seed
    config = with_dataset_env(config)
    dataset = load_offline_dataset(str(config.dataset))
    dims = env_dims(config.env)
    if (dataset.obs_dim, dataset.act_dim) != (dims.obs_dim, dims.act_dim):
        raise ConfigError(f"dataset: {dataset.dataset_id} has {dataset.obs_dim}-d observations "
                          f"and {dataset.act_dim}-d actions, {config.env.id} "
                          f"{dims.obs_dim} and {dims.act_dim}")
    seeds = child_seeds(config.seed)
    off, fb = config.offline, config.feedback
    run = RunDir.resume(run_dir, config) if resume else RunDir.create(run_dir, config)
    ui = TrainingProgress(console or safe_console(), config.algorithm, off.updates,
                          config.progress_bar)
    store = t.open_store(config.store_url, run.path)
    teacher = t.build_teacher(config, seeds["teacher"])
    signals = StopSignals()
    human = t.build_human(config, run, store, teacher, ui, server, signals.check)
    evaluator = t.Evaluator(config.env, config.eval.episodes, seeds["eval_env"], ui.message)
    space = evaluator.env.action_space
    agent = build_agent(config, dataset, dims, space.low, space.high, seeds["agent"])
    model = build_reward_model(config, dims, seeds["reward_model"])
    rngs = {"queries": np.random.default_rng(seeds["queries"]), "teacher": teacher.rng,
            "batches": np.random.default_rng(seeds["batches"])}
    needs_labels = config.algorithm == "cpl" or off.reward == "learned"
    rounds = math.ceil(fb.total_budget / fb.queries_per_round)
    fallback = (teacher.teacher_id,) if human and config.human.mixed else ()
    state, rewards = OfflineState(next_checkpoint=off.checkpoint_every), None

    # ---- resume: restore the checkpoint, replay the alarm
    if run.checkpoint_state is not None:
        state, rewards = restore_offline(run, agent, model, rngs)
        evaluator.replay(run)
        ui.message(f"resumed {run.path} at update {state.step} ({state.rounds} rounds labelled)")
    clock = Stopwatch(state.elapsed_s)

    def checkpoint() -> None:
        state.elapsed_s = clock.elapsed()
        save_offline(run, state, agent, model, rewards, rngs)

    def after_round(result: RoundResult) -> ProbFn | None:
        """Refit, log and checkpoint after a labelling round (skip rounds already done)."""
        if result.round < state.rounds:  # finished and fit before the checkpoint resumed from
            return prob_fn_of(model)
        state.add_seconds(result.seconds)
        last = result.round == rounds - 1
        if model is not None and (last or fb.method != "uniform"
                                  or isinstance(model, RewardModel)):
            metrics = refit_after_round(config, model, store, result, dataset, state,
                                        seeds["diagnostics"], fallback)
        else:  # CPL, or a transformer not needed before the last round: no fit yet
            metrics = t.round_metrics(result, store, {}, {}, state.seconds)
        state.rounds = result.round + 1
        run.log(0, metrics)
        ui.message(describe_round(metrics, rounds))
        ui.update(0, f"labelled {state.rounds}/{rounds} rounds")
        checkpoint()
        signals.check()
        return prob_fn_of(model)

    last_eval: dict[str, float] = {}
    interrupted = False
    ui.start(state.step)
    with signals:
        try:
            # -- 1. label the dataset (all rounds before the first update)
            if needs_labels and not state.labelled:
                ui.update(0, f"labelling {fb.total_budget} queries in {rounds} rounds")
                label_stage(config, dataset, store, teacher, human, model, rngs["queries"],
                            state, after_round)
            if human is not None:
                human.training(state.step, None)
            # -- 2. the training rewards (relabelled, rescaled); CPL trains on the labels
            if config.algorithm != "cpl" and not state.relabelled:
                rewards = reward_stage(config, dataset, model, dims, state)
                run.log(0, relabel.reward_checks(dataset, rewards))
                checkpoint()
            data = training_data(config, dataset, rewards, store, fallback)
            batch = batch_size(config)
            # -- 3. train, evaluating and checkpointing on schedule
            while True:
                step = state.step
                final = step >= off.updates and state.last_eval_step != step
                if step >= state.next_eval or final:
                    last_eval = evaluate_stage(evaluator, agent, model, dataset, state,
                                               fb.segment_len)
                    last_eval["time/elapsed_s"] = clock.elapsed()
                    state.last_eval_step = step  # before the row: a kill never repeats it
                    state.next_eval = (step // off.eval_every + 1) * off.eval_every
                    run.log(step, last_eval)
                done = step >= off.updates
                if step >= state.next_checkpoint or done:
                    checkpoint()
                    state.next_checkpoint = step + off.checkpoint_every
                if done:
                    break
                signals.check()
                ui.update(step, status(last_eval))
                target = min(off.updates, state.next_eval, state.next_checkpoint,
                             (step // LOG_EVERY + 1) * LOG_EVERY)
                n, metrics = train_chunk(agent, data, batch, rngs["batches"], target - step,
                                         signals)
                state.step = step + n
                if n == target - step:  # an interrupted chunk logs nothing
                    run.log(state.step, metrics)
        except KeyboardInterrupt:
            interrupted = True
            state.step = agent.updates  # a forced second Ctrl-C may stop inside a chunk
            checkpoint()  # before any output: the terminal may be gone
            ui.stop()
            ui.message(f"interrupted at update {state.step}: checkpoint saved; continue with "
                       f"`rewardlab train --resume {run.path}`")

    # ---- finish: plot, summary, close
    ui.stop()
    if human is not None:
        human.close(state.step, interrupted)
    plot = plot_gold_vs_proxy(run.path, f"{config.algorithm} on {dataset.dataset_id}",
                              x_label=X_AXIS)
    summary = summarize(config, dataset, state, interrupted, last_eval, store, plot)
    run.write_summary(summary)
    evaluator.close()
    store.close()
    run.close()
    return summary


def status(last_eval: dict[str, float]) -> str:
    """The progress bar's status text: the latest gold, proxy and normalised score."""
    parts = []
    for key, name in (("eval/gold_return", "gold"), ("eval/proxy_return", "proxy"),
                      ("eval/normalized_score", "score")):
        value = last_eval.get(key)
        if value is not None and math.isfinite(value):
            parts.append(f"{name} {value:.1f}")
    return "  ".join(parts)
