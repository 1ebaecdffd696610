"""Faults of the DuckDB warehouse, with real processes: a run killed with SIGKILL in the middle of
writing a partition, and two runs contending for the file (docs/decisions.md, "Faults";
docs/bad_input.md lists each case). In each: nothing lost, no partial partition visible, and a
clear message.

A child process materializes a small daily-partitioned asset through the platform's own I/O
manager (quota_platform.warehouse.duckdb_io.DuckDBWarehouseIOManager) with a real Dagster
instance. To stop it at an exact point of the write, the child wraps the handler's write so that
it signals the test (a marker file) and waits there; the test then kills it or races it. Nothing of
Dagster or DuckDB is replaced."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from quota_platform.warehouse.duckdb_io import DuckDBWarehouseIOManager

ROOT = Path(__file__).resolve().parents[1]
DAY1, DAY2 = "2025-01-01", "2025-01-02"

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    import polars as pl
    from quota_platform.warehouse import duckdb_io

    db, marker, pause_at, hold, partition, version, rows = sys.argv[1:8]
    original = duckdb_io.PolarsTableHandler.handle_output

    def wait_here():
        Path(marker).write_text("paused")
        time.sleep(float(hold))

    def handle_output(self, context, table_slice, obj, connection):
        # called after Dagster's client deleted the partition's rows, inside the write
        if pause_at == "before-insert":
            wait_here()
        result = original(self, context, table_slice, obj, connection)
        if pause_at == "after-insert":
            wait_here()
        return result

    duckdb_io.PolarsTableHandler.handle_output = handle_output

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition("2025-01-01"), metadata={"partition_expr": "as_of_date"})
    def facts(context) -> pl.DataFrame:
        day = context.partition_time_window.start.date()
        return pl.DataFrame({"as_of_date": [day] * int(rows), "n": list(range(int(rows))), "version": [version] * int(rows)})

    io = duckdb_io.DuckDBWarehouseIOManager(database=db, schema="quota_platform", lock_timeout_seconds=30)
    result = dg.materialize([facts], partition_key=partition, resources={"io_manager": io},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    sys.exit(0 if result.success else 1)
    """
)


@dg.asset(partitions_def=dg.DailyPartitionsDefinition("2025-01-01"), metadata={"partition_expr": "as_of_date"})
def facts(context) -> pl.DataFrame:
    day = context.partition_time_window.start.date()
    version = context.run.tags.get("version", "v1")
    rows = int(context.run.tags.get("rows", "1000"))
    return pl.DataFrame({"as_of_date": [day] * rows, "n": list(range(rows)), "version": [version] * rows})


def write(db: Path, partition: str, version: str, rows: int = 1000, lock_timeout: float = 30) -> dg.ExecuteInProcessResult:
    """Materialize ``facts`` for ``partition`` in this process."""
    io = DuckDBWarehouseIOManager(database=str(db), schema="quota_platform", lock_timeout_seconds=lock_timeout)
    return dg.materialize(
        [facts], partition_key=partition, resources={"io_manager": io}, instance=dg.DagsterInstance.ephemeral(),
        tags={"version": version, "rows": str(rows)}, raise_on_error=False,
    )


def contents(db: Path) -> dict[str, tuple[int, set[str]]]:
    """partition -> (rows, versions)."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select cast(as_of_date as varchar), count(*), list(distinct version) from quota_platform.facts group by 1"
        ).fetchall()
    return {day: (n, set(versions)) for day, n, versions in rows}


def start_child(tmp_path: Path, db: Path, pause_at: str, hold: float, partition: str, version: str, rows: int = 1000):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / f"paused-{version}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(db), str(marker), pause_at, str(hold), partition, version, str(rows)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child ended before pausing:\n{child.stdout.read().decode()}")
        assert time.monotonic() < deadline, "the child never reached its pause"
        time.sleep(0.05)
    return child


@pytest.fixture
def db(tmp_path) -> Path:
    """A warehouse holding 1,000 rows of version v1 for each of two days."""
    path = tmp_path / "warehouse" / "warehouse.duckdb"
    for day in (DAY1, DAY2):
        assert write(path, day, "v1").success
    assert contents(path) == {DAY1: (1000, {"v1"}), DAY2: (1000, {"v1"})}
    return path


@pytest.mark.parametrize("pause_at", ["before-insert", "after-insert"])
def test_a_run_killed_while_writing_a_partition_leaves_the_previous_rows(tmp_path, db, pause_at):
    """Killed after the old rows were deleted (before-insert) or after the new ones were inserted
    (after-insert), but before the write finished: the partition still holds exactly its 1,000
    previous rows and no new one, the other partition is untouched, and the next run replaces it
    whole. (Before the write became one transaction, a kill at before-insert left the partition
    empty: Dagster's client commits the delete on its own.)"""
    child = start_child(tmp_path, db, pause_at, hold=600, partition=DAY2, version="v2")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    assert contents(db) == {DAY1: (1000, {"v1"}), DAY2: (1000, {"v1"})}
    result = write(db, DAY2, "v3", rows=700)
    assert result.success
    assert contents(db) == {DAY1: (1000, {"v1"}), DAY2: (700, {"v3"})}


def test_a_second_run_waits_for_the_first_and_both_land(tmp_path, db):
    """Run A holds the file mid-write for 1.5 s; run B, started meanwhile, waits for the lock
    (up to 30 s) instead of failing, and both partitions end up replaced whole."""
    child = start_child(tmp_path, db, "after-insert", hold=1.5, partition=DAY1, version="vA")
    started = time.monotonic()
    result = write(db, DAY2, "vB", rows=500, lock_timeout=30)
    assert result.success
    assert time.monotonic() - started >= 0.5  # it did wait for A
    assert child.wait(timeout=60) == 0, child.stdout.read().decode()
    assert contents(db) == {DAY1: (1000, {"vA"}), DAY2: (500, {"vB"})}


def test_a_run_that_cannot_get_the_file_stops_naming_it_and_writes_nothing(tmp_path, db):
    """Run A holds the file (a run stuck mid-write); run B waits its 1 s and stops with a message
    naming the file, the process holding it and the setting, instead of DuckDB's bare lock
    error. Neither partition changes; B succeeds once A is gone."""
    child = start_child(tmp_path, db, "after-insert", hold=600, partition=DAY1, version="vA")
    try:
        result = write(db, DAY2, "vB", rows=500, lock_timeout=1)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.user_failure_data.description
        assert str(db) in message
        assert f"process {child.pid}" in message
        assert "QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT" in message and "Nothing was written" in message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert contents(db) == {DAY1: (1000, {"v1"}), DAY2: (1000, {"v1"})}
    assert write(db, DAY2, "vB", rows=500).success
    assert contents(db) == {DAY1: (1000, {"v1"}), DAY2: (500, {"vB"})}


def test_the_warehouse_file_and_its_folder_are_owner_only(tmp_path, db):
    """The file holds every rep's figures: created 0600 in a folder created 0700, whatever the
    umask (here 022, which would make them world-readable)."""
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "new_home" / "wh" / "warehouse.duckdb"
        assert write(fresh, DAY1, "v1").success
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(fresh.parent.parent.stat().st_mode) == 0o700
    assert os.umask(0o022) == 0o022  # the process umask is restored after the write
    os.umask(old)
