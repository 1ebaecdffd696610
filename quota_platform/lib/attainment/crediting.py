"""Crediting: which rep gets how much of which closed-won deal, in which period, as of a date
(docs/contract.md, Rules: "As of a date (point in time)", "Quota type", "Credit and splits",
"Overlay", "Product families", "Currency").

Two steps, each a plain function:

1. :func:`states_as_of` reconstructs every opportunity as it stood at the end of each as-of date
   from OpportunityHistory (point in time), for many dates in one pass.
2. :func:`credit_bookings` turns the won ones into credit rows: revenue splits or the owner at
   100%, overlay splits kept apart, one row per quota type the deal's Type counts toward, per fiscal
   month and quarter of its close date, per product family that a quota names, in USD at the rate
   in force on the close date. Records that break a rule are quarantined, never dropped silently.

Each crediting rule is one function, applied in this order by :func:`attribute_credit` (which open
pipeline and the training data use too): :func:`check_amounts`, :func:`convert_currency`,
:func:`credited_reps` (revenue and overlay splits), :func:`check_credited_users`,
:func:`quota_types_counted` and :func:`product_family_amounts`. Their quarantine rows are built by
:mod:`quota_platform.lib.core.quarantine`, with ``as_of_date`` as the partition column.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import polars as pl

from quota_platform.lib.core import calendar as cal
from quota_platform.lib.core import quarantine
from quota_platform.lib.core.currency import RATE_COL, attach_rates, missing_rate_problem
from quota_platform.lib.core.quota_types import EVERY_TYPE, opportunity_type_map
from quota_platform.lib.core.rules import Rules

# Revenue split percentages of one opportunity must total 100 within this many points.
SPLIT_TOLERANCE_PCT = 0.01

CREDIT_SCHEMA = {
    "as_of_date": pl.Date(),
    "opportunity_id": pl.String(),
    "opportunity_name": pl.String(),
    "rep_id": pl.String(),
    "quota_type": pl.String(),
    "period_type": pl.String(),
    "period_start": pl.Date(),
    "product_family": pl.String(),
    "credit_type": pl.String(),
    "split_percentage": pl.Float64(),
    "close_date": pl.Date(),
    "stage_name": pl.String(),
    "currency_iso_code": pl.String(),
    "amount_local": pl.Float64(),
    "conversion_rate": pl.Float64(),
    "amount_usd": pl.Float64(),
    "credit_usd": pl.Float64(),
}

PARTITION = "as_of_date"  # the quarantine rows of crediting are per as-of date

REVENUE = "revenue"
OVERLAY = "overlay"


def stage_flags(stages: pl.DataFrame, opportunities: pl.DataFrame) -> pl.DataFrame:
    """(StageName, is_won, is_closed) for every stage name known. OpportunityStage decides; for a
    stage it does not list (or without the object), a stage is won (closed) when some current
    opportunity in that stage has IsWon (IsClosed) true."""
    from_opps = opportunities.group_by("StageName").agg(
        pl.col("IsWon").fill_null(False).any().alias("_won"),
        pl.col("IsClosed").fill_null(False).any().alias("_closed"),
    )
    from_stages = stages.select(
        pl.col("ApiName").alias("StageName"),
        pl.col("IsWon").alias("_won_s"),
        pl.col("IsClosed").alias("_closed_s"),
    )
    return (
        from_opps.join(from_stages, on="StageName", how="full", coalesce=True)
        .select(
            "StageName",
            pl.coalesce("_won_s", "_won", pl.lit(False)).alias("is_won"),
            pl.coalesce("_closed_s", "_closed", pl.lit(False)).alias("is_closed"),
        )
        .filter(pl.col("StageName").is_not_null())
    )


def states_as_of(
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    flags: pl.DataFrame,
    as_of_dates: list[date],
    *,
    only_won: bool = False,
) -> pl.DataFrame:
    """Each opportunity as it stood at the end of each as-of date (UTC).

    With history rows, the latest row created on or before the end of D gives StageName, Amount and
    CloseDate; an opportunity whose first row is later did not exist yet. An opportunity with no
    history rows uses its current values from the date it was created. Deleted opportunities are
    left out. Returns one row per (as_of_date, opportunity) with the opportunity's other fields,
    ``is_won``, ``is_closed`` and ``from_history``.
    """
    dates = pl.DataFrame({"as_of_date": sorted(set(as_of_dates))}, schema={"as_of_date": pl.Date})
    if dates.is_empty():
        raise ValueError("states_as_of needs at least one as-of date")
    first, last = dates["as_of_date"].min(), dates["as_of_date"].max()
    live = opportunities.filter(~pl.col("IsDeleted").fill_null(False))
    with_history = history.filter(pl.col("OpportunityId").is_in(live["Id"].to_list()))

    # A history row is visible from the end of the (UTC) day it was created; the last row of a day
    # is the state of that day; each state lasts until the next day that has a row.
    h = (
        with_history.with_row_index("_order")
        .with_columns(pl.col("CreatedDate").dt.date().alias("_from"))
        .sort("OpportunityId", "CreatedDate", "_order")
        .unique(subset=["OpportunityId", "_from"], keep="last", maintain_order=True)
        .with_columns(
            pl.col("_from").shift(-1).over("OpportunityId").alias("_next"),
            # a push: the close date moved later than the previous day's state had it
            (pl.col("CloseDate") > pl.col("CloseDate").shift(1).over("OpportunityId"))
            .fill_null(False)
            .cast(pl.Int32)
            .cum_sum()
            .over("OpportunityId")
            .alias("pushes"),
        )
        .with_columns(
            # the day the current stage was entered: the first day of this run of one stage
            pl.when(pl.col("StageName") == pl.col("StageName").shift(1).over("OpportunityId"))
            .then(None)
            .otherwise(pl.col("_from"))
            .forward_fill()
            .over("OpportunityId")
            .alias("stage_entered")
        )
        .select(
            pl.col("OpportunityId").alias("Id"),
            "StageName",
            "Amount",
            "CloseDate",
            "pushes",
            "stage_entered",
            "_from",
            pl.col("_next").dt.offset_by("-1d").alias("_to"),
            pl.lit(True).alias("from_history"),
        )
    )
    no_history_ids = set(live["Id"].to_list()) - set(with_history["OpportunityId"].to_list())
    current = live.filter(pl.col("Id").is_in(list(no_history_ids))).select(
        "Id",
        "StageName",
        "Amount",
        "CloseDate",
        pl.lit(0, pl.Int32).alias("pushes"),
        pl.col("CreatedDate").dt.date().alias("stage_entered"),
        pl.col("CreatedDate").dt.date().alias("_from"),
        pl.lit(None, pl.Date).alias("_to"),
        pl.lit(False).alias("from_history"),
    )
    spans = pl.concat([h, current]).join(flags, on="StageName", how="left").with_columns(
        pl.col("is_won").fill_null(False), pl.col("is_closed").fill_null(False)
    )
    if only_won:
        spans = spans.filter(pl.col("is_won"))
    lo = pl.max_horizontal("_from", pl.lit(first))
    hi = pl.min_horizontal(pl.col("_to").fill_null(pl.lit(last)), pl.lit(last))
    spans = spans.filter(lo <= hi).with_columns(
        pl.date_ranges(lo, hi, "1d").alias("as_of_date")
    )
    states = (
        spans.explode("as_of_date")
        .join(dates, on="as_of_date", how="semi")
        .drop("_from", "_to")
    )
    static = live.drop("StageName", "Amount", "CloseDate", "IsWon", "IsClosed", "Probability")
    return states.join(static, on="Id", how="left").sort("as_of_date", "Id")


@dataclasses.dataclass(frozen=True)
class CreditInputs:
    """The objects crediting reads beside the opportunity states; one value serves won deals
    (credited_bookings) and open ones (open_pipeline) alike."""

    users: pl.DataFrame
    splits: pl.DataFrame
    split_types: pl.DataFrame
    line_items: pl.DataFrame
    products: pl.DataFrame
    quota_types: list[str]  # the org's quota types (quota_types.org_quota_types)
    quota_families: list[str]  # product families some quota names: they get family rows
    rates: pl.DataFrame
    rules: Rules


def check_amounts(w: pl.DataFrame, *, won: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Amount check (docs/contract.md, Rules: "Credit and splits"): an amount must be zero or more.

    A won state with an empty or negative amount is quarantined. An open state's empty amount
    counts as 0 (open deals often have none yet); a negative one is quarantined. Returns the
    states kept and the quarantine rows."""
    if not won:
        w = w.with_columns(pl.col("Amount").fill_null(0.0))
    bad = quarantine.rows(
        w.filter(pl.col("Amount").is_null() | (pl.col("Amount") < 0)),
        object="Opportunity",
        id_col="opportunity_id",
        field="Amount",
        problem=pl.format(
            "{} deal has amount {} as of {}; it must be zero or more",
            pl.lit("closed-won" if won else "open"),
            pl.col("Amount").cast(pl.String).fill_null("empty"),
            pl.col("as_of_date"),
        ),
        partition=PARTITION,
    )
    return w.filter(pl.col("Amount").is_not_null() & (pl.col("Amount") >= 0)), bad


def convert_currency(
    w: pl.DataFrame, rates: pl.DataFrame, *, rate_date: str, corporate_currency: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Currency (docs/contract.md, Rules: "Currency"): each state gets the ``conversion_rate`` of
    its currency in force on ``rate_date`` (a column of ``w``); a null currency is the corporate
    one. A state whose currency has no rate that day is quarantined. Returns the states kept (with
    ``CurrencyIsoCode`` upper case) and the quarantine rows."""
    w = w.with_columns(pl.col("CurrencyIsoCode").fill_null(corporate_currency).str.to_uppercase())
    w = attach_rates(
        w,
        rates,
        date_col=rate_date,
        currency_col="CurrencyIsoCode",
        corporate_currency=corporate_currency,
    )
    known = rates["IsoCode"].str.to_uppercase().unique().to_list() + [corporate_currency]
    bad = quarantine.rows(
        w.filter(pl.col(RATE_COL).is_null()),
        object="Opportunity",
        id_col="opportunity_id",
        field="CurrencyIsoCode",
        problem=missing_rate_problem("CurrencyIsoCode", rate_date, known),
        partition=PARTITION,
    )
    return w.filter(pl.col(RATE_COL).is_not_null()), bad


def credited_reps(
    w: pl.DataFrame, splits: pl.DataFrame, split_types: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Who is credited (docs/contract.md, Rules: "Credit and splits" and "Overlay").

    With revenue split rows (split type IsTotalValidated true) each SplitOwnerId gets its
    SplitPercentage as revenue credit; without them the OwnerId gets 100%. Overlay split rows
    (IsTotalValidated false) are overlay credit beside the revenue credit. An opportunity with a
    split row of an unknown split type, or whose revenue splits do not total 100% (within
    SPLIT_TOLERANCE_PCT points), is quarantined.

    Returns (credited, kept states, quarantine rows); ``credited`` has one row per (as_of_date,
    opportunity_id, rep_id, credit_type) with ``split_percentage`` and ``_field``, the field that
    names the rep (OwnerId or SplitOwnerId).
    """
    split_rows = splits.join(
        split_types.select(pl.col("Id").alias("SplitTypeId"), "IsTotalValidated"),
        on="SplitTypeId",
        how="left",
    ).filter(pl.col("OpportunityId").is_in(w["opportunity_id"].unique().to_list()))
    unknown_type = split_rows.filter(pl.col("IsTotalValidated").is_null())
    revenue_splits = split_rows.filter(pl.col("IsTotalValidated").fill_null(False))
    bad_total = (
        revenue_splits.group_by("OpportunityId")
        .agg(pl.col("SplitPercentage").sum().alias("_total"))
        .filter((pl.col("_total") - 100).abs() > SPLIT_TOLERANCE_PCT)
    )
    bad = quarantine.concat(
        [
            quarantine.rows(
                w.join(
                    unknown_type.select(
                        pl.col("OpportunityId").alias("opportunity_id"), "SplitTypeId"
                    ).unique("opportunity_id"),
                    on="opportunity_id",
                ),
                object="OpportunitySplit",
                id_col="opportunity_id",
                field="SplitTypeId",
                problem=pl.when(pl.col("SplitTypeId").is_null())
                .then(pl.lit("a split row has no SplitTypeId"))
                .otherwise(
                    pl.format("split type {} is not an OpportunitySplitType", pl.col("SplitTypeId"))
                ),
                partition=PARTITION,
            ),
            quarantine.rows(
                w.join(bad_total.rename({"OpportunityId": "opportunity_id"}), on="opportunity_id"),
                object="OpportunitySplit",
                id_col="opportunity_id",
                field="SplitPercentage",
                problem=pl.format(
                    "revenue split percentages total {}%, not 100%", pl.col("_total").round(4)
                ),
                partition=PARTITION,
            ),
        ],
        partition=PARTITION,
    )
    excluded = set(unknown_type["OpportunityId"].to_list()) | set(bad_total["OpportunityId"].to_list())
    w = w.filter(~pl.col("opportunity_id").is_in(list(excluded)))

    has_revenue_split = set(revenue_splits["OpportunityId"].to_list())
    owners = w.filter(~pl.col("opportunity_id").is_in(list(has_revenue_split))).select(
        "as_of_date",
        "opportunity_id",
        pl.col("OwnerId").alias("rep_id"),
        pl.lit(100.0).alias("split_percentage"),
        pl.lit(REVENUE).alias("credit_type"),
        pl.lit("OwnerId").alias("_field"),
    )
    split_credit = w.select("as_of_date", "opportunity_id").join(
        split_rows.filter(pl.col("IsTotalValidated").is_not_null()).select(
            pl.col("OpportunityId").alias("opportunity_id"),
            pl.col("SplitOwnerId").alias("rep_id"),
            pl.col("SplitPercentage").alias("split_percentage"),
            pl.when(pl.col("IsTotalValidated")).then(pl.lit(REVENUE)).otherwise(pl.lit(OVERLAY)).alias("credit_type"),
            pl.lit("SplitOwnerId").alias("_field"),
        ),
        on="opportunity_id",
    )
    # Two split rows of one kind for the same owner are one credit: an opportunity is never
    # credited twice to one owner (docs/contract.md, Rules: "Roll-ups").
    credited = (
        pl.concat([owners, split_credit])
        .group_by("as_of_date", "opportunity_id", "rep_id", "credit_type", maintain_order=True)
        .agg(pl.col("split_percentage").sum(), pl.col("_field").first())
    )
    return credited, w, bad


def check_credited_users(
    credited: pl.DataFrame, w: pl.DataFrame, users: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Unknown credited users (docs/contract.md, Rules: "Credit and splits"): every rep credited
    with an opportunity must be a User, and an empty OwnerId or SplitOwnerId names nobody;
    otherwise the whole opportunity (every credit of it, as of that date) is quarantined, so that
    its split credits never count in part.

    Returns (credited without the ``_field`` column, kept states, quarantine rows)."""
    unknown_rep = credited.filter(
        pl.col("rep_id").is_null() | ~pl.col("rep_id").is_in(users["Id"].to_list())
    )
    bad = quarantine.rows(
        unknown_rep.join(w.select("as_of_date", "opportunity_id"), on=["as_of_date", "opportunity_id"]),
        object="Opportunity",
        id_col="opportunity_id",
        field="OwnerId",
        problem=pl.when(pl.col("rep_id").is_null())
        .then(pl.format("no credited user: {} is empty", pl.col("_field")))
        .otherwise(
            pl.format("credited user {} ({}) is not a User", pl.col("rep_id"), pl.col("_field"))
        ),
        partition=PARTITION,
    )
    bad_opps = unknown_rep.select("as_of_date", "opportunity_id").unique()
    credited = credited.join(bad_opps, on=["as_of_date", "opportunity_id"], how="anti").drop("_field")
    w = w.join(bad_opps, on=["as_of_date", "opportunity_id"], how="anti")
    return credited, w, bad


def quota_types_counted(w: pl.DataFrame, quota_types: list[str]) -> pl.DataFrame:
    """Quota type (docs/contract.md, Rules: "Quota type"): (as_of_date, opportunity_id,
    quota_type) for every quota type of the org that the opportunity's Type counts toward;
    ``bookings`` (OpportunityRevenue) counts every Type, a null Type included."""
    type_map = opportunity_type_map(quota_types)
    typed = w.join(type_map, on="Type", how="inner").select("as_of_date", "opportunity_id", "quota_type")
    if EVERY_TYPE in quota_types:
        typed = pl.concat(
            [typed, w.select("as_of_date", "opportunity_id", pl.lit(EVERY_TYPE).alias("quota_type"))]
        )
    return typed


def product_family_amounts(
    w: pl.DataFrame, line_items: pl.DataFrame, products: pl.DataFrame, quota_families: list[str]
) -> pl.DataFrame:
    """Product families (docs/contract.md, Rules: "Product families"): (as_of_date,
    opportunity_id, product_family, amount_local). Every opportunity has a whole-deal row (null
    family, its Amount); for each family some quota names, an opportunity with line items of that
    family (Product2.Family) also has a row with the sum of their TotalPrice."""
    whole = w.select(
        "as_of_date", "opportunity_id", pl.lit(None, pl.String).alias("product_family"), pl.col("Amount").alias("amount_local")
    )
    bases = [whole]
    if quota_families and not line_items.is_empty():
        family_totals = (
            line_items.join(
                products.select(pl.col("Id").alias("Product2Id"), "Family"), on="Product2Id", how="left"
            )
            .filter(pl.col("Family").is_in(quota_families))
            .group_by("OpportunityId", "Family")
            .agg(pl.col("TotalPrice").sum().alias("amount_local"))
            .rename({"OpportunityId": "opportunity_id", "Family": "product_family"})
        )
        bases.append(w.select("as_of_date", "opportunity_id").join(family_totals, on="opportunity_id"))
    return pl.concat(bases, how="vertical_relaxed")


def attribute_credit(
    states: pl.DataFrame, inputs: CreditInputs, *, rate_date: str, won: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Who is credited how much of each opportunity state, per quota type and product family.

    The crediting rules apply in order, each in its own function: :func:`check_amounts`,
    :func:`convert_currency` (at the rate in force on ``rate_date``, a column of ``states``),
    :func:`credited_reps`, :func:`check_credited_users`, :func:`quota_types_counted` and
    :func:`product_family_amounts`. ``won`` says whether the states are won deals (an empty
    amount is quarantined) or open ones (an empty amount counts as 0). Returns credit rows
    (without periods) and quarantine rows, both keyed by ``as_of_date``.
    """
    w = states.rename({"Id": "opportunity_id"})
    w, bad_amounts = check_amounts(w, won=won)
    w, bad_rates = convert_currency(
        w, inputs.rates, rate_date=rate_date, corporate_currency=inputs.rules.corporate_currency
    )
    credited, w, bad_splits = credited_reps(w, inputs.splits, inputs.split_types)
    credited, w, bad_users = check_credited_users(credited, w, inputs.users)
    typed = quota_types_counted(w, inputs.quota_types)
    base = product_family_amounts(w, inputs.line_items, inputs.products, inputs.quota_families)

    keys = ["as_of_date", "opportunity_id"]
    rows = (
        credited.join(typed, on=keys)
        .join(base, on=keys)
        .join(w.drop("Amount"), on=keys)
        .with_columns((pl.col("amount_local") / pl.col(RATE_COL)).alias("amount_usd"))
        .with_columns((pl.col("amount_usd") * pl.col("split_percentage") / 100.0).alias("credit_usd"))
    )
    bad = quarantine.concat([bad_amounts, bad_rates, bad_splits, bad_users], partition=PARTITION)
    return rows, bad.unique(maintain_order=True)


def credit_bookings(won: pl.DataFrame, inputs: CreditInputs) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Credit rows and quarantine rows (both with ``as_of_date``) for won opportunity states from
    :func:`states_as_of` (``only_won=True``): each credit lands in the fiscal month and quarter of
    the close date, converted at the rate in force on the close date."""
    rows, bad = attribute_credit(won, inputs, rate_date="CloseDate", won=True)
    rules = inputs.rules
    rows = rows.with_row_index("_row")
    periods = pl.concat(
        [
            rows.select(
                "_row",
                pl.lit(pt).alias("period_type"),
                rules.calendar.period_start_expr(pt, pl.col("CloseDate")).alias("period_start"),
                pl.lit(1 if pt == cal.MONTH else 3).alias("_months"),
            )
            for pt in cal.PERIOD_TYPES
        ]
    )
    # Keep credits to periods ending within the lookback or later (docs/decisions.md).
    period_end = pl.col("period_start").dt.offset_by(pl.format("{}mo", pl.col("_months"))).dt.offset_by("-1d")
    horizon = pl.col("as_of_date").dt.offset_by(f"-{rules.credit_history_months}mo")
    credits = (
        rows.join(periods, on="_row")
        .filter(period_end >= horizon)
        .rename({"Name": "opportunity_name", "CloseDate": "close_date", "StageName": "stage_name", "CurrencyIsoCode": "currency_iso_code"})
        .select(list(CREDIT_SCHEMA))
        .cast(CREDIT_SCHEMA)
        .sort(
            "as_of_date", "opportunity_id", "rep_id", "quota_type", "period_type", "product_family", "credit_type",
            nulls_last=True,
        )
    )
    return credits, bad


def split_total_mismatches(credits: pl.DataFrame, tolerance: float = 1e-6) -> pl.DataFrame:
    """Groups (as-of date, opportunity, quota type, period, family) whose revenue credits do not add
    up to the deal's amount: an opportunity credited twice to one owner or a split that leaks."""
    return (
        credits.filter(pl.col("credit_type") == REVENUE)
        .group_by("as_of_date", "opportunity_id", "quota_type", "period_type", "period_start", "product_family")
        .agg(pl.col("credit_usd").sum().alias("credited_usd"), pl.col("amount_usd").first())
        .filter((pl.col("credited_usd") - pl.col("amount_usd")).abs() > tolerance * pl.max_horizontal(pl.col("amount_usd").abs(), pl.lit(1.0)))
        .sort("as_of_date", "opportunity_id")
    )
