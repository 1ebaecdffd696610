"""Quarantine: records that break a rule on their own are set aside with the object, record Id,
field and problem, never dropped silently and never part of a total (docs/decisions.md)."""

from __future__ import annotations

import polars as pl

COLUMNS = ("object", "record_id", "field", "problem")
SCHEMA = {c: pl.String() for c in COLUMNS}


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def rows(frame: pl.DataFrame, *, object: str, id_col: str, field: str, problem: pl.Expr) -> pl.DataFrame:
    """Quarantine rows for every row of ``frame``: ``problem`` is an expression over its columns,
    so the message can carry the record's own values."""
    if frame.is_empty():
        return empty()
    return frame.select(
        pl.lit(object).alias("object"),
        pl.col(id_col).cast(pl.String).alias("record_id"),
        pl.lit(field).alias("field"),
        problem.cast(pl.String).alias("problem"),
    )


def concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    parts = [p for p in parts if not p.is_empty()]
    if not parts:
        return empty()
    return pl.concat(parts, how="vertical_relaxed")
