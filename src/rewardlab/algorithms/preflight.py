"""Checks of a run's config against its environment and this machine, before anything starts.

:mod:`rewardlab.config` checks what a config says on its own (types, ranges, static limits).
:func:`preflight` checks what needs the world: the environment can be made and its episodes
hold a segment, the feedback schedule can spend its query budget within ``total_steps``, the
replay buffer, transition log and networks fit in the memory this machine has available, and the
feedback store's URL names a database that can be opened. It creates nothing: no run directory,
no database file. Every failure is a :class:`~rewardlab.errors.ConfigError` naming the dotted
fields and what to change.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rewardlab.config import TrainConfig
from rewardlab.envs.make import EnvDims, env_dims
from rewardlab.errors import ConfigError
from rewardlab.feedback.rounds import effective_schedule, round_step, total_rounds

__all__ = ["EnvDims", "available_memory", "check_store_url", "estimate_memory", "preflight",
           "with_dataset_env"]

#: Rows of one reward-model forward pass (``rewards.model.PREDICT_CHUNK``).
_PREDICT_ROWS = 65_536
#: Memory of the process before any run-sized array: interpreter, torch, MuJoCo, SB3.
BASE_BYTES = 512 * 2**20
#: Seconds to wait for a database server when checking ``store_url``.
CONNECT_TIMEOUT_S = 10

_GIB = 2**30


def preflight(config: TrainConfig, check_budget: bool = True) -> EnvDims:
    """Check ``config`` against its environment and this machine; create nothing.

    Args:
        config: a validated run config.
        check_budget: refuse a query budget the schedule cannot spend before ``total_steps``
            (off when resuming a run with a changed ``total_steps``).

    Returns:
        The environment's :class:`~rewardlab.envs.make.EnvDims`.

    Raises:
        ConfigError: naming the fields, if the env cannot be made (``env.id``,
            ``env.kwargs``), a segment is longer than an episode (``feedback.segment_len``,
            ``env.max_episode_steps``), the schedule cannot ask ``feedback.total_budget``
            queries before ``total_steps``, the run would not fit in available memory
            (``pebble.sac.buffer_size``, ``log_capacity``, network widths, ...), or
            ``store_url`` is malformed, its driver is missing, or its database cannot be
            reached; for offline methods see :func:`preflight_offline`.
    """
    if config.is_offline:
        return preflight_offline(config)
    dims = env_dims(config.env)
    check_segments(config, dims)
    if check_budget:
        check_schedule(config)
    check_memory(config, dims)
    if config.store_url is not None:
        check_store_url(config.store_url)
    return dims


# ---------------------------------------------------------------------------- offline runs
def _dataset_meta(config: TrainConfig) -> dict:
    from rewardlab.data.offline import dataset_metadata
    from rewardlab.errors import DatasetError

    try:
        return dataset_metadata(str(config.dataset))
    except DatasetError as err:
        raise ConfigError(f"dataset: {err}") from None


def _json_field(meta: dict, key: str) -> dict:
    value = meta.get(key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    return value if isinstance(value, dict) else {}


def _makeable_id(spec: dict) -> str | None:
    """The env id of a Minari ``env_spec``; ``module:Env-vN`` when its entry point lives
    outside Gymnasium (an env its own module registers on import, e.g.
    ``rewardlab.envs.toy:PointGoal-v0``), so a fresh process can make it."""
    env_id, entry = spec.get("id"), spec.get("entry_point")
    if not isinstance(env_id, str) or not env_id:
        return None
    if ":" in env_id or not isinstance(entry, str) or ":" not in entry:
        return env_id
    module = entry.split(":", 1)[0]
    return env_id if module.split(".")[0] == "gymnasium" else f"{module}:{env_id}"


def with_dataset_env(config: TrainConfig) -> TrainConfig:
    """An offline run's config with the environment of its dataset.

    Offline runs evaluate their policy in the env the dataset was recorded in: ``env.id``
    defaults to the id of the dataset's Minari ``env_spec`` (``module:id`` when only its
    module registers it), and ``env.max_episode_steps`` to
    the time limit RewardLab's ``rewardlab dataset make`` recorded (its reference scores, and
    so the D4RL normalised scores, are returns of episodes that long). Settings given
    explicitly are kept (and ``env.id`` must then agree). Online configs are returned as
    they are. Reads only the dataset's ``metadata.json``.

    Raises:
        ConfigError: naming ``dataset`` if it is not on this machine (with the ``rewardlab
            dataset make`` command that makes it) or unreadable, or naming ``env.id`` if it
            was set to another env than the dataset's.
    """
    if not config.is_offline:
        return config
    meta = _dataset_meta(config)
    spec = _json_field(meta, "env_spec")
    env_id = _makeable_id(spec)
    recipe = (meta.get("rewardlab") or {}).get("recipe") or {}
    given = config.env.model_fields_set
    update: dict = {}
    if not isinstance(env_id, str) or not env_id:
        if "id" not in given:
            raise ConfigError(
                f"dataset: {config.dataset} records no env (no env_spec in its metadata); set "
                "env.id to the env it was recorded in"
            )
    elif "id" not in given:
        update["id"] = env_id
    elif config.env.id.rsplit(":", 1)[-1] != env_id.rsplit(":", 1)[-1]:
        raise ConfigError(
            f"env.id: {config.env.id} differs from the env of dataset {config.dataset} "
            f"({env_id}); offline runs evaluate in the dataset's env: drop env.id or set "
            f"env.id={env_id}"
        )
    limit = recipe.get("max_episode_steps")
    if "max_episode_steps" not in given and isinstance(limit, int) and limit > 0:
        update["max_episode_steps"] = limit
    if not update:
        return config
    return config.model_copy(update={"env": config.env.model_copy(update=update)})


def preflight_offline(config: TrainConfig) -> EnvDims:
    """Check an offline run (iql, td3bc, cpl): its dataset, env, segments, memory and store.

    Call with the config of :func:`with_dataset_env`. Reads only the dataset's metadata.

    Returns:
        The env's :class:`~rewardlab.envs.make.EnvDims`.

    Raises:
        ConfigError: naming ``dataset`` if it is missing, unreadable or its spaces differ from
            the env's; ``env.id``/``env.kwargs`` if the env cannot be made;
            ``offline.normalize_rewards`` for a dataset of one episode;
            ``feedback.segment_len`` if a segment is longer than an episode; ``dataset`` if
            it would not fit in the memory available; ``store_url`` as :func:`preflight`.
    """
    meta = _dataset_meta(config)
    dims = env_dims(config.env)
    labels = config.algorithm == "cpl" or config.offline.reward == "learned"
    if labels:
        check_segments(config, dims)
    widths = []
    for key in ("observation_space", "action_space"):
        shape = _json_field(meta, key).get("shape")
        widths.append(int(np.prod(shape)) if isinstance(shape, list) else None)
    if widths != [dims.obs_dim, dims.act_dim] and None not in widths:
        raise ConfigError(
            f"dataset: {config.dataset} has {widths[0]}-d observations and {widths[1]}-d "
            f"actions but {config.env.id} has {dims.obs_dim} and {dims.act_dim}; give the "
            "dataset's env (env.id)"
        )
    episodes = meta.get("total_episodes")
    needs_spread = config.algorithm != "cpl" and config.offline.normalize_rewards
    if needs_spread and isinstance(episodes, int) and episodes < 2:
        raise ConfigError(
            f"offline.normalize_rewards: dataset {config.dataset} holds {episodes} episode, so "
            "its rewards cannot be rescaled by the spread of episode returns; set "
            "offline.normalize_rewards=false or use a dataset of several episodes"
        )
    steps = meta.get("total_steps")
    available = available_memory()
    if isinstance(steps, int) and available is not None:
        # the dataset, its transitions for the agent and relabelled rewards, float32
        need = BASE_BYTES + 2 * steps * (2 * dims.obs_dim + dims.act_dim + 4) * 4 + (
            steps * dims.state_dim * 8)
        if need > available:
            raise ConfigError(
                f"dataset: {config.dataset} ({steps} steps) needs about {_gib(need)} of memory "
                f"but this machine has {_gib(available)} available; use a smaller dataset or "
                "free memory"
            )
    if config.store_url is not None:
        check_store_url(config.store_url)
    return dims


# ---------------------------------------------------------------------------- segments
def check_segments(config: TrainConfig, dims: EnvDims) -> None:
    """A query segment must fit inside one episode.

    Raises:
        ConfigError: naming ``feedback.segment_len`` and ``env.max_episode_steps``.
    """
    seg = config.feedback.segment_len
    if seg > dims.episode_limit:
        source = (
            f"env.max_episode_steps={config.env.max_episode_steps}"
            if config.env.max_episode_steps is not None
            else f"the time limit {config.env.id} is registered with; env.max_episode_steps "
            "is unset"
        )
        raise ConfigError(
            f"feedback.segment_len ({seg}) is longer than an episode of {config.env.id} "
            f"({dims.episode_limit} steps: {source}); segments are cut from one episode, so "
            f"set feedback.segment_len <= {dims.episode_limit} or raise env.max_episode_steps"
        )


# ---------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class ScheduleFit:
    """Where a run's feedback rounds fall.

    Attributes:
        first: env step the first round happens at. every: steps from one round to the
            next one's due step (``feedback.round_every``, or the spread of
            ``mitigation.targeted_feedback``). spacing: steps between rounds as they happen
            (``every`` rounded up to whole PPO rollouts). granularity: steps between the points
            where a round can happen (1 for PEBBLE, ``ppo.n_steps * ppo.n_envs`` for PPO).
        rounds: rounds due before ``total_steps``, at most the ones the budget needs.
        needed: rounds that spend the whole budget.
        total_steps_needed: the fewest ``total_steps`` before which every needed round is due.
    """

    first: int
    every: int
    spacing: int
    granularity: int
    rounds: int
    needed: int
    total_steps_needed: int


def schedule_fit(config: TrainConfig) -> ScheduleFit:
    """Count the feedback rounds that happen before ``total_steps``.

    The schedule is a fixed grid (:func:`rewardlab.feedback.rounds.round_step`): round ``r`` is
    due at ``first_round_at + r * round_every``. PEBBLE trains up to a due step exactly;
    preference PPO looks for due rounds after each rollout of ``ppo.n_steps * ppo.n_envs``
    steps, so its rounds happen at the first rollout boundary at or after their due step. A
    round counts if it happens before ``total_steps`` (the agent must still train on it). With
    ``mitigation.targeted_feedback`` rounds are spread over the run as
    :func:`rewardlab.feedback.rounds.effective_schedule` does.
    """
    ppo = config.algorithm == "pref_ppo"
    n_envs = config.ppo.n_envs if ppo else 1
    sch = effective_schedule(config.feedback, config.mitigation, config.total_steps, n_envs)
    gran = config.ppo.n_steps * config.ppo.n_envs if ppo else 1
    needed = total_rounds(sch)

    def happens(r: int) -> int:  # a round needs at least one step of experience
        return _ceil_to(max(round_step(sch, r), 1), gran)

    rounds = sum(1 for r in range(needed) if happens(r) < config.total_steps)
    spacing = _ceil_to(sch.round_every, gran)
    return ScheduleFit(happens(0), sch.round_every, spacing, gran, rounds, needed,
                       happens(needed - 1) + 1)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_schedule(config: TrainConfig) -> None:
    """The schedule must be able to ask the whole query budget before ``total_steps``.

    Raises:
        ConfigError: naming ``feedback.total_budget``, the schedule's fields and
            ``total_steps``, with how many queries the schedule can ask and what to change.
    """
    fit = schedule_fit(config)
    if fit.rounds >= fit.needed:
        return
    sch = config.feedback
    asked = min(fit.rounds * sch.queries_per_round, sch.total_budget)
    where = (
        f"the first round at step {fit.first} (feedback.first_round_at={sch.first_round_at}) "
        f"and the next ones every {fit.every} steps "
        f"(feedback.round_every={sch.round_every}"
    )
    if fit.granularity > 1:
        where += (
            f"; PPO rounds happen on rollout boundaries of ppo.n_steps x ppo.n_envs = "
            f"{fit.granularity} steps, so {fit.spacing} steps apart"
        )
    if config.mitigation.targeted_feedback:
        where += ", spread over the run by mitigation.targeted_feedback"
    where += ")"
    raise ConfigError(
        f"feedback.total_budget: the schedule can ask only {asked} of the "
        f"{sch.total_budget} queries before total_steps={config.total_steps}: {where} fit "
        f"{fit.rounds} of the {fit.needed} rounds of feedback.queries_per_round="
        f"{sch.queries_per_round}; raise total_steps to at least {fit.total_steps_needed}, "
        "or lower feedback.round_every or feedback.first_round_at, raise "
        "feedback.queries_per_round, or lower feedback.total_budget"
    )


# ---------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryItem:
    """One run-sized allocation.

    Attributes:
        what: what it is, e.g. ``"replay buffer"``. field: the dotted config field that sizes
            it. count: that field's value (or the count it implies). unit_bytes: bytes per
            count (0 for an item no single field scales). bytes: total bytes.
    """

    what: str
    field: str
    count: int
    unit_bytes: int
    bytes: int


def _mlp_params(in_dim: int, widths: tuple[int, ...], out_dim: int) -> int:
    dims = [in_dim, *widths, out_dim]
    return sum((a + 1) * b for a, b in zip(dims, dims[1:], strict=False))


def estimate_memory(config: TrainConfig, dims: EnvDims) -> list[MemoryItem]:
    """The run's largest allocations, from the config and the env's dimensions.

    An estimate (float32 unless noted): the SAC replay buffer keeps observations and next
    observations in the env's dtype plus actions, rewards, dones and timeouts; the PPO rollout
    buffer keeps observations, actions and six scalars per step; the transition log keeps
    observations, actions, the gold reward, two int64 indices and (with
    ``record_render_states``) float64 simulator states per step and env; a network costs four
    floats per parameter (value, gradient, two Adam moments) plus a batch of activations.
    """
    obs, act = dims.obs_dim, dims.act_dim
    items: list[MemoryItem] = []

    def add(what: str, field: str, count: int, unit: int, extra: int = 0) -> None:
        items.append(MemoryItem(what, field, count, unit, count * unit + extra))

    ppo = config.algorithm == "pref_ppo"
    if ppo:
        p = config.ppo
        n_envs = p.n_envs
        add("PPO rollout buffer", "ppo.n_steps", p.n_steps, n_envs * (obs + act + 6) * 4)
        params = _mlp_params(obs, p.net_arch, act) + act + _mlp_params(obs, p.net_arch, 1)
        add("policy and value networks", "ppo.net_arch", params, 16,
            p.batch_size * sum(p.net_arch) * 4 * 4)
        log_rows = max(config.log_capacity // n_envs, config.feedback.segment_len + 1)
    else:
        s = config.pebble.sac
        n_envs = 1
        add("replay buffer", "pebble.sac.buffer_size", s.buffer_size,
            2 * obs * dims.obs_itemsize + act * 4 + 12)
        actor = _mlp_params(obs, s.net_arch, 2 * act)
        critic = _mlp_params(obs + act, s.net_arch, 1)
        add("actor and critic networks", "pebble.sac.net_arch", actor + 2 * critic, 16,
            2 * critic * 4 + s.batch_size * sum(s.net_arch) * 4 * 6)
        log_rows = config.log_capacity
    state = dims.state_dim * 8 if config.record_render_states else 0
    log_unit = n_envs * ((obs + act + 1) * 4 + 16 + state)
    add("transition log", "log_capacity", log_rows, log_unit)

    rm = config.reward_model
    member = _mlp_params(obs + act, rm.hidden_sizes, 1)
    add("reward model", "reward_model.hidden_sizes", rm.members * member, 16,
        _PREDICT_ROWS * max(rm.hidden_sizes) * rm.members * 4 * 2)
    sch = config.feedback
    window = sch.segment_len * ((obs + act + 1) * 4 + 16 + state)
    add("query candidate pool", "feedback.queries_per_round", sch.queries_per_round,
        2 * 2 * sch.oversample * window)
    mit = config.mitigation
    if mit.regularizer == "chi2_occupancy":
        add("reference samples", "mitigation.reference_samples", mit.reference_samples,
            (obs + act) * 4)
    return items


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate, or None when unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (else free physical pages from ``os.sysconf``),
    lowered to the cgroup's remaining ``memory.max`` when a container limits it.
    """
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def check_memory(config: TrainConfig, dims: EnvDims, available: int | None = None) -> None:
    """The run's buffers and networks must fit in the memory available now.

    Args:
        config: the run config.
        dims: the env's dimensions.
        available: bytes available (default: :func:`available_memory`).

    Raises:
        ConfigError: naming the field of the largest allocation, its size, what is
            available and the largest value of that field that fits.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    items = estimate_memory(config, dims)
    total = BASE_BYTES + sum(i.bytes for i in items)
    if total <= available:
        return
    items.sort(key=lambda i: i.bytes, reverse=True)
    big = items[0]
    parts = ", ".join(
        f"{i.what} {_gib(i.bytes)} ({i.field}={_value(config, i.field)})"
        for i in items if i.bytes >= total / 100
    )
    room = available - (total - big.bytes)
    fix = f"lower {big.field}"
    if big.unit_bytes and room > 0 and big.count > 1:
        fits = room // big.unit_bytes
        fix += f" (about {fits} fits)" if fits >= 1 else ""
    raise ConfigError(
        f"{big.field}: the run needs about {_gib(total)} of memory but this machine has "
        f"{_gib(available)} available: {parts}; {fix}, or free memory"
    )


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB" if n >= 0.1 * _GIB else f"{n / 2**20:.0f} MiB"


def _value(config: TrainConfig, field: str) -> object:
    node: object = config
    for part in field.split("."):
        node = getattr(node, part)
    return list(node) if isinstance(node, tuple) else node


# ---------------------------------------------------------------------------- store
def check_store_url(url: str) -> None:
    """The feedback store's URL must parse, its driver be installed and its database reachable.

    A SQLite file is not created (its directory must exist); a server database is connected
    to and closed, with a timeout of :data:`CONNECT_TIMEOUT_S` seconds.

    Raises:
        ConfigError: naming ``store_url``, for a malformed URL, an unknown dialect or a
            missing driver, an in-memory SQLite database, a missing directory, or a database
            that refuses the connection.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise ConfigError(
            f"store_url: {url!r} is not a SQLAlchemy URL ({err}); expected e.g. "
            "postgresql+psycopg://user@host/run42 or sqlite:////abs/path/feedback.db"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except ArgumentError as err:  # NoSuchModuleError: unknown dialect or driver name
        raise ConfigError(
            f"store_url: {shown!r}: unknown database dialect or driver ({err}); use e.g. "
            "postgresql+psycopg:// or sqlite:///"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise ConfigError(
            f"store_url: {shown!r}: the driver {parsed.get_driver_name()!r} is not installed "
            f"({err}); install it, e.g. pip install 'psycopg[binary]' for postgresql+psycopg"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_path(shown, parsed.database, parsed.query)
        return
    connect_args = (
        {"connect_timeout": CONNECT_TIMEOUT_S}
        if parsed.get_backend_name() in {"postgresql", "mysql", "mariadb"} else {}
    )
    engine = None
    try:
        engine = create_engine(parsed, connect_args=connect_args)
        with engine.connect():
            pass
    except Exception as err:  # noqa: BLE001 (any driver's refusal, reported by name)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"store_url: cannot connect to {shown!r}: {detail}; check that the server runs, "
            "the user, password, host, port and database name, and that the database exists "
            "(one per run)"
        ) from None
    finally:
        if engine is not None:
            engine.dispose()


def _check_sqlite_path(shown: str, database: str | None, query: object) -> None:
    if not database or database == ":memory:" or "memory" in str(query):
        raise ConfigError(
            f"store_url: {shown!r} is an in-memory SQLite database, which is gone when the "
            "run stops; give a file (sqlite:////abs/path/feedback.db) or leave store_url "
            "unset for feedback.db in the run directory"
        )
    path = Path(database.removeprefix("file:")).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"store_url: {shown!r} names the directory {path}; give a database file in it, "
            f"e.g. sqlite:///{path / 'feedback.db'}"
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"store_url: {shown!r}: directory {path.parent} does not exist; create it first "
            "(the database file is created in it)"
        )

