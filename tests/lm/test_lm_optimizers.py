"""Language-model optimisers on a tiny GPT-2 built in the test: best-of-n, GRPO/RLOO (with the
gold-vs-proxy callback), offline and online DPO. Offline, one thread, seeded."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("vaderSentiment")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from rewardlab.algorithms.lm import common  # noqa: E402
from rewardlab.algorithms.lm.best_of_n import BestOfNConfig, best_of_n, kl_best_of_n  # noqa: E402
from rewardlab.algorithms.lm.common import GoldProxyCallback, sample, text_logprobs  # noqa: E402
from rewardlab.algorithms.lm.dpo import (  # noqa: E402
    DPOSettings,
    dpo_trl_config,
    online_dpo_trl_config,
    preference_triples,
    train_dpo,
    train_online_dpo,
)
from rewardlab.algorithms.lm.grpo import OnlineRLConfig, train_online_rl, trl_config  # noqa: E402
from rewardlab.algorithms.lm.loop_eval import eval_metrics  # noqa: E402
from rewardlab.types import Label  # noqa: E402
from tests.helpers import permutation_p_value  # noqa: E402
from tests.lm.tiny_text_model import SUBJECTS, build_tiny_lm, gold  # noqa: E402

TRAIN_PROMPTS, EVAL_PROMPTS = SUBJECTS[:6], SUBJECTS[6:]


def vader(prompts, completions):
    return gold(list(completions))


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


def load(path):
    return AutoModelForCausalLM.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))


def test_kl_of_best_of_n_formula():
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(2) == pytest.approx(math.log(2) - 0.5)
    assert kl_best_of_n(16) == pytest.approx(math.log(16) - 15 / 16)
    with pytest.raises(ValueError, match="n"):
        kl_best_of_n(0)


def test_best_of_n_picks_the_completion_the_reward_prefers(tiny_lm):
    model, tokenizer = load(tiny_lm)

    def count_was(prompts, completions):  # prefers the token "was"
        return np.array([c.count("was") for c in completions], dtype=np.float32)

    result = best_of_n(model, tokenizer, EVAL_PROMPTS, count_was,
                       BestOfNConfig(n=8, max_new_tokens=6, seed=0))
    assert result.all_rewards.shape == (len(EVAL_PROMPTS), 8)
    np.testing.assert_array_equal(result.rewards, result.all_rewards.max(axis=1))
    for chosen, options in zip(result.completions, result.all_completions, strict=True):
        assert chosen.count("was") == max(o.count("was") for o in options)
    assert result.rewards.sum() > 0  # "was" was sampled and chosen somewhere
    assert result.rewards.mean() >= result.all_rewards[:, 0].mean()  # vs n = 1
    assert result.kl == pytest.approx(math.log(8) - 7 / 8)
    assert result.sqrt_kl == pytest.approx(math.sqrt(result.kl))
    # the same seed gives the same samples
    again = best_of_n(model, tokenizer, EVAL_PROMPTS, count_was,
                      BestOfNConfig(n=8, max_new_tokens=6, seed=0))
    assert again.all_completions == result.all_completions


def test_callback_rows_have_gold_proxy_and_kl(tiny_lm, tmp_path):
    def proxy(prompts, completions):  # a proxy unlike gold: completion length
        return np.array([len(c) for c in completions], dtype=np.float32)

    result = train_online_rl(
        tiny_lm, TRAIN_PROMPTS, proxy, tmp_path,
        OnlineRLConfig(algorithm="rloo", steps=2, batch_size=8, num_generations=4,
                       max_completion_length=6, beta=0.05, eval_every=1,
                       eval_samples_per_prompt=2),
        gold=vader, eval_prompts=EVAL_PROMPTS)
    assert [row["step"] for row in result.rows] == [0.0, 1.0, 2.0]
    for row in result.rows:
        assert {"gold", "proxy", "kl", "sqrt_kl", "trl_kl", "disagreement"} <= set(row)
        assert row["sqrt_kl"] == pytest.approx(math.sqrt(max(row["kl"], 0.0)))
        assert -1 <= row["gold"] <= 1 and row["proxy"] >= 0
    assert abs(result.rows[0]["kl"]) < 0.05  # the policy is the reference at step 0
    assert math.isfinite(result.rows[-1]["trl_kl"])  # RLOO logged its KL (beta > 0)
    assert all(row["beta"] == pytest.approx(0.05) for row in result.rows)
    assert json.loads((tmp_path / "online_rl_config.json").read_text())["algorithm"] == "rloo"
    lines = (tmp_path / "eval.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0.0, 1.0, 2.0]
    assert (result.policy_dir / "config.json").exists()


def test_a_negative_kl_estimate_is_logged_raw_beside_sqrt_kl_zero(monkeypatch):
    """The callback's row and the run's ``eval/`` metrics keep the Monte-Carlo KL estimate as
    it is (here -0.02 nats) and give ``sqrt_kl`` 0 for it."""
    from types import SimpleNamespace

    texts = SimpleNamespace(prompts=["a", "b"], completions=["x", "yy"],
                            completion_ids=[[5], [6, 7]])
    monkeypatch.setattr(common, "sample", lambda *args, **kwargs: texts)
    monkeypatch.setattr(common, "kl_to_reference",
                        lambda *args, **kwargs: {"kl": -0.02, "sqrt_kl": 0.0})
    reference = SimpleNamespace(eval=lambda: reference)
    callback = GoldProxyCallback(None, reference, ["a", "b"], vader, vader)
    row = callback.evaluate(model=None, step=4)
    assert row["kl"] == -0.02 and row["sqrt_kl"] == 0.0
    metrics = eval_metrics({**row, "disagreement": math.nan})
    assert metrics["eval/kl"] == -0.02 and metrics["eval/sqrt_kl"] == 0.0


def test_grpo_same_seed_same_run(tiny_lm, tmp_path):
    config = OnlineRLConfig(steps=2, batch_size=8, num_generations=4, max_completion_length=6,
                            learning_rate=1e-3, seed=3, eval_every=2, eval_samples_per_prompt=2)
    runs = [train_online_rl(tiny_lm, TRAIN_PROMPTS, vader, tmp_path / str(i), config,
                            gold=vader, eval_prompts=EVAL_PROMPTS) for i in range(2)]
    assert runs[0].rows == runs[1].rows
    assert runs[0].rows[-1]["kl"] != 0.0  # the policy moved


@pytest.mark.learning
def test_grpo_on_gold_beats_the_base_policy(tiny_lm, tmp_path):
    result = train_online_rl(
        tiny_lm, TRAIN_PROMPTS, vader, tmp_path,
        OnlineRLConfig(steps=30, batch_size=16, num_generations=4, max_completion_length=6,
                       learning_rate=1e-3, beta=0.0, seed=0, eval_every=0))
    base, tokenizer = load(tiny_lm)
    trained, _ = load(result.policy_dir)
    before = gold(sample(base, tokenizer, EVAL_PROMPTS, 16, 6, seed=1).completions)
    after = gold(sample(trained, tokenizer, EVAL_PROMPTS, 16, 6, seed=1).completions)
    p = permutation_p_value(after.astype(np.float64), before.astype(np.float64),
                            np.random.default_rng(0))
    assert after.mean() > before.mean() and p < 0.05, (before.mean(), after.mean(), p)


def test_the_trl_settings_are_shared_and_extra_args_override_them(tmp_path):
    """GRPO/RLOO and offline/online DPO take the same TRL plumbing from their settings'
    shared fields; ``extra_trl_args`` override it and the method's own fields."""
    extra = {"save_strategy": "steps", "save_steps": 3, "max_steps": 9}
    configs = [
        trl_config(OnlineRLConfig(algorithm="rloo", seed=5, logging_steps=2,
                                  extra_trl_args=extra), tmp_path),
        dpo_trl_config(DPOSettings(seed=5, logging_steps=2, extra_trl_args=extra), tmp_path),
        online_dpo_trl_config(DPOSettings(seed=5, logging_steps=2, extra_trl_args=extra),
                              tmp_path),
    ]
    for c in configs:
        assert (c.seed, c.data_seed, c.logging_steps, c.bf16, c.gradient_checkpointing) == (
            5, 5, 2, False, False)
        assert c.use_cpu and c.report_to == [] and c.disable_tqdm
        assert (c.save_strategy, c.save_steps, c.max_steps) == ("steps", 3, 9)
    for settings in (OnlineRLConfig, DPOSettings):
        with pytest.raises(ValueError, match="logging_steps"):
            settings(logging_steps=0)


def test_preference_triples_drop_equal_and_skip():
    triples = preference_triples(
        ["a", "b", "c", "d"], ["l1", "l2", "l3", "l4"], ["r1", "r2", "r3", "r4"],
        [Label.LEFT, Label.RIGHT, Label.EQUAL, Label.SKIP])
    assert triples == {"prompt": ["a", "b"], "chosen": ["l1", "r2"], "rejected": ["r1", "l2"]}


def test_dpo_increases_the_chosen_vs_rejected_margin(tiny_lm, tmp_path):
    prompts = [s for s in SUBJECTS for _ in range(2)]
    left = [" was good", " is nasty"] * len(SUBJECTS)
    right = [" was bad", " is happy"] * len(SUBJECTS)
    labels = [Label.LEFT, Label.RIGHT] * len(SUBJECTS)
    triples = preference_triples(prompts, left, right, labels)
    result = train_dpo(tiny_lm, triples, tmp_path,
                       DPOSettings(beta=0.1, learning_rate=1e-3, batch_size=8, epochs=3))

    def margin(path):
        model, tokenizer = load(path)
        eos = tokenizer.eos_token
        chosen = text_logprobs(model, tokenizer, triples["prompt"],
                               [c + eos for c in triples["chosen"]])
        rejected = text_logprobs(model, tokenizer, triples["prompt"],
                                 [r + eos for r in triples["rejected"]])
        return (chosen - rejected).numpy()

    before, after = margin(tiny_lm), margin(result.policy_dir)
    assert after.mean() > before.mean() + 1.0
    assert (after > before).mean() >= 0.9
    assert any("rewards/margins" in row for row in result.log_history)


def test_online_dpo_with_a_scorer_annotator(tiny_lm, tmp_path):
    result = train_online_dpo(tiny_lm, TRAIN_PROMPTS, vader, tmp_path,
                              DPOSettings(steps=3, batch_size=4, max_new_tokens=6))
    logged = [row for row in result.log_history if "objective/scores" in row]
    assert logged and all(math.isfinite(row["objective/scores"]) for row in logged)
    model, tokenizer = load(result.policy_dir)
    assert len(sample(model, tokenizer, EVAL_PROMPTS[:1], 2, 4, seed=0).completions) == 2
