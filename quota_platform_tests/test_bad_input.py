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

from pathlib import Path

import polars as pl
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

    def run(org: dict, edit=None, **write_options):
        """``edit(folder)``, when given, changes the written files before the refresh (a file
        corrupted in a way the row builders cannot write)."""
        source = write_org(tmp_path / "org", **write_options, **org)
        if edit is not None:
            edit(source)
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



# ---------------------------------------------------------------------------------------------
# values and files that cannot be read as the contract says: the run stops, naming the object,
# the record and the field (and the file's line for CSV); docs/bad_input.md


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1,5", "a decimal comma: stripping the comma made it 15"),
        ("NaN", "not a number: it passed every >= 0 guard"),
        ("inf", "infinite: it passed every >= 0 guard"),
        ("1e400", "overflows to infinity"),
    ],
)
def test_amount_that_is_not_a_finite_number_stops(refresh_org, value, why):
    """An Amount of {value} ({why}) stops the run naming Opportunity, the record and Amount."""
    org = base_org()
    org["Opportunity"][1]["Amount"] = value
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity", "006BEN1", "Amount", repr(value))


def test_thousands_commas_still_read_as_thousands(refresh_org):
    """"20,000" is 20,000 (commas between groups of three digits are thousands separators)."""
    org = base_org()
    org["Opportunity"][1]["Amount"] = "20,000"
    rc, _, err, db = refresh_org(org)
    assert rc == 0, err
    assert rep_q1(db, BEN)["closed_won"] == approx(20_000)


@pytest.mark.parametrize("value", ["2025-02-20junk", "2025-02-30", "20/02/2025"])
def test_close_date_that_is_not_a_date_stops(refresh_org, value):
    """A CloseDate of {value} used to keep its first 10 characters (so "2025-02-20junk" read as
    2025-02-20); now it stops the run naming Opportunity, the record and CloseDate."""
    org = base_org()
    org["Opportunity"][1]["CloseDate"] = value
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity", "006BEN1", "CloseDate")


def test_a_datetime_in_a_date_field_keeps_its_date(refresh_org):
    """Some exports write date fields as date-times: the date part is kept."""
    org = base_org()
    org["Opportunity"][1]["CloseDate"] = "2025-02-20T00:00:00.000+0000"
    rc, _, err, db = refresh_org(org)
    assert rc == 0, err
    assert [r["close_date"].isoformat() for r in credited(db, "006BEN1")][:1] == ["2025-02-20"]


def _append_line(folder: Path, name: str, line: str) -> None:
    with (folder / name).open("a", encoding="utf-8", newline="") as fh:
        fh.write(line + "\n")


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        # an unquoted comma inside the Name: 16 fields for 15 columns
        ("006RAG,Deal, Inc,001RAG,005ANA,New Business,Closed Won,5000,USD,100,2025-03-01,"
         "2025-01-10T10:00:00.000+0000,true,true,Closed,false", "16 fields, more"),
        # a line cut short (a truncated export): 10 fields
        ("006RAG,Deal RAG,001RAG,005ANA,New Business,Closed Won,5000,USD,100,2025-03-01", "10 fields, fewer"),
    ],
)
def test_ragged_csv_record_stops_naming_file_line_and_record(refresh_org, line, fields):
    """A record with more or fewer fields than the header put every later value in the wrong
    column (too many ended in a raw polars error naming no file; too few were padded with empty
    values, silently). The run stops naming the object, the file, the line and the record's Id."""
    rc, _, err, _ = refresh_org(base_org(), edit=lambda folder: _append_line(folder, "Opportunity.csv", line))
    assert_stops(rc, err, "Opportunity", "Opportunity.csv", "line 4", "Id=006RAG", fields)


def test_unclosed_quote_stops_naming_the_line(refresh_org):
    line = '006QUOTE,"Deal QUOTE,001Q,005ANA,New Business,Closed Won,5000,USD,100,2025-03-01,2025-01-10T10:00:00Z,true,true,Closed,false'
    rc, _, err, _ = refresh_org(base_org(), edit=lambda folder: _append_line(folder, "Opportunity.csv", line))
    assert_stops(rc, err, "Opportunity", "Opportunity.csv", "line 4", "quote")


def test_blank_lines_are_skipped(refresh_org):
    """A blank line between records is not a record (it used to read as one with every field
    empty, stopping the run on an empty Id)."""
    def edit(folder):
        path = folder / "Opportunity.csv"
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0], lines[1], "", lines[2]]) + "\n\n")

    rc, _, err, db = refresh_org(base_org(), edit=edit)
    assert rc == 0, err
    assert company_q1(db)["closed_won"] == approx(30_000)


def test_non_utf8_file_stops_naming_line_record_and_field(refresh_org):
    """A Latin-1 export ("Müller" as the byte 0xfc) used to be decoded with replacement
    characters, silently changing the name (and would change an Id the same way). The run stops
    naming the object, the field, the file, the line, the record and the bytes."""
    def edit(folder):
        path = folder / "User.csv"
        path.write_bytes(path.read_bytes().replace(b"Ben Becker", b"Ben M\xfcller"))

    rc, _, err, _ = refresh_org(base_org(), edit=edit)
    assert_stops(rc, err, "User.Name", "User.csv", "not UTF-8", "line 4", "Id=005BEN", r"\xfc")


def test_utf8_with_byte_order_mark_and_accents_reads(refresh_org):
    """UTF-8 as spreadsheet programs save it (with a byte-order mark), accents included."""
    def edit(folder):
        path = folder / "User.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"Ben Becker", "Ben Müller".encode()))

    rc, _, err, db = refresh_org(base_org(), edit=edit)
    assert rc == 0, err
    assert query(db, "select Name from quota_platform.raw_user where Id = ?", [BEN]) == [{"Name": "Ben Müller"}]


def _to_parquet(folder: Path, name: str) -> Path:
    csv_path = folder / f"{name}.csv"
    parquet = folder / f"{name}.parquet"
    pl.read_csv(csv_path, infer_schema=False).write_parquet(parquet)
    csv_path.unlink()
    return parquet


@pytest.mark.parametrize("damage", ["truncated", "not parquet"])
def test_broken_parquet_file_stops_naming_the_file(refresh_org, damage):
    """A Parquet file cut short (an interrupted copy) or holding something else ended in a raw
    polars error naming no file; now the run stops naming the object and the file."""
    def edit(folder):
        parquet = _to_parquet(folder, "Opportunity")
        data = parquet.read_bytes()
        parquet.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"Id,Name\n006X,not parquet\n")

    rc, _, err, _ = refresh_org(base_org(), edit=edit)
    assert_stops(rc, err, "Opportunity", "Opportunity.parquet", "cannot be read as a Parquet file")


def test_nan_in_a_parquet_float_column_stops(refresh_org):
    """A Parquet float column can hold NaN as a value; it is no more an amount than the text
    "NaN" is."""
    def edit(folder):
        parquet = _to_parquet(folder, "Opportunity")
        frame = pl.read_parquet(parquet).with_columns(
            pl.when(pl.col("Id") == "006BEN1").then(float("nan")).otherwise(pl.col("Amount").cast(pl.Float64)).alias("Amount")
        )
        frame.write_parquet(parquet)

    rc, _, err, _ = refresh_org(base_org(), edit=edit)
    assert_stops(rc, err, "Opportunity", "006BEN1", "Amount", "finite number")


def test_negative_credit_history_months_is_a_settings_error(tmp_path, monkeypatch):
    """QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS=-1 used to end in a polars error; the command stops
    with exit code 2 naming the variable, before reading anything."""
    source = write_org(tmp_path / "org", **base_org())
    platform_env(monkeypatch, source, tmp_path / "work")
    monkeypatch.setenv("QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS", "-1")
    rc, _, err = run_refresh(AS_OF)
    assert rc == 2
    assert "QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS must be 0 or more, got -1" in err


def test_junk_in_a_field_with_a_default_stops_instead_of_taking_the_default(refresh_org):
    """IsDeleted defaults to false when empty; "maybe" used to be filled with that default, so a
    deal whose deletion flag was garbled counted as live. Found by the property test
    (test_properties.py). It now stops naming Opportunity, the record and IsDeleted."""
    org = base_org()
    org["Opportunity"][1]["IsDeleted"] = "maybe"
    rc, _, err, _ = refresh_org(org)
    assert_stops(rc, err, "Opportunity", "006BEN1", "IsDeleted", "'maybe'")
