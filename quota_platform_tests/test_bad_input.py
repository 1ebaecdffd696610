"""Bad input, end to end through ``quota-platform refresh`` (docs/contract.md, Inputs: "Typing"
and Rules: "Bad records"; docs/decisions.md, "Stopping versus quarantining").

A problem with the shape of the input (a missing object or column, a value that does not parse, a
duplicate Id, a ManagerId cycle) stops the run with a message naming the object, the record Id and
the field. A problem with one record goes to ``credited_bookings_quarantine`` or
``quota_snapshots_quarantine`` (object, record_id, field, problem) and is left out of every total.

Each test starts from the same small org, as of 2025-03-31 (Q1 2025 fully elapsed):

    Bea (manager)
    |-- Ana (rep): Q1 bookings quota 100,000; won 006ANA1 for 10,000 on 2025-02-10
    `-- Ben (rep): Q1 bookings quota 100,000; won 006BEN1 for 20,000 on 2025-02-20

so the clean company row for Q1 bookings is quota 200,000 and closed_won 30,000.
"""

from __future__ import annotations

import pytest

from quota_platform_tests.orgs import (
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
BEA, ANA, BEN = "005BEA", "005ANA", "005BEN"
OR = "0DbOR"


def base_org() -> dict[str, list[dict]]:
    return {
        "User": [
            user(BEA, "Bea Baker"),
            user(ANA, "Ana Alvarez", manager=BEA),
            user(BEN, "Ben Becker", manager=BEA),
        ],
        "ForecastingType": [{"Id": OR, "DeveloperName": "OpportunityRevenue"}],
        "ForecastingQuota": [
            quota("0J9ANA", ANA, OR, "2025-01-01", 100_000),
            quota("0J9BEN", BEN, OR, "2025-01-01", 100_000),
        ],
        "Opportunity": [
            opportunity("006ANA1", ANA, "New Business", "Closed Won", 10_000, "2025-02-10", "2025-01-05T10:00:00.000+0000"),
            opportunity("006BEN1", BEN, "Renewal", "Closed Won", 20_000, "2025-02-20", "2025-01-06T10:00:00.000+0000"),
        ],
        "DatedConversionRate": [
            {"IsoCode": "USD", "ConversionRate": 1.0, "StartDate": "2020-01-01", "NextStartDate": "9999-12-31"},
            {"IsoCode": "EUR", "ConversionRate": 0.90, "StartDate": "2024-01-01", "NextStartDate": "9999-12-31"},
        ],
    }


@pytest.fixture
def refresh_org(tmp_path, monkeypatch):
    """Write an org and refresh it as of AS_OF: returns (exit code, stdout, stderr, db path)."""

    def run(org: dict, **write_options):
        source = write_org(tmp_path / "org", **write_options, **org)
        db = platform_env(monkeypatch, source, tmp_path / "work")
        rc, out, err = run_refresh(AS_OF)
        return rc, out, err, db

    return run


def assert_stops(rc, err, *names):
    """The run stopped, and one line of its message names all of ``names`` (object, record Id,
    field) together, so that the names cannot come from unrelated lines such as a traceback."""
    assert rc != 0, "the refresh should have stopped"
    assert any(all(name in line for name in names) for line in err.splitlines()), (
        f"no line of the error message names all of {names}:\n{err}"
    )


def quarantine(db, table, record_id, date_column="as_of_date", date_prefix=AS_OF):
    rows = query(
        db,
        f"select object, record_id, field, problem from quota_platform.{table} "
        f"where cast({date_column} as varchar) like ? and record_id = ?",
        [date_prefix + "%", record_id],
    )
    return rows


def company_q1(db):
    rows = query(
        db,
        "select quota, closed_won, attainment_pct from quota_platform.attainment "
        "where cast(as_of_date as varchar) = ? and level = 'company' and period_type = 'quarter' "
        "and cast(period_start as varchar) = ? and quota_type = 'bookings' and product_family is null",
        [AS_OF, Q1],
    )
    assert len(rows) == 1, rows
    return rows[0]


def rep_q1(db, rep):
    rows = query(
        db,
        "select quota, closed_won, attainment_pct, pace_status from quota_platform.attainment "
        "where cast(as_of_date as varchar) = ? and level = 'rep' and entity_id = ? "
        "and period_type = 'quarter' and cast(period_start as varchar) = ? "
        "and quota_type = 'bookings' and product_family is null",
        [AS_OF, rep, Q1],
    )
    assert len(rows) == 1, rows
    return rows[0]


def credited(db, opp):
    return query(
        db,
        "select * from quota_platform.credited_bookings "
        "where cast(as_of_date as varchar) = ? and opportunity_id = ?",
        [AS_OF, opp],
    )


def approx(x):
    return pytest.approx(x, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# clean runs


def test_base_org_refreshes(refresh_org):
    """The starting org of every case here is clean: company Q1 bookings 30,000 of 200,000."""
    rc, _, err, db = refresh_org(base_org())
    assert rc == 0, err
    row = company_q1(db)
    # 10,000 + 20,000 = 30,000 of 100,000 + 100,000; 100 x 30,000 / 200,000 = 15%
    assert (row["quota"], row["closed_won"], row["attainment_pct"]) == (approx(200_000), approx(30_000), approx(15.0))
    assert query(db, "select count(*) as n from quota_platform.credited_bookings_quarantine "
                     "where cast(as_of_date as varchar) = ?", [AS_OF])[0]["n"] == 0


def test_tiny_org_without_optional_objects_or_fields(refresh_org):
    """One rep, one quota, only the required objects (no history, stages, splits, products or
    rates) and only the required fields (a single-currency org): it refreshes and credits."""
    org = {
        "User": [{"Id": "005SOLO", "Name": "Sam Solo", "ManagerId": None}],
        "ForecastingType": [{"Id": OR, "DeveloperName": "OpportunityRevenue"}],
        "ForecastingQuota": [
            {"Id": "0J9SOLO", "QuotaOwnerId": "005SOLO", "ForecastingTypeId": OR,
             "StartDate": "2025-01-01", "QuotaAmount": 50_000},
        ],
        "Opportunity": [
            {"Id": "006SOLO1", "OwnerId": "005SOLO", "Type": "New Business", "StageName": "Closed Won",
             "Amount": 12_500, "CloseDate": "2025-02-10", "CreatedDate": "2025-01-05T10:00:00.000+0000",
             "IsClosed": True, "IsWon": True},
            {"Id": "006SOLO2", "OwnerId": "005SOLO", "Type": "New Business", "StageName": "Negotiation",
             "Amount": 30_000, "CloseDate": "2025-04-20", "CreatedDate": "2025-01-07T10:00:00.000+0000",
             "IsClosed": False, "IsWon": False},
        ],
    }
    rc, _, err, db = refresh_org(org, only_given_columns=True)
    assert rc == 0, err
    row = rep_q1(db, "005SOLO")
    # 12,500 of 50,000 = 25%
    assert (row["quota"], row["closed_won"], row["attainment_pct"]) == (approx(50_000), approx(12_500), approx(25.0))
    row = company_q1(db)
    assert (row["quota"], row["closed_won"]) == (approx(50_000), approx(12_500))
    assert credited(db, "006SOLO2") == []


def test_quota_of_zero_gives_null_attainment(refresh_org):
    """attainment_pct = 100 x closed_won / quota is undefined for a quota of 0: NULL, pace_status
    no_quota; the company row still divides its own sums."""
    org = base_org()
    org["ForecastingQuota"][0]["QuotaAmount"] = 0
    rc, _, err, db = refresh_org(org)
    assert rc == 0, err
    row = rep_q1(db, ANA)
    assert (row["quota"], row["closed_won"], row["attainment_pct"], row["pace_status"]) == (
        approx(0), approx(10_000), None, "no_quota")
    row = company_q1(db)
    # 0 + 100,000 quota; 30,000 won -> 30%
    assert (row["quota"], row["closed_won"], row["attainment_pct"]) == (approx(100_000), approx(30_000), approx(30.0))


# ---------------------------------------------------------------------------------------------
# shape problems: the run stops with object, record Id and field named


def test_missing_required_object(refresh_org):
    """No Opportunity file: the run stops and names the missing object."""
    org = base_org()
    del org["Opportunity"]
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity")


def test_missing_required_column(refresh_org):
    """Opportunity.csv without its Amount column: the run stops naming the object and the column."""
    rc, _, err, _ = refresh_org(base_org(), drop_columns={"Opportunity": ["Amount"]})
    assert_stops(rc, err, "Opportunity", "Amount")


def test_unparseable_amount(refresh_org):
    """An Amount that is not a number stops the run naming Opportunity, the record Id and Amount."""
    org = base_org()
    org["Opportunity"][1]["Amount"] = "12k"
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity", "006BEN1", "Amount")


def test_unparseable_quota_start_date(refresh_org):
    """A StartDate that is not a date stops the run naming ForecastingQuota, its Id and StartDate."""
    org = base_org()
    org["ForecastingQuota"][1]["StartDate"] = "first of January"
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "ForecastingQuota", "0J9BEN", "StartDate")


def test_manager_cycle(refresh_org):
    """Ana reports to Ben and Ben to Ana: there is no tree to roll up; the run stops naming User,
    a user of the cycle and ManagerId."""
    org = base_org()
    org["User"][1]["ManagerId"] = BEN
    org["User"][2]["ManagerId"] = ANA
    rc, _, err, _ = refresh_org(org)
    assert rc != 0, "the refresh should have stopped"
    assert any(
        "User" in line and "ManagerId" in line and (ANA in line or BEN in line)
        for line in err.splitlines()
    ), err


def test_duplicate_opportunity_id(refresh_org):
    """Two Opportunity rows with one Id stop the run naming the object, the Id and the field."""
    org = base_org()
    twin = dict(org["Opportunity"][0], Amount=11_000)
    org["Opportunity"].append(twin)
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity", "006ANA1", "Id")


def test_duplicate_id_raises_from_refresh_function(tmp_path, monkeypatch):
    """``quota_platform.refresh.refresh`` raises with the same message (for callers other than the
    CLI)."""
    from datetime import date

    from quota_platform.refresh import refresh

    org = base_org()
    org["Opportunity"].append(dict(org["Opportunity"][1]))
    source = write_org(tmp_path / "org", **org)
    platform_env(monkeypatch, source, tmp_path / "work")
    with pytest.raises(Exception) as info:
        refresh(date(2025, 3, 31))
    message = str(info.value)
    assert any(all(n in line for n in ("Opportunity", "006BEN1", "Id")) for line in message.splitlines()), message


# ---------------------------------------------------------------------------------------------
# record problems: quarantined, visible, and out of every total


def assert_quarantined_opportunity(rc, err, db, opp, objects, fields):
    assert rc == 0, f"a record problem should not stop the run:\n{err}"
    rows = quarantine(db, "credited_bookings_quarantine", opp)
    assert rows, f"{opp} not in credited_bookings_quarantine"
    assert any(r["object"] in objects and r["field"] in fields and (r["problem"] or "").strip() for r in rows), rows
    assert credited(db, opp) == [], f"{opp} is quarantined but credited"
    row = company_q1(db)
    # the clean 10,000 + 20,000 only
    assert (row["quota"], row["closed_won"]) == (approx(200_000), approx(30_000))
    assert rep_q1(db, ANA)["closed_won"] == approx(10_000)
    assert rep_q1(db, BEN)["closed_won"] == approx(20_000)


def test_null_amount_on_won_deal(refresh_org):
    """A won deal with no Amount is quarantined (Opportunity, its Id, Amount)."""
    org = base_org()
    org["Opportunity"].append(opportunity("006NULL", ANA, "New Business", "Closed Won", None, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006NULL", {"Opportunity"}, {"Amount"})


def test_negative_amount(refresh_org):
    """A won deal with a negative Amount is quarantined (Opportunity, its Id, Amount)."""
    org = base_org()
    org["Opportunity"].append(opportunity("006NEG", ANA, "New Business", "Closed Won", -5_000, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006NEG", {"Opportunity"}, {"Amount"})


def test_owner_not_a_user(refresh_org):
    """A won deal whose OwnerId is no User is quarantined (Opportunity, its Id, OwnerId)."""
    org = base_org()
    org["Opportunity"].append(opportunity("006GHOST", "005NOBODY", "New Business", "Closed Won", 7_000, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006GHOST", {"Opportunity"}, {"OwnerId"})


def test_unknown_currency(refresh_org):
    """A deal in JPY, a currency with no DatedConversionRate at all, is quarantined (Opportunity,
    its Id, CurrencyIsoCode)."""
    org = base_org()
    org["Opportunity"].append(opportunity("006YEN", ANA, "New Business", "Closed Won", 1_000_000, "2025-03-01", "2025-01-10T10:00:00.000+0000", currency="JPY"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006YEN", {"Opportunity"}, {"CurrencyIsoCode"})


def test_no_rate_for_close_date(refresh_org):
    """A EUR deal closing on 2025-02-10 when the only EUR rate starts on 2025-03-01 has no rate in
    force on its CloseDate: quarantined (Opportunity, its Id, the currency or close date field)."""
    org = base_org()
    org["DatedConversionRate"][1]["StartDate"] = "2025-03-01"
    org["Opportunity"].append(opportunity("006EUREARLY", ANA, "New Business", "Closed Won", 9_000, "2025-02-10", "2025-01-10T10:00:00.000+0000", currency="EUR"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006EUREARLY", {"Opportunity"}, {"CurrencyIsoCode", "CloseDate"})


def test_revenue_splits_not_totalling_100(refresh_org):
    """Revenue splits of 50% + 40% = 90% quarantine the opportunity (its Id, SplitPercentage);
    neither split owner is credited."""
    org = base_org()
    org["Opportunity"].append(opportunity("006SPLIT90", ANA, "New Business", "Closed Won", 40_000, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    org["OpportunitySplitType"] = [{"Id": "149REV", "DeveloperName": "Revenue", "IsTotalValidated": True}]
    org["OpportunitySplit"] = [
        {"OpportunityId": "006SPLIT90", "SplitOwnerId": ANA, "SplitPercentage": 50, "SplitTypeId": "149REV"},
        {"OpportunityId": "006SPLIT90", "SplitOwnerId": BEN, "SplitPercentage": 40, "SplitTypeId": "149REV"},
    ]
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006SPLIT90", {"OpportunitySplit", "Opportunity"}, {"SplitPercentage"})


def test_quota_for_unknown_user(refresh_org):
    """A ForecastingQuota whose QuotaOwnerId is no User is quarantined (ForecastingQuota, its Id,
    QuotaOwnerId) and is in no quota total."""
    org = base_org()
    org["ForecastingQuota"].append(quota("0J9GHOST", "005NOBODY", OR, "2025-01-01", 75_000))
    rc, _, err, db = refresh_org(org)
    assert rc == 0, f"a record problem should not stop the run:\n{err}"
    rows = quarantine(db, "quota_snapshots_quarantine", "0J9GHOST", "snapshot_month", AS_OF[:7])
    assert any(r["object"] == "ForecastingQuota" and r["field"] == "QuotaOwnerId" and (r["problem"] or "").strip() for r in rows), rows
    snapshot = query(db, "select * from quota_platform.quota_snapshots where quota_id = '0J9GHOST'")
    assert snapshot == []
    row = company_q1(db)
    assert (row["quota"], row["closed_won"]) == (approx(200_000), approx(30_000))  # not 275,000


def test_won_deal_with_empty_owner(refresh_org):
    """A won deal with an empty OwnerId names nobody to credit. It used to be credited to a null
    rep, which the credited_bookings schema check rejects, stopping the whole run; it is now
    quarantined (Opportunity, its Id, OwnerId) with a message saying the field is empty."""
    org = base_org()
    org["Opportunity"].append(opportunity("006NOONE", None, "New Business", "Closed Won", 6_000, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006NOONE", {"Opportunity"}, {"OwnerId"})
    assert [r["problem"] for r in quarantine(db, "credited_bookings_quarantine", "006NOONE")] == [
        "no credited user: OwnerId is empty"
    ]


def test_split_row_without_split_type(refresh_org):
    """A split row with an empty SplitTypeId cannot be told revenue from overlay: the opportunity
    is quarantined (OpportunitySplit, its Id, SplitTypeId). Its message used to come out null,
    which the quarantine table's own schema check rejects, stopping the run."""
    org = base_org()
    org["Opportunity"].append(opportunity("006NOTYPE", ANA, "New Business", "Closed Won", 8_000, "2025-03-01", "2025-01-10T10:00:00.000+0000"))
    org["OpportunitySplitType"] = [{"Id": "149REV", "DeveloperName": "Revenue", "IsTotalValidated": True}]
    org["OpportunitySplit"] = [
        {"OpportunityId": "006NOTYPE", "SplitOwnerId": BEN, "SplitPercentage": 100, "SplitTypeId": None},
    ]
    rc, _, err, db = refresh_org(org)
    assert_quarantined_opportunity(rc, err, db, "006NOTYPE", {"OpportunitySplit"}, {"SplitTypeId"})
    assert [r["problem"] for r in quarantine(db, "credited_bookings_quarantine", "006NOTYPE")] == [
        "a split row has no SplitTypeId"
    ]


def test_quota_with_empty_owner(refresh_org):
    """A ForecastingQuota with an empty QuotaOwnerId used to vanish: neither in a snapshot nor in
    the quarantine. It is now quarantined (ForecastingQuota, its Id, QuotaOwnerId)."""
    org = base_org()
    org["ForecastingQuota"].append(quota("0J9NOONE", None, OR, "2025-01-01", 50_000))
    rc, _, err, db = refresh_org(org)
    assert rc == 0, f"a record problem should not stop the run:\n{err}"
    rows = quarantine(db, "quota_snapshots_quarantine", "0J9NOONE", "snapshot_month", AS_OF[:7])
    assert [(r["object"], r["field"], r["problem"]) for r in rows] == [
        ("ForecastingQuota", "QuotaOwnerId", "quota owner (empty) is not a User")
    ]
    row = company_q1(db)
    assert (row["quota"], row["closed_won"]) == (approx(200_000), approx(30_000))  # not 250,000
