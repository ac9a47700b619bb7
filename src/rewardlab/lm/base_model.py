"""The base policy made here: a byte-level BPE tokenizer and a small GPT-2 pretrained on text
that ships with Python.

:func:`pretrain` trains both on the ``train`` paragraphs of a corpus
(:func:`rewardlab.lm.corpus.load_corpus`) by next-token prediction (Radford et al. 2019, GPT-2:
causal language modelling, cross-entropy of each next token), measures the loss on the ``eval``
paragraphs, and saves a directory that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load, with ``rewardlab_base.json`` beside it (the config, the
losses, the wall time and the corpus size). :func:`ensure_base_model` caches that directory
under ``~/.cache/rewardlab/lm`` and reuses it; :func:`load_policy` loads it or any local
transformers causal-LM directory a user has.

Tokenizer conventions (:func:`train_tokenizer`): ``<|endoftext|>`` (id 0) is the BOS, EOS and
UNK token (as in GPT-2; byte-level BPE never needs UNK) and separates paragraphs in
pretraining, so a model ends a completion by emitting it; ``<|pad|>`` (id 1) pads and is never
trained on, so padding never hides a real EOS. Nothing is added to encoded text (no BOS):
``tokenizer(text)`` are the text's tokens only. The saved ``padding_side`` is ``left``, which
batched generation of a decoder-only model needs (every prompt ends where generation starts);
:func:`rewardlab.lm.generation.sample_completions` asks for left padding explicitly anyway, and
TRL's trainers pad as they need.

:class:`BaseModelConfig` imports neither torch nor transformers (a config section can hold it);
everything else imports them when called and raises :class:`~rewardlab.errors.RewardLabError`
telling to ``pip install -e ".[lm]"`` if transformers is missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardlab.config import Float, Int
from rewardlab.errors import ConfigError, ModelDirError, RewardLabError
from rewardlab.lm.corpus import CORPORA, corpus_digest, load_corpus

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

#: The file that marks a complete base-model directory (written last) and describes it.
BASE_MODEL_FILE = "rewardlab_base.json"
#: Version of the base-model recipe (corpus cleaning, tokenizer, training loop); part of the
#: cache key, so a change of recipe never reuses an old model.
FORMAT_VERSION = 1
#: The BOS/EOS/UNK token and the paragraph separator.
EOS_TOKEN = "<|endoftext|>"
#: The padding token.
PAD_TOKEN = "<|pad|>"
#: Files of which a saved tokenizer has at least one.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                    "vocab.txt", "spiece.model")
#: Environment variable naming the cache folder of :func:`ensure_base_model`.
CACHE_ENV = "REWARDLAB_LM_CACHE"


def require_transformers() -> None:
    """Check that the ``lm`` extra is installed.

    Raises:
        RewardLabError: saying to ``pip install -e ".[lm]"`` if transformers or tokenizers
            cannot be imported.
    """
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise RewardLabError(
            f"the language-model track needs the lm extra ({err.name or err} is missing): "
            'pip install -e ".[lm]"') from None


class BaseModelConfig(BaseModel):
    """How the base policy is made: tokenizer, GPT-2 shape and pretraining.

    The defaults (a 4-layer, 128-wide GPT-2 of 1.09M parameters, 2,048-token vocabulary, 600
    steps of 16 x 128 tokens on the ``pydoc`` corpus's 60,000 training tokens) took 207 s of
    CPU time on one thread (2.9 steps per CPU second; eval loss 7.66 -> 4.29 nats/token,
    perplexity 73) with ``taskset -c 1 rewardlab lm pretrain --out DIR --no-progress``
    (commit 345c4d3); the wall time was 508 s because the core was shared with another job.

    Raises:
        ConfigError: naming the field, on an unknown field or a value out of range (from
            :meth:`from_overrides`; the constructor raises pydantic's ``ValidationError``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    corpus: str = "pydoc"
    """Corpus to train on: ``pydoc`` or ``pydoc+docstrings``
    (:data:`~rewardlab.lm.corpus.CORPORA`)."""
    vocab_size: Int = Field(2048, ge=300, le=65_536)
    """Most tokens of the byte-level BPE vocabulary (256 bytes, 2 special tokens, merges); the
    trainer stops earlier if the corpus has fewer merges that occur twice."""
    n_positions: Int = Field(256, ge=8, le=8192)
    """Longest sequence (prompt plus completion, tokens) the model can read."""
    n_embd: Int = Field(128, ge=8, le=4096)
    """Width of the residual stream; a multiple of ``n_head``."""
    n_layer: Int = Field(4, ge=1, le=48)
    """Transformer blocks."""
    n_head: Int = Field(4, ge=1, le=64)
    """Attention heads per block."""
    dropout: Float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout of embeddings, residuals and attention during pretraining (saved in the model's
    config; TRL trainers disable it by default)."""
    steps: Int = Field(600, ge=1, le=10_000_000)
    """Optimiser steps of pretraining."""
    batch_size: Int = Field(16, ge=1, le=4096)
    """Windows per step."""
    seq_len: Int = Field(128, ge=2, le=8192)
    """Tokens per training window (random windows of the token stream); at most
    ``n_positions``."""
    learning_rate: Float = Field(2e-3, gt=0.0, le=1.0)
    """Peak AdamW learning rate (after linear warm-up, then cosine decay to 10% of it)."""
    warmup_steps: Int = Field(50, ge=0, le=10_000_000)
    """Steps of linear learning-rate warm-up; at most ``steps``."""
    weight_decay: Float = Field(0.01, ge=0.0, le=1.0)
    """AdamW decoupled weight decay."""
    eval_every: Int = Field(100, ge=1, le=10_000_000)
    """Steps between evaluations of the loss on the ``eval`` paragraphs (also at the start and
    the end)."""
    eval_windows: Int = Field(128, ge=1, le=100_000)
    """Most non-overlapping ``seq_len`` windows of the ``eval`` stream evaluated."""
    seed: Int = Field(0, ge=0, le=2**63 - 1)
    """Seed of the initial weights, the batches and dropout."""

    @model_validator(mode="after")
    def _check(self) -> BaseModelConfig:
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus: unknown {self.corpus!r}; allowed: {', '.join(CORPORA)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head: must divide n_embd={self.n_embd}, got {self.n_head}")
        if self.seq_len > self.n_positions:
            raise ValueError(f"seq_len: must be at most n_positions={self.n_positions}, got "
                             f"{self.seq_len}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps: must be at most steps={self.steps}, got "
                             f"{self.warmup_steps}")
        return self

    @classmethod
    def from_overrides(cls, overrides: list[str], base: BaseModelConfig | None = None) -> (
        BaseModelConfig
    ):
        """The config with ``key=value`` overrides (values read as YAML scalars, ``1e3`` a
        number, as in ``rewardlab train --set``) applied.

        Raises:
            ConfigError: one line naming each bad or unknown field and what it allows.
        """
        import yaml

        from rewardlab.config import StrictLoader

        data = (base or cls()).model_dump()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set steps=500")
            if key not in cls.model_fields:
                raise ConfigError(f"--set {item!r}: {key}: unknown key; allowed: "
                                  f"{', '.join(cls.model_fields)}")
            try:
                data[key] = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""  # noqa: S506
            except yaml.YAMLError:
                raise ConfigError(f"--set {item!r}: {key}: the value is not valid YAML") from None
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err)) from None

    def cache_key(self) -> str:
        """12 hex digits naming the model this config makes on this Python.

        A hash of the fields, :data:`FORMAT_VERSION` and the Python version (the corpus ships
        with Python, so another Python may give another corpus).
        """
        record = {"config": self.model_dump(), "format": FORMAT_VERSION,
                  "python": list(sys.version_info[:3])}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def format_validation_error(err: ValidationError) -> str:
    """``field: what is wrong, got value`` for each error, joined by ``; `` on one line."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error" and (not loc or msg.split(":")[0] in BaseModelConfig
                                             .model_fields):
            parts.append(msg)  # our own message, naming its field
            continue
        elif "input" in e and "got" not in msg:
            msg = f"{msg}, got {e['input']!r}"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str], vocab_size: int, model_max_length: int = 1024) -> (
    PreTrainedTokenizerFast
):
    """Train a byte-level BPE tokenizer (GPT-2's scheme; Sennrich et al. 2016, BPE).

    Every string encodes (the 256 bytes are in the vocabulary) and decodes back exactly. See
    the module docstring for the special tokens and the padding side.

    Args:
        texts: training texts (e.g. the ``train`` corpus paragraphs).
        vocab_size: most tokens; merges must occur at least twice.
        model_max_length: the tokenizer's ``model_max_length`` (the model's ``n_positions``).

    Returns:
        A transformers fast tokenizer: ``eos_token = bos_token = unk_token = "<|endoftext|>"``
        (id 0), ``pad_token = "<|pad|>"`` (id 1), ``padding_side = "left"``.

    Raises:
        ConfigError: if ``texts`` is empty or ``vocab_size`` cannot hold the 258 base tokens.
    """
    require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ConfigError("texts: no text to train the tokenizer on")
    if vocab_size < 258:
        raise ConfigError(f"vocab_size: must be at least 258 (256 bytes and 2 special tokens), "
                          f"got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN, padding_side="left", model_max_length=model_max_length)


def _token_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """The texts' tokens, each text followed by EOS: ``(n_tokens,)`` int64."""
    import torch

    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor([t for row in ids for t in (*row, eos)], dtype=torch.int64)


# ----------------------------------------------------------------------------- pretraining
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
        the tokenizer files and :data:`BASE_MODEL_FILE` (written last) with the config, the
        corpus size, the loss history (nats/token), the final eval loss and perplexity and the
        wall time in seconds.

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
    train_ids = _token_stream(tokenizer, train_texts)  # (n_train,) int64
    eval_ids = _token_stream(tokenizer, eval_texts)  # (n_eval,) int64
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


# ----------------------------------------------------------------------------- cache and loading
def default_cache_root() -> Path:
    """``$REWARDLAB_LM_CACHE`` if set, else ``~/.cache/rewardlab/lm``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rewardlab" / "lm"


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a finished base model (its :data:`BASE_MODEL_FILE` is written
    last)."""
    path = Path(path)
    return (path / BASE_MODEL_FILE).is_file() and (path / "config.json").is_file()


def read_base_record(path: str | Path) -> dict[str, Any]:
    """The :data:`BASE_MODEL_FILE` record of a base-model directory.

    Raises:
        ModelDirError: if the directory has none (not made by :func:`pretrain`).
    """
    path = Path(path)
    try:
        return json.loads((path / BASE_MODEL_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ModelDirError(f"{path}: no readable {BASE_MODEL_FILE} ({err}); not a base model "
                            "made by `rewardlab lm pretrain`") from None


def ensure_base_model(config: BaseModelConfig | None = None, cache_dir: str | Path | None = None,
                      progress: bool = False, console: Console | None = None) -> Path:
    """The directory of the base model ``config`` makes: reused if cached, else pretrained.

    The directory is ``<cache>/base-<config.cache_key()>`` with ``<cache>`` from ``cache_dir``,
    else :func:`default_cache_root`. It is written atomically by :func:`pretrain`, so a crash
    never leaves a half model; a folder there without :data:`BASE_MODEL_FILE` (not made by
    this function) is replaced. Two processes making the same model at once both train; the
    first to finish is kept.

    Returns:
        The model directory (load it with :func:`load_policy`).
    """
    config = config or BaseModelConfig()
    path = Path(cache_dir or default_cache_root()) / f"base-{config.cache_key()}"
    if is_complete(path):
        return path
    if path.is_dir():  # left by hand or by another tool: not ours to keep
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    try:
        return pretrain(config, path, progress=progress, console=console)
    except ModelDirError:
        if is_complete(path):  # another process finished it first
            return path
        raise


def load_policy(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local transformers causal language model and its tokenizer, in eval mode.

    Any ``save_pretrained`` directory of a causal LM with its tokenizer works (a base model of
    :func:`ensure_base_model` or a user's own). Nothing is downloaded. A tokenizer without a
    pad token gets its EOS token as pad token.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelDirError: naming the path, if it is not a directory, has no ``config.json``, or
            holds no loadable causal LM or tokenizer (or one with neither pad nor EOS token).
    """
    require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    hint = ("give a local transformers causal-LM directory (save_pretrained), or make one with "
            "`rewardlab lm pretrain`")
    if not path.is_dir():
        raise ModelDirError(f"{path}: no such directory; {hint}")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{path}: no config.json, so not a transformers model directory; "
                            f"{hint}")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelDirError(f"{path}: cannot load a causal language model ({first}); "
                            f"{hint}") from None
    no_tokenizer = (f"{path}: cannot load its tokenizer ({{}}); save the tokenizer beside the "
                    "model (tokenizer.save_pretrained)")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        # transformers 5 would build an empty tokenizer from config.json alone
        raise ModelDirError(no_tokenizer.format(f"none of {', '.join(_TOKENIZER_FILES)}"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelDirError(no_tokenizer.format(first)) from None
    n_embeddings = model.get_input_embeddings().num_embeddings
    if not tokenizer("hello world")["input_ids"] or len(tokenizer) > n_embeddings:
        raise ModelDirError(no_tokenizer.format(
            f"{len(tokenizer)} tokens for {n_embeddings} embeddings, or it encodes nothing"))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelDirError(f"{path}: the tokenizer has neither a pad nor an EOS token; set "
                                "one (tokenizer.pad_token = ...) and save it again")
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
