"""pandera.polars schemas for every asset output. The blocking asset checks validate each frame
against its schema; a failure stops the assets downstream and shows the failure cases in the UI."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from quota_platform.lib.attainment.attainment import ATTAINMENT_SCHEMA, PACE_STATUSES
from quota_platform.lib.attainment.crediting import CREDIT_SCHEMA, OVERLAY, REVENUE
from quota_platform.lib.attainment.pipeline import PIPELINE_SCHEMA
from quota_platform.lib.attainment.quotas import SNAPSHOT_SCHEMA
from quota_platform.lib.attainment.rollup import LEVELS
from quota_platform.lib.backtest.scoring import ACCURACY_SCHEMA, METHODS, SCORED_CHECKPOINTS
from quota_platform.lib.core import quarantine
from quota_platform.lib.core.calendar import PERIOD_TYPES
from quota_platform.lib.core.contract import OBJECTS
from quota_platform.lib.core.quota_types import DEAL_CLASSES, QUOTA_TYPE_BY_DEVELOPER_NAME
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.model_fit import POSTERIOR_SCHEMA
from quota_platform.lib.forecast.projection import PROJECTION_SCHEMA
from quota_platform.lib.forecast.training import BUCKETS

QUOTA_TYPES = list(QUOTA_TYPE_BY_DEVELOPER_NAME.values())
# the contract's tier names, whatever bounds the settings give them
STATUSES = [name for _, name in Rules().status_tiers]


def raw_object_schema(object_name: str) -> pa.DataFrameSchema:
    """The typed frame a source produces for one object: contract columns and types; required Ids
    present; the object's Id unique."""
    spec = OBJECTS[object_name]
    columns = {
        f.name: pa.Column(
            spec.dtype_schema()[f.name],
            nullable=not (f.name == spec.id_field),
            unique=f.name == spec.id_field,
        )
        for f in spec.fields
    }
    return pa.DataFrameSchema(columns, strict=True, name=f"raw {object_name}")


def _cols(schema: dict[str, pl.DataType], overrides: dict[str, pa.Column]) -> dict[str, pa.Column]:
    return {name: overrides.get(name, pa.Column(dtype, nullable=True)) for name, dtype in schema.items()}


def _required(dtype: pl.DataType, *checks: pa.Check) -> pa.Column:
    return pa.Column(dtype, checks=list(checks), nullable=False)


NON_NEGATIVE = pa.Check.ge(0)

QUOTA_SNAPSHOTS = pa.DataFrameSchema(
    _cols(
        SNAPSHOT_SCHEMA,
        {
            "snapshot_month": _required(pl.Date()),
            "rep_id": _required(pl.String()),
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "period_start": _required(pl.Date()),
            "period_end": _required(pl.Date()),
            "quota_type": _required(pl.String(), pa.Check.isin(QUOTA_TYPES)),
            "quota_id": _required(pl.String()),
            "conversion_rate": _required(pl.Float64(), pa.Check.gt(0)),
            "full_quota": _required(pl.Float64(), NON_NEGATIVE),
            "ramp_factor": _required(pl.Float64(), pa.Check.in_range(0, 1)),
            "effective_quota": _required(pl.Float64(), NON_NEGATIVE),
        },
    ),
    strict=True,
    unique=["snapshot_month", "rep_id", "period_type", "period_start", "quota_type", "product_family"],
    name="quota_snapshots",
)

ORG_HIERARCHY = pa.DataFrameSchema(
    {
        "snapshot_month": _required(pl.Date()),
        "user_id": _required(pl.String()),
        "user_name": pa.Column(pl.String(), nullable=True),
        "manager_id": pa.Column(pl.String(), nullable=True),
        "is_active": pa.Column(pl.Boolean(), nullable=True),
        "ancestor_id": _required(pl.String()),
        "ancestor_name": pa.Column(pl.String(), nullable=True),
        "distance": _required(pl.Int32(), NON_NEGATIVE),
    },
    strict=True,
    unique=["snapshot_month", "user_id", "ancestor_id"],
    name="org_hierarchy",
)

CREDITED_BOOKINGS = pa.DataFrameSchema(
    _cols(
        CREDIT_SCHEMA,
        {
            "as_of_date": _required(pl.Date()),
            "opportunity_id": _required(pl.String()),
            "rep_id": _required(pl.String()),
            "quota_type": _required(pl.String(), pa.Check.isin(QUOTA_TYPES)),
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "period_start": _required(pl.Date()),
            "credit_type": _required(pl.String(), pa.Check.isin([REVENUE, OVERLAY])),
            "split_percentage": _required(pl.Float64(), pa.Check.in_range(0, 100)),
            "close_date": _required(pl.Date()),
            "conversion_rate": _required(pl.Float64(), pa.Check.gt(0)),
            "amount_local": _required(pl.Float64()),
            "amount_usd": _required(pl.Float64()),
            "credit_usd": _required(pl.Float64()),
        },
    ),
    strict=True,
    unique=[
        "as_of_date", "opportunity_id", "rep_id", "quota_type", "period_type", "period_start",
        "product_family", "credit_type",
    ],
    name="credited_bookings",
)

ATTAINMENT = pa.DataFrameSchema(
    _cols(
        ATTAINMENT_SCHEMA,
        {
            "as_of_date": _required(pl.Date()),
            "level": _required(pl.String(), pa.Check.isin(list(LEVELS))),
            "entity_id": _required(pl.String()),
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "period_start": _required(pl.Date()),
            "period_end": _required(pl.Date()),
            "quota_type": _required(pl.String(), pa.Check.isin(QUOTA_TYPES)),
            "quota": _required(pl.Float64(), NON_NEGATIVE),
            "closed_won": _required(pl.Float64()),
            "time_elapsed_pct": _required(pl.Float64(), pa.Check.in_range(0, 100)),
            "pace_status": _required(pl.String(), pa.Check.isin(list(PACE_STATUSES))),
            "rep_count": _required(pl.Int64(), pa.Check.ge(1)),
        },
    ),
    strict=True,
    unique=["as_of_date", "level", "entity_id", "period_type", "period_start", "quota_type", "product_family"],
    name="attainment",
)


def quarantine_schema(partition_column: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            partition_column: _required(pl.Date()),
            **{c: _required(pl.String()) for c in quarantine.COLUMNS},
        },
        strict=True,
        name="quarantine",
    )


OPEN_PIPELINE = pa.DataFrameSchema(
    _cols(
        PIPELINE_SCHEMA,
        {
            "as_of_date": _required(pl.Date()),
            "opportunity_id": _required(pl.String()),
            "rep_id": _required(pl.String()),
            "quota_type": _required(pl.String(), pa.Check.isin(QUOTA_TYPES)),
            "credit_type": _required(pl.String(), pa.Check.isin([REVENUE, OVERLAY])),
            "stage_name": _required(pl.String()),
            "pushes": _required(pl.Int32(), NON_NEGATIVE),
            "days_in_stage": _required(pl.Int32(), NON_NEGATIVE),
            "amount_usd": _required(pl.Float64(), NON_NEGATIVE),
            "credit_usd": _required(pl.Float64(), NON_NEGATIVE),
        },
    ),
    strict=True,
    unique=["as_of_date", "opportunity_id", "rep_id", "quota_type", "product_family", "credit_type"],
    name="open_pipeline",
)

WIN_RATE_POSTERIORS = pa.DataFrameSchema(
    _cols(
        POSTERIOR_SCHEMA,
        {
            "snapshot_month": _required(pl.Date()),
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "rep_id": _required(pl.String()),
            "stage": _required(pl.String()),
            "deal_class": _required(pl.String(), pa.Check.isin(list(DEAL_CLASSES))),
            "deal_size": _required(pl.String(), pa.Check.isin(["standard", "large"])),
            "close_date_bucket": _required(pl.String(), pa.Check.isin(list(BUCKETS))),
            "win_rate_mean": _required(pl.Float64(), pa.Check.in_range(0, 1)),
            "win_rate_p10": _required(pl.Float64(), pa.Check.in_range(0, 1)),
            "win_rate_p90": _required(pl.Float64(), pa.Check.in_range(0, 1)),
            "n_observed": _required(pl.Float64(), NON_NEGATIVE),
            "pooled_from": _required(pl.String(), pa.Check.isin(["rep", "team", "company"])),
        },
    ),
    strict=True,
    unique=["snapshot_month", "period_type", "rep_id", "stage", "deal_class", "deal_size", "close_date_bucket"],
    name="win_rate_posteriors",
)

PROJECTIONS = pa.DataFrameSchema(
    _cols(
        PROJECTION_SCHEMA,
        {
            "as_of_date": _required(pl.Date()),
            "level": _required(pl.String(), pa.Check.isin(list(LEVELS))),
            "entity_id": _required(pl.String()),
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "period_start": _required(pl.Date()),
            "quota_type": _required(pl.String(), pa.Check.isin(QUOTA_TYPES)),
            "quota": _required(pl.Float64(), NON_NEGATIVE),
            "closed_won": _required(pl.Float64()),
            "projected_p10": _required(pl.Float64()),
            "projected_p50": _required(pl.Float64()),
            "projected_p90": _required(pl.Float64()),
            "prob_hit_quota": pa.Column(pl.Float64(), pa.Check.in_range(0, 1), nullable=True),
            # null with a quota of 0: no percentage, so no tier
            "status": pa.Column(pl.String(), pa.Check.isin(STATUSES), nullable=True),
        },
    ),
    strict=True,
    unique=["as_of_date", "level", "entity_id", "period_type", "period_start", "quota_type", "product_family"],
    checks=[
        pa.Check(lambda data: data.lazyframe.select(
            (pl.col("projected_p10") <= pl.col("projected_p50") + 1e-6) & (pl.col("projected_p50") <= pl.col("projected_p90") + 1e-6)
            & (pl.col("projected_p10") >= pl.col("closed_won") - 1e-6)
        ), name="p10 <= p50 <= p90, and never below closed_won"),
    ],
    name="projections",
)


PROJECTION_ACCURACY = pa.DataFrameSchema(
    _cols(
        ACCURACY_SCHEMA,
        {
            "period_type": _required(pl.String(), pa.Check.isin(list(PERIOD_TYPES))),
            "period_start": _required(pl.Date()),
            "checkpoint_pct": _required(pl.Int64(), pa.Check.isin([round(100 * f) for f in SCORED_CHECKPOINTS])),
            "level": _required(pl.String(), pa.Check.isin(list(LEVELS))),
            "method": _required(pl.String(), pa.Check.isin(list(METHODS))),
            "n": _required(pl.Int64(), pa.Check.ge(1)),
            "coverage_p10_p90": pa.Column(pl.Float64(), pa.Check.in_range(0, 1), nullable=True),
            "pit_coverage_p10_p90": pa.Column(pl.Float64(), pa.Check.in_range(-1e-9, 1), nullable=True),
            "pit_below_p10": pa.Column(pl.Float64(), pa.Check.in_range(0, 1), nullable=True),
            "pit_above_p90": pa.Column(pl.Float64(), pa.Check.in_range(0, 1), nullable=True),
        },
    ),
    strict=True,
    unique=["period_type", "period_start", "checkpoint_pct", "level", "method"],
    name="projection_accuracy",
)


# --- personal data ----------------------------------------------------------------------------------
# Tables and columns allowed to hold personal data (User.Email). raw_user keeps the contract's
# raw object whole: alert routing (Slack lookup by e-mail) and entitlements read it there. Any
# other table that needs an e-mail adds itself here deliberately (quota_platform_tests/
# test_security.py fails on an e-mail anywhere else; docs/decisions.md, "Security").
PERSONAL_DATA_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_user": ("Email",),
    "entitlements": ("viewer_email",),  # the contract's row-level security table (viewer x entity)
}
