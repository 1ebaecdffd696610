"""Partitions: daily as-of dates for the daily assets, snapshot months for the monthly ones, both
starting at QUOTA_PLATFORM_START_DATE. ``end_offset=1`` includes today (and this month), so a
refresh during the day materializes today's state as of now."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

DAILY_PARTITION_COLUMN = "as_of_date"
MONTHLY_PARTITION_COLUMN = "snapshot_month"


def daily_partitions(start: date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1, timezone="UTC")


def monthly_partitions(start: date) -> dg.MonthlyPartitionsDefinition:
    first = start.replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), end_offset=1, timezone="UTC")


def run_dates(context: dg.AssetExecutionContext) -> list[date]:
    """Every day (or month start) in the run's partition range: one day for a daily run, a whole
    range for a single-run backfill."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + timedelta(days=i) for i in range((end - start).days)]


def run_months(context: dg.AssetExecutionContext) -> list[date]:
    return sorted({d.replace(day=1) for d in run_dates(context)})


def partition_key(d: date) -> str:
    return d.isoformat()


def month_key(d: date) -> str:
    return d.replace(day=1).isoformat()


def to_date(key: str) -> date:
    return datetime.strptime(key[:10], "%Y-%m-%d").date()
