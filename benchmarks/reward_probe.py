"""How good is the reward model a run learned, and which settings would generalise better?

Refits reward-model variants on a finished run's own labels (its first 40, 100, ... labelled
queries, in the order they were asked) and measures each on uniformly drawn pairs of the run's
own experience (its checkpointed transition log) against gold returns: the
``reward_model/random_pair_accuracy`` check training logs each round
(:func:`rewardlab.diagnostics.reward_checks.random_pair_accuracy`). Accuracy on the fresh,
actively selected queries is low by design (they are the pairs the ensemble is least sure of);
this probe separates "the reward model is bad" from "the queries are hard".

Usage (the run is the default main job)::

    rewardlab train --run-dir benchmarks/runs-probe/s0
    python benchmarks/reward_probe.py benchmarks/runs-probe/s0 --seeds 0 1 2

Writes ``benchmarks/results/reward_probe.json`` and the ``reward_probe`` section of
BENCHMARKS.md (command, seeds, date, machine).

``--flip 0.1`` flips that fraction of the run's decided labels before fitting, as B-Pref's
mistake teacher does (Lee et al. 2021: ``u <= eps_mistake`` per query), so an oracle run's
queries probe how each variant copes with a teacher that errs; with ``--section
reward_probe_flip`` (or any other name) the table goes to a section of its own, e.g.::

    python benchmarks/reward_probe.py RUN_DIR --flip 0.1 --section reward_probe_flip \
        --variants "run's own (default)" lapse_rate=0.2 ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core import (  # noqa: E402
    BENCHMARKS_MD,
    REPO,
    command_line,
    git_state,
    machine_info,
    section_markers,
    utc_now,
    write_markdown_section,
)

RESULTS_JSON = REPO / "benchmarks" / "results" / "reward_probe.json"
#: Random pairs of experience each fit is measured on.
PAIRS = 3000
#: Reward-model variants: overrides of the run's ``reward_model`` section.
VARIANTS: dict[str, dict[str, Any]] = {
    "run's own (default)": {},
    "max_epochs=10": {"max_epochs": 10},
    "target_accuracy=0.8": {"target_accuracy": 0.8},
    "weight_decay=0.01": {"weight_decay": 0.01},
    "hidden_sizes=[64, 64]": {"hidden_sizes": (64, 64)},
    "hidden_sizes=[128, 128]": {"hidden_sizes": (128, 128)},
    "members=1": {"members": 1},
    "precision=bfloat16": {"precision": "bfloat16"},
    "target_accuracy=0.9": {"target_accuracy": 0.9},
    # Christiano et al. 2017, Sec. 2.2.3: a teacher answering at random 20% of the time
    "lapse_rate=0.2": {"lapse_rate": 0.2},
    "lapse_rate=0.2, target_accuracy=0.9": {"lapse_rate": 0.2, "target_accuracy": 0.9},
}
#: The variants run unless ``--variants`` names others (the table of BENCHMARKS.md's
#: ``reward_probe`` section).
DEFAULT_VARIANTS = ("run's own (default)", "max_epochs=10", "target_accuracy=0.8",
                    "weight_decay=0.01", "hidden_sizes=[64, 64]", "hidden_sizes=[128, 128]",
                    "members=1", "precision=bfloat16")


def flip_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """B-Pref's mistake teacher applied after the fact (Lee et al. 2021; the flip of
    :func:`rewardlab.feedback.teachers.label_queries`): each decided label (LEFT or RIGHT)
    swaps sides when a uniform draw is ``<= fraction``; EQUAL labels stay.

    Args:
        labels: ``(N,)`` int8 :class:`rewardlab.types.Label` codes (RIGHT 0, LEFT 1, EQUAL 2).
        fraction: flip probability in ``[0, 1]``; 0 returns a copy unchanged (no draw).
        seed: seed of the draws.

    Returns:
        ``(N,)`` int8 labels.

    Raises:
        ValueError: if ``fraction`` is outside ``[0, 1]``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--flip: a fraction in [0, 1], got {fraction}")
    out = labels.copy()
    if fraction == 0.0:
        return out
    from rewardlab.types import Label

    decided = (out == Label.LEFT) | (out == Label.RIGHT)
    flip = (np.random.default_rng(seed).random(len(out)) <= fraction) & decided
    out[flip] = np.where(out[flip] == Label.LEFT, Label.RIGHT, Label.LEFT)
    return out


def probe(run_dir: Path, label_counts: list[int], seeds: list[int],
          variants: tuple[str, ...] = DEFAULT_VARIANTS, flip: float = 0.0,
          flip_seed: int = 0) -> list[dict[str, Any]]:
    """Fit every variant on the first ``n`` labels for each ``n`` and seed (after flipping a
    ``flip`` fraction of them, :func:`flip_labels`); measure each."""
    import torch

    from rewardlab.config import load_config
    from rewardlab.data.transitions import TransitionLog, load_log
    from rewardlab.diagnostics.reward_checks import random_pair_accuracy
    from rewardlab.rewards.model import RewardModel
    from rewardlab.store.store import FeedbackStore
    from rewardlab.types import LABEL_TARGETS

    torch.set_num_threads(1)
    config = load_config(run_dir / "config.yaml")
    with FeedbackStore.open(run_dir) as store:
        data = store.records.training_arrays()
    order = np.argsort(data["query_ids"], kind="stable")  # the order the queries were asked
    data = {k: v[order] for k, v in data.items()}
    path = run_dir / "checkpoints" / "latest" / "transition_log.npz"
    with np.load(path, allow_pickle=False) as saved:
        shape = saved["obs"].shape
        state_dim = saved["states"].shape[-1] if "states" in saved else 0
        act_dim = saved["actions"].shape[-1]
    log = TransitionLog(shape[0], shape[1], shape[2], act_dim, state_dim)
    load_log(log, str(path))
    labels = flip_labels(data["labels"], flip, flip_seed)
    targets = LABEL_TARGETS[labels.astype(np.int64)]
    rows = []
    for n in label_counts:
        n = min(n, len(targets))
        for name in variants:
            update = VARIANTS[name]
            for seed in seeds:
                cfg = config.reward_model.model_copy(update=update)
                model = RewardModel(shape[2], act_dim, cfg, seed=seed)
                t0 = time.perf_counter()
                fit = model.fit(data["obs"][:n], data["actions"][:n], targets[:n])
                fit_s = time.perf_counter() - t0
                acc = random_pair_accuracy(model, log, PAIRS, config.feedback.segment_len,
                                           np.random.default_rng(1000 + seed))
                rows.append({"labels": n, "variant": name, "seed": seed, "accuracy": acc,
                             "train_accuracy": fit["train_accuracy"], "epochs": fit["epochs"],
                             "fit_s": fit_s})
                print(f"labels {n:4d}  {name:24s} seed {seed}  random-pair accuracy "
                      f"{acc:.3f}  fit {fit_s:5.1f} s", flush=True)
    return rows


def fresh_note(run_dir: Path) -> str:
    """The run's own fresh-query accuracies, for comparison with the table."""
    from rewardlab.diagnostics.metrics import read_metrics, series

    _, fresh = series(read_metrics(run_dir), "reward_model/fresh_accuracy")
    if not fresh:
        return "The run logged no fresh-query accuracy."
    return (
        f"For comparison, the same run's accuracy on each round's fresh, actively selected "
        f"queries (`reward_model/fresh_accuracy`, before refitting on them) averaged "
        f"{np.mean(fresh):.3f} over its {len(fresh)} rounds (min {min(fresh):.3f}, max "
        f"{max(fresh):.3f}): the queries the ensemble disagrees on most are hard by design, so "
        "below-chance fresh accuracy does not mean the reward model is worse than chance."
    )


def render(record: dict[str, Any]) -> str:
    """The BENCHMARKS.md section (``record["section"]``, default ``reward_probe``)."""
    section = record.get("section", "reward_probe")
    begin, end = section_markers(section)
    rows = record["rows"]
    counts = sorted({r["labels"] for r in rows})
    flip = record.get("flip", 0.0)
    title = "## Reward-model probe: accuracy on random pairs of a run's experience"
    if flip:
        title += f", with {flip:.0%} of the labels flipped"
    lines = [
        begin,
        title,
        "",
        f"Command: `{record['command']}` on the run made by `{record['run_command']}`; "
        f"reward-model seeds {record['seeds']}; {record['date']}; {record['machine']['cpu']}, "
        "one torch thread. Each cell: mean (min-max over seeds) accuracy against gold on "
        f"{PAIRS} uniformly drawn pairs of the run's experience, and the fit's seconds."
        + (f" Before fitting, each decided label was flipped with probability {flip} (B-Pref's "
           f"mistake teacher applied to the run's labels, draws seeded {record['flip_seed']})."
           if flip else ""),
        "",
        "| variant | " + " | ".join(f"{n} labels" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for name in [v for v in VARIANTS if any(r["variant"] == v for r in rows)]:
        cells = []
        for n in counts:
            sel = [r for r in rows if r["variant"] == name and r["labels"] == n]
            acc = np.array([r["accuracy"] for r in sel])
            fit = np.mean([r["fit_s"] for r in sel])
            cells.append(f"{acc.mean():.3f} ({acc.min():.3f}-{acc.max():.3f}), {fit:.1f} s")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", record["note"], end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--labels", type=int, nargs="+", default=[40, 100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--run-command", default="rewardlab train --run-dir benchmarks/runs-probe/s0")
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                   choices=list(VARIANTS), metavar="NAME",
                   help=f"reward-model variants to fit (default: {', '.join(DEFAULT_VARIANTS)}; "
                   f"also: {', '.join(v for v in VARIANTS if v not in DEFAULT_VARIANTS)})")
    p.add_argument("--flip", type=float, default=0.0,
                   help="fraction of decided labels to flip before fitting (B-Pref's mistake "
                   "teacher: 0.1), default 0")
    p.add_argument("--flip-seed", type=int, default=0, help="seed of the flips")
    p.add_argument("--section", default="reward_probe",
                   help="BENCHMARKS.md section and results/<section>.json to write")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--render-only", action="store_true",
                   help="re-render BENCHMARKS.md from the saved results JSON (no fitting)")
    args = p.parse_args(argv)
    if not 0.0 <= args.flip <= 1.0:
        p.error(f"--flip: a fraction in [0, 1], got {args.flip}")
    results = RESULTS_JSON.with_name(f"{args.section}.json")
    if args.render_only:
        record = json.loads(results.read_text())
    else:
        record = {
            "command": command_line("reward_probe.py", argv),
            "run_command": args.run_command, "seeds": args.seeds, "date": utc_now(),
            "machine": machine_info(), "git": git_state(),
            "section": args.section, "flip": args.flip, "flip_seed": args.flip_seed,
            "rows": probe(args.run_dir, args.labels, args.seeds, tuple(args.variants),
                          args.flip, args.flip_seed),
        }
    record["note"] = fresh_note(args.run_dir)
    if not args.no_write:
        results.write_text(json.dumps(record, indent=2))
        begin, end = section_markers(record.get("section", "reward_probe"))
        write_markdown_section(BENCHMARKS_MD, begin, end, render(record))
    print(render(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
