"""The ManagerId tree as a closure table: one row per (user, ancestor), the user itself at
distance 0, the direct manager at 1, and so on up to the top. Roll-ups join rep rows to it."""

from __future__ import annotations

import polars as pl

from quota_platform.lib.core.contract import ContractError


def check_managers(users: pl.DataFrame) -> None:
    """A ManagerId must name a User; a ManagerId chain must end. Either failure would make a
    manager's roll-up wrong, so both stop the run with the records named."""
    ids = set(users["Id"].to_list())
    dangling = users.filter(pl.col("ManagerId").is_not_null() & ~pl.col("ManagerId").is_in(list(ids)))
    if not dangling.is_empty():
        shown = ", ".join(
            f"Id={r['Id']} ManagerId={r['ManagerId']}" for r in dangling.head(5).iter_rows(named=True)
        )
        raise ContractError(
            f"User.ManagerId: {dangling.height} user(s) name a manager who is not a User ({shown})"
        )
    manager_of = dict(zip(users["Id"].to_list(), users["ManagerId"].to_list()))
    for start in manager_of:
        seen: list[str] = []
        node: str | None = start
        while node is not None:
            if node in seen:
                cycle = seen[seen.index(node):] + [node]
                raise ContractError(
                    "User.ManagerId: the manager chain loops: "
                    + " -> ".join(f"Id={c}" for c in cycle)
                    + " (each chain must end at a user with no ManagerId)"
                )
            seen.append(node)
            node = manager_of.get(node)


def closure(users: pl.DataFrame) -> pl.DataFrame:
    """(user_id, ancestor_id, distance) for every user and each of its managers, and itself at 0."""
    check_managers(users)
    edges = users.select(pl.col("Id").alias("user_id"), pl.col("ManagerId").alias("ancestor_id"))
    level = users.select(
        pl.col("Id").alias("user_id"), pl.col("Id").alias("ancestor_id"), pl.lit(0, pl.Int32).alias("distance")
    )
    parts = [level]
    while not level.is_empty():
        level = (
            level.join(edges.rename({"user_id": "ancestor_id", "ancestor_id": "next"}), on="ancestor_id")
            .filter(pl.col("next").is_not_null())
            .select("user_id", pl.col("next").alias("ancestor_id"), (pl.col("distance") + 1).alias("distance"))
        )
        parts.append(level)
    return pl.concat(parts).sort("user_id", "distance")


HIERARCHY_SCHEMA = {
    "snapshot_month": pl.Date(),
    "user_id": pl.String(),
    "user_name": pl.String(),
    "manager_id": pl.String(),
    "is_active": pl.Boolean(),
    "ancestor_id": pl.String(),
    "ancestor_name": pl.String(),
    "distance": pl.Int32(),
}


def build_org_hierarchy(snapshot_months: list, users: pl.DataFrame) -> pl.DataFrame:
    """The closure table as captured for each snapshot month, with names for the roll-up rows."""
    names = users.select(pl.col("Id").alias("ancestor_id"), pl.col("Name").alias("ancestor_name"))
    tree = (
        closure(users)
        .join(
            users.select(
                pl.col("Id").alias("user_id"),
                pl.col("Name").alias("user_name"),
                pl.col("ManagerId").alias("manager_id"),
                pl.col("IsActive").alias("is_active"),
            ),
            on="user_id",
        )
        .join(names, on="ancestor_id", how="left")
    )
    months = pl.DataFrame({"snapshot_month": snapshot_months}, schema={"snapshot_month": pl.Date})
    return months.join(tree, how="cross").select(list(HIERARCHY_SCHEMA)).cast(HIERARCHY_SCHEMA)
