"""Training data for the projection models, built point in time and never from data after the
fit's cut-off.

For a snapshot month M and a trailing window of W months, the training periods are the fiscal
periods (of one period type) that ended before M started and no earlier than W months before it.
Each is observed at checkpoints through the period (10%, 30%, 50%, 70% and 90% of its days): the
deals open at the end of a checkpoint day, as they stood then, and whether each was won within the
period (as known at the end of the period, which is before M). Nothing dated on or after M's first
day is read: :func:`assert_no_leakage` checks it.

Two products:

- :func:`win_rate_cells`: aggregated binomial counts per owner x stage x deal class x close-date
  bucket x checkpoint x period, down-weighted so each deal counts once per period however many checkpoints
  saw it open.
- :func:`new_deal_history`: per rep, quota type and product family, the credit won within a
  period from deals created after each checkpoint (deals not yet in the pipeline), with the
  exposure (days remaining) it was won in.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import polars as pl

from quota_platform.lib.attainment.crediting import (
    REVENUE,
    CreditInputs,
    attribute_credit,
    states_as_of,
)
from quota_platform.lib.core import calendar as cal
from quota_platform.lib.core.currency import RATE_COL, attach_rates
from quota_platform.lib.core.quota_types import deal_class

# Fractions of a closed period at which its open deals are observed for training (the win-rate
# cells, the new-deal history); not the backtest's scored checkpoints (scoring.SCORED_CHECKPOINTS).
TRAINING_CHECKPOINTS = (0.1, 0.3, 0.5, 0.7, 0.9)
# Where an open deal's close date sits against the as-of date and the period end
# (close_date_bucket), in the order of the win-rate model's bucket axis.
BUCKET_IN_PERIOD, BUCKET_OVERDUE, BUCKET_LATER = "in_period", "overdue", "later"
BUCKETS = (BUCKET_IN_PERIOD, BUCKET_OVERDUE, BUCKET_LATER)

# Deal size. Large deals close less often and later than the rest of their class (more people
# sign, more can go wrong), and they carry a large share of the money: one rate for all sizes
# over-projects a period whose pipeline happens to hold more of them. A deal is "large" when its
# USD amount is at or above LARGE_DEAL_QUANTILE of its class's deals in the fit's window; a
# class with fewer than MIN_SIZE_DEALS deals there has no large tier. The win-rate model sees a
# large deal as its own class, "<class>+large" (LARGE_SUFFIX).
LARGE_DEAL_QUANTILE = 0.9
MIN_SIZE_DEALS = 50
LARGE_SUFFIX = "+large"


@dataclasses.dataclass(frozen=True)
class Period:
    period_type: str
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def id(self) -> str:
        return f"{self.period_type}:{self.start.isoformat()}"

    def checkpoint(self, fraction: float) -> date:
        """The as-of date at ``fraction`` of the period: the day whose end has that share elapsed."""
        return self.start + timedelta(days=max(1, round(fraction * self.days)) - 1)

    def elapsed(self, as_of: date) -> float:
        return cal.time_elapsed_pct(self.start, self.end, as_of) / 100.0


def training_periods(
    snapshot_month: date, window_months: int, period_type: str, calendar: cal.FiscalCalendar
) -> list[Period]:
    """Fiscal periods of ``period_type`` ending before ``snapshot_month`` and on or after the first
    day ``window_months`` earlier."""
    earliest = cal.add_months(snapshot_month, -window_months)
    periods = []
    start = calendar.period_start(period_type, cal.add_months(earliest, -3))
    while start < snapshot_month:
        end = calendar.period_end(period_type, start)
        if earliest <= end < snapshot_month:
            periods.append(Period(period_type, start, end))
        start = end + timedelta(days=1)
    return periods


def close_date_bucket(close_date: pl.Expr, as_of: pl.Expr, period_end: pl.Expr) -> pl.Expr:
    """in_period: expected to close between the as-of date and the period end; overdue: its close
    date has passed; later: expected after the period."""
    return (
        pl.when(close_date < as_of)
        .then(pl.lit(BUCKET_OVERDUE))
        .when(close_date <= period_end)
        .then(pl.lit(BUCKET_IN_PERIOD))
        .otherwise(pl.lit(BUCKET_LATER))
    )


def _checkpoint_frame(periods: list[Period]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (p.id, p.start, p.end, p.checkpoint(f), p.elapsed(p.checkpoint(f)))
            for p in periods
            for f in TRAINING_CHECKPOINTS
        ],
        schema={"period_id": pl.String, "period_start": pl.Date, "period_end": pl.Date, "as_of_date": pl.Date, "elapsed": pl.Float64},
        orient="row",
    ).unique(["period_id", "as_of_date"], maintain_order=True)


def won_within_period(
    opportunities: pl.DataFrame, history: pl.DataFrame, flags: pl.DataFrame, periods: list[Period]
) -> pl.DataFrame:
    """(period_id, Id) of deals won within each period, as known at the period's end: won as of
    the last day with a close date inside the period."""
    if not periods:
        return pl.DataFrame(schema={"period_id": pl.String, "Id": pl.String})
    ends = pl.DataFrame(
        [(p.id, p.start, p.end) for p in periods],
        schema={"period_id": pl.String, "period_start": pl.Date, "as_of_date": pl.Date},
        orient="row",
    )
    won = states_as_of(opportunities, history, flags, ends["as_of_date"].to_list(), only_won=True)
    return (
        won.join(ends, on="as_of_date")
        .filter((pl.col("CloseDate") >= pl.col("period_start")) & (pl.col("CloseDate") <= pl.col("as_of_date")))
        .select("period_id", "Id")
        .unique()
    )


def large_deal_thresholds(
    opportunities: pl.DataFrame, history: pl.DataFrame, inputs: CreditInputs, since: date
) -> dict[str, float]:
    """deal class -> USD amount from which a deal is large: LARGE_DEAL_QUANTILE of the amounts of
    the class's opportunities created on or after ``since``, each at its latest known amount
    (latest history row given, else the opportunity's) converted at that row's date. Pass the
    frames as known before the fit's cut-off."""
    latest = history.sort("CreatedDate").group_by("OpportunityId").agg(
        pl.col("Amount").last().alias("_amount"), pl.col("CreatedDate").last().dt.date().alias("_at")
    )
    deals = (
        opportunities.filter(~pl.col("IsDeleted").fill_null(False) & (pl.col("CreatedDate").dt.date() >= since))
        .join(latest, left_on="Id", right_on="OpportunityId", how="left")
        .select(
            deal_class(pl.col("Type")).alias("deal_class"),
            pl.coalesce("_amount", "Amount").alias("_amount"),
            pl.coalesce("_at", pl.col("CreatedDate").dt.date()).alias("_at"),
            "CurrencyIsoCode",
        )
        .filter(pl.col("_amount") > 0)
    )
    if deals.is_empty():
        return {}
    usd = attach_rates(
        deals, inputs.rates, date_col="_at", currency_col="CurrencyIsoCode", corporate_currency=inputs.rules.corporate_currency
    ).filter(pl.col(RATE_COL).is_not_null())
    by_class = usd.group_by("deal_class").agg(
        pl.len().alias("n"), (pl.col("_amount") / pl.col(RATE_COL)).quantile(LARGE_DEAL_QUANTILE, "lower").alias("threshold")
    )
    return {c: float(t) for c, n, t in by_class.iter_rows() if n >= MIN_SIZE_DEALS and t is not None and t > 0}


def sized_class(klass: pl.Expr, amount_usd: pl.Expr, thresholds: dict[str, float] | None) -> pl.Expr:
    """The model's class of a deal: its deal class, with LARGE_SUFFIX when its USD amount reaches
    the class's threshold."""
    if not thresholds:
        return klass
    limit = klass.replace_strict(thresholds, default=None, return_dtype=pl.Float64)
    return pl.when(limit.is_not_null() & (amount_usd >= limit)).then(klass + LARGE_SUFFIX).otherwise(klass)


def win_rate_cells(
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    flags: pl.DataFrame,
    teams: pl.DataFrame,
    periods: list[Period],
    large_deals: tuple[dict[str, float], CreditInputs] | None = None,
) -> pl.DataFrame:
    """Aggregated counts for the win-rate model: rep_id (the deal's owner), team_id, stage,
    deal_class (quota_types.deal_class of the Type; with ``large_deals`` = (thresholds, inputs),
    :func:`sized_class` of it at the checkpoint's amount in USD), close_date_bucket, elapsed,
    period_id, trials, wins. ``teams`` maps rep_id -> team_id."""
    schema = {
        "rep_id": pl.String, "team_id": pl.String, "stage": pl.String, "deal_class": pl.String, "close_date_bucket": pl.String,
        "elapsed": pl.Float64, "period_id": pl.String, "trials": pl.Float64, "wins": pl.Float64,
    }
    if not periods:
        return pl.DataFrame(schema=schema)
    checkpoints = _checkpoint_frame(periods)
    states = states_as_of(opportunities, history, flags, checkpoints["as_of_date"].unique().to_list())
    open_at = (
        states.filter(~pl.col("is_closed"))
        .join(checkpoints, on="as_of_date")  # one checkpoint date can serve a month and a quarter
        .filter(pl.col("period_start") <= pl.col("as_of_date"))
    )
    won = won_within_period(opportunities, history, flags, periods).with_columns(pl.lit(1.0).alias("_won"))
    observed = (
        open_at.join(won, on=["period_id", "Id"], how="left")
        .with_columns(
            pl.col("_won").fill_null(0.0),
            deal_class(pl.col("Type")).alias("deal_class"),
            close_date_bucket(pl.col("CloseDate"), pl.col("as_of_date"), pl.col("period_end")).alias("close_date_bucket"),
            (1.0 / pl.len().over("period_id", "Id")).alias("_weight"),
        )
        .join(teams, left_on="OwnerId", right_on="rep_id", how="left")
    )
    if large_deals is not None and large_deals[0]:
        thresholds, inputs = large_deals
        observed = attach_rates(
            observed, inputs.rates, date_col="as_of_date", currency_col="CurrencyIsoCode",
            corporate_currency=inputs.rules.corporate_currency,
        ).with_columns(
            sized_class(pl.col("deal_class"), pl.col("Amount").fill_null(0.0) / pl.col(RATE_COL), thresholds).alias("deal_class")
        )
    return (
        observed.group_by(
            pl.col("OwnerId").alias("rep_id"), "team_id", pl.col("StageName").alias("stage"),
            "deal_class", "close_date_bucket", "elapsed", "period_id",
        )
        .agg(pl.col("_weight").sum().alias("trials"), (pl.col("_weight") * pl.col("_won")).sum().alias("wins"))
        .cast(schema)
        .sort("period_id", "rep_id", "stage", "deal_class", "close_date_bucket", "elapsed")
    )


def new_deal_history(
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    flags: pl.DataFrame,
    periods: list[Period],
    inputs: CreditInputs,
) -> pl.DataFrame:
    """Per period, checkpoint, rep, quota type and family: the revenue credit (USD) and number of
    deals won within the period from opportunities created after the checkpoint day, and the days
    that remained. Rows exist for every (period, checkpoint) even with nothing won, per rep that
    had a quota-bearing credit in the training data, so the exposure is counted."""
    schema = {
        "period_id": pl.String, "elapsed": pl.Float64, "days_remaining": pl.Int64, "rep_id": pl.String,
        "quota_type": pl.String, "product_family": pl.String, "deals": pl.Int64, "credit_usd": pl.Float64,
    }
    if not periods:
        return pl.DataFrame(schema=schema)
    checkpoints = _checkpoint_frame(periods).with_columns(
        ((pl.col("period_end") - pl.col("as_of_date")).dt.total_days()).alias("days_remaining")
    )
    won_ids = won_within_period(opportunities, history, flags, periods)
    ends = {p.id: p.end for p in periods}
    won_states = states_as_of(opportunities, history, flags, sorted(set(ends.values())), only_won=True)
    won_states = won_states.join(
        won_ids.with_columns(pl.col("period_id").replace_strict(ends, return_dtype=pl.Date).alias("as_of_date")),
        on=["as_of_date", "Id"],
    )
    credited, _ = attribute_credit(won_states, inputs, rate_date="CloseDate", won=True)
    credited = credited.filter(pl.col("credit_type") == REVENUE).select(
        "period_id", "opportunity_id", "rep_id", "quota_type", "product_family", "credit_usd",
        pl.col("CreatedDate").dt.date().alias("created"),
    )
    # a deal "not yet created" at a checkpoint was created after the end of the checkpoint day
    new = (
        credited.join(checkpoints.select("period_id", pl.col("as_of_date").alias("checkpoint"), "elapsed"), on="period_id")
        .filter(pl.col("created") > pl.col("checkpoint"))
        .group_by("period_id", "elapsed", "rep_id", "quota_type", "product_family")
        .agg(pl.len().cast(pl.Int64).alias("deals"), pl.col("credit_usd").sum())
    )
    grid = (
        checkpoints.select("period_id", "elapsed", "days_remaining")
        .join(credited.select("rep_id", "quota_type", "product_family").unique(), how="cross")
    )
    return (
        grid.join(new, on=["period_id", "elapsed", "rep_id", "quota_type", "product_family"], how="left", nulls_equal=True)
        .with_columns(pl.col("deals").fill_null(0), pl.col("credit_usd").fill_null(0.0))
        .select(list(schema))
        .cast(schema)
        .sort("period_id", "elapsed", "rep_id", "quota_type", "product_family", nulls_last=True)
    )


def assert_no_leakage(opportunities: pl.DataFrame, history: pl.DataFrame, cutoff: date) -> None:
    """The inputs a fit reads must hold nothing created on or after ``cutoff`` (the snapshot
    month's first day). Callers pass the frames after :func:`as_known_before`."""
    late_history = history.filter(pl.col("CreatedDate").dt.date() >= cutoff)
    late_opps = opportunities.filter(pl.col("CreatedDate").dt.date() >= cutoff)
    if late_history.height or late_opps.height:
        raise AssertionError(
            f"training data leak: {late_history.height} history row(s) and {late_opps.height} "
            f"opportunit(y/ies) created on or after {cutoff}"
        )


def as_known_before(opportunities: pl.DataFrame, history: pl.DataFrame, cutoff: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The opportunity and history frames as they could have been known before ``cutoff``:
    history rows created before it, and opportunities created before it. An opportunity's current
    fields are later knowledge; with history present the states come from history, so only the
    creation cut is needed for opportunities without history rows."""
    return (
        opportunities.filter(pl.col("CreatedDate").dt.date() < cutoff),
        history.filter(pl.col("CreatedDate").dt.date() < cutoff),
    )
