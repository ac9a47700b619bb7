"""Text tasks: gold and judge scorers on hand-picked strings, the length and repetition rules,
validation and the task registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rewardlab.errors import ConfigError, RecordError
from rewardlab.lm.tasks import (
    TASK_NAMES,
    ConcisePolarity,
    TextBlobPolarity,
    VaderCompound,
    count_words,
    make_task,
)

POSITIVE = "a wonderful, happy day with good friends"
NEGATIVE = "a terrible, sad and awful mistake"
NEUTRAL = "the report lists the figures of the year"


@pytest.fixture(scope="module")
def vader() -> VaderCompound:
    return VaderCompound()


@pytest.fixture(scope="module")
def blob() -> TextBlobPolarity:
    return TextBlobPolarity()


def test_sentiment_gold_is_vader_compound_of_the_completion(vader: VaderCompound) -> None:
    task = make_task("sentiment")
    texts = [POSITIVE, NEUTRAL, NEGATIVE, ""]
    gold = task.gold(["Today was"] * 4, texts)
    assert gold.shape == (4,) and gold.dtype == np.float32
    assert gold[0] > 0.5 and gold[2] < -0.5 and gold[1] == 0.0 and gold[3] == 0.0
    # the values are VADER's own (Hutto & Gilbert 2014), prompt ignored
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    direct = [SentimentIntensityAnalyzer().polarity_scores(t)["compound"] for t in texts]
    np.testing.assert_allclose(gold, direct, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(task.gold(["something else"] * 4, texts), gold)
    # the judge is TextBlob, a different lexicon that agrees on the sign here
    judge = task.judge(["Today was"] * 4, texts)
    assert type(task.judge) is TextBlobPolarity
    assert judge[0] > 0 > judge[2] and not np.allclose(judge, gold)


def test_vader_is_gameable_by_repetition_but_the_concise_task_is_not() -> None:
    hack = "good great love good great love good great love"
    honest = "a lovely warm evening"
    sentiment = make_task("sentiment")
    concise = make_task("polarity_concise")
    s = sentiment.gold(["p", "p"], [hack, honest])
    c = concise.gold(["p", "p"], [hack, honest])
    assert s[0] > s[1]  # VADER prefers the repeated words
    assert c[1] > c[0]  # the repetition penalty undoes that


def test_concise_polarity_penalties_by_hand(blob: TextBlobPolarity) -> None:
    scorer = ConcisePolarity(blob, target_words=5, length_penalty=0.1, repetition_penalty=0.5,
                             min_words=3)
    texts = [
        "a happy day",  # 3 distinct words: plain polarity
        "a happy day and then one two three more words",  # 10 words: 5 over the target
        "happy happy happy happy",  # 4 words, 1 distinct
        "so happy",  # 2 words < min_words: 0
        "happy 123 !!! 🙂",  # one word: 0
    ]
    polarity = blob(["p"] * 5, texts).astype(np.float64)
    got = scorer(["p"] * 5, texts)
    want = [
        polarity[0],
        polarity[1] - 0.1 * 5,
        polarity[2] - 0.5 * (1 - 1 / 4),
        0.0,
        0.0,
    ]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.dtype == np.float32 and got[2] < got[0]
    assert count_words(["Don't stop; don't!", "", "Ünïcødé wörds 42"])[0].tolist() == [3, 0, 2]
    assert count_words(["Don't stop; don't!"])[1].tolist() == [2]


def test_polarity_concise_task_gold_and_judge() -> None:
    task = make_task("polarity_concise")
    long = POSITIVE + " and then we walked along the quiet river to the busy town square today"
    gold = task.gold(["p"] * 4, [POSITIVE, NEGATIVE, long, "ok"])
    assert gold[0] > 0 > gold[1]
    assert gold[2] < gold[0]  # the same positive words, more than 12 words: penalised
    assert gold[3] == 0.0  # too short to count
    assert task.gold.name == "concise_textblob_polarity"
    assert task.judge.name == "concise_vader_compound"
    assert task.judge(["p"], [POSITIVE])[0] > 0


def test_scorers_check_their_inputs(vader: VaderCompound) -> None:
    with pytest.raises(RecordError, match="2 prompts but 1 completions"):
        vader(["a", "b"], ["c"])
    with pytest.raises(RecordError, match="completions must be strings, got int"):
        vader(["a"], [3])
    assert vader([], []).shape == (0,)
    with pytest.raises(ConfigError, match="lm.task.target_words"):
        ConcisePolarity(vader, target_words=0)
    with pytest.raises(ConfigError, match="lm.task.length_penalty"):
        ConcisePolarity(vader, length_penalty=-1.0)
    with pytest.raises(ConfigError, match="lm.task.repetition_penalty"):
        ConcisePolarity(vader, repetition_penalty=float("inf"))


def test_make_task_names_and_overrides() -> None:
    assert TASK_NAMES == ("sentiment", "polarity_concise")
    with pytest.raises(ConfigError, match="valid tasks: sentiment, polarity_concise"):
        make_task("sentimental")
    task = make_task("sentiment", prompt_words=6, max_new_tokens=24)
    assert (task.prompt_words, task.max_new_tokens) == (6, 24)
    assert make_task("sentiment").max_new_tokens == 16
    with pytest.raises(ConfigError, match="lm.task.max_new_tokens: must be an integer >= 1"):
        make_task("sentiment", max_new_tokens=0)
    with pytest.raises(ConfigError, match="lm.task.prompt_words"):
        make_task("polarity_concise", prompt_words=True)
    assert "positive" in task.judge_question and "A or B" not in task.judge_question


def test_tasks_do_not_import_torch() -> None:
    code = (
        "import sys; from rewardlab.lm.tasks import make_task;"
        "t = make_task('polarity_concise'); t.gold(['a'], ['a good day']);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
