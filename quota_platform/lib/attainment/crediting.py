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
pipeline and the training data use too): :func:`check_stages`, :func:`check_amounts`,
:func:`check_close_dates`, :func:`check_line_items`, :func:`convert_currency`,
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
from quota_platform.lib.core.quota_types import (
    EVERY_TYPE,
    TYPE_KEY,
    canonical_family,
    family_spellings,
    match_key,
    opportunity_type_map,
)
from quota_platform.lib.core.rules import Rules

# Revenue split percentages of one opportunity must total 100 within this many points. The one
# tolerance of split totals: the quarantine of split rows (credited_reps) and the blocking
# revenue_credits_sum_to_amount check (split_total_mismatches) both apply it through
# split_total_ok. Salesforce stores SplitPercentage with two decimals, so three-way 33.33 splits
# (99.99%) are the everyday case it admits; 50.005/50 (100.005%) is within it too. A total
# within it is credited in proportion, scaled to exactly 100% (docs/decisions.md, "Bad input,
# faults and security": "Split tolerance").
SPLIT_TOLERANCE_PCT = 0.01
# Room for the rounding of a float sum (33.33 x 3 is 99.99000000000001 or 99.98999999999999).
_FLOAT_SLACK_PCT = 1e-9


def split_total_ok(total_pct: pl.Expr) -> pl.Expr:
    """Whether revenue split percentages (or revenue credits as a percentage of the amount)
    totalling ``total_pct`` count as 100%: within SPLIT_TOLERANCE_PCT points."""
    return (total_pct - 100.0).abs() <= SPLIT_TOLERANCE_PCT + _FLOAT_SLACK_PCT

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


STAGE_KEY = "_stage_key"


def stage_flags(stages: pl.DataFrame, opportunities: pl.DataFrame) -> pl.DataFrame:
    """(StageName, STAGE_KEY, is_won, is_closed) for every stage known, one row per stage as
    matched (quota_types.match_key: trimmed, any case). OpportunityStage decides; for a stage it
    does not list (or without the object), a stage is won (closed) when some current opportunity
    in that stage has IsWon (IsClosed) true. A stage in neither is unknown (:func:`states_as_of`
    marks it, :func:`check_stages` quarantines the deal)."""
    from_opps = (
        opportunities.filter(pl.col("StageName").is_not_null())
        .group_by(match_key(pl.col("StageName")).alias(STAGE_KEY))
        .agg(
            pl.col("StageName").min().alias("_name"),
            pl.col("IsWon").fill_null(False).any().alias("_won"),
            pl.col("IsClosed").fill_null(False).any().alias("_closed"),
        )
    )
    from_stages = (
        stages.filter(pl.col("ApiName").is_not_null())
        .group_by(match_key(pl.col("ApiName")).alias(STAGE_KEY))
        .agg(
            pl.col("ApiName").min().alias("_name_s"),
            pl.col("IsWon").fill_null(False).any().alias("_won_s"),
            pl.col("IsClosed").fill_null(False).any().alias("_closed_s"),
        )
    )
    return (
        from_opps.join(from_stages, on=STAGE_KEY, how="full", coalesce=True)
        .select(
            pl.coalesce("_name_s", "_name").alias("StageName"),
            STAGE_KEY,
            pl.coalesce("_won_s", "_won", pl.lit(False)).alias("is_won"),
            pl.coalesce("_closed_s", "_closed", pl.lit(False)).alias("is_closed"),
        )
        .filter(pl.col(STAGE_KEY).is_not_null() & (pl.col(STAGE_KEY) != ""))
        .sort(STAGE_KEY)
    )


def states_as_of(
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    flags: pl.DataFrame,
    as_of_dates: list[date],
    *,
    only_won: bool = False,
    keep_unknown_stages: bool = False,
) -> pl.DataFrame:
    """Each opportunity as it stood at the end of each as-of date (UTC).

    With history rows, the latest row created on or before the end of D gives StageName, Amount and
    CloseDate; an opportunity whose first row is later did not exist yet. An opportunity with no
    history rows uses its current values from the date it was created. Deleted opportunities are
    left out. Returns one row per (as_of_date, opportunity) with the opportunity's other fields,
    ``is_won``, ``is_closed``, ``stage_known`` and ``from_history``.

    A state in a stage ``flags`` does not know (empty, or in neither OpportunityStage nor any
    current opportunity) has ``stage_known`` false and is neither won nor closed; ``only_won``
    leaves such states out unless ``keep_unknown_stages`` (crediting keeps them to quarantine
    them: whether the deal was won then cannot be told).
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
    spans = (
        pl.concat([h, current])
        .with_columns(match_key(pl.col("StageName")).alias(STAGE_KEY))
        .join(flags.select(STAGE_KEY, "is_won", "is_closed"), on=STAGE_KEY, how="left")
        .with_columns(
            pl.col("is_won").is_not_null().alias("stage_known"),
            pl.col("is_won").fill_null(False),
            pl.col("is_closed").fill_null(False),
        )
        .drop(STAGE_KEY)
    )
    if only_won:
        spans = spans.filter(pl.col("is_won") | (pl.lit(keep_unknown_stages) & ~pl.col("stage_known")))
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


def check_stages(w: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage check (docs/contract.md, Rules: "As of a date (point in time)"): a state whose stage
    is known neither to OpportunityStage nor from any current opportunity (``stage_known`` false
    from :func:`states_as_of`; a stage renamed or deleted since a history row was written, or an
    empty one) cannot be told won from open: quarantined. Returns the states kept and the
    quarantine rows. States without a ``stage_known`` column are all kept."""
    if "stage_known" not in w.columns:
        return w, quarantine.empty(PARTITION)
    bad = quarantine.rows(
        w.filter(~pl.col("stage_known")),
        object="OpportunityHistory",
        id_col="opportunity_id",
        field="StageName",
        problem=pl.format(
            "stage {} (the deal's state as of {}) is in neither OpportunityStage nor any current "
            "opportunity, so whether it was won then is unknown; add the stage to OpportunityStage",
            quarantine.shown(pl.col("StageName")),
            pl.col("as_of_date"),
        ),
        partition=PARTITION,
    )
    return w.filter(pl.col("stage_known")), bad


def _amount_ok(amount: pl.Expr) -> pl.Expr:
    """Present, finite and zero or more (NaN compares above every number in polars, so ``>= 0``
    alone lets it through)."""
    return (amount.is_not_null() & amount.is_finite() & (amount >= 0)).fill_null(False)


def check_amounts(w: pl.DataFrame, *, won: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Amount check (docs/contract.md, Rules: "Credit and splits"): an amount must be zero or more.

    A won state with an empty, negative or non-finite amount is quarantined. An open state's empty
    amount counts as 0 (open deals often have none yet); a negative or non-finite one is
    quarantined. Returns the states kept and the quarantine rows."""
    if not won:
        w = w.with_columns(pl.col("Amount").fill_null(0.0))
    bad = quarantine.rows(
        w.filter(~_amount_ok(pl.col("Amount"))),
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
    return w.filter(_amount_ok(pl.col("Amount"))), bad


def check_close_dates(w: pl.DataFrame, *, won: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Close date check (docs/contract.md, Rules: "Credit and splits"): a won deal credits the
    periods of its CloseDate and converts at the rate of that day, so a won state without one is
    quarantined, whatever its currency (it used to vanish in the corporate currency and to be
    quarantined with an empty problem in another). An open state's empty CloseDate is kept (the
    projection reads it as having no close date). Returns the states kept and the quarantine rows."""
    if not won:
        return w, quarantine.empty(PARTITION)
    bad = quarantine.rows(
        w.filter(pl.col("CloseDate").is_null()),
        object="Opportunity",
        id_col="opportunity_id",
        field="CloseDate",
        problem=pl.format(
            "closed-won deal has no CloseDate as of {}{}, so the periods it credits are unknown",
            pl.col("as_of_date"),
            pl.when(pl.col("from_history").fill_null(False))
            .then(pl.lit(" (in its OpportunityHistory row)"))
            .otherwise(pl.lit("")),
        ),
        partition=PARTITION,
    )
    return w.filter(pl.col("CloseDate").is_not_null()), bad


def check_line_items(
    w: pl.DataFrame, line_items: pl.DataFrame, products: pl.DataFrame, quota_families: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Line item check (docs/contract.md, Rules: "Product families"): when some quota names a
    product family, an opportunity's family credit is the sum of its line items of that family,
    so each of its line items must name a Product2 (an unknown or empty Product2Id could be of any
    family: its amount used to vanish) and carry a finite TotalPrice, and a family's total must be
    zero or more. Otherwise the opportunity is quarantined. Without family quotas, line items are
    not read. Returns the states kept and the quarantine rows."""
    if not quota_families or line_items.is_empty() or w.is_empty():
        return w, quarantine.empty(PARTITION)
    spellings = family_spellings(pl.Series(quota_families, dtype=pl.String))
    items = line_items.filter(pl.col("OpportunityId").is_in(w["opportunity_id"].unique().to_list())).join(
        products.select(pl.col("Id").alias("Product2Id"), "Family", pl.lit(True).alias("_known")),
        on="Product2Id",
        how="left",
    )
    unknown_product = items.filter(pl.col("_known").is_null()).select(
        pl.col("OpportunityId").alias("opportunity_id"),
        pl.lit("Product2Id").alias("_field"),
        pl.format(
            "a line item names product {}, which is not a Product2, so the product family its "
            "TotalPrice belongs to is unknown",
            quarantine.shown(pl.col("Product2Id")),
        ).alias("_problem"),
    )
    bad_price = items.filter(~pl.col("TotalPrice").is_finite().fill_null(False)).select(
        pl.col("OpportunityId").alias("opportunity_id"),
        pl.lit("TotalPrice").alias("_field"),
        pl.format(
            "a line item of product {} has TotalPrice {}; it must be a number",
            quarantine.shown(pl.col("Product2Id")),
            quarantine.shown(pl.col("TotalPrice")),
        ).alias("_problem"),
    )
    negative_family = (
        items.filter(pl.col("_known").is_not_null() & pl.col("TotalPrice").is_finite().fill_null(False))
        .with_columns(canonical_family(pl.col("Family"), spellings).alias("_family"))
        .filter(pl.col("_family").is_not_null())
        .group_by("OpportunityId", "_family")
        .agg(pl.col("TotalPrice").sum().alias("_total"))
        .filter(pl.col("_total") < 0)
        .select(
            pl.col("OpportunityId").alias("opportunity_id"),
            pl.lit("TotalPrice").alias("_field"),
            pl.format(
                "line items of family {} total {}; a credit must be zero or more",
                pl.col("_family"),
                pl.col("_total"),
            ).alias("_problem"),
        )
    )
    problems = (
        pl.concat([unknown_product, bad_price, negative_family])
        .unique("opportunity_id", keep="first", maintain_order=True)
    )
    if problems.is_empty():
        return w, quarantine.empty(PARTITION)
    flagged = w.join(problems, on="opportunity_id")
    bad = quarantine.concat(
        [
            quarantine.rows(
                flagged.filter(pl.col("_field") == field),
                object="OpportunityLineItem",
                id_col="opportunity_id",
                field=field,
                problem=pl.col("_problem"),
                partition=PARTITION,
            )
            for field in ("Product2Id", "TotalPrice")
        ],
        partition=PARTITION,
    )
    return w.join(problems.select("opportunity_id"), on="opportunity_id", how="anti"), bad


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

    With revenue split rows (split type IsTotalValidated true) each SplitOwnerId gets its share
    of the deal as revenue credit; without them the OwnerId gets 100%. Revenue split percentages
    must total 100% within SPLIT_TOLERANCE_PCT points (:func:`split_total_ok`); within it they are
    credited in proportion, scaled to total exactly 100%, so that the revenue credits of a deal
    always add up to its amount (33.33 x 3 credits a third each). Overlay split rows
    (IsTotalValidated false) are overlay credit beside the revenue credit, as given.

    The opportunity is quarantined when a split row has an unknown or empty split type, a
    SplitPercentage that is empty, not finite or outside 0-100, when its revenue splits do not
    total 100%, or when the overlay rows of one owner total more than 100%.

    Returns (credited, kept states, quarantine rows); ``credited`` has one row per (as_of_date,
    opportunity_id, rep_id, credit_type) with ``split_percentage`` (the share credited) and
    ``_field``, the field that names the rep (OwnerId or SplitOwnerId).
    """
    split_rows = splits.join(
        split_types.select(pl.col("Id").alias("SplitTypeId"), "IsTotalValidated"),
        on="SplitTypeId",
        how="left",
    ).filter(pl.col("OpportunityId").is_in(w["opportunity_id"].unique().to_list()))
    unknown_type = split_rows.filter(pl.col("IsTotalValidated").is_null())
    pct = pl.col("SplitPercentage")
    out_of_range = split_rows.filter(
        pl.col("IsTotalValidated").is_not_null()
        & ~(pct.is_finite() & (pct >= 0) & (pct <= 100)).fill_null(False)
    )
    revenue_splits = split_rows.filter(pl.col("IsTotalValidated").fill_null(False))
    revenue_totals = revenue_splits.group_by("OpportunityId").agg(pct.sum().alias("_total"))
    bad_total = revenue_totals.filter(~split_total_ok(pl.col("_total")))
    overlay_over = (
        split_rows.filter(pl.col("IsTotalValidated").is_not_null() & ~pl.col("IsTotalValidated"))
        .group_by("OpportunityId", "SplitOwnerId")
        .agg(pct.sum().alias("_total"))
        .filter(pl.col("_total") > 100.0 + _FLOAT_SLACK_PCT)
    )

    def per_opportunity(frame: pl.DataFrame, *cols: str) -> pl.DataFrame:
        return frame.select(pl.col("OpportunityId").alias("opportunity_id"), *cols).unique(
            "opportunity_id", keep="first", maintain_order=True
        )

    problems = [
        (
            per_opportunity(unknown_type, "SplitTypeId"),
            "SplitTypeId",
            pl.when(pl.col("SplitTypeId").is_null())
            .then(pl.lit("a split row has no SplitTypeId"))
            .otherwise(pl.format("split type {} is not an OpportunitySplitType", pl.col("SplitTypeId"))),
        ),
        (
            per_opportunity(out_of_range, "SplitOwnerId", "SplitPercentage"),
            "SplitPercentage",
            pl.format(
                "the split row of owner {} has SplitPercentage {}; it must be between 0 and 100",
                quarantine.shown(pl.col("SplitOwnerId")),
                quarantine.shown(pl.col("SplitPercentage")),
            ),
        ),
        (
            per_opportunity(bad_total, "_total"),
            "SplitPercentage",
            pl.format("revenue split percentages total {}%, not 100%", pl.col("_total").round(4)),
        ),
        (
            per_opportunity(overlay_over, "SplitOwnerId", "_total"),
            "SplitPercentage",
            pl.format(
                "the overlay split rows of owner {} total {}%, more than 100%",
                quarantine.shown(pl.col("SplitOwnerId")),
                pl.col("_total").round(4),
            ),
        ),
    ]
    bad_parts, excluded = [], set()
    for frame, field, message in problems:
        frame = frame.filter(~pl.col("opportunity_id").is_in(list(excluded)))
        excluded |= set(frame["opportunity_id"].to_list())
        bad_parts.append(
            quarantine.rows(
                w.join(frame, on="opportunity_id"),
                object="OpportunitySplit",
                id_col="opportunity_id",
                field=field,
                problem=message,
                partition=PARTITION,
            )
        )
    bad = quarantine.concat(bad_parts, partition=PARTITION)
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
        split_rows.filter(pl.col("IsTotalValidated").is_not_null())
        .join(revenue_totals, on="OpportunityId", how="left")
        .select(
            pl.col("OpportunityId").alias("opportunity_id"),
            pl.col("SplitOwnerId").alias("rep_id"),
            pl.when(pl.col("IsTotalValidated"))
            .then(pct * 100.0 / pl.col("_total"))
            .otherwise(pct)
            .alias("split_percentage"),
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
    typed = (
        w.with_columns(match_key(pl.col("Type")).alias(TYPE_KEY))
        .join(type_map, on=TYPE_KEY, how="inner")
        .select("as_of_date", "opportunity_id", "quota_type")
    )
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
    family (Product2.Family, matched in any case and spelled as the quotas spell it:
    quota_types.canonical_family) also has a row with the sum of their TotalPrice."""
    whole = w.select(
        "as_of_date", "opportunity_id", pl.lit(None, pl.String).alias("product_family"), pl.col("Amount").alias("amount_local")
    )
    bases = [whole]
    if quota_families and not line_items.is_empty():
        spellings = family_spellings(pl.Series(quota_families, dtype=pl.String))
        family_totals = (
            line_items.join(
                products.select(pl.col("Id").alias("Product2Id"), "Family"), on="Product2Id", how="left"
            )
            .with_columns(canonical_family(pl.col("Family"), spellings).alias("Family"))
            .filter(pl.col("Family").is_not_null())
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

    The crediting rules apply in order, each in its own function: :func:`check_stages`,
    :func:`check_amounts`, :func:`check_close_dates`, :func:`check_line_items`,
    :func:`convert_currency` (at the rate in force on ``rate_date``, a column of ``states``),
    :func:`credited_reps`, :func:`check_credited_users`, :func:`quota_types_counted` and
    :func:`product_family_amounts`. ``won`` says whether the states are won deals (an empty
    amount is quarantined) or open ones (an empty amount counts as 0). Returns credit rows
    (without periods) and quarantine rows, both keyed by ``as_of_date``.
    """
    w = states.rename({"Id": "opportunity_id"})
    w, bad_stages = check_stages(w)
    w, bad_amounts = check_amounts(w, won=won)
    w, bad_close = check_close_dates(w, won=won)
    w, bad_lines = check_line_items(w, inputs.line_items, inputs.products, inputs.quota_families)
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
    bad = quarantine.concat(
        [bad_stages, bad_amounts, bad_close, bad_lines, bad_rates, bad_splits, bad_users], partition=PARTITION
    )
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


def split_total_mismatches(credits: pl.DataFrame) -> pl.DataFrame:
    """Groups (as-of date, opportunity, quota type, period, family) whose revenue credits do not add
    up to the deal's amount: an opportunity credited twice to one owner or a split that leaks.
    "Add up" is :func:`split_total_ok` of the credits as a percentage of the amount, the one
    tolerance the split quarantine applies too, so a deal whose splits were accepted can never
    fail here (and stop the day) over a rounding difference; an amount of 0 must be credited 0."""
    share = 100.0 * pl.col("credited_usd") / pl.col("amount_usd")
    balanced = pl.when(pl.col("amount_usd") == 0).then(pl.col("credited_usd").abs() <= 1e-9).otherwise(split_total_ok(share))
    return (
        credits.filter(pl.col("credit_type") == REVENUE)
        .group_by("as_of_date", "opportunity_id", "quota_type", "period_type", "period_start", "product_family")
        .agg(pl.col("credit_usd").sum().alias("credited_usd"), pl.col("amount_usd").first())
        .filter(~balanced.fill_null(False))
        .sort("as_of_date", "opportunity_id")
    )
