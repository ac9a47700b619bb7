"""``rewardlab train`` for the language-model methods, end to end on the tiny base model:
the run-directory contract, resume after Ctrl-C, and SIGKILL at any moment losing no label
(grpo; dpo, online_dpo and bon during a round and, with an optimizer, during training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("vaderSentiment")

from rewardlab.cli.main import main  # noqa: E402
from rewardlab.diagnostics.metrics import read_metrics  # noqa: E402
from rewardlab.store.store import FeedbackStore  # noqa: E402

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: A run of 6 optimizer steps: evaluations at 0, 3, 6; checkpoints at 3 and 6; round 0 (10
#: queries) at step 0 and round 1 (10 more) at step 4 (dpo and bon: both before training).
TINY_RUN = [
    "lm.train_prompts=32", "lm.eval_prompts=4", "lm.eval_samples_per_prompt=2",
    "lm.max_new_tokens=8", "lm.batch_size=8", "lm.steps=6", "lm.eval_every=3",
    "lm.checkpoint_every=3", "feedback.total_budget=20", "feedback.queries_per_round=10",
    "feedback.round_every=4", "lm.rm_members=2", "lm.rm_epochs=1", "lm.bon_n=[1,2,4]",
]
EVAL_KEYS = {
    "eval/gold_return", "eval/gold_return_std", "eval/proxy_return", "eval/proxy_return_std",
    "eval/samples", "eval/kl", "eval/sqrt_kl", "eval/mean_completion_tokens",
    "reward_model/disagreement_on_policy", "time/elapsed_s",
}


def argv(run: Path, base: Path, algorithm: str, *extra: str) -> list[str]:
    sets = [f"algorithm={algorithm}", f"lm.base_model={base}", *TINY_RUN, *extra]
    return ["train", "--run-dir", str(run), "--no-progress",
            *[a for s in sets for a in ("--set", s)]]


def evals(run: Path) -> list[dict]:
    return [r for r in read_metrics(run) if "eval/gold_return" in r]


def answers(run: Path) -> list[tuple[int, str, str]]:
    with FeedbackStore.open(run) as store:
        return [(p.query_id, p.teacher_id, p.label.name) for p in store.records.preferences()]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "dpo", "online_dpo", "bon"])
def test_each_method_writes_the_contracted_run_dir(algorithm, tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    assert main(argv(run, tiny_base_model_dir, algorithm)) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["track"] == "lm" and summary["algorithm"] == algorithm
    assert summary["task"] == "sentiment" and summary["status"] == "finished"
    assert summary["steps"] == (3 if algorithm == "bon" else 6)
    assert summary["store"]["answered"] == 20 and "overoptimization" in summary
    assert summary["wall_time_s"] > 0 and EVAL_KEYS <= set(summary["final_eval"])
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    rows = evals(run)
    assert [r["step"] for r in rows] == ([0, 1, 2] if algorithm == "bon" else [0, 3, 6])
    for r in rows:
        assert EVAL_KEYS <= set(r) and r["eval/samples"] == 8
        assert -1 <= r["eval/gold_return"] <= 1
        assert r["eval/sqrt_kl"] == pytest.approx(max(r["eval/kl"], 0) ** 0.5)
    if algorithm == "bon":
        assert [r["eval/bon_n"] for r in rows] == [1, 2, 4] and rows[0]["eval/kl"] == 0
        # best-of-n never lowers the proxy of the chosen samples (nested draws)
        assert rows[0]["eval/proxy_return"] <= rows[-1]["eval/proxy_return"]
    else:
        assert abs(rows[0]["eval/kl"]) < 1e-3  # the policy is the reference at step 0
        train = [r for r in read_metrics(run) if "train/loss" in r]
        assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    round_rows = [r for r in read_metrics(run) if "feedback/round" in r]
    round_steps = [0, 0] if algorithm in ("dpo", "bon") else [0, 4]
    assert [r["step"] for r in round_rows] == round_steps
    assert round_rows[-1]["feedback/queries_answered"] == 20
    assert "reward_model/fresh_accuracy" in round_rows[1]
    assert all("reward_model/heldout_accuracy" in r for r in round_rows)
    config = (run / "config.yaml").read_text()
    assert f"algorithm: {algorithm}" in config and "\nlm:\n" in config


def test_a_lexicon_judge_answers_and_its_agreement_with_gold_is_logged(tiny_base_model_dir,
                                                                      tmp_path):
    run = tmp_path / "run"
    assert main(argv(run, tiny_base_model_dir, "bon", "lm.judge=lexicon")) == 0
    rounds = [r for r in read_metrics(run) if "feedback/round" in r]
    assert all(0 <= r["feedback/judge_gold_agreement"] <= 1 for r in rounds)
    assert {t for _, t, _ in answers(run)} == {"judge:textblob_polarity"}


def test_gold_reward_asks_no_query(tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    assert main(argv(run, tiny_base_model_dir, "grpo", "lm.reward=gold")) == 0
    rows = evals(run)
    assert all(r["eval/proxy_return"] == r["eval/gold_return"] for r in rows)
    assert json.loads((run / "summary.json").read_text())["store"]["queries"] == 0


def _signal(run: Path, base: Path, moment: str, nth: int,
            algorithm: str = "grpo") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tests.lm.lm_killer", moment, str(nth), "--",
         *argv(run, base, algorithm)], env=env, capture_output=True, text=True, timeout=600)


def _check_resumed(run: Path, before: list[tuple[int, str, str]],
                   algorithm: str = "grpo") -> None:
    after = answers(run)
    assert set(before) <= set(after)  # every label given before is kept, as it was
    assert len({(q, t) for q, t, _ in after}) == len(after) == 20  # none asked twice
    rows = evals(run)
    steps = [0, 1, 2] if algorithm == "bon" else [0, 3, 6]
    assert [r["step"] for r in rows] == steps  # each evaluation logged once
    summary = json.loads((run / "summary.json").read_text())
    # bon counts the n-grid entries evaluated, the others optimizer steps
    assert summary["status"] == "finished" and summary["steps"] == (
        3 if algorithm == "bon" else 6)


def test_ctrl_c_stops_with_a_checkpoint_and_resume_finishes(tiny_base_model_dir, tmp_path):
    run = tmp_path / "run"
    done = _signal(run, tiny_base_model_dir, "sigint_during_training", 5)
    assert done.returncode == 130, done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["steps"] == 5
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    assert state["step"] == 5 and state["trl_checkpoint"] == "trl/checkpoint-5"
    before = answers(run)
    assert len(before) == 20  # round 1 (step 4) was asked before the stop
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _check_resumed(run, before)


@pytest.mark.parametrize(("moment", "nth", "labels_before"), [
    ("during_round", 2, 10),  # round 1's queries stored, unanswered
    ("during_training", 5, 20),  # step 5: resumes from checkpoint-4 (saved after round 1)
])
def test_sigkill_then_resume_keeps_every_label(tiny_base_model_dir, tmp_path, moment, nth,
                                               labels_before):
    run = tmp_path / "run"
    done = _signal(run, tiny_base_model_dir, moment, nth)
    assert done.returncode == -9, done.stderr[-2000:]
    before = answers(run)
    assert len(before) == labels_before
    with FeedbackStore.open(run) as store:
        assert len(store.records.get_queries()) == 20 if moment == "during_round" else True
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _check_resumed(run, before)
    assert Counter(t for _, t, _ in answers(run)) == {"oracle": 20}


@pytest.mark.parametrize(("algorithm", "moment", "nth", "labels_before"), [
    # dpo and bon ask both rounds before training: the 2nd round's queries are stored,
    # unanswered; online_dpo asks round 1 at step 4 of training, from checkpoint-3's policy
    ("dpo", "during_round", 2, 10),
    ("online_dpo", "during_round", 2, 10),
    ("bon", "during_round", 2, 10),
    # killed at step 5: dpo resumes from checkpoint-3, online_dpo from checkpoint-4 (saved
    # after round 1); bon has no optimizer step
    ("dpo", "during_training", 5, 20),
    ("online_dpo", "during_training", 5, 20),
])
def test_sigkill_then_resume_keeps_every_label_for_each_method(
        tiny_base_model_dir, tmp_path, algorithm, moment, nth, labels_before):
    run = tmp_path / "run"
    done = _signal(run, tiny_base_model_dir, moment, nth, algorithm)
    assert done.returncode == -9, done.stderr[-2000:]
    before = answers(run)
    assert len(before) == labels_before
    with FeedbackStore.open(run) as store:
        asked = len(store.records.get_queries())
    assert asked == 20  # the 2nd round's queries were stored before the kill
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _check_resumed(run, before, algorithm)
    assert Counter(t for _, t, _ in answers(run)) == {"oracle": 20}
    rounds = [r for r in read_metrics(run) if "feedback/round" in r]
    assert [r["feedback/round"] for r in rounds] == [1, 2]  # each round logged once
