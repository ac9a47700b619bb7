"""Every setting has exactly one default: the one `rewardlab config` shows is the one a run
gets, whichever other keys of its section are set."""

from __future__ import annotations

import json

import pytest
import yaml

from rewardlab.cli.main import main
from rewardlab.config import FeedbackSchedule, TrainConfig, build_config


def _shown(capsys, overrides=()) -> dict:
    argv = ["config"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def _sections(tree: dict, prefix: str = ""):
    """(dotted path, mapping) of every section (env.kwargs is a free mapping, not one)."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "env.kwargs":
            yield path, value
            yield from _sections(value, f"{path}.")


def _cases():
    defaults = yaml.safe_load(_dump_default())
    for path, section in _sections(defaults):
        for key, value in section.items():
            if not isinstance(value, dict) or f"{path}.{key}" == "env.kwargs":
                yield path, key, value


def _dump_default() -> str:
    from rewardlab.config import dump_config

    return dump_config(build_config())


def _get(tree: dict, path: str) -> dict:
    for part in path.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize(("section", "key", "value"), list(_cases()),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_setting_one_key_keeps_the_other_defaults(capsys, section, key, value):
    defaults = _shown(capsys)
    shown = _shown(capsys, [f"{section}.{key}={json.dumps(value)}"])
    assert _get(shown, section) == _get(defaults, section)


def test_round_every_default_is_the_run_default():
    assert FeedbackSchedule().round_every == TrainConfig().feedback.round_every == 2800
    assert build_config({}, ["feedback.total_budget=200"]).feedback == TrainConfig().feedback


def test_no_section_default_differs_from_its_class():
    config = TrainConfig()
    for name, field in TrainConfig.model_fields.items():
        value = getattr(config, name)
        if hasattr(value, "model_fields"):
            assert value == type(value)(), f"{name}: TrainConfig's default differs from its class"
            assert field.default_factory is type(value), name
