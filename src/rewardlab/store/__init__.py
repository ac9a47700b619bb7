"""Feedback store: segments, queries and preference labels of a run, in a SQL database.

Segments are control segments (observations and actions) or text segments (a prompt and a
language model's completion, ``store.records.add_text_segments``), in the same table.

The default backend is a SQLite file ``feedback.db`` in the run directory (WAL journal,
``synchronous=FULL``): a label is durable once the write method storing it returns. Any
SQLAlchemy URL (e.g. PostgreSQL) works with the same schema. :class:`FeedbackStore` composes
a database (``store.db``) and its parts ``store.records``, ``store.annotation`` and
``store.summary``. This package never imports torch.

Example:
    >>> with FeedbackStore.open("runs/demo") as store:  # doctest: +SKIP
    ...     seg_ids = store.records.add_segments(segments)
    ...     [qid] = store.records.add_queries([(seg_ids[0], seg_ids[1])], round=0)
    ...     store.records.add_preference(Preference(qid, Label.LEFT, "oracle"))
"""

from rewardlab.store.schema import SCHEMA_VERSION
from rewardlab.store.store import DB_FILENAME, EXPORT_SUFFIXES, FeedbackStore

__all__ = ["DB_FILENAME", "EXPORT_SUFFIXES", "SCHEMA_VERSION", "FeedbackStore"]
