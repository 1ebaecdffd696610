"""The fiscal calendar and ramp rules of docs/contract.md (Rules: "Calendar", "Ramp"), on dates
worked out by hand."""

from datetime import date

import polars as pl
import pytest

from quota_platform.lib.core.calendar import (
    DEFAULT_RAMP,
    FiscalCalendar,
    add_months,
    parse_ramp,
    ramp_factor,
    time_elapsed_pct,
)


def test_calendar_quarters_follow_fiscal_year_start():
    jan = FiscalCalendar(1)
    assert jan.quarter_start(date(2025, 3, 31)) == date(2025, 1, 1)
    assert jan.quarter_start(date(2025, 4, 1)) == date(2025, 4, 1)
    feb = FiscalCalendar(2)  # quarters Feb-Apr, May-Jul, Aug-Oct, Nov-Jan
    assert feb.quarter_start(date(2025, 1, 31)) == date(2024, 11, 1)
    assert feb.quarter_start(date(2025, 4, 30)) == date(2025, 2, 1)
    assert feb.period_end("quarter", date(2024, 11, 1)) == date(2025, 1, 31)


def test_column_rule_matches_scalar_rule():
    cal = FiscalCalendar(11)
    days = [date.fromordinal(date(2024, 1, 1).toordinal() + i) for i in range(0, 730, 7)]
    frame = pl.DataFrame({"d": days}).with_columns(q=cal.quarter_start_expr(pl.col("d")))
    assert frame["q"].to_list() == [cal.quarter_start(d) for d in days]


def test_period_end_and_leap_february():
    cal = FiscalCalendar(1)
    assert cal.period_end("month", date(2024, 2, 1)) == date(2024, 2, 29)
    assert cal.period_end("quarter", date(2024, 10, 1)) == date(2024, 12, 31)
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)


def test_time_elapsed_counts_the_as_of_day():
    # Q1 2025 has 31 + 28 + 31 = 90 days; Feb 14 is day 31 + 14 = 45.
    assert time_elapsed_pct(date(2025, 1, 1), date(2025, 3, 31), date(2025, 2, 14)) == 50.0
    assert time_elapsed_pct(date(2025, 1, 1), date(2025, 3, 31), date(2025, 1, 1)) == pytest.approx(100 / 90)
    assert time_elapsed_pct(date(2025, 1, 1), date(2025, 3, 31), date(2025, 3, 31)) == 100.0


def test_ramp_months_and_quarters():
    hired = date(2025, 2, 17)  # Feb is k=0
    assert ramp_factor("month", date(2025, 1, 1), hired, DEFAULT_RAMP) == 0.0
    assert ramp_factor("month", date(2025, 2, 1), hired, DEFAULT_RAMP) == 0.25
    assert ramp_factor("month", date(2025, 4, 1), hired, DEFAULT_RAMP) == 0.75
    assert ramp_factor("month", date(2025, 5, 1), hired, DEFAULT_RAMP) == 1.0
    # Q1: Jan 0, Feb 0.25, Mar 0.5 -> 0.25; Q2: Apr 0.75, May 1, Jun 1 -> 2.75 / 3
    assert ramp_factor("quarter", date(2025, 1, 1), hired, DEFAULT_RAMP) == pytest.approx(0.25)
    assert ramp_factor("quarter", date(2025, 4, 1), hired, DEFAULT_RAMP) == pytest.approx(2.75 / 3)
    assert ramp_factor("quarter", date(2025, 4, 1), None, DEFAULT_RAMP) == 1.0


def test_ramp_setting_is_validated():
    assert parse_ramp("0.5, 1") == (0.5, 1.0)
    with pytest.raises(ValueError, match="QUOTA_PLATFORM_RAMP_FACTORS"):
        parse_ramp("half")
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_ramp("1.5")
