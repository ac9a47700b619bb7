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


class RewardEnsemble(nn.Module):
    """K MLPs mapping ``concat(obs, action)`` to a per-step reward.

    Args:
        obs_dim: observation width.
        act_dim: action width.
        members: ensemble size K (>= 1).
        hidden_sizes: widths of the hidden layers.
        activation: hidden activation, a key of :data:`ACTIVATIONS`.
        output_activation: ``"tanh"`` (PEBBLE: rewards in [-1, 1]) or ``"none"``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        members: int = 3,
        hidden_sizes: tuple[int, ...] = (256, 256, 256),
        activation: str = "leaky_relu",
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.members = members
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        widths = [obs_dim + act_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [EnsembleLinear(members, w_in, w_out), ACTIVATIONS[activation]()]
        layers += [EnsembleLinear(members, widths[-1], 1), OUTPUT_ACTIVATIONS[output_activation]()]
        self.net = nn.Sequential(*layers)

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
            if isinstance(module, EnsembleLinear):
                self.layers.append((module.weight.detach().cpu().numpy().copy(),
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
