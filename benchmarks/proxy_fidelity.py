"""Does a finished PEBBLE run's learned reward track gold on the run's own experience?

Issue 11, item 2 asks why the learned-reward agent falls short of the same agent on the true
reward. Accuracy on the fresh, actively selected queries is low by design (they are the pairs
the ensemble is least sure of), so this probe asks the question on the run's whole experience
instead. For each finished run it loads the final reward model and the transition log of the
run's last checkpoint (``checkpoints/latest``: ``reward_model.*``, ``transition_log.npz``) and
computes, with the proxy reward the agent was trained on (:meth:`RewardModel.reward`: reduced
over members and standardised; Christiano et al. 2017, Sec. 2.2.3) against the gold reward of
every stored step:

* ``step_spearman`` / ``step_spearman_recent``: Spearman rank correlation per step, over all
  steps and over the last :data:`RECENT` steps (the current policy's behaviour);
* ``pair_accuracy`` / ``pair_accuracy_recent``: the share of :data:`PAIRS` uniformly drawn
  pairs of ``feedback.segment_len``-step segments (within one episode) whose proxy return
  orders them as their gold return does (pairs with equal gold left out);
* ``gold_per_proxy_unit``: the least-squares slope of gold on proxy over the last
  :data:`RECENT` steps. The proxy is standardised to std 1 on recent experience, so the agent's
  reward differs from a gold-scaled one by this factor (1: same scale);
* ``final_gold`` and ``reference_gold``: the run's final gold return and that of the same
  agent on the true reward, same env, seed and steps (``true_reward`` runs of the records),
  when recorded.

Usage::

    python benchmarks/proxy_fidelity.py [RUN_DIR ...] [--no-write]

Without ``RUN_DIR`` it probes every run of the feedback-efficiency grid
(``benchmarks/runs/feedback_efficiency/runs/*_pebble_*``) that has a final checkpoint. Writes
``benchmarks/results/proxy_fidelity.json`` and the ``proxy_fidelity`` section of BENCHMARKS.md
(command, date, machine) unless ``--no-write``. A few seconds of one core per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core import (  # noqa: E402
    BENCHMARKS_MD,
    REPO,
    git_state,
    machine_info,
    section_markers,
    utc_now,
    write_markdown_section,
)

RESULTS_JSON = REPO / "benchmarks" / "results" / "proxy_fidelity.json"
GRID_RUNS = REPO / "benchmarks" / "runs" / "feedback_efficiency" / "runs"
GRID_RECORDS = REPO / "benchmarks" / "results" / "feedback_efficiency_runs.jsonl"
#: Steps counted as the current policy's behaviour (the last ones stored).
RECENT = 20_000
#: Random segment pairs per accuracy.
PAIRS = 5_000


def segment_returns(rewards: np.ndarray, episodes: np.ndarray, length: int,
                    ) -> np.ndarray:
    """Sums of consecutive ``length``-step blocks that lie within one episode.

    Args:
        rewards: ``(N, R)`` float32, R reward columns (e.g. proxy and gold), in log order.
        episodes: ``(N,)`` int64 episode id of each step.
        length: segment length in steps.

    Returns:
        ``(S, R)`` float64 block sums, one row per block with a single episode id.
    """
    n = rewards.shape[0] // length * length
    blocks = rewards[:n].reshape(-1, length, rewards.shape[1]).astype(np.float64)
    ids = episodes[:n].reshape(-1, length)
    whole = (ids == ids[:, :1]).all(axis=1)
    return blocks[whole].sum(axis=1)


def pair_accuracy(returns: np.ndarray, rng: np.random.Generator, pairs: int = PAIRS) -> float:
    """Share of random segment pairs the proxy orders as gold does.

    Args:
        returns: ``(S, 2)`` float64 segment returns, column 0 proxy, column 1 gold.
        rng: the generator drawing the pairs.
        pairs: pairs drawn (with replacement).

    Returns:
        Accuracy over the drawn pairs whose gold returns differ (NaN if none does).
    """
    i, j = rng.integers(0, returns.shape[0], size=(2, pairs))
    d_proxy, d_gold = (returns[i] - returns[j]).T
    decided = d_gold != 0
    if not decided.any():
        return float("nan")
    return float(np.mean(np.sign(d_proxy[decided]) == np.sign(d_gold[decided])))


def reference_golds(records_path: Path) -> dict[tuple[str, int, int], float]:
    """``{(env, seed, steps): final gold}`` of the grid's true-reward runs (last eval of the
    attempt that finished)."""
    if not records_path.exists():
        return {}
    import feedback_efficiency as fe

    runs = fe.completed_runs(fe.read_records(records_path))
    out = {}
    for run in runs.values():
        done = run["done"]
        if done.get("method") == "true_reward" and run["evals"]:
            key = (done["env"], int(done["seed"]), int(done["steps"]))
            out[key] = float(run["evals"][-1]["gold_return"])
    return out


def probe_run(run_dir: Path, references: dict[tuple[str, int, int], float],
              ) -> dict[str, Any]:
    """The fidelity numbers of one finished run (see the module docstring).

    Args:
        run_dir: a finished run directory (``config.yaml``, ``checkpoints/latest`` with the
            reward model and ``transition_log.npz``; ``summary.json`` if present).
        references: ``{(env, seed, steps): final gold}`` of true-reward runs.

    Returns:
        One table row: the module docstring's keys, floats (Spearman and accuracies unitless,
        ``gold_std_recent`` in gold reward per step).

    Raises:
        FileNotFoundError: if the run has no final checkpoint with a transition log, or no
            ``config.yaml``.
    """
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a run directory)")
    import torch

    from rewardlab.rewards.model import RewardModel

    torch.set_num_threads(1)
    ckpt = run_dir / "checkpoints" / "latest"
    log_path = ckpt / "transition_log.npz"
    if not log_path.exists():
        raise FileNotFoundError(f"{run_dir}: no checkpoints/latest/transition_log.npz")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    model = RewardModel.load(ckpt)
    with np.load(log_path) as log:  # a ring buffer: rows in write order, env 0
        capacity, written = log["obs"].shape[0], int(log["counters"][0])
        stored = min(written, capacity)
        order = np.arange(written - stored, written) % capacity
        obs = log["obs"][order, 0]
        actions = log["actions"][order, 0]
        gold = log["true_rewards"][order, 0].astype(np.float32)
        episodes = log["episode_ids"][order, 0].astype(np.int64)
    proxy = model.reward(obs, actions)
    recent = slice(-RECENT, None)
    length = int(config["feedback"]["segment_len"])
    both = np.stack([proxy, gold], axis=1)
    seg_all = segment_returns(both, episodes, length)
    seg_recent = segment_returns(both[recent], episodes[recent], length)
    rng = np.random.default_rng(0)
    slope = np.polyfit(proxy[recent].astype(np.float64), gold[recent].astype(np.float64), 1)[0]
    env_id, seed = config["env"]["id"], int(config["seed"])
    return {
        "run": run_dir.name,
        "env": env_id,
        "teacher": config["teacher"]["preset"],
        "seed": seed,
        "steps": int(stored),
        "labels": int(summary.get("store", {}).get("answered", 0)),
        "step_spearman": float(spearmanr(proxy, gold)[0]),
        "step_spearman_recent": float(spearmanr(proxy[recent], gold[recent])[0]),
        "pair_accuracy": pair_accuracy(seg_all, rng),
        "pair_accuracy_recent": pair_accuracy(seg_recent, rng),
        "gold_std_recent": float(gold[recent].std()),
        "gold_per_proxy_unit": float(slope),
        "final_gold": summary.get("final_eval", {}).get("eval/gold_return"),
        "reference_gold": references.get((env_id, seed, int(config["total_steps"]))),
    }


def default_runs() -> list[Path]:
    """The grid's finished PEBBLE runs with a final checkpoint, by name."""
    return sorted(p for p in GRID_RUNS.glob("*_pebble_*")
                  if (p / "checkpoints" / "latest" / "transition_log.npz").exists()
                  and (p / "summary.json").exists())


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(record: dict[str, Any]) -> str:
    """The BENCHMARKS.md section."""
    begin, end = section_markers("proxy_fidelity")
    lines = [
        begin,
        "## Proxy fidelity: the learned reward against gold on a run's own experience",
        "",
        f"- Command: `{record['command']}`",
        f"- Date (UTC): {record['date']}; machine: {record['machine']['cpu']}, "
        f"{record['machine']['cpu_count']} logical CPUs; one torch thread",
        f"- Each run's final reward model and transition log (its last checkpoint). Spearman: "
        f"per step, all steps / the last {RECENT:,}. Pair accuracy: {PAIRS:,} random pairs of "
        "the run's segments (segment_len steps within one episode), all / last "
        f"{RECENT:,} steps. Gold per proxy unit: least-squares slope of gold on the (standardised) "
        "proxy over the last steps; 1 means the agent's reward has gold's scale. Final gold: "
        "the run's; reference: the same agent on the true reward, same env and seed.",
        "",
        "| run | labels | Spearman | pair acc. | gold std (recent) | gold per proxy unit "
        "| final gold | reference gold |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['run']} | {r['labels']} | {r['step_spearman']:.3f} / "
            f"{r['step_spearman_recent']:.3f} | {r['pair_accuracy']:.3f} / "
            f"{r['pair_accuracy_recent']:.3f} | {r['gold_std_recent']:.2f} | "
            f"{r['gold_per_proxy_unit']:.2f} | {_fmt(r['final_gold'], '.0f')} | "
            f"{_fmt(r['reference_gold'], '.0f')} |"
        )
    lines += ["", end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("run_dirs", type=Path, nargs="*",
                   help="finished run directories (default: the grid's PEBBLE runs)")
    p.add_argument("--records", type=Path, default=GRID_RECORDS,
                   help="records with the true-reward references")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    runs = args.run_dirs or default_runs()
    if not runs:
        p.error("no finished run with a final checkpoint found; pass run directories")
    references = reference_golds(args.records)
    record = {
        "command": "python benchmarks/proxy_fidelity.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": utc_now(), "machine": machine_info(), "git": git_state(),
        "recent_steps": RECENT, "pairs": PAIRS,
    }
    try:
        record["rows"] = [probe_run(run, references) for run in runs]
    except FileNotFoundError as exc:
        p.error(f"run_dirs: {exc}; pass finished runs (their last checkpoint is read)")
    text = render(record)
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps(record, indent=2) + "\n")
        begin, end = section_markers("proxy_fidelity")
        write_markdown_section(BENCHMARKS_MD, begin, end, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
