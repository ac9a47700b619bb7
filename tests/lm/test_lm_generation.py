"""Sampling, sequence log-probabilities and the KL to a reference, on the tiny base model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rewardlab.errors import ConfigError
from rewardlab.lm.generation import (
    TextSamples,
    kl_to_reference,
    sample_completions,
    sequence_logprobs,
    sqrt_kl,
)

PROMPTS = ["The object is", "A", "When the interpreter reaches the end of", ""]


def _hand_logprob(model, prompt: list[int], completion: list[int]) -> float:  # noqa: ANN001
    """sum_t log pi(y_t | x, y_<t), one unpadded forward pass per token."""
    ids = prompt + completion
    total = 0.0
    with torch.no_grad():
        for t in range(len(prompt), len(ids)):
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1].double()
            total += float(logits.log_softmax(-1)[ids[t]])
    return total


def test_batch_layout_is_left_then_right_padded() -> None:
    s = TextSamples(prompts=["a", "b"], completions=["x", "y"], prompt_ids=[[5], [6, 7]],
                    completion_ids=[[8, 9, 0], [10]], n_per_prompt=1, pad_token_id=1,
                    eos_token_id=0)
    b = s.batch()
    assert b["input_ids"].tolist() == [[1, 5, 8, 9, 0], [6, 7, 10, 1, 1]]
    assert b["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert b["completion_mask"].tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 0, 0]]
    assert all(v.dtype == torch.int64 for v in b.values())
    assert s.batch([1])["input_ids"].tolist() == [[6, 7, 10]]
    assert s.stopped.tolist() == [True, False]
    with pytest.raises(ValueError, match="same length"):
        TextSamples(["a"], [], [[1]], [[2]], 1, 1, 0)


def test_sequence_logprobs_match_a_hand_loop_and_ignore_padding(tiny_policy) -> None:  # noqa: ANN001
    model, tok = tiny_policy
    samples = sample_completions(model, tok, PROMPTS, n_per_prompt=2, max_new_tokens=12, seed=3)
    lengths = {len(c) for c in samples.completion_ids} | {len(p) for p in samples.prompt_ids}
    assert len(lengths) > 2  # the batch really is padded
    b = samples.batch()
    with torch.no_grad():
        batched = sequence_logprobs(model, **b)
    assert batched.dtype == torch.float32 and batched.shape == (len(samples),)
    hand = [_hand_logprob(model, p, c)
            for p, c in zip(samples.prompt_ids, samples.completion_ids, strict=True)]
    np.testing.assert_allclose(batched.numpy(), hand, atol=1e-5, rtol=0)
    with torch.no_grad():  # each alone (no padding at all) and all right-padded
        single = torch.cat([sequence_logprobs(model, **samples.batch([i]))
                            for i in range(len(samples))])
        right = _right_padded(samples)
        right_lp = sequence_logprobs(model, **right)
    np.testing.assert_allclose(single.numpy(), batched.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(right_lp.numpy(), batched.numpy(), atol=1e-5, rtol=0)
    assert torch.all(batched < 0)


def _right_padded(samples: TextSamples) -> dict[str, torch.Tensor]:
    rows = [p + c for p, c in zip(samples.prompt_ids, samples.completion_ids, strict=True)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), samples.pad_token_id, dtype=torch.int64)
    att = torch.zeros_like(ids)
    comp = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(samples.prompt_ids, rows, strict=True)):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
        comp[i, len(p):len(r)] = 1
    return {"input_ids": ids, "attention_mask": att, "completion_mask": comp}


def test_sampling_is_seeded_and_shaped(tiny_policy) -> None:  # noqa: ANN001
    model, tok = tiny_policy
    state = torch.random.get_rng_state()
    a = sample_completions(model, tok, PROMPTS, n_per_prompt=3, max_new_tokens=10, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    b = sample_completions(model, tok, PROMPTS, n_per_prompt=3, max_new_tokens=10, seed=7)
    c = sample_completions(model, tok, PROMPTS, n_per_prompt=3, max_new_tokens=10, seed=8)
    assert a == b and a.completion_ids != c.completion_ids
    assert len(a) == 12 and a.prompts == [p for p in PROMPTS for _ in range(3)]
    assert a.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert a.prompt_ids[0] == tok(PROMPTS[0])["input_ids"] == a.prompt_ids[2]
    assert a.prompt_ids[-1] == [tok.bos_token_id]  # the empty prompt starts from BOS
    eos = tok.eos_token_id
    for ids, text, stopped in zip(a.completion_ids, a.completions, a.stopped, strict=True):
        assert 1 <= len(ids) <= 10 and tok.pad_token_id not in ids
        assert eos not in ids[:-1] and stopped == (ids[-1] == eos)
        assert text == tok.decode(ids, skip_special_tokens=True)
    assert len({tuple(ids) for ids in a.completion_ids[:3]}) > 1  # samples differ


def test_sampling_errors_name_the_argument(tiny_policy) -> None:  # noqa: ANN001
    model, tok = tiny_policy
    with pytest.raises(ConfigError, match="temperature"):
        sample_completions(model, tok, ["a"], temperature=0.0)
    with pytest.raises(ConfigError, match="top_k must be >= 0 and top_p"):
        sample_completions(model, tok, ["a"], top_p=0.0)
    with pytest.raises(ConfigError, match="max_new_tokens: a prompt of 1 tokens plus 64"):
        sample_completions(model, tok, ["a"], max_new_tokens=64)


def test_sqrt_kl_is_zero_for_a_negative_estimate() -> None:
    assert sqrt_kl(4.0) == 2.0 and sqrt_kl(0.0) == 0.0
    assert sqrt_kl(-0.003) == 0.0  # a Monte-Carlo estimate below 0: d = 0, not an error
    assert np.isnan(sqrt_kl(float("nan")))


def test_kl_is_zero_to_itself_and_positive_to_a_perturbed_copy(tiny_policy) -> None:  # noqa: ANN001
    model, tok = tiny_policy
    samples = sample_completions(model, tok, PROMPTS[:3], n_per_prompt=8, max_new_tokens=12,
                                 seed=0)
    same = kl_to_reference(model, copy.deepcopy(model), samples, batch_size=5)
    assert same["n"] == 24 and same["per_sample"].shape == (24,)
    np.testing.assert_allclose(same["per_sample"], 0.0, atol=1e-5)
    assert same["sqrt_kl"] == pytest.approx(np.sqrt(max(same["kl"], 0.0)))
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    kl = kl_to_reference(model, reference, samples)
    assert kl["kl"] > 3 * kl["kl_std_error"] > 0
    assert kl["sqrt_kl"] == pytest.approx(np.sqrt(kl["kl"]))
    assert kl["kl"] == pytest.approx(kl["per_sample"].mean())
    # the per-sample values are the log-ratios of sequence_logprobs
    b = samples.batch()
    with torch.no_grad():
        ratio = sequence_logprobs(model, **b) - sequence_logprobs(reference, **b)
    np.testing.assert_allclose(kl["per_sample"], ratio.double().numpy(), atol=1e-5)
    assert not model.training and not reference.training
