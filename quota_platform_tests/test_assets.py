"""The Dagster layer: the definitions load with every asset and check; a backfill of many days is
one run that computes them all in one pass and gives the same rows as day-by-day runs; a
re-materialized partition replaces its rows; and an upstream partition that was never materialized
stops the run instead of loading as an empty frame."""

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quota_platform.definitions import build_assets, build_definitions
from quota_platform.resources import build_resources
from quota_platform.settings import Settings

USERS = """Id,Name,Email,ManagerId,IsActive,Hire_Date__c
VP,Vera,,,true,
R1,Rita,,VP,true,
R2,Raj,,VP,true,
"""
TYPES = "Id,DeveloperName\nT1,NewBusiness\n"
QUOTAS = """Id,QuotaOwnerId,ForecastingTypeId,StartDate,QuotaAmount
Q1,R1,T1,2025-01-01,100000
Q2,R2,T1,2025-01-01,50000
"""
OPPS = """Id,Name,OwnerId,Type,StageName,Amount,CloseDate,CreatedDate,IsClosed,IsWon
O1,One,R1,New Business,Closed Won,10000,2025-03-03,2025-01-10T00:00:00Z,true,true
O2,Two,R2,New Business,Closed Won,20000,2025-03-05,2025-01-10T00:00:00Z,true,true
O3,Three,R1,New Business,Closed Won,5000,2025-03-04,2025-01-10T00:00:00Z,true,true
"""
HISTORY = """OpportunityId,CreatedDate,StageName,Amount,CloseDate
O1,2025-01-10T00:00:00Z,Prospecting,10000,2025-03-31
O1,2025-03-03T10:00:00Z,Closed Won,10000,2025-03-03
O2,2025-01-10T00:00:00Z,Prospecting,20000,2025-03-31
O2,2025-03-05T10:00:00Z,Closed Won,20000,2025-03-05
O3,2025-01-10T00:00:00Z,Prospecting,5000,2025-03-31
O3,2025-03-04T10:00:00Z,Closed Won,5000,2025-03-04
"""


def write_org(folder: Path, opps: str = OPPS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "User": USERS, "ForecastingType": TYPES, "ForecastingQuota": QUOTAS, "Opportunity": opps,
        "OpportunityHistory": HISTORY,
    }.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


@pytest.fixture
def env(tmp_path):
    settings = Settings(
        source_dir=write_org(tmp_path / "org"),
        duckdb_path=tmp_path / "wh.duckdb",
        start_date=date(2025, 1, 1),
        home=tmp_path / "home",
    )
    assets = build_assets(settings)
    every = [a for group in assets.values() for a in group]
    return settings, assets, every, build_resources(settings), dg.DagsterInstance.ephemeral()


def run(every, selection, resources, instance, **kwargs):
    return dg.materialize(every, selection=selection, resources=resources, instance=instance, raise_on_error=False, **kwargs)


def keys(assets, group):
    return [k for a in assets[group] for k in a.keys]


def query(settings, sql):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.sql(sql).pl()


def test_definitions_load_every_asset_and_check(tmp_path):
    defs = build_definitions(Settings(home=tmp_path))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    names = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_opportunity", "quota_snapshots", "quota_snapshots_quarantine", "org_hierarchy",
            "credited_bookings", "credited_bookings_quarantine", "attainment"} <= names
    assert len([n for n in names if n.startswith("raw_")]) == 13
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("attainment", "rollups_equal_sum_of_reps") in checks
    assert ("credited_bookings", "revenue_credits_sum_to_amount") in checks
    assert ("raw_opportunity", "schema") in checks


def test_backfill_is_one_run_and_matches_day_by_day(env, tmp_path):
    settings, assets, every, resources, instance = env
    assert run(every, keys(assets, "raw"), resources, instance).success
    assert run(every, keys(assets, "monthly"), resources, instance, partition_key="2025-03-01").success
    # One run over Mar 1..Mar 6 through the partition range tags a single-run backfill uses.
    result = run(
        every, keys(assets, "daily"), resources, instance,
        tags={"dagster/asset_partition_range_start": "2025-03-01", "dagster/asset_partition_range_end": "2025-03-06"},
    )
    assert result.success
    runs = instance.get_runs()
    assert len([r for r in runs if r.tags.get("dagster/asset_partition_range_start") == "2025-03-01"]) == 1
    company = query(
        settings,
        "select as_of_date, closed_won from quota_platform.attainment where level = 'company' "
        "and period_type = 'quarter' order by as_of_date",
    )
    # By hand: Mar 1-2 nothing; Mar 3 O1 10,000; Mar 4 + O3 5,000; Mar 5 + O2 20,000; Mar 6 same.
    assert company.rows() == [
        (date(2025, 3, 1), 0.0), (date(2025, 3, 2), 0.0), (date(2025, 3, 3), 10000.0),
        (date(2025, 3, 4), 15000.0), (date(2025, 3, 5), 35000.0), (date(2025, 3, 6), 35000.0),
    ]
    # The same day run alone gives the same rows as inside the range.
    in_range = query(settings, "select * from quota_platform.attainment where as_of_date = '2025-03-04' order by all")
    assert run(every, keys(assets, "daily"), resources, instance, partition_key="2025-03-04").success
    alone = query(settings, "select * from quota_platform.attainment where as_of_date = '2025-03-04' order by all")
    assert alone.equals(in_range)


def test_rematerializing_a_partition_replaces_its_rows(env):
    settings, assets, every, resources, instance = env
    run(every, keys(assets, "raw"), resources, instance)
    run(every, keys(assets, "monthly"), resources, instance, partition_key="2025-03-01")
    for day in ("2025-03-05", "2025-03-06"):
        assert run(every, keys(assets, "daily"), resources, instance, partition_key=day).success
    # O2 is taken out of the source (say, its owner lost the deal in a correction) and Mar 6 rerun.
    write_org(settings.source_dir, opps="\n".join(l for l in OPPS.splitlines() if not l.startswith("O2")) + "\n")
    run(every, keys(assets, "raw"), resources, instance)
    assert run(every, keys(assets, "daily"), resources, instance, partition_key="2025-03-06").success
    counts = query(
        settings,
        "select as_of_date, count(*) n, sum(credit_usd) usd from quota_platform.credited_bookings "
        "where period_type = 'quarter' group by 1 order by 1",
    )
    # Mar 5 keeps O1 + O2 + O3 = 35,000 in 3 rows; Mar 6 now has O1 + O3 = 15,000 in 2 rows, no duplicates.
    assert counts.rows() == [(date(2025, 3, 5), 3, 35000.0), (date(2025, 3, 6), 2, 15000.0)]


def test_missing_upstream_partition_stops_the_run(env):
    settings, assets, every, resources, instance = env
    run(every, keys(assets, "raw"), resources, instance)
    run(every, keys(assets, "monthly"), resources, instance, partition_key="2025-03-01")
    # attainment alone, although credited_bookings for Mar 7 was never materialized
    result = run(every, [dg.AssetKey("attainment")], resources, instance, partition_key="2025-03-07")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "credited_bookings has no materialization for partition(s) 2025-03-07" in str(
        failure.step_failure_data.error.to_string()
    )
