"""Plots of a run: gold and proxy return against environment steps, shared by the PNG the
training loop writes (``gold_vs_proxy.png``) and the HTML report.

Drawn with Matplotlib's object-oriented API (``matplotlib.figure.Figure`` rendered by
``FigureCanvasAgg``), so importing this module selects no backend and touches no global
Matplotlib (pyplot) state, and it works headless in any thread.

Metric keys read (all from ``metrics.jsonl``):

* ``eval/gold_return``, ``eval/gold_return_std`` (error bars), ``eval/proxy_return``;
* ``eval/random_return``, ``eval/do_nothing_return``: gold return of a uniformly random policy
  and of the zero action, drawn as horizontal reference lines when logged (the training loop
  logs them at step 0); ``eval/dataset_return``: an offline run's mean dataset episode return;
* ``feedback/round`` (else ``feedback/queries_answered``): steps of the feedback rounds, drawn as
  faint vertical lines; the last ``feedback/queries_answered`` goes into the title;
* ``diagnostics/overoptimization_step``, ``diagnostics/gold_peak_step``: the over-optimisation
  alarm and the gold peak it compared against;
* ``diagnostics/early_stop_step``: an early stop (mitigation).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rewardlab.diagnostics.metrics import read_metrics, series

__all__ = [
    "REFERENCE_KEYS",
    "draw_gold_proxy",
    "figure_png",
    "format_steps",
    "new_figure",
    "plot_gold_vs_proxy",
    "reference_returns",
    "step_axis",
]

#: Reference returns drawn as horizontal lines: (metric key, legend label, line style).
REFERENCE_KEYS = (
    ("eval/random_return", "uniformly random policy", "--"),
    ("eval/do_nothing_return", "do-nothing policy (zero action)", ":"),
    ("eval/dataset_return", "offline dataset's episodes (mean)", "-."),
)

GOLD_COLOR, PROXY_COLOR = "tab:blue", "tab:orange"
_DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """A Matplotlib figure with an Agg canvas and constrained layout (no pyplot, no backend).

    Args:
        width: width in inches (> 0).
        height: height in inches (> 0).

    Returns:
        The figure; add axes with ``fig.subplots(...)``.

    Raises:
        ValueError: if a size is not positive.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"width, height: must be > 0, got {width!r}, {height!r}")
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes (at its own dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def format_steps(x: float, _pos: Any = None) -> str:
    """Compact env-step tick label: ``0``, ``500``, ``2k``, ``12.5k``, ``1M``, ``1.25M``."""
    if not math.isfinite(x):
        return ""
    ax = abs(x)
    if ax >= 1e6:
        text = f"{x / 1e6:.2f}".rstrip("0").rstrip(".") + "M"
    elif ax >= 1e3:
        text = f"{x / 1e3:.1f}".rstrip("0").rstrip(".") + "k"
    else:
        text = f"{x:.0f}"
    return "0" if text in ("-0", "0k", "0M") else text


def step_axis(ax: Axes, label: str = "environment steps") -> None:
    """Label ``ax``'s x axis as env steps, with at most 7 compact ticks (``10k``)."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(format_steps))
    ax.set_xlabel(label)


def reference_returns(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The reference returns a run measured, ``{key: value}`` for the keys of
    :data:`REFERENCE_KEYS` that were logged (last non-null value of each)."""
    out = {}
    for key, _, _ in REFERENCE_KEYS:
        _, values = series(list(rows), key)
        if values and math.isfinite(values[-1]):
            out[key] = values[-1]
    return out


def _first(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    _, values = series(list(rows), key)
    return values[0] if values else None


def draw_gold_proxy(fig: Figure, rows: Sequence[dict[str, Any]], title: str,
                    x_label: str = "environment steps") -> None:
    """Draw gold and proxy return against env steps into ``fig`` (one axes plus a twin).

    Gold (left axis, mean over the evaluation episodes, error bars one standard deviation of
    the episodes when ``eval/gold_return_std`` is logged), proxy (right axis, the learned
    reward's standardised units), the reference returns of :func:`reference_returns`, the
    feedback rounds, the over-optimisation alarm with its gold peak and any early stop. The
    legend sits below the axes so it never covers data.

    Args:
        fig: an empty figure, e.g. from :func:`new_figure`.
        rows: ``metrics.jsonl`` rows (:func:`rewardlab.diagnostics.metrics.read_metrics`).
        title: axes title.
        x_label: what the rows' ``step`` counts (offline runs: gradient updates).
    """
    rows = list(rows)
    ax = fig.subplots()
    gold_steps, gold = series(rows, "eval/gold_return")
    std_by_step = dict(zip(*series(rows, "eval/gold_return_std"), strict=True))
    by_step = dict(zip(gold_steps, gold, strict=True))  # a re-logged step keeps its last value
    xs = sorted(by_step)
    ys = [by_step[s] for s in xs]
    yerr = [std_by_step.get(s, math.nan) for s in xs]
    handles: list[Any] = []
    if any(math.isfinite(e) for e in yerr):
        ax.errorbar(xs, ys, yerr=[0.0 if not math.isfinite(e) else e for e in yerr], fmt="o-",
                    color=GOLD_COLOR, capsize=2, ms=4, lw=1.5, zorder=3)
    else:
        ax.plot(xs, ys, "o-", color=GOLD_COLOR, ms=4, lw=1.5, zorder=3)
    handles.append(Line2D([], [], color=GOLD_COLOR, marker="o", ms=4,
                          label="gold (true) return" + (" ± std of episodes"
                                                        if any(map(math.isfinite, yerr)) else "")))
    for key, label, style in REFERENCE_KEYS:
        value = reference_returns(rows).get(key)
        if value is not None:
            ax.axhline(value, color="dimgray", ls=style, lw=1.2, zorder=2)
            handles.append(Line2D([], [], color="dimgray", ls=style, lw=1.2,
                                  label=f"{label}: {value:.1f}"))
    ax.set_ylabel("gold return (true reward per episode)", color=GOLD_COLOR)
    ax.tick_params(axis="y", colors=GOLD_COLOR)

    proxy_steps, proxy = series(rows, "eval/proxy_return")
    if proxy_steps:
        ax2 = ax.twinx()
        p_by_step = dict(zip(proxy_steps, proxy, strict=True))
        px = sorted(p_by_step)
        ax2.plot(px, [p_by_step[s] for s in px], "s--", color=PROXY_COLOR, ms=4, lw=1.2,
                 zorder=3)
        ax2.set_ylabel("proxy return (learned reward, standardised)", color=PROXY_COLOR)
        ax2.tick_params(axis="y", colors=PROXY_COLOR)
        handles.append(Line2D([], [], color=PROXY_COLOR, marker="s", ls="--", ms=4,
                              label="proxy (learned) return, right axis"))

    round_steps = series(rows, "feedback/round")[0] or series(rows, "feedback/queries_answered")[0]
    for x in round_steps:
        ax.axvline(x, color="grey", alpha=0.25, lw=0.8, zorder=1)
    if round_steps:
        handles.append(Line2D([], [], color="grey", alpha=0.5, lw=0.8, label="feedback round"))

    event = _first(rows, "diagnostics/overoptimization_step")
    if event is not None:
        ax.axvline(event, color="red", ls="-.", lw=1.5, zorder=2)
        handles.append(Line2D([], [], color="red", ls="-.", lw=1.5,
                              label=f"over-optimisation detected at step {int(event)}"))
        peak = _first(rows, "diagnostics/gold_peak_step")
        if peak is not None and peak in by_step:
            ax.plot([peak], [by_step[peak]], "*", color="red", ms=12, zorder=4)
            handles.append(Line2D([], [], color="red", marker="*", ls="", ms=10,
                                  label=f"gold peak it compared with, step {int(peak)}"))
    stop = _first(rows, "diagnostics/early_stop_step")
    if stop is not None:
        ax.axvline(stop, color="green", ls=":", lw=1.8, zorder=2)
        handles.append(Line2D([], [], color="green", ls=":", lw=1.8,
                              label=f"early stop at step {int(stop)}"))

    step_axis(ax, x_label)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)),
               fontsize=8, frameon=False)


def plot_gold_vs_proxy(run_dir: str | Path, title: str | None = None,
                       x_label: str = "environment steps") -> Path:
    """Write ``run_dir/gold_vs_proxy.png``: :func:`draw_gold_proxy` of the run's metrics.

    Args:
        run_dir: run directory holding ``metrics.jsonl`` (may be empty or missing: the plot is
            then empty).
        title: plot title (default: the directory name); the number of preferences answered
            is appended when logged.

    Returns:
        The PNG's path.

    Raises:
        OSError: if the PNG cannot be written.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    _, answered = series(rows, "feedback/queries_answered")
    subtitle = f" ({int(answered[-1])} preferences)" if answered else ""
    fig = new_figure(7.5, 4.6)
    draw_gold_proxy(fig, rows, (title or run_dir.name) + subtitle, x_label)
    out = run_dir / "gold_vs_proxy.png"
    out.write_bytes(figure_png(fig))
    return out
