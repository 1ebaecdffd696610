"""Quotas: Period rows, ForecastingQuota rows planned from each territory's capacity (renewal
quotas from the amount up for renewal), the mid-period changes of ForecastingQuotaHistory, ramp-
adjusted quotas of new hires and the few quotas without a PeriodId."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl

from quota_platform.lib.core.calendar import DEFAULT_RAMP, add_months, ramp_factor
from quota_platform.samples.demo_org.model import (
    EXPANSION_TYPES,
    NEW_BUSINESS,
    Org,
    date_of,
    expected_monthly_usd,
    quarter_end,
)

# OpportunityRevenue is left out on purpose: with that type in the org the platform credits
# "bookings" to every rep, so reps without a bookings quota would all show credit without quota.
FORECASTING_TYPES = ("NewBusiness", "Expansion", "Renewal")
PLAN_FACTOR = 1.0  # quota = PLAN_FACTOR x expected bookings of an average rep in the territory
RENEWAL_TARGET = 0.85  # renewal quota = this share of the amount up for renewal in the period
FAMILY_SHARE = {"Platform": 0.80, "Analytics": 0.48}  # family quota relative to its type quota
QUOTA_CHANGE_SHARE = 0.10
QUOTA_CHANGE_FACTORS = (0.85, 0.9, 1.1, 1.15, 1.25)
MISSING_PERIOD_ID_QUOTAS = 6


def round_quota(x: float) -> float:
    """Quota amounts: whole steps of 500, 1,000 or 5,000 by size, at least one step."""
    step = 5_000 if x >= 100_000 else 1_000 if x >= 20_000 else 500
    return float(max(step, int(round(x / step)) * step))


def forecasting_types(org: Org) -> tuple[pl.DataFrame, dict[str, str]]:
    """The ForecastingType rows (one per FORECASTING_TYPES) and their Ids by DeveloperName."""
    type_ids = {dev: org.ids("0Db") for dev in FORECASTING_TYPES}
    frame = pl.DataFrame({"Id": list(type_ids.values()), "DeveloperName": list(type_ids)})
    return frame, type_ids


def periods(org: Org) -> tuple[pl.DataFrame, dict[tuple[str, date], str]]:
    """Period rows (each quarter and its three months) from the first opportunity month to the
    quarter after the as-of date, and their Ids by (Type, StartDate)."""
    rows: dict[str, list] = {"Id": [], "Type": [], "StartDate": [], "EndDate": []}
    ids: dict[tuple[str, date], str] = {}
    q = org.period_first
    while q <= org.horizon_start:
        months = [add_months(q, i) for i in range(3)]
        for sf_type, start, end in [("Quarter", q, quarter_end(q))] + [
            ("Month", m, add_months(m, 1) - timedelta(days=1)) for m in months
        ]:
            ids[(sf_type, start)] = org.ids("026")
            rows["Id"].append(ids[(sf_type, start)])
            rows["Type"].append(sf_type)
            rows["StartDate"].append(start)
            rows["EndDate"].append(end)
        q = add_months(q, 3)
    return pl.DataFrame(rows), ids


def quotas(
    org: Org, type_ids: dict[str, str], period_ids: dict[tuple[str, date], str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ForecastingQuota and ForecastingQuotaHistory rows: each rep's NewBusiness and Expansion
    quota for every period of its cadence while employed (PLAN_FACTOR x the expected bookings of
    an average rep in its territory), a Renewal quota from the first period with renewals due,
    family quotas, ramp-adjusted amounts where the plan says so, mid-period changes for about
    QUOTA_CHANGE_SHARE of the quotas, and MISSING_PERIOD_ID_QUOTAS quarterly quotas without a
    PeriodId."""
    rng = org.rng_quotas
    # Amount up for renewal, USD, by (owner, month start), from every renewal seed.
    atr: dict[tuple[str, date], float] = {}
    for seed in org.renewal_seeds:
        d = date_of(seed.due)
        key = (seed.owner_id, date(d.year, d.month, 1))
        atr[key] = atr.get(key, 0.0) + seed.amount / org.rates.rate(seed.currency, d)
    rows: list[dict] = []
    history: list[dict] = []
    for rep in org.reps:
        months = 1 if rep.cadence == "month" else 3
        sf_type = "Month" if months == 1 else "Quarter"
        start = org.quota_start
        while add_months(start, months) <= rep.hire_date:
            start = add_months(start, months)
        starts = []
        while start <= org.horizon_end and (rep.left_date is None or start <= rep.left_date):
            starts.append(start)
            start = add_months(start, months)
        new_usd = expected_monthly_usd(rep, 1.0, (NEW_BUSINESS,))
        exp_usd = expected_monthly_usd(rep, 1.0, EXPANSION_TYPES)
        # A rep carries a Renewal quota from the first period with renewals due onwards.
        rep_atr = [
            sum(atr.get((rep.user_id, add_months(p, i)), 0.0) for i in range(months)) for p in starts
        ]
        first_due = next((i for i, v in enumerate(rep_atr) if v > 0), len(rep_atr))
        atr_floor = 0.5 * sum(rep_atr) / max(len(rep_atr) - first_due, 1)
        noise = {}
        for i, (p, ren_usd) in enumerate(zip(starts, rep_atr)):
            year = p.year
            for dev in FORECASTING_TYPES:
                noise.setdefault((dev, year), math.exp(rng.normal(0.0, 0.08)))
            g = org.growth(p) * months * PLAN_FACTOR
            plan = {("NewBusiness", None): new_usd * g, ("Expansion", None): exp_usd * g}
            if i >= first_due:
                plan[("Renewal", None)] = RENEWAL_TARGET * max(ren_usd, atr_floor)
            if rep.family_quota:
                dev, family = rep.family_quota
                plan[(dev, family)] = plan[(dev, None)] * FAMILY_SHARE[family]
            rate = org.rates.rate(rep.currency, p)
            factor = ramp_factor(rep.cadence, p, rep.hire_date, DEFAULT_RAMP)
            for (dev, family), usd in plan.items():
                amount = round_quota(usd * noise[(dev, year)] * rate)
                adjusted = rep.ramp_adjusted and factor < 1.0
                if adjusted:
                    amount = round_quota(amount * factor)
                row = {
                    "_quarterly": months == 3,
                    "Id": "",
                    "QuotaOwnerId": rep.user_id,
                    "ForecastingTypeId": type_ids[dev],
                    "StartDate": p,
                    "QuotaAmount": amount,
                    "CurrencyIsoCode": rep.currency,
                    "PeriodId": period_ids[(sf_type, p)],
                    "ProductFamily": family,
                    "Ramp_Adjusted__c": adjusted,
                }
                end = add_months(p, months) - timedelta(days=1)
                change = p + timedelta(days=int((end - p).days * rng.uniform(0.3, 0.7)))
                if not adjusted and change <= org.as_of and rng.random() < QUOTA_CHANGE_SHARE:
                    final = round_quota(amount * rng.choice(QUOTA_CHANGE_FACTORS))
                    for effective, value in ((p, amount), (change, final)):
                        history.append(
                            {
                                "QuotaOwnerId": rep.user_id,
                                "ForecastingTypeId": type_ids[dev],
                                "StartDate": p,
                                "ProductFamily": family,
                                "QuotaAmount": value,
                                "CurrencyIsoCode": rep.currency,
                                "EffectiveDate": effective,
                            }
                        )
                    row["QuotaAmount"] = final
                rows.append(row)
    rows.sort(
        key=lambda r: (
            r["StartDate"], r["QuotaOwnerId"], r["ForecastingTypeId"], r["ProductFamily"] or ""
        )
    )
    for row in rows:
        row["Id"] = org.ids("0Ow")
    # A handful of quarterly quotas without a PeriodId: the quarter starting at StartDate.
    quarterly = [i for i, r in enumerate(rows) if r.pop("_quarterly")]
    for i in rng.choice(quarterly, MISSING_PERIOD_ID_QUOTAS, replace=False).tolist():
        rows[i]["PeriodId"] = None
    quota_schema = {
        "Id": pl.String, "QuotaOwnerId": pl.String, "ForecastingTypeId": pl.String,
        "StartDate": pl.Date, "QuotaAmount": pl.Float64, "CurrencyIsoCode": pl.String,
        "PeriodId": pl.String, "ProductFamily": pl.String, "Ramp_Adjusted__c": pl.Boolean,
    }
    history_schema = {
        "QuotaOwnerId": pl.String, "ForecastingTypeId": pl.String, "StartDate": pl.Date,
        "ProductFamily": pl.String, "QuotaAmount": pl.Float64, "CurrencyIsoCode": pl.String,
        "EffectiveDate": pl.Date,
    }
    return (
        pl.DataFrame(rows, schema=quota_schema),
        pl.DataFrame(history, schema=history_schema),
    )
