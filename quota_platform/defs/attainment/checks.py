"""Checks of attainment beyond its schema: roll-ups equal the sum of their reps (blocking), and a
warning for credit that no quota counts."""


import dagster as dg
import polars as pl

from quota_platform.defs.validation import frame_check
from quota_platform.lib.attainment.rollup import rollup_mismatches

ROLLUPS = "rollups_equal_sum_of_reps"
CREDITS_WITHOUT_QUOTA = "credits_without_quota"

SPECS = [
    dg.AssetCheckSpec(
        ROLLUPS,
        asset="attainment",
        blocking=True,
        description="Each manager row and the company row equal the sum of the rep rows below them.",
    ),
    dg.AssetCheckSpec(
        CREDITS_WITHOUT_QUOTA,
        asset="attainment",
        description="WARN when reps have revenue credit in a current period with no matching quota.",
    ),
]


def rollups_equal_sum_of_reps(frame: pl.DataFrame, hierarchy: pl.DataFrame) -> dg.AssetCheckResult:
    return frame_check(
        asset_key="attainment",
        check_name=ROLLUPS,
        failures=rollup_mismatches(frame, hierarchy),
        description="manager or company rows differ from the sum of their reps; the table was not written",
    )


def credits_without_quota(unmatched: pl.DataFrame) -> dg.AssetCheckResult:
    usd = float(unmatched["closed_won"].sum() or 0.0)
    return frame_check(
        asset_key="attainment",
        check_name=CREDITS_WITHOUT_QUOTA,
        failures=unmatched,
        description=(
            f"{unmatched.height} rep/period/type credit total(s) have no matching quota "
            f"(USD {usd:,.2f}); they stay in credited_bookings"
        ),
        severity=dg.AssetCheckSeverity.WARN,
        extra={"credit_usd": usd},
    )
