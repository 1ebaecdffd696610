"""Property-based tests (hypothesis) of the crediting and roll-up rules on random orgs, run through
the same lib functions the assets call (states_as_of, credit_bookings, build_quota_snapshots,
build_org_hierarchy, build_attainment):

* a random valid org (reps under managers, won deals in USD and EUR, revenue splits of every
  shape the tolerance admits, overlay splits, family line items) keeps the invariants: no record
  is quarantined, the revenue credits of every deal add up to its amount, every manager row is the
  sum of the rep rows below it and the company row of all, and every rep's closed-won is the one
  worked out here from the records (an oracle written independently of the platform's code);
* a random corruption of one record (a won deal's amount, close date, owner, currency, stage, a
  split row, a line item) quarantines that deal with a non-empty problem, passes every schema and
  blocking check (so it stops nothing), and leaves every rep's totals exactly as in the same org
  without that deal: it never changes anyone else's figure;
* junk text in any typed field of any record stops typing with a message naming the object, the
  record's Id and the field.

Examples are derandomized so that CI runs the same ones each time; a failure prints the org."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from quota_platform.lib import schemas
from quota_platform.lib.attainment.attainment import build_attainment
from quota_platform.lib.attainment.crediting import (
    CreditInputs,
    credit_bookings,
    split_total_mismatches,
    stage_flags,
    states_as_of,
)
from quota_platform.lib.attainment.hierarchy import build_org_hierarchy
from quota_platform.lib.attainment.quotas import build_quota_snapshots
from quota_platform.lib.attainment.rollup import rollup_mismatches
from quota_platform.lib.core.contract import OBJECTS, ContractError, conform
from quota_platform.lib.core.quota_types import org_quota_types
from quota_platform.lib.core.rules import Rules

AS_OF = date(2025, 3, 31)
Q1 = date(2025, 1, 1)
EUR_RATE = 0.9
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# revenue split shapes: a RevOps admin's, including the ones only the tolerance admits
SPLIT_SHAPES = [(100.0,), (60.0, 40.0), (50.0, 50.0), (33.33, 33.33, 33.33), (33.33, 33.33, 33.34), (50.005, 50.0), (25.0, 25.0, 25.0, 25.0)]
TYPES = ["New Business", "Renewal", "Expansion", "Upsell", None, "new business"]


@st.composite
def orgs(draw) -> dict:
    """A valid org as plain records, and the facts an oracle needs."""
    n_reps = draw(st.integers(2, 6))
    n_managers = draw(st.integers(1, 2))
    managers = [f"005M{i}" for i in range(n_managers)]
    reps = [f"005R{i}" for i in range(n_reps)]
    users = [{"Id": "005VP", "Name": "VP", "ManagerId": None}]
    users += [{"Id": m, "Name": m, "ManagerId": "005VP"} for m in managers]
    users += [{"Id": r, "Name": r, "ManagerId": managers[draw(st.integers(0, n_managers - 1))]} for r in reps]
    quotas = [
        {"Id": f"0J9{r}", "QuotaOwnerId": r, "ForecastingTypeId": "FT_OR", "StartDate": "2025-01-01",
         "QuotaAmount": str(draw(st.integers(1, 500)) * 1000)}
        for r in reps
    ]
    quotas.append({"Id": "0J9FAM", "QuotaOwnerId": reps[0], "ForecastingTypeId": "FT_OR", "StartDate": "2025-01-01",
                   "QuotaAmount": "100000", "ProductFamily": "Software"})
    deals, splits, items = [], [], []
    for i in range(draw(st.integers(1, 10))):
        opp_id = f"006D{i:02d}"
        owner = draw(st.sampled_from(reps))
        amount = draw(st.integers(0, 50_000_000)) / 100
        close = Q1 + timedelta(days=draw(st.integers(0, 89)))
        currency = draw(st.sampled_from(["USD", "EUR"]))
        deals.append({
            "Id": opp_id, "Name": opp_id, "OwnerId": owner, "Type": draw(st.sampled_from(TYPES)), "StageName": "Closed Won",
            "Amount": f"{amount:.2f}", "CurrencyIsoCode": currency, "CloseDate": close.isoformat(),
            "CreatedDate": "2024-12-01T10:00:00Z", "IsClosed": "true", "IsWon": "true",
        })
        shape = draw(st.sampled_from([None, *SPLIT_SHAPES]))
        if shape is not None:
            owners = draw(st.permutations(reps).map(lambda p, k=len(shape): p[:k])) if len(shape) <= n_reps else None
            if owners is not None:
                splits += [{"OpportunityId": opp_id, "SplitOwnerId": o, "SplitPercentage": str(p), "SplitTypeId": "ST_REV"}
                           for o, p in zip(owners, shape)]
        if draw(st.booleans()):
            splits.append({"OpportunityId": opp_id, "SplitOwnerId": draw(st.sampled_from(reps)),
                           "SplitPercentage": str(draw(st.integers(0, 100))), "SplitTypeId": "ST_OVL"})
        if draw(st.booleans()):
            items.append({"OpportunityId": opp_id, "Product2Id": draw(st.sampled_from(["01tSW", "01tSV"])),
                          "TotalPrice": f"{draw(st.integers(0, 1_000_000)) / 100:.2f}"})
    return {"User": users, "ForecastingQuota": quotas, "Opportunity": deals, "OpportunitySplit": splits, "OpportunityLineItem": items}


def frames(org: dict) -> dict[str, pl.DataFrame]:
    def frame(obj, rows):
        if not rows:
            return pl.DataFrame(schema=OBJECTS[obj].dtype_schema())
        cols = list(dict.fromkeys(k for r in rows for k in r))
        return conform(obj, pl.DataFrame([{k: r.get(k) for k in cols} for r in rows], schema={k: pl.String for k in cols}))

    fixed = {
        "ForecastingType": [{"Id": "FT_OR", "DeveloperName": "OpportunityRevenue"}],
        "OpportunitySplitType": [{"Id": "ST_REV", "DeveloperName": "Revenue", "IsTotalValidated": "true"},
                                 {"Id": "ST_OVL", "DeveloperName": "Overlay", "IsTotalValidated": "false"}],
        "Product2": [{"Id": "01tSW", "Family": "SOFTWARE"}, {"Id": "01tSV", "Family": "Services"}],
        "DatedConversionRate": [{"IsoCode": "EUR", "ConversionRate": str(EUR_RATE), "StartDate": "2024-01-01", "NextStartDate": "9999-12-31"}],
        "OpportunityStage": [{"ApiName": "Closed Won", "IsClosed": "true", "IsWon": "true"},
                             {"ApiName": "Negotiation", "IsClosed": "false", "IsWon": "false"}],
        "OpportunityHistory": [],
        "Period": [],
        "ForecastingQuotaHistory": [],
    }
    return {obj: frame(obj, rows) for obj, rows in {**fixed, **org}.items()}


def run(org: dict):
    """The day's pipeline as the assets run it: (credits, quarantine, attainment, hierarchy)."""
    f = frames(org)
    rules = Rules()
    flags = stage_flags(f["OpportunityStage"], f["Opportunity"])
    won = states_as_of(f["Opportunity"], f["OpportunityHistory"], flags, [AS_OF], only_won=True, keep_unknown_stages=True)
    inputs = CreditInputs(
        users=f["User"], splits=f["OpportunitySplit"], split_types=f["OpportunitySplitType"],
        line_items=f["OpportunityLineItem"], products=f["Product2"], quota_types=org_quota_types(f["ForecastingType"]),
        quota_families=f["ForecastingQuota"]["ProductFamily"].drop_nulls().unique().sort().to_list(),
        rates=f["DatedConversionRate"], rules=rules,
    )
    credits, bad = credit_bookings(won, inputs)
    month = AS_OF.replace(day=1)
    snapshots, quota_bad = build_quota_snapshots(
        [month], users=f["User"], forecasting_types=f["ForecastingType"], quotas=f["ForecastingQuota"],
        periods=f["Period"], quota_history=f["ForecastingQuotaHistory"], rates=f["DatedConversionRate"], rules=rules,
    )
    assert quota_bad.is_empty()
    hierarchy = build_org_hierarchy([month], f["User"])
    attainment = build_attainment([AS_OF], snapshots=snapshots, hierarchy=hierarchy, credits=credits, rules=rules)
    return credits, bad, attainment, hierarchy


def rep_totals(attainment: pl.DataFrame) -> dict:
    """(rep, period type, quota type, family) -> (quota, closed_won) of every rep row."""
    reps = attainment.filter(pl.col("level") == "rep")
    return {
        (r["entity_id"], r["period_type"], r["quota_type"], r["product_family"]): (r["quota"], r["closed_won"])
        for r in reps.iter_rows(named=True)
    }


def oracle_quarter_bookings(org: dict) -> dict[str, float]:
    """Each rep's Q1 closed-won on the whole-deal bookings quota, from the records alone: the deal
    in USD (EUR / 0.9) to the owner, or to the revenue split owners in proportion to their
    percentages (scaled to 100%: every shape drawn is within tolerance)."""
    totals = {u["Id"]: 0.0 for u in org["User"]}
    for deal in org["Opportunity"]:
        usd = float(deal["Amount"]) / (EUR_RATE if deal["CurrencyIsoCode"] == "EUR" else 1.0)
        revenue = [s for s in org["OpportunitySplit"] if s["OpportunityId"] == deal["Id"] and s["SplitTypeId"] == "ST_REV"]
        if revenue:
            total = sum(float(s["SplitPercentage"]) for s in revenue)
            for s in revenue:
                totals[s["SplitOwnerId"]] += usd * float(s["SplitPercentage"]) / total
        else:
            totals[deal["OwnerId"]] += usd
    return totals


def assert_invariants(credits, bad, attainment, hierarchy):
    schemas.CREDITED_BOOKINGS.validate(credits)
    schemas.quarantine_schema("as_of_date").validate(bad)
    schemas.ATTAINMENT.validate(attainment)
    assert split_total_mismatches(credits).is_empty()
    assert rollup_mismatches(attainment, hierarchy).is_empty()


@SETTINGS
@given(orgs())
def test_valid_orgs_keep_the_rollup_and_split_invariants(org):
    credits, bad, attainment, hierarchy = run(org)
    assert bad.is_empty(), bad
    assert_invariants(credits, bad, attainment, hierarchy)
    expected = oracle_quarter_bookings(org)
    got = {k[0]: v[1] for k, v in rep_totals(attainment).items() if k[1:] == ("quarter", "bookings", None)}
    assert got == {r: pytest.approx(expected[r], rel=1e-9, abs=1e-6) for r in got}
    company = attainment.filter((pl.col("level") == "company") & (pl.col("period_type") == "quarter") & pl.col("product_family").is_null())
    assert company["closed_won"].to_list() == [pytest.approx(sum(expected.values()), rel=1e-9, abs=1e-6)]


def _won_deal(org: dict, index: int) -> dict:
    return org["Opportunity"][index % len(org["Opportunity"])]


def corrupt(org: dict, kind: str, index: int) -> str:
    """Corrupt one won deal of ``org`` in place (or a record of it); returns the deal's Id."""
    deal = _won_deal(org, index)
    opp_id = deal["Id"]
    revenue = [s for s in org["OpportunitySplit"] if s["OpportunityId"] == opp_id and s["SplitTypeId"] == "ST_REV"]
    if kind == "amount empty":
        deal["Amount"] = None
    elif kind == "amount negative":
        deal["Amount"] = "-1.00"
    elif kind == "close date empty":
        deal["CloseDate"] = None
    elif kind == "owner not a user":
        deal["OwnerId"] = "005GHOST"
        for s in revenue:
            s["SplitOwnerId"] = "005GHOST"
    elif kind == "owner empty":
        deal["OwnerId"] = None
        org["OpportunitySplit"] = [s for s in org["OpportunitySplit"] if s["OpportunityId"] != opp_id]
    elif kind == "currency without rate":
        deal["CurrencyIsoCode"] = "JPY"
    elif kind == "stage known nowhere":
        org.setdefault("OpportunityHistory", []).append({
            "OpportunityId": opp_id, "CreatedDate": "2025-01-01T00:00:00Z", "StageName": "Won (retired)",
            "Amount": deal["Amount"], "CloseDate": deal["CloseDate"],
        })
    elif kind == "split out of range":
        org["OpportunitySplit"].append({"OpportunityId": opp_id, "SplitOwnerId": deal["OwnerId"], "SplitPercentage": "140", "SplitTypeId": "ST_OVL"})
    elif kind == "revenue splits off 100":
        org["OpportunitySplit"] = [s for s in org["OpportunitySplit"] if not (s["OpportunityId"] == opp_id and s["SplitTypeId"] == "ST_REV")]
        org["OpportunitySplit"].append({"OpportunityId": opp_id, "SplitOwnerId": deal["OwnerId"], "SplitPercentage": "99.5", "SplitTypeId": "ST_REV"})
    elif kind == "split type unknown":
        org["OpportunitySplit"].append({"OpportunityId": opp_id, "SplitOwnerId": deal["OwnerId"], "SplitPercentage": "10", "SplitTypeId": "ST_GONE"})
    elif kind == "line item of unknown product":
        org["OpportunityLineItem"].append({"OpportunityId": opp_id, "Product2Id": "01tGONE", "TotalPrice": "10.00"})
    elif kind == "line item without price":
        org["OpportunityLineItem"].append({"OpportunityId": opp_id, "Product2Id": "01tSW", "TotalPrice": None})
    else:
        raise AssertionError(kind)
    return opp_id


def without(org: dict, opp_id: str) -> dict:
    """``org`` with the deal and every record of it removed."""
    return {
        **org,
        "Opportunity": [d for d in org["Opportunity"] if d["Id"] != opp_id],
        "OpportunitySplit": [s for s in org["OpportunitySplit"] if s["OpportunityId"] != opp_id],
        "OpportunityLineItem": [i for i in org["OpportunityLineItem"] if i["OpportunityId"] != opp_id],
        "OpportunityHistory": [h for h in org.get("OpportunityHistory", []) if h["OpportunityId"] != opp_id],
    }


CORRUPTIONS = [
    "amount empty", "amount negative", "close date empty", "owner not a user", "owner empty", "currency without rate",
    "stage known nowhere", "split out of range", "revenue splits off 100", "split type unknown",
    "line item of unknown product", "line item without price",
]


@SETTINGS
@given(orgs(), st.sampled_from(CORRUPTIONS), st.integers(0, 50))
def test_a_corrupted_record_is_quarantined_and_changes_no_one_elses_total(org, kind, index):
    corrupted = copy.deepcopy(org)
    opp_id = corrupt(corrupted, kind, index)
    credits, bad, attainment, hierarchy = run(corrupted)
    assert_invariants(credits, bad, attainment, hierarchy)  # nothing that would stop the day
    assert set(bad["record_id"].to_list()) == {opp_id}, (kind, bad)
    assert all(p.strip() for p in bad["problem"].to_list())
    assert opp_id not in credits["opportunity_id"].to_list()
    _, _, clean_attainment, _ = run(without(org, opp_id))
    clean = rep_totals(clean_attainment)
    got = rep_totals(attainment)
    assert got.keys() == clean.keys()
    for key, (quota, won) in clean.items():
        assert got[key] == (pytest.approx(quota, rel=1e-12), pytest.approx(won, rel=1e-12, abs=1e-9)), (kind, key)


TYPED_FIELDS = [(obj, f.name) for obj in ("Opportunity", "ForecastingQuota", "OpportunitySplit", "User")
                for f in OBJECTS[obj].fields if f.kind in ("float", "date", "datetime", "bool")]
JUNK = st.sampled_from(["1,5", "NaN", "inf", "-Infinity", "12k", "2025-03-31junk", "31/03/2025", "yes please", "1.2.3", "0x10"])


@SETTINGS
@given(orgs(), st.sampled_from(TYPED_FIELDS), JUNK, st.integers(0, 50))
def test_junk_in_a_typed_field_names_object_record_and_field(org, target, junk, index):
    obj, field = target
    rows = org[obj]
    if not rows:  # an org drawn without split rows
        return
    row = rows[index % len(rows)]
    row[field] = junk
    key = "OpportunityId" if obj == "OpportunitySplit" else "Id"
    with pytest.raises(ContractError) as error:
        frames(org)
    message = str(error.value)
    assert f"{obj}.{field}" in message and f"{key}={row[key]}" in message and repr(junk) in message, message
