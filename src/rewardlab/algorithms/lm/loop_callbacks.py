"""The ``transformers`` callbacks that run a language-model run's stages inside a TRL trainer:
feedback rounds at their steps, stops on Ctrl-C/SIGTERM with progress and ``train/`` logs,
and the run's checkpoint after each TRL save; and the TRL arguments that make those saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rewardlab.algorithms.lm.loop_eval import status_text
from rewardlab.algorithms.lm.loop_rounds import rounds_due, run_round
from rewardlab.algorithms.lm.loop_state import LMRun, save_checkpoint
from rewardlab.config import TrainConfig


class FeedbackRounds(TrainerCallback):
    """Feedback rounds during RL: at each due step, sample from the current policy, ask, refit
    the very ensemble object the trainer's reward function calls, then have the trainer save a
    checkpoint at that step (so a resume never pairs a policy with another round's reward)."""

    def __init__(self, lm_run: LMRun) -> None:
        self.lm_run = lm_run

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, D102
        if rounds_due(self.lm_run, state.global_step):
            while rounds_due(self.lm_run, state.global_step):
                run_round(self.lm_run, model, state.global_step)
            control.should_save = True
        return control


class StopAndProgress(TrainerCallback):
    """Ctrl-C/SIGTERM (latched by :class:`~rewardlab.algorithms.interrupt.StopSignals`) end
    training at the next step with a checkpoint; the progress bar follows the steps; TRL's logs
    become ``train/`` metrics."""

    SKIP = frozenset({"train_runtime", "train_samples_per_second", "train_steps_per_second",
                      "total_flos", "train_loss", "epoch"})

    def __init__(self, lm_run: LMRun) -> None:
        self.lm_run = lm_run

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, D102
        self.lm_run.state.step = state.global_step
        self.lm_run.ui.update(state.global_step, status_text(self.lm_run.last_eval))
        if self.lm_run.signals.pressed:
            control.should_training_stop = True
            control.should_save = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, D102
        values = {f"train/{k.replace('/', '_')}": float(v) for k, v in (logs or {}).items()
                  if k not in self.SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if values:
            self.lm_run.run.log(state.global_step, values)


class RunCheckpoint(TrainerCallback):
    """After TRL saves ``checkpoint-N``, write the run's checkpoint pointing at it (the loop
    state, the metrics length and the reward model as it is at step N)."""

    def __init__(self, lm_run: LMRun) -> None:
        self.lm_run = lm_run

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, D102
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.lm_run.state.step = state.global_step
        self.lm_run.state.trl_checkpoint = str(folder.relative_to(self.lm_run.run.path))
        save_checkpoint(self.lm_run)
        return control


def trl_checkpoint_args(config: TrainConfig) -> dict[str, Any]:
    """TRL arguments that save ``checkpoint-N`` folders every ``lm.checkpoint_every`` steps
    (the last two kept; the run's checkpoint names one of them)."""
    return {"save_strategy": "steps", "save_steps": config.lm.checkpoint_every,
            "save_total_limit": 2}
