"""The stages the language-model training loop (:mod:`rewardlab.algorithms.lm_loop`) calls by
name: building a run's pieces, a feedback round on text, the reward-model refit, the
gold-vs-proxy evaluation row, and the ``transformers`` callbacks that run rounds, stops and
checkpoints inside a TRL trainer.

Nothing here decides the order of things; the loop does, top to bottom.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from transformers import TrainerCallback

from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.progress import TrainingProgress
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import TrainConfig
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    DivergenceMonitor,
    describe_overoptimization,
)
from rewardlab.feedback.human import AnnotationServer, HumanTeacher
from rewardlab.feedback.judges import OpenAIJudge, ScorerJudge, answer_text_queries, judge_agreement
from rewardlab.feedback.queries import same_prompt_pairs, select_queries
from rewardlab.feedback.rounds import answer_round, round_size, round_step, total_rounds
from rewardlab.feedback.run_status import write_status
from rewardlab.feedback.teachers import ScriptedTeacher
from rewardlab.lm.generation import sample_completions
from rewardlab.lm.tasks import TextTask
from rewardlab.rewards.text_model import TextRewardConfig, TextRewardEnsemble
from rewardlab.store.store import FeedbackStore
from rewardlab.types import LABEL_TARGETS, Label, TextSegment

#: Completions sampled per prompt when a round builds its candidate pool (each prompt gives
#: up to 4 * 3 / 2 = 6 same-prompt pairs).
QUERY_SAMPLES_PER_PROMPT = 4
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


# ------------------------------------------------------------------------ feedback
def feedback_round(lm_run: LMRun, policy: Any, round_: int, step: int) -> dict[str, float]:
    """Ask round ``round_`` of the ``feedback`` schedule on ``policy``'s completions.

    The round samples :data:`QUERY_SAMPLES_PER_PROMPT` completions of random training prompts
    (its own generator, seeded by the run and the round), forms same-prompt pairs
    (:func:`~rewardlab.feedback.queries.same_prompt_pairs`, ``feedback.oversample`` times the
    round's size), selects the round's queries (uniform in round 0 or before any fit, else
    ``feedback.method`` on the ensemble's preference probabilities), stores the completions as
    :class:`~rewardlab.types.TextSegment` s with their gold score and the queries, and has them
    answered (:func:`~rewardlab.feedback.rounds.answer_round`, as control rounds are) by the
    judge, by the scripted teacher on gold
    (:func:`~rewardlab.feedback.judges.answer_text_queries`), or by people in the web app
    (``teacher=human``: the run waits for them, ``human.on_timeout`` acting after
    ``human.timeout_s``; in mixed mode the scripted teacher pre-labels). A round whose queries
    are already in the store (a run resumed after a kill) reuses them and asks only unanswered
    ones; answers already given (people's included) are kept.

    Returns:
        The round's ``feedback/`` metrics (judge-vs-gold agreement for a judge; with people
        ``people_answered``, ``timed_out``, ``scripted_on_timeout`` and ``time/human_wait_s``),
        plus ``_query_ids`` (list) for the refit's fresh-query check.

    Raises:
        KeyboardInterrupt: passes through while waiting for people (Ctrl-C).
    """
    c, store = lm_run.config, lm_run.store
    t0 = time.perf_counter()
    existing = [q.query_id for q in store.records.get_queries() if q.round == round_]
    if existing:
        query_ids = existing
    else:
        query_ids = _ask_new(lm_run, policy, round_)
    query_ids = sorted(int(q) for q in query_ids)  # id order: HumanTeacher's positions
    teacher = scripted_teacher(c, lm_run.seeds["teacher"] + round_)
    answerer = lm_run.judge if lm_run.judge is not None else teacher
    answerer_id = answerer.judge_id if lm_run.judge is not None else teacher.teacher_id

    def scripted(positions: np.ndarray) -> int:
        ids = [query_ids[i] for i in positions]
        before = len(store.records.answers_of(answerer_id, ids))
        answer_text_queries(store, ids, answerer)
        return len(ids) - before

    segment_ids = [i for q in store.records.get_queries(query_ids)
                   for i in (q.left_id, q.right_id)] if lm_run.human is not None else []
    labels, outcome, seconds = answer_round(
        round=round_, step=step, query_ids=query_ids, segment_ids=segment_ids, store=store,
        scripted=scripted, scripted_id=answerer_id, human=lm_run.human)
    counts = store.summary.counts()
    metrics: dict[str, Any] = {
        "feedback/round": float(round_ + 1),
        "feedback/queries_asked": float(counts["queries"]),
        "feedback/queries_answered": float(counts["answered"]),
        "feedback/queries_skipped": float(counts["skipped"]),
        "feedback/equal_fraction": float((labels == Label.EQUAL).mean()) if len(labels) else
        math.nan,
        "feedback/reused_round": float(bool(existing)),
        "feedback/round_step": float(step),
    }
    if outcome is not None:
        lm_run.state.seconds["human_wait"] = (lm_run.state.seconds.get("human_wait", 0.0)
                                              + seconds["human_wait"])
        metrics["feedback/people_answered"] = float(outcome.answered)
        metrics["feedback/timed_out"] = float(outcome.timed_out)
        metrics["feedback/scripted_on_timeout"] = float(outcome.scripted)
        metrics["time/human_wait_s"] = lm_run.state.seconds["human_wait"]
    if lm_run.judge is not None:
        segs = store.records.get_text_segments(
            [i for q in store.records.get_queries(query_ids) for i in (q.left_id, q.right_id)])
        gold = np.array([[a.gold, b.gold] for a, b in zip(segs[0::2], segs[1::2], strict=True)])
        oracle = GoldTeacher("oracle").label_text(gold)
        agree = judge_agreement(labels.astype(np.int64), oracle.astype(np.int64))
        metrics["feedback/judge_gold_agreement"] = float(agree["agreement"])
        metrics["feedback/judge_gold_kappa"] = float(agree["kappa"])
    lm_run.state.seconds["queries"] += (time.perf_counter() - t0
                                        - seconds.get("human_wait", 0.0))
    metrics["_query_ids"] = list(query_ids)
    return metrics


def _ask_new(lm_run: LMRun, policy: Any, round_: int) -> list[int]:
    """Sample, select and store round ``round_``'s queries; returns their ids."""
    c, fb, store = lm_run.config, lm_run.config.feedback, lm_run.store
    size = round_size(fb, round_)
    rng = np.random.default_rng([lm_run.seeds["queries"], round_])
    pool = size * fb.oversample
    pairs_per_prompt = QUERY_SAMPLES_PER_PROMPT * (QUERY_SAMPLES_PER_PROMPT - 1) // 2
    n_prompts = min(len(lm_run.train_prompts), max(1, math.ceil(pool / pairs_per_prompt)))
    chosen_prompts = rng.choice(len(lm_run.train_prompts), n_prompts, replace=False)
    prompts = [lm_run.train_prompts[i] for i in chosen_prompts]
    s = sample_completions(policy, lm_run.tokenizer, prompts, QUERY_SAMPLES_PER_PROMPT,
                           c.lm.max_new_tokens, seed=int(rng.integers(2**31)))
    pairs = same_prompt_pairs(s.prompt_index, rng, n=pool, completions=s.completions)
    if len(pairs) == 0:
        return []
    fitted = lm_run.ensemble is not None and lm_run.state.rounds > 0
    method = fb.method if fitted and round_ > 0 else "uniform"
    probs = None
    if method != "uniform":
        assert lm_run.ensemble is not None
        probs = lm_run.ensemble.preference_probs(
            [(s.prompts[a], s.completions[a], s.completions[b]) for a, b in pairs])
    picked = pairs[select_queries(method, min(size, len(pairs)), len(pairs), rng, probs)]
    used = np.unique(picked)  # (u,) sample indices
    gold = lm_run.task.gold([s.prompts[i] for i in used], [s.completions[i] for i in used])
    task_id = f"{lm_run.task.name}/{lm_run.base_dir.name}"[:255]
    segments = [
        TextSegment(s.prompts[i], s.completions[i], np.asarray(s.prompt_ids[i]),
                    np.asarray(s.completion_ids[i]), task_id,
                    prompt_id=int(chosen_prompts[s.prompt_index[i]]), sample_id=int(i),
                    gold=float(g))
        for i, g in zip(used, gold, strict=True)
    ]
    seg_ids = dict(zip(used.tolist(), store.records.add_text_segments(segments), strict=True))
    return store.records.add_queries(
        [(seg_ids[int(a)], seg_ids[int(b)]) for a, b in picked], round=round_, source=method)


def _heldout(query_ids: np.ndarray, fraction: float) -> np.ndarray:
    """``(n,)`` bool: which queries are held out, by a hash of the query id (stable)."""
    h = (query_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return h.astype(np.float64) / 2**32 < fraction


def refit(lm_run: LMRun, round_metrics: dict[str, Any], round_: int) -> dict[str, float]:
    """Check the ensemble on the round's fresh queries, refit it on every label, check it on the
    held-out ones, and standardise it on the base policy's completions.

    Returns:
        ``reward_model/`` metrics: ``fresh_accuracy``/``fresh_ece`` (before the refit; not in
        round 0), ``train_accuracy``, ``heldout_accuracy``/``heldout_ece`` (NaN with no
        held-out label), ``labels``.
    """
    ensemble, lm = lm_run.ensemble, lm_run.config.lm
    assert ensemble is not None
    t0 = time.perf_counter()
    data = lm_run.store.records.text_training_pairs(
        fallback_teachers=lm_run.fallback_teachers)
    triples = [(a.prompt, a.completion, b.completion)
               for a, b in zip(data.left, data.right, strict=True)]
    targets = LABEL_TARGETS[data.labels.astype(np.int64)]
    metrics: dict[str, float] = {"reward_model/labels": float(np.isfinite(targets).sum())}
    fresh = np.isin(data.query_ids, np.asarray(round_metrics["_query_ids"], dtype=np.int64))
    fresh &= np.isfinite(targets)
    if lm_run.state.rounds > 0 and fresh.any():
        m = ensemble.evaluate([t for t, f in zip(triples, fresh, strict=True) if f],
                              targets[fresh])
        metrics["reward_model/fresh_accuracy"] = m.ensemble_accuracy
        metrics["reward_model/fresh_ece"] = m.ece
    held = _heldout(data.query_ids, lm.rm_holdout_fraction) & np.isfinite(targets)
    train = ~held & np.isfinite(targets)
    if train.any():
        history = ensemble.fit([t for t, k in zip(triples, train, strict=True) if k],
                               targets[train], epochs=lm.rm_epochs, batch_size=lm.rm_batch_size,
                               lr=lm.rm_lr, seed=lm_run.seeds["reward_model"] + round_,
                               val_fraction=0.0)
        metrics["reward_model/train_accuracy"] = history[-1]["train_accuracy"]
        metrics["reward_model/train_loss"] = history[-1]["train_loss"]
    metrics["reward_model/heldout_accuracy"] = math.nan
    metrics["reward_model/heldout_ece"] = math.nan
    if held.any():
        m = ensemble.evaluate([t for t, k in zip(triples, held, strict=True) if k], targets[held])
        metrics["reward_model/heldout_accuracy"] = m.ensemble_accuracy
        metrics["reward_model/heldout_ece"] = m.ece
        metrics["reward_model/heldout_disagreement"] = m.prob_std
    ensemble.normalize_on(*lm_run.normalization)
    lm_run.state.seconds["reward_training"] += time.perf_counter() - t0
    metrics["time/reward_training_s"] = lm_run.state.seconds["reward_training"]
    return metrics


def run_round(lm_run: LMRun, policy: Any, step: int) -> None:
    """Round ``state.rounds``: ask it, refit the ensemble, log its metrics at ``step`` and print
    its line; ``state.rounds`` counts it."""
    r = lm_run.state.rounds
    metrics = feedback_round(lm_run, policy, r, step)
    metrics.update(refit(lm_run, metrics, r))
    metrics.pop("_query_ids")
    metrics["time/elapsed_s"] = lm_run.clock.elapsed()
    lm_run.state.rounds = r + 1
    lm_run.run.log(step, metrics)
    lm_run.ui.message(describe_round(step, metrics))
    write_lm_status(lm_run, "training")


def describe_round(step: int, metrics: dict[str, float]) -> str:
    """One terminal line about a finished round."""
    parts = [f"step {step}: round {int(metrics['feedback/round'])}, "
             f"{int(metrics['feedback/queries_asked'])} queries"]
    for key, name in (("reward_model/heldout_accuracy", "held-out accuracy"),
                      ("reward_model/fresh_accuracy", "fresh accuracy"),
                      ("feedback/judge_gold_agreement", "judge-gold agreement")):
        value = metrics.get(key)
        if value is not None and math.isfinite(value):
            parts.append(f"{name} {value:.2f}")
    return ", ".join(parts) + (" (resumed round)" if metrics["feedback/reused_round"] else "")


def rounds_due(lm_run: LMRun, step: int) -> bool:
    """Whether the next round of the schedule is due at optimizer step ``step``."""
    fb = lm_run.config.feedback
    return (lm_run.needs_labels and lm_run.state.rounds < total_rounds(fb)
            and round_step(fb, lm_run.state.rounds) <= step)


# ------------------------------------------------------------------------ evaluation
def eval_metrics(row: dict[str, float]) -> dict[str, float]:
    """The contract's ``eval/`` keys of a :class:`GoldProxyCallback` row."""
    return {
        "eval/gold_return": row["gold"], "eval/gold_return_std": row["gold_std"],
        "eval/proxy_return": row["proxy"], "eval/proxy_return_std": row["proxy_std"],
        "eval/samples": row["samples"], "eval/kl": row["kl"], "eval/sqrt_kl": row["sqrt_kl"],
        "eval/mean_completion_tokens": row["completion_tokens"],
        "reward_model/disagreement_on_policy": row["disagreement"],
    }


def record_eval(lm_run: LMRun, step: int, metrics: dict[str, float]) -> dict[str, float]:
    """Feed an evaluation to the alarm, log it at ``step``, print its line and refresh
    ``status.json``."""
    metrics = {**metrics, "time/elapsed_s": lm_run.clock.elapsed()}
    proxy = metrics["eval/proxy_return"]
    if lm_run.ensemble is not None and math.isfinite(proxy):
        event = lm_run.alarm.update(step, metrics["eval/gold_return"], proxy,
                                    metrics["eval/gold_return_std"])
        if event is not None:
            metrics.update({key: float(getattr(event, f)) for f, key in EVENT_KEYS.items()})
            lm_run.ui.message(f"[yellow]{escape(describe_overoptimization(event))}[/]")
    lm_run.run.log(step, metrics)
    lm_run.last_eval = metrics
    lm_run.ui.message(describe_eval(step, metrics))
    lm_run.state.step = max(lm_run.state.step, step)
    write_lm_status(lm_run, "training")
    return metrics


def describe_eval(step: int, m: dict[str, float]) -> str:
    """One terminal line about an evaluation."""
    line = (f"step {step}: gold {m['eval/gold_return']:.3f}  proxy "
            f"{m['eval/proxy_return']:.3f}  sqrt KL {m['eval/sqrt_kl']:.3f}")
    if "eval/bon_n" in m:
        line = f"best-of-{int(m['eval/bon_n'])}: " + line.split(": ", 1)[1]
    dis = m.get("reward_model/disagreement_on_policy")
    return line + ("" if dis is None or not math.isfinite(dis) else f"  disagreement {dis:.3f}")


def status_text(m: dict[str, float]) -> str:
    """The progress bar's status text."""
    if not m:
        return ""
    return (f"gold {m['eval/gold_return']:.3f}  proxy {m['eval/proxy_return']:.3f}  "
            f"sqrt KL {m['eval/sqrt_kl']:.2f}")


# ------------------------------------------------------------------------ callbacks
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
    """Ctrl-C/SIGTERM (latched by :class:`StopSignals`) end training at the next step with a
    checkpoint; the progress bar follows the steps; TRL's logs become ``train/`` metrics."""

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


def save_checkpoint(lm_run: LMRun) -> None:
    """Write the run's checkpoint atomically (:meth:`RunDir.save_checkpoint`): ``state.json``
    and the ensemble (``reward_model/``, safetensors)."""
    lm_run.state.elapsed_s = lm_run.clock.elapsed()

    def write(folder: Path) -> None:
        if lm_run.ensemble is not None:
            lm_run.ensemble.save(folder / "reward_model")

    lm_run.run.save_checkpoint(asdict(lm_run.state), write)


def trl_checkpoint_args(config: TrainConfig) -> dict[str, Any]:
    """TRL arguments that save ``checkpoint-N`` folders every ``lm.checkpoint_every`` steps
    (the last two kept; the run's checkpoint names one of them)."""
    return {"save_strategy": "steps", "save_steps": config.lm.checkpoint_every,
            "save_total_limit": 2}


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
