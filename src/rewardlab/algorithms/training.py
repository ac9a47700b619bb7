"""Plain functions and small records both online methods call from their loops.

Nothing here decides *how* a method trains: :mod:`rewardlab.algorithms.pebble` and
:mod:`rewardlab.algorithms.pref_ppo` each call these in order, top to bottom. Each function
takes the config section it reads, not the whole run config.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.markup import escape
from safetensors.torch import load_file, save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import BasePolicy

from rewardlab.algorithms import backbones
from rewardlab.algorithms.checkpoint import rng_from_json, rng_state_to_json
from rewardlab.algorithms.policies import policy_distance, rollout_pairs, state_kl
from rewardlab.algorithms.progress import TrainingProgress
from rewardlab.algorithms.run_dir import RunDir
from rewardlab.config import EnvConfig, FeedbackSchedule, MitigationConfig, TrainConfig
from rewardlab.data.transitions import TransitionLog, load_log, save_log
from rewardlab.diagnostics.early_stopping import EarlyStopping
from rewardlab.diagnostics.evaluation import evaluate, rollout_episodes
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    DivergenceMonitor,
    describe_overoptimization,
)
from rewardlab.diagnostics.reward_checks import label_metrics, random_pair_accuracy
from rewardlab.diagnostics.reward_eval import rank_correlation
from rewardlab.envs.make import EnvDims, make_env
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv, RewardFn, mujoco_state_fn
from rewardlab.feedback.human import AnnotationServer, HumanTeacher
from rewardlab.feedback.rounds import RoundResult, next_round_step, unlabeled_pairs
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.rewards.dynamics import dynamics_transitions
from rewardlab.rewards.fit import fit_reward_model
from rewardlab.rewards.model import RewardModel
from rewardlab.rewards.regularizers import (
    OccupancyDiscriminator,
    chi2_penalty,
    chi2_reward_penalty,
    regularized_reward,
)
from rewardlab.store.store import FeedbackStore
from rewardlab.types import Label

#: Steps of recent experience the proxy reward's normalisation is measured on.
NORMALIZATION_ROWS = 50_000
#: Segment pairs of the run's experience the reward model is checked on after each round: a
#: standard error of at most 0.035 on the accuracy. The check's cost is one forward pass per
#: pair; 500 pairs took about 1.3 s a round in a profile of the default job (PEBBLE's 3 x 256
#: ensemble, one core), against the job's 10-minute budget.
RANDOM_PAIRS = 200
#: Third seed word of the generator of SURF's unlabelled pairs (the diagnostics' random pairs
#: use ``[seed, round]``).
UNLABELED_STREAM = 1
#: Stream of the transitions and shuffles of REED's self-future-consistency fit (the same for
#: a resumed run).
DYNAMICS_STREAM = 2


# ------------------------------------------------------------------------ loop state
@dataclass
class LoopState:
    """Everything a training loop decides with, saved as JSON in each checkpoint.

    Attributes:
        step: env steps so far.
        rounds: feedback rounds finished (round ``rounds`` is the next one).
        next_eval: env step of the next evaluation (0: evaluate the untrained policy first).
        last_eval_step: env step of the latest evaluation (``None`` before the first).
        next_checkpoint: env step of the next periodic checkpoint.
        reference_step: env step the reference policy was frozen at (first reward update).
        next_intrinsic: PEBBLE: env step of the next intrinsic relabel (``None``: done).
        elapsed_s: wall seconds of training so far, across resumes.
        seconds: wall seconds per activity (``queries``, ``teacher``, ``human_wait``,
            ``reward_training``, ``relabel``).
        early_stop: :meth:`EarlyStopping.state`.
    """

    step: int = 0
    rounds: int = 0
    next_eval: int = 0
    last_eval_step: int | None = None
    next_checkpoint: int = 0
    reference_step: int | None = None
    next_intrinsic: int | None = None
    elapsed_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: {
        "queries": 0.0, "teacher": 0.0, "human_wait": 0.0, "reward_training": 0.0,
        "relabel": 0.0,
    })
    early_stop: dict[str, Any] = field(default_factory=dict)

    def add_seconds(self, seconds: dict[str, float]) -> None:
        """Add wall seconds per activity."""
        for key, value in seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


# ------------------------------------------------------------------------ building
def open_store(store_url: str | None, run_dir: Path) -> FeedbackStore:
    """The run's feedback store: ``store_url``, else SQLite ``run_dir/feedback.db``."""
    return FeedbackStore(store_url) if store_url else FeedbackStore.open(run_dir)


def build_teacher(config: TrainConfig, seed: int) -> ScriptedTeacher:
    """The scripted teacher (with people: the one answering on timeout or pre-labelling)."""
    human = config.teacher.human
    return ScriptedTeacher(config.teacher.build(config.human.scripted if human else None),
                           seed=seed)


def build_human(
    config: TrainConfig, run: RunDir, store: FeedbackStore, teacher: ScriptedTeacher,
    ui: TrainingProgress, server: AnnotationServer | None,
    stop_check: Callable[[], None] | None = None,
) -> HumanTeacher | None:
    """People answering in the web app when ``teacher=human`` (else ``None``); the wait for
    them calls ``stop_check`` at every poll (the loop's ``StopSignals.check``)."""
    if not config.teacher.human:
        return None
    return HumanTeacher(
        config.human, run.path, store, teacher.teacher_id, config.feedback.total_budget,
        config.total_steps, ui.message, ui.status, server, stop_check,
    )


def make_proxy_env(
    env: EnvConfig, dims: EnvDims, n_envs: int, capacity: int, seed: int,
    record_render_states: bool,
) -> tuple[LearnedRewardVecEnv, TransitionLog]:
    """``n_envs`` training envs behind the proxy-reward wrapper, and the transition log they
    write (with MuJoCo simulator states for clips when ``record_render_states``)."""
    venv = make_vec_env(lambda: make_env(env), n_envs=n_envs, seed=seed)
    reader = mujoco_state_fn(venv) if record_render_states else None
    state_fn, state_dim = reader if reader is not None else (None, 0)
    log = TransitionLog(capacity, n_envs, dims.obs_dim, dims.act_dim, state_dim)
    return LearnedRewardVecEnv(venv, log, reward_fn=None, state_fn=state_fn), log


# ------------------------------------------------------------------------ mitigations
@dataclass
class Regularizer:
    """The ``mitigation.regularizer`` pulling the agent towards the reference policy.

    Attributes:
        kind: ``action_kl`` or ``chi2_occupancy``.
        coef: weight, proxy-reward units.
        penalty: ``(obs, actions) -> (N,)`` penalty.
        discriminator: chi2 only: the occupancy-ratio classifier.
        reference_pairs: chi2 only: ``(M, obs_dim + act_dim)`` reference state-action pairs.
    """

    kind: str
    coef: float
    penalty: RewardFn
    discriminator: OccupancyDiscriminator | None = None
    reference_pairs: np.ndarray | None = None


def build_regularizer(
    mitigation: MitigationConfig, model: BaseAlgorithm, reference: BasePolicy,
    env: EnvConfig, seed: int,
) -> Regularizer | None:
    """The configured regulariser around a frozen ``reference`` (``None`` when off).

    ``chi2_occupancy`` collects ``reference_samples`` state-action pairs of the stochastic
    reference once and starts a fresh discriminator (Laidlaw et al. 2024).
    """
    if mitigation.regularizer == "none" or mitigation.reg_coef == 0:
        return None
    if mitigation.regularizer == "action_kl":
        return Regularizer("action_kl", mitigation.reg_coef,
                           lambda obs, actions: state_kl(model.policy, reference, obs))
    pairs = rollout_pairs(reference, make_env(env), mitigation.reference_samples, seed)
    disc = OccupancyDiscriminator(pairs.shape[1], seed)
    return Regularizer("chi2_occupancy", mitigation.reg_coef, chi2_reward_penalty(disc),
                       disc, pairs)


def fit_discriminator(
    regularizer: Regularizer | None, log: TransitionLog, rows: int, steps: int
) -> dict[str, float]:
    """chi2 only: refit the discriminator on the latest ``rows`` steps of experience.

    Returns:
        ``diagnostics/discriminator_loss`` and ``diagnostics/chi2_penalty_mean`` (empty when
        there is no discriminator).
    """
    if regularizer is None or regularizer.discriminator is None:
        return {}
    obs, actions = log.recent_flat(rows)
    current = np.concatenate([obs, actions], axis=-1)
    loss = regularizer.discriminator.fit(current, regularizer.reference_pairs, steps)
    pen = chi2_penalty(regularizer.discriminator.log_ratio(current))
    return {"diagnostics/discriminator_loss": loss,
            "diagnostics/chi2_penalty_mean": float(pen.mean())}


def agent_reward(reward_model: RewardModel, regularizer: Regularizer | None) -> RewardFn:
    """The reward the agent optimises: the proxy, minus the regulariser when one is on."""
    if regularizer is None:
        return reward_model.reward
    return regularized_reward(reward_model.reward, regularizer.penalty, regularizer.coef)


# ------------------------------------------------------------------------ feedback
def round_metrics(
    result: RoundResult, store: FeedbackStore, fresh: dict[str, float],
    fit: dict[str, float], seconds: dict[str, float],
) -> dict[str, float]:
    """Namespaced metrics of a finished round: ``feedback/`` counts from the store, the fresh
    and held-out ``reward_model/`` checks and cumulative ``time/`` seconds."""
    counts = store.summary.counts()
    metrics = {
        "feedback/round": float(result.round + 1),
        "feedback/queries_asked": float(counts["queries"]),
        "feedback/queries_answered": float(counts["answered"]),
        "feedback/queries_skipped": float(counts["skipped"]),
        "feedback/equal_fraction": float((result.labels == Label.EQUAL).mean()),
        "feedback/reused_round": float(result.reused),
        **fresh, **fit,
        "time/reward_training_s": seconds["reward_training"],
    }
    if math.isfinite(result.pool_disagreement):
        metrics["feedback/pool_disagreement"] = result.pool_disagreement
    if result.outcome is not None:
        metrics["feedback/people_answered"] = float(result.outcome.answered)
        metrics["feedback/timed_out"] = float(result.outcome.timed_out)
        metrics["feedback/scripted_on_timeout"] = float(result.outcome.scripted)
        metrics["time/human_wait_s"] = seconds["human_wait"]
    return metrics


def fresh_metrics(reward_model: RewardModel, result: RoundResult) -> dict[str, float]:
    """Accuracy and ECE of the ensemble on the round's queries *before* it is refit on them
    (``reward_model/fresh_*``; empty before the first fit)."""
    if reward_model.updates == 0:
        return {}
    return label_metrics(reward_model, result.obs, result.actions, result.labels,
                         "reward_model/fresh")


def surf_unlabeled(
    ratio: int, labels: int, log: TransitionLog, segment_len: int, seed: int, round: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """SURF's unlabelled pairs for one fit (``reward_model.unlabeled_ratio`` random pairs of
    ``log`` per stored label, :func:`rewardlab.feedback.rounds.unlabeled_pairs`, drawn with a
    generator of their own seeded by ``seed`` and the round, so a resumed run draws the same),
    or ``None`` when the ratio or the label count is 0."""
    if ratio == 0 or labels == 0:
        return None
    rng = np.random.default_rng([seed, round, UNLABELED_STREAM])
    return unlabeled_pairs(log, ratio * labels, segment_len, rng)


def dynamics_fit(reward_model: RewardModel, log: TransitionLog, seed: int, round: int
                 ) -> dict[str, float]:
    """REED's self-future-consistency fit before a round's preference fit (Metcalf et al. 2023:
    before every reward update), with ``reward_model.architecture=reed``: up to
    ``sfc_max_transitions`` transitions of ``log``
    (:func:`rewardlab.rewards.dynamics.dynamics_transitions`), drawn and shuffled by a stream of
    their own seeded by ``seed`` and the round. Returns its ``reward_model/sfc_*`` metrics
    (empty for any other architecture)."""
    cfg = reward_model.config
    if cfg.architecture != "reed":
        return {}
    rng = np.random.default_rng([seed, round, DYNAMICS_STREAM])
    obs, actions, next_obs = dynamics_transitions(log, cfg.sfc_max_transitions, rng)
    out = reward_model.fit_dynamics(obs, actions, next_obs,
                                    seed=int(rng.integers(0, 2**63 - 1)))
    return {f"reward_model/{k}": v for k, v in out.items()}


def refit_after_round(
    reward_model: RewardModel, store: FeedbackStore, result: RoundResult,
    holdout_fraction: float, fallback_teachers: tuple[str, ...], log: TransitionLog,
    state: LoopState, segment_len: int, seed: int,
) -> dict[str, float]:
    """The reward fit after a round: check the ensemble on the fresh queries, run REED's
    self-future-consistency fit when the architecture asks for it (:func:`dynamics_fit`), refit
    it on every
    label in the store (:func:`rewardlab.rewards.fit.fit_reward_model`, standardised on the
    last ``NORMALIZATION_ROWS`` steps, with SURF's unlabelled pairs when
    ``reward_model.unlabeled_ratio`` is set: :func:`surf_unlabeled`), measure it on random
    pairs of the run's experience against gold
    (:func:`rewardlab.diagnostics.reward_checks.random_pair_accuracy`, with a generator of its
    own seeded by ``seed`` and the round), and return the round's metrics."""
    fresh = fresh_metrics(reward_model, result)
    t0 = time.perf_counter()
    dynamics = dynamics_fit(reward_model, log, seed, result.round)
    data = store.records.training_arrays(fallback_teachers=fallback_teachers)
    fit = fit_reward_model(reward_model, data, holdout_fraction,
                           *log.recent_flat(NORMALIZATION_ROWS),
                           unlabeled=surf_unlabeled(reward_model.config.unlabeled_ratio,
                                                    data["labels"].size, log, segment_len,
                                                    seed, result.round))
    fit.update(dynamics)
    state.add_seconds({"reward_training": time.perf_counter() - t0})
    if reward_model.updates > 0:
        rng = np.random.default_rng([seed, result.round])
        fit["reward_model/random_pair_accuracy"] = random_pair_accuracy(
            reward_model, log, RANDOM_PAIRS, segment_len, rng)
    return round_metrics(result, store, fresh, fit, state.seconds)


def log_round(
    run: RunDir, ui: TrainingProgress, schedule: FeedbackSchedule, rounds_done: int, step: int,
    metrics: dict[str, float],
) -> None:
    """Print a finished round's line and log its metrics at ``step``, unless another round is
    due at the same step (preference PPO asks every round due at a rollout boundary in turn):
    then only the last round of the step is logged, so each ``(step, key)`` appears once (its
    ``feedback/`` counts are cumulative; the earlier round's fresh-query check is dropped)."""
    ui.message(describe_round(step, metrics))
    following = next_round_step(schedule, rounds_done)
    if following is None or following > step:
        run.log(step, metrics)


def describe_round(step: int, metrics: dict[str, float]) -> str:
    """One terminal line about a finished round."""
    acc = metrics.get("reward_model/heldout_accuracy", float("nan"))
    rand = metrics.get("reward_model/random_pair_accuracy")
    return (f"step {step}: round {int(metrics['feedback/round'])}, "
            f"{int(metrics['feedback/queries_asked'])} queries, reward model held-out "
            f"accuracy {acc:.2f}"
            + ("" if rand is None else f", on random pairs {rand:.2f}")
            + (" (resumed round)" if metrics["feedback/reused_round"] else ""))


# ------------------------------------------------------------------------ evaluation
def policy_of(model: BaseAlgorithm) -> Callable[[np.ndarray], np.ndarray]:
    """The deterministic policy of an SB3 agent as ``obs -> action``."""
    return lambda obs: model.predict(obs, deterministic=True)[0]


def reference_returns(eval_env: gym.Env, episodes: int, seed: int) -> dict[str, float]:
    """Gold returns of a uniformly random policy and of the do-nothing (zero-action) policy on
    the evaluation episodes (same reset seeds): the lines a learning curve is read against.

    Returns:
        ``eval/random_return`` and ``eval/do_nothing_return`` (mean undiscounted true return).
    """
    space = eval_env.action_space
    rng = np.random.default_rng(seed)
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    zero = np.clip(np.zeros(space.shape), low, high).astype(space.dtype)

    def random_policy(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(low, high).astype(space.dtype)

    out = {}
    for key, policy in (("eval/random_return", random_policy),
                        ("eval/do_nothing_return", lambda obs: zero)):
        eps = rollout_episodes(eval_env, policy, episodes, seed)
        out[key] = float(np.mean([e["rewards"].sum() for e in eps]))
    return out


def evaluate_policy(
    model: BaseAlgorithm, eval_env: gym.Env, reward_model: RewardModel,
    reference: BasePolicy | None, episodes: int, seed: int,
) -> dict[str, float]:
    """Gold and proxy return of the same deterministic-policy episodes, the ensemble's
    disagreement on them, proxy/gold rank correlation and the policy's distance from the
    reference (``eval/``, ``reward_model/``, ``diagnostics/`` keys)."""
    result = evaluate(eval_env, policy_of(model),
                      reward_model if reward_model.updates > 0 else None, episodes, seed)
    metrics = result.metrics()
    metrics["eval/proxy_gold_spearman"] = rank_correlation(result.proxy_returns,
                                                           result.gold_returns)
    if reference is not None and result.states is not None:
        metrics.update(policy_distance(model.policy, reference, result.states))
    return metrics


class Evaluator:
    """Evaluations of one run: the eval env, its seeds and the over-optimisation alarm.

    Args:
        env: the ``env`` section (a separate env instance is made for evaluation).
        episodes: deterministic-policy episodes per evaluation (``eval.episodes``; the
            over-optimisation alarm needs at least 2).
        seed: reset seed of the first episode (episode ``i`` uses ``seed + i``).
        message: prints a line in the terminal.
    """

    def __init__(self, env: EnvConfig, episodes: int, seed: int,
                 message: Callable[[str], None]) -> None:
        self.env = make_env(env)
        self.episodes = episodes
        self.seed = seed
        self.message = message
        # the alarm's Welch test needs two episodes per evaluation; with one it stays off
        self.divergence = DivergenceMonitor(episodes) if episodes >= 2 else None

    def run(self, model: BaseAlgorithm, reward_model: RewardModel,
            reference: BasePolicy | None, step: int) -> dict[str, float]:
        """Evaluate the policy (at step 0 also the random and do-nothing policies)."""
        metrics = evaluate_policy(model, self.env, reward_model, reference, self.episodes,
                                  self.seed)
        if step == 0:
            metrics.update(reference_returns(self.env, self.episodes, self.seed))
        return metrics

    def evaluate(
        self, step: int, model: BaseAlgorithm, reward_model: RewardModel,
        reference: BasePolicy | None, early_stop: EarlyStopping,
        trusted: dict[str, torch.Tensor] | None, stopping: bool,
    ) -> tuple[dict[str, float], dict[str, torch.Tensor] | None, bool]:
        """One evaluation with early stopping and the over-optimisation alarm.

        Evaluates the policy and applies ``mitigation.early_stop=disagreement``: a trusted
        policy's weights are kept; when the rule stops training (or ``stopping`` is already
        set, by the calibration rule after a round), the policy is rolled back to the last
        trusted one and that policy's evaluation is the one returned, with the
        ``diagnostics/early_stop_*`` keys. Then the alarm is fed.

        Returns:
            ``(metrics, trusted weights, stopping)``.
        """
        metrics: dict[str, float] | None = None
        if not stopping:
            metrics = self.run(model, reward_model, reference, step)
            verdict = early_stop.check_disagreement(
                step, metrics["reward_model/disagreement_on_policy"])
            if verdict == "trust":
                trusted = policy_weights(model.policy)
            stopping = verdict == "stop"
        if stopping:
            if trusted is not None:  # back to the trusted policy: evaluate that one instead
                backbones.load_policy_weights(model.policy, trusted)
                metrics = None
            if metrics is None:
                metrics = self.run(model, reward_model, reference, step)
            metrics.update(early_stop_keys(step, early_stop))
            self.message(f"[yellow]early stop[/] at step {step} ({early_stop.reason}); policy "
                         f"rolled back to step {early_stop.trusted_step}")
        metrics.update(self.alarm(step, metrics))
        return metrics, trusted, stopping

    def alarm(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Feed an evaluation to the over-optimisation alarm; when it fires, print it and
        return the ``diagnostics/`` keys to log with the evaluation (else ``{}``)."""
        if self.divergence is None:
            return {}
        event = self.divergence.update(step, metrics["eval/gold_return"],
                                       metrics["eval/proxy_return"],
                                       metrics["eval/gold_return_std"])
        if event is None:
            return {}
        keys = {key: float(getattr(event, f)) for f, key in EVENT_KEYS.items()}
        self.message(f"[yellow]{escape(describe_overoptimization(event))}[/]")
        return keys

    def replay(self, run: RunDir) -> None:
        """Feed a resumed run's earlier evaluations (as logged) back into the alarm."""
        if self.divergence is None:
            return
        for row in read_metrics(run.path):
            if row.get("eval/gold_return") is not None:
                self.divergence.update(int(row["step"]), row["eval/gold_return"],
                                       _or_nan(row.get("eval/proxy_return")),
                                       row.get("eval/gold_return_std") or 0.0)

    def close(self) -> None:
        """Close the eval env."""
        self.env.close()


def early_stop_keys(step: int, early_stop: EarlyStopping) -> dict[str, float]:
    """``diagnostics/early_stop_*`` keys logged with the rolled-back policy's evaluation."""
    back = early_stop.trusted_step if early_stop.trusted_step is not None else step
    return {"diagnostics/early_stop_step": float(step),
            "diagnostics/early_stop_rollback_step": float(back)}


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def progress_status(asked: int, budget: int, last_eval: dict[str, float]) -> str:
    """The progress bar's status text."""
    status = f"queries {asked}/{budget}"
    gold, proxy = last_eval.get("eval/gold_return"), last_eval.get("eval/proxy_return")
    if gold is not None:
        status += f"  gold {gold:.1f}"
    if proxy is not None and math.isfinite(proxy):
        status += f"  proxy {proxy:.1f}"
    return status


# ------------------------------------------------------------------------ checkpoints
def policy_weights(policy: BasePolicy) -> dict[str, torch.Tensor]:
    """A detached copy of a policy's weights (the early-stopping rollback target)."""
    return backbones.policy_weights(policy)


def save_training(
    run: RunDir, state: LoopState, model: BaseAlgorithm, log: TransitionLog,
    reward_model: RewardModel, reference: BasePolicy | None,
    trusted: dict[str, torch.Tensor] | None, rngs: dict[str, np.random.Generator],
    extra_files: Callable[[Path], None] | None = None,
) -> None:
    """Checkpoint everything the loop needs to continue exactly (atomically, see
    :meth:`RunDir.save_checkpoint`): the agent, the transition log, the reward model, the
    reference and trusted policies, the generators and ``state``. ``extra_files`` writes the
    method's own files (PEBBLE: the replay buffer)."""

    def write(folder: Path) -> None:
        backbones.save_agent(model, folder)
        save_log(log, str(folder / "transition_log.npz"))
        reward_model.save(folder)
        for name, weights in (("reference_policy", reference and reference.state_dict()),
                              ("trusted_policy", trusted)):
            if weights is not None:
                save_file({k: v.contiguous() for k, v in weights.items()},
                          str(folder / f"{name}.safetensors"))
        if extra_files is not None:
            extra_files(folder)

    record = asdict(state)
    record["rngs"] = {name: rng_state_to_json(rng) for name, rng in rngs.items()}
    run.save_checkpoint(record, write)


def restore_training(
    run: RunDir, model: BaseAlgorithm, log: TransitionLog, reward_model: RewardModel,
    rngs: dict[str, np.random.Generator],
) -> tuple[LoopState, BasePolicy | None, dict[str, torch.Tensor] | None]:
    """Load what :func:`save_training` wrote into freshly built objects.

    Returns:
        ``(state, reference policy or None, trusted policy weights or None)``.

    Raises:
        RunDirError: if a checkpoint file is missing or does not fit the run's config.
    """
    folder, record = run.checkpoint, dict(run.checkpoint_state or {})
    backbones.load_agent(model, folder)
    load_log(log, str(folder / "transition_log.npz"))
    reward_model.load_into(folder)
    for name, saved in record.pop("rngs").items():
        rngs[name].bit_generator.state = rng_from_json(saved).bit_generator.state
    reference = trusted = None
    if (folder / "reference_policy.safetensors").exists():
        reference = backbones.frozen_policy(model.policy)
        reference.load_state_dict(load_file(str(folder / "reference_policy.safetensors")))
    if (folder / "trusted_policy.safetensors").exists():
        trusted = load_file(str(folder / "trusted_policy.safetensors"))
    fields = LoopState.__dataclass_fields__
    state = LoopState(**{k: v for k, v in record.items() if k in fields})
    return state, reference, trusted


def summarize(
    config: TrainConfig, state: LoopState, interrupted: bool, last_eval: dict[str, float],
    store: FeedbackStore, early_stop: EarlyStopping, plot: Path,
) -> dict[str, Any]:
    """The run summary (``summary.json``); every count comes from the feedback store."""
    return {
        "algorithm": config.algorithm,
        "env": config.env.id,
        "seed": config.seed,
        "steps": state.step,
        "total_steps": config.total_steps,
        "interrupted": interrupted,
        "wall_time_s": state.elapsed_s,
        "final_eval": last_eval,
        "feedback": {"rounds": state.rounds, "seconds": state.seconds,
                     "answers_by_teacher": dict(Counter(
                         p.teacher_id for p in store.records.preferences()))},
        "store": store.summary.counts(),
        "plot": plot.name,
        "overoptimization": {
            "mitigation": config.mitigation.model_dump(mode="json"),
            "reference_step": state.reference_step,
            "early_stopped_at": early_stop.stopped_at,
            "early_stop_reason": early_stop.reason,
            "rolled_back_to": early_stop.trusted_step if early_stop.stopped_at is not None
            else None,
        },
    }
