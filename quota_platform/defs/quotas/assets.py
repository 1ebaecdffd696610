"""Monthly assets: the org hierarchy and the quota snapshot, as captured for each snapshot month."""

import dagster as dg
import polars as pl

from quota_platform.defs.partitions import MONTHLY_PARTITION_COLUMN, run_months
from quota_platform.defs.validation import (
    SCHEMA_CHECK,
    Quarantine,
    Table,
    definition_metadata,
    publish,
    quarantine_check_specs,
    quarantine_out,
)
from quota_platform.lib import schemas
from quota_platform.lib.attainment.hierarchy import build_org_hierarchy
from quota_platform.lib.attainment.quotas import build_quota_snapshots
from quota_platform.lib.core.contract import ContractError
from quota_platform.lib.core.currency import validate_rates
from quota_platform.resources import RulesResource

GROUP = "quotas"


def quota_assets(monthly: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="org_hierarchy",
        group_name=GROUP,
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": MONTHLY_PARTITION_COLUMN, **definition_metadata(schemas.ORG_HIERARCHY)},
        kinds={"polars", "duckdb"},
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset="org_hierarchy", blocking=True)],
    )
    def org_hierarchy(context: dg.AssetExecutionContext, raw_user: pl.DataFrame):
        """The ManagerId tree as captured in each snapshot month, as a closure table: one row per
        user and each of their managers up to the top (distance 1 = direct manager), and the user
        itself at distance 0. Manager roll-ups join rep rows to it. A ManagerId cycle or a manager
        who is not a User stops the run with the users named."""
        try:
            frame = build_org_hierarchy(run_months(context), raw_user)
        except ContractError as exc:
            raise dg.Failure(description=str(exc)) from exc
        yield from publish([Table("org_hierarchy", frame, schemas.ORG_HIERARCHY, metadata={"users": raw_user.height})])

    @dg.multi_asset(
        name="quota_snapshots_asset",
        outs={
            "quota_snapshots": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": MONTHLY_PARTITION_COLUMN, **definition_metadata(schemas.QUOTA_SNAPSHOTS)},
                kinds={"polars", "duckdb"},
                description=(
                    "Each rep's quota for every month and quarter overlapping the snapshot month: "
                    "full_quota in USD (converted at the period start; day-weighted across "
                    "mid-period changes from ForecastingQuotaHistory), the new-hire ramp factor and "
                    "effective_quota = full_quota x ramp_factor; manager_id as captured."
                ),
            ),
            "quota_snapshots_quarantine": quarantine_out(
                GROUP,
                MONTHLY_PARTITION_COLUMN,
                "Quotas set aside because they break a rule (unknown owner, unsupported forecasting "
                "type or period, no conversion rate, negative or empty amount, duplicates).",
            ),
        },
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="quota_snapshots", blocking=True),
            *quarantine_check_specs(
                "quota_snapshots_quarantine",
                "no_quarantined_quotas",
                "WARN while any quota is quarantined: those reps have no attainment row.",
            ),
        ],
    )
    def quota_snapshots_asset(
        context: dg.AssetExecutionContext,
        rules: RulesResource,
        raw_user: pl.DataFrame,
        raw_forecasting_type: pl.DataFrame,
        raw_forecasting_quota: pl.DataFrame,
        raw_period: pl.DataFrame,
        raw_forecasting_quota_history: pl.DataFrame,
        raw_dated_conversion_rate: pl.DataFrame,
    ):
        try:
            validate_rates(raw_dated_conversion_rate)
        except ContractError as exc:
            raise dg.Failure(description=str(exc)) from exc
        snap, bad = build_quota_snapshots(
            run_months(context),
            users=raw_user,
            forecasting_types=raw_forecasting_type,
            quotas=raw_forecasting_quota,
            periods=raw_period,
            quota_history=raw_forecasting_quota_history,
            rates=raw_dated_conversion_rate,
            rules=rules.rules(),
        )
        quarantine = Quarantine("quota_snapshots_quarantine", "no_quarantined_quotas", "quota", bad, MONTHLY_PARTITION_COLUMN)
        snapshots = Table(
            "quota_snapshots",
            snap,
            schemas.QUOTA_SNAPSHOTS,
            metadata={
                "reps": snap["rep_id"].n_unique(),
                "effective_quota_usd": float(snap["effective_quota"].sum() or 0.0),
            },
            multi=True,
        )
        yield from publish([snapshots, quarantine.table()], after=[quarantine.warn(context)])

    return [org_hierarchy, quota_snapshots_asset]
