"""Making the run's Gymnasium environment and reading its dimensions.

Raises :class:`~rewardlab.errors.ConfigError` naming ``env.id`` or ``env.kwargs`` for anything
Gymnasium refuses, so a bad env is reported at the config boundary, before a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rewardlab.config import EnvConfig
from rewardlab.errors import ConfigError

#: Episode limit assumed for an env registered without a time limit.
DEFAULT_EPISODE_LIMIT = 1000


@dataclass(frozen=True)
class EnvDims:
    """Shapes of a flat continuous-control env.

    Attributes:
        obs_dim: observation width. act_dim: action width.
        episode_limit: the time limit in steps (``DEFAULT_EPISODE_LIMIT`` if none is set).
        obs_itemsize: bytes per observation element (8 for MuJoCo's float64 observations,
            which Stable-Baselines3's replay buffer keeps as they are).
        state_dim: width of the simulator state recorded for rendering clips
            (``concat(qpos, qvel)`` of a MuJoCo env; 0 for other envs).
    """

    obs_dim: int
    act_dim: int
    episode_limit: int
    obs_itemsize: int = 4
    state_dim: int = 0


def make_env(env: EnvConfig) -> gym.Env:
    """A fresh Gymnasium env for the ``env`` section (its time limit overridden when asked).

    Raises:
        ConfigError: if Gymnasium does not know ``env.id`` (including a ``module:Env-v0`` id
            whose module cannot be imported) or rejects ``env.kwargs``.
    """
    kwargs = dict(env.kwargs)
    if env.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env.max_episode_steps
    try:
        return gym.make(env.id, **kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"env.id: cannot make {env.id!r}: {err}") from None
    except ImportError as err:  # a module:Env-v0 id whose module is missing or broken
        raise ConfigError(
            f"env.id: cannot make {env.id!r}: {err}; check the module part of the id"
        ) from None
    except TypeError as err:
        raise ConfigError(f"env.kwargs: {env.id} rejected {kwargs}: {err}") from None
    except Exception as err:  # noqa: BLE001 (any failure of a user-chosen env's constructor)
        raise ConfigError(
            f"env.id: making {env.id!r} with env.kwargs={dict(env.kwargs)} failed: "
            f"{type(err).__name__}: {err}"
        ) from None


def env_dims(env: EnvConfig) -> EnvDims:
    """The :class:`EnvDims` of the ``env`` section's environment.

    Raises:
        ConfigError: if the env cannot be made or its observation or action space is not a
            flat Box.
    """
    made = make_env(env)
    try:
        obs_space, act_space = made.observation_space, made.action_space
        if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
            raise ConfigError(
                f"env.id: {env.id} has {type(obs_space).__name__} observations and "
                f"{type(act_space).__name__} actions; RewardLab's online methods need "
                "continuous (Box) observation and action spaces"
            )
        spec = made.spec
        limit = int(spec.max_episode_steps) if spec and spec.max_episode_steps else (
            DEFAULT_EPISODE_LIMIT
        )
        data = getattr(made.unwrapped, "data", None)
        state_dim = (
            int(data.qpos.size + data.qvel.size)
            if hasattr(data, "qpos") and hasattr(data, "qvel") else 0
        )
        return EnvDims(
            int(np.prod(obs_space.shape)), int(np.prod(act_space.shape)), limit,
            obs_itemsize=int(np.dtype(obs_space.dtype).itemsize), state_dim=state_dim,
        )
    finally:
        made.close()
