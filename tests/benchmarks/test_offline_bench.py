"""The offline benchmark's grid, records and aggregation on synthetic records: no training."""

from __future__ import annotations

import json
import threading
import types

import numpy as np
import pytest

HC_MR = "HalfCheetah-v5/medium-replay"


def records(off, key: str, scores: dict[int, float], attempt: str, done: bool = True,
            settings: bool = True, accuracy: float | None = None) -> list[dict]:
    """Records of one run: evaluations at ``{update: normalised score}`` (gold = 10 x score)
    and, if ``done``, a done record with the settings the key runs now (if ``settings``)."""
    k = off.parse_key(key)
    base = {"run": key, "attempt": attempt, **k}
    out = [{"kind": "eval", **base, "step": u, "update": u, "gold_return": 10.0 * s,
            "normalized_score": s} for u, s in scores.items()]
    if done:
        out.append({"kind": "done", **base, "final_update": max(scores), "wall_time_s": 1.0,
                    "reward_model": ({} if accuracy is None else
                                     {"reward_model/heldout_accuracy": accuracy})})
        if settings:
            out[-1]["settings"] = off.planned_settings(key)
    return out


def exact_iqm(monkeypatch, off):
    """Replace rliable's bootstrap by (mean, min, max): fast and exact to assert on."""
    monkeypatch.setattr(off.fe, "iqm_ci", lambda s, reps=0: (float(np.mean(s)), min(s), max(s)))


def test_run_key_round_trip_and_the_reference_has_no_budget(off):
    key = off.run_key(HC_MR, "iql_mlp", 500, 10_000, 3)
    assert key == "HalfCheetah-v5/medium-replay/iql_mlp/q500/u10000/s3"
    assert off.parse_key(key) == {"dataset": HC_MR, "env": "HalfCheetah-v5",
                                  "tier": "medium-replay", "method": "iql_mlp",
                                  "queries": 500, "updates": 10_000, "seed": 3}
    assert off.run_key(HC_MR, "iql_true", 500, 10_000, 3).endswith("/iql_true/q0/u10000/s3")
    assert off.dataset_id(HC_MR) == "rewardlab/halfcheetah/medium-replay-v1"


def test_defaults_are_the_issue_grid(off):
    args = off.parse_args([])
    assert args.datasets == ["HalfCheetah-v5/medium-replay", "Hopper-v5/medium-replay",
                             "Walker2d-v5/medium-replay", "HalfCheetah-v5/medium-expert"]
    keys = off.selected_keys(args)
    assert len(keys) == 4 * 5 * 5  # datasets x (true, mlp 100, mlp 500, pt 500, cpl 500) x seeds
    assert keys[:5] == [f"{HC_MR}/iql_true/q0/u50000/s0", f"{HC_MR}/iql_mlp/q100/u50000/s0",
                        f"{HC_MR}/iql_mlp/q500/u50000/s0", f"{HC_MR}/iql_pt/q500/u50000/s0",
                        f"{HC_MR}/cpl/q500/u1000/s0"]
    # --queries replaces every learned method's budgets
    keys = off.selected_keys(off.parse_args(["--queries", "50", "--seeds", "0",
                                             "--datasets", HC_MR]))
    assert [off.parse_key(k)["queries"] for k in keys] == [0, 50, 50, 50]


def test_every_run_of_the_grid_passes_config_validation(off):
    for key in off.selected_keys(off.parse_args(["--seeds", "0"])):
        config = off.key_config(key)
        k = off.parse_key(key)
        assert config.offline.updates == k["updates"]
        assert config.offline.eval_every * off.EVAL_POINTS == k["updates"]
        if k["method"] == "iql_pt":
            assert config.feedback.method == "uniform"  # the transformer refuses disagreement
        if k["method"] == "cpl":
            assert config.cpl.bc_steps == 400 < config.offline.updates
        if k["method"] != "iql_true":
            assert config.feedback.total_budget == k["queries"]
            assert config.feedback.queries_per_round * off.ROUNDS == k["queries"]
            assert config.teacher.preset == "oracle"
        else:
            assert config.offline.reward == "true"


def test_the_transformer_with_disagreement_is_refused_by_the_config(off):
    from rewardlab.config import load_config

    overrides = [o if o != "feedback.method=uniform" else "feedback.method=disagreement"
                 for o in off.run_overrides(HC_MR, "iql_pt", 500, 10_000, 0)]
    with pytest.raises(Exception, match="disagreement"):
        load_config(None, overrides)


def test_bad_selections_are_refused_before_anything_runs(off):
    with pytest.raises(ValueError, match="--queries"):
        off.run_overrides(HC_MR, "iql_mlp", 0, 10_000, 0)
    with pytest.raises(ValueError, match="--updates"):
        off.run_overrides(HC_MR, "cpl", 500, 10, 0)
    with pytest.raises(SystemExit):
        off.parse_args(["--datasets", "HalfCheetah-v5"])


def test_dry_run_runs_nothing_and_shows_the_dataset_commands(off, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(off, "run_trial", lambda params: pytest.fail("ran a trial"))
    monkeypatch.setattr(off, "run_on_ray", lambda *a, **k: pytest.fail("started Ray"))
    monkeypatch.setattr(off.subprocess, "run", lambda *a, **k: pytest.fail("made a dataset"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert off.main(["--dry-run", "--make-datasets", "--seeds", "0",
                     "--records", str(tmp_path / "r.jsonl")]) == 0
    out = capsys.readouterr().out
    assert f"datasets under {tmp_path / 'minari'}" in out
    assert ("would run: rewardlab dataset make --env HalfCheetah-v5 --tiers "
            "medium-replay,medium-expert --version 1 --backbone sbx_sac --no-progress") in out
    assert ("would run: rewardlab dataset make --env Hopper-v5 --tiers medium-replay "
            "--version 1 --backbone crossq --no-progress") in out
    assert "20 runs selected, 0 done, 20 to run" in out


class FakeMake:
    """Stands in for ``subprocess.run`` of ``rewardlab dataset make``: each call waits until
    ``overlap`` calls are running at once (or a short timeout), the HalfCheetah one exits with
    ``code``; records the commands, envs, pinned cores and the most calls alive at once."""

    def __init__(self, code_of_cheetah: int = 0, overlap: int = 1):
        self.calls, self.alive, self.most = [], 0, 0
        self.code, self.overlap = code_of_cheetah, overlap
        self.lock = threading.Condition()

    def __call__(self, cmd, env, preexec_fn=None):
        pinned = getattr(preexec_fn, "args", (None, None))[1]
        with self.lock:
            self.calls.append((cmd, env, pinned))
            self.alive += 1
            self.most = max(self.most, self.alive)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.alive >= self.overlap, timeout=2)
            self.alive -= 1
        return types.SimpleNamespace(returncode=self.code if "HalfCheetah-v5" in cmd else 0)


def test_make_datasets_runs_one_make_per_env_with_the_datasets_path(off, tmp_path, monkeypatch):
    fake = FakeMake()
    monkeypatch.setattr(off.subprocess, "run", fake)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert off.make_datasets(list(off.DATASETS)) == 0
    calls = fake.calls
    assert [c[0][c[0].index("--env") + 1] for c in calls] == ["HalfCheetah-v5", "Hopper-v5",
                                                              "Walker2d-v5"]
    assert calls[0][0][3:7] == ["dataset", "make", "--env", "HalfCheetah-v5"]
    assert all(env["MINARI_DATASETS_PATH"] == str(tmp_path) for _, env, _ in calls)
    assert all(env["OMP_NUM_THREADS"] == "1" for _, env, _ in calls)
    assert fake.most == 1 and all(pin is None for *_, pin in calls)  # one at a time, unpinned


def test_make_datasets_in_parallel_pins_each_to_its_own_core(off, tmp_path, monkeypatch, capsys):
    if not hasattr(off.os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    monkeypatch.setattr(off.os, "sched_getaffinity", lambda pid: {0, 1})
    fake = FakeMake(code_of_cheetah=3, overlap=2)
    monkeypatch.setattr(off.subprocess, "run", fake)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert off.make_datasets(list(off.DATASETS), workers=2) == 3  # the failure is reported
    assert len(fake.calls) == 3 and fake.most == 2  # the others still ran, two at a time
    pins = [pin for *_, pin in fake.calls]
    assert sorted(map(min, pins[:2])) == [0, 1] and pins[2] in ({0}, {1})
    assert "failed with exit code 3" in capsys.readouterr().out


def test_missing_datasets_stop_the_script_before_any_run(off, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))  # empty: nothing made here
    monkeypatch.setattr(off, "run_trial", lambda params: pytest.fail("ran a trial"))
    assert off.main(["--datasets", HC_MR, "--seeds", "0", "--no-ray", "--no-write",
                     "--records", str(tmp_path / "r.jsonl")]) == 2
    assert "missing datasets: HalfCheetah-v5/medium-replay" in capsys.readouterr().out


def test_run_records_read_the_run_directory(off, tmp_path):
    key = off.run_key(HC_MR, "iql_mlp", 500, 10_000, 1)
    rows = [{"step": 0, "feedback/round": 0.0, "reward_model/heldout_accuracy": 0.7},
            {"step": 0, "feedback/round": 1.0, "reward_model/heldout_accuracy": 0.85,
             "reward_model/random_pair_accuracy": 0.8},
            {"step": 0, "eval/gold_return": -300.0, "eval/normalized_score": 1.0},
            {"step": 1000, "train/value_loss": 0.1},
            {"step": 10_000, "eval/gold_return": 3000.0, "eval/normalized_score": 40.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "summary.json").write_text(json.dumps({
        "steps": 10_000, "dataset": "rewardlab/halfcheetah/medium-replay-v1",
        "dataset_steps": 25_000, "env": "HalfCheetah-v5", "dataset_normalized_score": 20.0,
        "feedback": {"seconds": {"reward_training": 12.0}}, "interrupted": False}))
    out = off.run_records(key, tmp_path, wall_time_s=99.0)
    evals, done = out[:-1], out[-1]
    assert [(e["update"], e["gold_return"], e["normalized_score"]) for e in evals] == [
        (0, -300.0, 1.0), (10_000, 3000.0, 40.0)]
    assert all(e["step"] == e["update"] and e["attempt"] == done["attempt"] for e in evals)
    assert done["kind"] == "done" and done["wall_time_s"] == 99.0
    assert done["settings"] == off.planned_settings(key)
    assert done["reward_model"] == {"reward_model/heldout_accuracy": 0.85,
                                    "reward_model/random_pair_accuracy": 0.8}
    assert done["dataset_id"] == "rewardlab/halfcheetah/medium-replay-v1"
    assert done["dataset_fingerprint"] is None  # a summary written before it existed
    assert off.fe.reward_model_metrics(tmp_path / "absent.jsonl") == {}


def test_rows_carry_the_true_reward_reference_ratio_and_target(off, monkeypatch):
    exact_iqm(monkeypatch, off)
    recs = []
    for seed in range(3):
        recs += records(off, off.run_key(HC_MR, "iql_true", 0, 10_000, seed),
                        {0: 0.0, 10_000: 40.0}, f"a{seed}")
        recs += records(off, off.run_key(HC_MR, "iql_mlp", 500, 10_000, seed),
                        {10_000: 38.0}, f"b{seed}", accuracy=0.9)
        recs += records(off, off.run_key(HC_MR, "iql_pt", 500, 10_000, seed),
                        {10_000: 30.0 + seed}, f"c{seed}")
        recs += records(off, off.run_key(HC_MR, "cpl", 500, 1_000, seed),
                        {1_000: 20.0}, f"d{seed}")
    rows = {r["method"]: r for r in off.aggregate(recs, reps=10)}
    assert list(rows) == ["iql_true", "iql_mlp", "iql_pt", "cpl"]
    for r in rows.values():
        assert r["task"] == "HalfCheetah-v5" and r["dataset"] == HC_MR
        assert r["seeds"] == [0, 1, 2] and r["true_reward_reference"] == 40.0
        for field in ("queries", "normalized_score_iqm", "ci_low", "ci_high"):
            assert field in r
    assert rows["iql_true"]["ratio_to_true"] == 1.0 and rows["iql_true"]["target"] is None
    assert rows["iql_mlp"]["ratio_to_true"] == pytest.approx(0.95)
    assert rows["iql_mlp"]["meets_target"] is True and rows["iql_mlp"]["heldout_accuracy"] == 0.9
    assert rows["iql_pt"]["normalized_score_iqm"] == pytest.approx(31.0)
    assert rows["iql_pt"]["meets_target"] is False  # 31 / 40 < 0.90
    assert rows["cpl"]["ratio_to_true"] == 0.5 and rows["cpl"]["target"] is None
    assert off.winners(list(rows.values())) == {HC_MR: "iql_mlp"}
    text = off.render_section({
        "command": "python benchmarks/offline.py", "written_utc": "now",
        "machine": {"cpu": "cpu", "cpu_count": 2, "torch": "2"}, "runner": "ray", "workers": 2,
        "runs_completed": 12, "runs_selected": 100, "jsonl": "r.jsonl",
        "selection": {"datasets": [HC_MR], "methods": list(off.METHODS), "seeds": [0, 1, 2],
                      "updates": 10_000, "cpl_updates": 1_000},
        "grid_complete": off.grid_complete(list(rows.values())), "rows": list(rows.values()),
        "notes": off.NOTES})
    begin, end = off.core.section_markers("offline")
    assert text.startswith(begin) and text.endswith(end)
    assert "- Command: `python benchmarks/offline.py`" in text
    assert "Not the issue's full grid yet" in text
    assert "| meets >= 0.90 |" in text and "| misses >= 0.90 |" in text


def test_runs_on_two_generations_of_a_dataset_are_named(off, monkeypatch):
    exact_iqm(monkeypatch, off)
    recs = []
    for seed, (steps, score) in enumerate([(45_000, 12.8647182), (45_000, 12.8647182),
                                           (44_000, 11.5)]):
        for method, q in (("iql_true", 0), ("iql_mlp", 500)):
            run = records(off, off.run_key(HC_MR, method, q, 10_000, seed), {10_000: 40.0},
                          f"{method}{seed}")
            run[-1].update(dataset_steps=steps, dataset_normalized_score=score)
            recs += run
    rows = off.aggregate(recs, reps=10)
    assert rows[0]["dataset_generations"] == {
        "44000 steps, behaviour score 11.500000": [2],
        "45000 steps, behaviour score 12.864718": [0, 1]}
    note = off.generations_note(rows)
    assert note.startswith(f"Datasets made again: the runs of {HC_MR} used 2 generations")
    assert "44000 steps, behaviour score 11.500000 (seeds 2)" in note
    assert "(seeds 0, 1)" in note
    one = [r for r in recs if r.get("seed") != 2]
    assert off.generations_note(off.aggregate(one, reps=10)) is None


def test_runs_on_another_generation_than_this_machines_run_again(off, monkeypatch, tmp_path,
                                                                 capsys):
    recs = []
    for seed, steps in ((0, 30_000), (1, 55_000)):
        for method, q in (("iql_true", 0), ("iql_mlp", 500)):
            run = records(off, off.run_key(HC_MR, method, q, 10_000, seed), {10_000: 40.0},
                          f"{method}{seed}")
            run[-1].update(dataset_steps=steps, dataset_normalized_score=17.1)
            recs += run
    here = "55000 steps, behaviour score 17.100000"
    current = off.fe.current_runs(recs, off.planned_settings)
    keys = list(current)
    asked = []
    got = off.other_generation_runs(keys, current, lambda d: asked.append(d) or here)
    assert got == {off.run_key(HC_MR, m, q, 10_000, 0): "30000 steps, behaviour score 17.100000"
                   for m, q in (("iql_true", 0), ("iql_mlp", 500))}
    assert asked == [HC_MR]  # the local dataset is read once
    # through main: only the seed on the other generation runs again
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.setattr(off, "local_generation", lambda d: here)
    assert off.main(["--datasets", HC_MR, "--methods", "iql_true", "iql_mlp", "--queries", "500",
                     "--seeds", "0", "1", "--updates", "10000", "--records", str(jsonl),
                     "--rerun-other-generations", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("[done on another generation (30000 steps") == 2
    assert "4 runs selected, 2 done, 2 to run" in out


def test_no_reference_no_ratio(off, monkeypatch):
    exact_iqm(monkeypatch, off)
    recs = records(off, off.run_key(HC_MR, "iql_mlp", 500, 10_000, 0), {10_000: 38.0}, "a")
    (row,) = off.aggregate(recs, reps=10)
    assert row["true_reward_reference"] is None and row["ratio_to_true"] is None
    assert row["meets_target"] is None


def test_main_skips_finished_runs_reruns_unfinished_and_writes(off, tmp_path, monkeypatch):
    exact_iqm(monkeypatch, off)
    true_key = off.run_key(HC_MR, "iql_true", 0, 100, 0)
    crashed = off.run_key(HC_MR, "iql_mlp", 20, 100, 0)
    stale = off.run_key(HC_MR, "iql_pt", 20, 100, 0)
    jsonl = tmp_path / "runs.jsonl"
    old_stale = records(off, stale, {100: 5.0}, "old")
    old_stale[-1]["settings"]["iql"]["expectile"] = 0.9  # made with another default
    off.fe.append_records(jsonl, records(off, true_key, {100: 50.0}, "old")
                          + records(off, crashed, {25: 1.0}, "old", done=False) + old_stale)
    executed = []

    def fake_execute(key, out_dir):
        executed.append(key)
        return records(off, key, {100: 45.0}, "new")

    monkeypatch.setattr(off, "execute", fake_execute)
    monkeypatch.setattr(off, "missing_datasets", lambda datasets: [])
    monkeypatch.setattr(off.core, "claim_core", lambda: None)  # leave pytest's affinity alone
    monkeypatch.setattr(off, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(off.core, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    argv = ["--datasets", HC_MR, "--methods", "iql_true", "iql_mlp", "iql_pt",
            "--queries", "20", "--seeds", "0", "--updates", "100", "--no-ray",
            "--out-dir", str(tmp_path / "out"), "--records", str(jsonl)]
    assert off.main(argv) == 0
    assert executed == [crashed, stale]
    assert off.main(argv) == 0  # nothing left to run
    assert executed == [crashed, stale]
    result = json.loads((tmp_path / "results" / "offline.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["iql_pt"]["normalized_score_iqm"] == 45.0  # the stale attempt is left out
    assert rows["iql_mlp"]["ratio_to_true"] == pytest.approx(0.9)
    assert result["command"].startswith("python benchmarks/offline.py --datasets")
    assert "cpu" in result["machine"] and result["written_utc"].endswith("UTC")
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert md.count("<!-- offline:begin -->") == 1 and result["command"] in md


def test_trial_appends_its_records_and_survives_a_failure(off, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(off.core, "claim_core", lambda: None)
    key = off.run_key(HC_MR, "iql_true", 0, 100, 0)
    jsonl = tmp_path / "r.jsonl"
    params = {"key": key, "out_dir": str(tmp_path), "records": str(jsonl)}
    monkeypatch.setattr(off, "execute", lambda k, d: records(off, k, {100: 3.0}, "x"))
    assert off.run_trial(params)["kind"] == "done"
    assert len(off.fe.read_records(jsonl)) == 2

    def boom(k, d):
        raise RuntimeError("diverged")

    monkeypatch.setattr(off, "execute", boom)
    assert off.run_trial(params) is None
    assert "FAILED" in capsys.readouterr().out and len(off.fe.read_records(jsonl)) == 2


def test_ray_trials_get_this_module_as_the_trainable(off, tmp_path, monkeypatch):
    import sys

    import rewardlab.algorithms.sweep as sweep

    seen = {}
    monkeypatch.setitem(sys.modules, "offline", off)
    monkeypatch.setattr(sweep, "run_on_ray", lambda fn, params, name, path, **kw: seen.update(
        fn=fn, params=params, kw=kw))
    off.run_on_ray(["a/b/iql_true/q0/u100/s0"], tmp_path, tmp_path / "r.jsonl", 2, None, "n")
    assert seen["fn"] is off.ray_trial and seen["kw"]["max_concurrent"] == 2
    assert seen["kw"]["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert seen["params"][0]["key"] == "a/b/iql_true/q0/u100/s0"


TINY = ("reward_model.hidden_sizes=[32, 32]", "iql.hidden_sizes=[32, 32]",
        "cpl.hidden_sizes=[32, 32]", "cpl.batch_size=16", "preference_transformer.embd_dim=16",
        "preference_transformer.pref_attn_dim=16", "preference_transformer.n_head=2",
        "preference_transformer.epochs=3", "eval.episodes=2")


@pytest.mark.e2e
def test_execute_trains_each_method_and_records_it(off, tmp_path, monkeypatch):
    """Each method of the grid, really trained (tiny nets, 100 updates, 40 queries) on a small
    generated Pendulum-v1 dataset under the benchmark's own dataset id, through execute."""
    from tests.helpers import pendulum_replay_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dataset = "Pendulum-v1/medium-replay"
    pendulum_replay_dataset(off.dataset_id(dataset))
    assert off.missing_datasets([dataset, "Hopper-v5/medium-replay"]) == [
        "Hopper-v5/medium-replay"]
    base = off.run_overrides
    monkeypatch.setattr(off, "run_overrides", lambda *a: [*base(*a), *TINY])
    for method in off.METHODS:
        key = off.run_key(dataset, method, 40, 100, 0)
        out = off.execute(key, tmp_path / "out")
        evals, done = out[:-1], out[-1]
        assert [e["update"] for e in evals] == [0, 25, 50, 75, 100], method
        assert all(e["normalized_score"] is not None for e in evals), method
        assert done["settings"] == off.planned_settings(key)
        assert done["dataset_id"] == off.dataset_id(dataset)
        if method in ("iql_mlp", "iql_pt"):
            assert 0 <= done["reward_model"]["reward_model/heldout_accuracy"] <= 1, method
        elif method == "iql_true":  # no fit: only the relabelling checks of the true reward
            assert "reward_model/heldout_accuracy" not in done["reward_model"]
    # iql_pt and cpl select uniformly from the same seeded generator: the same labelled pairs
    from rewardlab.store.store import FeedbackStore

    arrays = {}
    for method in ("iql_pt", "cpl"):
        run_dir = tmp_path / "out" / "runs" / off.run_key(dataset, method, 40, 100, 0).replace(
            "/", "_")
        with FeedbackStore.open(run_dir) as store:
            arrays[method] = store.records.training_arrays()
    assert len(arrays["cpl"]["labels"]) == 40
    for name in ("obs", "actions", "labels"):
        np.testing.assert_array_equal(arrays["iql_pt"][name], arrays["cpl"][name])


def test_compute_note_sums_the_measured_runs_and_projects_the_grid(off):
    hc, hop = "HalfCheetah-v5/medium-replay", "Hopper-v5/medium-replay"
    rows = [
        {"dataset": hc, "method": "iql_true", "queries": 0, "updates": off.IQL_UPDATES,
         "seeds": [0, 1], "wall_time_s": 600.0},
        {"dataset": hop, "method": "cpl", "queries": 500, "updates": off.CPL_UPDATES,
         "seeds": [0], "wall_time_s": 360.0},
        {"dataset": hop, "method": "iql_true", "queries": 0, "updates": 10_000,  # not the grid
         "seeds": [0], "wall_time_s": 3600.0},
    ]
    text = off.compute_note(rows)
    # measured: 2 x 600 + 360 + 3600 s = 1.43 h; projected: (600 + 360) x 5 seeds = 1.33 h
    assert "the 4 finished runs above took 1.4 CPU-hours" in text
    n_cells = sum(len(q) for q in off.METHOD_QUERIES.values()) * len(off.DATASETS)
    assert f"grid of {n_cells * len(off.FULL_SEEDS)} runs takes about 1.3 CPU-hours" in text
    assert f"({n_cells - 2} of its {n_cells} cells not timed yet, left out)" in text
    assert off.compute_note([{**rows[0], "wall_time_s": None}]) is None


def test_the_online_schedule_makes_no_offline_run_stale(off):
    key = off.run_key(HC_MR, "iql_mlp", 500, 10_000, 0)
    run = records(off, key, {10_000: 40.0}, "a")
    settings = json.loads(json.dumps(run[-1]["settings"]))
    assert "round_every" not in settings["feedback"]
    # a record written while the plan still listed the env-step schedule, with another value
    settings["feedback"].update(round_every=1500, first_round_at=2000)
    run[-1]["settings"] = settings
    assert key in off.fe.current_runs(run, off.planned_settings)
    # a setting the run reads still makes it stale
    settings["feedback"]["segment_len"] = 25
    assert key not in off.fe.current_runs(run, off.planned_settings)
