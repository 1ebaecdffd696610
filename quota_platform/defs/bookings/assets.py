"""Daily assets: credited bookings as of each date, point in time."""

import dagster as dg
import polars as pl

from quota_platform.defs.bookings import checks
from quota_platform.defs.bookings.inputs import CREDIT_OBJECTS, credit_inputs
from quota_platform.defs.partitions import DAILY_PARTITION_COLUMN, run_dates
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
from quota_platform.lib.attainment.crediting import (
    REVENUE,
    credit_bookings,
    stage_flags,
    states_as_of,
)
from quota_platform.lib.core.contract import ContractError
from quota_platform.lib.core.currency import validate_rates
from quota_platform.resources import RulesResource

GROUP = "bookings"


def booking_assets(daily: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        name="credited_bookings_asset",
        outs={
            "credited_bookings": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": DAILY_PARTITION_COLUMN, **definition_metadata(schemas.CREDITED_BOOKINGS)},
                kinds={"polars", "duckdb"},
                description=(
                    "Closed-won credit as known at the end of each as-of date (point in time from "
                    "OpportunityHistory): one row per opportunity, credited rep, quota type, fiscal "
                    "period (month and quarter of the close date) and product family (null = whole "
                    "deal), revenue or overlay, in USD at the rate in force on the close date."
                ),
            ),
            "credited_bookings_quarantine": quarantine_out(
                GROUP,
                DAILY_PARTITION_COLUMN,
                "Won opportunities set aside as of each date because they break a rule (empty, "
                "negative or non-finite amount, no close date, a stage known nowhere, credited user "
                "not a User, no conversion rate, split rows outside 0-100% or revenue splits not "
                "totalling 100%, unknown split type, line items of an unknown product; "
                "docs/bad_input.md).",
            ),
        },
        ins={"raw_opportunity": dg.AssetIn(), "raw_opportunity_history": dg.AssetIn(), "raw_opportunity_stage": dg.AssetIn(), **CREDIT_OBJECTS},
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="credited_bookings", blocking=True),
            *checks.SPECS,
            *quarantine_check_specs(
                "credited_bookings_quarantine",
                "no_quarantined_opportunities",
                "WARN while any won opportunity is quarantined: its credit is in no total.",
            ),
        ],
    )
    def credited_bookings_asset(context: dg.AssetExecutionContext, rules: RulesResource, **raw: pl.DataFrame):
        try:
            validate_rates(raw["raw_dated_conversion_rate"])
        except ContractError as exc:
            raise dg.Failure(description=str(exc)) from exc
        dates = run_dates(context)
        context.log.info(f"crediting {len(dates)} as-of date(s) {dates[0]} .. {dates[-1]}")
        opportunities, history = raw["raw_opportunity"], raw["raw_opportunity_history"]
        won = states_as_of(
            opportunities, history, stage_flags(raw["raw_opportunity_stage"], opportunities), dates,
            only_won=True, keep_unknown_stages=True,
        )
        credits, bad = credit_bookings(won, credit_inputs(rules, raw))
        quarantine = Quarantine(
            "credited_bookings_quarantine", "no_quarantined_opportunities", "won opportunity", bad, DAILY_PARTITION_COLUMN
        )
        bookings = Table(
            "credited_bookings",
            credits,
            schemas.CREDITED_BOOKINGS,
            metadata={
                "as_of_dates": len(dates),
                "won_opportunities": credits["opportunity_id"].n_unique(),
                "opportunities_without_history": int(won.filter(~pl.col("from_history"))["Id"].n_unique())
                if history.height
                else 0,
                "revenue_credit_rows": credits.filter(pl.col("credit_type") == REVENUE).height,
            },
            multi=True,
        )
        yield from publish(
            [bookings, quarantine.table()],
            blocking=[checks.revenue_credits_sum_to_amount(credits)],
            after=[quarantine.warn(context)],
        )

    return [credited_bookings_asset]
