"""Swap the environment's reward for a learned (proxy) one, keeping the true reward in ``info``.

Works for every vectorised env of Stable-Baselines3 (so for SAC and PPO alike): the proxy
reward of a whole step of all envs is computed in one batched call. The learner only ever sees
the proxy reward; the gold reward is kept in ``info["true_reward"]`` and in the
:class:`~rewardlab.data.transitions.TransitionLog` for teachers and diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rewardlab.data.transitions import TransitionLog

#: ``(obs (n, obs_dim), actions (n, act_dim)) -> (n,) float32`` proxy reward.
RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: ``() -> (n_envs, state_dim) float64`` current simulator state of every env.
StateFn = Callable[[], np.ndarray]


def mujoco_state_fn(venv: VecEnv) -> tuple[StateFn, int] | None:
    """A reader of ``concat(qpos, qvel)`` of every MuJoCo env in a ``DummyVecEnv``.

    These states let a segment be re-rendered to a clip later (a person labels clips, not
    observation vectors; observations often omit parts of the state, e.g. HalfCheetah's x).

    Returns:
        ``(state_fn, state_dim)``, or ``None`` when the envs are not in-process MuJoCo envs.
    """
    envs = getattr(venv, "envs", None)
    if not envs:
        return None
    datas = [getattr(e.unwrapped, "data", None) for e in envs]
    if any(d is None or not hasattr(d, "qpos") or not hasattr(d, "qvel") for d in datas):
        return None
    dim = int(datas[0].qpos.size + datas[0].qvel.size)

    def read() -> np.ndarray:
        # env.unwrapped.data is replaced on some resets; read it through the env each time
        return np.stack([
            np.concatenate([e.unwrapped.data.qpos, e.unwrapped.data.qvel]) for e in envs
        ])

    return read, dim


class LearnedRewardVecEnv(VecEnvWrapper):
    """Vectorised-env wrapper that returns ``reward_fn(obs_t, action_t)`` as the reward.

    Args:
        venv: the environments (their reward is the gold reward).
        log: where every step's ``(obs_t, action_t, gold reward)`` is recorded.
        reward_fn: proxy reward; ``None`` gives reward 0 (before any reward model exists,
            e.g. during PEBBLE's unsupervised pre-training, whose replay buffer is relabelled).
        state_fn: reader of the simulator state of every env (see :func:`mujoco_state_fn`),
            recorded in the log with each step; ``None`` records none.

    The observation passed to ``reward_fn`` is the one the action was taken in (for the first
    step of an episode, the reset observation), never the next episode's reset observation.
    """

    def __init__(
        self, venv: VecEnv, log: TransitionLog, reward_fn: RewardFn | None = None,
        state_fn: StateFn | None = None,
    ) -> None:
        super().__init__(venv)
        self.log = log
        self.reward_fn = reward_fn
        self.state_fn = state_fn
        self._states: np.ndarray | None = None
        self._last_obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._last_obs = np.asarray(obs, dtype=np.float32)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        if self.state_fn is not None:  # the state the action is taken in
            self._states = self.state_fn()
        self.venv.step_async(actions)

    def step_wait(self):  # noqa: ANN201 (VecEnvStepReturn)
        obs, true_rewards, dones, infos = self.venv.step_wait()
        if self._last_obs is None or self._actions is None:
            raise RuntimeError("LearnedRewardVecEnv.step_wait called before reset/step_async")
        true_rewards = np.asarray(true_rewards, dtype=np.float32)
        if self.reward_fn is None:
            proxy = np.zeros(self.num_envs, dtype=np.float32)
        else:
            proxy = np.asarray(self.reward_fn(self._last_obs, self._actions), dtype=np.float32)
        self.log.add(self._last_obs, self._actions, true_rewards, dones, self._states)
        for info, gold, prox in zip(infos, true_rewards, proxy, strict=True):
            info["true_reward"] = float(gold)
            info["proxy_reward"] = float(prox)
        self._last_obs = np.asarray(obs, dtype=np.float32)
        return obs, proxy, dones, infos
