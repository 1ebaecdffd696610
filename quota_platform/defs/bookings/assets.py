"""Daily assets: credited bookings as of each date, point in time."""


import dagster as dg
import polars as pl

from quota_platform.defs.partitions import DAILY_PARTITION_COLUMN, run_dates
from quota_platform.defs.validation import frame_check, schema_check
from quota_platform.lib import schemas
from quota_platform.lib.attainment.crediting import (
    REVENUE,
    CreditInputs,
    credit_bookings,
    split_total_mismatches,
    stage_flags,
    states_as_of,
)
from quota_platform.lib.core.contract import ContractError
from quota_platform.lib.core.currency import validate_rates
from quota_platform.lib.core.quota_types import org_quota_types
from quota_platform.resources import RulesResource

GROUP = "bookings"


def credit_inputs(
    rules: RulesResource,
    raw_user: pl.DataFrame,
    raw_forecasting_type: pl.DataFrame,
    raw_forecasting_quota: pl.DataFrame,
    raw_opportunity_split: pl.DataFrame,
    raw_opportunity_split_type: pl.DataFrame,
    raw_opportunity_line_item: pl.DataFrame,
    raw_product2: pl.DataFrame,
    raw_dated_conversion_rate: pl.DataFrame,
) -> CreditInputs:
    """The crediting inputs from the raw objects, shared by every asset that credits deals."""
    return CreditInputs(
        users=raw_user,
        splits=raw_opportunity_split,
        split_types=raw_opportunity_split_type,
        line_items=raw_opportunity_line_item,
        products=raw_product2,
        quota_types=org_quota_types(raw_forecasting_type),
        quota_families=raw_forecasting_quota["ProductFamily"].drop_nulls().unique().sort().to_list(),
        rates=raw_dated_conversion_rate,
        rules=rules.rules(),
    )


def booking_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        name="credited_bookings_asset",
        outs={
            "credited_bookings": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": DAILY_PARTITION_COLUMN},
                kinds={"polars", "duckdb"},
                description=(
                    "Closed-won credit as known at the end of each as-of date (point in time from "
                    "OpportunityHistory): one row per opportunity, credited rep, quota type, fiscal "
                    "period (month and quarter of the close date) and product family (null = whole "
                    "deal), revenue or overlay, in USD at the rate in force on the close date."
                ),
            ),
            "credited_bookings_quarantine": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": DAILY_PARTITION_COLUMN},
                kinds={"polars", "duckdb"},
                description=(
                    "Won opportunities set aside as of each date because they break a rule (empty or "
                    "negative amount, credited user not a User, no conversion rate, revenue splits "
                    "not totalling 100%, unknown split type): object, record Id, field, problem."
                ),
            ),
        },
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec("schema", asset="credited_bookings", blocking=True),
            dg.AssetCheckSpec(
                "revenue_credits_sum_to_amount",
                asset="credited_bookings",
                blocking=True,
                description="The revenue credits of each opportunity, period, type and family add up to its amount.",
            ),
            dg.AssetCheckSpec("schema", asset="credited_bookings_quarantine", blocking=True),
            dg.AssetCheckSpec(
                "no_quarantined_opportunities",
                asset="credited_bookings_quarantine",
                description="WARN while any won opportunity is quarantined: its credit is in no total.",
            ),
        ],
    )
    def credited_bookings_asset(
        context: dg.AssetExecutionContext,
        rules: RulesResource,
        raw_user: pl.DataFrame,
        raw_forecasting_type: pl.DataFrame,
        raw_forecasting_quota: pl.DataFrame,
        raw_opportunity: pl.DataFrame,
        raw_opportunity_history: pl.DataFrame,
        raw_opportunity_stage: pl.DataFrame,
        raw_opportunity_split: pl.DataFrame,
        raw_opportunity_split_type: pl.DataFrame,
        raw_opportunity_line_item: pl.DataFrame,
        raw_product2: pl.DataFrame,
        raw_dated_conversion_rate: pl.DataFrame,
    ):
        try:
            validate_rates(raw_dated_conversion_rate)
        except ContractError as exc:
            raise dg.Failure(description=str(exc)) from exc
        dates = run_dates(context)
        context.log.info(f"crediting {len(dates)} as-of date(s) {dates[0]} .. {dates[-1]}")
        won = states_as_of(
            raw_opportunity,
            raw_opportunity_history,
            stage_flags(raw_opportunity_stage, raw_opportunity),
            dates,
            only_won=True,
        )
        credits, bad = credit_bookings(
            won,
            credit_inputs(
                rules, raw_user, raw_forecasting_type, raw_forecasting_quota, raw_opportunity_split,
                raw_opportunity_split_type, raw_opportunity_line_item, raw_product2, raw_dated_conversion_rate,
            ),
        )
        distinct_bad = bad.select("object", "record_id").unique().height
        if distinct_bad:
            context.log.warning(
                f"{distinct_bad} opportunit(y/ies) quarantined; see credited_bookings_quarantine"
            )
        revenue = credits.filter(pl.col("credit_type") == REVENUE)
        yield dg.Output(
            credits,
            output_name="credited_bookings",
            metadata={
                "rows": credits.height,
                "as_of_dates": len(dates),
                "won_opportunities": credits["opportunity_id"].n_unique(),
                "opportunities_without_history": int(
                    won.filter(~pl.col("from_history"))["Id"].n_unique()
                ) if raw_opportunity_history.height else 0,
                "revenue_credit_rows": revenue.height,
            },
        )
        yield dg.Output(
            bad,
            output_name="credited_bookings_quarantine",
            metadata={"rows": bad.height, "quarantined_records": distinct_bad},
        )
        yield schema_check(schemas.CREDITED_BOOKINGS, credits, asset_key="credited_bookings")
        yield frame_check(
            asset_key="credited_bookings",
            check_name="revenue_credits_sum_to_amount",
            failures=split_total_mismatches(credits),
            description="revenue credits of some opportunities do not add up to their amount",
        )
        yield schema_check(
            schemas.quarantine_schema(DAILY_PARTITION_COLUMN), bad, asset_key="credited_bookings_quarantine"
        )
        yield frame_check(
            asset_key="credited_bookings_quarantine",
            check_name="no_quarantined_opportunities",
            failures=bad.unique(["object", "record_id", "field"]),
            description=f"{distinct_bad} opportunity record(s) quarantined",
            severity=dg.AssetCheckSeverity.WARN,
        )

    return [credited_bookings_asset]
