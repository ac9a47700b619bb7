"""``rewardlab dataset make | list | info`` through the CLI's ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardlab.cli.main import main
from rewardlab.data.offline import load_offline_dataset

TINY = ["--env", "Hopper-v5", "--max-episode-steps", "40", "--backbone", "sac",
        "--net-arch", "32,32", "--expert-steps", "200", "--learning-starts", "100",
        "--eval-every", "100", "--eval-episodes", "1", "--ref-episodes", "2",
        "--tier-steps", "80", "--no-progress"]


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


@pytest.mark.e2e
def test_make_list_info(minari_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "make", *TINY, "--tiers", "random,medium-replay"]) == 0
    out = _err(capsys)
    for tier in ("random", "medium-replay"):
        assert f"rewardlab/hopper/{tier}-v0" in out
    assert "medium-v0" not in out  # only what was asked
    assert load_offline_dataset("rewardlab/hopper/random-v0").n_steps >= 80
    assert main(["dataset", "list"]) == 0
    listing = _err(capsys)
    assert "rewardlab/hopper/medium-replay-v0" in listing and "Hopper-v5" in listing
    assert main(["dataset", "info", "rewardlab/hopper/medium-replay-v0"]) == 0
    info = _err(capsys)
    assert "render states yes" in info and "references: random" in info
    assert "tier medium-replay" in info
    # again with the same settings: reused; another tier: made from the cached training run
    assert main(["dataset", "make", *TINY, "--tiers", "random,expert"]) == 0
    again = _err(capsys)
    assert "writing rewardlab/hopper/random-v0" not in again
    assert "writing rewardlab/hopper/expert-v0" in again


def test_bad_input_exits_2_naming_the_problem(minari_root: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["make", "--tiers", "random,best"], "--tiers: unknown best"),
        (["make", "--expert-steps", "0"], "--expert-steps: must be an integer >= 1"),
        (["make", "--medium-fraction", "2"], "--medium-fraction: must be in (0, 1)"),
        (["make", "--net-arch", "wide"], "--net-arch: expected comma-separated integers"),
        (["make", "--env", "NoSuchEnv-v9"], "env.id: cannot make 'NoSuchEnv-v9'"),
        (["info", "rewardlab/hopper/expert-v0"],
         "rewardlab dataset make --env Hopper-v5 --tiers expert"),
        (["info", "not an id"], "is not a Minari id"),
    ]
    for argv, message in cases:
        assert main(["dataset", *argv]) == 2, argv
        assert message in _err(capsys), argv
    assert main(["dataset", "list"]) == 0
    assert "no Minari datasets under" in _err(capsys)
    assert not (minari_root / "rewardlab").exists()  # nothing was made
