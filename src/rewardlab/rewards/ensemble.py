"""An ensemble of MLP reward functions evaluated in one batched pass.

All members' weights are stacked, so a forward pass is a chain of ``baddbmm`` calls over a
leading member dimension: no Python loop over members. Architecture as in PEBBLE (Lee et al.
2021, "PEBBLE", App. B): 3 hidden layers of 256 units, leaky ReLU, tanh output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}
OUTPUT_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "none": nn.Identity}


class EnsembleLinear(nn.Module):
    """``members`` independent affine maps applied in one ``baddbmm``.

    Args:
        members: ensemble size K.
        in_features: input width.
        out_features: output width.

    Shapes:
        input ``(K, N, in_features)`` -> output ``(K, N, out_features)``.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def effective_weight(self) -> torch.Tensor:
        """``(K, in, out)`` weight the forward pass multiplies by."""
        return self.weight


class MaskedEnsembleLinear(EnsembleLinear):
    """An :class:`EnsembleLinear` whose weight is multiplied by a fixed 0/1 mask.

    Used as REED's separate state and action encoders in one layer (Metcalf et al. 2023): the
    block-diagonal mask sends the observation's inputs to the first ``state_embed`` outputs only
    and the action's to the last ``action_embed``, so one ``baddbmm`` computes both encoders.
    Each block is initialised as its own ``nn.Linear`` would be (bound ``1/sqrt(fan_in)`` of its
    block).

    Args:
        members: ensemble size K.
        in_sizes: ``(obs_dim, act_dim)``.
        out_sizes: ``(state_embed, action_embed)``.

    Shapes:
        input ``(K, N, obs_dim + act_dim)`` float32 -> output ``(K, N, state_embed +
        action_embed)`` float32.
    """

    def __init__(self, members: int, in_sizes: tuple[int, int], out_sizes: tuple[int, int]
                 ) -> None:
        super().__init__(members, sum(in_sizes), sum(out_sizes))
        mask = torch.zeros(sum(in_sizes), sum(out_sizes))
        mask[: in_sizes[0], : out_sizes[0]] = 1.0
        mask[in_sizes[0]:, out_sizes[0]:] = 1.0
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            for (i0, i1), (o0, o1) in (((0, in_sizes[0]), (0, out_sizes[0])),
                                       ((in_sizes[0], sum(in_sizes)),
                                        (out_sizes[0], sum(out_sizes)))):
                bound = 1.0 / math.sqrt(i1 - i0)
                nn.init.uniform_(self.weight[:, i0:i1, o0:o1], -bound, bound)
                nn.init.uniform_(self.bias[:, :, o0:o1], -bound, bound)
            self.weight.mul_(mask)

    def effective_weight(self) -> torch.Tensor:
        """``(K, in, out)`` weight with the mask applied."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.effective_weight())


#: Width of the space the predicted and the target next-state embeddings are compared in
#: (the reference's ``self_future_consistency_comparison_hidden_size``).
COMPARISON_WIDTH = 256
#: The SimSiam predictor's bottleneck: ``COMPARISON_WIDTH // 8`` in the reference.
BOTTLENECK = COMPARISON_WIDTH // 8
BATCH_NORM_EPS = 1e-5


class DynamicsHeads(nn.Module):
    """REED's self-future-consistency heads for ``members`` reward members, batched over
    members (Metcalf et al. 2023; the objective: :mod:`rewardlab.rewards.dynamics`).

    Args:
        members: ensemble size K.
        hidden: width of the members' last hidden layer (``z_sa``).
        state_embed: width of the state encoder's output.

    Shapes:
        :meth:`predict`: ``(K, N, hidden)`` -> ``(K, N, COMPARISON_WIDTH)``;
        :meth:`project`: ``(K, N, state_embed)`` -> ``(K, N, COMPARISON_WIDTH)``.
    """

    def __init__(self, members: int, hidden: int, state_embed: int) -> None:
        super().__init__()
        self.next_state = EnsembleLinear(members, hidden, state_embed)
        self.projector = EnsembleLinear(members, state_embed, COMPARISON_WIDTH)
        self.bottleneck = EnsembleLinear(members, COMPARISON_WIDTH, BOTTLENECK)
        self.bn_scale = nn.Parameter(torch.ones(members, 1, BOTTLENECK))
        self.bn_shift = nn.Parameter(torch.zeros(members, 1, BOTTLENECK))
        self.expand = EnsembleLinear(members, BOTTLENECK, COMPARISON_WIDTH)

    def project(self, state_embedding: torch.Tensor) -> torch.Tensor:
        """``g``: a state embedding into the comparison space."""
        return self.projector(state_embedding)

    def predict(self, z_sa: torch.Tensor) -> torch.Tensor:
        """``h(g(f(z_sa)))``: the predicted next-state embedding in the comparison space, with
        batch normalisation over the ``N`` transitions of each member (training mode only: the
        heads are never evaluated outside a fit)."""
        u = self.bottleneck(self.project(self.next_state(z_sa)))
        mean = u.mean(dim=1, keepdim=True)
        var = u.var(dim=1, unbiased=False, keepdim=True)
        u = (u - mean) / torch.sqrt(var + BATCH_NORM_EPS) * self.bn_scale + self.bn_shift
        return self.expand(torch.relu(u))


class RewardEnsemble(nn.Module):
    """K MLPs mapping ``concat(obs, action)`` to a per-step reward.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        members: ensemble size K (>= 1).
        hidden_sizes: widths of the hidden layers.
        activation: hidden activation, a key of :data:`ACTIVATIONS`.
        output_activation: ``"tanh"`` (PEBBLE: rewards in [-1, 1]) or ``"none"``.
        embed_sizes: ``(state_embed, action_embed)`` for REED's architecture (Metcalf et al.
            2023): a first layer that encodes the observation and the action separately
            (:class:`MaskedEnsembleLinear`), then the hidden layers, plus the heads of its
            self-future-consistency task (:class:`DynamicsHeads`,
            attribute ``dynamics``); ``None`` (default): a plain MLP on ``concat(obs, action)``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        members: int = 3,
        hidden_sizes: tuple[int, ...] = (256, 256, 256),
        activation: str = "leaky_relu",
        output_activation: str = "tanh",
        embed_sizes: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.members = members
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.embed_sizes = embed_sizes
        layers: list[nn.Module] = []
        widths = [obs_dim + act_dim, *hidden_sizes]
        if embed_sizes is not None:
            layers += [MaskedEnsembleLinear(members, (obs_dim, act_dim), embed_sizes),
                       ACTIVATIONS[activation]()]
            widths[0] = sum(embed_sizes)
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [EnsembleLinear(members, w_in, w_out), ACTIVATIONS[activation]()]
        layers += [EnsembleLinear(members, widths[-1], 1), OUTPUT_ACTIVATIONS[output_activation]()]
        self.net = nn.Sequential(*layers)
        self.dynamics = (None if embed_sizes is None
                         else DynamicsHeads(members, widths[-1], embed_sizes[0]))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's output ``z_sa``: ``(K, N, obs_dim + act_dim)`` ->
        ``(K, N, hidden_sizes[-1])`` (every layer but the reward's output layer)."""
        return self.net[:-2](x)

    def state_embedding(self, obs: torch.Tensor) -> torch.Tensor:
        """REED's state encoder alone: ``(K, N, obs_dim)`` -> ``(K, N, state_embed)``.

        Raises:
            ValueError: for a plain MLP (no ``embed_sizes``).
        """
        if self.embed_sizes is None:
            raise ValueError("state_embedding: this ensemble has no separate state encoder")
        first = self.net[0]
        k = self.embed_sizes[0]
        return self.net[1](torch.baddbmm(first.bias[..., :k], obs,
                                         first.effective_weight()[:, : self.obs_dim, :k]))

    def forward_members(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member rewards for per-member inputs.

        Args:
            x: ``(K, N, obs_dim + act_dim)`` float32; member k reads ``x[k]``.

        Returns:
            ``(K, N)`` float32 rewards.
        """
        return self.net(x).squeeze(-1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Every member's reward for the same inputs.

        Args:
            obs: ``(..., obs_dim)`` float32.
            actions: ``(..., act_dim)`` float32 with the same leading shape.

        Returns:
            ``(K, ...)`` float32 per-step rewards.
        """
        lead = obs.shape[:-1]
        x = torch.cat([obs, actions], dim=-1).reshape(1, -1, self.obs_dim + self.act_dim)
        out = self.forward_members(x.expand(self.members, -1, -1))
        return out.reshape(self.members, *lead)


def numpy_activation(module: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The NumPy function of one of :data:`ACTIVATIONS` or :data:`OUTPUT_ACTIVATIONS`.

    Args:
        module: the torch activation (its ``negative_slope`` / ``alpha`` are kept).

    Returns:
        An elementwise function: array of any shape in, same shape and dtype (float32) out.

    Raises:
        ValueError: for any other module.
    """
    if isinstance(module, nn.LeakyReLU):
        slope = np.float32(module.negative_slope)
        if 0 <= slope <= 1:  # max(x, slope x) is the leaky ReLU, in one pass
            return lambda x: np.maximum(x, slope * x)
        return lambda x: np.where(x > 0, x, slope * x)
    if isinstance(module, nn.ELU):
        alpha = np.float32(module.alpha)
        return lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if isinstance(module, nn.ReLU):
        return lambda x: np.maximum(x, np.float32(0))
    if isinstance(module, nn.Tanh):
        return np.tanh
    if isinstance(module, nn.Identity):
        return lambda x: x
    raise ValueError(f"NumpyEnsemble: no NumPy version of {type(module).__name__}")


class NumpyEnsemble:
    """A float32 NumPy copy of a :class:`RewardEnsemble`'s weights, for a few rows at a time.

    The agent asks for one step's reward per env step: at that size a torch forward pass is
    mostly call overhead (about 190-370 us for PEBBLE's 3 x 256 ensemble on one core, against
    tens of microseconds of arithmetic), so plain NumPy matmuls on a snapshot of the weights are
    several times faster, with the same float32 result up to rounding. The architecture is the
    ensemble's (PEBBLE, Lee et al. 2021, App. B, with RewardLab's output activation).

    Args:
        net: the ensemble to copy (its weights at this moment; take a new snapshot after
            every change).

    Raises:
        ValueError: if the ensemble uses a layer this copy cannot evaluate.
    """

    def __init__(self, net: RewardEnsemble) -> None:
        self.members = net.members
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.activations: list[Callable[[np.ndarray], np.ndarray]] = []
        for module in net.net:
            if isinstance(module, EnsembleLinear):  # masked layers: the weight with the mask
                self.layers.append((module.effective_weight().detach().cpu().numpy().copy(),
                                    module.bias.detach().cpu().numpy().copy()))
            else:
                self.activations.append(numpy_activation(module))
        first_w, self.first_bias = self.layers[0]  # bias (K, 1, H)
        # every member reads the same input: the first layer is one (D, K * H) matmul
        k, d, h = first_w.shape
        self.first_weight = np.ascontiguousarray(first_w.transpose(1, 0, 2).reshape(d, k * h))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Every member's reward.

        Args:
            x: ``(N, obs_dim + act_dim)`` float32.

        Returns:
            ``(K, N)`` float32 per-step rewards (unnormalised, as
            :meth:`RewardEnsemble.forward`).
        """
        n = x.shape[0]
        h = (x @ self.first_weight).reshape(n, self.members, -1).transpose(1, 0, 2)
        h = self.activations[0](h + self.first_bias)
        for (weight, bias), act in zip(self.layers[1:], self.activations[1:], strict=True):
            h = act(np.matmul(h, weight) + bias)
        return h[..., 0]
