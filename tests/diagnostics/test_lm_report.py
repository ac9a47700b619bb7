"""Reports of language-model runs: the benchmark fields against hand-computed values, the
terminal report, report.html and compare on synthetic run directories that follow the run
contract (notes/lm-run-contract.md): config.yaml with an ``lm:`` section, metrics.jsonl with the
contract's keys, summary.json with ``"track": "lm"``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from rewardlab.cli.main import main
from rewardlab.diagnostics.lm_curves import (
    describe_lm_fit,
    describe_lm_peak,
    gao_form_for,
    is_lm_run,
    lm_benchmark_fields,
    lm_eval_curves,
    lm_gao_analysis,
    read_lm_samples,
)
from rewardlab.diagnostics.metrics import MetricLogger, read_metrics
from rewardlab.diagnostics.overoptimization import (
    EVENT_KEYS,
    DivergenceMonitor,
    describe_overoptimization,
)
from rewardlab.diagnostics.plots import new_figure
from rewardlab.diagnostics.report_lm_figures import draw_lm_gao

SAMPLES, GOLD_STD = 64, 0.2
GOLD_REF = 0.1


def _flat(text: str) -> str:
    return " ".join(text.split())


def _text_of_html(page: str) -> str:
    return _flat(re.sub(r"<[^>]+>", " ", page))


def _rl_gold(d: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``GOLD_REF + d (alpha - beta log d)`` (Gao et al. 2022 Eq. 2, 0 at d = 0)."""
    safe = np.where(d > 0, d, 1.0)
    return GOLD_REF + np.where(d > 0, d * (alpha - beta * np.log(safe)), 0.0)


def _grpo_rows(alpha: float = 0.5, beta: float = 0.5) -> list[dict]:
    """21 evaluations, steps 0..200; KL = 0.02 * step nats, so d = 1 at step 50 (the peak of
    Eq. 2 with alpha = beta: exp(alpha / beta - 1) = 1) and d = 2 at step 200."""
    steps = np.arange(0, 201, 10)
    kl = 0.02 * steps
    d = np.sqrt(kl)
    gold = _rl_gold(d, alpha, beta)
    rows = []
    for i, s in enumerate(steps):
        rows.append({"step": int(s), "eval/gold_return": float(gold[i]),
                     "eval/gold_return_std": GOLD_STD, "eval/proxy_return": 0.03 * float(s),
                     "eval/proxy_return_std": 0.5, "eval/samples": float(SAMPLES),
                     "eval/kl": float(kl[i]), "eval/sqrt_kl": float(d[i]),
                     "eval/mean_completion_tokens": 12.0,
                     "reward_model/disagreement_on_policy": 0.05 + 0.001 * float(s)})
    return rows


def _write_lm_run(run_dir: Path, algorithm: str = "grpo", *, alpha: float = 0.5,
                  beta: float = 0.5, samples: bool = True) -> str:
    """A language-model run directory as the training loop writes it; returns the alarm
    sentence ("" when it did not fire)."""
    logger = MetricLogger(run_dir, tensorboard=False)
    rounds = {0: (1, 40, 0.70, 0.12, 0.65), 50: (2, 80, 0.80, 0.08, 0.75),
              100: (3, 120, 0.85, 0.05, 0.82)}
    rows = _bon_rows() if algorithm == "bon" else _grpo_rows(alpha, beta)
    monitor = DivergenceMonitor(SAMPLES)
    sentence = ""
    for row in rows:
        step = row.pop("step")
        if step in rounds and algorithm != "bon":
            rnd, answered, acc, ece, fresh = rounds[step]
            logger.log(step, {"feedback/round": float(rnd),
                              "feedback/queries_answered": float(answered),
                              "feedback/judge_gold_agreement": 0.8,
                              "reward_model/heldout_accuracy": acc,
                              "reward_model/heldout_ece": ece,
                              "reward_model/train_accuracy": 0.95,
                              "reward_model/fresh_accuracy": fresh})
        logger.log(step, {**row, "train/loss": 0.1, "time/elapsed_s": 1.0 + step})
        event = monitor.update(step, row["eval/gold_return"], row["eval/proxy_return"],
                               GOLD_STD)
        if event is not None:
            logger.log(step, {k: float(getattr(event, f)) for f, k in EVENT_KEYS.items()})
            sentence = describe_overoptimization(event)
    if algorithm == "bon":
        logger.log(0, {"feedback/round": 1.0, "feedback/queries_answered": 200.0,
                       "reward_model/heldout_accuracy": 0.9, "reward_model/heldout_ece": 0.04})
    logger.close()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "algorithm": algorithm, "seed": 0,
        "teacher": {"preset": "oracle"},
        "feedback": {"total_budget": 120, "queries_per_round": 40, "method": "disagreement"},
        "reward_model": {"members": 3, "reduction": "mean"},
        "lm": {"task": "sentiment", "base_model": "runs/lm-base", "beta": beta,
               "steps": 200, "judge": "lexicon"},
    }))
    final = read_metrics(run_dir)[-1]
    (run_dir / "summary.json").write_text(json.dumps({
        "track": "lm", "algorithm": algorithm, "task": "sentiment", "status": "finished",
        "steps": 6 if algorithm == "bon" else 200,
        "store": {"queries": 122, "answered": 120, "skipped": 2, "pending": 0},
        "final_eval": final, "overoptimization": None, "wall_time_s": 42.0,
    }))
    if samples:
        (run_dir / "samples").mkdir()
        lines = []
        for step, text in ((0, "the day was long"), (50, "a lovely calm morning"),
                           (200, "good great love <b>good</b>")):
            for j in range(4):
                lines.append(json.dumps({"step": step, "prompt": f"prompt {j}",
                                         "completion": f"{text} #{j}", "gold": 0.1 * j,
                                         "proxy": 1.0 + j}))
        (run_dir / "samples" / "eval.jsonl").write_text("\n".join(lines) + "\n{torn")
    return sentence


def _bon_rows() -> list[dict]:
    """Best-of-n at n = 1, 2, ..., 64 (step = index in the grid), analytic KL, gold
    0.2 + d (0.6 - 0.4 d) (Gao et al. 2022 Eq. 1: peak at d = 0.75, gain 0.225)."""
    rows = []
    for i in range(7):
        n = 2**i
        kl = math.log(n) - (n - 1) / n
        d = math.sqrt(kl)
        rows.append({"step": i, "eval/bon_n": float(n), "eval/kl": kl, "eval/sqrt_kl": d,
                     "eval/gold_return": 0.2 + d * (0.6 - 0.4 * d),
                     "eval/gold_return_std": GOLD_STD, "eval/samples": float(SAMPLES),
                     "eval/proxy_return": 0.5 * d,
                     "reward_model/disagreement_on_policy": 0.1 * d})
    return rows


# ------------------------------------------------------------------------- pure functions


def test_benchmark_fields_of_an_rl_run_against_hand_computed_values():
    fields = lm_benchmark_fields(_grpo_rows(), "rl")
    gold_final = GOLD_REF + 2.0 * (0.5 - 0.5 * math.log(2.0))  # d = 2 at step 200
    assert fields["evals"] == 21
    assert fields["gold_first"] == pytest.approx(GOLD_REF)
    assert fields["gold_peak"] == pytest.approx(0.6)  # 0.1 + 1 * (0.5 - 0.5 log 1)
    assert fields["step_at_peak"] == 50
    assert fields["sqrt_kl_at_peak"] == pytest.approx(1.0)
    assert fields["gold_final"] == pytest.approx(gold_final)
    assert fields["sqrt_kl_final"] == pytest.approx(2.0)
    assert fields["gold_drop"] == pytest.approx(0.6 - gold_final)
    # s.e. of the difference of two means of 64 samples with ddof-0 std 0.2
    assert fields["gold_drop_se"] == pytest.approx(math.sqrt(2 * 0.04 / 63))
    assert fields["peaked_then_fell"] is True
    assert math.isnan(fields["bon_n_at_peak"])
    # noise-free Eq. 2 data: the fit recovers alpha, beta; peak exp(alpha/beta - 1) = 1
    assert fields["gao_form"] == "rl"
    assert fields["gao_alpha"] == pytest.approx(0.5, abs=1e-9)
    assert fields["gao_beta"] == pytest.approx(0.5, abs=1e-9)
    assert fields["gao_r2"] == pytest.approx(1.0)
    assert fields["sqrt_kl_at_peak_fit"] == pytest.approx(1.0)
    assert fields["gold_peak_fit"] == pytest.approx(0.6)  # gold_ref + beta * peak_d
    json.dumps(fields)  # plain Python values (the benchmark writes them as JSON)


def test_benchmark_fields_of_best_of_n_against_hand_computed_values():
    fields = lm_benchmark_fields(_bon_rows(), gao_form_for("bon"))
    assert fields["gao_form"] == "bon"
    assert fields["gao_alpha"] == pytest.approx(0.6, abs=1e-9)
    assert fields["gao_beta"] == pytest.approx(0.4, abs=1e-9)
    assert fields["sqrt_kl_at_peak_fit"] == pytest.approx(0.75)  # alpha / (2 beta)
    assert fields["gold_peak_fit"] == pytest.approx(0.2 + 0.36 / 1.6)  # + alpha^2 / (4 beta)
    # observed: n = 4, d = sqrt(log 4 - 3/4) is the measured d closest to 0.75
    d4 = math.sqrt(math.log(4) - 0.75)
    assert fields["bon_n_at_peak"] == 4 and fields["step_at_peak"] == 2
    assert fields["sqrt_kl_at_peak"] == pytest.approx(d4)
    assert fields["gold_peak"] == pytest.approx(0.2 + d4 * (0.6 - 0.4 * d4))
    assert fields["peaked_then_fell"] is True
    assert "peaked at n = 4 " in describe_lm_peak(fields)
    assert describe_lm_fit(fields).startswith(
        "best-of-n fit (Gao et al. 2022 Eq. 1, R = d (alpha - beta d)): alpha 0.6, beta 0.4")


def test_still_rising_run_has_no_peak_and_no_inf_in_words():
    rows = [{"step": s, "eval/gold_return": d + d * d, "eval/sqrt_kl": d}
            for s, d in enumerate(np.linspace(0.0, 1.5, 6))]
    fields = lm_benchmark_fields(rows, "rl")
    assert fields["peaked_then_fell"] is False and fields["gold_drop_se"] == 0.0
    assert fields["step_at_peak"] == 5 and fields["gold_drop"] == 0.0
    assert fields["sqrt_kl_at_peak_fit"] == math.inf  # the fitted beta is negative
    words = describe_lm_fit(fields) + describe_lm_peak(fields)
    assert "no finite fitted peak" in words and "did not fall after its peak" in words
    assert not re.search(r"\binf\b", words)


def test_single_evaluation_gives_no_fit_but_observed_figures():
    fields = lm_benchmark_fields([{"step": 0, "eval/gold_return": 0.3, "eval/sqrt_kl": 0.0}],
                                 "rl")
    assert fields["gold_peak"] == fields["gold_final"] == 0.3
    assert math.isnan(fields["gao_alpha"]) and math.isnan(fields["sqrt_kl_at_peak_fit"])
    assert "no fit" in describe_lm_fit(fields)
    with pytest.raises(ValueError, match="no evaluation"):
        lm_benchmark_fields([{"step": 0, "train/loss": 1.0}], "rl")
    with pytest.raises(ValueError, match="form"):
        lm_benchmark_fields(_grpo_rows(), "ppo")  # type: ignore[arg-type]


def test_eval_curves_merge_relogged_rows_and_fill_sqrt_kl():
    rows = [{"step": 10, "eval/gold_return": 0.2, "eval/kl": 0.25},
            {"step": 0, "eval/gold_return": 0.1, "eval/kl": 0.0, "eval/sqrt_kl": 0.0},
            {"step": 10, "eval/gold_return": 0.3, "eval/proxy_return": None},  # resumed
            {"step": 20, "eval/kl": 1.0},  # no gold: not an evaluation
            {"step": 30, "eval/gold_return": 0.4, "eval/kl": -0.01}]  # MC estimate < 0
    c = lm_eval_curves(rows)
    assert c["step"].tolist() == [0, 10, 30]
    assert c["eval/gold_return"].tolist() == [0.1, 0.3, 0.4]
    assert c["eval/sqrt_kl"][1] == pytest.approx(0.5)
    assert math.isnan(c["eval/sqrt_kl"][2]) and math.isnan(c["eval/proxy_return"][0])
    gao = lm_gao_analysis(c, "rl")  # d = 0 and 0.5 only: rank 1, no fit
    assert gao.fit is None and "rank" in (gao.reason or "")
    assert gao.gold_ref == 0.1 and gao.d_ref == 0.0 and gao.step.tolist() == [0, 10]


def test_is_lm_run():
    assert is_lm_run({}, {"track": "lm"})
    assert is_lm_run({"algorithm": "bon"}, {})
    assert is_lm_run({}, {"algorithm": "online_dpo"})
    assert not is_lm_run({"algorithm": "grpo"}, {"track": "control"})  # the track decides
    assert not is_lm_run({"algorithm": "pebble"}, {})
    assert not is_lm_run({"algorithm": "iql"}, {"x_axis": "gradient updates"})


def test_samples_are_read_by_step_and_a_torn_line_is_skipped(tmp_path):
    _write_lm_run(tmp_path)
    samples = read_lm_samples(tmp_path)
    assert sorted(samples) == [0, 50, 200] and all(len(v) == 4 for v in samples.values())
    assert read_lm_samples(tmp_path / "nowhere") == {}


# ------------------------------------------------------------------------- terminal report


def test_terminal_report_of_a_grpo_run(tmp_path, capsys):
    sentence = _write_lm_run(tmp_path)
    assert sentence, "the planted rise-then-fall must raise the alarm"
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    text = _flat(captured.out + captured.err)
    assert "algorithm grpo on task sentiment, base model runs/lm-base, seed 0" in text
    assert "200 optimizer steps in 42 s (finished)" in text
    assert "labels: 120; teacher oracle; judge lexicon, judge-vs-gold agreement 80%" in text
    assert "held-out accuracy 0.85, held-out ECE 0.050" in text
    assert sentence in text
    # a drop in [-1, 1] score units is given to two significant digits, never "0.0"
    assert re.search(r"gold return 0\.\d\d below its peak at step 50 ", sentence)
    assert ("observed gold peaked at step 50 (sqrt KL 1, gold 0.6) then fell to 0.407 at the "
            "end (drop 0.193, standard error 0.0356)") in text
    assert ("RL fit (Gao et al. 2022 Eq. 2, R = d (alpha - beta log d)): alpha 0.5, beta 0.5, "
            "R² 1.00; fitted peak at sqrt KL 1 with gold 0.6") in text
    # the evaluation table: the peak row (step, gold, proxy, sqrt KL, disagreement)
    assert re.search(r"50 .? ?0\.600 .? ?1\.500 .? ?1\.000 .? ?0\.100", text)
    assert not re.search(r"\binf\b|\bnan\b", text)


def test_terminal_report_of_a_bon_run(tmp_path, capsys):
    _write_lm_run(tmp_path, "bon", samples=False)
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    text = _flat(captured.out + captured.err)
    assert "7 values of n (1 to 64)" in text
    # the alarm names grid indices; the note gives their n (steps 4 and 2: n = 16 and 4)
    assert re.search(r"detected at step 4: gold return 0\.\d\d below its peak at step 2 ", text)
    assert "(steps index the n grid: detected at n = 16, gold peak at n = 4)" in text
    assert "best-of-n fit (Gao et al. 2022 Eq. 1" in text
    assert "fitted peak at sqrt KL 0.75 with gold 0.425" in text
    assert "observed gold peaked at n = 4 " in text
    assert "held-out accuracy 0.90" in text


# ------------------------------------------------------------------------- report.html


def test_report_html_of_a_grpo_run(tmp_path, capsys):
    sentence = _write_lm_run(tmp_path)
    assert main(["report", str(tmp_path), "--html"]) == 0
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # step curves, Gao curve, reward model
    text = _text_of_html(page)
    assert "RewardLab language-model run report" in text
    assert "lm.task sentiment" in text and "lm.base_model runs/lm-base" in text
    assert "base model runs/lm-base" in text and "labels (preferences answered) 120" in text
    assert sentence in text
    assert "RL (Gao et al. 2022 Eq. 2) 0.5 0.5 1 1 0.6" in text  # form alpha beta R² d* gold
    assert "fitted peak at sqrt KL 1 with gold 0.6" in text
    # reward model per round
    assert "round" in text and re.search(r"100 3 120 0\.85 0\.05 0\.95 0\.82 0\.8", text)
    # samples at the first evaluation, the gold peak and the end; text escaped
    assert "first evaluation: step 0" in text and "gold peak: step 50" in text
    assert "end: step 200" in text and "a lovely calm morning #0" in text
    assert "&lt;b&gt;good&lt;/b&gt;" in page and "<b>good</b>" not in page
    assert "#3" not in text  # three completions shown per evaluation
    assert not re.search(r"\binf\b|\bnan\b", text)


def test_gao_plot_marks_the_fitted_and_the_observed_peak(tmp_path):
    _write_lm_run(tmp_path)
    curves = lm_eval_curves(read_metrics(tmp_path))
    gao = lm_gao_analysis(curves, "rl")
    fig = new_figure(8.5, 4.8)
    draw_lm_gao(fig, gao, curves)
    ax = fig.axes[0]
    points = {(round(float(line.get_xdata()[0]), 6), round(float(line.get_ydata()[0]), 6),
               line.get_marker()) for line in ax.get_lines() if len(line.get_xdata()) == 1}
    assert (1.0, 0.6, "^") in points and (1.0, 0.6, "*") in points
    fitted = max((line for line in ax.get_lines()), key=lambda line: len(line.get_xdata()))
    x, y = np.asarray(fitted.get_xdata()), np.asarray(fitted.get_ydata())
    np.testing.assert_allclose(y, _rl_gold(x, 0.5, 0.5), atol=1e-9)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(lab.startswith("fitted peak: d*=1, gold 0.6") for lab in labels)
    assert fig.axes[1].get_ylabel().startswith("proxy score")


def test_report_html_of_a_bon_run_without_samples(tmp_path):
    _write_lm_run(tmp_path, "bon", samples=False)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    text = _text_of_html((tmp_path / "r.html").read_text())
    assert "best-of-n (Gao et al. 2022 Eq. 1) 0.6 0.4 1 0.75 0.425" in text
    assert "n-grid index n gold" in text and "analytic for best-of-n" in text
    assert "This run saved no text samples" in text


# ------------------------------------------------------------------------- compare


def test_compare_lm_runs(tmp_path, capsys):
    runs = {"plain": (0.5, 0.5), "beta_large": (0.4, 0.2)}  # peak at d = 1 and at d = e
    for name, (alpha, beta) in runs.items():
        (tmp_path / name).mkdir()
        _write_lm_run(tmp_path / name, alpha=alpha, beta=beta, samples=False)
    (tmp_path / "bon").mkdir()
    _write_lm_run(tmp_path / "bon", "bon", samples=False)
    out = tmp_path / "cmp.html"
    assert main(["compare", *(str(tmp_path / n) for n in (*runs, "bon")), "--out",
                 str(out)]) == 0
    captured = capsys.readouterr()
    terminal = _flat(captured.out + captured.err)
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1
    text = _text_of_html(page)
    # run, algorithm, gold first, gold at peak, gold at end, drop (s.e.), sqrt KL at peak,
    # fitted d*, fitted gold at d*, R²
    assert "plain grpo 0.1 0.6 0.407 0.193 (0.0356) 1 1 0.6 1" in text
    # larger beta: gold still rising at d = 2, the fitted peak (d = e) is beyond the data
    assert re.search(r"beta_large grpo 0\.1 \S+ \S+ 0 \(0\) 2 2\.72 ", text)
    assert "bon bon 0.2" in text and " 0.75 0.425 1" in text
    assert re.search(r"plain .? ?grpo .? ?0\.100 .? ?0\.600 .? ?0\.407 .? ?1\.000 .? ?1\.000",
                     terminal)
    assert f"comparison: {out}" in terminal


def test_lm_reports_read_each_metrics_file_once(tmp_path, monkeypatch):
    """report_html tells a language-model run by its summary/config and hands it over before
    reading metrics.jsonl; the language-model pages read each run's metrics once."""
    from rewardlab.diagnostics import report_data, report_html

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _write_lm_run(tmp_path / name, samples=False)
    reads: list[Path] = []

    def counted(run_dir):
        reads.append(Path(run_dir))
        return read_metrics(run_dir)

    for module in (report_html, report_data):  # the writers, and load_run the LM pages use
        monkeypatch.setattr(module, "read_metrics", counted)
    report_html.write_run_report(tmp_path / "a")
    assert reads == [tmp_path / "a"]
    reads.clear()
    report_html.write_compare_report([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp.html")
    assert reads == [tmp_path / "a", tmp_path / "b"]


def test_compare_refuses_mixing_lm_and_control_runs(tmp_path, capsys):
    lm_run, control = tmp_path / "lm", tmp_path / "control"
    lm_run.mkdir()
    control.mkdir()
    _write_lm_run(lm_run, samples=False)
    logger = MetricLogger(control, tensorboard=False)
    for i in range(4):
        logger.log(1000 * (i + 1), {"eval/gold_return": float(i), "eval/proxy_return": 0.0,
                                    "diagnostics/sqrt_kl": 0.1 * i})
    logger.close()
    (control / "config.yaml").write_text(yaml.safe_dump({"algorithm": "pebble"}))
    out = tmp_path / "cmp.html"
    assert main(["compare", str(lm_run), str(control), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    message = _flat(captured.out + captured.err)
    assert "cannot compare language-model runs" in message and str(lm_run) in message
    assert not out.exists()
    # the control run alone still compares as before
    assert main(["compare", str(control), "--out", str(out)]) == 0 and out.exists()


def test_terminal_report_of_an_lm_run_reads_its_feedback_store(tmp_path, capsys):
    from rewardlab.store.store import FeedbackStore
    from rewardlab.types import Label, Preference
    from tests.helpers import text_segments

    _write_lm_run(tmp_path, samples=False)
    with FeedbackStore.open(tmp_path) as store:
        ids = store.records.add_text_segments(text_segments(4))
        q1, q2 = store.records.add_queries([(ids[0], ids[2]), (ids[1], ids[3])], round=0)
        store.records.add_preferences([Preference(q1, Label.LEFT, "lexicon-judge"),
                                       Preference(q2, Label.RIGHT, "lexicon-judge")])
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    text = _flat(captured.out + captured.err)
    assert "feedback: 2 queries asked, 2 answered (0 skipped), 0 pending" in text
    assert "answers: lexicon-judge 2" in text


def test_offline_and_control_runs_keep_their_reports(tmp_path, capsys):
    """Detection never takes a control or offline run for a language-model run."""
    for name, algorithm, summary in (
        ("offline", "iql", {"x_axis": "gradient updates", "dataset": "d", "env": "Pendulum-v1"}),
        ("control", "pebble", {"env": "Toy-v0"}),
    ):
        run = tmp_path / name
        logger = MetricLogger(run, tensorboard=False)
        for i in range(3):
            logger.log(100 * i, {"eval/gold_return": float(i), "eval/proxy_return": 0.5 * i,
                                 "diagnostics/sqrt_kl": 0.1 * i})
        logger.close()
        (run / "config.yaml").write_text(yaml.safe_dump({"algorithm": algorithm, "seed": 1}))
        (run / "summary.json").write_text(json.dumps({
            "algorithm": algorithm, "seed": 1, "steps": 200, "wall_time_s": 3.0, **summary}))
        assert main(["report", str(run), "--html"]) == 0
        text = _flat(capsys.readouterr().err)
        assert "language-model" not in text and "gold return: first eval 0.0, final 2.0" in text
        assert ("(x: gradient updates)" in text) == (name == "offline")
        page = (run / "report.html").read_text()
        assert "RewardLab run report" in page and "language-model" not in page
