"""The baselines projections are scored against (point forecasts, per checkpoint row):

- ``B1``: closed + open pipeline due by period end x OpportunityStage.DefaultProbability;
- ``B2``: closed + the same pipeline x the team's historical in-period conversion rate;
- ``B3``: linear pacing, closed / share of the period elapsed.

Manager and company baselines are sums of their reps' (all three are linear)."""

from __future__ import annotations

import polars as pl

from quota_platform.lib.attainment.rollup import REP, roll_up
from quota_platform.lib.forecast.training import BUCKET_IN_PERIOD, BUCKET_OVERDUE

KEYS = ["period_type", "period_start", "period_end", "quota_type", "product_family"]


def team_rates(model) -> pl.DataFrame:
    """B2's conversion rate: the share of pipeline due in the period (in_period and overdue buckets)
    won within it, per team and for the company (team_id null), from the model's training data."""
    frames = []
    for period_type, posterior in model.win_rates.items():
        due = posterior.observed.filter(pl.col("close_date_bucket").is_in([BUCKET_IN_PERIOD, BUCKET_OVERDUE]))
        by_team = due.group_by("team_id").agg((pl.col("wins").sum() / pl.col("trials").sum()).alias("rate"))
        company = due.select(pl.lit(None, pl.String).alias("team_id"), (pl.col("wins").sum() / pl.col("trials").sum()).alias("rate"))
        frames.append(pl.concat([by_team.filter(pl.col("team_id").is_not_null()), company]).with_columns(pl.lit(period_type).alias("period_type")))
    if not frames:
        return pl.DataFrame(schema={"team_id": pl.String, "rate": pl.Float64, "period_type": pl.String})
    return pl.concat(frames, how="vertical_relaxed")


def baseline_forecasts(
    rows: pl.DataFrame,
    pipeline: pl.DataFrame,
    hierarchy: pl.DataFrame,
    stage_probability: dict[str, float],
    team_rates: pl.DataFrame,
    teams: pl.DataFrame,
) -> pl.DataFrame:
    """B1, B2 and B3 point forecasts for checkpoint rows of every level. ``rows`` are checkpoint
    projection rows (closed_won, quota, pacing inputs); ``pipeline`` open_pipeline rows of the
    checkpoint days; ``team_rates`` (period_type, team_id, rate) with a ``team_id`` null row for
    the company rate; ``teams`` rep_id -> team_id."""
    reps = rows.filter(pl.col("level") == REP)
    due = pipeline.filter(pl.col("credit_type") == "revenue").join(
        reps.select("as_of_date", pl.col("entity_id").alias("rep_id"), "quota_type", "product_family", "period_type", "period_end"),
        on=["as_of_date", "rep_id", "quota_type", "product_family"],
        nulls_equal=True,
    ).filter(pl.col("close_date") <= pl.col("period_end"))
    probability = pl.DataFrame(
        {"stage_name": list(stage_probability), "_p": list(stage_probability.values())},
        schema={"stage_name": pl.String, "_p": pl.Float64},
    )
    company_rate = team_rates.filter(pl.col("team_id").is_null()).select("period_type", pl.col("rate").alias("_company"))
    due = (
        due.join(probability, on="stage_name", how="left")
        .join(teams.rename({"rep_id": "owner_id"}), on="owner_id", how="left")
        .join(team_rates.filter(pl.col("team_id").is_not_null()), on=["period_type", "team_id"], how="left")
        .join(company_rate, on="period_type", how="left")
        .with_columns(
            (pl.col("credit_usd") * pl.col("_p").fill_null(0.0)).alias("_b1"),
            (pl.col("credit_usd") * pl.coalesce("rate", "_company", pl.lit(0.0))).alias("_b2"),
        )
        .group_by("as_of_date", "rep_id", "quota_type", "product_family", "period_type")
        .agg(pl.col("_b1").sum(), pl.col("_b2").sum())
    )
    rep_b = reps.join(
        due.rename({"rep_id": "entity_id"}),
        on=["as_of_date", "entity_id", "quota_type", "product_family", "period_type"],
        how="left",
        nulls_equal=True,
    ).with_columns(
        (pl.col("closed_won") + pl.col("_b1").fill_null(0.0)).alias("B1"),
        (pl.col("closed_won") + pl.col("_b2").fill_null(0.0)).alias("B2"),
    )
    # Managers and the company: the sums of their reps' baselines (all three are linear).
    rep_b = rep_b.with_columns(pl.col("as_of_date").dt.truncate("1mo").alias("snapshot_month"))
    parents = roll_up(rep_b.rename({"entity_id": "rep_id"}), hierarchy, ["as_of_date", *KEYS], ["B1", "B2"])
    pieces = [
        rep_b.select("as_of_date", pl.lit(REP).alias("level"), "entity_id", *KEYS, "B1", "B2"),
        parents.select("as_of_date", "level", "entity_id", *KEYS, "B1", "B2"),
    ]
    linear = ((pl.col("as_of_date") - pl.col("period_start")).dt.total_days() + 1) / (
        (pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    )
    return rows.join(
        pl.concat(pieces, how="vertical_relaxed"),
        on=["as_of_date", "level", "entity_id", *KEYS],
        how="left",
        nulls_equal=True,
    ).with_columns(
        pl.col("B1").fill_null(pl.col("closed_won")),
        pl.col("B2").fill_null(pl.col("closed_won")),
        (pl.col("closed_won") / linear).alias("B3"),
    )
