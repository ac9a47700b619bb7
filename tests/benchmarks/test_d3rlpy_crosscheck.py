"""benchmarks/d3rlpy_crosscheck.py without d3rlpy: the dataset export, the test, the table."""

from __future__ import annotations

import numpy as np
import pytest


def test_export_marks_terminals_and_cuts_every_other_episode_end_as_a_timeout(
        d3x, tmp_path, monkeypatch):
    import rewardlab.data.offline as data_offline
    from rewardlab.data.offline import OfflineDataset

    n = 7  # episodes: rows 0-2 (terminates), 3-4 (truncated), 5-6 (cut by the dataset's end)
    data = OfflineDataset(
        observations=np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        actions=np.zeros((n, 1), np.float32), next_observations=np.ones((n, 2), np.float32),
        rewards=np.arange(n, dtype=np.float32),
        terminations=np.array([0, 0, 1, 0, 0, 0, 0], bool),
        truncations=np.array([0, 0, 0, 0, 1, 0, 0], bool),
        episode_ids=np.array([0, 0, 0, 1, 1, 2, 2]), steps=np.array([0, 1, 2, 0, 1, 0, 1]),
        dataset_id="rewardlab/test/tiny-v0", env_id="Pendulum-v1", ref_min_score=-10.0,
        ref_max_score=30.0)
    monkeypatch.setattr(data_offline, "load_offline_dataset", lambda source: data)
    meta = d3x.export_d4rl_arrays("rewardlab/test/tiny-v0", tmp_path / "d.npz")
    a = np.load(tmp_path / "d.npz")
    assert a["terminals"].tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert a["timeouts"].tolist() == [0, 0, 0, 0, 1, 0, 1]
    np.testing.assert_array_equal(a["observations"], data.observations)
    np.testing.assert_array_equal(a["rewards"], data.rewards)
    assert a["terminals"].dtype == np.float32 and a["timeouts"].dtype == np.float32
    assert meta == {"fingerprint": data.fingerprint(), "steps": 7, "episodes": 3,
                    "ref_min_score": -10.0, "ref_max_score": 30.0}


def test_a_missing_dataset_is_a_clear_cli_error(d3x, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert d3x.main(["--dataset", "Walker2d-v5/medium-replay", "--no-write"]) == 2
    err = capsys.readouterr().err
    assert "--dataset Walker2d-v5/medium-replay" in err and "--make-datasets" in err


def test_score_policy_normalises_by_the_exported_reference_returns(d3x, monkeypatch):
    class Result:
        gold_returns = np.array([10.0, 30.0])

    class Env:
        def close(self):
            pass

    monkeypatch.setattr(d3x, "evaluation", lambda *a: (Env(), 7))
    import rewardlab.diagnostics.evaluation as ev
    monkeypatch.setattr(ev, "evaluate_episodes", lambda env, policy, n, seed: Result())
    out = d3x.score_policy(None, {"ref_min_score": -10.0, "ref_max_score": 30.0}, "d", "iql",
                           10, 0, 2)
    assert out == {"gold_return": 20.0, "normalized_score": pytest.approx(75.0)}


def test_permutation_p_is_exact_over_every_split(d3x):
    # 3 vs 3 fully separated: 2 of the 20 splits are as extreme (either direction)
    assert d3x.permutation_p([10.0, 11.0, 12.0], [1.0, 2.0, 3.0]) == pytest.approx(0.1)
    assert d3x.permutation_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert d3x.permutation_p([1.0], [2.0, 3.0]) is None
    # the floor the table's note states: 2 / C(2n, n)
    assert d3x.min_p_value(3) == pytest.approx(0.1)
    assert d3x.permutation_p([10.0, 11.0, 12.0, 13.0, 14.0], [1.0, 2.0, 3.0, 4.0, 5.0]) \
        == pytest.approx(d3x.min_p_value(5)) == pytest.approx(2 / 252)


def test_table_pairs_the_seeds_both_libraries_ran(d3x):
    def rec(lib, seed, score, wall=10.0):
        return {"library": lib, "algo": "iql", "dataset": "Hopper-v5/medium-replay",
                "updates": 100, "seed": seed, "normalized_score": score, "wall_time_s": wall}

    records = [rec("rewardlab", 0, 50.0), rec("rewardlab", 1, 60.0), rec("rewardlab", 2, 70.0),
               rec("d3rlpy", 0, 40.0, 20.0), rec("d3rlpy", 1, 44.0, 30.0)]
    (row,) = d3x.table_rows(records)
    assert row["seeds"] == [0, 1]
    assert row["rewardlab"]["scores"] == [50.0, 60.0]
    assert row["d3rlpy"]["mean"] == pytest.approx(42.0)
    assert row["d3rlpy"]["std"] == pytest.approx(np.std([40.0, 44.0], ddof=1))
    assert row["d3rlpy"]["wall_time_s"] == pytest.approx(25.0)
    assert row["p_value"] == d3x.permutation_p([50.0, 60.0], [40.0, 44.0])
    text = d3x.render_section({
        "rows": [row], "datasets": ["rewardlab/hopper/medium-replay-v1"], "episodes": 10,
        "command": "python benchmarks/d3rlpy_crosscheck.py", "written_utc": "now",
        "machine": {"cpu": "x", "cpu_count": 2, "torch": "t"}})
    assert "| Hopper-v5/medium-replay | iql | 100 | 0, 1 | 50.0, 60.0 | 55.0 ± 7.1 |" in text
    assert "2 seeds a side cannot go below 0.33" in text
    one = d3x.table_rows(records[:1] + records[3:4])
    assert "(none with fewer than 2 seeds a side)" in d3x.render_section({
        "rows": one, "datasets": ["d"], "episodes": 10, "command": "c", "written_utc": "now",
        "machine": {"cpu": "x", "cpu_count": 2, "torch": "t"}})


def test_rewardlab_overrides_validate(d3x):
    from rewardlab.config import load_config

    for algo in d3x.ALGOS:
        config = load_config(None, d3x.rewardlab_overrides(
            "rewardlab/hopper/medium-replay-v1", algo, 1000, 3, 4))
        assert (config.algorithm, config.offline.reward, config.seed) == (algo, "true", 3)
        assert (config.offline.updates, config.offline.eval_every, config.eval.episodes) == (
            1000, 1000, 4)
