"""A training session: the run directory, its logs, evaluation, checkpoints and progress bar.

Each method module (``pebble``, ``pref_ppo``) writes its own training loop top to bottom and
calls these services; nothing here decides *how* a method trains.

Run directory layout::

    config.yaml            the resolved TrainConfig
    feedback.db            the feedback store (SQLite by default)
    metrics.jsonl          one JSON row per log call, keyed by env step
    tensorboard/           the same metrics as TensorBoard events
    checkpoints/latest/    agent (safetensors+JSON), replay buffer / transition log (.npz),
                           reward model (safetensors+JSON), state.json
    gold_vs_proxy.png      gold and proxy eval return against env steps
    summary.json           final figures of the run
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat

from rewardlab.algorithms.checkpoint import (
    load_replay_buffer,
    load_sb3,
    rng_from_json,
    rng_state_to_json,
    save_replay_buffer,
    save_sb3,
)
from rewardlab.algorithms.common import PreferenceLearner
from rewardlab.algorithms.human import HumanFeedback
from rewardlab.algorithms.interrupt import SigintLatch
from rewardlab.algorithms.mitigations import OveroptimizationGuard, effective_schedule
from rewardlab.config import TrainConfig, dump_config, load_config
from rewardlab.data.transitions import TransitionLog, load_log, save_log
from rewardlab.diagnostics.evaluation import evaluate
from rewardlab.diagnostics.metrics import NAMESPACES, MetricLogger
from rewardlab.diagnostics.overoptimization import DivergenceMonitor
from rewardlab.diagnostics.plots import plot_gold_vs_proxy
from rewardlab.envs.make import make_env
from rewardlab.envs.reward_wrapper import LearnedRewardVecEnv, mujoco_state_fn
from rewardlab.errors import RunDirError
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.rewards.model import RewardModel
from rewardlab.seeding import child_seeds
from rewardlab.store.store import FeedbackStore

CHECKPOINT_DIR = "checkpoints/latest"


class _MetricForwarder(KVWriter):
    """SB3 output format that forwards numeric values to a :class:`MetricLogger`."""

    RENAME = {"rollout/ep_rew_mean": "rollout/gold_return_mean"}

    def __init__(self, logger: MetricLogger) -> None:
        self.logger = logger

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        values = {
            self.RENAME.get(k, k): float(v) for k, v in key_values.items()
            if isinstance(v, (int, float, np.floating, np.integer))
            and k.split("/", 1)[0] in NAMESPACES and "/" in k
        }
        if values:
            self.logger.log(step, values)

    def close(self) -> None:
        """Nothing to close: the MetricLogger is closed by the session."""


class TrainingSession:
    """Services of one run: logging, feedback, evaluation, checkpoints, progress.

    Args:
        config: the resolved run config.
        run_dir: the run directory (created if missing).
        obs_dim: observation width; act_dim: action width.
        episode_limit: the env's time limit in steps.
        console: where progress and messages go.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        obs_dim: int,
        act_dim: int,
        episode_limit: int,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.console = console or Console(stderr=True)
        self.seeds = child_seeds(config.seed)
        torch.set_num_threads(config.torch_threads)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(config))
        self.store = (
            FeedbackStore(config.store_url) if config.store_url else FeedbackStore.open(run_dir)
        )
        self.logger = MetricLogger(run_dir)
        self.reward_model = RewardModel(
            obs_dim, act_dim, config.reward_model, seed=self.seeds["reward_model"]
        )
        human = config.teacher.human
        scripted = config.teacher.build(config.human.scripted if human else None)
        teacher = ScriptedTeacher(scripted, seed=self.seeds["teacher"])
        self.human = (
            HumanFeedback(config, run_dir, self.store, teacher.teacher_id, self.message,
                          self.show_status)
            if human else None
        )
        self.learner = PreferenceLearner(
            config, self.store, teacher, self.reward_model,
            np.random.default_rng(self.seeds["queries"]), episode_limit, self.human,
        )
        self.eval_env = make_env(config.env)
        self.next_eval = config.eval.every
        self.next_checkpoint = config.checkpoint_every
        self.start_time = time.perf_counter()
        self.elapsed_before = 0.0
        self.last_eval: dict[str, float] = {}
        self.divergence = DivergenceMonitor(config.eval.episodes)
        # over-optimisation diagnostics and mitigations (rewardlab.algorithms.mitigations)
        self.learner.schedule = effective_schedule(
            config, config.ppo.n_envs if config.algorithm == "pref_ppo" else 1
        )
        self.overopt = OveroptimizationGuard(
            config, self.seeds["mitigation"], lambda: make_env(config.env)
        )
        self.stop_requested = False
        # Ctrl-C during the training loop (which installs it): raised at once, and again
        # between chunks if a finaliser swallowed it
        self.interrupt = SigintLatch()
        self._progress: Progress | None = None
        self._task: Any = None
        self._status_override: str | None = None

    # ---------------------------------------------------------------- envs
    def make_proxy_env(
        self, n_envs: int, capacity: int
    ) -> tuple[LearnedRewardVecEnv, TransitionLog]:
        """The training envs behind the proxy-reward wrapper, and the log they write to.

        Args:
            n_envs: parallel environments (a ``DummyVecEnv``, each wrapped in SB3's Monitor).
            capacity: steps kept per env in the transition log.

        Returns:
            ``(env, log)``; the log records MuJoCo simulator states for rendering clips when
            ``record_render_states`` is on and the env is a MuJoCo env.
        """
        config = self.config
        venv = make_vec_env(lambda: make_env(config.env), n_envs=n_envs, seed=self.seeds["env"])
        reader = mujoco_state_fn(venv) if config.record_render_states else None
        state_fn, state_dim = reader if reader is not None else (None, 0)
        log = TransitionLog(capacity, n_envs, self.obs_dim, self.act_dim, state_dim)
        return LearnedRewardVecEnv(venv, log, reward_fn=None, state_fn=state_fn), log

    # ----------------------------------------------------------------- progress
    def start_progress(self, step: int) -> None:
        """Show a rich progress bar over env steps (if enabled)."""
        if not self.config.progress_bar:
            return
        self._progress = Progress(
            TextColumn(f"[bold]{self.config.algorithm}[/]"),
            BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=self.config.total_steps, completed=step, status=""
        )

    def update_progress(self, step: int) -> None:
        """Advance the bar to ``step`` and refresh its status text."""
        if self._progress is None:
            return
        c = self.learner.counters
        gold = self.last_eval.get("eval/gold_return")
        proxy = self.last_eval.get("eval/proxy_return")
        status = self._status_override or f"queries {c.asked}/{self.config.feedback.total_budget}"
        self._status_override = None
        if gold is not None:
            status += f"  gold {gold:.1f}"
        if proxy is not None and np.isfinite(proxy):
            status += f"  proxy {proxy:.1f}"
        self._progress.update(self._task, completed=step, status=status)

    def show_status(self, text: str) -> None:
        """Show ``text`` as the progress bar's status until the bar next advances."""
        self._status_override = text
        if self._progress is not None:
            self._progress.update(self._task, status=text)

    def stop_progress(self) -> None:
        """Remove the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def message(self, text: str) -> None:
        """Print a status line above the progress bar (not wrapped: links stay whole)."""
        self.console.print(text, soft_wrap=True)

    # ------------------------------------------------------------------ logging
    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Log metrics at env step ``step`` (JSONL + TensorBoard)."""
        self.logger.log(step, metrics)

    def sb3_logger(self) -> Logger:
        """An SB3 logger whose ``train/``, ``rollout/`` and ``time/`` values reach our metrics.

        SB3's Monitor sits *inside* the proxy-reward wrapper, so its episode returns are gold
        returns of the training episodes: ``rollout/ep_rew_mean`` is renamed
        ``rollout/gold_return_mean`` to say so.
        """
        return Logger(
            folder=str(self.run_dir / "tensorboard"),
            output_formats=[
                _MetricForwarder(self.logger),
                TensorBoardOutputFormat(str(self.run_dir / "tensorboard" / "sb3")),
            ],
        )

    def elapsed(self) -> float:
        """Wall-clock seconds of training so far, across resumes."""
        return self.elapsed_before + time.perf_counter() - self.start_time

    # --------------------------------------------------------------- evaluation
    def evaluate(self, model: BaseAlgorithm, step: int) -> dict[str, float]:
        """Gold and proxy return of deterministic-policy episodes; logs ``eval/`` metrics."""
        def policy(obs: np.ndarray) -> np.ndarray:
            return model.predict(obs, deterministic=True)[0]

        result = evaluate(
            self.eval_env, policy,
            self.reward_model if self.reward_model.updates > 0 else None,
            self.config.eval.episodes, seed=self.seeds["eval_env"],
        )
        metrics = result.metrics()
        metrics.update(self.overopt.eval_metrics(model, result))
        if self.learner.last_metrics:
            metrics["reward_model/heldout_accuracy"] = self.learner.last_metrics.get(
                "reward_model/heldout_accuracy", float("nan")
            )
        metrics["time/elapsed_s"] = self.elapsed()
        metrics["time/steps_per_s"] = step / max(self.elapsed(), 1e-9)
        self.log(step, metrics)
        self.last_eval = metrics
        self.next_eval = step + self.config.eval.every
        event = self.divergence.update(
            step, metrics["eval/gold_return"], metrics["eval/proxy_return"],
            metrics["eval/gold_return_std"],
        )
        if event is not None:
            self.log(step, {
                "diagnostics/overoptimization_step": float(event.step),
                "diagnostics/gold_peak_step": float(event.peak_step),
                "diagnostics/gold_drop": event.drop,
                "diagnostics/proxy_gain_since_peak": event.proxy_gain_since_peak,
                "diagnostics/p_value": event.p_value,
            })
            self.message(
                f"[yellow]over-optimisation:[/] gold return fell {event.drop:.1f} below its peak "
                f"at step {event.peak_step} while the proxy return rose "
                f"{event.proxy_gain_since_peak:.1f}"
            )
        if self.overopt.check_eval(model, step, metrics):
            self.stop_requested = True
        return metrics

    def stop_early(self, model: BaseAlgorithm, step: int) -> None:
        """Early-stopping mitigation: roll the policy back to the last trusted one, evaluate
        it (logged at ``step`` under ``eval/``, overriding that step's earlier evaluation) and
        log the ``diagnostics/early_stop_*`` event."""
        trusted = self.overopt.rollback(model)
        result = evaluate(
            self.eval_env, lambda obs: model.predict(obs, deterministic=True)[0],
            self.reward_model, self.config.eval.episodes, seed=self.seeds["eval_env"],
        )
        metrics = result.metrics()
        metrics.update(self.overopt.eval_metrics(model, result))
        metrics["diagnostics/early_stop_step"] = float(step)
        metrics["diagnostics/early_stop_rollback_step"] = float(
            step if trusted is None else trusted
        )
        self.log(step, metrics)
        self.last_eval = metrics
        self.next_eval = step + self.config.eval.every
        self.message(
            f"[yellow]early stop[/] at step {step} ({self.overopt.stop_reason}); policy rolled "
            f"back to step {trusted}"
        )

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(
        self, model: BaseAlgorithm, log: TransitionLog, step: int, extra: dict[str, Any]
    ) -> None:
        """Write ``checkpoints/latest`` atomically (a new folder, then a rename)."""
        final = self.run_dir / CHECKPOINT_DIR
        tmp = final.with_name("latest.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_sb3(model, tmp)
        if getattr(model, "replay_buffer", None) is not None:
            save_replay_buffer(model.replay_buffer, tmp / "replay_buffer.npz")
        save_log(log, str(tmp / "transition_log.npz"))
        self.reward_model.save(tmp)
        self.overopt.save(tmp)
        state = {
            "format_version": 1,
            "step": step,
            "elapsed_s": self.elapsed(),
            "next_eval": self.next_eval,
            "next_checkpoint": step + self.config.checkpoint_every,
            "feedback": self.learner.state(),
            "query_rng": rng_state_to_json(self.learner.rng),
            "teacher_rng": rng_state_to_json(self.learner.teacher.rng),
            "extra": extra,
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        old = final.with_name("latest.old")
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        self.next_checkpoint = step + self.config.checkpoint_every

    def load_checkpoint(self, model: BaseAlgorithm, log: TransitionLog) -> dict[str, Any]:
        """Restore agent, transition log, reward model and counters from ``checkpoints/latest``.

        Labels given after the checkpoint are kept: the store is the source of truth, so the
        reward model is retrained on them when the store holds more than the checkpoint knew.

        Returns:
            The checkpoint's ``extra`` dict (method-specific state).

        Raises:
            RunDirError: if the run has no complete checkpoint.
        """
        ckpt = self.run_dir / CHECKPOINT_DIR
        if not (ckpt / "state.json").exists():
            raise RunDirError(
                f"{self.run_dir}: no checkpoint to resume from ({CHECKPOINT_DIR}/state.json)"
            )
        state = json.loads((ckpt / "state.json").read_text())
        load_sb3(model, ckpt)
        if getattr(model, "replay_buffer", None) is not None:
            load_replay_buffer(model.replay_buffer, ckpt / "replay_buffer.npz")
        load_log(log, str(ckpt / "transition_log.npz"))
        loaded = RewardModel.load(ckpt)
        self.reward_model.net.load_state_dict(loaded.net.state_dict())
        self.reward_model.optimizer.load_state_dict(loaded.optimizer.state_dict())
        self.reward_model.reward_mean = loaded.reward_mean
        self.reward_model.reward_std = loaded.reward_std
        self.reward_model.updates = loaded.updates
        self.reward_model.generator.set_state(loaded.generator.get_state())
        self.learner.load_state(state["feedback"])
        self.overopt.load(ckpt, model)
        self.learner.rng = rng_from_json(state["query_rng"])
        self.learner.teacher.rng = rng_from_json(state["teacher_rng"])
        self.next_eval = state["next_eval"]
        self.next_checkpoint = state["next_checkpoint"]
        self.elapsed_before = float(state["elapsed_s"])
        self.start_time = time.perf_counter()
        counts = self.store.summary.counts()
        c = self.learner.counters
        if counts["queries"] > c.asked:
            self.message(
                f"store holds {counts['queries'] - c.asked} queries newer than the checkpoint"
            )
            step = int(state["step"])
            if self.human is not None and self.learner.resume_open_round(log, step) is not None:
                return dict(state.get("extra", {}))
            c.asked = counts["queries"]
            c.answered = counts["answered"]
            c.skipped = counts["skipped"]
            c.rounds = max(c.rounds, int(self.store.records.current_round() or 0) + 1)
            self.message("retraining the reward model on all labels")
            self.learner.train_reward_model(log)
        return dict(state.get("extra", {}))

    # ---------------------------------------------------------- loop services
    def record_round(self, step: int, metrics: dict[str, float]) -> None:
        """Log a feedback round's metrics and print one line about it."""
        self.log(step, metrics)
        self.message(
            f"step {step}: round {int(metrics['feedback/round'])}, "
            f"{int(metrics['feedback/queries_asked'])} queries, reward model held-out "
            f"accuracy {metrics['reward_model/heldout_accuracy']:.2f}"
        )

    def after_chunk(
        self, model: BaseAlgorithm, log: TransitionLog, step: int, extra: dict[str, Any]
    ) -> None:
        """Evaluate and checkpoint when due, then advance the progress bar.

        Raises:
            KeyboardInterrupt: if Ctrl-C was pressed during the chunk (even if its first
                ``KeyboardInterrupt`` was swallowed by a finaliser; see
                :mod:`rewardlab.algorithms.interrupt`).
        """
        self.interrupt.check()
        if step >= self.next_eval:
            self.evaluate(model, step)
        if step >= self.next_checkpoint:
            self.save_checkpoint(model, log, step, extra)
        if self.human is not None:
            self.human.training(
                step, self.learner.counters.asked, self.learner.next_round_step(step)
            )
        self.update_progress(step)

    def close(
        self, model: BaseAlgorithm, log: TransitionLog, interrupted: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Final checkpoint (also after Ctrl-C), final evaluation, plot and summary."""
        step = model.num_timesteps
        if interrupted:
            self.stop_progress()
            self.message(f"interrupted at step {step}: saving a checkpoint")
        self.save_checkpoint(model, log, step, extra)
        if not interrupted and self.next_eval - self.config.eval.every < step:
            self.evaluate(model, step)
        model.get_env().close()
        return self.finish(step, interrupted)

    # ------------------------------------------------------------------- finish
    def finish(self, step: int, interrupted: bool) -> dict[str, Any]:
        """Write the plot and ``summary.json``; close files. Returns the summary."""
        self.stop_progress()
        if self.human is not None:
            self.human.close(step, self.learner.counters.asked, interrupted)
        plot = plot_gold_vs_proxy(self.run_dir, f"{self.config.algorithm} on {self.config.env.id}")
        summary = {
            "algorithm": self.config.algorithm,
            "env": self.config.env.id,
            "seed": self.config.seed,
            "steps": step,
            "total_steps": self.config.total_steps,
            "interrupted": interrupted,
            "wall_time_s": self.elapsed(),
            "final_eval": self.last_eval,
            "feedback": self.learner.state(),
            "store": self.store.summary.counts(),
            "plot": plot.name,
            "overoptimization": self.overopt.summary(),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.logger.close()
        self.store.close()
        self.eval_env.close()
        return summary


def resolve_resume(run_dir: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config of an existing run (``run_dir/config.yaml``) with optional overrides.

    Raises:
        RunDirError: if ``run_dir`` holds no config.yaml.
    """
    path = run_dir / "config.yaml"
    if not path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    return load_config(path, overrides)
