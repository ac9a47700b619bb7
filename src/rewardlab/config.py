"""Typed, validated configuration of a training run.

One :class:`TrainConfig` object is the CLI (YAML file plus ``--set key=value`` overrides), the
Python API and the ``config.yaml`` saved in each run directory. Unknown keys and bad values are
refused at construction with a :class:`~rewardlab.errors.ConfigError` naming the dotted field and
what is allowed, before anything starts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardlab.errors import ConfigError
from rewardlab.feedback.queries import FeedbackSchedule
from rewardlab.feedback.teachers import TEACHER_ALIASES, TEACHER_PRESETS, TeacherConfig
from rewardlab.rewards.model import RewardModelConfig

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class EnvConfig(BaseModel):
    """The Gymnasium environment."""

    model_config = _FROZEN
    id: str = Field("Reacher-v5", description="Gymnasium id, e.g. HalfCheetah-v5.")
    max_episode_steps: int | None = Field(
        None, ge=1, description="Override of the time limit (default: the registered one)."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for gymnasium.make."
    )


class SACConfig(BaseModel):
    """Soft actor-critic settings (Stable-Baselines3 names; defaults are SB3's / PEBBLE's)."""

    model_config = _FROZEN
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate.")
    buffer_size: int = Field(1_000_000, ge=1000, description="Replay buffer capacity (steps).")
    batch_size: int = Field(256, ge=1, description="Minibatch size.")
    tau: float = Field(0.005, gt=0, le=1, description="Target network Polyak coefficient.")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount factor.")
    learning_starts: int = Field(1000, ge=0, description="Random-action steps before learning.")
    train_freq: int = Field(1, ge=1, description="Env steps between updates.")
    gradient_steps: int = Field(1, ge=1, description="Gradient steps per update.")
    net_arch: tuple[int, ...] = Field((256, 256), description="Actor and critic hidden widths.")


class PebbleConfig(BaseModel):
    """PEBBLE (Lee et al. 2021): unsupervised pre-training and relabelling."""

    model_config = _FROZEN
    unsupervised_steps: int = Field(
        2000, ge=0, description="Steps of pre-training on the k-NN state-entropy reward "
        "(PEBBLE Sec. 4.1); 0 disables pre-training."
    )
    knn_k: int = Field(5, ge=1, description="k of the k-NN state-entropy estimate.")
    intrinsic_relabel_every: int = Field(
        500, ge=1, description="Steps between intrinsic-reward relabels during pre-training."
    )
    reset_critic: bool = Field(
        True, description="Re-initialise the critic after pre-training (PEBBLE Alg. 1)."
    )
    sac: SACConfig = Field(default_factory=SACConfig)


class PPOConfig(BaseModel):
    """PPO settings (Stable-Baselines3 names) for preference PPO (Christiano et al. 2017)."""

    model_config = _FROZEN
    n_envs: int = Field(4, ge=1, description="Parallel environments.")
    n_steps: int = Field(512, ge=1, description="Steps per env per rollout.")
    batch_size: int = Field(64, ge=1, description="Minibatch size.")
    n_epochs: int = Field(10, ge=1, description="Epochs per rollout.")
    learning_rate: float = Field(3e-4, gt=0, description="Adam learning rate.")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.95, gt=0, le=1, description="GAE lambda.")
    clip_range: float = Field(0.2, gt=0, description="PPO clip range.")
    ent_coef: float = Field(0.0, ge=0, description="Entropy bonus coefficient.")
    net_arch: tuple[int, ...] = Field((64, 64), description="Policy and value hidden widths.")
    use_sde: bool = Field(
        False, description="Generalized state-dependent exploration (gSDE, Raffin et al. 2022) "
        "instead of independent Gaussian action noise (SB3's use_sde)."
    )
    sde_sample_freq: int = Field(
        -1, ge=-1, description="With use_sde: resample the gSDE noise matrix every N steps "
        "(-1: only at the start of each rollout; SB3's sde_sample_freq)."
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
        return self


class TeacherSettings(BaseModel):
    """Which scripted teacher answers queries (B-Pref presets, optionally overridden)."""

    model_config = _FROZEN
    preset: str = Field(
        "oracle",
        description="One of: " + ", ".join([*TEACHER_PRESETS, *TEACHER_ALIASES]) + ", or "
        "human (people answer in the web app; see the human section). `--set teacher=NAME` "
        "is short for `--set teacher.preset=NAME`.",
    )
    beta: float | None = Field(None, description="Rationality (inf = perfectly rational).")
    gamma: float | None = Field(None, description="Myopic discount of older steps.")
    eps_mistake: float | None = Field(None, description="Probability of flipping an answer.")
    eps_skip: float | None = Field(None, description="Skip threshold, fraction of the margin.")
    eps_equal: float | None = Field(None, description="Equal threshold, fraction of margin.")

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
                raise ValueError(f"{err} (or {hint})") from None
        return self

    @property
    def human(self) -> bool:
        """Whether people answer the queries (``preset == "human"``)."""
        return self.preset.strip().lower() == HUMAN_TEACHER

    def build(self, preset: str | None = None) -> TeacherConfig:
        """The validated scripted :class:`TeacherConfig` (raises ConfigError naming the field).

        Args:
            preset: scripted preset to build instead of ``self.preset`` (the human teacher's
                scripted helper, ``human.scripted``), with this section's overrides.
        """
        from rewardlab.feedback.teachers import teacher_preset

        overrides = {
            k: v for k, v in self.model_dump().items() if k != "preset" and v is not None
        }
        return teacher_preset(preset or self.preset, **overrides)


#: ``teacher.preset`` value that makes people answer the queries in the web app.
HUMAN_TEACHER = "human"


class HumanConfig(BaseModel):
    """People answering queries in the annotation web app (``teacher=human``).

    At each feedback round training pauses until every query of the round has answers from
    ``min(overlap, annotators)`` people, or until ``timeout_s`` passes, when ``on_timeout``
    decides: ``wait`` on, ``skip`` the round's unanswered queries (training goes on with the
    labels given so far), or have the ``scripted`` teacher answer them.
    """

    model_config = _FROZEN
    on_timeout: Literal["wait", "skip", "scripted"] = Field(
        "wait", description="What happens when a round is not answered within timeout_s: "
        "wait on, skip the unanswered queries, or let the scripted teacher answer them."
    )
    timeout_s: float = Field(
        600.0, gt=0, description="Seconds to wait for a round before on_timeout acts."
    )
    scripted: str = Field(
        "oracle", description="Scripted teacher preset that answers on timeout "
        "(on_timeout=scripted) and pre-labels in mixed mode; teacher.* overrides apply."
    )
    mixed: bool = Field(
        False, description="Mixed mode: the scripted teacher pre-labels each round at once, "
        "people audit in the web app and their answers (can't tell included) override its."
    )
    annotators: tuple[str, ...] = Field(
        ("annotator",), description="Annotators created at the start of a new run; their "
        "login links are printed once. Add more with `rewardlab annotators add`."
    )
    serve: bool = Field(
        True, description="Serve the annotation web app from the training process."
    )
    host: str = Field("127.0.0.1", min_length=1, description="Host the web app listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the web app (0: any free).")
    overlap: int = Field(
        1, ge=1, description="People handed each query (1: never the same query twice); "
        "with more, agreement shows in `rewardlab report`."
    )
    poll_s: float = Field(
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


class EvalConfig(BaseModel):
    """Gold-versus-proxy evaluation."""

    model_config = _FROZEN
    every: int = Field(5000, ge=1, description="Env steps between evaluations.")
    episodes: int = Field(5, ge=1, description="Deterministic-policy episodes per evaluation.")


class MitigationConfig(BaseModel):
    """Over-optimisation mitigations (each off by default); see
    :mod:`rewardlab.algorithms.mitigations`. The conservative ensemble reward is
    ``reward_model.reduction`` (``mean_minus_std``, ``mean_minus_var``, ``min``)."""

    model_config = _FROZEN
    early_stop: Literal["none", "disagreement", "calibration"] = Field(
        "none", description="Stop training and roll the policy back to the last evaluation the "
        "check trusted: 'disagreement' when the ensemble's disagreement on the policy's states "
        "exceeds early_stop_ratio times its value at the first evaluation after the latest "
        "reward update; 'calibration' when the reward model's ECE on a round's fresh queries "
        "(measured before retraining on them) exceeds early_stop_ece."
    )
    early_stop_ratio: float = Field(
        1.5, gt=1, description="Disagreement growth that stops training (early_stop=disagreement)."
    )
    early_stop_ece: float = Field(
        0.25, gt=0, lt=1, description="Fresh-query ECE that stops training "
        "(early_stop=calibration)."
    )
    early_stop_patience: int = Field(
        1, ge=1, description="Consecutive failed checks before stopping."
    )
    regularizer: Literal["none", "chi2_occupancy", "action_kl"] = Field(
        "none", description="Regularise towards the reference policy (the policy at the first "
        "reward update): 'chi2_occupancy' subtracts reg_coef times a discriminator estimate of "
        "the chi-squared occupancy-measure gradient 2 (mu_pi/mu_ref - 1) (Laidlaw et al. 2024, "
        "ORPO); 'action_kl' subtracts reg_coef times KL(pi(.|s) || pi_ref(.|s)) per step."
    )
    reg_coef: float = Field(0.1, ge=0, description="Regulariser weight (proxy-reward units).")
    discriminator_steps: int = Field(
        50, ge=1, description="Discriminator gradient steps per update (chi2_occupancy)."
    )
    reference_samples: int = Field(
        2000, ge=100, description="Reference-policy steps collected once for chi2_occupancy."
    )
    targeted_feedback: bool = Field(
        False, description="Ask each round about the states the policy now visits: cut "
        "segments from the steps since the previous round only, and spread the query budget "
        "evenly over the run (same budget, rounds no earlier than the schedule's)."
    )


class TrainConfig(BaseModel):
    """A whole training run. Every field can be set with ``--set dotted.key=value``."""

    model_config = _FROZEN
    algorithm: Literal["pebble", "pref_ppo"] = Field("pebble", description="Method.")
    seed: int = Field(0, ge=0, description="Run seed; every component derives its own.")
    total_steps: int = Field(20_000, ge=1, description="Environment steps to train for.")
    env: EnvConfig = Field(default_factory=EnvConfig)
    feedback: FeedbackSchedule = Field(
        default_factory=lambda: FeedbackSchedule(
            total_budget=200, queries_per_round=20, round_every=1500, first_round_at=2000,
            segment_len=50, method="disagreement",
        )
    )
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    human: HumanConfig = Field(default_factory=HumanConfig)
    reward_model: RewardModelConfig = Field(default_factory=RewardModelConfig)
    pebble: PebbleConfig = Field(default_factory=PebbleConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint_every: int = Field(10_000, ge=1, description="Env steps between checkpoints.")
    torch_threads: int = Field(1, ge=1, le=256, description="torch intra-op threads.")
    log_capacity: int = Field(
        200_000, ge=100, description="Steps per env kept for cutting query segments."
    )
    progress_bar: bool = Field(True, description="Show a rich progress bar.")
    record_render_states: bool = Field(
        True, description="Store MuJoCo simulator states with each queried segment, so it "
        "can be rendered to a clip for a person later."
    )
    teacher_bias: str | None = Field(
        None, description="Testbed only: the scripted teacher judges segments by this biased "
        "view of the task (a key of rewardlab.envs.testbed.TEACHER_VIEWS, e.g. ignore_hazard, "
        "decoy) instead of the true reward; evaluation still reports the true reward."
    )
    mitigation: MitigationConfig = Field(default_factory=MitigationConfig)
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the feedback store, one database per run (e.g. "
        "postgresql+psycopg://user@host/run42); default: SQLite feedback.db in the run dir."
    )

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
        return self


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (`rewardlab config` prints every key)"
        elif e["type"] == "literal_error":
            msg = f"{msg}, got {e.get('input')!r}"
        lines.append(f"{loc or '<config>'}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _parse_scalar(text: str) -> Any:
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str) and value.lower() in {"inf", "+inf", "infinity"}:
        return math.inf
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML scalars) to a nested dict.

    Raises:
        ConfigError: if an override has no ``=`` or an empty key.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set total_steps=20000")
        key, _, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
                node[p] = child
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return data


def build_config(data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> (
    TrainConfig
):
    """Validate a nested dict plus overrides into a :class:`TrainConfig`.

    Raises:
        ConfigError: naming each bad field and what it allows.
    """
    merged = apply_overrides(dict(data or {}), list(overrides or []))
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err)) from None
    except ConfigError as err:
        raise ConfigError(f"invalid config:\n  {err}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the embedded default when ``path`` is None) and apply overrides.

    Raises:
        ConfigError: if the file is missing, is not a YAML mapping, or holds a bad field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p}: not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {p}: not valid YAML ({err})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: expected a mapping of keys to values")
        data = loaded
    return build_config(data, overrides)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML (the record saved beside each run)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
