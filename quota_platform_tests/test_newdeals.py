"""Deals not yet created: the gamma-Poisson rate, pooling toward the team, and the compound draw's
mean against its exact value."""

import numpy as np
import polars as pl
import pytest

from quota_platform.lib.forecast.newdeals import (
    PRIOR_DEALS,
    draw_new_bookings,
    effective_days,
    exposure_curve,
    fit_new_deals,
)


def history(rows):
    return pl.DataFrame(
        rows,
        schema={"period_id": pl.String, "elapsed": pl.Float64, "days_remaining": pl.Int64, "rep_id": pl.String,
                "quota_type": pl.String, "product_family": pl.String, "deals": pl.Int64, "credit_usd": pl.Float64},
        orient="row",
    )


def test_rate_and_size_pool_toward_the_team():
    # R1: 5 checkpoints with 90 remaining days each and 2 deals each of 1,000 (one deal seen by
    # every checkpoint counts once: deals 10/5 = 2, exposure 450/5 = 90 days).
    # R2 (same team): nothing in 450/5 = 90 days.
    rows = [("Q", 0.1 * i, 90, "R1", "new_business", None, 2, 2000.0) for i in range(5)]
    rows += [("Q", 0.1 * i, 90, "R2", "new_business", None, 0, 0.0) for i in range(5)]
    model = fit_new_deals(history(rows), pl.DataFrame({"rep_id": ["R1", "R2"], "team_id": ["T", "T"]}))
    params = model.parameters(pl.DataFrame({"rep_id": ["R1", "R2", "R9"], "team_id": ["T", "T", "T"],
                                            "quota_type": ["new_business"] * 3, "product_family": [None, None, None]},
                                           schema_overrides={"product_family": pl.String}))
    by_rep = {r["rep_id"]: r for r in params.iter_rows(named=True)}
    # team: 2 deals in 180 days -> rate 1/90 per day; prior Gamma(2, 2 / (1/90) = 180)
    # R1: Gamma(2 + 2, 180 + 90) -> mean 4 / 270; R2: Gamma(2, 270) -> mean 2 / 270
    assert by_rep["R1"]["shape"] / by_rep["R1"]["inv_scale"] == pytest.approx(4 / 270)
    assert by_rep["R2"]["shape"] / by_rep["R2"]["inv_scale"] == pytest.approx(2 / 270)
    # mean size: R1 credited 5 x 2,000 = 10,000 over 5 x 2 = 10 deal sightings: 1,000 a deal, and the
    # team's size is the same 10,000 / 10 = 1,000 -> (10,000 + 2 x 1,000) / (10 + 2) = 1,000;
    # R2 -> (0 + 2 x 1,000) / (0 + 2) = 1,000
    assert by_rep["R1"]["mean_size"] == pytest.approx(1000.0)
    assert by_rep["R2"]["mean_size"] == pytest.approx(1000.0)
    assert by_rep["R9"]["new_deal_source"] == "team"
    assert by_rep["R9"]["shape"] == pytest.approx(PRIOR_DEALS + 2)


def test_exposure_follows_the_volume_still_to_come():
    # One quarter; company new-business deals created after each checkpoint and won in the
    # quarter: 40 after the 10% checkpoint (81 days left), 10 after 50% (45 left), none after 90%.
    # Expansion: 5, 2, 0 (under MIN_CURVE_DEALS = 20, so it takes the all-types curve: 45, 12, 0).
    rows = [("Q", 0.1, 81, "R1", "new_business", None, 40, 4e5), ("Q", 0.5, 45, "R1", "new_business", None, 10, 1e5),
            ("Q", 0.9, 9, "R1", "new_business", None, 0, 0.0), ("Q", 0.1, 81, "R1", "expansion", None, 5, 5e4),
            ("Q", 0.5, 45, "R1", "expansion", None, 2, 2e4), ("Q", 0.9, 9, "R1", "expansion", None, 0, 0.0)]
    curve = exposure_curve(history(rows))
    nb = curve.filter(pl.col("quota_type") == "new_business").sort("elapsed")
    # effective days = 81 x deals still to come / deals at the first checkpoint
    assert nb["effective_days"].to_list() == pytest.approx([81.0, 81 * 10 / 40, 0.0])
    assert curve.filter(pl.col("quota_type") == "expansion").is_empty()
    assert effective_days(curve, "new_business", 0.3, 63) == pytest.approx((81 + 20.25) / 2)  # halfway 0.1 -> 0.5
    assert effective_days(curve, "new_business", 0.95, 4) == 0.0  # past the last checkpoint: towards 0 at the end
    assert effective_days(curve, "new_business", 0.05, 86) == pytest.approx(86.0)  # before the first: days
    assert effective_days(curve, "expansion", 0.5, 45) == pytest.approx(81 * 12 / 45)
    assert effective_days(None, "expansion", 0.5, 45) == 45.0  # no curve: the days remaining
    assert effective_days(curve, "new_business", 1.0, 0) == 0.0
    # The fitted rate is per effective day: R1's new business, 50 deals x 1/5 over (81 + 20.25 + 0) / 5
    # effective days; its team is R1 alone, so the prior has the same mean.
    model = fit_new_deals(history(rows), pl.DataFrame({"rep_id": ["R1"], "team_id": ["T"]}))
    params = model.parameters(pl.DataFrame({"rep_id": ["R1"], "team_id": ["T"], "quota_type": ["new_business"],
                                            "product_family": [None]}, schema_overrides={"product_family": pl.String}))
    assert params["shape"][0] / params["inv_scale"][0] == pytest.approx(50 / 101.25)
    assert model.exposure(["new_business", "expansion"], 0.5, 45).tolist() == pytest.approx([20.25, 21.6])


def test_compound_draw_mean_matches_the_exact_mean():
    params = pl.DataFrame({"shape": [4.0, 0.0], "inv_scale": [270.0, 1.0], "mean_size": [2000.0, 500.0], "size_cv": [1.0, 1.0]})
    draws = draw_new_bookings(params, np.array([45, 45]), 200_000, np.random.default_rng(3))
    # E = E[rate] x days x size = 4/270 x 45 x 2,000 = 1,333.33; the second stream has no rate.
    assert draws[:, 0].mean() == pytest.approx(4 / 270 * 45 * 2000, rel=0.02)
    assert np.all(draws[:, 1] == 0)
    assert draws.shape == (200_000, 2)


def test_seasonal_rate_factor_scales_each_draw():
    params = pl.DataFrame({"shape": [4.0], "inv_scale": [270.0], "mean_size": [2000.0], "size_cv": [1.0]})
    n = 200_000
    factor = np.where(np.arange(n) % 2 == 0, 0.0, 1.5)  # a dead season in even draws, x1.5 in odd
    draws = draw_new_bookings(params, np.array([45]), n, np.random.default_rng(3), rate_factor=factor)
    assert np.all(draws[0::2, 0] == 0)
    # odd draws: 1.5 x 1,333.33 = 2,000
    assert draws[1::2, 0].mean() == pytest.approx(1.5 * 4 / 270 * 45 * 2000, rel=0.02)


def test_pacing_curve_weighs_periods_equally():
    from datetime import date

    from quota_platform.lib.forecast.pacing import pacing_curve, share_at

    won = pl.DataFrame({
        "period_id": ["A", "A", "B"],
        "period_start": [date(2025, 1, 1)] * 2 + [date(2025, 2, 1)],
        "period_end": [date(2025, 1, 20)] * 2 + [date(2025, 2, 20)],
        # A: 100 on day 5 (25%), 300 on day 20 (100%); B: 50 on day 10 (50%)
        "close_date": [date(2025, 1, 5), date(2025, 1, 20), date(2025, 2, 10)],
        "amount_usd": [100.0, 300.0, 50.0],
    })
    curve = pacing_curve(won)
    at = dict(zip(curve["elapsed"].to_list(), curve["share"].to_list()))
    # at 25%: A 100/400 = 0.25, B 0 -> 0.125; at 50%: A 0.25, B 1 -> 0.625; at 100%: 1
    assert at[0.25] == pytest.approx(0.125)
    assert at[0.5] == pytest.approx(0.625)
    assert at[1.0] == pytest.approx(1.0)
    assert share_at(curve, np.array([0.0]))[0] == 0.0
