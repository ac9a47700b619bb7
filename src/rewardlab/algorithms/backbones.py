"""The off-policy agent under PEBBLE: SB3 SAC, SBX (JAX) SAC or SBX CrossQ (``pebble.backbone``).

PEBBLE needs a handful of things from its agent beyond ``learn``/``predict``; this module hides
how each backbone does them:

* :func:`build_agent`: the agent with the ``pebble.sac`` settings. ``sac`` is Stable-Baselines3
  SAC (the PEBBLE paper's agent). ``sbx_sac`` is SBX's JAX SAC with the same settings.
  ``crossq`` is SBX's CrossQ (Bhatt et al., ICLR 2024: batch renormalisation, no target
  network) with SBX's defaults (lr 1e-3, Adam b1 0.5, policy_delay 3) except the widths, which
  come from ``pebble.sac.net_arch`` for actor and critic; ``learning_rate``/``tau`` of
  ``pebble.sac`` are not used by CrossQ.
* relabelling: every backbone stores transitions in SB3's ``ReplayBuffer`` with actions in the
  policy's [-1, 1] scale, and every policy has ``unscale_action``, so
  :func:`rewardlab.algorithms.pebble.relabel_replay_buffer` serves all three.
* :func:`reset_critic`: re-initialise the critic (and its target) and its optimiser state.
* :func:`frozen_policy`, :func:`policy_weights`, :func:`load_policy_weights`: the reference
  policy of the KL diagnostics and the early-stopping rollback target; SBX policies are
  snapshotted as :class:`JaxPolicySnapshot` and their weights given as named CPU tensors, so
  the checkpoint code stores them like SB3's.
* :func:`save_agent` / :func:`load_agent`: pickle-free checkpoints. SBX keeps its parameters,
  optimiser states and PRNG keys in flax/optax pytrees; they are flattened with
  :func:`jax.tree_util.tree_flatten_with_path` into named arrays (``agent_jax.safetensors``)
  with a JSON description (``agent_jax.json``: names, shapes, dtypes, and the treedef's text for
  the reader) and restored into an already-built agent, whose leaf paths and shapes must
  match. The counters and
  the NumPy/torch RNG states go through :func:`rewardlab.algorithms.checkpoint.save_sb3` as for
  SB3 agents.

SBX and JAX are dependencies of RewardLab (CrossQ is the default backbone); they are imported
only when a JAX backbone is used, so the ``sac`` backbone never starts JAX.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

from rewardlab.algorithms.checkpoint import load_sb3, save_sb3
from rewardlab.algorithms.policies import frozen_copy
from rewardlab.config import SACConfig
from rewardlab.errors import ConfigError, RunDirError

BACKBONES = ("sac", "sbx_sac", "crossq")
JAX_TENSORS, JAX_JSON = "agent_jax.safetensors", "agent_jax.json"
JAX_FORMAT_VERSION = 1
#: The pytrees of an SBX agent a checkpoint holds (attribute paths on the model).
JAX_STATES = ("policy.actor_state", "policy.qf_state", "ent_coef_state", "key", "policy.key",
              "policy.noise_key")


def limit_jax_threads(threads: int) -> None:
    """Ask XLA's CPU client for ``threads`` compute threads (1: no Eigen multi-threading).

    XLA reads ``XLA_FLAGS`` once, when JAX starts its CPU backend, so this must run before the
    first JAX computation; a ``XLA_FLAGS`` the user set is left alone. XLA still keeps a small
    pool of helper threads; to hold a process to one core (two runs side by side), pin it
    (``taskset -c 0 rewardlab train ...``), as the benchmark workers do.
    """
    if threads == 1:
        os.environ.setdefault(
            "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _sbx() -> Any:
    try:
        import sbx
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError("pebble.backbone sbx_sac/crossq needs SBX: "
                          "pip install sbx-rl==0.28.0 'jax>=0.10,<0.12'") from e
    return sbx


def is_jax(obj: Any) -> bool:
    """Whether ``obj`` (an agent, a policy or a snapshot) is an SBX/JAX one."""
    policy = getattr(obj, "policy", obj)
    return hasattr(policy, "actor_state")


def build_agent(backbone: str, sac: SACConfig, env: VecEnv, seed: int) -> BaseAlgorithm:
    """The off-policy agent of ``backbone`` with the ``pebble.sac`` settings on ``env``."""
    common = dict(buffer_size=sac.buffer_size, batch_size=sac.batch_size, gamma=sac.gamma,
                  learning_starts=sac.learning_starts, train_freq=sac.train_freq,
                  gradient_steps=sac.gradient_steps, seed=seed, verbose=0)
    if backbone == "sac":
        return SAC("MlpPolicy", env, learning_rate=sac.learning_rate, tau=sac.tau,
                   policy_kwargs={"net_arch": list(sac.net_arch)}, device="cpu", **common)
    if backbone == "sbx_sac":
        return _sbx().SAC("MlpPolicy", env, learning_rate=sac.learning_rate, tau=sac.tau,
                          policy_kwargs={"net_arch": list(sac.net_arch)}, **common)
    if backbone == "crossq":
        widths = list(sac.net_arch)
        return _sbx().CrossQ("MlpPolicy", env,
                             policy_kwargs={"net_arch": {"pi": widths, "qf": widths}}, **common)
    raise ConfigError(f"unknown pebble.backbone {backbone!r} (one of {', '.join(BACKBONES)})")


# ----------------------------------------------------------------------------- critic reset

def reset_critic(model: BaseAlgorithm, seed: int) -> None:
    """Re-initialise the critic and its target and reset the critic optimiser (PEBBLE Alg. 1).

    The actor, the entropy coefficient and every RNG the agent trains with are left alone.
    """
    if is_jax(model):
        _reset_jax_critic(model, seed)
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.critic.modules():
            if module is not model.critic and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    model.critic_target.load_state_dict(model.critic.state_dict())
    model.critic.optimizer = model.policy.optimizer_class(
        model.critic.parameters(), lr=model.lr_schedule(1.0), **model.policy.optimizer_kwargs
    )


def _reset_jax_critic(model: BaseAlgorithm, seed: int) -> None:
    import jax
    import jax.numpy as jnp

    policy = model.policy
    state = policy.qf_state
    qf_key, dropout_key, bn_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    # Zeros, not space samples: the spaces' RNGs must not move (Dense init needs shapes only).
    obs = jnp.zeros((1, *policy.observation_space.shape), jnp.float32)
    action = jnp.zeros((1, *policy.action_space.shape), jnp.float32)
    if hasattr(state, "batch_stats"):  # CrossQ: params and batch-renorm statistics
        variables = policy.qf.init({"params": qf_key, "dropout": dropout_key,
                                    "batch_stats": bn_key}, obs, action, train=False)
        params = variables["params"]
        new = state.replace(params=params, batch_stats=variables["batch_stats"])
    else:  # SAC: the whole variable dict, and a target network
        params = policy.qf.init({"params": qf_key, "dropout": dropout_key}, obs, action)
        new = state.replace(params=params)
    if hasattr(state, "target_params"):
        new = new.replace(target_params=params)
    policy.qf_state = new.replace(step=0, opt_state=state.tx.init(params))


# ----------------------------------------------------------------------------- policies

class JaxPolicySnapshot:
    """A frozen copy of an SBX policy: its actor (and critic) state at one moment.

    JAX arrays are immutable and SBX replaces its train states on every update, so keeping the
    states is a copy. Offers what the reference policy is used for: :meth:`predict`
    (stochastic rollouts of the regulariser's discriminator), Gaussian parameters
    (:func:`rewardlab.algorithms.policies.gaussian_params`) and ``state_dict`` /
    ``load_state_dict`` (checkpoints).
    """

    def __init__(self, policy: BasePolicy, seed: int = 0) -> None:
        import jax

        self.policy = policy
        self.actor_state = policy.actor_state
        self.qf_state = policy.qf_state
        self.key = jax.random.PRNGKey(seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _weights(self.actor_state, self.qf_state)

    def load_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        self.actor_state, self.qf_state = _load_weights(self.actor_state, self.qf_state, weights)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        import jax

        obs = np.asarray(observation, np.float32)
        single = obs.ndim == len(self.policy.observation_space.shape)
        batch = obs[None] if single else obs
        if deterministic:
            actions = self.policy.select_action(self.actor_state, batch)
        else:
            self.key, sub = jax.random.split(self.key)
            actions = self.policy.sample_action(self.actor_state, batch, sub)
        actions = self.policy.unscale_action(np.clip(np.asarray(actions), -1, 1))
        return (actions[0] if single else actions), None


def frozen_policy(policy: BasePolicy) -> Any:
    """A frozen copy of ``policy`` (SB3: :func:`frozen_copy`; SBX: a snapshot)."""
    return JaxPolicySnapshot(policy) if is_jax(policy) else frozen_copy(policy)


def _variables(state: Any) -> dict[str, Any]:
    """The weights of a train state: params, and target params / batch statistics if any."""
    out = {"params": state.params}
    for extra in ("target_params", "batch_stats"):
        if hasattr(state, extra):
            out[extra] = getattr(state, extra)
    return out


def _weights(actor_state: Any, qf_state: Any) -> dict[str, torch.Tensor]:
    import jax

    tree = {"actor": _variables(actor_state), "qf": _variables(qf_state)}
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): torch.from_numpy(np.array(leaf))
            for path, leaf in leaves}


def _load_weights(actor_state: Any, qf_state: Any,
                  weights: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    tree = {"actor": _variables(actor_state), "qf": _variables(qf_state)}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    if sorted(names) != sorted(weights):
        raise RunDirError(f"policy weights do not fit the policy: expected {len(names)} arrays "
                          f"({names[:3]}...), got {len(weights)}")
    new = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        value = weights[name].numpy()
        if value.shape != np.shape(leaf):
            raise RunDirError(f"policy weights: {name} has shape {value.shape}, the policy "
                              f"expects {np.shape(leaf)}")
        new.append(jnp.asarray(value, dtype=jnp.asarray(leaf).dtype))
    restored = jax.tree_util.tree_unflatten(treedef, new)
    return (actor_state.replace(**restored["actor"]), qf_state.replace(**restored["qf"]))


def policy_weights(policy: BasePolicy) -> dict[str, torch.Tensor]:
    """A copy of a policy's weights (actor and critic) as named CPU tensors."""
    if is_jax(policy):
        return _weights(policy.actor_state, policy.qf_state)
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def load_policy_weights(policy: BasePolicy, weights: dict[str, torch.Tensor]) -> None:
    """Put :func:`policy_weights` back into ``policy`` (optimiser states are kept)."""
    if is_jax(policy):
        policy.actor_state, policy.qf_state = _load_weights(policy.actor_state,
                                                            policy.qf_state, weights)
    else:
        policy.load_state_dict(weights)


# ----------------------------------------------------------------------------- checkpoints

def _resolve(model: Any, name: str) -> Any:
    obj = model
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _assign(model: Any, name: str, value: Any) -> None:
    *head, last = name.split(".")
    setattr(_resolve(model, ".".join(head)) if head else model, last, value)


def save_jax_state(model: BaseAlgorithm, directory: str | Path) -> None:
    """Write an SBX agent's pytrees (:data:`JAX_STATES`) as named arrays + a JSON description."""
    import jax
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    trees: dict[str, Any] = {}
    for name in JAX_STATES:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(_resolve(model, name))
        entries = []
        for path, leaf in leaves:
            key = f"{name}{jax.tree_util.keystr(path)}"
            arrays[key] = np.array(leaf)  # a contiguous copy (ascontiguousarray makes 0-d 1-d)
            entries.append({"name": key, "shape": list(arrays[key].shape),
                            "dtype": str(arrays[key].dtype)})
        trees[name] = {"treedef": str(treedef), "leaves": entries}
    save_file(arrays, str(directory / JAX_TENSORS))
    meta = {"format_version": JAX_FORMAT_VERSION, "algorithm": type(model).__name__,
            "trees": trees}
    (directory / JAX_JSON).write_text(json.dumps(meta, indent=1))


def load_jax_state(model: BaseAlgorithm, directory: str | Path) -> None:
    """Restore :func:`save_jax_state`'s files into an already-built SBX agent of the same kind.

    Raises:
        RunDirError: if a file is missing, the algorithm or a tree's structure differs, or an
            array does not fit.
    """
    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    directory = Path(directory)
    meta_path, tensor_path = directory / JAX_JSON, directory / JAX_TENSORS
    try:
        meta = json.loads(meta_path.read_text())
        arrays = load_file(str(tensor_path))
    except (OSError, ValueError) as e:
        raise RunDirError(f"cannot read the JAX agent state in {directory}: {e}") from e
    if meta.get("format_version") != JAX_FORMAT_VERSION:
        raise RunDirError(f"{meta_path}: format version {meta.get('format_version')!r}, "
                          f"expected {JAX_FORMAT_VERSION}")
    if meta.get("algorithm") != type(model).__name__:
        raise RunDirError(f"{meta_path}: saved from {meta.get('algorithm')}, "
                          f"the run builds {type(model).__name__}")
    restored = {}
    for name in JAX_STATES:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(_resolve(model, name))
        saved = meta["trees"].get(name)
        keys = [f"{name}{jax.tree_util.keystr(path)}" for path, _ in leaves]
        # The leaf paths are the structure (the treedef's text also names the jitted apply
        # functions, which differ between two builds of the same agent).
        if saved is None or [e["name"] for e in saved["leaves"]] != keys:
            raise RunDirError(f"{meta_path}: {name} does not have the structure of the "
                              "agent's (another backbone or architecture?)")
        new = []
        for key, (_, leaf) in zip(keys, leaves, strict=True):
            if key not in arrays:
                raise RunDirError(f"{tensor_path}: {key} is missing")
            # A counter may be a Python int in a fresh agent and a (1,) array after training.
            scalars = arrays[key].size == 1 == np.size(leaf)
            if arrays[key].shape != np.shape(leaf) and not scalars:
                raise RunDirError(f"{tensor_path}: {key} has shape {arrays[key].shape}, the "
                                  f"agent expects {np.shape(leaf)}")
            new.append(jnp.asarray(arrays[key]))
        restored[name] = jax.tree_util.tree_unflatten(treedef, new)
    for name, value in restored.items():
        _assign(model, name, value)


def save_agent(model: BaseAlgorithm, directory: str | Path) -> None:
    """Checkpoint any backbone (SB3 objects, counters and RNGs; SBX pytrees too)."""
    save_sb3(model, directory)
    if is_jax(model):
        save_jax_state(model, directory)


def load_agent(model: BaseAlgorithm, directory: str | Path) -> None:
    """Restore :func:`save_agent`'s checkpoint into an already-built agent."""
    load_sb3(model, directory)
    if is_jax(model):
        load_jax_state(model, directory)
