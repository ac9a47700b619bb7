"""Pickle-free checkpoints for Stable-Baselines3 agents, replay buffers and NumPy generators.

Why no pickle: a run directory is not a trusted artifact. Labels (and with them the runs that
learn from them) reach us from a web app, run directories get copied between machines and shared
between people, and unpickling executes arbitrary code on load. SB3's own ``model.save`` /
``model.load`` go through ``torch.save`` and cloudpickle, so we cannot use them. Everything here
is stored in formats that only hold data:

* ``agent.safetensors``: every tensor (module parameters and buffers, optimizer state tensors,
  plain tensor variables such as ``log_ent_coef``, the torch CPU RNG state);
* ``agent.json``: everything else (format version, algorithm class name, counters, optimizer
  ``param_groups`` and non-tensor optimizer state, the legacy NumPy global RNG state);
* replay buffers as ``.npz`` written by :func:`numpy.savez` and read back with
  ``allow_pickle=False``.

``model._get_torch_save_params()``, ``model._n_updates`` and ``model._episode_num`` are private
to Stable-Baselines3: ``pyproject.toml`` pins SB3 to the minor release (2.9) this module was
tested with, and ``tests/algorithms/test_checkpoint.py`` checks the round trip.

Loading never builds objects from the files: it fills an already-constructed model (or buffer)
of the same architecture, so a tampered file can at worst hold wrong numbers.

Layout of ``agent.safetensors`` (names come from ``model._get_torch_save_params()``):

* module ``<name>``: one key ``"<name>.<param>"`` per entry of its ``state_dict()``;
* optimizer ``<name>``: ``"<name>.state.<param_id>.<key>"`` for each tensor in its state (and
  ``"<name>.param_groups.<group>.<key>"`` for the rare tensor-valued hyperparameter);
* plain tensor variable ``<name>``: the key ``"<name>"``;
* ``"torch_rng_state"``: :func:`torch.get_rng_state` as a ``uint8`` tensor.

Besides the torch RNG, :func:`save_sb3` also records NumPy's legacy global generator, because
SB3 draws replay-buffer minibatches and PPO permutations from ``np.random``; restoring both makes
resumed training follow the same random stream as uninterrupted training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.save_util import recursive_getattr

from rewardlab.errors import RunDirError

#: Version of the ``agent.json``/``agent.safetensors`` layout written by :func:`save_sb3`.
FORMAT_VERSION = 1
AGENT_TENSORS = "agent.safetensors"
AGENT_JSON = "agent.json"
TORCH_RNG_KEY = "torch_rng_state"

#: Bit generators :func:`rng_from_json` may rebuild (looked up by name, never imported freely).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

#: Replay-buffer fields stored per transition (``next_observations`` is added when present).
_BUFFER_FIELDS = ("observations", "actions", "rewards", "dones", "timeouts")


# ------------------------------------------------------------------ JSON encoding helpers
def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn a (nested) optimizer-state value into JSON, moving tensors into ``tensors``.

    Tensors become ``{"__tensor__": key}`` (stored under ``key``), tuples ``{"__tuple__": [...]}``,
    NumPy arrays ``{"__ndarray__": [...], "dtype": ...}``; dict keys must be ``str`` or ``int``.

    Raises:
        TypeError: if the value holds something that cannot be stored without pickle.
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{key}: cannot store a NumPy array of dtype {value.dtype}")
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"{key}: cannot store a dict key of type {type(k).__name__}")
            out[str(k)] = _encode(v, f"{key}.{k}", tensors)
        return out
    raise TypeError(f"{key}: cannot store a value of type {type(value).__name__} without pickle")


def _decode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """Invert :func:`_encode` (dict keys stay strings).

    Raises:
        RunDirError: if a referenced tensor is missing from ``tensors``.
    """
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            key = value["__tensor__"]
            if key not in tensors:
                raise RunDirError(f"{where}: tensor {key!r} is missing")
            return tensors[key]
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v, tensors, where) for v in value["__tuple__"])
        if set(value) == {"__ndarray__", "dtype"}:
            return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _decode(v, tensors, where) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------ NumPy generators
def rng_state_to_json(rng: np.random.Generator) -> dict[str, Any]:
    """The state of a NumPy generator as a JSON-serialisable dict.

    Designed for PCG64 (whose ``bit_generator.state`` is a dict of plain ints, kept as ints so
    the 128-bit values survive ``json.dumps``/``json.loads`` exactly); the other NumPy bit
    generators work too, their array-valued fields are stored as tagged lists.

    Args:
        rng: the generator to describe; it is not advanced.

    Returns:
        A dict that :func:`rng_from_json` turns back into an equivalent generator.

    Raises:
        TypeError: if the generator's bit generator is not one of NumPy's own.
    """
    name = type(rng.bit_generator).__name__
    if name not in _BIT_GENERATORS:
        raise TypeError(f"unsupported bit generator {name}; expected one of {_BIT_GENERATORS}")
    return _encode(rng.bit_generator.state, "rng", {})


def rng_from_json(state: dict[str, Any]) -> np.random.Generator:
    """Rebuild a generator from :func:`rng_state_to_json` output.

    Args:
        state: the dict (typically read back from JSON).

    Returns:
        A new :class:`numpy.random.Generator` whose next draws equal those the saved one would
        have produced.

    Raises:
        RunDirError: if the dict names an unknown bit generator or does not fit it.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise RunDirError(f"unsupported RNG state: bit_generator {name!r}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = _decode(state, {}, "rng state")
    except (TypeError, ValueError, KeyError) as e:
        raise RunDirError(f"invalid {name} RNG state: {e}") from e
    return np.random.Generator(bit_generator)


# -------------------------------------------------------------------------- SB3 agents
def _resolve(model: BaseAlgorithm, name: str) -> Any:
    try:
        return recursive_getattr(model, name)
    except AttributeError as e:
        raise RunDirError(f"{type(model).__name__} has no attribute {name!r}") from e


def save_sb3(model: BaseAlgorithm, directory: str | Path) -> None:
    """Write an SB3 agent's full training state to ``agent.safetensors`` + ``agent.json``.

    Stores every object listed by ``model._get_torch_save_params()`` (policy, optimizers, and
    e.g. SAC's ``log_ent_coef``), the counters ``num_timesteps``, ``_n_updates`` and
    ``_episode_num``, the torch CPU RNG state and NumPy's legacy global RNG state. The replay
    buffer is saved separately with :func:`save_replay_buffer`; the environment's state is not
    saved (a resumed run starts a fresh episode).

    Args:
        model: the agent (any SB3 algorithm, e.g. SAC or PPO).
        directory: folder to write into; created if missing, existing files overwritten.

    Raises:
        TypeError: if an optimizer state holds a value that cannot be stored without pickle.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict_names, tensor_names = model._get_torch_save_params()
    tensors: dict[str, torch.Tensor] = {}
    objects: dict[str, Any] = {}
    for name in state_dict_names:
        obj = _resolve(model, name)
        if isinstance(obj, torch.optim.Optimizer):
            opt = obj.state_dict()
            state = {
                str(pid): {
                    key: _encode(value, f"{name}.state.{pid}.{key}", tensors)
                    for key, value in pstate.items()
                }
                for pid, pstate in opt["state"].items()
            }
            groups = [
                _encode(group, f"{name}.param_groups.{i}", tensors)
                for i, group in enumerate(opt["param_groups"])
            ]
            objects[name] = {"kind": "optimizer", "state": state, "param_groups": groups}
        elif isinstance(obj, torch.nn.Module):
            keys = []
            for key, value in obj.state_dict().items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"{name}.{key}: non-tensor module state is not supported")
                tensors[f"{name}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
                keys.append(key)
            objects[name] = {"kind": "module", "keys": keys}
        else:
            raise TypeError(f"{name}: expected a torch Module or Optimizer, got {type(obj)}")
    for name in tensor_names:
        obj = _resolve(model, name)
        if not isinstance(obj, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(obj).__name__}")
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()
        objects[name] = {"kind": "tensor"}
    tensors[TORCH_RNG_KEY] = torch.get_rng_state()
    # SB3 samples minibatches from NumPy's legacy global generator, so that is what we save.
    numpy_rng = np.random.get_state(legacy=False)  # noqa: NPY002
    meta = {
        "format_version": FORMAT_VERSION,
        "algorithm": type(model).__name__,
        "num_timesteps": int(model.num_timesteps),
        "_n_updates": int(model._n_updates),
        "_episode_num": int(model._episode_num),
        "objects": objects,
        "numpy_global_rng": _encode(numpy_rng, "numpy_global_rng", {}),
    }
    save_file(tensors, str(directory / AGENT_TENSORS))
    (directory / AGENT_JSON).write_text(json.dumps(meta, indent=1))


def _read_agent(model: BaseAlgorithm, directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and validate ``agent.json``/``agent.safetensors`` against ``model``."""
    meta_path, tensor_path = directory / AGENT_JSON, directory / AGENT_TENSORS
    missing = [p.name for p in (meta_path, tensor_path) if not p.is_file()]
    if missing:
        raise RunDirError(f"{directory}: incomplete agent checkpoint, missing {', '.join(missing)}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{meta_path}: unreadable agent metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise RunDirError(
            f"{meta_path}: unsupported format_version {version!r} (expected {FORMAT_VERSION})"
        )
    algorithm = type(model).__name__
    if meta.get("algorithm") != algorithm:
        raise RunDirError(
            f"{meta_path}: checkpoint holds a {meta.get('algorithm')!r} agent, "
            f"cannot load it into {algorithm}"
        )
    expected = set(sum(model._get_torch_save_params(), []))
    saved = set(meta.get("objects", {}))
    if saved != expected:
        raise RunDirError(
            f"{meta_path}: saved objects {sorted(saved)} do not match the model's "
            f"{sorted(expected)} (different algorithm settings, e.g. fixed vs. learned ent_coef?)"
        )
    try:
        tensors = load_file(str(tensor_path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RunDirError(f"{tensor_path}: unreadable safetensors file ({e})") from e
    if TORCH_RNG_KEY not in tensors:
        raise RunDirError(f"{tensor_path}: no {TORCH_RNG_KEY!r}")
    return meta, tensors


def load_sb3(model: BaseAlgorithm, directory: str | Path) -> None:
    """Restore a checkpoint written by :func:`save_sb3` into an already-built agent.

    The model must be of the same class and architecture as the saved one. Parameters,
    optimizer states, tensor variables, the counters and the torch (and NumPy global) RNG
    states are overwritten; the replay buffer is restored separately with
    :func:`load_replay_buffer`.

    Args:
        model: the agent to fill in (e.g. a fresh ``SAC(...)`` with the run's settings).
        directory: folder holding ``agent.safetensors`` and ``agent.json``.

    Raises:
        RunDirError: if a file is missing or unreadable, the format version or algorithm class
            differs, the saved objects do not match the model's, or a state does not fit the
            model's architecture.
    """
    directory = Path(directory)
    meta, tensors = _read_agent(model, directory)
    where = str(directory / AGENT_TENSORS)
    for name, info in meta["objects"].items():
        obj = _resolve(model, name)
        kind = info.get("kind")
        try:
            if kind == "module" and isinstance(obj, torch.nn.Module):
                missing = [k for k in info["keys"] if f"{name}.{k}" not in tensors]
                if missing:
                    raise RunDirError(f"{where}: {name} is missing {missing[:5]}")
                obj.load_state_dict({k: tensors[f"{name}.{k}"] for k in info["keys"]}, strict=True)
            elif kind == "optimizer" and isinstance(obj, torch.optim.Optimizer):
                state = {
                    int(pid): _decode(pstate, tensors, where)
                    for pid, pstate in info["state"].items()
                }
                groups = [_decode(g, tensors, where) for g in info["param_groups"]]
                obj.load_state_dict({"state": state, "param_groups": groups})
            elif kind == "tensor" and isinstance(obj, torch.Tensor):
                if name not in tensors:
                    raise RunDirError(f"{where}: tensor {name!r} is missing")
                if tensors[name].shape != obj.shape:
                    raise RunDirError(
                        f"{where}: {name} has shape {tuple(tensors[name].shape)}, "
                        f"model expects {tuple(obj.shape)}"
                    )
                with torch.no_grad():
                    obj.data.copy_(tensors[name])
            else:
                raise RunDirError(
                    f"{where}: {name} was saved as {kind!r} but is a {type(obj).__name__}"
                )
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(f"{where}: cannot restore {name}: {e}") from e
    model.num_timesteps = int(meta["num_timesteps"])
    model._n_updates = int(meta["_n_updates"])
    model._episode_num = int(meta["_episode_num"])
    torch.set_rng_state(tensors[TORCH_RNG_KEY])
    if "numpy_global_rng" in meta:
        numpy_rng = _decode(meta["numpy_global_rng"], {}, "numpy_global_rng")
        try:
            np.random.set_state(numpy_rng)  # noqa: NPY002
        except (TypeError, ValueError, KeyError) as e:
            raise RunDirError(f"{directory / AGENT_JSON}: invalid numpy_global_rng ({e})") from e


# ------------------------------------------------------------------------ replay buffers
def _buffer_rows(buffer: ReplayBuffer) -> tuple[int, int]:
    """Rows of transitions and of ``observations`` that hold data.

    With ``optimize_memory_usage`` the next observation of the newest transition lives in
    ``observations[pos]``, so one more observation row is needed while the buffer is not full.
    """
    size = buffer.buffer_size if buffer.full else buffer.pos
    obs_rows = size
    if getattr(buffer, "optimize_memory_usage", False) and not buffer.full:
        obs_rows = min(buffer.pos + 1, buffer.buffer_size)
    return size, obs_rows


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """The buffer's storage arrays by file key (dict observations as ``observations.<key>``)."""
    arrays: dict[str, np.ndarray] = {}
    fields = list(_BUFFER_FIELDS)
    if getattr(buffer, "next_observations", None) is not None:
        fields.append("next_observations")
    for name in fields:
        value = getattr(buffer, name)
        if isinstance(value, dict):
            arrays.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            arrays[name] = value
    return arrays


def save_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> None:
    """Write the filled part of a replay buffer to an ``.npz`` file (no pickle).

    Stores ``observations``, ``actions``, ``rewards``, ``dones``, ``timeouts`` and, when the
    buffer keeps them, ``next_observations`` (only the first ``buffer_size`` rows if full, else
    ``pos`` rows), plus ``pos`` and ``full`` as 0-d integer arrays.

    Args:
        buffer: an SB3 :class:`~stable_baselines3.common.buffers.ReplayBuffer`.
        path: the ``.npz`` file to write (parent folders are created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size, obs_rows = _buffer_rows(buffer)
    data = {
        key: array[: obs_rows if key.startswith("observations") else size]
        for key, array in _buffer_arrays(buffer).items()
    }
    data["pos"] = np.array(buffer.pos, dtype=np.int64)
    data["full"] = np.array(int(buffer.full), dtype=np.int64)
    with path.open("wb") as f:  # a file object keeps np.savez from appending ".npz"
        np.savez(f, **data)


def load_replay_buffer(buffer: ReplayBuffer, path: str | Path) -> None:
    """Fill an existing replay buffer from :func:`save_replay_buffer` output.

    The buffer must have the same capacity, number of envs, spaces and memory layout as the
    saved one. The file is read with ``allow_pickle=False`` and checked completely before the
    buffer is modified.

    Args:
        buffer: the buffer to write into (e.g. ``model.replay_buffer`` of a fresh agent).
        path: the ``.npz`` file.

    Raises:
        RunDirError: if the file is missing or unreadable, lacks or adds an array, or an array's
            shape or dtype does not fit the buffer.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: replay buffer file is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: unreadable replay buffer ({e})") from e
    targets = _buffer_arrays(buffer)
    expected = set(targets) | {"pos", "full"}
    if set(data) != expected:
        raise RunDirError(
            f"{path}: replay buffer arrays {sorted(data)} do not match the buffer's "
            f"{sorted(expected)}"
        )
    if data["pos"].shape != () or data["full"].shape != ():
        raise RunDirError(f"{path}: 'pos' and 'full' must be 0-d arrays")
    pos, full = int(data["pos"]), bool(data["full"])
    if not 0 <= pos < buffer.buffer_size:
        raise RunDirError(f"{path}: pos {pos} out of range for buffer_size {buffer.buffer_size}")
    size = buffer.buffer_size if full else pos
    obs_rows = size
    if getattr(buffer, "optimize_memory_usage", False) and not full:
        obs_rows = min(pos + 1, buffer.buffer_size)
    for key, target in targets.items():
        rows = obs_rows if key.startswith("observations") else size
        array = data[key]
        want = (rows, *target.shape[1:])
        if array.shape != want:
            raise RunDirError(
                f"{path}: {key} has shape {array.shape}, buffer expects {want} "
                f"(buffer_size={buffer.buffer_size}, n_envs={buffer.n_envs})"
            )
        if array.dtype != target.dtype:
            raise RunDirError(
                f"{path}: {key} has dtype {array.dtype}, buffer expects {target.dtype}"
            )
    for key, target in targets.items():
        array = data[key]
        target[: len(array)] = array
    buffer.pos = pos
    buffer.full = full
