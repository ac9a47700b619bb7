"""The chat-completions judge against a real HTTP server on 127.0.0.1 that the test starts.

The server (:mod:`tests.feedback.chat_server`: stdlib ``http.server`` in a thread, random port)
implements ``POST /v1/chat/completions`` with a deterministic rule: it answers the letter of the
continuation that says "good" more often ("tie" when equal). The model name picks a behaviour:
``rule`` (normal), ``flaky`` (HTTP 500 on every other request), ``down`` (always 503),
``garbage`` (a 200 whose body is not JSON), ``shapeless`` (JSON without choices), ``chatty`` (an
unreadable reply), ``slow`` (answers after the client's timeout), ``secret`` (401 without the
right bearer token), ``missing`` (404).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from rewardlab.errors import ConfigError, JudgeError
from rewardlab.feedback.judges import OpenAIJudge, parse_choice
from rewardlab.types import Label
from tests.feedback.chat_server import ChatServer, chat_url, running_chat_server

LEFT, RIGHT, EQUAL, SKIP = int(Label.LEFT), int(Label.RIGHT), int(Label.EQUAL), int(Label.SKIP)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with running_chat_server() as srv:
        yield srv


def _url(srv: ChatServer) -> str:
    return chat_url(srv)


LEFTS = ["good good day", "a day", "good", "good good good", "bad", "fine", "good", "x"] * 3
RIGHTS = ["good day", "good day", "good", "good", "good good", "good", "none", "good"] * 3


def _expected() -> list[int]:
    out = []
    for a, b in zip(LEFTS, RIGHTS, strict=True):
        ga, gb = a.split().count("good"), b.split().count("good")
        out.append(LEFT if ga > gb else RIGHT if gb > ga else EQUAL)
    return out


def test_judge_maps_shuffled_answers_back_to_the_right_side(server: ChatServer) -> None:
    judge = OpenAIJudge(_url(server), "rule", seed=3, retry_backoff=0.0,
                        question="Which continuation says good more often?")
    labels = judge.label(["The day was"] * len(LEFTS), LEFTS, RIGHTS)
    assert labels.dtype == np.int8 and labels.tolist() == _expected()
    stats = judge.stats()
    assert stats["asked"] == len(LEFTS) and stats["retries"] == 0
    assert stats["ties"] == _expected().count(EQUAL) and stats["unparseable"] == 0
    # both orders were shown: the right completion came first for some queries only
    shown_first = [re.search(r"Continuation A: (.*)", r["messages"][0]["content"]).group(1)
                   for r in server.requests]
    swapped = [a != left for a, left in zip(shown_first, LEFTS, strict=True)]
    distinct = [i for i in range(len(LEFTS)) if LEFTS[i] != RIGHTS[i]]
    assert 0 < sum(swapped[i] for i in distinct) < len(distinct)
    assert stats["shown_swapped"] >= sum(swapped)
    request = server.requests[0]
    assert request["model"] == "rule" and request["temperature"] == 0
    assert request["messages"][0]["role"] == "user"
    content = request["messages"][0]["content"]
    assert content.startswith("Which continuation says good more often?")
    assert "Prompt: The day was" in content and content.endswith("A or B.")
    assert "Authorization" not in server.headers_seen[0]
    # the same seed shows the same order again
    again = OpenAIJudge(_url(server), "rule", seed=3, question=judge.question)
    n = len(server.requests)
    again.label(["The day was"] * len(LEFTS), LEFTS, RIGHTS)
    assert [r["messages"] for r in server.requests[n:]] == [r["messages"] for r in
                                                             server.requests[:n]]


def test_server_errors_are_retried(server: ChatServer) -> None:
    judge = OpenAIJudge(_url(server), "flaky", max_retries=1, retry_backoff=0.0)
    labels = judge.label(["p"] * 3, ["good", "x", "good"], ["x", "good", "good"])
    assert labels.tolist() == [LEFT, RIGHT, EQUAL]
    assert judge.stats()["retries"] == 3 and len(server.requests) == 6  # a 500 before each


def test_errors_are_clear(server: ChatServer) -> None:
    url = _url(server)
    with pytest.raises(JudgeError, match=r"failed after 3 attempts; last error: HTTP 503"):
        OpenAIJudge(url, "down", max_retries=2, retry_backoff=0.0).label(["p"], ["a"], ["b"])
    assert len(server.requests) == 3
    with pytest.raises(JudgeError, match=r"answered malformed JSON: '<html>not json\{'"):
        OpenAIJudge(url, "garbage", retry_backoff=0.0).label(["p"], ["a"], ["b"])
    assert len(server.requests) == 4  # not retried
    with pytest.raises(JudgeError, match=r"JSON without choices\[0\]\.message\.content"):
        OpenAIJudge(url, "shapeless").label(["p"], ["a"], ["b"])
    with pytest.raises(JudgeError, match="HTTP 401 Unauthorized: .*invalid api key"):
        OpenAIJudge(url, "secret").label(["p"], ["a"], ["b"])
    assert len(server.requests) == 6  # a 401 is not retried
    with pytest.raises(JudgeError, match="HTTP 404 Not Found"):
        OpenAIJudge(url, "missing", retry_backoff=0.0).label(["p"], ["a"], ["b"])
    with pytest.raises(JudgeError, match="HTTP 404"):
        OpenAIJudge(url + "/wrong", "rule").label(["p"], ["a"], ["b"])
    with pytest.raises(JudgeError, match="failed after 2 attempts; last error: cannot connect"):
        OpenAIJudge(url, "slow", timeout=0.2, max_retries=1, retry_backoff=0.0).label(
            ["p"], ["a"], ["b"]
        )


def test_api_key_is_sent_as_a_bearer_token(server: ChatServer) -> None:
    judge = OpenAIJudge(_url(server), "secret", api_key="s3cret", judge_id="judge:local")
    assert judge.label(["p"], ["good"], ["bad"]).tolist() == [LEFT]
    assert server.headers_seen[-1]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(judge)


def test_unparseable_and_tie_labels_are_configurable_and_counted(server: ChatServer) -> None:
    chatty = OpenAIJudge(_url(server), "chatty")
    assert chatty.label(["p"] * 2, ["good", "x"], ["x", "good"]).tolist() == [SKIP, SKIP]
    assert chatty.stats()["unparseable"] == 2
    ties = OpenAIJudge(_url(server), "rule", on_tie="skip", on_unparseable=Label.EQUAL)
    assert ties.label(["p"], ["good"], ["good"]).tolist() == [SKIP]
    assert ties.stats()["ties"] == 1


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "rule", max_retries=1, retry_backoff=0.0)
    with pytest.raises(JudgeError, match=r"failed after 2 attempts; last error: cannot connect: "
                                          r".*(refused|Errno)"):
        judge.label(["p"], ["a"], ["b"])
    assert judge.stats()["retries"] == 1


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(base_url="127.0.0.1:8000/v1"), "judge.base_url"),
        (dict(base_url="ftp://host/v1"), "judge.base_url"),
        (dict(model=""), "judge.model"),
        (dict(timeout=0), "judge.timeout"),
        (dict(timeout=float("nan")), "judge.timeout"),
        (dict(max_retries=-1), "judge.max_retries"),
        (dict(seed=1.5), "judge.seed"),
        (dict(prompt_template="Which? {a}"), r"judge.prompt_template: must contain \{question\}"),
        (dict(prompt_template="{question} {a} {b} {other}"), "judge.prompt_template: only"),
        (dict(on_tie="maybe"), "judge.on_tie"),
        (dict(api_key=""), "judge.api_key"),
        (dict(retry_backoff=-1.0), "judge.retry_backoff"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    args = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs}
    with pytest.raises(ConfigError, match=field):
        OpenAIJudge(**args)


@pytest.mark.parametrize(
    "reply,choice",
    [
        ("A", "A"), ("B.", "B"), ("**B**", "B"), ("(A)", "A"), ("Answer: B", "B"),
        ("The answer is A", "A"), ("Continuation B is more positive", "B"), ("b", "B"),
        ("Tie", "tie"), ("Both are equally positive", "tie"), ("neither", "tie"),
        ("I cannot decide", None), ("a better one is B", None), ("Bob", None), ("", None),
    ],
)
def test_parse_choice(reply: str, choice: str | None) -> None:
    assert parse_choice(reply) == choice
