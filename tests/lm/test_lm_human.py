"""People answer a language-model run's text queries in the annotation web app, end to end
without a browser (``teacher.preset=human``).

A simulated person labels through the real web app that ``rewardlab train`` serves (uvicorn on
a free loopback port, HTTP with a bearer token): it is handed a prompt and two completions and
prefers the completion with the higher gold score (the store's), or the lower one (a contrary
person, whose answers must win over the scripted pre-labels in mixed mode). Other tests kill the
trainer while it waits for people and resume it, and let a round time out.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("trl")
pytest.importorskip("vaderSentiment")

from rewardlab.cli.main import main  # noqa: E402
from rewardlab.diagnostics.metrics import read_metrics  # noqa: E402
from rewardlab.store import FeedbackStore  # noqa: E402
from rewardlab.types import Label  # noqa: E402
from tests.algorithms.test_human_e2e import (  # noqa: E402
    Person,
    _annotator,
    _trainer,
    _wait_for_people,
)
from tests.lm.test_lm_loop import TINY_RUN, answers, argv, evals  # noqa: E402

pytestmark = pytest.mark.e2e

#: People answer (through the app on a free port); a round still unanswered after 10 minutes
#: is answered by the oracle (so a broken test fails on its assertions instead of hanging).
HUMAN = ["teacher.preset=human", "human.port=0", "human.poll_s=0.05",
         "human.on_timeout=scripted", "human.timeout_s=600", "human.annotators=[ada]"]


def text_label(left_gold: float, right_gold: float, contrary: bool = False) -> str:
    """The answer of a person who likes the higher gold score (a contrary one: the lower)."""
    if left_gold == right_gold:
        return "equal"
    return "left" if (left_gold > right_gold) != contrary else "right"


class TextPerson(Person):
    """Labels every text query it is handed through the HTTP API by the completions' gold.

    Attributes:
        answers: ``{query_id: label}`` given; suggestions: ``{query_id: suggestion}`` shown.
    """

    def __init__(self, run_dir: Path, token: str, contrary: bool = False) -> None:
        super().__init__(run_dir, token, contrary)
        self.suggestions: dict[int, str | None] = {}

    def choose(self, query: dict, store: FeedbackStore) -> str:
        """The label by the completions' gold scores, after checking the page was handed the
        prompt and both completions as stored; the suggestion shown is kept."""
        left, right = store.records.get_text_segments(
            [query["left"]["segment_id"], query["right"]["segment_id"]])
        assert query["kind"] == "text" and query["prompt"] == left.prompt == right.prompt
        assert (query["left"]["completion"], query["right"]["completion"]) == (
            left.completion, right.completion)
        self.suggestions[query["query_id"]] = query.get("suggestion")
        return text_label(left.gold, right.gold, self.contrary)


def lm_human(base: Path, algorithm: str, *extra: str) -> list[str]:
    """``--set`` overrides of a tiny language-model run taught by people."""
    return [f"algorithm={algorithm}", f"lm.base_model={base}", *TINY_RUN, *HUMAN, *extra]


def test_a_person_answers_a_grpo_run_in_the_web_app(tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    person = TextPerson(run, _annotator(run))
    person.start()
    try:
        assert main(argv(run, tiny_base_model_dir, "grpo", *HUMAN)) == 0
    finally:
        person.stop.set()
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        assert store.summary.counts()["pending"] == 0
    # every label is the person's, as given through the app (round 1 was asked during training)
    assert len(prefs) == 20 and {p.teacher_id for p in prefs} == {"ada"}
    assert {p.query_id: p.label.name.lower() for p in prefs} == person.answers
    rounds = [r for r in read_metrics(run) if "feedback/people_answered" in r]
    assert [r["step"] for r in rounds] == [0, 4]
    assert [r["feedback/people_answered"] for r in rounds] == [10, 10]
    assert all(r["feedback/timed_out"] == 0 for r in rounds)
    assert rounds[-1]["time/human_wait_s"] > 0
    assert all("reward_model/heldout_accuracy" in r for r in rounds)  # fit on their labels
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert summary["feedback"]["answers_by_teacher"] == {"ada": 20}
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["track"] == "lm"
    assert status["app_url"].startswith("http://127.0.0.1:")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_trainer_killed_while_waiting_resumes_with_every_answer(tiny_base_model_dir,
                                                                  tmp_path):
    """Round 0 answered, round 1 (step 4, inside GRPO training) answered 5 of 10, SIGKILL;
    the resumed run keeps the 15 answers and waits only for the other 5."""
    run = tmp_path / "run"
    token = _annotator(run)
    proc = _trainer(run, lm_human(tiny_base_model_dir, "grpo"))
    given: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 540
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the trainer never waited for round 1"
            try:
                status = json.loads((run / "status.json").read_text())
            except (OSError, ValueError):
                status = {}
            if status.get("state") != "waiting":
                time.sleep(0.1)
                continue
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=status["app_url"], headers=headers, timeout=30) as client:
                # round 0: every query; round 1: 5 of its 10
                for _ in range(10 if status["round"] == 0 else 5):
                    q = client.get("/api/next").json()
                    assert q["round"] == status["round"]
                    resp = client.post("/api/preferences",
                                       json={"query_id": q["query_id"], "label": "equal"})
                    assert resp.status_code == 201, resp.text
                    given[q["query_id"]] = "equal"
            if status["round"] == 1:
                break
            while json.loads((run / "status.json").read_text()).get("round") == 0:
                time.sleep(0.05)  # until the trainer has moved past round 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with FeedbackStore.open(run) as store:
        counts = store.summary.counts()
    assert counts["queries"] == 20 and counts["preferences"] == 15 and counts["pending"] == 5
    person = TextPerson(run, token)
    person.start()
    try:
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    finally:
        person.stop.set()
    after = answers(run)
    assert len(after) == 20 and {t for _, t, _ in after} == {"ada"}
    assert all(label == Label.EQUAL.name for q, _, label in after if q in given)  # kept
    assert len(person.answers) == 5 and set(person.answers).isdisjoint(given)
    with FeedbackStore.open(run) as store:
        assert sorted({q.round for q in store.records.get_queries()}) == [0, 1]
    assert [r["step"] for r in evals(run)] == [0, 3, 6]  # each evaluation logged once
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_mixed_mode_people_override_the_scripted_prelabels_for_dpo(tiny_base_model_dir,
                                                                    tmp_path):
    run = tmp_path / "run"
    person = TextPerson(run, _annotator(run), contrary=True)
    person.start()
    try:
        assert main(argv(run, tiny_base_model_dir, "dpo", *HUMAN, "human.mixed=true")) == 0
    finally:
        person.stop.set()
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        qids = sorted(person.answers)
        used = dict(store.records.used_answers(qids, fallback_teachers=["oracle"]))
        oracle = store.records.answers_of("oracle", qids)
    assert {p.teacher_id for p in prefs} == {"ada", "oracle"} and len(prefs) == 40
    # the page suggested the oracle's pre-label (none for a query handed out between its
    # storing and its pre-label: the two are separate commits); training uses the contrary
    # person's answers
    shown = {q: s for q, s in person.suggestions.items() if s is not None}
    assert shown and shown == {q: oracle[q].name.lower() for q in shown}
    assert used == {q: Label.parse(a) for q, a in person.answers.items()}
    # the reward model is fit on one label per query (the person's), not on both answers
    rounds = [r for r in read_metrics(run) if "feedback/round" in r]
    assert [r["reward_model/labels"] for r in rounds] == [10, 20]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6


def test_an_unanswered_round_times_out_to_the_scripted_teacher(tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    overrides = [*HUMAN, "human.timeout_s=0.3", "human.serve=false", "human.annotators=[]"]
    assert main(argv(run, tiny_base_model_dir, "bon", *overrides)) == 0
    rounds = [r for r in read_metrics(run) if "feedback/timed_out" in r]
    assert [r["feedback/timed_out"] for r in rounds] == [1, 1]
    assert [r["feedback/scripted_on_timeout"] for r in rounds] == [10, 10]
    assert [r["feedback/people_answered"] for r in rounds] == [0, 0]
    assert {t for _, t, _ in answers(run)} == {"oracle"} and len(answers(run)) == 20
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_ctrl_c_while_waiting_for_people_stops_the_run(tiny_base_model_dir, tmp_path):
    """The wait for people is a safe point: Ctrl-C there stops the run (exit 130, ``status:
    stopped``) with the round's queries kept."""
    run = tmp_path / "run"
    _annotator(run)
    proc = _trainer(run, lm_human(tiny_base_model_dir, "bon", "human.on_timeout=wait"))
    try:
        _wait_for_people(proc, run)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, proc.stderr.read().decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["interrupted"]
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["queries"] == 10
