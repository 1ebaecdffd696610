"""The one roll-up of rep rows to managers and the company (CONTRACT.md section 2, "Roll-ups"):
a manager's figures are the sums of the rep rows below it in the ManagerId tree as captured in
the month's snapshot (org_hierarchy, a closure table), and the company's the sums of every rep.

:func:`rollup_links` says which entity includes which rep; :func:`roll_up` sums frame columns over
those links (attainment, the backtest baselines); the projections sum simulation draws over the
same links as a sparse matrix. :func:`rollup_mismatches` checks a roll-up by another path.
"""

from __future__ import annotations

import polars as pl

# the levels of an attainment or projection row, and the company's entity
REP, MANAGER, COMPANY = "rep", "manager", "company"
LEVELS = (REP, MANAGER, COMPANY)
COMPANY_ID = "company"
COMPANY_NAME = "Company"

LINK_SCHEMA = {
    "snapshot_month": pl.Date(),
    "rep_id": pl.String(),
    "level": pl.String(),
    "entity_id": pl.String(),
    "entity_name": pl.String(),
    "parent_id": pl.String(),
}


def rollup_links(hierarchy: pl.DataFrame) -> pl.DataFrame:
    """Per snapshot month, every user of the hierarchy (``rep_id``) with each entity whose totals
    include it: every manager above it (level ``manager``: entity_id its ancestor_id, entity_name
    its ancestor_name, parent_id that manager's own manager) and the company (level ``company``,
    entity_id COMPANY_ID, no parent). ``hierarchy`` holds org_hierarchy rows; a user's row at
    distance 0 (itself) makes it a member of the company, so a user missing from a month's
    hierarchy counts nowhere in that month."""
    own = hierarchy.filter(pl.col("distance") == 0)
    managers = (
        hierarchy.filter(pl.col("distance") >= 1)
        .join(
            own.select("snapshot_month", pl.col("user_id").alias("ancestor_id"), pl.col("manager_id").alias("parent_id")),
            on=["snapshot_month", "ancestor_id"],
            how="left",
        )
        .select(
            "snapshot_month",
            pl.col("user_id").alias("rep_id"),
            pl.lit(MANAGER).alias("level"),
            pl.col("ancestor_id").alias("entity_id"),
            pl.col("ancestor_name").alias("entity_name"),
            "parent_id",
        )
    )
    company = own.select(
        "snapshot_month",
        pl.col("user_id").alias("rep_id"),
        pl.lit(COMPANY).alias("level"),
        pl.lit(COMPANY_ID).alias("entity_id"),
        pl.lit(COMPANY_NAME).alias("entity_name"),
        pl.lit(None, pl.String).alias("parent_id"),
    )
    return pl.concat([managers.cast(LINK_SCHEMA), company.cast(LINK_SCHEMA)])


def roll_up(rep_rows: pl.DataFrame, hierarchy: pl.DataFrame, keys: list[str], sums: list[str]) -> pl.DataFrame:
    """Manager and company rows from rep rows: per value of ``keys`` and linked entity
    (:func:`rollup_links`), the sum of each column in ``sums`` over the entity's rep rows and
    ``rep_count``, how many rep rows were summed. ``rep_rows`` need ``snapshot_month`` (the month
    whose hierarchy applies), ``rep_id``, ``keys`` and ``sums``; other columns are ignored.
    Returns ``keys``, level, entity_id, entity_name, parent_id, ``sums``, rep_count (Int64), in
    no particular order; an entity with no rep row under it has no row."""
    columns = list(dict.fromkeys(["snapshot_month", "rep_id", *keys, *sums]))  # keys may hold the month
    return (
        rep_rows.select(columns)
        .join(rollup_links(hierarchy), on=["snapshot_month", "rep_id"])
        .group_by(*keys, "level", "entity_id", "entity_name", "parent_id")
        .agg(*(pl.col(c).sum() for c in sums), pl.len().cast(pl.Int64).alias("rep_count"))
    )


def rollup_mismatches(attainment: pl.DataFrame, hierarchy: pl.DataFrame, tolerance: float = 1e-6) -> pl.DataFrame:
    """Manager and company rows of ``attainment`` whose quota or closed_won differ from the sum of
    the rep rows below them, and expected rows that are missing, for the blocking check.

    A second path on purpose: the tree is walked downward from each manager through direct-report
    edges (each user's manager_id), in Python, instead of joining the closure table as
    :func:`roll_up` does, and the company is the sum of every rep row whatever the hierarchy holds.
    A check that reused :func:`rollup_links` would agree with any mistake in it; this one does not
    share it."""
    edges = hierarchy.filter(pl.col("distance") == 0).select("snapshot_month", "user_id", "manager_id")
    pairs = []
    for (month,), group in edges.group_by("snapshot_month"):
        reports: dict[str, list[str]] = {}
        for user, manager in group.select("user_id", "manager_id").iter_rows():
            if manager is not None:
                reports.setdefault(manager, []).append(user)
        for manager in reports:
            stack, seen = list(reports[manager]), set()
            while stack:
                user = stack.pop()
                if user not in seen:
                    seen.add(user)
                    stack.extend(reports.get(user, []))
            pairs.extend((month, manager, user) for user in seen)
    below = pl.DataFrame(
        pairs, schema={"snapshot_month": pl.Date, "entity_id": pl.String, "rep_id": pl.String}, orient="row"
    )
    keys = ["as_of_date", "period_type", "period_start", "quota_type", "product_family"]
    reps = attainment.filter(pl.col("level") == REP).select(
        *keys, pl.col("entity_id").alias("rep_id"), "quota", "closed_won",
        pl.col("as_of_date").dt.truncate("1mo").alias("snapshot_month"),
    )
    expected_managers = (
        reps.join(below, on=["snapshot_month", "rep_id"])
        .group_by(*keys, "entity_id")
        .agg(pl.col("quota").sum().alias("_quota"), pl.col("closed_won").sum().alias("_won"))
        .with_columns(pl.lit(MANAGER).alias("level"))
    )
    expected_company = (
        reps.group_by(keys)
        .agg(pl.col("quota").sum().alias("_quota"), pl.col("closed_won").sum().alias("_won"))
        .with_columns(pl.lit(COMPANY_ID).alias("entity_id"), pl.lit(COMPANY).alias("level"))
    )
    expected = pl.concat([expected_managers, expected_company], how="diagonal_relaxed")
    actual = attainment.filter(pl.col("level") != REP).select(*keys, "level", "entity_id", "quota", "closed_won")
    joined = actual.join(expected, on=[*keys, "level", "entity_id"], how="full", nulls_equal=True, coalesce=True)
    off = lambda a, b: (pl.col(a).fill_null(0) - pl.col(b).fill_null(0)).abs() > tolerance * pl.max_horizontal(pl.col(b).abs().fill_null(0), pl.lit(1.0))  # noqa: E731
    return joined.filter(off("quota", "_quota") | off("closed_won", "_won") | pl.col("quota").is_null() | pl.col("_quota").is_null()).rename(
        {"_quota": "expected_quota", "_won": "expected_closed_won"}
    )
