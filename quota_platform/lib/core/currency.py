"""Currency conversion at dated rates (docs/contract.md, Rules: "Currency").

A rate row says: from StartDate (inclusive) to NextStartDate (exclusive), one unit of the corporate
currency is worth ConversionRate units of IsoCode, so ``usd = amount / ConversionRate``. The
corporate currency converts at 1 whether or not the org lists it.
"""

from __future__ import annotations

import polars as pl

from quota_platform.lib.core import quarantine
from quota_platform.lib.core.contract import ContractError

RATE_COL = "conversion_rate"


def attach_rates(
    frame: pl.DataFrame,
    rates: pl.DataFrame,
    *,
    date_col: str,
    currency_col: str,
    corporate_currency: str,
) -> pl.DataFrame:
    """Add ``conversion_rate``: the rate of the row's currency in force on ``date_col``; null when
    the org has no rate for that currency on that date (the caller quarantines those rows).
    A null currency is the corporate currency (single-currency orgs have no CurrencyIsoCode)."""
    frame = frame.with_columns(
        pl.col(currency_col).fill_null(corporate_currency).str.to_uppercase().alias(currency_col)
    ).with_row_index("_rate_row")
    table = (
        rates.select(
            pl.col("IsoCode").str.to_uppercase().alias("_iso"),
            pl.col("StartDate").alias("_start"),
            pl.col("NextStartDate").alias("_next"),
            pl.col("ConversionRate").alias("_rate"),
        )
        .filter(pl.col("_iso") != corporate_currency)
        .sort("_iso", "_start")
    )
    keyed = frame.select("_rate_row", pl.col(currency_col).alias("_iso"), pl.col(date_col).alias("_d"))
    matched = (
        keyed.filter(pl.col("_d").is_not_null())
        .sort("_iso", "_d")
        .join_asof(table, left_on="_d", right_on="_start", by="_iso", strategy="backward", check_sortedness=False)
        .filter(pl.col("_next").is_null() | (pl.col("_d") < pl.col("_next")))
        .select("_rate_row", "_rate")
    )
    out = frame.join(matched, on="_rate_row", how="left").with_columns(
        pl.when(pl.col(currency_col) == corporate_currency)
        .then(pl.lit(1.0))
        .otherwise(pl.col("_rate"))
        .alias(RATE_COL)
    )
    return out.sort("_rate_row").drop("_rate_row", "_rate")


def missing_rate_problem(currency_col: str, date_col: str, known: list[str]) -> pl.Expr:
    """The quarantine message for a row without a rate: an unknown currency, or no rate that date
    (or no date to look the rate up on)."""
    return (
        pl.when(pl.col(currency_col).is_in(known))
        .then(
            pl.format(
                "no DatedConversionRate for {} in force on {}",
                pl.col(currency_col),
                quarantine.shown(pl.col(date_col), f"(empty {date_col})"),
            )
        )
        .otherwise(
            pl.format(
                "unknown currency {}: no DatedConversionRate rows", quarantine.shown(pl.col(currency_col))
            )
        )
    )


def validate_rates(rates: pl.DataFrame) -> None:
    """A rate of zero or below would divide by zero or flip signs: stop with the row named."""
    bad = rates.filter(pl.col("ConversionRate").is_null() | (pl.col("ConversionRate") <= 0))
    if not bad.is_empty():
        row = bad.row(0, named=True)
        raise ContractError(
            f"DatedConversionRate.ConversionRate: {bad.height} rate(s) are empty, zero or negative "
            f"(e.g. IsoCode={row['IsoCode']} StartDate={row['StartDate']} "
            f"ConversionRate={row['ConversionRate']})"
        )
