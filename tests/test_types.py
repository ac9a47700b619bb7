import numpy as np
import pytest

from rewardlab.errors import RecordError
from rewardlab.types import LABEL_TARGETS, Label, Preference, Query, Segment


def _segment(**kw):
    base = dict(obs=np.zeros((5, 3)), actions=np.zeros((5, 2)), true_rewards=np.ones(5),
                env_id="Hopper-v5", episode_id=0, start_step=10)
    base.update(kw)
    return Segment(**base)


def test_segment_casts_to_float32_and_reports_return():
    s = _segment()
    assert s.obs.dtype == np.float32 and s.actions.dtype == np.float32
    assert s.length == 5 and s.true_return == 5.0
    assert _segment(true_rewards=None).true_return is None


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"obs": np.zeros(5)}, "Segment.obs"),
        ({"actions": np.zeros((4, 2))}, "Segment.actions"),
        ({"true_rewards": np.ones(6)}, "Segment.true_rewards"),
        ({"obs": np.zeros((5, 3), dtype=np.int64)}, "Segment.obs"),
        ({"obs": np.full((5, 3), np.nan)}, "Segment.obs"),
        ({"env_id": ""}, "Segment.env_id"),
        ({"episode_id": -1}, "Segment.episode_id"),
        ({"start_step": 1.5}, "Segment.start_step"),
    ],
)
def test_segment_errors_name_the_field(kw, field):
    with pytest.raises(RecordError, match=field):
        _segment(**kw)


def test_query_and_preference_validation():
    assert Query(1, 2, round=3).round == 3
    with pytest.raises(RecordError, match="two different segments"):
        Query(4, 4)
    with pytest.raises(RecordError, match="Query.left_id"):
        Query(-1, 2)
    p = Preference(7, "Left", "oracle", 1.0)
    assert p.label is Label.LEFT and p.target == 1.0
    assert Preference(7, 2, "oracle").target == 0.5
    with pytest.raises(RecordError, match="allowed: right, left, equal, skip"):
        Preference(7, "better", "oracle")
    with pytest.raises(RecordError, match="teacher_id"):
        Preference(7, "left", "")


def test_label_targets_follow_the_codes():
    assert LABEL_TARGETS[Label.LEFT] == 1.0 and LABEL_TARGETS[Label.RIGHT] == 0.0
    assert LABEL_TARGETS[Label.EQUAL] == 0.5 and np.isnan(LABEL_TARGETS[Label.SKIP])
