"""Explicit randomness: every component takes a seed or a generator; nothing seeds globally.

Child seeds are derived with :class:`numpy.random.SeedSequence`, so two components seeded from
the same run seed never share a stream.
"""

from __future__ import annotations

import numpy as np

#: Stable names for the streams a run derives from its seed (order never changes).
STREAMS = (
    "env", "eval_env", "teacher", "queries", "reward_model", "agent", "segments", "mitigation",
    "diagnostics", "batches",
)


def child_seeds(seed: int) -> dict[str, int]:
    """Derive one 32-bit seed per named stream from a run seed.

    Args:
        seed: the run seed (any non-negative integer).

    Returns:
        A mapping from each name in :data:`STREAMS` to an ``int`` in ``[0, 2**31)``.
    """
    states = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {
        name: int(s.generate_state(1, dtype=np.uint32)[0] >> 1)
        for name, s in zip(STREAMS, states, strict=True)
    }
