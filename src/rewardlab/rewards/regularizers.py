"""Rewards that pull the agent back towards a reference policy (over-optimisation mitigations).

Subtracted from the proxy reward the agent sees (evaluation still reports the pure proxy):

* ``chi2_occupancy``: Laidlaw, Singhal & Dragan 2024, "Correlated Proxies: A New Definition and
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
* ``action_kl``: the RLHF-style per-step penalty ``-lambda KL(pi(.|s) || pi_ref(.|s))``
  (closed form between the two Gaussian action distributions), the baseline ORPO is compared
  against. The KL itself is computed by the caller, which knows the policy's parametrisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

#: ``(obs (N, obs_dim), actions (N, act_dim)) -> (N,)`` float32 reward.
RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Largest occupancy ratio the chi-squared penalty trusts from the discriminator.
RATIO_CLIP = 10.0
#: Discriminator minibatch size per class.
DISC_BATCH = 256


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


def regularized_reward(base: RewardFn, penalty: RewardFn, coef: float) -> RewardFn:
    """``base(obs, actions) - coef * penalty(obs, actions)`` as a float32 reward function."""

    def reward(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return (base(obs, actions) - coef * penalty(obs, actions)).astype(np.float32)

    return reward


def chi2_reward_penalty(discriminator: OccupancyDiscriminator) -> RewardFn:
    """The ``chi2_occupancy`` per-pair penalty of ``discriminator``'s current estimate."""

    def penalty(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return chi2_penalty(discriminator.log_ratio(np.concatenate([obs, actions], axis=-1)))

    return penalty
