"""Each crediting rule in its own function (lib/attainment/crediting.py), on small frames whose
values are worked out by hand. test_crediting_rules.py runs the same rules end to end.

The org, as of 2025-03-31, with EUR at 0.9 per USD from 2025-01-01:

    O1  Ana, New Business, won, 10,000 USD                       -> Ana 100%
    O2  Ana, Expansion, won, 9,000 EUR = 10,000 USD; revenue splits Ana 60 / Ben 40, overlay Cy 100
    O3  Ben, Renewal, won, 5,000 USD; line items Platform 3,000 + 1,000, Services 1,000
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from quota_platform.lib.attainment.crediting import (
    OVERLAY,
    REVENUE,
    CreditInputs,
    attribute_credit,
    check_amounts,
    check_credited_users,
    convert_currency,
    credited_reps,
    product_family_amounts,
    quota_types_counted,
    stage_flags,
    states_as_of,
)
from quota_platform.lib.core.contract import conform, empty_frame
from quota_platform.lib.core.rules import Rules

AS_OF = date(2025, 3, 31)
ANA, BEN, CY = "005ANA", "005BEN", "005CY"


def frame(obj: str, rows: list[dict]) -> pl.DataFrame:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return conform(obj, pl.DataFrame([{k: r.get(k) for k in columns} for r in rows], schema={k: pl.String for k in columns}))


def opp(id, owner, type_, stage, amount, close, currency="USD"):
    won, closed = stage == "Closed Won", stage.startswith("Closed")
    return {
        "Id": id, "Name": id, "OwnerId": owner, "Type": type_, "StageName": stage, "Amount": amount,
        "CurrencyIsoCode": currency, "CloseDate": close, "CreatedDate": "2025-01-02T10:00:00Z",
        "IsClosed": str(closed).lower(), "IsWon": str(won).lower(),
    }


ORG_OPPS = [
    opp("O1", ANA, "New Business", "Closed Won", "10000", "2025-02-10"),
    opp("O2", ANA, "Expansion", "Closed Won", "9000", "2025-02-15", "EUR"),
    opp("O3", BEN, "Renewal", "Closed Won", "5000", "2025-03-01"),
]
USERS = frame("User", [{"Id": u, "Name": u, "ManagerId": None} for u in (ANA, BEN, CY)])
RATES = frame(
    "DatedConversionRate",
    [{"IsoCode": "EUR", "ConversionRate": "0.9", "StartDate": "2025-01-01", "NextStartDate": "9999-12-31"}],
)
SPLIT_TYPES = frame(
    "OpportunitySplitType",
    [
        {"Id": "S_REV", "DeveloperName": "Revenue", "IsTotalValidated": "true"},
        {"Id": "S_OVL", "DeveloperName": "Overlay", "IsTotalValidated": "false"},
    ],
)


def split(opp_id, owner, pct, type_id):
    return {"OpportunityId": opp_id, "SplitOwnerId": owner, "SplitPercentage": str(pct), "SplitTypeId": type_id}


SPLITS = frame(
    "OpportunitySplit",
    [split("O2", ANA, 60, "S_REV"), split("O2", BEN, 40, "S_REV"), split("O2", CY, 100, "S_OVL")],
)
PRODUCTS = frame("Product2", [{"Id": "P_PLAT", "Family": "Platform"}, {"Id": "P_SERV", "Family": "Services"}])
LINE_ITEMS = frame(
    "OpportunityLineItem",
    [
        {"OpportunityId": "O3", "Product2Id": "P_PLAT", "TotalPrice": "3000"},
        {"OpportunityId": "O3", "Product2Id": "P_PLAT", "TotalPrice": "1000"},
        {"OpportunityId": "O3", "Product2Id": "P_SERV", "TotalPrice": "1000"},
    ],
)


def states(opps: list[dict]) -> pl.DataFrame:
    """The opportunities as of AS_OF (no history: their current values), with ``opportunity_id``
    as attribute_credit names it."""
    o = frame("Opportunity", opps)
    flags = stage_flags(empty_frame("OpportunityStage"), o)
    return states_as_of(o, empty_frame("OpportunityHistory"), flags, [AS_OF]).rename({"Id": "opportunity_id"})


def converted(opps: list[dict]) -> pl.DataFrame:
    w, bad = convert_currency(states(opps), RATES, rate_date="CloseDate", corporate_currency="USD")
    assert bad.is_empty()
    return w


def inputs(**overrides) -> CreditInputs:
    values = dict(
        users=USERS,
        splits=SPLITS,
        split_types=SPLIT_TYPES,
        line_items=LINE_ITEMS,
        products=PRODUCTS,
        quota_types=["new_business", "expansion", "renewal"],
        quota_families=["Platform"],
        rates=RATES,
        rules=Rules(),
    )
    values.update(overrides)
    return CreditInputs(**values)


# --- amount checks ------------------------------------------------------------------------------


def test_won_amounts_must_be_present_and_not_negative():
    w = states([opp("OK", ANA, "New Business", "Closed Won", "0", "2025-02-01"),
                opp("NULL", ANA, "New Business", "Closed Won", None, "2025-02-01"),
                opp("NEG", ANA, "New Business", "Closed Won", "-5", "2025-02-01")])
    kept, bad = check_amounts(w, won=True)
    assert kept["opportunity_id"].to_list() == ["OK"]
    assert sorted(bad.select("record_id", "field", "problem").rows()) == [
        ("NEG", "Amount", "closed-won deal has amount -5.0 as of 2025-03-31; it must be zero or more"),
        ("NULL", "Amount", "closed-won deal has amount empty as of 2025-03-31; it must be zero or more"),
    ]
    assert bad["as_of_date"].to_list() == [AS_OF, AS_OF]


def test_an_open_deal_without_amount_counts_as_zero_but_a_negative_one_is_quarantined():
    w = states([opp("NULL", ANA, "New Business", "Prospecting", None, "2025-05-01"),
                opp("NEG", ANA, "New Business", "Prospecting", "-1", "2025-05-01")])
    kept, bad = check_amounts(w, won=False)
    assert kept.select("opportunity_id", "Amount").rows() == [("NULL", 0.0)]
    assert bad.select("record_id", "problem").rows() == [
        ("NEG", "open deal has amount -1.0 as of 2025-03-31; it must be zero or more")
    ]


# --- currency -----------------------------------------------------------------------------------


def test_amounts_convert_at_the_rate_in_force_on_the_close_date():
    w = states(ORG_OPPS + [
        opp("JPY", ANA, "New Business", "Closed Won", "100", "2025-02-01", "JPY"),
        opp("EARLY", ANA, "New Business", "Closed Won", "100", "2024-12-31", "eur"),
        opp("NOCUR", ANA, "New Business", "Closed Won", "100", "2025-02-01", None),
    ])
    kept, bad = convert_currency(w, RATES, rate_date="CloseDate", corporate_currency="USD")
    rates = dict(kept.select("opportunity_id", "conversion_rate").rows())
    # EUR 0.9 from 2025-01-01; USD and an empty currency (the corporate one) at 1
    assert rates == {"O1": 1.0, "O2": 0.9, "O3": 1.0, "NOCUR": 1.0}
    assert sorted(bad.select("record_id", "field", "problem").rows()) == [
        ("EARLY", "CurrencyIsoCode", "no DatedConversionRate for EUR in force on 2024-12-31"),
        ("JPY", "CurrencyIsoCode", "unknown currency JPY: no DatedConversionRate rows"),
    ]


# --- who is credited: revenue and overlay splits -------------------------------------------------


def test_revenue_splits_replace_the_owner_and_overlay_splits_sit_beside_them():
    credited, kept, bad = credited_reps(converted(ORG_OPPS), SPLITS, SPLIT_TYPES)
    assert bad.is_empty()
    assert kept.height == 3
    assert sorted(credited.select("opportunity_id", "rep_id", "credit_type", "split_percentage", "_field").rows()) == [
        ("O1", ANA, REVENUE, 100.0, "OwnerId"),
        ("O2", ANA, REVENUE, 60.0, "SplitOwnerId"),
        ("O2", BEN, REVENUE, 40.0, "SplitOwnerId"),
        ("O2", CY, OVERLAY, 100.0, "SplitOwnerId"),
        ("O3", BEN, REVENUE, 100.0, "OwnerId"),
    ]


def test_two_split_rows_of_one_owner_are_one_credit():
    splits = frame("OpportunitySplit", [split("O1", ANA, 50, "S_REV"), split("O1", ANA, 50, "S_REV")])
    credited, _, bad = credited_reps(converted(ORG_OPPS[:1]), splits, SPLIT_TYPES)
    assert bad.is_empty()
    assert credited.select("rep_id", "credit_type", "split_percentage").rows() == [(ANA, REVENUE, 100.0)]


def test_splits_not_totalling_100_or_of_an_unknown_type_quarantine_the_opportunity():
    splits = frame(
        "OpportunitySplit",
        [
            split("O1", ANA, 50, "S_REV"), split("O1", BEN, 40, "S_REV"),  # 90%
            split("O2", ANA, 100, "S_NOPE"),  # no such split type
            split("O3", BEN, 100, None),  # no split type at all
        ],
    )
    credited, kept, bad = credited_reps(converted(ORG_OPPS), splits, SPLIT_TYPES)
    assert credited.is_empty() and kept.is_empty()
    assert sorted(bad.select("record_id", "object", "field", "problem").rows()) == [
        ("O1", "OpportunitySplit", "SplitPercentage", "revenue split percentages total 90.0%, not 100%"),
        ("O2", "OpportunitySplit", "SplitTypeId", "split type S_NOPE is not an OpportunitySplitType"),
        ("O3", "OpportunitySplit", "SplitTypeId", "a split row has no SplitTypeId"),
    ]


# --- unknown credited users ----------------------------------------------------------------------


def test_an_unknown_or_empty_credited_user_quarantines_every_credit_of_the_opportunity():
    splits = frame("OpportunitySplit", [split("O2", ANA, 60, "S_REV"), split("O2", "005GHOST", 40, "S_REV")])
    opps = ORG_OPPS[:2] + [opp("O4", None, "New Business", "Closed Won", "100", "2025-02-01")]
    credited, w, _ = credited_reps(converted(opps), splits, SPLIT_TYPES)
    credited, kept, bad = check_credited_users(credited, w, USERS)
    # O2's 60% to Ana is not kept on its own: the whole deal waits for the split to be fixed
    assert credited.select("opportunity_id", "rep_id").rows() == [("O1", ANA)]
    assert "_field" not in credited.columns
    assert kept["opportunity_id"].to_list() == ["O1"]
    assert sorted(bad.select("record_id", "field", "problem").rows()) == [
        ("O2", "OwnerId", "credited user 005GHOST (SplitOwnerId) is not a User"),
        ("O4", "OwnerId", "no credited user: OwnerId is empty"),
    ]


# --- quota types by opportunity Type -------------------------------------------------------------


@pytest.mark.parametrize(
    ("quota_types", "expected"),
    [
        (["new_business", "expansion", "renewal"],
         [("O1", "new_business"), ("O2", "expansion"), ("O3", "renewal")]),
        # bookings (OpportunityRevenue) counts every Type, an empty one included
        (["new_business", "bookings"],
         [("O1", "bookings"), ("O1", "new_business"), ("O2", "bookings"), ("O3", "bookings"), ("O5", "bookings")]),
        (["expansion"], [("O2", "expansion")]),
    ],
)
def test_each_opportunity_counts_toward_the_quota_types_its_type_names(quota_types, expected):
    w = states(ORG_OPPS + [opp("O5", ANA, None, "Closed Won", "1", "2025-02-01")])
    got = quota_types_counted(w, quota_types)
    assert sorted(got.select("opportunity_id", "quota_type").rows()) == expected


# --- product families ---------------------------------------------------------------------------


def test_a_family_row_sums_the_line_items_of_a_family_some_quota_names():
    got = product_family_amounts(states(ORG_OPPS), LINE_ITEMS, PRODUCTS, ["Platform"])
    # whole deals at their Amount; O3's Platform items 3,000 + 1,000; Services has no quota
    assert sorted(got.select("opportunity_id", "product_family", "amount_local").rows(), key=str) == sorted(
        [("O1", None, 10_000.0), ("O2", None, 9_000.0), ("O3", None, 5_000.0), ("O3", "Platform", 4_000.0)], key=str
    )
    no_family_quota = product_family_amounts(states(ORG_OPPS), LINE_ITEMS, PRODUCTS, [])
    assert no_family_quota["product_family"].null_count() == no_family_quota.height == 3


# --- all of it ----------------------------------------------------------------------------------


def test_attribute_credit_composes_the_rules():
    rows, bad = attribute_credit(states(ORG_OPPS).rename({"opportunity_id": "Id"}), inputs(), rate_date="CloseDate", won=True)
    assert bad.is_empty()
    got = sorted(
        rows.select("opportunity_id", "rep_id", "quota_type", "product_family", "credit_type", "credit_usd").rows(),
        key=str,
    )
    expected = [
        ("O1", ANA, "new_business", None, REVENUE, 10_000.0),
        # 9,000 EUR / 0.9 = 10,000 USD: 60% and 40% revenue, 100% overlay
        ("O2", ANA, "expansion", None, REVENUE, 6_000.0),
        ("O2", BEN, "expansion", None, REVENUE, 4_000.0),
        ("O2", CY, "expansion", None, OVERLAY, 10_000.0),
        ("O3", BEN, "renewal", None, REVENUE, 5_000.0),
        ("O3", BEN, "renewal", "Platform", REVENUE, 4_000.0),
    ]
    assert len(got) == len(expected)
    for g, e in zip(got, sorted(expected, key=str)):
        assert g[:5] == e[:5]
        assert g[5] == pytest.approx(e[5])
