"""One exception hierarchy for RewardLab.

Every error raised at a boundary (config, CLI, store, records) derives from
:class:`RewardLabError`, so callers can catch the family with one clause.
"""

from __future__ import annotations


class RewardLabError(Exception):
    """Base class of every error RewardLab raises on purpose."""


class ConfigError(RewardLabError, ValueError):
    """A configuration value is unknown, missing or out of range.

    The message names the field (dotted path) and the allowed values.
    """


class RecordError(RewardLabError, ValueError):
    """A record (segment, query, preference) has the wrong shape, dtype or value."""


class StoreError(RewardLabError):
    """The feedback store cannot be opened, read or written, or refuses a write.

    The subclasses below tell the reasons of a refused read or write apart, so that a caller
    (e.g. the web app) reacts by type, never by matching the message.
    """


class UnknownIdError(StoreError):
    """An id names no stored row (ids beyond 64 bits or negative are never stored).

    Attributes:
        ids: the unknown ids, sorted.
    """

    def __init__(self, message: str, ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.ids = ids


class UnknownSegmentError(UnknownIdError):
    """A segment id is not stored."""


class UnknownQueryError(UnknownIdError):
    """A query id is not stored."""


class UnknownAnnotatorError(UnknownIdError):
    """An annotator id is not stored."""


class UnknownPreferenceError(UnknownIdError):
    """A preference (answer) id is not stored."""


class SegmentKindError(StoreError):
    """Segments of the wrong kind for a read or write: e.g. text segments (a language model's
    completions) read as control segments (observations and actions), or a query pairing one
    of each.

    Attributes:
        ids: the segment ids of the wrong kind, sorted.
    """

    def __init__(self, message: str, ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.ids = ids


class ConflictError(StoreError):
    """A write conflicts with what is stored already; retrying the same write cannot help."""


class AlreadyAnsweredError(ConflictError):
    """The same teacher already answered the query."""


class StaleRoundError(ConflictError):
    """The query belongs to an older round than the current one."""


class DuplicateAnnotatorError(ConflictError):
    """An annotator of that name exists already."""


class NothingToUndoError(ConflictError):
    """There is no answer to undo."""


class InvalidNameError(StoreError, ValueError):
    """A name given to the store breaks its rules (e.g. an annotator name; see
    :func:`rewardlab.types.check_annotator_name`)."""


class JudgeError(RewardLabError):
    """A judge teacher cannot answer: its endpoint is unreachable or refuses (after retries),
    or answers in a form that cannot be read (malformed JSON, no message content)."""


class RunDirError(RewardLabError):
    """A run directory is missing, incomplete or belongs to an incompatible version."""


class DatasetError(RewardLabError):
    """An offline dataset cannot be read or written, or its arrays break the record's rules."""


class MissingDatasetError(DatasetError):
    """An offline dataset id names no dataset on this machine (RewardLab never downloads one).

    Attributes:
        dataset_id: the id asked for.
    """

    def __init__(self, message: str, dataset_id: str = "") -> None:
        super().__init__(message)
        self.dataset_id = dataset_id


class ModelDirError(RewardLabError):
    """A directory is not a loadable transformers causal language model with its tokenizer, or
    a model cannot be written there."""
