"""TextRewardEnsemble: the loss by hand, held-out accuracy on VADER-labelled pairs, reductions,
calibration bins and a save/load round trip (tiny GPT-2 built in the test, offline)."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("vaderSentiment")

from rewardlab.rewards.text_eval import reliability_bins  # noqa: E402
from rewardlab.rewards.text_model import (  # noqa: E402
    TextRewardConfig,
    TextRewardEnsemble,
    reduce_scores,
)
from tests.lm.tiny_text_model import build_tiny_lm, gold, sentences  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


def gold_pairs(n: int, seed: int) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """n pairs of one positive and one negative sentence in random order, labelled by VADER."""
    rng = np.random.default_rng(seed)
    pos = rng.choice(sentences("positive"), n)
    neg = rng.choice(sentences("negative"), n)
    flip = rng.random(n) < 0.5
    left, right = np.where(flip, neg, pos), np.where(flip, pos, neg)
    diff = gold(list(left)) - gold(list(right))
    targets = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5)).astype(np.float32)
    return [("", str(a), str(b)) for a, b in zip(left, right, strict=True)], targets


def test_loss_matches_hand_computed_value(tiny_lm):
    model = TextRewardEnsemble.from_base(tiny_lm, TextRewardConfig(members=2), seed=3)
    pairs = [("the movie", " was good", " was really very bad"),
             ("my friend", " is kind", " is sad"),
             ("the food", " was nice", " seems awful")]
    targets = np.array([1.0, 0.0, 0.5], dtype=np.float32)
    left = model.score([p for p, _, _ in pairs], [a for _, a, _ in pairs]).astype(np.float64)
    right = model.score([p for p, _, _ in pairs], [b for _, _, b in pairs]).astype(np.float64)
    expected = 0.0
    for k in range(2):
        ce = []
        for i, y in enumerate(targets):
            p = 1 / (1 + math.exp(-(left[k, i] - right[k, i])))
            ce.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
        expected += sum(ce) / len(ce)  # sum over members of the mean over pairs
    with torch.no_grad():
        loss = float(model.loss(pairs, targets))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_score_reads_the_last_token_whatever_the_padding(tiny_lm):
    model = TextRewardEnsemble.from_base(tiny_lm, TextRewardConfig(members=2), seed=0)
    alone = model.score(["the movie"], [" was good"])
    padded = model.score(["the movie", "the weather"], [" was good", " felt nasty and boring"])
    np.testing.assert_allclose(padded[:, :1], alone, rtol=1e-5, atol=1e-6)
    assert alone.shape == (2, 1) and alone.dtype == np.float32
    assert not np.allclose(alone[0], alone[1])  # members differ (own head initialisation)


@pytest.mark.learning
def test_heldout_accuracy_on_gold_labelled_pairs(tiny_lm):
    pairs, targets = gold_pairs(400, seed=0)
    test_pairs, test_targets = gold_pairs(100, seed=1)
    targets[:10] = np.nan  # skipped answers are excluded
    model = TextRewardEnsemble.from_base(tiny_lm, TextRewardConfig(members=3), seed=0)
    history = model.fit(pairs, targets, epochs=3, batch_size=32, lr=1e-3, seed=0,
                        val_fraction=0.2)
    assert [row["epoch"] for row in history] == [1.0, 2.0, 3.0]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.9
    metrics = model.evaluate(test_pairs, test_targets)
    assert metrics.accuracy >= 0.9 and metrics.ensemble_accuracy >= 0.9
    assert 0 <= metrics.ece <= 1 and metrics.prob_std >= 0 and metrics.score_std > 0
    assert sum(metrics.reliability["count"]) == 100
    assert set(metrics.scalars()) >= {"reward_model/heldout_accuracy", "reward_model/heldout_ece"}


def test_fit_rejects_unusable_targets(tiny_lm):
    model = TextRewardEnsemble.from_base(tiny_lm, TextRewardConfig(members=1), seed=0)
    pairs = [("", "good", "bad")] * 2
    with pytest.raises(ValueError, match="no labelled pair"):
        model.fit(pairs, np.array([np.nan, np.nan]), epochs=1)
    with pytest.raises(ValueError, match="targets"):
        model.fit(pairs, np.array([1.0, 2.0]), epochs=1)


def test_reductions_on_a_hand_example():
    scores = np.array([[1.0, -2.0], [3.0, 0.0], [2.0, 4.0]])  # (K=3, n=2)
    np.testing.assert_allclose(reduce_scores(scores, "mean"), [2.0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(reduce_scores(scores, "min"), [1.0, -2.0])
    np.testing.assert_allclose(reduce_scores(scores, "mean_minus_std", k=0.5),
                               [2 - 0.5 * math.sqrt(2 / 3), 2 / 3 - 0.5 * math.sqrt(56 / 9)],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="how"):
        reduce_scores(scores, "max")


def test_reliability_bins_by_hand():
    bins = reliability_bins(np.array([0.1, 0.15, 0.9, 0.0]), np.array([0.0, 1.0, 1.0, np.nan]),
                            n_bins=2)
    assert bins["count"] == [2.0, 1.0]
    np.testing.assert_allclose(bins["confidence"], [0.125, 0.9])
    np.testing.assert_allclose(bins["frequency"], [0.5, 1.0])


def test_save_load_round_trip_scores_identically(tiny_lm, tmp_path):
    config = TextRewardConfig(members=2, reduction="mean_minus_std", k_std=0.5)
    model = TextRewardEnsemble.from_base(tiny_lm, config, seed=1)
    pairs, targets = gold_pairs(16, seed=2)
    model.fit(pairs, targets, epochs=1, batch_size=8, lr=1e-3, seed=0, val_fraction=0.0)
    prompts, completions = ["the movie", "my friend"], [" was good", " is cruel"]
    model.normalize_on(prompts * 2, completions + [" was fun", " is sad"])
    model.save(tmp_path / "rm")
    loaded = TextRewardEnsemble.load(tmp_path / "rm")
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.score(prompts, completions),
                                  model.score(prompts, completions))
    np.testing.assert_array_equal(loaded.reward(prompts, completions),
                                  model.reward(prompts, completions))
    assert not list((tmp_path / "rm").rglob("*.bin")) and not list((tmp_path / "rm").rglob("*.pt"))
