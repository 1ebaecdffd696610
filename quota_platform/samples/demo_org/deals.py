"""Deals and their histories: which opportunities are created (new business, expansion, and the
renewals of won deals and of the pre-history book), how each one unfolds stage by stage (slips,
quarter-end bunching, amount changes), and the Opportunity and OpportunityHistory rows up to the
as-of date."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import polars as pl

from quota_platform.lib.core.calendar import add_months
from quota_platform.lib.core.contract import OBJECTS
from quota_platform.samples.demo_org.files import date_col, datetime_col
from quota_platform.samples.demo_org.model import (
    BIG_Z,
    DAY,
    ENTRY_QUALIFICATION_SHARE,
    HOUR,
    LAST_OPEN,
    LOST,
    MAX_SLIPS,
    MEDIAN_CYCLE_DAYS,
    MEDIAN_USD,
    NEW_BUSINESS,
    RENEWAL,
    RENEWAL_BUNCH,
    RENEWAL_SLIP,
    SIZE_SIGMA,
    STAGES,
    TYPE_SHARES,
    WON,
    Deal,
    Org,
    Rep,
    Seed,
    Stream,
    date_of,
    dn,
    entry_win_rate,
    month_end_dn,
    month_index,
    month_starts,
    next_quarter_start_dn,
    pick_type,
    quarter_end_dn,
    rep_win_rates,
    sf_id,
)

RENEWAL_UPLIFT = (0.04, 0.05)  # mean and sd of the price change at renewal
NEW_REP_RATE_RAMP = (0.4, 0.7, 0.9)  # a new hire's opportunity rate in months 0, 1, 2 after hire
BOOK_MULTIPLIER = 1.6  # the pre-history customer book, relative to a year of new-business wins
LOCAL_CURRENCY_SHARE = 0.85  # share of an EMEA rep's deals in the rep's own currency

ACCOUNT_WORDS = (
    "Acme", "Apex", "Blue Harbor", "Brightline", "Cascade", "Cedar", "Crestview", "Evergreen",
    "Falcon", "Granite", "Harbor Point", "Horizon", "Ironwood", "Juniper", "Keystone", "Lakeside",
    "Lumen", "Meridian", "Northwind", "Oakridge", "Pinnacle", "Quantum", "Redwood", "Riverbend",
    "Sable", "Silverline", "Summit", "Tidewater", "Trident", "Vertex", "Westfield", "Zenith",
)
ACCOUNT_INDUSTRIES = (
    "Logistics", "Health", "Foods", "Energy", "Capital", "Robotics", "Media", "Analytics",
    "Retail", "Manufacturing", "Labs", "Insurance", "Biotech", "Software", "Telecom", "Mobility",
)
ACCOUNT_SUFFIXES = {
    "USD": ("Inc", "Corp", "Group", "LLC"),
    "EUR": ("GmbH", "SA", "BV", "AG"),
    "GBP": ("Ltd", "plc"),
}


def round_amount(x: float) -> float:
    """Deal amounts: whole hundreds, at least 500."""
    return float(max(500, int(round(x / 100.0)) * 100))


def new_account(org: Org, s: Stream, currency: str) -> tuple[str, str]:
    """A new customer account: its Id and a made-up name whose suffix suits the currency."""
    org.accounts += 1
    words = (s.pick(ACCOUNT_WORDS), s.pick(ACCOUNT_INDUSTRIES), s.pick(ACCOUNT_SUFFIXES[currency]))
    name = " ".join(words)
    return sf_id("001", org.accounts), name


def deal_currency(s: Stream, rep: Rep) -> str:
    """A deal's currency: a USD rep's is USD; an EMEA rep's is mostly the rep's own currency."""
    if rep.currency == "USD" or s.u() < LOCAL_CURRENCY_SHARE:
        return rep.currency
    return "USD"


def work_time(s: Stream, rep: Rep) -> int:
    """Seconds into the day (UTC) during the rep's working hours."""
    start = 8 if rep.region == "EMEA" else 14
    return int((start + 9 * s.u()) * HOUR)


def new_deal_seeds(org: Org) -> list[Seed]:
    """Non-renewal opportunities: a Poisson number per rep-month, created on working days."""
    rng = org.rng_seeds
    s = Stream(rng)
    seeds: list[Seed] = []
    for rep in org.reps:
        pool = [new_account(org, s, rep.currency) for _ in range(20)]
        org.customer_pool[rep.user_id] = pool
        last_day = org.as_of
        if rep.left_date is not None:  # a leaver stops creating deals a month before leaving
            last_day = min(org.as_of, rep.left_date - timedelta(days=30))
        for month in month_starts(org.opp_start, org.as_of):
            lo = max(month, rep.hire_date, org.opp_start)
            hi = min(add_months(month, 1) - timedelta(days=1), last_day)
            if hi < lo:
                continue
            k = month_index(month) - month_index(rep.hire_date)
            ramp = NEW_REP_RATE_RAMP[k] if 0 <= k < len(NEW_REP_RATE_RAMP) else 1.0
            days_in_month = (add_months(month, 1) - month).days
            mu = rep.rate * org.growth(month) * ramp * ((hi - lo).days + 1) / days_in_month
            for _ in range(int(rng.poisson(mu))):
                day = dn(lo) + s.below((hi - lo).days + 1)
                opp_type = pick_type(s.u())
                z = s.normal()
                big = z > BIG_Z
                currency = deal_currency(s, rep)
                usd = MEDIAN_USD[opp_type] * rep.size_scale * math.exp(SIZE_SIGMA * z)
                amount = round_amount(usd * org.rates.rate(currency, date_of(day)))
                cycle = MEDIAN_CYCLE_DAYS[opp_type] * rep.team.cycle * math.exp(0.45 * s.normal())
                cycle *= 1.4 if big else 1.0
                entry = 1 if s.u() < ENTRY_QUALIFICATION_SHARE[opp_type] else 0
                if opp_type == NEW_BUSINESS:
                    account_id, account_name = new_account(org, s, currency)
                else:
                    account_id, account_name = s.pick(pool)
                seeds.append(
                    Seed(
                        rep=rep,
                        owner_id=rep.user_id,
                        opp_type=opp_type,
                        created_s=day * DAY + work_time(s, rep),
                        entry=entry,
                        amount=amount,
                        currency=currency,
                        due=day + int(min(max(cycle, 7.0), 300.0)),
                        big=big,
                        account_id=account_id,
                        account_name=account_name,
                    )
                )
    return seeds


def book_renewal_seeds(org: Org) -> list[Seed]:
    """Renewals of the customers won before the history starts (not in the data): one year
    of new-business wins at BOOK_MULTIPLIER times the rep's expected rate."""
    rng = org.rng_seeds
    s = Stream(rng)
    out: list[Seed] = []
    for rep in org.reps:
        if not org.has_book(rep):
            continue
        win_rate = entry_win_rate(rep_win_rates(rep)[0], NEW_BUSINESS)
        mu = rep.rate * TYPE_SHARES[NEW_BUSINESS] * win_rate * BOOK_MULTIPLIER
        pool = org.customer_pool[rep.user_id]
        for month in month_starts(add_months(org.opp_start, -12), add_months(org.opp_start, -1)):
            days = (add_months(month, 1) - month).days
            for _ in range(int(rng.poisson(mu))):
                close = dn(month) + s.below(days)
                currency = deal_currency(s, rep)
                usd = MEDIAN_USD[NEW_BUSINESS] * rep.size_scale * math.exp(SIZE_SIGMA * s.normal())
                amount = round_amount(usd * org.rates.rate(currency, date_of(close)))
                account = new_account(org, s, currency)
                pool.append(account)
                out.append(renewal_seed(org, s, rep, close, amount, currency, account))
    return out


def renewal_seed(
    org: Org, s: Stream, owner: Rep, won_day: int, amount: float, currency: str,
    account: tuple[str, str],
) -> Seed:
    """The renewal of a deal ``owner`` won on ``won_day``: due a year later, created 60-100
    days before (not before the history starts, and at least two weeks before it is due); a
    teammate takes it when the owner has left by then."""
    due = won_day + 365
    created_day = max(due - 60 - s.below(41), dn(org.opp_start) + s.below(20))
    due = max(due, created_day + 14)
    if owner.left_date is not None and date_of(created_day) >= owner.left_date:
        owner = org.replacement
    uplift = 1.0 + RENEWAL_UPLIFT[0] + RENEWAL_UPLIFT[1] * s.normal()
    return Seed(
        rep=owner,
        owner_id=owner.user_id,
        opp_type=RENEWAL,
        created_s=created_day * DAY + work_time(s, owner),
        entry=2 if s.u() < 0.7 else 3,
        amount=round_amount(amount * uplift),
        currency=currency,
        due=due,
        big=False,
        account_id=account[0],
        account_name=account[1],
    )


def push_time(s: Stream, floor: float, due: int) -> float:
    """When a close-date change is made: in the last three weeks before the current close
    date, after the previous change."""
    lo = max(floor + HOUR, (due - 21) * DAY)
    hi = (due - 1) * DAY + 20 * HOUR
    return lo + s.u() * (hi - lo) if hi > lo else floor + HOUR


def simulate(org: Org, seed: Seed, s: Stream) -> Deal:
    """One deal's life: its outcome stage by stage, its close-date plan (slips, quarter-end
    bunching), when it closes, and every stage, close-date and amount change as a history row.
    Rows after the as-of date are kept only as the deal's eventual outcome; a deal still open
    when its owner left goes to the owner's replacement."""
    rep = seed.rep
    renewal = seed.opp_type == RENEWAL
    conv = rep.renewal_conv if renewal else rep.conv
    # Outcome: move stage by stage until a conversion fails (lost) or the last one passes.
    stage = seed.entry
    while True:
        p = rep.big_last if (stage == LAST_OPEN and seed.big) else conv[stage]
        if s.u() >= p:
            won = False
            break
        if stage == LAST_OPEN:
            won = True
            break
        stage += 1
    reached = stage
    created = seed.created_s
    # Close-date plan: slips to later quarters, then quarter-end bunching.
    dues, pushes, floor = [seed.due], [], float(created)
    slip = rep.slip * (RENEWAL_SLIP if renewal else 1.0)
    while len(pushes) < MAX_SLIPS and s.u() < slip:
        floor = push_time(s, floor, dues[-1])
        pushes.append(floor)
        dues.append(next_quarter_start_dn(dues[-1]) + 5 + s.below(80))
    # Bunching: to the last two weeks of the quarter, or the last week of the month for reps
    # on monthly quotas.
    if rep.cadence == "month":
        period_end, window = month_end_dn(dues[-1]), 7
    else:
        period_end, window = quarter_end_dn(dues[-1]), 14
    bunch = rep.bunch * (RENEWAL_BUNCH if renewal else 1.0)
    if (seed.big or (won and s.u() < bunch)) and dues[-1] <= period_end - window:
        floor = push_time(s, floor, dues[-1])
        pushes.append(floor)
        dues.append(period_end - s.below(window))
    final_due = dues[-1]
    # When it closes.
    if won:
        end = final_due * DAY + work_time(s, rep)
    elif seed.big and reached == LAST_OPEN:
        end = max((final_due - s.below(10)) * DAY + work_time(s, rep), int(floor) + HOUR)
    else:
        horizon = final_due * DAY + 12 * HOUR
        frac = (reached - seed.entry + s.u()) / (LAST_OPEN - seed.entry + 1)
        end = int(created + HOUR + frac * (horizon - created - HOUR))
    # Events between creation and close: stage changes, close-date changes, amount changes.
    events: list[tuple[float, int, float]] = []
    changes = sorted(created + (end - created) * s.u() for _ in range(reached - seed.entry))
    for i, t in enumerate(changes):
        events.append((t, 0, float(seed.entry + i + 1)))
    for t, d in zip(pushes, dues[1:]):
        if t < end:
            events.append((t, 1, float(d)))
    u = s.u()
    n_amount = (0 if u < 0.6 else 1) if renewal else (0 if u < 0.35 else 1 if u < 0.75 else 2)
    sd = 0.08 if renewal else 0.25
    for _ in range(n_amount):
        events.append((created + (end - created) * s.u(), 2, math.exp(sd * s.normal())))
    events.sort()
    events.append((float(end), 0, float(WON if won else LOST)))

    stage_now, amount, due_now = seed.entry, seed.amount, seed.due
    rows = [(created, stage_now, amount, due_now)]
    for t, kind, value in events:
        if kind == 0:
            stage_now = int(value)
        elif kind == 1:
            due_now = int(value)
        else:
            amount = round_amount(amount * value)
        if stage_now in (WON, LOST):
            due_now = int(t) // DAY  # the close date of a closed deal is the day it closed
        time = max(int(t), rows[-1][0] + 60)
        rows.append((time, stage_now, amount, due_now))
    owner = seed.owner_id
    if rep is org.leaver and rep.left_date is not None and rows[-1][0] >= dn(rep.left_date) * DAY:
        owner = org.replacement.user_id  # open at departure: reassigned to a teammate
    visible = [r for r in rows if r[0] < org.as_of_end]
    return Deal(seed=seed, owner_id=owner, rows=visible, eventual=rows[-1])


def simulate_all(org: Org, say: Callable[[str], None]) -> list[Deal]:
    """Every deal created up to the as-of date: the new and expansion deals and the prior-book
    renewals, then, round by round, the renewals of the New Business and Renewal deals won in
    the previous round (renewals due later are kept in ``org.renewal_seeds`` for the quotas)."""
    s = Stream(org.rng_deals)
    seeds = new_deal_seeds(org)
    book = book_renewal_seeds(org)
    org.renewal_seeds = list(book)
    rep_by_id = {r.user_id: r for r in org.reps}
    say(f"  {len(seeds):,} new and expansion opportunities, {len(book):,} prior-book renewals")
    deals: list[Deal] = []
    batch = seeds + [b for b in book if b.created_s < org.as_of_end]
    rs = Stream(org.rng_seeds)
    while batch:
        simulated = [simulate(org, seed, s) for seed in batch]
        deals.extend(simulated)
        batch = []
        for deal in simulated:
            if deal.won and deal.seed.opp_type in (NEW_BUSINESS, RENEWAL):
                _, _, amount, close = deal.current
                renewal = renewal_seed(
                    org, rs, rep_by_id[deal.owner_id], close, amount, deal.seed.currency,
                    (deal.seed.account_id, deal.seed.account_name),
                )
                org.renewal_seeds.append(renewal)
                if renewal.created_s < org.as_of_end:
                    batch.append(renewal)
    return deals


def finish_deals(org: Org, deals: list[Deal]) -> None:
    """Ids in creation order, and a few deleted opportunities (two of them won)."""
    deals.sort(key=lambda d: d.seed.created_s)  # stable: ties keep generation order
    for deal in deals:
        deal.id = org.ids("006")
    rng = org.rng_extras
    won = [i for i, d in enumerate(deals) if d.won]
    other = [i for i, d in enumerate(deals) if not d.won]
    chosen = rng.choice(won, 2, replace=False).tolist()
    chosen += rng.choice(other, 10, replace=False).tolist()
    for i in chosen:
        deals[i].is_deleted = True


def opportunity_frames(org: Org, deals: list[Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The Opportunity rows (each deal as of the as-of date) and the OpportunityHistory rows (one
    per change up to the as-of date, Ids in time order)."""
    opp: dict[str, list] = {k: [] for k in OBJECTS["Opportunity"].field_names}
    hist: dict[str, list] = {k: [] for k in ["Id", *OBJECTS["OpportunityHistory"].field_names]}
    all_rows = []
    for deal in deals:
        seed = deal.seed
        time, stage, amount, close = deal.current
        name, prob, category, _ = STAGES[stage]
        label = f"Renewal {date_of(seed.due).year}" if seed.opp_type == RENEWAL else seed.opp_type
        opp["Id"].append(deal.id)
        opp["Name"].append(f"{seed.account_name} - {label}")
        opp["AccountId"].append(seed.account_id)
        opp["OwnerId"].append(deal.owner_id)
        opp["Type"].append(seed.opp_type)
        opp["StageName"].append(name)
        opp["Amount"].append(amount)
        opp["CurrencyIsoCode"].append(seed.currency)
        opp["Probability"].append(prob)
        opp["CloseDate"].append(close)
        opp["CreatedDate"].append(seed.created_s)
        opp["IsClosed"].append(stage in (WON, LOST))
        opp["IsWon"].append(stage == WON)
        opp["ForecastCategoryName"].append(category)
        opp["IsDeleted"].append(deal.is_deleted)
        all_rows.extend((r[0], deal.id, r) for r in deal.rows)
    all_rows.sort(key=lambda x: (x[0], x[1]))
    for _, opp_id, (time, stage, amount, close) in all_rows:
        name, prob, _, category = STAGES[stage]
        hist["Id"].append(org.ids("008"))
        hist["OpportunityId"].append(opp_id)
        hist["CreatedDate"].append(time)
        hist["StageName"].append(name)
        hist["Amount"].append(amount)
        hist["CloseDate"].append(close)
        hist["Probability"].append(prob)
        hist["ForecastCategory"].append(category)
    opportunities = pl.DataFrame(opp).with_columns(
        date_col("CloseDate"), datetime_col("CreatedDate")
    )
    history = (
        pl.DataFrame(hist)
        .with_columns(date_col("CloseDate"), datetime_col("CreatedDate"))
        .sort("OpportunityId", "Id")
    )
    return opportunities, history
