"""Projection assets: the open pipeline as of each day, the monthly win-rate fit, and period-end
projections with honest ranges for every attainment row."""

import dagster as dg
import polars as pl

from quota_platform.defs.bookings.inputs import CREDIT_OBJECTS, credit_inputs
from quota_platform.defs.forecast import checks
from quota_platform.defs.partitions import (
    DAILY_PARTITION_COLUMN,
    MONTHLY_PARTITION_COLUMN,
    month_key,
    run_dates,
    run_months,
)
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
from quota_platform.lib.attainment.crediting import stage_flags
from quota_platform.lib.attainment.pipeline import open_pipeline
from quota_platform.lib.forecast.model_fit import (
    fit_diagnostics,
    fit_projection_model,
    month_roster,
)
from quota_platform.lib.forecast.projection import MODEL_FORMAT, project
from quota_platform.resources import ModelSettings, RulesResource

GROUP = "projections"
# code_version of win_rate_posteriors_asset (win_rate_posteriors, projection_model): bump the
# leading number when what the fit produces means something else (model, priors, training data);
# the stored model's format is part of it, so a format change shows every fitted month as stale.
WIN_RATE_FIT_CODE_VERSION = f"1.format-{MODEL_FORMAT}"
# code_version of projections: bump when the same model and inputs would project differently.
PROJECTIONS_CODE_VERSION = "1"


def projection_assets(daily: dg.PartitionsDefinition, monthly: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    monthly_input = dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping())

    @dg.multi_asset(
        name="open_pipeline_asset",
        outs={
            "open_pipeline": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": DAILY_PARTITION_COLUMN, **definition_metadata(schemas.OPEN_PIPELINE)},
                kinds={"polars", "duckdb"},
                description=(
                    "Every opportunity open at the end of each as-of date, as it stood then (stage, "
                    "amount, close date, close-date pushes so far, days in stage, from "
                    "OpportunityHistory), credited to reps like bookings (splits, overlay, quota "
                    "types, product families), in USD at the rate in force on the as-of date."
                ),
            ),
            "open_pipeline_quarantine": quarantine_out(
                GROUP,
                DAILY_PARTITION_COLUMN,
                "Open opportunities set aside as of each date because they break a rule (negative "
                "amount, credited user not a User, no conversion rate, revenue splits not totalling "
                "100%, unknown split type).",
            ),
        },
        ins={"raw_opportunity": dg.AssetIn(), "raw_opportunity_history": dg.AssetIn(), "raw_opportunity_stage": dg.AssetIn(), **CREDIT_OBJECTS},
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="open_pipeline", blocking=True),
            *quarantine_check_specs(
                "open_pipeline_quarantine",
                "no_quarantined_opportunities",
                "WARN while any open opportunity is quarantined: it is in no projection.",
            ),
        ],
    )
    def open_pipeline_asset(context: dg.AssetExecutionContext, rules: RulesResource, **raw: pl.DataFrame):
        dates = run_dates(context)
        rows, bad = open_pipeline(
            raw["raw_opportunity"],
            raw["raw_opportunity_history"],
            stage_flags(raw["raw_opportunity_stage"], raw["raw_opportunity"]),
            dates,
            credit_inputs(rules, raw),
        )
        quarantine = Quarantine(
            "open_pipeline_quarantine", "no_quarantined_opportunities", "open opportunity", bad, DAILY_PARTITION_COLUMN
        )
        pipeline = Table(
            "open_pipeline",
            rows,
            schemas.OPEN_PIPELINE,
            metadata={"open_opportunities": rows["opportunity_id"].n_unique()},
            multi=True,
        )
        yield from publish([pipeline, quarantine.table()], after=[quarantine.warn(context)])

    @dg.multi_asset(
        name="win_rate_posteriors_asset",
        code_version=WIN_RATE_FIT_CODE_VERSION,
        outs={
            "win_rate_posteriors": dg.AssetOut(
                group_name=GROUP,
                metadata={"partition_expr": MONTHLY_PARTITION_COLUMN, **definition_metadata(schemas.WIN_RATE_POSTERIORS)},
                kinds={"pymc", "duckdb"},
                description=(
                    "Posterior probability that an open deal is won within the current period, per "
                    "rep x stage x close-date bucket (in_period, overdue, later) and period type, "
                    "from a hierarchical Bayesian model (rep -> team -> company, non-centred) fitted "
                    "with PyMC/nutpie on the trailing window of periods that ended before the month "
                    "began. n_observed: weighted training trials; pooled_from: where the estimate "
                    "leans (rep, team or company)."
                ),
            ),
            "projection_model": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="model_store",
                kinds={"pymc"},
                description=(
                    "The month's fitted projection model (posterior draws, deals-not-yet-created "
                    "model, pacing curve, seasonal adjustment), stored per month as JSON, Parquet and .npy "
                    "parts (docs/model_store.md) for the daily projections."
                ),
            ),
        },
        ins={
            "raw_opportunity": dg.AssetIn(), "raw_opportunity_history": dg.AssetIn(), "raw_opportunity_stage": dg.AssetIn(),
            "org_hierarchy": dg.AssetIn(), "quota_snapshots": dg.AssetIn(), **CREDIT_OBJECTS,
        },
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="win_rate_posteriors", blocking=True),
            *checks.WIN_RATE_SPECS,
        ],
    )
    def win_rate_posteriors_asset(context: dg.AssetExecutionContext, rules: RulesResource, model_settings: ModelSettings, **raw: pl.DataFrame):
        inputs = credit_inputs(rules, raw)
        hierarchy, snapshots = raw["org_hierarchy"], raw["quota_snapshots"]
        models, summaries = {}, []
        for month in run_months(context):
            teams, quota_reps = month_roster(month, hierarchy, snapshots)
            model, summary = fit_projection_model(
                month,
                window_months=model_settings.window_months,
                period_types=sorted(quota_reps),
                opportunities=raw["raw_opportunity"],
                history=raw["raw_opportunity_history"],
                stages=raw["raw_opportunity_stage"],
                teams=teams,
                inputs=inputs,
                fit_settings=model_settings.fit_settings(),
                seasonality_months=model_settings.seasonality_months,
                quota_reps=quota_reps,
                log=context.log.info,
            )
            models[month_key(month)] = model
            summaries.append(summary)
        summary = pl.concat(summaries, how="vertical_relaxed")
        fitted = fit_diagnostics(models)
        metadata = {
            "fits": fitted.height,
            "seasonality": dg.MetadataValue.json(
                {
                    f"{key} {period_type}": adjustment.details
                    for key, model in models.items()
                    for period_type, adjustment in model.seasonal.items()
                }
            ),
        }
        if fitted.height:
            metadata.update(
                max_rhat=float(fitted["max_rhat"].max()),
                min_ess_bulk=float(fitted["min_ess_bulk"].min()),
                min_ess_tail=float(fitted["min_ess_tail"].min()),
                divergences=int(fitted["divergences"].sum()),
                fit_seconds=float(fitted["fit_seconds"].sum()),
            )
        yield from publish(
            [Table("win_rate_posteriors", summary, schemas.WIN_RATE_POSTERIORS, metadata=metadata, multi=True)],
            blocking=[checks.converged(fitted)],
            others=[
                dg.Output(
                    models, output_name="projection_model", metadata={"window_months": model_settings.window_months}
                )
            ],
        )

    @dg.asset(
        name="projections",
        code_version=PROJECTIONS_CODE_VERSION,
        group_name=GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": DAILY_PARTITION_COLUMN, **definition_metadata(schemas.PROJECTIONS)},
        kinds={"numpy", "duckdb"},
        ins={"projection_model": monthly_input, "org_hierarchy": monthly_input},
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="projections", blocking=True),
            *checks.PROJECTION_SPECS,
        ],
    )
    def projections(
        context: dg.AssetExecutionContext,
        rules: RulesResource,
        model_settings: ModelSettings,
        attainment: pl.DataFrame,
        open_pipeline: pl.DataFrame,
        projection_model: dict,
        org_hierarchy: pl.DataFrame,
    ):
        """Where every rep, manager and the company will land at period end: P10/P50/P90 of the
        projected amount and attainment, the probability of reaching quota and the status tier
        (by default Crushing >= 120%, On Track >= 100%, Watch >= 80%, At Risk >= 60%, Critical
        below; QUOTA_PLATFORM_STATUS_TIER_BOUNDS),
        from Monte Carlo over posterior win-rate draws x open deals plus deals not yet created,
        with one common shock per period; managers and the company sum the same draws."""
        frames = []
        for day in run_dates(context):
            model = projection_model[month_key(day)]
            frames.append(
                project(
                    day, attainment, open_pipeline, org_hierarchy, model, model_settings.simulation_settings(),
                    rules=rules.rules(),
                )
            )
        frame = pl.concat(frames, how="vertical_relaxed")
        at_risk = frame.filter(pl.col("at_risk") & (pl.col("level") == "rep"))
        yield from publish(
            [Table("projections", frame, schemas.PROJECTIONS, metadata={"reps_at_risk": at_risk.select("entity_id").n_unique()})],
            blocking=[checks.one_row_per_attainment_row(attainment, frame)],
        )

    return [open_pipeline_asset, win_rate_posteriors_asset, projections]
