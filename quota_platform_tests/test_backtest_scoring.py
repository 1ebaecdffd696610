"""Backtest scoring (lib/backtest/scoring.py score): WAPE, bias, interval coverage and the
randomised-PIT tails on two rows worked out by hand; the pinball and coverage helpers it uses; and
its CRPS from the quantile grid against the CRPS of the ensemble behind the grid."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from quota_platform.lib.backtest.scoring import (
    interval_coverage,
    pinball_loss,
    pit_tail_shares,
    score,
)
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.projection import QUANTILE_GRID

LEVELS = np.array(QUANTILE_GRID)  # 0.05, 0.10, ..., 0.95

# Row A: a point mass at 100 (closed won) holding levels 0.05 - 0.35, then 110, 120, ... The
# actual is 100: nothing more was won. Row B: quantiles 10, 20, ..., 190 and an actual of 195.
ROW_A = [100.0] * 7 + [110.0 + 10 * k for k in range(12)]
ROW_B = [10.0 * (j + 1) for j in range(19)]


def test_pit_tails_by_hand():
    below, above = pit_tail_shares(np.array([100.0, 195.0, 55.0]), np.array([ROW_A, ROW_B, ROW_B]), LEVELS)
    # A: F(100-) = 0, F(100) = 0.40 -> PIT ~ U(0, 0.40): below 0.1 with probability 0.25
    # B: above every quantile -> PIT in (0.95, 1): above 0.9 for sure
    # B at 55: between q(0.25) = 50 and q(0.30) = 60 -> inside, neither tail
    assert below.tolist() == pytest.approx([0.25, 0.0, 0.0])
    assert above.tolist() == pytest.approx([0.0, 1.0, 0.0])


def _rows():
    return pl.DataFrame(
        {
            "period_type": ["quarter"] * 2,
            "period_start": [date(2026, 1, 1)] * 2,
            "checkpoint_pct": [50, 50],
            "level": ["rep", "rep"],
            "as_of_date": [date(2026, 2, 14)] * 2,
            "actual": [100.0, 195.0],
            "quota": [200.0, 200.0],
            "closed_won": [100.0, 50.0],
            "projected_quantiles": [ROW_A, ROW_B],
            "projected_p10": [ROW_A[1], ROW_B[1]],
            "projected_p50": [ROW_A[9], ROW_B[9]],
            "projected_p90": [ROW_A[17], ROW_B[17]],
            "prob_at_risk": [0.9, 0.1],
            "B1": [100.0, 195.0],
            "B2": [100.0, 195.0],
            "B3": [100.0, 195.0],
        }
    )


def test_score_by_hand():
    got = {r["method"]: r for r in score(_rows()).iter_rows(named=True)}
    model = got["model"]
    # P50s 130 and 100 against 100 and 195: |30| + |-95| = 125 over 295
    assert model["wape"] == pytest.approx(125 / 295)
    assert model["bias"] == pytest.approx(-65 / 295)
    # plain interval: A's actual equals its P10 (inside), B's is above its P90 (180)
    assert (model["coverage_p10_p90"], model["below_p10"], model["above_p90"]) == pytest.approx((0.5, 0.0, 0.5))
    # randomised PIT: A below P10 with probability 0.25, B above P90
    assert model["pit_below_p10"] == pytest.approx(0.125)
    assert model["pit_above_p90"] == pytest.approx(0.5)
    assert model["pit_coverage_p10_p90"] == pytest.approx(0.375)
    # baselines are points: no interval figures, and exact here
    assert got["B1"]["wape"] == 0.0 and got["B1"]["pit_below_p10"] is None and got["B1"]["coverage_p10_p90"] is None


def test_brier_follows_the_at_risk_setting():
    # at risk: actual below at_risk_pct of the quota (200). At 80% (the line at 160) row A (100)
    # ended at risk and row B (195) did not: the model's (0.9 - 1)^2 and (0.1 - 0)^2 average 0.01;
    # B1's points (100, 195) say 1 and 0, exact. At 40% (the line at 80) neither ended at risk:
    # the model's 0.81 and 0.01 average 0.41, and B1 says 0 for both.
    default = {r["method"]: r for r in score(_rows()).iter_rows(named=True)}
    assert (default["model"]["brier"], default["model"]["base_rate"]) == pytest.approx((0.01, 0.5))
    assert default["B1"]["brier"] == 0.0
    low = {r["method"]: r for r in score(_rows(), Rules(at_risk_pct=40.0)).iter_rows(named=True)}
    assert (low["model"]["brier"], low["model"]["base_rate"]) == pytest.approx((0.41, 0.0))
    assert low["B1"]["brier"] == 0.0 and low["model"]["brier_skill"] is None


def test_pinball_and_coverage_by_hand():
    # q = 0.9, prediction 100: observed 130 -> 0.9 x 30 = 27; observed 70 -> 0.1 x 30 = 3; 100 -> 0.
    np.testing.assert_allclose(pinball_loss(np.array([100.0] * 3), np.array([130.0, 70.0, 100.0]), 0.9), [27.0, 3.0, 0.0])
    # a grid of levels broadcasts: prediction 100 at 0.1 and 0.9, observed 130 -> 3 and 27
    np.testing.assert_allclose(pinball_loss(np.array([[100.0, 100.0]]), np.array([[130.0]]), np.array([[0.1, 0.9]])), [[3.0, 27.0]])
    covered = interval_coverage(np.array([0.0, 0.0, 0.0, np.nan]), np.array([10.0] * 4), np.array([5.0, 10.0, 11.0, 5.0]))
    assert covered.tolist() == [True, True, False, False]
    with pytest.raises(ValueError):
        pinball_loss(np.zeros(1), np.zeros(1), 1.0)
    with pytest.raises(ValueError):
        pinball_loss(np.zeros(2), np.zeros(2), np.array([0.5, 0.0]))


def crps_from_draws(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The oracle of the CRPS check: continuous ranked probability score per row of the ensemble
    ``draws`` ``(n_draws, n_rows)`` against ``observed`` ``(n_rows,)``: E|X - y| - 0.5 E|X - X'|,
    X and X' independent draws from the ensemble (all n**2 pairs, the self-pairs included).
    E|X - X'| comes from the sorted sample, sum_{i,j} |x_i - x_j| = 2 sum_k (2k - n - 1) x_(k)
    for k = 1..n, in O(n log n). In the units of the amounts; NaN where observed is NaN."""
    x = np.asarray(draws, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[1],):
        raise ValueError(f"draws {x.shape} and observed {y.shape} do not align")
    n = x.shape[0]
    if n == 0:
        raise ValueError("no draws")
    abs_err = np.abs(x - y).mean(axis=0)
    weights = 2.0 * np.arange(1, n + 1) - n - 1.0
    spread = 2.0 * (weights @ np.sort(x, axis=0)) / (n * n)
    return abs_err - 0.5 * spread


def test_crps_oracle_by_hand():
    # [1, 2, 3] vs 2: E|X - y| = (1 + 0 + 1) / 3 = 2/3; E|X - X'| = (0+1+2+1+0+1+2+1+0) / 9 = 8/9;
    #   CRPS = 2/3 - 4/9 = 2/9.
    # [0, 0, 4, 4] vs 5: E|X - y| = (5 + 5 + 1 + 1) / 4 = 3; 8 of the 16 ordered pairs differ by 4:
    #   E|X - X'| = 32 / 16 = 2; CRPS = 3 - 1 = 2.
    # [3, 3] vs 7: no spread, CRPS = |3 - 7| = 4.
    draws = np.full((4, 3), np.nan)
    draws[:3, 0] = [3, 1, 2]
    draws[:, 1] = [4, 0, 4, 0]
    np.testing.assert_allclose(crps_from_draws(draws[:3, :1], np.array([2.0])), [2 / 9])
    np.testing.assert_allclose(crps_from_draws(draws[:, 1:2], np.array([5.0])), [2.0])
    np.testing.assert_allclose(crps_from_draws(np.array([[3.0], [3.0]]), np.array([7.0])), [4.0])
    assert np.isnan(crps_from_draws(np.ones((3, 1)), np.array([np.nan]))[0])


def test_crps_oracle_matches_the_pairwise_definition():
    data = np.random.default_rng(41)
    draws = data.gamma(2.0, 1000.0, size=(60, 4))
    observed = np.array([500.0, 2000.0, 8000.0, 0.0])
    pairwise = np.abs(draws[:, None, :] - draws[None, :, :]).mean(axis=(0, 1))
    direct = np.abs(draws - observed).mean(axis=0) - 0.5 * pairwise
    np.testing.assert_allclose(crps_from_draws(draws, observed), direct, rtol=1e-12)


def test_grid_crps_is_close_to_the_ensembles():
    """score() has only the stored quantile grid (5% to 95%), not the draws: its CRPS, 2 x the
    mean pinball loss over the grid, leaves out the tails beyond 5% and 95% and weighs the 19
    levels as if they covered 0-1. For normal forecasts that comes out 4-5% above the CRPS of the
    full distribution (worked out for a normal: 1.039 at the mean, 1.051 at 1.5 sd), and the two
    must stay that close: a missing factor 2 or a wrong sign would be 50% off or more."""
    data = np.random.default_rng(7)
    draws = data.normal(1000.0, 100.0, size=(20_000, 4))
    actual = np.array([1000.0, 1150.0, 1300.0, 700.0])
    quantiles = np.quantile(draws, QUANTILE_GRID, axis=0).T
    rows = pl.DataFrame(
        {
            "period_type": ["quarter"] * 4,
            "period_start": [date(2026, 1, 1)] * 4,
            "checkpoint_pct": [25, 50, 75, 50],
            "level": ["rep"] * 4,
            "as_of_date": [date(2026, 1, 23), date(2026, 2, 14), date(2026, 3, 8), date(2026, 2, 14)],
            "actual": actual,
            "quota": [2000.0] * 4,
            "closed_won": [500.0] * 4,
            "projected_quantiles": quantiles.tolist(),
            "projected_p10": quantiles[:, 1],
            "projected_p50": quantiles[:, 9],
            "projected_p90": quantiles[:, 17],
            "prob_at_risk": [1.0] * 4,
            "B1": actual,
            "B2": actual,
            "B3": actual,
        }
    )
    model = score(rows).filter(pl.col("method") == "model").sort("checkpoint_pct")
    oracle = crps_from_draws(draws, actual)
    # checkpoint 25 holds row 0, 50 rows 1 and 3, 75 row 2
    expected = [oracle[0], (oracle[1] + oracle[3]) / 2, oracle[2]]
    ratio = np.array(model["crps"].to_list()) / np.array(expected)
    assert np.all((ratio > 1.0) & (ratio < 1.08)), ratio
