"""The crediting rules of docs/contract.md, Rules (and docs/decisions.md), end to end through
``quota-platform refresh``, on one hand-made org refreshed as of three dates.

Every expected number below is worked out by hand from the records in this file; the arithmetic
is written next to it.

The org (fiscal year = calendar year; Q1 2025 = Jan 1..Mar 31 = 31 + 28 + 31 = 90 days; Q2 2025 =
Apr 1..Jun 30 = 30 + 31 + 30 = 91 days; February 2025 has 28 days):

    Vera (VP)
    |-- Mona (manager)      |-- Rita (rep)     tenured
    |                       `-- Ravi (rep)     tenured; Q1 quota changed mid-quarter (history)
    |-- Max (manager, also carries a Q1 quota of his own)
    |                       |-- Rosa (rep)     quotas in EUR
    |                       |-- Raj (rep)      hired 2025-02-10 (ramp)
    |                       `-- Rhea (rep)     hired 2025-03-03; Q1 quota Ramp_Adjusted__c = true
    `-- Oscar (overlay specialist, Q1 quota, only overlay credit)

EUR rates (usd = eur / rate): 0.92 from 2024-01-01 up to (not incl.) 2025-02-01, 0.80 from
2025-02-01 on.

As-of dates: 2025-02-14 (day 45 of Q1, day 14 of Feb), 2025-03-31 (last day of Q1), 2025-04-01
(first day of Q2).
"""

from __future__ import annotations

import pytest

from quota_platform_tests.orgs import (
    STANDARD_STAGES,
    history,
    opportunity,
    platform_env,
    query,
    quota,
    run_refresh,
    user,
    write_org,
)

FEB14, MAR31, APR01 = "2025-02-14", "2025-03-31", "2025-04-01"
AS_OF_DATES = [FEB14, MAR31, APR01]
Q1, Q2 = "2025-01-01", "2025-04-01"
JAN, FEB, MAR, APR = "2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"

VERA, MONA, MAX = "005VERA", "005MONA", "005MAX"
RITA, RAVI, ROSA, RAJ, RHEA, OSCAR = "005RITA", "005RAVI", "005ROSA", "005RAJ", "005RHEA", "005OSCAR"

NB, EX, RN, OR = "0DbNB", "0DbEX", "0DbRN", "0DbOR"

USERS = [
    user(VERA, "Vera Vance"),
    user(MONA, "Mona Marsh", manager=VERA),
    user(MAX, "Max Moreau", manager=VERA),
    user(RITA, "Rita Reyes", manager=MONA),
    user(RAVI, "Ravi Rao", manager=MONA),
    user(ROSA, "Rosa Romano", manager=MAX),
    user(RAJ, "Raj Rane", manager=MAX, hire_date="2025-02-10"),
    user(RHEA, "Rhea Ross", manager=MAX, hire_date="2025-03-03"),
    user(OSCAR, "Oscar Olsen", manager=VERA),
]

FORECASTING_TYPES = [
    {"Id": NB, "DeveloperName": "NewBusiness"},
    {"Id": EX, "DeveloperName": "Expansion"},
    {"Id": RN, "DeveloperName": "Renewal"},
    {"Id": OR, "DeveloperName": "OpportunityRevenue"},
]

PERIODS = [
    {"Id": "026Y2025", "Type": "Year", "StartDate": "2025-01-01", "EndDate": "2025-12-31"},
    {"Id": "026Q12025", "Type": "Quarter", "StartDate": "2025-01-01", "EndDate": "2025-03-31"},
    {"Id": "026Q22025", "Type": "Quarter", "StartDate": "2025-04-01", "EndDate": "2025-06-30"},
    {"Id": "026M012025", "Type": "Month", "StartDate": "2025-01-01", "EndDate": "2025-01-31"},
    {"Id": "026M022025", "Type": "Month", "StartDate": "2025-02-01", "EndDate": "2025-02-28"},
    {"Id": "026M032025", "Type": "Month", "StartDate": "2025-03-01", "EndDate": "2025-03-31"},
    {"Id": "026M042025", "Type": "Month", "StartDate": "2025-04-01", "EndDate": "2025-04-30"},
]

QUOTAS = [
    # id               owner  type start         amount   currency period        family
    quota("0J9RITABQ1", RITA, OR, "2025-01-01", 200_000, period="026Q12025"),
    quota("0J9RITANQ1", RITA, NB, "2025-01-01", 150_000, period="026Q12025"),
    quota("0J9RITASQ1", RITA, OR, "2025-01-01", 20_000, period="026Q12025", family="Services"),
    quota("0J9RITABQ2", RITA, OR, "2025-04-01", 200_000),  # no PeriodId: the quarter from StartDate
    quota("0J9RAVIBQ1", RAVI, OR, "2025-01-01", 130_000, period="026Q12025"),  # see QUOTA_HISTORY
    quota("0J9RAVIEQ1", RAVI, EX, "2025-01-01", 60_000, period="026Q12025"),
    quota("0J9RAVIBQ2", RAVI, OR, "2025-04-01", 120_000, period="026Q22025"),
    quota("0J9ROSABQ1", ROSA, OR, "2025-01-01", 92_000, "EUR", period="026Q12025"),
    quota("0J9ROSARQ1", ROSA, RN, "2025-01-01", 50_000, period="026Q12025"),
    quota("0J9ROSABM2", ROSA, OR, "2025-02-01", 20_000, "EUR", period="026M022025"),
    quota("0J9ROSABM3", ROSA, OR, "2025-03-01", 24_000, "EUR", period="026M032025"),
    quota("0J9RAJBQ1", RAJ, OR, "2025-01-01", 120_000, period="026Q12025"),
    quota("0J9RAJBM2", RAJ, OR, "2025-02-01", 40_000, period="026M022025"),
    quota("0J9RAJBM3", RAJ, OR, "2025-03-01", 40_000, period="026M032025"),
    quota("0J9RAJBQ2", RAJ, OR, "2025-04-01", 120_000),  # no PeriodId: the quarter from StartDate
    quota("0J9RAJBM4", RAJ, OR, "2025-04-01", 40_000, period="026M042025"),
    quota("0J9RHEABQ1", RHEA, OR, "2025-01-01", 20_000, period="026Q12025", ramp_adjusted=True),
    quota("0J9RHEABM2", RHEA, OR, "2025-02-01", 10_000, period="026M022025"),
    quota("0J9RHEABM3", RHEA, OR, "2025-03-01", 10_000, period="026M032025"),
    quota("0J9MAXBQ1", MAX, OR, "2025-01-01", 10_000, period="026Q12025"),
    quota("0J9OSCARBQ1", OSCAR, OR, "2025-01-01", 50_000, period="026Q12025"),
]

# Ravi's Q1 bookings quota was 100,000 from 2025-01-10 (and, before its first row, the first row's
# amount applies) and 130,000 from 2025-02-15: 45 days at 100,000 (Jan 1..Feb 14 = 31 + 14) and 45
# days at 130,000 (Feb 15..Mar 31 = 14 + 31).
QUOTA_HISTORY = [
    {"QuotaOwnerId": RAVI, "ForecastingTypeId": OR, "StartDate": "2025-01-01", "ProductFamily": None,
     "QuotaAmount": 100_000, "CurrencyIsoCode": "USD", "EffectiveDate": "2025-01-10"},
    {"QuotaOwnerId": RAVI, "ForecastingTypeId": OR, "StartDate": "2025-01-01", "ProductFamily": None,
     "QuotaAmount": 130_000, "CurrencyIsoCode": "USD", "EffectiveDate": "2025-02-15"},
]

RATES = [
    {"IsoCode": "USD", "ConversionRate": 1.0, "StartDate": "2020-01-01", "NextStartDate": "9999-12-31"},
    {"IsoCode": "EUR", "ConversionRate": 0.92, "StartDate": "2024-01-01", "NextStartDate": "2025-02-01"},
    {"IsoCode": "EUR", "ConversionRate": 0.80, "StartDate": "2025-02-01", "NextStartDate": "9999-12-31"},
]

T = "T10:00:00.000+0000"
W = "T15:00:00.000+0000"

OPPORTUNITIES = [
    #            id             owner  Type                 stage          amount  close         created
    opportunity("006PLAIN", RITA, "New Business", "Closed Won", 40_000, "2025-01-15", "2024-12-01" + T),
    opportunity("006SPLIT", RITA, "Expansion", "Closed Won", 50_000, "2025-02-10", "2024-12-05" + T),
    opportunity("006OVERLAY", RAVI, "Upsell", "Closed Won", 30_000, "2025-02-12", "2024-12-10" + T),
    opportunity("006EURJAN", ROSA, "New Business", "Closed Won", 23_000, "2025-01-20", "2024-12-15" + T, "EUR"),
    opportunity("006EURFEB", ROSA, "Renewal", "Closed Won", 12_000, "2025-02-01", "2025-01-02" + T, "EUR"),
    opportunity("006FAMILY", RITA, "New Business", "Closed Won", 50_000, "2025-03-05", "2025-01-10" + T),
    opportunity("006LASTDAY", RAVI, "Renewal", "Closed Won", 10_000, "2025-03-31", "2025-01-15" + T),
    opportunity("006NEXTQ", RAVI, "New Business", "Closed Won", 8_000, "2025-04-01", "2025-03-01T09:00:00.000+0000"),
    opportunity("006DELETED", RITA, "New Business", "Closed Won", 99_000, "2025-01-25", "2024-12-01" + T, deleted=True),
    opportunity("006WONLATE", ROSA, "Existing Business", "Closed Won", 20_000, "2025-03-10", "2025-01-05" + T),
    opportunity("006AMOUNT", RAJ, "New Business", "Closed Won", 18_000, "2025-02-12", "2025-02-10T09:00:00.000+0000"),
    opportunity("006MIDNIGHT", RAVI, "New Business", "Closed Won", 7_000, "2025-02-14", "2025-01-20" + T),
    opportunity("006NOTYPE", MAX, None, "Closed Won", 4_000, "2025-03-12", "2025-01-08" + T),
    opportunity("006RHEA", RHEA, "New Business", "Closed Won", 5_000, "2025-03-20", "2025-03-04" + T),
    opportunity("006LOST", RITA, "New Business", "Closed Lost", 60_000, "2025-02-20", "2024-12-20" + T),
]

OPPORTUNITY_HISTORY = [
    #        opportunity    created (UTC)                     stage          amount  close
    history("006PLAIN", "2024-12-01" + T, "Prospecting", 40_000, "2025-01-31"),
    history("006PLAIN", "2025-01-15T16:00:00.000+0000", "Closed Won", 40_000, "2025-01-15"),
    history("006SPLIT", "2024-12-05" + T, "Prospecting", 50_000, "2025-02-28"),
    history("006SPLIT", "2025-02-10" + W, "Closed Won", 50_000, "2025-02-10"),
    history("006OVERLAY", "2024-12-10" + T, "Prospecting", 30_000, "2025-02-28"),
    history("006OVERLAY", "2025-02-12" + W, "Closed Won", 30_000, "2025-02-12"),
    history("006EURJAN", "2024-12-15" + T, "Prospecting", 23_000, "2025-01-31"),
    history("006EURJAN", "2025-01-20" + W, "Closed Won", 23_000, "2025-01-20"),
    history("006EURFEB", "2025-01-02" + T, "Prospecting", 12_000, "2025-02-15"),
    history("006EURFEB", "2025-02-01" + W, "Closed Won", 12_000, "2025-02-01"),
    history("006FAMILY", "2025-01-10" + T, "Prospecting", 50_000, "2025-03-31"),
    history("006FAMILY", "2025-03-05" + W, "Closed Won", 50_000, "2025-03-05"),
    history("006LASTDAY", "2025-01-15" + T, "Prospecting", 10_000, "2025-03-31"),
    history("006LASTDAY", "2025-03-31T20:00:00.000+0000", "Closed Won", 10_000, "2025-03-31"),
    # won on Mar 30 with a close date of Apr 1: a Q2 / April credit from Mar 30 on
    history("006NEXTQ", "2025-03-01T09:00:00.000+0000", "Prospecting", 8_000, "2025-04-15"),
    history("006NEXTQ", "2025-03-30T12:00:00.000+0000", "Closed Won", 8_000, "2025-04-01"),
    history("006DELETED", "2024-12-01" + T, "Prospecting", 99_000, "2025-01-31"),
    history("006DELETED", "2025-01-25" + W, "Closed Won", 99_000, "2025-01-25"),
    # still in Negotiation on Feb 14, won on Mar 10
    history("006WONLATE", "2025-01-05" + T, "Prospecting", 20_000, "2025-03-31"),
    history("006WONLATE", "2025-02-14" + T, "Negotiation", 20_000, "2025-03-31"),
    history("006WONLATE", "2025-03-10" + W, "Closed Won", 20_000, "2025-03-10"),
    # won at 12,000; raised to 15,000 at 23:59:59 on Feb 14 (counts as of Feb 14) and to 18,000 at
    # 00:00:01 on Feb 15 (does not count as of Feb 14)
    history("006AMOUNT", "2025-02-10T09:00:00.000+0000", "Prospecting", 10_000, "2025-02-28"),
    history("006AMOUNT", "2025-02-12T17:00:00.000+0000", "Closed Won", 12_000, "2025-02-12"),
    history("006AMOUNT", "2025-02-14T23:59:59.000+0000", "Closed Won", 15_000, "2025-02-12"),
    history("006AMOUNT", "2025-02-15T00:00:01.000+0000", "Closed Won", 18_000, "2025-02-12"),
    # marked won (close date Feb 14) only at 00:00:01 on Feb 15
    history("006MIDNIGHT", "2025-01-20" + T, "Prospecting", 7_000, "2025-02-28"),
    history("006MIDNIGHT", "2025-02-15T00:00:01.000+0000", "Closed Won", 7_000, "2025-02-14"),
    history("006NOTYPE", "2025-01-08" + T, "Prospecting", 4_000, "2025-03-31"),
    history("006NOTYPE", "2025-03-12" + W, "Closed Won", 4_000, "2025-03-12"),
    history("006RHEA", "2025-03-04" + T, "Prospecting", 5_000, "2025-03-31"),
    history("006RHEA", "2025-03-20" + W, "Closed Won", 5_000, "2025-03-20"),
    history("006LOST", "2024-12-20" + T, "Prospecting", 60_000, "2025-02-28"),
    history("006LOST", "2025-02-20" + W, "Closed Lost", 60_000, "2025-02-20"),
]

SPLIT_TYPES = [
    {"Id": "149REV", "DeveloperName": "Revenue", "IsTotalValidated": True},
    {"Id": "149OVL", "DeveloperName": "Overlay", "IsTotalValidated": False},
]

SPLITS = [
    {"OpportunityId": "006SPLIT", "SplitOwnerId": RITA, "SplitPercentage": 60, "SplitTypeId": "149REV"},
    {"OpportunityId": "006SPLIT", "SplitOwnerId": RAVI, "SplitPercentage": 40, "SplitTypeId": "149REV"},
    {"OpportunityId": "006OVERLAY", "SplitOwnerId": RAVI, "SplitPercentage": 100, "SplitTypeId": "149REV"},
    {"OpportunityId": "006OVERLAY", "SplitOwnerId": OSCAR, "SplitPercentage": 50, "SplitTypeId": "149OVL"},
]

PRODUCTS = [
    {"Id": "01tSW", "Family": "Software"},
    {"Id": "01tSV", "Family": "Services"},
]

LINE_ITEMS = [
    {"OpportunityId": "006FAMILY", "Product2Id": "01tSW", "TotalPrice": 30_000},
    {"OpportunityId": "006FAMILY", "Product2Id": "01tSV", "TotalPrice": 15_000},
    {"OpportunityId": "006FAMILY", "Product2Id": "01tSV", "TotalPrice": 5_000},
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """The org above, refreshed as of each of AS_OF_DATES in turn. Yields (db path, {as_of: (exit
    code, stderr)})."""
    root = tmp_path_factory.mktemp("crediting_rules")
    source = write_org(
        root / "org",
        User=USERS,
        ForecastingType=FORECASTING_TYPES,
        Period=PERIODS,
        ForecastingQuota=QUOTAS,
        ForecastingQuotaHistory=QUOTA_HISTORY,
        Opportunity=OPPORTUNITIES,
        OpportunityHistory=OPPORTUNITY_HISTORY,
        OpportunityStage=STANDARD_STAGES,
        OpportunitySplitType=SPLIT_TYPES,
        OpportunitySplit=SPLITS,
        Product2=PRODUCTS,
        OpportunityLineItem=LINE_ITEMS,
        DatedConversionRate=RATES,
    )
    outcomes = {}
    with pytest.MonkeyPatch.context() as mp:
        db = platform_env(mp, source, root / "work")
        for as_of in AS_OF_DATES:
            rc, _, err = run_refresh(as_of)
            outcomes[as_of] = (rc, err)
    return db, outcomes


def _db(warehouse, as_of):
    db, outcomes = warehouse
    rc, err = outcomes[as_of]
    if rc != 0:
        pytest.fail(f"refresh --as-of {as_of} failed (exit {rc}):\n{err}")
    return db


def _family_sql(family):
    return "product_family is null" if family is None else f"product_family = '{family}'"


def credits(warehouse, as_of, opp, period_type="quarter", family=None, quota_type=None):
    """{(rep_id, quota_type, credit_type, period_start): credit_usd} of one opportunity as of a
    date, for one period type and family (None = the whole deal). Fails if a key repeats (an
    opportunity must never be credited twice to one owner)."""
    db = _db(warehouse, as_of)
    rows = query(
        db,
        f"""
        select rep_id, quota_type, credit_type, cast(period_start as varchar) as period_start,
               credit_usd
        from quota_platform.credited_bookings
        where cast(as_of_date as varchar) = ? and opportunity_id = ? and period_type = ?
          and {_family_sql(family)} {"and quota_type = '" + quota_type + "'" if quota_type else ""}
        """,
        [as_of, opp, period_type],
    )
    got = {(r["rep_id"], r["quota_type"], r["credit_type"], r["period_start"]): r["credit_usd"] for r in rows}
    assert len(got) == len(rows), f"{opp}: one key credited more than once: {rows}"
    return got


def all_credit_rows(warehouse, as_of, opp):
    db = _db(warehouse, as_of)
    return query(
        db,
        "select * from quota_platform.credited_bookings "
        "where cast(as_of_date as varchar) = ? and opportunity_id = ?",
        [as_of, opp],
    )


def attainment(warehouse, as_of, level, entity, period_type, period_start, quota_type, family=None):
    """The one attainment row of (level, entity, period, quota_type, family) as of a date."""
    db = _db(warehouse, as_of)
    rows = query(
        db,
        f"""
        select * from quota_platform.attainment
        where cast(as_of_date as varchar) = ? and level = ? and entity_id = ?
          and period_type = ? and cast(period_start as varchar) = ? and quota_type = ?
          and {_family_sql(family)}
        """,
        [as_of, level, entity, period_type, period_start, quota_type],
    )
    assert len(rows) == 1, f"expected one attainment row for {level} {entity} {period_type} {period_start} {quota_type} {family} as of {as_of}, got {rows}"
    return rows[0]


def snapshot(warehouse, as_of, rep, period_type, period_start, quota_type, family=None):
    """The one quota_snapshots row of the as-of date's month."""
    db = _db(warehouse, as_of)
    rows = query(
        db,
        f"""
        select * from quota_platform.quota_snapshots
        where cast(snapshot_month as varchar) like ? and rep_id = ? and period_type = ?
          and cast(period_start as varchar) = ? and quota_type = ? and {_family_sql(family)}
        """,
        [as_of[:7] + "%", rep, period_type, period_start, quota_type],
    )
    assert len(rows) == 1, f"expected one snapshot row for {rep} {period_type} {period_start} {quota_type} {family} in {as_of[:7]}, got {rows}"
    return rows[0]


def approx(x):
    return pytest.approx(x, rel=1e-9)


def assert_attainment(row, quota, closed_won, attainment_pct, time_elapsed_pct):
    assert (row["quota"], row["closed_won"], row["time_elapsed_pct"]) == (
        approx(quota), approx(closed_won), approx(time_elapsed_pct)
    ), row
    if attainment_pct is None:
        assert row["attainment_pct"] is None, row
    else:
        assert row["attainment_pct"] == approx(attainment_pct), row


# ---------------------------------------------------------------------------------------------
# credited_bookings


def test_every_refresh_succeeds(warehouse):
    """A clean org refreshes without error at each as-of date."""
    for as_of in AS_OF_DATES:
        _db(warehouse, as_of)


def test_plain_won_deal_credits_owner_in_its_month_and_quarter(warehouse):
    """A closed-won deal without splits credits 100% to its OwnerId, in its CloseDate's quarter and
    month, under every quota type its Type maps to (New Business -> new_business and bookings)."""
    expected_q = {
        (RITA, "new_business", "revenue", Q1): 40_000,  # 100% of 40,000 USD
        (RITA, "bookings", "revenue", Q1): 40_000,
    }
    expected_m = {
        (RITA, "new_business", "revenue", JAN): 40_000,  # closed 2025-01-15 -> January
        (RITA, "bookings", "revenue", JAN): 40_000,
    }
    for as_of in (FEB14, MAR31, APR01):
        assert credits(warehouse, as_of, "006PLAIN") == approx(expected_q)
        assert credits(warehouse, as_of, "006PLAIN", "month") == approx(expected_m)


def test_revenue_split_60_40(warehouse):
    """Revenue split rows (IsTotalValidated = true) give each SplitOwnerId SplitPercentage% of the
    deal, and the credits add up to the amount; the owner gets no extra 100% credit."""
    expected = {
        (RITA, "expansion", "revenue", Q1): 30_000,  # 60% x 50,000
        (RITA, "bookings", "revenue", Q1): 30_000,
        (RAVI, "expansion", "revenue", Q1): 20_000,  # 40% x 50,000
        (RAVI, "bookings", "revenue", Q1): 20_000,
    }
    assert credits(warehouse, FEB14, "006SPLIT") == approx(expected)
    assert credits(warehouse, MAR31, "006SPLIT") == approx(expected)
    got = credits(warehouse, MAR31, "006SPLIT")
    # 30,000 + 20,000 = 50,000 = the deal's amount
    assert sum(v for (_, qt, _, _), v in got.items() if qt == "bookings") == approx(50_000)
    assert credits(warehouse, FEB14, "006SPLIT", "month") == approx(
        {(r, qt, ct, FEB): v for (r, qt, ct, _), v in expected.items()}  # closed 2025-02-10
    )


def test_overlay_split_is_kept_as_overlay_credit(warehouse):
    """An overlay split (IsTotalValidated = false) is kept as credit_type overlay at its
    percentage; the revenue split still gives the owner 100%."""
    expected = {
        (RAVI, "expansion", "revenue", Q1): 30_000,  # Upsell -> expansion; 100% x 30,000
        (RAVI, "bookings", "revenue", Q1): 30_000,
        (OSCAR, "expansion", "overlay", Q1): 15_000,  # 50% x 30,000
        (OSCAR, "bookings", "overlay", Q1): 15_000,
    }
    assert credits(warehouse, FEB14, "006OVERLAY") == approx(expected)
    assert credits(warehouse, MAR31, "006OVERLAY") == approx(expected)


def test_overlay_credit_does_not_count_toward_quota(warehouse):
    """Oscar's only credit is overlay: his attainment closed_won stays 0."""
    for as_of, elapsed in ((FEB14, 100 * 45 / 90), (MAR31, 100 * 90 / 90)):
        row = attainment(warehouse, as_of, "rep", OSCAR, "quarter", Q1, "bookings")
        # quota 50,000; closed_won 0 (15,000 overlay excluded); 0 / 50,000 = 0%
        assert_attainment(row, 50_000, 0, 0.0, elapsed)


def test_eur_deals_convert_at_the_rate_in_force_on_close_date(warehouse):
    """usd = amount / ConversionRate of the DatedConversionRate row with StartDate <= CloseDate <
    NextStartDate: a Jan 20 deal at 0.92, a deal closing on the Feb 1 boundary at the new 0.80."""
    assert credits(warehouse, MAR31, "006EURJAN") == approx({
        (ROSA, "new_business", "revenue", Q1): 23_000 / 0.92,  # 23,000 EUR / 0.92 = 25,000
        (ROSA, "bookings", "revenue", Q1): 23_000 / 0.92,
    })
    assert credits(warehouse, MAR31, "006EURFEB") == approx({
        # 12,000 EUR / 0.80 = 15,000 (not / 0.92 = 13,043.478...: the new rate starts on Feb 1)
        (ROSA, "renewal", "revenue", Q1): 12_000 / 0.80,
        (ROSA, "bookings", "revenue", Q1): 12_000 / 0.80,
    })
    rows = [r for r in all_credit_rows(warehouse, MAR31, "006EURFEB")
            if r["quota_type"] == "bookings" and r["period_type"] == "quarter" and r["product_family"] is None]
    assert len(rows) == 1
    assert rows[0]["currency_iso_code"] == "EUR"
    assert rows[0]["amount_local"] == approx(12_000)
    assert rows[0]["conversion_rate"] == approx(0.80)
    assert rows[0]["amount_usd"] == approx(15_000)


def test_product_family_credits_count_line_items_of_that_family(warehouse):
    """A quota with a ProductFamily counts only the TotalPrice of that family's line items; the
    family-null row is the whole deal; no rows for a family no quota names (Software)."""
    assert credits(warehouse, FEB14, "006FAMILY") == {}  # still Prospecting on Feb 14
    assert credits(warehouse, MAR31, "006FAMILY") == approx({
        (RITA, "new_business", "revenue", Q1): 50_000,  # the whole deal
        (RITA, "bookings", "revenue", Q1): 50_000,
    })
    assert credits(warehouse, MAR31, "006FAMILY", family="Services", quota_type="bookings") == approx({
        (RITA, "bookings", "revenue", Q1): 20_000,  # Services lines 15,000 + 5,000
    })
    db = _db(warehouse, MAR31)
    software = query(db, "select count(*) as n from quota_platform.credited_bookings "
                         "where product_family = 'Software'")
    assert software[0]["n"] == 0


def test_deal_won_on_last_day_of_quarter_counts_in_that_quarter(warehouse):
    """CloseDate 2025-03-31 (won 20:00Z that day) credits Q1 and March, as of Mar 31 and still as
    of Apr 1."""
    expected_q = {
        (RAVI, "renewal", "revenue", Q1): 10_000,
        (RAVI, "bookings", "revenue", Q1): 10_000,
    }
    for as_of in (MAR31, APR01):
        assert credits(warehouse, as_of, "006LASTDAY") == approx(expected_q)
        assert credits(warehouse, as_of, "006LASTDAY", "month") == approx(
            {(r, qt, ct, MAR): v for (r, qt, ct, _), v in expected_q.items()}
        )


def test_deal_closing_first_day_of_next_quarter_does_not_count_in_q1(warehouse):
    """CloseDate 2025-04-01 credits Q2 and April, never Q1, even though it was won on Mar 30
    (already won with a later close date: a future-period credit)."""
    assert credits(warehouse, FEB14, "006NEXTQ") == {}  # created Mar 1
    expected = {
        (RAVI, "new_business", "revenue", Q2): 8_000,
        (RAVI, "bookings", "revenue", Q2): 8_000,
    }
    for as_of in (MAR31, APR01):
        assert credits(warehouse, as_of, "006NEXTQ") == approx(expected)
        assert credits(warehouse, as_of, "006NEXTQ", "month") == approx(
            {(r, qt, ct, APR): v for (r, qt, ct, _), v in expected.items()}
        )


def test_deleted_won_deal_is_never_credited(warehouse):
    """IsDeleted = true: no credit at any as-of date, in any period or family."""
    for as_of in AS_OF_DATES:
        assert all_credit_rows(warehouse, as_of, "006DELETED") == []


def test_lost_deal_is_never_credited(warehouse):
    """Closed Lost is closed but not won: no credit."""
    for as_of in AS_OF_DATES:
        assert all_credit_rows(warehouse, as_of, "006LOST") == []


def test_point_in_time_stage_won_later(warehouse):
    """With OpportunityHistory, the stage as of D is the latest history row created by the end of
    D: Negotiation on Feb 14 (no credit), Closed Won from Mar 10 (credited as of Mar 31)."""
    assert credits(warehouse, FEB14, "006WONLATE") == {}
    assert credits(warehouse, MAR31, "006WONLATE") == approx({
        (ROSA, "expansion", "revenue", Q1): 20_000,  # Existing Business -> expansion
        (ROSA, "bookings", "revenue", Q1): 20_000,
    })


def test_point_in_time_amount_and_end_of_day_boundary(warehouse):
    """The amount as of D comes from the latest history row created on or before the end of D
    (UTC): the 23:59:59Z row of Feb 14 counts as of Feb 14, the 00:00:01Z row of Feb 15 does not."""
    assert credits(warehouse, FEB14, "006AMOUNT") == approx({
        (RAJ, "new_business", "revenue", Q1): 15_000,  # row of 2025-02-14T23:59:59Z
        (RAJ, "bookings", "revenue", Q1): 15_000,
    })
    assert credits(warehouse, MAR31, "006AMOUNT") == approx({
        (RAJ, "new_business", "revenue", Q1): 18_000,  # row of 2025-02-15T00:00:01Z
        (RAJ, "bookings", "revenue", Q1): 18_000,
    })


def test_point_in_time_won_one_second_after_midnight(warehouse):
    """A deal marked won at 00:00:01Z on Feb 15 (close date Feb 14) is not won as of Feb 14, and
    is credited to February / Q1 as of Mar 31."""
    assert credits(warehouse, FEB14, "006MIDNIGHT") == {}
    assert credits(warehouse, MAR31, "006MIDNIGHT", "month") == approx({
        (RAVI, "new_business", "revenue", FEB): 7_000,
        (RAVI, "bookings", "revenue", FEB): 7_000,
    })


@pytest.mark.parametrize(
    "opp, quota_types",
    [
        ("006PLAIN", {"new_business", "bookings"}),  # New Business
        ("006WONLATE", {"expansion", "bookings"}),  # Existing Business
        ("006SPLIT", {"expansion", "bookings"}),  # Expansion
        ("006OVERLAY", {"expansion", "bookings"}),  # Upsell
        ("006EURFEB", {"renewal", "bookings"}),  # Renewal
        ("006NOTYPE", {"bookings"}),  # no Type: only OpportunityRevenue counts it
    ],
)
def test_type_maps_to_quota_types(warehouse, opp, quota_types):
    """ForecastingType mapping: NewBusiness <- New Business; Expansion <- Existing Business,
    Expansion, Upsell; Renewal <- Renewal; OpportunityRevenue (bookings) <- every Type."""
    got = credits(warehouse, MAR31, opp)
    assert {qt for (_, qt, _, _) in got} == quota_types


def test_credits_to_the_previous_quarter_stay_visible_next_day(warehouse):
    """As of Apr 1, credited_bookings still holds Q1 credits (periods ending within the last 12
    months are kept)."""
    assert credits(warehouse, APR01, "006AMOUNT") == approx({
        (RAJ, "new_business", "revenue", Q1): 18_000,
        (RAJ, "bookings", "revenue", Q1): 18_000,
    })


# ---------------------------------------------------------------------------------------------
# quota_snapshots


def test_snapshot_plain_and_family_quotas(warehouse):
    """A tenured rep's USD quota: full = amount, ramp factor 1, effective = full; the Services
    quota is its own row with product_family Services; manager_id is the User's ManagerId."""
    row = snapshot(warehouse, FEB14, RITA, "quarter", Q1, "bookings")
    assert (row["full_quota"], row["ramp_factor"], row["effective_quota"]) == (
        approx(200_000), approx(1.0), approx(200_000))
    assert row["manager_id"] == MONA
    row = snapshot(warehouse, FEB14, RITA, "quarter", Q1, "new_business")
    assert row["effective_quota"] == approx(150_000)
    row = snapshot(warehouse, FEB14, RITA, "quarter", Q1, "bookings", "Services")
    assert (row["full_quota"], row["effective_quota"]) == (approx(20_000), approx(20_000))


def test_snapshot_quota_without_period_id_is_the_quarter_from_start_date(warehouse):
    """A ForecastingQuota with no PeriodId covers the quarter starting at its StartDate."""
    row = snapshot(warehouse, APR01, RITA, "quarter", Q2, "bookings")
    assert row["effective_quota"] == approx(200_000)
    assert str(row["period_end"])[:10] == "2025-06-30"


def test_snapshot_eur_quota_converts_at_period_start(warehouse):
    """A EUR quota converts at the rate in force on its period's first day."""
    row = snapshot(warehouse, FEB14, ROSA, "quarter", Q1, "bookings")
    # 92,000 EUR / 0.92 (rate on 2025-01-01) = 100,000
    assert row["full_quota"] == approx(92_000 / 0.92)
    assert row["effective_quota"] == approx(92_000 / 0.92)
    assert row["conversion_rate"] == approx(0.92)
    assert row["quota_amount_local"] == approx(92_000)
    row = snapshot(warehouse, FEB14, ROSA, "month", FEB, "bookings")
    assert row["full_quota"] == approx(20_000 / 0.80)  # 20,000 EUR / 0.80 (rate on 2025-02-01) = 25,000
    row = snapshot(warehouse, MAR31, ROSA, "month", MAR, "bookings")
    assert row["full_quota"] == approx(24_000 / 0.80)  # 24,000 EUR / 0.80 = 30,000


def test_snapshot_mid_quarter_quota_change_is_day_weighted(warehouse):
    """With ForecastingQuotaHistory the period's quota is the day-weighted average of the amounts
    in force, history taken as recorded (the same in the Feb and Mar snapshots)."""
    # (45 days x 100,000 + 45 days x 130,000) / 90 days = 115,000 (not the current 130,000)
    expected = (45 * 100_000 + 45 * 130_000) / 90
    for as_of in (FEB14, MAR31):
        row = snapshot(warehouse, as_of, RAVI, "quarter", Q1, "bookings")
        assert (row["full_quota"], row["ramp_factor"], row["effective_quota"]) == (
            approx(expected), approx(1.0), approx(expected))


def test_snapshot_ramp_for_rep_hired_mid_quarter(warehouse):
    """Raj hired 2025-02-10: Jan (before hire) 0, Feb (k=0) 0.25, Mar (k=1) 0.50, Apr (k=2) 0.75,
    then 1.0; a quarter's factor is the mean of its months' factors."""
    cases = [
        # as_of, period_type, start, full, factor
        (FEB14, "quarter", Q1, 120_000, (0 + 0.25 + 0.50) / 3),  # = 0.25 -> 30,000
        (FEB14, "month", FEB, 40_000, 0.25),  # -> 10,000
        (MAR31, "quarter", Q1, 120_000, (0 + 0.25 + 0.50) / 3),
        (MAR31, "month", MAR, 40_000, 0.50),  # -> 20,000
        (APR01, "quarter", Q2, 120_000, (0.75 + 1.0 + 1.0) / 3),  # = 0.91666... -> 110,000
        (APR01, "month", APR, 40_000, 0.75),  # -> 30,000
    ]
    for as_of, period_type, start, full, factor in cases:
        row = snapshot(warehouse, as_of, RAJ, period_type, start, "bookings")
        assert (row["full_quota"], row["ramp_factor"], row["effective_quota"]) == (
            approx(full), approx(factor), approx(full * factor)), (as_of, period_type, row)


def test_snapshot_ramp_adjusted_quota_has_factor_one(warehouse):
    """Rhea hired 2025-03-03: her Q1 quota has Ramp_Adjusted__c = true (already reduced), so factor
    1; her February quota is before the hire month (factor 0); March is k=0 (0.25)."""
    row = snapshot(warehouse, FEB14, RHEA, "quarter", Q1, "bookings")
    assert (row["ramp_factor"], row["effective_quota"]) == (approx(1.0), approx(20_000))
    row = snapshot(warehouse, FEB14, RHEA, "month", FEB, "bookings")
    assert (row["full_quota"], row["ramp_factor"], row["effective_quota"]) == (
        approx(10_000), approx(0.0), approx(0.0))
    row = snapshot(warehouse, MAR31, RHEA, "month", MAR, "bookings")
    assert (row["ramp_factor"], row["effective_quota"]) == (approx(0.25), approx(2_500))  # 10,000 x 0.25


# ---------------------------------------------------------------------------------------------
# attainment as of 2025-02-14 (Q1: 45 of 90 days; February: 14 of 28 days)

FEB14_Q1_ELAPSED = 100 * 45 / 90  # = 50.0
FEB14_FEB_ELAPSED = 100 * 14 / 28  # = 50.0


@pytest.mark.parametrize(
    "rep, quota, closed_won",
    [
        (RITA, 200_000, 40_000 + 30_000),  # PLAIN + 60% of SPLIT = 70,000
        (RAVI, 115_000, 20_000 + 30_000),  # 40% of SPLIT + OVERLAY revenue = 50,000 (MIDNIGHT not yet won)
        (ROSA, 100_000, 25_000 + 15_000),  # EURJAN + EURFEB = 40,000 (WONLATE in Negotiation)
        (RAJ, 120_000 * 0.25, 15_000),  # ramped quota 30,000; AMOUNT at 15,000
        (RHEA, 20_000, 0),
        (MAX, 10_000, 0),  # NOTYPE not won until Mar 12
        (OSCAR, 50_000, 0),
    ],
)
def test_rep_attainment_feb14_q1_bookings(warehouse, rep, quota, closed_won):
    """Rep rows: quota = effective quota, closed_won = revenue credits of the period as of D,
    attainment_pct = 100 x closed_won / quota, time_elapsed_pct = 100 x 45 / 90."""
    row = attainment(warehouse, FEB14, "rep", rep, "quarter", Q1, "bookings")
    assert_attainment(row, quota, closed_won, 100 * closed_won / quota, FEB14_Q1_ELAPSED)


def test_rep_attainment_feb14_other_quota_types_and_family(warehouse):
    """new_business, expansion, renewal and a product-family quota each count only their deals."""
    row = attainment(warehouse, FEB14, "rep", RITA, "quarter", Q1, "new_business")
    assert_attainment(row, 150_000, 40_000, 100 * 40_000 / 150_000, FEB14_Q1_ELAPSED)  # 26.67%
    row = attainment(warehouse, FEB14, "rep", RAVI, "quarter", Q1, "expansion")
    # SPLIT 20,000 + OVERLAY 30,000 = 50,000 of 60,000 = 83.33%
    assert_attainment(row, 60_000, 50_000, 100 * 50_000 / 60_000, FEB14_Q1_ELAPSED)
    row = attainment(warehouse, FEB14, "rep", ROSA, "quarter", Q1, "renewal")
    assert_attainment(row, 50_000, 15_000, 100 * 15_000 / 50_000, FEB14_Q1_ELAPSED)  # 30%
    row = attainment(warehouse, FEB14, "rep", RITA, "quarter", Q1, "bookings", "Services")
    assert_attainment(row, 20_000, 0, 0.0, FEB14_Q1_ELAPSED)  # FAMILY not won yet


def test_rep_attainment_feb14_monthly(warehouse):
    """Monthly quotas: February rows; a rep not yet hired has quota 0 and attainment_pct NULL."""
    row = attainment(warehouse, FEB14, "rep", ROSA, "month", FEB, "bookings")
    # EURFEB 15,000 of 25,000 = 60%
    assert_attainment(row, 25_000, 15_000, 100 * 15_000 / 25_000, FEB14_FEB_ELAPSED)
    row = attainment(warehouse, FEB14, "rep", RAJ, "month", FEB, "bookings")
    # AMOUNT 15,000 of 10,000 (40,000 x 0.25) = 150%
    assert_attainment(row, 10_000, 15_000, 100 * 15_000 / 10_000, FEB14_FEB_ELAPSED)
    row = attainment(warehouse, FEB14, "rep", RHEA, "month", FEB, "bookings")
    assert_attainment(row, 0, 0, None, FEB14_FEB_ELAPSED)  # 10,000 x 0 (hired in March)


def test_pace_status_feb14(warehouse):
    """pace_pct = 100 x closed_won / (quota x elapsed/100); ahead >= 110, on_pace >= 90, behind
    < 90, no_quota when the quota is 0."""
    # Rita: 70,000 / (200,000 x 0.5) = 70% -> behind
    assert attainment(warehouse, FEB14, "rep", RITA, "quarter", Q1, "bookings")["pace_status"] == "behind"
    # Raj: 15,000 / (30,000 x 0.5) = 100% -> on_pace
    assert attainment(warehouse, FEB14, "rep", RAJ, "quarter", Q1, "bookings")["pace_status"] == "on_pace"
    # Raj February: 15,000 / (10,000 x 0.5) = 300% -> ahead
    assert attainment(warehouse, FEB14, "rep", RAJ, "month", FEB, "bookings")["pace_status"] == "ahead"
    assert attainment(warehouse, FEB14, "rep", RHEA, "month", FEB, "bookings")["pace_status"] == "no_quota"


def test_rollups_feb14_q1_bookings(warehouse):
    """Manager rows sum the rep rows below them in the ManagerId tree (Max's own rep row is not
    in his manager row, but is in Vera's); the company row sums every rep row."""
    # Mona: Rita + Ravi: quota 200,000 + 115,000 = 315,000; won 70,000 + 50,000 = 120,000
    row = attainment(warehouse, FEB14, "manager", MONA, "quarter", Q1, "bookings")
    assert_attainment(row, 315_000, 120_000, 100 * 120_000 / 315_000, FEB14_Q1_ELAPSED)  # 38.10%
    # Max: Rosa + Raj + Rhea: quota 100,000 + 30,000 + 20,000 = 150,000; won 40,000 + 15,000 + 0
    row = attainment(warehouse, FEB14, "manager", MAX, "quarter", Q1, "bookings")
    assert_attainment(row, 150_000, 55_000, 100 * 55_000 / 150_000, FEB14_Q1_ELAPSED)  # 36.67%
    # Vera: Mona's 315,000 + Max's team 150,000 + Max himself 10,000 + Oscar 50,000 = 525,000;
    # won 120,000 + 55,000 + 0 + 0 = 175,000 (Oscar's 15,000 overlay excluded)
    row = attainment(warehouse, FEB14, "manager", VERA, "quarter", Q1, "bookings")
    assert_attainment(row, 525_000, 175_000, 100 * 175_000 / 525_000, FEB14_Q1_ELAPSED)  # 33.33%
    row = attainment(warehouse, FEB14, "company", "company", "quarter", Q1, "bookings")
    assert_attainment(row, 525_000, 175_000, 100 * 175_000 / 525_000, FEB14_Q1_ELAPSED)


def test_rollups_feb14_monthly_and_other_types(warehouse):
    """Roll-ups per period type, quota type and family."""
    # February: Rosa 25,000 + Raj 10,000 + Rhea 0 = 35,000; won 15,000 + 15,000 + 0 = 30,000
    for level, entity in (("manager", MAX), ("manager", VERA), ("company", "company")):
        row = attainment(warehouse, FEB14, level, entity, "month", FEB, "bookings")
        assert_attainment(row, 35_000, 30_000, 100 * 30_000 / 35_000, FEB14_FEB_ELAPSED)  # 85.71%
    # new_business: only Rita carries one: 40,000 of 150,000
    for level, entity in (("manager", MONA), ("manager", VERA), ("company", "company")):
        row = attainment(warehouse, FEB14, level, entity, "quarter", Q1, "new_business")
        assert_attainment(row, 150_000, 40_000, 100 * 40_000 / 150_000, FEB14_Q1_ELAPSED)


# ---------------------------------------------------------------------------------------------
# attainment as of 2025-03-31 (Q1: 90 of 90 days; March: 31 of 31 days)


@pytest.mark.parametrize(
    "rep, quota, closed_won",
    [
        (RITA, 200_000, 40_000 + 30_000 + 50_000),  # PLAIN + SPLIT 60% + FAMILY = 120,000
        (RAVI, 115_000, 20_000 + 30_000 + 10_000 + 7_000),  # SPLIT 40% + OVERLAY + LASTDAY + MIDNIGHT = 67,000
        (ROSA, 100_000, 25_000 + 15_000 + 20_000),  # EURJAN + EURFEB + WONLATE = 60,000
        (RAJ, 30_000, 18_000),  # AMOUNT at its latest 18,000
        (RHEA, 20_000, 5_000),
        (MAX, 10_000, 4_000),  # NOTYPE (bookings only)
        (OSCAR, 50_000, 0),
    ],
)
def test_rep_attainment_mar31_q1_bookings(warehouse, rep, quota, closed_won):
    """Rep rows on the last day of Q1 (time elapsed 100%); NEXTQ (closes Apr 1) and DELETED are
    not in Q1."""
    row = attainment(warehouse, MAR31, "rep", rep, "quarter", Q1, "bookings")
    assert_attainment(row, quota, closed_won, 100 * closed_won / quota, 100.0)


def test_rep_attainment_mar31_other_quota_types_family_and_month(warehouse):
    """Quota types, the Services family quota and the March quotas as of Mar 31."""
    row = attainment(warehouse, MAR31, "rep", RITA, "quarter", Q1, "new_business")
    assert_attainment(row, 150_000, 90_000, 100 * 90_000 / 150_000, 100.0)  # PLAIN + FAMILY = 60%
    row = attainment(warehouse, MAR31, "rep", RAVI, "quarter", Q1, "expansion")
    assert_attainment(row, 60_000, 50_000, 100 * 50_000 / 60_000, 100.0)
    row = attainment(warehouse, MAR31, "rep", ROSA, "quarter", Q1, "renewal")
    assert_attainment(row, 50_000, 15_000, 100 * 15_000 / 50_000, 100.0)
    row = attainment(warehouse, MAR31, "rep", RITA, "quarter", Q1, "bookings", "Services")
    assert_attainment(row, 20_000, 20_000, 100.0, 100.0)  # 15,000 + 5,000 Services of 20,000
    row = attainment(warehouse, MAR31, "rep", ROSA, "month", MAR, "bookings")
    assert_attainment(row, 30_000, 20_000, 100 * 20_000 / 30_000, 100.0)  # WONLATE of 24,000/0.8
    row = attainment(warehouse, MAR31, "rep", RAJ, "month", MAR, "bookings")
    assert_attainment(row, 20_000, 0, 0.0, 100.0)  # 40,000 x 0.5; AMOUNT is a February deal
    row = attainment(warehouse, MAR31, "rep", RHEA, "month", MAR, "bookings")
    assert_attainment(row, 2_500, 5_000, 100 * 5_000 / 2_500, 100.0)  # 200%


def test_rollups_mar31(warehouse):
    """Roll-ups on the last day of Q1."""
    # Mona: 315,000; 120,000 + 67,000 = 187,000
    row = attainment(warehouse, MAR31, "manager", MONA, "quarter", Q1, "bookings")
    assert_attainment(row, 315_000, 187_000, 100 * 187_000 / 315_000, 100.0)  # 59.37%
    # Max: 150,000; 60,000 + 18,000 + 5,000 = 83,000 (his own 4,000 is not in his manager row)
    row = attainment(warehouse, MAR31, "manager", MAX, "quarter", Q1, "bookings")
    assert_attainment(row, 150_000, 83_000, 100 * 83_000 / 150_000, 100.0)  # 55.33%
    # Vera and company: 525,000; 187,000 + 83,000 + 4,000 + 0 = 274,000
    for level, entity in (("manager", VERA), ("company", "company")):
        row = attainment(warehouse, MAR31, level, entity, "quarter", Q1, "bookings")
        assert_attainment(row, 525_000, 274_000, 100 * 274_000 / 525_000, 100.0)  # 52.19%
    # March: Rosa 30,000 + Raj 20,000 + Rhea 2,500 = 52,500; won 20,000 + 0 + 5,000 = 25,000
    for level, entity in (("manager", MAX), ("manager", VERA), ("company", "company")):
        row = attainment(warehouse, MAR31, level, entity, "month", MAR, "bookings")
        assert_attainment(row, 52_500, 25_000, 100 * 25_000 / 52_500, 100.0)  # 47.62%
    # Services family: Rita only, 20,000 of 20,000
    for level, entity in (("manager", MONA), ("manager", VERA), ("company", "company")):
        row = attainment(warehouse, MAR31, level, entity, "quarter", Q1, "bookings", "Services")
        assert_attainment(row, 20_000, 20_000, 100.0, 100.0)


# ---------------------------------------------------------------------------------------------
# attainment as of 2025-04-01 (Q2: 1 of 91 days; April: 1 of 30 days)


def test_attainment_apr01_first_day_of_q2(warehouse):
    """As of Apr 1 the periods containing D are Q2 and April; NEXTQ (closed Apr 1) is Q2's only
    deal; Raj's Q2 quota is ramped by (0.75 + 1 + 1) / 3."""
    q2_elapsed = 100 * 1 / 91  # 1.0989...
    apr_elapsed = 100 * 1 / 30  # 3.333...
    row = attainment(warehouse, APR01, "rep", RAVI, "quarter", Q2, "bookings")
    assert_attainment(row, 120_000, 8_000, 100 * 8_000 / 120_000, q2_elapsed)  # 6.67%
    row = attainment(warehouse, APR01, "rep", RITA, "quarter", Q2, "bookings")
    assert_attainment(row, 200_000, 0, 0.0, q2_elapsed)
    row = attainment(warehouse, APR01, "rep", RAJ, "quarter", Q2, "bookings")
    assert_attainment(row, 120_000 * 2.75 / 3, 0, 0.0, q2_elapsed)  # 110,000
    row = attainment(warehouse, APR01, "rep", RAJ, "month", APR, "bookings")
    assert_attainment(row, 30_000, 0, 0.0, apr_elapsed)  # 40,000 x 0.75
    # Mona: 200,000 + 120,000 = 320,000; 8,000 -> 2.5%
    row = attainment(warehouse, APR01, "manager", MONA, "quarter", Q2, "bookings")
    assert_attainment(row, 320_000, 8_000, 100 * 8_000 / 320_000, q2_elapsed)
    # Max: Raj only, 110,000; 0
    row = attainment(warehouse, APR01, "manager", MAX, "quarter", Q2, "bookings")
    assert_attainment(row, 110_000, 0, 0.0, q2_elapsed)
    # Vera and company: 320,000 + 110,000 = 430,000; 8,000 -> 1.86%
    for level, entity in (("manager", VERA), ("company", "company")):
        row = attainment(warehouse, APR01, level, entity, "quarter", Q2, "bookings")
        assert_attainment(row, 430_000, 8_000, 100 * 8_000 / 430_000, q2_elapsed)
