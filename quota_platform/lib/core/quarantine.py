"""Quarantine: records that break a rule on their own are set aside with the object, record Id,
field and problem, never dropped silently and never part of a total (docs/decisions.md).

Every quarantine row in lib/ is built here, so the row shape is written once: the partition column
(``as_of_date`` for the daily tables, ``snapshot_month`` for the monthly ones) when the caller
names one, then :data:`COLUMNS`. Every row's ``problem`` is a non-empty string.
"""

from __future__ import annotations

from datetime import date

import polars as pl

COLUMNS = ("object", "record_id", "field", "problem")
SCHEMA = {c: pl.String() for c in COLUMNS}


def schema(partition: str | None = None) -> dict[str, pl.DataType]:
    """The quarantine row shape: the partition column (a date) first when named, then COLUMNS."""
    return {partition: pl.Date(), **SCHEMA} if partition else dict(SCHEMA)


def empty(partition: str | None = None) -> pl.DataFrame:
    return pl.DataFrame(schema=schema(partition))


def shown(value: pl.Expr, empty_text: str = "(empty)") -> pl.Expr:
    """A value as a problem message shows it: as text, and ``empty_text`` when it is null (a null
    inside ``pl.format`` would make the whole message null)."""
    return value.cast(pl.String).fill_null(empty_text)


def rows(
    frame: pl.DataFrame,
    *,
    object: str,
    id_col: str,
    field: str,
    problem: pl.Expr,
    partition: str | None = None,
) -> pl.DataFrame:
    """Quarantine rows for every row of ``frame``: ``problem`` is an expression over its columns,
    so the message can carry the record's own values; ``partition`` names a date column of
    ``frame`` that the rows keep as their first column.

    A message that still comes out null or blank (a value it names is null and was not passed
    through :func:`shown`) is replaced by one naming the field, so no row is ever without a problem.
    """
    if frame.is_empty():
        return empty(partition)
    text = problem.cast(pl.String)
    fallback = f"{object}.{field} breaks a rule checked here (a value the message names is empty)"
    return frame.select(
        *([pl.col(partition).cast(pl.Date)] if partition else []),
        pl.lit(object).alias("object"),
        pl.col(id_col).cast(pl.String).alias("record_id"),
        pl.lit(field).alias("field"),
        pl.when(text.str.strip_chars().fill_null("") == "")
        .then(pl.lit(fallback))
        .otherwise(text)
        .alias("problem"),
    )


def concat(parts: list[pl.DataFrame], partition: str | None = None) -> pl.DataFrame:
    """The rows of ``parts`` in order; with none, an empty frame of the quarantine shape."""
    parts = [p for p in parts if not p.is_empty()]
    if not parts:
        return empty(partition)
    return pl.concat(parts, how="vertical_relaxed")


def in_each_partition(bad: pl.DataFrame, partition: str, values: list[date]) -> pl.DataFrame:
    """The same quarantine rows under each partition value, in the order of ``values``: a record
    that breaks a rule regardless of the partition (a quota's own fields) is set aside in every
    partition it would have been part of."""
    keys = pl.DataFrame({partition: values}, schema={partition: pl.Date})
    return keys.join(bad.select(COLUMNS), how="cross").select(partition, *COLUMNS)
