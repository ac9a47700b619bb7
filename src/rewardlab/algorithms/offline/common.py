"""What the offline methods share: checked data records, batch sampling, small networks,
Polyak averaging, action-box scaling and pickle-free checkpoints (safetensors + JSON).

Only math and data live here; each method's control flow is in its own module
(:mod:`~rewardlab.algorithms.offline.iql`, :mod:`~rewardlab.algorithms.offline.td3bc`,
:mod:`~rewardlab.algorithms.offline.cpl`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rewardlab.errors import RecordError, RunDirError
from rewardlab.rewards.ensemble import EnsembleLinear

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------------ records
def _floats(name: str, value: object, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise RecordError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise RecordError(f"{name}: expected a float array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise RecordError(f"{name}: contains NaN or infinite values")
    return arr


@dataclass(frozen=True)
class Transitions:
    """An offline dataset of single steps, checked at construction.

    Attributes:
        observations: ``(N, obs_dim)`` float32, the state each action was taken in.
        actions: ``(N, act_dim)`` float32.
        rewards: ``(N,)`` float32 (the true reward or a learned one).
        next_observations: ``(N, obs_dim)`` float32.
        terminals: ``(N,)`` bool, True where the episode *terminated* after the step (no
            bootstrapping); a time-limit truncation is False.

    Raises:
        RecordError: on a wrong shape or dtype, a non-finite value or an empty dataset.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray

    def __post_init__(self) -> None:
        obs = _floats("Transitions.observations", self.observations, 2)
        n = obs.shape[0]
        if n == 0:
            raise RecordError("Transitions: the dataset is empty")
        fields = {
            "observations": obs,
            "actions": _floats("Transitions.actions", self.actions, 2),
            "rewards": _floats("Transitions.rewards", self.rewards, 1),
            "next_observations": _floats("Transitions.next_observations",
                                         self.next_observations, 2),
        }
        terminals = np.asarray(self.terminals)
        if terminals.dtype != np.bool_ or terminals.ndim != 1:
            raise RecordError(
                f"Transitions.terminals: expected a 1-d bool array, got {terminals.dtype} "
                f"shape {terminals.shape}"
            )
        fields["terminals"] = terminals
        for name, arr in fields.items():
            if arr.shape[0] != n:
                raise RecordError(f"Transitions.{name}: {arr.shape[0]} rows, observations {n}")
        if fields["next_observations"].shape != obs.shape:
            raise RecordError(
                f"Transitions.next_observations: shape {fields['next_observations'].shape} "
                f"differs from observations {obs.shape}"
            )
        for name, arr in fields.items():
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement (as both references do).

        Returns:
            Tensors ``observations (B, obs_dim)``, ``actions (B, act_dim)``, ``rewards (B,)``,
            ``next_observations (B, obs_dim)``, ``terminals (B,)`` float32 (1.0 = terminated).
        """
        idx = rng.integers(0, len(self), size=batch_size)
        return {
            "observations": torch.from_numpy(self.observations[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_observations": torch.from_numpy(self.next_observations[idx]),
            "terminals": torch.from_numpy(self.terminals[idx].astype(np.float32)),
        }


@dataclass(frozen=True)
class PreferencePairs:
    """Labelled segment pairs as the feedback store gives them, checked at construction.

    Attributes:
        obs: ``(M, 2, T, obs_dim)`` float32; index 0 of dim 1 is the left segment.
        actions: ``(M, 2, T, act_dim)`` float32.
        targets: ``(M,)`` float32 P[left preferred] in ``[0, 1]`` (1 left, 0 right, 0.5 equal:
            ``rewardlab.types.LABEL_TARGETS``).

    Raises:
        RecordError: on a wrong shape, a target outside ``[0, 1]`` (e.g. a SKIP's NaN: use
            :meth:`from_labels`) or no pairs.
    """

    obs: np.ndarray
    actions: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        obs = _floats("PreferencePairs.obs", self.obs, 4)
        actions = _floats("PreferencePairs.actions", self.actions, 4)
        targets = np.asarray(self.targets, dtype=np.float32)
        if obs.shape[0] == 0:
            raise RecordError("PreferencePairs: no labelled pairs")
        if obs.shape[1] != 2 or actions.shape[:3] != obs.shape[:3]:
            raise RecordError(
                f"PreferencePairs: expected obs (M, 2, T, obs_dim) and actions (M, 2, T, "
                f"act_dim), got {obs.shape} and {actions.shape}"
            )
        if targets.shape != (obs.shape[0],):
            raise RecordError(f"PreferencePairs.targets: shape {targets.shape}, expected "
                              f"({obs.shape[0]},)")
        if not (np.isfinite(targets) & (targets >= 0) & (targets <= 1)).all():
            raise RecordError("PreferencePairs.targets: every target must be in [0, 1] (drop "
                              "skipped queries first, e.g. with PreferencePairs.from_labels)")
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "targets", targets)

    @classmethod
    def from_labels(
        cls, obs: np.ndarray, actions: np.ndarray, labels: np.ndarray
    ) -> PreferencePairs:
        """Build from the store's int8 :class:`~rewardlab.types.Label` codes, dropping SKIPs."""
        from rewardlab.types import LABEL_TARGETS

        targets = LABEL_TARGETS[np.asarray(labels, dtype=np.int64)]
        keep = np.isfinite(targets)
        return cls(np.asarray(obs)[keep], np.asarray(actions)[keep], targets[keep])

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` pairs drawn uniformly with replacement: ``obs (B, 2, T, obs_dim)``,
        ``actions (B, 2, T, act_dim)``, ``targets (B,)``."""
        idx = rng.integers(0, len(self), size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "targets": torch.from_numpy(self.targets[idx]),
        }


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-serialisable state of a NumPy generator (for a caller's checkpoint)."""
    return rng.bit_generator.state


def rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Rebuild a NumPy generator from :func:`rng_state` (after a JSON round trip)."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


# ----------------------------------------------------------------------------------- networks
class GeneratorDropout(nn.Module):
    """Inverted dropout whose masks come from an explicit ``torch.Generator`` (``nn.Dropout``
    draws from the global generator, which library code must not use)."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.rand(x.shape, generator=self.generator, device=x.device)
        return x * mask.ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1/(1-p), in place


def mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int,
    *,
    ortho_gain: float | None = None,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """``Linear -> [Dropout] -> ReLU`` per hidden layer, then a linear output layer.

    Args:
        ortho_gain: orthogonal weight init with this gain and zero biases (the IQL and CPL
            references); ``None`` keeps PyTorch's default init (the TD3+BC reference).
        dropout: dropout after each hidden linear layer, before the activation (CPL's order);
            needs ``generator``.
    """
    widths = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers.append(nn.Linear(w_in, w_out))
        if dropout > 0.0:
            if generator is None:
                raise ValueError("mlp: dropout needs an explicit generator")
            layers.append(GeneratorDropout(dropout, generator))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(widths[-1], out_dim))
    net = nn.Sequential(*layers)
    if ortho_gain is not None:
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.orthogonal_(layer.weight, gain=ortho_gain)
                nn.init.zeros_(layer.bias)
    return net


class EnsembleMLP(nn.Module):
    """``members`` independent ReLU MLPs evaluated in one batched pass (twin critics).

    Shapes: input ``(N, in_dim)`` -> output ``(members, N)``.
    """

    def __init__(
        self, members: int, in_dim: int, hidden: tuple[int, ...], ortho_gain: float | None = None
    ) -> None:
        super().__init__()
        self.members = members
        widths = [in_dim, *hidden, 1]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layer = EnsembleLinear(members, w_in, w_out)  # nn.Linear's default init per member
            if ortho_gain is not None:
                for k in range(members):
                    nn.init.orthogonal_(layer.weight.data[k], gain=ortho_gain)
                nn.init.zeros_(layer.bias)
            layers.append(layer)
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).expand(self.members, *x.shape)  # (K, N, in)
        return self.net(x).squeeze(-1)  # (K, N)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """``target <- (1 - rate) target + rate source``, parameter by parameter."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), rate)


class ActionBox:
    """Affine map between an action box ``[low, high]`` and ``[-1, 1]``.

    The networks work in ``[-1, 1]``; for the ``[-1, 1]`` boxes of the MuJoCo locomotion tasks
    the map is the identity, so the methods are exactly the references there.
    """

    def __init__(self, act_dim: int, low: np.ndarray | None, high: np.ndarray | None) -> None:
        low_a = np.full(act_dim, -1.0) if low is None else np.asarray(low, dtype=np.float64)
        high_a = np.full(act_dim, 1.0) if high is None else np.asarray(high, dtype=np.float64)
        if low_a.shape != (act_dim,) or high_a.shape != (act_dim,):
            raise ValueError(f"action bounds must have shape ({act_dim},), got "
                             f"{low_a.shape} and {high_a.shape}")
        if not (np.isfinite(low_a).all() and np.isfinite(high_a).all() and (low_a < high_a).all()):
            raise ValueError("action bounds must be finite with low < high in every dimension")
        self.low, self.high = low_a.astype(np.float32), high_a.astype(np.float32)
        self.center = torch.from_numpy(((high_a + low_a) / 2).astype(np.float32))
        self.scale = torch.from_numpy(((high_a - low_a) / 2).astype(np.float32))

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """``(..., act_dim)`` float32 actions in the env's box -> the same in ``[-1, 1]``."""
        return (actions - self.center) / self.scale

    def from_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """``(..., act_dim)`` float32 actions in ``[-1, 1]`` -> the same in the env's box."""
        return actions * self.scale + self.center


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """``optax.cosine_decay_schedule(base_lr, total)`` at ``step`` (IQL's actor schedule):
    ``base_lr * (1 + cos(pi * min(step, total) / total)) / 2``."""
    frac = min(step, total) / total
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def as_tensor(value: Any) -> torch.Tensor:
    """A float32 tensor view of an array or tensor (no copy when already float32)."""
    return torch.as_tensor(value, dtype=torch.float32)


# -------------------------------------------------------------------------------- checkpoints
def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[
    dict[str, torch.Tensor], list[dict[str, Any]]
]:
    """Split an optimiser's state into flat tensors (for safetensors) and JSON param groups."""
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{pid}.{name}": torch.as_tensor(value).detach().cpu().clone().contiguous()
        for pid, per_param in state["state"].items()
        for name, value in per_param.items()
    }
    return tensors, state["param_groups"]


def load_optimizer(
    optimizer: torch.optim.Optimizer, prefix: str, tensors: Mapping[str, torch.Tensor],
    groups: list[dict[str, Any]],
) -> None:
    """Restore what :func:`optimizer_tensors` split."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            pid, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    directory: str | Path, name: str, tensors: Mapping[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``<name>.safetensors`` and ``<name>.json`` (``meta`` plus ``format_version``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
              str(directory / f"{name}.safetensors"))
    meta = {"format_version": CHECKPOINT_VERSION, **meta}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2))


def read_checkpoint(directory: str | Path, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what :func:`save_checkpoint` wrote.

    Raises:
        RunDirError: if a file is missing or from another format version.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise RunDirError(f"{directory}: no {name}.json/.safetensors checkpoint")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise RunDirError(f"{meta_path}: unsupported format_version {meta.get('format_version')}")
    return load_file(str(weights_path)), meta


def module_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict under ``prefix.``."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Load a module's state dict saved by :func:`module_tensors`."""
    n = len(prefix) + 1
    module.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})


# ----------------------------------------------------------------------- agent checkpoints
def agent_tensors(agent: Any, modules: Sequence[str], optimizers: Sequence[str],
                  ) -> dict[str, torch.Tensor]:
    """The tensors of an offline agent's ``modules`` and ``optimizers`` (attribute names)
    under flat keys ``<name>.<param>``, for safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    for name in modules:
        tensors.update(module_tensors(name, getattr(agent, name)))
    for name in optimizers:
        tensors.update(optimizer_tensors(getattr(agent, name), name)[0])
    return tensors


def save_agent(agent: Any, directory: str | Path, name: str,
               tensors: Mapping[str, torch.Tensor], optimizers: Sequence[str]) -> None:
    """Write ``<name>.safetensors`` (``tensors``) and ``<name>.json``: the agent's
    ``obs_dim``, ``act_dim``, ``seed``, ``config``, ``updates``, action box and the param
    groups of its ``optimizers``."""
    meta = {
        "obs_dim": agent.obs_dim, "act_dim": agent.act_dim, "seed": agent.seed,
        "config": agent.config.model_dump(mode="json"), "updates": agent.updates,
        "action_low": agent.box.low.tolist(), "action_high": agent.box.high.tolist(),
        "param_groups": {n: optimizer_tensors(getattr(agent, n), n)[1] for n in optimizers},
    }
    save_checkpoint(directory, name, tensors, meta)


def restore_agent(agent: Any, directory: str | Path, name: str, modules: Sequence[str],
                  optimizers: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Load what :func:`save_agent` wrote into ``agent`` (same architecture): its
    ``modules``, ``optimizers`` and update count. Returns the checkpoint's tensors and meta
    for whatever else the agent keeps (generators, normalisers).

    Raises:
        RunDirError: if the checkpoint is missing or from another format version.
    """
    tensors, meta = read_checkpoint(directory, name)
    for n in modules:
        load_module(n, getattr(agent, n), tensors)
    for n in optimizers:
        load_optimizer(getattr(agent, n), n, tensors, meta["param_groups"][n])
    agent.updates = int(meta["updates"])
    return tensors, meta
