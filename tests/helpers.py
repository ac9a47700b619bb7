"""Shared test helpers: fast presets for end-to-end tests (tiny nets, the PointGoal toy task)
and builders of fake segments for the store and web tests."""

from __future__ import annotations

import numpy as np

from rewardlab.types import Segment, TextSegment

POINT_GOAL = "rewardlab.envs.toy:PointGoal-v0"

#: Shape of the segments :func:`random_segments` builds by default.
SEGMENT_LENGTH, OBS_DIM, ACT_DIM = 6, 4, 2


def fast_overrides(algorithm: str = "pebble", total_steps: int = 3000) -> list[str]:
    """Overrides that train in well under a minute on one core.

    The query budget is 100, or the 20 queries per round of the rounds due before
    ``total_steps`` when fewer fit (preflight refuses a budget the schedule cannot spend).
    """
    if algorithm == "pebble":  # rounds at 500, 1000, ... before total_steps
        rounds = (total_steps - 1 - 500) // 500 + 1 if total_steps > 500 else 0
    else:  # rounds due at 1024 (or half a short run) + 1024 r, on 1024-step rollouts
        first = min(1024, total_steps // 2)
        rounds = sum(-(-(first + 1024 * r) // 1024) * 1024 < total_steps for r in range(5))
    budget = max(20, min(100, 20 * rounds))
    common = [
        f"algorithm={algorithm}", f"env.id={POINT_GOAL}", f"total_steps={total_steps}",
        "feedback.segment_len=25", f"feedback.total_budget={budget}",
        "feedback.queries_per_round=20",
        "reward_model.hidden_sizes=[64, 64]", "eval.episodes=5", "progress_bar=false",
        "torch_threads=1",
    ]
    if algorithm == "pebble":
        # SB3 SAC: no JIT compilation per process (CrossQ, the default backbone, has its own
        # tests in tests/algorithms/test_backbones.py and the default-job test)
        return common + [
            "pebble.backbone=sac", "pebble.unsupervised_steps=500",
            "pebble.sac.learning_starts=500",
            "pebble.sac.net_arch=[64, 64]", "feedback.first_round_at=500",
            "feedback.round_every=500", "eval.every=1000", "checkpoint_every=1000",
        ]
    return common + [
        "ppo.n_envs=4", "ppo.n_steps=256", f"feedback.first_round_at={min(1024, total_steps // 2)}",
        "feedback.round_every=1024", "eval.every=4096", "checkpoint_every=4096",
    ]


def permutation_p_value(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                        n_perm: int = 20000) -> float:
    """One-sided permutation test p-value of mean(a) > mean(b) (with the +1 correction)."""
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    perms = np.argsort(rng.random((n_perm, pooled.size)), axis=1)
    shuffled = pooled[perms]
    diffs = shuffled[:, : a.size].mean(1) - shuffled[:, a.size :].mean(1)
    return float((1 + (diffs >= observed).sum()) / (n_perm + 1))


def random_segments(
    n: int,
    seed: int = 0,
    length: int = SEGMENT_LENGTH,
    obs_dim: int = OBS_DIM,
    act_dim: int = ACT_DIM,
    with_rewards: bool = True,
) -> list[Segment]:
    """``n`` random Hopper segments; the even ones carry true rewards (if ``with_rewards``),
    and pairs of consecutive segments share an episode."""
    rng = np.random.default_rng(seed)
    return [
        Segment(
            obs=rng.normal(size=(length, obs_dim)),
            actions=rng.uniform(-1, 1, size=(length, act_dim)),
            true_rewards=rng.normal(size=length) if with_rewards and i % 2 == 0 else None,
            env_id="Hopper-v5",
            episode_id=i // 2,
            start_step=3 * i,
        )
        for i in range(n)
    ]


def fake_segments(n: int, length: int, seed: int = 0) -> list[Segment]:
    """``n`` Hopper segments of 3-d observations and 2-d actions, without true rewards, each
    from its own episode."""
    rng = np.random.default_rng(seed)
    return [
        Segment(
            obs=rng.normal(size=(length, 3)),
            actions=rng.normal(size=(length, 2)),
            true_rewards=None,
            env_id="Hopper-v5",
            episode_id=i,
            start_step=0,
        )
        for i in range(n)
    ]


def reacher_segments(n: int, length: int = 25, seed: int = 0) -> list[Segment]:
    """``n`` consecutive Reacher-v5 segments of one random-action episode, with
    ``render_states`` (``concat(qpos, qvel)`` at each step), so their clips can be rendered."""
    import gymnasium as gym

    env = gym.make("Reacher-v5", max_episode_steps=n * length)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    states, observations, actions = [], [], []
    for _ in range(n * length):
        data = env.unwrapped.data
        states.append(np.concatenate([data.qpos, data.qvel]))  # the state the action is taken in
        action = env.action_space.sample()
        observations.append(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    env.close()
    return [
        Segment(
            obs=np.asarray(observations[i * length : (i + 1) * length], dtype=np.float32),
            actions=np.asarray(actions[i * length : (i + 1) * length], dtype=np.float32),
            true_rewards=None,
            env_id="Reacher-v5",
            episode_id=0,
            start_step=i * length,
            render_states=np.asarray(states[i * length : (i + 1) * length], dtype=np.float64),
        )
        for i in range(n)
    ]


def random_offline_dataset(
    env_id: str = "Hopper-v5", steps: int = 200, seed: int = 0, max_episode_steps: int = 40,
    dataset_id: str = "rewardlab/hopper/random-v0",
):
    """A small offline dataset of uniformly random actions (whole episodes, at least ``steps``
    steps; Hopper's early terminations and the time limit both end episodes), with MuJoCo
    render states, and its ``(E, state_dim)`` final states. No training: milliseconds."""
    import gymnasium as gym

    from rewardlab.data.offline.collect import collect_episodes

    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    columns = collect_episodes(env, lambda obs: rng.uniform(low, high), steps, seed)
    env.close()
    return columns.dataset(dataset_id, env_id, refs=(-10.0, 90.0))


# ------------------------------------------------------------------ offline datasets
PENDULUM_DATASET = "test/pendulum/medium-replay-v0"


def pendulum_swing_up(obs: np.ndarray) -> np.ndarray:
    """A scripted Pendulum-v1 controller (energy pumping, then a PD catch near the top):
    mean return about -130 against about -1240 for uniformly random torques."""
    c, s, w = (float(x) for x in obs)
    energy = 0.5 * w * w + 15.0 * c  # theta'' = 15 sin(theta) + 3 u: upright at rest is 15
    if c > 0.9 and abs(w) < 4.0:
        u = -(12.0 * np.arctan2(s, c) + 3.0 * w)
    elif energy < 15.0:
        u = 2.0 if w >= 0 else -2.0
    else:
        u = -1.0 if w >= 0 else 1.0
    return np.clip(np.array([u], dtype=np.float32), -2.0, 2.0)


def pendulum_replay_dataset(dataset_id: str = PENDULUM_DATASET, episodes: int = 30,
                            seed: int = 0, top: float = 0.6) -> str:
    """Write a medium-replay-like Pendulum-v1 Minari dataset (under ``MINARI_DATASETS_PATH``)
    and return its id: whole 200-step episodes of the scripted swing-up mixed with uniformly
    random torques, the scripted share rising linearly from 0 to ``top`` over the episodes (as
    a learning agent's replay buffer improves), with D4RL reference scores from 5 random and
    5 scripted episodes. About a second; no training."""
    import gymnasium as gym

    from rewardlab.data.offline import write_minari_dataset
    from rewardlab.data.offline.collect import collect_episodes

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    share = [0.0]

    def behaviour(obs: np.ndarray) -> np.ndarray:
        if rng.random() < share[0]:
            return pendulum_swing_up(obs)
        return rng.uniform(-2.0, 2.0, size=1).astype(np.float32)

    def next_episode(steps: int) -> None:
        share[0] = top * min(1.0, steps / (200 * max(episodes - 1, 1)))

    columns = collect_episodes(env, behaviour, 200 * episodes, seed, next_episode)
    refs = []
    for policy in (lambda obs: rng.uniform(-2.0, 2.0, size=1).astype(np.float32),
                   pendulum_swing_up):
        ref, _ = collect_episodes(env, policy, 1000, seed + 10_000).dataset("x/ref-v0",
                                                                            "Pendulum-v1")
        refs.append(float(ref.episode_returns().mean()))
    env.close()
    dataset, _ = columns.dataset(dataset_id, "Pendulum-v1", refs=(refs[0], refs[1]))
    write_minari_dataset(dataset)
    return dataset_id


#: Completions of :func:`text_segments`: clearly positive, neutral and negative ones.
TEXT_COMPLETIONS = (
    "a wonderful, happy day with good friends",
    "the report lists the figures of the year",
    "a terrible, sad and awful mistake",
    "great fun and lovely music — ünïcødé 🙂",
    "nothing happened on the way home",
    "the worst, most horrible failure",
)


def text_segments(
    n: int, prompts: int = 2, task_id: str = "sentiment/test-model", with_gold: bool = True
) -> list[TextSegment]:
    """``n`` completions of ``prompts`` prompts (segment ``i`` completes prompt ``i %
    prompts``), cycling through :data:`TEXT_COMPLETIONS`; token ids are the UTF-8 bytes and gold
    is a hand-set score (+1 positive, 0 neutral, -1 negative) when ``with_gold``."""
    gold = (1.0, 0.0, -1.0, 1.0, 0.0, -1.0)
    out = []
    for i in range(n):
        prompt = f"Prompt number {i % prompts} says"
        completion = TEXT_COMPLETIONS[i % len(TEXT_COMPLETIONS)]
        out.append(
            TextSegment(
                prompt=prompt,
                completion=completion,
                prompt_ids=np.frombuffer(prompt.encode(), dtype=np.uint8).astype(np.int32),
                completion_ids=np.frombuffer(completion.encode(), dtype=np.uint8).astype(np.int32),
                task_id=task_id,
                prompt_id=i % prompts,
                sample_id=i,
                gold=gold[i % len(gold)] if with_gold else None,
            )
        )
    return out
