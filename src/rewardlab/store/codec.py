"""Array codecs and id checks shared by the feedback store's parts. Never imports torch."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np

from rewardlab.errors import StoreError
from rewardlab.store.schema import NAME_LENGTH
from rewardlab.types import MAX_ID

# Ids per ``IN (...)`` clause, well below every backend's bound-parameter limit.
CHUNK = 500


def encode_array(arr: np.ndarray) -> bytes:
    """``.npy`` bytes of an array (never a pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_array(blob: bytes, what: str) -> np.ndarray:
    """The array of ``.npy`` bytes.

    Raises:
        StoreError: naming ``what`` if the bytes are not a valid ``.npy`` array.
    """
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise StoreError(f"feedback store: {what} is not a valid .npy array: {exc}") from exc


def chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """``ids`` in lists of at most :data:`CHUNK`, for ``IN (...)`` clauses."""
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def format_ids(ids: Iterable[int], limit: int = 20) -> str:
    """Sorted unique ids, comma-separated, at most ``limit`` shown."""
    ids = sorted(set(ids))
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def check_ids(what: str, ids: Iterable[object]) -> list[int]:
    """The ids as Python ints.

    Raises:
        StoreError: naming ``what`` if an id is not an integer (bools refused).
    """
    out = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise StoreError(f"feedback store: {what} must be integers, got {value!r}")
        out.append(int(value))
    return out


def storable(ids: Iterable[int]) -> list[int]:
    """The sorted unique ids that can name a stored row (``0 <= id <= MAX_ID``).

    Ids outside that range (negative, beyond 64 bits) name nothing: callers report them as
    unknown rather than send them to the database, which cannot bind them.
    """
    return sorted({i for i in ids if 0 <= i <= MAX_ID})


def check_length(what: str, value: str) -> None:
    """Raises StoreError naming ``what`` if ``value`` is longer than the string columns."""
    if len(value) > NAME_LENGTH:
        raise StoreError(
            f"feedback store: {what} is {len(value)} characters long; at most {NAME_LENGTH}"
        )
