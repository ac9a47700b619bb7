"""HTML building blocks of the run reports: cell text, tables, the page and the settings
header (what was trained, on what, taught by whom, with which mitigations).

Shared by :mod:`rewardlab.diagnostics.report_html` and :mod:`rewardlab.diagnostics.report_lm`.
Every value is HTML-escaped here; callers pass plain text and numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.config import OFFLINE_ALGORITHMS

__all__ = ["fmt", "html_page", "html_table", "setting_text", "settings_tables", "teacher_text"]

_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "img{max-width:100%}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "table.settings td{text-align:left}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:1.6em}.note{color:#555;font-size:13px}"
    ".alarm{background:#fff3f0;border-left:4px solid #d33;padding:6px 10px}"
)


def fmt(value: Any, digits: int = 3) -> str:
    """Table cell text: ``-`` for missing/NaN, integers without a decimal point, floats to
    ``digits`` significant digits (never in exponent form above 1), text HTML-escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:.1f}"
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def setting_text(value: Any) -> str:
    """Plain-text value of a config setting: never a Python repr of a dict or list."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        parts = [f"{k} {setting_text(v)}" for k, v in value.items() if v is not None]
        return ", ".join(parts) if parts else "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(v) for v in value) or "-"
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def html_table(header: Sequence[str], body: Sequence[Sequence[Any]], cls: str = "") -> str:
    """An HTML ``<table>``: one ``<th>`` per header text, each body cell through :func:`fmt`;
    ``cls`` (e.g. ``"settings"``, left-aligned) becomes its ``class`` attribute."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r) + "</tr>" for r in body)
    attr = f" class='{cls}'" if cls else ""
    return f"<table{attr}><tr>{head}</tr>{rows}</table>"


def html_page(title: str, body: str) -> str:
    """The whole self-contained page: ``title`` (escaped) as ``<title>`` and ``<h1>``, the
    report's CSS inline, then ``body`` (HTML, inserted as given)."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")


def teacher_text(config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The teacher setting in words: its preset or name and its other non-null fields (e.g.
    ``mistake (eps_mistake 0.2)``), ``scripted`` for older runs that only recorded its
    answers in the summary, ``-`` when unknown."""
    teacher = config.get("teacher")
    if not isinstance(teacher, Mapping):
        asked = summary.get("feedback", {}).get("teacher") or {}
        return setting_text(teacher) if teacher is not None else ("scripted" if asked else "-")
    name = teacher.get("preset") or teacher.get("name") or "?"
    extra = {k: v for k, v in teacher.items() if k not in ("preset", "name") and v is not None}
    return f"{name} ({setting_text(extra)})" if extra else str(name)


def settings_tables(config: Mapping[str, Any], summary: Mapping[str, Any],
                    run_dir: Path) -> str:
    """The run's header: what was trained, on what, taught by whom, with which mitigations.

    Args:
        config: the run's ``config.yaml`` as a mapping (``{}`` when absent).
        summary: the run's ``summary.json`` as a mapping (``{}`` when absent).
        run_dir: the run directory (shown as a row).

    Returns:
        HTML: a "Run" settings table, then a "Mitigation" table for online runs that set any.
    """
    env = config.get("env") if isinstance(config.get("env"), Mapping) else {}
    fb = config.get("feedback") if isinstance(config.get("feedback"), Mapping) else {}
    rm = config.get("reward_model") if isinstance(config.get("reward_model"), Mapping) else {}
    feedback = "-"
    if fb:
        feedback = (f"{setting_text(fb.get('total_budget'))} queries, "
                    f"{setting_text(fb.get('queries_per_round'))} per round, "
                    f"{setting_text(fb.get('segment_len'))}-step segments, "
                    f"selection {setting_text(fb.get('method'))}")
    reward_model = "-"
    if rm:
        reward_model = (f"{setting_text(rm.get('members'))} members, reduction "
                        f"{setting_text(rm.get('reduction'))}")
    rows = [
        ("algorithm", setting_text(config.get("algorithm", summary.get("algorithm")))),
        ("environment", setting_text(env.get("id", summary.get("env")))),
        ("seed", setting_text(config.get("seed", summary.get("seed")))),
        *_run_length_rows(config, summary),
        ("teacher", teacher_text(config, summary)),
        ("teacher bias", setting_text(config.get("teacher_bias")) if config else "-"),
        ("feedback", feedback),
        ("reward model", reward_model),
        ("run directory", str(run_dir)),
    ]
    out = "<h2>Run</h2>" + html_table(["setting", "value"], rows, cls="settings")
    mitigation = config.get("mitigation")
    online = config.get("algorithm") not in OFFLINE_ALGORITHMS  # offline runs refuse them
    if online and isinstance(mitigation, Mapping) and mitigation:
        out += "<h2>Mitigation</h2>" + html_table(
            ["setting", "value"],
            [(f"mitigation.{k}", setting_text(v)) for k, v in mitigation.items()], cls="settings")
    return out


def _run_length_rows(config: Mapping[str, Any], summary: Mapping[str, Any]) -> list[
    tuple[str, str]
]:
    """Settings rows of how long the run trained: env steps, or for offline runs the
    gradient updates, the dataset and the reward the agent trained on."""
    if config.get("algorithm") not in OFFLINE_ALGORITHMS:
        steps = summary.get("steps", config.get("total_steps"))
        return [("environment steps", setting_text(steps))]
    off = config.get("offline") if isinstance(config.get("offline"), Mapping) else {}
    reward = summary.get("reward") or {}
    kind = (f"{reward.get('kind')}" + (f" ({reward['model']})" if reward.get("model") else "")
            if reward else setting_text(off.get("reward")))
    if reward.get("factor") is not None:
        kind += (f", rescaled x{fmt(reward['factor'])} + {fmt(reward.get('shift'))} "
                 "(IQL's return-spread normalisation)")
    return [
        ("gradient updates", setting_text(summary.get("steps", off.get("updates")))),
        ("dataset", setting_text(config.get("dataset", summary.get("dataset")))),
        ("training reward", kind),
    ]
