"""Engine speed: SB3 SAC against SBX SAC and SBX CrossQ on the true reward (issue 11, item 1).

Usage::

    python benchmarks/engine_speed.py [--env HalfCheetah-v5] [--steps 15000] [--seeds 0 1]
        [--agents sb3_sac sbx_sac crossq] [--eval-every 5000] [--eval-episodes 5]
        [--workers 2] [--no-write]

Every (agent, seed) run trains one off-policy agent on the environment's TRUE reward in its own
process (``--workers`` at a time, side by side, each pinned to a core of its own with the CPU
affinity, and to one torch thread, one BLAS/OpenMP thread, XLA's single-thread flags) and
reports:

* ``steps_per_cpu_s``: env steps per CPU-second of ``learn`` alone (evaluations excluded),
  after subtracting the JIT compilation; each process has one thread, so this is env steps/s
  on a core of its own, whatever else runs on the machine. ``speedup_vs_sb3_sac`` is its ratio
  to SB3 SAC's (``speedup_vs_sb3_sac_wall``: the ratio of the wall-clock figures);
* ``steps_per_s``: the same per wall-clock second, and ``cpu_share`` (CPU over wall time: 1.0
  when the process had a core to itself);
* ``compile_s``: the one-off JIT warm-up inside ``learn`` (JAX traces and compiles the
  actor's sampling and the update step on first use), measured as the excess over the median
  step time of the steps that took more than ten times the median (random-action and training
  phases apart); about 0 for SB3;
* ``returns``: the deterministic gold return (mean over ``--eval-episodes`` episodes,
  :func:`rewardlab.diagnostics.evaluation.evaluate`) every ``--eval-every`` steps, so return per
  step can be compared.

Agents (all with ``learning_starts``, ``batch_size``, ``buffer_size``, ``gamma``,
``train_freq`` and ``gradient_steps`` of :class:`rewardlab.config.SACConfig`'s defaults, so the
random warm-up phase is identical):

* ``sb3_sac``: Stable-Baselines3 SAC with every SACConfig default (the PEBBLE backbone today);
* ``sbx_sac``: SBX SAC with the same hyperparameters (lr 3e-4, tau 0.005, [256, 256]);
* ``crossq``: SBX CrossQ with SBX's defaults (lr 1e-3, Adam b1 0.5, policy_delay 3, batch
  renorm in actor and critic, no target network) except a [256, 256] critic (SBX's default is
  [1024, 1024]) and the shared learning_starts (SBX's default is 100).

Seeds come from :func:`rewardlab.seeding.child_seeds` (the env and agent streams a PEBBLE run
uses), identical across agents. Speedups are ratios of the means over seeds. Results go to
``benchmarks/results/engine_speed.json`` and the ``engine_speed`` section of ``BENCHMARKS.md``
unless ``--no-write``; :func:`reaggregate` redoes the aggregation of a results file without
training.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402  (benchmarks/core.py; sets one BLAS/XLA thread per process)

RESULTS_JSON = core.REPO / "benchmarks" / "results" / "engine_speed.json"
BEGIN, END = core.section_markers("engine_speed")
AGENTS = ("sb3_sac", "sbx_sac", "crossq")
BASELINE = "sb3_sac"
TARGET_SPEEDUP = 2.0
#: A step slower than this many medians is counted as JIT compilation.
COMPILE_OUTLIER = 10.0
LABELS = {"sb3_sac": "SB3 SAC", "sbx_sac": "SBX SAC", "crossq": "SBX CrossQ [256, 256]"}


# ----------------------------------------------------------------------------- one run

def build_agent(agent: str, venv: Any, seed: int) -> Any:
    """The agent, with the shared SACConfig defaults (see the module docstring)."""
    from rewardlab.config import SACConfig

    s = SACConfig()
    common = dict(buffer_size=s.buffer_size, batch_size=s.batch_size, gamma=s.gamma,
                  learning_starts=s.learning_starts, train_freq=s.train_freq,
                  gradient_steps=s.gradient_steps, seed=seed, verbose=0)
    if agent == "sb3_sac":
        from stable_baselines3 import SAC

        return SAC("MlpPolicy", venv, learning_rate=s.learning_rate, tau=s.tau, device="cpu",
                   policy_kwargs={"net_arch": list(s.net_arch)}, **common)
    if agent == "sbx_sac":
        from sbx import SAC as SbxSAC

        return SbxSAC("MlpPolicy", venv, learning_rate=s.learning_rate, tau=s.tau,
                      policy_kwargs={"net_arch": list(s.net_arch)}, **common)
    if agent == "crossq":
        from sbx import CrossQ

        return CrossQ("MlpPolicy", venv,
                      policy_kwargs={"net_arch": {"pi": [256, 256], "qf": [256, 256]}}, **common)
    raise ValueError(f"unknown agent {agent!r}")


def compile_excess(durations: list[float], learning_starts: int) -> float:
    """Seconds of the steps slower than ``COMPILE_OUTLIER`` medians, above the median.

    The random-action phase (the first ``learning_starts`` steps) and the training phase have
    their own medians.
    """
    total = 0.0
    for phase in (durations[:learning_starts], durations[learning_starts:]):
        if phase:
            med = statistics.median(phase)
            total += sum(d - med for d in phase if d > COMPILE_OUTLIER * med)
    return float(total)


def run_one(agent: str, seed: int, env_id: str, steps: int, eval_every: int,
            eval_episodes: int) -> dict[str, Any]:
    """Train one agent in this (worker) process; returns its row."""
    import torch

    torch.set_num_threads(1)
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from rewardlab.config import EnvConfig
    from rewardlab.diagnostics.evaluation import evaluate
    from rewardlab.envs.make import make_env
    from rewardlab.seeding import child_seeds

    class StepTimes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = self.last_cpu = 0.0
            self.durations: list[float] = []
            self.cpu_durations: list[float] = []

        def _on_training_start(self) -> None:
            self.last, self.last_cpu = time.perf_counter(), time.process_time()

        def _on_step(self) -> bool:
            now, cpu = time.perf_counter(), time.process_time()
            self.durations.append(now - self.last)
            self.cpu_durations.append(cpu - self.last_cpu)
            self.last, self.last_cpu = now, cpu
            return True

    env_cfg = EnvConfig(id=env_id)
    seeds = child_seeds(seed)
    venv = make_vec_env(lambda: make_env(env_cfg), n_envs=1, seed=seeds["env"])
    model = build_agent(agent, venv, seeds["agent"])
    eval_env = make_env(env_cfg)
    timer = StepTimes()
    learn_s, learn_cpu_s, returns = 0.0, 0.0, []
    load_start = os.getloadavg()
    while model.num_timesteps < steps:
        chunk = min(eval_every, steps - model.num_timesteps)
        t0, c0 = time.perf_counter(), time.process_time()
        model.learn(chunk, reset_num_timesteps=False, progress_bar=False, callback=timer)
        learn_s += time.perf_counter() - t0
        learn_cpu_s += time.process_time() - c0
        res = evaluate(eval_env, lambda o: model.predict(o, deterministic=True)[0], None,
                       eval_episodes, seed=seeds["eval_env"])
        returns.append([int(model.num_timesteps), float(res.gold_returns.mean())])
        print(f"[{agent}-s{seed}] step {model.num_timesteps}: gold {returns[-1][1]:.1f} "
              f"({model.num_timesteps / learn_s:.1f} steps/s so far)", flush=True)
    venv.close()
    eval_env.close()
    compile_s = compile_excess(timer.durations, model.learning_starts)
    compile_cpu_s = compile_excess(timer.cpu_durations, model.learning_starts)
    train_phase = timer.durations[model.learning_starts:]
    train_s = sum(train_phase) - compile_excess(train_phase, 0)
    threads = {"torch": torch.get_num_threads(), "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
               "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else None,
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    return {"agent": agent, "seed": seed, "env": env_id, "steps": int(model.num_timesteps),
            "learn_s": learn_s, "compile_s": compile_s,
            "steps_per_s": model.num_timesteps / (learn_s - compile_s),
            "steps_per_s_incl_compile": model.num_timesteps / learn_s,
            "train_phase_steps_per_s": len(train_phase) / train_s if train_s > 0 else None,
            "learn_cpu_s": learn_cpu_s, "compile_cpu_s": compile_cpu_s,
            "steps_per_cpu_s": model.num_timesteps / (learn_cpu_s - compile_cpu_s),
            "cpu_share": learn_cpu_s / learn_s,
            "loadavg_start_end": [load_start[0], os.getloadavg()[0]],
            "returns": returns, "final_return": returns[-1][1], "pid": os.getpid(),
            "threads": threads, "finished_utc": core.utc_now()}


# ----------------------------------------------------------------------------- aggregate

def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per agent: mean steps/s, compile time, return by step over seeds, and the speedup."""
    out: dict[str, dict[str, Any]] = {}
    for agent in [a for a in AGENTS if any(r["agent"] == a for r in rows)]:
        mine = sorted((r for r in rows if r["agent"] == agent), key=lambda r: r["seed"])
        by_step: dict[int, list[float]] = {}
        for r in mine:
            for step, ret in r["returns"]:
                by_step.setdefault(int(step), []).append(ret)
        sps = [r["steps_per_s"] for r in mine]
        cpu_sps = [r["steps_per_cpu_s"] for r in mine if r.get("steps_per_cpu_s")]
        out[agent] = {
            "seeds": [r["seed"] for r in mine],
            "steps_per_s": _mean(sps),
            "steps_per_s_std": statistics.stdev(sps) if len(sps) > 1 else None,
            "compile_s": _mean([r["compile_s"] for r in mine]),
            "steps_per_cpu_s": _mean(cpu_sps),
            "cpu_share": _mean([r["cpu_share"] for r in mine if r.get("cpu_share")]),
            "returns_by_step": {str(k): _mean(v) for k, v in sorted(by_step.items())},
            "final_return": _mean([r["final_return"] for r in mine]),
        }
    base = out.get(BASELINE, {}).get("steps_per_s")
    base_cpu = out.get(BASELINE, {}).get("steps_per_cpu_s")
    for agg in out.values():
        agg["speedup_vs_sb3_sac_wall"] = agg["steps_per_s"] / base if base else None
        agg["speedup_vs_sb3_sac_cpu"] = (agg["steps_per_cpu_s"] / base_cpu
                                         if base_cpu and agg["steps_per_cpu_s"] else None)
        # The headline: per CPU-second (a core of its own), robust to other load on the box.
        agg["speedup_vs_sb3_sac"] = agg["speedup_vs_sb3_sac_cpu"] or agg["speedup_vs_sb3_sac_wall"]
    return out


# ----------------------------------------------------------------------------- report

def _f(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def render_section(rec: dict[str, Any]) -> str:
    agg = rec["agents"]
    steps = sorted({int(k) for a in agg.values() for k in a["returns_by_step"]})
    head = ["Agent", "Steps per CPU-s", "Speedup vs SB3 SAC", "Wall steps/s", "Wall speedup",
            "Core share", "Compile (s)",
            *[f"Return @ {s / 1000:g}k" for s in steps]]
    lines = [BEGIN, "## Engine speed (`benchmarks/engine_speed.py`)", "",
             f"{rec['env']}, true reward, {rec['steps']} env steps per run, seeds "
             f"{', '.join(map(str, rec['seeds']))}; {rec['workers']} runs side by side, one "
             f"thread each. Written {rec['written_utc']} on {rec['machine']['cpu']} "
             f"({rec['machine']['cpu_count']} CPUs).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, a in agg.items():
        std = f" ± {a['steps_per_s_std']:.1f}" if a["steps_per_s_std"] is not None else ""
        cells = [LABELS.get(name, name), _f(a.get("steps_per_cpu_s")),
                 f"{_f(a['speedup_vs_sb3_sac'], 2)}×", f"{a['steps_per_s']:.1f}{std}",
                 f"{_f(a.get('speedup_vs_sb3_sac_wall'), 2)}×", _f(a.get("cpu_share"), 2),
                 _f(a["compile_s"]),
                 *[_f(a["returns_by_step"].get(str(s))) for s in steps]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Steps per CPU-s: env steps over the CPU time of `learn` alone (evaluations "
              "excluded) minus the one-off JIT compilation (shown apart), i.e. env steps/s on a "
              "core of its own; robust to other load on the machine, so it is the headline "
              "speedup. Wall steps/s: the same over wall time; core share: CPU over wall time "
              "of `learn` (1.0 = a core of its own; below 1, other processes took the rest and "
              "the wall figures are not comparable between agents). Returns: deterministic "
              f"gold return, mean over {rec['eval_episodes']} evaluation episodes and over "
              "seeds. All agents share "
              "SACConfig's learning_starts (1000), batch (256), gamma and buffer; SB3 SAC and "
              "SBX SAC share every SACConfig default; CrossQ uses SBX's defaults (lr 1e-3, Adam "
              "b1 0.5, policy_delay 3, batch renorm, no target network) with a [256, 256] "
              f"critic. Target: at least {TARGET_SPEEDUP:.0f}× SB3 SAC at equal or better "
              "return per step.", "",
              *([f"Note: {rec['note']}", ""] if rec.get("note") else []),
              f"Command: `{rec['command']}`", "", END]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--steps", type=int, default=15_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-write", action="store_true",
                   help="leave benchmarks/results and BENCHMARKS.md alone")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = core.command_line("engine_speed.py", argv)
    # Slowest agent first, so the two workers finish at about the same time.
    jobs = [(a, s) for a in args.agents for s in args.seeds]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=core.pin_worker) as pool:
        futures = {pool.submit(run_one, a, s, args.env, args.steps, args.eval_every,
                               args.eval_episodes): (a, s) for a, s in jobs}
        for fut in as_completed(futures):
            rows.append(fut.result())
    rec = {"env": args.env, "steps": args.steps, "seeds": args.seeds, "workers": args.workers,
           "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
           "agents": aggregate(rows),
           "rows": sorted(rows, key=lambda r: (AGENTS.index(r["agent"]), r["seed"])),
           "wall_s": time.perf_counter() - t0, "command": command,
           "written_utc": core.utc_now(), "machine": _machine()}
    for name, a in rec["agents"].items():
        print(f"{name}: {_f(a['steps_per_cpu_s'])} steps per CPU-s "
              f"({_f(a['speedup_vs_sb3_sac'], 2)}x), {a['steps_per_s']:.1f} wall steps/s, "
              f"returns {a['returns_by_step']}", flush=True)
    if args.no_write:
        print(render_section(rec))
        return 0
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(rec, indent=2) + "\n")
    core.write_markdown_section(core.BENCHMARKS_MD, BEGIN, END, render_section(rec))
    print(f"wrote {os.path.relpath(RESULTS_JSON, core.REPO)} and BENCHMARKS.md", flush=True)
    return 0


def _machine() -> dict[str, Any]:
    info = core.machine_info()
    for mod in ("jax", "sbx", "stable_baselines3"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001  (optional extra not installed)
            info[mod] = None
    return info


def reaggregate(path: Path = RESULTS_JSON) -> dict[str, Any]:
    """Recompute ``agents`` of a results file from its ``rows`` (after a change of the
    aggregation; no training) and rewrite it and the BENCHMARKS.md section."""
    rec = json.loads(path.read_text())
    rec["agents"] = aggregate(rec["rows"])
    path.write_text(json.dumps(rec, indent=2) + "\n")
    core.write_markdown_section(core.BENCHMARKS_MD, BEGIN, END, render_section(rec))
    return rec


if __name__ == "__main__":
    sys.exit(main())
