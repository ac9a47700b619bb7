"""An English corpus that is always on this machine: Python's own documentation.

Every CPython ships the text of its language reference and library topics (what ``help("if")``
prints) as :data:`pydoc_data.topics.topics`: 79 topics, about 465,000 characters of plain
English on CPython 3.11. :func:`load_corpus` cleans it into prose paragraphs (code blocks,
grammar productions, doctests, tables, headings, reST emphasis and footnote marks removed;
lines of a paragraph joined), so nothing is ever downloaded and the corpus is the same on every
machine with the same Python version (:func:`corpus_digest` fingerprints it; the base model's
cache key includes it).

Paragraphs are split into ``train`` and ``eval`` by a hash of their text (:func:`split_of`), not
by position or by an RNG, so the split of a paragraph never changes when others are added or
removed. The base model is pretrained on ``train`` paragraphs and its loss measured on ``eval``
ones; tasks draw training prompts from ``train`` and evaluation prompts from ``eval``
(:func:`corpus_prompts`), so no evaluation prompt was seen in pretraining or RL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from rewardlab.errors import ConfigError

#: Corpora :func:`load_corpus` knows: ``pydoc`` (the documentation topics, ~1,200 paragraphs,
#: loads in under a second) and ``pydoc+docstrings`` (also the docstrings of the standard
#: library's modules, classes and functions, read with :mod:`ast` without importing them: about
#: 10,000 paragraphs and 1.3 million characters, ~30 s to read).
CORPORA = ("pydoc", "pydoc+docstrings")
#: Standard-library folders whose docstrings are left out (tests, GUI demos, vendored code).
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib",
                        "lib2to3", "turtledemo", "tkinter", "ensurepip", "pydoc_data"})
#: Fraction of paragraphs in the ``eval`` split (by hash, see :func:`split_of`).
EVAL_FRACTION = 0.1
#: Fewest words a kept paragraph has (shorter ones are headings, "Notes:", labels).
MIN_WORDS = 6
#: Least fraction of a paragraph's words that must be plain words (letters, with quotes or
#: punctuation around them); code, grammar and tables score far lower.
MIN_WORD_FRACTION = 0.75

Split = Literal["all", "train", "eval"]

_HEADING_RULE = re.compile(r"^\s*([*=\-~^#])\1{2,}\s*$")  # ***** / ===== / ----- underlines
_LIST_MARKER = re.compile(r"^(?:[*\-+]|\d+\.|\(\d+\)|[a-z]\.)\s+")
_CODE_MARKS = (">>>", "::=", "+--", "+==", "| ", "...:")
_EMPHASIS = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")  # *word*, **word**
_FOOTNOTE = re.compile(r"\s*\[\d+\]")
_WORD = re.compile(r"""^[("“‘']*[A-Za-z][A-Za-z'’\-]*[)"”’',.;:!?]*$""")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(A-Z])")


def _prose(paragraph: list[str]) -> str | None:
    """The paragraph's lines joined as one line of prose, or None if it is not prose."""
    if any(_HEADING_RULE.match(line) for line in paragraph):
        return None  # a heading and its underline (possibly fused with what follows)
    text = " ".join(line.strip() for line in paragraph)
    if any(mark in text for mark in _CODE_MARKS):
        return None
    indent = len(paragraph[0]) - len(paragraph[0].lstrip(" "))
    if indent >= 6:  # code inside a list item (list content is indented 2 to 5 spaces)
        return None
    text = _LIST_MARKER.sub("", text)
    text = _FOOTNOTE.sub("", _EMPHASIS.sub(r"\1", text))
    text = re.sub(r"\s+", " ", text).strip()
    words = text.split(" ")
    if len(words) < MIN_WORDS or text[-1] not in ".!?:)\"”":
        return None
    if sum(bool(_WORD.match(w)) for w in words) < MIN_WORD_FRACTION * len(words):
        return None  # code, a grammar production or a signature
    return text


def _pydoc_paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    # dict order is the file's; sorted is the same everywhere
    return [p for key in sorted(topics) for p in _paragraphs(topics[key])]


def _paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a text whose paragraphs are separated by blank lines."""
    out: list[str] = []
    paragraph: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            paragraph.append(line.rstrip())
            continue
        if paragraph:
            prose = _prose(paragraph)
            if prose is not None:
                out.append(prose)
            paragraph = []
    return out


def _docstring_paragraphs() -> list[str]:
    import ast
    import sysconfig
    from pathlib import Path

    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue  # a file this Python cannot parse: not part of the corpus
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.extend(_paragraphs(doc))
    return out


def split_of(text: str) -> Literal["train", "eval"]:
    """Which split a paragraph belongs to: ``eval`` for a fixed :data:`EVAL_FRACTION` of texts.

    Decided by the first 8 hex digits of the SHA-256 of the UTF-8 text, so it depends on the
    text only (not on its position or on any RNG).
    """
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
    return "eval" if h < EVAL_FRACTION * 16**8 else "train"


def load_corpus(name: str = "pydoc", split: Split = "all") -> list[str]:
    """The cleaned paragraphs of a corpus, in a fixed order, without duplicates.

    Args:
        name: ``pydoc`` (Python's documentation topics, :mod:`pydoc_data.topics`) or
            ``pydoc+docstrings`` (also the standard library's docstrings); see :data:`CORPORA`.
        split: ``all``, ``train`` (about 90% of paragraphs) or ``eval`` (the rest; see
            :func:`split_of`).

    Returns:
        Paragraphs of English prose, one line each (about 1,200 paragraphs and 260,000
        characters for ``pydoc`` on CPython 3.11). The same call returns the same list on every
        run.

    Raises:
        ConfigError: on an unknown corpus name or split.
    """
    if name not in CORPORA:
        raise ConfigError(f"corpus: unknown {name!r}; allowed: {', '.join(CORPORA)}")
    if split not in ("all", "train", "eval"):
        raise ConfigError(f"split: unknown {split!r}; allowed: all, train, eval")
    texts = _pydoc_paragraphs()
    if name == "pydoc+docstrings":
        texts += _docstring_paragraphs()
    texts = list(dict.fromkeys(texts))
    return texts if split == "all" else [t for t in texts if split_of(t) == split]


def corpus_digest(texts: Sequence[str]) -> str:
    """12 hex digits of the SHA-256 of the texts (one per line): the corpus's fingerprint."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:12]


def sentences(texts: Sequence[str]) -> list[str]:
    """The sentences of paragraphs (split after ``.``, ``!`` or ``?`` before a capital or a quote).

    ``e.g. the`` is not split (a lower-case word follows); a few abbreviations before a capital
    are, which only shortens a prompt's sentence.
    """
    return [s for t in texts for s in _SENTENCE_END.split(t) if s]


def _openings(texts: Sequence[str], prompt_words: int) -> list[str]:
    """Distinct first ``prompt_words`` words of sentences of ``prompt_words + 3`` or more words."""
    return list(dict.fromkeys(
        " ".join(words[:prompt_words])
        for words in (s.split() for s in sentences(texts))
        if len(words) >= prompt_words + 3
    ))


def corpus_prompts(texts: Sequence[str], n: int, prompt_words: int = 4,
                   rng: np.random.Generator | None = None,
                   disjoint_from: Sequence[str] | None = None) -> list[str]:
    """Prompts for continuation tasks: the first words of corpus sentences.

    Only sentences with at least ``prompt_words + 3`` words are used (the prompt stops inside a
    sentence), and each distinct prompt counts once. Pass ``load_corpus(split="train")`` for
    training prompts and ``load_corpus(split="eval")`` for evaluation prompts: the two sets are
    disjoint at the paragraph level, and with ``disjoint_from=load_corpus(split="train")`` no
    evaluation prompt is even the opening of a training sentence.

    Args:
        texts: paragraphs, e.g. from :func:`load_corpus`.
        n: how many prompts to return.
        prompt_words: words per prompt (split on spaces; the prompt has no trailing space).
        rng: draws the prompts; ``None`` returns the first ``n`` distinct prompts in corpus
            order.
        disjoint_from: texts whose sentence openings are never returned (e.g. the training
            paragraphs, when drawing evaluation prompts).

    Returns:
        ``n`` prompts. Without replacement while ``n`` is at most the number of distinct
        prompts; beyond that, whole random permutations are concatenated, so each prompt
        appears ``n // m`` or ``n // m + 1`` times (``m`` distinct prompts).

    Raises:
        ConfigError: if ``n < 1``, ``prompt_words < 1`` or the texts hold no long enough
            sentence.
    """
    if n < 1:
        raise ConfigError(f"n: must be an integer >= 1, got {n!r}")
    if prompt_words < 1:
        raise ConfigError(f"prompt_words: must be an integer >= 1, got {prompt_words!r}")
    candidates = _openings(texts, prompt_words)
    if disjoint_from is not None:
        taken = set(_openings(disjoint_from, prompt_words))
        candidates = [c for c in candidates if c not in taken]
    if not candidates:
        raise ConfigError(
            f"prompt_words: no sentence of the {len(texts)} texts has {prompt_words + 3} or more "
            "words (not counting openings of disjoint_from); give more texts or fewer "
            "prompt_words")
    m = len(candidates)
    if rng is None:
        order = np.arange(n) % m
    else:
        order = np.concatenate([rng.permutation(m) for _ in range(-(-n // m))])[:n]
    return [candidates[i] for i in order]
