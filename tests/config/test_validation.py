"""Bad values are refused at the config boundary with a message naming the dotted field."""

from __future__ import annotations

import re

import pytest

from rewardlab.cli.main import main
from rewardlab.config import MAX_STEPS, ConfigError, build_config, load_config


def _refused(overrides: list[str], *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        build_config({}, overrides)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ booleans are not numbers
@pytest.mark.parametrize("override", [
    "total_steps=true", "seed=false", "feedback.total_budget=true", "ppo.n_envs=true",
    "reward_model.lr=true", "pebble.sac.tau=false", "teacher.beta=true",
    "reward_model.hidden_sizes=[true, 64]", "human.port=true",
])
def test_booleans_are_not_numbers(override):
    field = override.split("=")[0]
    _refused([override], field, "boolean")


@pytest.mark.parametrize("override", [
    "progress_bar=1", "progress_bar=0", "ppo.use_sde=2", "record_render_states='true'",
    "reward_model.normalize=1.0",
])
def test_numbers_and_strings_are_not_booleans(override):
    _refused([override], override.split("=")[0], "true or false")


# ------------------------------------------------------------------ integers
@pytest.mark.parametrize(("text", "value"), [
    ("1e4", 10_000), ("1.0e4", 10_000), ("20000.0", 20_000), ("2E+4", 20_000),
])
def test_integral_floats_are_accepted_for_integers(text, value):
    assert build_config({}, [f"total_steps={text}"]).total_steps == value


@pytest.mark.parametrize("text", ["1.5", "1e-3", "2.55e1"])
def test_fractional_numbers_are_refused_for_integers(text):
    _refused([f"total_steps={text}"], "total_steps", "expected an integer")


# ------------------------------------------------------------------ infinities and NaN
@pytest.mark.parametrize("field", [
    "reward_model.lr", "reward_model.weight_decay", "reward_model.k_std", "ppo.learning_rate",
    "ppo.clip_range", "ppo.ent_coef", "pebble.sac.learning_rate", "human.timeout_s",
    "mitigation.reg_coef", "mitigation.early_stop_ratio", "teacher.eps_skip",
    "teacher.eps_equal", "total_steps", "eval.every",
])
@pytest.mark.parametrize("value", ["inf", ".inf", "-.inf", ".nan", "nan"])
def test_infinities_and_nan_are_refused(field, value):
    _refused([f"{field}={value}"], field)


def test_teacher_beta_inf_means_rational_but_nan_is_refused():
    assert build_config({}, ["teacher.beta=inf"]).teacher.build().rational
    assert build_config({}, ["teacher.beta=.inf"]).teacher.build().rational
    _refused(["teacher.beta=.nan"], "teacher.beta")
    _refused(["teacher.beta=-.inf"], "teacher.beta")


# ------------------------------------------------------------------ static limits
@pytest.mark.parametrize(("override", "limit"), [
    (f"total_steps={MAX_STEPS + 1}", "no run that long could finish"),
    ("total_steps=1e12", "no run that long could finish"),
    ("checkpoint_every=1e10", "no run that long"),
    ("log_capacity=1e10", "no run that long"),
    ("pebble.sac.buffer_size=1e10", "no run that long"),
    ("reward_model.hidden_sizes=[100000]", "widest layer"),
    ("pebble.sac.net_arch=[256, 1000000]", "widest layer"),
    ("ppo.n_envs=100000", "parallel environments"),
    ("eval.episodes=1e9", "evaluation episodes"),
    ("human.timeout_s=1e12", "on_timeout=wait"),
    ("seed=1e30", ""),
    ("reward_model.members=1000", ""),
])
def test_values_too_large_are_refused_naming_the_limit(override, limit):
    _refused([override], override.split("=")[0], limit)


def test_cross_field_checks_name_both_fields():
    _refused(["feedback.recent_steps=10"], "feedback.recent_steps", "feedback.segment_len")
    _refused(["pebble.knn_k=600"], "pebble.knn_k", "pebble.intrinsic_relabel_every")
    _refused(["log_capacity=100", "feedback.segment_len=200"], "feedback.segment_len",
             "log_capacity")
    _refused(["ppo.n_steps=1", "ppo.n_envs=1"], "ppo.n_steps", "ppo.n_envs")
    _refused(["feedback.queries_per_round=300"], "feedback.queries_per_round",
             "feedback.total_budget")
    _refused(["reward_model.crop_steps=25", "feedback.segment_len=50"],
             "reward_model.crop_steps (25)", "lower crop_steps below 25")


def test_store_url_must_look_like_a_url():
    _refused(["store_url=feedback.db"], "store_url", "sqlite:///")
    assert build_config({}, ["store_url=sqlite:///x.db"]).store_url == "sqlite:///x.db"


# ------------------------------------------------------------------ --set
@pytest.mark.parametrize(("override", "needle"), [
    ("total_steps.x=1", "total_steps is a setting, not a section"),
    ("feedback.total_budget.max=3", "feedback.total_budget is a setting"),
    ("pebble.sac.gamma.x=1", "pebble.sac.gamma is a setting"),
    ("feedback..total_budget=3", "empty key"),
    ("=3", "empty key"),
    ("total_steps", "expected key=value"),
    ("env.id=[1,", "not valid YAML"),
    ("teacher={preset: oracle, preset: mistake}", "duplicate key 'preset'"),
])
def test_bad_overrides_are_named(override, needle):
    _refused([override], needle)


def test_set_under_a_file_value_that_is_not_a_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("feedback: 3\n")
    with pytest.raises(ConfigError, match="feedback is 3 in the config file"):
        load_config(path, ["feedback.total_budget=10"])


def test_set_extends_the_teacher_shorthand_of_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("teacher: mistake\n")
    config = load_config(path, ["teacher.eps_mistake=0.2"])
    assert config.teacher.preset == "mistake" and config.teacher.eps_mistake == 0.2


def test_free_mappings_take_nested_keys():
    assert build_config({}, ["env.kwargs.a.b=1"]).env.kwargs == {"a": {"b": 1}}


def test_overrides_do_not_write_into_the_callers_dict():
    data = {"feedback": {"total_budget": 100}}
    build_config(data, ["feedback.queries_per_round=10"])
    assert data == {"feedback": {"total_budget": 100}}


# ------------------------------------------------------------------ YAML files
def test_empty_file_is_refused_naming_it(tmp_path):
    for text in ("", "\n\n", "# only a comment\n", "~\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(f"config file {path}: empty")) as info:
            load_config(path)
        assert "delete it" in str(info.value)


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\nfeedback:\n  total_budget: 100\n  total_budget: 50\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"config file {path}, line 4" in msg and "duplicate key 'total_budget'" in msg
    assert "line 3" in msg
    path.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match="line 2: duplicate key 'seed'"):
        load_config(path)


def test_non_utf8_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 1\nenv:\n  id: Caf\u00e9-v0\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"line 3: not UTF-8 text \(byte 0xe9\)"):
        load_config(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"seed: 1\x00\x01\n")
    with pytest.raises(ConfigError, match="binary.yaml"):
        load_config(binary)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\nfeedback: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d"):
        load_config(path)


def test_exponent_floats_in_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("total_steps: 2e4\nreward_model:\n  lr: 1e-3\n")
    config = load_config(path)
    assert config.total_steps == 20_000 and config.reward_model.lr == 0.001


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["", "seed: 1\nseed: 2\n", "[1, 2]\n"])
def test_cli_reports_bad_files_without_traceback(tmp_path, capsys, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path.name) in err and "Traceback" not in err
