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
    """The feedback store cannot be opened, read or written."""


class RunDirError(RewardLabError):
    """A run directory is missing, incomplete or belongs to an incompatible version."""
