"""Daily asset: attainment of every rep, manager and the company as of each date."""

import dagster as dg
import polars as pl

from quota_platform.defs.attainment import checks
from quota_platform.defs.partitions import DAILY_PARTITION_COLUMN, run_dates
from quota_platform.defs.validation import SCHEMA_CHECK, Table, definition_metadata, publish
from quota_platform.lib import schemas
from quota_platform.lib.attainment.attainment import build_attainment, unmatched_credits
from quota_platform.resources import RulesResource

GROUP = "attainment"


def attainment_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    monthly_input = dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping())

    @dg.asset(
        name="attainment",
        group_name=GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": DAILY_PARTITION_COLUMN, **definition_metadata(schemas.ATTAINMENT)},
        kinds={"polars", "duckdb"},
        ins={"quota_snapshots": monthly_input, "org_hierarchy": monthly_input},
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset="attainment", blocking=True), *checks.SPECS],
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
            dates, snapshots=quota_snapshots, hierarchy=org_hierarchy, credits=credited_bookings, rules=rules.rules()
        )
        unmatched = unmatched_credits(dates, quota_snapshots, credited_bookings)
        by_level = dict(frame.group_by("level").len().iter_rows())
        table = Table(
            "attainment",
            frame,
            schemas.ATTAINMENT,
            metadata={
                "rep_rows": by_level.get("rep", 0),
                "manager_rows": by_level.get("manager", 0),
                "company_rows": by_level.get("company", 0),
                "credits_without_quota_usd": float(unmatched["closed_won"].sum() or 0.0),
            },
        )
        yield from publish(
            [table],
            blocking=[checks.rollups_equal_sum_of_reps(frame, org_hierarchy)],
            after=[checks.credits_without_quota(unmatched)],
        )

    return [attainment]
