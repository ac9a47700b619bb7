"""RewardLab's IQL and TD3+BC against d3rlpy's on the same dataset (issue 12, item 4).

Usage::

    python benchmarks/d3rlpy_crosscheck.py [--dataset Hopper-v5/medium-replay]
        [--algos iql td3bc] [--updates 50000] [--seeds 0 1 2] [--episodes 10] [--no-write]

RewardLab's offline agents are one-file implementations (``rewardlab.algorithms.offline.iql``
and ``td3bc``; their docstrings give the library decision and the per-update check against the
authors' code). This script checks them end to end against a well-kept library on the same
data: d3rlpy 2.8.1 (Seno & Imai 2022), which pins ``gymnasium==1.0.0`` and so runs in its own
virtualenv (``benchmarks/.venv-d3rlpy``, git-ignored, made on first use: ``torch==2.13.0``
first so pip keeps the CPU build, then ``d3rlpy==2.8.1``).

For each algorithm and seed:

1. RewardLab trains on the dataset's true reward (``rewardlab train --set algorithm=ALGO --set
   offline.reward=true``) for ``--updates`` gradient updates, one torch thread.
2. The dataset (made by ``rewardlab dataset make`` under ``MINARI_DATASETS_PATH``, the same
   file) is exported once to D4RL arrays (observations, actions, rewards, terminals, timeouts;
   ``.npz``) and d3rlpy trains on it in its virtualenv for the same updates, with the settings
   of its own reproduction scripts (``reproductions/offline/iql.py``: expectile 0.7,
   inverse temperature 3, weights clipped at 100, batch 256, learning rates 3e-4, the actor's
   cosine schedule over the run, rewards scaled by 1000 / (max - min episode return) as the IQL
   paper does for locomotion; ``td3_plus_bc.py``: alpha 2.5, standardised observations,
   policy noise 0.2 clipped at 0.5, actor every 2nd update), then exports its greedy policy as
   TorchScript (``save_policy``: its scalers included).
3. Both final policies are evaluated here by the same code on the same episodes (RewardLab's
   evaluation env of the run's config, reset seeds derived from the run seed, ``--episodes``
   deterministic episodes) and scored D4RL-style (random = 0, expert = 100 from the dataset's
   reference returns).

Each finished run is appended to ``benchmarks/results/d3rlpy_crosscheck_runs.jsonl`` and
reused by later invocations (same library, algorithm, dataset content, updates, seed and
episodes). The table (``benchmarks/results/d3rlpy_crosscheck.json`` and the
``d3rlpy_crosscheck`` section of ``BENCHMARKS.md``) gives each side's per-seed scores, mean and
sample std, and the two-sided exact permutation test of the difference of means (with n seeds a
side the smallest p-value it can give is 2 / C(2n, n), 0.1 for 3 and 0.008 for 5: it can show a
gap, not prove equality).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py)
import feedback_efficiency as fe  # noqa: E402
import imitation_venv as iv  # noqa: E402  (the side-venv helpers)
import offline as off  # noqa: E402  (benchmarks/offline.py: dataset ids)

D3RLPY_VERSION = "2.8.1"
D3RLPY_VENV = Path(__file__).resolve().parent / ".venv-d3rlpy"
RECORDS = core.REPO / "benchmarks" / "results" / "d3rlpy_crosscheck_runs.jsonl"
RESULTS_JSON = core.REPO / "benchmarks" / "results" / "d3rlpy_crosscheck.json"
BEGIN, END = "<!-- d3rlpy_crosscheck:begin -->", "<!-- d3rlpy_crosscheck:end -->"
ALGOS = ("iql", "td3bc")
LIBRARIES = ("rewardlab", "d3rlpy")


# ----------------------------------------------------------------------------- data
def export_d4rl_arrays(dataset_id: str, path: Path) -> dict[str, Any]:
    """Write the dataset as D4RL arrays to ``path`` (``.npz``): ``observations (N, obs_dim)``
    float32, ``actions (N, act_dim)`` float32, ``rewards (N,)`` float32 (true reward),
    ``terminals (N,)`` float32 and ``timeouts (N,)`` float32 (1 on an episode's last step when
    it did not terminate, so d3rlpy cuts episodes where RewardLab's dataset does).

    Returns:
        ``{"fingerprint", "steps", "episodes", "ref_min_score", "ref_max_score"}`` of the
        dataset (reference returns in the env's reward units, None if it has none).

    Raises:
        rewardlab.errors.DatasetError: if the dataset is not under ``MINARI_DATASETS_PATH``
            or cannot be read.
    """
    from rewardlab.data.offline import load_offline_dataset

    data = load_offline_dataset(dataset_id)
    last = np.zeros(data.n_steps, dtype=bool)
    last[np.r_[data.episode_starts[1:] - 1, data.n_steps - 1]] = True
    terminals = data.terminations.astype(np.float32)
    timeouts = ((data.truncations | last) & ~data.terminations).astype(np.float32)
    np.savez(path, observations=data.observations, actions=data.actions,
             rewards=data.rewards.astype(np.float32), terminals=terminals, timeouts=timeouts)
    return {"fingerprint": data.fingerprint(), "steps": int(data.n_steps),
            "episodes": int(data.n_episodes), "ref_min_score": data.ref_min_score,
            "ref_max_score": data.ref_max_score}


# ----------------------------------------------------------------------------- sides
def rewardlab_overrides(dataset_id: str, algo: str, updates: int, seed: int,
                        episodes: int) -> list[str]:
    """Config overrides of RewardLab's run: the true reward, ``updates`` updates, one
    evaluation (at the end, besides update 0) of ``episodes`` episodes, one thread."""
    return [f"algorithm={algo}", "offline.reward=true", f"dataset={dataset_id}",
            f"seed={seed}", f"offline.updates={updates}", f"offline.eval_every={updates}",
            f"offline.checkpoint_every={updates}", f"eval.episodes={episodes}",
            "progress_bar=false", "torch_threads=1"]


def evaluation(dataset_id: str, algo: str, updates: int, seed: int, episodes: int) -> Any:
    """The evaluation env and the reset seed of its first episode in RewardLab's run of
    these settings (``make_env(config.env)``, ``child_seeds(seed)["eval_env"]``), as the
    offline loop's ``Evaluator`` makes them."""
    from rewardlab.algorithms.preflight import with_dataset_env
    from rewardlab.config import load_config
    from rewardlab.envs.make import make_env
    from rewardlab.seeding import child_seeds

    config = with_dataset_env(load_config(
        None, rewardlab_overrides(dataset_id, algo, updates, seed, episodes)))
    return make_env(config.env), child_seeds(config.seed)["eval_env"]


def score_policy(policy: Any, meta: dict[str, Any], dataset_id: str, algo: str, updates: int,
                 seed: int, episodes: int) -> dict[str, float]:
    """Mean gold return (env reward units) and D4RL normalised score (Fu et al. 2020: 0 the
    random, 100 the expert reference return ``meta`` gives, as :func:`export_d4rl_arrays`
    returns it) of ``policy`` (``obs (obs_dim,) float32 -> action (act_dim,)``) over the
    evaluation episodes of RewardLab's run of the same settings."""
    from rewardlab.data.offline.record import normalized_score
    from rewardlab.diagnostics.evaluation import evaluate_episodes

    env, eval_seed = evaluation(dataset_id, algo, updates, seed, episodes)
    result = evaluate_episodes(env, policy, episodes, eval_seed)
    env.close()
    return {"gold_return": float(np.mean(result.gold_returns)),
            "normalized_score": float(np.mean(normalized_score(
                result.gold_returns, meta["ref_min_score"], meta["ref_max_score"])))}


def rewardlab_run(dataset_id: str, algo: str, updates: int, seed: int, episodes: int,
                  work: Path) -> dict[str, Any]:
    """Train RewardLab's ``algo`` in ``work``; its score is the run's own final evaluation,
    which :func:`score_policy` repeats for d3rlpy (same env, reset seeds and episodes).
    ``wall_time_s`` is the whole ``train`` call: loading the dataset and the evaluations at
    update 0 and at the end included.

    Raises:
        RuntimeError: if the run's last evaluation is not at update ``updates``."""
    import torch

    from rewardlab.algorithms import train
    from rewardlab.config import load_config

    torch.set_num_threads(1)
    config = load_config(None, rewardlab_overrides(dataset_id, algo, updates, seed, episodes))
    run_dir = work / f"rewardlab_{algo}_s{seed}"
    t0 = time.perf_counter()
    train(config, run_dir)
    wall = time.perf_counter() - t0
    final = [r for r in fe.read_records(run_dir / "metrics.jsonl")
             if r.get("eval/normalized_score") is not None][-1]
    if final["step"] != updates:
        raise RuntimeError(f"{run_dir}: the last evaluation is at update {final['step']}, "
                           f"not {updates}")
    return {"gold_return": float(final["eval/gold_return"]),
            "normalized_score": float(final["eval/normalized_score"]), "wall_time_s": wall}


def d3rlpy_run(arrays: Path, meta: dict[str, Any], dataset_id: str, algo: str, updates: int,
               seed: int, episodes: int, work: Path) -> dict[str, Any]:
    """Train d3rlpy's ``algo`` in its virtualenv and score its exported policy here
    (:func:`score_policy`). ``wall_time_s`` is d3rlpy's ``fit`` call alone.

    Raises:
        RuntimeError: if the d3rlpy side fails (with the tail of its stderr)."""
    import torch

    py = ensure_d3rlpy_venv()
    policy_file = work / f"d3rlpy_{algo}_s{seed}.pt"
    side = iv.run_side(py, Path(__file__), [
        "--side", "d3rlpy", "--arrays", str(arrays), "--algos", algo, "--updates",
        str(updates), "--seeds", str(seed), "--policy-out", str(policy_file)], "d3rlpy",
        log=work / "d3rlpy.log")
    torch.set_num_threads(1)
    scripted = torch.jit.load(str(policy_file))

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])
            return scripted(x)[0].numpy()

    return {**score_policy(policy, meta, dataset_id, algo, updates, seed, episodes),
            "wall_time_s": side["wall_time_s"], "d3rlpy": side["d3rlpy"]}


def ensure_d3rlpy_venv(venv: Path = D3RLPY_VENV) -> Path:
    """``venv`` with ``torch==TORCH_VERSION`` (first, so pip keeps the CPU build) and
    ``d3rlpy==D3RLPY_VERSION``; its python. Nothing is done when d3rlpy at that version
    already imports there.

    Raises:
        subprocess.CalledProcessError: if venv creation or an install fails.
    """
    return iv.ensure_venv(venv, [[f"torch=={iv.TORCH_VERSION}"],
                                 [f"d3rlpy=={D3RLPY_VERSION}"]],
                          "import d3rlpy; print(d3rlpy.__version__)", D3RLPY_VERSION)


def d3rlpy_side(arrays: Path, algo: str, updates: int, seed: int, policy_out: Path) -> dict:
    """Inside the d3rlpy virtualenv: train d3rlpy's ``algo`` (IQL, Kostrikov et al. 2022;
    TD3+BC, Fujimoto & Gu 2021) on ``arrays`` (:func:`export_d4rl_arrays`) for ``updates``
    gradient updates with the settings of d3rlpy's reproduction scripts and save its greedy
    policy as TorchScript to ``policy_out``.

    Returns:
        ``{"wall_time_s": seconds of the fit call, "d3rlpy": its version}``."""
    import d3rlpy
    import torch

    torch.set_num_threads(1)
    d3rlpy.seed(seed)
    a = np.load(arrays)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=a["observations"], actions=a["actions"], rewards=a["rewards"],
        terminals=a["terminals"], timeouts=a["timeouts"])
    if algo == "iql":
        config = d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256,
            weight_temp=3.0, max_weight=100.0, expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=updates)))
    else:
        config = d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5,
            update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler())
    algo_obj = config.create(device="cpu:0")
    t0 = time.perf_counter()
    algo_obj.fit(dataset, n_steps=updates, n_steps_per_epoch=updates, show_progress=False,
                 logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=updates + 1)
    wall = time.perf_counter() - t0
    algo_obj.save_policy(str(policy_out))
    return {"wall_time_s": wall, "d3rlpy": d3rlpy.__version__}


# ----------------------------------------------------------------------------- table
def permutation_p(x: list[float], y: list[float]) -> float | None:
    """Two-sided exact permutation test (Fisher 1935; Pitman 1937) of ``mean(x) - mean(y)``:
    the share of the C(n+m, n) splits of the pooled values whose difference of means is at
    least as large in absolute value; None with fewer than 2 values a side."""
    if len(x) < 2 or len(y) < 2:
        return None
    pooled = np.array([*x, *y], dtype=float)
    n = len(x)
    splits = np.array([list(c) for c in itertools.combinations(range(len(pooled)), n)])
    mask = np.zeros((len(splits), len(pooled)), dtype=bool)
    np.put_along_axis(mask, splits, True, axis=1)
    diffs = (mask * pooled).sum(1) / n - (~mask * pooled).sum(1) / (len(pooled) - n)
    observed = abs(np.mean(x) - np.mean(y))
    return float(np.mean(np.abs(diffs) >= observed - 1e-12))


def min_p_value(n: int) -> float:
    """The smallest two-sided p-value :func:`permutation_p` (Fisher 1935; Pitman 1937) can give
    with ``n`` scores a side (``n >= 1``): 2 / C(2n, n), the two splits that put the n largest
    scores on one side. A float in (0, 1]."""
    return 2 / math.comb(2 * n, n)


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, algorithm, updates): each library's per-seed normalised scores,
    mean, sample std, and the permutation p-value of the difference (seeds both sides ran)."""
    rows = []
    groups = sorted({(r["dataset"], r["algo"], r["updates"]) for r in records})
    for dataset, algo, updates in groups:
        runs = [r for r in records if (r["dataset"], r["algo"], r["updates"])
                == (dataset, algo, updates)]
        scores = {lib: {r["seed"]: r["normalized_score"] for r in runs if r["library"] == lib}
                  for lib in LIBRARIES}
        seeds = sorted(set(scores["rewardlab"]) & set(scores["d3rlpy"]))
        row: dict[str, Any] = {"dataset": dataset, "algo": algo, "updates": updates,
                               "seeds": seeds}
        for lib in LIBRARIES:
            s = [scores[lib][k] for k in seeds]
            row[lib] = {"scores": s, "mean": float(np.mean(s)) if s else None,
                        "std": float(np.std(s, ddof=1)) if len(s) > 1 else None,
                        "wall_time_s": float(np.mean([r["wall_time_s"] for r in runs
                                                      if r["library"] == lib
                                                      and r["seed"] in seeds] or [np.nan]))}
        row["p_value"] = permutation_p(row["rewardlab"]["scores"], row["d3rlpy"]["scores"])
        rows.append(row)
    return rows


def render_section(rec: dict[str, Any]) -> str:
    lines = [BEGIN, "## IQL and TD3+BC against d3rlpy (`benchmarks/d3rlpy_crosscheck.py`)", "",
             f"- Command: `{rec['command']}`", f"- Date (UTC): {rec['written_utc']}",
             f"- Machine: {rec['machine']['cpu']}, {rec['machine']['cpu_count']} logical CPUs, "
             f"torch {rec['machine']['torch']}; one run at a time, one thread; d3rlpy "
             f"{D3RLPY_VERSION} in its own virtualenv",
             f"- Data: {', '.join(rec['datasets'])} (true reward), the same file for both "
             f"sides; {rec['episodes']} evaluation episodes per run, the same for both", "",
             "| dataset | algorithm | updates | seeds | RewardLab score per seed | RewardLab "
             "mean ± std | d3rlpy score per seed | d3rlpy mean ± std | permutation p | "
             "RewardLab s/run | d3rlpy s/run |",
             "|---|---|---:|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rec["rows"]:
        rl, d3 = r["rewardlab"], r["d3rlpy"]
        lines.append(
            f"| {r['dataset']} | {r['algo']} | {r['updates']} | "
            f"{', '.join(map(str, r['seeds']))} | "
            f"{', '.join(f'{s:.1f}' for s in rl['scores'])} | "
            f"{fe._f(rl['mean'], 1)} ± {fe._f(rl['std'], 1)} | "
            f"{', '.join(f'{s:.1f}' for s in d3['scores'])} | "
            f"{fe._f(d3['mean'], 1)} ± {fe._f(d3['std'], 1)} | {fe._f(r['p_value'])} | "
            f"{fe._f(rl['wall_time_s'], 0)} | {fe._f(d3['wall_time_s'], 0)} |")
    sides = sorted({len(r["seeds"]) for r in rec["rows"] if len(r["seeds"]) > 1})
    floors = (", ".join(f"{n} seeds a side cannot go below {min_p_value(n):.2g}" for n in sides)
              or "none with fewer than 2 seeds a side")
    lines += ["", "Score: D4RL's normalised score of the final policy, 100 x (G - random) / "
              "(expert - random), G the mean true return over the evaluation episodes, random "
              "and expert the dataset's reference returns. Both sides' policies are evaluated "
              "by RewardLab's evaluation code on the same episodes (reset seeds) after "
              "training; d3rlpy's through its exported TorchScript policy (scalers included). "
              "Seconds per run: RewardLab's whole `train` call (dataset loading and its "
              "evaluations at update 0 and at the end included), d3rlpy's `fit` call alone. "
              "Permutation p: two-sided exact test of the difference of the means over every "
              f"split of the pooled scores ({floors}). d3rlpy settings: "
              "those of its reproduction scripts (module docstring), with the IQL actor's "
              "cosine schedule over the run's updates.", "", END]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def run_key(library: str, algo: str, dataset: str, fingerprint: str, updates: int, seed: int,
            episodes: int) -> tuple:
    return (library, algo, dataset, fingerprint, updates, seed, episodes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dataset", default="Hopper-v5/medium-replay", choices=off.DATASETS)
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    p.add_argument("--updates", type=int, default=50_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    p.add_argument("--side", choices=["d3rlpy"], help=argparse.SUPPRESS)
    p.add_argument("--arrays", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--policy-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.updates < 1 or args.episodes < 1:
        p.error("--updates and --episodes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side == "d3rlpy":  # inside the d3rlpy virtualenv
        out = d3rlpy_side(args.arrays, args.algos[0], args.updates, args.seeds[0],
                          args.policy_out)
        print(json.dumps(out), flush=True)
        return 0
    from rewardlab.errors import RewardLabError  # not at the top: the d3rlpy side has none

    command = core.command_line("d3rlpy_crosscheck.py", argv)
    dataset_id = off.dataset_id(args.dataset)
    records = fe.read_records(RECORDS)
    with tempfile.TemporaryDirectory(prefix="d3rlpy-crosscheck-") as tmp:
        work = Path(tmp)
        arrays = work / "dataset.npz"
        try:
            meta = export_d4rl_arrays(dataset_id, arrays)
        except RewardLabError as err:
            print(f"--dataset {args.dataset}: {err} (make it with `python benchmarks/offline.py "
                  f"--make-datasets --datasets {args.dataset}`)", file=sys.stderr)
            return 2
        done = {run_key(r["library"], r["algo"], r["dataset"], r["dataset_fingerprint"],
                        r["updates"], r["seed"], r["episodes"]) for r in records}
        for algo, seed, library in itertools.product(args.algos, args.seeds, LIBRARIES):
            key = run_key(library, algo, args.dataset, meta["fingerprint"], args.updates,
                          seed, args.episodes)
            if key in done:
                continue
            print(f"{core.utc_now()}: {library} {algo} seed {seed}, {args.updates} updates "
                  f"on {dataset_id}", flush=True)
            if library == "rewardlab":
                result = rewardlab_run(dataset_id, algo, args.updates, seed, args.episodes, work)
            else:
                result = d3rlpy_run(arrays, meta, dataset_id, algo, args.updates, seed,
                                    args.episodes, work)
            rec = {"library": library, "algo": algo, "dataset": args.dataset,
                   "dataset_id": dataset_id, "dataset_fingerprint": meta["fingerprint"],
                   "dataset_steps": meta["steps"], "updates": args.updates, "seed": seed,
                   "episodes": args.episodes, **result, "finished_utc": core.utc_now(),
                   "machine": core.machine_info()}
            fe.append_records(RECORDS, [rec])
            records.append(rec)
            print(f"{core.utc_now()}: {library} {algo} seed {seed}: normalised score "
                  f"{result['normalized_score']:.1f} in {result['wall_time_s']:.0f} s",
                  flush=True)
    chosen = [r for r in records if r["dataset"] == args.dataset
              and r["dataset_fingerprint"] == meta["fingerprint"] and r["algo"] in args.algos
              and r["updates"] == args.updates and r["seed"] in args.seeds
              and r["episodes"] == args.episodes]
    rec = {"rows": table_rows(chosen), "datasets": [dataset_id], "episodes": args.episodes,
           "command": command, "written_utc": core.utc_now(), "machine": core.machine_info(),
           "records": os.path.relpath(RECORDS, core.REPO)}
    text = render_section(rec)
    if args.no_write:
        print(text)
        return 0
    RESULTS_JSON.write_text(json.dumps(rec, indent=2) + "\n")
    core.write_markdown_section(core.BENCHMARKS_MD, BEGIN, END, text)
    print(f"wrote {os.path.relpath(RESULTS_JSON, core.REPO)} and BENCHMARKS.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
