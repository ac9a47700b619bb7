"""`rewardlab train` checks the config against its env and this machine before anything starts:
a refused run leaves no run directory and no database file behind."""

from __future__ import annotations

import importlib

import pytest

from rewardlab.cli.main import main
from rewardlab.config import ConfigError, build_config

# the module (rewardlab.algorithms exports the function under the same name)
pf = importlib.import_module("rewardlab.algorithms.preflight")

POINT = "rewardlab.envs.toy:PointGoal-v0"


def _train(tmp_path, capsys, *overrides: str, resume=None) -> tuple[int, str]:
    argv = ["train", "--resume", str(resume)] if resume else [
        "train", "--run-dir", str(tmp_path / "run")]
    for o in overrides:
        argv += ["--set", o]
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if resume is None:
        assert not (tmp_path / "run").exists(), "a refused run left its run directory"
    return code, err


def test_defaults_pass_the_preflight():
    dims = pf.preflight(build_config())
    assert dims.obs_dim > 0 and dims.act_dim > 0 and dims.episode_limit == 1000  # HalfCheetah
    pf.preflight(build_config({}, ["algorithm=pref_ppo"]))


@pytest.mark.parametrize("env_id", ["nosuchmodule:Env-v0", "rewardlab.envs.toy:Nope-v0",
                                    "NoSuchEnv-v9", "CartPole-v1"])
def test_bad_env_ids_are_named(tmp_path, capsys, env_id):
    code, err = _train(tmp_path, capsys, f"env.id={env_id}")
    assert code == 2 and "env.id" in err


def test_env_kwargs_the_env_rejects_are_named(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, "env.kwargs.no_such_kwarg=1")
    assert code == 2 and "env.kwargs" in err


def test_segment_longer_than_an_episode_names_both_fields(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, "env.id=Reacher-v5",  # 50-step episodes
                       "feedback.segment_len=60")
    assert code == 2
    assert "feedback.segment_len" in err and "env.max_episode_steps" in err
    pf.preflight(build_config({}, ["env.id=Reacher-v5", "feedback.segment_len=60",
                                   "env.max_episode_steps=100"]))


@pytest.mark.parametrize(("overrides", "asked"), [
    (["total_steps=5000"], "only 40 of the 200 queries"),
    (["feedback.first_round_at=30000", "total_steps=30000"], "only 0 of the 200"),
    (["algorithm=pref_ppo", "total_steps=10000"], "only 60 of the 200"),
    (["total_steps=27200"], "only 180 of the 200"),
])
def test_unspendable_query_budget_is_refused(tmp_path, capsys, overrides, asked):
    code, err = _train(tmp_path, capsys, *overrides)
    err = " ".join(err.split())  # rich wraps long lines
    assert code == 2
    assert "feedback.total_budget" in err and asked in err
    assert "raise total_steps to at least" in err and "feedback.round_every" in err


def test_schedule_fit_matches_the_training_loops():
    # PEBBLE: rounds due at 2000, 4800, ..., 27200 < total_steps
    assert pf.schedule_fit(build_config({}, ["total_steps=27201"])).rounds == 10
    assert pf.schedule_fit(build_config({}, ["total_steps=27200"])).rounds == 9
    # PPO: rounds due at 2000 + 2800 r happen at the next rollout boundary (2048 steps);
    # the 10th, due at 27200, at 28672
    fit = pf.schedule_fit(build_config({}, ["algorithm=pref_ppo"]))
    assert (fit.first, fit.spacing, fit.rounds) == (2048, 4096, 10)
    assert fit.total_steps_needed == 28672 + 1
    pf.check_schedule(build_config({}, ["algorithm=pref_ppo"]))


def test_targeted_feedback_spreads_rounds_within_the_run():
    config = build_config({}, ["mitigation.targeted_feedback=true", "algorithm=pref_ppo",
                               "total_steps=40000"])
    fit = pf.schedule_fit(config)
    assert fit.rounds == fit.needed and fit.every > config.feedback.round_every


@pytest.mark.parametrize(("override", "field"), [
    ("pebble.sac.buffer_size=1000000000", "pebble.sac.buffer_size"),
    ("log_capacity=1000000000", "log_capacity"),
    ("reward_model.hidden_sizes=[65536, 65536, 65536]", "reward_model.hidden_sizes"),
    ("pebble.sac.net_arch=[65536, 65536]", "pebble.sac.net_arch"),
])
def test_runs_too_big_for_memory_name_the_field(tmp_path, capsys, monkeypatch, override, field):
    monkeypatch.setattr(pf, "available_memory", lambda: 8 * 2**30)
    code, err = _train(tmp_path, capsys, override)
    err = " ".join(err.split())
    assert code == 2 and f"{field}:" in err and "8.0 GiB available" in err
    assert f"lower {field}" in err


def test_memory_message_says_how_much_fits():
    config = build_config({}, ["pebble.sac.buffer_size=100000000"])
    dims = pf.preflight(build_config())
    with pytest.raises(ConfigError, match=r"lower pebble\.sac\.buffer_size \(about \d+ fits\)"):
        pf.check_memory(config, dims, available=4 * 2**30)
    pf.check_memory(build_config(), dims, available=4 * 2**30)


def test_available_memory_reads_this_machine():
    avail = pf.available_memory()
    assert avail is None or avail > 0


@pytest.mark.parametrize(("url", "needle"), [
    ("sqlite:////no/such/dir/feedback.db", "does not exist"),
    ("sqlite://", "in-memory"),
    ("nosuchdialect://host/db", "unknown database dialect"),
    ("postgresql+nosuchdriver://u@localhost/db", "unknown database dialect"),
    ("postgresql+pg8000://u@localhost/db", "pg8000"),
    ("postgresql+psycopg://u@127.0.0.1:1/run42", "cannot connect"),
    ("postgresql+psycopg://u@[::1:1/run42", "store_url"),
])
def test_bad_store_urls_are_refused_leaving_nothing_behind(tmp_path, capsys, url, needle):
    pytest.importorskip("psycopg") if "psycopg" in url else None
    code, err = _train(tmp_path, capsys, f"store_url={url}")
    err = " ".join(err.split())
    assert code == 2 and "store_url" in err and needle in err, err


def test_sqlite_store_file_is_not_created_by_the_check(tmp_path):
    db = tmp_path / "store" / "feedback.db"
    db.parent.mkdir()
    pf.check_store_url(f"sqlite:///{db}")
    assert not db.exists()
    with pytest.raises(ConfigError, match="names the directory"):
        pf.check_store_url(f"sqlite:///{db.parent}")


def test_resume_with_overrides_is_preflighted(tmp_path, capsys):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(f"env:\n  id: {POINT}\n")
    code, err = _train(tmp_path, capsys, "feedback.segment_len=1000", resume=run)
    assert code == 2 and "feedback.segment_len" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["train", "--run-dir", str(path)]) == 2
    assert "not a directory" in capsys.readouterr().err
