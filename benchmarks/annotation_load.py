"""Load test of the annotation web app: many annotators labelling at once, on loopback only.

Usage::

    python benchmarks/annotation_load.py [--seconds 60] [--clients 20] [--queries 10000]
                                         [--out-dir benchmarks/runs/annotation_load] [--no-write]

A throwaway run directory gets a SQLite feedback store with ``--queries`` pending queries (one
round, over 200 small segments without ``render_states``) and ``--clients`` annotators. The app
is served exactly as ``rewardlab annotate RUN_DIR --host 127.0.0.1 --port P`` serves it (uvicorn,
one process, overlap 1), in a subprocess. Each client is a thread with its own keep-alive
``httpx.Client`` and its own annotator token; it loops ``GET /api/next`` -> ``POST
/api/preferences`` (a random label) until the time is up. Clips are **not** downloaded: this
measures the labelling API and the store, not video rendering (``benchmarks/render.py`` times
that). Nothing leaves 127.0.0.1.

Afterwards the server is stopped and the store is audited against what the clients saw:

* ``submitted``: answers acknowledged with ``201``;
* ``stored``: preference rows in the store;
* ``lost``: acknowledged answers missing from the store (or stored with another label or
  teacher);
* ``duplicated``: stored answers in excess of one per query (overlap 1 promises no query is handed
  to two annotators), plus stored answers no client was told about;
* ``p50_ms`` / ``p95_ms``: latency percentiles of all API requests (both kinds), in milliseconds,
  measured by the clients (request sent to response read).

Results go to ``benchmarks/results/annotation_load.json`` and to the ``annotation_load`` section
of ``BENCHMARKS.md``, unless ``--no-write`` is given. The run directory (with the server log) is
``--out-dir``, replaced on each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from rewardlab.store import FeedbackStore
from rewardlab.types import Segment

REPO = Path(__file__).resolve().parent.parent
RESULTS_JSON = REPO / "benchmarks" / "results" / "annotation_load.json"
BEGIN, END = "<!-- annotation_load:begin -->", "<!-- annotation_load:end -->"
LABELS = ("left", "right", "equal", "skip")
#: Segments the queries are drawn from.
N_SEGMENTS = 200
#: Seconds a client waits for one response before counting the request as failed.
REQUEST_TIMEOUT = 30.0


@dataclass
class ClientLog:
    """What one client did and saw."""

    name: str
    acknowledged: list[tuple[int, str]] = field(default_factory=list)  # (query_id, label), 201s
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "post": []})
    statuses: Counter[str] = field(default_factory=Counter)  # "GET 200", "POST 409", "POST error"
    ran_out: bool = False  # got 204: no query left for this annotator


def build_run(run_dir: Path, n_queries: int, n_annotators: int, seed: int = 0) -> list[str]:
    """Make a run directory whose store holds ``n_queries`` pending round-0 queries.

    Args:
        run_dir: created (must not hold a store yet).
        n_queries: pending queries, pairs of distinct random segments.
        n_annotators: annotators ``annotator-00``, ``annotator-01``, ...

    Returns:
        The annotators' tokens, in name order.
    """
    rng = np.random.default_rng(seed)
    segments = [
        Segment(
            obs=rng.normal(size=(10, 4)).astype(np.float32),
            actions=rng.uniform(-1, 1, size=(10, 2)).astype(np.float32),
            true_rewards=None,
            env_id="Reacher-v5",
            episode_id=i,
            start_step=0,
        )
        for i in range(N_SEGMENTS)
    ]
    with FeedbackStore.open(run_dir) as store:
        ids = np.asarray(store.records.add_segments(segments))
        left = rng.integers(0, N_SEGMENTS, size=n_queries)
        right = (left + rng.integers(1, N_SEGMENTS, size=n_queries)) % N_SEGMENTS  # != left
        pairs = list(zip(ids[left].tolist(), ids[right].tolist(), strict=True))
        store.records.add_queries(pairs, round=0)
        add = store.annotation.add_annotator
        return [add(f"annotator-{i:02d}")[1] for i in range(n_annotators)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(run_dir: Path, startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``rewardlab annotate RUN_DIR --host 127.0.0.1 --port P`` in a subprocess.

    Yields the base URL once ``GET /`` answers; stops the server (SIGTERM, then SIGKILL after
    30 s) on exit. Its output goes to ``run_dir/server.log``.

    Raises:
        RuntimeError: if the server exits or does not answer within ``startup_timeout`` s.
    """
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "rewardlab.cli.main", "annotate", str(run_dir),
           "--host", "127.0.0.1", "--port", str(port)]
    with open(run_dir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with code {proc.returncode}; see {run_dir}/server.log"
                    )
                try:
                    if httpx.get(base + "/", timeout=2.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer within {startup_timeout} s")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _client(base: str, name: str, token: str, stop: threading.Event, seed: int) -> ClientLog:
    """Loop GET /api/next -> POST /api/preferences until ``stop`` is set or nothing is left."""
    log = ClientLog(name)
    rng = np.random.default_rng(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                resp = http.get("/api/next")
            except httpx.HTTPError:
                log.statuses["GET error"] += 1
                continue
            log.latencies_ms["next"].append(1000 * (time.perf_counter() - t0))
            log.statuses[f"GET {resp.status_code}"] += 1
            if resp.status_code == 204:
                log.ran_out = True
                return log
            if resp.status_code != 200:
                continue
            query_id = int(resp.json()["query_id"])
            label = LABELS[int(rng.integers(len(LABELS)))]
            t0 = time.perf_counter()
            try:
                resp = http.post("/api/preferences", json={"query_id": query_id, "label": label})
            except httpx.HTTPError:  # the answer may or may not be stored: the audit tells
                log.statuses["POST error"] += 1
                continue
            log.latencies_ms["post"].append(1000 * (time.perf_counter() - t0))
            log.statuses[f"POST {resp.status_code}"] += 1
            if resp.status_code == 201:
                log.acknowledged.append((query_id, label))
    return log


def run_clients(base: str, tokens: list[str], seconds: float) -> list[ClientLog]:
    """Run one client thread per token against ``base`` for ``seconds``; return their logs."""
    stop = threading.Event()
    logs: list[ClientLog | None] = [None] * len(tokens)

    def work(i: int) -> None:
        logs[i] = _client(base, f"annotator-{i:02d}", tokens[i], stop, seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return [log for log in logs if log is not None]


def audit(run_dir: Path, logs: list[ClientLog]) -> dict[str, int]:
    """Compare the store with the clients' acknowledged answers (see the module docstring)."""
    acked = Counter((q, log.name, label) for log in logs for q, label in log.acknowledged)
    with FeedbackStore.open(run_dir) as store:
        prefs = store.records.preferences()
    stored = Counter((p.query_id, p.teacher_id, p.label.name.lower()) for p in prefs)
    per_query = Counter(p.query_id for p in prefs)
    return {
        "submitted": sum(acked.values()),
        "stored": len(prefs),
        "lost": sum((acked - stored).values()),
        "duplicated": sum(n - 1 for n in per_query.values()) + sum((stored - acked).values()),
    }


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_load(run_dir: Path, clients: int, queries: int, seconds: float) -> dict[str, object]:
    """Build a run in ``run_dir``, serve it, load it with ``clients`` clients, audit the store.

    Returns:
        The measured figures: ``annotators``, ``submitted``, ``stored``, ``lost``,
        ``duplicated``, ``p50_ms``, ``p95_ms`` and details (per-endpoint percentiles, HTTP
        status counts, requests per second, whether any client ran out of queries).
    """
    tokens = build_run(run_dir, queries, clients)
    with serve(run_dir) as base:
        t0 = time.perf_counter()
        logs = run_clients(base, tokens, seconds)
        elapsed = time.perf_counter() - t0
    counts = audit(run_dir, logs)
    every = [ms for log in logs for kind in ("next", "post") for ms in log.latencies_ms[kind]]
    statuses: Counter[str] = Counter()
    for log in logs:
        statuses.update(log.statuses)
    kinds = {k: [ms for log in logs for ms in log.latencies_ms[k]] for k in ("next", "post")}
    return {
        "annotators": clients,
        **counts,
        "p50_ms": _percentile(every, 50),
        "p95_ms": _percentile(every, 95),
        "p50_next_ms": _percentile(kinds["next"], 50),
        "p95_next_ms": _percentile(kinds["next"], 95),
        "p50_post_ms": _percentile(kinds["post"], 50),
        "p95_post_ms": _percentile(kinds["post"], 95),
        "requests": len(every),
        "requested_seconds": seconds,
        "seconds": round(elapsed, 1),
        "answers_per_s": round(counts["submitted"] / elapsed, 1),
        "statuses": dict(sorted(statuses.items())),
        "pending_queries": queries,
        "ran_out": any(log.ran_out for log in logs),
    }


def _markdown(result: dict[str, object]) -> str:
    m = result["machine"]
    assert isinstance(m, dict)
    load = result["load_average_1_5_15_min"]
    assert isinstance(load, dict)
    statuses = ", ".join(f"{k}: {v}" for k, v in result["statuses"].items())  # type: ignore[union-attr]
    lines = [
        BEGIN,
        "## Annotation web app under load (`benchmarks/annotation_load.py`)",
        "",
        f"- Command: `{result['command']}`",
        f"- Date (UTC): {result['date']}",
        f"- Machine: {m['cpu']}, {m['cpu_count']} logical CPUs, Python {m['python']} "
        "(server and clients on the same machine, over 127.0.0.1)",
        f"- Setup: `rewardlab annotate` (uvicorn, one process, SQLite store, overlap 1) with "
        f"{result['pending_queries']} pending queries; {result['annotators']} annotators, one "
        "client thread each, looping `GET /api/next` -> `POST /api/preferences` for "
        f"{result['requested_seconds']} s ({result['seconds']} s until the last request in "
        "flight returned); clips not downloaded",
        f"- HTTP statuses seen: {statuses}",
        "- System load average (1, 5, 15 min) before / after, other jobs included: "
        f"{load['before']} / {load['after']}",
        "",
        "| annotators | answers acknowledged (201) | answers stored | lost | duplicated "
        "| answers/s | p50 ms | p95 ms | p50 / p95 ms, GET next | p50 / p95 ms, POST answer |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['annotators']} | {result['submitted']} | {result['stored']} | "
        f"{result['lost']} | {result['duplicated']} | {result['answers_per_s']} | "
        f"{result['p50_ms']} | {result['p95_ms']} | {result['p50_next_ms']} / "
        f"{result['p95_next_ms']} | {result['p50_post_ms']} / {result['p95_post_ms']} |",
        "",
        END,
    ]
    return "\n".join(lines)


def _write_markdown(section: str) -> None:
    from core import BENCHMARKS_MD, write_markdown_section

    write_markdown_section(BENCHMARKS_MD, BEGIN, END, section)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the clients run")
    p.add_argument("--clients", type=int, default=20, help="concurrent annotators")
    p.add_argument("--queries", type=int, default=10000, help="pending queries in the store")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "runs" / "annotation_load",
                   help="run directory (replaced)")
    p.add_argument("--no-write", action="store_true",
                   help="print the result; do not write benchmarks/results or BENCHMARKS.md")
    args = p.parse_args(argv)
    for name in ("seconds", "clients", "queries"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be > 0")
    given = sys.argv[1:] if argv is None else argv
    command = ("python benchmarks/annotation_load.py " + shlex.join(given)).strip()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from core import git_state, machine_info, utc_now

    if args.out_dir.exists():
        shutil.rmtree(args.out_dir)
    args.out_dir.mkdir(parents=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    figures = run_load(args.out_dir, args.clients, args.queries, args.seconds)
    figures["load_average_1_5_15_min"] = {
        "before": load_before, "after": [round(x, 2) for x in os.getloadavg()]
    }
    result = {
        "command": command,
        "date": utc_now(),
        "machine": machine_info(),
        "git": git_state(),
        **figures,
    }
    print(json.dumps(result, indent=2))
    if figures["ran_out"]:
        print("warning: clients ran out of pending queries; raise --queries", file=sys.stderr)
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(result, indent=2) + "\n")
        _write_markdown(_markdown(result))
    return 0 if figures["lost"] == figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
