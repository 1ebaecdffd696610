"""The embedded source: one file per Salesforce object in a folder, ``<Object>.csv`` or
``<Object>.parquet`` (docs/contract.md, Inputs: "Where the records come from").

A file that cannot be read as what its suffix says is a :class:`ContractError` naming the object
and the file, and for a CSV file the line, the record's Id and the field where that can be known:
a file that is not UTF-8 (a byte sequence that is not UTF-8 would otherwise be decoded into
replacement characters, silently changing Ids and names), a record with more or fewer fields than
the header (a shifted record puts every value after the shift in the wrong column), a quote that
is never closed, and a Parquet file that is truncated or not Parquet at all (docs/bad_input.md)."""

from __future__ import annotations

import csv
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
        raw = read_parquet(path, object_name)
    else:
        raw = read_csv(path, object_name, id_field=spec.id_field)
    return conform(object_name, raw, where=str(path), renames=renames)


def read_parquet(path: Path, object_name: str) -> pl.DataFrame:
    """The Parquet file's frame; a file polars cannot read as Parquet is a ContractError."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"{object_name}: {path} cannot be read as a Parquet file ({first}); it may be "
            "truncated (an interrupted copy or export) or not Parquet at all: export it again"
        ) from None


def read_csv(path: Path, object_name: str, *, id_field: str | None = "Id") -> pl.DataFrame:
    """Every column as text: the contract decides the types, and a value that does not parse is
    reported with its record Id rather than guessed at by CSV inference.

    The file must be UTF-8 (a byte-order mark is allowed) and every record must have as many
    fields as the header; blank lines are skipped. ``id_field`` names the column whose value
    identifies a record in a message."""
    try:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8")
    except pl.exceptions.NoDataError:
        return pl.DataFrame()
    except pl.exceptions.PolarsError as exc:
        problem = _locate_csv_problem(path, object_name, id_field)
        if problem is None:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problem = f"{object_name}: {path} cannot be read as CSV ({detail})"
        raise ContractError(problem) from None
    if _first_ragged_line(path, len(raw.columns)) is not None:
        # Confirmed record by record (the count above assumes well-formed quoting); a file the
        # exact reader finds nothing wrong with is read as it is.
        problem = _locate_csv_problem(path, object_name, id_field)
        if problem is not None:
            raise ContractError(problem)
    # A blank line reads as a record with every field empty: it holds nothing, so it is not one.
    if raw.width:
        raw = raw.filter(~pl.all_horizontal(pl.all().is_null()))
    return raw


def _first_ragged_line(path: Path, n_columns: int) -> int | None:
    """The physical line (1-based) where the first record whose field count is not
    ``n_columns`` starts, or None. Vectorised: each line's commas outside quotes are counted
    (quote parity carried from line to line, so a quoted field may span lines) and summed per
    record; blank lines outside quotes are skipped, as the reader skips them."""
    lines = pl.read_csv(
        path, has_header=False, separator="\x1f", quote_char=None, infer_schema=False,
        new_columns=["line"], empty_string_is_null=False, encoding="utf8",
    )["line"]
    if lines.is_empty():
        return None
    quotes = lines.str.count_matches('"', literal=True)
    inside = ((quotes.cum_sum() - quotes) % 2) == 1  # the line starts inside a quoted field
    commas = lines.str.count_matches(",", literal=True)
    quoted = (quotes > 0) | inside
    if quoted.any():
        opened = pl.DataFrame({"line": lines.filter(quoted), "inside": inside.filter(quoted)}).select(
            pl.when(pl.col("inside")).then(pl.lit('"') + pl.col("line")).otherwise(pl.col("line"))
            .str.replace_all(r'"[^"]*("|$)', "")
            .str.count_matches(",", literal=True)
        ).to_series()
        commas = commas.scatter(quoted.arg_true(), opened)
    frame = pl.DataFrame({"commas": commas, "inside": inside, "blank": (lines == "") & ~inside})
    records = (
        frame.with_row_index("line", offset=1)
        .with_columns((~pl.col("inside")).cum_sum().alias("record"))
        .filter(~pl.col("blank"))
        .group_by("record", maintain_order=True)
        .agg(pl.col("line").first(), (pl.col("commas").sum() + 1).alias("fields"))
    )
    bad = records.slice(1).filter(pl.col("fields") != n_columns)  # the first record is the header
    return None if bad.is_empty() else int(bad["line"][0])


def _locate_csv_problem(path: Path, object_name: str, id_field: str | None) -> str | None:
    """A message naming the first record of a CSV file that cannot be read: its line, its Id
    (when the Id column is readable) and the field; None when Python's csv reader finds every
    record whole and UTF-8. Only run when a faster check failed, so a plain Python pass over the
    file is affordable."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    text = text.removeprefix("\ufeff")
    reader = csv.reader(text.splitlines(keepends=True))
    header: list[str] | None = None
    line_before = 0
    try:
        for values in reader:
            line = line_before + 1  # the physical line the record starts on
            line_before = reader.line_num
            if header is None:
                header = values
                undecodable = _undecodable_field(values)
                if undecodable is not None:
                    return (
                        f"{object_name}: {path} is not UTF-8: the header (line 1) has bytes "
                        f"{_bytes_shown(values[undecodable])}; save the file as UTF-8"
                    )
                continue
            if not values or values == [""]:
                continue
            record = _record_label(header, values, id_field)
            undecodable = _undecodable_field(values)
            if undecodable is not None:
                field = header[undecodable] if undecodable < len(header) else f"field {undecodable + 1}"
                return (
                    f"{object_name}.{field}: {path} is not UTF-8: line {line}{record} holds bytes "
                    f"{_bytes_shown(values[undecodable])} that are not UTF-8 text; save the file as "
                    "UTF-8 (most spreadsheet programs offer 'CSV UTF-8')"
                )
            if len(values) != len(header):
                more = "more" if len(values) > len(header) else "fewer"
                cause = (
                    "a quote opened in this record is not closed where it should be"
                    if any("\n" in v for v in values)
                    else "a value with an unquoted comma, a missing value or a line cut short"
                )
                return (
                    f"{object_name}: {path} line {line}{record} has {len(values)} fields, {more} than "
                    f"the {len(header)} columns of the header ({', '.join(header)}): {cause}; every "
                    "value after it would land in the wrong column, so the file is not read"
                )
    except csv.Error as exc:
        return f"{object_name}: {path} line {line_before + 1} is not valid CSV ({exc})"
    return None


def _undecodable_field(values: list[str]) -> int | None:
    """The index of the first value holding bytes that were not UTF-8 (decoded as surrogates)."""
    for i, value in enumerate(values):
        if any("\udc80" <= ch <= "\udcff" for ch in value):
            return i
    return None


def _bytes_shown(value: str) -> str:
    """The bad bytes of a value as \\xNN escapes (at most four), e.g. ``b'\\xe9'``."""
    bad = bytes(ord(ch) - 0xDC00 for ch in value if "\udc80" <= ch <= "\udcff")
    return repr(bad[:4]) + (" ..." if len(bad) > 4 else "")


def _record_label(header: list[str], values: list[str], id_field: str | None) -> str:
    """`` (Id=006...)`` when the record's Id column can be read, else nothing."""
    if id_field and id_field in header:
        i = header.index(id_field)
        if i < len(values) and _shown(values[i]) and _undecodable_field([values[i]]) is None:
            return f" ({id_field}={_shown(values[i])})"
    for key in ("OpportunityId", "QuotaOwnerId", "IsoCode"):
        if key in header:
            i = header.index(key)
            if i < len(values) and _shown(values[i]) and _undecodable_field([values[i]]) is None:
                return f" ({key}={_shown(values[i])})"
    return ""


def _shown(value: str) -> str:
    """A value as a message quotes it: its first line, trimmed, at most 40 characters."""
    text = value.strip().splitlines()[0].strip() if value.strip() else ""
    return text if len(text) <= 40 else text[:40] + "..."
