"""benchmarks/core.py's run records: a finished run outlives its directory, but only for the
config it was made with."""

from __future__ import annotations

import json
from pathlib import Path


def _record(core, job, config_overrides: list[str], row: dict) -> dict:
    from rewardlab.config import load_config

    config = load_config(None, config_overrides).model_dump(mode="json")
    return {"kind": "done", "run": job.name, "part": job.part, "method": job.method,
            "seed": job.seed, "config": config, "row": row}


def _jobs(core, tmp_path: Path, seeds=(0,)):
    return {j.name: j for j in core.make_jobs(["default"], list(seeds), tmp_path, smoke=False)}


def test_a_recorded_run_with_the_same_config_is_reused(core, tmp_path):
    jobs = _jobs(core, tmp_path)
    job = jobs["default/pebble-s0"]
    rec = _record(core, job, list(job.overrides), {"final_gold_return": 1.0})
    assert core.recorded_rows(list(jobs.values()), [rec]) == {
        "default/pebble-s0": {"final_gold_return": 1.0}}


def test_a_recorded_run_with_another_config_is_not(core, tmp_path):
    jobs = _jobs(core, tmp_path)
    pebble, true = jobs["default/pebble-s0"], jobs["default/true_reward-s0"]
    other_rm = [*pebble.overrides, "reward_model.lr=0.001"]
    other_seed = [o for o in pebble.overrides if not o.startswith("seed=")] + ["seed=7"]
    records = [_record(core, pebble, other_rm, {"x": 1}),
               _record(core, true, other_seed, {"x": 2})]
    assert core.recorded_rows(list(jobs.values()), records) == {}


def test_a_reference_run_ignores_sections_it_does_not_read(core, tmp_path):
    jobs = _jobs(core, tmp_path)
    true = jobs["default/true_reward-s0"]
    rec = _record(core, true, [*true.overrides, "reward_model.lr=0.001"], {"x": 3})
    assert core.recorded_rows(list(jobs.values()), [rec]) == {"default/true_reward-s0": {"x": 3}}


def test_the_latest_matching_record_counts_and_others_are_passed_over(core, tmp_path):
    jobs = _jobs(core, tmp_path)
    job = jobs["default/pebble-s0"]
    good = _record(core, job, list(job.overrides), {"x": 1})
    newer = _record(core, job, list(job.overrides), {"x": 2})
    assert core.recorded_rows([job], [good, newer]) == {job.name: {"x": 2}}
    broken = {**newer, "config": {**newer["config"], "total_steps": -5}}
    other = _record(core, job, [*job.overrides, "reward_model.lr=0.001"], {"x": 3})
    assert core.recorded_rows([job], [good, broken, other]) == {job.name: {"x": 1}}
    assert core.recorded_rows([job], [broken, other]) == {}


def test_append_record_writes_whole_lines(core, tmp_path):
    path = tmp_path / "sub" / "runs.jsonl"
    core.append_records(path, [{"run": "a"}])
    core.append_records(path, [{"run": "b"}, {"run": "c"}])
    assert [json.loads(line)["run"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_run_record_reads_the_run_config(core, tmp_path):
    from rewardlab.config import dump_config, load_config

    job = _jobs(core, tmp_path)["default/pebble-s0"]
    Path(job.run_dir).mkdir(parents=True)
    (Path(job.run_dir) / "config.yaml").write_text(dump_config(load_config(None,
                                                                           list(job.overrides))))
    rec = core.run_record(job, {"final_gold_return": 5.0})
    assert rec["run"] == "default/pebble-s0" and rec["row"] == {"final_gold_return": 5.0}
    assert core.recorded_rows([job], [rec]) == {job.name: {"final_gold_return": 5.0}}


def _table_record(core, machine: dict) -> dict:
    row = {"method": "pebble", "seed": 0, "env": "HalfCheetah-v5", "steps": 30000,
           "queries": 200, "wall_time_s": 400.0, "first_gold_return": -1.0,
           "first_eval_step": 0, "final_gold_return": 9.0, "final_eval_step": 30000,
           "final_proxy_return": 1.0, "finished_utc": "t", "machine": machine}
    return {"command": "c", "seeds": [0], "workers": 1, "written_utc": "w", "overrides": [],
            "runs": [row], "recorded_runs": 0, "aggregates": core.aggregate([row])}


def test_the_table_says_which_runs_were_recorded_and_where_each_ran(core):
    rec = _table_record(core, {"cpu": "AMD EPYC (avx2)", "cpu_count": 2, "torch": "2",
                               "python": "3", "platform": "p"})
    row = rec["runs"][0]
    rec.update(seeds=[0, 1], runs=[row, {**row, "seed": 1}], recorded_runs=1,
               aggregates=core.aggregate([row, {**row, "seed": 1}]))
    text = core.render_part("default", rec)
    assert "- Runs: 1 made by this invocation (1 at a time), 1 recorded by earlier ones" in text
    assert text.count("| AMD EPYC (avx2) |") == 2
    assert "runs in parallel" not in text
    assert "- Runs: all made by this invocation" in core.render_part(
        "default", {**rec, "recorded_runs": 0})


def test_a_directory_as_the_record_file_is_refused(core, tmp_path, capsys):
    assert core.main(["--part", "default", "--seeds", "0", "--out-dir", str(tmp_path / "o"),
                      "--records", str(tmp_path), "--no-write"]) == 2
    assert "--records" in capsys.readouterr().out


def test_set_adds_an_override_to_every_run_and_its_records_serve_the_default_later(
        core, tmp_path):
    plain = _jobs(core, tmp_path)
    ablation = {j.name: j for j in core.make_jobs(
        ["default"], [0], tmp_path, smoke=False, extra=("feedback.round_every=3000",))}
    pebble = ablation["default/pebble-s0"]
    assert pebble.overrides[-2:] == ("feedback.round_every=3000", "seed=0")
    rec = _record(core, pebble, list(pebble.overrides), {"x": 1})
    # the ablation's record is not the default's run, but is the ablation's
    assert core.recorded_rows(list(plain.values()), [rec]) == {}
    assert core.recorded_rows(list(ablation.values()), [rec]) == {"default/pebble-s0": {"x": 1}}
    # a true-reward reference does not read the feedback section: shared by both
    true = plain["default/true_reward-s0"]
    ref = _record(core, true, list(true.overrides), {"x": 2})
    assert core.recorded_rows(list(ablation.values()), [ref]) == {
        "default/true_reward-s0": {"x": 2}}


def test_a_bad_set_override_is_refused_before_any_run(core, tmp_path, capsys):
    assert core.main(["--part", "default", "--seeds", "0", "--out-dir", str(tmp_path / "o"),
                      "--set", "feedback.round_evry=2800"]) == 2
    out = capsys.readouterr().out
    assert "--set" in out and "feedback.round_evry" in out
    assert not (tmp_path / "o" / "default").exists()


def test_machine_info_records_the_numeric_libraries(core):
    import numpy as np

    info = core.machine_info()
    libs = info["libraries"]
    assert set(libs) == set(core.NUMERIC_LIBRARIES)
    assert libs["numpy"] == np.__version__
    assert all(v is None or isinstance(v, str) for v in libs.values())
    text = core.render_part("default", _table_record(
        core, {**info, "libraries": {"mujoco": "9.9", "jax": None}}))
    assert ", mujoco 9.9, Python" in text and "jax" not in text
    # records made before the libraries were recorded still render
    old = {k: v for k, v in info.items() if k != "libraries"}
    assert f"torch {info['torch']}, Python" in core.render_part("default", _table_record(core, old))
