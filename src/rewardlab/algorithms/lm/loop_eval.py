"""The gold-vs-proxy evaluation rows of a language-model run: the ``eval/`` metrics of a
:class:`~rewardlab.algorithms.lm.common.GoldProxyCallback` row, fed to the over-optimisation
alarm, logged and printed.
"""

from __future__ import annotations

import math

from rich.markup import escape

from rewardlab.algorithms.lm.loop_state import LMRun, write_lm_status
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    describe_overoptimization,
)


def eval_metrics(row: dict[str, float]) -> dict[str, float]:
    """The contract's ``eval/`` keys of a
    :class:`~rewardlab.algorithms.lm.common.GoldProxyCallback` row: ``eval/kl`` is the raw
    Monte-Carlo KL estimate (nats per completion, unclamped: it may be slightly negative near
    the reference) and ``eval/sqrt_kl`` beside it is ``sqrt(max(kl, 0))`` (0 for a negative
    estimate, whose square root is undefined)."""
    return {
        "eval/gold_return": row["gold"], "eval/gold_return_std": row["gold_std"],
        "eval/proxy_return": row["proxy"], "eval/proxy_return_std": row["proxy_std"],
        "eval/samples": row["samples"], "eval/kl": row["kl"], "eval/sqrt_kl": row["sqrt_kl"],
        "eval/mean_completion_tokens": row["completion_tokens"],
        "reward_model/disagreement_on_policy": row["disagreement"],
    }


def record_eval(lm_run: LMRun, step: int, metrics: dict[str, float]) -> dict[str, float]:
    """Feed an evaluation to the alarm, log it at ``step``, print its line and refresh
    ``status.json``."""
    metrics = {**metrics, "time/elapsed_s": lm_run.clock.elapsed()}
    proxy = metrics["eval/proxy_return"]
    if lm_run.ensemble is not None and math.isfinite(proxy):
        event = lm_run.alarm.update(step, metrics["eval/gold_return"], proxy,
                                    metrics["eval/gold_return_std"])
        if event is not None:
            metrics.update({key: float(getattr(event, f)) for f, key in EVENT_KEYS.items()})
            lm_run.ui.message(f"[yellow]{escape(describe_overoptimization(event))}[/]")
    lm_run.run.log(step, metrics)
    lm_run.last_eval = metrics
    lm_run.ui.message(describe_eval(step, metrics))
    lm_run.state.step = max(lm_run.state.step, step)
    write_lm_status(lm_run, "training")
    return metrics


def describe_eval(step: int, m: dict[str, float]) -> str:
    """One terminal line about an evaluation."""
    line = (f"step {step}: gold {m['eval/gold_return']:.3f}  proxy "
            f"{m['eval/proxy_return']:.3f}  sqrt KL {m['eval/sqrt_kl']:.3f}")
    if "eval/bon_n" in m:
        line = f"best-of-{int(m['eval/bon_n'])}: " + line.split(": ", 1)[1]
    dis = m.get("reward_model/disagreement_on_policy")
    return line + ("" if dis is None or not math.isfinite(dis) else f"  disagreement {dis:.3f}")


def status_text(m: dict[str, float]) -> str:
    """The progress bar's status text."""
    if not m:
        return ""
    return (f"gold {m['eval/gold_return']:.3f}  proxy {m['eval/proxy_return']:.3f}  "
            f"sqrt KL {m['eval/sqrt_kl']:.2f}")
