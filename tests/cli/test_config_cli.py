import re

import pytest

from rewardlab.cli.main import main
from rewardlab.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("total_stepz=10", "total_stepz"),
        ("reward_model.members=0", "reward_model.members"),
        ("feedback.method=random", "feedback.method"),
        ("algorithm=dqn", "algorithm"),
        ("teacher.preset=grumpy", "teacher"),
        ("teacher.gamma=1.5", "teacher.gamma"),
        ("eval.episodes=-1", "eval.episodes"),
    ],
)
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, [override])


def test_literal_errors_list_allowed_values():
    with pytest.raises(ConfigError, match="'uniform', 'disagreement' or 'entropy'"):
        load_config(None, ["feedback.method=random"])


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  id: Hopper-v5\nteacher:\n  preset: mistake\n")
    cfg = load_config(path, ["seed=3", "teacher.beta=inf"])
    assert cfg.env.id == "Hopper-v5" and cfg.seed == 3
    assert cfg.teacher.build().eps_mistake == pytest.approx(0.1)


def test_missing_or_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_cli_refuses_bad_config_before_starting(tmp_path, capsys):
    code = main(["train", "--set", "feedback.total_budget=abc", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "feedback.total_budget" in err
    assert not (tmp_path / "r").exists()


def test_cli_config_prints_resolved_yaml(capsys):
    assert main(["config", "--set", "seed=9"]) == 0
    assert "seed: 9" in capsys.readouterr().out


def test_unknown_env_is_reported_before_training(tmp_path, capsys):
    code = main(["train", "--set", "env.id=NoSuchEnv-v9", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "env.id" in capsys.readouterr().err


def test_discrete_env_is_refused_with_a_reason(tmp_path, capsys):
    code = main(["train", "--set", "env.id=CartPole-v1", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "Box" in capsys.readouterr().err


def test_annotators_add_prints_a_login_link(tmp_path, capsys):
    from rewardlab.store.store import FeedbackStore

    FeedbackStore.open(tmp_path).close()
    assert main(["annotators", "add", "ada", "--run", str(tmp_path), "--port", "8123"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("http://127.0.0.1:8123/?token=")
    token = out.strip().split("token=", 1)[1]
    with FeedbackStore.open(tmp_path) as store:
        assert store.annotation.annotator_for_token(token)[1] == "ada"
    assert main(["annotators", "add", "ada", "--run", str(tmp_path)]) == 2  # name taken
    assert main(["annotate", str(tmp_path), "--overlap", "0"]) == 2


def test_report_shows_annotator_agreement(tmp_path, capsys):
    import json

    import numpy as np

    from rewardlab.store.store import FeedbackStore
    from rewardlab.types import Label, Preference, Segment

    seg = Segment(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(3), "PointGoal-v0", 0, 0)
    with FeedbackStore.open(tmp_path) as store:
        a, b = store.records.add_segments([seg, seg])
        q1, q2 = store.records.add_queries([(a, b), (b, a)], round=0)
        store.records.add_preferences([
            Preference(q1, Label.LEFT, "ada"), Preference(q1, Label.LEFT, "bo"),
            Preference(q2, Label.LEFT, "ada"), Preference(q2, Label.RIGHT, "bo"),
        ])
    (tmp_path / "summary.json").write_text(json.dumps({
        "algorithm": "pebble", "env": "PointGoal-v0", "seed": 0, "steps": 0, "wall_time_s": 0.0,
    }))
    assert main(["report", str(tmp_path)]) == 0
    assert "annotator agreement: 1 of 2 overlapping queries agree (50%)" in capsys.readouterr().err


@pytest.mark.parametrize("overrides,message", [
    (["teacher=hum"], "or human: people answer in the web app"),
    (["human.scripted=human"], "human.scripted: must be a scripted preset"),
    (["human.on_timeout=later"], "human.on_timeout"),
    (["human.annotators=[' ada']"], "human.annotators: annotator name ' ada' has leading"),
    (["human.annotators=[ada, ada]"], "must differ"),
    (["human.annotators=[stochastic]", "human.scripted=noisy"], "'stochastic' is the id of a "
     "scripted teacher"),
    (["human.annotators=[ada, Oracle]"], "human.annotators: annotator name 'Oracle' is the id"),
    (["human.annotators=[noisy]"], "human.annotators: annotator name 'noisy' is the id"),
    (['human.annotators=["a\\tb"]'], "human.annotators: annotator name 'a\\tb' contains"),
    (['human.annotators=["a\\u200bb"]'], "U+200B"),
    (['human.annotators=["a\\x7fb"]'], "U+007F"),
    ([f"human.annotators=[{'x' * 256}]"], "at most 255"),
    (["human.port=70000"], "human.port"),
])
def test_bad_human_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_teacher_human_shorthand():
    config = load_config(None, ["teacher=human", "human.on_timeout=skip"])
    assert config.teacher.human and config.teacher.preset == "human"
    assert config.human.on_timeout == "skip" and not load_config(None, []).teacher.human


@pytest.mark.parametrize("name", ["oracle", "Skip", "myopic", "a\x00b", "a\x1bb", "a\u2028b"])
def test_annotators_add_refuses_reserved_and_control_names(tmp_path, capsys, name):
    from rewardlab.store.store import FeedbackStore

    FeedbackStore.open(tmp_path).close()
    assert main(["annotators", "add", name, "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "annotator name" in err and repr(name) in err
    with FeedbackStore.open(tmp_path) as store:
        assert store.annotation.annotators() == []


def test_train_refuses_an_annotator_named_like_a_teacher(tmp_path, capsys):
    run_dir = tmp_path / "r"
    code = main(["train", "--set", "teacher=human", "--set", "human.annotators=[ada, mistake]",
                 "--run-dir", str(run_dir)])
    assert code == 2
    err = capsys.readouterr().err
    assert "human.annotators" in err and "'mistake'" in err
    assert not run_dir.exists()
