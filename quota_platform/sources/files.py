"""The embedded source: one file per Salesforce object in a folder, ``<Object>.csv`` or
``<Object>.parquet`` (docs/contract.md, Inputs: "Where the records come from")."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from quota_platform.lib.core.contract import OBJECTS, ContractError, conform, empty_frame


def object_path(source_dir: Path, object_name: str) -> Path | None:
    """The file holding an object, Parquet preferred when both exist; None when neither does."""
    for suffix in (".parquet", ".csv"):
        path = source_dir / f"{object_name}{suffix}"
        if path.exists():
            return path
    return None


def read_object(
    source_dir: str | Path, object_name: str, renames: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """Read one object from its file and conform it to the contract.

    A required object with no file is a :class:`ContractError` naming the folder and the file
    names looked for; an optional one is an empty typed frame.
    """
    source_dir = Path(source_dir)
    spec = OBJECTS[object_name]
    if not source_dir.is_dir():
        raise ContractError(
            f"source folder {source_dir} does not exist (set QUOTA_PLATFORM_SOURCE_DIR, or run "
            f"`quota-platform demo-data --out {source_dir}`)"
        )
    path = object_path(source_dir, object_name)
    if path is None:
        if spec.required:
            raise ContractError(
                f"{object_name}: required object missing: no {object_name}.csv or "
                f"{object_name}.parquet in {source_dir}"
            )
        return empty_frame(object_name)
    if path.suffix == ".parquet":
        raw = pl.read_parquet(path)
    else:
        # Every column as text: the contract decides the types, and a value that does not parse is
        # reported with its record Id rather than guessed at by CSV inference.
        try:
            raw = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
        except pl.exceptions.NoDataError:
            raw = pl.DataFrame()
    return conform(object_name, raw, where=str(path), renames=renames)
