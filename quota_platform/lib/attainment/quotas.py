"""Quota snapshots: each rep's quota for each period, as captured in a snapshot month, in USD, with
mid-period changes day-weighted and new hires ramped (docs/contract.md, Rules: "Calendar", "Quota
type", "Currency", "Mid-period quota change", "Ramp").

:func:`build_quota_snapshots` applies the quota rules in order, one function each (quota type,
owner, amount, period, duplicates, currency at the period start, day-weighted mid-period changes,
ramp), and repeats the quarantine rows under each snapshot month; the Dagster asset only wires
inputs and outputs.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from quota_platform.lib.core import calendar as cal
from quota_platform.lib.core import quarantine
from quota_platform.lib.core.currency import RATE_COL, attach_rates, missing_rate_problem
from quota_platform.lib.core.quota_types import canonical_family, family_spellings, quota_type_table
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

PARTITION = "snapshot_month"  # the quarantine rows of quota snapshots are per snapshot month


def quota_types_of(
    quotas: pl.DataFrame, forecasting_types: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quota type (docs/contract.md, Rules: "Quota type"): each quota's ``quota_type`` from its
    ForecastingType's DeveloperName. A quota of a type the platform does not count, or of no
    ForecastingType at all, is quarantined. Returns the quotas kept and the quarantine rows."""
    q = quotas.join(quota_type_table(forecasting_types), on="ForecastingTypeId", how="left")
    bad = quarantine.rows(
        q.filter(pl.col("quota_type").is_null()),
        object="ForecastingQuota",
        id_col="Id",
        field="ForecastingTypeId",
        problem=pl.format(
            "forecasting type {} ({}) is not one the platform counts "
            "(NewBusiness, Expansion, Renewal, OpportunityRevenue)",
            quarantine.shown(pl.col("ForecastingTypeId")),
            pl.col("DeveloperName").fill_null("not a ForecastingType"),
        ),
    )
    return q.filter(pl.col("quota_type").is_not_null()), bad


def check_quota_owners(q: pl.DataFrame, users: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A quota's QuotaOwnerId must be a User; otherwise (an empty one included) the quota is
    quarantined."""
    known = pl.col("QuotaOwnerId").is_in(users["Id"].to_list()).fill_null(False)
    bad = quarantine.rows(
        q.filter(~known),
        object="ForecastingQuota",
        id_col="Id",
        field="QuotaOwnerId",
        problem=pl.format("quota owner {} is not a User", quarantine.shown(pl.col("QuotaOwnerId"))),
    )
    return q.filter(known), bad


def _amount_ok(amount: pl.Expr) -> pl.Expr:
    """Present, finite and zero or more (NaN compares above every number in polars, so ``>= 0``
    alone lets it through: a NaN quota read as pace ``ahead``)."""
    return (amount.is_not_null() & amount.is_finite() & (amount >= 0)).fill_null(False)


def canonical_families(
    quotas: pl.DataFrame, quota_history: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Product family spelling (docs/contract.md, Rules: "Product families"): every quota's
    ProductFamily as quota_types.family_spellings spells it (trimmed; "software" and "Software"
    are one family), and the history rows' likewise so that they still find their quota. A blank
    family is no family (null: the quota counts every product)."""
    spellings = family_spellings(quotas["ProductFamily"])
    trimmed = pl.col("ProductFamily").str.strip_chars()
    respelled = pl.coalesce(canonical_family(pl.col("ProductFamily"), spellings), pl.when(trimmed != "").then(trimmed))
    return (
        quotas.with_columns(respelled.alias("ProductFamily")),
        quota_history.with_columns(respelled.alias("ProductFamily")),
    )


def check_quota_amounts(q: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A quota's QuotaAmount must be zero or more; an empty, negative or non-finite one is
    quarantined."""
    bad = quarantine.rows(
        q.filter(~_amount_ok(pl.col("QuotaAmount"))),
        object="ForecastingQuota",
        id_col="Id",
        field="QuotaAmount",
        problem=pl.format(
            "quota amount is {}; it must be zero or more",
            pl.col("QuotaAmount").cast(pl.String).fill_null("empty"),
        ),
    )
    return q.filter(_amount_ok(pl.col("QuotaAmount"))), bad


def resolve_periods(
    quotas: pl.DataFrame, periods: pl.DataFrame, calendar: cal.FiscalCalendar
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quota period (docs/contract.md, Rules: "Calendar"): give each quota its period_type,
    period_start and period_end: its Period row by PeriodId, or the quarter starting at its
    StartDate. A period that is not a fiscal month or quarter is quarantined (credits are counted
    on fiscal periods, so it could never be compared)."""
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
                    quarantine.shown(pl.col("_ptype")),
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
                    quarantine.shown(pl.col("period_start")),
                    pl.col("period_type"),
                ),
            ),
        ]
    )
    bad_ids = problems["record_id"].to_list()
    good = q.filter(~pl.col("Id").is_in(bad_ids)).drop("_ptype", "_pstart", "_pend", "_has_period")
    return good, problems


def check_duplicate_quotas(q: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One quota per (owner, quota type, period, product family): every quota of a grain that has
    two or more is quarantined, since none of them can be told to be the right one."""
    grain = ["QuotaOwnerId", "quota_type", "period_type", "period_start", "ProductFamily"]
    dup = q.filter(pl.len().over(grain) > 1) if not q.is_empty() else q
    bad = quarantine.rows(
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
    return q.filter(~pl.col("Id").is_in(dup["Id"].to_list())), bad


def convert_at_period_start(
    quotas: pl.DataFrame, rates: pl.DataFrame, corporate_currency: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Currency (docs/contract.md, Rules: "Currency"): (Id, quota_amount_local, conversion_rate,
    full_quota) per quota, its QuotaAmount converted at the rate in force on its period start.
    Quotas whose currency has no rate that day are quarantined."""
    base = attach_rates(
        quotas.select("Id", "CurrencyIsoCode", "QuotaAmount", "period_start"),
        rates,
        date_col="period_start",
        currency_col="CurrencyIsoCode",
        corporate_currency=corporate_currency,
    )
    known = rates["IsoCode"].str.to_uppercase().unique().to_list() + [corporate_currency]
    bad = quarantine.rows(
        base.filter(pl.col(RATE_COL).is_null()),
        object="ForecastingQuota",
        id_col="Id",
        field="CurrencyIsoCode",
        problem=missing_rate_problem("CurrencyIsoCode", "period_start", known),
    )
    amounts = base.filter(pl.col(RATE_COL).is_not_null()).select(
        "Id",
        pl.col("QuotaAmount").alias("quota_amount_local"),
        RATE_COL,
        (pl.col("QuotaAmount") / pl.col(RATE_COL)).alias("full_quota"),
    )
    return amounts, bad


def day_weighted_amounts(
    amounts: pl.DataFrame,
    quotas: pl.DataFrame,
    history: pl.DataFrame,
    rates: pl.DataFrame,
    corporate_currency: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Mid-period quota change (docs/contract.md, Rules: "Mid-period quota change"): with
    ForecastingQuotaHistory rows for a quota, its ``full_quota`` in ``amounts`` (from
    :func:`convert_at_period_start`) becomes the day-weighted average over the period's days of
    the USD amount in force each day (each history row converted at the period start; days before
    the first row take the first row's amount).

    A quota is quarantined whole (object ForecastingQuotaHistory, the quota's Id) when one of its
    history rows has an empty, negative or non-finite QuotaAmount (an empty one used to count as
    nothing on its days and dilute the average: 100,000 became 32,778), no EffectiveDate, or a
    currency with no rate, or when two of its rows with one EffectiveDate disagree on the amount
    or currency (which one was in force is unknown; the last in the file used to win). Rows that
    repeat each other exactly are one row. Without history rows ``amounts`` is returned as it is."""
    if history.is_empty():
        return amounts, quarantine.empty()
    keys = ["QuotaOwnerId", "ForecastingTypeId", "StartDate", "ProductFamily"]
    h = history.with_row_index("_order").join(
        quotas.select(keys + ["Id", "period_start", "period_end"]),
        on=keys,
        how="inner",
        nulls_equal=True,
    )
    h = attach_rates(
        h,
        rates,
        date_col="period_start",
        currency_col="CurrencyIsoCode",
        corporate_currency=corporate_currency,
    )
    known = rates["IsoCode"].str.to_uppercase().unique().to_list() + [corporate_currency]
    currency = pl.col("CurrencyIsoCode").fill_null(corporate_currency).str.to_uppercase()
    conflicting = (
        h.filter(pl.col("EffectiveDate").is_not_null())
        .group_by("Id", "EffectiveDate")
        .agg(
            pl.struct(pl.col("QuotaAmount"), currency).n_unique().alias("_versions"),
            pl.format("{} {}", currency, quarantine.shown(pl.col("QuotaAmount"))).unique().sort().str.join(" and ").alias("_amounts"),
        )
        .filter(pl.col("_versions") > 1)
    )
    checks = [
        (
            h.filter(~_amount_ok(pl.col("QuotaAmount"))),
            "QuotaAmount",
            pl.format(
                "the history row effective {} has QuotaAmount {}; it must be zero or more",
                quarantine.shown(pl.col("EffectiveDate")),
                quarantine.shown(pl.col("QuotaAmount")),
            ),
        ),
        (
            h.filter(pl.col("EffectiveDate").is_null()),
            "EffectiveDate",
            pl.format("a history row (QuotaAmount {}) has no EffectiveDate", quarantine.shown(pl.col("QuotaAmount"))),
        ),
        (
            conflicting,
            "EffectiveDate",
            pl.format(
                "two history rows effective {} give {}; which one was in force is unknown",
                pl.col("EffectiveDate"),
                pl.col("_amounts"),
            ),
        ),
        (
            h.filter(pl.col(RATE_COL).is_null() & _amount_ok(pl.col("QuotaAmount")) & pl.col("EffectiveDate").is_not_null()),
            "CurrencyIsoCode",
            missing_rate_problem("CurrencyIsoCode", "period_start", known),
        ),
    ]
    parts, set_aside = [], set()
    for frame, field, problem in checks:
        frame = frame.filter(~pl.col("Id").is_in(list(set_aside))).unique("Id", keep="first", maintain_order=True)
        set_aside |= set(frame["Id"].to_list())
        parts.append(quarantine.rows(frame, object="ForecastingQuotaHistory", id_col="Id", field=field, problem=problem))
    bad = quarantine.concat(parts)
    # A quota whose history cannot be trusted has no trustworthy amount: quarantined whole.
    h = h.filter(~pl.col("Id").is_in(list(set_aside)))
    amounts = amounts.filter(~pl.col("Id").is_in(list(set_aside)))
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
    amounts = (
        amounts.join(weighted, on="Id", how="left")
        .with_columns(pl.coalesce("_weighted", "full_quota").alias("full_quota"))
        .drop("_weighted")
    )
    return amounts, bad


def ramp_factors(q: pl.DataFrame, ramp: tuple[float, ...]) -> pl.DataFrame:
    """Ramp (docs/contract.md, Rules: "Ramp"): ``ramp_factor`` for each quota from its period and
    its owner's ``hire_date`` (:func:`quota_platform.lib.core.calendar.ramp_factor`), or 1 when
    Ramp_Adjusted__c says the amount was already reduced."""
    keys = ["period_type", "period_start", "hire_date"]
    factors = pl.DataFrame(
        [
            (*key, cal.ramp_factor(key[0], key[1], key[2], ramp))
            for key in q.select(keys).unique().iter_rows()
        ],
        schema={"period_type": pl.String, "period_start": pl.Date, "hire_date": pl.Date, "_ramp": pl.Float64},
        orient="row",
    )
    return q.join(factors, on=keys, how="left", nulls_equal=True).with_columns(
        pl.when(pl.col("Ramp_Adjusted__c").fill_null(False))
        .then(pl.lit(1.0))
        .otherwise(pl.col("_ramp"))
        .alias("ramp_factor")
    )


def snapshot_rows(
    q: pl.DataFrame, snapshot_months: list[date], corporate_currency: str
) -> pl.DataFrame:
    """The snapshot rows: for each snapshot month, every quota whose period overlaps the month,
    with effective_quota = full_quota x ramp_factor."""
    months = pl.DataFrame({"snapshot_month": snapshot_months}, schema={"snapshot_month": pl.Date})
    months = months.with_columns(pl.col("snapshot_month").dt.month_end().alias("_month_end"))
    return (
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
            pl.col("CurrencyIsoCode").fill_null(corporate_currency).str.to_uppercase().alias("currency_iso_code"),
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
    the month, and the quarantine rows (with ``snapshot_month``) for quotas that break a rule.

    The rules apply in order, each in its own function (after :func:`canonical_families` spells
    every product family one way): :func:`quota_types_of`,
    :func:`check_quota_owners`, :func:`check_quota_amounts`, :func:`resolve_periods`,
    :func:`check_duplicate_quotas`, :func:`convert_at_period_start`, :func:`day_weighted_amounts`,
    :func:`ramp_factors`, then :func:`snapshot_rows`. A quota quarantined by one rule is left out
    of the later ones and of every snapshot month."""
    corp = rules.corporate_currency
    quotas, quota_history = canonical_families(quotas, quota_history)
    q, bad_types = quota_types_of(quotas, forecasting_types)
    q, bad_owners = check_quota_owners(q, users)
    q, bad_amounts = check_quota_amounts(q)
    q, bad_periods = resolve_periods(q, periods, rules.calendar)
    q, bad_duplicates = check_duplicate_quotas(q)
    amounts, bad_rates = convert_at_period_start(q, rates, corp)
    amounts, bad_history = day_weighted_amounts(amounts, q, quota_history, rates, corp)
    q = q.join(amounts, on="Id", how="inner").join(
        users.select(
            pl.col("Id").alias("QuotaOwnerId"),
            pl.col("Name").alias("rep_name"),
            pl.col("ManagerId").alias("manager_id"),
            pl.col("Hire_Date__c").alias("hire_date"),
        ),
        on="QuotaOwnerId",
        how="left",
    )
    q = ramp_factors(q, rules.ramp)
    snap = snapshot_rows(q, snapshot_months, corp)
    bad = quarantine.concat(
        [bad_types, bad_owners, bad_amounts, bad_periods, bad_duplicates, bad_rates, bad_history]
    )
    return snap, quarantine.in_each_partition(bad, PARTITION, snapshot_months)
