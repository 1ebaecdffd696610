"""The one roll-up (lib/attainment/rollup.py) on a hand-built tree, and the blocking check that
verifies a roll-up by its own path.

    February                 March (Rob moved to Vera)
    Vera (VP)                Vera (VP)
    |-- Mona (manager)       |-- Mona (manager)
    |   |-- Rita             |   |-- Rita
    |   |-- Rob              |-- Rob
    |-- Raj                  |-- Raj
"""

from datetime import date

import polars as pl

from quota_platform.lib.attainment.hierarchy import HIERARCHY_SCHEMA
from quota_platform.lib.attainment.rollup import (
    COMPANY,
    COMPANY_ID,
    MANAGER,
    REP,
    roll_up,
    rollup_links,
    rollup_mismatches,
)

FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
NAMES = {"VP": "Vera", "M1": "Mona", "R1": "Rita", "R2": "Rob", "R3": "Raj"}
MANAGER_OF = {
    FEB: {"VP": None, "M1": "VP", "R1": "M1", "R2": "M1", "R3": "VP"},
    MAR: {"VP": None, "M1": "VP", "R1": "M1", "R2": "VP", "R3": "VP"},
}


def _hierarchy(months=(FEB, MAR)) -> pl.DataFrame:
    rows = []
    for month in months:
        manager_of = MANAGER_OF[month]
        for user, manager in manager_of.items():
            ancestor, distance = user, 0
            while ancestor is not None:
                rows.append({
                    "snapshot_month": month, "user_id": user, "user_name": NAMES[user], "manager_id": manager,
                    "is_active": True, "ancestor_id": ancestor, "ancestor_name": NAMES[ancestor], "distance": distance,
                })
                ancestor, distance = manager_of[ancestor], distance + 1
    return pl.DataFrame(rows, schema=HIERARCHY_SCHEMA)


def _links(month, rep):
    links = rollup_links(_hierarchy()).filter((pl.col("snapshot_month") == month) & (pl.col("rep_id") == rep))
    return sorted(links.select("level", "entity_id", "entity_name", "parent_id").rows())


def test_links_are_every_manager_above_and_the_company():
    company = (COMPANY, COMPANY_ID, "Company", None)
    assert _links(FEB, "R1") == [company, (MANAGER, "M1", "Mona", "VP"), (MANAGER, "VP", "Vera", None)]
    assert _links(FEB, "R3") == [company, (MANAGER, "VP", "Vera", None)]
    # the top of the tree is in the company only; a move changes the links of that month alone
    assert _links(FEB, "VP") == [company]
    assert _links(FEB, "R2") == [company, (MANAGER, "M1", "Mona", "VP"), (MANAGER, "VP", "Vera", None)]
    assert _links(MAR, "R2") == [company, (MANAGER, "VP", "Vera", None)]
    # 5 company links a month, and one manager link per user and manager above it: February
    # Mona 1, Rita 2, Rob 2, Raj 1; March Mona 1, Rita 2, Rob 1, Raj 1
    assert rollup_links(_hierarchy()).height == 2 * 5 + 6 + 5


def _rep_rows():
    # (month, rep, product_family, quota, closed_won)
    data = [
        (FEB, "R1", None, 100.0, 10.0),
        (FEB, "R2", None, 200.0, 30.0),
        (FEB, "R3", None, 50.0, 5.0),
        (FEB, "R1", "Widgets", 40.0, 4.0),
        (MAR, "R1", None, 100.0, 20.0),
        (MAR, "R2", None, 200.0, 60.0),
    ]
    return pl.DataFrame(
        data,
        schema={"snapshot_month": pl.Date, "rep_id": pl.String, "product_family": pl.String, "quota": pl.Float64, "closed_won": pl.Float64},
        orient="row",
    ).with_columns(pl.lit("ignored").alias("entity_name"))


def _rolled_up(rep_rows, hierarchy):
    out = roll_up(rep_rows, hierarchy, ["snapshot_month", "product_family"], ["quota", "closed_won"])
    assert out.columns == [
        "snapshot_month", "product_family", "level", "entity_id", "entity_name", "parent_id", "quota", "closed_won", "rep_count",
    ]
    return {
        (r["snapshot_month"], r["product_family"], r["entity_id"]): (r["quota"], r["closed_won"], r["rep_count"], r["entity_name"], r["parent_id"])
        for r in out.iter_rows(named=True)
    }


def test_roll_up_sums_by_hand():
    got = _rolled_up(_rep_rows(), _hierarchy())
    assert got == {
        # February: Mona = Rita + Rob; Vera and the company = Rita + Rob + Raj
        (FEB, None, "M1"): (300.0, 40.0, 2, "Mona", "VP"),
        (FEB, None, "VP"): (350.0, 45.0, 3, "Vera", None),
        (FEB, None, COMPANY_ID): (350.0, 45.0, 3, "Company", None),
        # a product family is a key of its own, not added to the whole-deal rows
        (FEB, "Widgets", "M1"): (40.0, 4.0, 1, "Mona", "VP"),
        (FEB, "Widgets", "VP"): (40.0, 4.0, 1, "Vera", None),
        (FEB, "Widgets", COMPANY_ID): (40.0, 4.0, 1, "Company", None),
        # March: Rob reports to Vera, so Mona has Rita alone
        (MAR, None, "M1"): (100.0, 20.0, 1, "Mona", "VP"),
        (MAR, None, "VP"): (300.0, 80.0, 2, "Vera", None),
        (MAR, None, COMPANY_ID): (300.0, 80.0, 2, "Company", None),
    }


def test_a_rep_missing_from_the_months_hierarchy_counts_nowhere_and_the_check_says_so():
    """A rep row whose rep is not in its month's hierarchy (a stale org_hierarchy partition) is
    in no roll-up, the company's included; the blocking check, which sums the company from every
    rep row, reports the company row instead of letting the total drop silently."""
    got = _rolled_up(_rep_rows(), _hierarchy(months=(FEB,)))
    assert not any(month == MAR for month, _, _ in got)

    attainment = _attainment(_rep_rows().filter(pl.col("snapshot_month") == MAR), _hierarchy(months=(FEB,)))
    assert attainment.filter(pl.col("level") != REP).is_empty()
    bad = rollup_mismatches(attainment, _hierarchy(months=(FEB,)))
    assert bad.select("level", "entity_id", "quota", "expected_quota").rows() == [(COMPANY, COMPANY_ID, None, 300.0)]


def _attainment(rep_rows, hierarchy):
    """Attainment-shaped rows (the columns rollup_mismatches reads): the rep rows and their roll-up."""
    keys = ["as_of_date", "period_type", "period_start", "quota_type", "product_family"]
    reps = rep_rows.with_columns(
        pl.col("snapshot_month").dt.offset_by("14d").alias("as_of_date"),
        pl.lit("quarter").alias("period_type"),
        pl.lit(date(2026, 1, 1)).alias("period_start"),
        pl.lit("bookings").alias("quota_type"),
    )
    rolled = roll_up(reps, hierarchy, keys, ["quota", "closed_won"])
    return pl.concat([
        reps.select(*keys, pl.lit(REP).alias("level"), pl.col("rep_id").alias("entity_id"), "quota", "closed_won"),
        rolled.select(*keys, "level", "entity_id", "quota", "closed_won"),
    ])


def test_mismatch_check_passes_a_true_roll_up_and_names_a_wrong_one():
    attainment = _attainment(_rep_rows(), _hierarchy())
    assert rollup_mismatches(attainment, _hierarchy()).is_empty()

    off = attainment.with_columns(
        pl.when((pl.col("entity_id") == "M1") & (pl.col("as_of_date") == date(2026, 2, 15)) & pl.col("product_family").is_null())
        .then(pl.col("closed_won") + 1.0)
        .otherwise(pl.col("closed_won"))
        .alias("closed_won")
    )
    bad = rollup_mismatches(off, _hierarchy())
    assert bad.select("entity_id", "closed_won", "expected_closed_won").rows() == [("M1", 41.0, 40.0)]

    missing = attainment.filter(~((pl.col("entity_id") == "VP") & (pl.col("as_of_date") == date(2026, 3, 15))))
    bad = rollup_mismatches(missing, _hierarchy())
    assert bad.select("level", "entity_id", "quota", "expected_quota").rows() == [(MANAGER, "VP", None, 300.0)]

