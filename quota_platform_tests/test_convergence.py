"""The one R-hat limit (lib/forecast/model_fit.py MAX_RHAT): the retry of a fit and the blocking
check on win_rate_posteriors draw the line in the same place."""

import polars as pl

from quota_platform.lib.forecast.model_fit import MAX_RHAT, converged, unconverged


def test_limit_is_inclusive_and_divergences_fail():
    assert MAX_RHAT == 1.01
    assert converged({"max_rhat": 1.01, "divergences": 0.0})
    assert not converged({"max_rhat": 1.0101, "divergences": 0.0})
    assert not converged({"max_rhat": 1.001, "divergences": 1.0})
    # a fit whose figures are missing is not taken as converged
    assert not converged({"divergences": 0.0})
    assert not converged({"max_rhat": 1.001})


def test_unconverged_picks_the_fits_the_retry_would_redo():
    fits = pl.DataFrame(
        {
            "period_type": ["month", "quarter", "month", "quarter", "month"],
            "max_rhat": [1.005, 1.02, 1.0, 1.01, float("inf")],
            "divergences": [0.0, 0.0, 2.0, 0.0, 0.0],
        }
    )
    bad = unconverged(fits)
    assert bad["max_rhat"].to_list() == [1.02, 1.0, float("inf")]
    # the frame check and the per-fit test agree row by row
    assert [not converged(row) for row in fits.iter_rows(named=True)] == [False, True, True, False, True]
