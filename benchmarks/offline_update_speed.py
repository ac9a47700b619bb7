"""Offline update speed: IQL's gradient update before and after its step moved to JAX.

Usage::

    python benchmarks/offline_update_speed.py [--updates 3000] [--rounds 6] [--warmup 50]
        [--obs-dim 17] [--act-dim 6] [--batch 256] [--baseline-ref 694dbe3] [--no-write]

Both sides are :class:`rewardlab.algorithms.offline.iql.IQL` with every
:class:`~rewardlab.config.IQLConfig` default (256 x 256 networks, batch 256) on HalfCheetah-v5
widths (17-d observations, 6-d actions), run in this one process with one torch thread and
XLA's single-thread flags (``core.THREAD_ENV``):

* ``old``: the module as it was at ``--baseline-ref`` (the commit before the JAX step; its
  ``iql.py`` is read with ``git show`` and imported under another name: PyTorch eager, three
  ``torch.optim.Adam`` steps);
* ``new``: the module of this checkout (one jitted JAX step,
  :func:`rewardlab.algorithms.offline.iql_step.iql_step`).

Each side starts from the same seed and trains on the same batches, drawn once from a random
100,000-row :class:`~rewardlab.algorithms.offline.common.Transitions` (16 batches, cycled;
sampling a batch is timed apart, ``sample_ms``). After ``--warmup`` untimed updates each (for
``new`` the first one compiles: ``compile_s``), ``--rounds`` alternating rounds (old, new, old,
...) of ``--updates / --rounds`` updates each are timed, in wall-clock and in process CPU time,
so load from other work on a shared core falls on both sides alike. The figures are updates
per second of the totals (``updates_per_s`` wall, ``updates_per_cpu_s`` CPU); ``speedup`` is
new over old of each; ``cpu_share`` is CPU over wall time (1.0 with a core to itself). The
first update's losses of both sides are recorded too (same weights, same batch).

Results go to ``benchmarks/results/offline_update_speed.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# benchmarks/core.py; importing it also pins one BLAS/OpenMP/XLA thread per process
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

RESULTS_JSON = REPO / "benchmarks" / "results" / "offline_update_speed.json"
#: The last commit with IQL's PyTorch-eager update.
BASELINE_REF = "694dbe3"
IQL_PATH = "src/rewardlab/algorithms/offline/iql.py"
N_ROWS, N_BATCHES = 100_000, 16
LOSSES = ("train/value_loss", "train/critic_loss", "train/actor_loss")


def baseline_module(ref: str) -> ModuleType:
    """``iql.py`` as it was at ``ref``, imported as ``rewardlab_iql_baseline``.

    Raises:
        RuntimeError: if git cannot show the file at ``ref``.
    """
    out = subprocess.run(["git", "show", f"{ref}:{IQL_PATH}"], cwd=REPO, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"git show {ref}:{IQL_PATH} failed: {out.stderr.strip()}")
    spec = importlib.util.spec_from_loader("rewardlab_iql_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(out.stdout, f"{ref}:{IQL_PATH}", "exec"), module.__dict__)  # noqa: S102
    return module


def random_batches(obs_dim: int, act_dim: int, batch: int, seed: int = 0,
                   ) -> tuple[list[dict[str, Any]], float]:
    """``N_BATCHES`` batches from a random dataset, and the mean ms to sample one."""
    import numpy as np

    from rewardlab.algorithms.offline.common import Transitions

    rng = np.random.default_rng(seed)
    data = Transitions(
        rng.standard_normal((N_ROWS, obs_dim), dtype=np.float32),
        rng.uniform(-1, 1, (N_ROWS, act_dim)).astype(np.float32),
        rng.standard_normal(N_ROWS, dtype=np.float32),
        rng.standard_normal((N_ROWS, obs_dim), dtype=np.float32),
        rng.random(N_ROWS) < 0.01,
    )
    t0 = time.perf_counter()
    for _ in range(200):
        data.sample(batch, rng)
    sample_ms = (time.perf_counter() - t0) / 200 * 1e3
    return [data.sample(batch, rng) for _ in range(N_BATCHES)], sample_ms


def timed(agent: Any, batches: list[dict[str, Any]], n: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``n`` updates."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        agent.update(batches[i % len(batches)])
    return time.perf_counter() - t0, time.process_time() - c0


def summarise(updates: int, wall: float, cpu: float) -> dict[str, float]:
    return {"updates": updates, "wall_s": wall, "cpu_s": cpu,
            "updates_per_s": updates / wall, "updates_per_cpu_s": updates / cpu,
            "ms_per_update_cpu": cpu / updates * 1e3, "cpu_share": cpu / wall}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=3000, help="timed updates per side")
    p.add_argument("--rounds", type=int, default=6, help="alternating timed rounds per side")
    p.add_argument("--warmup", type=int, default=50, help="untimed updates per side first")
    p.add_argument("--obs-dim", type=int, default=17)
    p.add_argument("--act-dim", type=int, default=6)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--baseline-ref", default=BASELINE_REF,
                   help="git commit whose iql.py is the 'old' side")
    p.add_argument("--no-write", action="store_true",
                   help="print, do not write the JSON or BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true",
                   help="measure nothing; write BENCHMARKS.md's section from the saved JSON")
    args = p.parse_args(argv)
    if args.updates < args.rounds or args.rounds < 1:
        p.error("--updates must be at least --rounds, and --rounds at least 1")
    return args


def render(rec: dict[str, Any]) -> str:
    """The ``offline_update_speed`` section of BENCHMARKS.md from a results record."""
    begin, end = section_markers("offline_update_speed")
    load0, load1 = rec["load_average_at_start"][0], rec["load_average_at_end"][0]
    rows = [
        f"| {side} ({rec[side]['implementation']}) | {rec[side]['updates_per_s']:.1f} | "
        f"{rec[side]['updates_per_cpu_s']:.1f} | {rec[side]['ms_per_update_cpu']:.1f} |"
        for side in ("old", "new")
    ]
    settings = rec["settings"]
    return "\n".join([
        begin,
        "## IQL update speed (`benchmarks/offline_update_speed.py`)",
        "",
        f"- Command: `{rec['command']}`",
        f"- Date (UTC): {rec['date_utc']}; machine: {rec['machine']['cpu']}, "
        f"{rec['machine']['cpu_count']} logical CPUs, torch {rec['machine']['torch']}; one "
        f"thread; 1-min load average {load0:.1f} at start, {load1:.1f} at end (a shared core: "
        "both sides slowed alike, updates per CPU-second is the steadier figure)",
        f"- IQL update, batch {settings['batch_size']}, networks {settings['hidden_sizes']}, "
        f"obs {settings['obs_dim']}-d, actions {settings['act_dim']}-d; {settings['updates']} "
        f"timed updates per side in {settings['rounds']} alternating rounds, the same batches",
        "",
        "| implementation | updates/s (wall) | updates per CPU-s | CPU ms per update |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Speedup {rec['speedup']:.2f}x wall, {rec['speedup_cpu']:.2f}x CPU; the new side's "
        f"first update (compile) took {rec['new']['compile_s']:.1f} s; the first update's "
        f"losses differ by at most {rec['first_update_max_rel_diff']:.1e} (relative).",
        end,
    ])


def write_section(rec: dict[str, Any]) -> None:
    """Write :func:`render` into BENCHMARKS.md."""
    begin, end = section_markers("offline_update_speed")
    write_markdown_section(BENCHMARKS_MD, begin, end, render(rec))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        write_section(json.loads(RESULTS_JSON.read_text()))
        print(f"wrote the offline_update_speed section of {BENCHMARKS_MD.name}", flush=True)
        return 0
    command = command_line("offline_update_speed.py", argv)
    import torch

    torch.set_num_threads(1)
    from rewardlab.algorithms.offline import iql as new_iql
    from rewardlab.config import IQLConfig

    old_iql = baseline_module(args.baseline_ref)
    load_at_start = list(os.getloadavg())
    batches, sample_ms = random_batches(args.obs_dim, args.act_dim, args.batch)
    cfg = IQLConfig(batch_size=args.batch)
    agents = {"old": old_iql.IQL(args.obs_dim, args.act_dim, cfg, seed=0),
              "new": new_iql.IQL(args.obs_dim, args.act_dim, cfg, seed=0)}
    first: dict[str, dict[str, float]] = {}
    compile_s: dict[str, float] = {}
    for side, agent in agents.items():
        t0 = time.perf_counter()
        first[side] = {k: v for k, v in agent.update(batches[0]).items() if k in LOSSES}
        compile_s[side] = time.perf_counter() - t0
        timed(agent, batches, args.warmup - 1)
    per_round = args.updates // args.rounds
    totals = {side: [0.0, 0.0] for side in agents}
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for side, agent in agents.items():
            wall, cpu = timed(agent, batches, per_round)
            totals[side][0] += wall
            totals[side][1] += cpu
            rounds.append({"round": r, "side": side, **summarise(per_round, wall, cpu)})
            print(f"round {r} {side}: {per_round / wall:6.1f} updates/s wall, "
                  f"{per_round / cpu:6.1f} per CPU-s", flush=True)
    n = per_round * args.rounds
    sides = {side: summarise(n, *totals[side]) for side in agents}
    rec = {
        "algorithm": "iql",
        "old": {**sides["old"], "implementation": f"PyTorch eager ({args.baseline_ref})",
                "first_update_s": compile_s["old"]},
        "new": {**sides["new"], "implementation": "JAX jit (iql_step)",
                "compile_s": compile_s["new"]},
        "speedup": sides["new"]["updates_per_s"] / sides["old"]["updates_per_s"],
        "speedup_cpu": sides["new"]["updates_per_cpu_s"] / sides["old"]["updates_per_cpu_s"],
        "first_update_losses": first,
        "first_update_max_rel_diff": max(
            abs(first["new"][k] - first["old"][k]) / abs(first["old"][k]) for k in LOSSES),
        "sample_ms": sample_ms,
        "rounds": rounds,
        "command": command, "date_utc": utc_now(), "machine": machine_info(),
        "git": git_state(), "baseline_ref": args.baseline_ref,
        "settings": {"obs_dim": args.obs_dim, "act_dim": args.act_dim, "batch_size": args.batch,
                     "hidden_sizes": list(cfg.hidden_sizes), "updates": n,
                     "rounds": args.rounds, "warmup": args.warmup, "torch_threads": 1,
                     "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "note": "old and new alternate in one process; a core shared with other work slows "
                "both (cpu_share < 1); updates_per_cpu_s is the less load-sensitive figure",
    }
    print(f"IQL: old {rec['old']['updates_per_s']:.1f} updates/s "
          f"({rec['old']['updates_per_cpu_s']:.1f} per CPU-s), new "
          f"{rec['new']['updates_per_s']:.1f} ({rec['new']['updates_per_cpu_s']:.1f}); speedup "
          f"{rec['speedup']:.2f}x wall, {rec['speedup_cpu']:.2f}x CPU; compile "
          f"{compile_s['new']:.1f} s", flush=True)
    if args.no_write:
        print(json.dumps({k: rec[k] for k in ("old", "new", "first_update_losses")}, indent=2))
        return 0
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(rec, indent=2) + "\n")
    write_section(rec)
    print(f"wrote {RESULTS_JSON.relative_to(REPO)} and BENCHMARKS.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
