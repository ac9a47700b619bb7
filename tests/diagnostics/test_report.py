"""What people see: the over-optimisation alarm's wording and step in every place, the plots
(reference lines, legends, ticks) and the HTML report's header and Gao table."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rewardlab.cli.main import main
from rewardlab.diagnostics.gao_fit import GaoFit
from rewardlab.diagnostics.metrics import MetricLogger, read_metrics
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    DivergenceMonitor,
    describe_overoptimization,
    detect_divergence,
)
from rewardlab.diagnostics.plots import draw_gold_proxy, format_steps, new_figure
from rewardlab.diagnostics.report_html import _peak_text, write_run_report

EPISODES = 10


def _flat(text: str) -> str:
    """Whitespace-normalised text (the terminal wraps long lines)."""
    return " ".join(text.split())


def _text_of_html(page: str) -> str:
    return _flat(re.sub(r"<[^>]+>", " ", page))


# ------------------------------------------------------------------------- the alarm's rule


def test_no_alarm_when_proxy_is_below_its_value_at_the_gold_peak():
    """The bug: the proxy rose over the last evaluations but stayed below its value at the gold
    peak (e.g. after a reward update re-standardised it); gold fell significantly."""
    steps = np.arange(1, 9) * 1000
    gold = np.array([10.0, 20.0, 30.0, 40.0, 30.0, 20.0, 15.0, 10.0])
    proxy = np.array([50.0, 60.0, 70.0, 100.0, -40.0, -30.0, -25.0, -22.0])  # rising, < 100
    assert detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES) is None
    monitor = DivergenceMonitor(EPISODES)
    assert all(monitor.update(s, g, p, 1.0) is None for s, g, p in zip(steps, gold, proxy,
                                                                       strict=True))
    # once the proxy exceeds its value at the peak, the alarm fires, with a positive rise
    proxy[-1] = 101.0
    ev = detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES)
    assert ev is not None and ev.step == 8000 and ev.peak_step == 4000
    assert ev.proxy_gain_since_peak == pytest.approx(1.0)
    assert detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES,
                             min_proxy_gain=1.0) is None  # strictly more than min_proxy_gain
    with pytest.raises(ValueError, match="min_proxy_gain"):
        detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES,
                          min_proxy_gain=-1.0)


def test_proxy_must_still_be_rising_now():
    steps = np.arange(1, 7) * 1000
    gold = np.array([40.0, 39.8, 39.7, 20.0, 15.0, 10.0])  # significant drops from 4000 on
    proxy = np.array([10.0, 70.0, 60.0, 50.0, 40.0, 30.0])  # above the peak's, but falling
    assert detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES,
                             window=2) is None
    proxy[3] = 71.0  # a new high at 4000: rising again
    assert detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES).step == 4000
    proxy[3] = 50.0
    assert detect_divergence(steps, gold, proxy, gold_std=1.0, n_episodes=EPISODES) is None


def test_monitor_event_step_is_the_step_it_was_fed_at():
    """At its third evaluation the whole-series test would flag the second one; the online
    monitor tests only the evaluation just added, so the event's step is the logging step."""
    steps, gold, proxy = [1000, 2000, 3000], [40.0, 10.0, 9.0], [0.0, 5.0, 6.0]
    whole = detect_divergence(np.array(steps), np.array(gold), np.array(proxy), gold_std=1.0,
                              n_episodes=EPISODES)
    assert whole is not None and whole.step == 2000
    monitor = DivergenceMonitor(EPISODES)
    events = [monitor.update(s, g, p, 1.0) for s, g, p in zip(steps, gold, proxy, strict=True)]
    assert events[0] is None
    fired = [(s, e) for s, e in zip(steps, events, strict=True) if e is not None]
    assert len(fired) == 1
    step, event = fired[0]
    assert event.step == step and event.peak_step == 1000 and event.proxy_gain_since_peak > 0
    with pytest.raises(ValueError, match="n_episodes"):
        DivergenceMonitor(1)


# ------------------------------------------------------------------------- one sentence


def _planted_series() -> tuple[list[int], list[float], list[float], list[float]]:
    rng = np.random.default_rng(3)
    steps = [5000 * (i + 1) for i in range(8)]
    gold = [10.0, 20.0, 30.0, 40.0, 38.0, 25.0, 20.0, 15.0]
    proxy = [float(v) for v in np.linspace(0.0, 70.0, 8) + rng.normal(0, 1, 8)]
    return steps, gold, proxy, [2.0] * 8


def _write_run(run_dir: Path, *, with_references: bool = True) -> tuple[int, str]:
    """A fake run as the training loop writes it: evaluations, the alarm logged at the step of
    the evaluation that raised it (with the monitor's fields), config and summary. Returns the
    step the alarm was logged at and the terminal message."""
    logger = MetricLogger(run_dir, tensorboard=False)
    if with_references:
        logger.log(0, {"eval/random_return": -5.0, "eval/do_nothing_return": 2.5})
    monitor = DivergenceMonitor(EPISODES)
    logged_at, message = -1, ""
    for i, (s, g, p, sd) in enumerate(zip(*_planted_series(), strict=True)):
        logger.log(s, {"eval/gold_return": g, "eval/gold_return_std": sd,
                       "eval/proxy_return": p, "eval/episode_length": 50.0,
                       "diagnostics/sqrt_kl": 0.1 * (i + 1), "diagnostics/policy_kl": 0.01})
        if i % 2 == 0:
            logger.log(s, {"feedback/round": float(i // 2 + 1),
                           "feedback/queries_answered": 20.0 * (i // 2 + 1)})
        event = monitor.update(s, g, p, sd)
        if event is not None:
            logger.log(s, {key: float(getattr(event, field))
                           for field, key in EVENT_KEYS.items()})
            logged_at, message = s, describe_overoptimization(event)
    logger.close()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "algorithm": "pref_ppo", "seed": 3, "env": {"id": "Toy-v0", "kwargs": {}},
        "teacher": {"preset": "mistake", "beta": None, "eps_mistake": 0.2},
        "mitigation": {"early_stop": "none", "regularizer": "action_kl", "reg_coef": 0.1,
                       "targeted_feedback": True},
        "feedback": {"total_budget": 80, "queries_per_round": 20, "segment_len": 25,
                     "method": "uniform"},
        "reward_model": {"members": 3, "reduction": "mean"},
    }))
    (run_dir / "summary.json").write_text(json.dumps({
        "algorithm": "pref_ppo", "env": "Toy-v0", "seed": 3, "steps": 40000,
        "wall_time_s": 12.0, "interrupted": False,
        "overoptimization": {"reference_step": 5000},
    }))
    return logged_at, message


def test_every_place_names_the_same_detection_and_peak_steps(tmp_path, capsys):
    logged_at, terminal = _write_run(tmp_path)
    assert logged_at > 0, "the planted divergence must be detected"
    row = next(r for r in read_metrics(tmp_path) if "diagnostics/overoptimization_step" in r)
    # metrics.jsonl: the row's step is the detection step
    assert row["step"] == logged_at == int(row["diagnostics/overoptimization_step"])
    peak = int(row["diagnostics/gold_peak_step"])
    assert peak == 20000 and logged_at > peak
    sentence = describe_overoptimization(row)
    assert sentence == terminal  # the loop's message (from the event) == from the logged row
    assert sentence.startswith(f"over-optimisation detected at step {logged_at}: ")
    assert f"below its peak at step {peak} while the proxy return rose " in sentence

    assert main(["report", str(tmp_path), "--html"]) == 0
    printed = _flat(capsys.readouterr().err)
    assert sentence in printed
    page = (tmp_path / "report.html").read_text()
    text = _text_of_html(page)
    assert sentence in text
    assert re.search(rf"over-optimisation detected at step {logged_at} ", text)
    # no other step is named as the detection step anywhere
    for where in (printed, text):
        found = set(re.findall(r"detected at step (\d+)", where))
        assert found == {str(logged_at)}


def test_describe_overoptimization_inputs():
    fields = {"diagnostics/overoptimization_step": 15000.0, "diagnostics/gold_peak_step": 10000.0,
              "diagnostics/gold_drop": 12.34, "diagnostics/proxy_gain_since_peak": 40.06}
    assert describe_overoptimization(fields) == (
        "over-optimisation detected at step 15000: gold return 12.3 below its peak at step "
        "10000 while the proxy return rose 40.1")
    with pytest.raises(ValueError, match="diagnostics/gold_peak_step"):
        describe_overoptimization({**fields, "diagnostics/gold_peak_step": None})
    with pytest.raises(ValueError, match="diagnostics/gold_drop"):
        describe_overoptimization({**fields, "diagnostics/gold_drop": "a lot"})
    with pytest.raises(TypeError, match="event"):
        describe_overoptimization(15000)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- plots


def _bboxes_overlap(a, b) -> bool:  # noqa: ANN001
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_gold_curve_plot_references_legend_and_ticks(tmp_path):
    _write_run(tmp_path)
    rows = read_metrics(tmp_path)
    fig = new_figure(7.5, 4.6)
    draw_gold_proxy(fig, rows, "test")
    fig.canvas.draw()
    ax = fig.axes[0]
    horizontal = {round(line.get_ydata()[0], 6) for line in ax.get_lines()
                  if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2}
    assert {-5.0, 2.5} <= horizontal  # random and do-nothing reference lines
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(lab.startswith("uniformly random policy: -5.0") for lab in labels)
    assert any(lab.startswith("do-nothing policy") for lab in labels)
    assert any("over-optimisation detected at step 30000" in lab for lab in labels)
    renderer = fig.canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    for axes in fig.axes:  # the legend covers no axes (so no data)
        assert not _bboxes_overlap(legend_box, axes.get_window_extent(renderer))
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+(\.\d+)?k|0", t.get_text()) for t in ticks)
    boxes = [t.get_window_extent(renderer) for t in ticks]
    assert not any(_bboxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert ax.get_xlabel() and ax.get_ylabel() and fig.axes[1].get_ylabel()


def test_no_reference_lines_when_not_measured(tmp_path):
    _write_run(tmp_path, with_references=False)
    fig = new_figure(7.5, 4.6)
    draw_gold_proxy(fig, read_metrics(tmp_path), "test")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("random" in lab or "do-nothing" in lab for lab in labels)


@pytest.mark.parametrize(("x", "text"), [(0, "0"), (500, "500"), (2000, "2k"), (12500, "12.5k"),
                                         (1_000_000, "1M"), (1_250_000, "1.25M")])
def test_format_steps(x, text):
    assert format_steps(x) == text


# ------------------------------------------------------------------------- the HTML page


def test_report_header_is_tables_not_python_reprs(tmp_path):
    _write_run(tmp_path)
    page = write_run_report(tmp_path).read_text()
    assert "{'" not in page and "{&#x27;" not in page and "[&#x27;" not in page
    text = _text_of_html(page)
    assert "teacher mistake (eps_mistake 0.2)" in text
    assert "mitigation.regularizer action_kl" in text
    assert "mitigation.targeted_feedback yes" in text
    assert "uniformly random policy's gold return -5" in text.replace("&#x27;", "'")
    assert page.count("data:image/png;base64,") == 3


def test_gao_fit_without_a_finite_peak_says_so():
    d = np.linspace(0.1, 2.0, 8)
    unbounded = GaoFit(form="bon", alpha=1.0, beta=-0.5, r2=0.9, peak_d=math.inf,
                       peak_gold=math.inf)
    peak_d, peak_gold = _peak_text(unbounded, d)
    assert peak_d.startswith("no finite peak") and "inf" not in peak_d + peak_gold
    beyond = GaoFit(form="bon", alpha=6.0, beta=1.0, r2=0.9, peak_d=3.0, peak_gold=9.0)
    assert "beyond the largest measured d" in _peak_text(beyond, d)[0]


def test_report_of_a_still_rising_run_prints_no_inf(tmp_path):
    logger = MetricLogger(tmp_path, tensorboard=False)
    for i in range(6):
        d = 0.2 * i
        logger.log(1000 * (i + 1), {"eval/gold_return": d + d * d, "eval/proxy_return": d,
                                    "diagnostics/sqrt_kl": d})
    logger.close()
    text = _text_of_html(write_run_report(tmp_path).read_text())
    assert "no finite peak" in text
    assert not re.search(r"\binf\b", text)


# ------------------------------------------------------------------------- import side effects


def test_importing_the_library_selects_no_matplotlib_backend():
    code = (
        "import sys, matplotlib\n"
        "import rewardlab.diagnostics.plots, rewardlab.diagnostics.report_html\n"
        "import rewardlab.diagnostics.overoptimization, rewardlab.cli.main\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() is None, 'backend selected'\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
