"""What the offline loop (:mod:`rewardlab.algorithms.offline_loop`) keeps between sessions:
its state, checkpoints (safetensors, ``.npy`` and JSON through
:meth:`~rewardlab.algorithms.run_dir.RunDir.save_checkpoint`, never pickle) and the run
summary. The offline counterpart of the online :mod:`rewardlab.algorithms.training` helpers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.algorithms.checkpoint import rng_from_json, rng_state_to_json
from rewardlab.algorithms.offline.cpl import CPL
from rewardlab.algorithms.offline.iql import IQL
from rewardlab.algorithms.offline.relabel import LearnedReward
from rewardlab.algorithms.offline.td3bc import TD3BC
from rewardlab.algorithms.run_dir import RunDir
from rewardlab.config import TrainConfig
from rewardlab.data.offline import OfflineDataset
from rewardlab.store.store import FeedbackStore

__all__ = ["X_AXIS", "Agent", "OfflineState", "restore_offline", "save_offline", "summarize"]

#: x-axis of offline runs' metrics, plots and reports.
X_AXIS = "gradient updates"
#: The offline agents.
Agent = IQL | TD3BC | CPL


@dataclass
class OfflineState:
    """Everything the offline loop decides with, saved as JSON in each checkpoint.

    Attributes:
        step: gradient updates of the agent so far (the metrics' x-axis).
        rounds: feedback rounds finished (their reward fit included).
        labelled: every round asked and the reward model fit (stage 1 done).
        relabelled: the training rewards are computed (stage 2 done; in the checkpoint).
        next_eval: update of the next evaluation (0: evaluate the untrained policy first).
        last_eval_step: update of the latest evaluation (``None`` before the first).
        next_checkpoint: update of the next periodic checkpoint.
        reward_factor: the rescaling ``offline.reward_scale / return spread`` (1 if off).
        reward_shift: added to every rescaled reward.
        elapsed_s: wall seconds of the run so far, across resumes.
        seconds: wall seconds per activity (``queries``, ``teacher``, ``human_wait``,
            ``reward_training``, ``relabel``, ``evaluation``).
    """

    step: int = 0
    rounds: int = 0
    labelled: bool = False
    relabelled: bool = False
    next_eval: int = 0
    last_eval_step: int | None = None
    next_checkpoint: int = 0
    reward_factor: float = 1.0
    reward_shift: float = 0.0
    elapsed_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: {
        "queries": 0.0, "teacher": 0.0, "human_wait": 0.0, "reward_training": 0.0,
        "relabel": 0.0, "evaluation": 0.0,
    })

    def add_seconds(self, seconds: dict[str, float]) -> None:
        """Add wall seconds per activity."""
        for key, value in seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


def save_offline(run: RunDir, state: OfflineState, agent: Agent, model: LearnedReward | None,
                 rewards: np.ndarray | None, rngs: dict[str, np.random.Generator]) -> None:
    """Checkpoint atomically (:meth:`RunDir.save_checkpoint`): the agent (safetensors + JSON,
    its own generators included), the reward model, the training rewards (``rewards.npy``),
    the generators and ``state``."""

    def write(folder: Path) -> None:
        agent.save(folder)
        if model is not None:
            model.save(folder)
        if rewards is not None:
            np.save(folder / "rewards.npy", rewards, allow_pickle=False)

    record = asdict(state)
    record["rngs"] = {name: rng_state_to_json(rng) for name, rng in rngs.items()}
    run.save_checkpoint(record, write)


def restore_offline(run: RunDir, agent: Agent, model: LearnedReward | None,
                    rngs: dict[str, np.random.Generator],
                    ) -> tuple[OfflineState, np.ndarray | None]:
    """Load what :func:`save_offline` wrote into freshly built objects.

    Returns:
        ``(state, training rewards or None)``.

    Raises:
        RunDirError: if a checkpoint file is missing or does not fit the run's config.
    """
    folder, record = run.checkpoint, dict(run.checkpoint_state or {})
    agent.load_into(folder)
    if model is not None:
        model.load_into(folder)
    for name, saved in record.pop("rngs").items():
        rngs[name].bit_generator.state = rng_from_json(saved).bit_generator.state
    rewards = (np.load(folder / "rewards.npy", allow_pickle=False)
               if (folder / "rewards.npy").exists() else None)
    fields = OfflineState.__dataclass_fields__
    state = OfflineState(**{k: v for k, v in record.items() if k in fields})
    state.relabelled = state.relabelled and rewards is not None  # a forced stop mid-relabel
    return state, rewards


def summarize(config: TrainConfig, dataset: OfflineDataset, state: OfflineState,
              interrupted: bool, last_eval: dict[str, float], store: FeedbackStore,
              plot: Path) -> dict[str, Any]:
    """The run summary (``summary.json``); counts come from the feedback store."""
    return {
        "algorithm": config.algorithm, "env": config.env.id, "seed": config.seed,
        "dataset": dataset.dataset_id, "dataset_steps": dataset.n_steps,
        "dataset_fingerprint": dataset.fingerprint(),
        "x_axis": X_AXIS, "steps": state.step, "total_updates": config.offline.updates,
        "interrupted": interrupted, "wall_time_s": state.elapsed_s, "final_eval": last_eval,
        "reward": {
            "kind": "none (CPL)" if config.algorithm == "cpl" else config.offline.reward,
            "model": (config.offline.reward_model if config.algorithm != "cpl"
                      and config.offline.reward == "learned" else None),
            "factor": state.reward_factor, "shift": state.reward_shift,
        },
        "dataset_normalized_score": dataset.behaviour_score(),
        "feedback": {"rounds": state.rounds, "seconds": state.seconds,
                     "answers_by_teacher": dict(Counter(
                         p.teacher_id for p in store.records.preferences()))},
        "store": store.summary.counts(), "plot": plot.name,
    }
