"""`rewardlab sweep`: a 2 x 2 grid of overrides x seeds on a local Ray Tune, each trial a run."""

from __future__ import annotations

import json

import pytest
import yaml

from rewardlab.algorithms.sweep import trial_specs
from rewardlab.cli.main import main
from rewardlab.config import SweepConfig, load_sweep
from rewardlab.store.store import FeedbackStore
from tests.helpers import fast_overrides


def _sweep_file(tmp_path, **extra):
    base = {}
    for item in fast_overrides("pebble", 1100):  # rounds at 500 and 1000
        key, _, value = item.partition("=")
        node = base
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    base["feedback"]["total_budget"] = 20
    spec = {"name": "tiny", "base": base, "grid": {"feedback.queries_per_round": [10, 20]},
            "seeds": [0, 1], "max_concurrent": 2, **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_trials_are_grid_points_times_seeds(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path))
    names = [s["name"] for s in trial_specs(sweep)]
    assert names == ["feedback.queries_per_round=10,seed=0", "feedback.queries_per_round=10,seed=1",
                     "feedback.queries_per_round=20,seed=0", "feedback.queries_per_round=20,seed=1"]


@pytest.mark.parametrize("bad, field", [
    ({"grid": {"feedback.queries_per_round": []}}, "grid.feedback.queries_per_round"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"grid": {"feedback.queries_per_round": [10, "many"]}}, "feedback.queries_per_round"),
])
def test_bad_sweeps_are_refused_before_anything_starts(tmp_path, capsys, bad, field):
    path = _sweep_file(tmp_path, **bad)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_trial_train_would_refuse_stops_the_sweep_before_anything_starts(tmp_path, capsys):
    # rounds of 10 queries at 500 and 1000 < 1100 steps: a budget of 20 fits, 40 does not
    spec = yaml.safe_load(_sweep_file(tmp_path).read_text())
    spec["base"]["feedback"]["queries_per_round"] = 10
    spec["grid"] = {"feedback.total_budget": [20, 40]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sweep trial feedback.total_budget=40,seed=0" in err
    assert "only 20 of the 40 queries" in err and "raise total_steps" in err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "out").write_text("not a directory")
    assert main(["sweep", str(_sweep_file(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    assert "--out" in capsys.readouterr().err


def test_sweep_without_anything_to_vary_is_one_trial_per_seed():
    assert len(trial_specs(SweepConfig(seeds=(3, 4)))) == 2


@pytest.mark.e2e
def test_two_by_two_sweep_runs_on_a_local_ray_and_resumes(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    path = _sweep_file(tmp_path)
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["seed"] for r in records} == {0, 1}
    for r in records:
        assert r["steps"] == 1100 and r["final_gold_return"] is not None
        with FeedbackStore.open(r["run_dir"]) as store:  # an ordinary run directory
            assert store.summary.counts()["answered"] == 20
    err = capsys.readouterr().err
    assert "4 trials, 0 already finished" in err
    # a second call finds every trial finished and runs nothing
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert "4 trials, 4 already finished" in capsys.readouterr().err
