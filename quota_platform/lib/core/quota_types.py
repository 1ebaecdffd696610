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


def opportunity_type_map(quota_types: list[str]) -> pl.DataFrame:
    """(opportunity Type, quota_type) pairs for the org's quota types; ``bookings`` is handled by
    the caller because it matches every Type, null included."""
    pairs = [(t, q) for q in quota_types if q != EVERY_TYPE for t in OPPORTUNITY_TYPES[q]]
    return pl.DataFrame(pairs, schema={"Type": pl.String, "quota_type": pl.String}, orient="row")


# The class of a deal for the win-rate and new-deal models: the quota type its Type counts toward,
# or "other" (a null Type, or one no quota type names). New business, expansion and renewal deals
# convert at very different rates; pooling them makes a projection wrong whenever the mix of types
# in the pipeline shifts. "bookings" is not a class: it counts every Type.
OTHER_DEAL_CLASS = "other"
DEAL_CLASSES = (*OPPORTUNITY_TYPES, OTHER_DEAL_CLASS)


def deal_class(opportunity_type: pl.Expr) -> pl.Expr:
    """The deal class of an Opportunity.Type expression (one of DEAL_CLASSES, never null)."""
    mapping = {t: q for q, types in OPPORTUNITY_TYPES.items() for t in types}
    return opportunity_type.replace_strict(mapping, default=OTHER_DEAL_CLASS, return_dtype=pl.String).fill_null(OTHER_DEAL_CLASS)
