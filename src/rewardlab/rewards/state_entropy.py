"""k-nearest-neighbour state-entropy intrinsic reward for unsupervised pre-training.

Source: Lee et al. 2021, "PEBBLE", Sec. 4.1, Eq. (5): ``r_int(s_t) = log(||s_t - s_t^k||)``,
where ``s_t^k`` is the k-th nearest neighbour of ``s_t`` among the states collected so far (a
particle estimate of state entropy; Liu & Abbeel 2021, "APT"). As in PEBBLE's training code the
intrinsic reward is standardised by its standard deviation before the critic sees it.
"""

from __future__ import annotations

import numpy as np
import torch

#: Query rows per distance block (keeps the distance matrix under ~400 MB).
_BLOCK = 4096


@torch.inference_mode()
def knn_distances(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Distance from each query to its k-th nearest neighbour in ``reference``.

    A query equal to a reference point counts that point (distance 0) as a neighbour, as in
    PEBBLE's ``compute_state_entropy``, which takes the (k+1)-th smallest distance.

    Args:
        queries: ``(N, obs_dim)`` float32.
        reference: ``(M, obs_dim)`` float32 with ``M > k``.
        k: neighbour rank (>= 1).

    Returns:
        ``(N,)`` float32 Euclidean distances (state units).

    Raises:
        ValueError: if ``reference`` has ``k`` points or fewer.
    """
    if reference.shape[0] <= k:
        raise ValueError(f"knn_distances: need more than k={k} reference states")
    ref = torch.as_tensor(reference, dtype=torch.float32)
    out = []
    for i in range(0, queries.shape[0], _BLOCK):
        q = torch.as_tensor(queries[i : i + _BLOCK], dtype=torch.float32)
        d = torch.cdist(q, ref)  # (b, M)
        out.append(torch.kthvalue(d, k + 1, dim=1).values)
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def state_entropy_reward(next_obs: np.ndarray, reference: np.ndarray, k: int = 5) -> np.ndarray:
    """PEBBLE's intrinsic reward (Eq. 5), standardised to unit std.

    Args:
        next_obs: ``(N, obs_dim)`` float32, states reached by the transitions being rewarded.
        reference: ``(M, obs_dim)`` float32, all states collected so far.
        k: neighbour rank (PEBBLE: 5).

    Returns:
        ``(N,)`` float32 rewards ``log(eps + d_k) / std``.
    """
    reward = np.log(1e-6 + knn_distances(next_obs, reference, k))
    return (reward / max(float(reward.std()), 1e-6)).astype(np.float32)
