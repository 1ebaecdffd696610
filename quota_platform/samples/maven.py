"""Import the Maven Analytics "CRM Sales Opportunities" sample (public domain; packaged under
``quota_platform/data/maven_crm``) into the data contract's object files, so that the platform can
run on a pipeline that somebody outside this project wrote.

The sample has opportunities, agents, managers and products. It has no quotas, no stage history,
no opportunity types and no currencies, and some values and dates are missing. Anything the importer
has to make up is *derived*. Each derived value is shown in three places: in this docstring, in the
``DERIVED.md`` written next to the object files, and per row in an extra column
``Derived_Fields__c`` on every object file. That column lists the row's derived fields, separated
by ``;``. The platform's loader ignores it, because :func:`quota_platform.lib.core.contract.conform`
keeps only the contract's fields. A record that has no counterpart in the sample (the VP, stages,
history rows, periods, the forecasting type, quotas) lists every field it has.

Decisions
---------

**Ids.** Opportunities keep Maven's ``opportunity_id`` as ``Id``, so any row can be traced back to
the source. Every other Id is a synthetic key, deterministic and Salesforce-shaped: the object's
key prefix (``005`` User, ``001`` Account, ``01t`` Product2, ``0Db`` ForecastingType, ``0J9``
ForecastingQuota, ``026`` Period) followed by the first 15 upper-case hex digits of the SHA-256 of
the record's natural key (a name, or a name and a quarter). The hash comes from hashlib, never from
Python's salted ``hash()``, so the Ids are the same in every run and every process. These keys are
documented here and in ``DERIVED.md``; ``Derived_Fields__c`` does not list them on records that
exist in the sample.

**Users.** One derived VP (``Maven VP``, no manager) is over the 6 managers in
``sales_teams.csv``, and each manager is over their agents (35 in all, including the 5 who own no
opportunity). ``Hire_Date__c`` is empty because no hire date is known, so every rep is tenured and
gets no ramp. ``IsActive`` is true for everybody (an assumption, so it is derived).
``Regional_Office__c`` (extra column) is the agent's office, or for a manager the office of their
team.

**Opportunities.** One per pipeline row, except the Prospecting deals (see below).
- ``OwnerId``: the agent.
- ``Type``: ``New Business`` (derived; the sample has no type).
- ``StageName``: Prospecting -> ``Prospecting``, Engaging -> ``Engaging``, Won -> ``Closed Won``,
  Lost -> ``Closed Lost``. ``IsClosed`` and ``IsWon`` follow from the stage.
- ``Amount``: the ``close_value`` for Won deals. For Lost and open deals it is the product's list
  price from ``products.csv`` (derived), because Lost deals show 0 and open deals are blank. The
  pipeline spells one product ``GTXPro``; it is read as ``GTX Pro``, so it gets that product's
  price and Product2.
- ``CurrencyIsoCode``: ``USD`` (derived; the sample names no currency).
- ``CloseDate``: ``close_date`` for Won and Lost deals. For Engaging deals it is an expected close
  date (derived): ``engage_date`` plus the median number of days from engage to close over all Won
  deals (57 on the packaged copy). That one constant is computed from the whole file, later deals
  included. It is the only place where the import uses data from after a deal's own dates.
- ``CreatedDate``: ``engage_date`` at 00:00:00Z (derived). The real creation date, at Prospecting,
  is earlier and is not in the sample.
- ``Probability`` and ``ForecastCategoryName``: the stage's default (derived; see stages).
- ``Name``: ``<account> - <product>``, with ``(no account)`` when the deal has no account. This is
  a label and not derived. ``AccountId`` is the account's synthetic key, or empty.
- **Prospecting deals are not imported** (500 in the packaged copy). They have no engage date and no
  close date, so there is no date to put them in the pipeline at. Any date chosen would add
  made-up open pipeline to every as-of date before it. They are counted in
  :attr:`ImportSummary.excluded`. Each one is listed, with its reason, in ``_excluded.csv``, and
  each is also counted in ``DERIVED.md``. Any other row that cannot be imported is counted and
  listed the same way and never dropped silently: an owner not in ``sales_teams.csv``, a product
  not in ``products.csv``, a missing ``engage_date``, a closed deal with no ``close_date``, or a
  Won deal with no ``close_value``.

**Stages (OpportunityStage, derived).** Prospecting (sort 1, 10%), Engaging (2, 40%), Closed Won
(3, 100%, closed, won), Closed Lost (4, 0%, closed). The probabilities were chosen for this import
and do not come from the sample. Forecast categories: Pipeline, Pipeline, Closed, Omitted.

**History (OpportunityHistory, derived).** The sample keeps no history, so a two-step history is
derived. Every imported deal gets a row at ``engage_date`` 00:00:00Z with stage Engaging, Amount =
the list price (the value known while the deal is open, so that a Won deal's final value is not
visible before it closes) and CloseDate = the expected close date. Won and Lost deals also get a
row at ``close_date`` 00:00:00Z with the final stage, Amount and close date. Every close date in
the sample is at least one day after the engage date, so the two rows never share a timestamp. The
last history row of every deal equals the Opportunity record.

**Products.** One Product2 per row of ``products.csv``, with ``Family`` = ``series``. Each
opportunity gets one OpportunityLineItem for its product, with ``TotalPrice`` = the opportunity's
Amount. TotalPrice is derived wherever Amount is.

**Quotas (derived; ForecastingType ``NewBusiness``).** Each agent gets one quarterly quota for each
quarter *Q* in the booking window, and a quota uses only bookings from before *Q* starts (no
leakage). The booking window runs from the first to the last ``close_date`` in the sample
(2017-03-01 to 2017-12-31, which is Q1-Q4 2017).
- A quarter's bookings for an agent are the sum of the Amounts of their Won deals that close in it.
  A quarter that the window covers only in part is scaled up to a full quarter: bookings x days in
  the quarter / days covered. Q1 2017 is covered from 1 March only, so its bookings x 90/31.
  Without this, the first quota would reflect one month of selling.
- quota(agent, Q) = ``quota_uplift`` x the mean of the agent's scaled bookings over every window
  quarter that ends before Q, with at least one such quarter. A quarter in which the agent booked
  nothing counts as 0.
- When the agent booked nothing at all in those quarters, the quota is the mean of the same
  averages over their teammates (same manager) who did book. If no teammate booked, it is the mean
  over every agent who booked, company-wide.
- No quota (skipped, and counted with a reason) when no window quarter ends before Q (the first
  quarter, Q1 2017), when the agent owned no imported opportunity created before Q starts (an
  agent with no pipeline carries no quota), or when nobody booked anything before Q.
- Amounts are rounded to cents, in USD, with ``PeriodId`` pointing at a derived ``Quarter`` Period.
  Extra columns record the basis (``Quota_Basis__c``: agent, team or company) and the quarters used
  (``Basis_Quarters__c``).

Period rows (Type ``Quarter``) exist for every quarter of the booking window. A derived quota's
quarter always has one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from quota_platform.lib.core.calendar import add_months
from quota_platform.lib.core.contract import OBJECTS

DERIVED_COL = "Derived_Fields__c"
VP_NAME = "Maven VP"
OPPORTUNITY_TYPE = "New Business"
FORECASTING_TYPE = "NewBusiness"
CURRENCY = "USD"
NO_ACCOUNT = "(no account)"
# The pipeline's spelling -> products.csv's spelling.
PRODUCT_SPELLING = {"GTXPro": "GTX Pro"}


@dataclasses.dataclass(frozen=True)
class _Stage:
    api_name: str
    sort_order: int
    probability: int
    is_closed: bool
    is_won: bool
    forecast_category: str


# Maven deal_stage -> the stage written (its probabilities and categories are derived).
STAGES: dict[str, _Stage] = {
    "Prospecting": _Stage("Prospecting", 1, 10, False, False, "Pipeline"),
    "Engaging": _Stage("Engaging", 2, 40, False, False, "Pipeline"),
    "Won": _Stage("Closed Won", 3, 100, True, True, "Closed"),
    "Lost": _Stage("Closed Lost", 4, 0, True, False, "Omitted"),
}

# Reasons a source record is not imported, or a quota is not derived.
EXCLUDED_PROSPECTING = "Prospecting deal: no engage_date or close_date in the source"
EXCLUDED_UNKNOWN_OWNER = "owner not in sales_teams.csv"
EXCLUDED_UNKNOWN_PRODUCT = "product not in products.csv"
EXCLUDED_NO_ENGAGE = "no engage_date"
EXCLUDED_NO_CLOSE = "Won or Lost deal with no close_date"
EXCLUDED_NO_VALUE = "Won deal with no close_value"
SKIPPED_FIRST_QUARTER = "no earlier quarter with booking data"
SKIPPED_NO_PIPELINE = "agent owned no opportunity created before the quarter"
SKIPPED_NO_BOOKINGS = "nobody booked anything before the quarter"

# Files written besides the objects.
DERIVED_MD = "DERIVED.md"
EXCLUDED_CSV = "_excluded.csv"
OBJECT_FILES = (
    "User", "ForecastingType", "ForecastingQuota", "Period", "Opportunity", "OpportunityHistory",
    "OpportunityStage", "Product2", "OpportunityLineItem",
)


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_maven` wrote, made up and left out."""

    src: Path
    out: Path
    counts: dict[str, int]  # object -> rows written
    excluded: dict[str, int]  # reason -> pipeline rows not imported
    derived_rows: dict[str, int]  # object -> rows with at least one derived field
    derived_fields: dict[str, int]  # "Object.Field" -> rows where that field is derived
    quotas_derived: dict[str, int]  # basis (agent, team, company) -> quotas
    quotas_skipped: dict[str, int]  # reason -> (agent, quarter) pairs without a quota
    spelling_fixes: dict[str, int]  # "GTXPro -> GTX Pro" -> pipeline rows
    source_rows: int  # rows of sales_pipeline.csv
    median_engage_to_close_days: int
    booking_window: tuple[date, date]
    quota_uplift: float

    @property
    def opportunities_imported(self) -> int:
        return self.counts["Opportunity"]

    @property
    def opportunities_excluded(self) -> int:
        return sum(self.excluded.values())

    def lines(self) -> list[str]:
        """The summary as printable lines."""
        out = [
            f"Maven CRM sample {self.src} -> {self.out}",
            f"  pipeline rows: {self.source_rows:,}; opportunities imported: "
            f"{self.opportunities_imported:,}; excluded: {self.opportunities_excluded:,}",
        ]
        out += [f"    excluded, {reason}: {n:,}" for reason, n in self.excluded.items()]
        out.append("  rows per object: " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items()))
        out.append(
            "  rows with derived fields: "
            + ", ".join(f"{k} {v:,}" for k, v in self.derived_rows.items())
        )
        out.append(
            f"  quotas derived: {sum(self.quotas_derived.values()):,} ("
            + ", ".join(f"{k} basis {v:,}" for k, v in self.quotas_derived.items())
            + f"); skipped: {sum(self.quotas_skipped.values()):,}"
        )
        out += [f"    skipped, {reason}: {n:,}" for reason, n in self.quotas_skipped.items()]
        out += [f"  spelling fixed, {k}: {v:,} rows" for k, v in self.spelling_fixes.items()]
        out.append(
            f"  booking window {self.booking_window[0]} .. {self.booking_window[1]}; median "
            f"engage-to-close of Won deals {self.median_engage_to_close_days} days; quota uplift "
            f"{self.quota_uplift:g}"
        )
        out.append(f"  derived values are listed in {self.out / DERIVED_MD} and per row in {DERIVED_COL}")
        return out


# --- helpers ----------------------------------------------------------------------------------


def sf_id(prefix: str, *key: str) -> str:
    """A deterministic Salesforce-shaped Id: the 3-character key prefix and 15 hex digits of the
    SHA-256 of the natural key (the same in every process, unlike ``hash()``)."""
    text = "\x1f".join(("maven_crm", prefix, *key))
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15].upper()


def _quarter_start(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def _quarter_end(start: date) -> date:
    return add_months(start, 3) - timedelta(days=1)


def _quarter_label(start: date) -> str:
    return f"{start.year}Q{(start.month - 1) // 3 + 1}"


def _money(x: float) -> str:
    return f"{x:.2f}"


def _bool(x: bool) -> str:
    return "true" if x else "false"


def _midnight(d: date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


def _derived(*fields: str) -> str:
    return ";".join(fields)


def _read(src: Path, name: str, columns: list[str]) -> list[dict[str, str | None]]:
    path = src / name
    if not path.is_file():
        raise FileNotFoundError(f"Maven CRM sample: {path} is missing")
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"Maven CRM sample: {path} lacks column(s) {', '.join(missing)}")
    frame = frame.select(
        pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c).str.strip_chars()).alias(c)
        for c in columns
    )
    return frame.to_dicts()


def _date(value: str | None, where: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"Maven CRM sample: {where}: not an ISO date: {value!r}") from None


def _float(value: str | None, where: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Maven CRM sample: {where}: not a number: {value!r}") from None


def _write(out: Path, name: str, rows: list[dict[str, str]], columns: list[str]) -> int:
    """Write rows as text (every value already formatted), so that the bytes depend on the data
    only."""
    frame = pl.DataFrame(
        {c: [r.get(c) or None for r in rows] for c in columns}, schema={c: pl.String for c in columns}
    )
    frame.write_csv(out / name, null_value="", line_terminator="\n")
    return frame.height


# --- the import -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Users:
    """The User rows and the lookups the other objects need."""

    rows: list[dict[str, str]]
    agent_manager: dict[str, str]  # agent name -> manager name
    user_id: dict[str, str]  # user name (VP, manager or agent) -> User Id


@dataclasses.dataclass
class _Pipeline:
    """The imported opportunities and what goes with them, and the rows left out with reasons."""

    opportunities: list[dict[str, str]]
    history: list[dict[str, str]]
    line_items: list[dict[str, str]]
    excluded: Counter[str]  # reason -> pipeline rows not imported
    excluded_rows: list[dict[str, str]]  # one per row left out: object, source_key, reason


@dataclasses.dataclass(frozen=True)
class _Quotas:
    """The ForecastingType, Period and ForecastingQuota rows, and the quotas counted by basis and
    the ones skipped, by reason and one row each."""

    forecasting_types: list[dict[str, str]]
    periods: list[dict[str, str]]
    quotas: list[dict[str, str]]
    derived: Counter[str]  # basis -> quotas
    skipped: Counter[str]  # reason -> (agent, quarter) pairs
    skipped_rows: list[dict[str, str]]


QUOTA_FIELDS = [
    "Id", "QuotaOwnerId", "ForecastingTypeId", "StartDate", "QuotaAmount", "CurrencyIsoCode",
    "PeriodId",
]


def import_maven(src: Path, out: Path, *, quota_uplift: float = 1.0) -> ImportSummary:
    """Turn the Maven CRM sample in ``src`` into the contract's object files in ``out`` (created if
    needed; the files this function writes are replaced). See the module docstring for every
    decision; the same rules go to ``out/DERIVED.md``.

    Raises ``ValueError`` for a source whose shape is wrong (a missing column, an unknown deal
    stage, a duplicate opportunity_id, a value that does not parse), and when ``out`` already holds
    object files of another org (e.g. ``DatedConversionRate.csv`` or any ``.parquet`` object
    file), which the platform would read together with these.
    """
    src, out = Path(src), Path(out)
    if not quota_uplift > 0:
        raise ValueError(f"quota_uplift must be positive, got {quota_uplift!r}")
    _check_out_dir(out)

    teams = _read(src, "sales_teams.csv", ["sales_agent", "manager", "regional_office"])
    products = _read(src, "products.csv", ["product", "series", "sales_price"])
    pipeline = _read(
        src,
        "sales_pipeline.csv",
        ["opportunity_id", "sales_agent", "product", "account", "deal_stage", "engage_date",
         "close_date", "close_value"],
    )
    users = _users(teams)
    product_rows, price = _products(products)
    deals = _parse_pipeline(pipeline)
    spelling_fixes = Counter(
        f"{d['raw_product']} -> {d['product']}" for d in deals if d["raw_product"] != d["product"]
    )
    window, median_days = _booking_window(deals)
    imported = _opportunities(deals, users, price, median_days)
    quarters = _window_quarters(window)
    plan = derive_quotas(
        opportunities=imported.opportunities,
        agent_manager=users.agent_manager,
        user_id=users.user_id,
        window=window,
        quota_uplift=quota_uplift,
    )
    quotas = _quotas(plan, quarters, users.user_id)

    out.mkdir(parents=True, exist_ok=True)
    opportunity_fields = [f for f in OBJECTS["Opportunity"].field_names if f != "IsDeleted"]
    user_fields = ["Id", "Name", "ManagerId", "IsActive", "Hire_Date__c", "Regional_Office__c"]
    stage_fields = [*OBJECTS["OpportunityStage"].field_names, "ForecastCategoryName"]
    files = {
        "User": (users.rows, user_fields),
        "ForecastingType": (quotas.forecasting_types, ["Id", "DeveloperName", "MasterLabel"]),
        "ForecastingQuota": (quotas.quotas, [*QUOTA_FIELDS, "Quota_Basis__c", "Basis_Quarters__c"]),
        "Period": (quotas.periods, OBJECTS["Period"].field_names),
        "Opportunity": (imported.opportunities, opportunity_fields),
        "OpportunityHistory": (imported.history, OBJECTS["OpportunityHistory"].field_names),
        "OpportunityStage": (_stages(), stage_fields),
        "Product2": (product_rows, ["Id", "Name", "Family"]),
        "OpportunityLineItem": (imported.line_items, OBJECTS["OpportunityLineItem"].field_names),
    }
    counts, derived_rows, derived_fields = _write_objects(out, files)
    excluded_rows = imported.excluded_rows + quotas.skipped_rows
    _write(out, EXCLUDED_CSV, excluded_rows, ["object", "source_key", "reason"])
    summary = ImportSummary(
        src=src,
        out=out,
        counts=counts,
        excluded=dict(sorted(imported.excluded.items())),
        derived_rows=derived_rows,
        derived_fields=derived_fields,
        quotas_derived=dict(sorted(quotas.derived.items())),
        quotas_skipped=dict(sorted(quotas.skipped.items())),
        spelling_fixes=dict(sorted(spelling_fixes.items())),
        source_rows=len(deals),
        median_engage_to_close_days=median_days,
        booking_window=window,
        quota_uplift=quota_uplift,
    )
    (out / DERIVED_MD).write_text(_derived_md(summary, quarters), encoding="utf-8")
    return summary


def _users(teams: list[dict[str, str | None]]) -> _Users:
    """The derived VP over the managers of ``sales_teams.csv``, the managers, and their agents."""
    vp_id = sf_id("005", VP_NAME)
    agent_manager: dict[str, str] = {}
    agent_office: dict[str, str | None] = {}
    for row in teams:
        agent, manager = row["sales_agent"], row["manager"]
        if agent is None or manager is None:
            raise ValueError("Maven CRM sample: sales_teams.csv has a row without agent or manager")
        if agent in agent_manager:
            raise ValueError(f"Maven CRM sample: sales_teams.csv lists {agent!r} twice")
        agent_manager[agent] = manager
        agent_office[agent] = row["regional_office"]
    managers = sorted(set(agent_manager.values()))
    manager_office = {
        m: "/".join(sorted({agent_office[a] or "" for a, am in agent_manager.items() if am == m}))
        for m in managers
    }
    user_id = {VP_NAME: vp_id, **{m: sf_id("005", m) for m in managers}}
    user_id.update({a: sf_id("005", a) for a in agent_manager})
    if len(set(user_id.values())) != len(user_id):
        raise ValueError("Maven CRM sample: two users share a name or an Id")
    rows = [
        {"Id": vp_id, "Name": VP_NAME, "ManagerId": "", "IsActive": "true", "Hire_Date__c": "",
         "Regional_Office__c": "", DERIVED_COL: _derived("Id", "Name", "ManagerId", "IsActive")}
    ]
    rows += [
        {"Id": user_id[m], "Name": m, "ManagerId": vp_id, "IsActive": "true", "Hire_Date__c": "",
         "Regional_Office__c": manager_office[m], DERIVED_COL: _derived("ManagerId", "IsActive")}
        for m in managers
    ]
    rows += [
        {"Id": user_id[a], "Name": a, "ManagerId": user_id[agent_manager[a]], "IsActive": "true",
         "Hire_Date__c": "", "Regional_Office__c": agent_office[a] or "", DERIVED_COL: _derived("IsActive")}
        for a in sorted(agent_manager)
    ]
    return _Users(rows=rows, agent_manager=agent_manager, user_id=user_id)


def _products(
    products: list[dict[str, str | None]],
) -> tuple[list[dict[str, str]], dict[str, float]]:
    """One Product2 row per row of ``products.csv`` (Family = series), and each product's list
    price."""
    price: dict[str, float] = {}
    rows = []
    for row in products:
        name = row["product"]
        if name is None or row["series"] is None:
            raise ValueError("Maven CRM sample: products.csv has a row without product or series")
        value = _float(row["sales_price"], f"products.csv product {name} sales_price")
        if value is None:
            raise ValueError(f"Maven CRM sample: products.csv product {name} has no sales_price")
        price[name] = value
        rows.append(
            {"Id": sf_id("01t", name), "Name": name, "Family": row["series"], DERIVED_COL: ""}
        )
    rows.sort(key=lambda r: r["Name"])
    return rows, price


def _parse_pipeline(pipeline: list[dict[str, str | None]]) -> list[dict]:
    """The pipeline rows, checked (an opportunity_id present and unique, a known deal stage) and
    parsed (dates, values, the product's spelling in ``products.csv``)."""
    seen: set[str] = set()
    deals = []
    for row in pipeline:
        opp_id = row["opportunity_id"]
        if opp_id is None:
            raise ValueError("Maven CRM sample: sales_pipeline.csv has a row without opportunity_id")
        if opp_id in seen:
            raise ValueError(f"Maven CRM sample: sales_pipeline.csv has opportunity_id {opp_id} twice")
        seen.add(opp_id)
        if row["deal_stage"] not in STAGES:
            raise ValueError(
                f"Maven CRM sample: opportunity {opp_id} has deal_stage {row['deal_stage']!r} "
                f"(expected one of {', '.join(STAGES)})"
            )
        where = f"sales_pipeline.csv opportunity {opp_id}"
        deals.append(
            {
                "id": opp_id,
                "agent": row["sales_agent"],
                "raw_product": row["product"],
                "product": PRODUCT_SPELLING.get(row["product"] or "", row["product"]),
                "account": row["account"],
                "stage": row["deal_stage"],
                "engage": _date(row["engage_date"], f"{where} engage_date"),
                "close": _date(row["close_date"], f"{where} close_date"),
                "value": _float(row["close_value"], f"{where} close_value"),
            }
        )
    return deals


def _booking_window(deals: list[dict]) -> tuple[tuple[date, date], int]:
    """The booking window (the first and last close_date of a Won or Lost deal) and the median
    days from engage to close over Won deals (the expected close of an open deal)."""
    closed = [d for d in deals if d["stage"] in ("Won", "Lost") and d["close"] is not None]
    if not closed:
        raise ValueError("Maven CRM sample: no Won or Lost deal with a close_date")
    window = (min(d["close"] for d in closed), max(d["close"] for d in closed))
    cycle = [
        (d["close"] - d["engage"]).days
        for d in closed
        if d["stage"] == "Won" and d["engage"] is not None
    ]
    return window, round(statistics.median(cycle)) if cycle else 0


def _opportunities(
    deals: list[dict], users: _Users, price: dict[str, float], median_days: int
) -> _Pipeline:
    """Opportunity, OpportunityHistory and OpportunityLineItem rows for every deal that can be
    imported (see :func:`_exclusion`), each derived value listed in DERIVED_COL."""
    out = _Pipeline(
        opportunities=[], history=[], line_items=[], excluded=Counter(), excluded_rows=[]
    )
    engaging = STAGES["Engaging"]
    all_history_fields = _derived(*OBJECTS["OpportunityHistory"].field_names)
    for d in deals:
        reason = _exclusion(d, users.agent_manager, price)
        if reason:
            out.excluded[reason] += 1
            out.excluded_rows.append(
                {"object": "Opportunity", "source_key": d["id"], "reason": reason}
            )
            continue
        stage = STAGES[d["stage"]]
        list_price = price[d["product"]]
        expected_close = d["engage"] + timedelta(days=median_days)
        won = d["stage"] == "Won"
        amount = d["value"] if won else list_price
        close = d["close"] if stage.is_closed else expected_close
        derived = ["Type"]
        if not won:
            derived.append("Amount")
        derived += ["CurrencyIsoCode", "Probability"]
        if not stage.is_closed:
            derived.append("CloseDate")
        derived += ["CreatedDate", "ForecastCategoryName"]
        out.opportunities.append(
            {
                "Id": d["id"],
                "Name": f"{d['account'] or NO_ACCOUNT} - {d['product']}",
                "AccountId": sf_id("001", d["account"]) if d["account"] else "",
                "OwnerId": users.user_id[d["agent"]],
                "Type": OPPORTUNITY_TYPE,
                "StageName": stage.api_name,
                "Amount": _money(amount),
                "CurrencyIsoCode": CURRENCY,
                "Probability": str(stage.probability),
                "CloseDate": close.isoformat(),
                "CreatedDate": _midnight(d["engage"]),
                "IsClosed": _bool(stage.is_closed),
                "IsWon": _bool(stage.is_won),
                "ForecastCategoryName": stage.forecast_category,
                DERIVED_COL: _derived(*derived),
            }
        )
        out.history.append(
            {
                "OpportunityId": d["id"],
                "CreatedDate": _midnight(d["engage"]),
                "StageName": engaging.api_name,
                "Amount": _money(list_price),
                "CloseDate": expected_close.isoformat(),
                "Probability": str(engaging.probability),
                "ForecastCategory": engaging.forecast_category,
                DERIVED_COL: all_history_fields,
            }
        )
        if stage.is_closed:
            out.history.append(
                {
                    "OpportunityId": d["id"],
                    "CreatedDate": _midnight(d["close"]),
                    "StageName": stage.api_name,
                    "Amount": _money(amount),
                    "CloseDate": d["close"].isoformat(),
                    "Probability": str(stage.probability),
                    "ForecastCategory": stage.forecast_category,
                    DERIVED_COL: all_history_fields,
                }
            )
        out.line_items.append(
            {
                "OpportunityId": d["id"],
                "Product2Id": sf_id("01t", d["product"]),
                "TotalPrice": _money(amount),
                DERIVED_COL: "" if won else _derived("TotalPrice"),
            }
        )
    return out


def _stages() -> list[dict[str, str]]:
    """The derived OpportunityStage rows, one per Maven deal stage."""
    return [
        {
            "ApiName": s.api_name,
            "SortOrder": str(s.sort_order),
            "DefaultProbability": str(s.probability),
            "IsClosed": _bool(s.is_closed),
            "IsWon": _bool(s.is_won),
            "ForecastCategoryName": s.forecast_category,
            DERIVED_COL: _derived(*OBJECTS["OpportunityStage"].field_names, "ForecastCategoryName"),
        }
        for s in STAGES.values()
    ]


def _quotas(plan: list[QuotaPlan], quarters: list[date], user_id: dict[str, str]) -> _Quotas:
    """The derived ForecastingType, a Quarter Period for each quarter of the booking window, and
    a ForecastingQuota for each planned quota with an amount; a plan without one is counted and
    listed with its reason."""
    type_id = sf_id("0Db", FORECASTING_TYPE)
    forecasting_types = [
        {"Id": type_id, "DeveloperName": FORECASTING_TYPE, "MasterLabel": OPPORTUNITY_TYPE,
         DERIVED_COL: _derived("Id", "DeveloperName", "MasterLabel")}
    ]
    periods = [
        {
            "Id": sf_id("026", "Quarter", q.isoformat()),
            "Type": "Quarter",
            "StartDate": q.isoformat(),
            "EndDate": _quarter_end(q).isoformat(),
            DERIVED_COL: _derived(*OBJECTS["Period"].field_names),
        }
        for q in quarters
    ]
    out = _Quotas(
        forecasting_types, periods, quotas=[], derived=Counter(), skipped=Counter(), skipped_rows=[]
    )
    for q in plan:
        if q.amount is None:
            out.skipped[q.reason] += 1
            out.skipped_rows.append(
                {"object": "ForecastingQuota", "source_key": f"{q.agent} {_quarter_label(q.quarter)}",
                 "reason": q.reason}
            )
            continue
        out.derived[q.basis] += 1
        out.quotas.append(
            {
                "Id": sf_id("0J9", q.agent, FORECASTING_TYPE, q.quarter.isoformat()),
                "QuotaOwnerId": user_id[q.agent],
                "ForecastingTypeId": type_id,
                "StartDate": q.quarter.isoformat(),
                "QuotaAmount": _money(q.amount),
                "CurrencyIsoCode": CURRENCY,
                "PeriodId": sf_id("026", "Quarter", q.quarter.isoformat()),
                "Quota_Basis__c": q.basis,
                "Basis_Quarters__c": ";".join(_quarter_label(b) for b in q.basis_quarters),
                DERIVED_COL: _derived(*QUOTA_FIELDS, "Quota_Basis__c", "Basis_Quarters__c"),
            }
        )
    return out


def _write_objects(
    out: Path, files: dict[str, tuple[list[dict[str, str]], list[str]]]
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Write each object file (its columns, then DERIVED_COL); returns the rows per object, the
    rows with a derived field per object, and the rows per derived ``Object.Field``."""
    counts, derived_rows, derived_fields = {}, {}, Counter()
    for name in OBJECT_FILES:
        rows, columns = files[name]
        counts[name] = _write(out, f"{name}.csv", rows, [*columns, DERIVED_COL])
        derived_rows[name] = sum(1 for r in rows if r[DERIVED_COL])
        for r in rows:
            for field in filter(None, r[DERIVED_COL].split(";")):
                derived_fields[f"{name}.{field}"] += 1
    return counts, derived_rows, dict(derived_fields)


def _check_out_dir(out: Path) -> None:
    """Refuse a folder holding object files this import does not write: the platform would read
    them as part of this org (a Parquet file even in place of the CSV written here)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    foreign = sorted(
        p.name
        for name in OBJECTS
        for p in (out / f"{name}.parquet", out / f"{name}.csv")
        if p.exists() and not (p.suffix == ".csv" and name in OBJECT_FILES)
    )
    if foreign:
        raise ValueError(
            f"{out} already holds object files of another org ({', '.join(foreign)}); "
            "import the Maven sample into an empty folder"
        )


def _exclusion(d: dict, agent_manager: dict[str, str], price: dict[str, float]) -> str | None:
    if d["stage"] == "Prospecting":
        return EXCLUDED_PROSPECTING
    if d["agent"] not in agent_manager:
        return EXCLUDED_UNKNOWN_OWNER
    if d["product"] not in price:
        return EXCLUDED_UNKNOWN_PRODUCT
    if d["engage"] is None:
        return EXCLUDED_NO_ENGAGE
    if d["close"] is None and d["stage"] in ("Won", "Lost"):
        return EXCLUDED_NO_CLOSE
    if d["value"] is None and d["stage"] == "Won":
        return EXCLUDED_NO_VALUE
    return None


def _window_quarters(window: tuple[date, date]) -> list[date]:
    quarters, q = [], _quarter_start(window[0])
    while q <= window[1]:
        quarters.append(q)
        q = add_months(q, 3)
    return quarters


def quarter_coverage(quarter: date, window: tuple[date, date]) -> float:
    """The share of the quarter's days inside the booking window (0 to 1)."""
    first, last = max(quarter, window[0]), min(_quarter_end(quarter), window[1])
    covered = (last - first).days + 1
    return max(covered, 0) / ((_quarter_end(quarter) - quarter).days + 1)


@dataclasses.dataclass(frozen=True)
class QuotaPlan:
    """One agent's quota for one quarter of the booking window: an amount and its basis, or no
    amount and the reason."""

    agent: str
    quarter: date
    amount: float | None
    basis: str | None  # agent, team, company
    basis_quarters: tuple[date, ...]
    reason: str | None


def derive_quotas(
    *,
    opportunities: list[dict[str, str]],
    agent_manager: dict[str, str],
    user_id: dict[str, str],
    window: tuple[date, date],
    quota_uplift: float,
) -> list[QuotaPlan]:
    """The quota rule of the module docstring, for every agent and every quarter of the booking
    window. Only Won deals closing before a quarter's start, and opportunities created before it,
    can affect that quarter's quota."""
    owner_name = {user_id[a]: a for a in agent_manager}
    quarters = _window_quarters(window)
    booked: dict[tuple[str, date], float] = Counter()
    created: dict[str, list[date]] = {a: [] for a in agent_manager}
    for o in opportunities:
        agent = owner_name[o["OwnerId"]]
        created[agent].append(date.fromisoformat(o["CreatedDate"][:10]))
        if o["IsWon"] == "true":
            booked[(agent, _quarter_start(date.fromisoformat(o["CloseDate"])))] += float(o["Amount"])
    plans = []
    for quarter in quarters:
        earlier = tuple(q for q in quarters if _quarter_end(q) < quarter)
        # The agent's mean scaled bookings over the earlier quarters, and whether they booked at all.
        average = {
            a: sum(booked[(a, q)] / quarter_coverage(q, window) for q in earlier) / len(earlier)
            for a in agent_manager
        } if earlier else {}
        booked_any = {a: any(booked[(a, q)] > 0 for q in earlier) for a in agent_manager}
        for agent in sorted(agent_manager):
            if not earlier:
                plans.append(QuotaPlan(agent, quarter, None, None, (), SKIPPED_FIRST_QUARTER))
                continue
            if not any(c < quarter for c in created[agent]):
                plans.append(QuotaPlan(agent, quarter, None, None, earlier, SKIPPED_NO_PIPELINE))
                continue
            team = [a for a in agent_manager if agent_manager[a] == agent_manager[agent] and booked_any[a]]
            company = [a for a in agent_manager if booked_any[a]]
            if booked_any[agent]:
                basis, pool = "agent", [agent]
            elif team:
                basis, pool = "team", team
            elif company:
                basis, pool = "company", company
            else:
                plans.append(QuotaPlan(agent, quarter, None, None, earlier, SKIPPED_NO_BOOKINGS))
                continue
            value = quota_uplift * sum(average[a] for a in pool) / len(pool)
            plans.append(QuotaPlan(agent, quarter, round(value, 2), basis, earlier, None))
    return plans


def _derived_md(s: ImportSummary, quarters: list[date]) -> str:
    window = f"{s.booking_window[0]} .. {s.booking_window[1]}"
    partial = [
        f"{_quarter_label(q)} x {1 / quarter_coverage(q, s.booking_window):.4f}"
        for q in quarters
        if quarter_coverage(q, s.booking_window) < 1
    ]
    excluded = "\n".join(f"| {reason} | {n:,} |" for reason, n in s.excluded.items()) or "| (none) | 0 |"
    skipped = "\n".join(f"| {reason} | {n:,} |" for reason, n in s.quotas_skipped.items()) or "| (none) | 0 |"
    derived = "\n".join(f"| {name} | {n:,} |" for name, n in sorted(s.derived_fields.items()))
    counts = "\n".join(
        f"| {name} | {n:,} | {s.derived_rows[name]:,} |" for name, n in s.counts.items()
    )
    fixes = ", ".join(f"{k} ({v:,} rows)" for k, v in s.spelling_fixes.items()) or "none"
    return f"""# Derived from the Maven CRM sample

Written by `quota_platform.samples.maven.import_maven` from `{s.src.name}`, which is
Maven Analytics' "CRM Sales Opportunities" (public domain). The sample has opportunities, agents,
managers and products, but no quotas, stage history, opportunity types or currencies, and some
values and dates are missing. Every value made up to fill those gaps is **derived**, and:

- is listed per row in the extra column `{DERIVED_COL}` of each object file (field names separated
  by `;`; the platform ignores extra columns). A record with no counterpart in the sample (the VP,
  stages, history rows, periods, the forecasting type, quotas) lists every field;
- follows the rules below, which are the same as in the module docstring.

Numbers that are derived must be labelled as derived wherever they are shown.

## Run

- Pipeline rows read: {s.source_rows:,}; opportunities imported: {s.opportunities_imported:,};
  excluded: {s.opportunities_excluded:,} (every one is listed with its reason in `{EXCLUDED_CSV}`).
- Booking window (first .. last `close_date`): {window}.
- Median days from engage to close over Won deals: {s.median_engage_to_close_days}.
- Quota uplift: {s.quota_uplift:g}.
- Product spelling fixed: {fixes}.

| object | rows | rows with derived fields |
| --- | --- | --- |
{counts}

| opportunities excluded: reason | count |
| --- | --- |
{excluded}

| quotas skipped: reason | (agent, quarter) pairs |
| --- | --- |
{skipped}

Quotas derived by basis: {", ".join(f"{k} {v:,}" for k, v in s.quotas_derived.items()) or "none"}.

## Ids (synthetic keys)

Opportunity `Id` is Maven's `opportunity_id`. Every other Id is the object's Salesforce key prefix
(`005` User, `001` Account, `01t` Product2, `0Db` ForecastingType, `0J9` ForecastingQuota, `026`
Period) followed by the first 15 upper-case hex digits of the SHA-256 of the record's natural key
(a name, or a name and a quarter). The same input always gives the same Ids. These keys only link
records and carry no information, so `{DERIVED_COL}` lists them only on records that are
derived as a whole.

## Derived fields

| object.field | derived how |
| --- | --- |
| User (VP row) | `{VP_NAME}`: a derived VP over the 6 managers, with no manager. |
| User.ManagerId (managers) | The derived VP. |
| User.IsActive | true for every user (assumed). |
| User.Hire_Date__c | Left empty: unknown, so every rep is tenured (no ramp). This is not a derived value. |
| Opportunity.Type | `{OPPORTUNITY_TYPE}` (the sample has no type). |
| Opportunity.Amount (Lost, Engaging) | The product's list price from `products.csv` (Lost deals show 0 and open deals are blank). Won: `close_value`, from the source. |
| Opportunity.CurrencyIsoCode | `{CURRENCY}` (assumed). |
| Opportunity.CloseDate (Engaging) | `engage_date` + {s.median_engage_to_close_days} days (the median engage-to-close of Won deals over the whole file; the only value that uses later data). Won/Lost: `close_date`, from the source. |
| Opportunity.CreatedDate | `engage_date` at 00:00:00Z (the real creation date, at Prospecting, is not in the sample). |
| Opportunity.Probability, ForecastCategoryName | The stage's defaults below. |
| OpportunityStage (all) | Prospecting 1 / 10% / Pipeline; Engaging 2 / 40% / Pipeline; Closed Won 3 / 100% / Closed (closed, won); Closed Lost 4 / 0% / Omitted (closed). The probabilities were chosen for this import. |
| OpportunityHistory (all) | Two steps. A row at `engage_date` 00:00:00Z: Engaging, Amount = list price, CloseDate = expected close (`engage_date` + {s.median_engage_to_close_days} days). For Won and Lost deals, a second row at `close_date` 00:00:00Z with the final stage, Amount and CloseDate. The last row equals the Opportunity. |
| OpportunityLineItem.TotalPrice (Lost, Engaging) | = Opportunity.Amount, so the list price. One line item per opportunity, for its product. |
| Product2 | From `products.csv`; Family = `series`. Not derived. |
| ForecastingType (all) | One type, `{FORECASTING_TYPE}`; every opportunity is New Business. |
| Period (all) | One `Quarter` Period for each quarter of the booking window. |
| ForecastingQuota (all) | The quota rule below. |

Not derived: Opportunity.OwnerId (the agent), StageName (Prospecting, Engaging, Won -> Closed Won,
Lost -> Closed Lost), IsClosed and IsWon (from the stage), and Name (`<account> - <product>`, or
`{NO_ACCOUNT}` when the deal has no account, a label). The pipeline's product `GTXPro` is read as
`GTX Pro`, its spelling in `products.csv`.

## Opportunities left out

Prospecting deals are not imported. They have no engage date and no close date, so there is no date
to put them in the pipeline at, and any date chosen would add made-up open pipeline to every as-of
date before it. Rows with an owner not in `sales_teams.csv`, a product not in `products.csv`, no
`engage_date`, a Won/Lost deal with no `close_date`, or a Won deal with no `close_value` are also
left out. All of them are counted above and listed in `{EXCLUDED_CSV}`.

## Quota rule (no leakage)

For each agent and each quarter Q of the booking window:

1. A quarter's bookings for an agent = the sum of the Amounts of their Won deals whose CloseDate is
   in it. A quarter that the booking window covers only in part is scaled up to a full quarter:
   bookings x days in the quarter / days covered ({"; ".join(partial) or "no partial quarter"}).
2. Earlier quarters = the booking window's quarters that end before Q starts. With none (the first
   quarter) there is no quota (skipped: "{SKIPPED_FIRST_QUARTER}").
3. An agent who owned no imported opportunity created before Q starts carries no quota (skipped:
   "{SKIPPED_NO_PIPELINE}").
4. quota = uplift ({s.quota_uplift:g}) x the mean of the agent's scaled bookings over the earlier
   quarters. A quarter with no bookings counts as 0. When the agent booked nothing in any earlier
   quarter (basis `team`), the quota is the mean of that average over their teammates (same
   manager) who booked. If no teammate booked (basis `company`), it is the mean over every agent who
   booked. If nobody booked, there is no quota (skipped: "{SKIPPED_NO_BOOKINGS}").
5. Amounts are rounded to cents, in {CURRENCY}. The quota has StartDate = Q's first day and PeriodId
   = Q's Period. Extra columns: `Quota_Basis__c` (agent, team, company) and `Basis_Quarters__c`
   (the earlier quarters used).

Only deals that closed before Q, and opportunities created before Q, enter Q's quota. A change to a
deal that closes in Q or later cannot change it.

## Field counts

| object.field | rows where derived |
| --- | --- |
{derived}
"""
