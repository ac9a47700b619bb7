"""The offline sections of the config: iql | td3bc | cpl need a dataset, refuse what cannot
apply offline, and name the field and the fix; the dataset's env becomes the run's env."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rewardlab.algorithms.preflight import with_dataset_env
from rewardlab.cli.main import main
from rewardlab.config import build_config, dump_config
from rewardlab.errors import ConfigError
from tests.helpers import PENDULUM_DATASET, pendulum_replay_dataset

OFFLINE = ["algorithm=iql", "dataset=rewardlab/hopper/medium-replay-v0"]


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        build_config({}, overrides)
    return " ".join(str(info.value).split())


@pytest.mark.parametrize(("overrides", "needles"), [
    (["algorithm=iql"], ["dataset: algorithm=iql learns from a fixed dataset",
                         "rewardlab dataset make --env HalfCheetah-v5 --tiers medium-replay"]),
    (["algorithm=cpl"], ["dataset:", "rewardlab dataset make"]),
    (["dataset=rewardlab/hopper/medium-v0"], ["dataset: only the offline methods"]),
    (["algorithm=cpl", "dataset=a-v0", "offline.reward=true"],
     ["offline.reward: CPL learns from the labels"]),
    (["algorithm=cpl", "dataset=a-v0", "offline.updates=1000"],
     ["cpl.bc_steps (40000) must be below offline.updates (1000)"]),
    ([*OFFLINE, "offline.reward_model=transformer"],
     ["feedback.method: disagreement", "use feedback.method=entropy or uniform"]),
    ([*OFFLINE, "offline.reward_model=transformer", "feedback.method=entropy",
      "preference_transformer.max_len=10"],
     ["feedback.segment_len (50) exceeds preference_transformer.max_len (10)"]),
    ([*OFFLINE, "offline.reward_model=transformer", "feedback.method=entropy",
      "reward_model.unlabeled_ratio=10"],
     ["reward_model.unlabeled_ratio / crop_steps:", "offline.reward_model=mlp"]),
    ([*OFFLINE, "offline.reward_model=transformer", "feedback.method=entropy",
      "reward_model.lapse_rate=0.2"],
     ["reward_model.lapse_rate:", "offline.reward_model=mlp"]),
    ([*OFFLINE, "mitigation.early_stop=disagreement"], ["mitigation:", "offline"]),
    ([*OFFLINE, "feedback.recent_steps=100"], ["feedback.recent_steps:"]),
    ([*OFFLINE, "offline.updates=0"], ["offline.updates:"]),
    ([*OFFLINE, "offline.reward=gold"], ["offline.reward:", "'learned' or 'true'"]),
    ([*OFFLINE, "offline.reward_scale=0"], ["offline.reward_scale:"]),
    ([*OFFLINE, "dataset="], ["dataset:"]),
])
def test_bad_offline_settings_name_the_field(overrides, needles):
    message = _error(overrides)
    for needle in needles:
        assert needle in message, message


def test_offline_defaults_are_consistent():
    for algorithm in ("iql", "td3bc", "cpl"):
        config = build_config({}, [f"algorithm={algorithm}", "dataset=a/b-v0"])
        assert config.is_offline
    config = build_config({}, [*OFFLINE, "offline.reward=true"])  # YAML's true is the word
    assert config.offline.reward == "true"
    assert not build_config().is_offline and build_config().dataset is None


def test_iql_schedule_spans_the_run_unless_given():
    config = build_config({}, [*OFFLINE, "offline.updates=5000"])
    assert config.iql.total_updates == 5000
    again = build_config(yaml.safe_load(dump_config(config)))  # config.yaml round trip
    assert again.iql.total_updates == 5000 and again == config
    given = build_config({}, [*OFFLINE, "offline.updates=5000", "iql.total_updates=7000"])
    assert given.iql.total_updates == 7000
    online = build_config({}, ["offline.updates=5000"])
    assert online.iql.total_updates == 1_000_000


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_the_dataset_env_becomes_the_run_env(minari_root):
    pendulum_replay_dataset(episodes=2)
    config = with_dataset_env(build_config({}, ["algorithm=iql", f"dataset={PENDULUM_DATASET}"]))
    assert config.env.id == "Pendulum-v1"
    assert yaml.safe_load(dump_config(config))["env"]["id"] == "Pendulum-v1"  # config.yaml
    with pytest.raises(ConfigError, match="env.id: HalfCheetah-v5 differs from the env of"):
        with_dataset_env(build_config({}, ["algorithm=iql", f"dataset={PENDULUM_DATASET}",
                                           "env.id=HalfCheetah-v5"]))
    online = build_config()
    assert with_dataset_env(online) is online


def test_train_refuses_a_missing_dataset_before_creating_anything(minari_root, tmp_path,
                                                                  capsys):
    run = tmp_path / "run"
    code = main(["train", "--run-dir", str(run), "--set", "algorithm=iql", "--set",
                 "dataset=rewardlab/hopper/medium-replay-v0"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "dataset: offline dataset 'rewardlab/hopper/medium-replay-v0' is not on this" in err
    assert "rewardlab dataset make --env Hopper-v5 --tiers medium-replay" in err
    assert not run.exists()


def test_train_refuses_bad_offline_config_naming_the_field(minari_root, tmp_path, capsys):
    pendulum_replay_dataset(episodes=2)
    run = tmp_path / "run"
    for argv, needle in (
        (["--set", "algorithm=td3bc"], "dataset:"),
        (["--set", "algorithm=td3bc", "--set", f"dataset={PENDULUM_DATASET}", "--set",
          "env.id=Reacher-v5"], "env.id: Reacher-v5 differs"),
        (["--set", "algorithm=iql", "--set", f"dataset={PENDULUM_DATASET}", "--set",
          "feedback.segment_len=500"], "feedback.segment_len (500) is longer than an episode"),
        (["--set", "algorithm=iql", "--set", f"dataset={PENDULUM_DATASET}", "--set",
          "offline.eval_every=-1"], "offline.eval_every"),
    ):
        assert main(["train", "--run-dir", str(run), *argv]) == 2, argv
        err = " ".join(capsys.readouterr().err.split())
        assert needle in err and "Traceback" not in err, (argv, err)
        assert not run.exists()


def test_config_prints_the_offline_sections(capsys):
    assert main(["config", "--set", "algorithm=cpl", "--set", "dataset=a/b-v0"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["algorithm"] == "cpl" and shown["dataset"] == "a/b-v0"
    for section in ("offline", "iql", "td3bc", "cpl", "preference_transformer"):
        assert isinstance(shown[section], dict), section
    assert shown["offline"]["updates"] == 100_000 and shown["offline"]["reward"] == "learned"
