"""The annotation load harness (benchmarks/annotation_load.py): its audit, and a short real run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rewardlab.store import FeedbackStore
from rewardlab.types import Label, Preference

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "annotation_load.py"


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("annotation_load", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_audit_counts_lost_and_duplicated_answers(harness: ModuleType, tmp_path: Path) -> None:
    tokens = harness.build_run(tmp_path, n_queries=4, n_annotators=2)
    assert len(tokens) == 2
    with FeedbackStore.open(tmp_path) as store:
        q = [x.query_id for x in store.records.pending_queries()]
        assert len(q) == 4
        store.records.add_preferences(
            [
                Preference(q[0], Label.LEFT, "annotator-00"),
                Preference(q[1], Label.SKIP, "annotator-00"),
                Preference(q[1], Label.RIGHT, "annotator-01"),  # a second answer to q1
                Preference(q[2], Label.EQUAL, "annotator-01"),  # never acknowledged
            ]
        )
    logs = [
        harness.ClientLog("annotator-00", acknowledged=[(q[0], "left"), (q[1], "skip")]),
        harness.ClientLog(
            "annotator-01",
            acknowledged=[(q[1], "right"), (q[3], "left"), (q[0], "equal")],  # q3, q0: lost
        ),
    ]
    assert harness.audit(tmp_path, logs) == {
        "submitted": 5,
        "stored": 4,
        "lost": 2,
        "duplicated": 2,
    }
    logs[1].acknowledged = [(q[1], "right"), (q[2], "equal")]
    assert harness.audit(tmp_path, logs) == {
        "submitted": 4,
        "stored": 4,
        "lost": 0,
        "duplicated": 1,
    }


def test_three_clients_for_two_seconds_lose_and_duplicate_nothing(
    harness: ModuleType, tmp_path: Path
) -> None:
    result = harness.run_load(tmp_path / "run", clients=3, queries=2000, seconds=2.0)
    assert result["annotators"] == 3 and not result["ran_out"]
    assert result["submitted"] > 0
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["stored"] == result["submitted"]
    assert set(result["statuses"]) <= {"GET 200", "POST 201"}, result["statuses"]
