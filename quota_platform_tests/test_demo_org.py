"""The demo org generator: deterministic, loadable through the file source, and realistic in the
ways the platform's rules and models depend on."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from quota_platform.lib.core.calendar import add_months
from quota_platform.lib.core.contract import OBJECTS
from quota_platform.samples.demo_org import GENERATOR_VERSION, DemoOrgSummary, generate_demo_org
from quota_platform.sources.files import read_object

AS_OF = date(2025, 5, 20)  # mid-quarter: open pipeline in the current and the next quarter
SEED = 7
QUARTER_START = date(AS_OF.year, 3 * ((AS_OF.month - 1) // 3) + 1, 1)
NEXT_QUARTER_START = add_months(QUARTER_START, 3)
NEXT_QUARTER_END = add_months(QUARTER_START, 6) - timedelta(days=1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[DemoOrgSummary, float]:
    out = tmp_path_factory.mktemp("demo_org")
    started = time.perf_counter()
    lines: list[str] = []
    summary = generate_demo_org(out, AS_OF, SEED, progress=lines.append)
    elapsed = time.perf_counter() - started
    assert lines, "progress callback was never called"
    return summary, elapsed


@pytest.fixture(scope="module")
def org(generated) -> dict[str, pl.DataFrame]:
    summary, _ = generated
    return {name: read_object(summary.out_dir, name) for name in OBJECTS}


@pytest.fixture(scope="module")
def opps(org) -> pl.DataFrame:
    return org["Opportunity"].filter(~pl.col("IsDeleted"))


@pytest.fixture(scope="module")
def truth(generated) -> pl.DataFrame:
    summary, _ = generated
    return pl.read_csv(summary.out_dir / "_truth" / "rep_truth.csv", infer_schema=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _quarter_end(col: str) -> pl.Expr:
    return pl.col(col).dt.truncate("1q").dt.offset_by("3mo").dt.offset_by("-1d")


def _with_rates(
    frame: pl.DataFrame, rates: pl.DataFrame, date_col: str, amount_col: str
) -> pl.DataFrame:
    """Add ``usd`` = amount / the ConversionRate in force on ``date_col`` (StartDate <= d <
    NextStartDate), asserting that every row has one."""
    r = rates.select("IsoCode", "StartDate", "NextStartDate", "ConversionRate")
    r = r.sort("IsoCode", "StartDate")
    out = (
        frame.with_row_index("_row")
        .sort("CurrencyIsoCode", date_col)
        .join_asof(
            r, left_on=date_col, right_on="StartDate", by_left="CurrencyIsoCode", by_right="IsoCode",
            check_sortedness=False,
        )
        .sort("_row")
    )
    assert out.filter(
        pl.col("ConversionRate").is_null() | (pl.col(date_col) >= pl.col("NextStartDate"))
    ).is_empty()
    return out.with_columns((pl.col(amount_col) / pl.col("ConversionRate")).alias("usd"))


# --- determinism, files, loading ---------------------------------------------------------------


def test_same_seed_is_byte_identical_and_another_seed_differs(generated, tmp_path):
    summary, _ = generated
    again = generate_demo_org(tmp_path / "again", AS_OF, SEED)
    assert _files(summary.out_dir) == _files(again.out_dir)
    other = generate_demo_org(tmp_path / "other", AS_OF, SEED + 1)
    first, second = _files(summary.out_dir), _files(other.out_dir)
    assert first.keys() == second.keys()
    assert first["Opportunity.csv"] != second["Opportunity.csv"]
    assert first["OpportunityHistory.csv"] != second["OpportunityHistory.csv"]


def test_generation_is_fast(generated):
    _, elapsed = generated
    assert elapsed < 15.0, f"generation took {elapsed:.1f}s"


def test_writes_every_object_source_and_truth(generated):
    summary, _ = generated
    out = summary.out_dir
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(f"{name}.csv" for name in OBJECTS)
    assert list(summary.counts) == list(OBJECTS)
    assert summary.as_of == AS_OF and summary.seed == SEED and summary.out_dir == out
    source = (out / "SOURCE.md").read_text()
    assert "synthetic" in source and f"seed {SEED}" in source and str(AS_OF) in source
    assert GENERATOR_VERSION in source
    assert (out / "_truth" / "README.md").read_text().count("win_rate_") >= 3
    for name in ("rep_truth.csv", "stage_win_rates.csv", "open_pipeline_outcomes.csv"):
        assert (out / "_truth" / name).stat().st_size > 0


def test_every_object_loads_through_the_file_source(generated, org):
    summary, _ = generated
    for name in OBJECTS:
        frame = org[name]
        assert frame.height == summary.counts[name] > 0, name
        assert frame.columns == OBJECTS[name].field_names
        header = (summary.out_dir / f"{name}.csv").read_text().splitlines()[0].split(",")
        assert header[: len(OBJECTS[name].fields)] == OBJECTS[name].field_names


def test_formats_are_salesforce_like(generated):
    summary, _ = generated
    opp = pl.read_csv(summary.out_dir / "Opportunity.csv", infer_schema=False, n_rows=50)
    assert opp["CreatedDate"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$").all()
    assert opp["CloseDate"].str.contains(r"^\d{4}-\d\d-\d\d$").all()
    assert set(opp["IsClosed"].to_list()) <= {"true", "false"}
    assert opp["Id"].str.contains(r"^006[0-9A-Za-z]{15}$").all()
    users = pl.read_csv(summary.out_dir / "User.csv", infer_schema=False)
    assert users["Id"].str.contains(r"^005[0-9A-Za-z]{15}$").all()


# --- the org ----------------------------------------------------------------------------------


def test_users_and_levels(org):
    users = org["User"]
    quotas = org["ForecastingQuota"]
    assert users.height == 77
    assert users.filter(pl.col("ManagerId").is_null()).height == 1  # the VP
    vp = users.filter(pl.col("ManagerId").is_null())["Id"][0]
    reps = set(quotas["QuotaOwnerId"].to_list())
    assert len(reps) == 61  # 60 active reps and one who left
    managers = set(users.filter(pl.col("Id").is_in(list(reps)))["ManagerId"].to_list())
    assert len(managers) == 8
    directors = set(users.filter(pl.col("Id").is_in(list(managers)))["ManagerId"].to_list())
    assert len(directors) == 2
    assert set(users.filter(pl.col("Id").is_in(list(directors)))["ManagerId"].to_list()) == {vp}
    inactive = users.filter(~pl.col("IsActive"))
    assert inactive.height == 1 and inactive["Id"][0] in reps
    # Sales engineers, the overlay specialist and sales ops carry no quota.
    no_quota = users.filter(~pl.col("Id").is_in(list(reps | managers | directors | {vp})))
    assert no_quota.height == 5
    recent = users.filter(pl.col("Hire_Date__c") > AS_OF - timedelta(days=183))
    assert recent.height == 6 and set(recent["Id"].to_list()) <= reps


def test_quota_types_cadence_currency_and_families(org, truth):
    quotas = org["ForecastingQuota"].join(
        org["ForecastingType"].rename({"Id": "ForecastingTypeId"}), on="ForecastingTypeId"
    )
    assert set(quotas["DeveloperName"].to_list()) == {"NewBusiness", "Expansion", "Renewal"}
    periods = org["Period"].rename({"Id": "PeriodId", "StartDate": "PStart"})
    q = quotas.join(periods, on="PeriodId", how="left")
    linked = q.filter(pl.col("PeriodId").is_not_null())
    assert (linked["PStart"] == linked["StartDate"]).all()
    monthly_reps = q.filter(pl.col("Type") == "Month")["QuotaOwnerId"].unique()
    assert monthly_reps.len() == 10
    monthly_truth = truth.filter(pl.col("quota_cadence") == "month")["rep_id"]
    assert set(monthly_truth.to_list()) == set(monthly_reps.to_list())
    # A handful of quarterly quotas have no PeriodId (the quarter starting at StartDate).
    no_period = quotas.filter(pl.col("PeriodId").is_null())
    assert no_period.height == 6
    assert no_period["StartDate"].dt.month().is_in([1, 4, 7, 10]).all()
    assert not no_period["QuotaOwnerId"].is_in(monthly_reps.to_list()).any()
    # European reps have EUR and GBP quotas.
    by_currency = quotas.group_by("CurrencyIsoCode").agg(pl.col("QuotaOwnerId").n_unique())
    counts = dict(by_currency.iter_rows())
    assert counts["EUR"] >= 3 and counts["GBP"] >= 3 and counts["USD"] >= 50
    # Product-family quotas beside the whole-portfolio ones.
    family = quotas.filter(pl.col("ProductFamily").is_not_null())
    assert set(family["ProductFamily"].to_list()) == {"Platform", "Analytics"}
    assert family["QuotaOwnerId"].n_unique() == 4
    # Ramp: two new hires' quotas were already reduced.
    adjusted = quotas.filter(pl.col("Ramp_Adjusted__c"))
    assert adjusted["QuotaOwnerId"].n_unique() == 2
    # One quota per owner, type, period and family.
    grain = quotas.select("QuotaOwnerId", "ForecastingTypeId", "StartDate", "ProductFamily")
    assert not grain.is_duplicated().any()


def test_quotas_cover_history_to_the_end_of_next_quarter(org):
    quotas = org["ForecastingQuota"]
    periods = org["Period"]
    assert quotas["StartDate"].min() <= AS_OF - timedelta(days=730)
    assert quotas["StartDate"].max() == add_months(NEXT_QUARTER_START, 2)  # monthly: last month
    quarter_periods = periods.filter(pl.col("Type") == "Quarter").rename({"Id": "PeriodId"})
    quarterly = quotas.join(quarter_periods, on="PeriodId")
    assert quarterly["StartDate"].max() == NEXT_QUARTER_START
    assert set(periods["Type"].to_list()) == {"Month", "Quarter"}
    assert periods["StartDate"].min() <= quotas["StartDate"].min()
    assert periods["EndDate"].max() == NEXT_QUARTER_END
    # Every active rep has a quota for the current quarter (or its months).
    current = quotas.filter(pl.col("StartDate").is_between(QUARTER_START, add_months(QUARTER_START, 2)))
    owners = quotas["QuotaOwnerId"].to_list()
    active = org["User"].filter(pl.col("IsActive") & pl.col("Id").is_in(owners))
    assert set(active["Id"].to_list()) <= set(current["QuotaOwnerId"].to_list())


def test_mid_period_quota_changes(org):
    quotas = org["ForecastingQuota"]
    history = org["ForecastingQuotaHistory"]
    keys = ["QuotaOwnerId", "ForecastingTypeId", "StartDate", "ProductFamily"]
    latest = history.sort("EffectiveDate").group_by(keys, maintain_order=True).last()
    first = history.sort("EffectiveDate").group_by(keys, maintain_order=True).first()
    assert (history.group_by(keys).len()["len"] == 2).all()
    joined = latest.join(quotas, on=keys, how="left", nulls_equal=True, suffix="_quota")
    assert joined["QuotaAmount_quota"].null_count() == 0
    assert (joined["QuotaAmount"] == joined["QuotaAmount_quota"]).all()
    assert (first["EffectiveDate"] == first["StartDate"]).all()
    assert (latest["EffectiveDate"] > latest["StartDate"]).all()
    assert (latest["EffectiveDate"] <= AS_OF).all()
    started = quotas.filter(pl.col("StartDate") <= AS_OF).height
    assert 0.05 <= latest.height / started <= 0.15


# --- opportunities and their history ----------------------------------------------------------


def test_volume_types_and_win_rates(org, opps):
    assert 12_000 <= org["Opportunity"].height <= 20_000
    assert 70_000 <= org["OpportunityHistory"].height <= 130_000
    assert set(opps["Type"].to_list()) == {
        "New Business", "Existing Business", "Expansion", "Upsell", "Renewal"
    }
    rates = dict(
        opps.filter(pl.col("IsClosed"))
        .group_by(pl.col("Type") == "Renewal")
        .agg(pl.col("IsWon").mean())
        .iter_rows()
    )
    assert 0.15 <= rates[False] <= 0.35
    assert rates[True] >= 0.8
    assert opps["CreatedDate"].min().date() <= AS_OF - timedelta(days=790)


def test_nothing_after_the_as_of_date(org):
    end = pl.lit(AS_OF + timedelta(days=1)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    assert org["Opportunity"].filter(pl.col("CreatedDate") >= end).is_empty()
    assert org["OpportunityHistory"].filter(pl.col("CreatedDate") >= end).is_empty()
    closed = org["Opportunity"].filter(pl.col("IsClosed"))
    assert closed["CloseDate"].max() <= AS_OF


def test_close_dates_never_precede_creation_and_open_deals_are_not_past_due(org):
    opp = org["Opportunity"]
    assert opp.filter(pl.col("CloseDate") < pl.col("CreatedDate").dt.date()).is_empty()
    open_names = org["OpportunityStage"].filter(~pl.col("IsClosed"))["ApiName"].to_list()
    hist = org["OpportunityHistory"].filter(pl.col("StageName").is_in(open_names))
    assert hist.filter(pl.col("CloseDate") < pl.col("CreatedDate").dt.date()).is_empty()


def test_open_pipeline_in_current_and_next_quarter(opps):
    open_ = opps.filter(~pl.col("IsClosed"))
    assert (open_["CloseDate"] >= AS_OF).all()
    current = open_.filter(pl.col("CloseDate") < NEXT_QUARTER_START).height
    nxt = open_.filter(pl.col("CloseDate").is_between(NEXT_QUARTER_START, NEXT_QUARTER_END)).height
    assert current >= 300 and nxt >= 150
    assert current + nxt >= 0.95 * open_.height


def test_opportunity_equals_its_last_history_row(org):
    opp = org["Opportunity"]
    hist = org["OpportunityHistory"].sort("OpportunityId", "CreatedDate")
    assert not hist.select("OpportunityId", "CreatedDate").is_duplicated().any()
    last = hist.group_by("OpportunityId", maintain_order=True).last()
    first = hist.group_by("OpportunityId", maintain_order=True).first()
    j = opp.join(last, left_on="Id", right_on="OpportunityId", suffix="_h").join(
        first.select("OpportunityId", pl.col("CreatedDate").alias("FirstCreated")),
        left_on="Id", right_on="OpportunityId",
    )
    assert j.height == opp.height
    assert (j["StageName"] == j["StageName_h"]).all()
    assert (j["Amount"] == j["Amount_h"]).all()
    assert (j["CloseDate"] == j["CloseDate_h"]).all()
    assert (j["CreatedDate"] == j["FirstCreated"]).all()
    assert (j["Probability"] == j["Probability_h"]).all()
    stages = org["OpportunityStage"].rename(
        {"ApiName": "StageName", "IsClosed": "SClosed", "IsWon": "SWon"}
    )
    j = j.join(stages, on="StageName")
    assert j.height == opp.height
    assert (j["IsClosed"] == j["SClosed"]).all() and (j["IsWon"] == j["SWon"]).all()
    assert (j["Probability"] == j["DefaultProbability"]).all()
    # Every closed deal's last history row is a closed stage, and no earlier row is.
    closed_names = stages.filter(pl.col("SClosed"))["StageName"].to_list()
    assert j.filter(pl.col("IsClosed"))["StageName_h"].is_in(closed_names).all()
    last_time = last.select("OpportunityId", pl.col("CreatedDate").alias("_last"))
    earlier = hist.join(last_time, on="OpportunityId").filter(pl.col("CreatedDate") < pl.col("_last"))
    assert earlier.filter(pl.col("StageName").is_in(closed_names)).is_empty()


def test_stages(org):
    stages = org["OpportunityStage"].sort("SortOrder")
    assert stages.filter(~pl.col("IsClosed")).height == 6
    assert stages.filter(pl.col("IsWon"))["ApiName"].to_list() == ["Closed Won"]
    assert stages.filter(pl.col("IsClosed") & ~pl.col("IsWon"))["ApiName"].to_list() == ["Closed Lost"]
    open_probs = stages.filter(~pl.col("IsClosed"))["DefaultProbability"].to_list()
    assert open_probs == sorted(open_probs) and open_probs[0] == 10.0


def test_pushes_amount_changes_and_big_deals_lost_late(org, opps):
    hist = org["OpportunityHistory"].sort("OpportunityId", "CreatedDate").with_columns(
        pl.col("CloseDate").shift(1).over("OpportunityId").alias("prev_close"),
        pl.col("Amount").shift(1).over("OpportunityId").alias("prev_amount"),
    )
    open_names = org["OpportunityStage"].filter(~pl.col("IsClosed"))["ApiName"].to_list()
    pushes = hist.filter(
        pl.col("StageName").is_in(open_names) & (pl.col("CloseDate") > pl.col("prev_close"))
    )
    assert pushes["OpportunityId"].n_unique() >= 3_000
    # Pushes to a later quarter, not only within the quarter.
    later_quarter = pl.col("CloseDate").dt.truncate("1q") > pl.col("prev_close").dt.truncate("1q")
    assert pushes.filter(later_quarter).height >= 1_000
    assert hist.filter(pl.col("Amount") != pl.col("prev_amount"))["OpportunityId"].n_unique() >= 5_000
    # Big deals that reached Negotiation/Review and were lost in the last ten days of a quarter.
    reached = hist.filter(pl.col("StageName") == "Negotiation/Review")["OpportunityId"].unique()
    median = opps.group_by("Type").agg(pl.col("Amount").median().alias("median"))
    lost_late = (
        opps.join(median, on="Type")
        .filter(
            (pl.col("StageName") == "Closed Lost")
            & pl.col("Id").is_in(reached.to_list())
            & (pl.col("Amount") >= 3 * pl.col("median"))
            & ((_quarter_end("CloseDate") - pl.col("CloseDate")).dt.total_days() < 10)
        )
    )
    assert lost_late.height >= 15


def test_quarter_end_bunching(opps):
    won = opps.filter(pl.col("IsWon"))
    last_two_weeks = (_quarter_end("CloseDate") - pl.col("CloseDate")).dt.total_days() < 14
    share = won.select(last_two_weeks.mean()).item()
    assert share > 0.25 > 2 / 13


def test_skill_shows_in_realised_win_rates(opps, truth):
    closed = opps.filter(pl.col("IsClosed") & (pl.col("Type") != "Renewal"))
    realised = closed.group_by("OwnerId").agg(
        pl.col("IsWon").mean().alias("win_rate"), pl.len().alias("n")
    )
    reps = (
        truth.select("rep_id", pl.col("skill_multiplier").cast(pl.Float64))
        .join(realised, left_on="rep_id", right_on="OwnerId")
        .filter(pl.col("n") >= 50)
        .sort("skill_multiplier")
    )
    assert reps.height >= 50
    quarter = reps.height // 4
    bottom = reps.head(quarter)["win_rate"].mean()
    top = reps.tail(quarter)["win_rate"].mean()
    assert top > 1.8 * bottom and top - bottom > 0.1, (bottom, top)


def test_renewals_follow_won_deals_a_year_earlier(opps):
    won = opps.filter(pl.col("IsWon") & pl.col("Type").is_in(["New Business", "Renewal"])).select(
        "AccountId", pl.col("CloseDate").alias("won_close")
    )
    renewals = opps.filter(pl.col("Type") == "Renewal").select("Id", "AccountId", "CreatedDate")
    matched = (
        renewals.join(won, on="AccountId")
        .filter(
            (pl.col("CreatedDate").dt.date() - pl.col("won_close")).dt.total_days().is_between(200, 320)
        )["Id"]
        .n_unique()
    )
    assert matched >= 1_000


def test_deleted_opportunities(org):
    deleted = org["Opportunity"].filter(pl.col("IsDeleted"))
    assert 5 <= deleted.height <= 20
    assert deleted.filter(pl.col("IsWon")).height >= 1


def test_leaver_has_history_but_no_open_deals(org):
    leaver = org["User"].filter(~pl.col("IsActive"))["Id"][0]
    mine = org["Opportunity"].filter(pl.col("OwnerId") == leaver)
    assert mine.height >= 50
    assert mine["IsClosed"].all()


# --- money: currencies, splits, line items ------------------------------------------------------


def test_currencies_and_rates_cover_every_close_date(org, opps):
    rates = org["DatedConversionRate"]
    assert {"EUR", "GBP"} <= set(opps["CurrencyIsoCode"].to_list())
    foreign = opps.filter(pl.col("CurrencyIsoCode") != "USD")
    assert foreign.filter(pl.col("CurrencyIsoCode") == "EUR").height >= 500
    assert foreign.filter(pl.col("CurrencyIsoCode") == "GBP").height >= 300
    converted = _with_rates(foreign, rates, "CloseDate", "Amount")  # asserts a rate for every date
    assert converted.height == foreign.height
    eur = rates.filter(pl.col("IsoCode") == "EUR")["ConversionRate"]
    gbp = rates.filter(pl.col("IsoCode") == "GBP")["ConversionRate"]
    assert 0.85 < eur.min() < eur.max() < 1.0 and 0.72 < gbp.min() < gbp.max() < 0.86
    # Monthly periods, each starting where the previous one ended.
    for code in ("EUR", "GBP"):
        r = rates.filter(pl.col("IsoCode") == code).sort("StartDate")
        assert (r["StartDate"].dt.day() == 1).all()
        assert (r["NextStartDate"].head(r.height - 1) == r["StartDate"].tail(r.height - 1)).all()


def test_revenue_and_overlay_splits(org, opps):
    splits = org["OpportunitySplit"].join(
        org["OpportunitySplitType"].rename({"Id": "SplitTypeId"}), on="SplitTypeId"
    )
    revenue = splits.filter(pl.col("IsTotalValidated"))
    totals = revenue.group_by("OpportunityId").agg(pl.col("SplitPercentage").sum(), pl.len())
    assert (totals["SplitPercentage"] == 100.0).all()
    assert (totals["len"] == 2).all()
    share = totals.height / opps.height
    assert 0.05 <= share <= 0.15
    overlay = splits.filter(~pl.col("IsTotalValidated"))
    assert 0.05 <= overlay["OpportunityId"].n_unique() / opps.height <= 0.15
    quota_owners = org["ForecastingQuota"]["QuotaOwnerId"].unique().to_list()
    assert not overlay["SplitOwnerId"].is_in(quota_owners).any()
    assert overlay["SplitOwnerId"].n_unique() >= 3
    # The deal's owner is one of its revenue split owners.
    owner = org["Opportunity"].select(pl.col("Id").alias("OpportunityId"), "OwnerId")
    owners = revenue.join(owner, on="OpportunityId").filter(pl.col("SplitOwnerId") == pl.col("OwnerId"))
    assert owners["OpportunityId"].n_unique() == totals.height


def test_line_items_sum_to_amount(org):
    items = org["OpportunityLineItem"]
    sums = items.group_by("OpportunityId").agg(pl.col("TotalPrice").sum())
    j = org["Opportunity"].join(sums, left_on="Id", right_on="OpportunityId", how="left")
    assert j["TotalPrice"].null_count() == 0
    assert ((j["TotalPrice"] - j["Amount"]).abs() < 0.005).all()
    assert (items["TotalPrice"] > 0).all()
    families = items.join(org["Product2"], left_on="Product2Id", right_on="Id")
    assert families.height == items.height
    assert set(families["Family"].to_list()) == {"Platform", "Analytics", "Services"}


def test_attainment_is_realistic(org, opps, truth):
    """Tenured reps on quarterly quotas: over the completed quarters, total revenue credit (all
    types, revenue splits applied, USD at the close date) against total quota (USD at the period
    start) lands mostly between 60% and 130%, and skill shows in it."""
    rates = org["DatedConversionRate"]
    types = {"New Business": "NewBusiness", "Renewal": "Renewal"}
    completed = opps.filter(pl.col("IsWon") & (pl.col("CloseDate") < QUARTER_START))
    won = _with_rates(completed, rates, "CloseDate", "Amount")
    revenue_type = org["OpportunitySplitType"].filter(pl.col("IsTotalValidated"))
    splits = org["OpportunitySplit"].join(
        revenue_type.rename({"Id": "SplitTypeId"}), on="SplitTypeId"
    ).select("OpportunityId", "SplitOwnerId", "SplitPercentage")
    credit = (
        won.join(splits, left_on="Id", right_on="OpportunityId", how="left")
        .select(
            pl.coalesce("SplitOwnerId", "OwnerId").alias("rep_id"),
            (pl.col("usd") * pl.col("SplitPercentage").fill_null(100.0) / 100.0).alias("credit"),
            pl.col("Type").replace_strict(types, default="Expansion").alias("DeveloperName"),
            pl.col("CloseDate").dt.truncate("1q").alias("StartDate"),
        )
    )
    quotas = org["ForecastingQuota"].filter(
        pl.col("ProductFamily").is_null() & (pl.col("StartDate") < QUARTER_START)
    ).join(org["ForecastingType"].rename({"Id": "ForecastingTypeId"}), on="ForecastingTypeId")
    quotas = _with_rates(quotas, rates, "StartDate", "QuotaAmount")
    tenured = truth.filter(
        (pl.col("quota_cadence") == "quarter")
        & (pl.col("is_active") == "true")
        & (pl.col("hire_date").str.to_date() < AS_OF - timedelta(days=900))
    )
    credited = credit.join(quotas.select("QuotaOwnerId", "DeveloperName", "StartDate"),
                           left_on=["rep_id", "DeveloperName", "StartDate"],
                           right_on=["QuotaOwnerId", "DeveloperName", "StartDate"], how="semi")
    per_rep = (
        quotas.group_by(pl.col("QuotaOwnerId").alias("rep_id")).agg(pl.col("usd").sum().alias("quota"))
        .join(credited.group_by("rep_id").agg(pl.col("credit").sum()), on="rep_id")
        .join(tenured.select("rep_id", pl.col("skill_multiplier").cast(pl.Float64)), on="rep_id")
        .with_columns((100 * pl.col("credit") / pl.col("quota")).alias("pct"))
    )
    assert per_rep.height >= 35
    assert per_rep["pct"].is_between(60, 130).mean() >= 0.7
    assert 85 <= per_rep["pct"].median() <= 115
    assert per_rep.select(pl.corr("pct", "skill_multiplier")).item() > 0.4


def test_truth_describes_every_rep(org, truth):
    reps = set(org["ForecastingQuota"]["QuotaOwnerId"].to_list())
    assert set(truth["rep_id"].to_list()) == reps
    for column in ("skill_multiplier", "win_rate_prospecting", "win_rate_negotiation_review",
                   "within_period_win_propensity", "deal_size_scale", "monthly_opportunity_rate",
                   "hire_date", "quota_cadence", "manager_id", "name"):
        assert truth[column].null_count() == 0, column
    stage_columns = [
        c for c in truth.columns if c.startswith("win_rate_") and c != "win_rate_at_creation"
    ]
    rates = truth.select(pl.col(c).cast(pl.Float64) for c in stage_columns)
    assert len(stage_columns) == 6
    # A deal further along is more likely to be won.
    values = rates.to_numpy()
    assert (values[:, 1:] > values[:, :-1]).all()
