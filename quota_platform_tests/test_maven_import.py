"""The Maven CRM importer: the packaged public-domain sample becomes the contract's object files,
which load through the file source, carry hand-checkable values, label every derived value,
derive quotas from earlier quarters only, are byte-for-byte reproducible, and run through
``quota-platform refresh`` end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from importlib.resources import as_file, files
from pathlib import Path

import duckdb
import polars as pl
import pytest

from quota_platform.lib.core.contract import OBJECTS
from quota_platform.samples.maven import (
    DERIVED_COL,
    EXCLUDED_PROSPECTING,
    SKIPPED_FIRST_QUARTER,
    SKIPPED_NO_PIPELINE,
    ImportSummary,
    import_maven,
    sf_id,
)
from quota_platform.sources.files import read_object

WRITTEN = (
    "User", "ForecastingType", "ForecastingQuota", "Period", "Opportunity", "OpportunityHistory",
    "OpportunityStage", "Product2", "OpportunityLineItem",
)
SOURCE_FILES = ("sales_pipeline.csv", "sales_teams.csv", "accounts.csv", "products.csv", "data_dictionary.csv")
MEDIAN_DAYS = 57  # median close_date - engage_date of the Won deals in the packaged copy


@pytest.fixture(scope="module")
def src() -> Path:
    with as_file(files("quota_platform") / "data" / "maven_crm") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def imported(src, tmp_path_factory) -> tuple[ImportSummary, Path]:
    out = tmp_path_factory.mktemp("maven_org")
    return import_maven(src, out), out


@pytest.fixture(scope="module")
def org(imported) -> dict[str, pl.DataFrame]:
    _, out = imported
    return {name: read_object(out, name) for name in OBJECTS}


@pytest.fixture(scope="module")
def raw(imported) -> dict[str, pl.DataFrame]:
    """The written files as text, extra columns included."""
    _, out = imported
    return {name: pl.read_csv(out / f"{name}.csv", infer_schema=False) for name in WRITTEN}


@pytest.fixture(scope="module")
def pipeline(src) -> pl.DataFrame:
    return pl.read_csv(src / "sales_pipeline.csv", try_parse_dates=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _quotas_by_agent(out: Path) -> dict[tuple[str, date], float]:
    users = read_object(out, "User").select(pl.col("Id").alias("QuotaOwnerId"), "Name")
    quotas = read_object(out, "ForecastingQuota").join(users, on="QuotaOwnerId")
    return {(r["Name"], r["StartDate"]): r["QuotaAmount"] for r in quotas.iter_rows(named=True)}


def _copy_source(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in SOURCE_FILES:
        shutil.copyfile(src / name, dest / name)
    return dest


# --- the packaged copy --------------------------------------------------------------------------


def test_packaged_copy_holds_the_five_files_and_a_source_note(src):
    for name in SOURCE_FILES:
        assert (src / name).stat().st_size > 0, name
    note = (src / "SOURCE.md").read_text()
    assert "Maven Analytics" in note and "public domain" in note
    assert pl.read_csv(src / "sales_pipeline.csv").height == 8800
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"data/maven_crm/*"' in pyproject


# --- loading ------------------------------------------------------------------------------------


def test_every_object_loads_through_the_file_source(imported, org):
    summary, out = imported
    assert list(summary.counts) == list(WRITTEN)
    for name in OBJECTS:
        if name in WRITTEN:
            assert org[name].height == summary.counts[name] > 0, name
        else:
            assert org[name].is_empty(), name
        # conform keeps the contract's fields only: Derived_Fields__c and other extras are dropped
        assert org[name].columns == OBJECTS[name].field_names
    assert (out / "DERIVED.md").is_file()


def test_counts_and_exclusions(imported, org, pipeline):
    summary, out = imported
    prospecting = set(pipeline.filter(pl.col("deal_stage") == "Prospecting")["opportunity_id"])
    assert len(prospecting) == 500
    assert summary.source_rows == 8800
    assert summary.opportunities_imported == 8300 == org["Opportunity"].height
    assert summary.excluded == {EXCLUDED_PROSPECTING: 500}
    assert not prospecting & set(org["Opportunity"]["Id"])
    excluded = pl.read_csv(out / "_excluded.csv", infer_schema=False)
    listed = excluded.filter(pl.col("object") == "Opportunity")
    assert set(listed["source_key"]) == prospecting
    assert set(listed["reason"]) == {EXCLUDED_PROSPECTING}
    # history: one row per imported deal, and a second for the 6,711 closed ones
    assert org["OpportunityHistory"].height == 8300 + 4238 + 2473
    assert org["OpportunityLineItem"].height == 8300
    assert summary.spelling_fixes == {"GTXPro -> GTX Pro": 1480}
    assert summary.median_engage_to_close_days == MEDIAN_DAYS
    assert summary.booking_window == (date(2017, 3, 1), date(2017, 12, 31))
    text = "\n".join(summary.lines())
    assert "opportunities imported: 8,300; excluded: 500" in text


def test_users_form_vp_managers_agents(org, src):
    users = org["User"]
    teams = pl.read_csv(src / "sales_teams.csv")
    assert users.height == 1 + 6 + 35
    assert users["Id"].str.len_chars().unique().to_list() == [18]
    assert users["Id"].str.starts_with("005").all()
    assert users["Hire_Date__c"].is_null().all() and users["IsActive"].all()
    by_name = {r["Name"]: r for r in users.iter_rows(named=True)}
    vp = by_name["Maven VP"]
    assert vp["ManagerId"] is None
    for manager in teams["manager"].unique():
        assert by_name[manager]["ManagerId"] == vp["Id"]
    for row in teams.iter_rows(named=True):
        assert by_name[row["sales_agent"]]["ManagerId"] == by_name[row["manager"]]["Id"]
    assert by_name["Moses Frase"]["Id"] == sf_id("005", "Moses Frase")


# --- hand-checked rows --------------------------------------------------------------------------


def test_won_opportunity_1C1I7A6R_and_its_history(org):
    # sales_pipeline.csv: 1C1I7A6R,Moses Frase,GTX Plus Basic,Cancity,Won,2016-10-20,2017-03-01,1054
    opp = org["Opportunity"].filter(pl.col("Id") == "1C1I7A6R").row(0, named=True)
    owner = org["User"].filter(pl.col("Id") == opp["OwnerId"]).row(0, named=True)
    assert owner["Name"] == "Moses Frase"
    assert opp["StageName"] == "Closed Won" and opp["IsClosed"] and opp["IsWon"]
    assert opp["Amount"] == 1054.0
    assert opp["CloseDate"] == date(2017, 3, 1)
    assert opp["CreatedDate"] == datetime(2016, 10, 20, tzinfo=timezone.utc)
    assert opp["Type"] == "New Business" and opp["CurrencyIsoCode"] == "USD"
    assert opp["Name"] == "Cancity - GTX Plus Basic"
    assert opp["AccountId"] == sf_id("001", "Cancity")
    history = org["OpportunityHistory"].filter(pl.col("OpportunityId") == "1C1I7A6R").sort("CreatedDate")
    assert history.select("CreatedDate", "StageName", "Amount", "CloseDate").rows() == [
        # engaged: list price of GTX Plus Basic (1,096), expected close 57 days later
        (datetime(2016, 10, 20, tzinfo=timezone.utc), "Engaging", 1096.0, date(2016, 12, 16)),
        (datetime(2017, 3, 1, tzinfo=timezone.utc), "Closed Won", 1054.0, date(2017, 3, 1)),
    ]
    item = org["OpportunityLineItem"].filter(pl.col("OpportunityId") == "1C1I7A6R").row(0, named=True)
    assert item["TotalPrice"] == 1054.0 and item["Product2Id"] == sf_id("01t", "GTX Plus Basic")


def test_engaging_deal_gets_list_price_and_expected_close(org):
    # sales_pipeline.csv: UP409DSB,Maureen Marcano,MG Advanced,Ganjaflex,Engaging,2016-11-10,,
    opp = org["Opportunity"].filter(pl.col("Id") == "UP409DSB").row(0, named=True)
    assert opp["StageName"] == "Engaging" and not opp["IsClosed"] and not opp["IsWon"]
    assert opp["Amount"] == 3393.0  # MG Advanced list price
    assert opp["CloseDate"] == date(2016, 11, 10) + timedelta(days=MEDIAN_DAYS) == date(2017, 1, 6)
    history = org["OpportunityHistory"].filter(pl.col("OpportunityId") == "UP409DSB")
    assert history.select("StageName", "Amount", "CloseDate").rows() == [("Engaging", 3393.0, date(2017, 1, 6))]
    # HAXMC4IX has no account
    no_account = org["Opportunity"].filter(pl.col("Id") == "HAXMC4IX").row(0, named=True)
    assert no_account["AccountId"] is None and no_account["Name"] == "(no account) - MG Advanced"


def test_gtxpro_maps_to_the_gtx_pro_price_and_product(org, pipeline):
    # sales_pipeline.csv: KWVA7VR1,Gladys Colclough,GTXPro,Genco Pura Olive Oil Company,Lost,2016-11-04,2017-03-18,0
    opp = org["Opportunity"].filter(pl.col("Id") == "KWVA7VR1").row(0, named=True)
    assert opp["StageName"] == "Closed Lost" and opp["IsClosed"] and not opp["IsWon"]
    assert opp["Amount"] == 4821.0  # GTX Pro list price in products.csv
    assert opp["CloseDate"] == date(2017, 3, 18)
    gtx_pro = org["Product2"].filter(pl.col("Id") == sf_id("01t", "GTX Pro")).row(0, named=True)
    assert gtx_pro["Family"] == "GTX"
    gtxpro_ids = pipeline.filter(pl.col("product") == "GTXPro")["opportunity_id"]
    items = org["OpportunityLineItem"].filter(pl.col("OpportunityId").is_in(gtxpro_ids.to_list()))
    assert items.height == 1480 - 80  # the 80 Prospecting GTXPro deals are excluded
    assert items["Product2Id"].unique().to_list() == [gtx_pro["Id"]]
    not_won = org["Opportunity"].filter(pl.col("Id").is_in(gtxpro_ids.to_list()) & ~pl.col("IsWon"))
    assert not_won["Amount"].unique().to_list() == [4821.0]


def test_last_history_row_equals_the_opportunity(org):
    last = (
        org["OpportunityHistory"].sort("CreatedDate").group_by("OpportunityId").last()
        .select("OpportunityId", "StageName", "Amount", "CloseDate")
    )
    opps = org["Opportunity"].select(pl.col("Id").alias("OpportunityId"), "StageName", "Amount", "CloseDate")
    assert last.sort("OpportunityId").equals(opps.sort("OpportunityId"))


# --- derived labels -----------------------------------------------------------------------------


def test_derived_fields_are_labelled_per_row(raw):
    for name in WRITTEN:
        assert DERIVED_COL in raw[name].columns, name
    opp = raw["Opportunity"].with_columns(pl.col(DERIVED_COL).str.split(";").alias("d"))
    assert opp["d"].list.contains("Type").all() and opp["d"].list.contains("CreatedDate").all()
    won = pl.col("StageName") == "Closed Won"
    assert not opp.filter(won)["d"].list.contains("Amount").any()
    assert opp.filter(~won)["d"].list.contains("Amount").all()
    engaging = opp.filter(pl.col("StageName") == "Engaging")
    assert engaging.height == 1589 and engaging["d"].list.contains("CloseDate").all()
    assert not opp.filter(pl.col("StageName") != "Engaging")["d"].list.contains("CloseDate").any()
    for name in ("OpportunityHistory", "ForecastingQuota", "Period", "OpportunityStage", "ForecastingType"):
        assert raw[name][DERIVED_COL].is_not_null().all(), name
    assert raw["ForecastingQuota"][DERIVED_COL].str.contains("QuotaAmount").all()
    assert raw["OpportunityHistory"][DERIVED_COL].str.contains("Amount").all()
    items = raw["OpportunityLineItem"].join(raw["Opportunity"].select(pl.col("Id").alias("OpportunityId"), "StageName"), on="OpportunityId")
    assert items.filter(pl.col("StageName") == "Closed Won")[DERIVED_COL].is_null().all()
    assert (items.filter(pl.col("StageName") != "Closed Won")[DERIVED_COL] == "TotalPrice").all()
    users = {r["Name"]: r[DERIVED_COL] for r in raw["User"].iter_rows(named=True)}
    assert "Name" in users["Maven VP"].split(";") and users["Moses Frase"] == "IsActive"
    assert raw["Product2"][DERIVED_COL].is_null().all()  # straight from products.csv


def test_derived_md_states_the_rules(imported):
    summary, out = imported
    text = (out / "DERIVED.md").read_text()
    for phrase in ("Quota rule (no leakage)", "list price", "Prospecting", "GTXPro", DERIVED_COL,
                   f"engage_date` + {MEDIAN_DAYS} days", "2017Q1 x 2.9032", "| object.field | derived how |"):
        assert phrase in text, phrase


# --- quotas -------------------------------------------------------------------------------------


def _expected_quotas(pipeline: pl.DataFrame, uplift: float = 1.0) -> dict[tuple[str, date], float]:
    """The quota rule recomputed from the source CSV alone, for agents booked before each quarter:
    uplift x mean over the booking window's quarters ending before Q of the agent's Won
    close_value in that quarter, scaled by days in the quarter / days covered."""
    closed = pipeline.filter(pl.col("deal_stage").is_in(["Won", "Lost"]))
    first, last = closed["close_date"].min(), closed["close_date"].max()
    quarters = [date(2017, m, 1) for m in (1, 4, 7, 10)]
    assert (first, last) == (date(2017, 3, 1), date(2017, 12, 31))
    coverage = {quarters[0]: 31 / 90, quarters[1]: 1.0, quarters[2]: 1.0, quarters[3]: 1.0}
    won = pipeline.filter(pl.col("deal_stage") == "Won")
    expected = {}
    for q in quarters[1:]:
        before = won.filter(pl.col("close_date") < q)  # strictly before the quarter starts
        earlier = [e for e in quarters if e < q]
        per_quarter = before.group_by("sales_agent", pl.col("close_date").dt.truncate("1q").alias("quarter")).agg(
            pl.col("close_value").sum()
        )
        for agent in before["sales_agent"].unique():
            rows = per_quarter.filter(pl.col("sales_agent") == agent)
            scaled = sum(r["close_value"] / coverage[r["quarter"]] for r in rows.iter_rows(named=True))
            expected[(agent, q)] = round(uplift * scaled / len(earlier), 2)
    return expected


def test_quotas_use_only_bookings_before_their_quarter(imported, pipeline):
    summary, out = imported
    quotas = _quotas_by_agent(out)
    expected = _expected_quotas(pipeline)
    assert len(quotas) == 90 == len(expected)
    for key, amount in quotas.items():
        assert amount == pytest.approx(expected[key], abs=0.006), key
    # hand check: Moses Frase's Q1 2017 Won deals total 16,112 (all in March), scaled by 90/31
    assert quotas[("Moses Frase", date(2017, 4, 1))] == pytest.approx(16112 * 90 / 31, abs=0.006)
    assert summary.quotas_derived == {"agent": 90}
    assert summary.quotas_skipped == {SKIPPED_FIRST_QUARTER: 35, SKIPPED_NO_PIPELINE: 15}
    raw_quotas = pl.read_csv(out / "ForecastingQuota.csv", infer_schema=False)
    periods = read_object(out, "Period")
    assert set(raw_quotas["PeriodId"]) <= set(periods["Id"])
    assert periods.select("Type", "StartDate").rows() == [("Quarter", date(2017, m, 1)) for m in (1, 4, 7, 10)]


def test_a_later_deal_does_not_change_earlier_quotas(src, pipeline, imported, tmp_path):
    _, out = imported
    base = _quotas_by_agent(out)
    # a Won deal of Moses Frase closing in Q3 2017, its value multiplied by 10
    deal = pipeline.filter(
        (pl.col("sales_agent") == "Moses Frase") & (pl.col("deal_stage") == "Won")
        & pl.col("close_date").is_between(date(2017, 7, 1), date(2017, 9, 30))
    ).row(0, named=True)
    changed_src = _copy_source(src, tmp_path / "src")
    edited = pipeline.with_columns(
        pl.when(pl.col("opportunity_id") == deal["opportunity_id"])
        .then(pl.col("close_value") * 10)
        .otherwise(pl.col("close_value"))
    )
    edited.write_csv(changed_src / "sales_pipeline.csv")
    changed = _quotas_by_agent(import_maven(changed_src, tmp_path / "out").out)
    assert changed.keys() == base.keys()
    for key in base:
        if key == ("Moses Frase", date(2017, 10, 1)):
            # Q4's quota averages Q1..Q3: the extra 9x value over three quarters
            assert changed[key] == pytest.approx(base[key] + 9 * deal["close_value"] / 3, abs=0.01)
        else:
            assert changed[key] == base[key], key


def test_agent_without_earlier_bookings_gets_the_team_average(src, pipeline, imported, tmp_path):
    _, out = imported
    base = _quotas_by_agent(out)
    changed_src = _copy_source(src, tmp_path / "src")
    q1_moses = (pl.col("sales_agent") == "Moses Frase") & (pl.col("close_date") < date(2017, 4, 1))
    pipeline.with_columns(
        pl.when(q1_moses & (pl.col("deal_stage") == "Won")).then(0).otherwise(pl.col("close_value")).alias("close_value")
    ).write_csv(changed_src / "sales_pipeline.csv")
    out2 = tmp_path / "out"
    summary = import_maven(changed_src, out2)
    quotas = _quotas_by_agent(out2)
    teams = pl.read_csv(src / "sales_teams.csv")
    mates = teams.filter((pl.col("manager") == "Dustin Brinkmann") & (pl.col("sales_agent") != "Moses Frase"))
    q2 = date(2017, 4, 1)
    team_average = sum(base[(a, q2)] for a in mates["sales_agent"]) / mates.height
    assert quotas[("Moses Frase", q2)] == pytest.approx(team_average, abs=0.01)
    assert summary.quotas_derived == {"agent": 89, "team": 1}
    basis = read_object(out2, "User").filter(pl.col("Name") == "Moses Frase")["Id"][0]
    raw_quotas = pl.read_csv(out2 / "ForecastingQuota.csv", infer_schema=False).filter(pl.col("QuotaOwnerId") == basis)
    assert raw_quotas.sort("StartDate")["Quota_Basis__c"].to_list() == ["team", "agent", "agent"]


def test_quota_uplift_scales_quotas(src, pipeline, tmp_path):
    out = import_maven(src, tmp_path / "out", quota_uplift=1.1).out
    quotas = _quotas_by_agent(out)
    for key, amount in _expected_quotas(pipeline, uplift=1.1).items():
        assert quotas[key] == pytest.approx(amount, abs=0.006), key


# --- determinism, safety, CLI -------------------------------------------------------------------


def test_two_imports_are_byte_identical_across_processes(src, imported, tmp_path):
    _, out = imported
    again = tmp_path / "again"
    code = (
        "import sys; from pathlib import Path; from quota_platform.samples.maven import import_maven; "
        "import_maven(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(src), str(again)], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[1])
    assert _files(out) == _files(again)
    third = import_maven(src, tmp_path / "third").out
    assert _files(out) == _files(third)


def test_refuses_a_folder_holding_another_orgs_objects(src, tmp_path):
    out = tmp_path / "org"
    out.mkdir()
    (out / "DatedConversionRate.csv").write_text("IsoCode,ConversionRate,StartDate,NextStartDate\n")
    with pytest.raises(ValueError, match="DatedConversionRate.csv"):
        import_maven(src, out)


def test_cli_import_maven_uses_the_packaged_copy(imported, tmp_path, capsys):
    from quota_platform.cli import main

    _, out = imported
    assert main(["import-maven", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "opportunities imported: 8,300; excluded: 500" in printed
    assert "quotas derived: 90" in printed
    assert _files(tmp_path / "cli") == _files(out)
    assert main(["import-maven", "--out", str(tmp_path / "x"), "--src", str(tmp_path / "missing")]) == 1


# --- end to end ---------------------------------------------------------------------------------


def test_refresh_runs_on_the_import(imported, tmp_path, monkeypatch, capsys):
    """The slow one: the refresh fits the win-rate model (up to a minute cold)."""
    from quota_platform.cli import main

    _, out = imported
    for name in list(os.environ):
        if name.startswith(("QUOTA_PLATFORM_", "SALESFORCE_", "SNOWFLAKE_", "SLACK_")):
            monkeypatch.delenv(name, raising=False)
    db = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("QUOTA_PLATFORM_SOURCE_DIR", str(out))
    monkeypatch.setenv("QUOTA_PLATFORM_DUCKDB", str(db))
    monkeypatch.setenv("QUOTA_PLATFORM_START_DATE", "2017-01-01")
    monkeypatch.setenv("QUOTA_PLATFORM_HOME", str(tmp_path / "home"))  # fitted models stay in tmp
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    assert main(["refresh", "--as-of", "2017-06-30"]) == 0, capsys.readouterr().err

    quotas = read_object(out, "ForecastingQuota").filter(pl.col("StartDate") == date(2017, 4, 1))
    with duckdb.connect(str(db), read_only=True) as con:
        reps = con.sql(
            "select entity_id, quota, closed_won from quota_platform.attainment "
            "where as_of_date = '2017-06-30' and level = 'rep' and period_type = 'quarter' "
            "and period_start = '2017-04-01' and quota_type = 'new_business'"
        ).pl()
        company = con.sql(
            "select closed_won from quota_platform.attainment where as_of_date = '2017-06-30' "
            "and level = 'company' and period_type = 'quarter' and quota_type = 'new_business'"
        ).fetchone()[0]
        quarantined = con.sql("select count(*) from quota_platform.credited_bookings_quarantine").fetchone()[0]
    assert set(reps["entity_id"]) == set(quotas["QuotaOwnerId"]) and reps.height == 30
    moses = reps.filter(pl.col("entity_id") == sf_id("005", "Moses Frase")).row(0, named=True)
    # Computed once by hand from sales_pipeline.csv with a polars query while writing this test:
    # Won rows of sales_agent 'Moses Frase' with close_date 2017-04-01..2017-06-30 -> 43 deals,
    # sum(close_value) = 76,956.
    assert moses["closed_won"] == 76956.0
    assert moses["quota"] == pytest.approx(16112 * 90 / 31, abs=0.006)
    assert company == pytest.approx(reps["closed_won"].sum())
    assert quarantined == 0
