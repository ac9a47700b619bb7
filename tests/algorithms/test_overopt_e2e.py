"""End to end: every over-optimisation mitigation's config path trains on the testbed, and the
HTML report and comparison are written from the runs."""

import json
import re

import pytest

from rewardlab.cli.main import main
from rewardlab.diagnostics.metrics import read_metrics, series
from tests.helpers import fast_overrides

pytestmark = pytest.mark.e2e

HAZARD = "rewardlab.envs.testbed:PointHazard-v0"


def _ppo_overrides(*extra):
    return [
        "algorithm=pref_ppo", f"env.id={HAZARD}", "teacher_bias=ignore_hazard",
        "total_steps=4096", "ppo.n_envs=4", "ppo.n_steps=256", "ppo.net_arch=[32, 32]",
        "feedback.segment_len=25", "feedback.total_budget=60", "feedback.queries_per_round=20",
        "feedback.first_round_at=1024", "feedback.round_every=1024",
        "reward_model.hidden_sizes=[32, 32]", "eval.every=1024", "eval.episodes=5",
        "checkpoint_every=100000", "progress_bar=false", "torch_threads=1",
        "record_render_states=false", *extra,
    ]


def _train(run_dir, overrides):
    argv = ["train", "--run-dir", str(run_dir)]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    return read_metrics(run_dir), json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("oo") / "plain"
    rows, summary = _train(run, _ppo_overrides())
    return run, rows, summary


def test_plain_run_logs_policy_distance_calibration_and_rank_agreement(plain_run):
    _, rows, summary = plain_run
    assert summary["overoptimization"]["reference_step"] == 1024
    kl_steps, kl = series(rows, "diagnostics/policy_kl")
    assert kl_steps == [1024, 2048, 3072, 4096] and all(v >= 0 for v in kl)
    assert kl[-1] > 0
    _, sq = series(rows, "diagnostics/sqrt_kl")
    assert sq == pytest.approx([v**0.5 for v in kl])
    assert len(series(rows, "eval/proxy_gold_spearman")[0]) == 4
    assert series(rows, "reward_model/heldout_ece")[0] == [1024, 2048, 3072]
    assert series(rows, "reward_model/fresh_ece")[0] == [2048, 3072]  # before retraining


@pytest.mark.parametrize("overrides", [
    ["reward_model.reduction=min"],
    ["reward_model.reduction=mean_minus_std", "reward_model.k_std=2"],
    ["reward_model.reduction=mean_minus_var"],
    ["mitigation.early_stop=disagreement"],
    ["mitigation.regularizer=action_kl", "mitigation.reg_coef=0.5"],
    ["mitigation.regularizer=chi2_occupancy", "mitigation.reference_samples=200"],
])
def test_mitigation_config_paths_run_end_to_end(tmp_path, overrides):
    rows, summary = _train(tmp_path / "run", _ppo_overrides(*overrides))
    assert summary["steps"] == 4096 or summary["overoptimization"]["early_stopped_at"]
    assert series(rows, "eval/gold_return")[0][-1] == summary["steps"]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    for o in overrides:
        key, value = o.split("=")
        assert f"{key.split('.')[-1]}: {value}" in saved
    if "chi2_occupancy" in overrides[0]:
        steps, pen = series(rows, "diagnostics/chi2_penalty_mean")
        assert steps[0] == 2048 and len(steps) == 3  # a discriminator fit per later rollout


def test_calibration_early_stop_stops_and_rolls_back(tmp_path):
    rows, summary = _train(tmp_path / "run", _ppo_overrides(
        "mitigation.early_stop=calibration", "mitigation.early_stop_ece=0.000001"))
    oo = summary["overoptimization"]
    assert oo["early_stopped_at"] == 2048 and oo["rolled_back_to"] == 1024
    assert summary["steps"] == 2048
    stop = [r for r in rows if "diagnostics/early_stop_step" in r]
    assert len(stop) == 1 and stop[0]["eval/gold_return"] is not None


def test_targeted_feedback_spreads_rounds_over_the_run(tmp_path):
    rows, _ = _train(tmp_path / "run", _ppo_overrides(
        "feedback.total_budget=40", "mitigation.targeted_feedback=true"))
    # 2 rounds over 3072 steps: round_every 1536, rounds fall on rollout boundaries
    assert series(rows, "feedback/round")[0] == [1024, 3072]


def test_pebble_runs_with_regulariser_and_early_stop(tmp_path):
    overrides = fast_overrides("pebble", 2000) + [
        f"env.id={HAZARD}", "teacher_bias=ignore_hazard", "mitigation.regularizer=action_kl",
        "mitigation.early_stop=calibration", "mitigation.early_stop_ece=0.000001",
        "record_render_states=false",
    ]
    rows, summary = _train(tmp_path / "run", overrides)
    assert summary["overoptimization"]["early_stopped_at"] == 1000
    assert series(rows, "diagnostics/policy_kl")[0]


def test_html_report_and_compare(plain_run, tmp_path):
    run, _, _ = plain_run
    assert main(["report", str(run), "--html"]) == 0
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Over-optimisation curve" in page and "peak d" in page and "<table>" in page
    epic = re.search(r"EPIC distance[^<]*</td><td>([0-9.]+)</td>", page)
    assert epic is not None and 0.0 <= float(epic.group(1)) <= 1.0
    out = tmp_path / "cmp.html"
    assert main(["compare", str(run), str(run), "--out", str(out)]) == 0
    cmp_page = out.read_text()
    assert cmp_page.count("data:image/png;base64,") == 1 and cmp_page.count(run.name) >= 2
    assert main(["report", str(tmp_path / "missing"), "--html"]) == 2


def test_resume_keeps_the_reference_policy(tmp_path):
    run = tmp_path / "run"
    _train(run, _ppo_overrides("total_steps=2048", "feedback.total_budget=20",
                               "mitigation.regularizer=chi2_occupancy",
                               "mitigation.reference_samples=200"))
    ckpt = run / "checkpoints" / "latest"
    assert (ckpt / "reference_policy.safetensors").exists()
    assert main(["train", "--resume", str(run), "--set", "total_steps=4096"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4096
    assert summary["overoptimization"]["reference_step"] == 1024  # not the resumed policy
    steps, kl = series(read_metrics(run), "diagnostics/policy_kl")
    assert steps == [1024, 2048, 3072, 4096] and kl[-1] > 0
    assert series(read_metrics(run), "diagnostics/chi2_penalty_mean")[0][-1] == 4096
