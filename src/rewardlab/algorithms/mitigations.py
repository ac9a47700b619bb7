"""Over-optimisation diagnostics and mitigations used inside the training loops.

One :class:`OveroptimizationGuard` per run, driven by the session and the method loops:

* **Distance from the starting policy** (Gao et al. 2022, "Scaling Laws for Reward Model
  Overoptimization", who plot gold reward against ``d = sqrt(KL(pi || pi_init))``). The
  reference ``pi_ref`` is a frozen copy of the policy taken at the first reward-model update
  (for PEBBLE: the end of unsupervised pre-training; for preference PPO: before any
  optimisation of a learned reward). At each evaluation, ``diagnostics/policy_kl`` is the
  estimator ``(1/N) sum_n KL(pi(.|s_n) || pi_ref(.|s_n))``: the closed-form KL between the
  two diagonal Gaussian action distributions (pre-squash for SAC), averaged over the ``N``
  states of the evaluation episodes (:func:`rewardlab.diagnostics.overoptimization.mean_state_kl`);
  ``diagnostics/sqrt_kl`` is its square root. ``eval/proxy_gold_spearman`` is the Spearman
  correlation of proxy and gold returns over the evaluation episodes.
* **Regularisation towards the reference** (``mitigation.regularizer``), subtracted from the
  proxy reward the agent sees (evaluation still reports the pure proxy):

  - ``chi2_occupancy``: Laidlaw, Singhal & Dragan 2024, "Correlated Proxies: A New Definition and
    Improved Mitigation for Reward Hacking" (ORPO) regularise the chi-squared divergence between
    the occupancy measures of the policy and the reference. Its functional derivative with
    respect to the policy's occupancy is ``2 (mu_pi(s,a) / mu_ref(s,a) - 1)``, so (by the
    occupancy-measure policy gradient) adding ``-lambda * 2 (rho(s,a) - 1)`` to the reward
    follows the gradient of ``J(pi) - lambda chi2(mu_pi || mu_ref)``. As in ORPO, the ratio
    ``rho`` is estimated with a discriminator: a logistic classifier of current-policy versus
    reference state-action pairs (balanced classes), whose logit estimates ``log rho``
    (clipped to ``[-log RATIO_CLIP, log RATIO_CLIP]``). Reference pairs are collected once by
    running the stochastic reference policy; current pairs are the latest rollout, so the
    penalty lags the policy by one discriminator update.
  - ``action_kl``: the RLHF-style per-step penalty ``-lambda KL(pi(.|s) || pi_ref(.|s))``
    (closed form, same Gaussians as above), the baseline ORPO is compared against.
* **Early stopping** (``mitigation.early_stop``; in the spirit of Karwowski et al. 2024,
  "Goodhart's Law in Reinforcement Learning", which stop optimising a proxy once the policy has
  moved far enough that the proxy can no longer be trusted): ``disagreement`` fails a check when
  the ensemble's disagreement on the policy's evaluation states exceeds ``early_stop_ratio``
  times its value at the first evaluation after the latest reward update; ``calibration`` fails
  a check when the reward model's ECE on a round's fresh queries (measured before retraining)
  exceeds ``early_stop_ece``. After ``early_stop_patience`` consecutive failures the run stops
  and the policy is rolled back to the last one a check passed.
* **Targeted feedback** (``mitigation.targeted_feedback``): see :func:`effective_schedule`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from rewardlab.config import FeedbackSchedule, MitigationConfig, TrainConfig
from rewardlab.data.transitions import TransitionLog
from rewardlab.diagnostics.evaluation import EvalResult
from rewardlab.diagnostics.overoptimization import kl_gaussian_policies, mean_state_kl
from rewardlab.diagnostics.reward_eval import rank_correlation
from rewardlab.envs.reward_wrapper import RewardFn

#: Largest occupancy ratio the chi-squared penalty trusts from the discriminator.
RATIO_CLIP = 10.0
#: Discriminator minibatch size per class.
DISC_BATCH = 256


def effective_schedule(config: TrainConfig, n_envs: int) -> FeedbackSchedule:
    """The feedback schedule a run actually follows.

    With ``mitigation.targeted_feedback`` the query budget is spread evenly over the run
    (``round_every`` raised to ``(total_steps - first_round_at) / rounds`` when that is longer)
    and every round cuts its segments from the steps collected since the previous round only
    (``recent_steps = round_every / n_envs`` rows per env), so queries are about the states the
    policy now visits. Otherwise ``config.feedback`` unchanged.

    Args:
        config: the run config.
        n_envs: parallel training envs (the transition log's columns).
    """
    sch = config.feedback
    if not config.mitigation.targeted_feedback:
        return sch
    rounds = math.ceil(sch.total_budget / sch.queries_per_round)
    span = max(config.total_steps - sch.first_round_at, 1)
    every = max(sch.round_every, span // rounds)
    return sch.model_copy(update={
        "round_every": every, "recent_steps": max(every // n_envs, sch.segment_len),
    })


def frozen_copy(policy: BasePolicy) -> BasePolicy:
    """A detached copy of an SB3 policy (rebuilt from its constructor arguments, weights
    copied), in eval mode with gradients off."""
    with torch.random.fork_rng(devices=[]):  # building it must not move the agent's RNG
        copy_ = type(policy)(**policy._get_constructor_parameters())
    copy_.load_state_dict(policy.state_dict())
    copy_.eval()
    for p in copy_.parameters():
        p.requires_grad_(False)
    return copy_


def gaussian_params(policy: BasePolicy, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of an SB3 Gaussian policy at ``obs``.

    For SAC, the Gaussian before the tanh squashing (KL is invariant under the squashing).

    Args:
        policy: an SB3 ``ActorCriticPolicy`` (PPO, diagonal Gaussian) or ``SACPolicy``.
        obs: ``(N, obs_dim)`` float32 states.

    Returns:
        ``(mean (N, act_dim), std (N, act_dim))`` float64.

    Raises:
        TypeError: for a policy whose action distribution is not a diagonal Gaussian.
    """
    obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    with torch.no_grad():
        if isinstance(policy, SACPolicy):
            mean, log_std, _ = policy.actor.get_action_dist_params(obs_t)
            std = log_std.exp()
        else:
            dist = getattr(policy.get_distribution(obs_t), "distribution", None)
            if not isinstance(dist, torch.distributions.Normal):
                raise TypeError(
                    f"{type(policy).__name__}: policy KL needs a diagonal Gaussian policy"
                )
            mean, std = dist.mean, dist.stddev
    mean_np = mean.double().numpy()
    return mean_np, np.broadcast_to(std.double().numpy(), mean_np.shape)


class OccupancyDiscriminator:
    """Logistic classifier of current-policy (label 1) versus reference (label 0) pairs.

    With balanced classes its logit estimates ``log(mu_pi(s,a) / mu_ref(s,a))``.

    Args:
        in_dim: ``obs_dim + act_dim``.
        seed: initial weights and minibatch draws.
        hidden: hidden widths.
        lr: Adam learning rate.
    """

    def __init__(self, in_dim: int, seed: int, hidden: tuple[int, ...] = (64, 64),
                 lr: float = 1e-3) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            widths = [in_dim, *hidden]
            layers: list[nn.Module] = []
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
                layers += [nn.Linear(w_in, w_out), nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)

    def fit(self, current: np.ndarray, reference: np.ndarray, steps: int) -> float:
        """``steps`` Adam steps on balanced minibatches; returns the last loss (nats).

        Args:
            current: ``(N, in_dim)`` float32 current-policy pairs.
            reference: ``(M, in_dim)`` float32 reference pairs.
        """
        cur = torch.as_tensor(current, dtype=torch.float32)
        ref = torch.as_tensor(reference, dtype=torch.float32)
        b = min(DISC_BATCH, cur.shape[0], ref.shape[0])
        y = torch.cat([torch.ones(b), torch.zeros(b)])
        loss = torch.zeros(())
        for _ in range(steps):
            i = torch.as_tensor(self.rng.integers(0, cur.shape[0], b))
            j = torch.as_tensor(self.rng.integers(0, ref.shape[0], b))
            logits = self.net(torch.cat([cur[i], ref[j]])).squeeze(-1)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """``(N, in_dim)`` -> ``(N,)`` float64 estimate of ``log(mu_pi / mu_ref)``."""
        with torch.no_grad():
            out = self.net(torch.as_tensor(x, dtype=torch.float32)).squeeze(-1)
        return out.double().numpy()


def chi2_penalty(log_ratio: np.ndarray) -> np.ndarray:
    """Per-pair chi-squared occupancy penalty ``2 (rho - 1)`` with ``rho`` clipped.

    The functional derivative of ``chi2(mu_pi || mu_ref) = sum mu_pi^2 / mu_ref - 1`` with
    respect to ``mu_pi`` (Laidlaw et al. 2024, ORPO). ``rho = exp(log_ratio)`` is clipped to
    ``[1 / RATIO_CLIP, RATIO_CLIP]``.

    Args:
        log_ratio: ``(N,)`` estimates of ``log(mu_pi / mu_ref)``.

    Returns:
        ``(N,)`` float64 penalties in ``[2 / RATIO_CLIP - 2, 2 RATIO_CLIP - 2]``.
    """
    bound = math.log(RATIO_CLIP)
    return 2.0 * (np.exp(np.clip(log_ratio, -bound, bound)) - 1.0)


class OveroptimizationGuard:
    """Per-run over-optimisation diagnostics and mitigations (see the module docstring).

    Args:
        config: the run config (``mitigation`` block and ``eval.episodes``).
        seed: seeds the discriminator and the reference rollouts.
        make_env: factory of a fresh env (for reference-policy rollouts).
    """

    def __init__(
        self, config: TrainConfig, seed: int, make_env: Callable[[], gym.Env]
    ) -> None:
        self.config = config
        self.cfg: MitigationConfig = config.mitigation
        self.seed = seed
        self.make_env = make_env
        self.reference: BasePolicy | None = None
        self.reference_step: int | None = None
        self.reference_pairs: np.ndarray | None = None
        self.discriminator: OccupancyDiscriminator | None = None
        self._baseline_disagreement: float | None = None
        self._failures = 0
        self._trusted: dict[str, torch.Tensor] | None = None
        self._trusted_step: int | None = None
        self.stopped_at: int | None = None
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ reference
    def on_reward_update(self, model: BaseAlgorithm, step: int,
                         round_metrics: dict[str, float]) -> bool:
        """Call after every reward-model update. Freezes the reference at the first one.

        Returns:
            True when the ``calibration`` early-stopping check asks to stop.
        """
        if self.reference is None:
            self.reference = frozen_copy(model.policy)
            self.reference_step = step
            if self.cfg.regularizer == "chi2_occupancy":
                self.reference_pairs = self._collect_reference()
                in_dim = self.reference_pairs.shape[1]
                self.discriminator = OccupancyDiscriminator(in_dim, self.seed)
        self._baseline_disagreement = None
        if self.cfg.early_stop != "calibration":
            return False
        ece = round_metrics.get("reward_model/fresh_ece", float("nan"))
        if not math.isfinite(ece) or ece <= self.cfg.early_stop_ece:
            self._failures = 0
            self._trust(model, step)
            return False
        return self._fail(step, f"fresh-query ECE {ece:.3f} > {self.cfg.early_stop_ece}")

    def _collect_reference(self) -> np.ndarray:
        """``(reference_samples, obs_dim + act_dim)`` pairs from the stochastic reference."""
        assert self.reference is not None
        env = self.make_env()
        rows: list[np.ndarray] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._rollout_reference(env, rows)
        return np.stack(rows)

    def _rollout_reference(self, env: gym.Env, rows: list[np.ndarray]) -> None:
        assert self.reference is not None
        n, episode = 0, 0
        try:
            while n < self.cfg.reference_samples:
                obs, _ = env.reset(seed=self.seed + episode)
                episode += 1
                done = False
                while not done and n < self.cfg.reference_samples:
                    action = self.reference.predict(obs, deterministic=False)[0]
                    rows.append(np.concatenate([np.asarray(obs, np.float32).ravel(),
                                                np.asarray(action, np.float32).ravel()]))
                    obs, _, terminated, truncated, _ = env.step(action)
                    done = terminated or truncated
                    n += 1
        finally:
            env.close()

    # ------------------------------------------------------------------ reward
    def wrap_reward(self, base: RewardFn, model: BaseAlgorithm) -> RewardFn:
        """The agent's reward: ``base`` minus the configured regulariser (if any)."""
        reg, coef = self.cfg.regularizer, self.cfg.reg_coef
        if reg == "none" or coef == 0:
            return base

        def regularised(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
            r = base(obs, actions)
            if self.reference is None:
                return r
            if reg == "action_kl":
                pen = self.state_kl(model, obs)
            elif self.discriminator is not None:
                pen = chi2_penalty(self.discriminator.log_ratio(
                    np.concatenate([obs, actions], axis=-1)))
            else:
                return r
            return (r - coef * pen).astype(np.float32)

        return regularised

    def after_rollout(self, model: BaseAlgorithm, log: TransitionLog, rows: int
                      ) -> dict[str, float]:
        """Refit the occupancy discriminator on the latest ``rows`` steps (chi2 only).

        Returns:
            ``diagnostics/`` metrics (empty when nothing was fitted).
        """
        if self.discriminator is None or self.reference_pairs is None:
            return {}
        obs, actions = log.recent_flat(rows)
        current = np.concatenate([obs, actions], axis=-1)
        loss = self.discriminator.fit(current, self.reference_pairs,
                                      self.cfg.discriminator_steps)
        pen = chi2_penalty(self.discriminator.log_ratio(current))
        return {"diagnostics/discriminator_loss": loss,
                "diagnostics/chi2_penalty_mean": float(pen.mean())}

    # ------------------------------------------------------------------ evaluation
    def state_kl(self, model: BaseAlgorithm, obs: np.ndarray) -> np.ndarray:
        """``(N,)`` per-state ``KL(pi(.|s) || pi_ref(.|s))`` in nats (zeros before a reference)."""
        if self.reference is None:
            return np.zeros(obs.shape[0])
        mp, sp = gaussian_params(model.policy, obs)
        mq, sq = gaussian_params(self.reference, obs)
        return kl_gaussian_policies(mp, sp, mq, sq)

    def eval_metrics(self, model: BaseAlgorithm, result: EvalResult) -> dict[str, float]:
        """Distance from the reference and proxy/gold rank agreement of an evaluation."""
        metrics = {"eval/proxy_gold_spearman": rank_correlation(
            result.proxy_returns, result.gold_returns)}
        if self.reference is not None and result.states is not None:
            mp, sp = gaussian_params(model.policy, result.states)
            mq, sq = gaussian_params(self.reference, result.states)
            kl = mean_state_kl(mp, sp, mq, sq)
            metrics["diagnostics/policy_kl"] = kl
            metrics["diagnostics/sqrt_kl"] = math.sqrt(kl)
        return metrics

    def check_eval(self, model: BaseAlgorithm, step: int, metrics: dict[str, float]) -> bool:
        """The ``disagreement`` early-stopping check. Returns True to stop."""
        if self.cfg.early_stop != "disagreement" or self.reference is None:
            return False
        dis = metrics.get("reward_model/disagreement_on_policy", float("nan"))
        if not math.isfinite(dis):
            return False
        if self._baseline_disagreement is None:
            self._baseline_disagreement = dis
        limit = self.cfg.early_stop_ratio * self._baseline_disagreement
        if dis <= limit:
            self._failures = 0
            self._trust(model, step)
            return False
        return self._fail(step, f"on-policy disagreement {dis:.4f} > {limit:.4f}")

    def _trust(self, model: BaseAlgorithm, step: int) -> None:
        self._trusted = {k: v.clone() for k, v in model.policy.state_dict().items()}
        self._trusted_step = step

    def _fail(self, step: int, reason: str) -> bool:
        self._failures += 1
        if self._failures < self.cfg.early_stop_patience:
            return False
        self.stopped_at, self.stop_reason = step, reason
        return True

    def rollback(self, model: BaseAlgorithm) -> int | None:
        """Restore the last trusted policy (after an early stop). Returns its env step."""
        if self._trusted is not None:
            model.policy.load_state_dict(self._trusted)
        return self._trusted_step

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: Path) -> None:
        """Write the frozen reference policy (``reference_policy.safetensors``) and the
        guard's state (``overoptimization.json``) into a checkpoint folder."""
        state = {"format_version": 1, "reference_step": self.reference_step,
                 "failures": self._failures, "trusted_step": self._trusted_step}
        if self.reference is not None:
            save_file({k: v.contiguous() for k, v in self.reference.state_dict().items()},
                      str(directory / "reference_policy.safetensors"))
        if self._trusted is not None:
            save_file({k: v.contiguous() for k, v in self._trusted.items()},
                      str(directory / "trusted_policy.safetensors"))
        (directory / "overoptimization.json").write_text(json.dumps(state))

    def load(self, directory: Path, model: BaseAlgorithm) -> None:
        """Restore what :meth:`save` wrote (nothing when the checkpoint predates it); the
        chi-squared regulariser re-collects its reference samples and starts a fresh
        discriminator."""
        path = directory / "overoptimization.json"
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self.reference_step = state["reference_step"]
        self._failures = int(state["failures"])
        self._trusted_step = state["trusted_step"]
        ref_path = directory / "reference_policy.safetensors"
        if ref_path.exists():
            self.reference = frozen_copy(model.policy)
            self.reference.load_state_dict(load_file(str(ref_path)))
            if self.cfg.regularizer == "chi2_occupancy":
                self.reference_pairs = self._collect_reference()
                self.discriminator = OccupancyDiscriminator(
                    self.reference_pairs.shape[1], self.seed)
        trusted_path = directory / "trusted_policy.safetensors"
        if trusted_path.exists():
            self._trusted = load_file(str(trusted_path))

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable record for ``summary.json``."""
        return {
            "mitigation": self.cfg.model_dump(mode="json"),
            "reference_step": self.reference_step,
            "early_stopped_at": self.stopped_at,
            "early_stop_reason": self.stop_reason,
            "rolled_back_to": self._trusted_step if self.stopped_at is not None else None,
        }
