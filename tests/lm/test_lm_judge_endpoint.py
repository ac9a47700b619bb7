"""``lm.judge=endpoint`` through the language-model loop: a best-of-n run whose text queries are
answered by a chat-completions server on 127.0.0.1 that the test starts
(:mod:`tests.feedback.chat_server`, the judge client's own test server), with the API key read
from the environment variable ``lm.judge_api_key_env`` names."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("vaderSentiment")

from rewardlab.algorithms.lm.loop_answerers import GoldTeacher  # noqa: E402
from rewardlab.cli.main import main  # noqa: E402
from rewardlab.diagnostics.metrics import read_metrics  # noqa: E402
from rewardlab.feedback.judges import judge_agreement  # noqa: E402
from rewardlab.store.store import FeedbackStore  # noqa: E402
from tests.feedback.chat_server import SECRET, chat_url, running_chat_server  # noqa: E402
from tests.lm.test_lm_loop import argv  # noqa: E402

pytestmark = pytest.mark.e2e

KEY_ENV = "REWARDLAB_TEST_JUDGE_KEY"


def test_an_endpoint_judge_answers_the_rounds_and_its_agreement_is_logged(
        tiny_base_model_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv(KEY_ENV, SECRET)
    with running_chat_server() as srv:
        code = main(argv(run, tiny_base_model_dir, "bon", "lm.judge=endpoint",
                         f"lm.judge_url={chat_url(srv)}", "lm.judge_model=secret",
                         f"lm.judge_api_key_env={KEY_ENV}"))
        requests, headers = list(srv.requests), list(srv.headers_seen)
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["store"]["answered"] == 20
    # one request per query, each with the key from the environment and the task's question
    assert len(requests) == 20 and {r["model"] for r in requests} == {"secret"}
    assert {h.get("Authorization") for h in headers} == {f"Bearer {SECRET}"}
    assert all("Continuation A: " in r["messages"][0]["content"] for r in requests)
    with FeedbackStore.open(run) as store:
        queries = store.records.get_queries()
        judged = store.records.answers_of("judge:secret", [q.query_id for q in queries])
        segs = store.records.get_text_segments([i for q in queries
                                                for i in (q.left_id, q.right_id)])
        assert {p.teacher_id for p in store.records.preferences()} == {"judge:secret"}
    assert len(judged) == 20
    # the logged judge-vs-gold agreement is the agreement of the stored answers with the
    # gold oracle's labels of the same queries, round by round
    gold = np.array([[a.gold, b.gold] for a, b in zip(segs[0::2], segs[1::2], strict=True)])
    oracle = GoldTeacher("oracle").label_text(gold).astype(np.int64)
    labels = np.array([int(judged[q.query_id]) for q in queries], dtype=np.int64)
    rounds = np.array([q.round for q in queries])
    rows = [r for r in read_metrics(run) if "feedback/round" in r]
    assert len(rows) == 2
    for r, row in enumerate(rows):
        expected = judge_agreement(labels[rounds == r], oracle[rounds == r])
        assert row["feedback/judge_gold_agreement"] == pytest.approx(expected["agreement"])
        assert 0 <= row["feedback/judge_gold_agreement"] <= 1
        assert "feedback/judge_gold_kappa" in row
