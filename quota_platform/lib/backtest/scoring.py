"""Scoring projections on closed periods: how close and how honest they were, against baselines.

For every closed period and checkpoint (25%, 50% and 75% of its days), each projection row made on
the checkpoint day is compared with the same row's closed_won at the end of the period, as known on
the period's last day. Per period x checkpoint x level x method:

- ``wape``: sum |P50 - actual| / sum actual; ``bias``: sum (P50 - actual) / sum actual.
- ``coverage_p10_p90``: share of actuals inside [P10, P90]; ``below_p10`` and ``above_p90``: the
  tails (an honest 80% interval has 80% inside and 10% in each tail).
- ``pit_coverage_p10_p90``, ``pit_below_p10``, ``pit_above_p90``: the same from the randomised
  PIT (Czado, Gneiting and Held 2009), which a forecast with a point mass needs. A rep whose
  projection gives "nothing more is won" a 40% chance has P10 = closed won; when nothing more is
  won, the actual sits on that atom, and counting it "inside [P10, P90]" hides whether the 40%
  was right. The randomised PIT of such an actual is uniform over the atom's probability range
  (0 - 40%), so it falls below 10% a quarter of the time. Where the forecast has no atom at the
  actual the two definitions agree. Computed from the stored quantile grid, with the
  distribution taken as uniform between grid levels.
- ``crps``: mean continuous ranked probability score, from the stored quantile grid
  (2 x the mean pinball loss over the grid's levels); for a point forecast, the absolute error.
- ``brier``: mean (P(at risk) - at risk)^2 where at risk means attainment at period end below
  ``Rules.at_risk_pct`` (80% by default);
  ``base_rate`` is the share of rows that ended at risk, and ``brier_skill`` = 1 - brier / (base
  rate x (1 - base rate)), the skill against always forecasting the base rate.

Methods: ``model`` (the platform's projections), ``B1`` (closed + open pipeline due by period end
x OpportunityStage.DefaultProbability), ``B2`` (closed + the same pipeline x the team's historical
in-period conversion rate), ``B3`` (linear pacing: closed / share of the period elapsed). Baselines
are point forecasts: they get WAPE, bias, CRPS (= mean absolute error) and a 0/1 at-risk Brier.
Manager and company baselines are sums of their reps'.

``sum_abs_error``, ``sum_error`` and ``sum_actual`` are kept so that pooled figures over many
periods can be computed exactly (:func:`pooled`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from quota_platform.lib.backtest.baselines import KEYS
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.projection import QUANTILE_GRID
from quota_platform.lib.forecast.training import Period

# Fractions of a period at which its projections are scored (checkpoint_pct 25, 50, 75); not the
# snapshots the models train on (training.TRAINING_CHECKPOINTS).
SCORED_CHECKPOINTS = (0.25, 0.50, 0.75)
METHODS = ("model", "B1", "B2", "B3")

ACCURACY_SCHEMA = {
    "period_type": pl.String(),
    "period_start": pl.Date(),
    "checkpoint_pct": pl.Int64(),
    "level": pl.String(),
    "method": pl.String(),
    "n": pl.Int64(),
    "wape": pl.Float64(),
    "bias": pl.Float64(),
    "coverage_p10_p90": pl.Float64(),
    "below_p10": pl.Float64(),
    "above_p90": pl.Float64(),
    "pit_coverage_p10_p90": pl.Float64(),
    "pit_below_p10": pl.Float64(),
    "pit_above_p90": pl.Float64(),
    "crps": pl.Float64(),
    "brier": pl.Float64(),
    "base_rate": pl.Float64(),
    "brier_skill": pl.Float64(),
    "sum_abs_error": pl.Float64(),
    "sum_error": pl.Float64(),
    "sum_actual": pl.Float64(),
    "checkpoint_date": pl.Date(),
}


def checkpoint_dates(period_type: str, start: date, end: date) -> dict[int, date]:
    period = Period(period_type, start, end)
    return {round(100 * f): period.checkpoint(f) for f in SCORED_CHECKPOINTS}


def checkpoint_rows(projections: pl.DataFrame) -> pl.DataFrame:
    """The projection rows made on a checkpoint day of their period, with checkpoint_pct."""
    periods = projections.select("period_type", "period_start", "period_end").unique()
    table = pl.DataFrame(
        [
            (r["period_type"], r["period_start"], pct, day)
            for r in periods.iter_rows(named=True)
            for pct, day in checkpoint_dates(r["period_type"], r["period_start"], r["period_end"]).items()
        ],
        schema={"period_type": pl.String, "period_start": pl.Date, "checkpoint_pct": pl.Int64, "as_of_date": pl.Date},
        orient="row",
    )
    return projections.join(table, on=["period_type", "period_start", "as_of_date"])


def actual_outcomes(attainment: pl.DataFrame) -> pl.DataFrame:
    """closed_won on each period's last day, per level, entity and period keys."""
    return attainment.filter(pl.col("as_of_date") == pl.col("period_end")).select(
        "level", "entity_id", *KEYS, pl.col("closed_won").alias("actual"), pl.col("quota").alias("actual_quota")
    )


def pit_tail_shares(actual: np.ndarray, quantiles: np.ndarray, levels: np.ndarray, low: float = 0.1, high: float = 0.9):
    """Per row, the probability that the randomised PIT of ``actual`` is below ``low`` and above
    ``high``, given the forecast's quantiles at ``levels`` (rows x levels, increasing). The PIT
    is uniform between F(actual-) and F(actual), bracketed by the grid: the highest level whose
    quantile is below the actual (0 if none) and the lowest whose quantile is above it (1 if none)."""
    actual = np.asarray(actual, dtype=float)[:, None]
    levels = np.asarray(levels, dtype=float)[None, :]
    lower = np.max(np.where(quantiles < actual, levels, 0.0), axis=1)
    upper = np.min(np.where(quantiles > actual, levels, 1.0), axis=1)
    width = np.maximum(upper - lower, 1e-12)
    below = np.clip((low - lower) / width, 0.0, 1.0)
    above = np.clip((upper - high) / width, 0.0, 1.0)
    return below, above


def pinball_loss(predicted: np.ndarray, observed: np.ndarray, quantile: float | np.ndarray) -> np.ndarray:
    """Quantile (pinball) loss of a predicted ``quantile`` against observed values, elementwise
    (the three broadcast together, so ``quantile`` may be a grid of levels): quantile x (y - q)
    if y >= q else (1 - quantile) x (q - y). Its mean over rows and periods is minimised by the
    true quantile. A level outside (0, 1) raises ValueError."""
    levels = np.asarray(quantile, dtype=np.float64)
    if not np.all((0.0 < levels) & (levels < 1.0)):
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    diff = np.asarray(observed, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return np.maximum(levels * diff, (levels - 1.0) * diff)


def interval_coverage(lower: np.ndarray, upper: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """True where lower <= observed <= upper (False where any of them is NaN). The mean over
    rows of a P10-P90 interval should be near 0.8 when the projections are calibrated."""
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)
    return (lo <= y) & (y <= hi)


def score(rows: pl.DataFrame, rules: Rules = Rules()) -> pl.DataFrame:
    """Metrics per period x checkpoint x level x method from checkpoint rows joined with their
    actual outcome (columns of :func:`baseline_forecasts` plus ``actual``). ``rules`` give the
    at-risk line the Brier score is about (the contract's default unless passed)."""
    rows = rows.filter(pl.col("actual").is_not_null())
    if rows.is_empty():
        return pl.DataFrame(schema=ACCURACY_SCHEMA)
    actual = rows["actual"].to_numpy()
    quota = rows["quota"].to_numpy()
    has_quota = quota > 0
    at_risk = np.where(has_quota, actual < rules.at_risk_pct / 100.0 * np.where(has_quota, quota, 1.0), np.nan)
    quantiles = np.array(rows["projected_quantiles"].to_list(), dtype=float)
    levels = np.array(QUANTILE_GRID)
    crps_model = 2.0 * pinball_loss(quantiles, actual[:, None], levels[None, :]).mean(axis=1)
    pit_below, pit_above = pit_tail_shares(actual, quantiles, levels)
    per_method = []
    for method in METHODS:
        if method == "model":
            point = rows["projected_p50"].to_numpy()
            p10, p90 = rows["projected_p10"].to_numpy(), rows["projected_p90"].to_numpy()
            crps = crps_model
            prob = rows["prob_at_risk"].fill_null(np.nan).to_numpy()
            pit = (pit_below, pit_above)
        else:
            point = rows[method].to_numpy()
            p10 = p90 = np.full(point.shape, np.nan)
            crps = np.abs(point - actual)
            prob = np.where(has_quota, (point < rules.at_risk_pct / 100.0 * np.where(has_quota, quota, 1.0)).astype(float), np.nan)
            pit = (np.full(point.shape, np.nan), np.full(point.shape, np.nan))
        per_method.append(
            rows.select("period_type", "period_start", "checkpoint_pct", "level", pl.col("as_of_date").alias("checkpoint_date")).with_columns(
                pl.lit(method).alias("method"),
                pl.Series("_err", point - actual),
                pl.Series("_actual", actual),
                pl.Series("_inside", np.where(np.isnan(p10), np.nan, interval_coverage(p10, p90, actual).astype(float))),
                pl.Series("_below", np.where(np.isnan(p10), np.nan, (actual < p10).astype(float))),
                pl.Series("_above", np.where(np.isnan(p90), np.nan, (actual > p90).astype(float))),
                pl.Series("_pit_below", pit[0]),
                pl.Series("_pit_above", pit[1]),
                pl.Series("_crps", crps),
                pl.Series("_brier", (prob - at_risk) ** 2),
                pl.Series("_risk", at_risk),
            )
        )
    long = pl.concat(per_method).with_columns(
        pl.col(c).fill_nan(None) for c in ("_inside", "_below", "_above", "_pit_below", "_pit_above", "_brier", "_risk")
    )
    grouped = long.group_by("period_type", "period_start", "checkpoint_pct", "level", "method").agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("_err").abs().sum().alias("sum_abs_error"),
        pl.col("_err").sum().alias("sum_error"),
        pl.col("_actual").sum().alias("sum_actual"),
        pl.col("_inside").mean().alias("coverage_p10_p90"),
        pl.col("_below").mean().alias("below_p10"),
        pl.col("_above").mean().alias("above_p90"),
        pl.col("_pit_below").mean().alias("pit_below_p10"),
        pl.col("_pit_above").mean().alias("pit_above_p90"),
        (1 - pl.col("_pit_below").mean() - pl.col("_pit_above").mean()).alias("pit_coverage_p10_p90"),
        pl.col("_crps").mean().alias("crps"),
        pl.col("_brier").mean().alias("brier"),
        pl.col("_risk").mean().alias("base_rate"),
        pl.col("checkpoint_date").first(),
    )
    return with_ratios(grouped).select(list(ACCURACY_SCHEMA)).cast(ACCURACY_SCHEMA).sort(
        "period_type", "period_start", "checkpoint_pct", "level", "method"
    )


def with_ratios(frame: pl.DataFrame) -> pl.DataFrame:
    actual = pl.col("sum_actual")
    reference = pl.col("base_rate") * (1 - pl.col("base_rate"))
    return frame.with_columns(
        pl.when(actual > 0).then(pl.col("sum_abs_error") / actual).alias("wape"),
        pl.when(actual > 0).then(pl.col("sum_error") / actual).alias("bias"),
        pl.when(reference > 0).then(1 - pl.col("brier") / reference).alias("brier_skill"),
    )


def pooled(accuracy: pl.DataFrame) -> pl.DataFrame:
    """Figures over every period scored, per period type x checkpoint x level x method: sums for
    WAPE and bias, n-weighted means for coverage, tails, CRPS and Brier."""
    weighted = lambda c: ((pl.col(c) * pl.col("n")).sum() / pl.col("n").filter(pl.col(c).is_not_null()).sum()).fill_nan(None).alias(c)  # noqa: E731
    out = accuracy.group_by("period_type", "checkpoint_pct", "level", "method").agg(
        pl.col("period_start").n_unique().alias("periods"),
        pl.col("n").sum(),
        pl.col("sum_abs_error").sum(),
        pl.col("sum_error").sum(),
        pl.col("sum_actual").sum(),
        *[
            weighted(c)
            for c in (
                "coverage_p10_p90", "below_p10", "above_p90", "pit_coverage_p10_p90", "pit_below_p10", "pit_above_p90",
                "crps", "brier", "base_rate",
            )
        ],
    )
    return with_ratios(out).sort("period_type", "checkpoint_pct", "level", "method")
