"""Quota snapshots: each rep's quota for each period, as captured in a snapshot month, in USD, with
mid-period changes day-weighted and new hires ramped (CONTRACT.md section 2: Calendar, Currency,
Mid-period quota change, Ramp).

``build_quota_snapshots`` is the whole rule; the Dagster asset only wires inputs and outputs.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from quota_platform.lib.core import calendar as cal
from quota_platform.lib.core import quarantine
from quota_platform.lib.core.currency import RATE_COL, attach_rates, missing_rate_problem
from quota_platform.lib.core.quota_types import quota_type_table
from quota_platform.lib.core.rules import Rules

SNAPSHOT_SCHEMA = {
    "snapshot_month": pl.Date(),
    "rep_id": pl.String(),
    "rep_name": pl.String(),
    "manager_id": pl.String(),
    "period_type": pl.String(),
    "period_start": pl.Date(),
    "period_end": pl.Date(),
    "quota_type": pl.String(),
    "product_family": pl.String(),
    "quota_id": pl.String(),
    "currency_iso_code": pl.String(),
    "quota_amount_local": pl.Float64(),
    "conversion_rate": pl.Float64(),
    "full_quota": pl.Float64(),
    "hire_date": pl.Date(),
    "ramp_adjusted": pl.Boolean(),
    "ramp_factor": pl.Float64(),
    "effective_quota": pl.Float64(),
}

_PERIOD_TYPE_BY_SF_TYPE = {"Month": cal.MONTH, "Quarter": cal.QUARTER}


def resolve_periods(
    quotas: pl.DataFrame, periods: pl.DataFrame, calendar: cal.FiscalCalendar
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give each quota its period_type, period_start and period_end: its Period row by PeriodId, or
    the quarter starting at its StartDate. A period that is not a fiscal month or quarter is
    quarantined (credits are counted on fiscal periods, so it could never be compared)."""
    period_table = periods.select(
        pl.col("Id").alias("PeriodId"),
        pl.col("Type").alias("_ptype"),
        pl.col("StartDate").alias("_pstart"),
        pl.col("EndDate").alias("_pend"),
    )
    q = quotas.join(period_table, on="PeriodId", how="left")
    has_period = pl.col("_pstart").is_not_null()
    q = q.with_columns(
        pl.when(has_period)
        .then(pl.col("_ptype").replace_strict(_PERIOD_TYPE_BY_SF_TYPE, default=None, return_dtype=pl.String))
        .otherwise(pl.lit(cal.QUARTER))
        .alias("period_type"),
        pl.when(has_period).then(pl.col("_pstart")).otherwise(pl.col("StartDate")).alias("period_start"),
        has_period.alias("_has_period"),
    )
    # Alignment and end date checked row by row with the calendar's scalar rules: a few thousand
    # rows at most, and the rule reads exactly as the calendar states it.
    rows = q.select("period_type", "period_start").unique().drop_nulls()
    ends = pl.DataFrame(
        [
            (
                r["period_type"],
                r["period_start"],
                calendar.period_end(r["period_type"], r["period_start"])
                if calendar.is_period_start(r["period_type"], r["period_start"])
                else None,
            )
            for r in rows.iter_rows(named=True)
        ],
        schema={"period_type": pl.String, "period_start": pl.Date, "period_end": pl.Date},
        orient="row",
    )
    q = q.join(ends, on=["period_type", "period_start"], how="left")
    bad_type = q.filter(pl.col("period_type").is_null())
    misaligned = q.filter(
        pl.col("period_type").is_not_null()
        & (
            pl.col("period_end").is_null()
            | (pl.col("_has_period") & (pl.col("_pend") != pl.col("period_end")))
        )
    )
    problems = quarantine.concat(
        [
            quarantine.rows(
                bad_type,
                object="ForecastingQuota",
                id_col="Id",
                field="PeriodId",
                problem=pl.format(
                    "Period {} has Type {}; only Month and Quarter periods are supported",
                    pl.col("PeriodId"),
                    pl.col("_ptype"),
                ),
            ),
            quarantine.rows(
                misaligned,
                object="ForecastingQuota",
                id_col="Id",
                field="PeriodId",
                problem=pl.format(
                    "period {} starting {} is not a fiscal {} (check QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH)",
                    pl.col("PeriodId").fill_null("(none: quarter from StartDate)"),
                    pl.col("period_start"),
                    pl.col("period_type"),
                ),
            ),
        ]
    )
    bad_ids = problems["record_id"].to_list()
    good = q.filter(~pl.col("Id").is_in(bad_ids)).drop("_ptype", "_pstart", "_pend", "_has_period")
    return good, problems


def day_weighted_amounts(
    quotas: pl.DataFrame, history: pl.DataFrame, rates: pl.DataFrame, rules: Rules
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(Id, full_quota, conversion_rate, quota_amount_local) per quota: the USD amount, converted
    at the period start; with ForecastingQuotaHistory rows for the quota, the day-weighted average
    over the period's days of the amount in force each day (days before the first row take the
    first row's amount). Quotas whose currency has no rate at the period start are quarantined."""
    corp = rules.corporate_currency
    base = attach_rates(
        quotas.select("Id", "CurrencyIsoCode", "QuotaAmount", "period_start"),
        rates,
        date_col="period_start",
        currency_col="CurrencyIsoCode",
        corporate_currency=corp,
    )
    known = rates["IsoCode"].str.to_uppercase().unique().to_list() + [corp]
    no_rate = base.filter(pl.col(RATE_COL).is_null())
    problems = [
        quarantine.rows(
            no_rate,
            object="ForecastingQuota",
            id_col="Id",
            field="CurrencyIsoCode",
            problem=missing_rate_problem("CurrencyIsoCode", "period_start", known),
        )
    ]
    base = base.filter(pl.col(RATE_COL).is_not_null()).with_columns(
        (pl.col("QuotaAmount") / pl.col(RATE_COL)).alias("full_quota")
    )
    out = base.select(
        "Id",
        pl.col("QuotaAmount").alias("quota_amount_local"),
        RATE_COL,
        "full_quota",
    )
    if history.is_empty():
        return out, quarantine.concat(problems)

    keys = ["QuotaOwnerId", "ForecastingTypeId", "StartDate", "ProductFamily"]
    h = history.with_row_index("_order").join(
        quotas.select(keys + ["Id", "period_start", "period_end"]),
        on=keys,
        how="inner",
        nulls_equal=True,
    )
    h = attach_rates(
        h, rates, date_col="period_start", currency_col="CurrencyIsoCode", corporate_currency=corp
    )
    h_no_rate = h.filter(pl.col(RATE_COL).is_null())
    problems.append(
        quarantine.rows(
            h_no_rate,
            object="ForecastingQuotaHistory",
            id_col="Id",
            field="CurrencyIsoCode",
            problem=missing_rate_problem("CurrencyIsoCode", "period_start", known),
        )
    )
    # A quota whose history cannot be converted has no trustworthy amount: quarantined whole.
    h = h.filter(~pl.col("Id").is_in(h_no_rate["Id"].to_list()))
    out = out.filter(~pl.col("Id").is_in(h_no_rate["Id"].to_list()))
    # Same EffectiveDate twice: the later row in the extract wins.
    h = (
        h.sort("Id", "EffectiveDate", "_order")
        .unique(subset=["Id", "EffectiveDate"], keep="last")
        .sort("Id", "EffectiveDate")
        .with_columns(
            (pl.col("QuotaAmount") / pl.col(RATE_COL)).alias("_usd"),
            pl.col("EffectiveDate").shift(-1).over("Id").alias("_next"),
            (pl.int_range(pl.len()).over("Id") == 0).alias("_first"),
        )
    )
    seg_start = pl.when(pl.col("_first")).then(pl.col("period_start")).otherwise(
        pl.max_horizontal("EffectiveDate", "period_start")
    )
    seg_end = pl.min_horizontal(
        pl.col("period_end"),
        pl.col("_next").dt.offset_by("-1d").fill_null(pl.col("period_end")),
    )
    days = pl.max_horizontal((seg_end - seg_start).dt.total_days() + 1, pl.lit(0))
    weighted = h.with_columns(days.alias("_days")).group_by("Id").agg(
        ((pl.col("_usd") * pl.col("_days")).sum() / pl.col("_days").sum()).alias("_weighted")
    )
    out = (
        out.join(weighted, on="Id", how="left")
        .with_columns(pl.coalesce("_weighted", "full_quota").alias("full_quota"))
        .drop("_weighted")
    )
    return out, quarantine.concat(problems)


def build_quota_snapshots(
    snapshot_months: list[date],
    *,
    users: pl.DataFrame,
    forecasting_types: pl.DataFrame,
    quotas: pl.DataFrame,
    periods: pl.DataFrame,
    quota_history: pl.DataFrame,
    rates: pl.DataFrame,
    rules: Rules,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The snapshot rows for each month in ``snapshot_months``: every quota whose period overlaps
    the month, and the quarantine rows (with ``snapshot_month``) for quotas that break a rule."""
    problems: list[pl.DataFrame] = []
    q = quotas.join(quota_type_table(forecasting_types), on="ForecastingTypeId", how="left")

    unsupported = q.filter(pl.col("quota_type").is_null())
    problems.append(
        quarantine.rows(
            unsupported,
            object="ForecastingQuota",
            id_col="Id",
            field="ForecastingTypeId",
            problem=pl.format(
                "forecasting type {} ({}) is not one the platform counts "
                "(NewBusiness, Expansion, Renewal, OpportunityRevenue)",
                pl.col("ForecastingTypeId"),
                pl.col("DeveloperName").fill_null("not a ForecastingType"),
            ),
        )
    )
    q = q.filter(pl.col("quota_type").is_not_null())

    user_ids = users["Id"].to_list()
    unknown = q.filter(~pl.col("QuotaOwnerId").is_in(user_ids))
    problems.append(
        quarantine.rows(
            unknown,
            object="ForecastingQuota",
            id_col="Id",
            field="QuotaOwnerId",
            problem=pl.format("quota owner {} is not a User", pl.col("QuotaOwnerId")),
        )
    )
    q = q.filter(pl.col("QuotaOwnerId").is_in(user_ids))

    bad_amount = q.filter(pl.col("QuotaAmount").is_null() | (pl.col("QuotaAmount") < 0))
    problems.append(
        quarantine.rows(
            bad_amount,
            object="ForecastingQuota",
            id_col="Id",
            field="QuotaAmount",
            problem=pl.format(
                "quota amount is {}; it must be zero or more",
                pl.col("QuotaAmount").cast(pl.String).fill_null("empty"),
            ),
        )
    )
    q = q.filter(pl.col("QuotaAmount").is_not_null() & (pl.col("QuotaAmount") >= 0))

    q, period_problems = resolve_periods(q, periods, rules.calendar)
    problems.append(period_problems)

    grain = ["QuotaOwnerId", "quota_type", "period_type", "period_start", "ProductFamily"]
    dup = q.filter(pl.len().over(grain) > 1) if not q.is_empty() else q
    problems.append(
        quarantine.rows(
            dup,
            object="ForecastingQuota",
            id_col="Id",
            field="Id",
            problem=pl.format(
                "two or more quotas for owner {} type {} {} starting {} family {}; fix the duplicate",
                pl.col("QuotaOwnerId"),
                pl.col("quota_type"),
                pl.col("period_type"),
                pl.col("period_start"),
                pl.col("ProductFamily").fill_null("(all)"),
            ),
        )
    )
    q = q.filter(~pl.col("Id").is_in(dup["Id"].to_list()))

    amounts, amount_problems = day_weighted_amounts(q, quota_history, rates, rules)
    problems.append(amount_problems)
    q = q.join(amounts, on="Id", how="inner")

    q = q.join(
        users.select(
            pl.col("Id").alias("QuotaOwnerId"),
            pl.col("Name").alias("rep_name"),
            pl.col("ManagerId").alias("manager_id"),
            pl.col("Hire_Date__c").alias("hire_date"),
        ),
        on="QuotaOwnerId",
        how="left",
    )
    keys = ["period_type", "period_start", "hire_date"]
    factors = pl.DataFrame(
        [
            (*key, cal.ramp_factor(key[0], key[1], key[2], rules.ramp))
            for key in q.select(keys).unique().iter_rows()
        ],
        schema={"period_type": pl.String, "period_start": pl.Date, "hire_date": pl.Date, "_ramp": pl.Float64},
        orient="row",
    )
    q = q.join(factors, on=keys, how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("Ramp_Adjusted__c").fill_null(False))
        .then(pl.lit(1.0))
        .otherwise(pl.col("_ramp"))
        .alias("ramp_factor")
    )

    months = pl.DataFrame({"snapshot_month": snapshot_months}, schema={"snapshot_month": pl.Date})
    months = months.with_columns(pl.col("snapshot_month").dt.month_end().alias("_month_end"))
    snap = (
        q.join(months, how="cross")
        .filter(
            (pl.col("period_start") <= pl.col("_month_end"))
            & (pl.col("period_end") >= pl.col("snapshot_month"))
        )
        .select(
            "snapshot_month",
            pl.col("QuotaOwnerId").alias("rep_id"),
            "rep_name",
            "manager_id",
            "period_type",
            "period_start",
            "period_end",
            "quota_type",
            pl.col("ProductFamily").alias("product_family"),
            pl.col("Id").alias("quota_id"),
            pl.col("CurrencyIsoCode").fill_null(rules.corporate_currency).str.to_uppercase().alias("currency_iso_code"),
            "quota_amount_local",
            "conversion_rate",
            "full_quota",
            "hire_date",
            pl.col("Ramp_Adjusted__c").fill_null(False).alias("ramp_adjusted"),
            "ramp_factor",
            (pl.col("full_quota") * pl.col("ramp_factor")).alias("effective_quota"),
        )
        .cast(SNAPSHOT_SCHEMA)
        .sort("snapshot_month", "rep_id", "period_type", "period_start", "quota_type", "product_family", nulls_last=True)
    )
    bad = quarantine.concat(problems)
    bad_by_month = months.select("snapshot_month").join(bad, how="cross").select(
        "snapshot_month", *quarantine.COLUMNS
    )
    return snap, bad_by_month
