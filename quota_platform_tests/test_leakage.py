"""No data from after the cut-off ever reaches a fit or a projection.

Two orgs are identical up to a cut-off date and then differ wildly: after it, every deal is won at
ten times its amount and a hundred new won deals appear. Everything a fit for a month starting on
or before the cut-off reads (win-rate cells, deals-not-yet-created history, pacing), and the open
pipeline a projection for a day before the cut-off reads, must be identical for both. A leak of a
single later row changes one of them."""

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from quota_platform.lib.attainment.crediting import CreditInputs, stage_flags
from quota_platform.lib.attainment.pipeline import open_pipeline
from quota_platform.lib.core.calendar import FiscalCalendar
from quota_platform.lib.core.quota_types import org_quota_types
from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast.training import (
    as_known_before,
    new_deal_history,
    training_periods,
    win_rate_cells,
)
from quota_platform.samples.demo_org import generate_demo_org
from quota_platform.sources.files import read_object

CUTOFF = date(2025, 10, 1)  # the snapshot month of the fit under test
OBJECTS = ["User", "ForecastingType", "ForecastingQuota", "Opportunity", "OpportunityHistory", "OpportunityStage",
           "OpportunitySplit", "OpportunitySplitType", "OpportunityLineItem", "Product2", "DatedConversionRate"]


@pytest.fixture(scope="module")
def orgs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("leak")
    generate_demo_org(folder, date(2026, 1, 20), seed=11)
    honest = {name: read_object(folder, name) for name in OBJECTS}
    tampered = dict(honest)
    start = datetime(CUTOFF.year, CUTOFF.month, CUTOFF.day, tzinfo=timezone.utc)
    history = honest["OpportunityHistory"]
    later = history.filter(pl.col("CreatedDate") >= start).with_columns(
        pl.lit("Closed Won").alias("StageName"), (pl.col("Amount") * 10).alias("Amount")
    )
    owner = honest["Opportunity"]["OwnerId"][0]
    new_ids = [f"006NEW{i:09d}" for i in range(100)]
    created = start + timedelta(days=3)
    new_opps = honest["Opportunity"].head(100).with_columns(
        pl.Series("Id", new_ids), pl.lit(owner).alias("OwnerId"), pl.lit(created).alias("CreatedDate"),
        pl.lit("Closed Won").alias("StageName"), pl.lit(True).alias("IsWon"), pl.lit(True).alias("IsClosed"),
        pl.lit(CUTOFF + timedelta(days=5)).alias("CloseDate"), pl.lit(1e6).alias("Amount"), pl.lit(False).alias("IsDeleted"),
    )
    new_history = pl.DataFrame({
        "OpportunityId": new_ids, "CreatedDate": [created] * 100, "StageName": ["Closed Won"] * 100,
        "Amount": [1e6] * 100, "CloseDate": [CUTOFF + timedelta(days=5)] * 100,
    }).with_columns(pl.lit(None, pl.Float64).alias("Probability"), pl.lit(None, pl.String).alias("ForecastCategory")).cast(history.schema)
    tampered["OpportunityHistory"] = pl.concat([history.filter(pl.col("CreatedDate") < start), later, new_history])
    tampered["Opportunity"] = pl.concat([honest["Opportunity"], new_opps])
    return honest, tampered


def inputs(o):
    return CreditInputs(o["User"], o["OpportunitySplit"], o["OpportunitySplitType"], o["OpportunityLineItem"], o["Product2"],
                        org_quota_types(o["ForecastingType"]), ["Analytics", "Platform"], o["DatedConversionRate"], Rules())


def training(o):
    opps, hist = as_known_before(o["Opportunity"], o["OpportunityHistory"], CUTOFF)
    flags = stage_flags(o["OpportunityStage"], opps)
    teams = o["User"].select(pl.col("Id").alias("rep_id"), pl.col("ManagerId").alias("team_id"))
    periods = training_periods(CUTOFF, 6, "quarter", FiscalCalendar(1))
    return win_rate_cells(opps, hist, flags, teams, periods), new_deal_history(opps, hist, flags, periods, inputs(o))


def test_the_tampering_is_visible_without_the_cut(orgs):
    honest, tampered = orgs
    # Without as_known_before the later rows change what a naive reader would see: the test can fail.
    assert tampered["OpportunityHistory"].height > honest["OpportunityHistory"].height
    assert tampered["Opportunity"].filter(pl.col("IsWon")).height > honest["Opportunity"].filter(pl.col("IsWon")).height


def test_fit_inputs_are_identical_before_the_cutoff(orgs):
    honest, tampered = orgs
    cells_a, new_a = training(honest)
    cells_b, new_b = training(tampered)
    assert cells_a.height > 100 and cells_a["trials"].sum() > 100
    assert cells_a.equals(cells_b)
    assert new_a.equals(new_b)


def test_projection_pipeline_is_identical_before_the_cutoff(orgs):
    honest, tampered = orgs
    day = CUTOFF - timedelta(days=1)
    rows = []
    for o in (honest, tampered):
        flags = stage_flags(o["OpportunityStage"], o["Opportunity"])
        rows.append(open_pipeline(o["Opportunity"], o["OpportunityHistory"], flags, [day], inputs(o))[0])
    assert rows[0].height > 50
    assert rows[0].equals(rows[1])
