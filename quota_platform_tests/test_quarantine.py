"""The one quarantine helper (lib/core/quarantine.py): the row shape with its partition column, and a
problem that is never empty, also when the value a message names is null.

A null problem used to fail the quarantine table's blocking schema check and stop the run, so the
cases here are the ones whose messages were built from a null value."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from quota_platform.lib.attainment.quotas import build_quota_snapshots
from quota_platform.lib.core import quarantine
from quota_platform.lib.core.contract import conform, empty_frame
from quota_platform.lib.core.currency import missing_rate_problem
from quota_platform.lib.core.rules import Rules

D1, D2 = date(2025, 3, 30), date(2025, 3, 31)


def test_rows_keep_the_partition_column_first_and_the_record_id_as_text():
    frame = pl.DataFrame({"as_of_date": [D1, D2], "n": [7, 8], "Amount": [-1.0, -2.0]})
    got = quarantine.rows(
        frame,
        object="Opportunity",
        id_col="n",
        field="Amount",
        problem=pl.format("amount {}", pl.col("Amount")),
        partition="as_of_date",
    )
    assert got.schema == pl.Schema(
        {"as_of_date": pl.Date, "object": pl.String, "record_id": pl.String, "field": pl.String, "problem": pl.String}
    )
    assert got.rows() == [
        (D1, "Opportunity", "7", "Amount", "amount -1.0"),
        (D2, "Opportunity", "8", "Amount", "amount -2.0"),
    ]


def test_rows_without_a_partition_have_the_four_columns_only():
    got = quarantine.rows(
        pl.DataFrame({"Id": ["Q1"]}), object="ForecastingQuota", id_col="Id", field="Id", problem=pl.lit("dup")
    )
    assert got.columns == list(quarantine.COLUMNS)
    assert got.rows() == [("ForecastingQuota", "Q1", "Id", "dup")]


def test_a_null_or_blank_message_is_replaced_by_one_naming_the_field():
    frame = pl.DataFrame({"as_of_date": [D1, D1, D1], "Id": ["a", "b", "c"], "v": [None, "x", "  "]})
    got = quarantine.rows(
        frame,
        object="Opportunity",
        id_col="Id",
        field="Type",
        # null for a (pl.format of a null), the value itself for b, blank for c
        problem=pl.format("{}", pl.col("v")),
        partition="as_of_date",
    )
    fallback = "Opportunity.Type breaks a rule checked here (a value the message names is empty)"
    assert got["problem"].to_list() == [fallback, "x", fallback]


def test_shown_renders_a_null_value_inside_a_message():
    frame = pl.DataFrame({"v": ["EUR", None]})
    got = frame.select(pl.format("currency {}", quarantine.shown(pl.col("v"))).alias("m"))["m"].to_list()
    assert got == ["currency EUR", "currency (empty)"]


def test_empty_input_gives_the_empty_shape_with_its_partition():
    got = quarantine.rows(
        pl.DataFrame(schema={"as_of_date": pl.Date, "Id": pl.String}),
        object="Opportunity",
        id_col="Id",
        field="Amount",
        problem=pl.lit("never"),
        partition="as_of_date",
    )
    assert got.is_empty()
    assert got.schema == pl.Schema(quarantine.schema("as_of_date"))
    assert quarantine.concat([got, quarantine.empty("as_of_date")], partition="as_of_date").schema == got.schema
    assert quarantine.concat([]).schema == pl.Schema(quarantine.SCHEMA)


def test_concat_keeps_the_order_of_its_parts_and_skips_empty_ones():
    a = quarantine.rows(pl.DataFrame({"Id": ["1"]}), object="O", id_col="Id", field="F", problem=pl.lit("first"))
    b = quarantine.rows(pl.DataFrame({"Id": ["2"]}), object="O", id_col="Id", field="F", problem=pl.lit("second"))
    got = quarantine.concat([a, quarantine.empty(), b])
    assert got["problem"].to_list() == ["first", "second"]


def test_in_each_partition_repeats_the_rows_under_each_value_in_order():
    bad = quarantine.rows(
        pl.DataFrame({"Id": ["Q1", "Q2"]}), object="ForecastingQuota", id_col="Id", field="Id", problem=pl.lit("p")
    )
    months = [date(2025, 2, 1), date(2025, 1, 1)]
    got = quarantine.in_each_partition(bad, "snapshot_month", months)
    assert got.columns == ["snapshot_month", *quarantine.COLUMNS]
    assert got.select("snapshot_month", "record_id").rows() == [
        (date(2025, 2, 1), "Q1"),
        (date(2025, 2, 1), "Q2"),
        (date(2025, 1, 1), "Q1"),
        (date(2025, 1, 1), "Q2"),
    ]
    assert quarantine.in_each_partition(quarantine.empty(), "snapshot_month", months).is_empty()


def test_missing_rate_message_names_an_empty_date():
    frame = pl.DataFrame({"CurrencyIsoCode": ["EUR", "JPY"], "CloseDate": [None, D1]}, schema={"CurrencyIsoCode": pl.String, "CloseDate": pl.Date})
    got = frame.select(missing_rate_problem("CurrencyIsoCode", "CloseDate", ["EUR", "USD"]).alias("m"))["m"].to_list()
    assert got == [
        "no DatedConversionRate for EUR in force on (empty CloseDate)",
        "unknown currency JPY: no DatedConversionRate rows",
    ]


def _frame(obj: str, rows: list[dict]) -> pl.DataFrame:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return conform(obj, pl.DataFrame(rows, schema={k: pl.String for k in columns}))


def test_quota_messages_built_from_null_values_are_not_null():
    """Three quotas whose messages name a null: a Period with no Type, an empty owner, and no
    StartDate with no Period. Each is quarantined once per snapshot month with a real message."""
    users = _frame("User", [{"Id": "R1", "Name": "Ar", "ManagerId": None}])
    types = _frame("ForecastingType", [{"Id": "T1", "DeveloperName": "NewBusiness"}])
    periods = _frame("Period", [{"Id": "P1", "Type": None, "StartDate": "2025-01-01", "EndDate": "2025-03-31"}])

    def q(id, owner, start, period):
        return {"Id": id, "QuotaOwnerId": owner, "ForecastingTypeId": "T1", "StartDate": start,
                "QuotaAmount": "1000", "PeriodId": period}

    quotas = _frame("ForecastingQuota", [q("QP", "R1", "2025-01-01", "P1"), q("QO", None, "2025-01-01", None),
                                         q("QS", "R1", None, None)])
    snap, bad = build_quota_snapshots(
        [date(2025, 1, 1), date(2025, 2, 1)],
        users=users,
        forecasting_types=types,
        quotas=quotas,
        periods=periods,
        quota_history=empty_frame("ForecastingQuotaHistory"),
        rates=empty_frame("DatedConversionRate"),
        rules=Rules(),
    )
    assert snap.is_empty()
    expected = [
        ("QO", "QuotaOwnerId", "quota owner (empty) is not a User"),
        ("QP", "PeriodId", "Period P1 has Type (empty); only Month and Quarter periods are supported"),
        ("QS", "PeriodId", "period (none: quarter from StartDate) starting (empty) is not a fiscal quarter "
                           "(check QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH)"),
    ]
    for month in (date(2025, 1, 1), date(2025, 2, 1)):
        rows = bad.filter(pl.col("snapshot_month") == month).select("record_id", "field", "problem").rows()
        assert rows == expected, month


@pytest.mark.parametrize("partition", [None, "as_of_date", "snapshot_month"])
def test_schema_is_the_partition_date_then_the_four_text_columns(partition):
    got = quarantine.schema(partition)
    names = [partition] if partition else []
    assert list(got) == names + list(quarantine.COLUMNS)
    assert all(got[c] == pl.String for c in quarantine.COLUMNS)
    if partition:
        assert got[partition] == pl.Date
