"""Online RL of a language model on a reward callable: GRPO or RLOO, through TRL.

Sources: Shao et al. 2024, "DeepSeekMath" (GRPO: advantages standardised within the group of
``num_generations`` completions of a prompt, PPO-style clipped ratio, optional per-token KL
penalty ``beta * KL(pi || pi_ref)`` in the loss); Ahmadian et al. 2024, "Back to Basics:
Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs" (RLOO: the
leave-one-out mean of the other completions as baseline; with ``beta > 0`` TRL subtracts
``beta * KL`` from the sequence reward). TRL 1.16 has no PPOTrainer.

:func:`train_online_rl` builds TRL's ``GRPOConfig``/``RLOOConfig`` from a
:class:`OnlineRLConfig` (CPU, no ``report_to``, no checkpoints, seeded), wraps the reward as TRL
calls it (:class:`~rewardlab.algorithms.lm.common.TRLReward`), and, when a gold scorer and
held-out prompts are given, records gold and proxy scores of the same fresh samples and the
sample-based ``KL(policy || reference)`` at an evaluation cadence
(:class:`~rewardlab.algorithms.lm.common.GoldProxyCallback`), also at ``beta = 0`` where TRL
logs no KL. The policy is passed to TRL *by path*: TRL rebuilds the reference model from
``config._name_or_path``. The process's thread count is the caller's (one thread on this CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rewardlab.algorithms.lm.common import (
    GoldProxyCallback,
    TextScorer,
    TRLReward,
    TRLSettings,
    trl_config_kwargs,
)


@dataclass(frozen=True)
class OnlineRLConfig(TRLSettings):
    """Settings of :func:`train_online_rl` (the TRL trainer's, named as in TRL); the
    keyword-only ``seed``, ``logging_steps``, ``bf16``, ``gradient_checkpointing`` and
    ``extra_trl_args`` (here ``GRPOConfig``/``RLOOConfig`` fields) come from
    :class:`~rewardlab.algorithms.lm.common.TRLSettings`. ``seed`` also seeds the evaluation
    samples."""

    algorithm: Literal["grpo", "rloo"] = "grpo"
    """``grpo`` (TRL ``GRPOTrainer``) or ``rloo`` (TRL ``RLOOTrainer``)."""
    steps: int = 60
    """Optimiser steps (TRL ``max_steps``)."""
    batch_size: int = 16
    """Completions per optimiser step (``per_device_train_batch_size``); a multiple of
    ``num_generations``: ``batch_size / num_generations`` prompts per step."""
    num_generations: int = 4
    """Completions per prompt forming a group (>= 2)."""
    max_completion_length: int = 16
    """Completion length cap in tokens."""
    learning_rate: float = 1e-4
    """AdamW learning rate (linear decay to 0 over ``steps``, TRL's default schedule)."""
    beta: float = 0.0
    """KL coefficient to the reference (0: no reference model is loaded by TRL; the callback
    still measures the KL)."""
    temperature: float = 1.0
    """Sampling temperature of the policy's rollouts."""
    eval_every: int = 10
    """Evaluation cadence in optimiser steps (0: no evaluation callback)."""
    eval_samples_per_prompt: int = 4
    """Completions sampled per held-out prompt at each evaluation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algorithm not in ("grpo", "rloo"):
            raise ValueError(f"algorithm: must be 'grpo' or 'rloo', got {self.algorithm!r}")
        if self.steps < 1 or self.max_completion_length < 1:
            raise ValueError("steps and max_completion_length: must be >= 1")
        if self.num_generations < 2:
            raise ValueError(f"num_generations: group advantages need >= 2, got "
                             f"{self.num_generations}")
        if self.batch_size < 1 or self.batch_size % self.num_generations:
            raise ValueError(f"batch_size: must be a positive multiple of num_generations "
                             f"({self.num_generations}), got {self.batch_size}")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise ValueError("learning_rate and temperature: must be > 0")
        if self.beta < 0:
            raise ValueError(f"beta: the KL coefficient must be >= 0, got {self.beta}")
        if self.eval_every < 0 or self.eval_samples_per_prompt < 1:
            raise ValueError("eval_every: must be >= 0; eval_samples_per_prompt: >= 1")


def trl_config(config: OnlineRLConfig, output_dir: str | Path):  # noqa: ANN201 (GRPOConfig | RLOOConfig)
    """The TRL ``GRPOConfig``/``RLOOConfig`` for ``config``: CPU, no reporting, no checkpoint
    saving, no progress bar, one data-loader process, float32 unless ``config.bf16``."""
    from trl import GRPOConfig, RLOOConfig

    cls = GRPOConfig if config.algorithm == "grpo" else RLOOConfig
    return cls(**trl_config_kwargs(
        config, output_dir, max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length, learning_rate=config.learning_rate,
        beta=config.beta, temperature=config.temperature))


@dataclass(frozen=True)
class OnlineRLResult:
    """What :func:`train_online_rl` leaves behind."""

    policy_dir: Path
    """The trained policy and its tokenizer (``save_pretrained``)."""
    rows: list[dict[str, float]]
    """Gold-vs-proxy evaluation rows (empty without gold/eval prompts)."""
    log_history: list[dict]
    """TRL's per-step logs (``reward``, ``kl`` when ``beta > 0``, ...)."""


def train_online_rl(
    base_path: str | Path,
    prompts: Sequence[str],
    reward: TextScorer,
    output_dir: str | Path,
    config: OnlineRLConfig | None = None,
    gold: TextScorer | None = None,
    eval_prompts: Sequence[str] = (),
    member_scores=None,  # noqa: ANN001 (optional (prompts, completions) -> (K, n))
    callbacks: Sequence = (),
    resume_from_checkpoint: str | Path | None = None,
) -> OnlineRLResult:
    """Train the causal LM saved at ``base_path`` by GRPO or RLOO on ``reward``.

    Args:
        base_path: a ``save_pretrained`` causal-LM directory (also the reference policy).
        prompts: training prompts (the dataset cycles over them).
        reward: the reward optimised, a text scorer (proxy reward model, judge or gold).
        output_dir: receives ``online_rl_config.json``, TRL's outputs, ``policy/`` and
            ``eval.jsonl``.
        config: settings.
        gold: the gold scorer for evaluation (never passed to the trainer).
        eval_prompts: held-out prompts; evaluation runs when these and ``gold`` are given and
            ``config.eval_every > 0``.
        member_scores: optional ensemble member scores for the ``disagreement`` column.
        callbacks: further ``transformers.TrainerCallback``s.
        resume_from_checkpoint: a ``checkpoint-N`` folder TRL saved (``save_strategy`` in
            ``config.extra_trl_args``): training continues from its step, optimizer and RNG
            states. The reference is still rebuilt from ``base_path``.

    Returns:
        :class:`OnlineRLResult`.

    Raises:
        ValueError: with no training prompt.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    config = config or OnlineRLConfig()
    if not prompts:
        raise ValueError("prompts: need at least one training prompt")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "online_rl_config.json").write_text(json.dumps(asdict(config), indent=2))
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    all_callbacks = list(callbacks)
    evaluator = None
    if gold is not None and eval_prompts and config.eval_every > 0:
        reference = AutoModelForCausalLM.from_pretrained(str(base_path), dtype="float32")
        evaluator = GoldProxyCallback(
            tokenizer, reference, eval_prompts, gold, reward, every=config.eval_every,
            samples_per_prompt=config.eval_samples_per_prompt,
            max_new_tokens=config.max_completion_length, seed=config.seed,
            member_scores=member_scores, jsonl_path=output_dir / "eval.jsonl")
        all_callbacks.append(evaluator)
    trainer_cls = GRPOTrainer if config.algorithm == "grpo" else RLOOTrainer
    trainer = trainer_cls(
        model=str(base_path), reward_funcs=TRLReward(reward, "proxy"),
        args=trl_config(config, output_dir), processing_class=tokenizer,
        train_dataset=Dataset.from_dict({"prompt": list(prompts)}), callbacks=all_callbacks)
    trainer.remove_callback(PrinterCallback)  # logs are returned, not printed
    trainer.train(resume_from_checkpoint=None if resume_from_checkpoint is None
                  else str(resume_from_checkpoint))
    policy_dir = output_dir / "policy"
    trainer.save_model(str(policy_dir))
    tokenizer.save_pretrained(str(policy_dir))
    return OnlineRLResult(policy_dir, evaluator.rows if evaluator else [],
                          list(trainer.state.log_history))
