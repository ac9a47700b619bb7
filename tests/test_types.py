import re

import numpy as np
import pytest

from rewardlab.errors import RecordError
from rewardlab.types import LABEL_TARGETS, Label, Preference, Query, Segment, TextSegment


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


def test_check_annotator_name_is_one_rule_for_every_path() -> None:
    import subprocess
    import sys

    from rewardlab.feedback.teachers import TEACHER_ALIASES, TEACHER_PRESETS
    from rewardlab.types import check_annotator_name, scripted_teacher_ids

    assert scripted_teacher_ids() >= {*TEACHER_PRESETS, *TEACHER_ALIASES}
    for ok in ("ada", "Ada Lovelace", "ada-2", "é", "oracle2", "x" * 255):
        check_annotator_name(ok)
    problems = {
        "": "empty", " ": "empty", " ada": "whitespace", "x" * 256: "at most 255",
        "oracle": "scripted teacher", "NOISY": "scripted teacher", "equal": "scripted teacher",
        "a\x00": "U+0000", "a\x1fb": "U+001F", "a\x7fb": "U+007F", "a\u200eb": "U+200E",
        "a\u2028b": "U+2028", "a\u2029b": "U+2029", "a\x9bb": "U+009B", 3: "must be a string",
    }
    for name, problem in problems.items():
        with pytest.raises(ValueError, match=re.escape(problem)):
            check_annotator_name(name)  # type: ignore[arg-type]
    code = (
        "import sys; from rewardlab.types import check_annotator_name; "
        "check_annotator_name('ada'); "
        "bad = [m for m in ('torch', 'sqlalchemy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _text(**kw):
    base = dict(
        prompt="The weather", completion=" is lovely", prompt_ids=[10, 11],
        completion_ids=np.array([12, 13, 14], dtype=np.int64), task_id="sentiment/m",
        prompt_id=0, sample_id=3, gold=0.5,
    )
    base.update(kw)
    return TextSegment(**base)


def test_text_segment_casts_ids_to_int32_and_gold_is_a_one_step_return():
    seg = _text()
    assert seg.prompt_ids.dtype == np.int32 and seg.completion_ids.dtype == np.int32
    assert seg.completion_ids.tolist() == [12, 13, 14]
    assert seg.length == 1 and seg.true_return == 0.5
    assert seg.true_rewards.dtype == np.float32 and seg.true_rewards.tolist() == [0.5]
    assert _text(gold=None).true_rewards is None and _text(gold=None).true_return is None
    assert _text(gold=np.float32(1)).gold == 1.0 and isinstance(_text(gold=1).gold, float)
    empty = _text(completion="", completion_ids=[])  # EOS at once
    assert empty.completion_ids.shape == (0,) and empty.completion_ids.dtype == np.int32


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(prompt=b"bytes"), "TextSegment.prompt: must be a string"),
        (dict(completion="a\x00b"), "TextSegment.completion: contains a NUL character"),
        (dict(completion="\ud800"), "TextSegment.completion: is not valid Unicode"),
        (dict(prompt_ids=[[1, 2]]), "TextSegment.prompt_ids: expected a 1-d array"),
        (dict(prompt_ids=[1.0, 2.0]), "TextSegment.prompt_ids: expected integer token ids"),
        (dict(prompt_ids=[True]), "TextSegment.prompt_ids: expected integer token ids"),
        (dict(completion_ids=[-1, 2]), re.escape("TextSegment.completion_ids: token ids must")),
        (dict(completion_ids=[2**31]), re.escape("range [2147483648, 2147483648]")),
        (dict(task_id=""), "TextSegment.task_id: must be a non-empty string"),
        (dict(gold=float("nan")), "TextSegment.gold: must be finite"),
        (dict(gold="high"), "TextSegment.gold: must be a real number"),
        (dict(gold=True), "TextSegment.gold: must be a real number"),
        (dict(prompt_id=-1), "TextSegment.prompt_id: must be an integer >= 0"),
        (dict(sample_id=1.5), "TextSegment.sample_id: must be an integer >= 0"),
        (dict(segment_id="7"), "TextSegment.segment_id: must be an integer or None"),
    ],
)
def test_text_segment_errors_name_the_field(kw, message):
    with pytest.raises(RecordError, match=message):
        _text(**kw)
