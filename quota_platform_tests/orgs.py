"""Hand-made Salesforce-shaped orgs for end-to-end tests.

A test lists its records as plain dicts (or with the small row builders below) and
:func:`write_org` writes them as ``<Object>.csv`` files with the contract's columns
(docs/contract.md, Inputs: "Objects and fields"), so that every number a test asserts can be traced
to a record visible in the test.
:func:`platform_env` and :func:`run_refresh` run ``quota-platform refresh`` in process against such
a folder, and :func:`query` reads the warehouse back.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

# The fields of each object, as docs/contract.md (Inputs: "Objects and fields") lists them. A file gets these columns (plus
# any extra keys its rows carry), blank where a row gives no value.
CONTRACT_COLUMNS: dict[str, list[str]] = {
    "User": ["Id", "Name", "Email", "ManagerId", "IsActive", "Hire_Date__c"],
    "ForecastingType": ["Id", "DeveloperName"],
    "ForecastingQuota": [
        "Id", "QuotaOwnerId", "ForecastingTypeId", "StartDate", "QuotaAmount", "CurrencyIsoCode",
        "PeriodId", "ProductFamily", "Ramp_Adjusted__c",
    ],
    "Period": ["Id", "Type", "StartDate", "EndDate"],
    "ForecastingQuotaHistory": [
        "QuotaOwnerId", "ForecastingTypeId", "StartDate", "ProductFamily", "QuotaAmount",
        "CurrencyIsoCode", "EffectiveDate",
    ],
    "Opportunity": [
        "Id", "Name", "AccountId", "OwnerId", "Type", "StageName", "Amount", "CurrencyIsoCode",
        "Probability", "CloseDate", "CreatedDate", "IsClosed", "IsWon", "ForecastCategoryName",
        "IsDeleted",
    ],
    "OpportunityHistory": [
        "OpportunityId", "CreatedDate", "StageName", "Amount", "CloseDate", "Probability",
        "ForecastCategory",
    ],
    "OpportunityStage": ["ApiName", "SortOrder", "DefaultProbability", "IsClosed", "IsWon"],
    "OpportunitySplitType": ["Id", "DeveloperName", "IsTotalValidated"],
    "OpportunitySplit": ["OpportunityId", "SplitOwnerId", "SplitPercentage", "SplitTypeId"],
    "Product2": ["Id", "Family"],
    "OpportunityLineItem": ["OpportunityId", "Product2Id", "TotalPrice"],
    "DatedConversionRate": ["IsoCode", "ConversionRate", "StartDate", "NextStartDate"],
}

# Stage name -> (IsClosed, IsWon, Probability, ForecastCategoryName) for the row builders.
STAGES = {
    "Prospecting": (False, False, 10, "Pipeline"),
    "Negotiation": (False, False, 60, "Best Case"),
    "Closed Won": (True, True, 100, "Closed"),
    "Closed Lost": (True, False, 0, "Omitted"),
}

STANDARD_STAGES = [
    {"ApiName": "Prospecting", "SortOrder": 1, "DefaultProbability": 10, "IsClosed": False, "IsWon": False},
    {"ApiName": "Negotiation", "SortOrder": 2, "DefaultProbability": 60, "IsClosed": False, "IsWon": False},
    {"ApiName": "Closed Won", "SortOrder": 3, "DefaultProbability": 100, "IsClosed": True, "IsWon": True},
    {"ApiName": "Closed Lost", "SortOrder": 4, "DefaultProbability": 0, "IsClosed": True, "IsWon": False},
]


def _text(value: object) -> str:
    """A value as Salesforce exports it: booleans true/false, dates YYYY-MM-DD, datetimes
    2025-01-15T10:30:00.000+0000 (UTC), None blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc) if value.tzinfo else value
        return value.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_object(folder: Path, name: str, rows: Iterable[Mapping[str, object]], *,
                 columns: list[str] | None = None) -> Path:
    """Write one object's rows to ``folder/<name>.csv``. ``columns`` defaults to the contract's
    columns of the object followed by any extra keys the rows carry."""
    rows = list(rows)
    if columns is None:
        columns = list(CONTRACT_COLUMNS.get(name, []))
        for row in rows:
            columns += [k for k in row if k not in columns]
    path = folder / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            unknown = set(row) - set(columns)
            if unknown:
                raise ValueError(f"{name}: row has keys not among the columns: {sorted(unknown)}")
            writer.writerow([_text(row.get(c)) for c in columns])
    return path


def write_org(folder: Path, *, drop_columns: Mapping[str, Iterable[str]] | None = None,
              only_given_columns: bool = False, **objects: Iterable[Mapping[str, object]]) -> Path:
    """Write an org: one keyword per object (``User=[...]``, ``Opportunity=[...]``...). An object
    not passed has no file. ``drop_columns`` removes columns from a file (to test a missing
    column); ``only_given_columns`` writes just the keys the rows use (an org lacking the optional
    fields)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    drop = {k: set(v) for k, v in (drop_columns or {}).items()}
    for name, rows in objects.items():
        rows = list(rows)
        if only_given_columns:
            columns: list[str] = []
            for row in rows:
                columns += [k for k in row if k not in columns]
        else:
            columns = list(CONTRACT_COLUMNS.get(name, []))
            for row in rows:
                columns += [k for k in row if k not in columns]
        if name in drop:
            columns = [c for c in columns if c not in drop[name]]
            rows = [{k: v for k, v in r.items() if k not in drop[name]} for r in rows]
        write_object(folder, name, rows, columns=columns)
    return folder


# Row builders: one line per record in a test, the contract's columns filled consistently.

def user(id: str, name: str, manager: str | None = None, hire_date: str | None = None,
         active: bool = True) -> dict:
    return {
        "Id": id, "Name": name, "Email": f"{id.lower()}@example.com", "ManagerId": manager,
        "IsActive": active, "Hire_Date__c": hire_date,
    }


def quota(id: str, owner: str, forecasting_type: str, start: str, amount: object,
          currency: str = "USD", period: str | None = None, family: str | None = None,
          ramp_adjusted: bool = False) -> dict:
    return {
        "Id": id, "QuotaOwnerId": owner, "ForecastingTypeId": forecasting_type, "StartDate": start,
        "QuotaAmount": amount, "CurrencyIsoCode": currency, "PeriodId": period,
        "ProductFamily": family, "Ramp_Adjusted__c": ramp_adjusted,
    }


def opportunity(id: str, owner: str, type: str | None, stage: str, amount: object,
                close: str, created: str, currency: str = "USD", deleted: bool = False) -> dict:
    """An opportunity with its current values; IsClosed, IsWon, Probability and forecast category
    follow from the stage (see STAGES)."""
    is_closed, is_won, probability, category = STAGES[stage]
    return {
        "Id": id, "Name": f"Deal {id}", "AccountId": "001" + id[3:], "OwnerId": owner,
        "Type": type, "StageName": stage, "Amount": amount, "CurrencyIsoCode": currency,
        "Probability": probability, "CloseDate": close, "CreatedDate": created,
        "IsClosed": is_closed, "IsWon": is_won, "ForecastCategoryName": category,
        "IsDeleted": deleted,
    }


def history(opportunity_id: str, created: str, stage: str, amount: object, close: str) -> dict:
    """One OpportunityHistory row: the opportunity's stage, amount and close date from ``created``
    (a UTC datetime) on."""
    _, _, probability, category = STAGES[stage]
    return {
        "OpportunityId": opportunity_id, "CreatedDate": created, "StageName": stage,
        "Amount": amount, "CloseDate": close, "Probability": probability,
        "ForecastCategory": category,
    }


# Running the platform.

_CLEARED_PREFIXES = ("QUOTA_PLATFORM_", "SALESFORCE_", "SNOWFLAKE_", "SLACK_")


def platform_env(mp: pytest.MonkeyPatch, source_dir: Path, work_dir: Path,
                 start_date: str = "2024-10-01") -> Path:
    """Point the platform at ``source_dir`` (files source) and a fresh DuckDB file and Dagster home
    under ``work_dir``, with every other setting at its default. Returns the DuckDB path."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            mp.delenv(name, raising=False)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "warehouse.duckdb"
    home = work_dir / "dagster_home"
    home.mkdir(exist_ok=True)
    mp.setenv("QUOTA_PLATFORM_SOURCE_DIR", str(source_dir))
    mp.setenv("QUOTA_PLATFORM_DUCKDB", str(db))
    mp.setenv("QUOTA_PLATFORM_START_DATE", start_date)
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("QUOTA_PLATFORM_HOME", str(work_dir / "platform_home"))
    return db


def run_refresh(as_of: str) -> tuple[int, str, str]:
    """``quota-platform refresh --as-of <as_of>`` in process: (exit code, stdout, stderr)."""
    from quota_platform.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["refresh", "--as-of", as_of])
    return rc, out.getvalue(), err.getvalue()


def query(db: Path | duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """Rows of ``sql`` as dicts, from a warehouse file or an open connection."""
    con = duckdb.connect(str(db), read_only=True) if isinstance(db, (str, Path)) else db
    try:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        if isinstance(db, (str, Path)):
            con.close()
