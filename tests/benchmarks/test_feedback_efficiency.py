"""The feedback-efficiency harness's bookkeeping on synthetic JSONL: no training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def records(fe, key: str, golds: dict[int, float], attempt: str, done: bool = True,
            backbone: str | None = "crossq", settings: bool = True) -> list[dict]:
    """Records of one run; the done record names ``backbone`` (SB3 SAC for ``sac_true``;
    ``None``: no field, as the records written before the field existed) and, if
    ``settings``, the settings the key runs now (else none: a record from before the field)."""
    k = fe.parse_key(key)
    base = {"run": key, "attempt": attempt, **k}
    out = [{"kind": "eval", **base, "step": s, "gold_return": g} for s, g in golds.items()]
    if done:
        out.append({"kind": "done", **base, "final_step": max(golds)})
        if backbone is not None:
            out[-1]["backbone"] = "sac" if k["method"] == "sac_true" else backbone
        if settings and k["steps"] >= 2000:  # shorter keys hold no schedule: unit records only
            out[-1]["settings"] = fe.planned_settings(key)
    return out


def test_run_key_round_trip_and_references_have_no_teacher(fe):
    key = fe.run_key("Hopper-v5", "pebble", "noisy", 500, 20000, 3)
    assert key == "Hopper-v5/pebble/noisy/q500/t20000/s3"
    assert fe.parse_key(key) == {"env": "Hopper-v5", "method": "pebble", "teacher": "noisy",
                                 "queries": 500, "steps": 20000, "seed": 3}
    for method in ("true_reward", "sac_true"):
        ref = fe.run_key("Hopper-v5", method, "noisy", 500, 20000, 3)
        assert ref == f"Hopper-v5/{method}/-/q0/t20000/s3"
        assert fe.parse_key(ref)["teacher"] is None and fe.parse_key(ref)["queries"] == 0


def test_defaults_are_the_headline_grid(fe):
    args = fe.parse_args([])
    assert args.envs == ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"]
    assert args.methods == ["true_reward", "pebble_targeted", "pebble_targeted_front"]
    assert args.teachers == ["oracle", "mistake"]
    assert (args.queries, args.seeds, args.steps) == ([500], [0, 1, 2, 3, 4], 100_000)
    assert args.workers == 2 and args.address is None
    keys = fe.selected_keys(args)
    assert len(keys) == 3 * 5 * (1 + 2 * 2)
    # seed by seed, the reference first
    assert keys[:5] == ["HalfCheetah-v5/true_reward/-/q0/t100000/s0",
                        "HalfCheetah-v5/pebble_targeted/oracle/q500/t100000/s0",
                        "HalfCheetah-v5/pebble_targeted/mistake/q500/t100000/s0",
                        "HalfCheetah-v5/pebble_targeted_front/oracle/q500/t100000/s0",
                        "HalfCheetah-v5/pebble_targeted_front/mistake/q500/t100000/s0"]


def test_dry_run_lists_runs_and_runs_nothing(fe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fe, "run_trial", lambda params: pytest.fail("ran a trial"))
    monkeypatch.setattr(fe, "run_on_ray", lambda *a, **k: pytest.fail("started Ray"))
    assert fe.main(["--dry-run", "--records", str(tmp_path / "r.jsonl"),
                    "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "HalfCheetah-v5/pebble_targeted_front/mistake/q500/t100000/s4 [to run" in out
    assert "teacher.preset=mistake" in out and "mitigation.targeted_spread=false" in out
    assert "75 runs selected" in out
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "out").exists()


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
    cheetah = load_config(None, fe.run_overrides("HalfCheetah-v5", "true_reward", None, 0, 20000,
                                                 0))
    assert cheetah.env.kwargs == {} and cheetah.teacher.preset != "mistake"
    with pytest.raises(ValueError, match="--steps"):
        fe.run_overrides("HalfCheetah-v5", "pebble", "oracle", 500, 1500, 0)


def test_front_loaded_variant_asks_every_query_in_the_first_half(fe):
    from rewardlab.config import load_config

    def feedback(method):
        return load_config(None, fe.run_overrides("Walker2d-v5", method, "oracle", 500, 100000,
                                                  0)).feedback

    whole, front = feedback("pebble_targeted"), feedback("pebble_targeted_front")
    assert front.first_round_at == whole.first_round_at == 5000
    assert whole.round_every == 9500 and front.round_every == 4750
    last = front.first_round_at + (fe.ROUNDS - 1) * front.round_every
    assert last <= 5000 + (100000 - 5000) // 2  # the last round within the first half
    assert front.queries_per_round * fe.ROUNDS == whole.total_budget == 500


def test_only_the_finished_attempt_counts(fe):
    key = fe.run_key("HalfCheetah-v5", "pebble", "oracle", 100, 1000, 0)
    recs = (records(fe, key, {500: -99.0}, "a1", done=False)  # crashed attempt
            + records(fe, key, {500: 10.0, 1000: 20.0}, "a2"))
    runs = fe.completed_runs(recs)
    assert list(runs) == [key]
    assert [e["gold_return"] for e in runs[key]["evals"]] == [10.0, 20.0]
    assert fe.completed_runs(records(fe, key, {500: 1.0}, "a3", done=False)) == {}


def test_an_interrupted_run_writes_no_record_and_its_old_records_do_not_count(fe, tmp_path):
    key = fe.run_key("HalfCheetah-v5", "pebble", "oracle", 100, 1000, 0)
    interrupted = records(fe, key, {500: 10.0, 1000: 20.0}, "a1")
    interrupted[-1]["interrupted"] = True  # a done record written before the harness refused
    assert fe.completed_runs(interrupted) == {}
    finished = records(fe, key, {500: 10.0, 1000: 30.0}, "a2")
    finished[-1]["interrupted"] = False
    assert fe.completed_runs(interrupted + finished)[key]["evals"][-1]["gold_return"] == 30.0
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fe.raise_if_interrupted(run_dir)  # no summary yet: nothing to refuse
    (run_dir / "summary.json").write_text(json.dumps({"interrupted": False}))
    fe.raise_if_interrupted(run_dir)
    (run_dir / "summary.json").write_text(json.dumps({"interrupted": True}))
    with pytest.raises(fe.RunInterrupted, match="interrupted"):
        fe.raise_if_interrupted(run_dir)


def test_in_process_loop_stops_at_an_interrupted_run(fe, tmp_path):
    keys = [fe.run_key("Pendulum-v1", "pebble", "oracle", 20, 2000, s) for s in range(3)]
    seen = []

    def trial(params):
        seen.append(params["key"])
        if len(seen) == 2:
            raise fe.RunInterrupted("stopped by SIGTERM")
        return None

    fe.run_in_process(keys, tmp_path, tmp_path / "r.jsonl", trial)
    assert seen == keys[:2]  # the third run was not started


def test_truncated_last_line_is_skipped(fe, tmp_path):
    key = fe.run_key("HalfCheetah-v5", "true_reward", None, 0, 1000, 0)
    path = tmp_path / "evals.jsonl"
    fe.append_records(path, records(fe, key, {1000: 5.0}, "a"))
    with path.open("a") as f:
        f.write('{"kind": "eval", "run": "x"')  # a crash mid-line
    assert list(fe.completed_runs(fe.read_records(path))) == [key]


def test_normalised_by_the_same_agent_on_the_true_reward_at_the_same_step(fe):
    env, t = "HalfCheetah-v5", 1000
    recs = (records(fe, fe.run_key(env, "true_reward", None, 0, t, 0), {1000: 100.0}, "s0")
            + records(fe, fe.run_key(env, "true_reward", None, 0, t, 1), {1000: 300.0}, "s1")
            # SB3 SAC is an outside reference, not the normaliser
            + records(fe, fe.run_key(env, "sac_true", None, 0, t, 0), {1000: 0.0}, "o0")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 0), {1000: 100.0}, "p0")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 1), {1000: 250.0}, "p1")
            # no true_reward reference at this step budget: left out
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, 2000, 0), {2000: 1.0}, "p2"))
    runs = fe.completed_runs(recs)
    assert fe.reference_returns_by_step(runs) == {(env, t, 1000): 200.0}
    scores = fe.normalized_scores(runs, {env: -200.0})
    norm, ratio = scores["normalized"], scores["ratio"]
    # (G - R) / (S - R) with S = 200, R = -200
    assert norm[(env, "pebble", "oracle", 50, t)] == {0: 0.75, 1: 450.0 / 400.0}
    assert norm[(env, "sac_true", None, 0, t)] == {0: 0.5}
    assert norm[(env, "true_reward", None, 0, t)] == {0: 0.75, 1: 1.25}
    assert ratio[(env, "pebble", "oracle", 50, t)] == {0: 0.5, 1: 1.25}
    assert ratio[(env, "sac_true", None, 0, t)] == {0: 0.0}
    for kind in (norm, ratio):
        assert (env, "pebble", "oracle", 50, 2000) not in kind
    # without R there is no normalised score, only the ratio
    assert fe.normalized_scores(runs)["normalized"] == {}


def test_core_sac_runs_stand_in_as_the_outside_reference(fe, tmp_path, monkeypatch):
    env, t = "HalfCheetah-v5", fe.FULL_STEPS
    core_json = tmp_path / "core.json"
    runs = [{"method": "sac_true_reward", "seed": s, "steps": t, "wall_time_s": 9.0,
             "gold_curve": [[0, -100.0], [t // 2, 50.0], [t, gold]]}
            for s, gold in ((0, 100.0), (1, 300.0))]
    runs.append({"method": "pebble", "seed": 0, "steps": t, "gold_curve": [[t, 1.0]]})
    core_json.write_text(json.dumps({"parts": {"halfcheetah": {
        "command": "python benchmarks/core.py --part halfcheetah", "written_utc": "then",
        "runs": runs}}}))
    recs = fe.core_sac_records(core_json)
    assert {r["run"] for r in recs} == {fe.run_key(env, "sac_true", None, 0, t, s)
                                        for s in (0, 1)}
    done = [r for r in recs if r["kind"] == "done"]
    assert all(d["backbone"] == "sac" and "core.py --part halfcheetah" in d["source"]
               for d in done)
    reference = records(fe, fe.run_key(env, "true_reward", None, 0, t, 0), {t: 500.0}, "r")
    rows = {r["method"]: r for r in fe.aggregate(
        reference + recs + [{"kind": "reference", "env": env, "gold_return": -100.0}], reps=10)}
    sac = rows["sac_true"]
    assert sac["seeds"] == [0, 1] and sac["normalized_per_seed"] == [200 / 600, 400 / 600]
    assert sac["curve_normalized_iqm"] is None  # no reference at step t // 2
    assert "source" in sac and "source" not in rows["true_reward"]
    assert fe.core_sac_records(tmp_path / "absent.json") == []


def test_ratio_undefined_when_reference_return_is_not_positive(fe, monkeypatch):
    monkeypatch.setattr(fe, "iqm_ci", lambda s, reps: (float(np.mean(s)), min(s), max(s)))
    env, t = "HalfCheetah-v5", 1000
    recs = (records(fe, fe.run_key(env, "true_reward", None, 0, t, 0), {1000: -90.0}, "s0")
            + records(fe, fe.run_key(env, "pebble", "oracle", 50, t, 0), {1000: -190.0}, "p0",
                      backbone=None)
            + [{"kind": "reference", "env": env, "gold_return": -290.0}])
    rows = fe.aggregate(recs, reps=200)
    pebble = next(r for r in rows if r["method"] == "pebble")
    assert pebble["ratio_iqm"] is None and pebble["ratio_ci_low"] is None
    assert pebble["ratio_ci_high"] is None
    assert pebble["normalized_iqm"] == pytest.approx(0.5)
    assert (pebble["ci_low"], pebble["ci_high"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert pebble["reference_return"] == -90.0
    assert pebble["random_reference_return"] == -290.0
    assert pebble["backbone"] == "sac"  # a done record without the field: the old SB3 backbone
    assert "undefined" in fe.render_section({
        "command": "c", "written_utc": "now", "jsonl": "x", "steps": t, "rows": rows,
        "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t"}, "runs_selected": 2,
        "runs_completed": 2, "notes": fe.NOTES,
        "selection": {"envs": [env], "methods": ["pebble"], "teachers": ["oracle"],
                      "queries": [50], "seeds": [0]}})


def test_rows_with_a_reference_not_above_random_have_no_normalised_score(fe):
    env, t = "Pendulum-v1", 2000
    recs = (records(fe, fe.run_key(env, "true_reward", None, 0, t, 0), {2000: -1500.0}, "s0")
            + [{"kind": "reference", "env": env, "gold_return": -1200.0}])
    (row,) = fe.aggregate(recs, reps=10)
    assert row["normalized_iqm"] is None and row["ratio_iqm"] is None
    assert row["gold_return_per_seed"] == [-1500.0]


def test_iqm_and_ci_with_rliable(fe):
    pytest.importorskip("rliable")
    scores = [0.1, 0.5, 0.6, 0.7, 2.0]
    iqm, lo, hi = fe.iqm_ci(scores, reps=2000)
    # 25% trimmed mean of 5 values drops one at each end
    assert iqm == pytest.approx(np.mean([0.5, 0.6, 0.7]))
    assert lo <= iqm <= hi and lo >= min(scores) and hi <= max(scores)


def test_main_skips_finished_runs_and_reruns_unfinished(fe, tmp_path, monkeypatch):
    env, t = "HalfCheetah-v5", 2000
    done_key = fe.run_key(env, "true_reward", None, 0, t, 0)
    crashed_key = fe.run_key(env, "pebble", "oracle", 50, t, 0)
    jsonl = tmp_path / "evals.jsonl"
    fe.append_records(jsonl, records(fe, done_key, {2000: 200.0}, "old")
                      + records(fe, crashed_key, {1000: 1.0}, "old", done=False))
    executed = []

    def fake_execute(key, out_dir):
        executed.append(key)
        return records(fe, key, {2000: 150.0}, "new")

    monkeypatch.setattr(fe, "execute", fake_execute)
    monkeypatch.setattr(fe.core, "claim_core", lambda: None)  # leave pytest's affinity alone
    monkeypatch.setattr(fe, "random_reference", lambda env: {
        "kind": "reference", "env": env, "gold_return": -100.0})
    monkeypatch.setattr(fe, "iqm_ci", lambda s, reps: (float(np.mean(s)), min(s), max(s)))
    argv = ["--envs", env, "--methods", "true_reward", "pebble", "--teachers", "oracle",
            "--queries", "50", "--seeds", "0", "--steps", str(t), "--out-dir", str(tmp_path),
            "--records", str(jsonl), "--no-write", "--no-ray"]
    assert fe.main(argv) == 0
    assert executed == [crashed_key]
    assert fe.main(argv) == 0  # everything finished now: nothing runs again
    assert executed == [crashed_key]
    runs = fe.completed_runs(fe.read_records(jsonl))
    assert set(runs) == {done_key, crashed_key}
    rows = {r["method"]: r for r in fe.aggregate(fe.read_records(jsonl), reps=10)}
    assert rows["pebble"]["ratio_iqm"] == pytest.approx(150.0 / 200.0)
    assert rows["pebble"]["normalized_iqm"] == pytest.approx(250.0 / 300.0)
    assert rows["true_reward"]["normalized_iqm"] == pytest.approx(1.0)
    # the random-policy reference was recorded once, not again on the second call
    kinds = [json.loads(line)["kind"] for line in jsonl.read_text().splitlines()]
    assert kinds.count("reference") == 1


def _row(fe, env, method, teacher, queries, seeds, iqm=0.95):
    return {"env": env, "method": method, "teacher": teacher, "queries": queries,
            "steps": fe.FULL_STEPS, "seeds": list(seeds), "backbone": "crossq",
            "eval_step": fe.FULL_STEPS, "gold_return_per_seed": [1.0] * len(seeds),
            "reference_return": 100.0, "random_reference_return": 0.0,
            "normalized_iqm": iqm, "ci_low": iqm, "ci_high": iqm,
            "normalized_per_seed": [iqm] * len(seeds), "ratio_iqm": iqm, "ratio_ci_low": iqm,
            "ratio_ci_high": iqm, "curve_normalized_iqm": iqm, "curve_ci_low": iqm,
            "curve_ci_high": iqm, "target": fe.TARGETS.get((method, teacher, queries)),
            "meets_target": None if (method, teacher, queries) not in fe.TARGETS
            else iqm >= fe.TARGETS[(method, teacher, queries)]}


def test_table_says_when_the_headline_grid_is_not_filled(fe):
    rec = {"command": "c", "written_utc": "now", "jsonl": "x.jsonl", "steps": fe.FULL_STEPS,
           "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "t"}, "rows": [],
           "runs_selected": 45, "runs_completed": 0, "notes": fe.NOTES,
           "selection": {"envs": list(fe.ENVS), "methods": list(fe.FULL_METHODS),
                         "teachers": list(fe.FULL_TEACHERS), "queries": list(fe.FULL_QUERIES),
                         "seeds": list(fe.FULL_SEEDS)}}
    assert "Not the issue's full headline grid" in fe.render_section(rec)
    rows = [_row(fe, env, "true_reward", None, 0, fe.FULL_SEEDS) for env in fe.ENVS] + [
        _row(fe, env, fe.HEADLINE_METHOD, t, 500, fe.FULL_SEEDS, iqm=0.8)
        for env in fe.ENVS for t in fe.FULL_TEACHERS]
    rec["rows"] = rows[:-1] + [
        _row(fe, "Walker2d-v5", fe.HEADLINE_METHOD, "mistake", 500, (0, 1, 2))]
    assert not fe.headline_complete(rec["rows"])  # a cell with 3 of the 5 seeds
    assert "Not the issue's full headline grid" in fe.render_section(rec)
    rec["rows"] = rows
    assert fe.headline_complete(rows)
    text = fe.render_section(rec)
    assert "Not the issue's full headline grid" not in text
    # 0.8 misses the oracle target (0.90) and meets the mistake target (0.75)
    assert f"HalfCheetah-v5 `{fe.HEADLINE_METHOD}` oracle 0.80 (misses 0.90" in text
    assert f"HalfCheetah-v5 `{fe.HEADLINE_METHOD}` mistake 0.80 (meets 0.75" in text
    assert "same agent on the true reward" in text and "`sac_true` is Stable-Baselines3" in text
    assert "feedback_efficiency_runs_sb3_sac.jsonl" in text
    # a score that misses its target but rounds up to it is printed with more decimals
    rec["rows"] = [r if (r["env"], r["teacher"]) != ("Hopper-v5", "oracle")
                   else _row(fe, "Hopper-v5", fe.HEADLINE_METHOD, "oracle", 500, fe.FULL_SEEDS,
                             iqm=0.8992) for r in rows]
    text = fe.render_section(rec)
    assert f"Hopper-v5 `{fe.HEADLINE_METHOD}` oracle 0.899 (misses 0.90" in text
    assert fe._verdict_score(0.7498, 0.75) == "0.7498"
    assert fe._verdict_score(0.75, 0.75) == "0.75"  # meets: two decimals say it right
    assert fe._verdict_score(0.7502, 0.75) == "0.75"
    assert fe._verdict_score(0.7712, 0.75) == "0.77"


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


def test_grids_keep_pebbles_reward_model_and_the_default_variant_is_the_default(fe):
    from rewardlab.config import build_config, load_config

    def cfg(method):
        return load_config(None, fe.run_overrides("Pendulum-v1", method, "oracle", 100, 15000, 0))

    # the measured grids' 3 x 256 in minibatches of 128 stays pinned whatever RewardLab's
    # default is
    for method in ("pebble", "pebble_targeted", "pebble_rm_bf16", "pebble_surf"):
        assert cfg(method).reward_model.hidden_sizes == (256, 256, 256), method
        assert cfg(method).reward_model.batch_size == 128, method
    assert cfg("pebble_rm_2x64").reward_model.hidden_sizes == (64, 64)  # a variant wins
    assert cfg("pebble_rm_2x64").reward_model.batch_size == 128  # the other pin stays
    assert cfg("pebble_rm_3x128_b32").reward_model.batch_size == 32
    small = fe.run_overrides("Pendulum-v1", "pebble_rm_3x128", "oracle", 100, 15000, 0)
    assert [o for o in small if o.startswith("reward_model.hidden_sizes")] == [
        "reward_model.hidden_sizes=[128, 128, 128]"]  # the pin is left out, not overridden
    # the overhead headline's variant has exactly the default PEBBLE run's reward model
    assert (cfg(fe.DEFAULT_PEBBLE_VARIANT).reward_model
            == build_config({}, ["env.id=Pendulum-v1"]).reward_model)


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
    ref = fe.run_key(env, "true_reward", None, 0, t, 0)
    fast = fe.run_key(env, "pebble", "oracle", 20, t, 0)
    slow = fe.run_key(env, "pebble_uniform", "oracle", 20, t, 0)
    recs = (records(fe, ref, {1000: -200.0, 2000: -200.0}, "a")
            + records(fe, fast, {1000: -200.0, 2000: -200.0}, "b")
            + records(fe, slow, {1000: -1000.0, 2000: -200.0}, "c")
            + [{"kind": "reference", "env": env, "gold_return": -1200.0}])
    rows = {r["method"]: r for r in fe.aggregate(recs, reps=10)}
    # both end at the reference's return; the slow one has half its area above random
    assert rows["pebble"]["normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble_uniform"]["normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble"]["curve_normalized_iqm"] == pytest.approx(1.0)
    assert rows["pebble_uniform"]["curve_normalized_iqm"] == pytest.approx(
        ((-600.0) - (-1200.0)) / ((-200.0) - (-1200.0)))


def test_done_record_names_the_backbone_of_the_run(fe, tmp_path, monkeypatch):
    from rewardlab.config import dump_config, load_config

    jobs = []

    def fake_run_job(job):
        jobs.append(job)
        extra = ["pebble.backbone=sac"] if job.method == "sac_true_reward" else []
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(
            dump_config(load_config(None, [*job.overrides, *extra])))

    monkeypatch.setattr(fe.core, "run_job", fake_run_job)
    monkeypatch.setattr(fe.core, "collect", lambda job: {
        "gold_curve": [[0, -1.0], [2000, 5.0]], "steps": 2000, "wall_time_s": 3.0,
        "queries": None, "run_dir": job.run_dir, "finished_utc": "now", "machine": {}})
    for method, core_method in (("true_reward", "true_reward"), ("sac_true", "sac_true_reward")):
        key = fe.run_key("Pendulum-v1", method, None, 0, 2000, 0)
        records = fe.execute(key, tmp_path)
        done = records[-1]
        assert jobs[-1].method == core_method
        assert [r["kind"] for r in records] == ["eval", "eval", "done"]
        assert done["backbone"] == fe.planned_backbone(key)
        assert done["backbone"] == ("sac" if method == "sac_true" else
                                    load_config(None, []).pebble.backbone)


def test_pebble_done_record_keeps_the_last_reward_model_metrics(fe, tmp_path, monkeypatch):
    """A PEBBLE run's ``done`` record carries its feedback seconds and the last logged value of
    each ``reward_model/*`` metric (what the overhead table shows beside a cheaper model)."""
    from rewardlab.config import dump_config, load_config

    def fake_run_job(job):
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(dump_config(load_config(None, list(job.overrides))))
        (run_dir / "summary.json").write_text(json.dumps(
            {"feedback": {"seconds": {"queries": 1.0, "reward_training": 2.0}}}))
        (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
            {"step": 1000, "reward_model/random_pair_accuracy": 0.6, "eval/gold_return": 1.0},
            {"step": 2000, "reward_model/random_pair_accuracy": 0.8,
             "reward_model/epochs": 7.0, "feedback/round": 2.0}]) + "\n")

    monkeypatch.setattr(fe.core, "run_job", fake_run_job)
    monkeypatch.setattr(fe.core, "collect", lambda job: {
        "gold_curve": [[2000, 5.0]], "steps": 2000, "wall_time_s": 3.0, "queries": 20,
        "run_dir": job.run_dir, "finished_utc": "now", "machine": {}})
    key = fe.run_key("Pendulum-v1", "pebble_rm_3x128", "oracle", 20, 2000, 0)
    done = fe.execute(key, tmp_path)[-1]
    assert done["feedback_seconds"] == {"queries": 1.0, "reward_training": 2.0}
    assert done["reward_model"] == {"reward_model/random_pair_accuracy": 0.8,
                                    "reward_model/epochs": 7.0}
    assert done["settings"]["reward_model"]["hidden_sizes"] == [128, 128, 128]


def test_stale_runs_run_again_and_stay_out_of_the_table(fe, tmp_path, monkeypatch, capsys):
    """A finished run whose settings are not what its key runs now (a default changed, or a
    record from before settings were recorded) is run again and left out of the aggregation."""
    ref = fe.run_key("Pendulum-v1", "true_reward", None, 0, 2000, 0)
    pebble = fe.run_key("Pendulum-v1", "pebble", "oracle", 20, 2000, 0)
    jsonl = tmp_path / "runs.jsonl"
    changed = records(fe, pebble, {2000: 1.0}, "old")
    changed[-1]["settings"]["reward_model"]["lr"] = 1e-3  # made with another default
    fe.append_records(jsonl, [*records(fe, ref, {2000: 2.0}, "r"), *changed])
    assert fe.stale_runs(fe.completed_runs(fe.read_records(jsonl))) == {
        pebble: ["reward_model.lr"]}
    assert fe.stale_runs(fe.completed_runs(records(fe, ref, {2000: 2.0}, "x", settings=False))
                         ) == {ref: ["settings"]}
    ran = []
    monkeypatch.setattr(fe, "run_trial", lambda params: ran.append(params["key"]))
    monkeypatch.setattr(fe, "random_reference", lambda env: {
        "kind": "reference", "env": env, "policy": "uniform_random", "gold_return": 0.0})
    argv = ["--envs", "Pendulum-v1", "--methods", "true_reward", "pebble", "--teachers",
            "oracle", "--queries", "20", "--seeds", "0", "--steps", "2000", "--records",
            str(jsonl), "--out-dir", str(tmp_path), "--no-write", "--no-ray",
            "--bootstrap-reps", "50"]
    assert fe.main([*argv, "--dry-run"]) == 0
    assert "stale, runs again: differs in reward_model.lr" in capsys.readouterr().out
    fe.main(argv)
    out = capsys.readouterr().out
    assert ran == [pebble]  # the reference is current: not run again
    assert f"left out (stale: differs in reward_model.lr): {pebble}" in out
    assert "Pendulum-v1 pebble" not in out  # no row from the stale run
    # an attempt with today's settings counts even when a later one (a default tried and
    # reverted) has other settings
    fe.append_records(jsonl, [*records(fe, pebble, {2000: 3.0}, "now"), *changed])
    runs = fe.current_runs(fe.read_records(jsonl))
    assert runs[pebble]["done"]["attempt"] == "now" and runs[pebble]["evals"][-1][
        "gold_return"] == 3.0
    assert {r.get("attempt") for r in fe.current_records(fe.read_records(jsonl))
            if r.get("run") == pebble} == {"now"}
    # a section added to the config later does not make a finished run stale; a key of
    # SAVED_RUN_DEFAULTS absent from the record means the value older runs used
    older = records(fe, pebble, {2000: 4.0}, "older")
    del older[-1]["settings"]["offline"]
    del older[-1]["settings"]["reward_model"]["precision"]  # meant float32: today's default
    assert fe.stale_runs(fe.completed_runs(older)) == {}
    from rewardlab import config as cfg

    monkeypatch.setitem(cfg.SAVED_RUN_DEFAULTS, "reward_model.precision", "bfloat16")
    assert fe.stale_runs(fe.completed_runs(older)) == {pebble: ["reward_model.precision"]}
    # the reference's settings leave out what it does not read
    assert "reward_model" not in fe.planned_settings(ref)
    assert fe.planned_settings(pebble)["reward_model"]["precision"] == "float32"


def test_trial_appends_its_records_and_survives_a_failure(fe, tmp_path, monkeypatch, capsys):
    out_dir, jsonl = tmp_path / "out", tmp_path / "runs.jsonl"
    out_dir.mkdir()
    key = fe.run_key("Pendulum-v1", "pebble", "oracle", 20, 2000, 0)
    cwd = os.getcwd()
    seen = []

    def fake_execute(k, out):
        seen.append((k, out, os.getcwd()))
        return records(fe, k, {1000: 1.0, 2000: 2.0}, "t")

    monkeypatch.setattr(fe.core, "claim_core", lambda: None)
    monkeypatch.setattr(fe, "execute", fake_execute)
    params = {"key": key, "out_dir": str(out_dir), "records": str(jsonl)}
    fe.ray_trial({"params": params})
    assert seen == [(key, out_dir, str(out_dir))]  # worked in out_dir (MUJOCO_LOG.TXT)
    assert os.getcwd() == cwd
    assert list(fe.completed_runs(fe.read_records(jsonl))) == [key]

    def broken(k, out):
        raise RuntimeError("boom")

    monkeypatch.setattr(fe, "execute", broken)
    other = fe.run_key("Pendulum-v1", "pebble", "oracle", 20, 2000, 1)
    assert fe.run_trial({**params, "key": other}) is None  # printed, not raised
    assert f"FAILED {other}" in capsys.readouterr().out and os.getcwd() == cwd
    assert list(fe.completed_runs(fe.read_records(jsonl))) == [key]


def test_main_runs_the_unfinished_runs_on_ray(fe, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fe, "run_on_ray", lambda *a: calls.append(a))
    jsonl = tmp_path / "runs.jsonl"
    argv = ["--envs", "Pendulum-v1", "--methods", "true_reward", "pebble", "--teachers",
            "oracle", "--queries", "20", "--seeds", "0", "1", "--steps", "2000", "--records",
            str(jsonl), "--out-dir", str(tmp_path), "--no-write", "--workers", "2",
            "--address", "ray://head:10001"]
    assert fe.main(argv) == 1  # nothing was run (the fake ran nothing): every run failed
    (todo, out_dir, records_path, workers, address, name), = calls
    assert todo == [f"Pendulum-v1/{m}/t2000/s{s}" for s in (0, 1)
                    for m in ("true_reward/-/q0", "pebble/oracle/q20")]
    assert (out_dir, records_path, workers, address) == (tmp_path, jsonl, 2, "ray://head:10001")
    assert name.startswith("feedback_efficiency-")


def test_ray_trials_get_an_importable_trainable_and_one_thread(fe, tmp_path, monkeypatch):
    import rewardlab.algorithms.sweep as sweep

    calls = []
    monkeypatch.setattr(sweep, "run_on_ray", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    fe.run_on_ray(["k1", "k2"], tmp_path, tmp_path / "r.jsonl", 2, None, "name")
    (trainable, params, name, storage), kwargs = calls[0]
    # pickled by reference (module feedback_efficiency, on the workers' PYTHONPATH)
    assert (trainable.__module__, trainable.__name__) == ("feedback_efficiency", "ray_trial")
    assert [p["key"] for p in params] == ["k1", "k2"]
    assert params[0] == {"key": "k1", "out_dir": str(tmp_path),
                         "records": str(tmp_path / "r.jsonl")}
    assert kwargs["max_concurrent"] == 2 and kwargs["cpus_per_trial"] == 1
    env = kwargs["env_vars"]
    assert env["PYTHONPATH"] == f"{fe.BENCH_DIR}{os.pathsep}/somewhere/src"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["XLA_FLAGS"] == ("--xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1")
    assert env["JAX_PLATFORMS"] == "cpu"


CLAIM = """
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
import core
stop = threading.Event()
worker = threading.Thread(target=stop.wait)
worker.start()  # a thread started before the claim is pinned too
got = core.claim_core(sys.argv[2])
again = core.claim_core(sys.argv[2])
print(json.dumps({"core": got, "again": again, "main": sorted(os.sched_getaffinity(0)),
                  "thread": sorted(os.sched_getaffinity(worker.native_id))}))
stop.set()
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity")
def test_claim_core_takes_a_free_core_and_pins_every_thread(fe, tmp_path):
    import fcntl

    cores = sorted(os.sched_getaffinity(0))

    def claim():
        out = subprocess.run([sys.executable, "-c", CLAIM, str(fe.BENCH_DIR), str(tmp_path)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    held = []
    for index in cores[:-1]:  # another process holds every core but the last
        f = (tmp_path / f"rewardlab-core-{index}.lock").open("a")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(f)
    got = claim()
    assert got == {"core": cores[-1], "again": cores[-1], "main": [cores[-1]],
                   "thread": [cores[-1]]}
    # the claimant's lock ended with it; now every core is held: no pinning
    f = (tmp_path / f"rewardlab-core-{cores[-1]}.lock").open("a")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.append(f)
    assert claim() == {"core": None, "again": None, "main": cores, "thread": cores}
    for f in held:
        f.close()


def test_language_model_settings_never_make_a_control_run_stale(fe):
    """``lm`` is no control run's setting: it is not recorded, and a run that recorded it (made
    while its defaults were different) is still current."""
    key = fe.run_key("Pendulum-v1", "pebble", "oracle", 20, 2000, 0)
    planned = fe.planned_settings(key)
    assert "lm" not in planned
    done = records(fe, key, {2000: 1.0}, "a")[-1]
    done["settings"]["lm"] = {"beta": 123.0}  # recorded by an older harness, other defaults
    assert fe.settings_drift(done, planned) == []
    done["settings"]["reward_model"]["lr"] = 1e-3  # a setting the run reads still counts
    assert fe.settings_drift(done, planned) == ["reward_model.lr"]


@pytest.mark.parametrize(("runner", "text"), [
    ("ray", "runs as Ray Tune trials, 2 at a time"),
    ("in_process", "runs one at a time in one process"),
    ("aggregated", "runs made by earlier invocations of this harness (this command aggregated "
                   "their records and ran none)"),
])
def test_grid_header_says_how_the_runs_were_made(fe, runner, text):
    rec = {"command": "c", "written_utc": "now", "runner": runner, "workers": 2,
           "machine": {"cpu": "AMD EPYC (avx2)", "cpu_count": 2, "torch": "2"},
           "runs_completed": 1, "runs_selected": 2, "jsonl": "r.jsonl"}
    machine = next(line for line in fe.grid_header(rec, "T", "s.py")
                   if line.startswith("- Machine:"))
    assert machine == (f"- Machine: AMD EPYC (avx2), 2 logical CPUs, torch 2; {text}, each "
                       "pinned to a core of its own, 1 thread")


def test_runner_name_follows_the_flags(fe):
    assert fe.runner_name(fe.parse_args(["--aggregate-only", "--no-ray"])) == "aggregated"
    assert fe.runner_name(fe.parse_args(["--no-ray"])) == "in_process"
    assert fe.runner_name(fe.parse_args([])) == "ray"
