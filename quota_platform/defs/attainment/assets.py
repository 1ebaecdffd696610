"""Daily asset: attainment of every rep, manager and the company as of each date."""


import dagster as dg
import polars as pl

from quota_platform.defs.partitions import DAILY_PARTITION_COLUMN, run_dates
from quota_platform.defs.validation import frame_check, schema_check
from quota_platform.lib import schemas
from quota_platform.lib.attainment.attainment import (
    build_attainment,
    unmatched_credits,
)
from quota_platform.lib.attainment.rollup import rollup_mismatches
from quota_platform.resources import RulesResource

GROUP = "attainment"


def attainment_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    monthly_input = dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping())

    @dg.asset(
        name="attainment",
        group_name=GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": DAILY_PARTITION_COLUMN},
        kinds={"polars", "duckdb"},
        ins={"quota_snapshots": monthly_input, "org_hierarchy": monthly_input},
        check_specs=[
            dg.AssetCheckSpec("schema", asset="attainment", blocking=True),
            dg.AssetCheckSpec(
                "rollups_equal_sum_of_reps",
                asset="attainment",
                blocking=True,
                description="Each manager row and the company row equal the sum of the rep rows below them.",
            ),
            dg.AssetCheckSpec(
                "credits_without_quota",
                asset="attainment",
                description="WARN when reps have revenue credit in a current period with no matching quota.",
            ),
        ],
    )
    def attainment(
        context: dg.AssetExecutionContext,
        rules: RulesResource,
        quota_snapshots: pl.DataFrame,
        org_hierarchy: pl.DataFrame,
        credited_bookings: pl.DataFrame,
    ):
        """Quota attainment as of each date for every rep with a quota in a period containing the
        date (fiscal month and quarter), every manager above them (sums of the rep rows below them
        in the snapshot month's tree) and the company: quota (effective), closed_won (revenue
        credit; overlay never counts), attainment_pct (null when the quota is 0),
        time_elapsed_pct, and pace against a straight line through the period."""
        dates = run_dates(context)
        frame = build_attainment(
            dates,
            snapshots=quota_snapshots,
            hierarchy=org_hierarchy,
            credits=credited_bookings,
            rules=rules.rules(),
        )
        unmatched = unmatched_credits(dates, quota_snapshots, credited_bookings)
        by_level = dict(frame.group_by("level").len().iter_rows())
        yield dg.Output(
            frame,
            metadata={
                "rows": frame.height,
                "rep_rows": by_level.get("rep", 0),
                "manager_rows": by_level.get("manager", 0),
                "company_rows": by_level.get("company", 0),
                "credits_without_quota_usd": float(unmatched["closed_won"].sum() or 0.0),
            },
        )
        yield schema_check(schemas.ATTAINMENT, frame, asset_key="attainment")
        yield frame_check(
            asset_key="attainment",
            check_name="rollups_equal_sum_of_reps",
            failures=rollup_mismatches(frame, org_hierarchy),
            description="manager or company rows differ from the sum of their reps",
        )
        yield frame_check(
            asset_key="attainment",
            check_name="credits_without_quota",
            failures=unmatched,
            description=(
                f"{unmatched.height} rep/period/type credit total(s) have no matching quota "
                f"(USD {float(unmatched['closed_won'].sum() or 0.0):,.2f}); they stay in credited_bookings"
            ),
            severity=dg.AssetCheckSeverity.WARN,
            extra={"credit_usd": float(unmatched["closed_won"].sum() or 0.0)},
        )

    return [attainment]
