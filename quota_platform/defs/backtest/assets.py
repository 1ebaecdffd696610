"""The backtest: how accurate and honest past projections were, against the baselines."""

import dagster as dg
import polars as pl

from quota_platform.defs.partitions import month_key
from quota_platform.defs.validation import SCHEMA_CHECK, Table, definition_metadata, publish
from quota_platform.lib import schemas
from quota_platform.lib.backtest.baselines import baseline_forecasts, team_rates
from quota_platform.lib.backtest.scoring import actual_outcomes, checkpoint_rows, score
from quota_platform.resources import RulesResource
from quota_platform.warehouse.duckdb_io import Warehouse
from quota_platform.warehouse.model_store import ModelFiles

GROUP = "projections"


def backtest_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="projection_accuracy",
        group_name=GROUP,
        deps=["projections", "attainment", "open_pipeline", "org_hierarchy", "projection_model"],
        kinds={"polars", "duckdb"},
        metadata=definition_metadata(schemas.PROJECTION_ACCURACY),
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset="projection_accuracy", blocking=True)],
    )
    def projection_accuracy(
        context: dg.AssetExecutionContext, rules: RulesResource, warehouse: Warehouse, model_files: ModelFiles
    ):
        """How accurate and how honest the projections were, scored on every closed period whose
        checkpoint days (25%, 50%, 75% of the period) and last day have been materialized (backfill
        them first): WAPE and bias of P50, coverage of P10-P90 and each tail, CRPS, and the Brier
        score of the at-risk flag, per period x checkpoint x level, for the model and for the
        baselines B1 (stage probability), B2 (team conversion) and B3 (linear pacing)."""
        for table in ("projections", "attainment", "open_pipeline", "org_hierarchy"):
            if not warehouse.table_exists(table):
                raise dg.Failure(f"{table} has never been materialized: backfill past days first")
        projections = warehouse.read("projections")
        rows = checkpoint_rows(projections)
        actuals = actual_outcomes(warehouse.read("attainment", "as_of_date = period_end"))
        days = rows["as_of_date"].unique().to_list()
        pipeline = warehouse.read("open_pipeline", "as_of_date in (select unnest(?))", [days]) if days else None
        hierarchy = warehouse.read("org_hierarchy")
        frames = []
        for (month,), group in rows.with_columns(pl.col("as_of_date").dt.truncate("1mo").alias("_m")).group_by("_m"):
            model = model_files.read("projection_model", month_key(month))
            if model is None:
                context.log.warning(f"no projection model for {month}: its checkpoints are not scored")
                continue
            teams = model.teams
            baselines = baseline_forecasts(
                group.drop("_m"), pipeline, hierarchy, model.stage_probability, team_rates(model), teams
            )
            frames.append(baselines)
        if frames:
            scored = score(
                pl.concat(frames, how="vertical_relaxed").join(
                    actuals, on=["level", "entity_id", "period_type", "period_start", "period_end", "quota_type", "product_family"],
                    how="inner", nulls_equal=True,
                ),
                rules.rules(),
            )
        else:
            scored = score(pl.DataFrame(), rules.rules())
        periods = scored.select("period_type", "period_start").n_unique() if scored.height else 0
        yield from publish([Table("projection_accuracy", scored, schemas.PROJECTION_ACCURACY, metadata={"periods_scored": periods})])

    return [projection_accuracy]
