"""Turning validation into asset check results."""

from __future__ import annotations

import dagster as dg
import pandera.polars as pa
import polars as pl

MAX_FAILURE_ROWS = 20


def schema_check(
    schema: pa.DataFrameSchema, frame: pl.DataFrame, *, asset_key: str, check_name: str = "schema"
) -> dg.AssetCheckResult:
    """Validate ``frame`` with a pandera.polars schema; a failure carries the failure cases."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=False,
            metadata={
                "failure_count": dg.MetadataValue.int(cases.height),
                "failure_cases": dg.MetadataValue.md(_markdown(cases.head(MAX_FAILURE_ROWS))),
            },
            description=f"{cases.height} value(s) break the {schema.name} schema",
        )
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name, passed=True, metadata={"rows": frame.height}
    )


def frame_check(
    *,
    asset_key: str,
    check_name: str,
    failures: pl.DataFrame,
    description: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    extra: dict | None = None,
) -> dg.AssetCheckResult:
    """Pass when ``failures`` is empty; otherwise show how many rows failed and the first of them."""
    metadata: dict = {"failure_count": dg.MetadataValue.int(failures.height), **(extra or {})}
    if failures.height:
        metadata["failures"] = dg.MetadataValue.md(_markdown(failures.head(MAX_FAILURE_ROWS)))
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=failures.is_empty(),
        severity=severity,
        metadata=metadata,
        description=description if failures.height else None,
    )


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])
