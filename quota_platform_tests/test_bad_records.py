"""Records with a problem of their own, many at once in one org, end to end through
``quota-platform refresh``: each is quarantined with its object, record Id, field and a non-empty
problem (or, where the platform decided to accept it, credited as docs/decisions.md says), the
run succeeds, and every total is the one worked out by hand below from the clean records only.
One refresh serves every test here (docs/bad_input.md lists each case and its test).

The org, as of 2025-03-31 (Q1 2025 fully elapsed), everyone under Bea:

    quotas, Q1 2025     bookings (OpportunityRevenue)   new business          family "Software"
    Ana 005ANA          100,000                         50,000
    Ben 005BEN          100,000                         70,000 (bad history)  40,000 ("Software")
    Cal 005CAL          100,000                         60,000 (bad history)  30,000 ("software ")

Clean won deals (credited):
    006ANA1     Ana, New Business, 10,000
    006BEN1     Ben, Renewal, 20,000
    006SPLIT3   30,000 split 33.33 / 33.33 / 33.33 to Ana, Ben, Cal: 10,000 each (99.99% is within
                the 0.01-point tolerance; credits are scaled to total 100%)
    006SPLIT5   20,000 split 50.005 (Ana) / 50 (Ben): 100.005%, within tolerance, scaled:
                Ana 20,000 x 50.005 / 100.005 = 10,000.49997500125, Ben 20,000 x 50 / 100.005 =
                9,999.50002499875
    006NEWBIZ   Ana, Type "New business" (lower-case b), 5,000: counts toward new business
    006BENFAM   Ben, 8,000, one line item of a Product2 of Family "SOFTWARE": Ben's Software 8,000
    006CALFAM   Cal, 3,000, one line item of a Product2 of Family "software": Cal's Software 3,000
    006CASE     Cal, 1,000, won in an OpportunityHistory row whose stage is "closed won"

Quarantined (in no total):
    006NOCLOSE     won, no CloseDate, USD                     Opportunity.CloseDate
    006NOCLOSEEUR  won, no CloseDate, EUR                     Opportunity.CloseDate
    006RANGE       revenue splits 150% and -50% (total 100)   OpportunitySplit.SplitPercentage
    006OVERLAY     overlay rows for Ben of 60% and 60%        OpportunitySplit.SplitPercentage
    006LEGACY      won in a stage known nowhere               OpportunityHistory.StageName
    006GHOST       a line item of product 01tGHOST (none)     OpportunityLineItem.Product2Id
    006NOPRICE     a line item with no TotalPrice             OpportunityLineItem.TotalPrice
    006OPENOLD     open, in a stage known nowhere             open_pipeline_quarantine
    0J9CALNB       history row with an empty QuotaAmount      ForecastingQuotaHistory.QuotaAmount
    0J9BENNB       two history rows of 2025-02-01 disagree    ForecastingQuotaHistory.EffectiveDate

So, Q1 2025 bookings: Ana 10,000 + 10,000 + 10,000.49997500125 + 5,000 = 35,000.49997500125;
Ben 20,000 + 10,000 + 9,999.50002499875 + 8,000 = 47,999.50002499875; Cal 10,000 + 3,000 +
1,000 = 14,000; company 97,000 of 300,000. New business: Ana 10,000 + 5,000 = 15,000 of 50,000
(the company's only new-business quota). Software: Ben 8,000 of 40,000, Cal 3,000 of 30,000,
company 11,000 of 70,000.
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

AS_OF = "2025-03-31"
Q1 = "2025-01-01"
BEA, ANA, BEN, CAL = "005BEA", "005ANA", "005BEN", "005CAL"
OR, NB = "0DbOR", "0DbNB"
CREATED = "2025-01-05T10:00:00.000+0000"


def won(id, owner, amount, close, type="Renewal", currency="USD"):
    return opportunity(id, owner, type, "Closed Won", amount, close, CREATED, currency=currency)


def split(opp, owner, pct, type_id):
    return {"OpportunityId": opp, "SplitOwnerId": owner, "SplitPercentage": pct, "SplitTypeId": type_id}


def fqh(owner, amount, effective):
    return {"QuotaOwnerId": owner, "ForecastingTypeId": NB, "StartDate": Q1, "ProductFamily": None,
            "QuotaAmount": amount, "CurrencyIsoCode": "USD", "EffectiveDate": effective}


ORG = {
    "User": [user(BEA, "Bea Baker"), user(ANA, "Ana Alvarez", BEA), user(BEN, "Ben Becker", BEA), user(CAL, "Cal Cole", BEA)],
    "ForecastingType": [{"Id": OR, "DeveloperName": "OpportunityRevenue"}, {"Id": NB, "DeveloperName": "NewBusiness"}],
    "ForecastingQuota": [
        quota("0J9ANA", ANA, OR, Q1, 100_000),
        quota("0J9BEN", BEN, OR, Q1, 100_000),
        quota("0J9CAL", CAL, OR, Q1, 100_000),
        quota("0J9ANANB", ANA, NB, Q1, 50_000),
        quota("0J9BENNB", BEN, NB, Q1, 70_000),
        quota("0J9CALNB", CAL, NB, Q1, 60_000),
        quota("0J9BENSW", BEN, OR, Q1, 40_000, family="Software"),
        quota("0J9CALSW", CAL, OR, Q1, 30_000, family="software "),
    ],
    "ForecastingQuotaHistory": [
        fqh(CAL, 60_000, "2025-01-01"),
        fqh(CAL, None, "2025-03-01"),
        fqh(BEN, 70_000, "2025-01-01"),
        fqh(BEN, 75_000, "2025-02-01"),
        fqh(BEN, 80_000, "2025-02-01"),
    ],
    "Opportunity": [
        won("006ANA1", ANA, 10_000, "2025-02-10", type="New Business"),
        won("006BEN1", BEN, 20_000, "2025-02-20"),
        won("006SPLIT3", ANA, 30_000, "2025-02-25"),
        won("006SPLIT5", BEN, 20_000, "2025-03-05"),
        won("006NEWBIZ", ANA, 5_000, "2025-03-10", type="New business"),
        won("006BENFAM", BEN, 8_000, "2025-03-12"),
        won("006CALFAM", CAL, 3_000, "2025-03-13"),
        won("006CASE", CAL, 1_000, "2025-03-20"),
        won("006NOCLOSE", ANA, 4_000, None),
        won("006NOCLOSEEUR", ANA, 4_000, None, currency="EUR"),
        won("006RANGE", ANA, 6_000, "2025-03-01"),
        won("006OVERLAY", ANA, 7_000, "2025-03-02"),
        won("006LEGACY", ANA, 9_000, "2025-03-03"),
        won("006GHOST", BEN, 2_500, "2025-03-04"),
        won("006NOPRICE", BEN, 1_500, "2025-03-06"),
        opportunity("006OPENOLD", ANA, "Renewal", "Negotiation", 12_000, "2025-05-30", CREATED),
    ],
    "OpportunityHistory": [
        history("006CASE", "2025-03-20T12:00:00.000+0000", "Closed Won", 1_000, "2025-03-20") | {"StageName": "closed won"},
        history("006LEGACY", "2025-03-03T12:00:00.000+0000", "Closed Won", 9_000, "2025-03-03") | {"StageName": "Closed Won (legacy)"},
        history("006OPENOLD", "2025-02-01T12:00:00.000+0000", "Negotiation", 12_000, "2025-05-30") | {"StageName": "Qualification (old)"},
    ],
    "OpportunityStage": STANDARD_STAGES,
    "OpportunitySplitType": [
        {"Id": "149REV", "DeveloperName": "Revenue", "IsTotalValidated": True},
        {"Id": "149OVL", "DeveloperName": "Overlay", "IsTotalValidated": False},
    ],
    "OpportunitySplit": [
        split("006SPLIT3", ANA, 33.33, "149REV"), split("006SPLIT3", BEN, 33.33, "149REV"), split("006SPLIT3", CAL, 33.33, "149REV"),
        split("006SPLIT5", ANA, 50.005, "149REV"), split("006SPLIT5", BEN, 50, "149REV"),
        split("006RANGE", ANA, 150, "149REV"), split("006RANGE", BEN, -50, "149REV"),
        split("006OVERLAY", BEN, 60, "149OVL"), split("006OVERLAY", BEN, 60, "149OVL"),
    ],
    "Product2": [{"Id": "01tP1", "Family": "SOFTWARE"}, {"Id": "01tP2", "Family": "software"}],
    "OpportunityLineItem": [
        {"OpportunityId": "006BENFAM", "Product2Id": "01tP1", "TotalPrice": 8_000},
        {"OpportunityId": "006CALFAM", "Product2Id": "01tP2", "TotalPrice": 3_000},
        {"OpportunityId": "006GHOST", "Product2Id": "01tGHOST", "TotalPrice": 2_500},
        {"OpportunityId": "006NOPRICE", "Product2Id": "01tP1", "TotalPrice": None},
    ],
    "DatedConversionRate": [
        {"IsoCode": "EUR", "ConversionRate": 0.90, "StartDate": "2024-01-01", "NextStartDate": "9999-12-31"},
    ],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One refresh of ORG as of AS_OF: (exit code, stderr, db path)."""
    root = tmp_path_factory.mktemp("bad_records")
    source = write_org(root / "org", **ORG)
    with pytest.MonkeyPatch.context() as mp:
        db = platform_env(mp, source, root / "work")
        rc, _, err = run_refresh(AS_OF)
    return rc, err, db


def approx(x):
    return pytest.approx(x, rel=1e-12)


def attainment(db, level, entity, quota_type="bookings", family=None):
    rows = query(
        db,
        "select quota, closed_won from quota_platform.attainment where cast(as_of_date as varchar) = ? "
        "and level = ? and entity_id = ? and period_type = 'quarter' and cast(period_start as varchar) = ? "
        "and quota_type = ? and " + ("product_family is null" if family is None else "product_family = ?"),
        [AS_OF, level, entity, Q1, quota_type] + ([] if family is None else [family]),
    )
    assert len(rows) == 1, rows
    return rows[0]["quota"], rows[0]["closed_won"]


def quarantined(db, table, record_id, partition="as_of_date", value=AS_OF):
    return query(
        db,
        f"select object, field, problem from quota_platform.{table} where cast({partition} as varchar) = ? and record_id = ?",
        [value, record_id],
    )


def test_one_bad_record_stops_nothing(run):
    """Ten bad records of eight kinds, and the refresh still succeeds: no blocking schema or
    split check fails on any of them (a split row of 150% used to fail credited_bookings' schema
    and a 50.005/50 split its blocking check, each stopping the whole day)."""
    rc, err, _ = run
    assert rc == 0, err


@pytest.mark.parametrize(
    ("record", "obj", "field", "words"),
    [
        ("006NOCLOSE", "Opportunity", "CloseDate", "no CloseDate"),
        ("006NOCLOSEEUR", "Opportunity", "CloseDate", "no CloseDate"),
        ("006RANGE", "OpportunitySplit", "SplitPercentage", "must be between 0 and 100"),
        ("006OVERLAY", "OpportunitySplit", "SplitPercentage", "overlay split rows of owner 005BEN total 120.0%"),
        ("006LEGACY", "OpportunityHistory", "StageName", "stage Closed Won (legacy)"),
        ("006GHOST", "OpportunityLineItem", "Product2Id", "product 01tGHOST, which is not a Product2"),
        ("006NOPRICE", "OpportunityLineItem", "TotalPrice", "has TotalPrice (empty)"),
    ],
)
def test_won_record_is_quarantined_with_its_problem(run, record, obj, field, words):
    _, _, db = run
    rows = quarantined(db, "credited_bookings_quarantine", record)
    assert [(r["object"], r["field"]) for r in rows] == [(obj, field)], rows
    assert words in rows[0]["problem"], rows
    assert query(db, "select count(*) n from quota_platform.credited_bookings where opportunity_id = ?", [record]) == [{"n": 0}]


def test_open_deal_in_a_stage_known_nowhere_is_quarantined_not_silently_open(run):
    _, _, db = run
    rows = quarantined(db, "open_pipeline_quarantine", "006OPENOLD")
    assert [(r["object"], r["field"]) for r in rows] == [("OpportunityHistory", "StageName")]
    assert "Qualification (old)" in rows[0]["problem"]
    assert query(db, "select count(*) n from quota_platform.open_pipeline where opportunity_id = '006OPENOLD'") == [{"n": 0}]


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ("0J9CALNB", "QuotaAmount", "has QuotaAmount (empty)"),
        ("0J9BENNB", "EffectiveDate", "two history rows effective 2025-02-01 give USD 75000.0 and USD 80000.0"),
    ],
)
def test_quota_with_bad_history_is_quarantined(run, record, field, words):
    _, _, db = run
    rows = quarantined(db, "quota_snapshots_quarantine", record, "snapshot_month", "2025-03-01")
    assert [(r["object"], r["field"]) for r in rows] == [("ForecastingQuotaHistory", field)], rows
    assert words in rows[0]["problem"], rows
    assert query(db, "select count(*) n from quota_platform.quota_snapshots where quota_id = ?", [record]) == [{"n": 0}]


def test_every_quarantine_row_has_a_problem(run):
    _, _, db = run
    for table in ("credited_bookings_quarantine", "open_pipeline_quarantine", "quota_snapshots_quarantine"):
        rows = query(db, f"select problem from quota_platform.{table}")
        assert rows and all((r["problem"] or "").strip() for r in rows), (table, rows)


def test_split_within_tolerance_is_credited_in_proportion_and_adds_up(run):
    """33.33 x 3 (99.99%) and 50.005 / 50 (100.005%) are within 0.01 points of 100%: credited,
    each share scaled so the credits total exactly the amount."""
    _, _, db = run
    rows = query(
        db,
        "select opportunity_id, rep_id, split_percentage, credit_usd from quota_platform.credited_bookings "
        "where cast(as_of_date as varchar) = ? and opportunity_id in ('006SPLIT3', '006SPLIT5') and period_type = 'quarter' "
        "and quota_type = 'bookings' and product_family is null and credit_type = 'revenue' order by 1, 2",
        [AS_OF],
    )
    got = [(r["opportunity_id"], r["rep_id"], r["credit_usd"]) for r in rows]
    assert got == [
        ("006SPLIT3", ANA, approx(10_000)), ("006SPLIT3", BEN, approx(10_000)), ("006SPLIT3", CAL, approx(10_000)),
        ("006SPLIT5", ANA, approx(20_000 * 50.005 / 100.005)), ("006SPLIT5", BEN, approx(20_000 * 50 / 100.005)),
    ]
    # 20,000 x 50.005 / 100.005 = 10,000.49997500125 (the share credited, so credit = amount x share)
    assert rows[3]["split_percentage"] == approx(100 * 50.005 / 100.005)


def test_totals_are_the_clean_records_only(run):
    _, _, db = run
    assert attainment(db, "rep", ANA) == (approx(100_000), approx(10_000 + 10_000 + 20_000 * 50.005 / 100.005 + 5_000))
    assert attainment(db, "rep", BEN) == (approx(100_000), approx(20_000 + 10_000 + 20_000 * 50 / 100.005 + 8_000))
    assert attainment(db, "rep", CAL) == (approx(100_000), approx(10_000 + 3_000 + 1_000))
    assert attainment(db, "company", "company") == (approx(300_000), approx(97_000))
    assert attainment(db, "manager", BEA) == (approx(300_000), approx(97_000))


def test_type_matches_whatever_its_case(run):
    """"New business" counts toward new business as "New Business" does (Salesforce picklist
    values are unique whatever their case): Ana 10,000 + 5,000."""
    _, _, db = run
    assert attainment(db, "rep", ANA, "new_business") == (approx(50_000), approx(15_000))
    assert attainment(db, "company", "company", "new_business") == (approx(50_000), approx(15_000))


def test_product_family_matches_whatever_its_case(run):
    """Quotas of "Software" and "software " are one family, spelled "Software"; line items of
    Product2 Families "SOFTWARE" and "software" count toward it."""
    _, _, db = run
    assert attainment(db, "rep", BEN, family="Software") == (approx(40_000), approx(8_000))
    assert attainment(db, "rep", CAL, family="Software") == (approx(30_000), approx(3_000))
    assert attainment(db, "company", "company", family="Software") == (approx(70_000), approx(11_000))


def test_history_stage_matches_whatever_its_case(run):
    """A history row in stage "closed won" is won ("Closed Won" in OpportunityStage)."""
    _, _, db = run
    rows = query(db, "select count(*) n from quota_platform.credited_bookings where opportunity_id = '006CASE' "
                     "and cast(as_of_date as varchar) = ?", [AS_OF])
    assert rows[0]["n"] > 0
