"""Backtest scoring (lib/backtest.py score): WAPE, bias, interval coverage and the randomised-PIT
tails on two rows worked out by hand."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from quota_platform.lib.backtest.scoring import pit_tail_shares, score
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
