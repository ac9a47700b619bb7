"""benchmarks/lm_overoptimization.py's grid, records and aggregation on synthetic records: no
training, no pretraining, no core pinning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("transformers", reason='the lm extra: pip install -e ".[lm]"')

GRPO_STEPS = (0, 15, 30, 45, 60, 75)


def rl_gold(d: np.ndarray, alpha: float = 0.8, beta: float = 0.5) -> np.ndarray:
    """Gao Eq. 2 gain ``d (alpha - beta log d)`` (0 at d = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


def records(lmo, key: str, attempt: str, gold_shift: float = 0.0, alarm: int | None = None,
            done: bool = True, settings: bool = True) -> list[dict]:
    """Records of one run: a GRPO curve at :data:`GRPO_STEPS` (d = sqrt(step / 15), gold
    0.1 + Gao Eq. 2 gain + ``gold_shift``, proxy rising) or a best-of-n grid (d from n, gold
    rising then falling), the alarm at step ``alarm`` if given, and a done record."""
    k = lmo.parse_key(key)
    base = {"run": key, "attempt": attempt, **k}
    if k["optimizer"] == "grpo":
        steps = np.array(GRPO_STEPS)
        d = np.sqrt(steps / 15.0)
        gold = 0.1 + rl_gold(d) + gold_shift
        extra = [{} for _ in steps]
    else:
        ns = np.array([1, 2, 4, 8, 16])
        steps = np.arange(ns.size)
        d = np.sqrt(np.log(ns) - (ns - 1) / ns)
        gold = 0.1 + d * (0.9 - 0.5 * d) + gold_shift
        extra = [{"eval/bon_n": float(n)} for n in ns]
    out = []
    for s, di, g, e in zip(steps, d, gold, extra, strict=True):
        m = {"eval/gold_return": float(g), "eval/gold_return_std": 0.2, "eval/samples": 64.0,
             "eval/proxy_return": float(2 * di), "eval/kl": float(di**2),
             "eval/sqrt_kl": float(di), **e}
        if alarm is not None and s == alarm:
            m[lmo.ALARM_KEY] = float(alarm)
        out.append({"kind": "eval", **base, "step": int(s), "gold_return": float(g),
                    "metrics": m})
    if done:
        out.append({"kind": "done", **base, "status": "finished", "cpu_time_s": 100.0,
                    "overoptimization": None if alarm is None else {lmo.ALARM_KEY: alarm},
                    "reward_model": {"reward_model/heldout_accuracy": 0.8}})
        if settings:
            out[-1]["settings"] = lmo.make_planner()(key)
    return out


def test_run_key_round_trip(lmo):
    key = lmo.run_key("sentiment", "grpo", 150, "beta_0.1", 2)
    assert key == "sentiment/grpo/l150/beta_0.1/s2"
    assert lmo.parse_key(key) == {"task": "sentiment", "optimizer": "grpo", "labels": 150,
                                  "variant": "beta_0.1", "seed": 2}


def test_defaults_are_the_issue_grid_and_early_stop_reads_the_plain_runs(lmo):
    args = lmo.parse_args([])
    assert args.tasks == ["sentiment"] and args.labels == [50, 150, 500]  # a 10x span
    assert args.seeds == [0, 1, 2] and args.optimizers == ["bon", "grpo"]
    assert set(args.variants) == {"plain", "mean_minus_std", "min", "beta_0.1", "early_stop"}
    keys = lmo.selected_keys(args)
    # per seed and label count: bon plain/mms/min, grpo plain/mms/min/beta; early_stop no runs
    assert len(keys) == 3 * 3 * (3 + 4) == len(set(keys))
    assert keys[:7] == ["sentiment/bon/l50/plain/s0", "sentiment/bon/l50/mean_minus_std/s0",
                        "sentiment/bon/l50/min/s0", "sentiment/grpo/l50/plain/s0",
                        "sentiment/grpo/l50/mean_minus_std/s0", "sentiment/grpo/l50/min/s0",
                        "sentiment/grpo/l50/beta_0.1/s0"]
    assert not any("/bon/" in k and "beta" in k for k in keys)
    assert not any("early_stop" in k for k in keys)
    only = lmo.selected_keys(lmo.parse_args(["--variants", "early_stop", "--seeds", "4",
                                             "--labels", "50"]))
    assert only == ["sentiment/bon/l50/plain/s4", "sentiment/grpo/l50/plain/s4"]


def test_every_run_of_the_grid_passes_config_validation(lmo):
    for key in lmo.selected_keys(lmo.parse_args(["--seeds", "0"])):
        k = lmo.parse_key(key)
        config = lmo.key_config(key)
        assert config.algorithm == k["optimizer"] and config.lm.task == "sentiment"
        assert config.feedback.total_budget == config.feedback.queries_per_round == k["labels"]
        assert config.feedback.first_round_at == 0 and config.teacher.preset == "oracle"
        assert config.lm.base_model is None and config.torch_threads == 1
        if k["optimizer"] == "grpo":
            assert (config.lm.steps, config.lm.eval_every) == (300, 15)
        else:
            assert config.lm.bon_n == lmo.BON_N and max(config.lm.bon_n) == 256
        assert config.lm.rm_reduction == {"mean_minus_std": "mean_minus_std",
                                          "min": "min"}.get(k["variant"], "mean")
        assert config.lm.beta == (0.1 if k["variant"] == "beta_0.1" else 0.03)
    settings = lmo.make_planner()("sentiment/grpo/l50/plain/s0")
    assert settings["base_model_key"].startswith("rewardlab:")
    assert "env" not in settings and settings["lm"]["steps"] == 300
    other = lmo.make_planner("/some/dir")("sentiment/grpo/l50/plain/s0")
    assert other["base_model_key"] == "/some/dir" and other["lm"]["base_model"] == "/some/dir"


def test_bad_selections_are_refused_before_anything_runs(lmo):
    with pytest.raises(ValueError, match="--variants"):
        lmo.run_overrides("sentiment", "bon", 50, "beta_0.1", 0)
    with pytest.raises(ValueError, match="--variants"):
        lmo.run_overrides("sentiment", "grpo", 50, "early_stop", 0)
    with pytest.raises(ValueError, match="--labels"):
        lmo.run_overrides("sentiment", "grpo", 1, "plain", 0)
    with pytest.raises(ValueError, match="--tasks"):
        lmo.run_overrides("toxicity", "grpo", 50, "plain", 0)
    with pytest.raises(SystemExit):
        lmo.parse_args(["--optimizers", "ppo"])
    with pytest.raises(SystemExit):
        lmo.parse_args(["--labels", "1"])


def _no_work(lmo, monkeypatch):
    monkeypatch.setattr(lmo, "run_trial", lambda params: pytest.fail("ran a trial"))
    monkeypatch.setattr(lmo, "run_on_ray", lambda *a, **k: pytest.fail("started Ray"))
    monkeypatch.setattr(lmo, "run_wrapper_overhead", lambda *a: pytest.fail("measured"))
    monkeypatch.setattr(lmo, "ensure_base", lambda b: pytest.fail("pretrained"))


def test_dry_run_lists_runs_states_and_overrides_and_runs_nothing(lmo, tmp_path, monkeypatch,
                                                                  capsys):
    _no_work(lmo, monkeypatch)
    jsonl = tmp_path / "r.jsonl"
    done_key, stale_key = "sentiment/grpo/l50/plain/s0", "sentiment/grpo/l50/min/s0"
    stale = records(lmo, stale_key, "old")
    stale[-1]["settings"]["lm"]["steps"] = 200  # made with another grid size
    lmo.fe.append_records(jsonl, records(lmo, done_key, "a") + stale)
    assert lmo.main(["--dry-run", "--seeds", "0", "--labels", "50",
                     "--records", str(jsonl)]) == 0
    out = capsys.readouterr().out
    assert f"{done_key} [done]:" in out
    assert f"{stale_key} [stale, runs again: differs in lm.steps]:" in out
    assert ("sentiment/bon/l50/plain/s0 [to run]: algorithm=bon lm.task=sentiment seed=0 "
            "feedback.total_budget=50 feedback.queries_per_round=50") in out
    assert "'lm.bon_n=[1,2,4,8,16,32,64,128,256]'" in out
    assert "7 runs selected, 1 done, 6 to run; wrapper overhead to measure" in out


def test_aggregate_rows_carry_the_required_fields_and_the_mitigations(lmo):
    recs = []
    for seed in range(3):
        recs += records(lmo, lmo.run_key("sentiment", "grpo", 50, "plain", seed), f"p{seed}",
                        alarm=45 if seed < 2 else None)
        recs += records(lmo, lmo.run_key("sentiment", "grpo", 50, "min", seed), f"m{seed}",
                        gold_shift=0.05)
        recs += records(lmo, lmo.run_key("sentiment", "bon", 50, "plain", seed), f"b{seed}")
    recs += records(lmo, lmo.run_key("sentiment", "grpo", 50, "plain", 9), "x", done=False)
    rows = {(r["optimizer"], r["variant"]): r for r in lmo.aggregate(recs)}
    assert list(rows) == [("bon", "plain"), ("bon", "early_stop"), ("grpo", "plain"),
                          ("grpo", "min"), ("grpo", "early_stop")]
    required = ("task", "optimizer", "labels", "variant", "seeds", "gold_peak", "gold_final",
                "sqrt_kl_at_peak", "gold_peak_per_seed", "gold_final_per_seed",
                "sqrt_kl_at_peak_per_seed", "sqrt_kl_at_peak_fit", "gold_peak_fit", "gao_fit")
    for r in rows.values():
        assert all(f in r for f in required), r
        assert r["task"] == "sentiment" and r["labels"] == 50 and r["seeds"] == [0, 1, 2]
    d = np.sqrt(np.array(GRPO_STEPS) / 15.0)
    gold = 0.1 + rl_gold(d)
    plain = rows[("grpo", "plain")]
    peak = int(np.argmax(gold))
    assert plain["gold_peak"] == pytest.approx(gold[peak])
    assert plain["gold_final"] == pytest.approx(gold[-1])
    assert plain["sqrt_kl_at_peak"] == pytest.approx(d[peak])
    assert plain["gold_final_per_seed"] == pytest.approx([gold[-1]] * 3)
    # the pooled fit recovers the Gao Eq. 2 curve the gold was made from
    fit = plain["gao_fit"]
    assert fit["form"] == "rl" and fit["alpha"] == pytest.approx(0.8)
    assert fit["beta"] == pytest.approx(0.5) and fit["r2"] == pytest.approx(1.0)
    assert fit["peak_d"] == pytest.approx(math.exp(0.8 / 0.5 - 1))
    assert plain["sqrt_kl_at_peak_fit"] == pytest.approx(math.exp(0.8 / 0.5 - 1))
    assert plain["alarm_fired"] == 2
    # early stop: gold at the alarm's step (45) for seeds 0 and 1, the whole run for seed 2
    early = rows[("grpo", "early_stop")]
    at45 = gold[GRPO_STEPS.index(45)]
    assert early["stopped_at_per_seed"] == [45, 45, None]
    assert early["gold_final_per_seed"] == pytest.approx([at45, at45, gold[-1]])
    assert early["gold_final_minus_plain"] == pytest.approx((2 * at45 + gold[-1]) / 3 - gold[-1])
    assert early["cpu_time_s"] is None  # no runs of its own
    assert rows[("grpo", "min")]["gold_final_minus_plain"] == pytest.approx(0.05)
    assert rows[("grpo", "min")]["gold_peak_minus_plain"] == pytest.approx(0.05)
    bon = rows[("bon", "plain")]
    assert bon["gao_fit"]["form"] == "bon" and bon["gao_fit"]["alpha"] == pytest.approx(0.9)
    assert bon["gao_fit"]["peak_d"] == pytest.approx(0.9)
    json.dumps(list(rows.values()), allow_nan=False)  # strict JSON: no NaN or inf
    assert not lmo.grid_complete(list(rows.values()))


def test_main_skips_finished_reruns_stale_and_writes_json_markdown_and_plot(
        lmo, tmp_path, monkeypatch):
    jsonl = tmp_path / "runs.jsonl"
    done_key = "sentiment/grpo/l50/plain/s0"
    stale_key = "sentiment/grpo/l50/min/s0"
    crashed = "sentiment/bon/l50/plain/s0"
    old = records(lmo, stale_key, "old", gold_shift=-0.5)
    old[-1]["settings"]["lm"]["rm_k_std"] = 2.0
    lmo.fe.append_records(jsonl, records(lmo, done_key, "d", alarm=45) + old
                          + records(lmo, crashed, "c", done=False)
                          + [{"kind": "wrapper_overhead", "measured_utc": "then",
                              "wrapper_overhead": {"grpo": 0.04, "dpo": 0.02, "reward": -0.1},
                              "results": {}}])
    executed = []

    def fake_execute(key, out_dir, base_model=None):
        executed.append(key)
        return records(lmo, key, "new")

    monkeypatch.setattr(lmo, "execute", fake_execute)
    monkeypatch.setattr(lmo, "ensure_base", lambda b: None)
    monkeypatch.setattr(lmo, "run_wrapper_overhead", lambda *a: pytest.fail("measured again"))
    monkeypatch.setattr(lmo.core, "claim_core", lambda: None)  # leave pytest's affinity alone
    monkeypatch.setattr(lmo, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(lmo.core, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    argv = ["--labels", "50", "--seeds", "0", "--variants", "plain", "min", "early_stop",
            "--no-ray", "--out-dir", str(tmp_path / "out"), "--records", str(jsonl)]
    assert lmo.main(argv) == 0
    assert executed == [crashed, "sentiment/bon/l50/min/s0", stale_key]
    assert lmo.main(argv) == 0  # nothing left to run
    assert len(executed) == 3
    result = json.loads((tmp_path / "results" / "lm_overoptimization.json").read_text())
    rows = {(r["optimizer"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {("bon", "plain"), ("bon", "min"), ("bon", "early_stop"),
                         ("grpo", "plain"), ("grpo", "min"), ("grpo", "early_stop")}
    assert rows[("grpo", "min")]["gold_final_minus_plain"] == pytest.approx(0.0)  # not stale
    assert result["wrapper_overhead"] == {"grpo": 0.04, "dpo": 0.02, "reward": -0.1}
    assert result["command"].startswith("python benchmarks/lm_overoptimization.py --labels")
    assert "cpu" in result["machine"] and result["written_utc"].endswith("UTC")
    assert (tmp_path / "results" / "lm_overoptimization.png").stat().st_size > 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert md.count("<!-- lm_overoptimization:begin -->") == 1 and result["command"] in md
    assert "grpo +0.040" in md and "| sentiment | grpo | 50 | early_stop | 0 |" in md


def test_run_records_read_an_lm_run_directory(lmo, tmp_path):
    key = "sentiment/grpo/l50/plain/s0"
    rows = [{"step": 0, "reward_model/heldout_accuracy": 0.7, "feedback/round": 0.0},
            {"step": 0, "eval/gold_return": 0.1, "eval/proxy_return": 0.0, "eval/kl": 0.0,
             "eval/sqrt_kl": 0.0, "eval/samples": 64.0, "eval/gold_return_std": 0.3},
            {"step": 10, "train/loss": 0.5},
            {"step": 15, "eval/gold_return": 0.5, "eval/proxy_return": 1.0, "eval/kl": 1.0,
             "eval/sqrt_kl": 1.0, lmo.ALARM_KEY: 15.0, "eval/samples": 64.0},
            {"step": 15, "reward_model/heldout_accuracy": 0.9}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps({
        "status": "finished", "overoptimization": {lmo.ALARM_KEY: 15.0}, "base_model": "b"}))
    config = lmo.key_config(key)
    out = lmo.run_records(key, tmp_path, config, 3.0, 2.0, ["a=b"])
    evals, done = out[:-1], out[-1]
    assert [(e["step"], e["gold_return"]) for e in evals] == [(0, 0.1), (15, 0.5)]
    assert evals[1]["metrics"][lmo.ALARM_KEY] == 15.0 and "train/loss" not in evals[1]["metrics"]
    assert all(e["attempt"] == done["attempt"] for e in evals)
    assert done["settings"] == lmo.make_planner()(key)
    assert done["reward_model"] == {"reward_model/heldout_accuracy": 0.9}
    assert done["cpu_time_s"] == 2.0 and done["overoptimization"] == {lmo.ALARM_KEY: 15.0}
    run = lmo.fe.completed_runs(out)[key]
    assert lmo.alarm_step(run) == 15


def test_ray_trials_get_this_module_as_the_trainable(lmo, tmp_path, monkeypatch):
    import sys

    import rewardlab.algorithms.sweep as sweep

    seen = {}
    monkeypatch.setitem(sys.modules, "lm_overoptimization", lmo)
    monkeypatch.setattr(sweep, "run_on_ray", lambda fn, params, name, path, **kw: seen.update(
        fn=fn, params=params, kw=kw))
    lmo.run_on_ray(["sentiment/grpo/l50/plain/s0"], tmp_path, tmp_path / "r.jsonl", 2, None,
                   "n", "/base")
    assert seen["fn"] is lmo.ray_trial and seen["kw"]["max_concurrent"] == 2
    assert seen["kw"]["cpus_per_trial"] == 1
    assert seen["params"][0]["base_model"] == "/base"
