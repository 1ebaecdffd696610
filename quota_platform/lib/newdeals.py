"""Bookings from deals not yet created: opportunities that will be created after the as-of date and
won within the period. Without this term early-period projections are biased low.

Model, per rep x quota type x product family (a "stream"):

- The number of such deals in the days remaining is Poisson(rate x days_remaining), with the rate
  Gamma-distributed: a team-level prior (the team's pooled rate, worth ``PRIOR_DEALS`` deals of
  evidence) updated by the rep's own history (deals and exposure days, divided by the number of
  checkpoints that saw each deal so one deal counts once). New reps fall back to their team, and
  teams without history to the company.
- Each deal's credit has the stream's mean size (shrunk toward the team mean with ``PRIOR_DEALS``
  deals of weight) and the team's coefficient of variation; the sum of N deals is drawn as
  Gamma(N / cv^2, mean x cv^2), the exact law for gamma-distributed sizes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from quota_platform.lib.training import CHECKPOINTS

PRIOR_DEALS = 2.0
KEYS = ["rep_id", "quota_type", "product_family"]


@dataclasses.dataclass(frozen=True)
class NewDealModel:
    """Posterior parameters per stream: rate ~ Gamma(shape, rate=inv_scale) deals/day, mean size and
    cv of one deal's credit."""

    streams: pl.DataFrame  # rep_id, quota_type, product_family, shape, inv_scale, mean_size, size_cv, source
    team_streams: pl.DataFrame  # team_id, quota_type, product_family, shape, inv_scale, mean_size, size_cv

    def parameters(self, rows: pl.DataFrame) -> pl.DataFrame:
        """For rows with rep_id, team_id, quota_type, product_family: the stream's parameters, else
        the team's, else the company's for that quota type and family; zero rate if none exists."""
        team_cols = ["shape", "inv_scale", "mean_size", "size_cv"]
        company = (
            self.team_streams.group_by("quota_type", "product_family")
            .agg(
                pl.col("shape").sum(), pl.col("inv_scale").sum(),
                pl.col("mean_size").mean(), pl.col("size_cv").mean(),
            )
        )
        out = (
            rows.join(self.streams, on=KEYS, how="left", nulls_equal=True)
            .join(
                self.team_streams.rename({c: f"team_{c}" for c in team_cols}),
                on=["team_id", "quota_type", "product_family"], how="left", nulls_equal=True,
            )
            .join(
                company.rename({c: f"company_{c}" for c in team_cols}),
                on=["quota_type", "product_family"], how="left", nulls_equal=True,
            )
        )
        has_rep = pl.col("shape").is_not_null()
        has_team = pl.col("team_shape").is_not_null()
        return out.with_columns(
            *[
                pl.when(has_rep).then(pl.col(c)).when(has_team).then(pl.col(f"team_{c}")).otherwise(pl.col(f"company_{c}")).alias(c)
                for c in team_cols
            ],
            pl.when(has_rep).then(pl.lit("rep")).when(has_team).then(pl.lit("team")).otherwise(pl.lit("company")).alias("new_deal_source"),
        ).drop([f"{p}_{c}" for p in ("team", "company") for c in team_cols] + ["source"], strict=False)


def fit_new_deals(history: pl.DataFrame, teams: pl.DataFrame) -> NewDealModel:
    """``history`` from :func:`training.new_deal_history`; ``teams`` maps rep_id -> team_id."""
    per_deal_weight = 1.0 / len(CHECKPOINTS)
    h = history.join(teams, on="rep_id", how="left").with_columns(pl.col("team_id").fill_null("(no team)"))
    rep = h.group_by(KEYS + ["team_id"]).agg(
        (pl.col("deals").sum() * per_deal_weight).alias("deals"),
        (pl.col("days_remaining").sum() * per_deal_weight).alias("exposure"),
        pl.col("credit_usd").sum().alias("credit"),
        pl.col("deals").sum().alias("_raw_deals"),
    )
    team = rep.group_by("team_id", "quota_type", "product_family").agg(
        pl.col("deals").sum(), pl.col("exposure").sum(), pl.col("credit").sum(), pl.col("_raw_deals").sum(),
    ).with_columns(
        (pl.col("deals") / pl.col("exposure")).fill_nan(0.0).alias("team_rate"),
        (pl.col("credit") / pl.col("_raw_deals")).fill_nan(0.0).fill_null(0.0).alias("team_size"),
    )
    # Coefficient of variation of one deal's credit cannot be seen from sums; a cv of 1 (an
    # exponential-like spread of deal sizes) is the working assumption, wide enough to be honest.
    team = team.with_columns(
        (PRIOR_DEALS + pl.col("deals")).alias("shape"),
        (PRIOR_DEALS / pl.max_horizontal(pl.col("team_rate"), pl.lit(1e-9)) + pl.col("exposure")).alias("inv_scale"),
        pl.col("team_size").alias("mean_size"),
        pl.lit(1.0).alias("size_cv"),
    )
    streams = rep.join(
        team.select("team_id", "quota_type", "product_family", "team_rate", "team_size"),
        on=["team_id", "quota_type", "product_family"], how="left", nulls_equal=True,
    ).with_columns(
        (PRIOR_DEALS + pl.col("deals")).alias("shape"),
        (PRIOR_DEALS / pl.max_horizontal(pl.col("team_rate"), pl.lit(1e-9)) + pl.col("exposure")).alias("inv_scale"),
        ((pl.col("credit") + PRIOR_DEALS * pl.col("team_size")) / (pl.col("_raw_deals") + PRIOR_DEALS)).alias("mean_size"),
        pl.lit(1.0).alias("size_cv"),
        pl.lit("rep").alias("source"),
    )
    return NewDealModel(
        streams=streams.select(*KEYS, "shape", "inv_scale", "mean_size", "size_cv", "source"),
        team_streams=team.select("team_id", "quota_type", "product_family", "shape", "inv_scale", "mean_size", "size_cv"),
    )


def draw_new_bookings(params: pl.DataFrame, days_remaining: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """(n_draws, n_rows) credit from deals not yet created, for rows of :meth:`NewDealModel.parameters`
    with their days remaining in the period."""
    n = params.height
    if n == 0:
        return np.zeros((n_draws, 0))
    shape = params["shape"].fill_null(0.0).to_numpy()
    inv_scale = params["inv_scale"].fill_null(1.0).to_numpy()
    size = params["mean_size"].fill_null(0.0).to_numpy()
    cv = params["size_cv"].fill_null(1.0).to_numpy()
    days = np.asarray(days_remaining, dtype=float)
    active = (shape > 0) & (size > 0) & (days > 0)
    out = np.zeros((n_draws, n))
    if not active.any():
        return out
    idx = np.flatnonzero(active)
    rate = rng.gamma(shape[idx], 1.0 / inv_scale[idx], size=(n_draws, idx.size))
    count = rng.poisson(rate * days[idx])
    k = 1.0 / cv[idx] ** 2
    positive = count > 0
    totals = np.zeros_like(rate)
    totals[positive] = rng.gamma(
        (count * k)[positive], np.broadcast_to(size[idx] / k, count.shape)[positive]
    )
    out[:, idx] = totals
    return out
