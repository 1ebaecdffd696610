"""Attainment as of a date: each rep's closed-won credit against quota for every period containing
the date, rolled up to every manager above them and to the company (docs/contract.md, Rules:
"Attainment rows" and "Roll-ups"), with time elapsed and pace against a linear path.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from quota_platform.lib.attainment.crediting import REVENUE
from quota_platform.lib.attainment.rollup import REP, roll_up
from quota_platform.lib.core.rules import Rules

# pace_status: against a linear path through the period (Rules.pace_ahead_pct and
# pace_behind_pct), or no_quota when there is no quota to pace against
PACE_AHEAD, ON_PACE, PACE_BEHIND, NO_QUOTA = "ahead", "on_pace", "behind", "no_quota"
PACE_STATUSES = (PACE_AHEAD, ON_PACE, PACE_BEHIND, NO_QUOTA)

ATTAINMENT_SCHEMA = {
    "as_of_date": pl.Date(),
    "level": pl.String(),
    "entity_id": pl.String(),
    "entity_name": pl.String(),
    "parent_id": pl.String(),
    "period_type": pl.String(),
    "period_start": pl.Date(),
    "period_end": pl.Date(),
    "quota_type": pl.String(),
    "product_family": pl.String(),
    "quota": pl.Float64(),
    "closed_won": pl.Float64(),
    "attainment_pct": pl.Float64(),
    "time_elapsed_pct": pl.Float64(),
    "expected_to_date": pl.Float64(),
    "pace_pct": pl.Float64(),
    "pace_status": pl.String(),
    "rep_count": pl.Int64(),
}

PERIOD_KEYS = ["as_of_date", "period_type", "period_start", "period_end", "quota_type", "product_family"]
CREDIT_KEYS = ["as_of_date", "rep_id", "quota_type", "period_type", "period_start", "product_family"]


def _dates(as_of_dates: list[date]) -> pl.DataFrame:
    return pl.DataFrame({"as_of_date": sorted(set(as_of_dates))}, schema={"as_of_date": pl.Date}).with_columns(
        pl.col("as_of_date").dt.truncate("1mo").alias("snapshot_month")
    )


def rep_quota_rows(as_of_dates: list[date], snapshots: pl.DataFrame) -> pl.DataFrame:
    """Every (as_of_date, rep, period containing the date, quota_type, product_family) with a quota
    in the snapshot of the date's month."""
    return (
        _dates(as_of_dates)
        .join(snapshots, on="snapshot_month")
        .filter((pl.col("period_start") <= pl.col("as_of_date")) & (pl.col("as_of_date") <= pl.col("period_end")))
    )


def closed_won(credits: pl.DataFrame) -> pl.DataFrame:
    """Revenue credit per rep, quota type, period and family (overlay never counts toward quota)."""
    return (
        credits.filter(pl.col("credit_type") == REVENUE)
        .group_by(CREDIT_KEYS)
        .agg(pl.col("credit_usd").sum().alias("closed_won"))
    )


def unmatched_credits(as_of_dates: list[date], snapshots: pl.DataFrame, credits: pl.DataFrame) -> pl.DataFrame:
    """Whole-deal revenue credit in a period containing the as-of date, of a quota type for which
    the rep has no quota (of either period type) containing the date: reported, not dropped (it
    stays in credited_bookings). A rep on quarterly quotas is not flagged for its monthly rows."""
    keys = ["as_of_date", "rep_id", "quota_type"]
    quota_rows = (
        rep_quota_rows(as_of_dates, snapshots).filter(pl.col("product_family").is_null()).select(keys).unique()
    )
    won = closed_won(credits.filter(pl.col("product_family").is_null())).join(
        _dates(as_of_dates).select("as_of_date"), on="as_of_date", how="semi"
    )
    current = won.with_columns(
        pl.when(pl.col("period_type") == "month")
        .then(pl.col("period_start").dt.offset_by("1mo"))
        .otherwise(pl.col("period_start").dt.offset_by("3mo"))
        .alias("_next_start")
    ).filter((pl.col("period_start") <= pl.col("as_of_date")) & (pl.col("as_of_date") < pl.col("_next_start")))
    return current.join(quota_rows, on=keys, how="anti").drop("_next_start").sort(keys)


def build_attainment(
    as_of_dates: list[date],
    *,
    snapshots: pl.DataFrame,
    hierarchy: pl.DataFrame,
    credits: pl.DataFrame,
    rules: Rules,
) -> pl.DataFrame:
    """Rep, manager and company attainment rows for each as-of date.

    ``snapshots`` are quota_snapshots rows and ``hierarchy`` org_hierarchy rows of the dates'
    months; ``credits`` are credited_bookings rows of the dates.
    """
    reps = (
        rep_quota_rows(as_of_dates, snapshots)
        .join(closed_won(credits), on=CREDIT_KEYS, how="left", nulls_equal=True)
        .with_columns(pl.col("closed_won").fill_null(0.0), pl.col("effective_quota").alias("quota"))
    )
    rep_rows = reps.select(
        *PERIOD_KEYS,
        pl.lit(REP).alias("level"),
        pl.col("rep_id").alias("entity_id"),
        pl.col("rep_name").alias("entity_name"),
        pl.col("manager_id").alias("parent_id"),
        "quota",
        "closed_won",
        pl.lit(1, pl.Int64).alias("rep_count"),
    )
    rolled_up = roll_up(reps, hierarchy, PERIOD_KEYS, ["quota", "closed_won"])
    rows = pl.concat([rep_rows, rolled_up.select(rep_rows.columns)], how="vertical_relaxed")
    return with_pace(rows, rules).select(list(ATTAINMENT_SCHEMA)).cast(ATTAINMENT_SCHEMA).sort(
        "as_of_date", "level", "entity_id", "period_type", "period_start", "quota_type", "product_family",
        nulls_last=True,
    )


def with_pace(rows: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """attainment_pct, time_elapsed_pct and pace against a linear path through the period."""
    days_total = (pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    days_done = (pl.col("as_of_date") - pl.col("period_start")).dt.total_days() + 1
    has_quota = pl.col("quota") > 0
    return rows.with_columns(
        pl.when(has_quota).then(100.0 * pl.col("closed_won") / pl.col("quota")).alias("attainment_pct"),
        (100.0 * days_done / days_total).alias("time_elapsed_pct"),
        (pl.col("quota") * days_done / days_total).alias("expected_to_date"),
    ).with_columns(
        pl.when(has_quota).then(100.0 * pl.col("closed_won") / pl.col("expected_to_date")).alias("pace_pct")
    ).with_columns(
        pl.when(~has_quota)
        .then(pl.lit(NO_QUOTA))
        .when(pl.col("pace_pct") >= rules.pace_ahead_pct)
        .then(pl.lit(PACE_AHEAD))
        .when(pl.col("pace_pct") >= rules.pace_behind_pct)
        .then(pl.lit(ON_PACE))
        .otherwise(pl.lit(PACE_BEHIND))
        .alias("pace_status")
    )

