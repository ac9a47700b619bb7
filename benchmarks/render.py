"""Clip rendering speed: seconds to render and encode one segment clip a person labels.

Usage::

    python benchmarks/render.py [--clips 10] [--segment-len 50] [--envs Reacher-v5 HalfCheetah-v5]

For each env it records ``segment_len`` steps of a random policy with their MuJoCo states,
then renders and encodes ``--clips`` clips through :class:`rewardlab.feedback.clips.ClipCache`
(320x240, H.264), timing each clip (render + encode, env already built, as in the web app's
background pool). Writes ``benchmarks/results/render.json`` and the ``render`` section of
``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from core import BENCHMARKS_MD, REPO, machine_info, utc_now, write_markdown_section

from rewardlab.feedback.clips import ClipCache
from rewardlab.types import Segment

BEGIN, END = "<!-- render:begin -->", "<!-- render:end -->"


def record_segment(env_id: str, length: int, seed: int) -> Segment:
    """A random-policy segment of ``length`` steps with ``concat(qpos, qvel)`` states."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    obs_l, act_l, states = [], [], []
    for _ in range(length):
        data = env.unwrapped.data
        states.append(np.concatenate([data.qpos, data.qvel]))
        action = env.action_space.sample()
        obs_l.append(obs)
        act_l.append(action)
        obs, *_ = env.step(action)
    env.close()
    return Segment(np.array(obs_l, np.float32), np.array(act_l, np.float32), None, env_id, 0, 0,
                   segment_id=seed + 1, render_states=np.array(states))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--segment-len", type=int, default=50)
    p.add_argument("--envs", nargs="+", default=["Reacher-v5", "HalfCheetah-v5"])
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = ("python benchmarks/render.py " + shlex.join(given)).strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            # one cache per env: segment ids (the clip file names) repeat across envs here
            cache = ClipCache(Path(tmp) / env_id)
            cache.get_or_render(record_segment(env_id, args.segment_len, 10_000))  # warm-up
            times = []
            for i in range(args.clips):
                segment = record_segment(env_id, args.segment_len, i)
                t0 = time.perf_counter()
                path = cache.get_or_render(segment)
                times.append(time.perf_counter() - t0)
                assert path.stat().st_size > 0
            cache.close()
            rows.append({"env": env_id, "clips": args.clips, "segment_len": args.segment_len,
                         "median_s": statistics.median(times), "mean_s": statistics.mean(times),
                         "max_s": max(times)})
            print(f"{env_id}: median {rows[-1]['median_s']:.3f} s per clip", flush=True)
    result = {"command": command, "date": utc_now(), "machine": machine_info(), "rows": rows}
    out = REPO / "benchmarks" / "results" / "render.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [BEGIN, "## Clip rendering (`benchmarks/render.py`)", "",
             f"- Command: `{command}`", f"- Date (UTC): {result['date']}",
             f"- Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, Python {m['python']}",
             "- Clip: 320x240 H.264 MP4 of one segment, rendered with MuJoCo (EGL, on the CPU) "
             "and encoded with imageio-ffmpeg; env already built (as in the app's render pool)",
             "", "| env | steps per clip | clips | median s/clip | mean s/clip | max s/clip |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['env']} | {r['segment_len']} | {r['clips']} | {r['median_s']:.3f} | "
              f"{r['mean_s']:.3f} | {r['max_s']:.3f} |" for r in rows]
    lines += ["", END]
    write_markdown_section(BENCHMARKS_MD, BEGIN, END, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
