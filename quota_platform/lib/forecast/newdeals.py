"""Bookings from deals not yet created: opportunities that will be created after the as-of date and
won within the period. Without this term early-period projections are biased low.

Model, per rep x quota type x product family (a "stream"):

- The number of such deals from a point of the period on is Poisson(rate x exposure), with the
  rate Gamma-distributed. The exposure is not the days remaining: a deal created with 60 days left
  has time to close, one created with 5 days left hardly ever does, so the volume still to come
  falls faster than the calendar. It is the *effective days* of the exposure curve
  (:func:`exposure_curve`): the days remaining at the first training checkpoint, scaled at later
  checkpoints by the share of new-deal volume the training periods still produced from there
  (per quota type, from the whole company; linear in the days remaining where too few deals
  show the shape). The rate is a team-level prior (the team's pooled rate, worth ``PRIOR_DEALS`` deals of
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

from quota_platform.lib.forecast.training import TRAINING_CHECKPOINTS

PRIOR_DEALS = 2.0
KEYS = ["rep_id", "quota_type", "product_family"]
# Deals at the first checkpoint needed to trust a quota type's own exposure curve; below it the
# curve of all types together is used, and below that the days remaining (linear).
MIN_CURVE_DEALS = 20.0


@dataclasses.dataclass(frozen=True)
class NewDealModel:
    """Posterior parameters per stream: rate ~ Gamma(shape, rate=inv_scale) deals/day, mean size and
    cv of one deal's credit."""

    streams: pl.DataFrame  # rep_id, quota_type, product_family, shape, inv_scale, mean_size, size_cv, source
    team_streams: pl.DataFrame  # team_id, quota_type, product_family, shape, inv_scale, mean_size, size_cv
    # quota_type (null: all types), elapsed, days_remaining, effective_days (exposure_curve)
    curve: pl.DataFrame | None = None

    def exposure(self, quota_types: list[str], elapsed: float, days_remaining: float) -> np.ndarray:
        """Effective days of exposure left at ``elapsed`` (0-1) of the period, per quota type."""
        known = {q: effective_days(self.curve, q, elapsed, days_remaining) for q in set(quota_types)}
        return np.array([known[q] for q in quota_types], dtype=float)

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


def exposure_curve(history: pl.DataFrame) -> pl.DataFrame:
    """Per quota type (and null: all types together) and training checkpoint: the mean days
    remaining and the effective days, = days remaining at the first checkpoint x deals still to
    come from this checkpoint / deals still to come from the first (company totals, made
    non-increasing). Quota types whose first checkpoint saw fewer than MIN_CURVE_DEALS deals are
    left out (they use the all-types curve)."""
    schema = {"quota_type": pl.String, "elapsed": pl.Float64, "days_remaining": pl.Float64, "effective_days": pl.Float64}
    parts = []
    for by_type, frame in ((True, history), (False, history.with_columns(pl.lit(None, pl.String).alias("quota_type")))):
        per = (
            frame.group_by("quota_type", "elapsed")
            .agg(pl.col("deals").sum().cast(pl.Float64), pl.col("days_remaining").mean().cast(pl.Float64))
            .sort("quota_type", "elapsed", nulls_last=True)
            .with_columns(
                pl.col("deals").first().over("quota_type").alias("_first_deals"),
                pl.col("days_remaining").first().over("quota_type").alias("_first_days"),
            )
            .filter(pl.col("_first_deals") >= MIN_CURVE_DEALS)
            .with_columns(
                (pl.col("_first_days") * pl.col("deals") / pl.col("_first_deals"))
                .cum_min()
                .over("quota_type")
                .alias("effective_days")
            )
        )
        if by_type:
            per = per.filter(pl.col("quota_type").is_not_null())
        parts.append(per.select(list(schema)).cast(schema))
    return pl.concat(parts)


def effective_days(curve: pl.DataFrame | None, quota_type: str | None, elapsed: float, days_remaining: float) -> float:
    """The exposure left at ``elapsed`` of the period: the quota type's curve (else all types'),
    interpolated in elapsed and reaching 0 at the period end; before the first checkpoint, scaled
    with the days remaining; with no curve, the days remaining."""
    if days_remaining <= 0:
        return 0.0
    if curve is None or curve.is_empty():
        return float(days_remaining)
    points = curve.filter(pl.col("quota_type") == quota_type) if quota_type is not None else curve.clear()
    if points.is_empty():
        points = curve.filter(pl.col("quota_type").is_null())
    if points.is_empty():
        return float(days_remaining)
    points = points.sort("elapsed")
    e, eff = points["elapsed"].to_numpy(), points["effective_days"].to_numpy()
    if elapsed <= e[0]:
        first_days = float(points["days_remaining"][0])
        return float(eff[0] * days_remaining / first_days) if first_days > 0 else float(days_remaining)
    return float(np.interp(elapsed, np.append(e, 1.0), np.append(eff, 0.0)))


def fit_new_deals(history: pl.DataFrame, teams: pl.DataFrame) -> NewDealModel:
    """``history`` from :func:`training.new_deal_history`; ``teams`` maps rep_id -> team_id."""
    per_deal_weight = 1.0 / len(TRAINING_CHECKPOINTS)
    curve = exposure_curve(history)
    points = history.select("quota_type", "elapsed", "days_remaining").unique()
    points = points.with_columns(
        pl.Series(
            "exposure",
            [effective_days(curve, q, e, d) for q, e, d in points.iter_rows()],
            dtype=pl.Float64,
        )
    )
    h = history.join(points, on=["quota_type", "elapsed", "days_remaining"], how="left", nulls_equal=True)
    h = h.join(teams, on="rep_id", how="left").with_columns(pl.col("team_id").fill_null("(no team)"))
    rep = h.group_by(KEYS + ["team_id"]).agg(
        (pl.col("deals").sum() * per_deal_weight).alias("deals"),
        (pl.col("exposure").sum() * per_deal_weight).alias("exposure"),
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
        curve=curve,
    )


def draw_new_bookings(
    params: pl.DataFrame,
    days_remaining: np.ndarray,
    n_draws: int,
    rng: np.random.Generator,
    rate_factor: np.ndarray | None = None,
) -> np.ndarray:
    """(n_draws, n_rows) credit from deals not yet created, for rows of :meth:`NewDealModel.parameters`
    with their exposure left in the period (:meth:`NewDealModel.exposure`). ``rate_factor`` (n_draws,): a multiplier of every
    stream's rate per draw (the period's seasonal strength), common to all rows."""
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
    if rate_factor is not None:
        rate *= np.asarray(rate_factor, dtype=float).reshape(n_draws, 1)
    count = rng.poisson(rate * days[idx])
    k = 1.0 / cv[idx] ** 2
    positive = count > 0
    totals = np.zeros_like(rate)
    totals[positive] = rng.gamma(
        (count * k)[positive], np.broadcast_to(size[idx] / k, count.shape)[positive]
    )
    out[:, idx] = totals
    return out
