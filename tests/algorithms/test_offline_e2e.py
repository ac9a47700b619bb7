"""End-to-end tests of the offline methods through the CLI's ``main(argv)``: IQL and TD3+BC on
a learned (MLP ensemble or Preference Transformer) or the true reward, and CPL on the labels,
each on a small generated Pendulum-v1 dataset, leaving metrics, a summary and a report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rewardlab.algorithms.offline.loop_state import X_AXIS
from rewardlab.cli.main import main
from rewardlab.data.offline import load_offline_dataset
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.store.store import FeedbackStore
from tests.helpers import PENDULUM_DATASET, pendulum_replay_dataset

pytestmark = pytest.mark.e2e

UPDATES = 100


def offline_overrides(algorithm: str, *extra: str, updates: int = UPDATES) -> list[str]:
    """Overrides that train an offline method in seconds on one core (tiny nets, 40 queries)."""
    return [
        f"algorithm={algorithm}", f"dataset={PENDULUM_DATASET}", f"offline.updates={updates}",
        f"offline.eval_every={updates // 2}", f"offline.checkpoint_every={updates // 2}",
        "feedback.total_budget=40", "feedback.queries_per_round=20", "feedback.segment_len=25",
        "reward_model.hidden_sizes=[32, 32]", "iql.hidden_sizes=[32, 32]",
        "td3bc.hidden_sizes=[32, 32]", "cpl.hidden_sizes=[32, 32]", "cpl.batch_size=16",
        f"cpl.bc_steps={updates // 4}", "cpl.warmup_steps=20", "eval.episodes=2",
        "progress_bar=false", "torch_threads=1", *extra,
    ]


def train(run: Path, overrides: list[str]) -> int:
    argv = ["train", "--run-dir", str(run)]
    for o in overrides:
        argv += ["--set", o]
    return main(argv)


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("minari")
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        pendulum_replay_dataset(episodes=10)
        yield root


CASES = {
    "iql-mlp": offline_overrides("iql"),
    "td3bc-mlp": offline_overrides("td3bc"),
    "iql-transformer": offline_overrides(
        "iql", "offline.reward_model=transformer", "feedback.method=entropy",
        "preference_transformer.embd_dim=16", "preference_transformer.pref_attn_dim=16",
        "preference_transformer.n_head=2", "preference_transformer.epochs=3",
        "preference_transformer.batch_size=32"),
    "td3bc-true": offline_overrides("td3bc", "offline.reward=true"),
    "cpl": offline_overrides("cpl"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_offline_run_leaves_metrics_summary_and_report(minari_root, tmp_path, capsys, case):
    run = tmp_path / case
    assert train(run, CASES[case]) == 0
    algorithm = CASES[case][0].split("=")[1]
    learned = case.endswith(("mlp", "transformer"))
    labels = case != "td3bc-true"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "gold_vs_proxy.png",
                 "checkpoints/latest/state.json", f"checkpoints/latest/{algorithm}.safetensors"):
        assert (run / name).exists(), name
    rows = read_metrics(run)
    evals = [r for r in rows if r.get("eval/gold_return") is not None]
    assert [r["step"] for r in evals] == [0, UPDATES // 2, UPDATES]  # against updates
    assert all(np.isfinite(r["eval/normalized_score"]) for r in evals)
    assert all((r["eval/proxy_return"] is not None) == learned for r in evals)
    assert {"eval/random_return", "eval/do_nothing_return", "eval/dataset_return"} <= set(
        evals[0])
    assert any(k.startswith("train/") for r in rows for k in r)
    rounds = [r for r in rows if r.get("feedback/round") is not None]
    assert [r["feedback/round"] for r in rounds] == ([1.0, 2.0] if labels else [])
    assert all(r["step"] == 0 for r in rounds)  # every round before the first update
    if learned:
        last = rounds[-1]
        for key in ("reward_model/heldout_accuracy", "reward_model/heldout_ece",
                    "reward_model/random_pair_accuracy"):
            assert key in last, key
        assert last["reward_model/random_pair_accuracy"] > 0.6
    # each (update, round, key) once
    seen = Counter((r["step"], r.get("feedback/round"), k) for r in rows for k in r
                   if k != "step")
    assert [k for k, n in seen.items() if n > 1] == []
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == UPDATES and summary["x_axis"] == X_AXIS
    assert summary["dataset"] == PENDULUM_DATASET and summary["env"] == "Pendulum-v1"
    assert summary["dataset_fingerprint"] == load_offline_dataset(PENDULUM_DATASET).fingerprint()
    assert summary["store"]["answered"] == (40 if labels else 0)
    capsys.readouterr()
    assert main(["report", str(run), "--html"]) == 0
    out = " ".join(capsys.readouterr().err.split())
    assert "update" in out and "score" in out and f"{UPDATES} updates" in out
    page = (run / "report.html").read_text()
    assert "gradient updates" in page and "normalised score" in page
    assert "Over-optimisation curve" not in page


def test_labels_keep_dataset_provenance(minari_root, tmp_path):
    run = tmp_path / "run"
    assert train(run, offline_overrides("iql", updates=4)) == 0
    with FeedbackStore.open(run) as store:
        queries = store.records.get_queries()
        segments = store.records.get_segments([q.left_id for q in queries])
    assert len(queries) == 40 and {q.round for q in queries} == {0, 1}
    assert {s.dataset_id for s in segments} == {PENDULUM_DATASET}
    assert all(s.env_id == "Pendulum-v1" for s in segments)


def test_same_seed_gives_same_result(minari_root, tmp_path):
    overrides = offline_overrides("td3bc", updates=40)
    assert train(tmp_path / "a", overrides) == 0
    assert train(tmp_path / "b", overrides) == 0

    def evals(run):
        return [(r["step"], r["eval/gold_return"], r["eval/proxy_return"])
                for r in read_metrics(run) if "eval/gold_return" in r]

    assert evals(tmp_path / "a") == evals(tmp_path / "b")
    out = tmp_path / "compare.html"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.exists()


def test_resume_with_more_updates_continues(minari_root, tmp_path):
    run = tmp_path / "run"
    assert train(run, offline_overrides("iql", updates=40)) == 0
    assert main(["train", "--resume", str(run), "--set", "offline.updates=80"]) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "eval/gold_return" in r] == [0, 20, 40, 60, 80]
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["queries"] == 40  # labels reused, none asked again


def test_people_path_labels_the_dataset(minari_root, tmp_path):
    """teacher=human goes through the web app's wait; nobody answers here, so after the
    timeout the scripted teacher answers each round (human.on_timeout=scripted)."""
    run = tmp_path / "run"
    assert train(run, offline_overrides(
        "iql", "teacher=human", "human.serve=false", "human.on_timeout=scripted",
        "human.timeout_s=0.5", "human.poll_s=0.1", updates=4)) == 0
    rows = [r for r in read_metrics(run) if r.get("feedback/round") is not None]
    assert [r["feedback/timed_out"] for r in rows] == [1.0, 1.0]
    assert [r["feedback/scripted_on_timeout"] for r in rows] == [20.0, 20.0]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["asked"] == 40
