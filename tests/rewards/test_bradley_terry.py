import math

import numpy as np
import pytest
import torch

from rewardlab.rewards.bradley_terry import (
    bradley_terry_loss,
    preference_accuracy,
    preference_logits,
)


def test_loss_matches_hand_computed_value():
    # two members, two queries, T=2. Member 0: R_left=[1, 0], R_right=[0, 2]
    step = torch.tensor(
        [
            [[[0.5, 0.5], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]],
            [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]],
        ]
    )  # (K=2, B=2, 2, T=2)
    targets = torch.tensor([1.0, 0.5])
    logits = preference_logits(step)
    assert torch.allclose(logits, torch.tensor([[1.0, -2.0], [0.0, 1.0]]))

    def ce(logit: float, y: float) -> float:
        p = 1 / (1 + math.exp(-logit))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    member0 = (ce(1.0, 1.0) + ce(-2.0, 0.5)) / 2
    member1 = (ce(0.0, 1.0) + ce(1.0, 0.5)) / 2
    loss = bradley_terry_loss(logits, targets)
    assert loss.item() == pytest.approx(member0 + member1, rel=1e-6)


def test_equal_target_is_minimised_at_equal_returns():
    logits = torch.linspace(-3, 3, 61).reshape(1, -1)
    targets = torch.full((61,), 0.5)
    per = [bradley_terry_loss(logits[:, i : i + 1], targets[i : i + 1]).item() for i in range(61)]
    assert int(np.argmin(per)) == 30


def test_loss_gradient_matches_autograd_of_reference():
    g = torch.Generator().manual_seed(0)
    step = torch.randn(3, 5, 2, 4, generator=g, requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    loss = bradley_terry_loss(preference_logits(step), targets)
    loss.backward()
    ref_step = step.detach().clone().requires_grad_(True)
    r = ref_step.sum(-1)
    p_left = torch.exp(r[..., 0]) / (torch.exp(r[..., 0]) + torch.exp(r[..., 1]))
    ref = -(targets * torch.log(p_left) + (1 - targets) * torch.log(1 - p_left)).mean(1).sum()
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(step.grad, ref_step.grad, atol=1e-6)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="step_rewards"):
        preference_logits(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="targets"):
        bradley_terry_loss(torch.zeros(2, 3), torch.zeros(4))


def test_accuracy_ignores_equal_labels():
    logits = torch.tensor([[1.0, -1.0, 5.0, -2.0]])
    targets = torch.tensor([1.0, 1.0, 0.5, 0.0])
    assert preference_accuracy(logits, targets).item() == pytest.approx(2 / 3)


def test_weights_mask_pairs_but_the_mean_keeps_the_whole_batch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])  # (K=2, B=3)
    targets = torch.tensor([1.0, 0.0, 1.0])
    plain = bradley_terry_loss(logits, targets)
    assert torch.allclose(bradley_terry_loss(logits, targets, torch.ones(2, 3)), plain)
    assert bradley_terry_loss(logits, targets, torch.zeros(2, 3)) == 0
    only_first = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    per_pair = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0], targets[0].expand(2), reduction="none")
    expected = (per_pair / 3).sum()  # averaged over all 3 pairs, SURF Eq. 5
    assert torch.allclose(bradley_terry_loss(logits, targets, only_first), expected)


def test_lapse_loss_matches_the_lapse_model_by_hand():
    # Christiano et al. 2017, Sec. 2.2.3: P = lapse / 2 + (1 - lapse) * sigmoid(logit)
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([1.0, 1.0, 0.5])
    lapse = 0.1

    def ce(logit: float, y: float) -> float:
        p = lapse / 2 + (1 - lapse) / (1 + math.exp(-logit))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = sum(ce(x, y) for x, y in zip(logits[0].tolist(), targets.tolist(), strict=True)) / 3
    assert bradley_terry_loss(logits, targets, lapse=lapse).item() == pytest.approx(expected,
                                                                                     rel=1e-6)
    assert bradley_terry_loss(logits, targets, lapse=0.0).item() == pytest.approx(
        bradley_terry_loss(logits, targets).item())


def test_lapse_bounds_the_loss_of_a_label_against_a_confident_ranking():
    logits = torch.tensor([[60.0]])  # the model is sure the left segment is better
    flipped = torch.tensor([0.0])  # the teacher said right
    plain = bradley_terry_loss(logits, flipped).item()
    lapsed = bradley_terry_loss(logits, flipped, lapse=0.2).item()
    assert plain == pytest.approx(60.0, rel=1e-4)  # grows without bound in the logit
    assert lapsed == pytest.approx(-math.log(0.1), rel=1e-4)  # at most -log(lapse / 2)
    logits.requires_grad_(True)
    bradley_terry_loss(logits, flipped, lapse=0.2).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().item() < 1e-6


@pytest.mark.parametrize("lapse", [-0.1, 1.0])
def test_lapse_outside_the_unit_interval_is_refused(lapse):
    with pytest.raises(ValueError, match="lapse"):
        bradley_terry_loss(torch.zeros(1, 2), torch.ones(2), lapse=lapse)
