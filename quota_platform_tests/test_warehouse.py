"""The warehouse handler meeting a table written by an earlier release: new columns are added,
the frame goes in by the table's column order, a dropped column stops the write."""

import dagster as dg
import duckdb
import polars as pl
import pytest

from quota_platform.warehouse.duckdb_io import align_to_table


def _table(rows: pl.DataFrame):
    con = duckdb.connect()
    con.execute("create schema s")
    con.execute("create table s.t as select * from rows")
    return con


def test_new_columns_are_added_and_the_insert_lines_up():
    con = _table(pl.DataFrame({"a": [1], "c": ["x"]}))
    frame = pl.DataFrame({"a": [2], "b": [1.5], "c": ["y"]})
    aligned = align_to_table(frame, "s", "t", con)
    assert aligned.columns == ["a", "c", "b"]
    con.execute("insert into s.t select * from aligned")  # by position, as Dagster's handler does
    assert con.execute("select a, b, c from s.t order by a").fetchall() == [(1, None, "x"), (2, 1.5, "y")]


def test_same_columns_or_no_table_pass_through():
    con = _table(pl.DataFrame({"a": [1]}))
    frame = pl.DataFrame({"a": [2]})
    assert align_to_table(frame, "s", "t", con) is frame
    assert align_to_table(frame, "s", "absent", con) is frame


def test_a_column_no_longer_written_stops_with_its_name():
    con = _table(pl.DataFrame({"a": [1], "gone": ["x"]}))
    with pytest.raises(dg.Failure, match="s.t has column.*gone"):
        align_to_table(pl.DataFrame({"a": [2]}), "s", "t", con)
