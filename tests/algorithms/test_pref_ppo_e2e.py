"""End-to-end tests of preference PPO and of Ctrl-C handling, through the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from rewardlab.cli.main import main
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.store.store import FeedbackStore
from tests.helpers import fast_overrides

pytestmark = pytest.mark.e2e


def test_pref_ppo_trains_and_logs_gold_and_proxy(tmp_path):
    argv = ["train", "--run-dir", str(tmp_path / "ppo")]
    for o in fast_overrides("pref_ppo", 8192):
        argv += ["--set", o]
    assert main(argv) == 0
    rows = read_metrics(tmp_path / "ppo")
    evals = [r for r in rows if "eval/gold_return" in r]
    assert [r["step"] for r in evals] == [0, 4096, 8192]  # step 0: the untrained policy
    assert evals[0]["eval/random_return"] is not None
    assert evals[0]["eval/do_nothing_return"] is not None
    assert evals[-1]["eval/proxy_return"] is not None
    with FeedbackStore.open(tmp_path / "ppo") as store:
        assert store.summary.counts()["answered"] == 100


def _train_until_the_first_round(run) -> subprocess.Popen:
    """Start a long PEBBLE run in a subprocess; return once its first round is stored."""
    args = [sys.executable, "-m", "rewardlab.cli.main", "train", "--run-dir", str(run)]
    for o in fast_overrides("pebble", 200_000):
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    deadline = time.time() + 300
    while time.time() < deadline:
        if "round 1" in proc.stdout.readline():
            return proc
    proc.kill()
    pytest.fail("no feedback round within 300 s")


def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    run = tmp_path / "r"
    proc = _train_until_the_first_round(run)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        diag = subprocess.run(["py-spy", "dump", "--pid", str(proc.pid)],
                              capture_output=True, text=True)
        ps = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "--ppid", str(proc.pid),
                             "-p", str(proc.pid)], capture_output=True, text=True).stdout
        proc.kill()
        pytest.fail(f"no exit 120 s after SIGINT; stack:\n{diag.stdout}\n{diag.stderr}\n{ps}")
    assert proc.returncode == 130, out
    assert "interrupted" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps"] >= 500
    with FeedbackStore.open(run) as store:
        answered = store.summary.counts()["answered"]
    assert answered >= 20
    steps = summary["steps"]
    assert main(["train", "--resume", str(run), "--set", f"total_steps={steps + 600}"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == steps + 600 and not summary["interrupted"]
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["answered"] >= answered


@pytest.mark.parametrize("how", ["ctrl_c_after_the_pipe_closed", "sigterm"])
def test_piped_run_stopped_by_a_signal_saves_a_checkpoint(tmp_path, how):
    """``rewardlab train 2>&1 | tee log``: Ctrl-C in the terminal ends ``tee`` as well, so the
    run's output pipe is closed when its own SIGINT arrives. SIGTERM stops like Ctrl-C."""
    run = tmp_path / "r"
    proc = _train_until_the_first_round(run)
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.stdout.close()  # tee is gone: every later write hits a broken pipe
        proc.send_signal(signal.SIGINT)
    try:  # keep reading (SIGTERM): a full pipe would block the run's writes
        if how == "sigterm":
            proc.communicate(timeout=120)
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        stack = subprocess.run(["py-spy", "dump", "--pid", str(proc.pid)],
                               capture_output=True, text=True).stdout
        proc.kill()
        pytest.fail(f"no exit 120 s after the signal; stack:\n{stack}")
    assert proc.returncode == 130
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps"] >= 500
    assert (run / "checkpoints/latest/state.json").exists()
    steps = summary["steps"]
    assert main(["train", "--resume", str(run), "--set", f"total_steps={steps + 500}"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == steps + 500


def test_rounds_due_together_are_asked_in_turn_and_log_each_step_once(tmp_path):
    """round_every (512) shorter than a rollout (1024 steps): two rounds fall due at each
    boundary; both are asked before PPO trains on, and no (step, key) is logged twice (rounds,
    the chi-squared regulariser's discriminator rows)."""
    run = tmp_path / "ppo"
    argv = ["train", "--run-dir", str(run)]
    for o in [*fast_overrides("pref_ppo", 4096), "feedback.first_round_at=512",
              "feedback.round_every=512", "feedback.total_budget=100",
              "mitigation.regularizer=chi2_occupancy", "mitigation.reference_samples=200",
              "mitigation.discriminator_steps=5"]:
        argv += ["--set", o]
    assert main(argv) == 0
    rows = read_metrics(run)
    rounds = [(r["step"], r["feedback/round"]) for r in rows if "feedback/round" in r]
    assert rounds == [(1024, 2), (2048, 4), (3072, 5)]  # the last round of each step logged
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["queries"] == 100
    seen = Counter((r["step"], k) for r in rows for k in r if k != "step")
    assert [sk for sk, n in seen.items() if n > 1] == []
