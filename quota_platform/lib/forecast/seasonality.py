"""Seasonality: how much stronger or weaker the period being projected is than the average period of
the trailing window the models were fitted on, by its place in the fiscal year.

The win-rate model and the deals-not-yet-created model are fitted on a trailing window (6 months by
default), so they describe the average period of that window. A fourth quarter that closes more of
its pipeline than a second, or the third month of a quarter that carries the quarter-end push
(quarter-end bunching, for monthly quotas), is then projected too low or too high. This module
estimates those effects from a longer lookback (24 months by default) and turns them into an offset
for the target period relative to the window, with its uncertainty.

Two responses per closed period p of the lookback (one period type at a time):

- win rates: ``delta_p``, the logit shift that makes the period's observed in-period wins equal to
  their expectation under the lookback's pooled rates (per stage x deal class x close-date bucket x
  checkpoint), with sampling variance 1 / sum(n p (1 - p));
- new deals: ``log(N_p + 0.5)``, N_p the deals created after the period's first checkpoint (10%)
  and won within it, with sampling variance 1 / (N_p + 0.5).

Each is modelled as ``y_p = b0 + b1 t_p + sum_f s_f[position_f(p)] + e_p``: a level and a linear
trend (growth, headcount; flat priors), seasonal effects per factor (fiscal quarter of the year for
every period type, and month of the quarter for months) drawn from N(0, tau_f^2), and
``e_p ~ N(0, v_p + sigma^2)`` (sampling noise plus a common period shock). The scales sigma and tau_f
are integrated over a grid, weighted by the restricted likelihood and a half-normal prior (scale
PRIOR_SCALE), so effects the data cannot tell from noise shrink to zero: an org without seasonality
gets offsets near 0 with a small added spread, not a made-up pattern. Effects of positions the
lookback never saw are their prior.

The offset applied to the target period T is ``c' s`` with ``c = z(T) - mean over window periods
of z(p)`` (z the position indicators), because the fitted models already sit at the window's average;
its variance ``c' Cov(s) c`` is added to the projection's spread. Nothing here imports Dagster.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date

import numpy as np
import polars as pl

from quota_platform.lib.core import calendar as cal
from quota_platform.lib.forecast.training import TRAINING_CHECKPOINTS, Period

# Grid of the scales (sigma, tau per factor) on the response scale (logit or log), and the half-normal
# prior on each: effects above ~0.5 (a 65% swing in odds or volume) are implausible for a period's place.
SCALE_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7)
PRIOR_SCALE = 0.25
# Fewer closed periods than this in the lookback: no seasonal estimate (offset 0, no added spread).
MIN_PERIODS = {cal.QUARTER: 5, cal.MONTH: 13}
FACTORS = {cal.QUARTER: ("fiscal_quarter",), cal.MONTH: ("fiscal_quarter", "month_of_quarter")}
LEVELS = {"fiscal_quarter": (1, 2, 3, 4), "month_of_quarter": (1, 2, 3)}


@dataclasses.dataclass(frozen=True)
class SeasonalFit:
    """Posterior of the seasonal effects of one response: ``labels`` name the entries of ``mean``
    and ``cov`` ("fiscal_quarter=4", ...); ``n_periods`` closed periods were used; ``reason`` says
    why nothing was estimated when ``labels`` is empty."""

    labels: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray
    n_periods: int
    reason: str = ""
    # posterior of sigma, the sd of a period's common shock net of trend and season: grid values
    # and their weights (empty when nothing was estimated)
    shock_grid: tuple[float, ...] = ()
    shock_weights: tuple[float, ...] = ()

    def offset(self, period_type: str, target: date, window: list[date], calendar: cal.FiscalCalendar) -> tuple[float, float]:
        """(mean, sd) of the target period's effect minus the window periods' average effect."""
        if not self.labels or not window:
            return 0.0, 0.0
        c = _indicators(period_type, [target], calendar)[0] - _indicators(period_type, window, calendar).mean(axis=0)
        mean = float(c @ self.mean)
        return mean, float(np.sqrt(max(c @ self.cov @ c, 0.0)))

    def effects(self) -> dict[str, float]:
        return {label: round(float(m), 4) for label, m in zip(self.labels, self.mean)}


def none(reason: str, n_periods: int = 0) -> SeasonalFit:
    return SeasonalFit((), np.zeros(0), np.zeros((0, 0)), n_periods, reason)


def _labels(period_type: str) -> tuple[str, ...]:
    return tuple(f"{f}={level}" for f in FACTORS[period_type] for level in LEVELS[f])


def _indicators(period_type: str, starts: list[date], calendar: cal.FiscalCalendar) -> np.ndarray:
    """(n, n_levels) 0/1 position indicators of periods starting on ``starts``."""
    position = {"fiscal_quarter": calendar.fiscal_quarter, "month_of_quarter": calendar.month_of_quarter}
    blocks = []
    for f in FACTORS[period_type]:
        levels = LEVELS[f]
        z = np.zeros((len(starts), len(levels)))
        for i, d in enumerate(starts):
            z[i, levels.index(position[f](d))] = 1.0
        blocks.append(z)
    return np.hstack(blocks)


def fit_effects(
    period_type: str,
    starts: list[date],
    y: np.ndarray,
    sampling_var: np.ndarray,
    calendar: cal.FiscalCalendar,
) -> SeasonalFit:
    """Posterior mean and covariance of the seasonal effects for responses ``y`` of the periods
    starting on ``starts`` (see the module docstring), scales integrated over SCALE_GRID."""
    y = np.asarray(y, dtype=float)
    v = np.asarray(sampling_var, dtype=float)
    n = y.size
    if n < MIN_PERIODS[period_type]:
        return none(f"{n} closed {period_type}(s) in the lookback, fewer than {MIN_PERIODS[period_type]}", n)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v)) and np.all(v >= 0)):
        raise ValueError("seasonality: responses and sampling variances must be finite and variances >= 0")
    t = np.array([(d - starts[0]).days / 365.25 for d in starts])
    x = np.column_stack([np.ones(n), t])
    z = _indicators(period_type, starts, calendar)
    sizes = [len(LEVELS[f]) for f in FACTORS[period_type]]
    factor_of = np.repeat(np.arange(len(sizes)), sizes)

    grid = np.array(SCALE_GRID)
    log_prior_1d = -0.5 * (grid / PRIOR_SCALE) ** 2 + np.log(np.gradient(grid))  # half-normal x spacing
    results = []
    for combo in itertools.product(range(grid.size), repeat=1 + len(sizes)):
        sigma, taus = grid[combo[0]], grid[list(combo[1:])]
        d = taus[factor_of] ** 2
        vmat = np.diag(v + sigma**2) + (z * d) @ z.T
        try:
            vinv = np.linalg.inv(vmat)
            xv = x.T @ vinv
            xvx = xv @ x
            p = vinv - xv.T @ np.linalg.solve(xvx, xv)
            sign_v, logdet_v = np.linalg.slogdet(vmat)
            sign_x, logdet_x = np.linalg.slogdet(xvx)
        except np.linalg.LinAlgError:
            continue
        if sign_v <= 0 or sign_x <= 0:
            continue
        log_lik = -0.5 * (logdet_v + logdet_x + y @ p @ y)
        dz = d[:, None] * z.T  # D Z'
        mean = dz @ p @ y
        cov = np.diag(d) - dz @ p @ dz.T
        results.append((log_lik + sum(log_prior_1d[list(combo)]), mean, cov, combo[0]))
    if not results:
        return none("no scale on the grid gave a proper likelihood", n)
    logw = np.array([r[0] for r in results])
    w = np.exp(logw - logw.max())
    w /= w.sum()
    means = np.array([r[1] for r in results])
    mean = w @ means
    second = sum(wi * (c + np.outer(m, m)) for wi, (_, m, c, _) in zip(w, results))
    cov = second - np.outer(mean, mean)
    shock = np.bincount([r[3] for r in results], weights=w, minlength=grid.size)
    return SeasonalFit(
        _labels(period_type), mean, (cov + cov.T) / 2.0, n,
        shock_grid=tuple(float(g) for g in grid), shock_weights=tuple(float(x) for x in shock / shock.sum()),
    )


# --- the responses ------------------------------------------------------------------------------


def win_rate_shifts(cells: pl.DataFrame) -> pl.DataFrame:
    """Per period_id: ``delta`` (logit shift of the period against the pooled rates of all the
    cells' periods) and ``var`` (its sampling variance), from win_rate_cells rows."""
    keys = ["stage", "deal_class", "close_date_bucket", "elapsed"]
    keys = [k for k in keys if k in cells.columns]
    pooled = cells.group_by(keys).agg(
        ((pl.col("wins").sum() + 0.5) / (pl.col("trials").sum() + 1.0)).alias("_rate")
    )
    per = (
        cells.group_by(["period_id", *keys])
        .agg(pl.col("trials").sum(), pl.col("wins").sum())
        .join(pooled, on=keys)
        .with_columns((pl.col("_rate") / (1 - pl.col("_rate"))).log().alias("_logit"))
    )
    out = []
    for (period_id,), g in per.group_by(["period_id"], maintain_order=True):
        n, w, base = g["trials"].to_numpy(), float(g["wins"].sum()), g["_logit"].to_numpy()
        delta = _solve_shift(n, w, base)
        p = 1.0 / (1.0 + np.exp(-(base + delta)))
        info = float(np.sum(n * p * (1 - p)))
        out.append((period_id, delta, 1.0 / info if info > 0 else np.inf))
    return pl.DataFrame(out, schema={"period_id": pl.String, "delta": pl.Float64, "var": pl.Float64}, orient="row")


def _solve_shift(n: np.ndarray, wins: float, base: np.ndarray) -> float:
    """delta with sum n sigmoid(base + delta) = wins (Newton, wins kept inside (0, sum n))."""
    total = float(n.sum())
    if total <= 0:
        return 0.0
    target = min(max(wins, 0.5 * min(1.0, total)), total - 0.5 * min(1.0, total))
    delta = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(base + delta)))
        f = float(np.sum(n * p)) - target
        slope = float(np.sum(n * p * (1 - p)))
        if slope <= 0:
            break
        step = f / slope
        delta -= float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-10:
            break
    return delta


def new_deal_counts(won: pl.DataFrame, periods: list[Period]) -> pl.DataFrame:
    """Per period_id: ``count`` of deals created after the period's first checkpoint and won within
    it, from (period_id, Id, created) rows of won deals; ``y`` = log(count + 0.5), ``var``."""
    first = pl.DataFrame(
        [(p.id, p.checkpoint(TRAINING_CHECKPOINTS[0])) for p in periods],
        schema={"period_id": pl.String, "_first": pl.Date},
        orient="row",
    )
    counts = (
        won.join(first, on="period_id")
        .filter(pl.col("created") > pl.col("_first"))
        .group_by("period_id")
        .agg(pl.len().alias("count"))
    )
    return (
        first.join(counts, on="period_id", how="left")
        .with_columns(pl.col("count").fill_null(0).cast(pl.Float64))
        .with_columns((pl.col("count") + 0.5).log().alias("y"), (1.0 / (pl.col("count") + 0.5)).alias("var"))
        .select("period_id", "count", "y", "var")
    )


@dataclasses.dataclass(frozen=True)
class SeasonalAdjustment:
    """What a projection of the target period applies: logit offset of the win rates and log
    factor of the new-deal rate, each (mean, sd), with the effects behind them for metadata."""

    win_rate_logit: tuple[float, float] = (0.0, 0.0)
    new_deal_log: tuple[float, float] = (0.0, 0.0)
    details: dict = dataclasses.field(default_factory=dict)
    # sd of the target period's common win-rate shock against the window's average: (values,
    # weights) of its posterior from the lookback, or None to use the win-rate fit's own
    # (estimated from the window's few periods only)
    shock_sd: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def shock_sd_draws(self, uniforms: np.ndarray) -> np.ndarray | None:
        """One shock sd per draw from its posterior, by inverting its distribution at
        ``uniforms`` (0-1, one per draw); None when the lookback estimated none."""
        if self.shock_sd is None:
            return None
        values, weights = np.asarray(self.shock_sd[0]), np.asarray(self.shock_sd[1])
        cdf = np.cumsum(weights)
        index = np.searchsorted(cdf / cdf[-1], np.asarray(uniforms), side="right")
        return values[np.minimum(index, values.size - 1)]


def seasonal_adjustment(
    period_type: str,
    target: date,
    window: list[date],
    win_rates: SeasonalFit,
    new_deals: SeasonalFit,
    calendar: cal.FiscalCalendar,
) -> SeasonalAdjustment:
    wr = win_rates.offset(period_type, target, window, calendar)
    nd = new_deals.offset(period_type, target, window, calendar)
    shock = None
    if win_rates.shock_grid and window:
        # a new period's shock against the average of the window's n periods: sd x sqrt(1 + 1/n)
        widen = float(np.sqrt(1.0 + 1.0 / len(window)))
        shock = (tuple(g * widen for g in win_rates.shock_grid), win_rates.shock_weights)
    shock_mean = float(np.dot(*shock)) if shock else None
    return SeasonalAdjustment(
        win_rate_logit=wr,
        new_deal_log=nd,
        shock_sd=shock,
        details={
            "target_period_start": target.isoformat(),
            "win_rate_offset": [round(wr[0], 4), round(wr[1], 4)],
            "new_deal_offset": [round(nd[0], 4), round(nd[1], 4)],
            "win_rate_effects": win_rates.effects(),
            "new_deal_effects": new_deals.effects(),
            "lookback_periods": win_rates.n_periods,
            "period_shock_sd_mean": None if shock_mean is None else round(shock_mean, 4),
            "note": win_rates.reason or new_deals.reason,
        },
    )
