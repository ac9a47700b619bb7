"""What the control-run reports (:mod:`rewardlab.diagnostics.report_html`) read and compute
from a run directory, without drawing anything.

* :func:`load_meta` / :func:`load_run`: ``summary.json``, ``config.yaml`` and ``metrics.jsonl``;
* :func:`outcome`: the headline figures (final and peak gold, gold drop, proxy gain);
* :func:`gao_analysis`: gold gain against ``d = sqrt(KL(pi || pi_ref))`` with the two Gao et al.
  2022 fits (:func:`rewardlab.diagnostics.gao_fit.fit_gao`); :func:`proxy_against_distance` the
  proxy return on the same axis;
* :func:`event_row`: the logged over-optimisation event;
* :func:`epic_to_gold`: EPIC distance (Gleave et al. 2021) between the final learned reward and
  the true reward, for testbed envs whose true reward is known in closed form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rewardlab.diagnostics.gao_fit import GaoFit, fit_gao
from rewardlab.diagnostics.metrics import gold_proxy_curves, read_metrics, series
from rewardlab.errors import RunDirError

__all__ = [
    "EPIC_CANON",
    "EPIC_COVERAGE",
    "epic_to_gold",
    "event_row",
    "gao_analysis",
    "load_meta",
    "load_run",
    "outcome",
    "proxy_against_distance",
    "value_at",
]

#: Canonical-sample and coverage sizes of the EPIC estimate in a report.
EPIC_CANON, EPIC_COVERAGE = 256, 512


def load_meta(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, config)`` of a run directory (each ``{}`` when absent), without reading its
    metrics: enough to tell a language-model run
    (:func:`rewardlab.diagnostics.lm_curves.is_lm_run`) before loading rows.

    Raises:
        RunDirError: if ``run_dir`` holds no ``metrics.jsonl``.
    """
    if not (run_dir / "metrics.jsonl").exists():
        raise RunDirError(f"{run_dir}: not a run directory (no metrics.jsonl)")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    return summary, config or {}


def load_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """``(rows, summary, config)`` of a run directory (:func:`load_meta` and its metrics)."""
    summary, config = load_meta(run_dir)
    return read_metrics(run_dir), summary, config


def value_at(rows: list[dict[str, Any]], key: str, steps: np.ndarray) -> np.ndarray:
    """``(len(steps),)`` last logged value of ``key`` at each step (NaN where absent)."""
    s, v = series(rows, key)
    table = dict(zip(s, v, strict=True))
    return np.array([table.get(int(x), math.nan) for x in steps], dtype=np.float64)


def outcome(run_dir: str | Path) -> dict[str, float]:
    """Headline figures of a run, from its evaluations.

    Returns:
        ``gold_final`` (gold return of the last evaluation), ``gold_peak`` (best evaluation),
        ``gold_drop = gold_peak - gold_final`` (>= 0, gold-return units) and ``proxy_gain``
        (proxy return of the last evaluation minus the first finite one, in the proxy's
        standardised units; these are re-standardised at every reward update, so it is a
        coarse signal), plus ``steps`` of the last evaluation.

    Raises:
        RunDirError: if the run has no metrics or no evaluation.
    """
    rows, _, _ = load_run(Path(run_dir))
    c = gold_proxy_curves(rows)
    gold, proxy = c["eval/gold_return"], c["eval/proxy_return"]
    ok = np.isfinite(gold)
    if not ok.any():
        raise RunDirError(f"{run_dir}: no evaluation logged")
    finite_proxy = proxy[np.isfinite(proxy)]
    peak, final = float(gold[ok].max()), float(gold[ok][-1])
    return {
        "gold_final": final,
        "gold_peak": peak,
        "gold_drop": peak - final,
        "proxy_gain": float(finite_proxy[-1] - finite_proxy[0]) if finite_proxy.size else math.nan,
        "steps": float(c["step"][ok][-1]),
    }


def gao_analysis(
    rows: list[dict[str, Any]], reference_step: int | None
) -> tuple[np.ndarray, np.ndarray, dict[str, GaoFit | str]]:
    """Gold gain against ``d = sqrt(KL)`` and the two Gao et al. 2022 fits.

    The gold gain is ``gold - gold_ref`` with ``gold_ref`` the last evaluation at or before the
    reference step (the first reward update), else the first evaluation.

    Returns:
        ``(d (n,), gain (n,), {"bon": GaoFit or reason, "rl": GaoFit or reason})``.
    """
    c = gold_proxy_curves(rows)
    steps, gold = c["step"], c["eval/gold_return"]
    d = value_at(rows, "diagnostics/sqrt_kl", steps)
    ok = np.isfinite(gold)
    if not ok.any():
        return np.zeros(0), np.zeros(0), {"bon": "no evaluations", "rl": "no evaluations"}
    before = ok & (steps <= (reference_step if reference_step is not None else -1))
    gold_ref = float(gold[before][-1]) if before.any() else float(gold[ok][0])
    use = ok & np.isfinite(d)
    d_use, gain = d[use], gold[use] - gold_ref
    fits: dict[str, GaoFit | str] = {}
    for form in ("bon", "rl"):
        try:
            fits[form] = fit_gao(d_use, gain, form)  # type: ignore[arg-type]
        except ValueError as err:
            fits[form] = str(err)
    return d_use, gain, fits


def proxy_against_distance(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(d, proxy)`` at the evaluations where both are finite."""
    c = gold_proxy_curves(rows)
    d = value_at(rows, "diagnostics/sqrt_kl", c["step"])
    ok = np.isfinite(d) & np.isfinite(c["eval/proxy_return"])
    return d[ok], c["eval/proxy_return"][ok]


def event_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``metrics.jsonl`` row of the over-optimisation event (the first), or None."""
    return next((r for r in rows if r.get("diagnostics/overoptimization_step") is not None),
                None)


def epic_to_gold(run_dir: Path, env_id: str, seed: int = 0) -> float | None:
    """EPIC distance between the run's final learned reward and the true reward.

    Only for testbed envs (:data:`rewardlab.envs.testbed.GOLD_REWARDS`), whose true reward is
    a known function of ``(s, a)``. Canonical sample ``D_S x D_A``: ``EPIC_CANON`` states and
    actions uniform on the observation and action boxes; coverage: ``EPIC_COVERAGE``
    transitions drawn from the run's transition log, next states from the testbed dynamics;
    ``gamma`` 0.99 (Gleave et al. 2021).

    Returns:
        The distance in ``[0, 1]``, or None when it cannot be computed for this run.
    """
    from rewardlab.envs.testbed import GOLD_REWARDS, next_positions

    ckpt = run_dir / "checkpoints" / "latest"
    gold = GOLD_REWARDS.get(env_id)
    if gold is None or not (ckpt / "reward_model.json").exists():
        return None
    from rewardlab.diagnostics.reward_eval import epic_distance
    from rewardlab.rewards.model import RewardModel

    model = RewardModel.load(ckpt)
    if model.updates == 0:
        return None
    with np.load(ckpt / "transition_log.npz", allow_pickle=False) as data:
        written = int(data["counters"][0])
        obs = data["obs"].reshape(-1, data["obs"].shape[-1])
        actions = data["actions"].reshape(-1, data["actions"].shape[-1])
        rows = min(written, data["obs"].shape[0]) * data["obs"].shape[1]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, rows, size=EPIC_COVERAGE)
    s, a = obs[pick].astype(np.float64), actions[pick].astype(np.float64)
    s_canon = rng.uniform(-1.0, 1.0, size=(EPIC_CANON, s.shape[1]))
    a_canon = rng.uniform(-1.0, 1.0, size=(EPIC_CANON, a.shape[1]))

    def learned(s_: np.ndarray, a_: np.ndarray, _next: np.ndarray) -> np.ndarray:
        return model.reward(s_.astype(np.float32), a_.astype(np.float32))

    def true(s_: np.ndarray, a_: np.ndarray, _next: np.ndarray) -> np.ndarray:
        return gold(s_, a_)

    value = epic_distance(learned, true, s, a, next_positions(s, a), s_canon, a_canon, 0.99)
    return None if math.isnan(value) else float(value)
