"""A run SIGKILLed at any moment resumes with every label, no duplicate, and the same schedule
and metric rows as an uninterrupted run of the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rewardlab.cli.main import main
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.store.store import FeedbackStore
from tests.helpers import fast_overrides

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STEPS = 2600  # rounds at 500, 1000, ..., 2500; evaluations at 0, 1000, 2000, 2600


def _argv(run: Path, steps: int = STEPS) -> list[str]:
    argv = ["train", "--run-dir", str(run)]
    for o in fast_overrides("pebble", steps):
        argv += ["--set", o]
    return argv


def _steps_of(rows: list[dict], key: str) -> list[int]:
    return [r["step"] for r in rows if r.get(key) is not None]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    assert main(_argv(run)) == 0
    return read_metrics(run)


@pytest.mark.parametrize("moment, nth", [
    ("before_first_round", 1),
    ("during_round", 2),
    ("writing_checkpoint", 2),
    ("swapping_checkpoint", 2),
    ("during_evaluation", 3),
])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted, moment, nth):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.algorithms.killer", moment, str(nth), "--", *_argv(run)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    before: dict[int, str] = {}
    if (run / "feedback.db").exists():
        with FeedbackStore.open(run) as store:
            before = {p.query_id: p.label.name for p in store.records.preferences()}

    assert main(["train", "--resume", str(run)]) == 0

    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        queries = store.records.get_queries()
        counts = store.summary.counts()
    after = {p.query_id: p.label.name for p in prefs}
    # every label given before the kill is kept, as it was; none is given twice
    assert all(after.get(q) == label for q, label in before.items())
    assert len({(p.query_id, p.teacher_id) for p in prefs}) == len(prefs)
    # the budget is spent exactly, 20 queries per round, rounds 0-4
    assert counts["queries"] == 100 and counts["answered"] == 100
    assert Counter(q.round for q in queries) == {r: 20 for r in range(5)}
    rows = read_metrics(run)
    # the same schedule: rounds and evaluations at the same steps as without the kill
    assert _steps_of(rows, "feedback/round") == _steps_of(uninterrupted, "feedback/round")
    assert _steps_of(rows, "eval/gold_return") == _steps_of(uninterrupted, "eval/gold_return")
    # each (step, key) once
    seen = Counter((r["step"], k) for r in rows for k in r if k != "step")
    assert [sk for sk, n in seen.items() if n > 1] == []
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)


def test_checkpoint_of_another_format_is_refused_by_name(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_argv(run, 600)) == 0
    state = run / "checkpoints/latest/state.json"
    state.write_text(state.read_text().replace('"format_version": 2', '"format_version": 1'))
    assert main(["train", "--resume", str(run)]) == 2
    assert "checkpoint format 1" in capsys.readouterr().err
