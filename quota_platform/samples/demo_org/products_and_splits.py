"""What each deal is made of and who shares it: Product2 rows and the OpportunityLineItem rows (by
product family) that sum to each opportunity's Amount, and the revenue and overlay
OpportunitySplit rows."""

from __future__ import annotations

import polars as pl

from quota_platform.samples.demo_org.model import (
    DAY,
    NEW_BUSINESS,
    RENEWAL,
    Deal,
    Org,
    Stream,
    date_of,
)

PRODUCTS = (
    ("Platform Core", "Platform"),
    ("Platform Enterprise", "Platform"),
    ("Platform Seats", "Platform"),
    ("Analytics Pro", "Analytics"),
    ("Analytics Connectors", "Analytics"),
    ("Implementation Services", "Services"),
    ("Training", "Services"),
    ("Premium Support", "Services"),
)
FAMILY_WEIGHT = {"Platform": 0.65, "Analytics": 0.25, "Services": 0.12}


def line_items(org: Org, deals: list[Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Product2 rows and the OpportunityLineItem rows of every deal: families by Type, prices
    weighted by FAMILY_WEIGHT and summing to the deal's Amount (the deal's families also go to
    ``org.families``, which the overlay splits read)."""
    products = pl.DataFrame(
        {
            "Id": [org.ids("01t") for _ in PRODUCTS],
            "Family": [f for _, f in PRODUCTS],
            "Name": [n for n, _ in PRODUCTS],
            "IsActive": [True] * len(PRODUCTS),
        }
    )
    by_family: dict[str, list[str]] = {}
    for pid, (_, family) in zip(products["Id"].to_list(), PRODUCTS):
        by_family.setdefault(family, []).append(pid)
    s = Stream(org.rng_extras)
    rows: dict[str, list] = {"Id": [], "OpportunityId": [], "Product2Id": [], "TotalPrice": []}
    for deal in deals:
        opp_type = deal.seed.opp_type
        # New business: the platform, often analytics and services; renewals: the
        # subscriptions; expansions: more platform or analytics, sometimes services.
        if opp_type == NEW_BUSINESS:
            families = ["Platform"] + (["Analytics"] if s.u() < 0.5 else [])
            families += ["Services"] if s.u() < 0.4 else []
        elif opp_type == RENEWAL:
            families = ["Platform"] + (["Analytics"] if s.u() < 0.4 else [])
        else:
            families = ["Platform" if s.u() < 0.5 else "Analytics"]
            families += ["Services"] if s.u() < 0.2 else []
        org.families[deal.id] = families
        weights = [FAMILY_WEIGHT[f] * (0.7 + 0.6 * s.u()) for f in families]
        total = int(deal.current[2])
        prices, left = [], total
        for w in weights[:-1]:
            price = int(round(total * w / sum(weights)))
            prices.append(price)
            left -= price
        prices.append(left)
        for family, price in zip(families, prices):
            rows["Id"].append(org.ids("00k"))
            rows["OpportunityId"].append(deal.id)
            rows["Product2Id"].append(s.pick(by_family[family]))
            rows["TotalPrice"].append(float(price))
    items = pl.DataFrame(rows).select("OpportunityId", "Product2Id", "TotalPrice", "Id")
    return products.select("Id", "Family", "Name", "IsActive"), items


def splits(org: Org, deals: list[Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """OpportunitySplitType rows (Revenue, Overlay) and OpportunitySplit rows: about 12% of
    non-renewal deals shared with a teammate (50/50, 60/40 or 70/30), about 12% with an overlay
    split to a sales engineer or, for deals with Analytics, often to the analytics specialist."""
    revenue_type, overlay_type = org.ids("14A"), org.ids("14A")
    types = pl.DataFrame(
        {
            "Id": [revenue_type, overlay_type],
            "DeveloperName": ["Revenue", "Overlay"],
            "IsTotalValidated": [True, False],
        }
    )
    s = Stream(org.rng_extras)
    rep_by_id = {r.user_id: r for r in org.reps}
    columns = ("OpportunityId", "SplitOwnerId", "SplitPercentage", "SplitTypeId", "Id")
    rows: dict[str, list] = {c: [] for c in columns}

    def add(opp_id: str, owner: str, pct: float, type_id: str) -> None:
        rows["OpportunityId"].append(opp_id)
        rows["SplitOwnerId"].append(owner)
        rows["SplitPercentage"].append(pct)
        rows["SplitTypeId"].append(type_id)
        rows["Id"].append(org.ids("149"))

    for deal in deals:
        if deal.seed.opp_type == RENEWAL:
            continue
        owner = rep_by_id[deal.owner_id]
        created = date_of(deal.seed.created_s // DAY)
        if s.u() < 0.12:
            mates = [
                r
                for r in org.reps
                if r.team is owner.team and r is not owner and r.active_on(created)
                and r.left_date is None
            ]
            if mates:
                mate = s.pick(mates)
                u = s.u()
                first = 50.0 if u < 0.4 else 60.0 if u < 0.8 else 70.0
                add(deal.id, owner.user_id, first, revenue_type)
                add(deal.id, mate.user_id, 100.0 - first, revenue_type)
        if s.u() < 0.12:
            if "Analytics" in org.families[deal.id] and s.u() < 0.5:
                overlay = org.analytics_specialist
            else:
                overlay = s.pick(org.overlay_by_director[owner.team.director])
            add(deal.id, overlay, 100.0, overlay_type)
    return types, pl.DataFrame(rows)
