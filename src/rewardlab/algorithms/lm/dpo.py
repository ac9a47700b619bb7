"""Direct Preference Optimisation from stored preferences (offline) and from fresh on-policy
pairs labelled by a judge or a reward model (online), through TRL.

Sources: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly
a Reward Model", Eq. (7): ``L = -log sigmoid(beta * [log pi(y_w|x)/pi_ref(y_w|x) -
log pi(y_l|x)/pi_ref(y_l|x)])``; Guo et al. 2024, "Direct Language Model Alignment from Online
AI Feedback" (online DPO: each step samples two completions per prompt from the current policy,
an annotator picks the preferred one, and the DPO loss is taken on that pair against the fixed
initial reference).

* :func:`train_dpo` runs TRL's ``DPOTrainer`` on ``(prompt, chosen, rejected)`` triples built by
  :func:`preference_triples` from labelled pairs: LEFT and RIGHT answers become triples, EQUAL
  and SKIP answers are dropped (the DPO loss has no tie).
* :func:`train_online_dpo` runs TRL 1.16's ``OnlineDPOTrainer`` (``trl.experimental.online_dpo``;
  it runs offline on CPU with ``model.generate``). Its annotator is a pointwise text scorer
  wrapped as a TRL reward function: a judge that scores texts (a lexicon, an LLM endpoint
  returning a score) or a :class:`~rewardlab.rewards.text_model.TextRewardEnsemble`. TRL prefers
  the higher-scored completion of the two and, on a tie, the first one sampled (ties are not
  dropped). A judge that only answers pairwise is not supported by this trainer.

Both pass the policy by path (TRL loads it, and ``DPOTrainer`` copies it as the reference), run
on CPU with no ``report_to`` and no checkpoints, and accept a
:class:`~rewardlab.algorithms.lm.common.GoldProxyCallback` through ``callbacks``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rewardlab.algorithms.lm.common import TextScorer, TRLReward, TRLSettings, trl_config_kwargs
from rewardlab.types import Label


@dataclass(frozen=True)
class DPOSettings(TRLSettings):
    """Settings of :func:`train_dpo` and :func:`train_online_dpo` (TRL's names); the
    keyword-only ``seed``, ``logging_steps``, ``bf16``, ``gradient_checkpointing`` and
    ``extra_trl_args`` (here ``DPOConfig``/``OnlineDPOConfig`` fields) come from
    :class:`~rewardlab.algorithms.lm.common.TRLSettings`."""

    beta: float = 0.1
    """DPO temperature beta of Eq. (7): larger keeps the policy closer to the reference."""
    learning_rate: float = 1e-4
    """AdamW learning rate (linear decay to 0, TRL's default schedule)."""
    batch_size: int = 8
    """Preference pairs per optimiser step (``per_device_train_batch_size``)."""
    epochs: float = 1.0
    """Passes over the triples (offline DPO only; ``num_train_epochs``)."""
    steps: int = 40
    """Optimiser steps (online DPO only; each samples ``batch_size`` fresh pairs)."""
    max_length: int = 128
    """Prompt + completion tokens (<= the model's ``n_positions``)."""
    max_new_tokens: int = 16
    """Completion length cap of the online samples (tokens)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta: the DPO temperature must be > 0, got {self.beta}")
        if self.learning_rate <= 0 or self.epochs <= 0:
            raise ValueError("learning_rate and epochs: must be > 0")
        if min(self.batch_size, self.steps, self.max_length, self.max_new_tokens) < 1:
            raise ValueError("batch_size, steps, max_length, max_new_tokens: must be >= 1")


def _dpo_args(settings: DPOSettings) -> dict:
    """The arguments offline and online DPO share beyond the TRL plumbing."""
    return dict(learning_rate=settings.learning_rate,
                per_device_train_batch_size=settings.batch_size, max_length=settings.max_length)


def dpo_trl_config(settings: DPOSettings, output_dir: str | Path):  # noqa: ANN201 (DPOConfig)
    """TRL's ``DPOConfig`` for offline DPO with ``settings`` (CPU, no reporting, no saving)."""
    from trl import DPOConfig

    return DPOConfig(**trl_config_kwargs(settings, output_dir, beta=settings.beta,
                                         num_train_epochs=settings.epochs, **_dpo_args(settings)))


def online_dpo_trl_config(settings: DPOSettings, output_dir: str | Path):  # noqa: ANN201
    """TRL's experimental ``OnlineDPOConfig`` for online DPO with ``settings``."""
    from trl.experimental.online_dpo import OnlineDPOConfig

    return OnlineDPOConfig(**trl_config_kwargs(
        settings, output_dir, beta=[settings.beta], max_steps=settings.steps,
        max_new_tokens=settings.max_new_tokens, **_dpo_args(settings)))


def preference_triples(
    prompts: Sequence[str], left: Sequence[str], right: Sequence[str], labels: Sequence[int]
) -> dict[str, list[str]]:
    """``{"prompt", "chosen", "rejected"}`` columns from labelled pairs.

    Args:
        prompts, left, right: N prompts and their left/right completions.
        labels: N :class:`~rewardlab.types.Label` codes; LEFT -> (left chosen), RIGHT ->
            (right chosen); EQUAL and SKIP pairs are dropped.

    Raises:
        ValueError: if the lengths differ.
    """
    if not len(prompts) == len(left) == len(right) == len(labels):
        raise ValueError(f"prompts, left, right, labels: lengths differ ({len(prompts)}, "
                         f"{len(left)}, {len(right)}, {len(labels)})")
    lab = np.asarray(labels, dtype=np.int64)
    keep = np.flatnonzero((lab == Label.LEFT) | (lab == Label.RIGHT))
    is_left = lab[keep] == Label.LEFT
    return {
        "prompt": [prompts[i] for i in keep],
        "chosen": [left[i] if lf else right[i] for i, lf in zip(keep, is_left, strict=True)],
        "rejected": [right[i] if lf else left[i] for i, lf in zip(keep, is_left, strict=True)],
    }


@dataclass(frozen=True)
class DPOResult:
    """What :func:`train_dpo`/:func:`train_online_dpo` leave behind."""

    policy_dir: Path
    """The trained policy and its tokenizer (``save_pretrained``)."""
    log_history: list[dict]
    """TRL's logs (``rewards/margins``, ``rewards/accuracies``, ...)."""


def _tokenizer(base_path: str | Path):  # noqa: ANN202
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _finish(trainer, tokenizer, output_dir: Path, settings: DPOSettings,  # noqa: ANN001
            resume_from_checkpoint: str | Path | None = None) -> DPOResult:
    from transformers import PrinterCallback

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "dpo_settings.json").write_text(json.dumps(asdict(settings), indent=2))

    trainer.remove_callback(PrinterCallback)  # logs are returned, not printed
    trainer.train(resume_from_checkpoint=None if resume_from_checkpoint is None
                  else str(resume_from_checkpoint))
    policy_dir = output_dir / "policy"
    trainer.save_model(str(policy_dir))
    tokenizer.save_pretrained(str(policy_dir))
    return DPOResult(policy_dir, list(trainer.state.log_history))


def train_dpo(
    base_path: str | Path,
    triples: dict[str, list[str]],
    output_dir: str | Path,
    settings: DPOSettings | None = None,
    callbacks: Sequence = (),
    resume_from_checkpoint: str | Path | None = None,
) -> DPOResult:
    """Offline DPO (Rafailov et al. 2023) of the causal LM at ``base_path`` on stored triples.

    Args:
        base_path: a ``save_pretrained`` causal-LM directory (policy and reference).
        triples: ``{"prompt", "chosen", "rejected"}`` (:func:`preference_triples`).
        output_dir: receives ``dpo_settings.json``, TRL's outputs and ``policy/``.
        settings: DPO settings (``epochs`` applies, ``steps`` does not).
        callbacks: ``transformers.TrainerCallback``s (e.g. a gold-vs-proxy evaluator).
        resume_from_checkpoint: a ``checkpoint-N`` folder TRL saved, to continue from.

    Raises:
        ValueError: with no triple.
    """
    from datasets import Dataset
    from trl import DPOTrainer

    settings = settings or DPOSettings()
    if not triples.get("prompt"):
        raise ValueError("triples: no preference pair to train on (EQUAL/SKIP are dropped)")
    tokenizer = _tokenizer(base_path)
    trainer = DPOTrainer(model=str(base_path), args=dpo_trl_config(settings, output_dir),
                         train_dataset=Dataset.from_dict(triples), processing_class=tokenizer,
                         callbacks=list(callbacks))
    return _finish(trainer, tokenizer, Path(output_dir), settings, resume_from_checkpoint)


def train_online_dpo(
    base_path: str | Path,
    prompts: Sequence[str],
    annotator: TextScorer,
    output_dir: str | Path,
    settings: DPOSettings | None = None,
    callbacks: Sequence = (),
    resume_from_checkpoint: str | Path | None = None,
) -> DPOResult:
    """Online DPO (Guo et al. 2024) with TRL's ``OnlineDPOTrainer``: every step samples two
    completions of each prompt from the current policy, ``annotator`` scores both, and the
    DPO loss (``settings.beta``) is taken with the higher-scored one as chosen, against the
    initial policy as fixed reference.

    Args:
        base_path: a ``save_pretrained`` causal-LM directory.
        prompts: training prompts (cycled).
        annotator: the labeller, a text scorer (a judge's scores or a reward model).
        output_dir: receives ``dpo_settings.json``, TRL's outputs and ``policy/``.
        settings: DPO settings (``steps`` and ``max_new_tokens`` apply, ``epochs`` does not).
        callbacks: ``transformers.TrainerCallback``s.
        resume_from_checkpoint: a ``checkpoint-N`` folder TRL saved, to continue from.

    Raises:
        ValueError: with no prompt.
    """
    from datasets import Dataset
    from trl.experimental.online_dpo import OnlineDPOTrainer

    settings = settings or DPOSettings()
    if not prompts:
        raise ValueError("prompts: need at least one training prompt")
    tokenizer = _tokenizer(base_path)
    trainer = OnlineDPOTrainer(
        model=str(base_path), reward_funcs=TRLReward(annotator, "annotator"),
        args=online_dpo_trl_config(settings, output_dir),
        train_dataset=Dataset.from_dict({"prompt": list(prompts)}), processing_class=tokenizer,
        callbacks=list(callbacks))
    return _finish(trainer, tokenizer, Path(output_dir), settings, resume_from_checkpoint)
