"""Historical pacing: the share of a period's bookings usually closed by a given point of the
period. Quarter-end bunching makes it far from a straight line, so "on pace" against it is a fairer
read early in a period than linear pace."""

from __future__ import annotations

import numpy as np
import polars as pl

# Elapsed fractions the curve is tabulated at; values in between are interpolated.
GRID = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))


def pacing_curve(won: pl.DataFrame) -> pl.DataFrame:
    """``won`` has one row per (period_id, period_start, period_end, close_date, amount_usd) of the
    deals won in closed training periods. Returns (elapsed, share): the amount-weighted share of a
    period's bookings closed by the end of day ``elapsed`` x days, averaged over periods (each
    period weighs the same). With no history, the linear curve."""
    if won.is_empty():
        return pl.DataFrame({"elapsed": list(GRID), "share": list(GRID)})
    days = (pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1
    done = (pl.col("close_date") - pl.col("period_start")).dt.total_days() + 1
    per = won.with_columns((done / days).alias("_at"), pl.col("amount_usd").sum().over("period_id").alias("_total"))
    per = per.filter(pl.col("_total") > 0)
    grid = pl.DataFrame({"elapsed": list(GRID)})
    curve = (
        grid.join(per, how="cross")
        .group_by("elapsed", "period_id")
        .agg(((pl.col("_at") <= pl.col("elapsed") + 1e-9) * pl.col("amount_usd")).sum().truediv(pl.col("_total").first()).alias("share"))
        .group_by("elapsed")
        .agg(pl.col("share").mean())
        .sort("elapsed")
    )
    return curve


def share_at(curve: pl.DataFrame, elapsed: np.ndarray) -> np.ndarray:
    """The curve's share at each elapsed fraction (0 at the start, interpolated, 1 at the end)."""
    x = np.concatenate([[0.0], curve["elapsed"].to_numpy()])
    y = np.concatenate([[0.0], curve["share"].to_numpy()])
    return np.interp(np.asarray(elapsed, dtype=float), x, y)
