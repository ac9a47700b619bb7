"""Summaries of a run's feedback and its export: counts, agreement, JSONL/Parquet files.

:class:`Summaries` (``FeedbackStore(...).summary``) only reads. This module never imports
torch (pyarrow is imported only to write Parquet).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from rewardlab.errors import StoreError
from rewardlab.store.codec import chunks, decode_array
from rewardlab.store.engine import Database
from rewardlab.store.schema import TEXT, PreferenceRow, QueryRow, SegmentRow
from rewardlab.types import Label

__all__ = ["EXPORT_SUFFIXES", "Summaries"]

#: Suffixes :meth:`Summaries.export` accepts.
EXPORT_SUFFIXES = (".jsonl", ".parquet")


class Summaries:
    """Counts, agreement between teachers and the export of answers: ``FeedbackStore(...).summary``.

    Args:
        db: the store's database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def agreement(self) -> dict[str, float | int | None]:
        """Agreement between teachers on queries several of them answered.

        Returns:
            ``overlapping``: queries answered by at least two distinct teachers;
            ``compared``: those of them with at least two non-SKIP answers (a SKIP neither
            agrees nor disagrees, so a query with fewer non-SKIP answers is not compared);
            ``agreeing``: compared queries whose non-SKIP answers are all the same label;
            ``fraction``: ``agreeing / compared``, or ``None`` when nothing was compared.

        Raises:
            StoreError: if the database read fails.
        """
        stmt = (
            select(PreferenceRow.query_id, PreferenceRow.teacher_id, PreferenceRow.label)
            .where(
                PreferenceRow.query_id.in_(
                    select(PreferenceRow.query_id)
                    .group_by(PreferenceRow.query_id)
                    .having(func.count(PreferenceRow.teacher_id.distinct()) >= 2)
                )
            )
            .order_by(PreferenceRow.query_id)
        )
        with self.db.transaction("read agreement") as session:
            rows = session.execute(stmt).all()
        labels: dict[int, list[int]] = {}
        for qid, _teacher, label in rows:
            labels.setdefault(qid, []).append(label)
        compared = agreeing = 0
        for answers in labels.values():
            real = [a for a in answers if a != int(Label.SKIP)]
            if len(real) >= 2:
                compared += 1
                agreeing += len(set(real)) == 1
        return {
            "overlapping": len(labels),
            "compared": compared,
            "agreeing": agreeing,
            "fraction": agreeing / compared if compared else None,
        }

    # ------------------------------------------------------------------ summaries

    def counts(self) -> dict[str, int]:
        """Row counts.

        Returns:
            ``segments`` and ``queries`` stored; ``preferences``: answers stored (a query may
            have several, one per teacher); ``answered``: queries with at least one answer
            (SKIP included); ``skipped``: answered queries whose every answer is
            ``Label.SKIP`` (so none of their answers is used for training); ``pending``:
            queries with no answer (``queries - answered``).

        Raises:
            StoreError: if the database read fails.
        """
        per_query = (
            select(
                PreferenceRow.query_id,
                func.min(case((PreferenceRow.label == int(Label.SKIP), 1), else_=0)).label(
                    "all_skip"
                ),
            )
            .group_by(PreferenceRow.query_id)
            .subquery()
        )
        with self.db.transaction("count rows") as session:
            n_segments = session.scalar(select(func.count()).select_from(SegmentRow)) or 0
            n_queries = session.scalar(select(func.count()).select_from(QueryRow)) or 0
            n_prefs = session.scalar(select(func.count()).select_from(PreferenceRow)) or 0
            n_answered = session.scalar(select(func.count()).select_from(per_query)) or 0
            n_skipped = (
                session.scalar(
                    select(func.count()).select_from(per_query).where(per_query.c.all_skip == 1)
                )
                or 0
            )
        return {
            "segments": n_segments,
            "queries": n_queries,
            "preferences": n_prefs,
            "answered": n_answered,
            "skipped": n_skipped,
            "pending": n_queries - n_answered,
        }

    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every stored answer, joined with its query, to a JSONL or Parquet file.

        One row per preference, in the order stored, with the fields ``query_id``, ``round``,
        ``left_id``, ``right_id``, ``source``, ``label`` (lower-case name), ``teacher_id``,
        ``timestamp`` (epoch seconds) and ``left_true_return`` / ``right_true_return`` (sum
        of the segment's true rewards, or a text segment's gold score; null when unknown).

        Args:
            path: output file; ``.jsonl`` writes JSON lines, ``.parquet`` a Parquet table.
                Parent directories are created.

        Returns:
            The number of rows written.

        Raises:
            StoreError: on any other suffix (naming the allowed ones), or if the database read
                or the file write fails.
        """
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix not in EXPORT_SUFFIXES:
            raise StoreError(
                f"feedback store: cannot export to {out.name!r}: the suffix must be one of "
                f"{', '.join(EXPORT_SUFFIXES)}"
            )
        stmt = (
            select(
                PreferenceRow.query_id,
                QueryRow.round,
                QueryRow.left_id,
                QueryRow.right_id,
                QueryRow.source,
                PreferenceRow.label,
                PreferenceRow.teacher_id,
                PreferenceRow.timestamp,
            )
            .join(QueryRow, PreferenceRow.query_id == QueryRow.id)
            .order_by(PreferenceRow.id)
        )
        with self.db.transaction("export preferences") as session:
            joined = session.execute(stmt).all()
            returns = self._true_returns(session, {i for r in joined for i in (r[2], r[3])})
        records = [
            {
                "query_id": r[0],
                "round": r[1],
                "left_id": r[2],
                "right_id": r[3],
                "source": r[4],
                "label": Label(r[5]).name.lower(),
                "teacher_id": r[6],
                "timestamp": r[7],
                "left_true_return": returns.get(r[2]),
                "right_true_return": returns.get(r[3]),
            }
            for r in joined
        ]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".jsonl":
                with out.open("w", encoding="utf-8") as fh:
                    for rec in records:
                        fh.write(json.dumps(rec) + "\n")
            else:
                self._write_parquet(out, records)
        except OSError as exc:
            raise StoreError(f"feedback store: cannot write {out}: {exc}") from exc
        return len(records)

    @staticmethod
    def _true_returns(session: Session, ids: set[int]) -> dict[int, float]:
        returns: dict[int, float] = {}
        for chunk in chunks(sorted(ids)):
            stmt = select(
                SegmentRow.id, SegmentRow.true_rewards, SegmentRow.kind, SegmentRow.gold
            ).where(SegmentRow.id.in_(chunk))
            for seg_id, blob, kind, gold in session.execute(stmt):
                if kind == TEXT:  # a completion is a one-step episode: its return is its gold
                    if gold is not None:
                        returns[seg_id] = float(gold)
                elif blob is not None:
                    rewards = decode_array(blob, f"segment {seg_id} true_rewards")
                    returns[seg_id] = float(rewards.sum(dtype=np.float32))
        return returns

    @staticmethod
    def _write_parquet(out: Path, records: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("query_id", pa.int64()),
                ("round", pa.int64()),
                ("left_id", pa.int64()),
                ("right_id", pa.int64()),
                ("source", pa.string()),
                ("label", pa.string()),
                ("teacher_id", pa.string()),
                ("timestamp", pa.float64()),
                ("left_true_return", pa.float64()),
                ("right_true_return", pa.float64()),
            ]
        )
        table = pa.Table.from_pylist(records, schema=schema)
        try:
            pq.write_table(table, out)
        except pa.ArrowException as exc:
            raise StoreError(f"feedback store: cannot write {out}: {exc}") from exc
