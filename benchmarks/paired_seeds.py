"""Seed-by-seed comparison of two tables of ``benchmarks/core.py`` (e.g. before and after a
default changed), from the ``core.json`` each commit holds.

Usage::

    python benchmarks/paired_seeds.py OLD_REV NEW_REV [--part default] [--method pebble]
        [--write]

Reads ``benchmarks/results/core.json`` at the two git revisions (``git show REV:path``) and,
for the seeds both tables ran, the final gold return of ``--method`` in each: the per-seed
difference (new - old), its mean, how many seeds improved, an exact two-sided sign-flip
(paired permutation) test of the mean difference (all 2^n sign patterns; Fisher 1935, Ch. 3),
and per table the mean, sample standard deviation, lowest seed and interquartile mean
(``rliable.metrics.aggregate_iqm``: the mean of the middle 50% after trimming 25% from each
end; Agarwal et al. 2021). Prints the table; ``--write`` also puts it in the ``paired_seeds``
section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core  # noqa: E402

SECTION = "paired_seeds"
#: Seeds above which the exact test (2^n sign patterns) would be too large to enumerate.
MAX_EXACT_SEEDS = 20


def table_at(rev: str, repo: Path = core.REPO) -> dict[str, Any]:
    """``benchmarks/results/core.json`` at git revision ``rev``.

    Raises:
        ValueError: naming ``rev`` if git cannot show the file there."""
    out = subprocess.run(["git", "show", f"{rev}:benchmarks/results/core.json"], cwd=repo,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise ValueError(f"{rev}: no benchmarks/results/core.json there ({out.stderr.strip()})")
    return json.loads(out.stdout)


def final_golds(table: dict[str, Any], part: str, method: str) -> dict[int, float]:
    """``{seed: final gold return}`` of ``method`` in ``part`` of a ``core.json`` table."""
    runs = (table.get("parts", {}).get(part) or {}).get("runs", [])
    return {int(r["seed"]): float(r["final_gold_return"]) for r in runs
            if r["method"] == method and r.get("final_gold_return") is not None}


def sign_flip_p(diffs: np.ndarray) -> float:
    """Exact two-sided p-value of the paired sign-flip test that the mean of ``diffs``
    (``(n,)`` float, n <= :data:`MAX_EXACT_SEEDS`) is 0: the share of the 2^n sign patterns
    whose mean is at least as far from 0 as the observed one.

    Raises:
        ValueError: if ``diffs`` is empty or longer than :data:`MAX_EXACT_SEEDS`."""
    n = len(diffs)
    if not 0 < n <= MAX_EXACT_SEEDS:
        raise ValueError(f"sign_flip_p: 1 to {MAX_EXACT_SEEDS} differences, got {n}")
    patterns = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # (2^n, n) of +-1
    means = np.abs(patterns @ diffs) / n
    return float(np.mean(means >= abs(diffs.mean()) - 1e-9 * max(1.0, abs(diffs.mean()))))


def compare(old: dict[int, float], new: dict[int, float]) -> dict[str, Any]:
    """The paired comparison of two ``{seed: final gold return}`` maps on their common seeds.

    Raises:
        ValueError: if they share no seed."""
    from rliable import metrics

    seeds = sorted(set(old) & set(new))
    if not seeds:
        raise ValueError("the two tables share no seed")
    a = np.array([old[s] for s in seeds])
    b = np.array([new[s] for s in seeds])
    d = b - a

    def summary(x: np.ndarray) -> dict[str, float]:
        return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                "min": float(x.min()), "iqm": float(metrics.aggregate_iqm(x))}

    return {"seeds": seeds, "old": summary(a), "new": summary(b),
            "differences": [float(v) for v in d], "mean_difference": float(d.mean()),
            "improved": int((d > 0).sum()), "sign_flip_p": sign_flip_p(d)}


def render(res: dict[str, Any], command: str, old_rev: str, new_rev: str, part: str,
           method: str) -> str:
    begin, end = core.section_markers(SECTION)
    diffs = ", ".join(f"{v:+.0f}" for v in res["differences"])
    rows = [f"| {name} ({rev}) | {s['mean']:.0f} | {s['std']:.0f} | {s['min']:.0f} | "
            f"{s['iqm']:.0f} |"
            for name, rev, s in (("old", old_rev, res["old"]), ("new", new_rev, res["new"]))]
    return "\n".join([
        begin, f"## Seed by seed: `{part}` / `{method}`, final gold return "
        "(`benchmarks/paired_seeds.py`)", "",
        f"- Command: `{command}`",
        f"- Seeds: {', '.join(map(str, res['seeds']))}",
        f"- Differences (new - old): {diffs}; mean {res['mean_difference']:+.0f}, "
        f"{res['improved']} of {len(res['seeds'])} seeds better; exact two-sided sign-flip "
        f"test p = {res['sign_flip_p']:.2f}", "",
        "| table | mean | sample std | lowest seed | IQM |", "|---|---:|---:|---:|---:|",
        *rows, end])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("old_rev")
    p.add_argument("new_rev")
    p.add_argument("--part", default="default", choices=list(core.PARTS))
    p.add_argument("--method", default="pebble")
    p.add_argument("--write", action="store_true", help="also write BENCHMARKS.md's section")
    args = p.parse_args(argv)
    try:
        old = final_golds(table_at(args.old_rev), args.part, args.method)
        new = final_golds(table_at(args.new_rev), args.part, args.method)
        res = compare(old, new)
    except ValueError as err:
        print(f"{args.old_rev} vs {args.new_rev}, {args.part}/{args.method}: {err}")
        return 2
    text = render(res, core.command_line("paired_seeds.py", argv), args.old_rev, args.new_rev,
                  args.part, args.method)
    print(text)
    if args.write:
        core.write_markdown_section(core.BENCHMARKS_MD, *core.section_markers(SECTION), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
