"""Checks of the forecast assets beyond their schemas: the month's win-rate fits converged, and
every attainment row has its projection."""

import dagster as dg
import polars as pl

from quota_platform.defs.validation import frame_check
from quota_platform.lib.forecast.model_fit import MAX_RHAT, unconverged

CONVERGED = "converged"
ONE_ROW_PER_ATTAINMENT_ROW = "one_row_per_attainment_row"
# the identity of an attainment row, and of its projection
ROW_KEYS = ["as_of_date", "level", "entity_id", "period_type", "period_start", "quota_type", "product_family"]

WIN_RATE_SPECS = [
    dg.AssetCheckSpec(
        CONVERGED,
        asset="win_rate_posteriors",
        blocking=True,
        description=f"Max R-hat <= {MAX_RHAT} and no divergent transitions in every fit of the month.",
    ),
]

PROJECTION_SPECS = [
    dg.AssetCheckSpec(
        ONE_ROW_PER_ATTAINMENT_ROW,
        asset="projections",
        blocking=True,
        description="Every attainment row has its projection, new reps and reps with no pipeline included.",
    ),
]


def converged(fitted: pl.DataFrame) -> dg.AssetCheckResult:
    """``fitted``: one row per fit of the run (snapshot_month, period_type, max_rhat, divergences, ...)."""
    bad = unconverged(fitted) if fitted.height else fitted
    return frame_check(
        asset_key="win_rate_posteriors",
        check_name=CONVERGED,
        failures=bad,
        description=f"a win-rate fit did not converge (R-hat > {MAX_RHAT} or divergences); the model was not stored",
        extra={"fits": fitted.height},
    )


def one_row_per_attainment_row(attainment: pl.DataFrame, projections: pl.DataFrame) -> dg.AssetCheckResult:
    missing = attainment.select(ROW_KEYS).join(projections.select(ROW_KEYS), on=ROW_KEYS, how="anti", nulls_equal=True)
    return frame_check(
        asset_key="projections",
        check_name=ONE_ROW_PER_ATTAINMENT_ROW,
        failures=missing,
        description="attainment rows without a projection; the table was not written",
    )
