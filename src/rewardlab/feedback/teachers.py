"""Scripted teachers that answer preference queries from the environment's true reward.

Source: Lee, Smith, Dragan & Abbeel 2021, "B-Pref: Benchmarking Preference-Based Reinforcement
Learning" (NeurIPS Datasets and Benchmarks), Sec. 3.2 "Simulated human teachers", and the
``SimTeacher`` labelling routine of its reference code (github.com/rll-research/BPref,
``reward_model.py``, ``RewardModel.get_label``; ``train_PEBBLE.py`` for the thresholds).

For a query between a left segment ``sigma_0`` and a right segment ``sigma_1`` of ``H`` steps with
true rewards ``r``, a teacher answers in four stages:

1. **Skip** (``eps_skip``): only when ``delta_skip > 0``, the query is skipped
   (``Label.SKIP``) unless the larger undiscounted segment return *exceeds* the threshold,
   ``max(sum_t r(sigma_0), sum_t r(sigma_1)) > delta_skip`` (B-Pref keeps a pair with
   ``max_r_t > self.teacher_thres_skip``). So a return exactly equal to ``delta_skip`` is
   skipped.
2. **Equal** (``eps_equal``): else, if ``|sum_t r(sigma_0) - sum_t r(sigma_1)| < delta_equal``
   (strict, as B-Pref's ``margin_index``) the answer is ``Label.EQUAL``; a difference exactly
   equal to ``delta_equal`` is not equal.
3. **Choice** (``beta``, ``gamma``): the myopic returns ``R_i = sum_{t=0}^{H-1} gamma^(H-1-t)
   r_t(sigma_i)`` weigh recent steps more (B-Pref multiplies steps ``0..index`` by ``gamma``
   for ``index = 0 .. H-2``, which gives step ``t`` the weight ``gamma^(H-1-t)``). A rational
   teacher (``beta = inf``) prefers the larger ``R``, ties going to the left segment (B-Pref
   labels "right" only if ``R_0 < R_1``). Otherwise the Bradley-Terry model of Sec. 3.2 is
   sampled: ``P[left] = exp(beta R_0) / (exp(beta R_0) + exp(beta R_1)) = sigmoid(beta (R_0 -
   R_1))`` (B-Pref: a Bernoulli draw of the softmax's right-hand probability).
4. **Mistake** (``eps_mistake``): the chosen label is flipped (LEFT <-> RIGHT) when a uniform
   draw ``u`` in ``[0, 1)`` satisfies ``u <= eps_mistake`` (B-Pref's ``rand_num <=
   self.teacher_eps_mistake``). Equal and skip answers then override the (possibly flipped)
   choice.

The skip/equal checks use undiscounted sums. The thresholds are fractions of a *margin*:
``delta_skip = eps_skip * margin`` and ``delta_equal = eps_equal * margin``, where B-Pref sets
``margin = mean true return of the last 10 training episodes * segment_len /
max_episode_steps`` and refreshes it before every feedback round (see
:meth:`ScriptedTeacher.set_margin`). Until a training episode has finished the margin is 0, so
nothing is skipped or equal (B-Pref's mean of an empty deque is NaN, with the same effect).

Deliberate differences from the B-Pref code (the answers have the same distribution):

* B-Pref drops skipped pairs before drawing its random numbers; here one uniform per query is
  drawn for the Bradley-Terry choice (only if ``beta`` is finite) and one per query for
  mistakes (only if ``eps_mistake > 0``), for every query, skipped or not, and the skipped ones
  are returned as ``Label.SKIP``. So the answers to non-skipped queries do not depend on the
  margin. With ``eps_mistake = 0`` no draw is made (B-Pref would flip when its draw is exactly
  0.0, probability ``2^-53``).
* A rational teacher is ``beta = inf`` (B-Pref: ``teacher_beta <= 0``); the Bradley-Terry
  probability is computed in float64 (B-Pref: a float32 torch softmax).
* Thresholds are always ``eps * margin``. B-Pref's ``train_PEBBLE.py`` sets them so for the
  first reward update but passes ``new_margin * eps`` to ``set_teacher_thres_*``, which
  multiplies by ``eps`` again, at every later update (``eps^2 * margin``); its PPO trainer and
  the paper use ``eps * margin`` throughout, as we do.

Text queries (two completions of a prompt, :class:`rewardlab.types.TextSegment`): a completion
is a one-step episode whose single reward is the task's gold score, so a text query's rewards
are ``(batch, 2, 1)`` (:func:`one_step_rewards`, :meth:`ScriptedTeacher.label_text`) and every
stage above applies unchanged. With one step the myopic discount has nothing to discount
(``gamma^0 = 1``), so the ``myopic`` teacher answers exactly as the ``oracle`` does; the skip
and equal thresholds use the margin ``mean gold score of recent samples`` (``set_margin(mean,
1, 1)``: segment and episode are both one step), and ``beta`` is in inverse gold units.

Everything is pure NumPy (no torch), vectorised over queries and steps, and seeded through an
explicit ``np.random.Generator``. The teacher's parameters (:class:`TeacherConfig`) and the
B-Pref presets (:data:`TEACHER_PRESETS`, :func:`teacher_preset`) live in :mod:`rewardlab.config`
with the rest of the settings and are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np

from rewardlab.config import TEACHER_ALIASES, TEACHER_PRESETS, TeacherConfig, teacher_preset
from rewardlab.errors import ConfigError, RecordError
from rewardlab.types import Label

__all__ = [
    "TEACHER_ALIASES",
    "TEACHER_PRESETS",
    "ScriptedTeacher",
    "TeacherConfig",
    "discounted_segment_returns",
    "label_queries",
    "one_step_rewards",
    "teacher_preset",
]


def _real(field_name: str, value: object) -> float:
    """Coerce a config value to ``float`` or raise a ConfigError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"teacher.{field_name}: must be a real number, got {value!r}")
    return float(value)


def _check_rewards(true_rewards: object) -> np.ndarray:
    """Validate a ``(batch, 2, T)`` real array of step rewards and return it as float64."""
    arr = np.asarray(true_rewards)
    if arr.ndim != 3 or arr.shape[1] != 2 or arr.shape[2] < 1:
        raise RecordError(
            f"true_rewards: expected shape (batch, 2, T) with T >= 1, got {arr.shape}"
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise RecordError(f"true_rewards: expected a real-valued array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise RecordError("true_rewards: contains NaN or infinite values")
    return arr


def _myopic_weights(gamma: float, length: int) -> np.ndarray:
    """``(length,)`` float64 weights ``gamma^(length-1-t)`` for ``t = 0 .. length-1``."""
    return np.power(float(gamma), np.arange(length - 1, -1, -1, dtype=np.float64))


def discounted_segment_returns(true_rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Myopic segment returns of the B-Pref teacher (Lee et al. 2021, Sec. 3.2).

    ``R_i = sum_{t=0}^{T-1} gamma^(T-1-t) r_t(sigma_i)``: the last step has weight 1 and earlier
    steps are discounted, so a myopic teacher (``gamma < 1``) cares most about recent behaviour.
    With ``gamma = 1`` this is the plain undiscounted return.

    Args:
        true_rewards: ``(batch, 2, T)`` real array of per-step true rewards (index 0 = left
            segment, 1 = right segment), in the environment's reward units.
        gamma: discount in (0, 1].

    Returns:
        ``(batch, 2)`` float64 myopic returns, in reward units.

    Raises:
        RecordError: if ``true_rewards`` has the wrong shape or dtype, or non-finite values.
        ConfigError: if ``gamma`` is not in (0, 1].
    """
    rewards = _check_rewards(true_rewards)
    gamma_f = _real("gamma", gamma)
    if not 0.0 < gamma_f <= 1.0:
        raise ConfigError(f"teacher.gamma: must be in (0, 1], got {gamma!r}")
    return rewards @ _myopic_weights(gamma_f, rewards.shape[2])


def label_queries(
    true_rewards: np.ndarray,
    config: TeacherConfig,
    rng: np.random.Generator,
    margin: float = 0.0,
) -> np.ndarray:
    """Answer a batch of queries as the B-Pref scripted teacher (Lee et al. 2021, Sec. 3.2).

    Stages (see the module docstring), with B-Pref's inequalities: skip if ``max(sum
    r(sigma_0), sum r(sigma_1)) <= eps_skip * margin`` (only when that threshold is > 0; B-Pref
    keeps a pair only if the larger return is ``>`` the threshold); EQUAL if ``|sum r(sigma_0) -
    sum r(sigma_1)| < eps_equal * margin``; otherwise the larger myopic return (``beta = inf``,
    ties to LEFT) or a Bradley-Terry sample with ``P[LEFT] = sigmoid(beta (R_0 - R_1))``, then a
    LEFT <-> RIGHT flip when a uniform draw is ``<= eps_mistake``.

    Randomness: one uniform per query is drawn for the Bradley-Terry choice (only if ``beta``
    is finite) and then one per query for mistakes (only if ``eps_mistake > 0``), for every
    query of the batch, skipped or not; so the answers to non-skipped queries do not depend on
    ``margin``.

    Args:
        true_rewards: ``(batch, 2, T)`` real array of per-step true rewards, index 0 = left
            segment, 1 = right segment, in the environment's reward units. ``batch`` may be 0.
        config: the teacher's parameters.
        rng: source of randomness (consumed as described above).
        margin: reward scale of the thresholds, in return units over one segment; B-Pref uses
            ``mean episode return * segment_len / max_episode_steps``. May be negative (then
            no query is skipped or equal).

    Returns:
        ``(batch,)`` int8 :class:`~rewardlab.types.Label` codes (RIGHT=0, LEFT=1, EQUAL=2,
        SKIP=3).

    Raises:
        RecordError: if ``true_rewards`` is not ``(batch, 2, T)`` with ``T >= 1``, not real, or
            not finite.
        ConfigError: if ``margin`` is not a finite real number.
    """
    rewards = _check_rewards(true_rewards)
    margin_f = _real("margin", margin)
    if not math.isfinite(margin_f):
        raise ConfigError(f"teacher.margin: must be finite, got {margin!r}")
    batch, _, length = rewards.shape

    sums = rewards.sum(axis=2)  # (batch, 2), undiscounted
    returns = rewards @ _myopic_weights(config.gamma, length)  # (batch, 2), myopic

    if config.rational:
        prefer_left = returns[:, 0] >= returns[:, 1]  # B-Pref: right only if R_0 < R_1
    else:
        logit = config.beta * (returns[:, 0] - returns[:, 1])
        p_left = 0.5 * (1.0 + np.tanh(0.5 * logit))  # numerically stable sigmoid
        prefer_left = rng.random(batch) < p_left
    if config.eps_mistake > 0.0:
        # B-Pref: noise_index = rand_num <= teacher_eps_mistake
        prefer_left = prefer_left ^ (rng.random(batch) <= config.eps_mistake)

    labels = np.where(prefer_left, np.int8(Label.LEFT), np.int8(Label.RIGHT)).astype(np.int8)

    # B-Pref: margin_index = np.abs(sum_r_t_1 - sum_r_t_2) < teacher_thres_equal
    thres_equal = config.eps_equal * margin_f
    labels[np.abs(sums[:, 0] - sums[:, 1]) < thres_equal] = Label.EQUAL
    # B-Pref keeps a pair only if max_r_t > teacher_thres_skip (when that threshold is > 0)
    thres_skip = config.eps_skip * margin_f
    if thres_skip > 0.0:
        labels[~(sums.max(axis=1) > thres_skip)] = Label.SKIP
    return labels


def one_step_rewards(gold: np.ndarray) -> np.ndarray:
    """Gold scores of text queries as the per-step rewards the teachers read.

    A completion is a one-step episode whose reward is its gold score, so a query's two gold
    scores become ``(batch, 2, 1)`` rewards for :func:`label_queries`.

    Args:
        gold: ``(batch, 2)`` real gold scores, index 0 = left completion, 1 = right.

    Returns:
        ``(batch, 2, 1)`` float64 rewards.

    Raises:
        RecordError: if ``gold`` is not ``(batch, 2)``, not real or not finite.
    """
    arr = np.asarray(gold)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise RecordError(f"gold: expected shape (batch, 2), got {arr.shape}")
    return _check_rewards(arr[:, :, None])


class ScriptedTeacher:
    """A stateful B-Pref scripted teacher: config, seeded generator, margin and counters.

    Args:
        config: a :class:`TeacherConfig`, or a preset name for :func:`teacher_preset`.
        seed: seed of the teacher's generator, ``np.random.default_rng(seed)``; integer >= 0.
        teacher_id: id recorded with the answers; defaults to ``config.name``.

    Attributes:
        config: the teacher's parameters.
        teacher_id: non-empty string.
        rng: the teacher's ``np.random.Generator``.
        asked: number of queries labelled so far.
        answered: number of those not skipped.
        skipped: number of those skipped.
        equal: number of those answered EQUAL.

    Raises:
        ConfigError: on an unknown preset name, a bad seed or an empty teacher id.
    """

    def __init__(
        self,
        config: TeacherConfig | str = "oracle",
        seed: int = 0,
        teacher_id: str | None = None,
    ) -> None:
        if isinstance(config, str):
            config = teacher_preset(config)
        if not isinstance(config, TeacherConfig):
            raise ConfigError(
                f"teacher: expected a TeacherConfig or preset name, got {type(config).__name__}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"teacher.seed: must be an integer >= 0, got {seed!r}")
        if teacher_id is None:
            teacher_id = config.name
        if not isinstance(teacher_id, str) or not teacher_id:
            raise ConfigError(f"teacher.teacher_id: must be a non-empty string, got {teacher_id!r}")
        self.config: TeacherConfig = config
        self.teacher_id: str = teacher_id
        self.rng: np.random.Generator = np.random.default_rng(int(seed))
        self._margin: float = 0.0
        self.asked: int = 0
        self.answered: int = 0
        self.skipped: int = 0
        self.equal: int = 0

    @property
    def margin(self) -> float:
        """Reward scale of the skip/equal thresholds (return units over one segment)."""
        return self._margin

    @margin.setter
    def margin(self, value: float) -> None:
        value_f = _real("margin", value)
        if not math.isfinite(value_f):
            raise ConfigError(f"teacher.margin: must be finite, got {value!r}")
        self._margin = value_f

    @property
    def thres_skip(self) -> float:
        """Current skip threshold ``eps_skip * margin`` (return units)."""
        return self.config.eps_skip * self._margin

    @property
    def thres_equal(self) -> float:
        """Current equal threshold ``eps_equal * margin`` (return units)."""
        return self.config.eps_equal * self._margin

    def set_margin(
        self, mean_episode_return: float, segment_len: int, max_episode_steps: int
    ) -> float:
        """Update the margin as B-Pref does during training (Lee et al. 2021, Sec. 3.2).

        ``margin = mean_episode_return * segment_len / max_episode_steps``: the average true
        return of a segment-long slice of a training episode.

        Args:
            mean_episode_return: mean true (undiscounted) return of recent training episodes.
            segment_len: number of steps ``T`` of a query segment, >= 1.
            max_episode_steps: episode step limit of the environment, >= 1.

        Returns:
            The new margin (float).

        Raises:
            ConfigError: on a non-finite return or a length < 1.
        """
        mean_f = _real("margin", mean_episode_return)
        if not math.isfinite(mean_f):
            raise ConfigError(
                f"teacher.margin: mean_episode_return must be finite, got {mean_episode_return!r}"
            )
        for arg_name, value in (
            ("segment_len", segment_len),
            ("max_episode_steps", max_episode_steps),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"teacher.{arg_name}: must be an integer >= 1, got {value!r}")
        self.margin = mean_f * int(segment_len) / int(max_episode_steps)
        return self._margin

    def label(self, true_rewards: np.ndarray) -> np.ndarray:
        """Answer a batch of queries with :func:`label_queries` and update the counters.

        Args:
            true_rewards: ``(batch, 2, T)`` real array of per-step true rewards (0 = left,
                1 = right).

        Returns:
            ``(batch,)`` int8 :class:`~rewardlab.types.Label` codes.

        Raises:
            RecordError: if ``true_rewards`` has the wrong shape or dtype, or non-finite values.
        """
        labels = label_queries(true_rewards, self.config, self.rng, margin=self._margin)
        n_skipped = int(np.count_nonzero(labels == Label.SKIP))
        self.asked += int(labels.shape[0])
        self.skipped += n_skipped
        self.answered += int(labels.shape[0]) - n_skipped
        self.equal += int(np.count_nonzero(labels == Label.EQUAL))
        return labels

    def label_text(self, gold: np.ndarray) -> np.ndarray:
        """Answer a batch of text queries by their gold scores (see :func:`one_step_rewards`).

        Args:
            gold: ``(batch, 2)`` real gold scores of the left and right completions.

        Returns:
            ``(batch,)`` int8 :class:`~rewardlab.types.Label` codes.

        Raises:
            RecordError: if ``gold`` is not ``(batch, 2)``, not real or not finite.
        """
        return self.label(one_step_rewards(gold))

    def stats(self) -> dict[str, int]:
        """Counters so far: ``{"asked", "answered", "skipped", "equal"}`` (all int)."""
        return {
            "asked": self.asked,
            "answered": self.answered,
            "skipped": self.skipped,
            "equal": self.equal,
        }

    def __repr__(self) -> str:
        return (
            f"ScriptedTeacher(teacher_id={self.teacher_id!r}, config={self.config!r}, "
            f"margin={self._margin!r})"
        )
