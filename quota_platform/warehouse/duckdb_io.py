"""The warehouse I/O manager: polars frames in and out of DuckDB, schema ``quota_platform``.

Dagster's DuckDB polars handler skips writing an empty frame, so an org without an optional object
(or a day with no won deal) would leave no table behind and the next read would fail; here an
empty frame writes an empty table with its columns. Datetimes read back in UTC whatever DuckDB's
session time zone is. A partitioned input that was never materialized stops the run.

A release that adds columns to a table (win_rate_posteriors gained deal_class and deal_size) meets
warehouses written by the one before: the handler adds the new columns to the existing table
(null in the rows written before) and writes the frame in the table's column order, because
DuckDB's insert is by position. A column the table has and the frame lacks stops the write with
the table and columns named: dropping data is a migration for a person to decide."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

# The warehouse schema every table is written to (docs/contract.md, "Outputs").
SCHEMA = "quota_platform"


class UpstreamNotMaterialized(dg.Failure):
    """A partition an asset reads was never materialized."""


def require_materialized(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys) -> None:
    """Stop with a clear message when an upstream partition was never materialized: the DuckDB
    handler would hand over an empty frame and every total downstream would be silently zero."""
    missing = sorted(set(partition_keys) - instance.get_materialized_partitions(asset_key))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UpstreamNotMaterialized(
            description=(
                f"{asset_key.to_user_string()} has no materialization for partition(s) {shown}; "
                "materialize it first (or run `quota-platform refresh --as-of DATE`, which does it in order)"
            )
        )


def align_to_table(obj: pl.DataFrame, schema: str, table: str, connection) -> pl.DataFrame:
    """``obj`` ready to insert into ``schema.table`` if it exists: columns the table lacks are
    added to it, and the frame is put in the table's column order."""
    existing = [
        row[0]
        for row in connection.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]
    if not existing or existing == obj.columns:
        return obj
    missing = [c for c in existing if c not in obj.columns]
    if missing:
        raise dg.Failure(
            f"warehouse table {schema}.{table} has column(s) {', '.join(missing)} that this release no longer "
            "writes; migrate or drop the table (its data is rebuilt by materializing the asset again)"
        )
    new_columns = [c for c in obj.columns if c not in existing]
    if new_columns:
        probe = obj.head(0).select(new_columns).to_arrow()  # noqa: F841  (read by name in the SQL below)
        types = dict(connection.execute("select column_name, column_type from (describe select * from probe)").fetchall())
        for column in new_columns:
            connection.execute(f'alter table {schema}.{table} add column "{column}" {types[column]}')
    return obj.select(existing + new_columns)


class PolarsTableHandler(DuckDBPolarsTypeHandler):
    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection):
        obj = align_to_table(obj, table_slice.schema, table_slice.table, connection)
        if not obj.is_empty():
            return super().handle_output(context, table_slice, obj, connection)
        empty_arrow = obj.to_arrow()  # noqa: F841  (read by name in the SQL below)
        connection.execute(f"create schema if not exists {table_slice.schema};")
        connection.execute(
            f"create table if not exists {table_slice.schema}.{table_slice.table} as select * from empty_arrow"
        )
        context.add_output_metadata({"row_count": 0})

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection) -> pl.DataFrame:
        if context.has_asset_partitions:
            require_materialized(context.instance, context.asset_key, context.asset_partition_keys)
        frame = super().load_input(context, table_slice, connection)
        utc = [
            pl.col(name).dt.convert_time_zone("UTC")
            for name, dtype in frame.schema.items()
            if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC")
        ]
        return frame.with_columns(utc) if utc else frame


class DuckDBWarehouseIOManager(DuckDBIOManager):
    """DuckDB I/O manager for polars frames (the embedded default warehouse)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def create_io_manager(self, context):
        # the file's folder is made when a run first uses the warehouse, not when definitions load
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        return super().create_io_manager(context)


class Warehouse(dg.ConfigurableResource):
    """Read access to the warehouse for assets that read whatever partitions exist (the backtest),
    rather than a fixed partition range through the I/O manager."""

    database: str
    schema_name: str

    def table_exists(self, table: str) -> bool:
        import duckdb

        with duckdb.connect(self.database, read_only=True) as con:
            return bool(
                con.execute(
                    "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                    [self.schema_name, table],
                ).fetchone()[0]
            )

    def read(self, table: str, where: str = "true", params: list | None = None) -> pl.DataFrame:
        import duckdb

        with duckdb.connect(self.database, read_only=True) as con:
            return con.execute(f"select * from {self.schema_name}.{table} where {where}", params or []).pl()
