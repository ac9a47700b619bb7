"""End-to-end tests of training with people as the teacher (``teacher=human``).

A simulated person labels through the real web app (uvicorn on a free loopback port, HTTP
with a bearer token), answering like a noiseless oracle by reading the segments' true rewards
from the store; other tests leave rounds unanswered to exercise the timeout policies, mixed
mode and a trainer killed while it waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from rewardlab.cli.main import main
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.store import FeedbackStore
from rewardlab.types import Label
from tests.helpers import fast_overrides

pytestmark = pytest.mark.e2e

#: Two rounds of 20 queries, the first after pre-training (500 steps).
HUMAN = [*fast_overrides("pebble", 1500), "feedback.total_budget=40", "teacher=human",
         "human.port=0", "human.poll_s=0.05", "human.on_timeout=scripted", "human.timeout_s=120"]


def _argv(run_dir: Path, overrides: list[str]) -> list[str]:
    argv = ["train", "--run-dir", str(run_dir)]
    for o in overrides:
        argv += ["--set", o]
    return argv


class Person(threading.Thread):
    """Labels every query it is handed through the HTTP API, like an oracle (or its opposite)."""

    def __init__(self, run_dir: Path, token: str, contrary: bool = False) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.token, self.contrary = run_dir, token, contrary
        self.answers: dict[int, str] = {}
        self.stop = threading.Event()

    def _url(self) -> str | None:
        try:
            return json.loads((self.run_dir / "status.json").read_text())["app_url"]
        except (OSError, ValueError, KeyError):
            return None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with FeedbackStore.open(self.run_dir) as store:
            while not self.stop.is_set():
                url = self._url()
                if url is None:
                    time.sleep(0.05)
                    continue
                try:
                    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                        self._label(client, store)
                except httpx.TransportError:  # not served (yet, or any more): look again
                    time.sleep(0.1)

    def _label(self, client: httpx.Client, store: FeedbackStore) -> None:
        while not self.stop.is_set():
            resp = client.get("/api/next")
            if resp.status_code == 204:
                time.sleep(0.05)
                continue
            q = resp.json()
            label = self.choose(q, store)
            resp = client.post("/api/preferences", json={"query_id": q["query_id"], "label": label})
            assert resp.status_code == 201, resp.text
            self.answers[q["query_id"]] = label

    def choose(self, query: dict, store: FeedbackStore) -> str:
        """The label for a query the app handed out (``/api/next``'s JSON): the segment with
        the higher gold return (a contrary person: the lower)."""
        left, right = store.records.get_segments(
            [query["left"]["segment_id"], query["right"]["segment_id"]]
        )
        better_left = left.true_rewards.sum() > right.true_rewards.sum()
        return "left" if better_left != self.contrary else "right"


def _annotator(run_dir: Path, name: str = "ada") -> str:
    with FeedbackStore.open(run_dir) as store:
        return store.annotation.add_annotator(name)[1]


def _trainer(run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """``rewardlab train`` in a subprocess running this checkout's code (not an installed copy)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    return subprocess.Popen(
        [sys.executable, "-m", "rewardlab.cli.main", *_argv(run_dir, overrides)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _wait_for_people(proc: subprocess.Popen, run_dir: Path, timeout_s: float = 240) -> dict:
    """Poll ``status.json`` until the trainer waits for people; returns that status."""
    deadline = time.monotonic() + timeout_s
    status: dict = {}
    while status.get("state") != "waiting":
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the trainer never waited for people"
        time.sleep(0.1)
        try:
            status = json.loads((run_dir / "status.json").read_text())
        except (OSError, ValueError):
            pass
    return status


def test_a_person_teaches_through_the_web_app(tmp_path, capsys):
    run = tmp_path / "run"
    person = Person(run, _annotator(run))
    person.start()
    assert main(_argv(run, [*HUMAN, "human.annotators=[ada, bob]"])) == 0
    person.stop.set()
    err = capsys.readouterr().err
    assert "annotator bob: http://127.0.0.1:" in err and "?token=" in err  # a new one's link
    assert "annotator ada:" not in err  # existing annotators keep their token
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        assert store.summary.counts()["pending"] == 0
    assert len(prefs) == 40 and {p.teacher_id for p in prefs} == {"ada"}
    assert {p.query_id: p.label.name.lower() for p in prefs} == person.answers
    rounds = [r for r in read_metrics(run) if "feedback/people_answered" in r]
    assert [r["feedback/people_answered"] for r in rounds] == [20, 20]
    assert all(r["feedback/timed_out"] == 0 for r in rounds)  # the person answered in time
    assert rounds[-1]["time/human_wait_s"] > 0
    assert rounds[-1]["reward_model/heldout_accuracy"] >= 0  # trained on the person's labels
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert "ada 40 (person)" in err


@pytest.mark.parametrize("policy", ["skip", "scripted"])
def test_an_unanswered_round_times_out(tmp_path, policy):
    run = tmp_path / "run"
    overrides = [*HUMAN, f"human.on_timeout={policy}", "human.timeout_s=0.3",
                 "human.serve=false", "human.annotators=[]"]
    assert main(_argv(run, overrides)) == 0
    with FeedbackStore.open(run) as store:
        counts = store.summary.counts()
        teachers = {p.teacher_id for p in store.records.preferences()}
    rounds = [r for r in read_metrics(run) if "feedback/timed_out" in r]
    assert [r["feedback/timed_out"] for r in rounds] == [1, 1]
    summary = json.loads((run / "summary.json").read_text())
    if policy == "skip":  # nobody answered: nothing stored, no reward learnt, training went on
        assert counts["pending"] == 40 and counts["preferences"] == 0
        # strict JSON: no proxy return (NaN) is written as null
        assert summary["steps"] == 1500 and summary["final_eval"]["eval/proxy_return"] is None
    else:
        assert counts["pending"] == 0 and teachers == {"oracle"}
        assert [r["feedback/scripted_on_timeout"] for r in rounds] == [20, 20]
        assert np.isfinite(summary["final_eval"]["eval/proxy_return"])


def test_mixed_mode_people_override_the_scripted_teacher(tmp_path):
    run = tmp_path / "run"
    person = Person(run, _annotator(run), contrary=True)
    person.start()
    overrides = [*HUMAN, "human.mixed=true", "human.annotators=[ada]"]
    assert main(_argv(run, overrides)) == 0
    person.stop.set()
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        data = store.records.training_arrays(fallback_teachers=["oracle"])
        qids = sorted(person.answers)
        used = dict(store.records.used_answers(qids, fallback_teachers=["oracle"]))
    assert {p.teacher_id for p in prefs} == {"ada", "oracle"} and len(prefs) == 80
    assert len(person.answers) == 40 and data["labels"].size == 40
    # the contrary person is what training uses, wherever they and the oracle disagree
    assert used == {q: Label.parse(a) for q, a in person.answers.items()}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_trainer_killed_while_waiting_resumes_the_round(tmp_path):
    run = tmp_path / "run"
    token = _annotator(run)
    overrides = [*HUMAN, "human.annotators=[ada]", "checkpoint_every=500",
                 "feedback.first_round_at=900"]
    proc = _trainer(run, overrides)
    try:
        status = _wait_for_people(proc, run)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=status["app_url"], headers=headers) as client:
            given = []
            for _ in range(5):  # a person answers 5 of the round's 20 queries
                q = client.get("/api/next").json()
                resp = client.post("/api/preferences",
                                   json={"query_id": q["query_id"], "label": "equal"})
                assert resp.status_code == 201
                given.append(q["query_id"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with FeedbackStore.open(run) as store:
        assert store.summary.counts() == {"segments": 40, "queries": 20, "preferences": 5,
                                  "answered": 5, "skipped": 0, "pending": 15}
    person = Person(run, token)
    person.start()
    assert main(["train", "--resume", str(run), "--set", "human.port=0"]) == 0
    person.stop.set()
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        rounds = sorted({q.round for q in store.records.get_queries()})
    # the 5 answers given before the kill are kept; the round was finished, not asked again
    assert rounds == [0, 1] and len(prefs) == 40 and {p.teacher_id for p in prefs} == {"ada"}
    assert all(p.label == Label.EQUAL for p in prefs if p.query_id in given)
    assert set(person.answers).isdisjoint(given)


def test_ctrl_c_while_waiting_for_people_stops_with_a_checkpoint(tmp_path):
    """The wait for people is a safe point: Ctrl-C there stops the run (exit 130) with its
    round's queries kept, and ``status.json`` says it stopped."""
    run = tmp_path / "run"
    _annotator(run)
    overrides = [*HUMAN, "human.annotators=[ada]", "human.on_timeout=wait",
                 "feedback.first_round_at=900"]
    proc = _trainer(run, overrides)
    try:
        _wait_for_people(proc, run)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
    assert json.loads((run / "summary.json").read_text())["interrupted"]
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["queries"] == 20
