"""Config is the lowest layer: reading a config loads no heavy dependency."""

from __future__ import annotations

import subprocess
import sys

import yaml

HEAVY = ("torch", "sqlalchemy", "gymnasium", "stable_baselines3")


def test_importing_config_loads_no_heavy_dependency():
    code = (
        "import sys, rewardlab.config as c\n"
        "c.dump_config(c.build_config({}, ['teacher.preset=mistake', 'human.scripted=noisy']))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"rewardlab.config loaded {out.stdout.strip()}"


def test_section_configs_live_in_config():
    import rewardlab.config as config
    from rewardlab.feedback import teachers
    from rewardlab.rewards import model
    from rewardlab.store import schema
    from rewardlab.types import NAME_LENGTH

    for name in ("FeedbackSchedule", "RewardModelConfig", "TeacherConfig", "TeacherSettings",
                 "HumanConfig", "EnvConfig", "SACConfig", "PebbleConfig", "PPOConfig",
                 "EvalConfig", "MitigationConfig", "TrainConfig"):
        assert getattr(config, name).__module__ == "rewardlab.config", name
    # the modules that use them import the same objects
    assert model.RewardModelConfig is config.RewardModelConfig
    assert teachers.TeacherConfig is config.TeacherConfig
    assert teachers.TEACHER_PRESETS is config.TEACHER_PRESETS
    assert schema.NAME_LENGTH == NAME_LENGTH == 255


def test_a_saved_run_config_lacking_a_newer_key_keeps_what_the_run_did(tmp_path, monkeypatch):
    from rewardlab import config as cfg

    assert cfg.SAVED_RUN_DEFAULTS["reward_model.precision"] == "float32"
    # the mechanism, with a key whose default differs from what older runs did
    monkeypatch.setitem(cfg.SAVED_RUN_DEFAULTS, "reward_model.precision", "bfloat16")
    data = yaml.safe_load(cfg.dump_config(cfg.load_config(None)))
    del data["reward_model"]["precision"]  # a run saved before the field existed
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cfg.load_run_config(path).reward_model.precision == "bfloat16"
    assert cfg.load_config(path).reward_model.precision == "float32"  # a user's file: default
    path.write_text(cfg.dump_config(cfg.load_config(None)))
    assert cfg.load_run_config(path) == cfg.load_config(None)  # a full dump: as saved
