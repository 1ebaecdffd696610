"""Seasonality (lib/seasonality.py): period shifts and counts by hand, the target-vs-window offset
by hand, and the shrinkage estimate recovering a strong fourth quarter while leaving an org without
seasonality near zero."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from quota_platform.lib.core import calendar as cal
from quota_platform.lib.forecast import seasonality as S
from quota_platform.lib.forecast.training import Period

CAL = cal.FiscalCalendar(1)


def test_fiscal_positions_follow_the_fiscal_year():
    feb = cal.FiscalCalendar(2)  # fiscal year starting in February
    assert [feb.fiscal_quarter(date(2025, m, 1)) for m in (2, 4, 5, 1, 12)] == [1, 1, 2, 4, 4]
    assert [feb.month_of_quarter(date(2025, m, 1)) for m in (2, 3, 4, 5, 1)] == [1, 2, 3, 1, 3]
    assert [CAL.fiscal_quarter(date(2025, m, 1)) for m in (1, 3, 4, 10, 12)] == [1, 1, 2, 4, 4]


def test_win_rate_shifts_by_hand():
    # one cell key, two periods: 8 of 10 won and 2 of 10 won. Pooled rate (10 + 0.5) / (20 + 1)
    # = 0.5, logit 0, so each period's shift is the logit of its own rate: +-log(4) = +-1.3863,
    # with variance 1 / (10 x 0.8 x 0.2) = 0.625.
    cells = pl.DataFrame({
        "period_id": ["quarter:2025-01-01", "quarter:2025-04-01"], "stage": ["S", "S"], "deal_class": ["new_business"] * 2,
        "close_date_bucket": ["in_period"] * 2, "elapsed": [0.5, 0.5], "trials": [10.0, 10.0], "wins": [8.0, 2.0],
    })
    got = S.win_rate_shifts(cells).sort("period_id")
    assert got["delta"].to_list() == pytest.approx([np.log(4), -np.log(4)], abs=1e-9)
    assert got["var"].to_list() == pytest.approx([0.625, 0.625], abs=1e-9)


def test_win_rate_shift_of_a_period_with_no_wins_stays_finite():
    cells = pl.DataFrame({
        "period_id": ["a", "b"], "stage": ["S", "S"], "close_date_bucket": ["in_period"] * 2,
        "elapsed": [0.5, 0.5], "trials": [10.0, 10.0], "wins": [0.0, 5.0],
    })
    got = dict(S.win_rate_shifts(cells).select("period_id", "delta").iter_rows())
    # pooled (5.5 / 21), logit -1.0361; period a is held at 0.5 wins: logit(0.05) = -2.9444
    assert got["a"] == pytest.approx(np.log(0.05 / 0.95) - np.log(5.5 / 15.5), abs=1e-9)
    assert np.isfinite(got["b"])


def test_new_deal_counts_by_hand():
    q1 = Period("quarter", date(2025, 1, 1), date(2025, 3, 31))  # first checkpoint Jan 9
    q2 = Period("quarter", date(2025, 4, 1), date(2025, 6, 30))  # first checkpoint Apr 9
    won = pl.DataFrame({
        "period_id": [q1.id, q1.id, q1.id, q2.id],
        "Id": ["a", "b", "c", "d"],
        "created": [date(2024, 12, 1), date(2025, 1, 9), date(2025, 1, 10), date(2025, 3, 1)],
    })
    got = S.new_deal_counts(won, [q1, q2]).sort("period_id")
    # Q1: only c was created after Jan 9; Q2: d was created before the quarter
    assert got["count"].to_list() == [1.0, 0.0]
    assert got["y"].to_list() == pytest.approx([np.log(1.5), np.log(0.5)])
    assert got["var"].to_list() == pytest.approx([1 / 1.5, 1 / 0.5])


def test_offset_is_target_minus_window_average_by_hand():
    mean = np.array([0.1, -0.2, 0.0, 0.3])
    cov = np.diag([0.01, 0.02, 0.03, 0.04])
    fit = S.SeasonalFit(S._labels(cal.QUARTER), mean, cov, n_periods=8)
    m, sd = fit.offset(cal.QUARTER, date(2025, 10, 1), [date(2025, 4, 1), date(2025, 7, 1)], CAL)
    # Q4 against the average of Q2 and Q3: 0.3 - (-0.2 + 0.0) / 2 = 0.4;
    # variance 0.04 + (0.02 + 0.03) / 4 = 0.0525
    assert m == pytest.approx(0.4)
    assert sd == pytest.approx(np.sqrt(0.0525))
    # a window of the target's own quarter from last year: no offset
    assert fit.offset(cal.QUARTER, date(2025, 10, 1), [date(2024, 10, 1)], CAL) == (0.0, 0.0)


def test_too_few_periods_estimate_nothing():
    starts = [date(2025, 1, 1), date(2025, 4, 1), date(2025, 7, 1)]
    fit = S.fit_effects(cal.QUARTER, starts, np.zeros(3), np.full(3, 0.01), CAL)
    assert fit.labels == () and "fewer than 5" in fit.reason
    assert fit.offset(cal.QUARTER, date(2025, 10, 1), starts, CAL) == (0.0, 0.0)


def _simulate(period_type, effect, n, seed, shock=0.05, sampling_var=0.003):
    rng = np.random.default_rng(seed)
    step = 3 if period_type == cal.QUARTER else 1
    starts = [cal.add_months(date(2023, 1, 1), step * i) for i in range(n)]
    y = np.array([effect[CAL.fiscal_quarter(d) - 1] for d in starts])
    y = y + 0.04 * np.arange(n) / n + shock * rng.standard_normal(n) + np.sqrt(sampling_var) * rng.standard_normal(n)
    return starts, y, np.full(n, sampling_var)


@pytest.mark.parametrize("period_type,n,tolerance", [(cal.QUARTER, 8, 0.11), (cal.MONTH, 24, 0.05)])
def test_a_strong_fourth_quarter_is_recovered(period_type, n, tolerance):
    # Q4 0.4 stronger on the logit scale than the other quarters; the window holds Q2 and Q3
    # periods, so the true offset of Q4 is 0.4. Over 20 independent orgs: every offset is
    # positive, the 80% interval (+-1.28 sd) holds the truth for at least 14 of 20, and the
    # average is within ``tolerance``: two years of quarters see each quarter twice, and with a
    # period shock of sd 0.05 the shrinkage toward zero keeps about a quarter of the effect back
    # (measured mean 0.30); 24 months see each quarter six times (measured mean 0.41).
    window = (
        [date(2025, 4, 1), date(2025, 7, 1)] if period_type == cal.QUARTER
        else [cal.add_months(date(2025, 4, 1), i) for i in range(6)]
    )
    offsets, covered = [], 0
    for seed in range(20):
        starts, y, v = _simulate(period_type, (0.0, 0.0, 0.0, 0.4), n, seed)
        m, sd = S.fit_effects(period_type, starts, y, v, CAL).offset(period_type, date(2025, 10, 1), window, CAL)
        assert m > 0.05, (seed, m, sd)
        covered += abs(m - 0.4) < 1.28 * sd
        offsets.append(m)
    assert covered >= 14
    assert np.mean(offsets) == pytest.approx(0.4, abs=tolerance)


def test_no_seasonality_shrinks_to_near_zero():
    window = [date(2025, 4, 1), date(2025, 7, 1)]
    offsets, sds = [], []
    for seed in range(20):
        starts, y, v = _simulate(cal.QUARTER, (0.0, 0.0, 0.0, 0.0), 8, seed)
        m, sd = S.fit_effects(cal.QUARTER, starts, y, v, CAL).offset(cal.QUARTER, date(2025, 10, 1), window, CAL)
        offsets.append(m)
        sds.append(sd)
    # no made-up pattern: offsets within 0.12 of zero (a 0.05 shock could fake about that much in
    # two years), on average near zero, and the added spread stays small
    assert np.max(np.abs(offsets)) < 0.12
    assert abs(np.mean(offsets)) < 0.03
    assert np.median(sds) < 0.08


def test_bad_responses_raise():
    starts = [cal.add_months(date(2023, 1, 1), 3 * i) for i in range(8)]
    with pytest.raises(ValueError, match="finite"):
        S.fit_effects(cal.QUARTER, starts, np.array([0.0] * 7 + [np.nan]), np.full(8, 0.01), CAL)


def test_period_shock_scale_is_learned_from_the_lookback():
    # 24 months of periods with a common shock of sd 0.3 (logit) against 0.02: the posterior mean
    # of sigma lands near each (grid 0..0.7; measured 0.28 and 0.03 on these seeds)
    means = {}
    for shock in (0.3, 0.02):
        starts, y, v = _simulate(cal.MONTH, (0.0, 0.0, 0.0, 0.0), 24, seed=5, shock=shock)
        fit = S.fit_effects(cal.MONTH, starts, y, v, CAL)
        assert sum(fit.shock_weights) == pytest.approx(1.0)
        means[shock] = float(np.dot(fit.shock_grid, fit.shock_weights))
    assert means[0.3] == pytest.approx(0.3, abs=0.1)
    assert means[0.02] < 0.08
    # the adjustment widens it for a new period against a window of 6: x sqrt(1 + 1/6)
    adj = S.seasonal_adjustment(cal.MONTH, date(2025, 10, 1), [cal.add_months(date(2025, 4, 1), i) for i in range(6)],
                                fit, fit, CAL)
    values, weights = adj.shock_sd
    assert np.dot(values, weights) == pytest.approx(means[0.02] * np.sqrt(7 / 6))
    draws = adj.shock_sd_draws(np.random.default_rng(0).random(20_000))
    assert draws.shape == (20_000,) and set(np.unique(draws)) <= set(values)
    assert draws.mean() == pytest.approx(np.dot(values, weights), rel=0.05)  # the posterior, sampled
    # inverse CDF by hand: weights 0.2 / 0.5 / 0.3 on 0.1 / 0.2 / 0.3
    by_hand = S.SeasonalAdjustment(shock_sd=((0.1, 0.2, 0.3), (0.2, 0.5, 0.3)))
    assert by_hand.shock_sd_draws(np.array([0.0, 0.19, 0.2, 0.69, 0.7, 0.999])).tolist() == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    # nothing estimated: no shock of its own (the win-rate fit's is used)
    assert S.seasonal_adjustment(cal.MONTH, date(2025, 10, 1), [], S.none("x"), S.none("x"), CAL).shock_sd is None
