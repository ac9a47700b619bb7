"""The feedback-efficiency harness's bookkeeping on synthetic JSONL: no training."""

from __future__ import annotations

import json

import numpy as np
import pytest


def records(fe, key: str, golds: dict[int, float], attempt: str, done: bool = True) -> list[dict]:
    k = fe.parse_key(key)
    base = {"run": key, "attempt": attempt, **k}
    out = [{"kind": "eval", **base, "step": s, "gold_return": g} for s, g in golds.items()]
    if done:
        out.append({"kind": "done", **base, "final_step": max(golds)})
    return out


def test_run_key_round_trip_and_sac_has_no_teacher(fe):
    key = fe.run_key("Hopper-v5", "pebble", "noisy", 500, 20000, 3)
    assert fe.parse_key(key) == {"env": "Hopper-v5", "method": "pebble", "teacher": "noisy",
                                 "queries": 500, "steps": 20000, "seed": 3}
    sac = fe.run_key("Hopper-v5", "sac_true", "noisy", 500, 20000, 3)
    assert fe.parse_key(sac)["teacher"] is None and fe.parse_key(sac)["queries"] == 0


def test_overrides_spread_budget_and_disable_unhealthy_termination(fe):
    from rewardlab.config import load_config

    cfg = load_config(None, fe.run_overrides("Walker2d-v5", "pebble", "mistake", 500, 20000, 0))
    assert cfg.env.kwargs == {"terminate_when_unhealthy": False}
    assert cfg.teacher.preset == "mistake"
    fb = cfg.feedback
    assert fb.total_budget == 500 and fb.first_round_at == cfg.pebble.unsupervised_steps == 1000
    # every query is asked before the end of the run
    last_round = fb.first_round_at + (fe.ROUNDS - 1) * fb.round_every
    assert fb.queries_per_round * fe.ROUNDS >= 500 and last_round < cfg.total_steps
    cheetah = load_config(None, fe.run_overrides("HalfCheetah-v5", "sac_true", None, 0, 20000, 0))
    assert cheetah.env.kwargs == {}
    with pytest.raises(ValueError, match="--steps"):
        fe.run_overrides("HalfCheetah-v5", "pebble", "oracle", 500, 1500, 0)


def test_only_the_finished_attempt_counts(fe):
    key = fe.run_key("HalfCheetah-v5", "pebble", "oracle", 100, 1000, 0)
    recs = (records(fe, key, {500: -99.0}, "a1", done=False)  # crashed attempt
            + records(fe, key, {500: 10.0, 1000: 20.0}, "a2"))
    runs = fe.completed_runs(recs)
    assert list(runs) == [key]
    assert [e["gold_return"] for e in runs[key]["evals"]] == [10.0, 20.0]
    assert fe.completed_runs(records(fe, key, {500: 1.0}, "a3", done=False)) == {}


def test_truncated_last_line_is_skipped(fe, tmp_path):
    key = fe.run_key("HalfCheetah-v5", "sac_true", None, 0, 1000, 0)
    path = tmp_path / "evals.jsonl"
    fe.append_records(path, records(fe, key, {1000: 5.0}, "a"))
    with path.open("a") as f:
        f.write('{"kind": "eval", "run": "x"')  # a crash mid-line
    assert list(fe.completed_runs(fe.read_records(path))) == [key]


def test_normalised_by_mean_sac_return_at_the_same_step(fe):
    env, t = "HalfCheetah-v5", 1000
    recs = (records(fe, fe.run_key(env, "sac_true", None, 0, t, 0), {1000: 100.0}, "s0")
            + records(fe, fe.run_key(env, "sac_true", None, 0, t, 1), {1000: 300.0}, "s1")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 0), {1000: 100.0}, "p0")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 1), {1000: 250.0}, "p1")
            # no SAC reference at this step budget: left out
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, 2000, 0), {2000: 1.0}, "p2"))
    scores = fe.normalized_scores(fe.completed_runs(recs), {env: -200.0})
    ratio, rnd = scores["ratio"], scores["random"]
    assert ratio[(env, "pebble", "oracle", 50, t)] == {0: 0.5, 1: 1.25}
    assert ratio[(env, "sac_true", None, 0, t)] == {0: 0.5, 1: 1.5}
    # (G - R) / (S - R) with S = 200, R = -200
    assert rnd[(env, "pebble", "oracle", 50, t)] == {0: 0.75, 1: 450.0 / 400.0}
    assert (env, "pebble", "oracle", 50, 2000) not in ratio
    assert (env, "pebble", "oracle", 50, 2000) not in rnd


def test_ratio_undefined_when_sac_return_is_not_positive(fe, monkeypatch):
    monkeypatch.setattr(fe, "iqm_ci", lambda s, reps: (float(np.mean(s)), min(s), max(s)))
    env, t = "HalfCheetah-v5", 1000
    recs = (records(fe, fe.run_key(env, "sac_true", None, 0, t, 0), {1000: -90.0}, "s0")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 0), {1000: -190.0}, "p0")
            + [{"kind": "reference", "env": env, "gold_return": -290.0}])
    rows = fe.aggregate(recs, reps=200)
    pebble = next(r for r in rows if r["method"] == "pebble")
    assert pebble["normalized_iqm"] is None and pebble["ci_low"] is None
    assert pebble["random_normalized_iqm"] == pytest.approx(0.5)
    assert pebble["sac_reference_return"] == -90.0
    assert pebble["random_reference_return"] == -290.0
    assert "undefined" in fe.render_section({
        "command": "c", "written_utc": "now", "jsonl": "x", "steps": t, "rows": rows,
        "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t"}, "runs_selected": 2,
        "runs_completed": 2, "notes": fe.NOTES,
        "selection": {"envs": [env], "methods": ["pebble"], "teachers": ["oracle"],
                      "queries": [50], "seeds": [0]}})


def test_iqm_and_ci_with_rliable(fe):
    pytest.importorskip("rliable")
    scores = [0.1, 0.5, 0.6, 0.7, 2.0]
    iqm, lo, hi = fe.iqm_ci(scores, reps=2000)
    # 25% trimmed mean of 5 values drops one at each end
    assert iqm == pytest.approx(np.mean([0.5, 0.6, 0.7]))
    assert lo <= iqm <= hi and lo >= min(scores) and hi <= max(scores)


def test_main_skips_finished_runs_and_reruns_unfinished(fe, tmp_path, monkeypatch):
    env, t = "HalfCheetah-v5", 2000
    done_key = fe.run_key(env, "sac_true", None, 0, t, 0)
    crashed_key = fe.run_key(env, "pebble", "oracle", 50, t, 0)
    jsonl = tmp_path / "evals.jsonl"
    fe.append_records(jsonl, records(fe, done_key, {2000: 200.0}, "old")
                      + records(fe, crashed_key, {1000: 1.0}, "old", done=False))
    executed = []

    def fake_execute(key, out_dir):
        executed.append(key)
        return records(fe, key, {2000: 150.0}, "new")

    monkeypatch.setattr(fe, "execute", fake_execute)
    monkeypatch.setattr(fe, "random_reference", lambda env: {
        "kind": "reference", "env": env, "gold_return": -100.0})
    monkeypatch.setattr(fe, "iqm_ci", lambda s, reps: (float(np.mean(s)), min(s), max(s)))
    argv = ["--envs", env, "--methods", "sac_true", "pebble", "--teachers", "oracle",
            "--queries", "50", "--seeds", "0", "--steps", str(t), "--out-dir", str(tmp_path),
            "--records", str(jsonl), "--no-write"]
    assert fe.main(argv) == 0
    assert executed == [crashed_key]
    assert fe.main(argv) == 0  # everything finished now: nothing runs again
    assert executed == [crashed_key]
    runs = fe.completed_runs(fe.read_records(jsonl))
    assert set(runs) == {done_key, crashed_key}
    rows = {r["method"]: r for r in fe.aggregate(fe.read_records(jsonl), reps=10)}
    assert rows["pebble"]["normalized_iqm"] == pytest.approx(150.0 / 200.0)
    assert rows["pebble"]["random_normalized_iqm"] == pytest.approx(250.0 / 300.0)
    assert rows["sac_true"]["normalized_iqm"] == pytest.approx(1.0)
    # the random-policy reference was recorded once, not again on the second call
    kinds = [json.loads(line)["kind"] for line in jsonl.read_text().splitlines()]
    assert kinds.count("reference") == 1


def test_table_says_when_the_full_grid_was_not_run(fe):
    rec = {"command": "c", "written_utc": "now", "jsonl": "x.jsonl", "steps": 20000,
           "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t"}, "rows": [],
           "runs_selected": 2, "runs_completed": 2, "notes": fe.NOTES,
           "selection": {"envs": ["HalfCheetah-v5"], "methods": ["pebble", "sac_true"],
                         "teachers": ["oracle"], "queries": [500], "seeds": [0, 1]}}
    assert "Not the issue's full grid" in fe.render_section(rec)
    rec["steps"] = fe.FULL_STEPS
    rec["selection"] = {"envs": list(fe.ENVS), "methods": list(fe.METHODS),
                        "teachers": list(fe.TEACHERS), "queries": list(fe.FULL_QUERIES),
                        "seeds": list(fe.FULL_SEEDS)}
    assert "Not the issue's full grid" not in fe.render_section(rec)


def test_ablation_variants_override_pebble(fe):
    from rewardlab.config import load_config

    def cfg(method):
        return load_config(None, fe.run_overrides("Pendulum-v1", method, "oracle", 100, 15000, 0))

    base = cfg("pebble")
    assert base.feedback.method == "disagreement" and base.pebble.unsupervised_steps == 1000
    assert cfg("pebble_uniform").feedback.method == "uniform"
    assert cfg("pebble_entropy").feedback.method == "entropy"
    off = cfg("pebble_no_pretrain")
    assert off.pebble.unsupervised_steps == 0 and off.feedback == base.feedback
    key = fe.run_key("Pendulum-v1", "pebble_entropy", "oracle", 100, 15000, 2)
    assert fe.parse_key(key)["method"] == "pebble_entropy"


def test_ablation_section_has_its_own_markers(fe):
    rec = {"section": "ablations", "command": "python x", "written_utc": "now",
           "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "2"}, "runs_completed": 0,
           "runs_selected": 0, "jsonl": "e.jsonl", "steps": 15000, "rows": [], "notes": [],
           "selection": {"envs": ["Pendulum-v1"], "methods": ["pebble"], "teachers": ["oracle"],
                         "queries": [100], "seeds": [0]}}
    text = fe.render_section(rec)
    assert text.startswith("<!-- ablations:begin -->") and text.endswith("<!-- ablations:end -->")
    assert "Not the issue's full grid" not in text


def test_learning_curve_score_is_normalised_area_under_the_curve(fe):
    env, t = "Pendulum-v1", 2000
    sac = fe.run_key(env, "sac_true", None, 0, t, 0)
    fast = fe.run_key(env, "pebble", "oracle", 20, t, 0)
    slow = fe.run_key(env, "pebble_uniform", "oracle", 20, t, 0)
    recs = (records(fe, sac, {1000: -200.0, 2000: -200.0}, "a")
            + records(fe, fast, {1000: -200.0, 2000: -200.0}, "b")
            + records(fe, slow, {1000: -1000.0, 2000: -200.0}, "c")
            + [{"kind": "reference", "env": env, "gold_return": -1200.0}])
    rows = {r["method"]: r for r in fe.aggregate(recs, reps=10)}
    # both end at SAC's return; the slow one has half SAC's area above random
    assert rows["pebble"]["random_normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble_uniform"]["random_normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble"]["curve_normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble_uniform"]["curve_normalized_iqm"] == pytest.approx(
        ((-600.0) - (-1200.0)) / ((-200.0) - (-1200.0)))
