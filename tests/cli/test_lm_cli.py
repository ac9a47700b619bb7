"""``rewardlab lm pretrain`` through the CLI's ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason='the lm extra: pip install -e ".[lm]"')

from rewardlab.cli.main import main  # noqa: E402
from rewardlab.lm.base_config import BASE_MODEL_FILE, BaseModelConfig  # noqa: E402
from rewardlab.lm.base_model import CACHE_ENV, load_policy  # noqa: E402

MICRO = ["vocab_size=300", "n_positions=16", "n_embd=16", "n_layer=1", "n_head=2", "steps=4",
         "batch_size=2", "seq_len=16", "warmup_steps=1", "eval_every=2", "eval_windows=4"]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_pretrain_writes_a_loadable_dir(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "base"
    assert main(["lm", "pretrain", "--out", str(out), *_sets(MICRO), "--no-progress"]) == 0
    text = _err(capsys)
    assert "rewardlab lm pretrain corpus pydoc" in text and f"-> {out}" in text
    model, tok = load_policy(out)
    assert model.config.n_embd == 16 and len(tok) == 300
    assert (out / BASE_MODEL_FILE).is_file()
    # --out must not hold anything
    assert main(["lm", "pretrain", "--out", str(out), *_sets(MICRO), "--no-progress"]) == 2
    assert f"--out: {out} exists and is not an empty directory" in _err(capsys)


def test_pretrain_into_the_cache_then_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert main(["lm", "pretrain", *_sets(MICRO), "--no-progress"]) == 0
    path = tmp_path / f"base-{BaseModelConfig.from_overrides(MICRO).cache_key()}"
    assert (path / BASE_MODEL_FILE).is_file() and f"-> {path}" in _err(capsys)
    assert main(["lm", "pretrain", *_sets(MICRO), "--no-progress"]) == 0
    assert f"base model cached: {path}" in _err(capsys)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_bad_values_exit_2_naming_the_field(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--set", "n_head=3"], "n_head: must divide n_embd=128, got 3"),
        (["--set", "steps=-1"], "steps: Input should be greater than or equal to 1"),
        (["--set", "n_layers=2"], "n_layers: unknown key; allowed: corpus"),
        (["--set", "steps"], "expected key=value"),
        (["--set", "corpus=wiki"], "corpus: unknown 'wiki'"),
    ]
    for argv, message in cases:
        assert main(["lm", "pretrain", "--out", str(tmp_path / "x"), *argv]) == 2, argv
        text = _err(capsys)
        assert message in text and "Traceback" not in text, (argv, text)
    assert not (tmp_path / "x").exists()  # nothing was made


def test_without_the_lm_extra_the_error_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    assert main(["lm", "pretrain", "--out", str(tmp_path / "x")]) == 2
    assert 'pip install -e ".[lm]"' in _err(capsys)
