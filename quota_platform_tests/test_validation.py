"""Validation before write: a frame that breaks its schema, or fails a blocking check, never
reaches the warehouse table Tableau reads; the failed check is still recorded for the UI; a good
frame is written with its row count and column schema in the materialization's metadata.

Before this, the pandera checks ran after the I/O manager had written the frame, so a bad frame
was already in the table when the check failed."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl

from quota_platform.defs.validation import (
    SCHEMA_CHECK,
    Table,
    definition_metadata,
    frame_check,
    publish,
)
from quota_platform.lib import schemas
from quota_platform.lib.attainment.attainment import ATTAINMENT_SCHEMA
from quota_platform.warehouse.duckdb_io import SCHEMA, DuckDBWarehouseIOManager

DAY = date(2025, 3, 31)


def attainment_row(quota: float, closed_won: float, entity: str = "R1") -> dict:
    return {
        "as_of_date": DAY, "level": "rep", "entity_id": entity, "entity_name": "Rita", "parent_id": "VP",
        "period_type": "quarter", "period_start": date(2025, 1, 1), "period_end": DAY,
        "quota_type": "new_business", "product_family": None, "quota": quota, "closed_won": closed_won,
        "attainment_pct": 100.0 * closed_won / quota, "time_elapsed_pct": 100.0, "expected_to_date": quota,
        "pace_pct": 100.0 * closed_won / quota, "pace_status": "on_pace", "rep_count": 1,
    }


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=ATTAINMENT_SCHEMA)


def make_asset(rows: pl.DataFrame, blocking_failures: pl.DataFrame | None = None):
    @dg.asset(
        name="attainment",
        metadata=definition_metadata(schemas.ATTAINMENT),
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset="attainment", blocking=True),
            dg.AssetCheckSpec("business_rule", asset="attainment", blocking=True),
        ],
    )
    def attainment():
        failures = blocking_failures if blocking_failures is not None else pl.DataFrame({"x": []})
        yield from publish(
            [Table("attainment", rows, schemas.ATTAINMENT)],
            blocking=[frame_check(asset_key="attainment", check_name="business_rule", failures=failures, description="broken")],
        )

    return attainment


def run(asset, db, instance):
    return dg.materialize(
        [asset],
        resources={"io_manager": DuckDBWarehouseIOManager(database=str(db), schema=SCHEMA, lock_timeout_seconds=5)},
        instance=instance,
        raise_on_error=False,
    )


def table(db) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"select entity_id, quota, closed_won from {SCHEMA}.attainment order by entity_id").fetchall()


def test_a_frame_that_breaks_its_schema_leaves_the_table_unchanged(tmp_path):
    db, instance = tmp_path / "wh.duckdb", dg.DagsterInstance.ephemeral()
    good = run(make_asset(frame(attainment_row(100_000.0, 25_000.0))), db, instance)
    assert good.success
    assert table(db) == [("R1", 100_000.0, 25_000.0)]

    # a negative quota breaks the schema (quota >= 0); the second row is fine on its own
    bad = run(make_asset(frame(attainment_row(-5.0, 1.0), attainment_row(50_000.0, 10_000.0, "R2"))), db, instance)
    assert not bad.success
    assert table(db) == [("R1", 100_000.0, 25_000.0)], "the failing frame must not reach the table"
    assert bad.get_asset_materialization_events() == []
    schema_eval = [e for e in bad.get_asset_check_evaluations() if e.check_name == SCHEMA_CHECK]
    assert len(schema_eval) == 1 and not schema_eval[0].passed
    assert "not written" in schema_eval[0].description
    assert "quota" in schema_eval[0].metadata["failure_cases"].value


def test_a_failed_blocking_check_also_leaves_the_table_unchanged(tmp_path):
    db, instance = tmp_path / "wh.duckdb", dg.DagsterInstance.ephemeral()
    assert run(make_asset(frame(attainment_row(100_000.0, 25_000.0))), db, instance).success
    result = run(
        make_asset(frame(attainment_row(100_000.0, 99_000.0)), blocking_failures=pl.DataFrame({"x": [1]})), db, instance
    )
    assert not result.success
    assert table(db) == [("R1", 100_000.0, 25_000.0)]
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {SCHEMA_CHECK: True, "business_rule": False}


def test_a_good_frame_is_written_with_row_count_and_column_schema(tmp_path):
    db, instance = tmp_path / "wh.duckdb", dg.DagsterInstance.ephemeral()
    asset = make_asset(frame(attainment_row(100_000.0, 25_000.0), attainment_row(50_000.0, 60_000.0, "R2")))
    result = run(asset, db, instance)
    assert result.success
    assert table(db) == [("R1", 100_000.0, 25_000.0), ("R2", 50_000.0, 60_000.0)]
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == 2
    columns = {c.name: c for c in metadata["dagster/column_schema"].schema.columns}
    assert list(columns) == list(schemas.ATTAINMENT.columns)
    assert columns["quota"].constraints.nullable is False
    assert columns["product_family"].constraints.nullable is True
    # the definition carries the same columns, so the catalogue shows them before a first run
    spec = asset.specs_by_key[dg.AssetKey("attainment")]
    assert [c.name for c in spec.metadata["dagster/column_schema"].columns] == list(schemas.ATTAINMENT.columns)
