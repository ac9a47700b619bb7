"""``rewardlab dataset``: make the D4RL tiers of an env as Minari datasets, list, inspect.

Commands::

    rewardlab dataset make [--env HalfCheetah-v5] [--tiers random,medium,...] [--expert-steps N]
                           [--tier-steps N] [--seed S] [--version V] [...]
    rewardlab dataset list
    rewardlab dataset info ID_OR_PATH

Datasets live under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``); nothing is ever
downloaded. Bad input exits 2 with one message naming the option, before any work starts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rewardlab.errors import ConfigError

#: The tiers ``make`` makes by default (all of rewardlab.data.offline.TIERS).
DEFAULT_TIERS = "random,medium,medium-replay,expert,medium-expert"


def add_dataset_parser(sub: Any) -> None:
    """Add ``dataset make|list|info`` to the CLI's subparsers."""
    d = sub.add_parser("dataset", help="offline datasets (Minari): make D4RL tiers, list, info")
    d_sub = d.add_subparsers(dest="dataset_command", required=True)
    mk = d_sub.add_parser(
        "make", help="make D4RL-style tiers of an env from RewardLab's own agent (cached)",
        description="Train the agent on the true reward, then write the tiers as Minari "
        "datasets rewardlab/<env>/<tier>-v<version> under MINARI_DATASETS_PATH. A tier that "
        "exists with the same settings is reused; the training run is cached too. Defaults: "
        "a 100,000-step expert (CrossQ; SBX SAC on HalfCheetah-v5; about 30 min on a core of "
        "its own) and 100,000 steps per collected tier (about 70 s each).")
    mk.add_argument("--env", default="HalfCheetah-v5", help="Gymnasium id (default HalfCheetah-v5)")
    mk.add_argument("--tiers", default=DEFAULT_TIERS,
                    help=f"comma-separated tiers (default {DEFAULT_TIERS})")
    for flag, kind, text in (
        ("--expert-steps", int, "env steps the expert trains for (default 100000)"),
        ("--tier-steps", int, "steps of each collected tier, whole episodes (default 100000)"),
        ("--medium-fraction", float, "medium policy: first snapshot reaching random + "
         "fraction * (expert - random) (default 1/3)"),
        ("--eval-every", int, "steps between evaluations/snapshots of training (default 5000)"),
        ("--eval-episodes", int, "episodes per evaluation (default 5)"),
        ("--ref-episodes", int, "episodes behind ref_min_score/ref_max_score (default 10)"),
        ("--learning-starts", int, "random-action steps before learning (default 1000)"),
        ("--max-episode-steps", int, "override of the env's time limit"),
        ("--seed", int, "seed (default 0)"),
        ("--version", int, "dataset id version (default 0)"),
    ):
        mk.add_argument(flag, type=kind, help=text)
    mk.add_argument("--backbone", choices=("crossq", "sac", "sbx_sac"),
                    help="agent (default: sbx_sac on HalfCheetah-v5, whose CrossQ "
                    "medium-replay is too short; crossq elsewhere)")
    mk.add_argument("--net-arch", help="hidden widths, comma-separated (default 256,256)")
    mk.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    d_sub.add_parser("list", help="list the local Minari datasets")
    info = d_sub.add_parser("info", help="describe one dataset (by id or directory)")
    info.add_argument("dataset", metavar="ID_OR_PATH")


def _recipe(args: argparse.Namespace) -> Any:
    from rewardlab.algorithms.dataset_tiers import DatasetRecipe

    fields = {
        "env_id": args.env, "expert_steps": args.expert_steps, "tier_steps": args.tier_steps,
        "medium_fraction": args.medium_fraction, "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes, "ref_episodes": args.ref_episodes,
        "learning_starts": args.learning_starts, "max_episode_steps": args.max_episode_steps,
        "seed": args.seed, "version": args.version, "backbone": args.backbone,
    }
    if args.net_arch is not None:
        try:
            fields["net_arch"] = tuple(int(w) for w in args.net_arch.split(","))
        except ValueError:
            raise ConfigError(
                f"--net-arch: expected comma-separated integers such as 256,256, got "
                f"{args.net_arch!r}") from None
    try:
        return DatasetRecipe(**{k: v for k, v in fields.items() if v is not None})
    except ConfigError as err:  # name the option: "expert_steps: ..." -> "--expert-steps: ..."
        field, _, rest = str(err).partition(":")
        option = "--env" if field == "env" else "--" + field.replace("_", "-")
        raise ConfigError(f"{option}:{rest}") from None


def cmd_make(args: argparse.Namespace, console: Console) -> int:
    import torch

    from rewardlab.algorithms.dataset_tiers import make_tier_datasets
    from rewardlab.algorithms.progress import TrainingProgress
    from rewardlab.data.offline import TIERS, env_slug
    from rewardlab.envs.make import env_dims

    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise ConfigError(f"--tiers: unknown {', '.join(unknown) or '(none given)'}; allowed: "
                          f"{', '.join(TIERS)}")
    recipe = _recipe(args)
    env_dims(recipe.env_config())  # the env can be made and has Box spaces: before any work
    torch.set_num_threads(1)  # process-wide: set where the command starts
    console.print(f"[bold]rewardlab dataset make[/] {recipe.env_id}: {', '.join(tiers)} "
                  f"(expert {recipe.expert_steps} steps, {recipe.tier_steps} steps per tier, "
                  f"seed {recipe.seed}, version {recipe.version})")
    bar: dict[str, TrainingProgress] = {}
    last = {"status": ""}

    def on_progress(done: int, total: int, status: str) -> None:
        if "bar" not in bar:
            bar["bar"] = TrainingProgress(console, f"dataset {env_slug(recipe.env_id)}", total,
                                          enabled=not args.no_progress)
            bar["bar"].start(0)
        if status.startswith("writing") and status != last["status"]:
            bar["bar"].message(status)  # one line per dataset, above the bar
        last["status"] = status
        bar["bar"].update(done, status)

    try:
        ids = make_tier_datasets(recipe, tiers, on_progress)
    except KeyboardInterrupt:
        console.print("interrupted: the datasets written so far are complete; the same command "
                      "remakes the rest (a half-written one is replaced)")
        return 130
    finally:
        if "bar" in bar:
            bar["bar"].stop()
    _print_tiers(ids, console)
    return 0


def _print_tiers(ids: dict[str, str], console: Console) -> None:
    from rewardlab.data.offline import dataset_metadata, datasets_root, normalized_score

    table = Table(title=f"datasets under {datasets_root()}", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for header in ("tier", "id", "episodes", "steps", "mean return", "normalised"):
        table.add_column(header, justify="left" if header in ("tier", "id") else "right",
                         no_wrap=header in ("id", "env"))
    for tier, dataset_id in ids.items():
        meta = dataset_metadata(dataset_id)
        own = meta.get("rewardlab", {})
        mean = own.get("mean_episode_return")
        score = (normalized_score(mean, meta["ref_min_score"], meta["ref_max_score"])
                 if mean is not None and "ref_min_score" in meta else None)
        table.add_row(tier, dataset_id, str(meta.get("total_episodes")),
                      str(meta.get("total_steps")), "-" if mean is None else f"{mean:.1f}",
                      "-" if score is None else f"{score:.1f}")
    console.print(table)


def _env_id(meta: dict[str, Any]) -> str:
    try:
        return str(json.loads(meta["env_spec"])["id"])
    except (KeyError, TypeError, ValueError):
        return "-"


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.data.offline import datasets_root, list_offline_datasets

    found = list_offline_datasets()
    if not found:
        console.print(f"no Minari datasets under {datasets_root()} (MINARI_DATASETS_PATH); make "
                      "some with `rewardlab dataset make --env HalfCheetah-v5`")
        return 0
    table = Table(title=f"Minari datasets under {datasets_root()}", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for header in ("id", "env", "eps", "steps", "ref min", "ref max"):
        table.add_column(header, justify="left" if header in ("id", "env") else "right",
                         no_wrap=header in ("id", "env"))
    for dataset_id, meta in found.items():
        refs = [meta.get("ref_min_score"), meta.get("ref_max_score")]
        complete = (meta.get("rewardlab") or {}).get("complete", True)
        table.add_row(dataset_id + ("" if complete else " (incomplete)"), _env_id(meta),
                      str(meta.get("total_episodes")), str(meta.get("total_steps")),
                      *("-" if r is None else f"{r:.1f}" for r in refs))
    console.print(table)
    return 0


def cmd_info(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.data.offline import dataset_metadata, load_offline_dataset

    meta = dataset_metadata(args.dataset)
    ds = load_offline_dataset(args.dataset)
    returns = ds.episode_returns()
    lines = [
        f"[bold]{escape(ds.dataset_id)}[/] ({meta.get('data_format')}, Minari "
        f"{meta.get('minari_version')})",
        f"env {ds.env_id}: obs_dim {ds.obs_dim}, act_dim {ds.act_dim}, render states "
        + ("yes" if ds.render_states is not None else "no"),
        f"{ds.n_episodes} episodes, {ds.n_steps} steps ({int(ds.terminations.sum())} terminated, "
        f"{int(ds.truncations.sum())} truncated)",
        f"episode return: mean {returns.mean():.1f}, min {returns.min():.1f}, "
        f"max {returns.max():.1f}",
    ]
    if ds.ref_min_score is not None and ds.ref_max_score is not None:
        lines.append(f"references: random {ds.ref_min_score:.1f}, expert {ds.ref_max_score:.1f}; "
                     f"normalised mean return {ds.normalized_score(float(returns.mean())):.1f}")
    own = meta.get("rewardlab")
    if isinstance(own, dict) and "recipe" in own:
        r = own["recipe"]
        lines.append(f"made by rewardlab: tier {own.get('tier')}, {r['backbone']} expert of "
                     f"{r['expert_steps']} steps (seed {r['seed']}); medium snapshot at step "
                     f"{own.get('medium_step')}, expert at step {own.get('expert_step')}")
    for line in lines:
        console.print(line, highlight=False)
    return 0


def cmd_dataset(args: argparse.Namespace, console: Console) -> int:
    """Run ``rewardlab dataset <make|list|info>``."""
    commands = {"make": cmd_make, "list": cmd_list, "info": cmd_info}
    return commands[args.dataset_command](args, console)
