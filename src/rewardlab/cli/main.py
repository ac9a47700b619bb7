"""``rewardlab``: train from preference feedback, inspect runs.

Commands::

    rewardlab train [CONFIG.yaml] [--set key=value ...] [--run-dir DIR]
    rewardlab train --resume RUN_DIR [--set total_steps=N]
    rewardlab report RUN_DIR [--html] [--out REPORT.html]
    rewardlab compare RUN_DIR RUN_DIR ... [--out compare.html]
    rewardlab export RUN_DIR OUT.jsonl|OUT.parquet
    rewardlab annotators add NAME --run RUN_DIR [--host H --port P]
    rewardlab annotate RUN_DIR [--host 127.0.0.1] [--port 8000] [--overlap 1]
    rewardlab sweep SWEEP.yaml [--out DIR] [--address RAY_ADDRESS]
    rewardlab config [CONFIG.yaml] [--set key=value ...]
    rewardlab dataset make [--env ENV] [--tiers random,medium,...] [--expert-steps N] [...]
    rewardlab dataset list
    rewardlab dataset info ID_OR_PATH
    rewardlab lm pretrain [--out DIR] [--set key=value ...] [--no-progress]

Bad input (unknown key, bad value, missing or malformed file, an env that cannot be made, a
schedule that cannot spend its query budget, a run too big for this machine's memory, an
unreachable store) is reported as one clear message naming the field, with exit status 2,
before anything starts: ``train`` runs :func:`rewardlab.algorithms.preflight.preflight` before
it creates the run directory.

``report`` and ``compare`` also read language-model runs (``summary.json`` ``"track": "lm"``;
:mod:`rewardlab.cli.lm_report`); ``compare`` refuses to mix them with control runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rewardlab.algorithms.progress import safe_console
from rewardlab.cli.dataset import add_dataset_parser, cmd_dataset
from rewardlab.cli.lm import add_lm_parser, cmd_lm
from rewardlab.errors import ConfigError, RewardLabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rewardlab",
        description="Reinforcement learning from preference feedback, with gold-vs-proxy "
        "reward diagnostics.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an agent from preference feedback")
    t.add_argument("config", nargs="?", help="YAML config (default: the embedded default)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set env.id=HalfCheetah-v5 (repeatable)")
    t.add_argument("--run-dir", help="run directory (default: runs/<algo>-<env>-<time>-s<seed>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    t.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    r = sub.add_parser("report", help="print a summary table of a run")
    r.add_argument("run_dir")
    r.add_argument("--html", action="store_true",
                   help="also write a self-contained HTML report (plots embedded)")
    r.add_argument("--out", help="HTML report path (default: RUN_DIR/report.html)")
    cp = sub.add_parser("compare", help="overlay several runs in one HTML page")
    cp.add_argument("run_dirs", nargs="+")
    cp.add_argument("--out", default="compare.html", help="HTML path (default: compare.html)")
    e = sub.add_parser("export", help="export a run's preferences to .jsonl or .parquet")
    e.add_argument("run_dir")
    e.add_argument("out", help="output file: .jsonl or .parquet")
    an = sub.add_parser("annotators", help="manage the people who label a run")
    an_sub = an.add_subparsers(dest="annotators_command", required=True)
    aa = an_sub.add_parser("add", help="add an annotator and print their login link")
    aa.add_argument("name")
    aa.add_argument("--run", required=True, metavar="RUN_DIR")
    aa.add_argument("--host", help="host in the link (default: where the run's trainer "
                    "serves the app, else 127.0.0.1)")
    aa.add_argument("--port", type=int, help="port in the link (default: the trainer's, else "
                    "8000)")
    w = sub.add_parser("annotate", help="serve the labelling web app of a run")
    w.add_argument("run_dir")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8000)
    w.add_argument("--overlap", type=int, default=1,
                   help="annotators handed each query (1: never the same query)")
    sw = sub.add_parser("sweep", help="run a grid of config overrides x seeds on Ray Tune")
    sw.add_argument("sweep_file", metavar="SWEEP.yaml")
    sw.add_argument("--out", help="where the trials' runs and records.jsonl go "
                    "(default: runs/sweeps/<name>)")
    sw.add_argument("--address", help="an existing Ray cluster (default: a local Ray)")
    c = sub.add_parser("config", help="print the resolved config as YAML")
    c.add_argument("config", nargs="?")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_dataset_parser(sub)  # dataset make | list | info (rewardlab.cli.dataset)
    add_lm_parser(sub)  # lm pretrain (rewardlab.cli.lm)
    return p


def _default_run_dir(algorithm: str, env_id: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(env_id).name if Path(env_id).is_absolute() else env_id  # a dataset path
    return Path("runs") / f"{algorithm}-{name.replace('/', '_')}-{stamp}-s{seed}"


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.config import load_config

    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("progress_bar=false")
    if args.resume:
        from rewardlab.algorithms.run_dir import resolve_resume

        if args.config:
            raise RewardLabError("train --resume takes the run's own config; drop CONFIG.yaml")
        if args.run_dir:
            raise RewardLabError("train --resume RUN_DIR continues RUN_DIR; drop --run-dir")
        run_dir = Path(args.resume)
        config = resolve_resume(run_dir, overrides)
    else:
        config = load_config(args.config, overrides)
        run_dir = Path(args.run_dir) if args.run_dir else _default_run_dir(
            config.algorithm,
            config.lm.task if config.is_lm else config.dataset or config.env.id, config.seed
        )
        if run_dir.exists() and not run_dir.is_dir():
            raise RewardLabError(f"--run-dir {run_dir}: exists and is not a directory")
        if (run_dir / "config.yaml").exists():
            raise RewardLabError(
                f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir"
            )
    from rewardlab.algorithms.preflight import preflight, with_dataset_env

    # the env, the schedule, memory and the store; creates nothing. A resumed run may end
    # before its budget is spent (e.g. stopped early with a lower total_steps): not an error.
    # An offline run evaluates in its dataset's env (env.id from the dataset). A
    # language-model run has no env: its config checks are all it needs before it starts.
    if not config.is_lm:
        config = with_dataset_env(config)
        preflight(config, check_budget=not args.resume)
    from rewardlab.algorithms import train

    if config.is_lm:
        lm = config.lm
        labels = (f"teacher {config.teacher.preset}" if lm.judge == "none"
                  else f"judge {lm.judge}")
        what = ("gold reward" if lm.reward == "gold"
                else f"{config.feedback.total_budget} queries, {labels}")
        length = (f"best-of-n {list(lm.bon_n)}" if config.algorithm == "bon"
                  else f"{lm.steps} steps")
        console.print(
            f"[bold]rewardlab[/] {config.algorithm} on text task {lm.task}, seed {config.seed}, "
            f"{length}, {what} -> {run_dir}"
        )
    elif config.is_offline:
        off = config.offline
        labels = (f"reward {off.reward_model} from {config.feedback.total_budget} queries"
                  if off.reward == "learned" else "true reward")
        if config.algorithm == "cpl":
            labels = f"{config.feedback.total_budget} queries"
        console.print(
            f"[bold]rewardlab[/] {config.algorithm} on {config.dataset} ({config.env.id}), "
            f"seed {config.seed}, {off.updates} updates, {labels} -> {run_dir}"
        )
    else:
        console.print(
            f"[bold]rewardlab[/] {config.algorithm} on {config.env.id}, seed {config.seed}, "
            f"{config.total_steps} steps, teacher {config.teacher.preset}, "
            f"{config.feedback.total_budget} queries -> {run_dir}"
        )
    server = None
    if config.teacher.human and config.human.serve:
        from rewardlab.web.server import BackgroundServer

        run_dir.mkdir(parents=True, exist_ok=True)
        h = config.human
        server = BackgroundServer(run_dir, h.host, h.port, h.overlap, config.store_url)
    try:
        summary = train(config, run_dir, resume=bool(args.resume), console=console,
                        server=server)
    finally:
        if server is not None:
            server.close()
    _print_report(run_dir, console)
    return 130 if summary["interrupted"] else 0


def _print_report(run_dir: Path, console: Console) -> None:
    from rewardlab.diagnostics.metrics import read_metrics, series

    summary_path = run_dir / "summary.json"
    if not summary_path.exists() and not (run_dir / "metrics.jsonl").exists():
        raise RewardLabError(f"{run_dir}: not a run directory (no summary.json or metrics.jsonl)")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    rows = read_metrics(run_dir)
    if _is_lm(run_dir, summary):
        from rewardlab.cli.lm_report import print_lm_report

        print_lm_report(run_dir, rows, summary, console, _print_feedback)
        return
    offline = _is_offline(run_dir, summary)
    table = Table(title=f"run {run_dir}" + (" (x: gradient updates)" if offline else ""))
    # short headers: the table fits an 80-column terminal; offline runs count updates and
    # show the D4RL normalised score where online runs show the distance from the reference
    last = ("score", "eval/normalized_score") if offline else ("sqrt KL", "diagnostics/sqrt_kl")
    for header in ("update" if offline else "step", "gold return", "proxy return", "queries",
                   "held-out", "disagr.", last[0]):
        table.add_column(header, justify="right", no_wrap=True)
    queries = 0.0
    acc = float("nan")
    for r in rows:
        queries = r.get("feedback/queries_answered", queries) or queries
        if r.get("reward_model/heldout_accuracy") is not None:
            acc = r["reward_model/heldout_accuracy"]
        if r.get("eval/gold_return") is None:
            continue
        proxy = r.get("eval/proxy_return")
        dis = r.get("reward_model/disagreement_on_policy")
        kl = r.get(last[1], r.get("eval/sqrt_kl"))  # language-model runs log eval/sqrt_kl
        table.add_row(
            str(r["step"]), f"{r['eval/gold_return']:.1f}",
            "-" if proxy is None else f"{proxy:.1f}", str(int(queries)),
            "-" if acc != acc else f"{acc:.2f}", "-" if dis is None else f"{dis:.3f}",
            "-" if kl is None else (f"{kl:.1f}" if offline else f"{kl:.3f}"),
        )
    console.print(table)
    event = next(
        (r for r in rows if r.get("diagnostics/overoptimization_step") is not None), None
    )
    if event is not None:
        from rewardlab.diagnostics.overoptimization import describe_overoptimization

        console.print(f"[yellow]{escape(describe_overoptimization(event))}[/]")
    if summary:
        where = summary["env"] + (f" (dataset {summary['dataset']})" if offline else "")
        console.print(
            f"algorithm {summary['algorithm']} on {where}, seed {summary['seed']}: "
            f"{summary['steps']} {'updates' if offline else 'steps'} in "
            f"{summary['wall_time_s']:.0f} s"
            + (" (interrupted; resume with --resume)" if summary.get("interrupted") else "")
        )
        if (run_dir / "feedback.db").exists():
            _print_feedback(run_dir, console)
        s, g = series(rows, "eval/gold_return")
        if g:
            console.print(f"gold return: first eval {g[0]:.1f}, final {g[-1]:.1f}, "
                          f"best {max(g):.1f}")
        console.print(f"plot: {run_dir / summary.get('plot', 'gold_vs_proxy.png')}")


def _print_feedback(run_dir: Path, console: Console) -> None:
    """The feedback store's counts, answers by teacher and annotator agreement."""
    from collections import Counter

    from rewardlab.store.store import FeedbackStore

    with FeedbackStore.open(run_dir) as store:
        counts = store.summary.counts()
        agree = store.summary.agreement()
        by_teacher = Counter(p.teacher_id for p in store.records.preferences())
        people = {a.name for a in store.annotation.annotators()}
    console.print(
        f"feedback: {counts['queries']} queries asked, {counts['answered']} answered "
        f"({counts['skipped']} skipped), {counts['pending']} pending"
    )
    if by_teacher:
        console.print("answers: " + ", ".join(
            f"{name} {n}" + (" (person)" if name in people else "")
            for name, n in by_teacher.most_common()
        ))
    if agree["overlapping"]:
        frac = agree["fraction"]
        console.print(
            f"annotator agreement: {agree['agreeing']} of {agree['compared']} overlapping "
            f"queries agree" + ("" if frac is None else f" ({frac:.0%})")
        )


def _run_config(run_dir: Path) -> dict:
    """``run_dir/config.yaml`` as a dict ({} when absent or unreadable)."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _is_lm(run_dir: Path, summary: dict) -> bool:
    """Whether the run trained a language-model policy (``summary["track"] == "lm"``, else an
    algorithm of :data:`rewardlab.diagnostics.lm_curves.LM_ALGORITHMS` in its config)."""
    from rewardlab.diagnostics.lm_curves import is_lm_run

    return is_lm_run(_run_config(run_dir), summary)


def _is_offline(run_dir: Path, summary: dict) -> bool:
    """Whether the run is offline (its metrics count gradient updates, not env steps)."""
    if "x_axis" in summary:
        return summary["x_axis"] == "gradient updates"
    import yaml

    from rewardlab.config import OFFLINE_ALGORITHMS

    try:
        algorithm = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get(
            "algorithm")
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    return algorithm in OFFLINE_ALGORITHMS


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    _print_report(Path(args.run_dir), console)
    if args.html or args.out:
        from rewardlab.diagnostics.report_html import write_run_report

        console.print(f"HTML report: {write_run_report(Path(args.run_dir), args.out)}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.diagnostics.report_html import write_compare_report

    run_dirs = [Path(d) for d in args.run_dirs]
    out = write_compare_report(run_dirs, args.out)  # refuses language-model + control runs
    if all(_is_lm(d, _summary(d)) for d in run_dirs):
        from rewardlab.cli.lm_report import print_lm_compare

        print_lm_compare(run_dirs, console)
    console.print(f"comparison: {out}")
    return 0


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.store.store import FeedbackStore

    run_dir = Path(args.run_dir)
    if not (run_dir / "feedback.db").exists():
        raise RewardLabError(f"{run_dir}: no feedback.db (is this a run directory?)")
    with FeedbackStore.open(run_dir) as store:
        n = store.summary.export(args.out)
    console.print(f"wrote {n} preferences to {args.out}")
    return 0


def cmd_annotators(args: argparse.Namespace, console: Console) -> int:
    from urllib.parse import urlsplit

    from rewardlab.feedback.run_status import read_status
    from rewardlab.web.cli import add_annotator_command

    served = urlsplit((read_status(args.run) or {}).get("app_url") or "http://127.0.0.1:8000/")
    host = args.host or served.hostname or "127.0.0.1"
    port = args.port if args.port is not None else served.port or 8000
    link = add_annotator_command(Path(args.run), args.name, host, port)
    console.print("login link (shown once; only the token's hash is stored):")
    print(link)
    return 0


def cmd_annotate(args: argparse.Namespace, console: Console) -> int:
    if args.overlap < 1:
        raise ConfigError(f"--overlap: must be an integer >= 1, got {args.overlap}")
    from rewardlab.web.cli import serve

    serve(Path(args.run_dir), args.host, args.port, args.overlap)
    return 0


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.algorithms.sweep import run_sweep
    from rewardlab.config import load_sweep

    sweep = load_sweep(args.sweep_file)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sweep.name
    records = run_sweep(sweep, out, args.address, lambda text: console.print(text))
    table = Table(title=f"sweep {sweep.name}")
    for header in ("trial", "steps", "final gold return", "wall s"):
        table.add_column(header, justify="right" if header != "trial" else "left")
    for r in records:
        gold = r["final_gold_return"]
        table.add_row(r["trial"], str(r["steps"]), "-" if gold is None else f"{gold:.1f}",
                      f"{r['wall_time_s']:.0f}")
    console.print(table)
    console.print(f"records: {out / 'records.jsonl'}")
    return 0


def cmd_config(args: argparse.Namespace, console: Console) -> int:
    from rewardlab.config import dump_config, load_config

    sys.stdout.write(dump_config(load_config(args.config, args.overrides)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    args = _parser().parse_args(argv)
    console = safe_console()
    commands = {
        "train": cmd_train, "report": cmd_report, "export": cmd_export, "config": cmd_config,
        "compare": cmd_compare, "sweep": cmd_sweep,
        "annotators": cmd_annotators, "annotate": cmd_annotate, "dataset": cmd_dataset,
        "lm": cmd_lm,
    }
    try:
        return commands[args.command](args, console)
    except RewardLabError as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        return 2
    except KeyboardInterrupt:  # outside a training loop (which saves a checkpoint itself)
        console.print("interrupted; every label given so far is in the feedback store")
        return 130


def run() -> None:
    """The ``rewardlab`` command: :func:`main`, then exit with its code.

    A run stopped by Ctrl-C or SIGTERM (exit code 130) has saved its checkpoint, summary and
    report and closed its store and logs by the time :func:`main` returns; it then leaves with
    ``os._exit`` after flushing its output. Interpreter finalisation is skipped on purpose:
    after an interrupt it was seen spinning in C code (no Python frame, 100% CPU) for minutes
    when the run was started from a process that had itself run training in-process.
    """
    code = main()
    if code == 130:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing left to flush into
                pass
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    run()
