"""Period-end projections: Monte Carlo over posterior draws x open deals, plus deals not yet
created, for every attainment row; managers and the company from sums of the same draws.

Per simulation draw d and attainment rep row r (rep x period x quota type x family):

    total[d, r] = closed_won[r] + sum over open deals i crediting r of won[d, i] x credit[i, r]
                  + new_bookings[d, r]

where won[d, i] ~ Bernoulli(sigmoid(logit_i at posterior draw d + shock_d + season_d)), logit_i
for the deal's owner, team, stage, deal class and close-date bucket; one common shock per draw for
the period (its sd learned from the seasonal lookback's periods, or the win-rate fit's
period-level sd when the lookback is too short) and one seasonal offset per draw (the period's
place in the fiscal year against the fit's window, lib/seasonality.py, drawn from its posterior);
new_bookings from the gamma-Poisson model of deals not yet created, its rate scaled by the seasonal
new-deal factor of the same draw. Manager and company totals are sums over their reps of the same
draws, so their intervals carry the reps' correlation instead of summing quantiles.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import polars as pl
import scipy.sparse as sp

from quota_platform.lib.attainment.attainment import (
    ATTAINMENT_SCHEMA,
    COMPANY,
    COMPANY_ID,
    REP,
)
from quota_platform.lib.attainment.crediting import REVENUE
from quota_platform.lib.core.quota_types import deal_class
from quota_platform.lib.forecast import simulation
from quota_platform.lib.forecast.newdeals import NewDealModel, draw_new_bookings
from quota_platform.lib.forecast.pacing import share_at
from quota_platform.lib.forecast.seasonality import SeasonalAdjustment
from quota_platform.lib.forecast.training import close_date_bucket, sized_class

AT_RISK_PCT = 80.0
# Version of the stored ProjectionModel's format (docs/model_store.md): bumped whenever a stored
# part's meaning changes; a month stored in another version is refused and must be fitted again,
# not half-used. Versions 1 and 2 were the single files of earlier releases, never read now.
MODEL_FORMAT = 3
QUANTILE_GRID = tuple(round(q, 2) for q in np.arange(0.05, 0.96, 0.05))

# The attainment row's identity and figures, then the projection's own columns.
_FROM_ATTAINMENT = (
    "as_of_date", "level", "entity_id", "entity_name", "parent_id", "period_type", "period_start",
    "period_end", "quota_type", "product_family", "quota", "closed_won",
)
PROJECTION_SCHEMA = {
    **{name: ATTAINMENT_SCHEMA[name] for name in _FROM_ATTAINMENT},
    "open_pipeline_usd": pl.Float64(),
    "open_deals": pl.Int64(),
    "expected_from_pipeline": pl.Float64(),
    "expected_from_new_deals": pl.Float64(),
    "projected_mean": pl.Float64(),
    "projected_p10": pl.Float64(),
    "projected_p50": pl.Float64(),
    "projected_p90": pl.Float64(),
    "projected_pct_p10": pl.Float64(),
    "projected_pct_p50": pl.Float64(),
    "projected_pct_p90": pl.Float64(),
    "prob_hit_quota": pl.Float64(),
    "prob_at_risk": pl.Float64(),
    "status": pl.String(),
    "at_risk": pl.Boolean(),
    "pacing_share": pl.Float64(),
    "projected_by_pacing": pl.Float64(),
    "projected_quantiles": pl.List(pl.Float64()),
    "model_snapshot_month": pl.Date(),
}


@dataclasses.dataclass
class ProjectionModel:
    """Everything a month's fit produces for the projections of its days."""

    snapshot_month: date
    window_months: int
    win_rates: dict  # period_type -> winrates.WinRatePosterior
    new_deals: dict[str, NewDealModel]  # period_type -> model
    pacing: dict[str, pl.DataFrame]  # period_type -> (elapsed, share)
    teams: pl.DataFrame  # rep_id -> team_id at the fit
    diagnostics: dict[str, dict]  # period_type -> convergence and data counts
    # OpportunityStage.DefaultProbability / 100 by stage: the win chance used, with no posterior
    # uncertainty, for a period type that had no training data yet (a new org)
    stage_probability: dict[str, float] = dataclasses.field(default_factory=dict)
    # period_type -> the seasonal adjustment of the snapshot month's period against the window
    seasonal: dict[str, SeasonalAdjustment] = dataclasses.field(default_factory=dict)
    # deal class -> USD amount from which an open deal is "large" (training.sized_class)
    large_deal_usd: dict[str, float] = dataclasses.field(default_factory=dict)
    format: int = MODEL_FORMAT


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    n_draws: int = 2000
    seed: int = 20240917
    chunk_deals: int = 2048


def _row_keys() -> list[str]:
    return ["period_type", "period_start", "period_end", "quota_type", "product_family"]


def project(
    as_of: date,
    attainment: pl.DataFrame,
    pipeline: pl.DataFrame,
    hierarchy: pl.DataFrame,
    model: ProjectionModel,
    settings: SimulationSettings = SimulationSettings(),
) -> pl.DataFrame:
    """Projection rows for every attainment row of ``as_of`` (reps with no open pipeline and new
    reps included), with the rep rows' draws rolled up to managers and the company."""
    day = attainment.filter(pl.col("as_of_date") == as_of)
    reps = day.filter(pl.col("level") == REP).sort("entity_id", *_row_keys(), nulls_last=True)
    if reps.is_empty():
        return pl.DataFrame(schema=PROJECTION_SCHEMA)
    rng = np.random.default_rng([settings.seed, as_of.toordinal()])
    n_draws = settings.n_draws
    teams = model.teams
    totals = np.zeros((n_draws, reps.height))
    extra = {k: np.zeros(reps.height) for k in ("open_pipeline_usd", "open_deals", "expected_from_pipeline", "expected_from_new_deals", "pacing_share")}
    reps = reps.with_row_index("_r")

    for period_type in reps["period_type"].unique().sort().to_list():
        rows = reps.filter(pl.col("period_type") == period_type)
        idx = rows["_r"].to_numpy()
        period_end = rows["period_end"][0]
        period_start = rows["period_start"][0]
        elapsed = ((as_of - period_start).days + 1) / ((period_end - period_start).days + 1)
        days_remaining = (period_end - as_of).days
        season = model.seasonal.get(period_type, SeasonalAdjustment())
        # per draw: normals for the two seasonal offsets and the shock, a uniform for the shock's
        # sd; drawn whether or not they are used, so the streams after them do not depend on the
        # model's contents
        season_z = rng.standard_normal((3, n_draws))
        shock_u = rng.random(n_draws)
        win_offset = season.win_rate_logit[0] + season.win_rate_logit[1] * season_z[0]
        # the period's common shock: its sd from the seasonal lookback's many periods when there
        # were enough of them, else the win-rate fit's (inside _posterior_logits)
        shock_sd = season.shock_sd_draws(shock_u)
        if shock_sd is not None:
            win_offset = win_offset + shock_sd * season_z[2]
        new_factor = np.exp(season.new_deal_log[0] + season.new_deal_log[1] * season_z[1])

        # --- open deals --------------------------------------------------------------------------
        deals = pipeline.filter(
            (pl.col("as_of_date") == as_of) & (pl.col("credit_type") == REVENUE) & (pl.col("credit_usd") > 0)
        ).join(
            rows.select(pl.col("entity_id").alias("rep_id"), "quota_type", "product_family", "_r"),
            on=["rep_id", "quota_type", "product_family"],
            how="inner",
            nulls_equal=True,
        )
        posterior = model.win_rates.get(period_type)
        if deals.height:
            deals = deals.with_columns(
                close_date_bucket(pl.col("close_date"), pl.lit(as_of), pl.lit(period_end)).alias("bucket"),
                sized_class(deal_class(pl.col("opportunity_type")), pl.col("amount_usd"), model.large_deal_usd).alias("deal_class"),
            ).join(teams.rename({"rep_id": "owner_id"}), on="owner_id", how="left")
            # Deals in Id order: each deal's random stream follows its position, so a fixed order
            # makes a projection reproducible from its seed.
            deals = deals.sort("opportunity_id", "rep_id", "quota_type", "product_family", nulls_last=True)
            opp_index = deals.select("opportunity_id").unique(maintain_order=True).with_row_index("_i")
            deals = deals.join(opp_index, on="opportunity_id")
            cells = (
                deals.select("owner_id", "team_id", "stage_name", "deal_class", "bucket")
                .unique(maintain_order=True)
                .with_row_index("_c")
            )
            deals = deals.join(cells, on=["owner_id", "team_id", "stage_name", "deal_class", "bucket"], how="left", nulls_equal=True)
            if posterior is not None:
                cell_logits = _posterior_logits(
                    posterior, cells, elapsed, n_draws, [settings.seed, as_of.toordinal(), 1], period_shock=shock_sd is None
                )
                cell_logits += win_offset[:, None]
            else:
                cell_logits = _stage_probability_logits(model.stage_probability, cells, n_draws)
            per_deal = deals.group_by("_i").agg(pl.col("_c").first()).sort("_i")["_c"].to_numpy()
            credit = sp.csr_matrix(
                (deals["credit_usd"].to_numpy(), (deals["_i"].to_numpy(), np.searchsorted(idx, deals["_r"].to_numpy()))),
                shape=(opp_index.height, idx.size),
            )
            won = simulation.simulate_totals(
                lambda sl: cell_logits[:, per_deal[sl]],
                credit,
                n_draws=n_draws,
                shock_sd=0.0,
                rng=rng,
                chunk_deals=settings.chunk_deals,
            )
            totals[:, idx] += won
            by_row = deals.group_by("_r").agg(pl.col("credit_usd").sum(), pl.len().alias("n"))
            extra["open_pipeline_usd"][by_row["_r"].to_numpy()] = by_row["credit_usd"].to_numpy()
            extra["open_deals"][by_row["_r"].to_numpy()] = by_row["n"].to_numpy()
            extra["expected_from_pipeline"][idx] = won.mean(axis=0)

        # --- deals not yet created ---------------------------------------------------------------
        new_model = model.new_deals.get(period_type)
        if new_model is not None and days_remaining > 0:
            params = new_model.parameters(
                rows.select(
                    pl.col("entity_id").alias("rep_id"), "quota_type", "product_family"
                ).join(teams, on="rep_id", how="left")
            )
            exposure = new_model.exposure(rows["quota_type"].to_list(), elapsed, days_remaining)
            new = draw_new_bookings(params, exposure, n_draws, rng, rate_factor=new_factor)
            totals[:, idx] += new
            extra["expected_from_new_deals"][idx] = new.mean(axis=0)
        curve = model.pacing.get(period_type)
        extra["pacing_share"][idx] = share_at(curve, np.array([elapsed]))[0] if curve is not None else elapsed

    totals += reps["closed_won"].to_numpy()[None, :]
    rep_out = reps.with_columns(**{k: pl.Series(v) for k, v in extra.items()})

    # --- roll-ups from the same draws ---------------------------------------------------------------
    keys = _row_keys()
    month = as_of.replace(day=1)
    ancestors = hierarchy.filter((pl.col("snapshot_month") == month) & (pl.col("distance") >= 1)).select(
        pl.col("user_id").alias("entity_id"), "ancestor_id"
    )
    parents = day.filter(pl.col("level") != REP).with_columns(
        pl.when(pl.col("level") == COMPANY).then(pl.lit(COMPANY_ID)).otherwise(pl.col("entity_id")).alias("_match")
    ).sort("level", "entity_id", *keys, nulls_last=True).with_row_index("_p")
    links = pl.concat(
        [
            rep_out.select("_r", "entity_id", *keys).join(ancestors, on="entity_id").select(
                "_r", pl.col("ancestor_id").alias("_match"), *keys
            ),
            rep_out.select("_r", pl.lit(COMPANY_ID).alias("_match"), *keys),
        ]
    ).join(parents.select("_p", "_match", *keys), on=["_match", *keys], how="inner", nulls_equal=True)
    membership = sp.csr_matrix(
        (np.ones(links.height), (links["_r"].to_numpy(), links["_p"].to_numpy())),
        shape=(rep_out.height, parents.height),
    )
    parent_totals = simulation.rollup_draws(totals, membership)
    parent_extra = {k: np.asarray(membership.T @ v).ravel() for k, v in extra.items() if k != "pacing_share"}
    parent_out = parents.with_columns(**{k: pl.Series(v) for k, v in parent_extra.items()})
    pacing_by_type = dict(rep_out.group_by("period_type").agg(pl.col("pacing_share").first()).iter_rows())
    parent_out = parent_out.with_columns(pl.col("period_type").replace_strict(pacing_by_type, default=None, return_dtype=pl.Float64).alias("pacing_share"))

    frames = []
    for frame, draws in ((rep_out, totals), (parent_out, parent_totals)):
        quota = frame["quota"].to_numpy()
        summary = simulation.summarize(draws, quota, frame["closed_won"].to_numpy())
        quantiles = np.quantile(draws, QUANTILE_GRID, axis=0).T if draws.shape[1] else np.zeros((0, len(QUANTILE_GRID)))
        frames.append(
            frame.with_columns(
                pl.Series("projected_mean", draws.mean(axis=0)),
                pl.Series("projected_p10", summary["projected_p10"]),
                pl.Series("projected_p50", summary["projected_p50"]),
                pl.Series("projected_p90", summary["projected_p90"]),
                pl.Series("projected_pct_p10", summary["projected_pct_p10"]).fill_nan(None),
                pl.Series("projected_pct_p50", summary["projected_pct_p50"]).fill_nan(None),
                pl.Series("projected_pct_p90", summary["projected_pct_p90"]).fill_nan(None),
                pl.Series("prob_hit_quota", summary["prob_hit_quota"]).fill_nan(None),
                # P(attainment ends below the at-risk line): the forecast the at-risk flag is scored on
                pl.Series(
                    "prob_at_risk",
                    np.where(quota > 0, (draws < AT_RISK_PCT / 100.0 * quota[None, :]).mean(axis=0), np.nan),
                ).fill_nan(None),
                pl.Series("projected_quantiles", quantiles.tolist(), dtype=pl.List(pl.Float64)),
            )
        )
    out = pl.concat([f.drop("_r", "_p", "_match", strict=False) for f in frames], how="diagonal_relaxed")
    return (
        out.with_columns(
            pl.col("projected_pct_p50").map_batches(
                lambda s: pl.Series(simulation.status_tier(s.fill_null(np.nan).to_numpy()).tolist(), dtype=pl.String),
                return_dtype=pl.String,
            ).alias("status"),
            (pl.col("projected_pct_p50") < AT_RISK_PCT).alias("at_risk"),
            pl.when(pl.col("pacing_share") > 0)
            .then(pl.col("closed_won") / pl.col("pacing_share"))
            .alias("projected_by_pacing"),
            pl.lit(model.snapshot_month).alias("model_snapshot_month"),
        )
        .select(list(PROJECTION_SCHEMA))
        .cast(PROJECTION_SCHEMA)
        .sort("as_of_date", "level", "entity_id", "period_type", "period_start", "quota_type", "product_family", nulls_last=True)
    )


def _posterior_logits(
    posterior, cells: pl.DataFrame, elapsed: float, n_draws: int, seed: list[int], period_shock: bool = True
) -> np.ndarray:
    """(n_draws, n_cells) logits: one posterior draw subset and (with ``period_shock``) one common
    period shock per simulation draw, shared by every cell of the period (one call for all cells
    keeps them aligned; the same seed makes every call pick the same draws)."""
    stage_names = cells["stage_name"].to_list()
    known = [s in set(posterior.stages) for s in stage_names]
    variants = posterior.stages if not all(known) else posterior.stages[:1]
    stage_logits = [
        posterior.logit_draws(
            cells["owner_id"].to_list(),
            cells["team_id"].to_list(),
            [s if k else variant for s, k in zip(stage_names, known)],
            cells["bucket"].to_list(),
            elapsed,
            n_draws=n_draws,
            rng=np.random.default_rng(seed),
            period_shock=period_shock,
            deal_classes=cells["deal_class"].to_list(),
        )
        for variant in variants
    ]
    # A stage the fit never saw (new or renamed since) takes the average over the known stages
    # for its rep and bucket: a wide middle rather than a guess.
    logits = stage_logits[0].copy()
    unknown = ~np.array(known)
    if unknown.any():
        logits[:, unknown] = np.mean(stage_logits, axis=0)[:, unknown]
    return logits


def _stage_probability_logits(stage_probability: dict[str, float], cells: pl.DataFrame, n_draws: int) -> np.ndarray:
    """Without training data: the stage's default probability, clipped away from 0 and 1."""
    p = np.array([stage_probability.get(s, 0.1) for s in cells["stage_name"].to_list()], dtype=float)
    p = np.clip(p, 0.01, 0.99)
    return np.broadcast_to(np.log(p / (1 - p)), (n_draws, p.size)).copy()
