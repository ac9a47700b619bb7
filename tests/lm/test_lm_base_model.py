"""The base policy: tokenizer, pretraining round trip, determinism, the cache, loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewardlab.errors import ConfigError, ModelDirError
from rewardlab.lm import base_model, pretraining
from rewardlab.lm.base_config import BASE_MODEL_FILE, BaseModelConfig
from rewardlab.lm.base_model import CACHE_ENV, ensure_base_model, load_policy, read_base_record
from rewardlab.lm.corpus import load_corpus
from rewardlab.lm.pretraining import pretrain
from rewardlab.lm.tokenizer import token_stream, train_tokenizer

#: A model that pretrains in a couple of seconds (determinism and cache tests).
MICRO = ["vocab_size=300", "n_positions=16", "n_embd=16", "n_layer=1", "n_head=2",
         "steps=4", "batch_size=2", "seq_len=16", "warmup_steps=1", "eval_every=2",
         "eval_windows=4"]


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return train_tokenizer(load_corpus(split="train"), 512, model_max_length=64)


def test_tokenizer_round_trip_and_special_tokens(tokenizer) -> None:  # noqa: ANN001
    assert len(tokenizer) == 512
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", 0)
    assert tokenizer.bos_token_id == 0 and tokenizer.unk_token_id == 0
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|pad|>", 1)
    assert tokenizer.padding_side == "left" and tokenizer.model_max_length == 64
    for text in load_corpus(split="eval")[:20] + [
        "Naïve café façade — 東京 🙂 tabs\tand  double  spaces\nnew line",
        "zzqx unseen wordsmithery", " leading space", ""]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert 0 not in ids and 1 not in ids  # nothing added, no unknown token
    ids = tokenizer("end<|endoftext|>")["input_ids"]
    assert ids[-1] == 0 and tokenizer.decode(ids, skip_special_tokens=True) == "end"
    batch = tokenizer(["a", "a longer text"], padding=True)
    assert batch["input_ids"][0][0] == 1 and batch["attention_mask"][0][0] == 0  # left pad
    # common words are single tokens: the merges were learned from the corpus
    assert len(tokenizer(" the")["input_ids"]) == 1


def test_tokenizer_training_is_deterministic(tokenizer) -> None:  # noqa: ANN001
    again = train_tokenizer(load_corpus(split="train"), 512, model_max_length=64)
    assert again.get_vocab() == tokenizer.get_vocab()
    text = load_corpus(split="eval")[0]
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
    with pytest.raises(ConfigError, match="vocab_size: must be at least 258"):
        train_tokenizer(["some text"], 100)


def test_pretrained_dir_loads_and_learned(tiny_base_model_dir: Path,
                                          tiny_base_config: BaseModelConfig) -> None:
    names = {p.name for p in tiny_base_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", BASE_MODEL_FILE} <= names
    assert not any(n.startswith(".") for n in os.listdir(tiny_base_model_dir.parent))
    record = read_base_record(tiny_base_model_dir)
    assert record["config"] == tiny_base_config.model_dump()
    assert record["final_eval_loss"] < record["initial_eval_loss"] - 0.5
    assert record["corpus"]["train_tokens"] > 10_000 and record["wall_time_s"] > 0
    assert [h["step"] for h in record["history"]] == [0, 25, 50]
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_base_model_dir)
    assert model.config._name_or_path == str(tiny_base_model_dir)
    assert (model.config.n_layer, model.config.n_embd, model.config.vocab_size) == (2, 64, 512)
    mine, mine_tok = load_policy(tiny_base_model_dir)
    x = torch.tensor([tok("The object is a list")["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).logits, mine(x).logits)
    assert mine_tok("The object")["input_ids"] == tok("The object")["input_ids"]
    # the saved weights are the trained ones: they give the recorded final eval loss
    eval_ids = token_stream(tok, load_corpus(split="eval"))
    n, t = min(32, len(eval_ids) // 32), 32
    loss = pretraining._evaluate(mine, eval_ids[: n * t].view(n, t), 8)
    assert loss == pytest.approx(record["final_eval_loss"], abs=1e-5)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    config = BaseModelConfig.from_overrides(MICRO)
    rng_state = torch.random.get_rng_state()
    a = load_file(pretrain(config, tmp_path / "a", progress=False) / "model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the global RNG is untouched
    b = load_file(pretrain(config, tmp_path / "b", progress=False) / "model.safetensors")
    other = BaseModelConfig.from_overrides([*MICRO, "seed=1"])
    c = load_file(pretrain(other, tmp_path / "c", progress=False) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_ensure_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = BaseModelConfig.from_overrides(MICRO)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = ensure_base_model(config)
    assert path == tmp_path / "cache" / f"base-{config.cache_key()}"
    assert read_base_record(path)["cache_key"] == config.cache_key()

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("pretrained again instead of reusing the cache")

    monkeypatch.setattr(base_model, "pretrain", refuse)
    assert ensure_base_model(config) == path
    assert ensure_base_model(config, cache_dir=tmp_path / "cache") == path
    assert config.cache_key() != BaseModelConfig.from_overrides([*MICRO, "seed=3"]).cache_key()


def test_a_failure_leaves_no_partial_model(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import PreTrainedTokenizerBase

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")  # after the weights were written

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", fail)
    config = BaseModelConfig.from_overrides(MICRO)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_base_model(config, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # a folder without the record (e.g. made by hand) is replaced by a complete model
    stale = tmp_path / f"base-{config.cache_key()}"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    assert ensure_base_model(config, cache_dir=tmp_path) == stale
    assert (stale / BASE_MODEL_FILE).is_file()


def test_pretrain_refuses_a_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(ModelDirError, match="exists and is not an empty directory"):
        pretrain(BaseModelConfig.from_overrides(MICRO), tmp_path, progress=False)
    assert (tmp_path / "x").read_text() == "keep me"


def test_load_policy_errors_name_the_path(tmp_path: Path, tiny_base_model_dir: Path) -> None:
    with pytest.raises(ModelDirError, match=f"{tmp_path / 'nope'}: no such directory"):
        load_policy(tmp_path / "nope")
    with pytest.raises(ModelDirError, match="no config.json"):
        load_policy(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(ModelDirError, match=f"{tmp_path}: cannot load a causal language model"):
        load_policy(tmp_path)
    # weights without a tokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_base_model_dir)
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelDirError, match="cannot load its tokenizer"):
        load_policy(tmp_path / "bare")


def test_config_errors_name_the_field() -> None:
    cases = [
        (["n_head=3"], "n_head: must divide n_embd=128, got 3"),
        (["seq_len=512"], "seq_len: must be at most n_positions=256"),
        (["steps=abc"], "steps: "),
        (["steps=0"], "steps: Input should be greater than or equal to 1, got 0"),
        (["dropout=1.5"], "dropout: "),
        (["layers=2"], "layers: unknown key; allowed: corpus, vocab_size"),
        (["corpus=wiki"], "corpus: unknown 'wiki'; allowed: pydoc"),
        (["steps"], "expected key=value"),
        (["steps=true"], "steps: "),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as err:
            BaseModelConfig.from_overrides(overrides)
        assert message in str(err.value), (overrides, str(err.value))
        assert "\n" not in str(err.value)
    assert BaseModelConfig.from_overrides(["steps=1e3"]).steps == 1000
    assert BaseModelConfig.model_fields["n_layer"].description == "Transformer blocks."
