"""The fiscal calendar: months and quarters, the periods a date falls in, time elapsed, and the ramp
schedule of new hires (docs/contract.md, Rules: "Calendar" and "Ramp").

Plain functions on ``datetime.date`` plus polars expressions for the same rules on whole columns.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import polars as pl

MONTH = "month"
QUARTER = "quarter"
PERIOD_TYPES = (MONTH, QUARTER)


@dataclasses.dataclass(frozen=True)
class FiscalCalendar:
    """Fiscal months and quarters. ``year_start_month`` is the first month of the fiscal year
    (1 = January), so quarters start at that month and every third month after it."""

    year_start_month: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.year_start_month <= 12:
            raise ValueError(
                f"fiscal year start month must be 1-12, got {self.year_start_month} "
                "(QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH)"
            )

    # --- scalar rules -------------------------------------------------------------------------
    def quarter_start(self, d: date) -> date:
        offset = (d.month - self.year_start_month) % 3
        return add_months(date(d.year, d.month, 1), -offset)

    def period_start(self, period_type: str, d: date) -> date:
        if period_type == MONTH:
            return date(d.year, d.month, 1)
        if period_type == QUARTER:
            return self.quarter_start(d)
        raise ValueError(f"unknown period type {period_type!r}")

    def period_end(self, period_type: str, start: date) -> date:
        """The last day (inclusive) of the period that starts at ``start``."""
        months = 1 if period_type == MONTH else 3
        return add_months(start, months) - timedelta(days=1)

    def fiscal_quarter(self, d: date) -> int:
        """1-4: the fiscal quarter of the year that ``d`` falls in."""
        return (d.month - self.year_start_month) % 12 // 3 + 1

    def month_of_quarter(self, d: date) -> int:
        """1-3: the month of its fiscal quarter that ``d`` falls in."""
        return (d.month - self.year_start_month) % 3 + 1

    def is_period_start(self, period_type: str, d: date) -> bool:
        return self.period_start(period_type, d) == d

    def periods_containing(self, d: date) -> list[tuple[str, date, date]]:
        """(period_type, start, end) of the fiscal month and quarter containing ``d``."""
        out = []
        for pt in PERIOD_TYPES:
            start = self.period_start(pt, d)
            out.append((pt, start, self.period_end(pt, start)))
        return out

    # --- column rules -------------------------------------------------------------------------
    def quarter_start_expr(self, d: pl.Expr) -> pl.Expr:
        """The fiscal quarter start of a Date column."""
        month_start = d.dt.truncate("1mo")
        offset = (d.dt.month().cast(pl.Int32) - self.year_start_month) % 3
        return month_start.dt.offset_by(pl.format("-{}mo", offset))

    def period_start_expr(self, period_type: str, d: pl.Expr) -> pl.Expr:
        if period_type == MONTH:
            return d.dt.truncate("1mo")
        return self.quarter_start_expr(d)


def add_months(d: date, months: int) -> date:
    """The same day ``months`` later (day clipped to the month's length)."""
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(year, month, min(d.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def days_in_period(start: date, end: date) -> int:
    return (end - start).days + 1


def time_elapsed_pct(start: date, end: date, as_of: date) -> float:
    """100 x (days of the period up to and including ``as_of``) / (days in the period), clipped to
    0-100 for a date outside the period."""
    elapsed = min(max((as_of - start).days + 1, 0), days_in_period(start, end))
    return 100.0 * elapsed / days_in_period(start, end)


# --- Ramp ---------------------------------------------------------------------------------------

DEFAULT_RAMP = (0.25, 0.50, 0.75)


def month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def ramp_factor_month(month_start: date, hire_date: date | None, ramp: tuple[float, ...]) -> float:
    """The contract's ramp: month k after the hire month (the hire month is k = 0) gets ramp[k] while
    k < len(ramp), then 1.0; months before the hire month get 0; no hire date means tenured."""
    if hire_date is None:
        return 1.0
    k = month_index(month_start) - month_index(hire_date)
    if k < 0:
        return 0.0
    return ramp[k] if k < len(ramp) else 1.0


def ramp_factor(
    period_type: str, period_start: date, hire_date: date | None, ramp: tuple[float, ...]
) -> float:
    """A month's factor, or a quarter's: the mean of its three months' factors."""
    months = 1 if period_type == MONTH else 3
    factors = [
        ramp_factor_month(add_months(period_start, i), hire_date, ramp) for i in range(months)
    ]
    return sum(factors) / months


def parse_ramp(text: str) -> tuple[float, ...]:
    """``"0.25,0.5,0.75"`` -> (0.25, 0.5, 0.75): the factors of months 0, 1, 2, ... after hire."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(
            f"QUOTA_PLATFORM_RAMP_FACTORS must be comma-separated numbers, got {text!r}"
        ) from exc
    if any(not 0 <= v <= 1 for v in values):
        raise ValueError(f"QUOTA_PLATFORM_RAMP_FACTORS must be between 0 and 1, got {text!r}")
    return values
