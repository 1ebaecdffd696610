"""Open pipeline as of a date: every open opportunity as it stood at the end of the day (stage,
amount, close date, close-date pushes so far, days in stage), credited to reps the same way as
bookings (splits, overlay, currency, product families)."""

from __future__ import annotations

from datetime import date

import polars as pl

from quota_platform.lib.attainment.crediting import CreditInputs, attribute_credit, states_as_of

PIPELINE_SCHEMA = {
    "as_of_date": pl.Date(),
    "opportunity_id": pl.String(),
    "opportunity_name": pl.String(),
    "owner_id": pl.String(),
    "rep_id": pl.String(),
    "quota_type": pl.String(),
    "product_family": pl.String(),
    "credit_type": pl.String(),
    "split_percentage": pl.Float64(),
    "opportunity_type": pl.String(),
    "stage_name": pl.String(),
    "close_date": pl.Date(),
    "created_date": pl.Date(),
    "pushes": pl.Int32(),
    "stage_entered": pl.Date(),
    "days_in_stage": pl.Int32(),
    "currency_iso_code": pl.String(),
    "amount_local": pl.Float64(),
    "conversion_rate": pl.Float64(),
    "amount_usd": pl.Float64(),
    "credit_usd": pl.Float64(),
}


def open_pipeline(
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    flags: pl.DataFrame,
    as_of_dates: list[date],
    inputs: CreditInputs,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Credit rows of the deals open at the end of each as-of date, and quarantine rows.

    Open amounts convert at the rate in force on the as-of date (what is known then; a future
    close date has no rate yet). An open deal with no amount counts as 0."""
    states = states_as_of(opportunities, history, flags, as_of_dates).filter(~pl.col("is_closed"))
    rows, bad = attribute_credit(states, inputs, rate_date="as_of_date", won=False)
    rows = rows.select(
        "as_of_date",
        "opportunity_id",
        pl.col("Name").alias("opportunity_name"),
        pl.col("OwnerId").alias("owner_id"),
        "rep_id",
        "quota_type",
        "product_family",
        "credit_type",
        "split_percentage",
        pl.col("Type").alias("opportunity_type"),
        pl.col("StageName").alias("stage_name"),
        pl.col("CloseDate").alias("close_date"),
        pl.col("CreatedDate").dt.date().alias("created_date"),
        "pushes",
        "stage_entered",
        (pl.col("as_of_date") - pl.col("stage_entered")).dt.total_days().alias("days_in_stage"),
        pl.col("CurrencyIsoCode").alias("currency_iso_code"),
        "amount_local",
        "conversion_rate",
        "amount_usd",
        "credit_usd",
    ).cast(PIPELINE_SCHEMA).sort(
        "as_of_date", "opportunity_id", "rep_id", "quota_type", "product_family", "credit_type", nulls_last=True
    )
    return rows, bad
