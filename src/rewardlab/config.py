"""Typed, validated configuration of a training run.

One :class:`TrainConfig` object is the CLI (YAML file plus ``--set key=value`` overrides), the
Python API and the ``config.yaml`` saved in each run directory. Unknown keys and bad values are
refused at construction with a :class:`~rewardlab.errors.ConfigError` naming the dotted field and
what is allowed, before anything starts.

This module is the lowest layer of RewardLab: every section's settings class lives here, and it
imports only pydantic, PyYAML, the standard library and :mod:`rewardlab.errors` /
:mod:`rewardlab.types` -- never torch, SQLAlchemy, Gymnasium or Stable-Baselines3 -- so reading
or checking a config is cheap. Checks that need the environment or the machine (episode limit,
observation sizes, memory, the store URL) are in :func:`rewardlab.algorithms.preflight.preflight`.

Scalar rules, for every section:

- integers are integers: ``true``/``false`` are refused, integral floats such as ``1e4`` or
  ``20000.0`` are accepted, ``1.5`` is refused;
- booleans are ``true`` or ``false`` only (not ``1`` or ``"yes"``);
- floats must be finite (no ``inf``/``nan``), except ``teacher.beta`` where ``inf`` means a
  perfectly rational teacher;
- no count may exceed a documented limit (:data:`MAX_STEPS` for step counts, :data:`MAX_WIDTH`
  for layer widths, ...), so a typo of a few zeros is refused instead of running for months.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rewardlab.errors import ConfigError
from rewardlab.types import NAME_LENGTH

# ---------------------------------------------------------------------------- static limits
#: Most environment steps any step count may be (``total_steps``, ``*_every``, buffer and log
#: capacities, ...): 1e9. Even at 10,000 steps/s a run that long takes more than a day; SAC on
#: a CPU manages about 100 steps/s, i.e. four months.
MAX_STEPS = 1_000_000_000
#: Widest hidden layer of any network (a 65536 x 65536 layer alone is 16 GiB of float32).
MAX_WIDTH = 65_536
#: Most hidden layers of any network.
MAX_LAYERS = 64
#: Largest minibatch of any learner.
MAX_BATCH = 1_048_576
#: Most gradient steps or epochs of one update.
MAX_REPEATS = 100_000
#: Most parallel environments (each is a simulator in this process).
MAX_ENVS = 256
#: Most episodes of one evaluation.
MAX_EPISODES = 10_000
#: Most queries of a run's budget.
MAX_QUERIES = 10_000_000
#: Largest candidate-pool multiple (``feedback.oversample``).
MAX_OVERSAMPLE = 1000
#: Longest wait for people to answer a round (one year; ``human.on_timeout=wait`` waits on).
MAX_TIMEOUT_S = 365 * 24 * 3600.0

_LIMIT_REASONS = {
    MAX_STEPS: "the most steps RewardLab accepts; no run that long could finish",
    MAX_WIDTH: "the widest layer RewardLab accepts",
    MAX_LAYERS: "the most layers RewardLab accepts",
    MAX_BATCH: "the largest minibatch RewardLab accepts",
    MAX_REPEATS: "the most repeats per update RewardLab accepts",
    MAX_ENVS: "the most parallel environments RewardLab accepts",
    MAX_EPISODES: "the most evaluation episodes RewardLab accepts",
    MAX_QUERIES: "the largest query budget RewardLab accepts",
    MAX_TIMEOUT_S: "one year; use human.on_timeout=wait to wait without limit",
}


# ---------------------------------------------------------------------------- strict scalars
def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            f"expected a number, got {str(value).lower()} (a boolean); write a number"
        )
    return value


def _require_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


#: An integer field: booleans refused, integral floats (``1e4``) accepted.
Int = Annotated[int, BeforeValidator(_refuse_bool)]
#: A float field: booleans refused (finiteness is the section's ``allow_inf_nan=False``).
Float = Annotated[float, BeforeValidator(_refuse_bool)]
#: A boolean field: only ``true`` or ``false``.
Bool = Annotated[bool, BeforeValidator(_require_bool)]
#: Hidden layer widths.
Widths = tuple[Annotated[Int, Field(ge=1, le=MAX_WIDTH)], ...]

_SECTION = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _steps(default: int | None, *, ge: int = 1, description: str) -> Any:
    """A step-count field in ``[ge, MAX_STEPS]``."""
    return Field(default, ge=ge, le=MAX_STEPS, description=description)


# ---------------------------------------------------------------------------- env and agents
class EnvConfig(BaseModel):
    """The Gymnasium environment."""

    model_config = _SECTION
    id: str = Field(
        "HalfCheetah-v5", min_length=1, description="Gymnasium id, e.g. Reacher-v5, or "
        "module:Env-v0 to import the module that registers it."
    )
    max_episode_steps: Int | None = _steps(
        None, description="Override of the time limit (default: the registered one)."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for gymnasium.make."
    )


class SACConfig(BaseModel):
    """Soft actor-critic settings (Stable-Baselines3 names; defaults are SB3's / PEBBLE's)."""

    model_config = _SECTION
    learning_rate: Float = Field(3e-4, gt=0, le=1, description="Adam learning rate.")
    buffer_size: Int = Field(
        1_000_000, ge=1000, le=MAX_STEPS, description="Replay buffer capacity (steps); "
        "must fit in memory (checked before a run starts)."
    )
    batch_size: Int = Field(256, ge=1, le=MAX_BATCH, description="Minibatch size.")
    tau: Float = Field(0.005, gt=0, le=1, description="Target network Polyak coefficient.")
    gamma: Float = Field(0.99, gt=0, le=1, description="Discount factor.")
    learning_starts: Int = _steps(
        1000, ge=0, description="Random-action steps before learning."
    )
    train_freq: Int = _steps(1, description="Env steps between updates.")
    gradient_steps: Int = Field(
        1, ge=1, le=MAX_REPEATS, description="Gradient steps per update."
    )
    net_arch: Widths = Field(
        (256, 256), max_length=MAX_LAYERS, description="Actor and critic hidden widths."
    )


class PebbleConfig(BaseModel):
    """PEBBLE (Lee et al. 2021): unsupervised pre-training and relabelling."""

    model_config = _SECTION
    unsupervised_steps: Int = _steps(
        2000, ge=0, description="Steps of pre-training on the k-NN state-entropy reward "
        "(PEBBLE Sec. 4.1); 0 disables pre-training."
    )
    knn_k: Int = Field(
        5, ge=1, le=MAX_STEPS, description="k of the k-NN state-entropy estimate (below "
        "intrinsic_relabel_every, the states the first relabel has)."
    )
    intrinsic_relabel_every: Int = _steps(
        500, description="Steps between intrinsic-reward relabels during pre-training."
    )
    reset_critic: Bool = Field(
        True, description="Re-initialise the critic after pre-training (PEBBLE Alg. 1)."
    )
    backbone: Literal["sac", "sbx_sac", "crossq"] = Field(
        "crossq", description="Off-policy agent: crossq (SBX's CrossQ, Bhatt et al. 2024: SBX "
        "defaults, widths from sac.net_arch; sac.learning_rate and sac.tau unused; the fastest "
        "and most sample-efficient here, see BENCHMARKS.md engine_speed), sac "
        "(Stable-Baselines3 SAC, the PEBBLE paper's agent) or sbx_sac (SBX's JAX SAC, same "
        "settings as sac)."
    )
    sac: SACConfig = Field(default_factory=SACConfig)

    @model_validator(mode="after")
    def _knn_fits(self) -> PebbleConfig:
        if self.unsupervised_steps > 0 and self.knn_k >= self.intrinsic_relabel_every:
            raise ValueError(
                f"pebble.knn_k ({self.knn_k}) must be below pebble.intrinsic_relabel_every "
                f"({self.intrinsic_relabel_every}): the first relabel has that many states to "
                "find neighbours among; lower knn_k or relabel less often"
            )
        return self


class PPOConfig(BaseModel):
    """PPO settings (Stable-Baselines3 names) for preference PPO (Christiano et al. 2017)."""

    model_config = _SECTION
    n_envs: Int = Field(4, ge=1, le=MAX_ENVS, description="Parallel environments.")
    n_steps: Int = _steps(512, description="Steps per env per rollout.")
    batch_size: Int = Field(
        64, ge=2, le=MAX_BATCH, description="Minibatch size (SB3 normalises advantages "
        "over it, so at least 2)."
    )
    n_epochs: Int = Field(10, ge=1, le=MAX_REPEATS, description="Epochs per rollout.")
    learning_rate: Float = Field(3e-4, gt=0, le=1, description="Adam learning rate.")
    gamma: Float = Field(0.99, gt=0, le=1, description="Discount factor.")
    gae_lambda: Float = Field(0.95, gt=0, le=1, description="GAE lambda.")
    clip_range: Float = Field(0.2, gt=0, description="PPO clip range.")
    ent_coef: Float = Field(0.0, ge=0, description="Entropy bonus coefficient.")
    net_arch: Widths = Field(
        (64, 64), max_length=MAX_LAYERS, description="Policy and value hidden widths."
    )
    use_sde: Bool = Field(
        False, description="Generalized state-dependent exploration (gSDE, Raffin et al. 2022) "
        "instead of independent Gaussian action noise (SB3's use_sde)."
    )
    sde_sample_freq: Int = Field(
        -1, ge=-1, le=MAX_STEPS, description="With use_sde: resample the gSDE noise matrix "
        "every N steps (-1: only at the start of each rollout; SB3's sde_sample_freq)."
    )

    @model_validator(mode="after")
    def _sde_consistent(self) -> PPOConfig:
        if self.sde_sample_freq == 0:
            raise ValueError(
                "ppo.sde_sample_freq: 0 is not a frequency; use -1 (resample once per rollout) "
                "or a positive number of steps"
            )
        if self.sde_sample_freq != -1 and not self.use_sde:
            raise ValueError(
                f"ppo.sde_sample_freq={self.sde_sample_freq} has no effect without "
                "ppo.use_sde=true; set ppo.use_sde=true or leave sde_sample_freq at -1"
            )
        if self.n_steps * self.n_envs < 2:
            raise ValueError(
                "ppo.n_steps x ppo.n_envs must be at least 2 (SB3 normalises advantages over "
                "a rollout); raise ppo.n_steps"
            )
        return self


# ---------------------------------------------------------------------------- feedback
#: How a round picks its queries from the candidate pool.
QueryMethod = Literal["uniform", "disagreement", "entropy"]


class FeedbackSchedule(BaseModel):
    """When, how many and which queries to ask (the ``feedback`` section).

    Whether the schedule can spend its budget within ``total_steps``, and whether segments fit
    in an episode, is checked by :func:`rewardlab.algorithms.preflight.preflight`.
    """

    model_config = _SECTION

    total_budget: Int = Field(
        200, ge=1, le=MAX_QUERIES, description="Total number of queries over the run."
    )
    queries_per_round: Int = Field(
        20, ge=1, le=MAX_QUERIES, description="Queries asked at each round."
    )
    round_every: Int = _steps(
        2800, description="Environment steps between feedback rounds. The default spreads the "
        "default budget's 10 rounds over the default 30,000-step run (steps 2000 to 27,200), so "
        "the reward model keeps learning about the states the policy reaches late; a longer "
        "run keeps learning from a frozen reward after the last round unless this is raised "
        "(or mitigation.targeted_feedback spreads the rounds over the run)."
    )
    first_round_at: Int = _steps(
        2000, ge=0, description="Environment step of the first round (PEBBLE: end of "
        "unsupervised pre-training)."
    )
    segment_len: Int = _steps(
        50, description="Steps per segment (PEBBLE: 50); at most the episode limit."
    )
    method: QueryMethod = Field("disagreement", description="Query selection method.")
    oversample: Int = Field(
        10, ge=1, le=MAX_OVERSAMPLE, description="Candidate pool size as a multiple of "
        "queries_per_round."
    )
    recent_steps: Int | None = _steps(
        None, description="If set, segments are cut only from the last N steps "
        "collected (per env), N >= segment_len; default: the whole log."
    )

    @model_validator(mode="after")
    def _budget_fits(self) -> FeedbackSchedule:
        if self.queries_per_round > self.total_budget:
            raise ValueError(
                f"feedback.queries_per_round ({self.queries_per_round}) exceeds "
                f"feedback.total_budget ({self.total_budget}); lower queries_per_round or "
                "raise total_budget"
            )
        if self.recent_steps is not None and self.recent_steps < self.segment_len:
            raise ValueError(
                f"feedback.recent_steps ({self.recent_steps}) is shorter than "
                f"feedback.segment_len ({self.segment_len}), so no segment could be cut; "
                "raise recent_steps or leave it unset"
            )
        return self


# ---------------------------------------------------------------------------- teachers
def _real(field_name: str, value: object) -> float:
    """Coerce a teacher parameter to ``float`` or raise a ConfigError naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"teacher.{field_name}: must be a real number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TeacherConfig:
    """Parameters of a B-Pref scripted teacher (Lee et al. 2021, Sec. 3.2).

    The oracle (default) is perfectly rational: ``beta = inf``, ``gamma = 1`` and no mistakes,
    skips or equal answers. See :data:`TEACHER_PRESETS` for the six B-Pref teachers, and
    :mod:`rewardlab.feedback.teachers` for how a teacher answers.

    Raises:
        ConfigError: if a field is out of range; the message names the field, e.g.
            ``"teacher.gamma: must be in (0, 1], got 1.5"``.
    """

    name: str = "oracle"
    """Name of the teacher, used as the default ``teacher_id`` of the answers it gives."""
    beta: float = math.inf
    """Rationality (inverse temperature) of the Bradley-Terry choice, > 0; ``math.inf`` means a
    perfectly rational (deterministic) teacher. Units: 1 / (return units)."""
    gamma: float = 1.0
    """Myopia discount in (0, 1]: step ``t`` of an ``H``-step segment weighs ``gamma^(H-1-t)``
    in the choice, so recent steps count more; 1.0 means not myopic."""
    eps_mistake: float = 0.0
    """Probability in [0, 1] that the chosen label is flipped (LEFT <-> RIGHT)."""
    eps_skip: float = 0.0
    """Skip threshold as a fraction (>= 0) of the margin: when ``eps_skip * margin > 0``, a query
    is skipped unless one segment's undiscounted return exceeds ``eps_skip * margin`` (a return
    equal to it is skipped, as in B-Pref). 0 disables skipping."""
    eps_equal: float = 0.0
    """Equal threshold as a fraction (>= 0) of the margin: the answer is EQUAL when the
    undiscounted returns differ by less than ``eps_equal * margin``. 0 disables it."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"teacher.name: must be a non-empty string, got {self.name!r}")
        beta = _real("beta", self.beta)
        if not beta > 0:  # also rejects NaN; +inf is allowed (rational teacher)
            raise ConfigError(f"teacher.beta: must be > 0 or inf, got {self.beta!r}")
        gamma = _real("gamma", self.gamma)
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"teacher.gamma: must be in (0, 1], got {self.gamma!r}")
        eps_mistake = _real("eps_mistake", self.eps_mistake)
        if not 0.0 <= eps_mistake <= 1.0:
            raise ConfigError(f"teacher.eps_mistake: must be in [0, 1], got {self.eps_mistake!r}")
        eps_skip = _real("eps_skip", self.eps_skip)
        if not (eps_skip >= 0.0 and math.isfinite(eps_skip)):
            raise ConfigError(f"teacher.eps_skip: must be finite and >= 0, got {self.eps_skip!r}")
        eps_equal = _real("eps_equal", self.eps_equal)
        if not (eps_equal >= 0.0 and math.isfinite(eps_equal)):
            raise ConfigError(f"teacher.eps_equal: must be finite and >= 0, got {self.eps_equal!r}")
        for field_name, value in (
            ("beta", beta),
            ("gamma", gamma),
            ("eps_mistake", eps_mistake),
            ("eps_skip", eps_skip),
            ("eps_equal", eps_equal),
        ):
            object.__setattr__(self, field_name, value)

    @property
    def rational(self) -> bool:
        """True when ``beta`` is infinite (deterministic choice of the larger myopic return)."""
        return math.isinf(self.beta)


#: The six B-Pref teachers (Lee et al. 2021, Sec. 3.2); each changes one parameter of the oracle.
TEACHER_PRESETS: dict[str, TeacherConfig] = {
    "oracle": TeacherConfig(name="oracle"),
    "stochastic": TeacherConfig(name="stochastic", beta=1.0),
    "mistake": TeacherConfig(name="mistake", eps_mistake=0.1),
    "skip": TeacherConfig(name="skip", eps_skip=0.1),
    "equal": TeacherConfig(name="equal", eps_equal=0.1),
    "myopic": TeacherConfig(name="myopic", gamma=0.9),
}

#: Other accepted names for presets, mapped to the canonical key of :data:`TEACHER_PRESETS`.
TEACHER_ALIASES: dict[str, str] = {"noisy": "stochastic"}


def _allowed_preset_names() -> str:
    aliases = [f"{alias} (= {target})" for alias, target in TEACHER_ALIASES.items()]
    return ", ".join([*TEACHER_PRESETS, *aliases])


def teacher_preset(name: str, **overrides: object) -> TeacherConfig:
    """Return a B-Pref preset teacher config, optionally with some fields overridden.

    Args:
        name: a key of :data:`TEACHER_PRESETS` (``"oracle"``, ``"stochastic"``, ``"mistake"``,
            ``"skip"``, ``"equal"``, ``"myopic"``) or an alias (``"noisy"`` = ``"stochastic"``);
            case-insensitive. Presets follow Lee et al. 2021, Sec. 3.2.
        **overrides: :class:`TeacherConfig` fields to replace, e.g. ``eps_mistake=0.2``
            (to rename the result, use ``dataclasses.replace(config, name=...)``).

    Returns:
        A validated :class:`TeacherConfig`.

    Raises:
        ConfigError: for an unknown name (the message lists the allowed names), an unknown
            override field, or an override out of range.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    key = TEACHER_ALIASES.get(key, key)
    if key not in TEACHER_PRESETS:
        raise ConfigError(
            f"teacher.name: unknown teacher {name!r}; allowed: {_allowed_preset_names()}"
        )
    field_names = [f.name for f in dataclasses.fields(TeacherConfig)]
    for field_name in overrides:
        if field_name not in field_names:
            raise ConfigError(
                f"teacher.{field_name}: unknown field; allowed: {', '.join(field_names)}"
            )
    return dataclasses.replace(TEACHER_PRESETS[key], **overrides)


#: ``teacher.preset`` value that makes people answer the queries in the web app.
HUMAN_TEACHER = "human"


class TeacherSettings(BaseModel):
    """Which scripted teacher answers queries (B-Pref presets, optionally overridden)."""

    model_config = _SECTION
    preset: str = Field(
        "oracle",
        description="One of: " + ", ".join([*TEACHER_PRESETS, *TEACHER_ALIASES]) + ", or "
        "human (people answer in the web app; see the human section). `--set teacher=NAME` "
        "is short for `--set teacher.preset=NAME`.",
    )
    beta: Annotated[float, AllowInfNan(True), BeforeValidator(_refuse_bool)] | None = Field(
        None, description="Rationality (inf = perfectly rational; NaN is refused)."
    )
    gamma: Float | None = Field(
        None, gt=0, le=1, description="Myopic discount of older steps, in (0, 1]."
    )
    eps_mistake: Float | None = Field(
        None, ge=0, le=1, description="Probability of flipping an answer."
    )
    eps_skip: Float | None = Field(
        None, ge=0, description="Skip threshold, fraction of the margin."
    )
    eps_equal: Float | None = Field(
        None, ge=0, description="Equal threshold, fraction of margin."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"preset": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> TeacherSettings:
        if not self.human:
            try:
                self.build()
            except ConfigError as err:
                if self.preset in {*TEACHER_PRESETS, *TEACHER_ALIASES}:
                    raise
                hint = f"{HUMAN_TEACHER}: people answer in the web app"
                msg = str(err).replace("teacher.name:", "teacher.preset:", 1)
                raise ValueError(f"{msg} (or {hint})") from None
        return self

    @property
    def human(self) -> bool:
        """Whether people answer the queries (``preset == "human"``)."""
        return self.preset.strip().lower() == HUMAN_TEACHER

    def build(self, preset: str | None = None) -> TeacherConfig:
        """The validated scripted :class:`TeacherConfig`.

        Args:
            preset: scripted preset to build instead of ``self.preset`` (the human teacher's
                scripted helper, ``human.scripted``), with this section's overrides.

        Raises:
            ConfigError: naming the field for an unknown preset or an out-of-range override.
        """
        overrides = {
            k: v for k, v in self.model_dump().items() if k != "preset" and v is not None
        }
        return teacher_preset(preset or self.preset, **overrides)


class HumanConfig(BaseModel):
    """People answering queries in the annotation web app (``teacher=human``).

    At each feedback round training pauses until every query of the round has answers from
    ``min(overlap, annotators)`` people, or until ``timeout_s`` passes, when ``on_timeout``
    decides: ``wait`` on, ``skip`` the round's unanswered queries (training goes on with the
    labels given so far), or have the ``scripted`` teacher answer them.
    """

    model_config = _SECTION
    on_timeout: Literal["wait", "skip", "scripted"] = Field(
        "wait", description="What happens when a round is not answered within timeout_s: "
        "wait on, skip the unanswered queries, or let the scripted teacher answer them."
    )
    timeout_s: Float = Field(
        600.0, gt=0, le=MAX_TIMEOUT_S,
        description="Seconds to wait for a round before on_timeout acts.",
    )
    scripted: str = Field(
        "oracle", description="Scripted teacher preset that answers on timeout "
        "(on_timeout=scripted) and pre-labels in mixed mode; teacher.* overrides apply."
    )
    mixed: Bool = Field(
        False, description="Mixed mode: the scripted teacher pre-labels each round at once, "
        "people audit in the web app and their answers (can't tell included) override its."
    )
    annotators: tuple[str, ...] = Field(
        ("annotator",), description="Annotators created at the start of a new run; their "
        "login links are printed once. Add more with `rewardlab annotators add`."
    )
    serve: Bool = Field(
        True, description="Serve the annotation web app from the training process."
    )
    host: str = Field("127.0.0.1", min_length=1, description="Host the web app listens on.")
    port: Int = Field(8000, ge=0, le=65535, description="Port of the web app (0: any free).")
    overlap: Int = Field(
        1, ge=1, le=MAX_ENVS, description="People handed each query (1: never the same query "
        "twice); with more, agreement shows in `rewardlab report`."
    )
    poll_s: Float = Field(
        0.5, gt=0, le=60, description="Seconds between checks of the store while waiting."
    )

    @model_validator(mode="after")
    def _check(self) -> HumanConfig:
        from rewardlab.feedback.teachers import teacher_preset
        from rewardlab.types import check_annotator_name

        if self.scripted.strip().lower() == HUMAN_TEACHER:
            raise ValueError("human.scripted: must be a scripted preset, e.g. oracle")
        try:
            scripted_id = teacher_preset(self.scripted).name  # the teacher_id of its answers
        except ConfigError as err:
            raise ValueError(f"human.scripted: {err}") from None
        if not self.annotators and self.serve:
            raise ValueError(
                "human.annotators: empty; name at least one, or add them with "
                "`rewardlab annotators add NAME --run RUN_DIR` and set human.serve=false"
            )
        names = [*self.annotators, scripted_id]
        for name in self.annotators:
            try:
                check_annotator_name(name)  # the same rule as `rewardlab annotators add`
            except ValueError as err:
                raise ValueError(f"human.annotators: {err}") from None
        if len(set(names)) < len(names):
            raise ValueError(
                "human.annotators: names must differ from each other and from human.scripted "
                f"({scripted_id!r}), whose answers are told apart from people's by name"
            )
        return self


class RewardModelConfig(BaseModel):
    """Reward-model ensemble and its training (defaults follow PEBBLE, App. B, except the
    hidden sizes, 3 x 128 instead of 3 x 256, and the minibatch, 32 instead of 128: see
    ``hidden_sizes`` and ``batch_size``)."""

    model_config = _SECTION

    members: Int = Field(3, ge=1, le=64, description="Ensemble size K.")
    hidden_sizes: Widths = Field(
        (128, 128, 128), min_length=1, max_length=MAX_LAYERS,
        description="Hidden layer widths of each member's MLP: 3 x 128, not PEBBLE's 3 x 256, "
        "at a third of the fit time for the same accuracy and return (issue 11; BENCHMARKS.md "
        "overhead and seed-by-seed sections); 2 x 64 fits as well offline but trained a worse "
        "policy in the default run (BENCHMARKS.md ablations). The offline methods default to "
        "3 x 256 (OFFLINE_REWARD_MODEL_DEFAULTS), algorithm=pref_ppo to 2 x 32 "
        "(PREF_PPO_REWARD_MODEL_DEFAULTS).",
    )
    architecture: Literal["mlp", "reed"] = Field(
        "mlp", description="'mlp': each member an MLP on concat(obs, action). 'reed': REED's "
        "dynamics-aware reward (Metcalf et al. 2023; rewardlab.rewards.dynamics): separate "
        "state and action encoders (state_embed, action_embed) before the hidden layers, and "
        "before every preference fit a self-future-consistency task on the run's transitions "
        "(sfc_*) that trains all but the output layer to predict the next state's embedding. "
        "Online methods only (pebble, pref_ppo)."
    )
    state_embed: Int = Field(
        20, ge=1, le=MAX_WIDTH, description="architecture=reed: width of the state encoder "
        "(REED: 20 for DMC walker and cheetah)."
    )
    action_embed: Int = Field(
        10, ge=1, le=MAX_WIDTH, description="architecture=reed: width of the action encoder "
        "(REED: 10)."
    )
    sfc_epochs: Int = Field(
        5, ge=1, le=MAX_REPEATS, description="architecture=reed: passes over the sampled "
        "transitions in each self-future-consistency fit (REED's task configs: 20 over the "
        "whole buffer; fewer here, with sfc_max_transitions, to bound the CPU cost)."
    )
    sfc_max_transitions: Int = Field(
        20_000, ge=0, le=MAX_STEPS, description="architecture=reed: most transitions of the "
        "run's experience each self-future-consistency fit samples (uniformly, without "
        "replacement; 0: all, as REED). With sfc_epochs=5 that is as many transitions per "
        "fit as REED's base config (one pass over the buffer) at 100k steps."
    )
    sfc_batch_size: Int = Field(
        128, ge=2, le=MAX_BATCH, description="architecture=reed: transitions per gradient "
        "step and member (REED's base config: 128)."
    )
    sfc_lr: Float = Field(
        1e-3, gt=0, le=1, description="architecture=reed: Adam learning rate of the "
        "self-future-consistency fit, a fresh optimiser each fit (REED's walker and cheetah "
        "configs: 1e-3 with SGD, batch 12 and 20 epochs over the whole buffer; its quadruped "
        "and MetaWorld configs: Adam, 1e-4). With Adam at 1e-4 and this module's sample the "
        "reward model was no more accurate than REED's architecture without the task in a "
        "replay of a Walker2d-v5 run's fits; at 1e-3 it was (issue 11 session note "
        "2026-12-05g)."
    )
    activation: Literal["leaky_relu", "relu", "tanh", "elu"] = Field(
        "leaky_relu", description="Hidden activation."
    )
    output_activation: Literal["tanh", "none"] = Field(
        "none", description="Output activation of each member. PEBBLE uses tanh, which caps "
        "the per-step reward: on HalfCheetah-v5 the agent then stopped improving once the "
        "learned reward saturated (default run, seeds 0-2: gold 3166 with tanh, 4179 without; "
        "BENCHMARKS.md core and ablations)."
    )
    lr: Float = Field(3e-4, gt=0, le=1, description="Adam learning rate.")
    weight_decay: Float = Field(0.0, ge=0, description="Adam L2 weight decay.")
    batch_size: Int = Field(
        32, ge=1, le=MAX_BATCH, description="Queries per gradient step, per member: 32, not "
        "PEBBLE's 128, so each pass over the labels takes 4x the gradient steps and the "
        "accuracy stop (target_accuracy) comes in about half the passes, at the same accuracy "
        "on random pairs of experience (issue 11, item 6; BENCHMARKS.md overhead section). "
        "The offline methods and algorithm=pref_ppo keep 128 (OFFLINE_REWARD_MODEL_DEFAULTS, "
        "PREF_PPO_REWARD_MODEL_DEFAULTS)."
    )
    max_epochs: Int = Field(
        50, ge=1, le=MAX_REPEATS, description="Most passes over the labels per update (PEBBLE "
        "used 200; 50 keeps noisy-teacher runs, which never reach the accuracy target, "
        "affordable on CPU)."
    )
    lapse_rate: Float = Field(
        0.0, ge=0, lt=1, description="Probability that the teacher answers uniformly at "
        "random, fitted in the loss (Christiano et al. 2017, Sec. 2.2.3, used 0.1): P[left] = "
        "lapse_rate / 2 + (1 - lapse_rate) * sigmoid(R_left - R_right), so a flipped label "
        "against a clear pair costs a bounded loss. A teacher flipping a fraction eps of its "
        "labels (teacher.eps_mistake) answers this model with lapse_rate = 2 * eps. With such "
        "a teacher the training accuracy rarely passes target_accuracy 0.97, so fits run to "
        "max_epochs unless target_accuracy is lowered (e.g. 0.9); with the oracle it still "
        "does. 0 (default): plain Bradley-Terry, as PEBBLE; in two Walker2d-v5 runs with the "
        "mistake teacher, 0.2 ended lower than 0 (README, 'Teachers that err').",
    )
    target_accuracy: Float = Field(
        0.97, gt=0, le=1.0, description="Stop an update once the members' mean training "
        "accuracy on decided queries exceeds this (PEBBLE: 0.97)."
    )
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="Arithmetic of the reward model's training passes and query "
        "ranking (weights, Adam state and the agent's reward stay float32). bfloat16 autocast "
        "fits 2.1-2.4x faster on CPUs with native bfloat16 (AVX512-BF16 or AMX; emulated and "
        "slower elsewhere) with the same accuracy on random pairs of experience, but in the "
        "default job the agent then reached a lower gold return (3 runs: 2825-3069 against "
        "3922-4326 in float32; README 'Benchmarks'), so the default stays float32. auto: "
        "bfloat16 where the CPU has it natively."
    )
    holdout_fraction: Float = Field(
        0.1, ge=0, lt=1, description="Fraction of labelled queries kept out of training to "
        "measure held-out accuracy (chosen by query id, stable across restarts)."
    )
    reduction: Literal["mean", "mean_minus_std", "mean_minus_var", "min"] = Field(
        "mean", description="How members combine into the agent's reward: mean; the "
        "conservative mean - k*std; mean - k*var (uncertainty-weighted optimisation, UWO, "
        "Coste et al. 2023); or the member minimum (worst-case optimisation, WCO, "
        "Coste et al. 2023)."
    )
    k_std: Float = Field(
        1.0, ge=0, description="k in mean - k*std and mean - k*var (UWO's lambda)."
    )
    normalize: Bool = Field(
        True, description="Standardise the agent's reward to mean 0, std 1 over recent "
        "experience after every update."
    )
    unlabeled_ratio: Int = Field(
        0, ge=0, le=1000, description="SURF (Park et al. 2022) semi-supervised reward "
        "learning: unlabelled segment pairs per labelled query, cut at random from the "
        "experience (or dataset) at every fit; each member trains on the pairs it is "
        "confident about (pseudo_label_threshold) with its own prediction as the label. "
        "0 (default) turns it off; SURF used 10 to 100."
    )
    pseudo_label_threshold: Float = Field(
        0.99, gt=0.5, le=1.0, description="SURF's tau: a member pseudo-labels an unlabelled "
        "pair only when its P[preferred side] reaches this (SURF: 0.95-0.99)."
    )
    unlabeled_weight: Float = Field(
        1.0, ge=0, description="SURF's lambda: weight of the pseudo-label loss."
    )
    unlabeled_batch_multiple: Int = Field(
        4, ge=1, le=64, description="SURF's mu: unlabelled pairs per labelled pair in each "
        "gradient step (SURF's published commands: 4)."
    )
    crop_steps: Int = Field(
        0, ge=0, le=MAX_STEPS, description="SURF's temporal cropping: every training pass "
        "sums each segment's reward over a random window of T - U{0..2*crop_steps} steps "
        "(T = feedback.segment_len) at a random offset, drawn per segment; 0 (default) turns "
        "it off. SURF crops 5 steps either way around 50-step segments cut 5 steps longer; "
        "the stored segment is what was labelled, so here the window stays inside it."
    )


# ---------------------------------------------------------------------------- offline methods
class PreferenceTransformerConfig(BaseModel):
    """Preference Transformer reward model (Kim et al. 2023;
    :mod:`rewardlab.rewards.preference_transformer`).

    The reference (github.com/csmile-1006/PreferenceTransformer, README's D4RL command) uses
    embedding 256, 1 layer, 4 heads, preference-attention width 256, batch 256 and 10,000
    epochs on GPU; the widths and epochs here are scaled down for CPU.
    """

    model_config = _SECTION
    embd_dim: Int = Field(
        64, ge=1, le=MAX_WIDTH, description="Token embedding width (reference 256)."
    )
    n_layer: Int = Field(1, ge=1, le=MAX_LAYERS, description="Causal transformer blocks (ref. 1).")
    n_head: Int = Field(4, ge=1, le=256, description="Attention heads per block (reference 4).")
    pref_attn_dim: Int = Field(
        64, ge=1, le=MAX_WIDTH, description="Query/key width of the bidirectional preference "
        "attention layer (reference 256)."
    )
    dropout: Float = Field(
        0.1, ge=0, lt=1, description="Embedding, attention and residual dropout (reference 0.1)."
    )
    max_len: Int = Field(
        1000, ge=1, le=MAX_STEPS, description="Longest segment (size of the timestep embedding "
        "table; reference: the episode limit, 1000)."
    )
    lr: Float = Field(
        1e-4, gt=0, le=1, description="Base learning rate: linear warm-up from lr to 10 x lr, "
        "then cosine decay back to lr (reference trans_lr and its warmup_cosine_decay)."
    )
    warmup_fraction: Float = Field(
        0.1, ge=0, lt=1, description="Share of a fit's gradient steps spent warming up (ref. 0.1)."
    )
    weight_decay: Float = Field(
        1e-4, ge=0, description="AdamW decoupled weight decay (optax.adamw's default, 1e-4)."
    )
    batch_size: Int = Field(
        256, ge=1, le=MAX_BATCH, description="Queries per gradient step (reference 256)."
    )
    epochs: Int = Field(
        100, ge=1, le=MAX_REPEATS, description="Passes over the labels per fit (reference "
        "10,000 on GPU; here about 5 s each for 500 pairs of 50 steps on one core)."
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> PreferenceTransformerConfig:
        if self.embd_dim % self.n_head:
            raise ValueError(
                f"embd_dim ({self.embd_dim}) must be a multiple of n_head ({self.n_head}); "
                "each head gets embd_dim / n_head channels"
            )
        return self


class IQLConfig(BaseModel):
    """Implicit Q-learning (Kostrikov, Nair & Levine 2022; :mod:`rewardlab.algorithms.offline.iql`).

    Defaults are the paper's D4RL locomotion settings (App. B, and the authors'
    ``configs/mujoco_config.py``)."""

    model_config = _SECTION
    hidden_sizes: Widths = Field(
        (256, 256), min_length=1, max_length=MAX_LAYERS,
        description="Hidden widths of the actor, both critics and the value network.",
    )
    actor_lr: Float = Field(3e-4, gt=0, le=1, description="Actor Adam learning rate.")
    critic_lr: Float = Field(3e-4, gt=0, le=1, description="Q-networks' Adam learning rate.")
    value_lr: Float = Field(3e-4, gt=0, le=1, description="Value network's Adam learning rate.")
    discount: Float = Field(0.99, ge=0, le=1, description="Discount gamma.")
    expectile: Float = Field(
        0.7, gt=0, lt=1, description="Expectile tau of the value loss (Eq. 5); 0.5 is SARSA."
    )
    beta: Float = Field(
        3.0, ge=0, description="Inverse temperature of advantage-weighted regression (Eq. 7)."
    )
    max_weight: Float = Field(
        100.0, gt=0, description="Cap on exp(beta * advantage) (the authors' code)."
    )
    polyak: Float = Field(
        0.005, gt=0, le=1, description="Target-Q Polyak rate: target += polyak (Q - target)."
    )
    batch_size: Int = Field(256, ge=1, le=MAX_BATCH, description="Transitions per update.")
    actor_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Actor learning-rate schedule: cosine decay to 0 over "
        "total_updates (the authors' code) or constant."
    )
    total_updates: Int = _steps(
        1_000_000, description="Gradient updates the cosine actor schedule spans (the run's "
        "length; paper 1e6). `rewardlab train --set algorithm=iql` sets it to offline.updates "
        "unless given; to train a run longer later, raise both."
    )
    log_std_min: Float = Field(-5.0, description="Lower clip of the actor's log std.")
    log_std_max: Float = Field(2.0, description="Upper clip of the actor's log std.")

    @model_validator(mode="after")
    def _std_range(self) -> IQLConfig:
        if self.log_std_min >= self.log_std_max:
            raise ValueError(
                f"log_std_min ({self.log_std_min}) must be below log_std_max "
                f"({self.log_std_max})"
            )
        return self


class TD3BCConfig(BaseModel):
    """TD3+BC (Fujimoto & Gu 2021; :mod:`rewardlab.algorithms.offline.td3bc`); defaults are
    the paper's (Sec. 5 and the authors' ``main.py``)."""

    model_config = _SECTION
    hidden_sizes: Widths = Field(
        (256, 256), min_length=1, max_length=MAX_LAYERS,
        description="Hidden widths of the actor and both critics.",
    )
    actor_lr: Float = Field(3e-4, gt=0, le=1, description="Actor Adam learning rate.")
    critic_lr: Float = Field(3e-4, gt=0, le=1, description="Critics' Adam learning rate.")
    discount: Float = Field(0.99, ge=0, le=1, description="Discount gamma.")
    polyak: Float = Field(
        0.005, gt=0, le=1, description="Target networks' Polyak rate (TD3's tau)."
    )
    policy_noise: Float = Field(
        0.2, ge=0, description="Std of the target-policy smoothing noise (x max action)."
    )
    noise_clip: Float = Field(
        0.5, ge=0, description="Clip of the smoothing noise (x max action)."
    )
    policy_freq: Int = Field(
        2, ge=1, le=MAX_REPEATS, description="Critic updates per actor and target update."
    )
    alpha: Float = Field(
        2.5, gt=0, description="lambda = alpha / mean|Q| weighs the Q term against BC."
    )
    batch_size: Int = Field(256, ge=1, le=MAX_BATCH, description="Transitions per update.")
    normalize_states: Bool = Field(
        True, description="Standardise observations by the dataset's mean and std."
    )
    state_std_eps: Float = Field(
        1e-3, ge=0, description="Added to the dataset's observation std (authors' code)."
    )


class CPLConfig(BaseModel):
    """Contrastive Preference Learning (Hejna et al. 2024; :mod:`rewardlab.algorithms.offline.cpl`).

    Defaults are the authors' state-based CPL config (github.com/jhejna/cpl,
    ``configs/mw_state_dense/cpl.yaml``)."""

    model_config = _SECTION
    hidden_sizes: Widths = Field(
        (512, 512), min_length=1, max_length=MAX_LAYERS, description="Actor hidden widths."
    )
    dropout: Float = Field(0.25, ge=0, lt=1, description="Dropout after each hidden layer.")
    lr: Float = Field(1e-4, gt=0, le=1, description="Adam learning rate.")
    batch_size: Int = Field(96, ge=1, le=MAX_BATCH, description="Segment pairs per update.")
    alpha: Float = Field(
        0.1, gt=0, description="Temperature: the advantage is alpha * log pi(a|s)."
    )
    contrastive_bias: Float = Field(
        0.5, gt=0, le=1, description="lambda of CPL(lambda): the non-preferred segment's "
        "advantage is scaled by it (1 = unbiased CPL)."
    )
    discount: Float = Field(
        1.0, gt=0, le=1, description="gamma^t weighting of the advantages over a segment (the "
        "paper's sum; the authors' code sums undiscounted, i.e. 1)."
    )
    bc_coeff: Float = Field(
        0.0, ge=0, description="Weight of the BC term added to the CPL loss (CPL-BC uses 1)."
    )
    bc_steps: Int = _steps(
        40_000, ge=0, description="Updates of BC-only pre-training on the segments before the "
        "CPL loss starts (then the optimiser is reset); the authors' 200,000 of 500,000 "
        "updates, scaled to the default offline.updates (100,000); must be below it."
    )
    warmup_steps: Int = _steps(
        10_000, description="Linear learning-rate warm-up after BC pre-training."
    )


def _true_word(value: Any) -> Any:
    """``--set offline.reward=true`` reads as the YAML boolean true: the word ``true``."""
    return "true" if value is True else value


#: The offline methods: they train from a fixed ``dataset``, never acting while they learn.
OFFLINE_ALGORITHMS = ("iql", "td3bc", "cpl")


class OfflineConfig(BaseModel):
    """An offline run (``algorithm`` iql, td3bc or cpl; :mod:`rewardlab.algorithms.offline_loop`).

    The dataset's segments are labelled by the teacher in the ``feedback`` section's rounds
    (``total_budget``, ``queries_per_round``, ``segment_len``, ``method``, ``oversample``; the
    env-step schedule ``first_round_at``/``round_every`` does not apply: every round is asked
    before the first update), a reward model is fit on the labels, the dataset is relabelled
    with it and the agent trains for ``updates`` gradient updates. CPL fits no reward model, so
    its rounds are selected uniformly whatever ``feedback.method`` says. The transformer
    splits its labels by ``reward_model.holdout_fraction`` too. Evaluations, checkpoints and
    metrics count gradient updates where online runs count env steps; ``eval.episodes`` is
    the episodes of each evaluation.
    """

    model_config = _SECTION
    reward: Annotated[Literal["learned", "true"], BeforeValidator(_true_word)] = Field(
        "learned", description="Reward IQL and TD3+BC train on: learned (a reward model fit on "
        "the labels relabels the dataset) or true (the dataset's own reward: the reference row "
        "of a benchmark; no labels are asked). CPL needs neither: it learns from the labels."
    )
    reward_model: Literal["mlp", "transformer"] = Field(
        "mlp", description="Reward model of reward=learned: mlp (the Markovian Bradley-Terry "
        "ensemble of the reward_model section) or transformer (the non-Markovian Preference "
        "Transformer of the preference_transformer section, Kim et al. 2023)."
    )
    updates: Int = _steps(
        100_000, description="Gradient updates of the agent (the IQL and TD3+BC papers use "
        "1,000,000; CPL's state-based config 500,000)."
    )
    eval_every: Int = _steps(
        10_000, description="Gradient updates between evaluations in the env (eval.episodes "
        "episodes each; the first at update 0)."
    )
    checkpoint_every: Int = _steps(
        10_000, description="Gradient updates between checkpoints (one is also written after "
        "every feedback round and at the end)."
    )
    normalize_rewards: Bool = Field(
        True, description="Rescale the training reward as IQL does for D4RL locomotion "
        "(Kostrikov et al. 2022): r * reward_scale / (max - min episode return in the dataset) "
        "+ reward_shift."
    )
    reward_scale: Float | None = Field(
        None, gt=0, description="Target spread of episode returns of normalize_rewards "
        "(default: the env's episode limit, 1000 for the D4RL tasks, as in the IQL and "
        "Preference Transformer code)."
    )
    reward_shift: Float | None = Field(
        None, description="Added to every step's reward after normalize_rewards rescales it "
        "(default: 0.5 for a "
        "learned reward, Preference Transformer's locomotion setting, so that surviving longer "
        "stays rewarded; 0 for the true reward, as IQL)."
    )


class EvalConfig(BaseModel):
    """Gold-versus-proxy evaluation."""

    model_config = _SECTION
    every: Int = _steps(5000, description="Env steps between evaluations.")
    episodes: Int = Field(
        5, ge=1, le=MAX_EPISODES, description="Deterministic-policy episodes per evaluation.")


class MitigationConfig(BaseModel):
    """Over-optimisation mitigations (each off by default): early stopping
    (:mod:`rewardlab.diagnostics.early_stopping`), regularisation towards the reference policy
    (:mod:`rewardlab.rewards.regularizers`) and targeted feedback
    (:func:`rewardlab.feedback.rounds.effective_schedule`). The conservative ensemble reward is
    ``reward_model.reduction`` (``mean_minus_std``, ``mean_minus_var``, ``min``)."""

    model_config = _SECTION
    early_stop: Literal["none", "disagreement", "calibration"] = Field(
        "none", description="Stop training and roll the policy back to the last evaluation the "
        "check trusted: 'disagreement' when the ensemble's disagreement on the policy's states "
        "exceeds early_stop_ratio times its value at the first evaluation after the latest "
        "reward update; 'calibration' when the reward model's ECE on a round's fresh queries "
        "(measured before retraining on them) exceeds early_stop_ece."
    )
    early_stop_ratio: Float = Field(
        1.5, gt=1, description="Disagreement growth that stops training (early_stop=disagreement)."
    )
    early_stop_ece: Float = Field(
        0.25, gt=0, lt=1, description="Fresh-query ECE that stops training "
        "(early_stop=calibration)."
    )
    early_stop_patience: Int = Field(
        1, ge=1, le=MAX_REPEATS, description="Consecutive failed checks before stopping."
    )
    regularizer: Literal["none", "chi2_occupancy", "action_kl"] = Field(
        "none", description="Regularise towards the reference policy (the policy at the first "
        "reward update): 'chi2_occupancy' subtracts reg_coef times a discriminator estimate of "
        "the chi-squared occupancy-measure gradient 2 (mu_pi/mu_ref - 1) (Laidlaw et al. 2024, "
        "ORPO); 'action_kl' subtracts reg_coef times KL(pi(.|s) || pi_ref(.|s)) per step."
    )
    reg_coef: Float = Field(0.1, ge=0, description="Regulariser weight (proxy-reward units).")
    discriminator_steps: Int = Field(
        50, ge=1, le=MAX_REPEATS,
        description="Discriminator gradient steps per update (chi2_occupancy).",
    )
    reference_samples: Int = Field(
        2000, ge=100, le=MAX_STEPS,
        description="Reference-policy steps collected once for chi2_occupancy.",
    )
    targeted_feedback: Bool = Field(
        False, description="Ask each round about the states the policy now visits: cut "
        "segments from the steps since the previous round only, and spread the query budget "
        "evenly over the run (same budget, rounds no earlier than the schedule's; see "
        "targeted_spread)."
    )
    targeted_spread: Bool = Field(
        True, description="With targeted_feedback: spread the query budget evenly over the "
        "run (true), or keep feedback.round_every (false), e.g. to ask every query early as "
        "PEBBLE's own schedules do (each round still cuts its segments from the steps since "
        "the previous one)."
    )


#: ``reward_model`` defaults of a preference-PPO run, for the keys a config does not give: a small
#: reward MLP as in the preference-PPO lineage (Christiano et al. 2017's reward predictor is a
#: small MLP, 2 x 64 in the rl-teacher reproduction; imitation's ``BasicRewardNet`` is 2 x 32)
#: instead of PEBBLE's 3 x 256, whose fit dominated the run's wall time (Pendulum-v1: 4x
#: imitation 1.0.1's wall time; BENCHMARKS.md "RewardLab against imitation 1.0.1 on
#: Pendulum-v1" as of commit 43885f8). With 2 x 32 RewardLab beats imitation on both median
#: return and median wall time (the same section, `python benchmarks/peer_imitation.py`). The
#: choice of 2 x 32 over 2 x 64 rests on 3-seed probes (session note 2026-12-04d on issue 11):
#: equal returns, about 10% less wall time.
#: Its minibatch stays 128, with which the imitation comparisons were measured.
PREF_PPO_REWARD_MODEL_DEFAULTS: dict[str, Any] = {"hidden_sizes": (32, 32), "batch_size": 128}
#: ``reward_model`` defaults of the offline methods (iql, td3bc, cpl), for the keys a config
#: does not give: PEBBLE's 3 x 256 hidden units (Lee et al. 2021, App. B), with which the
#: offline benchmark was measured (BENCHMARKS.md "Offline preference RL"). The online default
#: became 3 x 128: the feedback machinery of a 20k-step HalfCheetah-v5 PEBBLE run with 500
#: queries took 25.1% of its wall time with 3 x 256 against 9.8% with 3 x 128 (seed 1; 10.8%
#: and 12.7% at seeds 0 and 2), at equal reward-model accuracy on random pairs of the run's
#: experience (0.99 against 0.97; issue 11, item 6; BENCHMARKS.md "Overhead of preference
#: learning", README "Benchmarks"), and over the default job's 10 seeds the final gold return
#: did not drop (mean 3571 against 3249, median wall time 333 s against 400 s; BENCHMARKS.md
#: "Seed by seed").
#: Their minibatch stays PEBBLE's 128 likewise (the online default became 32, see
#: ``RewardModelConfig.batch_size``).
OFFLINE_REWARD_MODEL_DEFAULTS: dict[str, Any] = {"hidden_sizes": (256, 256, 256),
                                                 "batch_size": 128}
#: The language-model methods: they train a text policy on a task of :mod:`rewardlab.lm.tasks`
#: (the ``lm`` section; :mod:`rewardlab.algorithms.lm_loop`).
LM_ALGORITHMS = ("grpo", "rloo", "dpo", "online_dpo", "bon")
#: The tasks of :data:`rewardlab.lm.tasks.TASK_NAMES` (named here: config imports no scorer).
LMTask = Literal["sentiment", "polarity_concise"]
#: ``feedback`` defaults of a language-model run, for the keys a config does not give: all 400
#: queries in round 0, on the base policy's samples at optimizer step 0 (a proxy from few labels
#: that GRPO then over-optimises: the default job of README "Language models"); with a larger
#: ``total_budget`` later rounds follow every 100 optimizer steps, on the policy's samples.
LM_FEEDBACK_DEFAULTS: dict[str, Any] = {
    "total_budget": 400, "queries_per_round": 400, "first_round_at": 0, "round_every": 100,
    "oversample": 4,
}
#: Settings of control runs that a language-model run does not read (dotted key -> what to
#: use instead); refused when they differ from their default.
LM_REFUSED: dict[str, str] = {
    "dataset": "language-model runs sample their own text; drop dataset",
    "total_steps": "language-model runs count optimizer steps: use lm.steps",
    "env": "language-model runs have no environment; the task is lm.task",
    "eval": "use lm.eval_every, lm.eval_prompts and lm.eval_samples_per_prompt",
    "checkpoint_every": "use lm.checkpoint_every (optimizer steps)",
    "reward_model": "the text reward model is set by lm.rm_* (members, epochs, lr, reduction, "
                    "k_std, ...)",
    "pebble": "a control method's section", "ppo": "a control method's section",
    "offline": "an offline method's section", "iql": "an offline method's section",
    "td3bc": "an offline method's section", "cpl": "an offline method's section",
    "preference_transformer": "an offline method's section",
    "mitigation": "control-run mitigations; for text use lm.rm_reduction (conservative "
                  "ensembles) and lm.beta (KL coefficient)",
    "teacher_bias": "a testbed setting of control runs",
    "log_capacity": "a control-run buffer", "record_render_states": "a control-run setting",
    "feedback.segment_len": "a text query compares two whole completions",
    "feedback.recent_steps": "each round samples fresh completions of the current policy",
}


class LMConfig(BaseModel):
    """A language-model run (``algorithm`` grpo, rloo, dpo, online_dpo or bon;
    :mod:`rewardlab.algorithms.lm_loop`).

    The base policy samples completions of corpus prompts; feedback rounds store them as text
    segments, ask same-prompt pairs (the ``feedback`` section: ``total_budget``,
    ``queries_per_round``, ``method``, ``oversample``; ``first_round_at`` and ``round_every``
    count **optimizer steps**, round 0 is always at step 0 on the base policy's samples) and
    have them answered by the scripted ``teacher`` applied to the gold score, by a judge, or by
    people in the annotation web app (``teacher=human`` and the ``human`` section, as for
    control runs); a Bradley-Terry ensemble is fit on every label and the policy is optimised
    against it.
    grpo, rloo and online_dpo ask their later rounds during training, on the current policy's
    samples; dpo and bon ask every round before training, on the base policy's.
    """

    model_config = _SECTION
    base_model: str | None = Field(
        None, min_length=1, description="The policy to start from: a local transformers "
        "causal-LM directory (save_pretrained, with its tokenizer), or null for RewardLab's "
        "own base model (pretrained once by `rewardlab lm pretrain`'s defaults, about 3 "
        "minutes on one core, then cached)."
    )
    task: LMTask = Field(
        "sentiment", description="Task and gold reward: sentiment (VADER compound of the "
        "completion) or polarity_concise (TextBlob polarity minus length and repetition "
        "penalties); see rewardlab.lm.tasks."
    )
    train_prompts: Int = Field(
        512, ge=1, le=MAX_QUERIES, description="Training prompts (openings of sentences of "
        "the corpus's train split), drawn with the run's seed."
    )
    eval_prompts: Int = Field(
        16, ge=1, le=MAX_EPISODES, description="Held-out evaluation prompts (eval split, never "
        "the opening of a training sentence)."
    )
    eval_samples_per_prompt: Int = Field(
        4, ge=1, le=MAX_EPISODES, description="Completions sampled per evaluation prompt at "
        "each evaluation (gold and proxy of the same samples; the alarm's Welch test needs "
        "eval_prompts x eval_samples_per_prompt >= 2)."
    )
    max_new_tokens: Int = Field(
        16, ge=1, le=4096, description="Most tokens per completion (prompt plus completion "
        "must fit the model's positions)."
    )
    reward: Literal["learned", "gold"] = Field(
        "learned", description="What the policy optimises: learned (the reward-model ensemble "
        "fit on the labels) or gold (the task's gold reward itself: the reference run; no "
        "labels are asked)."
    )
    judge: Literal["none", "lexicon", "endpoint"] = Field(
        "none", description="Who answers the queries: none (the scripted teacher.preset "
        "applied to the gold scores), lexicon (the task's judge scorer, a lexicon other than "
        "gold) or endpoint (a chat model behind an OpenAI-compatible endpoint: judge_url, "
        "judge_model). A judge's agreement with the gold oracle is logged every round."
    )
    judge_url: str | None = Field(
        None, min_length=1, description="judge=endpoint: the API root, e.g. "
        "http://127.0.0.1:8000/v1."
    )
    judge_model: str | None = Field(
        None, min_length=1, description="judge=endpoint: the model name the server expects."
    )
    judge_api_key_env: str | None = Field(
        None, min_length=1, description="judge=endpoint: environment variable holding the API "
        "key (sent as a Bearer token; the key itself is never written to the config)."
    )
    rm_members: Int = Field(
        3, ge=1, le=64, description="Reward-model ensemble size K (fine-tuned copies of the "
        "base model's backbone with a scalar head)."
    )
    rm_epochs: Int = Field(
        4, ge=1, le=MAX_REPEATS, description="Passes over every label at each refit (members "
        "are warm-started from the previous fit)."
    )
    rm_lr: Float = Field(3e-4, gt=0, le=1, description="AdamW learning rate of the reward model.")
    rm_batch_size: Int = Field(
        16, ge=1, le=MAX_BATCH, description="Labelled pairs per reward-model gradient step."
    )
    rm_reduction: Literal["mean", "min", "mean_minus_std"] = Field(
        "mean", description="How members combine into the proxy reward: mean, min (worst-case "
        "optimisation) or mean_minus_std (uncertainty-weighted; Coste et al. 2023)."
    )
    rm_k_std: Float = Field(1.0, ge=0, description="k of mean_minus_std.")
    rm_holdout_fraction: Float = Field(
        0.15, ge=0, lt=1, description="Share of labelled queries kept out of the fit to "
        "measure held-out accuracy and calibration (chosen by query id, stable across rounds)."
    )
    rm_max_length: Int = Field(
        64, ge=2, le=4096, description="Tokens of prompt + completion the reward model reads "
        "(longer texts lose their beginning)."
    )
    steps: Int = _steps(
        300, description="Optimizer steps of the policy (grpo, rloo, dpo, online_dpo; bon "
        "trains nothing)."
    )
    beta: Float = Field(
        0.03, ge=0, description="KL coefficient to the reference (base) policy: GRPO/RLOO's "
        "KL penalty (0: none, the KL is still measured), DPO's and online DPO's temperature "
        "(> 0)."
    )
    learning_rate: Float = Field(
        3e-4, gt=0, le=1, description="AdamW learning rate of the policy (linear decay to 0)."
    )
    batch_size: Int = Field(
        32, ge=1, le=MAX_BATCH, description="Completions per optimizer step (grpo, rloo; a "
        "multiple of num_generations) or preference pairs per step (dpo, online_dpo)."
    )
    num_generations: Int = Field(
        4, ge=2, le=MAX_BATCH, description="grpo/rloo: completions per prompt forming a group "
        "(advantages are relative within it)."
    )
    temperature: Float = Field(
        1.0, gt=0, le=100, description="Sampling temperature of training rollouts "
        "(evaluations always sample at 1, as the KL estimate needs)."
    )
    eval_every: Int = _steps(
        15, description="Optimizer steps between evaluations (also at step 0 and at the end)."
    )
    checkpoint_every: Int = _steps(
        50, description="Optimizer steps between checkpoints (the policy, its optimizer and "
        "the reward model; also after each round and on Ctrl-C)."
    )
    bon_n: tuple[Annotated[Int, Field(ge=1, le=4096)], ...] = Field(
        (1, 2, 4, 8, 16, 32), min_length=1, max_length=32, description="bon: the n of "
        "best-of-n, ascending (KL to the base policy log n - (n-1)/n, Gao et al. 2022)."
    )

    @model_validator(mode="after")
    def _check(self) -> LMConfig:
        if list(self.bon_n) != sorted(set(self.bon_n)):
            raise ValueError(f"lm.bon_n: must be ascending without repeats, got "
                             f"{list(self.bon_n)}")
        if self.judge == "endpoint" and (self.judge_url is None or self.judge_model is None):
            raise ValueError("lm.judge: endpoint needs lm.judge_url (e.g. "
                             "http://127.0.0.1:8000/v1) and lm.judge_model")
        if self.judge != "endpoint" and (self.judge_url or self.judge_model
                                         or self.judge_api_key_env):
            raise ValueError("lm.judge_url/judge_model/judge_api_key_env: only read with "
                             "lm.judge=endpoint; set it or drop them")
        if self.eval_prompts * self.eval_samples_per_prompt < 2:
            raise ValueError("lm.eval_samples_per_prompt: eval_prompts x "
                             "eval_samples_per_prompt must be >= 2 (the alarm's Welch test)")
        return self


class TrainConfig(BaseModel):
    """A whole training run. Every field can be set with ``--set dotted.key=value``."""

    model_config = _SECTION
    algorithm: Literal[
        "pebble", "pref_ppo", "iql", "td3bc", "cpl", "grpo", "rloo", "dpo", "online_dpo", "bon"
    ] = Field(
        "pebble", description="Method: pebble or pref_ppo (online: the agent acts while it is "
        "taught), iql, td3bc or cpl (offline: from a fixed dataset, see the offline "
        "section), or grpo, rloo, dpo, online_dpo or bon (a language model on a text task, "
        "see the lm section)."
    )
    dataset: str | None = Field(
        None, min_length=1, description="Offline methods only: the Minari dataset to learn "
        "from, an id under MINARI_DATASETS_PATH (e.g. rewardlab/halfcheetah/medium-replay-v0; "
        "make one with `rewardlab dataset make`) or a dataset directory. env.id and "
        "env.max_episode_steps default to the dataset's."
    )
    seed: Int = Field(
        0, ge=0, le=2**63 - 1, description="Run seed; every component derives its own."
    )
    total_steps: Int = _steps(30_000, description="Environment steps to train for.")
    env: EnvConfig = Field(default_factory=EnvConfig)
    feedback: FeedbackSchedule = Field(default_factory=FeedbackSchedule)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    human: HumanConfig = Field(default_factory=HumanConfig)
    reward_model: RewardModelConfig = Field(default_factory=RewardModelConfig)
    pebble: PebbleConfig = Field(default_factory=PebbleConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint_every: Int = _steps(10_000, description="Env steps between checkpoints.")
    torch_threads: Int = Field(
        1, ge=1, le=256, description="torch intra-op threads (and, for the SBX backbones, 1 "
        "turns XLA's multi-threaded CPU kernels off)."
    )
    log_capacity: Int = Field(
        200_000, ge=100, le=MAX_STEPS, description="Steps per env kept for cutting query "
        "segments; must fit in memory (checked before a run starts)."
    )
    progress_bar: Bool = Field(True, description="Show a rich progress bar.")
    record_render_states: Bool = Field(
        True, description="Store MuJoCo simulator states with each queried segment, so it "
        "can be rendered to a clip for a person later."
    )
    teacher_bias: str | None = Field(
        None, description="Testbed only: the scripted teacher judges segments by this biased "
        "view of the task (a key of rewardlab.envs.testbed.TEACHER_VIEWS, e.g. ignore_hazard, "
        "decoy) instead of the true reward; evaluation still reports the true reward."
    )
    mitigation: MitigationConfig = Field(default_factory=MitigationConfig)
    offline: OfflineConfig = Field(default_factory=OfflineConfig)
    iql: IQLConfig = Field(default_factory=IQLConfig)
    td3bc: TD3BCConfig = Field(default_factory=TD3BCConfig)
    cpl: CPLConfig = Field(default_factory=CPLConfig)
    preference_transformer: PreferenceTransformerConfig = Field(
        default_factory=PreferenceTransformerConfig)
    lm: LMConfig = Field(default_factory=LMConfig)
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the feedback store, one database per run (e.g. "
        "postgresql+psycopg://user@host/run42); default: SQLite feedback.db in the run dir."
    )

    @field_validator("store_url")
    @classmethod
    def _url_shape(cls, url: str | None) -> str | None:
        if url is not None and not _URL_RE.match(url):
            raise ValueError(
                f"{url!r} is not a SQLAlchemy URL; expected DIALECT[+DRIVER]://..., e.g. "
                "postgresql+psycopg://user@host/run42 or sqlite:////abs/path/feedback.db "
                "(or leave store_url unset for feedback.db in the run directory)"
            )
        return url

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.teacher_bias is not None:
            from rewardlab.envs.testbed import TEACHER_VIEWS

            if self.teacher_bias not in TEACHER_VIEWS:
                raise ValueError(
                    f"teacher_bias: unknown view {self.teacher_bias!r}; allowed: "
                    f"{', '.join(TEACHER_VIEWS)} (or leave unset for the true reward)"
                )
        if self.algorithm == "pebble" and self.feedback.first_round_at < (
            self.pebble.unsupervised_steps
        ):
            raise ValueError(
                f"feedback.first_round_at ({self.feedback.first_round_at}) must be >= "
                f"pebble.unsupervised_steps ({self.pebble.unsupervised_steps}): PEBBLE asks its "
                "first queries when pre-training ends"
            )
        if self.algorithm == "pebble" and self.feedback.segment_len > self.log_capacity:
            raise ValueError(
                f"feedback.segment_len ({self.feedback.segment_len}) exceeds log_capacity "
                f"({self.log_capacity}), the steps kept to cut segments from; raise "
                "log_capacity or shorten segment_len"
            )
        rm = self.reward_model
        if not self.is_lm and 2 * rm.crop_steps >= self.feedback.segment_len:
            raise ValueError(
                f"reward_model.crop_steps ({rm.crop_steps}): a cropped window of "
                f"feedback.segment_len - 2 * crop_steps steps must keep at least one step of "
                f"the {self.feedback.segment_len}-step segments; lower crop_steps below "
                f"{(self.feedback.segment_len + 1) // 2}"
            )
        transformer = self.is_offline and self.offline.reward_model == "transformer"
        if transformer and (rm.unlabeled_ratio or rm.crop_steps):
            raise ValueError(
                "reward_model.unlabeled_ratio / crop_steps: SURF's semi-supervised labels and "
                "cropping train the MLP ensemble; offline.reward_model=transformer does not "
                "use them: set both to 0 or use offline.reward_model=mlp"
            )
        if transformer and rm.lapse_rate:
            raise ValueError(
                "reward_model.lapse_rate: trains the MLP ensemble; offline.reward_model="
                "transformer does not read it: set it to 0 or use offline.reward_model=mlp"
            )
        if rm.architecture == "reed" and (self.is_offline or self.is_lm):
            raise ValueError(
                f"reward_model.architecture: 'reed' learns from the run's own transitions "
                f"(online methods: pebble, pref_ppo); algorithm={self.algorithm} has none: "
                "use reward_model.architecture=mlp"
            )
        self._check_offline()
        self._check_lm()
        return self

    @property
    def is_offline(self) -> bool:
        """Whether the method learns from a fixed dataset (iql, td3bc, cpl)."""
        return self.algorithm in OFFLINE_ALGORITHMS

    @property
    def is_lm(self) -> bool:
        """Whether the method trains a language model (grpo, rloo, dpo, online_dpo, bon)."""
        return self.algorithm in LM_ALGORITHMS

    def _check_lm(self) -> None:
        lm, fb = self.lm, self.feedback
        if not self.is_lm:
            if lm != LMConfig():
                raise ValueError(
                    f"lm: only the language-model methods ({', '.join(LM_ALGORITHMS)}) read "
                    f"the lm section; set algorithm to one of them or drop the lm settings")
            return
        defaults = TrainConfig.model_construct()
        for dotted, why in LM_REFUSED.items():
            section, _, name = dotted.partition(".")
            value, default = getattr(self, section), getattr(defaults, section)
            if name:
                value, default = getattr(value, name), getattr(default, name)
            if value != default:
                raise ValueError(
                    f"{dotted}: not read by algorithm={self.algorithm} ({why}); leave it at "
                    "its default")
        if self.teacher.human and lm.judge != "none":
            raise ValueError(
                f"lm.judge: teacher=human has people answer the text queries, and lm.judge="
                f"{lm.judge} would answer them too; choose one (lm.judge=none for people)")
        if self.teacher.human and lm.reward == "gold":
            raise ValueError(
                "teacher.preset: lm.reward=gold asks no query, so nobody would be asked; use "
                "lm.reward=learned for people's labels, or a scripted preset")
        if self.algorithm == "online_dpo" and lm.judge == "endpoint":
            raise ValueError(
                "lm.judge: online_dpo scores each completion, and a chat endpoint judge only "
                "compares pairs; use lm.judge=lexicon or none (the reward model labels)")
        if self.algorithm in ("dpo", "online_dpo") and lm.beta <= 0:
            raise ValueError(f"lm.beta: is DPO's temperature for algorithm={self.algorithm} and "
                             f"must be > 0, got {lm.beta}")
        if self.algorithm in ("grpo", "rloo") and lm.batch_size % lm.num_generations:
            raise ValueError(
                f"lm.batch_size ({lm.batch_size}) must be a multiple of lm.num_generations "
                f"({lm.num_generations}): each step samples groups of num_generations "
                "completions")
        if self.algorithm == "dpo" and lm.reward == "gold":
            raise ValueError("lm.reward: dpo learns from the stored labels, not from a reward; "
                             "use lm.reward=learned (or algorithm=grpo for the gold reference)")
        if fb.first_round_at != 0 and lm.reward == "learned":
            raise ValueError(
                f"feedback.first_round_at: language-model runs ask round 0 on the base policy's "
                f"samples before the first optimizer step, so it must be 0, got "
                f"{fb.first_round_at}")

    def _check_offline(self) -> None:
        if not self.is_offline:
            if self.dataset is not None:
                raise ValueError(
                    f"dataset: only the offline methods ({', '.join(OFFLINE_ALGORITHMS)}) read "
                    f"a dataset; {self.algorithm} learns from its own experience: drop dataset "
                    "or set algorithm=iql, td3bc or cpl"
                )
            return
        if self.dataset is None:
            raise ValueError(
                f"dataset: algorithm={self.algorithm} learns from a fixed dataset; give one with "
                "--set dataset=ID_OR_PATH, e.g. rewardlab/halfcheetah/medium-replay-v0, made by "
                "`rewardlab dataset make --env HalfCheetah-v5 --tiers medium-replay` (`rewardlab "
                "dataset list` shows the datasets on this machine)"
            )
        off = self.offline
        if self.algorithm == "cpl" and off.reward == "true":
            raise ValueError(
                "offline.reward: CPL learns from the labels, never from a reward, so "
                "offline.reward=true has no effect with algorithm=cpl; drop it, or use "
                "algorithm=iql or td3bc for the true-reward reference"
            )
        if self.algorithm == "cpl" and self.cpl.bc_steps >= off.updates:
            raise ValueError(
                f"cpl.bc_steps ({self.cpl.bc_steps}) must be below offline.updates "
                f"({off.updates}), or the run only behaviour-clones; lower cpl.bc_steps or "
                "raise offline.updates"
            )
        transformer = self.algorithm != "cpl" and off.reward == "learned" and (
            off.reward_model == "transformer")
        if transformer and self.feedback.segment_len > self.preference_transformer.max_len:
            raise ValueError(
                f"feedback.segment_len ({self.feedback.segment_len}) exceeds "
                f"preference_transformer.max_len ({self.preference_transformer.max_len}), the "
                "longest segment the transformer embeds; raise max_len or shorten segment_len"
            )
        if transformer and self.feedback.method == "disagreement":
            raise ValueError(
                "feedback.method: disagreement ranks queries by how much ensemble members "
                "disagree, and the Preference Transformer (offline.reward_model=transformer) is "
                "one model; use feedback.method=entropy or uniform"
            )
        mit = self.mitigation
        if mit.early_stop != "none" or mit.regularizer != "none" or mit.targeted_feedback:
            raise ValueError(
                "mitigation: early_stop, regularizer and targeted_feedback act on an agent "
                f"collecting experience; algorithm={self.algorithm} is offline: leave them off"
            )
        if self.feedback.recent_steps is not None:
            raise ValueError(
                "feedback.recent_steps: offline labelling cuts segments from the whole dataset; "
                "leave it unset"
            )

    @model_validator(mode="before")
    @classmethod
    def _lm_feedback_defaults(cls, data: Any) -> Any:
        """With a language-model algorithm, the ``feedback`` keys not given take
        :data:`LM_FEEDBACK_DEFAULTS` (recorded so in config.yaml)."""
        return _section_defaults(data, LM_ALGORITHMS, "feedback", LM_FEEDBACK_DEFAULTS)

    @model_validator(mode="before")
    @classmethod
    def _pref_ppo_reward_model_defaults(cls, data: Any) -> Any:
        """With algorithm=pref_ppo, the ``reward_model`` keys not given take
        :data:`PREF_PPO_REWARD_MODEL_DEFAULTS` (recorded so in config.yaml)."""
        return _section_defaults(data, ("pref_ppo",), "reward_model",
                                 PREF_PPO_REWARD_MODEL_DEFAULTS)

    @model_validator(mode="before")
    @classmethod
    def _offline_reward_model_defaults(cls, data: Any) -> Any:
        """With an offline algorithm (iql, td3bc, cpl), the ``reward_model`` keys not given
        take :data:`OFFLINE_REWARD_MODEL_DEFAULTS` (recorded so in config.yaml)."""
        return _section_defaults(data, OFFLINE_ALGORITHMS, "reward_model",
                                 OFFLINE_REWARD_MODEL_DEFAULTS)

    @model_validator(mode="before")
    @classmethod
    def _iql_schedule_spans_the_run(cls, data: Any) -> Any:
        """With algorithm=iql and no iql.total_updates given, the cosine actor schedule spans
        the run: iql.total_updates = offline.updates (recorded so in config.yaml)."""
        if not isinstance(data, dict) or data.get("algorithm") != "iql":
            return data
        iql, offline = data.get("iql") or {}, data.get("offline") or {}
        if isinstance(iql, BaseModel):
            if "total_updates" in iql.model_fields_set:
                return data
            iql = iql.model_dump()
        if not isinstance(iql, dict) or "total_updates" in iql:
            return data
        if isinstance(offline, BaseModel):
            updates: Any = getattr(offline, "updates", None)
        elif isinstance(offline, dict):
            updates = offline.get("updates", OfflineConfig.model_fields["updates"].default)
        else:
            return data
        if isinstance(updates, bool) or not isinstance(updates, numbers.Real) or not (
                float(updates).is_integer()):
            return data  # a bad offline.updates is reported by its own field
        return {**data, "iql": {**iql, "total_updates": updates}}


def _section_defaults(data: Any, algorithms: tuple[str, ...], section: str,
                      defaults: dict[str, Any]) -> Any:
    """Raw config ``data`` with the ``section`` keys it does not give taken from ``defaults``
    when its algorithm is one of ``algorithms`` (unchanged otherwise, and when ``section`` is
    not a mapping: its field reports that)."""
    if not isinstance(data, dict) or data.get("algorithm") not in algorithms:
        return data
    given_section = data.get(section) or {}
    if isinstance(given_section, BaseModel):
        given = {k: getattr(given_section, k) for k in given_section.model_fields_set}
    elif isinstance(given_section, dict):
        given = given_section
    else:
        return data
    return {**data, section: {**defaults, **given}}


# ---------------------------------------------------------------------------- reading configs
def _format_validation_error(err: ValidationError) -> str:
    errors = err.errors()
    locs = [_dotted(e["loc"]) for e in errors]
    lines = []
    for e, loc in zip(errors, locs, strict=True):
        if e["type"] == "too_short" and any(o.startswith(f"{loc}.") for o in locs):
            continue  # a tuple emptied by its bad items: the items' errors say it all
        msg = e["msg"].removeprefix("Value error, ")
        ctx = e.get("ctx") or {}
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (`rewardlab config` prints every key)"
        elif e["type"] == "value_error":
            # our own messages say what was given and how to fix it, most naming the field
            if not loc or msg.startswith((f"{loc}.", f"{loc}:")):
                lines.append(msg)
                continue
        elif e["type"] == "int_from_float":
            msg = f"expected an integer, got {_show(value)}"
        elif (isinstance(value, (bool, int, float, str)) or value is None) and "got" not in msg:
            msg = f"{msg}, got {_show(value)}"
        limit = ctx.get("le", ctx.get("lt"))
        if e["type"] in {"less_than_equal", "less_than"} and limit in _LIMIT_REASONS:
            msg = f"{msg} ({_LIMIT_REASONS[limit]})"
        lines.append(f"{loc or '<config>'}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``feedback.total_budget`` from a pydantic error location."""
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


#: ``dialect[+driver]://`` as SQLAlchemy's ``make_url`` expects it.
_URL_RE = re.compile(r"^[A-Za-z][\w+]*://")

#: YAML 1.2 floats with an exponent that YAML 1.1 reads as strings (``1e4``, ``1.0e4``, ``.5E3``).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses duplicate keys and reads ``1e4`` as a float.

    Raises:
        yaml.constructor.ConstructorError: on a duplicate or unhashable mapping key, with the
            key's line in ``problem_mark``.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``; refuses a key given twice."""
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    "a key is a list or mapping; keys must be names", key_node.start_mark,
                ) from None
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {key!r} (first given on line {first}); keep only one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789")
)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """``line N: problem`` of a PyYAML error, without its multi-line context dump."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if isinstance(err, yaml.reader.ReaderError):
        return f"character {err.position}: {err.reason} (not YAML text)"
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _parse_scalar(item: str, text: str) -> Any:
    if not text.strip():
        return ""
    try:
        value = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)}); quote "
            "strings that hold YAML punctuation, e.g. --set 'env.id=\"a:b\"'"
        ) from None
    if isinstance(value, str) and value.strip().lower() in {"inf", "+inf", "infinity"}:
        return math.inf
    return value


def _section_fields(parts: list[str]) -> tuple[str, type[BaseModel] | None]:
    """Walk ``parts`` through the schema.

    Returns:
        ``("model", cls)`` if they name a section, ``("dict", None)`` for a free mapping such
        as ``env.kwargs``, ``("value", None)`` for a scalar field, ``("unknown", None)`` for a
        key the schema does not have (left for validation to report).
    """
    model: type[BaseModel] | None = TrainConfig
    for i, part in enumerate(parts):
        if model is None:
            return "dict", None
        field = model.model_fields.get(part)
        if field is None:
            return "unknown", None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif getattr(ann, "__origin__", None) is dict:
            model = None
        else:
            return ("value" if i == len(parts) - 1 else "unknown"), None
    return ("model", model) if model is not None else ("dict", None)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML scalars) to a nested dict.

    Raises:
        ConfigError: if an override has no ``=``, an empty key, a value that is not valid
            YAML, or a dotted key that goes through a setting that holds a value rather than
            a section (``--set total_steps.x=1``).
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set total_steps=20000")
        key, _, raw = item.partition("=")
        parts = [p.strip() for p in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(
                f"--set {item!r}: empty key or key part; write dotted.key=value, e.g. "
                "--set feedback.total_budget=100"
            )
        node = data
        for depth, p in enumerate(parts[:-1]):
            prefix = ".".join(parts[: depth + 1])
            kind, _ = _section_fields(parts[: depth + 1])
            if kind == "value":
                raise ConfigError(
                    f"--set {item!r}: {prefix} is a setting, not a section, so it has no "
                    f"{parts[depth + 1]!r}; write --set {prefix}=VALUE (`rewardlab config` "
                    "prints every key)"
                )
            child = node.get(p)
            if child is None:
                child = {}
            elif prefix == "teacher" and isinstance(child, str):
                child = {"preset": child}  # the `teacher: NAME` shorthand
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"--set {item!r}: {prefix} is {child!r} in the config file, not a section "
                    f"of keys; fix {prefix} in the file"
                )
            node[p] = child
            node = child
        node[parts[-1]] = _parse_scalar(item, raw)
    return data


def build_config(data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> (
    TrainConfig
):
    """Validate a nested dict plus overrides into a :class:`TrainConfig`.

    Raises:
        ConfigError: naming each bad field and what it allows.
    """
    merged = apply_overrides(_deep_copy(data or {}), list(overrides or []))
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    except ConfigError as err:
        raise ConfigError(f"invalid config:\n  {err}") from None


def _deep_copy(data: Any) -> Any:
    """A copy of nested dicts (overrides must not write into the caller's dict)."""
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file, as a nested dict.

    Raises:
        ConfigError: naming the file (and the line, where there is one) if it is missing,
            unreadable, not UTF-8 text, empty, not valid YAML, has a key twice, or is not a
            mapping of keys to values.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p}: not found")
    if not p.is_file():
        raise ConfigError(f"config file {p}: not a file; give a YAML file")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"config file {p}: cannot read it ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {p}, line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
            "save it as UTF-8 (is it a YAML file?)"
        ) from None
    try:
        loaded = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p}, {_yaml_problem(err)}") from None
    if loaded is None:
        raise ConfigError(
            f"config file {p}: empty (no settings); delete it or drop it from the command "
            "line to use the defaults, or add settings (`rewardlab config` prints them all)"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {p}: expected a mapping of keys to values (e.g. `total_steps: "
            f"20000`), got a {type(loaded).__name__}"
        )
    return loaded


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the embedded default when ``path`` is None) and apply overrides.

    Raises:
        ConfigError: if the file is missing or malformed (see :func:`read_config_file`), an
            override is malformed, or a field is bad (the message names the dotted field).
    """
    data = read_config_file(path) if path is not None else {}
    return build_config(data, overrides)


#: Settings added after runs were saved, whose default is not what older runs did: the value a
#: run directory's ``config.yaml`` that lacks the key meant (dotted key -> value). Runs saved
#: before ``reward_model.precision`` existed trained their reward model in float32.
SAVED_RUN_DEFAULTS: dict[str, Any] = {"reward_model.precision": "float32"}


def with_saved_run_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (a run's saved config, or part of it, as nested mappings) with each
    key of :data:`SAVED_RUN_DEFAULTS` it lacks, inside a section it has, set to the value
    runs used before the key existed."""
    out = copy.deepcopy(data)
    for dotted, value in SAVED_RUN_DEFAULTS.items():
        *sections, name = dotted.split(".")
        node: Any = out
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(name, value)
    return out


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config saved in a run directory (``config.yaml``), with optional overrides.

    A saved config is a full dump (:func:`dump_config`), so a key it lacks was added later;
    for the keys of :data:`SAVED_RUN_DEFAULTS` it takes the value the run used then instead of
    today's default (:func:`with_saved_run_defaults`; a resumed run keeps training as it
    started; benchmark reuse checks see the difference).

    Raises:
        ConfigError: as :func:`load_config`.
    """
    return build_config(with_saved_run_defaults(read_config_file(path)), overrides)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML (the record saved beside each run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------- sweeps
class SweepConfig(BaseModel):
    """A sweep: a grid of config overrides times seeds, each trial an ordinary run.

    Written as a YAML file for ``rewardlab sweep SWEEP.yaml``, e.g.::

        name: budgets
        base: {env: {id: Pendulum-v1}, total_steps: 15000,
               feedback: {queries_per_round: 50, round_every: 1200}}
        grid:
          feedback.total_budget: [100, 500]
          teacher.preset: [oracle, mistake]
        seeds: [0, 1, 2]
    """

    model_config = _SECTION
    name: str = Field("sweep", min_length=1, max_length=NAME_LENGTH,
                      description="Name of the sweep (its Ray Tune experiment).")
    base: dict[str, Any] = Field(
        default_factory=dict, description="Settings every trial shares (a TrainConfig mapping, "
        "as in a config file)."
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="Dotted config key -> the values it takes; the "
        "trials are every combination, times every seed."
    )
    seeds: tuple[Int, ...] = Field((0,), min_length=1, description="Run seeds of each point.")
    max_concurrent: Int = Field(
        2, ge=1, le=MAX_ENVS, description="Trials running at once (each pinned to one thread)."
    )
    cpus_per_trial: Float = Field(1.0, gt=0, le=256, description="Ray CPUs one trial takes.")

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key}: empty; give at least one value")
            if key == "seed":
                raise ValueError("grid.seed: list the seeds under `seeds` instead")
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds: {list(self.seeds)} repeats a seed")
        return self


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file (see :class:`SweepConfig`).

    Raises:
        ConfigError: naming the file, and the field, for anything malformed.
    """
    try:
        return SweepConfig.model_validate(read_config_file(path))
    except ValidationError as err:
        raise ConfigError(f"sweep file {path}: " + _format_validation_error(err)) from None
