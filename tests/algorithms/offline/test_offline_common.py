import json

import numpy as np
import pytest
import torch

from rewardlab.algorithms.offline.common import (
    ActionBox,
    GeneratorDropout,
    PreferencePairs,
    Transitions,
    cosine_lr,
    polyak_update,
    rng_from_state,
    rng_state,
)
from rewardlab.errors import RecordError
from rewardlab.types import Label


def _transitions(n=5, **overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        observations=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, 3)).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
    )
    fields.update(overrides)
    return Transitions(**fields)


def test_transitions_check_shapes_dtypes_and_values():
    with pytest.raises(RecordError, match="rewards"):
        _transitions(rewards=np.zeros(4, np.float32))
    with pytest.raises(RecordError, match="terminals"):
        _transitions(terminals=np.zeros(5, np.float32))
    with pytest.raises(RecordError, match="NaN"):
        _transitions(actions=np.full((5, 2), np.nan, np.float32))
    with pytest.raises(RecordError, match="next_observations"):
        _transitions(next_observations=np.zeros((5, 4), np.float32))
    with pytest.raises(RecordError, match="empty"):
        _transitions(n=0)


def test_sample_is_seeded_and_shaped():
    data = _transitions(50)
    a = data.sample(8, np.random.default_rng(3))
    b = data.sample(8, np.random.default_rng(3))
    assert a["observations"].shape == (8, 3) and a["terminals"].dtype == torch.float32
    for key in a:
        assert torch.equal(a[key], b[key])


def test_preference_pairs_from_labels_drop_skips_and_map_targets():
    obs = np.zeros((4, 2, 3, 2), np.float32)
    act = np.zeros((4, 2, 3, 1), np.float32)
    labels = np.array([Label.LEFT, Label.SKIP, Label.EQUAL, Label.RIGHT], dtype=np.int8)
    pairs = PreferencePairs.from_labels(obs, act, labels)
    np.testing.assert_array_equal(pairs.targets, [1.0, 0.5, 0.0])
    with pytest.raises(RecordError, match="targets"):
        PreferencePairs(obs, act, np.array([1, np.nan, 0.5, 0], np.float32))
    with pytest.raises(RecordError, match=r"\(M, 2, T"):
        PreferencePairs(obs[:, :1], act[:, :1], np.ones(4, np.float32))


def test_numpy_rng_state_survives_json():
    rng = np.random.default_rng(9)
    rng.integers(0, 10, 5)
    copy = rng_from_state(json.loads(json.dumps(rng_state(rng))))
    np.testing.assert_array_equal(rng.integers(0, 1000, 20), copy.integers(0, 1000, 20))


def test_polyak_update_is_an_exponential_average():
    src, tgt = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        src.weight.fill_(1.0), tgt.weight.fill_(3.0)
    polyak_update(tgt, src, 0.25)
    torch.testing.assert_close(tgt.weight, torch.full((1, 2), 0.75 * 3.0 + 0.25 * 1.0))


def test_action_box_round_trip_and_identity_on_unit_box():
    box = ActionBox(2, np.array([0.0, -2.0]), np.array([1.0, 2.0]))
    a = torch.tensor([[0.0, 2.0], [0.5, 0.0]])
    torch.testing.assert_close(box.to_unit(a), torch.tensor([[-1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(box.from_unit(box.to_unit(a)), a)
    unit = ActionBox(2, None, None)
    torch.testing.assert_close(unit.to_unit(a), a)
    with pytest.raises(ValueError, match="low < high"):
        ActionBox(1, np.array([1.0]), np.array([1.0]))


def test_cosine_schedule_values():
    assert cosine_lr(1.0, 0, 100) == 1.0
    assert cosine_lr(1.0, 50, 100) == pytest.approx(0.5)
    assert cosine_lr(1.0, 100, 100) == pytest.approx(0.0)
    assert cosine_lr(1.0, 150, 100) == pytest.approx(0.0)


def test_generator_dropout_uses_its_generator_only():
    drop = GeneratorDropout(0.5, torch.Generator().manual_seed(0))
    x = torch.ones(1000)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    y = drop(x)
    assert torch.equal(torch.get_rng_state(), before)
    assert set(y.unique().tolist()) == {0.0, 2.0} and 400 < int((y == 0).sum()) < 600
    drop.eval()
    assert torch.equal(drop(x), x)
