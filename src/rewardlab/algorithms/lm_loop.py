"""Language-model preference RL behind ``rewardlab train``: feedback on text, a reward-model
ensemble, and a TRL optimiser, with gold and proxy logged side by side.

:func:`train_lm` is the whole method, top to bottom, for ``algorithm`` ``grpo``, ``rloo``,
``dpo``, ``online_dpo`` and ``bon``. Its stages, called by name in this order
(the ``loop_*`` modules of :mod:`rewardlab.algorithms.lm` hold them):

1. The base policy: ``lm.base_model``, or RewardLab's own (:func:`~rewardlab.lm.base_model.
   ensure_base_model`: pretrained once, then cached). It is also the KL reference.
2. Feedback before optimisation (:func:`~rewardlab.algorithms.lm.loop_rounds.run_round`):
   round 0 (every round for ``dpo`` and ``bon``) samples completions of training prompts from
   the base policy, stores them as text segments with their gold score, asks same-prompt
   pairs (uniform in round 0, then ``feedback.method`` on the ensemble), has them answered by
   the scripted ``teacher`` on gold, by ``lm.judge`` (judge-vs-gold agreement logged) or by
   people in the annotation web app (``teacher=human``: the prompt and both completions side
   by side; the run waits for them as control runs do, :mod:`rewardlab.feedback.human`), and
   refits the :class:`~rewardlab.rewards.text_model.TextRewardEnsemble` on every label
   (fresh-query accuracy before, held-out accuracy and ECE after). Skipped with
   ``lm.reward=gold``.
3. Optimisation: GRPO or RLOO on the proxy (:func:`~rewardlab.algorithms.lm.grpo.
   train_online_rl`), with the later rounds *during* training at ``feedback.round_every``
   optimizer steps, sampled from the current policy and refitting the same ensemble object the
   trainer's reward calls; DPO on the stored preferences; online DPO with the judge (or the
   reward model, or gold) labelling fresh pairs; best-of-n over ``lm.bon_n`` (analytic KL).

Every evaluation (:class:`~rewardlab.algorithms.lm.common.GoldProxyCallback`; step 0, every
``lm.eval_every`` steps and the end) logs gold and proxy of the same fresh samples of held-out
prompts, KL(policy || reference) and its square root, and the ensemble's disagreement, and
feeds the over-optimisation alarm (:class:`~rewardlab.diagnostics.overoptimization.
DivergenceMonitor`), as control runs do.

Checkpoints and resume: TRL saves ``trl/checkpoint-N`` every ``lm.checkpoint_every`` steps,
after each round and on Ctrl-C; right after, the run's own checkpoint (``checkpoints/latest``:
the loop state, the metrics length, the ensemble as it was at step N) names it. ``--resume``
continues TRL from that checkpoint (``resume_from_checkpoint``; the reference is still the base
model's path, never the checkpoint) with the ensemble of the same step; labels already in the
store are reused, never asked again; a kill loses no label (the store commits each round's
answers in one transaction, and the web app each person's answer before acknowledging it).
Ctrl-C or SIGTERM end training at the next optimizer step with a checkpoint, or during a wait
for people (the latest checkpoint stands; on resume the round is finished with every answer
already given kept), and ``status: stopped``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from rewardlab.algorithms.interrupt import StopSignals
from rewardlab.algorithms.lm.best_of_n import BestOfNConfig, best_of_n, kl_best_of_n
from rewardlab.algorithms.lm.common import GoldProxyCallback
from rewardlab.algorithms.lm.dpo import (
    DPOSettings,
    preference_triples,
    train_dpo,
    train_online_dpo,
)
from rewardlab.algorithms.lm.grpo import OnlineRLConfig, train_online_rl
from rewardlab.algorithms.lm.loop_answerers import build_human, build_judge
from rewardlab.algorithms.lm.loop_callbacks import (
    FeedbackRounds,
    RunCheckpoint,
    StopAndProgress,
    trl_checkpoint_args,
)
from rewardlab.algorithms.lm.loop_eval import eval_metrics, record_eval
from rewardlab.algorithms.lm.loop_rounds import run_round
from rewardlab.algorithms.lm.loop_state import (
    LMRun,
    LMState,
    new_ensemble,
    normalization_sample,
    replay_alarm,
    save_checkpoint,
    summarize,
    write_lm_status,
)
from rewardlab.algorithms.progress import TrainingProgress, safe_console
from rewardlab.algorithms.run_dir import RunDir, Stopwatch
from rewardlab.config import TrainConfig
from rewardlab.diagnostics.overoptimization import DivergenceMonitor
from rewardlab.diagnostics.plots import plot_gold_vs_proxy
from rewardlab.errors import RewardLabError
from rewardlab.feedback.human import AnnotationServer
from rewardlab.feedback.rounds import total_rounds
from rewardlab.lm.base_config import BaseModelConfig
from rewardlab.lm.base_model import ensure_base_model, load_policy
from rewardlab.lm.corpus import corpus_prompts, load_corpus
from rewardlab.lm.tasks import make_task
from rewardlab.rewards.text_model import TextRewardEnsemble
from rewardlab.seeding import child_seeds
from rewardlab.store.store import FeedbackStore

#: Where TRL writes its checkpoints and the trained policy, inside the run directory.
TRL_DIR = "trl"


# ------------------------------------------------------------------------ 1. set-up
def setup(config: TrainConfig, run_dir: str | Path, resume: bool, console: Console,
          server: AnnotationServer | None = None) -> LMRun:
    """Every piece of the run, each from its own config section and seed; on resume, the
    checkpoint's state and ensemble, and the alarm replayed from the logged evaluations; with
    ``teacher=human``, the people answering in ``server``'s web app."""
    lm = config.lm
    seeds = child_seeds(config.seed)
    ui = TrainingProgress(console, config.algorithm,
                          len(lm.bon_n) if config.algorithm == "bon" else lm.steps,
                          config.progress_bar)
    if lm.base_model is None:
        ui.message("base model: RewardLab's own (pretrained once, then cached)")
    base_dir = Path(lm.base_model) if lm.base_model else ensure_base_model(
        progress=config.progress_bar, console=console)
    reference, tokenizer = load_policy(base_dir)  # a bad base_model fails before the run dir
    run = RunDir.resume(run_dir, config) if resume else RunDir.create(run_dir, config)
    task = make_task(lm.task, max_new_tokens=lm.max_new_tokens)
    corpus = BaseModelConfig().corpus
    train_texts = load_corpus(corpus, "train")
    rng = np.random.default_rng(seeds["segments"])
    train_prompts = corpus_prompts(train_texts, lm.train_prompts, task.prompt_words, rng)
    eval_prompts = corpus_prompts(load_corpus(corpus, "eval"), lm.eval_prompts,
                                  task.prompt_words, rng, disjoint_from=train_texts)
    state = LMState.from_record(run.checkpoint_state)
    ensemble = None
    if lm.reward == "learned":
        saved = run.checkpoint / "reward_model"
        ensemble = (TextRewardEnsemble.load(saved)
                    if run.checkpoint_state is not None and saved.exists()
                    else new_ensemble(config, base_dir, seeds["reward_model"]))
    n_eval = lm.eval_prompts * lm.eval_samples_per_prompt
    store = _open_store(config, run.path)
    signals = StopSignals()
    lm_run = LMRun(
        config=config, run=run, store=store, task=task,
        base_dir=base_dir, reference=reference, tokenizer=tokenizer,
        train_prompts=train_prompts, eval_prompts=eval_prompts, ensemble=ensemble,
        judge=build_judge(config, task, seeds["teacher"]),
        normalization=normalization_sample(config, reference, tokenizer, train_prompts,
                                           seeds["diagnostics"]),
        seeds=seeds, state=state, ui=ui, alarm=DivergenceMonitor(n_eval), signals=signals,
        clock=Stopwatch(state.elapsed_s),
        human=build_human(config, run, store, ui, server, signals.check),
    )
    if run.checkpoint_state is not None:
        replay_alarm(lm_run.alarm, run)
        ui.message(f"resumed {run.path} at step {state.step} ({state.rounds} rounds done)")
    return lm_run


def _open_store(config: TrainConfig, run_dir: Path) -> FeedbackStore:
    return FeedbackStore(config.store_url) if config.store_url else FeedbackStore.open(run_dir)


# ------------------------------------------------------------------------ 2. feedback first
def feedback_before_training(lm_run: LMRun) -> None:
    """Rounds on the base policy before the first optimizer step: round 0 (grpo, rloo,
    online_dpo), or every round (dpo and bon, which never sample during training). Each
    round is checkpointed; rounds finished before a resume are not asked again."""
    c = lm_run.config
    if not lm_run.needs_labels:
        return
    last = total_rounds(c.feedback) if c.algorithm in ("dpo", "bon") else 1
    while lm_run.state.rounds < last:
        lm_run.signals.check()
        run_round(lm_run, lm_run.reference, 0)
        save_checkpoint(lm_run)


# ------------------------------------------------------------------------ 3. optimisers
def evaluator(lm_run: LMRun) -> GoldProxyCallback:
    """Gold vs proxy of fresh samples of the held-out prompts, every ``lm.eval_every`` steps
    (and at step 0 and the end); each row is logged, printed and fed to the alarm."""
    lm = lm_run.config.lm

    def on_row(row: dict[str, float]) -> None:
        if not lm_run.signals.pressed:  # a stopped run resumes before this row: drop it
            record_eval(lm_run, int(row["step"]), eval_metrics(row))

    return GoldProxyCallback(
        lm_run.tokenizer, lm_run.reference, lm_run.eval_prompts, lm_run.task.gold,
        lm_run.proxy, every=lm.eval_every, samples_per_prompt=lm.eval_samples_per_prompt,
        max_new_tokens=lm.max_new_tokens, seed=lm_run.seeds["eval_env"],
        member_scores=lm_run.member_scores(), on_row=on_row)


def callbacks(lm_run: LMRun) -> list[Any]:
    """Rounds first (the evaluation at a round's step sees the refit proxy), then the
    evaluation, stops and progress, and the run's checkpoint after each TRL save."""
    return [FeedbackRounds(lm_run), evaluator(lm_run), StopAndProgress(lm_run),
            RunCheckpoint(lm_run)]


def resume_point(lm_run: LMRun) -> Path | None:
    """The TRL checkpoint to continue from (``None``: start at step 0)."""
    saved = lm_run.state.trl_checkpoint
    if saved is None:
        return None
    path = lm_run.run.path / saved
    return path if path.is_dir() else None


def optimise_online_rl(lm_run: LMRun) -> None:
    """GRPO (Shao et al. 2024) or RLOO (Ahmadian et al. 2024) on the proxy, through TRL,
    with feedback rounds during training."""
    c, lm = lm_run.config, lm_run.config.lm
    settings = OnlineRLConfig(
        algorithm=c.algorithm, steps=lm.steps, batch_size=lm.batch_size,
        num_generations=lm.num_generations, max_completion_length=lm.max_new_tokens,
        learning_rate=lm.learning_rate, beta=lm.beta, temperature=lm.temperature,
        seed=c.seed, eval_every=0, extra_trl_args=trl_checkpoint_args(c))
    train_online_rl(lm_run.base_dir, lm_run.train_prompts, lm_run.proxy,
                    lm_run.run.path / TRL_DIR, settings, callbacks=callbacks(lm_run),
                    resume_from_checkpoint=resume_point(lm_run))


def dpo_settings(lm_run: LMRun) -> DPOSettings:
    """DPO settings from the ``lm`` section (``lm.beta`` is DPO's temperature)."""
    c, lm = lm_run.config, lm_run.config.lm
    positions = getattr(lm_run.reference.config, "n_positions", 128) or 128
    return DPOSettings(
        beta=lm.beta, learning_rate=lm.learning_rate, batch_size=lm.batch_size,
        steps=lm.steps, max_length=min(128, positions), max_new_tokens=lm.max_new_tokens,
        seed=c.seed, extra_trl_args={"max_steps": lm.steps, **trl_checkpoint_args(c)})


def optimise_dpo(lm_run: LMRun) -> None:
    """Offline DPO (Rafailov et al. 2023) on every stored preference (LEFT/RIGHT answers; in
    mixed mode people's answers override the scripted pre-labels)."""
    pairs = lm_run.store.records.text_training_pairs(
        fallback_teachers=lm_run.fallback_teachers)
    triples = preference_triples([a.prompt for a in pairs.left],
                                 [a.completion for a in pairs.left],
                                 [b.completion for b in pairs.right], pairs.labels.tolist())
    if not triples["prompt"]:
        raise RewardLabError(
            "dpo: the store holds no LEFT/RIGHT answer to train on (every query was skipped, "
            "unanswered or EQUAL); answer the queries with `rewardlab annotate "
            f"{lm_run.run.path}`, then continue with `rewardlab train --resume "
            f"{lm_run.run.path}` (or use human.on_timeout=scripted)")
    train_dpo(lm_run.base_dir, triples, lm_run.run.path / TRL_DIR, dpo_settings(lm_run),
              callbacks=callbacks(lm_run), resume_from_checkpoint=resume_point(lm_run))


def optimise_online_dpo(lm_run: LMRun) -> None:
    """Online DPO (Guo et al. 2024): fresh pairs of the current policy labelled by the judge's
    lexicon (``lm.judge=lexicon``), else by the proxy (reward model, or gold)."""
    annotator = lm_run.task.judge if lm_run.config.lm.judge == "lexicon" else lm_run.proxy
    train_online_dpo(lm_run.base_dir, lm_run.train_prompts, annotator,
                     lm_run.run.path / TRL_DIR, dpo_settings(lm_run),
                     callbacks=callbacks(lm_run), resume_from_checkpoint=resume_point(lm_run))


def best_of_n_grid(lm_run: LMRun) -> None:
    """Best-of-n on the base policy for each n of ``lm.bon_n`` (Gao et al. 2022, Eq. 1): one
    draw of ``max(n)`` completions per held-out sample slot, the first n of them for each n
    (nested, so the curve is smooth in n). Logged at step = the n's index, KL analytic."""
    lm = lm_run.config.lm
    prompts = [p for p in lm_run.eval_prompts for _ in range(lm.eval_samples_per_prompt)]
    n_max = max(lm.bon_n)
    result = best_of_n(lm_run.reference, lm_run.tokenizer, prompts, lm_run.proxy,
                       BestOfNConfig(n=n_max, max_new_tokens=lm.max_new_tokens,
                                     seed=lm_run.seeds["eval_env"]))
    flat_prompts = [p for p in prompts for _ in range(n_max)]
    flat = [c for row in result.all_completions for c in row]
    gold = np.asarray(lm_run.task.gold(flat_prompts, flat), np.float64).reshape(-1, n_max)
    spread = (np.full(gold.shape, math.nan) if lm_run.ensemble is None else
              lm_run.ensemble.score(flat_prompts, flat).std(axis=0).reshape(-1, n_max))
    lengths = np.array([len(lm_run.tokenizer(c)["input_ids"]) for c in flat],
                       dtype=np.float64).reshape(-1, n_max)
    rows = np.arange(len(prompts))
    for i, n in enumerate(lm.bon_n):
        if i < lm_run.state.step:
            continue
        best = result.all_rewards[:, :n].argmax(axis=1)  # (P,) first on ties
        g, p = gold[rows, best], result.all_rewards[rows, best].astype(np.float64)
        kl = kl_best_of_n(n)
        record_eval(lm_run, i, {
            "eval/bon_n": float(n), "eval/gold_return": float(g.mean()),
            "eval/gold_return_std": float(g.std()), "eval/proxy_return": float(p.mean()),
            "eval/proxy_return_std": float(p.std()), "eval/samples": float(len(prompts)),
            "eval/kl": kl, "eval/sqrt_kl": math.sqrt(kl),
            "eval/mean_completion_tokens": float(lengths[rows, best].mean()),
            "reward_model/disagreement_on_policy": float(spread[rows, best].mean()),
        })
        lm_run.state.step = i + 1
        lm_run.ui.update(i + 1, f"n {n}")


OPTIMISERS = {"grpo": optimise_online_rl, "rloo": optimise_online_rl, "dpo": optimise_dpo,
              "online_dpo": optimise_online_dpo, "bon": best_of_n_grid}


# ------------------------------------------------------------------------ the loop
def train_lm(config: TrainConfig, run_dir: str | Path, resume: bool = False,
             console: Console | None = None,
             server: AnnotationServer | None = None) -> dict[str, Any]:
    """Train ``config.algorithm`` (grpo, rloo, dpo, online_dpo or bon) on ``config.lm.task``.

    Args:
        config: the run config (a language-model ``algorithm`` and its ``lm`` section).
        run_dir: the run directory (see :mod:`rewardlab.algorithms.run_dir`).
        resume: continue the run in ``run_dir`` from its newest checkpoint (from the start,
            reusing its stored labels, if it has none).
        console: where progress goes (default: standard error).
        server: the annotation web app people answer text queries in (``teacher=human``;
            e.g. :class:`rewardlab.web.server.BackgroundServer`, which ``rewardlab train``
            starts with ``human.serve``); ``None``: people use ``rewardlab annotate``. Closed
            when the run ends, as the control loops do.

    Returns:
        The run summary (also ``run_dir/summary.json``): ``track: lm``, ``status``
        (finished, stopped or failed), ``steps``, the final evaluation, the over-optimisation
        event, store counts, wall time.

    Raises:
        RunDirError: if ``run_dir`` already holds a run (new run) or holds none (resume).
        ModelDirError: if ``lm.base_model`` is not a loadable causal-LM directory.
        ConfigError: e.g. a missing judge API key variable.
        RewardLabError: dpo with no LEFT/RIGHT answer stored (e.g. people skipped them all).
    """
    console = console or safe_console()
    lm_run = setup(config, run_dir, resume, console, server)
    status = "failed"
    lm_run.ui.start(lm_run.state.step)
    write_lm_status(lm_run, "training")
    with lm_run.signals:
        try:
            # -- 2. feedback on the base policy, then the reward model
            if lm_run.state.stage == "feedback":
                feedback_before_training(lm_run)
                lm_run.state.stage = "optimise"
                save_checkpoint(lm_run)
            # -- 3. optimise (rounds continue inside, at their steps)
            if lm_run.state.stage == "optimise":
                lm_run.signals.check()
                OPTIMISERS[config.algorithm](lm_run)
            if lm_run.signals.pressed:
                raise KeyboardInterrupt
            lm_run.state.stage = "done"
            save_checkpoint(lm_run)
            status = "finished"
        except KeyboardInterrupt:
            status = "stopped"
            lm_run.ui.stop()
            lm_run.ui.message(f"stopped at step {lm_run.state.step}: checkpoint saved; "
                              f"continue with `rewardlab train --resume {lm_run.run.path}`")
        finally:
            lm_run.ui.stop()
            lm_run.state.elapsed_s = lm_run.clock.elapsed()
            if lm_run.human is not None:
                lm_run.human.close(lm_run.state.step, status != "finished")
            write_lm_status(lm_run, status)
            plot = plot_gold_vs_proxy(
                lm_run.run.path, f"{config.algorithm} on {config.lm.task}",
                x_label="best-of-n grid index" if config.algorithm == "bon"
                else "optimizer steps")
            summary = summarize(lm_run, status, plot)
            lm_run.run.write_summary(summary)
            lm_run.store.close()
            lm_run.run.close()
    return summary

