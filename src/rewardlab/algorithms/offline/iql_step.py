"""IQL's gradient update as one jitted JAX function (the compute of
:meth:`rewardlab.algorithms.offline.iql.IQL.update`).

Why JAX: on one CPU core the update is nearly all 256 x 256 matrix products (about 580 MFLOP
per update at batch 256: 16 network passes of 256 rows). PyTorch's eager CPU path runs them
through MKL at about 50-60 GFLOP/s on this machine (AMD EPYC, AVX-512) and adds about 4 ms of
per-op dispatch (three optimisers' Adam loops, ~200 small ops); XLA's dot runs at about 100-110
GFLOP/s here and fuses the elementwise work and Adam into a few loops, so one update takes about
2.5x less CPU time (``benchmarks/offline_update_speed.py``). ``torch.compile`` was tried (93 s
to compile, recompiles on the optimisers, then fails on CPU with foreach Adam) and bfloat16
autocast too (8-10 ms, slower than this, with a 29% error in the first actor loss).

The math is IQL's, step for step as in the module docstring of
:mod:`~rewardlab.algorithms.offline.iql` (value step, actor step with the updated value, critic
step with the updated value, Polyak averaging of the target critics), with PyTorch's exact
operations where their rounding or gradients could differ: ``torch.optim.Adam``'s update
(``m.lerp_(g, 1 - b1)``, ``v * b2 + (1 - b2) g^2``, ``p - step_size m / (sqrt(v) / sqrt(bc2)
+ eps)`` with the bias corrections computed in float64 by the caller), ``torch.clamp``'s
gradient (1 on the closed interval) and ``torch.lerp``'s two branches. The actor and critic
steps do not read each other's parameters, so one pass computes both.

Parameters are dicts keyed by the PyTorch modules' parameter names (``"net.0.weight"``, ...),
in PyTorch's layouts: ``nn.Linear`` weights ``(out, in)``, ``EnsembleLinear`` weights
``(K, in, out)`` and biases ``(K, 1, out)``; the caller converts to and from the modules.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
#: The training state: ``actor``, ``critic``, ``value``, ``target_critic`` parameters and the
#: Adam moments ``<net>_m`` (first) and ``<net>_v`` (second) of the three trained networks.
State = dict[str, Params]
TRAINED = ("actor", "critic", "value")

_LOG_2PI = math.log(2.0 * math.pi)
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as the agent uses them


class StepConfig(NamedTuple):
    """The static (compile-time) settings of :func:`iql_step`; equal settings share a compile.

    Attributes:
        layers: linear layers per network (``len(hidden_sizes) + 1``).
        expectile: tau of the value loss (Eq. 5).
        beta: AWR inverse temperature (Eq. 7).
        max_weight: cap on the AWR weights.
        discount: gamma.
        polyak: target-critic rate (``target <- lerp(target, critic, polyak)``).
        log_std_min: lower clip of the actor's log std.
        log_std_max: upper clip of the actor's log std.
    """

    layers: int
    expectile: float
    beta: float
    max_weight: float
    discount: float
    polyak: float
    log_std_min: float
    log_std_max: float


# ------------------------------------------------------------------------------- networks
def mlp_apply(params: Params, x: jax.Array, layers: int, prefix: str = "") -> jax.Array:
    """ReLU MLP of :func:`~rewardlab.algorithms.offline.common.mlp`: ``(N, in) -> (N, out)``."""
    for i in range(layers):
        x = x @ params[f"{prefix}{2 * i}.weight"].T + params[f"{prefix}{2 * i}.bias"]
        if i < layers - 1:
            x = jax.nn.relu(x)  # gradient where x > 0, as torch.relu's
    return x


def ensemble_apply(params: Params, x: jax.Array, layers: int) -> jax.Array:
    """:class:`~rewardlab.algorithms.offline.common.EnsembleMLP`: ``(N, in) -> (K, N)``."""
    h = jnp.broadcast_to(x, (params["net.0.weight"].shape[0], *x.shape))
    for i in range(layers):
        h = jnp.matmul(h, params[f"net.{2 * i}.weight"]) + params[f"net.{2 * i}.bias"]
        if i < layers - 1:
            h = jax.nn.relu(h)
    return h[..., 0]


def torch_clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """``torch.clamp`` with its gradient: 1 where ``low <= x <= high``, else 0 (``jnp.clip``
    splits the gradient at a tie)."""
    return jnp.where((x >= low) & (x <= high), x, jnp.clip(x, low, high))


def torch_lerp(start: jax.Array, end: jax.Array, weight: float) -> jax.Array:
    """``torch.lerp(start, end, weight)``, with its branch on ``weight < 0.5``."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


# ---------------------------------------------------------------------------------- losses
def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """IQL Eq. 5: mean of ``|tau - 1(u < 0)| u^2`` over ``diff (B,)``."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * jnp.square(diff)).mean()


def gaussian_log_prob(actions: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Diagonal-Gaussian log density of ``actions (B, A)``, summed over ``A``: ``(B,)``."""
    z = (actions - mean) / std
    return (-0.5 * jnp.square(z) - jnp.log(std) - 0.5 * _LOG_2PI).sum(axis=-1)


def adam(params: Params, grads: Params, m: Params, v: Params, step_size: jax.Array,
         bc2_sqrt: jax.Array) -> tuple[Params, Params, Params]:
    """One ``torch.optim.Adam`` step (single-tensor path, default betas and eps).

    Args:
        step_size: float32 scalar ``lr / (1 - beta1^t)``.
        bc2_sqrt: float32 scalar ``sqrt(1 - beta2^t)``.
    """
    m = {k: torch_lerp(m[k], grads[k], 1.0 - _BETA1) for k in params}
    v = {k: v[k] * _BETA2 + (1.0 - _BETA2) * jnp.square(grads[k]) for k in params}
    new = {k: params[k] + (-step_size) * (m[k] / (jnp.sqrt(v[k]) / bc2_sqrt + _EPS))
           for k in params}
    return new, m, v


# ---------------------------------------------------------------------------------- update
#: The names of :func:`iql_step`'s metrics, in order.
METRICS = ("value_loss", "critic_loss", "actor_loss", "v_mean", "q_mean", "adv_mean",
           "weight_mean")


@functools.partial(jax.jit, static_argnums=(3,), donate_argnums=(0,))
def iql_step(state: State, batch: tuple[jax.Array, ...], scalars: jax.Array,
             cfg: StepConfig) -> tuple[State, jax.Array]:
    """One IQL update (jitted; the input state's buffers are donated: do not reuse them).

    Args:
        state: :data:`State`, float32.
        batch: ``(observations (B, obs_dim), actions (B, act_dim) in [-1, 1], rewards (B,),
            next_observations (B, obs_dim), terminals (B,) 1.0 = terminated)``, float32.
        scalars: ``(4,)`` float32 ``[value step size, actor step size, critic step size,
            sqrt(1 - beta2^t)]``, the step sizes ``lr / (1 - beta1^t)`` of Adam step ``t``.
        cfg: :class:`StepConfig` (static: a new value compiles again).

    Returns:
        ``(new state, (7,) float32 metrics in the order of METRICS)``.
    """
    obs, act, rew, next_obs, terminals = batch
    n = obs.shape[0]
    obs_act = jnp.concatenate([obs, act], axis=-1)

    # 1. value: expectile regression onto the target critics' min (Eq. 5)
    q_target = ensemble_apply(state["target_critic"], obs_act, cfg.layers).min(axis=0)  # (B,)

    def value_loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
        v = mlp_apply(params, obs, cfg.layers)[:, 0]
        return expectile_loss(q_target - v, cfg.expectile), v

    (value_loss, v), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(state["value"])
    value, value_m, value_v = adam(state["value"], grads, state["value_m"], state["value_v"],
                                   scalars[0], scalars[3])

    # the updated value on s (AWR weights) and s' (critic targets), in one pass
    v_both = mlp_apply(value, jnp.concatenate([obs, next_obs]), cfg.layers)[:, 0]
    v_new, v_next = v_both[:n], v_both[n:]
    adv = q_target - v_new
    weights = jnp.minimum(jnp.exp(cfg.beta * adv), cfg.max_weight)
    target = rew + cfg.discount * (1.0 - terminals) * v_next

    # 2. actor: advantage-weighted regression (Eq. 7)
    def actor_loss_fn(params: Params) -> jax.Array:
        mean = jnp.tanh(mlp_apply(params, obs, cfg.layers, prefix="net."))
        std = jnp.exp(torch_clamp(params["log_std"], cfg.log_std_min, cfg.log_std_max))
        return -(weights * gaussian_log_prob(act, mean, std)).mean()

    actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state["actor"])
    actor, actor_m, actor_v = adam(state["actor"], grads, state["actor_m"], state["actor_v"],
                                   scalars[1], scalars[3])

    # 3. critics: regression onto r + gamma (1 - terminal) V(s') (Eq. 6)
    def critic_loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
        q = ensemble_apply(params, obs_act, cfg.layers)  # (2, B)
        return jnp.square(q - target).sum(axis=0).mean(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state["critic"])
    critic, critic_m, critic_v = adam(state["critic"], grads, state["critic_m"],
                                      state["critic_v"], scalars[2], scalars[3])

    # 4. target critics
    target_critic = {k: torch_lerp(t, critic[k], cfg.polyak)
                     for k, t in state["target_critic"].items()}
    new_state = {"actor": actor, "actor_m": actor_m, "actor_v": actor_v,
                 "critic": critic, "critic_m": critic_m, "critic_v": critic_v,
                 "value": value, "value_m": value_m, "value_v": value_v,
                 "target_critic": target_critic}
    metrics = jnp.stack([value_loss, critic_loss, actor_loss, v.mean(), q.mean(), adv.mean(),
                         weights.mean()])
    return new_state, metrics
