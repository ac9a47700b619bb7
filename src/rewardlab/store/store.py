"""The feedback store: segments, queries and preference labels in one transactional database.

By default the store is a SQLite file ``feedback.db`` in the run directory, opened in WAL mode
with ``synchronous=FULL``: every write method runs in one transaction, and once it returns the
data is committed durably, so a run killed at any moment loses no returned label. Any other
SQLAlchemy URL (e.g. ``postgresql+psycopg://...``) works with the same schema.

:class:`FeedbackStore` composes one :class:`~rewardlab.store.engine.Database` (engine, schema,
transactions) and three parts over it, each in its own module:

* ``store.records`` (:class:`~rewardlab.store.records.Records`): segments, queries, answers
  and the arrays a reward model trains on (what the training loop uses);
* ``store.annotation`` (:class:`~rewardlab.store.annotation.Annotation`): people in the web
  app: annotators, assignments, their answers and undo;
* ``store.summary`` (:class:`~rewardlab.store.summary.Summaries`): counts, agreement, export.

This package never imports torch: it speaks NumPy only.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.engine import URL

from rewardlab.errors import StoreError
from rewardlab.store.annotation import Annotation
from rewardlab.store.engine import Database
from rewardlab.store.records import Records
from rewardlab.store.summary import EXPORT_SUFFIXES, Summaries

__all__ = ["DB_FILENAME", "EXPORT_SUFFIXES", "FeedbackStore"]

#: File name of the SQLite database inside a run directory.
DB_FILENAME = "feedback.db"


class FeedbackStore:
    """Segments, queries and preference labels of one run, in a SQL database.

    Every write method of its parts is one transaction: it either stores everything it was
    given or, on any error, nothing. Once a write method returns, its rows are committed
    durably (SQLite: WAL journal with ``synchronous=FULL``).

    Use :meth:`open` for the default SQLite file in a run directory, or pass any SQLAlchemy
    URL. The store is a context manager; :meth:`close` releases its connections.

    Attributes:
        db: the database (engine, schema, :meth:`~rewardlab.store.engine.Database.transaction`).
        records: segments, queries, answers, training arrays.
        annotation: annotators, assignments, people's answers and undo.
        summary: counts, agreement, export to JSONL/Parquet.

    Args:
        url: SQLAlchemy database URL, e.g. ``"sqlite:////abs/run/feedback.db"`` or
            ``"postgresql+psycopg://user@host/db"``. Tables are created if missing.

    Raises:
        StoreError: if the URL is invalid, its driver is not installed, the database cannot
            be opened or created, or it holds a different schema version.
    """

    def __init__(self, url: str | URL) -> None:
        self.db = Database(url)
        self.records = Records(self.db)
        self.annotation = Annotation(self.db)
        self.summary = Summaries(self.db)

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> Self:
        """Open (creating if needed) the SQLite store ``feedback.db`` in a run directory.

        Args:
            run_dir: the run directory; created with its parents if missing.

        Returns:
            The open store.

        Raises:
            StoreError: if the directory cannot be created or written, or the database cannot
                be opened.
        """
        path = Path(run_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"feedback store: cannot create run directory {path}: {exc}") from exc
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"feedback store: run directory {path} is not writable")
        return cls(URL.create("sqlite", database=str(path.resolve() / DB_FILENAME)))

    @property
    def url(self) -> str:
        """The database URL (password hidden)."""
        return self.db.url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.db.closed

    def close(self) -> None:
        """Release every connection. Idempotent; the store cannot be used afterwards."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({self.url!r}{', closed' if self.closed else ''})"
