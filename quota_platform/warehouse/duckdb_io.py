"""The warehouse I/O manager: polars frames in and out of DuckDB, schema ``quota_platform``.

Dagster's DuckDB polars handler skips writing an empty frame, so an org without an optional object
(or a day with no won deal) would leave no table behind and the next read would fail; here an
empty frame writes an empty table with its columns. Datetimes read back in UTC whatever DuckDB's
session time zone is. A partitioned input that was never materialized stops the run.

A release that adds columns to a table (win_rate_posteriors gained deal_class and deal_size) meets
warehouses written by the one before: the handler adds the new columns to the existing table
(null in the rows written before) and writes the frame in the table's column order, because
DuckDB's insert is by position. A column the table has and the frame lacks stops the write with
the table and columns named: dropping data is a migration for a person to decide.

Faults (docs/decisions.md, "Faults"):

* A partition is replaced in one transaction: Dagster's DuckDB client deletes the partition's
  rows and inserts the new ones as separate statements, each committed on its own, so a run
  killed between them left the partition empty (the old rows gone, the new ones never written).
  Here the delete, any new columns and the insert commit together or not at all, so a run killed
  midway leaves the previous rows, never a part of the new ones (:class:`TransactionalDuckDbClient`).
* DuckDB lets one process at a time open the file for writing. A second process (another run, a
  DuckDB shell with the file open) waits for it up to ``lock_timeout_seconds``
  (QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT), then stops with :class:`WarehouseBusy` naming the file
  and the process holding it, instead of DuckDB's bare lock error.
* The file, its write-ahead log and spill files are created owner-only (private_files).
"""

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_polars import DuckDBPolarsTypeHandler

from quota_platform.warehouse.private_files import make_private_dir, owner_only_umask

# The warehouse schema every table is written to (docs/contract.md, "Outputs").
SCHEMA = "quota_platform"


class UpstreamNotMaterialized(dg.Failure):
    """A partition an asset reads was never materialized."""


class WarehouseBusy(dg.Failure):
    """Another process held the DuckDB file for longer than the lock wait allows."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def _lock_holder(exc: duckdb.Error) -> str | None:
    """Who holds the file when ``exc`` is DuckDB's lock conflict (e.g. "process 4242
    (/usr/bin/python3)"); None for any other error."""
    text = str(exc)
    if "Could not set lock" not in text and "Conflicting lock" not in text:
        return None
    held = _LOCK_HOLDER.search(text)
    return f"process {held.group('pid')} ({held.group('program')})" if held else "another process"


def connect_waiting(
    database: str, *, read_only: bool, lock_timeout_seconds: float, config: dict | None = None
) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` that, while another process holds the file's lock, tries again with
    backoff (0.05 s doubling to 1 s) for up to ``lock_timeout_seconds``, then raises
    :class:`WarehouseBusy` naming the file and the process that holds it. Other errors are raised
    as they are."""
    deadline = time.monotonic() + lock_timeout_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database, read_only=read_only, config=config or {})
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            holder = _lock_holder(exc)
            if holder is None:
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseBusy(
                    description=(
                        f"the warehouse file {database} is in use by {holder} and was still locked "
                        f"after waiting {lock_timeout_seconds:g} s (QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT). "
                        "Another run, or a tool with the file open (a DuckDB shell, a BI extract), is "
                        "using it: run again when it has finished. Nothing was written."
                    ),
                    metadata={"database": database, "holder": holder},
                ) from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)


class TransactionalDuckDbClient(DuckDbClient):
    """Dagster's DuckDB client, with each output written in one transaction and connections that
    wait for a lock held by another process (module docstring)."""

    def __init__(self, database: str, lock_timeout_seconds: float, config: dict):
        self.database = database
        self.lock_timeout_seconds = lock_timeout_seconds
        self.config = {"custom_user_agent": "dagster", **config}

    @contextlib.contextmanager
    def connect(self, context, table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        writing = isinstance(context, dg.OutputContext)
        with owner_only_umask():
            conn = connect_waiting(
                self.database, read_only=False, lock_timeout_seconds=self.lock_timeout_seconds, config=self.config
            )
            try:
                if writing:
                    conn.execute("begin transaction")
                yield conn
                if writing:
                    conn.execute("commit")
            except BaseException:
                if writing:
                    with contextlib.suppress(duckdb.Error):
                        conn.execute("rollback")
                raise
            finally:
                conn.close()

    @staticmethod
    def delete_table_slice(context: dg.OutputContext, table_slice: TableSlice, connection) -> None:
        # Dagster's client runs the DELETE and ignores the error when the table does not exist
        # yet; inside a transaction that error would abort the transaction, so look first.
        exists = connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [table_slice.schema, table_slice.table],
        ).fetchone()[0]
        if exists:
            DuckDbClient.delete_table_slice(context, table_slice, connection)


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
    """DuckDB I/O manager for polars frames (the embedded default warehouse): each output
    replaces its partition in one transaction, and a file locked by another process is waited for
    up to ``lock_timeout_seconds`` (module docstring)."""

    lock_timeout_seconds: float

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsTableHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def create_io_manager(self, context):
        # the file's folder is made when a run first uses the warehouse, not when definitions load
        make_private_dir(Path(self.database).parent)
        return DbIOManager(
            db_client=TransactionalDuckDbClient(self.database, self.lock_timeout_seconds, dict(self.connection_config)),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )


class Warehouse(dg.ConfigurableResource):
    """Read access to the warehouse for assets that read whatever partitions exist (the backtest),
    rather than a fixed partition range through the I/O manager."""

    database: str
    schema_name: str
    lock_timeout_seconds: float

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return connect_waiting(self.database, read_only=True, lock_timeout_seconds=self.lock_timeout_seconds)

    def table_exists(self, table: str) -> bool:
        with self._connect() as con:
            return bool(
                con.execute(
                    "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                    [self.schema_name, table],
                ).fetchone()[0]
            )

    def read(self, table: str, where: str = "true", params: list | None = None) -> pl.DataFrame:
        with self._connect() as con:
            return con.execute(f"select * from {self.schema_name}.{table} where {where}", params or []).pl()
