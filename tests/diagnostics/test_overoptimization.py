import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from rewardlab.diagnostics.gao_fit import fit_gao, gao_curve
from rewardlab.diagnostics.metrics import MetricLogger, gold_proxy_curves, read_metrics
from rewardlab.diagnostics.overoptimization import DivergenceEvent, detect_divergence
from rewardlab.diagnostics.policy_kl import kl_gaussian_policies, mean_state_kl

# ---------------------------------------------------------------------------- Gao et al. fits


@pytest.mark.parametrize(("form", "alpha", "beta"), [("bon", 2.0, 0.5), ("rl", 1.5, 0.6)])
def test_fit_gao_recovers_coefficients_and_peak(form, alpha, beta):
    rng = np.random.default_rng(0)
    d = np.linspace(0.0, 8.0, 60)  # includes d = 0, where d log d -> 0
    gold = gao_curve(d, alpha, beta, form) + rng.normal(0.0, 0.05, d.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) warnings
        fit = fit_gao(d, gold, form)
    assert fit.form == form
    assert fit.alpha == pytest.approx(alpha, abs=0.05)
    assert fit.beta == pytest.approx(beta, abs=0.03)
    assert fit.r2 > 0.99
    true_peak = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    assert fit.peak_d == pytest.approx(true_peak, rel=0.1)
    # the reported peak is the maximum of the fitted curve
    grid = np.linspace(0.0, 20.0, 20001)
    assert fit.peak_gold == pytest.approx(fit.predict(grid).max(), rel=1e-4)
    assert fit.predict(np.array([fit.peak_d]))[0] == pytest.approx(fit.peak_gold)


def test_fit_gao_exact_data_and_closed_form_peaks():
    d = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    fit = fit_gao(d, d * (3.0 - 1.0 * d), "bon")
    assert (fit.alpha, fit.beta) == pytest.approx((3.0, 1.0))
    assert fit.r2 == pytest.approx(1.0)
    assert (fit.peak_d, fit.peak_gold) == pytest.approx((1.5, 2.25))
    fit = fit_gao(d, gao_curve(d, 2.0, 1.0, "rl"), "rl")
    assert (fit.peak_d, fit.peak_gold) == pytest.approx((math.e, math.e))  # beta * exp(a/b - 1)


def test_fit_gao_without_interior_peak():
    d = np.linspace(0.1, 3.0, 10)
    for form in ("bon", "rl"):
        fit = fit_gao(d, gao_curve(d, 1.0, -0.5, form), form)  # beta < 0: unbounded growth
        assert fit.beta < 0 and fit.peak_d == math.inf and fit.peak_gold == math.inf
    fit = fit_gao(d, gao_curve(d, -1.0, 0.5, "bon"), "bon")  # falls from the start
    assert (fit.peak_d, fit.peak_gold) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("d", "gold", "form", "match"),
    [
        ([0.0, -1.0, 2.0], [0.0, 1.0, 2.0], "bon", "d:"),
        ([0.0, 1.0, 2.0], [0.0, 1.0], "bon", "gold:"),
        ([0.0, 1.0, 2.0], [0.0, np.nan, 2.0], "rl", "gold:"),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], "rl", "d:"),
        ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], "ppo", "form:"),
    ],
)
def test_fit_gao_rejects_bad_input(d, gold, form, match):
    with pytest.raises(ValueError, match=match):
        fit_gao(np.array(d), np.array(gold), form)


# ---------------------------------------------------------------------------- divergence

N_EVAL, EPISODES, EP_STD, EVERY = 30, 10, 20.0, 5000
PEAK = 15


def _simulate(kind: str, seed: int):
    """Eval curves from per-episode gold returns (like EvalResult.metrics, np.std ddof 0)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_EVAL)
    if kind == "diverge":  # gold up to eval 15, then down to 20 while proxy keeps rising
        mu = np.where(t <= PEAK, 100.0 * t / PEAK, 100.0 - 80.0 * (t - PEAK) / (N_EVAL - 1 - PEAK))
    elif kind == "rise":
        mu = 100.0 * t / (N_EVAL - 1)
    else:  # plateau
        mu = np.full(N_EVAL, 100.0)
    episodes = rng.normal(mu[:, None], EP_STD, size=(N_EVAL, EPISODES))
    proxy = 200.0 * t / (N_EVAL - 1) + rng.normal(0.0, 5.0, N_EVAL)
    return EVERY * (t + 1), episodes.mean(1), proxy, episodes.std(1)


def _detect(mode: str, steps, gold, proxy, std, alpha=0.05) -> DivergenceEvent | None:
    if mode == "welch":
        return detect_divergence(steps, gold, proxy, std, n_episodes=EPISODES, alpha=alpha)
    return detect_divergence(steps, gold, proxy, alpha=alpha)


@pytest.mark.parametrize("mode", ["welch", "robust"])
def test_detects_planted_divergence_across_seeds(mode):
    events = [_detect(mode, *_simulate("diverge", seed)) for seed in range(20)]
    fired = [e for e in events if e is not None]
    assert len(fired) >= 19
    for e in fired:
        assert e.step > e.peak_step >= (PEAK - 3 + 1) * EVERY  # after a peak near the true one
        assert e.drop == pytest.approx(e.peak_gold - e.gold_at_detection) and e.drop > 0
        assert e.proxy_gain_since_peak > 0
        assert 0.0 <= e.p_value <= 0.05


@pytest.mark.parametrize("mode", ["welch", "robust"])
def test_silent_when_gold_and_proxy_both_rise(mode):
    false_alarms = sum(_detect(mode, *_simulate("rise", seed)) is not None for seed in range(20))
    assert false_alarms <= 1


@pytest.mark.parametrize("mode", ["welch", "robust"])
def test_silent_on_noisy_gold_plateau(mode):
    # alpha bounds the chance of any false alarm over a series; at 0.01 we expect ~0.2 in 20
    false_alarms = sum(
        _detect(mode, *_simulate("plateau", seed), alpha=0.01) is not None for seed in range(20)
    )
    assert false_alarms <= 1


@pytest.mark.parametrize("mode", ["welch", "robust"])
def test_family_wise_false_alarm_rate_at_most_alpha(mode):
    # plateau is the least favourable "gold never falls" case; 200 series at alpha = 0.05:
    # P(Binomial(200, 0.05) >= 19) < 0.3 %
    false_alarms = sum(
        _detect(mode, *_simulate("plateau", seed)) is not None for seed in range(1000, 1200)
    )
    assert false_alarms <= 18


def test_event_fields_match_hand_computed_welch_test():
    steps = np.arange(6) * 1000
    gold = np.array([0.0, 50.0, 100.0, 60.0, 20.0, 10.0])
    proxy = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    ev = detect_divergence(steps, gold, proxy, gold_std=5.0, n_episodes=10)
    s2_over_k = 25.0 * 10 / 9 / 10  # ddof-0 std -> sample variance, over k
    t = 40.0 / math.sqrt(2 * s2_over_k)
    p = min(1.0, 15 * stats.t.sf(t, 18.0))  # 6 evals -> 15 pairs; equal variances -> df 18
    assert ev == DivergenceEvent(
        step=3000, peak_step=2000, peak_gold=100.0, gold_at_detection=60.0, drop=40.0,
        proxy_gain_since_peak=1.0, p_value=pytest.approx(p, rel=1e-9),
    )
    # practical-significance threshold delays the alarm to the first drop >= 50
    assert detect_divergence(steps, gold, proxy, 5.0, 10, min_drop=50.0).step == 4000
    # a missing std makes an evaluation untestable
    std = np.array([5.0, 5.0, 5.0, np.nan, 5.0, 5.0])
    assert detect_divergence(steps, gold, proxy, std, 10).step == 4000


def test_silent_when_proxy_falls_with_gold():
    steps = np.arange(12) * 1000
    gold = np.concatenate([np.linspace(0, 100, 6), np.linspace(80, 0, 6)])
    assert detect_divergence(steps, gold, gold.copy(), gold_std=1.0, n_episodes=10) is None
    assert detect_divergence(steps, gold, gold.copy()) is None
    ev = detect_divergence(steps, gold, np.arange(12.0))  # same gold, rising proxy: fires
    assert ev is not None and ev.peak_step == 5000


def test_missing_values_and_short_series():
    steps = np.arange(12) * 1000
    gold = np.concatenate([np.linspace(0, 100, 6), np.linspace(80, 0, 6)])
    proxy = np.arange(12.0)
    proxy[:3] = np.nan  # no reward model yet
    gold_nan = gold.copy()
    gold_nan[6] = np.nan  # a failed evaluation is dropped
    ev = detect_divergence(steps, gold_nan, proxy, gold_std=1.0, n_episodes=5)
    assert ev.step == 7000 and ev.peak_step == 5000
    assert detect_divergence(steps[:4], gold[:4], proxy[:4]) is None  # too short for robust


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": [0, 2, 1, 3, 4]}, "steps:"),
        ({"gold": [1.0, 2.0]}, "gold:"),
        ({"proxy": [[1.0] * 5]}, "proxy:"),
        ({"gold_std": 1.0}, "n_episodes"),
        ({"gold_std": -1.0, "n_episodes": 5}, "gold_std:"),
        ({"gold_std": 1.0, "n_episodes": 1}, "n_episodes:"),
        ({"gold_std": [1.0, 2.0], "n_episodes": 5}, "gold_std:"),
        ({"window": 1}, "window:"),
        ({"alpha": 1.5}, "alpha:"),
        ({"min_drop": -1.0}, "min_drop:"),
    ],
)
def test_detect_divergence_rejects_bad_input(kwargs, match):
    args = {"steps": np.arange(5), "gold": np.ones(5), "proxy": np.ones(5)} | kwargs
    with pytest.raises(ValueError, match=match):
        detect_divergence(**args)


# ---------------------------------------------------------------------------- policy KL


def test_kl_matches_torch_and_hand_value():
    rng = np.random.default_rng(0)
    mp, mq = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    sp, sq = rng.uniform(0.1, 2.0, (50, 3)), rng.uniform(0.1, 2.0, (50, 3))
    kl = kl_gaussian_policies(mp, sp, mq, sq)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(mp), torch.tensor(sp)),
        torch.distributions.Normal(torch.tensor(mq), torch.tensor(sq)),
    ).sum(-1)
    assert kl.shape == (50,) and kl.dtype == np.float64
    np.testing.assert_allclose(kl, ref.numpy(), rtol=1e-10)
    # KL(N(0,1) || N(1,2^2)) = log 2 + (1 + 1) / 8 - 1/2
    one = kl_gaussian_policies([[0.0]], [[1.0]], [[1.0]], [[2.0]])
    assert one[0] == pytest.approx(math.log(2) + 0.25 - 0.5)
    assert mean_state_kl(mp, sp, mq, sq) == pytest.approx(kl.mean())
    np.testing.assert_allclose(kl_gaussian_policies(mp, sp, mp, sp), 0.0, atol=1e-12)


def test_kl_broadcasts_state_independent_std_and_validates():
    mp = np.zeros((4, 2))
    kl = kl_gaussian_policies(mp, np.array([1.0, 1.0]), mp + 1.0, np.array([1.0, 1.0]))
    np.testing.assert_allclose(kl, 1.0)  # 2 dims x (1^2 / 2)
    with pytest.raises(ValueError, match="std_q"):
        kl_gaussian_policies(mp, 1.0, mp, 0.0)
    with pytest.raises(ValueError, match=r"\(N, act_dim\)"):
        kl_gaussian_policies(np.zeros(3), 1.0, np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="mean_p"):
        mean_state_kl(np.zeros((0, 2)), 1.0, np.zeros((0, 2)), 1.0)


# ---------------------------------------------------------------------------- metrics rows


def test_gold_proxy_curves_from_metrics_file(tmp_path):
    log = MetricLogger(tmp_path, tensorboard=False)
    log.log(1000, {"train/loss": 1.0})
    log.log(2000, {"eval/gold_return": 10.0, "eval/gold_return_std": 2.0,
                   "eval/proxy_return": float("nan"), "eval/episode_length": 200.0})
    log.log(2000, {"reward_model/disagreement_on_policy": 0.1})
    log.log(4000, {"eval/gold_return": 30.0, "eval/proxy_return": 5.0})
    log.log(3000, {"eval/gold_return": 20.0, "eval/proxy_return": 4.0,
                   "eval/gold_return_std": 1.0, "eval/episode_length": 150.0})
    log.log(4000, {"eval/gold_return": 31.0})  # re-logged after a resume: last wins
    log.close()
    c = gold_proxy_curves(read_metrics(tmp_path))
    np.testing.assert_array_equal(c["step"], [2000, 3000, 4000])
    assert c["step"].dtype == np.int64
    np.testing.assert_array_equal(c["eval/gold_return"], [10.0, 20.0, 31.0])
    np.testing.assert_array_equal(c["eval/proxy_return"], [np.nan, 4.0, 5.0])
    np.testing.assert_array_equal(c["eval/gold_return_std"], [2.0, 1.0, np.nan])
    np.testing.assert_array_equal(c["eval/episode_length"], [200.0, 150.0, np.nan])
    empty = gold_proxy_curves([])
    assert empty["step"].shape == (0,) and empty["eval/gold_return"].shape == (0,)


def test_curves_feed_divergence_detection():
    steps, gold, proxy, std = _simulate("diverge", 0)
    rows = [
        {"step": int(s), "eval/gold_return": g, "eval/proxy_return": p, "eval/gold_return_std": d}
        for s, g, p, d in zip(steps, gold, proxy, std, strict=True)
    ]
    c = gold_proxy_curves(rows[::-1])  # order of rows does not matter
    ev = detect_divergence(c["step"], c["eval/gold_return"], c["eval/proxy_return"],
                           c["eval/gold_return_std"], EPISODES)
    assert ev == _detect("welch", steps, gold, proxy, std)


def test_divergence_monitor_reports_once_and_ignores_pre_reward_evals():
    from rewardlab.diagnostics.overoptimization import DivergenceMonitor

    rng = np.random.default_rng(0)
    gold = np.concatenate([np.linspace(0, 100, 15), np.linspace(100, 20, 15)])
    gold = gold + rng.normal(0, 3, 30)
    proxy = np.linspace(0, 200, 30)
    monitor = DivergenceMonitor(n_episodes=5)
    assert monitor.update(0, -50.0, float("nan"), 5.0) is None  # no reward model yet
    events = [monitor.update(1000 * (i + 1), gold[i], proxy[i], 5.0) for i in range(30)]
    fired = [e for e in events if e is not None]
    assert len(fired) == 1
    assert 15_000 <= fired[0].peak_step <= 17_000 and fired[0].step > fired[0].peak_step
    matched = DivergenceMonitor(n_episodes=5)
    rising = np.linspace(0, 100, 30) + rng.normal(0, 3, 30)
    assert all(matched.update(1000 * (i + 1), rising[i], proxy[i], 5.0) is None
               for i in range(30))
