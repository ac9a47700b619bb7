"""Closed-form KL between diagonal Gaussian policies: the ``d = sqrt(KL)`` axis of the Gao et
al. 2022 over-optimisation plots (:mod:`rewardlab.diagnostics.gao_fit`).

Pure NumPy: :func:`kl_gaussian_policies` per state, :func:`mean_state_kl` averaged over the
states the current policy visited.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kl_gaussian_policies", "mean_state_kl"]


def kl_gaussian_policies(
    mean_p: np.ndarray, std_p: np.ndarray, mean_q: np.ndarray, std_q: np.ndarray
) -> np.ndarray:
    """Per-state ``KL(p || q)`` between diagonal Gaussian action distributions, in nats.

    Closed form for ``p = N(mu_p, diag(sigma_p^2))``, ``q = N(mu_q, diag(sigma_q^2))``
    (the Kullback & Leibler 1951 divergence; standard univariate-Gaussian closed form, summed
    over the independent action dimensions), used for the ``d = sqrt(KL)`` axis of Gao et al.
    2022::

        KL = sum_k [ log(sigma_q,k / sigma_p,k)
                     + (sigma_p,k^2 + (mu_p,k - mu_q,k)^2) / (2 sigma_q,k^2) - 1/2 ].

    Args:
        mean_p: ``(N, act_dim)`` float, mean of ``p`` at each of ``N`` states.
        std_p: ``(N, act_dim)`` float, standard deviation of ``p`` (``> 0``).
        mean_q: ``(N, act_dim)`` float, mean of ``q``.
        std_q: ``(N, act_dim)`` float, standard deviation of ``q`` (``> 0``).

        The four are broadcast together (e.g. a state-independent ``(act_dim,)`` std, as in
        SB3's PPO); the broadcast shape must be 2-D.

    Returns:
        ``(N,)`` float64, ``KL(p(.|s_n) || q(.|s_n)) >= 0`` in nats.

    Raises:
        ValueError: if the inputs do not broadcast to a 2-D shape, hold non-finite values, or a
            standard deviation is ``<= 0``; the message names the argument.
    """
    arrays = {
        "mean_p": np.asarray(mean_p, dtype=np.float64),
        "std_p": np.asarray(std_p, dtype=np.float64),
        "mean_q": np.asarray(mean_q, dtype=np.float64),
        "std_q": np.asarray(std_q, dtype=np.float64),
    }
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: must be finite")
        if name.startswith("std") and np.any(arr <= 0):
            raise ValueError(f"{name}: standard deviations must be > 0")
    try:
        mp, sp, mq, sq = np.broadcast_arrays(*arrays.values())
    except ValueError as err:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise ValueError(
            f"mean_p, std_p, mean_q, std_q: shapes do not broadcast: {shapes}"
        ) from err
    if mp.ndim != 2:
        raise ValueError(
            f"mean_p, std_p, mean_q, std_q: expected to broadcast to (N, act_dim), got {mp.shape}"
        )
    ratio = (sp / sq) ** 2
    per_dim = 0.5 * (ratio + ((mp - mq) / sq) ** 2 - 1.0 - np.log(ratio))
    return np.maximum(per_dim.sum(axis=1), 0.0)


def mean_state_kl(
    mean_p: np.ndarray, std_p: np.ndarray, mean_q: np.ndarray, std_q: np.ndarray
) -> float:
    """Mean per-state KL between two diagonal Gaussian policies over visited states, in nats.

    Estimator: ``(1/N) sum_n KL(pi(.|s_n) || pi_init(.|s_n))`` on states ``s_n`` visited by the
    *current* policy ``pi = p`` (a Monte Carlo estimate of ``E_{s ~ d_pi} KL(pi || pi_init)``,
    the per-step KL; the per-trajectory KL of Gao et al. 2022 is ``T`` times it for ``T``-step
    episodes). Use ``d = sqrt(mean_state_kl(...))`` as the ``d`` axis of
    :func:`rewardlab.diagnostics.gao_fit.fit_gao`. For SB3 Gaussian policies pass the
    distribution's mean and std; for squashed-Gaussian (SAC, tanh) policies pass the
    pre-squash Gaussian: KL is invariant under the invertible tanh, so it is also the KL of the
    squashed actions. (For PPO's clipped actions the pre-clip KL is an upper
    bound, by the data-processing inequality.) See :func:`kl_gaussian_policies`.

    Args:
        mean_p, std_p: ``(N, act_dim)`` float, current policy ``pi`` at the visited states.
        mean_q, std_q: ``(N, act_dim)`` float, initial/reference policy ``pi_init`` there.

    Returns:
        The mean KL in nats (float, ``>= 0``).

    Raises:
        ValueError: as :func:`kl_gaussian_policies`, or if ``N == 0``.
    """
    kl = kl_gaussian_policies(mean_p, std_p, mean_q, std_q)
    if kl.shape[0] == 0:
        raise ValueError("mean_p: no states (N == 0)")
    return float(kl.mean())
