"""Pretraining the base policy: a small GPT-2 trained by next-token prediction on text that
ships with Python, saved as a directory transformers loads.

:func:`pretrain` trains the tokenizer (:func:`rewardlab.lm.tokenizer.train_tokenizer`) and
the model on the ``train`` paragraphs of a corpus (:func:`rewardlab.lm.corpus.load_corpus`) by
next-token prediction (Radford et al. 2019, GPT-2: causal language modelling, cross-entropy of
each next token), measures the loss on the ``eval`` paragraphs, and saves a directory that
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load, with
``rewardlab_base.json`` beside it (the config, the losses, the wall time and the corpus size).
:func:`rewardlab.lm.base_model.ensure_base_model` caches such a directory and
:func:`rewardlab.lm.base_model.load_policy` loads it.

torch and transformers are imported when :func:`pretrain` runs; it raises
:class:`~rewardlab.errors.RewardLabError` telling to ``pip install -e ".[lm]"`` if
transformers is missing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ConfigError, ModelDirError
from rewardlab.lm.base_config import (
    BASE_MODEL_FILE,
    FORMAT_VERSION,
    BaseModelConfig,
    require_transformers,
)
from rewardlab.lm.corpus import corpus_digest, load_corpus
from rewardlab.lm.tokenizer import token_stream, train_tokenizer

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from transformers import PreTrainedModel


def _next_token_loss(model: PreTrainedModel, x: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of each next token of ``x: (batch, seq_len)`` int64."""
    import torch.nn.functional as F

    logits = model(input_ids=x).logits[:, :-1]  # (batch, seq_len - 1, vocab)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def _evaluate(model: PreTrainedModel, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats/token) over ``windows: (w, seq_len)`` int64."""
    import torch

    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            x = windows[start:start + batch_size]
            total += float(_next_token_loss(model, x)) * len(x)
    model.train()
    return total / len(windows)


def _write_atomically(out_dir: Path, write: Any) -> None:
    """Call ``write(tmp)`` on a fresh sibling folder, then rename it to ``out_dir``.

    A crash or an exception leaves no ``out_dir`` (the temporary folder is removed).

    Raises:
        ModelDirError: if ``out_dir`` appeared meanwhile and is not empty.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write(tmp)
        try:
            tmp.rename(out_dir)  # atomic; replaces an empty directory
        except OSError as err:
            raise ModelDirError(f"{out_dir}: cannot move the new model there ({err})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pretrain(config: BaseModelConfig, out_dir: str | Path, progress: bool = True,
             console: Console | None = None) -> Path:
    """Train the tokenizer and the GPT-2 on the corpus and save them to ``out_dir``.

    Next-token prediction with AdamW, linear warm-up then cosine decay to 10% of the peak rate,
    gradient norm clipped at 1; each step draws ``batch_size`` random windows of ``seq_len``
    tokens from the ``train`` stream (paragraphs joined by EOS). The loss on the ``eval``
    stream is measured at step 0, every ``eval_every`` steps and at the end. Weights, batches
    and dropout come from ``config.seed`` inside :func:`torch.random.fork_rng`: the global RNG
    is left as it was, and the same config gives the same weights (on the same machine and
    thread count; the caller sets threads, e.g. ``torch.set_num_threads(1)``).

    Args:
        config: what to make.
        out_dir: where to save; must not exist or be empty. Written to a temporary sibling and
            renamed at the end, so it is complete or absent.
        progress: show a progress bar (status lines are printed either way).
        console: where to print (default: standard error).

    Returns:
        ``out_dir``: ``config.json``, ``model.safetensors``, ``generation_config.json``,
        the tokenizer files and :data:`~rewardlab.lm.base_config.BASE_MODEL_FILE` (written
        last) with the config, the corpus size, the loss history (nats/token), the final eval
        loss and perplexity and the wall time in seconds.

    Raises:
        ModelDirError: if ``out_dir`` exists and is not an empty directory.
        ConfigError: if the corpus is shorter than one window.
    """
    require_transformers()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rewardlab.algorithms.progress import TrainingProgress, safe_console

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ModelDirError(f"{out_dir}: exists and is not an empty directory; choose another "
                            "--out or remove it")
    console = console or safe_console()
    start, cpu_start = time.perf_counter(), time.process_time()
    c = config
    train_texts, eval_texts = load_corpus(c.corpus, "train"), load_corpus(c.corpus, "eval")
    tokenizer = train_tokenizer(train_texts, c.vocab_size, model_max_length=c.n_positions)
    train_ids = token_stream(tokenizer, train_texts)  # (n_train,) int64
    eval_ids = token_stream(tokenizer, eval_texts)  # (n_eval,) int64
    if len(train_ids) <= c.seq_len or len(eval_ids) < c.seq_len:
        raise ConfigError(f"seq_len: {c.seq_len} is longer than the corpus's train or eval "
                          f"stream ({len(train_ids)} / {len(eval_ids)} tokens)")
    n_windows = min(c.eval_windows, len(eval_ids) // c.seq_len)
    eval_windows = eval_ids[: n_windows * c.seq_len].view(n_windows, c.seq_len)
    gpt2 = GPT2Config(
        vocab_size=len(tokenizer), n_positions=c.n_positions, n_embd=c.n_embd,
        n_layer=c.n_layer, n_head=c.n_head, resid_pdrop=c.dropout, embd_pdrop=c.dropout,
        attn_pdrop=c.dropout, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    history: list[dict[str, float]] = []
    bar = TrainingProgress(console, "lm pretrain", c.steps, enabled=progress)
    console.print(
        f"[bold]rewardlab lm pretrain[/] corpus {c.corpus}: {len(train_texts)} train paragraphs "
        f"({len(train_ids)} tokens), {len(eval_texts)} eval ({len(eval_ids)} tokens); vocab "
        f"{len(tokenizer)}; GPT-2 {c.n_layer}x{c.n_embd}, {c.steps} steps of {c.batch_size} x "
        f"{c.seq_len} tokens", highlight=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        model = GPT2LMHeadModel(gpt2)  # what AutoModelForCausalLM.from_config(gpt2) makes
        model.train()
        n_params = sum(p.numel() for p in model.parameters())
        gen = torch.Generator().manual_seed(c.seed + 1)
        opt = torch.optim.AdamW(model.parameters(), lr=c.learning_rate,
                                weight_decay=c.weight_decay, betas=(0.9, 0.95))

        def lr_factor(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / (c.warmup_steps + 1)
            frac = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        offsets = torch.arange(c.seq_len)  # (seq_len,)
        initial = _evaluate(model, eval_windows, c.batch_size)
        history.append({"step": 0, "eval_loss": initial})
        bar.start(0)
        running = float("nan")
        try:
            for step in range(1, c.steps + 1):
                starts = torch.randint(0, len(train_ids) - c.seq_len + 1, (c.batch_size,),
                                       generator=gen)
                x = train_ids[starts[:, None] + offsets]  # (batch, seq_len) int64
                loss = _next_token_loss(model, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                value = float(loss.detach())
                running = value if running != running else 0.95 * running + 0.05 * value
                if step % c.eval_every == 0 or step == c.steps:
                    ev = _evaluate(model, eval_windows, c.batch_size)
                    history.append({"step": step, "train_loss": running, "eval_loss": ev})
                    bar.message(f"step {step}: train loss {running:.3f}, eval loss {ev:.3f} "
                                f"(perplexity {math.exp(ev):.1f})")
                bar.update(step, f"loss {running:.3f}")
        finally:
            bar.stop()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    final = history[-1]["eval_loss"]
    record = {
        "format_version": FORMAT_VERSION,
        "config": c.model_dump(),
        "cache_key": c.cache_key(),
        "n_parameters": n_params,
        "corpus": {"name": c.corpus, "digest": corpus_digest(train_texts + eval_texts),
                   "train_paragraphs": len(train_texts), "eval_paragraphs": len(eval_texts),
                   "train_chars": sum(map(len, train_texts)),
                   "eval_chars": sum(map(len, eval_texts)),
                   "train_tokens": len(train_ids), "eval_tokens": len(eval_ids),
                   "eval_tokens_scored": n_windows * (c.seq_len - 1)},
        "vocab_size": len(tokenizer),
        "initial_eval_loss": history[0]["eval_loss"],
        "final_eval_loss": final,
        "final_eval_perplexity": math.exp(final),
        "final_train_loss": history[-1].get("train_loss"),
        "history": history,
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "steps_per_s": c.steps / wall,
        "versions": _versions(),
    }
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BASE_MODEL_FILE).write_text(json.dumps(record, indent=2) + "\n")

    _write_atomically(out_dir, write)
    console.print(f"base model ({n_params / 1e6:.2f}M parameters): eval loss "
                  f"{record['initial_eval_loss']:.3f} -> {final:.3f} (perplexity "
                  f"{math.exp(final):.1f}) in {wall:.0f} s -> {out_dir}", highlight=False)
    return out_dir


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}

