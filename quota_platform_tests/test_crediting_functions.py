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
    SPLIT_TOLERANCE_PCT,
    CreditInputs,
    attribute_credit,
    check_amounts,
    check_close_dates,
    check_credited_users,
    check_line_items,
    check_stages,
    convert_currency,
    credited_reps,
    product_family_amounts,
    quota_types_counted,
    split_total_mismatches,
    split_total_ok,
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


# --- the bad inputs of issue 9, one rule at a time (docs/bad_input.md) ---------------------------

@pytest.mark.parametrize("amount", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("won", [True, False])
def test_non_finite_amounts_are_quarantined_not_passed_as_zero_or_more(amount, won):
    """NaN compares above every number in polars, so ``Amount >= 0`` let it through; typing
    rejects such text, and a frame built in code that still holds one is quarantined here."""
    w = states([opp("O1", ANA, "New Business", "Closed Won", "10000", "2025-02-10")]).with_columns(
        pl.lit(amount).alias("Amount")
    )
    kept, bad = check_amounts(w, won=won)
    assert kept.is_empty()
    assert bad.select("record_id", "field").rows() == [("O1", "Amount")]


@pytest.mark.parametrize("currency", ["USD", "EUR"])
def test_a_won_deal_without_close_date_is_quarantined_in_any_currency(currency):
    """It used to vanish in the corporate currency (no period to land in) and to be quarantined
    with an empty problem in another (no rate for an empty date)."""
    w = states([opp("O1", ANA, "New Business", "Closed Won", "10000", None, currency)])
    kept, bad = check_close_dates(w, won=True)
    assert kept.is_empty()
    assert bad.select("record_id", "object", "field", "problem").rows() == [
        ("O1", "Opportunity", "CloseDate", "closed-won deal has no CloseDate as of 2025-03-31, so the periods it credits are unknown")
    ]
    assert check_close_dates(w, won=False)[0].height == 1  # an open deal may have none yet


def test_split_tolerance_boundaries():
    """Worked by hand: 99.99 and 100.01 are within 0.01 points; 99.98 and 100.02 are not; the
    float sums of 33.33 x 3 (99.99000000000001) are within."""
    totals = [99.99, 100.01, 33.33 + 33.33 + 33.33, 50.005 + 50, 99.98, 100.02, 90.0]
    got = pl.select(split_total_ok(pl.Series(totals))).to_series().to_list()
    assert got == [True, True, True, True, False, False, False]
    assert SPLIT_TOLERANCE_PCT == 0.01


@pytest.mark.parametrize(
    ("pcts", "shares"),
    [
        ((33.33, 33.33, 33.33), (100 / 3, 100 / 3, 100 / 3)),
        ((50.005, 50.0), (100 * 50.005 / 100.005, 100 * 50 / 100.005)),
        ((60.0, 40.0), (60.0, 40.0)),
    ],
)
def test_revenue_splits_within_tolerance_are_scaled_to_exactly_100(pcts, shares):
    owners = [ANA, BEN, CY][: len(pcts)]
    splits = frame("OpportunitySplit", [split("O1", o, p, "S_REV") for o, p in zip(owners, pcts)])
    credited, kept, bad = credited_reps(converted(ORG_OPPS[:1]), splits, SPLIT_TYPES)
    assert bad.is_empty() and kept.height == 1
    got = dict(credited.select("rep_id", "split_percentage").iter_rows())
    assert got == {o: pytest.approx(s, rel=1e-12) for o, s in zip(owners, shares)}
    assert sum(got.values()) == pytest.approx(100.0, rel=1e-12)


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([(ANA, 150, "S_REV"), (BEN, -50, "S_REV")], "the split row of owner 005ANA has SplitPercentage 150.0; it must be between 0 and 100"),
        ([(ANA, 100, "S_REV"), (CY, None, "S_OVL")], "the split row of owner 005CY has SplitPercentage (empty); it must be between 0 and 100"),
        ([(ANA, 100, "S_REV"), (CY, 120, "S_OVL")], "the split row of owner 005CY has SplitPercentage 120.0; it must be between 0 and 100"),
        ([(ANA, 100, "S_REV"), (CY, 60, "S_OVL"), (CY, 60, "S_OVL")], "the overlay split rows of owner 005CY total 120.0%, more than 100%"),
        ([(ANA, 99.98, "S_REV")], "revenue split percentages total 99.98%, not 100%"),
    ],
)
def test_split_rows_out_of_range_are_quarantined_not_a_schema_failure(rows, problem):
    """A split row outside 0-100% (or an owner's overlay rows past 100%) used to reach
    credited_bookings and fail its blocking schema check, stopping the whole day."""
    splits = frame("OpportunitySplit", [split("O1", o, "" if p is None else p, t) for o, p, t in rows])
    credited, kept, bad = credited_reps(converted(ORG_OPPS[:1]), splits, SPLIT_TYPES)
    assert credited.is_empty() and kept.is_empty()
    assert bad.select("record_id", "object", "field", "problem").rows() == [("O1", "OpportunitySplit", "SplitPercentage", problem)]


def test_overlay_rows_of_different_owners_may_total_past_100():
    """Overlay credit is per person (a sales engineer and a partner manager may each get 100%):
    only one owner's rows past 100% are a problem."""
    splits = frame("OpportunitySplit", [split("O1", ANA, 100, "S_REV"), split("O1", BEN, 100, "S_OVL"), split("O1", CY, 100, "S_OVL")])
    credited, kept, bad = credited_reps(converted(ORG_OPPS[:1]), splits, SPLIT_TYPES)
    assert bad.is_empty() and kept.height == 1
    assert sorted(credited.select("rep_id", "credit_type").rows()) == [(ANA, REVENUE), (BEN, OVERLAY), (CY, OVERLAY)]


def test_the_blocking_check_uses_the_same_tolerance():
    """revenue_credits_sum_to_amount reads split_total_mismatches: credits within 0.01% of the
    amount pass (so a split the quarantine accepted can never stop the day), a deal credited twice
    or half is named."""
    def credits(*rows):
        return pl.DataFrame(
            [(AS_OF, o, "bookings", "quarter", date(2025, 1, 1), None, REVENUE, c, a) for o, c, a in rows],
            schema={"as_of_date": pl.Date, "opportunity_id": pl.String, "quota_type": pl.String, "period_type": pl.String,
                    "period_start": pl.Date, "product_family": pl.String, "credit_type": pl.String,
                    "credit_usd": pl.Float64, "amount_usd": pl.Float64},
            orient="row",
        )

    ok = credits(("O1", 10_000.5, 20_000), ("O1", 9_999.5, 20_000), ("O2", 9_999.0, 10_000), ("O3", 0.0, 0.0))
    assert split_total_mismatches(ok).is_empty()
    bad = credits(("O4", 10_000, 10_000), ("O4", 10_000, 10_000), ("O5", 5_000, 10_000), ("O6", 1.0, 0.0), ("O7", 9_998.0, 10_000))
    assert split_total_mismatches(bad)["opportunity_id"].to_list() == ["O4", "O5", "O6", "O7"]


def test_a_stage_known_nowhere_is_quarantined_and_stages_match_whatever_their_case():
    """History says "closed won" (known as "Closed Won" from the current opportunity) and "Won
    (old)" (known nowhere): the first is won, the second cannot be told won from open."""
    o = frame("Opportunity", [opp("O1", ANA, "Renewal", "Closed Won", "1000", "2025-03-01"), opp("O2", ANA, "Renewal", "Closed Won", "2000", "2025-03-02")])
    h = frame("OpportunityHistory", [
        {"OpportunityId": "O1", "CreatedDate": "2025-03-01T10:00:00Z", "StageName": "closed won ", "Amount": "1000", "CloseDate": "2025-03-01"},
        {"OpportunityId": "O2", "CreatedDate": "2025-03-02T10:00:00Z", "StageName": "Won (old)", "Amount": "2000", "CloseDate": "2025-03-02"},
    ])
    flags = stage_flags(empty_frame("OpportunityStage"), o)
    plain = states_as_of(o, h, flags, [AS_OF], only_won=True)
    assert plain["Id"].to_list() == ["O1"]  # training reads won states only: the unknown one is left out
    w = states_as_of(o, h, flags, [AS_OF], only_won=True, keep_unknown_stages=True).rename({"Id": "opportunity_id"})
    kept, bad = check_stages(w)
    assert kept["opportunity_id"].to_list() == ["O1"]
    assert bad.select("record_id", "object", "field").rows() == [("O2", "OpportunityHistory", "StageName")]
    assert "stage Won (old)" in bad["problem"][0]


@pytest.mark.parametrize("type_", ["New business", "NEW BUSINESS", " new business "])
def test_opportunity_type_matches_whatever_its_case(type_):
    w = states([opp("O1", ANA, type_, "Closed Won", "10000", "2025-02-10")])
    assert quota_types_counted(w, ["new_business", "bookings"]).sort("quota_type")["quota_type"].to_list() == ["bookings", "new_business"]


def test_line_items_of_an_unknown_product_or_without_price_quarantine_when_families_count():
    items = frame("OpportunityLineItem", [
        {"OpportunityId": "O1", "Product2Id": "P_GHOST", "TotalPrice": "500"},
        {"OpportunityId": "O2", "Product2Id": "P_PLAT", "TotalPrice": ""},
        {"OpportunityId": "O3", "Product2Id": "P_PLAT", "TotalPrice": "4000"},
    ])
    w = states(ORG_OPPS)
    kept, bad = check_line_items(w, items, PRODUCTS, ["Platform"])
    assert kept["opportunity_id"].to_list() == ["O3"]
    assert sorted(bad.select("record_id", "object", "field").rows()) == [
        ("O1", "OpportunityLineItem", "Product2Id"), ("O2", "OpportunityLineItem", "TotalPrice")
    ]
    # without a family quota, line items are not read: nothing to quarantine
    assert check_line_items(w, items, PRODUCTS, [])[0].height == 3


def test_product_family_matches_whatever_its_case_and_takes_the_quotas_spelling():
    products = frame("Product2", [{"Id": "P_PLAT", "Family": "PLATFORM "}, {"Id": "P_SERV", "Family": "Services"}])
    base = product_family_amounts(states(ORG_OPPS), LINE_ITEMS, products, ["platform", "Platform"])
    # O3: 3,000 + 1,000 of Platform, spelled as the quotas spell it (first in sort order: "Platform")
    assert base.filter(pl.col("product_family").is_not_null()).select("opportunity_id", "product_family", "amount_local").rows() == [
        ("O3", "Platform", 4000.0)
    ]
