"""Point-in-time reconstruction from OpportunityHistory on hand-written histories: the state as of
D is the latest row created on or before the end of D (UTC)."""

from datetime import date, datetime, timezone

import polars as pl

from quota_platform.lib.attainment.crediting import stage_flags, states_as_of
from quota_platform.lib.core.contract import conform


def _opps(rows):
    cols = ["Id", "OwnerId", "Type", "StageName", "Amount", "CloseDate", "CreatedDate", "IsClosed", "IsWon", "IsDeleted"]
    return conform("Opportunity", pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


def _history(rows):
    cols = ["OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate"]
    return conform("OpportunityHistory", pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


STAGES = conform(
    "OpportunityStage",
    pl.DataFrame(
        {
            "ApiName": ["Prospecting", "Negotiation", "Closed Won", "Closed Lost"],
            "IsClosed": ["false", "false", "true", "true"],
            "IsWon": ["false", "false", "true", "false"],
        }
    ),
)

OPPS = _opps(
    [
        ("A", "U1", "New Business", "Closed Won", "1200", "2025-03-10", "2025-01-02T09:00:00Z", "true", "true", "false"),
        ("B", "U1", "New Business", "Closed Won", "500", "2025-03-20", "2025-01-05T09:00:00Z", "true", "true", "false"),
        ("C", "U1", "Renewal", "Closed Won", "300", "2025-02-01", "2025-01-07T09:00:00Z", "true", "true", "true"),
        ("D", "U1", "Renewal", "Closed Won", "700", "2025-02-01", "2025-02-20T09:00:00Z", "true", "true", "false"),
    ]
)
HISTORY = _history(
    [
        ("A", "2025-01-02T09:00:00Z", "Prospecting", "1000", "2025-03-31"),
        ("A", "2025-02-14T23:59:59Z", "Negotiation", "1100", "2025-03-31"),
        ("A", "2025-03-10T12:00:00Z", "Closed Won", "1200", "2025-03-10"),
        ("B", "2025-01-05T09:00:00Z", "Prospecting", "400", "2025-03-20"),
        ("B", "2025-03-16T00:00:01Z", "Closed Won", "500", "2025-03-20"),
        # two rows the same day: the later one is that day's state
        ("B", "2025-03-15T08:00:00Z", "Negotiation", "450", "2025-03-20"),
        ("B", "2025-03-15T18:00:00Z", "Negotiation", "480", "2025-03-25"),
        ("C", "2025-01-07T09:00:00Z", "Closed Won", "300", "2025-02-01"),
    ]
)


def _state(states, as_of, opp):
    rows = states.filter((pl.col("as_of_date") == as_of) & (pl.col("Id") == opp))
    return None if rows.is_empty() else rows.row(0, named=True)


def test_state_is_latest_row_created_by_end_of_day():
    states = states_as_of(OPPS, HISTORY, stage_flags(STAGES, OPPS), [date(2025, 2, 13), date(2025, 2, 14), date(2025, 3, 15), date(2025, 3, 16)])
    # Feb 13: only A's first row exists.
    a = _state(states, date(2025, 2, 13), "A")
    assert (a["StageName"], a["Amount"], a["is_won"]) == ("Prospecting", 1000.0, False)
    # Feb 14: the row created at 23:59:59Z on Feb 14 counts.
    a = _state(states, date(2025, 2, 14), "A")
    assert (a["StageName"], a["Amount"]) == ("Negotiation", 1100.0)
    # Mar 15: B's later row of that day (18:00) wins over 08:00; the 00:00:01Z Mar 16 row does not count.
    b = _state(states, date(2025, 3, 15), "B")
    assert (b["StageName"], b["Amount"], b["CloseDate"]) == ("Negotiation", 480.0, date(2025, 3, 25))
    b = _state(states, date(2025, 3, 16), "B")
    assert (b["StageName"], b["Amount"], b["is_won"]) == ("Closed Won", 500.0, True)


def test_deleted_and_not_yet_created_opportunities_are_absent():
    states = states_as_of(OPPS, HISTORY, stage_flags(STAGES, OPPS), [date(2025, 2, 19), date(2025, 2, 20)])
    assert _state(states, date(2025, 2, 19), "C") is None  # deleted
    # D has no history rows: current values from its creation day on.
    assert _state(states, date(2025, 2, 19), "D") is None
    d = _state(states, date(2025, 2, 20), "D")
    assert (d["StageName"], d["Amount"], d["from_history"]) == ("Closed Won", 700.0, False)


def test_only_won_keeps_won_states_for_every_date_of_a_range():
    dates = [date(2025, 3, d) for d in range(1, 32)]
    won = states_as_of(OPPS, HISTORY, stage_flags(STAGES, OPPS), dates, only_won=True)
    per_opp = dict(won.group_by("Id").len().iter_rows())
    # A won on Mar 10: Mar 10..31 = 22 days; B on Mar 16: 16 days; D (no history, created Feb 20): 31 days.
    assert per_opp == {"A": 22, "B": 16, "D": 31}


def test_stage_flags_fall_back_to_current_opportunities():
    opps = _opps([("X", "U1", "New Business", "Signed", "10", "2025-01-01", "2025-01-01T00:00:00Z", "true", "true", "false")])
    flags = stage_flags(STAGES.clear(), opps)
    assert flags.filter(pl.col("StageName") == "Signed").row(0, named=True)["is_won"] is True
    assert datetime(2025, 1, 1, tzinfo=timezone.utc) == opps["CreatedDate"][0]


def test_pushes_and_stage_entry_are_counted_up_to_the_as_of_date():
    history = _history(
        [
            ("A", "2025-01-02T09:00:00Z", "Prospecting", "1000", "2025-03-31"),
            ("A", "2025-01-20T09:00:00Z", "Negotiation", "1000", "2025-03-31"),
            ("A", "2025-02-03T09:00:00Z", "Negotiation", "1000", "2025-04-30"),  # push 1
            ("A", "2025-02-10T09:00:00Z", "Negotiation", "1000", "2025-04-15"),  # pulled in: not a push
            ("A", "2025-03-01T09:00:00Z", "Negotiation", "1000", "2025-05-31"),  # push 2
        ]
    )
    opps = OPPS.filter(pl.col("Id") == "A")
    states = states_as_of(opps, history, stage_flags(STAGES, opps), [date(2025, 1, 19), date(2025, 2, 5), date(2025, 3, 2)])
    got = {r["as_of_date"]: (r["pushes"], r["stage_entered"]) for r in states.iter_rows(named=True)}
    assert got == {
        date(2025, 1, 19): (0, date(2025, 1, 2)),
        date(2025, 2, 5): (1, date(2025, 1, 20)),
        date(2025, 3, 2): (2, date(2025, 1, 20)),
    }
