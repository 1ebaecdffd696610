"""Quota snapshot rules (currency at period start, day-weighted mid-period changes, ramp) and the
hierarchy closure, on hand-computed values."""

from datetime import date

import polars as pl
import pytest

from quota_platform.lib.attainment.hierarchy import closure
from quota_platform.lib.attainment.quotas import build_quota_snapshots
from quota_platform.lib.core.contract import ContractError, conform, empty_frame
from quota_platform.lib.core.rules import Rules


def frame(obj, rows):
    return conform(obj, pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}))


USERS = frame(
    "User",
    [
        {"Id": "VP", "Name": "Vee", "ManagerId": None, "Hire_Date__c": None},
        {"Id": "M1", "Name": "Em", "ManagerId": "VP", "Hire_Date__c": None},
        {"Id": "R1", "Name": "Ar", "ManagerId": "M1", "Hire_Date__c": "2019-05-01"},
        {"Id": "R2", "Name": "Bo", "ManagerId": "M1", "Hire_Date__c": "2025-02-10"},
    ],
)
TYPES = frame("ForecastingType", [{"Id": "T1", "DeveloperName": "NewBusiness"}, {"Id": "T9", "DeveloperName": "OpportunityQuantity"}])
RATES = frame(
    "DatedConversionRate",
    [
        {"IsoCode": "EUR", "ConversionRate": "0.9", "StartDate": "2024-12-01", "NextStartDate": "2025-01-01"},
        {"IsoCode": "EUR", "ConversionRate": "0.8", "StartDate": "2025-01-01", "NextStartDate": "2025-04-01"},
    ],
)


def snapshot(quotas, history=None, month=date(2025, 2, 1)):
    return build_quota_snapshots(
        [month],
        users=USERS,
        forecasting_types=TYPES,
        quotas=frame("ForecastingQuota", quotas),
        periods=empty_frame("Period"),
        quota_history=history if history is not None else empty_frame("ForecastingQuotaHistory"),
        rates=RATES,
        rules=Rules(),
    )


def q(id, owner, amount, currency="USD", start="2025-01-01", type_="T1", ramp_adjusted="false"):
    return {
        "Id": id, "QuotaOwnerId": owner, "ForecastingTypeId": type_, "StartDate": start,
        "QuotaAmount": amount, "CurrencyIsoCode": currency, "Ramp_Adjusted__c": ramp_adjusted,
    }


def test_currency_converts_at_period_start_and_ramp_applies():
    snap, bad = snapshot([q("Q1", "R1", "80000", "EUR"), q("Q2", "R2", "90000"), q("Q3", "R2", "60000", start="2025-04-01", ramp_adjusted="true")])
    assert bad.is_empty()
    r1 = snap.filter(pl.col("quota_id") == "Q1").row(0, named=True)
    # 80,000 EUR / 0.8 (the Jan 1 rate, in force on the period start) = 100,000 USD
    assert r1["full_quota"] == pytest.approx(100_000.0)
    assert r1["effective_quota"] == pytest.approx(100_000.0)
    r2 = snap.filter(pl.col("quota_id") == "Q2").row(0, named=True)
    # hired Feb 10: Jan 0, Feb 0.25, Mar 0.5 -> 0.25; 90,000 x 0.25 = 22,500
    assert r2["ramp_factor"] == pytest.approx(0.25)
    assert r2["effective_quota"] == pytest.approx(22_500.0)
    # Q3 is for Q2 2025, which does not overlap the February snapshot
    assert "Q3" not in snap["quota_id"].to_list()


def test_mid_period_change_is_day_weighted():
    history = frame(
        "ForecastingQuotaHistory",
        [
            {"QuotaOwnerId": "R1", "ForecastingTypeId": "T1", "StartDate": "2025-01-01", "QuotaAmount": "100000", "CurrencyIsoCode": "USD", "EffectiveDate": "2025-01-01"},
            {"QuotaOwnerId": "R1", "ForecastingTypeId": "T1", "StartDate": "2025-01-01", "QuotaAmount": "130000", "CurrencyIsoCode": "USD", "EffectiveDate": "2025-02-15"},
        ],
    )
    snap, _ = snapshot([q("Q1", "R1", "130000")], history)
    # Jan 1..Feb 14 = 45 days at 100,000; Feb 15..Mar 31 = 45 days at 130,000: (45x100k + 45x130k) / 90
    assert snap.row(0, named=True)["full_quota"] == pytest.approx(115_000.0)


def test_quota_problems_are_quarantined_with_id_and_field():
    snap, bad = snapshot(
        [
            q("QX", "NOBODY", "1000"),
            q("QT", "R1", "1000", type_="T9"),
            q("QN", "R1", "-5"),
            q("QJ", "R1", "1000", "JPY"),
            q("QM", "R1", "1000", start="2025-02-01"),
        ]
    )
    assert snap.is_empty()
    got = {(r["record_id"], r["field"]) for r in bad.iter_rows(named=True)}
    assert got == {
        ("QX", "QuotaOwnerId"),
        ("QT", "ForecastingTypeId"),
        ("QN", "QuotaAmount"),
        ("QJ", "CurrencyIsoCode"),
        ("QM", "PeriodId"),  # Feb 1 does not start a fiscal quarter
    }
    assert all(bad["problem"].str.len_chars() > 10)


def test_closure_lists_every_ancestor():
    tree = closure(USERS)
    r1 = tree.filter(pl.col("user_id") == "R1").sort("distance")
    assert r1.select("ancestor_id", "distance").rows() == [("R1", 0), ("M1", 1), ("VP", 2)]


def test_manager_cycle_stops_with_the_users_named():
    users = frame(
        "User",
        [{"Id": "A", "Name": "a", "ManagerId": "B"}, {"Id": "B", "Name": "b", "ManagerId": "A"}, {"Id": "C", "Name": "c", "ManagerId": None}],
    )
    with pytest.raises(ContractError, match=r"User.ManagerId: the manager chain loops: Id=A -> Id=B -> Id=A"):
        closure(users)


def test_unknown_manager_stops():
    users = frame("User", [{"Id": "A", "Name": "a", "ManagerId": "ZZ"}])
    with pytest.raises(ContractError, match="Id=A ManagerId=ZZ"):
        closure(users)


def _h(amount, effective, currency="USD"):
    return {"QuotaOwnerId": "R1", "ForecastingTypeId": "T1", "StartDate": "2025-01-01", "QuotaAmount": amount,
            "CurrencyIsoCode": currency, "EffectiveDate": effective}


def test_history_before_the_period_and_repeated_rows_weight_as_stated():
    """A row effective before the period counts from the period start; a row repeated exactly
    (same day, amount and currency) is one row."""
    history = frame(
        "ForecastingQuotaHistory",
        [_h("100000", "2024-12-15"), _h("160000", "2025-03-01"), _h("160000", "2025-03-01")],
    )
    snap, bad = snapshot([q("Q1", "R1", "160000")], history)
    assert bad.is_empty()
    # Jan 1..Feb 28 = 59 days at 100,000; Mar 1..31 = 31 days at 160,000: 10,860,000 / 90
    assert snap.row(0, named=True)["full_quota"] == pytest.approx(10_860_000 / 90)


def test_two_history_rows_of_one_day_that_disagree_quarantine_the_quota():
    """Two rows effective 2025-03-01 say 130,000 and 160,000: which was in force is unknown (the
    last in the file used to win). The quota is quarantined whole, naming the day and both."""
    history = frame(
        "ForecastingQuotaHistory",
        [_h("100000", "2024-12-15"), _h("130000", "2025-03-01"), _h("160000", "2025-03-01")],
    )
    snap, bad = snapshot([q("Q1", "R1", "160000"), q("Q2", "R2", "50000")], history)
    assert snap["quota_id"].to_list() == ["Q2"]
    assert bad.select("object", "record_id", "field", "problem").rows() == [
        ("ForecastingQuotaHistory", "Q1", "EffectiveDate",
         "two history rows effective 2025-03-01 give USD 130000.0 and USD 160000.0; which one was in force is unknown")
    ]


@pytest.mark.parametrize(
    ("amount", "field", "shown"),
    [(None, "QuotaAmount", "(empty)"), ("-5000", "QuotaAmount", "-5000.0")],
)
def test_an_empty_or_negative_history_amount_quarantines_the_quota(amount, field, shown):
    """An empty history amount used to count as nothing on its days while its days still counted:
    100,000 for Jan-Feb and an empty row from Mar 1 averaged to 100,000 x 59 / 90 = 65,556, a
    quota diluted without a word. Now the quota is quarantined whole."""
    history = frame("ForecastingQuotaHistory", [_h("100000", "2025-01-01"), _h(amount, "2025-03-01")])
    snap, bad = snapshot([q("Q1", "R1", "100000")], history)
    assert snap.is_empty()
    assert bad.select("object", "record_id", "field", "problem").rows() == [
        ("ForecastingQuotaHistory", "Q1", field,
         f"the history row effective 2025-03-01 has QuotaAmount {shown}; it must be zero or more")
    ]


def test_a_history_row_without_effective_date_quarantines_the_quota():
    history = frame("ForecastingQuotaHistory", [_h("100000", "2025-01-01"), _h("90000", None)])
    snap, bad = snapshot([q("Q1", "R1", "100000")], history)
    assert snap.is_empty()
    assert bad.select("record_id", "field", "problem").rows() == [
        ("Q1", "EffectiveDate", "a history row (QuotaAmount 90000.0) has no EffectiveDate")
    ]


def test_non_finite_quota_amounts_are_quarantined_not_read_as_ahead():
    """NaN passes ``>= 0`` in polars (NaN sorts above every number): a NaN quota used to give pace
    ``ahead``. Typing rejects NaN text; a frame that still holds one (built in code) is
    quarantined here."""
    quotas = frame("ForecastingQuota", [q("Q1", "R1", "1000"), q("Q2", "R2", "2000")]).with_columns(
        pl.when(pl.col("Id") == "Q1").then(float("nan")).otherwise(pl.col("QuotaAmount")).alias("QuotaAmount")
    )
    snap, bad = build_quota_snapshots(
        [date(2025, 2, 1)], users=USERS, forecasting_types=TYPES, quotas=quotas, periods=empty_frame("Period"),
        quota_history=empty_frame("ForecastingQuotaHistory"), rates=RATES, rules=Rules(),
    )
    assert snap["quota_id"].to_list() == ["Q2"]
    assert bad.select("record_id", "field", "problem").rows() == [("Q1", "QuotaAmount", "quota amount is NaN; it must be zero or more")]


def test_product_families_are_one_family_whatever_their_case():
    """Quotas of "Software" and " software" for one owner and period are the same family: a
    duplicate, both quarantined; a quota of "HARDWARE" keeps the spelling the quotas use."""
    rows = [q("QA", "R1", "1000"), q("QB", "R1", "2000"), q("QC", "R2", "3000")]
    rows[0]["ProductFamily"], rows[1]["ProductFamily"], rows[2]["ProductFamily"] = "Software", " software", "HARDWARE"
    snap, bad = snapshot(rows)
    assert sorted(bad.select("record_id", "field").rows()) == [("QA", "Id"), ("QB", "Id")]
    assert snap.select("quota_id", "product_family").rows() == [("QC", "HARDWARE")]


def test_history_in_a_currency_without_rate_quarantines_the_quota_whole():
    history = frame(
        "ForecastingQuotaHistory",
        [{"QuotaOwnerId": "R1", "ForecastingTypeId": "T1", "StartDate": "2025-01-01", "QuotaAmount": "100000", "CurrencyIsoCode": "JPY", "EffectiveDate": "2025-01-01"}],
    )
    snap, bad = snapshot([q("Q1", "R1", "100000")], history)
    assert snap.is_empty()
    assert bad.select("snapshot_month", "object", "record_id", "field", "problem").rows() == [
        (date(2025, 2, 1), "ForecastingQuotaHistory", "Q1", "CurrencyIsoCode", "unknown currency JPY: no DatedConversionRate rows")
    ]


def test_duplicate_quotas_are_all_quarantined_and_ramp_adjusted_ones_keep_their_amount():
    snap, bad = snapshot([q("QA", "R1", "1000"), q("QB", "R1", "2000"), q("QR", "R2", "90000", ramp_adjusted="true")])
    assert sorted(bad.select("record_id", "field").rows()) == [("QA", "Id"), ("QB", "Id")]
    assert bad["problem"].str.starts_with("two or more quotas for owner R1 type new_business quarter starting 2025-01-01").all()
    # R2 was hired on Feb 10 (factor 0.25 otherwise), but the amount was already reduced
    r = snap.row(0, named=True)
    assert (r["quota_id"], r["ramp_factor"], r["effective_quota"]) == ("QR", 1.0, pytest.approx(90_000.0))
