"""Training data for the projection models: periods, checkpoints, buckets and outcomes on a
hand-written history, and a test that would catch leakage of data from after the cut-off."""

from datetime import date

import polars as pl
import pytest

from quota_platform.lib.attainment.crediting import CreditInputs, stage_flags
from quota_platform.lib.core.calendar import FiscalCalendar
from quota_platform.lib.core.contract import conform, empty_frame
from quota_platform.lib.core.quota_types import deal_class
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.training import (
    Period,
    as_known_before,
    assert_no_leakage,
    new_deal_history,
    training_periods,
    win_rate_cells,
)


def frame(obj, rows):
    return conform(obj, pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}, orient="row"))


STAGES = frame(
    "OpportunityStage",
    [
        {"ApiName": "Prospecting", "IsClosed": "false", "IsWon": "false"},
        {"ApiName": "Negotiation", "IsClosed": "false", "IsWon": "false"},
        {"ApiName": "Closed Won", "IsClosed": "true", "IsWon": "true"},
        {"ApiName": "Closed Lost", "IsClosed": "true", "IsWon": "false"},
    ],
)


def opp(id, created, owner="R1", type_="New Business"):
    return {"Id": id, "OwnerId": owner, "Type": type_, "StageName": "x", "Amount": "0", "CloseDate": "2025-01-01",
            "CreatedDate": created, "IsClosed": "false", "IsWon": "false"}


def hist(id, created, stage, amount, close):
    return {"OpportunityId": id, "CreatedDate": created, "StageName": stage, "Amount": amount, "CloseDate": close}


# Q1 2025 (90 days): checkpoints at 10% (day 9: Jan 9), 30% (day 27: Jan 27), 50% (day 45: Feb 14),
# 70% (day 63: Mar 4), 90% (day 81: Mar 22).
OPPS = frame("Opportunity", [
    opp("A", "2024-12-20T10:00:00Z"),  # open all quarter, won Mar 10 -> won within Q1
    opp("B", "2025-01-20T10:00:00Z"),  # open from Jan 20, close date in April -> later, lost
    opp("C", "2025-02-20T10:00:00Z"),  # created after Feb 14, won Mar 1: a "new deal" for the first 3 checkpoints
])
HISTORY = frame("OpportunityHistory", [
    hist("A", "2024-12-20T10:00:00Z", "Prospecting", "1000", "2025-02-01"),
    hist("A", "2025-03-10T10:00:00Z", "Closed Won", "1000", "2025-03-10"),
    hist("B", "2025-01-20T10:00:00Z", "Negotiation", "500", "2025-04-15"),
    hist("B", "2025-03-30T10:00:00Z", "Closed Lost", "500", "2025-03-30"),
    hist("C", "2025-02-20T10:00:00Z", "Negotiation", "300", "2025-03-01"),
    hist("C", "2025-03-01T10:00:00Z", "Closed Won", "300", "2025-03-01"),
])
TEAMS = pl.DataFrame({"rep_id": ["R1"], "team_id": ["M1"]})
Q1 = Period("quarter", date(2025, 1, 1), date(2025, 3, 31))


def test_training_periods_end_before_the_snapshot_month():
    cal = FiscalCalendar(1)
    got = training_periods(date(2025, 5, 1), 6, "quarter", cal)
    # ended before May 1 and on or after Nov 1 2024: Q4 2024 (ends Dec 31) and Q1 2025
    assert [(p.start, p.end) for p in got] == [(date(2024, 10, 1), date(2024, 12, 31)), (date(2025, 1, 1), date(2025, 3, 31))]
    assert [p.start for p in training_periods(date(2025, 5, 1), 3, "month", cal)] == [date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1)]
    assert [Q1.checkpoint(f) for f in (0.1, 0.3, 0.5, 0.7, 0.9)] == [date(2025, 1, 9), date(2025, 1, 27), date(2025, 2, 14), date(2025, 3, 4), date(2025, 3, 22)]


def test_deal_class_of_each_type():
    types = pl.Series(["New Business", "Expansion", "Upsell", "Existing Business", "Renewal", "Partner", None])
    got = pl.select(deal_class(pl.lit(types))).to_series().to_list()
    assert got == ["new_business", "expansion", "expansion", "expansion", "renewal", "other", "other"]


def test_win_rate_cells_by_hand():
    cells = win_rate_cells(OPPS, HISTORY, stage_flags(STAGES, OPPS), TEAMS, [Q1])
    assert set(cells["deal_class"].to_list()) == {"new_business"}
    got = {(r["stage"], r["close_date_bucket"], round(r["elapsed"], 4)): (r["trials"], r["wins"]) for r in cells.iter_rows(named=True)}
    # A is open at Jan 9, Jan 27, Feb 14 and Mar 4 (won Mar 10, so closed by Mar 22): weight 1/4
    # each, won; close date Feb 1 is ahead of Jan 9 and Jan 27 (in_period) and passed by Feb 14
    # and Mar 4 (overdue).
    # B is open at Jan 27, Feb 14, Mar 4, Mar 22 (weight 1/4), close date Apr 15: later; lost.
    # C (created Feb 20, won Mar 1) is open at no checkpoint.
    assert got == {
        ("Prospecting", "in_period", 0.1): (0.25, 0.25),
        ("Prospecting", "in_period", 0.3): (0.25, 0.25),
        ("Prospecting", "overdue", 0.5): (0.25, 0.25),
        ("Prospecting", "overdue", 0.7): (0.25, 0.25),
        ("Negotiation", "later", 0.3): (0.25, 0.0),
        ("Negotiation", "later", 0.5): (0.25, 0.0),
        ("Negotiation", "later", 0.7): (0.25, 0.0),
        ("Negotiation", "later", 0.9): (0.25, 0.0),
    }
    assert set(cells["team_id"]) == {"M1"}


def test_new_deal_history_counts_deals_created_after_each_checkpoint():
    users = frame("User", [{"Id": "R1", "Name": "r", "ManagerId": ""}])
    types = ["new_business"]
    inputs = CreditInputs(users, empty_frame("OpportunitySplit"), empty_frame("OpportunitySplitType"),
                          empty_frame("OpportunityLineItem"), empty_frame("Product2"), types, [],
                          empty_frame("DatedConversionRate"), Rules())
    got = new_deal_history(OPPS, HISTORY, stage_flags(STAGES, OPPS), [Q1], inputs)
    rows = {round(r["elapsed"], 1): (r["days_remaining"], r["deals"], r["credit_usd"]) for r in got.iter_rows(named=True)}
    # C (300, created Feb 20) is new for checkpoints Jan 9, Jan 27, Feb 14; A was created in December.
    assert rows == {0.1: (81, 1, 300.0), 0.3: (63, 1, 300.0), 0.5: (45, 1, 300.0), 0.7: (27, 0, 0.0), 0.9: (9, 0, 0.0)}


def test_leakage_guard_and_cut():
    cutoff = date(2025, 3, 1)
    opps, history = as_known_before(OPPS, HISTORY, cutoff)
    assert_no_leakage(opps, history, cutoff)
    # rows on or after Mar 1: A's Mar 10, B's Mar 30 and C's Mar 1
    with pytest.raises(AssertionError, match="3 history row"):
        assert_no_leakage(OPPS, HISTORY, cutoff)


def test_large_deal_threshold_and_sized_class_by_hand():
    # 60 new-business deals of 1,000 .. 60,000 USD (deal k: k x 1,000) plus one in EUR, and 10
    # renewals (fewer than MIN_SIZE_DEALS = 50: no large tier). A deal's latest history amount
    # counts, not its current field.
    from quota_platform.lib.forecast.training import (
        MIN_SIZE_DEALS,
        large_deal_thresholds,
        sized_class,
    )

    opps = [opp(f"N{k:02d}", "2025-01-05T10:00:00Z") for k in range(1, 61)]
    opps += [opp(f"R{k:02d}", "2025-01-05T10:00:00Z", type_="Renewal") for k in range(10)]
    opps += [opp("OLD", "2024-06-01T10:00:00Z")]  # created before `since`: not counted
    hist_rows = [hist(f"N{k:02d}", "2025-01-05T10:00:00Z", "Prospecting", str(k * 1000), "2025-03-01") for k in range(1, 61)]
    hist_rows += [hist("N60", "2025-02-01T10:00:00Z", "Prospecting", "500", "2025-03-01")]  # N60 shrank to 500
    hist_rows += [hist("OLD", "2024-06-01T10:00:00Z", "Prospecting", "9000000", "2025-03-01")]
    opps_frame = frame("Opportunity", [dict(o, Amount="1") for o in opps])
    inputs = CreditInputs(empty_frame("User"), empty_frame("OpportunitySplit"), empty_frame("OpportunitySplitType"),
                          empty_frame("OpportunityLineItem"), empty_frame("Product2"), [], [],
                          empty_frame("DatedConversionRate"), Rules())
    got = large_deal_thresholds(opps_frame, frame("OpportunityHistory", hist_rows), inputs, since=date(2025, 1, 1))
    # amounts 500, 1,000 .. 59,000: the 90% quantile ("lower") of 60 values is the one at sorted
    # index floor(0.9 x 59) = 53; index 0 is 500 and index k >= 1 is k x 1,000: 53,000
    assert got == {"new_business": 53_000.0}
    assert "renewal" not in got and MIN_SIZE_DEALS == 50
    classes = pl.DataFrame({"c": ["new_business", "new_business", "renewal", "expansion"], "usd": [got["new_business"], 100.0, 1e9, 1e9]})
    sized = classes.select(sized_class(pl.col("c"), pl.col("usd"), got)).to_series().to_list()
    assert sized == ["new_business+large", "new_business", "renewal", "expansion"]
    assert classes.select(sized_class(pl.col("c"), pl.col("usd"), {})).to_series().to_list() == classes["c"].to_list()
