"""The state of a language-model run (:mod:`rewardlab.algorithms.lm_loop`): what its stages
share (:class:`LMRun`), what a checkpoint saves (:class:`LMState`), the pieces set-up builds
from the config (the reward-model ensemble, the normalisation sample, the alarm replayed on
resume), and what the run writes about itself: the checkpoint, ``status.json`` and
``summary.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.lm.loop_answerers import scripted_teacher_id
from rewardlab.algorithms.progress import TrainingProgress
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import TrainConfig
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    DivergenceMonitor,
)
from rewardlab.feedback.human import HumanTeacher
from rewardlab.feedback.judges import OpenAIJudge, ScorerJudge
from rewardlab.feedback.rounds import round_step, total_rounds
from rewardlab.feedback.run_status import write_status
from rewardlab.lm.generation import sample_completions
from rewardlab.lm.tasks import TextTask
from rewardlab.rewards.text_model import TextRewardConfig, TextRewardEnsemble
from rewardlab.store.store import FeedbackStore

#: Training prompts x 2 base-policy completions the proxy reward is standardised on.
NORMALIZATION_PROMPTS = 64


# ------------------------------------------------------------------------ state
@dataclass
class LMState:
    """What the loop decides with, saved as JSON in each checkpoint.

    Attributes:
        step: optimizer steps done (bon: n-grid entries evaluated).
        rounds: feedback rounds finished and fit.
        stage: ``feedback`` (rounds before optimisation), ``optimise`` or ``done``.
        trl_checkpoint: the TRL ``checkpoint-N`` folder this checkpoint continues from.
        elapsed_s: wall seconds so far, across resumes.
        seconds: wall seconds per activity (``queries``, ``reward_training``; with people
            also ``human_wait``).
    """

    step: int = 0
    rounds: int = 0
    stage: str = "feedback"
    trl_checkpoint: str | None = None
    elapsed_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: {
        "queries": 0.0, "reward_training": 0.0})

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> LMState:
        """The state of a checkpoint's ``state.json`` (a fresh state for ``None``)."""
        if not record:
            return cls()
        return cls(**{k: v for k, v in record.items() if k in cls.__dataclass_fields__})


@dataclass
class LMRun:
    """The pieces of one language-model run that the stages share.

    Attributes:
        config: the run config.
        run: the run directory.
        store: the feedback store.
        task: the text task (gold and judge scorers).
        base_dir: the base policy's ``save_pretrained`` directory (also the KL reference).
        reference: the base policy, loaded (frozen; rounds before training sample from it).
        tokenizer: its tokenizer.
        train_prompts: training prompts; eval_prompts: held-out ones.
        ensemble: the reward-model ensemble (``None`` with ``lm.reward=gold`` and no labels).
        judge: the judge answering queries (``None``: the scripted teacher on gold).
        human: people answering queries in the web app (``teacher=human``), else ``None``.
        normalization: ``(prompts, completions)`` of the base policy the proxy is standardised
            on.
        seeds: the run's child seeds (:func:`rewardlab.seeding.child_seeds`).
        state: the loop state.
        ui: progress bar and terminal lines.
        alarm: the over-optimisation alarm.
        signals: Ctrl-C / SIGTERM.
        clock: wall seconds across resumes.
        last_eval: the latest evaluation's metrics.
    """

    config: TrainConfig
    run: RunDir
    store: FeedbackStore
    task: TextTask
    base_dir: Path
    reference: Any
    tokenizer: Any
    train_prompts: list[str]
    eval_prompts: list[str]
    ensemble: TextRewardEnsemble | None
    judge: ScorerJudge | OpenAIJudge | None
    normalization: tuple[list[str], list[str]]
    seeds: dict[str, int]
    state: LMState
    ui: TrainingProgress
    alarm: DivergenceMonitor
    signals: StopSignals
    clock: Stopwatch
    human: HumanTeacher | None = None
    last_eval: dict[str, float] = field(default_factory=dict)

    @property
    def needs_labels(self) -> bool:
        """Whether the run asks queries (a learned reward, or DPO on the labels)."""
        return self.config.lm.reward == "learned"

    @property
    def fallback_teachers(self) -> tuple[str, ...]:
        """Teachers whose answers count only where no person answered (mixed mode: the
        scripted teacher that pre-labels), as the store's ``fallback_teachers``."""
        if self.human is None or not self.human.config.mixed:
            return ()
        return (scripted_teacher_id(self.config),)

    def proxy(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """The reward as optimised: the ensemble's (reduced, standardised), or gold."""
        if self.ensemble is None:
            return self.task.gold(list(prompts), list(completions))
        return self.ensemble.reward(prompts, completions)

    def member_scores(self) -> Callable[[Sequence[str], Sequence[str]], np.ndarray] | None:
        """The ensemble's member scores (for the disagreement), if there is an ensemble."""
        return None if self.ensemble is None else self.ensemble.score


# ------------------------------------------------------------------------ building
def new_ensemble(config: TrainConfig, base_dir: Path, seed: int) -> TextRewardEnsemble:
    """A fresh ensemble of ``lm.rm_members`` fine-tuned copies of the base backbone."""
    lm = config.lm
    rm = TextRewardConfig(members=lm.rm_members, max_length=lm.rm_max_length,
                          reduction=lm.rm_reduction, k_std=lm.rm_k_std)
    return TextRewardEnsemble.from_base(base_dir, rm, seed=seed)


def normalization_sample(config: TrainConfig, reference: Any, tokenizer: Any,
                         train_prompts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Two base-policy completions of each of the first :data:`NORMALIZATION_PROMPTS`
    training prompts (the same on every resume: fixed seed)."""
    s = sample_completions(reference, tokenizer, train_prompts[:NORMALIZATION_PROMPTS], 2,
                           config.lm.max_new_tokens, seed=seed)
    return s.prompts, s.completions


def replay_alarm(alarm: DivergenceMonitor, run: RunDir) -> None:
    """Feed a resumed run's earlier evaluations (as logged) back into the alarm."""
    for row in read_metrics(run.path):
        if row.get("eval/gold_return") is not None and row.get("eval/proxy_return") is not None:
            alarm.update(int(row["step"]), row["eval/gold_return"], row["eval/proxy_return"],
                         row.get("eval/gold_return_std") or 0.0)


# ------------------------------------------------------------------------ checkpoint
def save_checkpoint(lm_run: LMRun) -> None:
    """Write the run's checkpoint atomically (:meth:`RunDir.save_checkpoint`): ``state.json``
    and the ensemble (``reward_model/``, safetensors)."""
    lm_run.state.elapsed_s = lm_run.clock.elapsed()

    def write(folder: Path) -> None:
        if lm_run.ensemble is not None:
            lm_run.ensemble.save(folder / "reward_model")

    lm_run.run.save_checkpoint(asdict(lm_run.state), write)


# ------------------------------------------------------------------------ status and summary
def write_lm_status(lm_run: LMRun, state: str) -> None:
    """``status.json``: what the run is doing now (see :mod:`rewardlab.feedback.run_status`);
    with people, through :meth:`HumanTeacher.write` (the app's address, ``on_timeout`` and the
    mixed-mode pre-labelling teacher for the page)."""
    fb = lm_run.config.feedback
    nxt = None
    if lm_run.needs_labels and lm_run.state.rounds < total_rounds(fb):
        nxt = round_step(fb, lm_run.state.rounds)
    fields = {"track": "lm", "step": lm_run.state.step, "round": lm_run.state.rounds,
              "next_round_step": nxt}
    if lm_run.human is not None:
        lm_run.human.write(state, **fields)
        return
    write_status(lm_run.run.path, state=state, total_steps=lm_run.config.lm.steps,
                 asked=lm_run.store.summary.counts()["queries"], budget=fb.total_budget,
                 app_url=None, **fields)


def summarize(lm_run: LMRun, status: str, plot: Path | None) -> dict[str, Any]:
    """The run summary (``summary.json``), per the LM run-directory contract."""
    c = lm_run.config
    event = lm_run.alarm.event
    return {
        "track": "lm",
        "algorithm": c.algorithm,
        "task": c.lm.task,
        "env": c.lm.task,
        "seed": c.seed,
        "status": status,
        "interrupted": status == "stopped",
        "steps": lm_run.state.step,
        "total_steps": len(c.lm.bon_n) if c.algorithm == "bon" else c.lm.steps,
        "x_axis": "best-of-n grid index" if c.algorithm == "bon" else "optimizer steps",
        "base_model": str(lm_run.base_dir),
        "wall_time_s": lm_run.clock.elapsed(),
        "final_eval": lm_run.last_eval,
        "overoptimization": None if event is None else {
            key: float(getattr(event, f)) for f, key in EVENT_KEYS.items()},
        "feedback": {"rounds": lm_run.state.rounds, "seconds": lm_run.state.seconds,
                     "answers_by_teacher": dict(Counter(
                         p.teacher_id for p in lm_run.store.records.preferences()))},
        "store": lm_run.store.summary.counts(),
        "plot": None if plot is None else plot.name,
    }
