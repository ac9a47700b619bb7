"""An offline run stopped by Ctrl-C, or SIGKILLed at any moment, resumes with every label kept
and none asked twice; from a checkpoint it continues exactly as an uninterrupted run."""

from __future__ import annotations

import json
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
from tests.algorithms.test_offline_e2e import offline_overrides
from tests.helpers import pendulum_replay_dataset

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UPDATES = 120  # evaluations and checkpoints every 60 updates


def _argv(run: Path) -> list[str]:
    argv = ["train", "--run-dir", str(run)]
    for o in offline_overrides("iql", updates=UPDATES):
        argv += ["--set", o]
    return argv


def _evals(rows: list[dict]) -> list[tuple]:
    return [(r["step"], r["eval/gold_return"], r["eval/proxy_return"]) for r in rows
            if r.get("eval/gold_return") is not None]


def _labels(run: Path) -> dict[int, str]:
    if not (run / "feedback.db").exists():
        return {}
    with FeedbackStore.open(run) as store:
        return {p.query_id: p.label.name for p in store.records.preferences()}


def _stop(run: Path, moment: str, nth: int, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
           "MINARI_DATASETS_PATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "tests.algorithms.offline_killer", moment, str(nth), "--",
         *_argv(run)], env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("minari")
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        pendulum_replay_dataset(episodes=10)
        yield root


@pytest.fixture(scope="module")
def uninterrupted(minari_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    assert main(_argv(run)) == 0
    return read_metrics(run)


def _check_resumed(run: Path, before: dict[int, str], uninterrupted: list[dict],
                   exact: bool) -> None:
    with FeedbackStore.open(run) as store:
        prefs = store.records.preferences()
        queries = store.records.get_queries()
    after = {p.query_id: p.label.name for p in prefs}
    # every label given before the stop is kept, as it was; none is given twice
    assert all(after.get(q) == label for q, label in before.items())
    assert len({(p.query_id, p.teacher_id) for p in prefs}) == len(prefs) == 40
    assert Counter(q.round for q in queries) == {0: 20, 1: 20}
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "eval/gold_return" in r] == [0, 60, 120]
    if exact:  # the same numbers as without the stop
        assert _evals(rows) == _evals(uninterrupted)
    seen = Counter((r["step"], r.get("feedback/round"), k) for r in rows for k in r
                   if k != "step")
    assert [k for k, n in seen.items() if n > 1] == []
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps)


def test_ctrl_c_saves_and_resume_finishes_exactly(minari_root, tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = _stop(run, "sigint_during_training", 80, minari_root)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted at update 80: checkpoint saved" in " ".join(proc.stderr.split())
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    assert state["step"] == 80 and state["labelled"] and state["relabelled"]
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True
    before = _labels(run)
    assert main(["train", "--resume", str(run)]) == 0
    _check_resumed(run, before, uninterrupted, exact=True)


@pytest.mark.parametrize(("moment", "nth", "exact"), [
    ("during_round", 1, False),  # before any checkpoint: restarts, reusing the stored round
    ("during_round", 2, True),
    ("writing_checkpoint", 3, True),
    ("during_evaluation", 2, True),
    ("during_training", 100, True),
])
def test_sigkill_then_resume_keeps_labels(minari_root, tmp_path, uninterrupted, moment, nth,
                                          exact):
    run = tmp_path / "run"
    proc = _stop(run, moment, nth, minari_root)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    before = _labels(run)
    assert main(["train", "--resume", str(run)]) == 0
    _check_resumed(run, before, uninterrupted, exact)
