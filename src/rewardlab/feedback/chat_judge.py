"""A judge teacher that asks a chat model behind an OpenAI-compatible endpoint.

:class:`OpenAIJudge` sends each text query (two completions of one prompt) to ``POST
{base_url}/chat/completions`` as a pairwise question ("Which continuation is more positive?
Answer A or B"), in a random A/B order per query to cancel position bias (Zheng et al. 2023,
"Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", Sec. 3.3), and maps the answer back
to LEFT/RIGHT (:func:`parse_choice` reads the reply). Any server speaking that API works: vLLM,
llama.cpp's server, Ollama, a hosted API. The client is the standard library's ``urllib`` (no
new dependency). Re-exported by :mod:`rewardlab.feedback.judges`. This module never imports
torch.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardlab.errors import ConfigError, JudgeError, RecordError
from rewardlab.types import Label

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "DEFAULT_QUESTION",
    "OpenAIJudge",
    "check_judge_id",
    "check_pairs",
    "parse_choice",
]

#: The question of the ``sentiment`` task; tasks carry their own
#: (:attr:`rewardlab.lm.tasks.TextTask.judge_question`).
DEFAULT_QUESTION = "Which continuation is more positive?"

#: The user message sent for each query; ``{question}``, ``{prompt}``, ``{a}`` and ``{b}`` are
#: filled in (a template may leave out ``{prompt}``; it must hold the other three).
DEFAULT_PROMPT_TEMPLATE = (
    "{question}\n\n"
    "Prompt: {prompt}\n\n"
    "Continuation A: {a}\n\n"
    "Continuation B: {b}\n\n"
    "Answer with a single letter: A or B."
)

#: HTTP statuses worth retrying: timeouts, rate limits and server errors.
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# "A", "B.", "**B**", "(A)", "Answer: B", "The answer is A", "Continuation A is better": starts
# with the letter (upper case, so the article "a" is not read as A), after optional markup and
# an optional "answer:"/"continuation" lead-in.
_CHOICE = re.compile(
    r"^[\W_]*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:\-]?[\W_]*)?(?:continuation\s+)?"
    r"(?-i:([AB]))(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_TIE = re.compile(r"^[\W_]*(tie|equal|equally|both|neither|same)\b", re.IGNORECASE)


def check_pairs(
    prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """The prompts and the two completions of ``n`` queries as lists, checked.

    Raises:
        RecordError: if the numbers differ or an item is not a string.
    """
    prompts, left, right = list(prompts), list(left), list(right)
    if not len(prompts) == len(left) == len(right):
        raise RecordError(
            f"judge: got {len(prompts)} prompts, {len(left)} left and {len(right)} right "
            "completions; pass one of each per query"
        )
    for what, texts in (("prompts", prompts), ("left", left), ("right", right)):
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise RecordError(f"judge: {what} must be strings, got {type(bad).__name__}")
    return prompts, left, right


def check_judge_id(judge_id: object) -> str:
    """A judge's teacher id, checked.

    Raises:
        ConfigError: if it is not a non-empty string of at most 255 characters.
    """
    if not isinstance(judge_id, str) or not judge_id or len(judge_id) > 255:
        raise ConfigError(
            f"judge.judge_id: must be a non-empty string of at most 255 characters, got "
            f"{judge_id!r}"
        )
    return judge_id


def parse_choice(content: str) -> str | None:
    """Read a chat judge's answer: ``"A"``, ``"B"``, ``"tie"`` or ``None`` (unreadable).

    ``A``/``B`` when the reply starts with that capital letter as a word, after optional
    markup (``**``, quotes, brackets) and an optional ``Answer:``/``The answer is``/
    ``Continuation`` lead-in ("B", "**A**", "Answer: B.", "Continuation A is more positive"),
    or is the lone letter in any case ("a"); ``tie`` when it starts with tie, equal(ly), both,
    neither or same; otherwise ``None`` (e.g. "I cannot decide", "a better one is B"). Only the
    start of the reply is read, as the prompt asks for a single letter: a reply opening with
    the article "A" ("A better one is B") reads as A.
    """
    text = content.strip()
    if text.strip(" \t\n.*\"'()[]").upper() in ("A", "B"):
        return text.strip(" \t\n.*\"'()[]").upper()
    found = _CHOICE.match(text)
    if found:
        return found.group(1)
    if _TIE.match(text):
        return "tie"
    return None


class OpenAIJudge:
    """A judge that asks a chat model behind an OpenAI-compatible endpoint, one query a request.

    Each query is sent to ``POST {base_url}/chat/completions`` as one user message (the
    ``prompt_template`` filled with the question, the prompt and the two completions as A and
    B, in a random order per query drawn from ``seed``), with ``temperature`` 0 and a small
    ``max_tokens``. The reply's ``choices[0].message.content`` is read by
    :func:`parse_choice`; ``A``/``B`` are mapped back to LEFT/RIGHT; a tie gets ``on_tie``
    (default EQUAL) and an unreadable reply ``on_unparseable`` (default SKIP: not used for
    training); both are counted in :meth:`stats`.

    Errors: connection failures (refused, reset, timed out, a broken response) and HTTP
    408/409/425/429/5xx are retried ``max_retries`` times, waiting ``retry_backoff *
    2**(attempt - 1)`` seconds before retry ``attempt`` (1, 2, ...); other HTTP
    errors (400, 401, 404, ...) fail at once; a 200 reply that is not JSON or lacks the message
    content fails at once (a server that answers malformed once will again). Every failure is a
    :class:`~rewardlab.errors.JudgeError` naming the URL and the cause; answers already given
    in the call are lost with it (nothing is stored by the judge itself).

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"`` (http or https).
        model: the model name the server expects.
        api_key: sent as ``Authorization: Bearer <api_key>`` when given (never logged).
        timeout: seconds to wait for each response (> 0).
        max_retries: extra attempts after a retryable failure (>= 0).
        prompt_template: the user message; must contain ``{question}``, ``{a}`` and ``{b}``
            and may contain ``{prompt}`` (:data:`DEFAULT_PROMPT_TEMPLATE`).
        question: the question asked (e.g. the task's ``judge_question``).
        seed: seed of the A/B order (>= 0).
        judge_id: the teacher id its answers are stored under; default ``"judge:" + model``.
        on_tie: label of a tie answer.
        on_unparseable: label of an unreadable answer.
        max_tokens: ``max_tokens`` of the request (>= 1).
        retry_backoff: seconds before the first retry (>= 0), doubled for each further one.

    Raises:
        ConfigError: naming the argument, on an invalid value.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        question: str = DEFAULT_QUESTION,
        seed: int = 0,
        judge_id: str | None = None,
        on_tie: Label | str = Label.EQUAL,
        on_unparseable: Label | str = Label.SKIP,
        max_tokens: int = 8,
        retry_backoff: float = 0.5,
    ) -> None:
        parsed = urllib.parse.urlparse(base_url) if isinstance(base_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"judge.base_url: must be an http(s) URL such as 'http://127.0.0.1:8000/v1', "
                f"got {base_url!r}"
            )
        if not isinstance(model, str) or not model:
            raise ConfigError("judge.model: must be a non-empty model name")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ConfigError("judge.api_key: must be None or a non-empty string")
        for name, value, positive in (("timeout", timeout, True),
                                      ("retry_backoff", retry_backoff, False)):
            real = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not real or not math.isfinite(value) or value < 0 or (positive and value == 0):
                bound = "> 0" if positive else ">= 0"
                raise ConfigError(f"judge.{name}: must be a finite number {bound}, got {value!r}")
        for name, value, low in (("max_retries", max_retries, 0), ("seed", seed, 0),
                                 ("max_tokens", max_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"judge.{name}: must be an integer >= {low}, got {value!r}")
        if not isinstance(prompt_template, str):
            raise ConfigError("judge.prompt_template: must be a string")
        missing = [k for k in ("{question}", "{a}", "{b}") if k not in prompt_template]
        if missing:
            raise ConfigError(
                f"judge.prompt_template: must contain {', '.join(missing)} (and may contain "
                "{prompt})"
            )
        try:
            prompt_template.format(question="", prompt="", a="", b="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"judge.prompt_template: only {{question}}, {{prompt}}, {{a}} and {{b}} may be "
                f"filled in (double other braces): {exc!r}"
            ) from None
        if not isinstance(question, str) or not question:
            raise ConfigError("judge.question: must be a non-empty string")
        try:
            self.on_tie = Label.parse(on_tie)
            self.on_unparseable = Label.parse(on_unparseable)
        except RecordError as exc:
            raise ConfigError(f"judge.on_tie/on_unparseable: {exc}") from None
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.prompt_template = prompt_template
        self.question = question
        self.max_tokens = int(max_tokens)
        self.retry_backoff = float(retry_backoff)
        self.judge_id = check_judge_id(judge_id if judge_id is not None else f"judge:{model}")
        self.rng = np.random.default_rng(int(seed))
        self._counts = {
            "asked": 0, "left": 0, "right": 0, "ties": 0, "unparseable": 0, "retries": 0,
            "shown_swapped": 0,
        }

    # ------------------------------------------------------------------ HTTP

    def _request(self, content: str) -> dict[str, Any]:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "temperature": 0,
                "max_tokens": self.max_tokens,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._counts["retries"] += 1
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", errors="replace")
                last = f"HTTP {exc.code} {exc.reason}: {detail}"
                if exc.code in _RETRY_STATUSES:
                    continue
                raise JudgeError(f"judge {self.judge_id}: {self.url} answered {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError,
                    http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"cannot connect: {reason}"
                continue
            return self._decode(raw)
        raise JudgeError(
            f"judge {self.judge_id}: {self.url} failed after {self.max_retries + 1} attempts; "
            f"last error: {last}"
        )

    def _decode(self, raw: bytes) -> dict[str, Any]:
        shown = raw[:200].decode("utf-8", errors="replace")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url} answered malformed JSON: {shown!r}"
            ) from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url} answered JSON without "
                f"choices[0].message.content: {shown!r}"
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise JudgeError(
                f"judge {self.judge_id}: {self.url}: choices[0].message.content is not a "
                f"string: {shown!r}"
            )
        return {"content": content}

    # ------------------------------------------------------------------ judging

    def message(self, prompt: str, a: str, b: str) -> str:
        """The user message asking about completions ``a`` (shown first) and ``b``."""
        return self.prompt_template.format(question=self.question, prompt=prompt, a=a, b=b)

    def label(
        self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]
    ) -> np.ndarray:
        """Answer ``n`` text queries, one request each (sides shown in a random order).

        Args:
            prompts: the prompt of each query.
            left: the left completion of each query.
            right: the right completion of each query.

        Returns:
            ``(n,)`` int8 :class:`~rewardlab.types.Label` codes: LEFT/RIGHT, ``on_tie`` for a
            tie and ``on_unparseable`` for an unreadable reply.

        Raises:
            RecordError: if the inputs differ in number or are not strings.
            JudgeError: if the endpoint fails (after retries) or answers malformed JSON.
        """
        prompts, left, right = check_pairs(prompts, left, right)
        n = len(prompts)
        swap = self.rng.random(n) < 0.5  # (n,) True: the right completion is shown as A
        labels = np.empty(n, dtype=np.int8)
        for i in range(n):  # one HTTP request per query
            a, b = (right[i], left[i]) if swap[i] else (left[i], right[i])
            choice = parse_choice(self._request(self.message(prompts[i], a, b))["content"])
            if choice is None:
                labels[i] = self.on_unparseable
                self._counts["unparseable"] += 1
            elif choice == "tie":
                labels[i] = self.on_tie
                self._counts["ties"] += 1
            else:
                prefers_left = (choice == "A") != bool(swap[i])
                labels[i] = Label.LEFT if prefers_left else Label.RIGHT
                self._counts["left" if prefers_left else "right"] += 1
        self._counts["asked"] += n
        self._counts["shown_swapped"] += int(swap.sum())
        return labels

    def stats(self) -> dict[str, int]:
        """``asked``; ``left``/``right`` (read answers); ``ties``; ``unparseable``;
        ``retries`` (extra requests after failures); ``shown_swapped`` (queries shown with the
        right completion as A)."""
        return dict(self._counts)

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.url!r}, model={self.model!r}, judge_id={self.judge_id!r})"
