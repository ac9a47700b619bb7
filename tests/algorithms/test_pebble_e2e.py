"""End-to-end tests of PEBBLE through the CLI's ``main(argv)`` on the PointGoal toy task."""

import json

import gymnasium as gym
import numpy as np
import pytest
from safetensors.torch import load_file

from rewardlab.cli.main import main
from rewardlab.diagnostics.evaluation import rollout_episodes
from rewardlab.diagnostics.metrics import read_metrics
from rewardlab.store.store import FeedbackStore
from tests.helpers import POINT_GOAL, fast_overrides, permutation_p_value

pytestmark = pytest.mark.e2e


def _train(run_dir, overrides):
    argv = ["train", "--run-dir", str(run_dir)]
    for o in overrides:
        argv += ["--set", o]
    return main(argv)


def _gold_evals(run):
    return [(r["step"], r["eval/gold_return"]) for r in read_metrics(run)
            if "eval/gold_return" in r]


def _same_reward_model(run_a, run_b, *must_hold):
    """Whether two runs' final reward-model checkpoints hold the same tensors (and
    ``must_hold``)."""
    def weights(run):
        return load_file(str(run / "checkpoints" / "latest" / "reward_model.safetensors"))

    wa, wb = weights(run_a), weights(run_b)
    return (all(k in wa for k in must_hold) and wa.keys() == wb.keys()
            and all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pebble") / "run"
    assert _train(run_dir, fast_overrides("pebble", 4000)) == 0
    return run_dir


def test_run_directory_holds_every_artifact(trained_run):
    for name in ("config.yaml", "feedback.db", "metrics.jsonl", "gold_vs_proxy.png",
                 "summary.json", "checkpoints/latest/agent.safetensors",
                 "checkpoints/latest/reward_model.safetensors",
                 "checkpoints/latest/replay_buffer.npz", "checkpoints/latest/state.json"):
        assert (trained_run / name).exists(), name
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    load_file(str(trained_run / "checkpoints/latest/agent.safetensors"))
    with FeedbackStore.open(trained_run) as store:
        counts = store.summary.counts()
    assert counts["queries"] == 100 and counts["answered"] == 100


def test_metrics_are_namespaced_and_hold_gold_and_proxy(trained_run):
    rows = read_metrics(trained_run)
    evals = [r for r in rows if "eval/gold_return" in r]
    assert len(evals) >= 3
    assert all(r["eval/proxy_return"] is not None for r in evals[1:])
    assert all("/" in k for r in rows for k in r if k != "step")
    assert any("reward_model/heldout_accuracy" in r for r in rows)
    rand = [r["reward_model/random_pair_accuracy"] for r in rows
            if r.get("reward_model/random_pair_accuracy") is not None]
    assert len(rand) == 5 and all(0.0 <= a <= 1.0 for a in rand)  # one per round
    assert any("reward_model/disagreement_on_policy" in r for r in evals)
    # SB3's own train/ and rollout/ values reach metrics.jsonl; Monitor returns are gold
    assert any("train/actor_loss" in r for r in rows)
    assert any("rollout/gold_return_mean" in r for r in rows)
    assert not any("rollout/ep_rew_mean" in r for r in rows)


@pytest.mark.learning
def test_trained_policy_beats_random_policy(trained_run):
    """Permutation test: the PEBBLE policy's true return beats a random policy's (p < 0.01)."""
    from stable_baselines3 import SAC

    from rewardlab.algorithms.checkpoint import load_sb3

    env = gym.make(POINT_GOAL)
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [64, 64]}, device="cpu")
    load_sb3(model, trained_run / "checkpoints/latest")
    trained = rollout_episodes(env, lambda o: model.predict(o, deterministic=True)[0], 20, 1000)
    rng = np.random.default_rng(0)
    random = rollout_episodes(env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), 20, 1000)
    a = np.array([e["rewards"].sum() for e in trained])
    b = np.array([e["rewards"].sum() for e in random])
    p = permutation_p_value(a, b, np.random.default_rng(1))
    assert p < 0.01, (a.mean(), b.mean(), p)


def test_same_seed_gives_same_result(tmp_path):
    overrides = fast_overrides("pebble", 1500)
    assert _train(tmp_path / "a", overrides) == 0
    assert _train(tmp_path / "b", overrides) == 0

    def evals(run):
        return [(r["step"], r["eval/gold_return"], r["eval/proxy_return"])
                for r in read_metrics(run) if "eval/gold_return" in r]

    assert evals(tmp_path / "a") == evals(tmp_path / "b")
    with FeedbackStore.open(tmp_path / "a") as sa, FeedbackStore.open(tmp_path / "b") as sb:
        np.testing.assert_array_equal(
            sa.records.labelled_pairs()[2], sb.records.labelled_pairs()[2]
        )


def test_resume_continues_where_it_stopped(tmp_path):
    run = tmp_path / "r"
    assert _train(run, fast_overrides("pebble", 1500)) == 0
    with FeedbackStore.open(run) as store:
        labels_before = store.summary.counts()["answered"]
    code = main(["train", "--resume", str(run), "--set", "total_steps=2500"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2500
    with FeedbackStore.open(run) as store:
        assert store.summary.counts()["answered"] >= labels_before
    steps = [r["step"] for r in read_metrics(run) if "eval/gold_return" in r]
    assert steps == sorted(steps) and steps[-1] == 2500


def test_existing_run_dir_is_refused(trained_run, capsys):
    assert _train(trained_run, fast_overrides("pebble", 100)) == 2
    assert "--resume" in capsys.readouterr().err


def test_report_prints_a_table(trained_run, capsys):
    assert main(["report", str(trained_run)]) == 0
    err = capsys.readouterr().err
    assert "gold return" in err and "proxy return" in err
    assert "feedback: 100 queries asked, 100 answered" in err
    assert "answers: oracle 100" in err


def test_export_writes_every_preference(trained_run, tmp_path, capsys):
    out = tmp_path / "prefs.jsonl"
    assert main(["export", str(trained_run), str(out)]) == 0
    assert len(out.read_text().splitlines()) == 100
    assert main(["export", str(trained_run), str(tmp_path / "prefs.csv")]) == 2
    assert main(["export", str(tmp_path), str(out)]) == 2


def test_surf_run_logs_pseudo_labels_and_repeats_with_its_seed(tmp_path):
    """SURF (semi-supervised labels and temporal cropping) through the whole loop: every fit
    after the first round reports the share of pseudo-labelled pairs, and the same seed gives
    the same labels, evaluations and reward model."""
    overrides = [*fast_overrides("pebble", 1500), "reward_model.unlabeled_ratio=2",
                 "reward_model.crop_steps=3", "reward_model.pseudo_label_threshold=0.9"]
    assert _train(tmp_path / "a", overrides) == 0
    assert _train(tmp_path / "b", overrides) == 0
    rows = [r for r in read_metrics(tmp_path / "a") if "reward_model/train_accuracy" in r]
    assert rows and all(0.0 <= r["reward_model/pseudo_labeled_fraction"] <= 1.0 for r in rows)
    assert _gold_evals(tmp_path / "a") == _gold_evals(tmp_path / "b")
    assert _same_reward_model(tmp_path / "a", tmp_path / "b")


def test_reed_run_logs_its_consistency_fit_and_repeats_with_its_seed(tmp_path):
    """REED (dynamics-aware reward) through the whole loop: every round's fit reports the
    self-future-consistency loss on at most sfc_max_transitions transitions, and the same seed
    gives the same evaluations and reward model (its draws come from the seed and the round
    only, and each fit makes a fresh optimiser, so a resumed run draws the same too)."""
    overrides = [*fast_overrides("pebble", 1500), "reward_model.architecture=reed",
                 "reward_model.sfc_epochs=2", "reward_model.sfc_max_transitions=500"]
    assert _train(tmp_path / "a", overrides) == 0
    assert _train(tmp_path / "b", overrides) == 0
    rows = [r for r in read_metrics(tmp_path / "a") if "reward_model/train_accuracy" in r]
    assert rows and all(np.isfinite(r["reward_model/sfc_loss"]) for r in rows)
    # 500 steps in 50-step episodes hold 490 transitions; by the second round more than 500
    assert [r["reward_model/sfc_transitions"] for r in rows] == [490, 500]
    assert _gold_evals(tmp_path / "a") == _gold_evals(tmp_path / "b")
    assert _same_reward_model(tmp_path / "a", tmp_path / "b", "net.dynamics.next_state.weight")
