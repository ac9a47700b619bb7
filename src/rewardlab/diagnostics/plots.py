"""Plots of a run: gold and proxy return against environment steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rewardlab.diagnostics.metrics import read_metrics, series  # noqa: E402


def plot_gold_vs_proxy(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``run_dir/gold_vs_proxy.png``: eval gold return (left axis) and proxy return
    (right axis, unitless) of the same episodes against env steps, plus the queries asked.

    Returns:
        The PNG's path.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    s, g = series(rows, "eval/gold_return")
    ax.plot(s, g, "o-", color="tab:blue", label="gold (true) return")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("gold return", color="tab:blue")
    ax2 = ax.twinx()
    s2, p = series(rows, "eval/proxy_return")
    ax2.plot(s2, p, "s--", color="tab:orange", label="proxy (learned) return")
    ax2.set_ylabel("proxy return (normalised units)", color="tab:orange")
    sq, q = series(rows, "feedback/queries_answered")
    for x in sq:
        ax.axvline(x, color="grey", alpha=0.15, lw=0.8)
    lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
    subtitle = f" ({int(q[-1])} preferences)" if q else ""
    ax.set_title((title or run_dir.name) + subtitle, fontsize=10)
    fig.tight_layout()
    out = run_dir / "gold_vs_proxy.png"
    fig.savefig(out)
    plt.close(fig)
    return out
