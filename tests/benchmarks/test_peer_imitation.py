"""benchmarks/peer_imitation.py's pure parts (schedules, aggregation, JSON shape): no training."""

from __future__ import annotations

import json

import pytest


def _run(side, seed, ret, wall):
    return {"side": side, "env": "Pendulum-v1", "seed": seed, "budget_steps": 100_000,
            "budget_comparisons": 200, "segment_len": 100, "eval_episodes": 20,
            "return_mean": ret, "return_std": 1.0, "episodes": 20, "wall_s": wall,
            "steps": 102_400, "comparisons": 200}


def test_aggregate_takes_medians_per_side_and_judges_the_target(peer):
    runs = [_run("rewardlab", s, r, w) for s, r, w in
            [(2, -300.0, 50.0), (0, -200.0, 40.0), (1, -900.0, 60.0)]]
    runs += [_run("imitation", s, r, w) for s, r, w in
             [(0, -400.0, 70.0), (1, -500.0, 30.0), (2, -1000.0, 80.0)]]
    out = peer.aggregate(runs)
    assert out["rewardlab"]["median_return"] == -300.0
    assert out["rewardlab"]["median_wall_s"] == 50.0
    assert out["imitation"]["median_return"] == -500.0
    assert out["imitation"]["median_wall_s"] == 70.0
    assert [r["seed"] for r in out["rewardlab"]["runs"]] == [0, 1, 2]
    assert out["return_gap"] == pytest.approx(200.0)
    assert out["wall_ratio"] == pytest.approx(50.0 / 70.0)
    assert out["target_met"] is True
    # slower on the median: the target needs both
    slow = [dict(r, wall_s=r["wall_s"] + 100) if r["side"] == "rewardlab" else r for r in runs]
    assert peer.aggregate(slow)["target_met"] is False


def test_aggregate_with_one_side_cannot_judge(peer):
    out = peer.aggregate([_run("rewardlab", 0, -200.0, 40.0)])
    assert "imitation" not in out
    assert out["target_met"] is None and out["return_gap"] is None


def test_results_json_has_the_issue_schema(peer):
    runs = [_run(side, s, -100.0 * (s + 1), 10.0 + s) for side in peer.SIDES for s in range(5)]
    rec = peer.aggregate(runs)
    text = json.loads(json.dumps(rec))
    for side in ("rewardlab", "imitation"):
        assert {"median_return", "median_wall_s", "runs"} <= set(text[side])
        for run in text[side]["runs"]:
            assert {"seed", "return_mean", "return_std", "episodes", "wall_s", "steps",
                    "comparisons"} <= set(run)


def test_both_sides_take_the_same_number_of_rollouts(peer):
    env = "Pendulum-v1"
    rollout = peer.rollout_size(env)
    assert rollout == 4 * 1024
    rollouts = peer.num_rollouts(env, 100_000)
    assert rollouts == 25  # SB3 finishes the rollout that crosses 100k: 102400 steps
    # imitation trains num_iterations + 1 times, total_timesteps // num_iterations each
    iterations = peer.imitation_iterations(env, 100_000)
    per_iteration = iterations * rollout // iterations
    assert per_iteration == rollout and iterations + 1 == rollouts


def test_rewardlab_spreads_the_budget_over_equal_rounds(peer):
    overrides = peer.rewardlab_overrides("Pendulum-v1", 3, 100_000, 200, 100)
    assert "feedback.total_budget=200" in overrides
    assert "feedback.queries_per_round=10" in overrides
    assert "feedback.round_every=4096" in overrides and "feedback.segment_len=100" in overrides
    assert "ppo.use_sde=true" in overrides and "ppo.sde_sample_freq=4" in overrides
    assert "seed=3" in overrides
    with pytest.raises(ValueError, match="equal rounds"):
        peer.query_rounds("Pendulum-v1", 100_000, 203)


def test_halfcheetah_rounds_are_spread_over_the_run(peer):
    env = "HalfCheetah-v4"
    assert peer.rollout_size(env) == 2048 and peer.num_rollouts(env, 100_000) == 49
    overrides = peer.rewardlab_overrides(env, 0, 100_000, 200, 100)
    # 20 rounds of 10 every second rollout: the last at 2048 + 19 * 4096 = 79872 of 100352
    assert "feedback.queries_per_round=10" in overrides
    assert "feedback.round_every=4096" in overrides and "feedback.first_round_at=2048" in overrides
    assert "ppo.use_sde=false" in overrides
    assert peer.markers(env) == ("<!-- peer_imitation_halfcheetah:begin -->",
                                 "<!-- peer_imitation_halfcheetah:end -->")
    assert peer.markers("Pendulum-v1")[0] == "<!-- peer_imitation:begin -->"


def test_feedback_breakdown_is_the_median_per_part(peer):
    runs = [dict(_run("rewardlab", s, -1.0, 1.0), feedback_seconds=sec) for s, sec in
            enumerate([{"reward_training": 10.0, "queries": 1.0},
                       {"reward_training": 30.0, "queries": 3.0},
                       {"reward_training": 20.0, "queries": 2.0}])]
    runs.append(_run("rewardlab", 3, -1.0, 1.0))  # recorded none: left out
    assert peer.feedback_breakdown(runs) == {"queries": 2.0, "reward_training": 20.0}
    assert peer.feedback_breakdown([_run("rewardlab", 0, -1.0, 1.0)]) == {}


def test_schedule_alternates_which_side_runs_first(peer):
    assert peer.schedule([0, 1, 2]) == [
        ("rewardlab", 0), ("imitation", 0), ("imitation", 1), ("rewardlab", 1),
        ("rewardlab", 2), ("imitation", 2)]


def test_read_runs_skips_blank_lines_and_keeps_the_latest_duplicate(peer, tmp_path):
    path = tmp_path / "runs.jsonl"
    first, again = _run("rewardlab", 0, -1.0, 1.0), _run("rewardlab", 0, -2.0, 2.0)
    path.write_text(json.dumps(first) + "\n\n" + json.dumps(again) + "\n")
    assert peer.read_runs(path) == [again]
    assert peer.read_runs(tmp_path / "missing.jsonl") == []


def test_pebble_side_uses_its_defaults_with_the_harness_schedule(peer):
    overrides = peer.pebble_overrides("Pendulum-v1", 2, 10_000, 200, 100)
    # 5% (at least 1000 steps) of pre-training, then 10 equal rounds over the rest
    assert "algorithm=pebble" in overrides and "total_steps=10000" in overrides
    assert "pebble.unsupervised_steps=1000" in overrides
    assert "feedback.first_round_at=1000" in overrides and "feedback.round_every=900" in overrides
    assert "feedback.queries_per_round=20" in overrides and "feedback.total_budget=200" in overrides
    assert not any(o.startswith(("ppo.", "pebble.backbone", "reward_model.")) for o in overrides)
    with pytest.raises(ValueError, match="equal"):
        peer.pebble_overrides("Pendulum-v1", 0, 10_000, 205, 100)
    with pytest.raises(ValueError, match="too few"):
        peer.pebble_overrides("Pendulum-v1", 0, 1500, 200, 100)
    assert peer.markers("Pendulum-v1", "default", "pebble")[0] == (
        "<!-- peer_imitation_pebble:begin -->")


def test_a_pebble_comparison_reruns_both_sides(peer):
    # the method and PEBBLE's steps are part of every run's key, imitation's too: the two sides
    # of one comparison always come from one run of the script
    ppo = _run("imitation", 0, -1.0, 1.0)
    pebble = dict(ppo, rewardlab_method="pebble", rewardlab_steps=10_000)
    assert peer.run_key(ppo) != peer.run_key(pebble)
    assert peer.run_key(dict(ppo, rewardlab_method="pref_ppo")) == peer.run_key(ppo)
    args = peer.parse_args(["--rewardlab-method", "pebble", "--rewardlab-steps", "10000"])
    assert "--rewardlab-steps" in peer.side_args(args, "rewardlab", 0, peer.REPO)
    with pytest.raises(SystemExit):
        peer.parse_args(["--rewardlab-steps", "10000"])  # PEBBLE only


def test_a_changed_reward_model_default_starts_a_new_comparison(peer):
    # records made with another RewardLab reward model (e.g. before pref_ppo's default became
    # 2 x 32) are never reused, on either side
    old = _run("imitation", 0, -1.0, 1.0)
    new = dict(old, rewardlab_hidden_sizes=[32, 32])
    assert peer.rewardlab_widths(old) is None and peer.rewardlab_widths(new) == (32, 32)
    assert peer.run_key(old) != peer.run_key(new)
    assert peer.run_key(dict(new, rewardlab_hidden_sizes=[64, 64])) != peer.run_key(new)
    # pref_ppo's comparison records the widths its default resolves to
    args = peer.parse_args([])
    assert peer.side_config(args)["rewardlab"]["reward_model"]["hidden_sizes"] == [32, 32]
