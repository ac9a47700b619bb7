"""The ``lm`` config section and the language-model algorithms' validation: errors name the
field and say what to do."""

from __future__ import annotations

import pytest

from rewardlab.cli.main import main
from rewardlab.config import (
    LM_FEEDBACK_DEFAULTS,
    LMConfig,
    dump_config,
    load_config,
    load_run_config,
)
from rewardlab.errors import ConfigError


def test_lm_defaults_and_feedback_defaults_for_lm_runs(tmp_path):
    config = load_config(None, ["algorithm=grpo", "lm.task=sentiment"])
    assert config.is_lm and not config.is_offline and config.lm == LMConfig()
    for key, value in LM_FEEDBACK_DEFAULTS.items():
        assert getattr(config.feedback, key) == value
    # a given feedback key wins; the others keep the LM defaults
    given = load_config(None, ["algorithm=rloo", "feedback.total_budget=30",
                               "feedback.queries_per_round=10"])
    assert given.feedback.total_budget == 30 and given.feedback.first_round_at == 0
    # control runs keep the control defaults
    assert load_config(None, []).feedback.first_round_at == 2000
    # the saved config reads back to the same config (resume)
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_run_config(path) == config


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "dpo", "online_dpo", "bon"])
def test_people_may_teach_every_lm_method(algorithm):
    config = load_config(None, [f"algorithm={algorithm}", "teacher.preset=human",
                                "human.on_timeout=scripted", "human.mixed=true"])
    assert config.teacher.human and config.human.mixed and config.lm.judge == "none"


def test_every_lm_task_is_a_task_the_lm_package_makes():
    from rewardlab.lm.tasks import TASK_NAMES

    assert set(LMConfig.model_fields["task"].annotation.__args__) == set(TASK_NAMES)


@pytest.mark.parametrize(("overrides", "message"), [
    (["lm.steps=10"], "lm: only the language-model methods"),
    (["algorithm=grpo", "total_steps=5000"], "total_steps: not read by algorithm=grpo"),
    (["algorithm=grpo", "env.id=Pendulum-v1"], "env: not read by algorithm=grpo"),
    (["algorithm=bon", "feedback.segment_len=10"], "feedback.segment_len: not read"),
    (["algorithm=dpo", "reward_model.members=5"], "reward_model: not read by algorithm=dpo"),
    (["algorithm=grpo", "mitigation.early_stop=disagreement"], "mitigation: not read"),
    (["algorithm=grpo", "teacher=human", "lm.judge=lexicon"],
     "lm.judge: teacher=human has people answer the text queries"),
    (["algorithm=grpo", "teacher=human", "lm.reward=gold"],
     "teacher.preset: lm.reward=gold asks no query"),
    (["algorithm=dpo", "lm.beta=0"], "lm.beta: is DPO's temperature"),
    (["algorithm=dpo", "lm.reward=gold"], "lm.reward: dpo learns from the stored labels"),
    (["algorithm=grpo", "lm.batch_size=10"], "lm.batch_size (10) must be a multiple"),
    (["algorithm=grpo", "feedback.first_round_at=5"], "feedback.first_round_at: language"),
    (["algorithm=grpo", "lm.bon_n=[4,2]"], "lm.bon_n: must be ascending"),
    (["algorithm=grpo", "lm.judge=endpoint"], "lm.judge: endpoint needs lm.judge_url"),
    (["algorithm=grpo", "lm.judge_url=http://x/v1"], "only read with lm.judge=endpoint"),
    (["algorithm=online_dpo", "lm.judge=endpoint", "lm.judge_url=http://x/v1",
      "lm.judge_model=m"], "lm.judge: online_dpo scores each completion"),
    (["algorithm=grpo", "lm.task=poetry"], "lm.task: Input should be 'sentiment'"),
    (["algorithm=grpo", "lm.steps=0"], "lm.steps: Input should be greater than or equal to 1"),
    (["algorithm=grpo", "lm.eval_prompts=1", "lm.eval_samples_per_prompt=1"],
     "lm.eval_samples_per_prompt: eval_prompts x eval_samples_per_prompt must be >= 2"),
    (["algorithm=grpo", "lm.rm_reduction=median"], "lm.rm_reduction: Input should be"),
    (["algorithm=grpo", "lm.unknown=1"], "lm.unknown: unknown key"),
])
def test_bad_lm_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in " ".join(str(err.value).split())


def test_rewardlab_config_shows_the_lm_section(capsys):
    assert main(["config", "--set", "algorithm=grpo", "--set", "lm.task=polarity_concise"]) == 0
    out = capsys.readouterr().out
    assert "algorithm: grpo" in out and "\nlm:\n" in out and "task: polarity_concise" in out


def test_train_refuses_a_bad_lm_config_before_creating_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--set", "algorithm=grpo",
                 "--set", "lm.batch_size=7"]) == 2
    assert "lm.batch_size (7) must be a multiple" in " ".join(capsys.readouterr().err.split())
    assert not run.exists()


def test_a_missing_base_model_dir_is_reported(tmp_path, capsys):
    pytest.importorskip("transformers")
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--no-progress", "--set", "algorithm=bon",
                 "--set", f"lm.base_model={tmp_path / 'nope'}"]) == 2
    assert "no such directory" in " ".join(capsys.readouterr().err.split())
