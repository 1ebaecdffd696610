"""Checks of credited_bookings beyond its schema."""

import dagster as dg
import polars as pl

from quota_platform.defs.validation import frame_check
from quota_platform.lib.attainment.crediting import split_total_mismatches

REVENUE_CREDITS_SUM = "revenue_credits_sum_to_amount"

SPECS = [
    dg.AssetCheckSpec(
        REVENUE_CREDITS_SUM,
        asset="credited_bookings",
        blocking=True,
        description="The revenue credits of each opportunity, period, type and family add up to its amount.",
    ),
]


def revenue_credits_sum_to_amount(credits: pl.DataFrame) -> dg.AssetCheckResult:
    return frame_check(
        asset_key="credited_bookings",
        check_name=REVENUE_CREDITS_SUM,
        failures=split_total_mismatches(credits),
        description="revenue credits of some opportunities do not add up to their amount; the table was not written",
    )
