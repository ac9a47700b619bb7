"""Who answers a language-model run's text queries: the scripted teacher on gold
(:class:`GoldTeacher`, exact ties EQUAL), a judge (``lm.judge``: a lexicon or an
OpenAI-compatible endpoint), or people in the annotation web app (``teacher=human``: the
control loops' :class:`~rewardlab.feedback.human.HumanTeacher`). The rounds
(:mod:`rewardlab.algorithms.lm.loop_rounds`) ask them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rewardlab.algorithms.progress import TrainingProgress
from rewardlab.algorithms.run_dir import RunDir
from rewardlab.config import TrainConfig
from rewardlab.feedback.human import AnnotationServer, HumanTeacher
from rewardlab.feedback.judges import OpenAIJudge, ScorerJudge
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.lm.tasks import TextTask
from rewardlab.store.store import FeedbackStore
from rewardlab.types import Label


class GoldTeacher(ScriptedTeacher):
    """A scripted teacher for text queries that answers an exact gold tie EQUAL.

    A lexicon gold scores most neutral completions exactly 0 (about half the pairs of the
    base policy's completions on ``sentiment``), and B-Pref's rational rule gives every tie
    to LEFT: with the sides shown at random, half the labels would be coin flips the reward
    model must fit. An exact tie is "can't tell" (target 0.5) instead; every other answer is
    :meth:`ScriptedTeacher.label_text`'s (mistakes, skips and ``eps_equal`` included).
    """

    def label_text(self, gold: np.ndarray) -> np.ndarray:
        """``(batch,)`` int8 labels of ``(batch, 2)`` gold scores, exact ties EQUAL."""
        labels = super().label_text(gold)
        gold = np.asarray(gold, dtype=np.float64)
        labels[gold[:, 0] == gold[:, 1]] = Label.EQUAL
        return labels


def scripted_teacher(config: TrainConfig, seed: int) -> GoldTeacher:
    """The scripted teacher on gold (with people: ``human.scripted``, which answers on timeout
    or pre-labels in mixed mode), with the ``teacher`` section's overrides."""
    human = config.teacher.human
    return GoldTeacher(config.teacher.build(config.human.scripted if human else None),
                       seed=seed)


def scripted_teacher_id(config: TrainConfig) -> str:
    """The ``teacher_id`` of :func:`scripted_teacher`'s answers."""
    return scripted_teacher(config, 0).teacher_id


def build_human(config: TrainConfig, run: RunDir, store: FeedbackStore, ui: TrainingProgress,
                server: AnnotationServer | None, stop_check: Callable[[], None],
                ) -> HumanTeacher | None:
    """People answering text queries in the web app when ``teacher=human`` (else ``None``):
    the control loops' :class:`~rewardlab.feedback.human.HumanTeacher` (annotators made and
    their links printed on a new run; ``status.json`` for the page), counting optimizer steps.
    Its wait for people calls ``stop_check`` at every poll (Ctrl-C stops the run there)."""
    if not config.teacher.human:
        return None
    total = len(config.lm.bon_n) if config.algorithm == "bon" else config.lm.steps
    return HumanTeacher(config.human, run.path, store, scripted_teacher_id(config),
                        config.feedback.total_budget, total, ui.message, ui.status, server,
                        stop_check)


def build_judge(config: TrainConfig, task: TextTask, seed: int) -> ScorerJudge | OpenAIJudge | None:
    """The judge of ``lm.judge`` (``None``: the scripted teacher answers on gold).

    Raises:
        ConfigError: naming ``lm.judge_api_key_env`` if that variable is not set.
    """
    import os

    from rewardlab.errors import ConfigError

    lm = config.lm
    if lm.judge == "none":
        return None
    if lm.judge == "lexicon":
        return ScorerJudge(task.judge)
    key = None
    if lm.judge_api_key_env is not None:
        key = os.environ.get(lm.judge_api_key_env)
        if not key:
            raise ConfigError(f"lm.judge_api_key_env: the environment variable "
                              f"{lm.judge_api_key_env} is not set; export it or drop the key")
    assert lm.judge_url is not None and lm.judge_model is not None
    return OpenAIJudge(lm.judge_url, lm.judge_model, api_key=key, question=task.judge_question,
                       seed=seed)
