"""The input half of the data contract (docs/contract.md, Inputs: "Objects and fields" and
"Typing"): which Salesforce objects are read, which of their fields, and the type each field is
conformed to.

Both sources (files and Salesforce) hand their raw columns to :func:`conform`, so every asset
downstream sees the same frame whatever the source: Salesforce API field names as column names,
dates as ``pl.Date``, datetimes as UTC ``pl.Datetime``, booleans as ``pl.Boolean``, amounts as
``pl.Float64`` and Ids as strings.

Bad input raises :class:`ContractError` with the object, the record Id and the field in the message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import polars as pl

# Field kinds. Each maps to one polars dtype.
ID = "id"
STR = "str"
BOOL = "bool"
FLOAT = "float"
DATE = "date"
DATETIME = "datetime"

DTYPES: dict[str, pl.DataType] = {
    ID: pl.String(),
    STR: pl.String(),
    BOOL: pl.Boolean(),
    FLOAT: pl.Float64(),
    DATE: pl.Date(),
    DATETIME: pl.Datetime("us", "UTC"),
}


class ContractError(ValueError):
    """Input that breaks the data contract. The message names the object, the record Id and the
    field, so that a RevOps admin can find and fix the record in Salesforce."""


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool = True
    default: object = None  # value used when an optional column is absent


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    name: str
    required: bool
    fields: tuple[Field, ...]
    id_field: str | None = "Id"  # the field that must be unique, if any

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def dtype_schema(self) -> dict[str, pl.DataType]:
        return {f.name: DTYPES[f.kind] for f in self.fields}


def _f(name: str, kind: str, required: bool = True, default: object = None) -> Field:
    return Field(name, kind, required, default)


# Optional fields are ones a real org may legitimately lack: custom fields, multi-currency fields
# (single-currency orgs have no CurrencyIsoCode), and fields this platform only reports on.
OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in [
        ObjectSpec(
            "User",
            True,
            (
                _f("Id", ID),
                _f("Name", STR),
                _f("Email", STR, False),
                _f("ManagerId", ID),
                _f("IsActive", BOOL, False, True),
                _f("Hire_Date__c", DATE, False),
            ),
        ),
        ObjectSpec("ForecastingType", True, (_f("Id", ID), _f("DeveloperName", STR))),
        ObjectSpec(
            "ForecastingQuota",
            True,
            (
                _f("Id", ID),
                _f("QuotaOwnerId", ID),
                _f("ForecastingTypeId", ID),
                _f("StartDate", DATE),
                _f("QuotaAmount", FLOAT),
                _f("CurrencyIsoCode", STR, False),
                _f("PeriodId", ID, False),
                _f("ProductFamily", STR, False),
                _f("Ramp_Adjusted__c", BOOL, False, False),
            ),
        ),
        ObjectSpec(
            "Period",
            False,
            (_f("Id", ID), _f("Type", STR), _f("StartDate", DATE), _f("EndDate", DATE)),
        ),
        ObjectSpec(
            "ForecastingQuotaHistory",
            False,
            (
                _f("QuotaOwnerId", ID),
                _f("ForecastingTypeId", ID),
                _f("StartDate", DATE),
                _f("ProductFamily", STR, False),
                _f("QuotaAmount", FLOAT),
                _f("CurrencyIsoCode", STR, False),
                _f("EffectiveDate", DATE),
            ),
            id_field=None,
        ),
        ObjectSpec(
            "Opportunity",
            True,
            (
                _f("Id", ID),
                _f("Name", STR, False),
                _f("AccountId", ID, False),
                _f("OwnerId", ID),
                _f("Type", STR),
                _f("StageName", STR),
                _f("Amount", FLOAT),
                _f("CurrencyIsoCode", STR, False),
                _f("Probability", FLOAT, False),
                _f("CloseDate", DATE),
                _f("CreatedDate", DATETIME),
                _f("IsClosed", BOOL),
                _f("IsWon", BOOL),
                _f("ForecastCategoryName", STR, False),
                _f("IsDeleted", BOOL, False, False),
            ),
        ),
        ObjectSpec(
            "OpportunityHistory",
            False,
            (
                _f("OpportunityId", ID),
                _f("CreatedDate", DATETIME),
                _f("StageName", STR),
                _f("Amount", FLOAT),
                _f("CloseDate", DATE),
                _f("Probability", FLOAT, False),
                _f("ForecastCategory", STR, False),
            ),
            id_field=None,
        ),
        ObjectSpec(
            "OpportunityStage",
            False,
            (
                _f("ApiName", STR),
                _f("SortOrder", FLOAT, False),
                _f("DefaultProbability", FLOAT, False),
                _f("IsClosed", BOOL),
                _f("IsWon", BOOL),
            ),
            id_field="ApiName",
        ),
        ObjectSpec(
            "OpportunitySplitType",
            False,
            (_f("Id", ID), _f("DeveloperName", STR), _f("IsTotalValidated", BOOL)),
        ),
        ObjectSpec(
            "OpportunitySplit",
            False,
            (
                _f("OpportunityId", ID),
                _f("SplitOwnerId", ID),
                _f("SplitPercentage", FLOAT),
                _f("SplitTypeId", ID),
            ),
            id_field=None,
        ),
        ObjectSpec("Product2", False, (_f("Id", ID), _f("Family", STR)), id_field="Id"),
        ObjectSpec(
            "OpportunityLineItem",
            False,
            (_f("OpportunityId", ID), _f("Product2Id", ID), _f("TotalPrice", FLOAT)),
            id_field=None,
        ),
        ObjectSpec(
            "DatedConversionRate",
            False,
            (
                _f("IsoCode", STR),
                _f("ConversionRate", FLOAT),
                _f("StartDate", DATE),
                _f("NextStartDate", DATE),
            ),
            id_field=None,
        ),
    ]
}

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}

# A number as the contract writes it: plain decimals, an optional sign and exponent, and commas
# only as thousands separators in groups of three ("1,500.25"). "1,5" (a decimal comma, or a
# typo) is not a number here: stripping the comma would make it 15. NaN and infinity are not
# numbers either, whatever the source (an amount of NaN passes every ">= 0" guard downstream).
_NUMBER = r"^[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"
# A date field holds YYYY-MM-DD, or a date-time whose date part is kept (some exports write date
# fields that way); anything after the date that is not a time of day ("2025-03-31junk") is bad.
_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
# How a message names what a field of each kind must hold.
_KIND_TEXT = {
    BOOL: "true/false value",
    FLOAT: "finite number (digits, optional sign, decimal point and exponent; commas only between "
    "groups of three digits)",
    DATE: "date (YYYY-MM-DD)",
    DATETIME: "date-time (ISO 8601)",
}

# Salesforce writes datetimes as 2024-01-15T10:30:00.000+0000; files may use Z, +00:00, a space
# instead of T, or no offset (then UTC, the contract's time zone).
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%z",
)
_NAIVE_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)


def _parse_expr(col: str, kind: str) -> pl.Expr:
    """An expression turning a string column into the field's type; unparseable values become null
    (they are found and reported by :func:`_report_unparsed`)."""
    s = pl.col(col).cast(pl.String).str.strip_chars()
    s = pl.when(s == "").then(None).otherwise(s)
    if kind in (ID, STR):
        return s
    if kind == BOOL:
        low = s.str.to_lowercase()
        return (
            pl.when(low.is_in(list(_TRUE)))
            .then(True)
            .when(low.is_in(list(_FALSE)))
            .then(False)
            .otherwise(None)
        )
    if kind == FLOAT:
        return pl.when(s.str.contains(_NUMBER)).then(s.str.replace_all(",", "").cast(pl.Float64, strict=False))
    if kind == DATE:
        # A date field may arrive as a datetime string (some exports do that); keep the date part.
        return pl.when(s.str.contains(_DATE)).then(s.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False))
    if kind == DATETIME:
        normalised = s.str.replace(r"Z$", "+0000").str.replace(r"([+-]\d\d):(\d\d)$", "$1$2")
        candidates = [
            normalised.str.to_datetime(fmt, strict=False, time_unit="us").dt.convert_time_zone(
                "UTC"
            )
            for fmt in _DATETIME_FORMATS
        ]
        candidates += [
            normalised.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone(
                "UTC"
            )
            for fmt in _NAIVE_DATETIME_FORMATS
        ]
        # A bare date in a datetime field means the start of that day, UTC.
        candidates.append(
            normalised.str.to_date("%Y-%m-%d", strict=False)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
        return pl.coalesce(candidates)
    raise ValueError(f"unknown field kind {kind!r}")


def _convert_typed(col: str, kind: str, dtype: pl.DataType) -> pl.Expr:
    """An expression converting an already-typed column (Parquet, or JSON from Salesforce)."""
    target = DTYPES[kind]
    if dtype == target:
        return pl.col(col)
    if kind == DATETIME and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return pl.col(col).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return pl.col(col).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if kind == DATE and isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date()
    if kind == DATETIME and dtype == pl.Date:
        return pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype == pl.Null:
        return pl.col(col).cast(target)
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return _parse_expr(col, kind)
    if kind in (ID, STR):
        return pl.col(col).cast(pl.String)
    return pl.col(col).cast(target, strict=False)


def _record_ids(df: pl.DataFrame, spec: ObjectSpec, mask: pl.Series, limit: int = 5) -> str:
    key = spec.id_field if spec.id_field and spec.id_field in df.columns else None
    if key is None:
        for candidate in ("OpportunityId", "QuotaOwnerId", "IsoCode"):
            if candidate in df.columns:
                key = candidate
                break
    rows = df.with_row_index("_row").filter(mask)
    if key is None:
        labels = [f"row {r + 2}" for r in rows["_row"].head(limit).to_list()]
    else:
        labels = [
            f"{key}={v}" if v is not None else f"row {r + 2}"
            for v, r in zip(rows[key].head(limit).to_list(), rows["_row"].head(limit).to_list())
        ]
    more = f" and {rows.height - limit} more" if rows.height > limit else ""
    return ", ".join(labels) + more


def conform(
    object_name: str,
    raw: pl.DataFrame,
    *,
    where: str | None = None,
    renames: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Check and type one object's frame against the contract.

    ``where`` names the file or endpoint the frame came from, for error messages. ``renames`` maps a
    configured source field name to the contract's name (e.g. a hire date field called
    ``Start_Date__c`` in the org becomes ``Hire_Date__c``).

    Returns a frame with exactly the contract's fields, in contract order, typed. Raises
    :class:`ContractError` for a missing required column, an unparseable value, a null in a required
    Id, or a duplicate Id.
    """
    spec = OBJECTS[object_name]
    where = where or object_name
    if renames:
        present = {k: v for k, v in renames.items() if k in raw.columns and k != v}
        if present:
            raw = raw.drop([v for v in present.values() if v in raw.columns]).rename(present)
    missing = [f for f in spec.required_fields if f not in raw.columns]
    if missing:
        raise ContractError(
            f"{object_name}: required column(s) {', '.join(missing)} missing from {where} "
            f"(columns present: {', '.join(raw.columns) or 'none'})"
        )
    exprs = []
    for field in spec.fields:
        target = DTYPES[field.kind]
        if field.name not in raw.columns:
            exprs.append(pl.lit(field.default, dtype=target).alias(field.name))
        else:
            dtype = raw.schema[field.name]
            typed_expr = _convert_typed(field.name, field.kind, dtype).cast(target)
            if field.kind == FLOAT:
                # NaN and infinity (a Parquet float column can hold them) are not amounts: null
                # here, so that _report_unparsed names them.
                typed_expr = pl.when(typed_expr.is_finite()).then(typed_expr)
            exprs.append(typed_expr.alias(field.name))
    typed = raw.select(exprs)
    # Before defaults fill empty values: a value that did not parse must be reported, not turned
    # into the default (junk in IsDeleted used to read as false, counting a deleted deal).
    _report_unparsed(object_name, where, spec, raw, typed)
    if field_default_cols := [f for f in spec.fields if f.default is not None and f.name in raw.columns]:
        typed = typed.with_columns(
            [pl.col(f.name).fill_null(pl.lit(f.default, dtype=DTYPES[f.kind])) for f in field_default_cols]
        )
    if spec.id_field:
        nulls = typed[spec.id_field].is_null()
        if nulls.any():
            raise ContractError(
                f"{object_name}: {nulls.sum()} record(s) in {where} have an empty {spec.id_field} "
                f"({_record_ids(typed, spec, nulls)})"
            )
        dup = typed[spec.id_field].is_duplicated()
        if dup.any():
            ids = sorted(set(typed.filter(dup)[spec.id_field].to_list()))
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            raise ContractError(
                f"{object_name}: duplicate {spec.id_field} in {where}: {shown} "
                f"(each record must appear once)"
            )
    return typed


def _report_unparsed(
    object_name: str, where: str, spec: ObjectSpec, raw: pl.DataFrame, typed: pl.DataFrame
) -> None:
    """A value present in the source but null after typing did not parse: name it."""
    for field in spec.fields:
        if field.name not in raw.columns or field.kind in (ID, STR):
            continue
        source = raw[field.name]
        if source.dtype == pl.String:
            present = source.str.strip_chars().fill_null("") != ""
        else:
            present = source.is_not_null()
        bad = present & typed[field.name].is_null()
        if bad.any():
            example = source.filter(bad)[0]
            raise ContractError(
                f"{object_name}.{field.name}: {bad.sum()} value(s) in {where} are not a valid "
                f"{_KIND_TEXT[field.kind]} (e.g. {example!r}) at {_record_ids(typed, spec, bad)}"
            )


def empty_frame(object_name: str) -> pl.DataFrame:
    """An empty, typed frame for an optional object the org does not have."""
    return pl.DataFrame(schema=OBJECTS[object_name].dtype_schema())
