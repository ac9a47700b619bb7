"""Feedback efficiency: PEBBLE's return per label against the same agent on the true reward.

Usage::

    python benchmarks/feedback_efficiency.py [--envs HalfCheetah-v5 Hopper-v5 Walker2d-v5]
        [--methods true_reward pebble_targeted] [--teachers oracle mistake] [--queries 500]
        [--seeds 0 1 2 3 4] [--steps 100000] [--workers 2] [--address RAY_ADDRESS]
        [--out-dir benchmarks/runs/feedback_efficiency] [--records FILE]
        [--dry-run] [--aggregate-only] [--aggregate-all] [--no-ray] [--no-write]

The defaults are the headline grid of issue 11 (item 4): HalfCheetah-v5, Hopper-v5 and
Walker2d-v5, 100k env steps, 5 seeds, PEBBLE with 500 queries from the ``oracle`` and from the
``mistake`` teacher, and the same agent on the true reward (``true_reward``) as the reference.
The headline's PEBBLE is ``pebble_targeted_front`` (:data:`HEADLINE_METHOD`: PEBBLE with targeted
feedback asked in the first half of the run, the best lever at this budget), run beside
``pebble_targeted`` (:data:`EARLIER_HEADLINE`, the same with the rounds spread over the whole
run); plain ``pebble`` is a selection away.
The secondary grid (HalfCheetah-v5, 3 seeds; budgets 100 and 1000 with the oracle, 500 with the
noisy teacher; ``sac_true`` as an outside reference) is a selection of the same script, see
``benchmarks/README.md``.

Every combination env x method x teacher x query budget x seed selected by the flags is one run
(its key: ``env/method/teacher/qQUERIES/tSTEPS/sSEED``). Methods:

* ``pebble``: :func:`rewardlab.algorithms.train` with the teacher preset (``oracle``,
  ``mistake``, ``noisy``; :data:`rewardlab.config.TEACHER_PRESETS`) and the budget spread over
  :data:`ROUNDS` feedback rounds (:func:`run_overrides`), with PEBBLE's 3 x 256 reward model
  (:data:`GRID_REWARD_MODEL`: the grids were measured with it). Ablations: ``pebble_uniform``,
  ``pebble_entropy`` (query selection), ``pebble_no_pretrain`` (no unsupervised pre-training),
  ``pebble_no_reset`` (no critic reset after pre-training), ``pebble_rm_2x64`` (a 2 x 64
  reward model instead of PEBBLE's 3 x 256), ``pebble_rm_3x128`` (3 x 128),
  ``pebble_rm_3x128_b32`` (3 x 128 fit in minibatches of 32: RewardLab's default for PEBBLE),
  ``pebble_rm_bf16`` (the reward model's fit and ranking in bfloat16), ``pebble_tanh``
  (PEBBLE's tanh on the reward model's output), ``pebble_targeted`` (each round's queries cut
  from the steps since the previous round only), ``pebble_surf`` (SURF's semi-supervised labels
  and temporal cropping), ``pebble_targeted_front`` (targeted, all rounds in the first half of
  the run), ``pebble_targeted_reed`` (targeted, REED's dynamics-aware reward model).
* ``true_reward``: the same agent PEBBLE uses (the configured ``pebble.backbone`` with the
  ``pebble.sac`` settings) trained on the true reward from step 0, with the same derived seeds
  and evaluation protocol (:func:`rewardlab.algorithms.reference.train_true_reward`, through
  ``benchmarks/core.py``'s runner). It is the normaliser S of the scores.
* ``sac_true``: Stable-Baselines3 SAC on the true reward with PEBBLE's SAC hyperparameters, an
  outside reference (scored against ``true_reward`` like every other method). On
  HalfCheetah-v5 at 100k steps the three SB3 SAC runs of ``python benchmarks/core.py --part
  halfcheetah`` (``benchmarks/results/core.json``, evaluated every 10k steps) stand in for
  runs of this script where it has none, as the issue allows (:func:`core_sac_records`).

The reference methods take no teacher or budget, so they run once per env, step budget and seed.

Execution: the unfinished runs are Ray Tune trials (:func:`rewardlab.algorithms.sweep.run_on_ray`;
issue 11, item 7), ``--workers`` at a time (default 2) with one CPU each, on a local Ray or on
the cluster at ``--address``. A trial (:func:`run_trial`) pins its process to a core no other
trial holds (``core.claim_core``), uses one torch/BLAS/XLA thread, trains the run in
``<out-dir>/runs/<key>/`` from scratch and appends its records to the record file itself; a
failed run is reported and does not stop the others. ``--no-ray`` runs them one after another in
this process instead; ``--dry-run`` lists the selected runs and their config overrides.

Each finished run appends its evaluations (``kind: "eval"``: env step, gold return) and then one
``kind: "done"`` record (with the run's ``backbone`` and ``settings``) to the section's record
file ``benchmarks/results/<section>_runs.jsonl`` (``--records`` to choose another) in one
append, all stamped with a per-attempt id. The record file is small and kept in git, so the grid
can be run in pieces on different machines and sessions; the run directories (``<out-dir>/runs/``,
large) are not. The harness is resumable: a run with a ``done`` record is skipped;
an unfinished one is started again from scratch (its run directory is deleted; records of an
attempt without ``done`` are ignored by the aggregation). Run keys name the grid cell, not every
setting, so each ``done`` record also carries the run's ``settings`` (its resolved config; for
the reference methods only the sections they read, ``core.UNUSED_BY_REFERENCE`` left out): a
finished run whose settings differ from what its key would run now (say, after a default
changed) is *stale*: it is run again and left out of the aggregation until then (``--dry-run``
names the differing settings). ``feedback_efficiency_runs_sb3_sac.jsonl`` holds the earlier
runs, made with the SB3 SAC backbone (20k steps, normalised by ``sac_true``).

Normalised score of a run (the issue's) = (G - R) / (S - R): G its gold (true) return at the
final evaluation, S the mean gold return of the ``true_reward`` runs of the same env and step
budget at the same env step, R a uniformly random policy's return on the same env (recorded once
per env in the JSONL as a ``kind: "reference"`` record); 0 = random, 1 = the same agent on the
true reward. Per (env, method, teacher, budget, steps) the scores over seeds are aggregated with
``rliable``: interquartile mean and a 95% stratified-bootstrap confidence interval (Agarwal et
al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice"). Also reported:
the plain ratio G / S (undefined while S <= 0) and a learning-curve score (normalised area under
the curve, :func:`curve_scores`).

Hopper-v5 and Walker2d-v5 are run with ``terminate_when_unhealthy=False`` for every method:
episodes then always last the time limit, so episode ends carry no reward information the
preference learner could exploit (variable horizons leak the true reward, see imitation's
refusal of them), and the references are evaluated on the same env, so the scores compare like
with like.

Results go to ``benchmarks/results/feedback_efficiency.json`` and to the
``feedback_efficiency`` section of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import math
import os
import shlex
import sys
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py: runners, thread env, machine info, markdown)

REPO = core.REPO
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_OUT = REPO / "benchmarks" / "runs" / "feedback_efficiency"

ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
#: Ablations of PEBBLE (issue 4, item 7): config overrides on top of the ``pebble`` run. The
#: ``pebble`` method itself uses disagreement-based query selection and pre-training.
PEBBLE_VARIANTS: dict[str, tuple[str, ...]] = {
    "pebble": (),
    "pebble_uniform": ("feedback.method=uniform",),
    "pebble_entropy": ("feedback.method=entropy",),
    "pebble_no_pretrain": ("pebble.unsupervised_steps=0",),
    "pebble_no_reset": ("pebble.reset_critic=false",),
    # a smaller reward model (2 x 64) than PEBBLE's 3 x 256, a quarter of the fit time
    "pebble_rm_2x64": ("reward_model.hidden_sizes=[64, 64]",),
    # issue 11, item 6 (overhead): half the widths (about a quarter of the fit's arithmetic)
    "pebble_rm_3x128": ("reward_model.hidden_sizes=[128, 128, 128]",),
    # issue 11, item 6: the 3 x 128 model fit in minibatches of 32 instead of PEBBLE's 128 (4x
    # the gradient steps per pass over the labels, so the 97% accuracy stop comes in about
    # half the passes)
    "pebble_rm_3x128_b32": ("reward_model.hidden_sizes=[128, 128, 128]",
                            "reward_model.batch_size=32"),
    # issue 11, item 6: bfloat16 autocast in the reward model's fit and query ranking (fast
    # only on CPUs with native bfloat16, emulated and slower elsewhere)
    "pebble_rm_bf16": ("reward_model.precision=bfloat16",),
    # PEBBLE's tanh on the reward model's output (RewardLab's default has none)
    "pebble_tanh": ("reward_model.output_activation=tanh",),
    # queries cut from the steps since the previous round only (issue 11: the policy lags a
    # proxy that is faithful on what it did; ask about what it does now)
    "pebble_targeted": ("mitigation.targeted_feedback=true",),
    # SURF (Park et al. 2022): 10 unlabelled pairs per label, pseudo-labelled at tau = 0.99,
    # mu = 4, temporal cropping of up to 5 steps at each end (SURF's published settings)
    "pebble_surf": ("reward_model.unlabeled_ratio=10", "reward_model.crop_steps=5"),
    # targeted queries with the budget spent in the first half of the run (ROUND_SPAN): PEBBLE's
    # own schedules ask every query early (Lee et al. 2021, App. B: DMC Walker, 10 rounds every
    # 20k steps of a 500k-step run, i.e. the first 40%), so the agent trains longest on the
    # final reward; issue 11's runs lagged most in their first 25k steps
    "pebble_targeted_front": ("mitigation.targeted_feedback=true",
                              "mitigation.targeted_spread=false"),
    # targeted queries with REED's dynamics-aware reward (Metcalf et al. 2023): separate state
    # and action encoders trained on the run's transitions to predict the next state's
    # embedding before every preference fit (reward_model.architecture=reed)
    "pebble_targeted_reed": ("mitigation.targeted_feedback=true",
                             "reward_model.architecture=reed"),
    # targeted queries with Christiano et al.'s (2017, Sec. 2.2.3) lapse model in the reward
    # fit: P = lapse / 2 + (1 - lapse) * sigmoid(R_left - R_right), lapse 0.2, the rate at which
    # the mistake teacher's 10% flips answer at random (reward_model.lapse_rate); the fit stops
    # at 90% training accuracy, as 10% flipped labels leave 97% out of reach
    "pebble_targeted_lapse": ("mitigation.targeted_feedback=true",
                              "reward_model.lapse_rate=0.2", "reward_model.target_accuracy=0.9"),
}
#: Share of the steps after pre-training that a variant's :data:`ROUNDS` rounds are spread
#: over (1.0, the whole rest of the run, unless listed).
ROUND_SPAN: dict[str, float] = {"pebble_targeted_front": 0.5}
#: The reward model every PEBBLE variant starts from: PEBBLE's 3 x 256 fit in minibatches of
#: 128 (Lee et al. 2021, App. B), with which the grids and ablations of this harness were
#: measured (RewardLab's default for algorithm=pebble until it became 3 x 128 fit in
#: minibatches of 32, ``rewardlab.config.RewardModelConfig``); pinned so their records stay
#: current. Each pin is left out where a variant sets the same key (the ``pebble_rm_*``
#: variants).
GRID_REWARD_MODEL = ("reward_model.hidden_sizes=[256, 256, 256]", "reward_model.batch_size=128")
#: The variant whose reward model is RewardLab's default for PEBBLE (the overhead headline).
DEFAULT_PEBBLE_VARIANT = "pebble_rm_3x128_b32"
#: The normaliser: the same agent as PEBBLE's on the true reward.
REFERENCE = "true_reward"
#: Methods without teacher or budget, and the ``core.Job`` method that runs each.
REFERENCE_METHODS = {"true_reward": "true_reward", "sac_true": "sac_true_reward"}
METHODS = (*PEBBLE_VARIANTS, *REFERENCE_METHODS)
#: Where a selection's table goes: ``--section`` -> (BENCHMARKS.md title, results JSON).
SECTIONS = {
    "feedback_efficiency": ("Feedback efficiency", "feedback_efficiency.json"),
    "ablations": ("PEBBLE ablations: query selection, pre-training, critic reset, reward model",
                  "ablations.json"),
    # issue 11, item 2: single-seed probes on the tasks where PEBBLE falls short, aggregated
    # from the headline grid's records (``--records benchmarks/results/feedback_efficiency_runs
    # .jsonl``) so each variant sits beside the same-seed pebble and true-reward runs
    "levers": ("PEBBLE levers on HalfCheetah-v5, Hopper-v5 and Walker2d-v5: more labels, "
               "targeted queries, SURF", "levers.json"),
}
TEACHERS = ("oracle", "mistake", "noisy")
#: Envs whose episodes end early when unhealthy; run without that termination (see module doc).
UNHEALTHY_TERMINATION = ("Hopper-v5", "Walker2d-v5")
#: Feedback rounds the query budget is spread over.
ROUNDS = 10
EVAL_POINTS = 4
#: The issue's headline grid (the CLI defaults).
#: PEBBLE as the headline grid runs it (why: :data:`HEADLINE_NOTE`).
HEADLINE_METHOD = "pebble_targeted_front"
#: The headline's PEBBLE until 2026-12-05, kept in the grid beside it (its cells are complete).
EARLIER_HEADLINE = "pebble_targeted"
FULL_METHODS = ("true_reward", EARLIER_HEADLINE, HEADLINE_METHOD)
FULL_TEACHERS = ("oracle", "mistake")
FULL_STEPS, FULL_QUERIES, FULL_SEEDS = 100_000, (500,), (0, 1, 2, 3, 4)
#: The issue's targets: normalised IQM of PEBBLE at 500 queries, per teacher, on each task
#: (shown for the plain method and for the headline's).
TARGETS = {(m, t, 500): target for m in ("pebble", EARLIER_HEADLINE, HEADLINE_METHOD)
           for t, target in (("oracle", 0.90), ("mistake", 0.75))}
DEFAULT_WORKERS = 2
BOOTSTRAP_REPS = 20_000
BOOTSTRAP_SEED = 0
RANDOM_EPISODES, RANDOM_SEED = 10, 0


# ----------------------------------------------------------------------------- runs

def run_key(env: str, method: str, teacher: str | None, queries: int, steps: int,
            seed: int) -> str:
    """The run's id: ``env/method/teacher/qQUERIES/tSTEPS/sSEED`` (teacher ``-`` and q0 for the
    reference methods, :data:`REFERENCE_METHODS`)."""
    if method in REFERENCE_METHODS:
        teacher, queries = None, 0
    return f"{env}/{method}/{teacher or '-'}/q{queries}/t{steps}/s{seed}"


def parse_key(key: str) -> dict[str, Any]:
    """Inverse of :func:`run_key`."""
    env, method, teacher, q, t, s = key.split("/")
    return {"env": env, "method": method, "teacher": None if teacher == "-" else teacher,
            "queries": int(q[1:]), "steps": int(t[1:]), "seed": int(s[1:])}


def run_overrides(env: str, method: str, teacher: str | None, queries: int, steps: int,
                  seed: int) -> list[str]:
    """Config overrides of one run.

    Schedule (PEBBLE's ratios, Lee et al. 2021, App. B, scaled to ``steps``): unsupervised
    pre-training for 5% of the steps (at least 1000), the first feedback round when it ends, then
    :data:`ROUNDS` rounds of ``ceil(queries / ROUNDS)`` queries evenly spaced over the rest
    (over its first half for the variants of :data:`ROUND_SPAN`, :func:`round_every`);
    :data:`EVAL_POINTS` evaluations of 5 episodes; one checkpoint, at the end; PEBBLE's 3 x 256
    reward model fit in minibatches of 128 (:data:`GRID_REWARD_MODEL`) where the variant sets
    neither. The reference
    methods use the env, steps, seed and evaluation settings only (``sac_true`` also gets
    ``pebble.backbone=sac`` from ``core``'s runner).

    Raises:
        ValueError: if the steps cannot hold the schedule or the budget is below one query.
    """
    unsup = max(1000, steps // 20)
    if steps < 2 * unsup:
        raise ValueError(f"--steps {steps}: too few for the schedule; use at least {2 * unsup}")
    if method not in METHODS:
        raise ValueError(f"--methods: unknown method {method!r}; choose from {METHODS}")
    out = [f"env.id={env}", f"total_steps={steps}", f"seed={seed}",
           f"eval.every={steps // EVAL_POINTS}", "eval.episodes=5", f"checkpoint_every={steps}",
           f"log_capacity={steps}", *core.BASE]
    if env in UNHEALTHY_TERMINATION:
        out.append("env.kwargs.terminate_when_unhealthy=false")
    if method in PEBBLE_VARIANTS:
        if queries < 1:
            raise ValueError(f"--queries {queries}: pebble needs a budget of at least 1 query")
        per_round = math.ceil(queries / ROUNDS)
        out += [f"feedback.total_budget={queries}", f"feedback.queries_per_round={per_round}",
                f"feedback.round_every={round_every(method, steps, unsup)}",
                f"feedback.first_round_at={unsup}", "feedback.segment_len=50",
                f"pebble.unsupervised_steps={unsup}", f"teacher.preset={teacher}"]
        variant = PEBBLE_VARIANTS[method]
        out += [pin for pin in GRID_REWARD_MODEL  # a variant that sets a pinned key keeps its own
                if not any(o.startswith(pin.split("=", 1)[0] + "=") for o in variant)]
        out += variant  # a variant's overrides come last and win
    return out


def round_every(method: str, steps: int, unsup: int) -> int:
    """Env steps between the feedback rounds of ``method``'s runs: :data:`ROUNDS` rounds spread
    evenly over :data:`ROUND_SPAN` of the ``steps - unsup`` steps after pre-training."""
    return max(1, int((steps - unsup) * ROUND_SPAN.get(method, 1.0)) // ROUNDS)


def key_overrides(key: str) -> list[str]:
    """:func:`run_overrides` of a run key."""
    k = parse_key(key)
    return run_overrides(k["env"], k["method"], k["teacher"], k["queries"], k["steps"],
                         k["seed"])


def key_config(key: str) -> Any:
    """The :class:`~rewardlab.config.TrainConfig` the run of ``key`` trains now (``sac_true``
    with ``pebble.backbone=sac``, as ``core``'s runner sets it)."""
    from rewardlab.config import load_config

    extra = ["pebble.backbone=sac"] if parse_key(key)["method"] == "sac_true" else []
    return load_config(None, [*key_overrides(key), *extra])


#: Config sections no control run reads (the language-model track's ``lm``): left out of the
#: recorded and planned settings, so a change to their defaults never makes a run stale (runs
#: made while ``lm`` was in the config recorded it; :func:`settings_drift` drops it from them).
NOT_READ_BY_CONTROL_RUNS = ("lm",)


def run_settings(config: Any, method: str) -> dict[str, Any]:
    """The settings a run of ``method`` reads, as JSON: the whole config of a PEBBLE variant;
    for the reference methods every section but ``core.UNUSED_BY_REFERENCE`` (so a change to,
    e.g., the reward model does not make the references stale)."""
    drop = set(NOT_READ_BY_CONTROL_RUNS)
    if method not in PEBBLE_VARIANTS:
        drop |= set(core.UNUSED_BY_REFERENCE)
    return json.loads(json.dumps(config.model_dump(mode="json", exclude=drop)))


def planned_settings(key: str) -> dict[str, Any]:
    """:func:`run_settings` of the run ``key`` would train now."""
    return run_settings(key_config(key), parse_key(key)["method"])


def planned_backbone(key: str) -> str:
    """The agent the run of ``key`` would train now: ``sac`` (SB3 SAC) for ``sac_true``, else
    the configured ``pebble.backbone``."""
    return key_config(key).pebble.backbone


def recorded_backbone(done: dict[str, Any]) -> str:
    """The backbone of a ``done`` record; records written before the field existed were all
    made with the SB3 SAC backbone."""
    return done.get("backbone") or "sac"


def setting_differences(found: Any, planned: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings where ``found`` differs from ``planned`` (nested dicts)."""
    if isinstance(found, dict) and isinstance(planned, dict):
        return [d for name in sorted(set(found) | set(planned))
                for d in setting_differences(found.get(name, "<absent>"),
                                             planned.get(name, "<absent>"), f"{prefix}{name}.")]
    return [] if found == planned else [prefix.rstrip(".")]


def with_later_keys(found: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
    """``found`` (a run's recorded settings) read as :func:`rewardlab.config.load_run_config`
    reads a saved config: the keys of :data:`rewardlab.config.SAVED_RUN_DEFAULTS` it predates
    take the value older runs used (:func:`rewardlab.config.with_saved_run_defaults`), every
    other key it predates today's value from ``planned`` (so adding a config section does not
    make every finished run stale, while a default that changed behaviour does)."""
    from rewardlab.config import with_saved_run_defaults

    def merge(have: Any, plan: Any) -> Any:
        if not (isinstance(have, dict) and isinstance(plan, dict)):
            return have
        return {**plan, **{k: merge(v, plan.get(k)) for k, v in have.items()}}

    return merge(with_saved_run_defaults(found), planned)


#: ``run key -> the settings that key would run now`` (:func:`planned_settings`; the offline
#: harness passes its own).
Planner = Callable[[str], dict[str, Any]]


def settings_drift(done: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """Dotted names of the settings where a ``done`` record differs from ``plan`` (keys the
    record predates filled by :func:`with_later_keys`; keys ``plan`` does not list, e.g. the
    ``lm`` section of :data:`NOT_READ_BY_CONTROL_RUNS` recorded by older control runs, left
    out by :func:`read_now`); ``["settings"]`` for a record written before settings were
    recorded."""
    found = done.get("settings")
    if found is None:
        return ["settings"]
    return setting_differences(read_now(with_later_keys(found, plan), plan), plan)


def read_now(found: Any, plan: Any) -> Any:
    """``found`` without the keys, at any depth, that ``plan`` does not list: settings the
    harness says its runs do not read (a section such as ``lm`` for a control run, or the
    offline runs' env-step schedule), so a change to one of them makes no run stale."""
    if not (isinstance(found, dict) and isinstance(plan, dict)):
        return found
    return {k: read_now(v, plan[k]) for k, v in found.items() if k in plan}


def stale_runs(runs: dict[str, dict[str, Any]], planned: Planner | None = None,
               ) -> dict[str, list[str]]:
    """``{run key: differing settings}`` of the finished ``runs`` (:func:`completed_runs`) whose
    ``done`` record's settings are not what the key would run now (``planned``, default
    :func:`planned_settings`)."""
    plan_of = planned or planned_settings
    drift = {key: settings_drift(run["done"], plan_of(key)) for key, run in runs.items()}
    return {key: diff for key, diff in drift.items() if diff}


def current_runs(records: list[dict[str, Any]], planned: Planner | None = None,
                 ) -> dict[str, dict[str, Any]]:
    """:func:`completed_runs` counting only attempts made with the settings each key runs now
    (``planned``, default :func:`planned_settings`): a key's latest such attempt, even if a
    later attempt with other settings exists (e.g. a default was tried and reverted)."""
    plan_of = functools.cache(planned or planned_settings)
    return completed_runs(records, accept=lambda done: not settings_drift(
        done, plan_of(done["run"])))


def current_records(records: list[dict[str, Any]], planned: Planner | None = None,
                    ) -> list[dict[str, Any]]:
    """``records`` without the eval/done records of attempts that are not current
    (:func:`current_runs`); records of no run (e.g. ``reference``) are kept."""
    keep = {(k, run["done"]["attempt"]) for k, run in current_runs(records, planned).items()}
    return [r for r in records if "run" not in r or (r["run"], r.get("attempt")) in keep]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a line cut short by a crash is skipped)."""
    return core._read_jsonl(path)


def completed_runs(
    records: list[dict[str, Any]], accept: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{run key: {"done": done record, "evals": [eval records, by step]}}`` of finished runs.

    Only the evaluations of the attempt that wrote the ``done`` record count (the last such
    attempt if a run was finished twice, among those ``accept`` takes); one record per step. A
    ``done`` record of an interrupted run (``"interrupted": true``, written before the
    harness refused them: :func:`raise_if_interrupted`) does not count.
    """
    done = {r["run"]: r for r in records
            if r.get("kind") == "done" and not r.get("interrupted")
            and (accept is None or accept(r))}
    evals: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r.get("kind") == "eval" and r["run"] in done and r["attempt"] == done[r["run"]][
                "attempt"]:
            evals[r["run"]][int(r["step"])] = r
    return {k: {"done": d, "evals": [evals[k][s] for s in sorted(evals[k])]}
            for k, d in done.items()}


append_records = core.append_records  # one writer for every harness's record file


class RunInterrupted(Exception):
    """A run stopped early on SIGINT/SIGTERM (:mod:`rewardlab.algorithms.interrupt`): the
    harness writes no record for it and stops instead of going on to the next run."""


#: The ``metrics.jsonl`` keys a ``done`` record keeps (their last logged value).
REWARD_METRIC_PREFIX = "reward_model/"


def reward_model_metrics(metrics_file: Path) -> dict[str, float | None]:
    """The last logged value of every ``reward_model/*`` key in a run's ``metrics.jsonl``
    (held-out and fresh-query accuracy and ECE, accuracy on random pairs of the run's
    experience, epochs of the last fit...); ``{}`` if the file is missing or the run fit no
    reward model."""
    last: dict[str, float | None] = {}
    for row in read_records(metrics_file):
        for name, value in row.items():
            if name.startswith(REWARD_METRIC_PREFIX) and (value is None
                                                        or isinstance(value, (int, float))):
                last[name] = value
    return last


def raise_if_interrupted(run_dir: Path) -> None:
    """Refuse a run that stopped early (its ``summary.json`` says ``interrupted``), so no
    ``done`` record is written for it and the harness runs it again next time.

    Raises:
        RunInterrupted: if the run in ``run_dir`` was interrupted.
    """
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("interrupted"):
        raise RunInterrupted(f"{run_dir.name} was interrupted before its last step; no record "
                             "written, it runs again next time")


def execute(key: str, out_dir: Path) -> list[dict[str, Any]]:
    """Train one run in ``out_dir/runs/<key>`` (from scratch) and return its records.

    Raises:
        RunInterrupted: if the run was interrupted (:func:`raise_if_interrupted`).
    """
    import torch

    from rewardlab.config import load_config

    torch.set_num_threads(1)
    k = parse_key(key)
    overrides = key_overrides(key)
    run_dir = out_dir / "runs" / key.replace("/", "_")
    method = "pebble" if k["method"] in PEBBLE_VARIANTS else REFERENCE_METHODS[k["method"]]
    job = core.Job(key, method, k["seed"], tuple(overrides), str(run_dir))
    core.run_job(job)  # deletes an unfinished earlier attempt first
    raise_if_interrupted(run_dir)
    row = core.collect(job)
    config = load_config(run_dir / "config.yaml")
    attempt = uuid.uuid4().hex
    base = {"run": key, "attempt": attempt, **k}
    records = [{"kind": "eval", **base, "step": int(step), "gold_return": gold}
               for step, gold in row["gold_curve"]]
    done = {"kind": "done", **base, "final_step": row["steps"],
            "backbone": config.pebble.backbone,
            "settings": run_settings(config, k["method"]),
            "wall_time_s": row["wall_time_s"], "queries_asked": row["queries"],
            "overrides": overrides, "run_dir": row["run_dir"],
            "finished_utc": row["finished_utc"], "machine": row["machine"]}
    if k["method"] in PEBBLE_VARIANTS:
        summary = json.loads((run_dir / "summary.json").read_text())
        done["feedback_seconds"] = summary["feedback"]["seconds"]
        done["reward_model"] = reward_model_metrics(run_dir / "metrics.jsonl")
    return [*records, done]


# ----------------------------------------------------------------------------- trials

def run_trial(
    params: dict[str, Any],
    run: Callable[[str, Path], list[dict[str, Any]]] | None = None,
) -> dict[str, Any] | None:
    """One run as a trial: ``params`` = ``{"key", "out_dir", "records"}`` (strings).

    Pins the process to a free core (``core.claim_core``), one torch thread, works in
    ``out_dir`` (MuJoCo writes ``MUJOCO_LOG.TXT`` to the working directory), runs ``run``
    (default :func:`execute`; the offline harness passes its own) and appends the records to
    ``records`` itself. A failure is printed, not raised, so it never stops the other trials.

    Returns:
        The run's ``done`` record, or None if it failed.

    Raises:
        RunInterrupted: if the run was stopped by SIGINT/SIGTERM (nothing appended), so
            :func:`run_in_process` stops there.
    """
    key, out_dir, jsonl = params["key"], Path(params["out_dir"]), Path(params["records"])
    cpu = core.claim_core()
    cwd = os.getcwd()
    t0 = time.perf_counter()
    print(f"{core.utc_now()}: start {key} (pid {os.getpid()}, "
          f"{'core ' + str(cpu) if cpu is not None else 'not pinned'})", flush=True)
    try:
        import torch

        torch.set_num_threads(1)
        out_dir.mkdir(parents=True, exist_ok=True)
        os.chdir(out_dir)
        records = (run or execute)(key, out_dir)
        append_records(jsonl, records)
    except RunInterrupted as err:
        print(f"{core.utc_now()}: stopped: {err}", flush=True)
        raise
    except Exception:
        print(f"{core.utc_now()}: FAILED {key}:\n{traceback.format_exc()}", flush=True)
        return None
    finally:
        os.chdir(cwd)
    golds = [r["gold_return"] for r in records if r["kind"] == "eval"]
    print(f"{core.utc_now()}: done {key} in {time.perf_counter() - t0:.0f} s, final gold "
          f"{_f(golds[-1] if golds else None, 1)}", flush=True)
    return records[-1]


def ray_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable: :func:`run_trial` of ``config["params"]``."""
    run_trial(config["params"])


def run_in_process(
    todo: list[str], out_dir: Path, jsonl: Path,
    trial: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> None:
    """Run the keys of ``todo`` one after another in this process (``--no-ray``) with
    ``trial`` (:func:`run_trial`, or the offline harness's); a SIGINT/SIGTERM ends the loop
    after the run it interrupted (:class:`RunInterrupted`), the finished runs stay recorded."""
    for key in todo:
        try:
            trial({"key": key, "out_dir": str(out_dir), "records": str(jsonl)})
        except RunInterrupted:
            return


def trial_env_vars() -> dict[str, str]:
    """Environment of the Ray workers: this directory on ``PYTHONPATH`` before the caller's (so
    they can ``import feedback_efficiency`` and ``core``; a local Ray also hands them the
    driver's ``sys.path``), one BLAS/OpenMP/XLA thread and JAX on the CPU (``core.THREAD_ENV``).
    """
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**core.THREAD_ENV, "PYTHONPATH": path}


def run_on_ray(todo: list[str], out_dir: Path, jsonl: Path, workers: int, address: str | None,
               name: str, trainable: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Every run of ``todo`` as a Ray Tune trial of ``trainable`` (default :func:`ray_trial`;
    a module-level function of a benchmark script, pickled by reference), ``workers`` at a time.

    Raises:
        RewardLabError: if a trial crashed outside :func:`run_trial`'s own error handling (e.g.
            its worker died), or Ray is missing; ConfigError if ``address`` is unreachable.
    """
    from rewardlab.algorithms.sweep import run_on_ray as ray_run

    # The trainable is pickled by reference (module and name), so the workers import it.
    if trainable is None:
        trainable = importlib.import_module("feedback_efficiency").ray_trial
    params = [{"key": k, "out_dir": str(out_dir), "records": str(jsonl)} for k in todo]
    ray_run(trainable, params, name, out_dir / "ray", max_concurrent=workers,
            cpus_per_trial=1, address=address, env_vars=trial_env_vars(), log_to_driver=True)


# ----------------------------------------------------------------------------- aggregate

def core_sac_records(results: Path | None = None) -> list[dict[str, Any]]:
    """The ``sac_true`` runs of HalfCheetah-v5 at :data:`FULL_STEPS` steps that ``python
    benchmarks/core.py --part halfcheetah`` made (SB3 SAC on the true reward with PEBBLE's SAC
    hyperparameters, same derived seeds and evaluation protocol, 5 episodes every 10k steps),
    as this script's eval and done records, from ``parts.halfcheetah.runs`` of ``results``
    (default ``benchmarks/results/core.json``). Each done record names its ``source``; they
    have no ``settings``, so :func:`current_records` would drop them: the caller adds them
    after that filter, for the seeds this script has not run itself.

    Returns:
        The records (empty when the file or the part is absent).
    """
    path = core.RESULTS_JSON if results is None else results
    part = (json.loads(path.read_text()).get("parts", {}).get("halfcheetah")
            if path.exists() else None) or {}
    source = (f"benchmarks/results/core.json parts.halfcheetah (`{part.get('command')}`, "
              f"written {part.get('written_utc')})")
    out: list[dict[str, Any]] = []
    for row in part.get("runs", []):
        if row.get("method") != "sac_true_reward" or row.get("steps") != FULL_STEPS:
            continue
        key = run_key("HalfCheetah-v5", "sac_true", None, 0, FULL_STEPS, int(row["seed"]))
        base = {"run": key, "attempt": f"core.json/{part.get('written_utc')}", **parse_key(key)}
        out += [{"kind": "eval", **base, "step": int(step), "gold_return": float(gold)}
                for step, gold in row.get("gold_curve", []) if gold is not None]
        out.append({"kind": "done", **base, "backbone": "sac", "source": source,
                    "wall_time_s": row.get("wall_time_s"), "machine": row.get("machine")})
    return out


def reference_returns_by_step(
    runs: dict[str, dict[str, Any]]
) -> dict[tuple[str, int, int], float]:
    """S: mean gold return of the ``true_reward`` runs per ``(env, steps budget, eval step)``."""
    acc: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for key, run in runs.items():
        k = parse_key(key)
        if k["method"] == REFERENCE:
            for e in run["evals"]:
                acc[(k["env"], k["steps"], int(e["step"]))].append(float(e["gold_return"]))
    return {ref: sum(v) / len(v) for ref, v in acc.items()}


def random_returns(records: list[dict[str, Any]]) -> dict[str, float]:
    """R: random-policy gold return per env from the ``kind: "reference"`` records (last wins)."""
    return {r["env"]: float(r["gold_return"]) for r in records if r.get("kind") == "reference"}


def _group(k: dict[str, Any]) -> tuple:
    return (k["env"], k["method"], k["teacher"], k["queries"], k["steps"])


def normalized_scores(
    runs: dict[str, dict[str, Any]], random: dict[str, float] | None = None
) -> dict[str, dict[tuple, dict[int, float]]]:
    """Final-evaluation scores per group and seed, two ways.

    Args:
        runs: :func:`completed_runs`.
        random: random-policy gold return R per env (:func:`random_returns`).

    Returns:
        ``{"normalized": {...}, "ratio": {...}}``, each ``{(env, method, teacher, queries,
        steps): {seed: score}}`` with G the run's gold return at its final evaluation step and S
        the mean gold return of the ``true_reward`` runs (same env and step budget) at that step:

        * ``normalized`` (the issue's score): ``(G - R) / (S - R)``, 0 = random, 1 = the same
          agent on the true reward; left out where R is unknown or ``S <= R``;
        * ``ratio``: ``G / S``; left out where ``S <= 0`` (a ratio to a non-positive return has
          no meaning; e.g. HalfCheetah before the agent learns to run).

        Groups without a ``true_reward`` reference at that step are left out of both.
    """
    ref = reference_returns_by_step(runs)
    random = random or {}
    out: dict[str, dict[tuple, dict[int, float]]] = {"normalized": defaultdict(dict),
                                                      "ratio": defaultdict(dict)}
    for key, run in runs.items():
        if not run["evals"]:
            continue
        k = parse_key(key)
        last = run["evals"][-1]
        s = ref.get((k["env"], k["steps"], int(last["step"])))
        if s is None:
            continue
        gold = float(last["gold_return"])
        rnd = random.get(k["env"])
        if rnd is not None and s > rnd:
            out["normalized"][_group(k)][k["seed"]] = (gold - rnd) / (s - rnd)
        if s > 0:
            out["ratio"][_group(k)][k["seed"]] = gold / s
    return {name: dict(groups) for name, groups in out.items()}


def curve_scores(
    runs: dict[str, dict[str, Any]], random: dict[str, float]
) -> dict[tuple, dict[int, float]]:
    """Learning-curve (sample-efficiency) scores per group and seed.

    The score of a run is ``(mean_t G_t - R) / (mean_t S_t - R)`` over its evaluation steps t:
    its gold return G_t and the mean ``true_reward`` gold return S_t at each step, R the env's
    random-policy return; the normalised area under the learning curve (1 = the same agent on
    the true reward all along, 0 = random). It tells apart variants that end at the same return
    but get there at different speeds. Left out where a step has no reference, R is unknown or
    ``mean_t S_t <= R``.

    Returns:
        ``{(env, method, teacher, queries, steps): {seed: score}}``.
    """
    ref = reference_returns_by_step(runs)
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for key, run in runs.items():
        k = parse_key(key)
        rnd = random.get(k["env"])
        s = [ref.get((k["env"], k["steps"], int(e["step"]))) for e in run["evals"]]
        if not run["evals"] or rnd is None or any(v is None for v in s):
            continue
        gold = sum(float(e["gold_return"]) for e in run["evals"]) / len(run["evals"])
        s_mean = sum(s) / len(s)
        if s_mean > rnd:
            out[_group(k)][k["seed"]] = (gold - rnd) / (s_mean - rnd)
    return dict(out)


def iqm_ci(scores: list[float], reps: int = BOOTSTRAP_REPS,
           seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """IQM and 95% stratified-bootstrap CI of one group's per-seed scores, with ``rliable``.

    Args:
        scores: one normalised score per seed (one task, so the strata are the seeds).

    Returns:
        ``(iqm, ci_low, ci_high)``.
    """
    import numpy as np
    from rliable import library as rly
    from rliable import metrics

    arr = np.asarray(scores, dtype=np.float64).reshape(-1, 1)  # (runs, tasks=1)
    point, interval = rly.get_interval_estimates(
        {"x": arr}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
        random_state=np.random.RandomState(seed))
    return float(point["x"][0]), float(interval["x"][0][0]), float(interval["x"][1][0])


def aggregate(records: list[dict[str, Any]], reps: int = BOOTSTRAP_REPS) -> list[dict[str, Any]]:
    """The result rows: one per (env, method, teacher, queries, steps) with finished runs and a
    ``true_reward`` reference at their final evaluation step.

    Each row has the group (``env``, ``method``, ``teacher``, ``queries``, ``steps``), ``seeds``,
    the ``backbone`` of its runs, ``eval_step``, ``gold_return_per_seed``, ``reference_return``
    (S) and ``random_reference_return`` (R), and three IQMs with 95% CIs (None where a seed has
    no score): ``normalized_iqm``/``ci_low``/``ci_high`` the issue's (G - R) / (S - R);
    ``ratio_iqm``/``ratio_ci_low``/``ratio_ci_high`` the ratio G / S (:func:`normalized_scores`);
    ``curve_normalized_iqm``/``curve_ci_low``/``curve_ci_high`` the learning-curve score
    (:func:`curve_scores`). ``target``/``meets_target``: the issue's target where one applies
    (:data:`TARGETS`), else None.
    """
    runs = completed_runs(records)
    random = random_returns(records)
    scores = normalized_scores(runs, random)
    scores["curve"] = curve_scores(runs, random)
    ref = reference_returns_by_step(runs)
    seeds_of: dict[tuple, list[int]] = defaultdict(list)
    for key, run in runs.items():  # finished runs with a reference at their final step
        k = parse_key(key)
        if run["evals"] and (k["env"], k["steps"], int(run["evals"][-1]["step"])) in ref:
            seeds_of[_group(k)].append(k["seed"])
    rows = []
    for group in sorted(seeds_of, key=lambda g: tuple(map(str, g))):
        env, method, teacher, queries, steps = group
        seeds = sorted(seeds_of[group])
        finished = [runs[run_key(env, method, teacher, queries, steps, s)] for s in seeds]
        finals = [run["evals"][-1] for run in finished]
        backbones = sorted({recorded_backbone(run["done"]) for run in finished})
        row: dict[str, Any] = {
            "env": env, "method": method, "teacher": teacher, "queries": queries,
            "steps": steps, "seeds": seeds,
            "backbone": backbones[0] if len(backbones) == 1 else backbones,
            "eval_step": int(finals[0]["step"]),
            "gold_return_per_seed": [float(f["gold_return"]) for f in finals],
            "reference_return": ref[(env, steps, int(finals[0]["step"]))],
            "random_reference_return": random.get(env)}
        for kind, names in (
                ("normalized", ("normalized_iqm", "ci_low", "ci_high", "normalized_per_seed")),
                ("ratio", ("ratio_iqm", "ratio_ci_low", "ratio_ci_high", "ratio_per_seed")),
                ("curve", ("curve_normalized_iqm", "curve_ci_low", "curve_ci_high",
                           "curve_normalized_per_seed"))):
            by_seed = scores[kind].get(group)
            if by_seed and sorted(by_seed) == seeds:
                per_seed: list[float] | None = [by_seed[s] for s in seeds]
                iqm, lo, hi = iqm_ci(per_seed, reps=reps)
            else:
                iqm = lo = hi = per_seed = None
            row.update(dict(zip(names, (iqm, lo, hi, per_seed), strict=True)))
        sources = sorted({run["done"]["source"] for run in finished if "source" in run["done"]})
        if sources:
            row["source"] = "; ".join(sources)
        target = TARGETS.get((method, teacher, queries))
        row["target"] = target
        row["meets_target"] = (None if target is None or row["normalized_iqm"] is None
                               else row["normalized_iqm"] >= target)
        rows.append(row)
    return rows


def headline_complete(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` fill every cell of the issue's headline grid: on each of :data:`ENVS`,
    ``true_reward`` and :data:`HEADLINE_METHOD` with each of :data:`FULL_TEACHERS` at each of
    :data:`FULL_QUERIES`, :data:`FULL_STEPS` steps, every seed of :data:`FULL_SEEDS` scored."""
    have = {(r["env"], r["method"], r["teacher"], r["queries"]) for r in rows
            if r["steps"] == FULL_STEPS and r["normalized_per_seed"] is not None
            and set(r["seeds"]) >= set(FULL_SEEDS)}
    cells = [(env, REFERENCE, None, 0) for env in ENVS] + [
        (env, HEADLINE_METHOD, t, q) for env in ENVS for t in FULL_TEACHERS
        for q in FULL_QUERIES]
    return all(c in have for c in cells)


# ----------------------------------------------------------------------------- report

def runner_name(args: argparse.Namespace) -> str:
    """How this invocation of a grid harness made its runs, for :func:`grid_header`:
    ``"aggregated"`` (``--aggregate-only``: it ran none), ``"in_process"`` (``--no-ray``) or
    ``"ray"``."""
    return "aggregated" if args.aggregate_only else "in_process" if args.no_ray else "ray"


def grid_header(rec: dict[str, Any], title: str, script: str, aggregated: str | None = None,
                default_runner: str | None = None) -> list[str]:
    """The lines after the begin marker of a grid harness's BENCHMARKS.md section: title,
    command, date, machine and runner, and which runs were aggregated. Shared by this harness,
    ``offline.py`` and ``lm_overoptimization.py``.

    Args:
        rec: the aggregate record (``command``, ``written_utc``, ``machine``, ``runner``,
            ``workers``, ``runs_completed``, ``runs_selected``, ``jsonl``).
        title: the section title.
        script: the harness's file name, shown beside the title.
        aggregated: the "Runs aggregated" text (default: finished of selected, from the JSONL).
        default_runner: the ``runner`` assumed when the record has none.
    """
    if aggregated is None:
        aggregated = (f"{rec['runs_completed']} of the {rec['runs_selected']} selected runs, "
                      f"finished, from `{rec['jsonl']}`")
    runner = {"ray": f"runs as Ray Tune trials, {rec.get('workers', 1)} at a time",
              "aggregated": "runs made by earlier invocations of this harness (this command "
                            "aggregated their records and ran none)",
              }.get(rec.get("runner", default_runner) or "", "runs one at a time in one process")
    return [f"## {title} (`benchmarks/{script}`)", "",
            f"- Command: `{rec['command']}`",
            f"- Date (UTC): {rec['written_utc']}",
            f"- Machine: {rec['machine']['cpu']}, {rec['machine']['cpu_count']} logical CPUs, "
            f"torch {rec['machine']['torch']}; {runner}, each pinned to a core of its own, "
            "1 thread",
            f"- Runs aggregated: {aggregated}"]


def _verdict_score(iqm: float, target: float) -> str:
    """``iqm`` to two decimals; a score that misses ``target`` but rounds up to it gets up to
    two more (0.899 printed as 0.90 beside "misses 0.90" would read as a contradiction)."""
    for digits in (2, 3, 4):
        text = f"{iqm:.{digits}f}"
        if iqm >= target or float(text) < target:
            break
    return text


def render_section(rec: dict[str, Any]) -> str:
    sel = rec["selection"]
    section = rec.get("section", "feedback_efficiency")
    begin, end = markers(section)
    rows = rec["rows"]
    full = section != "feedback_efficiency" or headline_complete(rows)
    aggregated = (f"every finished run ({rec['runs_completed']}) of `{rec['jsonl']}`"
                  if rec.get("aggregate_all") else
                  f"{rec['runs_completed']} of the {rec['runs_selected']} selected runs, "
                  f"finished, from `{rec['jsonl']}`")
    lines = [begin, *grid_header(rec, SECTIONS[section][0], "feedback_efficiency.py",
                                 aggregated, default_runner="ray"),
             f"- Selection: envs {', '.join(sel['envs'])}; methods {', '.join(sel['methods'])}; "
             f"teachers {', '.join(sel['teachers'])}; query budgets "
             f"{', '.join(map(str, sel['queries']))}; seeds {', '.join(map(str, sel['seeds']))}; "
             f"{rec['steps']} env steps per run"]
    if not full:
        lines.append(
            f"- **Not the issue's full headline grid yet** ({', '.join(ENVS)} x {FULL_STEPS} "
            f"steps x {len(FULL_SEEDS)} seeds; `{HEADLINE_METHOD}` with "
            f"{', '.join(map(str, FULL_QUERIES))} queries from each of the teachers "
            f"{', '.join(FULL_TEACHERS)}, and `{REFERENCE}`): "
            "the grid is run in pieces; read these rows as the cells filled so far.")
    lines += ["",
              "| env | method | backbone | teacher | queries | env steps | seeds | normalised "
              "IQM ((G-R)/(S-R)) | 95% CI | G/S IQM | 95% CI | learning-curve score IQM | "
              "95% CI | gold return G per seed |",
              "|---|---|---|---|---:|---:|---|---:|---|---:|---|---:|---|---|"]
    for r in rows:
        backbone = r.get("backbone")
        lines.append(
            f"| {r['env']} | {r['method']} | "
            f"{', '.join(backbone) if isinstance(backbone, list) else backbone or '—'} | "
            f"{r['teacher'] or '—'} | "
            f"{r['queries'] if r['method'] not in REFERENCE_METHODS else '—'} | "
            f"{r['eval_step']} | {', '.join(map(str, r['seeds']))} | "
            f"{_f(r['normalized_iqm'])} | {_ci(r['ci_low'], r['ci_high'])} | "
            f"{_f(r['ratio_iqm'])} | {_ci(r['ratio_ci_low'], r['ratio_ci_high'])} | "
            f"{_f(r['curve_normalized_iqm'])} | {_ci(r['curve_ci_low'], r['curve_ci_high'])} | "
            f"{', '.join(f'{g:.0f}' for g in r['gold_return_per_seed'])} |")
    if not rows:
        lines.append(f"| — | no finished run with a `{REFERENCE}` reference yet "
                     "| | | | | | | | | | | | |")
    refs = sorted({(r["env"], r["steps"], r["eval_step"], r["reference_return"],
                    r["random_reference_return"]) for r in rows}, key=str)
    for env, steps, step, s, rnd in refs:
        lines += ["", f"{env} ({steps} steps): S = mean `{REFERENCE}` gold return at step {step} "
                  f"= {s:.1f}; R = random-policy gold return = {_f(rnd, 1)} ({RANDOM_EPISODES} "
                  f"episodes, seed {RANDOM_SEED})."
                  + (" S <= R, so the normalised score is undefined here (—)."
                     if rnd is not None and s <= rnd else "")
                  + (" S <= 0, so the ratio G/S is undefined here (—)." if s <= 0 else "")]
    for r in rows:
        if r.get("source"):
            lines += ["", f"{r['env']} `{r['method']}` (seeds {', '.join(map(str, r['seeds']))}): "
                      f"runs made by another harness, {r['source']}, reused as issue 11 allows; "
                      "the learning-curve score needs a reference at each of a run's "
                      "evaluation steps, so it is left out (—) where they differ."]
    verdicts = [r for r in rows if r.get("meets_target") is not None]
    if verdicts:
        lines += ["", "Targets (issue 11): normalised IQM >= "
                  + " and >= ".join(f"{t:.2f} with {q} `{te}` queries"
                                    for te, q, t in dict.fromkeys(
                                        (te, q, t) for (_, te, q), t in TARGETS.items()))
                  + ", on each task: "
                  + "; ".join(f"{r['env']} `{r['method']}` {r['teacher']} "
                              f"{_verdict_score(r['normalized_iqm'], r['target'])} "
                              f"({'meets' if r['meets_target'] else 'misses'} "
                              f"{r['target']:.2f}, {r['steps']} steps, {len(r['seeds'])} seeds)"
                              for r in verdicts) + "."]
    for note in rec["notes"]:
        lines += ["", note]
    lines += ["", end]
    return "\n".join(lines)


def default_records(section: str) -> Path:
    """The JSONL record file of ``section``: ``benchmarks/results/<section>_runs.jsonl``."""
    return RESULTS_DIR / f"{section}_runs.jsonl"


def markers(section: str) -> tuple[str, str]:
    """The BENCHMARKS.md begin/end markers of ``section`` (a key of :data:`SECTIONS`)."""
    return core.section_markers(section)


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


NOTES = [
    "Normalised score (the issue's) = (G - R) / (S - R): G the run's true (gold) return at its "
    "final evaluation, S the mean true return of `true_reward` at the same env step (the same "
    "agent PEBBLE uses, `pebble.backbone` with the `pebble.sac` settings, trained on the true "
    "reward from step 0 with the same derived seeds and evaluation protocol), R a uniformly "
    "random policy's return on the same env: 0 = random, 1 = the same agent on the true reward. "
    "G/S is the plain ratio (undefined when S <= 0). Learning-curve score = (mean over the run's "
    "evaluations of G - R) / (mean over the same steps of S - R): the normalised area under the "
    "learning curve, which separates runs that end alike but learn at different speeds. "
    "`sac_true` is Stable-Baselines3 SAC on the true reward with PEBBLE's SAC hyperparameters: "
    "an outside reference, scored against `true_reward` like the other rows. IQM and 95% "
    "stratified-bootstrap CI over seeds with `rliable` (with 2-3 seeds the interval is wide and "
    "the IQM is the mean). Returns are the mean over 5 deterministic-policy episodes.",
    "PEBBLE schedule: unsupervised pre-training for 5% of the steps (at least 1000), then the "
    "budget in 10 equal rounds evenly spaced over the remaining steps, 50-step segments, "
    "disagreement-based query selection, RewardLab's default reward ensemble. Ablations "
    "(`--methods`): `pebble_uniform` / `pebble_entropy` select queries uniformly / by the "
    "entropy of the ensemble's preference probability instead of by ensemble disagreement; "
    "`pebble_no_pretrain` skips the unsupervised state-entropy pre-training (its first steps "
    "are the agent's uniform-random warm-up, the first queries come at the same step); "
    "`pebble_no_reset` keeps the critic trained on the intrinsic reward at the first reward "
    "update (PEBBLE Alg. 1 resets it); `pebble_rm_2x64` uses a reward model of 2 hidden "
    "layers of 64 instead of PEBBLE's 3 x 256 (every other variant's), `pebble_rm_3x128` "
    "one of 3 x 128, `pebble_rm_3x128_b32` the same fit in minibatches of 32 instead of "
    "PEBBLE's 128 (RewardLab's default for PEBBLE), `pebble_rm_bf16` fits and ranks with "
    "the 3 x 256 model in bfloat16 "
    "autocast; `pebble_tanh` puts "
    "PEBBLE's tanh on each reward-model member's output (RewardLab's default has none); "
    "`pebble_targeted` cuts each round's candidate segments from the steps collected since the "
    "previous round only (`mitigation.targeted_feedback`); `pebble_surf` adds SURF's "
    "semi-supervised labels and temporal cropping (Park et al. 2022: 10 unlabelled pairs per "
    "label, pseudo-labelled at P >= 0.99, 4 unlabelled pairs per labelled one in each step, "
    "windows of 40-50 of the 50 steps); `pebble_targeted_front` is `pebble_targeted` with its "
    "10 rounds spread over the first half of the steps after pre-training instead of all of "
    "them (PEBBLE's own schedules ask every query early); `pebble_targeted_reed` is "
    "`pebble_targeted` with REED's dynamics-aware reward model (Metcalf et al. 2023: separate "
    "state and action encoders, trained before every preference fit to predict the next "
    "state's embedding from the run's transitions; `reward_model.architecture=reed`); "
    "`pebble_targeted_lapse` is `pebble_targeted` with Christiano et al.'s (2017, Sec. 2.2.3) "
    "lapse model in the reward fit, P = 0.1 + 0.8 sigmoid(R_left - R_right) "
    "(`reward_model.lapse_rate=0.2`, the rate at which a teacher flipping 10% of its labels "
    "answers at random), stopping at 90% training accuracy instead of 97%.",
    "Earlier ablation runs (Pendulum-v1, SB3 SAC backbone, scored against `sac_true`) are kept "
    "in `benchmarks/results/ablations_runs_sb3_sac_pendulum.jsonl`.",
    "Hopper-v5 and Walker2d-v5 (not in this table unless listed) run with "
    "`terminate_when_unhealthy=False` for every method, so episodes have a fixed length and "
    "episode ends leak no reward information to the learner.",
    "Earlier runs of this harness, made with the SB3 SAC backbone (20k steps, scored against "
    "`sac_true`), are kept in `benchmarks/results/feedback_efficiency_runs_sb3_sac.jsonl`.",
]

#: The headline section's first note: which PEBBLE the headline grid runs, and why.
HEADLINE_NOTE = (
    f"The headline's PEBBLE is `{HEADLINE_METHOD}`: PEBBLE with targeted feedback "
    "(`mitigation.targeted_feedback=true`: each round's candidate segments are cut from the "
    "steps collected since the previous round only) and its 10 rounds spread over the first "
    "half of the steps after pre-training (`mitigation.targeted_spread=false` with "
    "`feedback.round_every` set so; PEBBLE's own schedules ask every query early), the lever "
    "that scored best with the oracle teacher at this budget in the `levers` section. "
    f"`{EARLIER_HEADLINE}` (the same with the rounds spread over the whole run, the headline "
    "until 2026-12-05) stays beside it; plain `pebble` rows, where listed, are the same runs "
    "without targeted feedback. The main job's default keeps targeted feedback off: at 30k "
    "steps with 200 queries a round's fresh steps hold few candidate segments, and in probes "
    "of the default job with `--set mitigation.targeted_feedback=true` it ended lower than "
    "without."
)

#: The ``levers`` section's own note (after the shared definitions and schedule notes).
LEVERS_NOTE = (
    "Why this section: on Hopper-v5 and Walker2d-v5 PEBBLE's final learned reward ranks the "
    "agent's own experience almost as gold does (`benchmarks/proxy_fidelity.py`), yet the "
    "policy lags the same agent on the true reward; each lever is probed on one or two seeds "
    "beside the same-seed `pebble` and `true_reward` runs of the headline grid before any "
    "becomes a default. 2000 queries: the plain `pebble` method with four times the budget."
)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), help="Gymnasium ids")
    p.add_argument("--methods", nargs="+", default=list(FULL_METHODS), choices=METHODS)
    p.add_argument("--teachers", nargs="+", default=list(FULL_TEACHERS), choices=TEACHERS)
    p.add_argument("--queries", nargs="+", type=int, default=list(FULL_QUERIES),
                   help="query budgets (pebble)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(FULL_SEEDS))
    p.add_argument("--steps", type=int, default=FULL_STEPS, help="env steps per run")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help="runs at once (Ray Tune trials, 1 CPU each)")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster (ray.init address); default: a local Ray")
    p.add_argument("--no-ray", action="store_true",
                   help="run the runs one after another in this process instead of on Ray")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--dry-run", action="store_true",
                   help="list the selected runs and their config overrides; run nothing")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; aggregate the finished runs of the selection")
    p.add_argument("--aggregate-all", action="store_true",
                   help="aggregate every finished run of the record file, not only the "
                   "selection (e.g. the headline and the secondary grid in one table)")
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    p.add_argument("--bootstrap-reps", type=int, default=BOOTSTRAP_REPS)
    p.add_argument("--section", choices=list(SECTIONS), default="feedback_efficiency",
                   help="BENCHMARKS.md section and benchmarks/results/*.json to write")
    p.add_argument("--records", type=Path, default=None,
                   help="JSONL record file (default: benchmarks/results/<section>_runs.jsonl)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers: at least 1")
    return args


def selected_keys(args: argparse.Namespace) -> list[str]:
    """Run keys of the selection, seed by seed (references first), so that a selection cut
    short still holds whole seeds: each with its ``true_reward`` reference and every method."""
    keys: list[str] = []
    for seed in args.seeds:
        for env in args.envs:
            keys += [run_key(env, m, None, 0, args.steps, seed) for m in REFERENCE_METHODS
                     if m in args.methods]
            keys += [run_key(env, m, t, q, args.steps, seed) for m in args.methods
                     if m in PEBBLE_VARIANTS for t in args.teachers for q in args.queries]
    return list(dict.fromkeys(keys))


def random_reference(env: str, episodes: int = RANDOM_EPISODES,
                     seed: int = RANDOM_SEED) -> dict[str, Any]:
    """A ``kind: "reference"`` record: the gold return of a uniformly random policy.

    Uses the env exactly as the runs do (:func:`run_overrides`, e.g. no unhealthy termination
    for Hopper/Walker2d) and the harness's evaluation function, with seeded resets and actions.
    """
    from rewardlab.config import load_config
    from rewardlab.diagnostics.evaluation import evaluate
    from rewardlab.envs.make import make_env

    config = load_config(None, run_overrides(env, REFERENCE, None, 0, 20_000, seed))
    gym_env = make_env(config.env)
    gym_env.action_space.seed(seed)
    res = evaluate(gym_env, lambda _obs: gym_env.action_space.sample(), None, episodes, seed=seed)
    gym_env.close()
    return {"kind": "reference", "env": env, "policy": "uniform_random",
            "gold_return": float(res.gold_returns.mean()),
            "gold_return_std": float(res.gold_returns.std()), "episodes": episodes,
            "seed": seed, "env_kwargs": dict(config.env.kwargs)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("feedback_efficiency.py", argv)
    out_dir = args.out_dir.resolve()
    jsonl = (args.records or default_records(args.section)).resolve()
    keys = selected_keys(args)
    overrides = {key: key_overrides(key) for key in keys}  # refuse bad selections first
    found = read_records(jsonl)
    done, current = completed_runs(found), current_runs(found)
    stale = stale_runs({k: done[k] for k in keys if k in done and k not in current})
    todo = [] if args.aggregate_only else [k for k in keys if k not in current]
    if args.dry_run:
        for key in keys:
            state = ("done" if key in current else "to run" if key not in stale else
                     f"stale, runs again: differs in {', '.join(stale[key][:4])}"
                     + (" ..." if len(stale[key]) > 4 else ""))
            print(f"{key} [{state}; backbone {planned_backbone(key)}]: "
                  f"{shlex.join(overrides[key])}")
        print(f"{len(keys)} runs selected, {sum(k in current for k in keys)} done, "
              f"{len(todo)} to run; records in {jsonl}; nothing run (--dry-run)")
        return 0
    print(f"{core.utc_now()}: {len(keys)} runs selected, {sum(k in current for k in keys)} done, "
          f"{len(todo)} to run ({'in this process' if args.no_ray else 'on Ray Tune'}, "
          f"{1 if args.no_ray else args.workers} at a time); records in {jsonl}", flush=True)
    if todo:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.no_ray:
            run_in_process(todo, out_dir, jsonl, run_trial)
        else:
            from rewardlab.errors import RewardLabError

            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            try:
                run_on_ray(todo, out_dir, jsonl, args.workers, args.address,
                           f"{args.section}-{stamp}")
            except RewardLabError as err:  # e.g. a worker died; the finished runs still count
                print(f"Ray: {err}", flush=True)
    records = read_records(jsonl)
    finished = current_runs(records)  # attempts with other settings are left out
    failed = [k for k in todo if k not in finished]
    have = random_returns(records)
    for env in args.envs:  # the random-policy reference, once per env with a finished run
        if env not in have and any(parse_key(k)["env"] == env for k in finished):
            append_records(jsonl, [random_reference(env)])
    records = read_records(jsonl)
    selection = set(keys)
    chosen = records if args.aggregate_all else [
        r for r in records if r.get("run") in selection or (
            r.get("kind") == "reference" and r["env"] in args.envs)]
    stale = stale_runs({k: v for k, v in completed_runs(chosen).items() if k not in finished})
    for key in sorted(stale):
        print(f"left out (stale: differs in {', '.join(stale[key][:4])}): {key}", flush=True)
    chosen = current_records(chosen)
    if args.aggregate_all or ("sac_true" in args.methods and "HalfCheetah-v5" in args.envs):
        have = {r["run"] for r in chosen if r.get("kind") == "done"}
        chosen += [r for r in core_sac_records() if r["run"] not in have]
    rows = aggregate(chosen, reps=args.bootstrap_reps)
    notes = ([HEADLINE_NOTE, *NOTES] if args.section == "feedback_efficiency" else NOTES[:-1]
             if args.section == "ablations" else [*NOTES[:2], NOTES[3], LEVERS_NOTE])
    rec = {"command": command, "section": args.section, "written_utc": core.utc_now(),
           "machine": core.machine_info(), "workers": 1 if args.no_ray else args.workers,
           "runner": runner_name(args),
           "jsonl": os.path.relpath(jsonl, REPO), "steps": args.steps,
           "selection": {"envs": args.envs, "methods": args.methods, "teachers": args.teachers,
                         "queries": args.queries, "seeds": args.seeds},
           "aggregate_all": args.aggregate_all,
           "runs_selected": len(keys), "runs_completed": len(completed_runs(chosen)),
           "reference_method": REFERENCE, "headline_complete": headline_complete(rows),
           "rows": rows, "notes": notes, "format_version": 2}
    for r in rows:
        print(f"{r['env']} {r['method']} {r['teacher']} q{r['queries']} t{r['steps']}: "
              f"IQM (G-R)/(S-R) {_f(r['normalized_iqm'])} {_ci(r['ci_low'], r['ci_high'])}, "
              f"G/S {_f(r['ratio_iqm'])} {_ci(r['ratio_ci_low'], r['ratio_ci_high'])}, "
              f"seeds {r['seeds']}", flush=True)
    if failed:
        print(f"{len(failed)} run(s) failed (see above): {', '.join(failed)}", flush=True)
    if args.no_write:
        print(render_section(rec))
    else:
        results = RESULTS_DIR / SECTIONS[args.section][1]
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(rec, indent=2) + "\n")
        core.write_markdown_section(core.BENCHMARKS_MD, *markers(args.section),
                                    render_section(rec))
        print(f"wrote {os.path.relpath(results, REPO)} and BENCHMARKS.md", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
