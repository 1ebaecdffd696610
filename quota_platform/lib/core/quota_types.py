"""Quota types (docs/contract.md, Rules: "Quota type"): which ForecastingType a quota belongs to,
and which opportunity Types count toward it."""

from __future__ import annotations

import polars as pl

# ForecastingType.DeveloperName -> the output name used in every table.
QUOTA_TYPE_BY_DEVELOPER_NAME = {
    "NewBusiness": "new_business",
    "Expansion": "expansion",
    "Renewal": "renewal",
    "OpportunityRevenue": "bookings",
}

# Opportunity.Type values each quota type counts; "bookings" counts every Type.
OPPORTUNITY_TYPES = {
    "new_business": ("New Business",),
    "expansion": ("Existing Business", "Expansion", "Upsell"),
    "renewal": ("Renewal",),
}
EVERY_TYPE = "bookings"


def quota_type_table(forecasting_types: pl.DataFrame) -> pl.DataFrame:
    """ForecastingType Id -> quota_type (null for a DeveloperName the platform does not count)."""
    return forecasting_types.select(
        pl.col("Id").alias("ForecastingTypeId"),
        pl.col("DeveloperName"),
        pl.col("DeveloperName")
        .replace_strict(QUOTA_TYPE_BY_DEVELOPER_NAME, default=None, return_dtype=pl.String)
        .alias("quota_type"),
    )


def org_quota_types(forecasting_types: pl.DataFrame) -> list[str]:
    """The quota types the org has, in a stable order."""
    present = set(quota_type_table(forecasting_types)["quota_type"].drop_nulls().to_list())
    return [q for q in QUOTA_TYPE_BY_DEVELOPER_NAME.values() if q in present]


def match_key(value: pl.Expr) -> pl.Expr:
    """A picklist value (Opportunity.Type, a stage name, a product family) as it is matched:
    trimmed and case-folded. Salesforce keeps picklist values unique regardless of case, so "New
    business" and "New Business " are the same value typed twice, not two values; matching them
    exactly lost "New business" its new-business credit without a word (docs/decisions.md,
    "Picklist values")."""
    return value.cast(pl.String).str.strip_chars().str.to_lowercase()


TYPE_KEY = "_type_key"


def opportunity_type_map(quota_types: list[str]) -> pl.DataFrame:
    """(TYPE_KEY, quota_type) pairs for the org's quota types, TYPE_KEY being the
    :func:`match_key` of an opportunity Type; ``bookings`` is handled by the caller because it
    matches every Type, null included."""
    pairs = [(t.lower(), q) for q in quota_types if q != EVERY_TYPE for t in OPPORTUNITY_TYPES[q]]
    return pl.DataFrame(pairs, schema={TYPE_KEY: pl.String, "quota_type": pl.String}, orient="row")


def family_spellings(families: pl.Series) -> dict[str, str]:
    """match_key -> the one spelling of each product family the quotas name: the first in sort
    order of its trimmed spellings (so it depends only on the set of spellings, and every asset
    that reads the quotas finds the same one). Quota snapshots and credits both name a family this
    way, so quotas of "Software" and "software " are one family and a line item of a Product2 of
    Family "SOFTWARE" counts toward it."""
    frame = (
        pl.DataFrame({"spelling": families.cast(pl.String)})
        .drop_nulls()
        .with_columns(pl.col("spelling").str.strip_chars())
        .filter(pl.col("spelling") != "")
    )
    if frame.is_empty():
        return {}
    first = frame.group_by(match_key(pl.col("spelling")).alias("key")).agg(pl.col("spelling").min())
    return dict(first.iter_rows())


def canonical_family(family: pl.Expr, spellings: dict[str, str]) -> pl.Expr:
    """A ProductFamily (of a quota or a Product2) as the quotas spell it: the spelling of its
    :func:`match_key` in ``spellings``; null for a null or blank one, and for a family no quota
    names (a quota family always has a spelling, since ``spellings`` is made from them)."""
    return match_key(family).replace_strict(spellings, default=None, return_dtype=pl.String)


# The class of a deal for the win-rate and new-deal models: the quota type its Type counts toward,
# or "other" (a null Type, or one no quota type names). New business, expansion and renewal deals
# convert at very different rates; pooling them makes a projection wrong whenever the mix of types
# in the pipeline shifts. "bookings" is not a class: it counts every Type.
OTHER_DEAL_CLASS = "other"
DEAL_CLASSES = (*OPPORTUNITY_TYPES, OTHER_DEAL_CLASS)


def deal_class(opportunity_type: pl.Expr) -> pl.Expr:
    """The deal class of an Opportunity.Type expression (one of DEAL_CLASSES, never null)."""
    mapping = {t.lower(): q for q, types in OPPORTUNITY_TYPES.items() for t in types}
    return match_key(opportunity_type).replace_strict(
        mapping, default=OTHER_DEAL_CLASS, return_dtype=pl.String
    ).fill_null(OTHER_DEAL_CLASS)
