"""Validation before write, shared by every asset that writes a table.

An asset hands its frames to :func:`publish` instead of yielding them itself. Each frame is checked
against its pandera.polars schema, and the asset's blocking business checks are evaluated, BEFORE
any frame reaches the I/O manager: if one fails, the check results are reported (the UI shows them
failed, with the failure cases) and the step fails, so the warehouse keeps the rows it had and no
table Tableau reads ever holds a frame that breaks its schema. Only when everything blocking
passes are the outputs yielded, each with ``dagster/row_count`` and ``dagster/column_schema``
(from its schema), followed by the non-blocking (WARN) checks.

The quarantine tables of the assets that set records aside share one shape and one set of checks:
:func:`quarantine_out`, :func:`quarantine_check_specs` and :class:`Quarantine`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import dagster as dg
import pandera.polars as pa
import polars as pl

from quota_platform.lib import schemas

MAX_FAILURE_ROWS = 20
SCHEMA_CHECK = "schema"


@dataclasses.dataclass
class Table:
    """One output frame of an asset and the schema it must satisfy."""

    asset: str  # asset key (and output name of a multi-asset)
    frame: pl.DataFrame
    schema: pa.DataFrameSchema
    metadata: dict = dataclasses.field(default_factory=dict)
    multi: bool = False  # an output of a multi-asset: yielded with output_name


def column_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """The schema's columns as Dagster's table schema, for the UI's catalogue."""
    unique = set(schema.unique or [])
    columns = []
    for name, column in schema.columns.items():
        checks = [str(c.error or c.name) for c in column.checks if (c.error or c.name)]
        columns.append(
            dg.TableColumn(
                name=name,
                type=str(column.dtype),
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable, unique=column.unique, other=checks
                ),
            )
        )
    constraints = dg.TableConstraints(other=[f"unique: {', '.join(schema.unique)}"]) if unique else None
    return dg.TableSchema(columns=columns, constraints=constraints)


def definition_metadata(schema: pa.DataFrameSchema, **extra) -> dict:
    """Metadata of an asset definition: its column schema, so the catalogue shows the columns
    before the first materialization."""
    return {"dagster/column_schema": column_schema(schema), **extra}


def schema_check(schema: pa.DataFrameSchema, frame: pl.DataFrame, *, asset_key: str) -> dg.AssetCheckResult:
    """Validate ``frame`` with a pandera.polars schema; a failure carries the failure cases."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=SCHEMA_CHECK,
            passed=False,
            metadata={
                "failure_count": dg.MetadataValue.int(cases.height),
                "failure_cases": dg.MetadataValue.md(_markdown(cases.head(MAX_FAILURE_ROWS))),
            },
            description=f"{cases.height} value(s) break the {schema.name} schema; the table was not written",
        )
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=SCHEMA_CHECK, passed=True, metadata={"rows": frame.height}
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


def publish(
    tables: list[Table],
    blocking: list[dg.AssetCheckResult] = (),
    after: list[dg.AssetCheckResult] = (),
    others: list[dg.Output] = (),
) -> Iterator[dg.AssetCheckResult | dg.Output]:
    """Yield the schema checks of ``tables`` and the ``blocking`` check results; if any failed,
    stop the step (nothing is written); else yield each table's output, the ``others`` (outputs
    that are not tables, such as a stored model) and then the ``after`` (WARN) results. Use as
    ``yield from publish(...)`` inside an asset."""
    results = [schema_check(t.schema, t.frame, asset_key=t.asset) for t in tables] + list(blocking)
    yield from results
    failed = [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]
    if failed:
        names = ", ".join(f"{r.asset_key.to_user_string()}:{r.check_name}" for r in failed)
        raise dg.Failure(
            description="; ".join(r.description or f"{r.check_name} failed" for r in failed),
            metadata={"failed_checks": names, "written": "nothing: the tables keep their previous rows"},
        )
    for t in tables:
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(t.frame.height),
            "dagster/column_schema": column_schema(t.schema),
            **t.metadata,
        }
        yield dg.Output(t.frame, output_name=t.asset if t.multi else "result", metadata=metadata)
    yield from others
    yield from after


# --- quarantine tables -------------------------------------------------------------------------------


def quarantine_out(group: str, partition_column: str, description: str) -> dg.AssetOut:
    """The AssetOut of a quarantine table partitioned by ``partition_column``."""
    return dg.AssetOut(
        group_name=group,
        metadata={
            "partition_expr": partition_column,
            **definition_metadata(schemas.quarantine_schema(partition_column)),
        },
        kinds={"polars", "duckdb"},
        description=description + " Object, record Id, field and problem; never part of a total.",
    )


def quarantine_check_specs(asset: str, check_name: str, description: str) -> list[dg.AssetCheckSpec]:
    """The quarantine table's blocking schema check and its WARN check while it holds records."""
    return [
        dg.AssetCheckSpec(SCHEMA_CHECK, asset=asset, blocking=True),
        dg.AssetCheckSpec(check_name, asset=asset, description=description),
    ]


@dataclasses.dataclass
class Quarantine:
    """The records an asset set aside, with the check and warning every quarantine table carries."""

    asset: str
    check_name: str
    what: str  # e.g. "won opportunity": the kind of record, for messages
    frame: pl.DataFrame
    partition_column: str

    @property
    def records(self) -> int:
        return self.frame.select("object", "record_id").unique().height

    def table(self) -> Table:
        return Table(
            self.asset,
            self.frame,
            schemas.quarantine_schema(self.partition_column),
            metadata={"quarantined_records": self.records},
            multi=True,
        )

    def warn(self, context: dg.AssetExecutionContext) -> dg.AssetCheckResult:
        """Log the count and return the WARN check result (fails while any record is quarantined)."""
        if self.records:
            context.log.warning(f"{self.records} {self.what} record(s) quarantined; see {self.asset}")
        return frame_check(
            asset_key=self.asset,
            check_name=self.check_name,
            failures=self.frame.unique(["object", "record_id", "field"]),
            description=f"{self.records} {self.what} record(s) quarantined",
            severity=dg.AssetCheckSeverity.WARN,
        )


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])
