"""Records of human annotation (annotators, their answers) and login token hashing.

The :class:`~rewardlab.store.annotation.Annotation` methods that use them (``add_annotator``,
``next_query_for``, ``preferences_by``, ...) are reached as ``FeedbackStore(...).annotation``;
the errors they raise are in :mod:`rewardlab.errors`. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from rewardlab.errors import StoreError
from rewardlab.types import Label

__all__ = ["Annotator", "Answer", "hash_token", "new_token"]

#: Bytes of randomness of a login token (``secrets.token_urlsafe(32)``: 43 characters).
TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh login token: ``secrets.token_urlsafe(32)``."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Hex SHA-256 of a login token (what the store keeps instead of the token).

    Raises:
        StoreError: if ``token`` is not a string.
    """
    if not isinstance(token, str):
        raise StoreError(f"feedback store: a token must be a string, got {type(token).__name__}")
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Annotator:
    """A person who labels queries in the web app.

    Attributes:
        annotator_id: database id.
        name: unique name; it is the ``teacher_id`` of the annotator's preferences.
        created_at: seconds since the Unix epoch when the annotator was added.
    """

    annotator_id: int
    name: str
    created_at: float


@dataclass(frozen=True)
class Answer:
    """A stored preference with its database id and the round of its query.

    Attributes:
        preference_id: database id of the preference (what
            :meth:`~rewardlab.store.annotation.Annotation.delete_preference` takes).
        query_id: the query answered.
        round: the query's feedback round.
        label: the answer.
        teacher_id: who answered.
        timestamp: seconds since the Unix epoch when the answer was given.
    """

    preference_id: int
    query_id: int
    round: int
    label: Label
    teacher_id: str
    timestamp: float
