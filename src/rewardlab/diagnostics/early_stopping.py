"""Early stopping against reward over-optimisation: when to stop trusting the proxy.

In the spirit of Karwowski et al. 2024, "Goodhart's Law in Reinforcement Learning", who stop
optimising a proxy once the policy has moved far enough that the proxy can no longer be trusted
(our reading, stated here so it can be checked):

* ``disagreement``: a check fails when the ensemble's disagreement on the policy's evaluation
  states exceeds ``early_stop_ratio`` times its value at the first evaluation after the latest
  reward update;
* ``calibration``: a check fails when the reward model's expected calibration error on a
  round's fresh queries (measured before retraining on them) exceeds ``early_stop_ece``.

After ``early_stop_patience`` consecutive failures the run stops; the caller rolls the policy
back to the last one a check passed (:attr:`EarlyStopping.trusted_step`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rewardlab.config import MitigationConfig

#: What a check concluded: keep the current policy as trusted, a failure, or stop.
Verdict = Literal["trust", "fail", "stop", "skip"]


@dataclass
class EarlyStopping:
    """The ``mitigation.early_stop`` rule with its state (JSON-serialisable for checkpoints).

    Attributes:
        config: the ``mitigation`` section.
        baseline: disagreement at the first evaluation after the latest reward update.
        failures: consecutive failed checks.
        trusted_step: env step of the last policy a check passed.
        stopped_at: env step training stopped at (``None`` while running).
        reason: why it stopped.
    """

    config: MitigationConfig
    baseline: float | None = None
    failures: int = 0
    trusted_step: int | None = None
    stopped_at: int | None = None
    reason: str | None = None

    def reward_updated(self) -> None:
        """Forget the disagreement baseline (it is re-measured at the next evaluation)."""
        self.baseline = None

    def check_disagreement(self, step: int, disagreement: float) -> Verdict:
        """The ``disagreement`` check at an evaluation (``skip`` when another rule is on or
        the value is not finite)."""
        if self.config.early_stop != "disagreement" or not math.isfinite(disagreement):
            return "skip"
        if self.baseline is None:
            self.baseline = disagreement
        limit = self.config.early_stop_ratio * self.baseline
        if disagreement <= limit:
            return self._trust(step)
        return self._fail(step, f"on-policy disagreement {disagreement:.4f} > {limit:.4f}")

    def check_calibration(self, step: int, fresh_ece: float) -> Verdict:
        """The ``calibration`` check after a feedback round (``skip`` when another rule is on;
        a non-finite ECE, e.g. before the first fit, passes)."""
        if self.config.early_stop != "calibration":
            return "skip"
        if not math.isfinite(fresh_ece) or fresh_ece <= self.config.early_stop_ece:
            return self._trust(step)
        return self._fail(step, f"fresh-query ECE {fresh_ece:.3f} > {self.config.early_stop_ece}")

    def _trust(self, step: int) -> Verdict:
        self.failures = 0
        self.trusted_step = step
        return "trust"

    def _fail(self, step: int, reason: str) -> Verdict:
        self.failures += 1
        if self.failures < self.config.early_stop_patience:
            return "fail"
        self.stopped_at, self.reason = step, reason
        return "stop"

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (without the config)."""
        out = asdict(self)
        out.pop("config")
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        for key, value in state.items():
            setattr(self, key, value)
