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
from typing import NamedTuple

import numpy as np
import polars as pl
import scipy.sparse as sp

from quota_platform.lib.attainment.attainment import ATTAINMENT_SCHEMA
from quota_platform.lib.attainment.crediting import REVENUE
from quota_platform.lib.attainment.rollup import REP, rollup_links
from quota_platform.lib.core.quota_types import deal_class
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast import simulation
from quota_platform.lib.forecast.newdeals import NewDealModel, draw_new_bookings
from quota_platform.lib.forecast.pacing import share_at
from quota_platform.lib.forecast.seasonality import SeasonalAdjustment
from quota_platform.lib.forecast.training import close_date_bucket, sized_class
from quota_platform.lib.forecast.winrates import DEFAULT_SEED

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
    seed: int = DEFAULT_SEED
    chunk_deals: int = 2048


# the attainment row's period and quota, which with level and entity_id identify it
ROW_KEYS = ("period_type", "period_start", "period_end", "quota_type", "product_family")
# per-row figures of the projection beside its draws (rep rows; managers and the company sum them)
FIGURES = ("open_pipeline_usd", "open_deals", "expected_from_pipeline", "expected_from_new_deals", "pacing_share")
# what the win-rate model is asked about for an open deal: its cell
CELL_KEYS = ("owner_id", "team_id", "stage_name", "deal_class", "bucket")


def project(
    as_of: date,
    attainment: pl.DataFrame,
    pipeline: pl.DataFrame,
    hierarchy: pl.DataFrame,
    model: ProjectionModel,
    settings: SimulationSettings = SimulationSettings(),
    *,
    rules: Rules = Rules(),
) -> pl.DataFrame:
    """Projection rows for every attainment row of ``as_of`` (reps with no open pipeline and new
    reps included), with the rep rows' draws rolled up to managers and the company. ``rules``
    give the status tiers and the at-risk line (the contract's defaults unless passed).

    The random numbers come from one generator seeded with ``settings.seed`` and the day, taken
    period type by period type in sorted order (:func:`_period_draws`), so a projection is
    reproducible bit for bit from its seed."""
    day = attainment.filter(pl.col("as_of_date") == as_of)
    reps = day.filter(pl.col("level") == REP).sort("entity_id", *ROW_KEYS, nulls_last=True)
    if reps.is_empty():
        return pl.DataFrame(schema=PROJECTION_SCHEMA)
    rng = np.random.default_rng([settings.seed, as_of.toordinal()])
    totals = np.zeros((settings.n_draws, reps.height))
    figures = {k: np.zeros(reps.height) for k in FIGURES}
    reps = reps.with_row_index("_r")
    for period_type in reps["period_type"].unique().sort().to_list():
        rows = reps.filter(pl.col("period_type") == period_type)
        idx = rows["_r"].to_numpy()
        draws, row_figures = _period_draws(as_of, rows, pipeline, model, settings, rng)
        totals[:, idx] += draws
        for k, v in row_figures.items():
            figures[k][idx] = v
    totals += reps["closed_won"].to_numpy()[None, :]
    rep_out = reps.with_columns(**{k: pl.Series(v) for k, v in figures.items()})
    parent_out, parent_totals = _roll_up_draws(as_of, day, rep_out, totals, hierarchy)
    out = pl.concat(
        [_with_draw_summaries(rep_out, totals, rules), _with_draw_summaries(parent_out, parent_totals, rules)],
        how="diagonal_relaxed",
    )
    return _with_status(out.drop("_r", "_p", strict=False), model, rules)


def _period_draws(
    as_of: date, rows: pl.DataFrame, pipeline: pl.DataFrame, model: ProjectionModel, settings: SimulationSettings, rng
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws of what the rep rows of one period type (all in the same period) still add by its
    end, ``(n_draws, rows.height)``: open deals won plus deals not yet created; and the rows'
    figures (FIGURES). Takes from ``rng``, in this order, the seasonal offsets and the shock
    (:func:`_season_draws`), the open deals' outcomes, the new deals."""
    period_type = rows["period_type"][0]
    period_start, period_end = rows["period_start"][0], rows["period_end"][0]
    elapsed = ((as_of - period_start).days + 1) / ((period_end - period_start).days + 1)
    days_remaining = (period_end - as_of).days
    season = _season_draws(model.seasonal.get(period_type, SeasonalAdjustment()), settings.n_draws, rng)
    draws = np.zeros((settings.n_draws, rows.height))
    figures = {k: np.zeros(rows.height) for k in FIGURES}

    open_deals = _open_deals(as_of, rows, pipeline, model, period_end)
    if open_deals is not None:
        won = _open_deal_draws(open_deals, rows, model.win_rates.get(period_type), model, elapsed, season, settings, as_of, rng)
        draws += won
        by_row = open_deals.deals.group_by("_r").agg(pl.col("credit_usd").sum(), pl.len().alias("n"))
        at = np.searchsorted(rows["_r"].to_numpy(), by_row["_r"].to_numpy())
        figures["open_pipeline_usd"][at] = by_row["credit_usd"].to_numpy()
        figures["open_deals"][at] = by_row["n"].to_numpy()
        figures["expected_from_pipeline"][:] = won.mean(axis=0)

    new = _new_deal_draws(rows, model, period_type, elapsed, days_remaining, season.new_factor, settings.n_draws, rng)
    if new is not None:
        draws += new
        figures["expected_from_new_deals"][:] = new.mean(axis=0)
    curve = model.pacing.get(period_type)
    figures["pacing_share"][:] = share_at(curve, np.array([elapsed]))[0] if curve is not None else elapsed
    return draws, figures


class _SeasonDraws(NamedTuple):
    win_offset: np.ndarray  # (n_draws,) added to every open deal's logit
    shock_sd: np.ndarray | None  # (n_draws,) the period shock's sd from the lookback, or None
    new_factor: np.ndarray  # (n_draws,) factor on the rate of deals not yet created


def _season_draws(season: SeasonalAdjustment, n_draws: int, rng) -> _SeasonDraws:
    """Per draw, the period's seasonal offsets (win rate, new deals) and its common shock.

    Normals for the two offsets and the shock and a uniform for the shock's sd are drawn whether
    or not they are used, so that the streams after them do not depend on the model's contents.
    The shock's sd comes from the seasonal lookback's many periods when there were enough of them
    (then it is part of ``win_offset``); otherwise ``shock_sd`` is None and the win-rate fit's
    period sd applies (inside :func:`_posterior_logits`)."""
    season_z = rng.standard_normal((3, n_draws))
    shock_u = rng.random(n_draws)
    win_offset = season.win_rate_logit[0] + season.win_rate_logit[1] * season_z[0]
    shock_sd = season.shock_sd_draws(shock_u)
    if shock_sd is not None:
        win_offset = win_offset + shock_sd * season_z[2]
    new_factor = np.exp(season.new_deal_log[0] + season.new_deal_log[1] * season_z[1])
    return _SeasonDraws(win_offset, shock_sd, new_factor)


class _OpenDeals(NamedTuple):
    deals: pl.DataFrame  # open revenue credits to the rows, with _r (row), _i (opportunity), _c (cell)
    cells: pl.DataFrame  # _c and CELL_KEYS, one row per cell, in _c order
    n_opportunities: int


def _open_deals(as_of: date, rows: pl.DataFrame, pipeline: pl.DataFrame, model: ProjectionModel, period_end: date) -> _OpenDeals | None:
    """The day's open revenue credits to ``rows``, each with its close-date bucket, sized deal
    class and owner's team, in opportunity Id order; ``_i`` numbers the opportunities and ``_c``
    the distinct cells the win-rate model is asked about. None when no open deal credits the
    rows."""
    deals = pipeline.filter(
        (pl.col("as_of_date") == as_of) & (pl.col("credit_type") == REVENUE) & (pl.col("credit_usd") > 0)
    ).join(
        rows.select(pl.col("entity_id").alias("rep_id"), "quota_type", "product_family", "_r"),
        on=["rep_id", "quota_type", "product_family"],
        how="inner",
        nulls_equal=True,
    )
    if not deals.height:
        return None
    deals = deals.with_columns(
        close_date_bucket(pl.col("close_date"), pl.lit(as_of), pl.lit(period_end)).alias("bucket"),
        sized_class(deal_class(pl.col("opportunity_type")), pl.col("amount_usd"), model.large_deal_usd).alias("deal_class"),
    ).join(model.teams.rename({"rep_id": "owner_id"}), on="owner_id", how="left")
    # Deals in Id order: each deal's random stream follows its position, so a fixed order
    # makes a projection reproducible from its seed.
    deals = deals.sort("opportunity_id", "rep_id", "quota_type", "product_family", nulls_last=True)
    opp_index = deals.select("opportunity_id").unique(maintain_order=True).with_row_index("_i")
    deals = deals.join(opp_index, on="opportunity_id")
    cells = deals.select(*CELL_KEYS).unique(maintain_order=True).with_row_index("_c")
    deals = deals.join(cells, on=list(CELL_KEYS), how="left", nulls_equal=True)
    return _OpenDeals(deals, cells, opp_index.height)


def _open_deal_draws(
    open_deals: _OpenDeals, rows: pl.DataFrame, posterior, model: ProjectionModel, elapsed: float,
    season: _SeasonDraws, settings: SimulationSettings, as_of: date, rng,
) -> np.ndarray:
    """Draws of the amount won from the open deals, ``(n_draws, rows.height)``:
    each cell's logit per draw from the win-rate ``posterior`` (its own random stream, seeded by
    the day) plus the seasonal offset, or the stages' default probabilities without a posterior;
    then one Bernoulli outcome per deal and draw (:func:`simulation.simulate_totals`, from ``rng``)
    credited to every row the deal credits."""
    deals, cells = open_deals.deals, open_deals.cells
    n_draws = settings.n_draws
    if posterior is not None:
        cell_logits = _posterior_logits(
            posterior, cells, elapsed, n_draws, [settings.seed, as_of.toordinal(), 1], period_shock=season.shock_sd is None
        )
        cell_logits += season.win_offset[:, None]
    else:
        cell_logits = _stage_probability_logits(model.stage_probability, cells, n_draws)
    per_deal = deals.group_by("_i").agg(pl.col("_c").first()).sort("_i")["_c"].to_numpy()
    idx = rows["_r"].to_numpy()
    credit = sp.csr_matrix(
        (deals["credit_usd"].to_numpy(), (deals["_i"].to_numpy(), np.searchsorted(idx, deals["_r"].to_numpy()))),
        shape=(open_deals.n_opportunities, idx.size),
    )
    return simulation.simulate_totals(
        lambda sl: cell_logits[:, per_deal[sl]],
        credit,
        n_draws=n_draws,
        shock_sd=0.0,
        rng=rng,
        chunk_deals=settings.chunk_deals,
    )


def _new_deal_draws(
    rows: pl.DataFrame, model: ProjectionModel, period_type: str, elapsed: float, days_remaining: int,
    rate_factor: np.ndarray, n_draws: int, rng,
) -> np.ndarray | None:
    """Draws of the bookings from deals not yet created, ``(n_draws, rows.height)``, from the
    period type's gamma-Poisson model with its rate scaled by the seasonal factor of each draw;
    None without a model or on the period's last day."""
    new_model = model.new_deals.get(period_type)
    if new_model is None or days_remaining <= 0:
        return None
    params = new_model.parameters(
        rows.select(pl.col("entity_id").alias("rep_id"), "quota_type", "product_family").join(model.teams, on="rep_id", how="left")
    )
    exposure = new_model.exposure(rows["quota_type"].to_list(), elapsed, days_remaining)
    return draw_new_bookings(params, exposure, n_draws, rng, rate_factor=rate_factor)


def _roll_up_draws(
    as_of: date, day: pl.DataFrame, rep_out: pl.DataFrame, totals: np.ndarray, hierarchy: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    """The day's manager and company rows with their draws, the sums of the same draws of their
    rep rows (linked by :func:`rollup_links` on the month's hierarchy), so that their intervals
    carry the reps' correlation; their figures are sums too, except the pacing share, the period
    type's."""
    parents = day.filter(pl.col("level") != REP).sort("level", "entity_id", *ROW_KEYS, nulls_last=True).with_row_index("_p")
    links = rollup_links(hierarchy.filter(pl.col("snapshot_month") == as_of.replace(day=1))).select(
        pl.col("rep_id").alias("entity_id"), pl.col("level").alias("_level"), pl.col("entity_id").alias("_entity")
    )
    links = (
        rep_out.select("_r", "entity_id", *ROW_KEYS)
        .join(links, on="entity_id")
        .join(
            parents.select("_p", pl.col("level").alias("_level"), pl.col("entity_id").alias("_entity"), *ROW_KEYS),
            on=["_level", "_entity", *ROW_KEYS],
            how="inner",
            nulls_equal=True,
        )
    )
    membership = sp.csr_matrix(
        (np.ones(links.height), (links["_r"].to_numpy(), links["_p"].to_numpy())),
        shape=(rep_out.height, parents.height),
    )
    parent_totals = simulation.rollup_draws(totals, membership)
    sums = {k: np.asarray(membership.T @ rep_out[k].to_numpy()).ravel() for k in FIGURES if k != "pacing_share"}
    pacing_by_type = dict(rep_out.group_by("period_type").agg(pl.col("pacing_share").first()).iter_rows())
    parent_out = parents.with_columns(**{k: pl.Series(v) for k, v in sums.items()}).with_columns(
        pl.col("period_type").replace_strict(pacing_by_type, default=None, return_dtype=pl.Float64).alias("pacing_share")
    )
    return parent_out, parent_totals


def _with_draw_summaries(frame: pl.DataFrame, draws: np.ndarray, rules: Rules) -> pl.DataFrame:
    """``frame``'s rows with the summaries of their period-end draws (one column of ``draws`` a
    row): mean, P10/P50/P90 in USD and percent of quota, the chance of reaching quota and of
    ending below the at-risk line, and the quantile grid."""
    quota = frame["quota"].to_numpy()
    summary = simulation.summarize(draws, quota, frame["closed_won"].to_numpy())
    quantiles = np.quantile(draws, QUANTILE_GRID, axis=0).T if draws.shape[1] else np.zeros((0, len(QUANTILE_GRID)))
    return frame.with_columns(
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
            np.where(quota > 0, (draws < rules.at_risk_pct / 100.0 * quota[None, :]).mean(axis=0), np.nan),
        ).fill_nan(None),
        pl.Series("projected_quantiles", quantiles.tolist(), dtype=pl.List(pl.Float64)),
    )


def _with_status(out: pl.DataFrame, model: ProjectionModel, rules: Rules) -> pl.DataFrame:
    """The status tier and at-risk flag of each row's P50, the projection by pacing alone, and
    the model's month; the columns of PROJECTION_SCHEMA, sorted."""
    return (
        out.with_columns(
            pl.col("projected_pct_p50").map_batches(
                lambda s: pl.Series(simulation.status_tier(s.fill_null(np.nan).to_numpy(), rules.status_tiers).tolist(), dtype=pl.String),
                return_dtype=pl.String,
            ).alias("status"),
            (pl.col("projected_pct_p50") < rules.at_risk_pct).alias("at_risk"),
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
