"""The offline English corpus: cleaning, the hash split and continuation prompts."""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.errors import ConfigError
from rewardlab.lm.corpus import (
    _prose,
    corpus_digest,
    corpus_prompts,
    load_corpus,
    sentences,
    split_of,
)


def test_pydoc_corpus_is_clean_prose_and_deterministic() -> None:
    texts = load_corpus("pydoc")
    assert texts == load_corpus("pydoc")
    assert len(texts) > 1000 and sum(map(len, texts)) > 200_000
    assert len(set(texts)) == len(texts)
    joined = "\n".join(texts)
    for mark in (">>>", "::=", "+---", "*****", "=====", "\n"):
        assert mark not in "".join(texts), mark
    assert "The \"if\" statement is used for conditional execution:" in joined
    assert all(len(t.split()) >= 6 for t in texts)
    assert not any("*decorator*" in t for t in texts)  # reST emphasis removed


def test_cleaning_drops_code_headings_and_tables() -> None:
    assert _prose(["The \"if\" statement", "******************"]) is None
    assert _prose(["   if_stmt ::= \"if\" assignment_expression \":\" suite"]) is None
    assert _prose(["   >>> print(1)", "   1"]) is None
    assert _prose(["| a | b |"]) is None
    assert _prose(["   def func(): pass", "   func = f1(arg)(f2(func))"]) is None
    assert _prose(["* A *list* item that is a real sentence of", "  prose [1]."]) == (
        "A list item that is a real sentence of prose.")


def test_split_is_a_disjoint_partition_by_hash() -> None:
    train, held = load_corpus(split="train"), load_corpus(split="eval")
    assert sorted(train + held) == sorted(load_corpus())
    assert not set(train) & set(held)
    assert 0.05 < len(held) / (len(train) + len(held)) < 0.15
    assert all(split_of(t) == "eval" for t in held)
    assert split_of("some paragraph") == split_of("some paragraph")


def test_bad_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="corpus: unknown 'wiki'"):
        load_corpus("wiki")
    with pytest.raises(ConfigError, match="split: unknown"):
        load_corpus(split="test")  # type: ignore[arg-type]


def test_prompts_are_sentence_openings_seeded_and_split() -> None:
    train, held = load_corpus(split="train"), load_corpus(split="eval")
    a = corpus_prompts(train, 50, 4, np.random.default_rng(0))
    assert a == corpus_prompts(train, 50, 4, np.random.default_rng(0))
    assert a != corpus_prompts(train, 50, 4, np.random.default_rng(1))
    assert len(set(a)) == 50 and all(len(p.split()) == 4 for p in a)
    starts = {" ".join(s.split()[:4]) for s in sentences(train)}
    assert set(a) <= starts
    # eval prompts come from eval paragraphs only
    held_starts = {" ".join(s.split()[:4]) for s in sentences(held)}
    assert set(corpus_prompts(held, 30, 4, np.random.default_rng(0))) <= held_starts
    train_starts = {" ".join(s.split()[:4]) for s in sentences(train)}
    assert held_starts & train_starts  # openings such as "The name of the" recur...
    unseen = corpus_prompts(held, 10_000, 4, disjoint_from=train)
    assert unseen and not set(unseen) & train_starts  # ...and disjoint_from drops them
    # more prompts than distinct ones: whole permutations, each used equally often
    few = ["One two three four five six seven. Eight nine ten eleven twelve thirteen fourteen."]
    many = corpus_prompts(few, 5, 3, np.random.default_rng(0))
    assert sorted(set(many)) == ["Eight nine ten", "One two three"]
    assert sorted(many.count(p) for p in set(many)) == [2, 3]
    assert corpus_prompts(few, 3, 3) == ["One two three", "Eight nine ten", "One two three"]


def test_prompt_errors_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="n: must be"):
        corpus_prompts(["a b c"], 0)
    with pytest.raises(ConfigError, match="prompt_words: no sentence"):
        corpus_prompts(["Too short."], 2, 4)


def test_digest_changes_with_the_text() -> None:
    assert corpus_digest(["a", "b"]) == corpus_digest(["a", "b"])
    assert corpus_digest(["a", "b"]) != corpus_digest(["a", "b."])
    assert len(corpus_digest(["a"])) == 12
