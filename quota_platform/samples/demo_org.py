"""The demo org: a synthetic, deterministic, Salesforce-shaped sales org written as one CSV file per
object of the data contract (``User.csv``, ``Opportunity.csv``, ...), with the generating truth
beside it in ``_truth/`` so that win-rate estimates and projections can be scored against it.

**The org.** A VP of Sales, two directors, eight sales managers and 60 active account executives
in eight teams (Enterprise East/West, Mid-Market East/West, Strategic Accounts, Commercial, Growth,
EMEA), one rep who left (inactive, with history), three sales engineers and an analytics overlay
specialist (overlay split owners, no quota) and a sales-ops user. EMEA reps are based in Europe:
their quotas and most of their deals are in EUR or GBP. Six reps were hired in the last six months
(two of them with quotas already reduced for ramp, ``Ramp_Adjusted__c`` true), three mid-way
through the history. Every rep carries NewBusiness and Expansion quotas, and a Renewal quota from
the first period with renewals due (ForecastingType has exactly these three; see
FORECASTING_TYPES); quotas are quarterly except for the ten high-velocity Commercial reps
(monthly); four reps also have a product-family quota, and a handful of quarterly quotas have no
PeriodId. New-business and expansion plans are set from the territory's capacity (opportunity rate
x deal size x the win rate of an average rep), renewal plans from the amount up for renewal, so
attainment spreads around 100% by skill and luck; about 10% of quota periods change mid-period
(ForecastingQuotaHistory).

**Opportunities.** Opportunities are created from 27-30 months before the as-of date (one quarter
before the first quota period, which is the quarter two years back) up to it, as a
Poisson process per rep (rate growing 8% a year; new hires ramp up over three months). Each rep has
a skill multiplier that multiplies the odds of moving from one stage to the next, so the true
probability that a deal reaching a stage is eventually won is the product of the stage conversions
from there on. A deal advances stage by stage until it fails a conversion (Closed Lost at that
stage) or passes the last one (Closed Won). Big deals (size draw above the 92nd percentile) convert
from Negotiation at much lower odds and, when lost there, are lost in the last days of the quarter.
Renewals are created for won New Business and Renewal deals (and for a pre-history book of
customers) about 60-100 days before the one-year anniversary, and convert at much higher odds.
Each deal has a planned close date (created + a log-normal cycle); at each planned close date it
slips to a later quarter with the rep's slip probability, and won deals tend to be pulled to the
last two weeks of their quarter (quarter-end bunching; the last week of the month for reps on
monthly quotas). Amounts change now and then during the life of a deal. Every change is an
OpportunityHistory row; the Opportunity record equals the last row on or before the as-of date,
and nothing after the as-of date is written (the simulated future of the open pipeline goes to
``_truth/open_pipeline_outcomes.csv``).

**Money and crediting.** Line items (Product2 families Platform, Analytics, Services) sum to each
opportunity's Amount; about 10% of new and expansion deals carry a two-owner revenue split that
totals 100%, and about 10% an overlay split to a sales engineer or the overlay specialist. EUR and
GBP convert at monthly DatedConversionRate rows (units per 1 USD); the latest row runs to
9999-12-31, as in Salesforce, so every close date and quota period has a rate.

Everything comes from ``numpy.random.default_rng(seed)`` (split into independent streams per
concern), so the same as-of date and seed give byte-identical files. The fiscal year is the
calendar year (the contract's default).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from quota_platform.lib.core.calendar import DEFAULT_RAMP, add_months, ramp_factor
from quota_platform.lib.core.contract import OBJECTS

GENERATOR_VERSION = "1.0.0"

# --- Calendar and time ------------------------------------------------------------------------

DAY = 86_400
HOUR = 3_600
EPOCH = date(1970, 1, 1)
FAR_FUTURE = date(9999, 12, 31)  # Salesforce's NextStartDate of the latest conversion rate
QUOTA_HISTORY_MONTHS = 24  # quotas start at the quarter containing the as-of date minus this
WARM_UP_MONTHS = 3  # opportunities start this long before the first quota period


def _dn(d: date) -> int:
    """Day number (days since 1970-01-01)."""
    return (d - EPOCH).days


def _date(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


def _quarter_start(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def _quarter_end(d: date) -> date:
    return add_months(_quarter_start(d), 3) - timedelta(days=1)


@lru_cache(maxsize=None)
def _quarter_end_dn(n: int) -> int:
    return _dn(_quarter_end(_date(n)))


@lru_cache(maxsize=None)
def _month_end_dn(n: int) -> int:
    d = _date(n)
    return _dn(add_months(date(d.year, d.month, 1), 1)) - 1


@lru_cache(maxsize=None)
def _next_quarter_start_dn(n: int) -> int:
    return _dn(add_months(_quarter_start(_date(n)), 3))


def _month_starts(first: date, last: date) -> list[date]:
    """First days of the months from ``first``'s month to ``last``'s month."""
    out, m = [], date(first.year, first.month, 1)
    while m <= last:
        out.append(m)
        m = add_months(m, 1)
    return out


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


# --- Stages -----------------------------------------------------------------------------------

# (ApiName, DefaultProbability, Opportunity.ForecastCategoryName, OpportunityHistory.ForecastCategory)
STAGES: tuple[tuple[str, float, str, str], ...] = (
    ("Prospecting", 10.0, "Pipeline", "Pipeline"),
    ("Qualification", 20.0, "Pipeline", "Pipeline"),
    ("Needs Analysis", 30.0, "Pipeline", "Pipeline"),
    ("Value Proposition", 50.0, "Pipeline", "Pipeline"),
    ("Proposal/Price Quote", 70.0, "Best Case", "BestCase"),
    ("Negotiation/Review", 90.0, "Commit", "Forecast"),
    ("Closed Won", 100.0, "Closed", "Closed"),
    ("Closed Lost", 0.0, "Omitted", "Omitted"),
)
N_OPEN = 6
LAST_OPEN = N_OPEN - 1
WON = 6
LOST = 7
STAGE_SLUGS = (
    "prospecting",
    "qualification",
    "needs_analysis",
    "value_proposition",
    "proposal_price_quote",
    "negotiation_review",
)

# Probability that a deal of an average rep (skill 1) at each open stage moves on (from the last
# open stage: is won). A rep's skill multiplies the odds of every conversion.
BASE_CONVERSION = (0.62, 0.72, 0.78, 0.82, 0.85, 0.80)
RENEWAL_ODDS = 7.0  # renewals convert at 7x the odds
BIG_LAST_ODDS = 0.3  # big deals convert from Negotiation/Review at 0.3x the odds
BIG_Z = 1.4  # a deal is big when its size draw z (standard normal) exceeds this
SIZE_SIGMA = 0.55  # log-normal spread of deal sizes around the rep's median
MAX_SLIPS = 3
RENEWAL_SLIP = 0.5  # renewals slip at half the rep's slip probability
RENEWAL_BUNCH = 0.25  # and bunch at quarter end a quarter as often

# --- Opportunity types, sizes and products ------------------------------------------------------

NEW_BUSINESS = "New Business"
RENEWAL = "Renewal"
EXPANSION_TYPES = ("Expansion", "Upsell", "Existing Business")
# Share of a rep's non-renewal opportunities by Type.
TYPE_SHARES = {NEW_BUSINESS: 0.55, "Expansion": 0.20, "Upsell": 0.12, "Existing Business": 0.13}
# Median deal size in USD for a rep with size scale 1, and median sales cycle in days.
MEDIAN_USD = {
    NEW_BUSINESS: 25_000.0, "Expansion": 11_000.0, "Upsell": 8_000.0, "Existing Business": 9_000.0
}
MEDIAN_CYCLE_DAYS = {NEW_BUSINESS: 50.0, "Expansion": 32.0, "Upsell": 28.0, "Existing Business": 30.0}
# Entry stage mix: new business mostly starts at Prospecting, existing customers at Qualification.
ENTRY_QUALIFICATION_SHARE = {
    NEW_BUSINESS: 0.2, "Expansion": 0.6, "Upsell": 0.6, "Existing Business": 0.6
}
RENEWAL_UPLIFT = (0.04, 0.05)  # mean and sd of the price change at renewal
GROWTH = 1.08  # yearly growth of opportunity rates and quotas
NEW_REP_RATE_RAMP = (0.4, 0.7, 0.9)  # a new hire's opportunity rate in months 0, 1, 2 after hire
BOOK_MULTIPLIER = 1.6  # the pre-history customer book, relative to a year of new-business wins

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

CURRENCIES = ("USD", "EUR", "GBP")
FX_BASE = {"EUR": 0.92, "GBP": 0.79}  # units per 1 USD

# --- Quotas -----------------------------------------------------------------------------------

# OpportunityRevenue is left out on purpose: with that type in the org the platform credits
# "bookings" to every rep, so reps without a bookings quota would all show credit without quota.
FORECASTING_TYPES = ("NewBusiness", "Expansion", "Renewal")
PLAN_FACTOR = 1.0  # quota = PLAN_FACTOR x expected bookings of an average rep in the territory
RENEWAL_TARGET = 0.85  # renewal quota = this share of the amount up for renewal in the period
FAMILY_SHARE = {"Platform": 0.80, "Analytics": 0.48}  # family quota relative to its type quota
QUOTA_CHANGE_SHARE = 0.10
QUOTA_CHANGE_FACTORS = (0.85, 0.9, 1.1, 1.15, 1.25)
MISSING_PERIOD_ID_QUOTAS = 6

# --- Teams and people -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Team:
    name: str
    director: int  # 0 = Americas, 1 = Strategic & International
    size: int
    rate: float  # new opportunities per rep-month
    scale: float  # deal size relative to MEDIAN_USD
    cycle: float  # sales cycle relative to MEDIAN_CYCLE_DAYS
    title: str


TEAMS = (
    _Team("Enterprise East", 0, 8, 5.5, 2.0, 1.4, "Enterprise Account Executive"),
    _Team("Enterprise West", 0, 8, 5.5, 2.0, 1.4, "Enterprise Account Executive"),
    _Team("Mid-Market East", 0, 8, 6.5, 1.0, 1.0, "Account Executive"),
    _Team("Mid-Market West", 0, 8, 6.5, 1.0, 1.0, "Account Executive"),
    _Team("Strategic Accounts", 1, 6, 4.5, 3.5, 1.7, "Strategic Account Director"),
    _Team("Commercial", 1, 10, 20.0, 0.25, 0.5, "Commercial Account Executive"),
    _Team("Growth", 1, 5, 8.0, 0.8, 0.9, "Growth Account Executive"),
    _Team("EMEA", 1, 7, 6.0, 1.3, 1.1, "Account Executive, EMEA"),
)
DIRECTORS = ("Americas", "Strategic & International")

# Reps hired recently: (team, slot) -> days before the as-of date.
NEW_HIRES = {
    ("Enterprise West", 7): 170,
    ("Mid-Market East", 7): 140,
    ("Commercial", 7): 110,
    ("Mid-Market West", 7): 80,
    ("EMEA", 6): 50,
    ("Growth", 4): 25,
}
RAMP_ADJUSTED = (("Commercial", 7), ("Mid-Market West", 7))
MID_HISTORY_HIRES = {("Enterprise East", 7): 540, ("Mid-Market West", 6): 420, ("Growth", 3): 330}
MONTHLY_CADENCE_TEAMS = ("Commercial",)  # high-velocity reps on monthly quotas
FAMILY_QUOTAS = {
    ("Enterprise East", 0): ("NewBusiness", "Platform"),
    ("Enterprise East", 1): ("NewBusiness", "Platform"),
    ("Mid-Market West", 0): ("NewBusiness", "Platform"),
    ("Strategic Accounts", 0): ("Expansion", "Analytics"),
}
EMEA_CURRENCY = ("EUR", "EUR", "EUR", "GBP", "GBP", "GBP", "EUR")
LEAVER_TEAM = "Mid-Market East"
LEAVER_DAYS_BEFORE_AS_OF = 215
LOCAL_CURRENCY_SHARE = 0.85  # share of an EMEA rep's deals in the rep's own currency

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Mia", "William", "Amelia", "Benjamin", "Harper", "Lucas", "Evelyn", "Henry", "Abigail",
    "Theodore", "Priya", "Mateo", "Chloe", "Daniel", "Grace", "Samuel", "Aisha", "David", "Nora",
    "Joseph", "Hannah", "Carlos", "Leah", "Kenji", "Zoe", "Gabriel", "Fatima", "Julian", "Ingrid",
    "Marco",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson",
    "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Nguyen", "Hill", "Patel", "Schmidt", "Dubois", "Rossi",
    "O'Brien", "Kowalski",
)
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

# --- Salesforce-looking Ids ---------------------------------------------------------------------

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def sf_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce-style Id: key prefix, pod, counter in base 62, and the real
    case-safe checksum suffix (one character per five, from which of them are upper case)."""
    digits = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    body = f"{prefix}8d0000{digits}"
    suffix = "".join(
        _SUFFIX_CHARS[sum(1 << i for i, ch in enumerate(body[j : j + 5]) if "A" <= ch <= "Z")]
        for j in (0, 5, 10)
    )
    return body + suffix


class _Ids:
    """Sequential Ids per key prefix."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        n = self._next.get(prefix, 1)
        self._next[prefix] = n + 1
        return sf_id(prefix, n)


# --- Random draws -------------------------------------------------------------------------------


class _Stream:
    """Scalar draws from one numpy Generator, served from blocks: the per-deal simulation makes a
    few dozen draws per deal, and block draws keep that fast while the sequence stays fixed."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 15) -> None:
        self._rng = rng
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def u(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.random(self._block).tolist()
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return v

    def normal(self) -> float:
        return math.sqrt(-2.0 * math.log(1.0 - self.u())) * math.cos(2.0 * math.pi * self.u())

    def below(self, n: int) -> int:
        """An integer in 0..n-1."""
        return min(int(self.u() * n), n - 1)

    def pick(self, items):
        return items[self.below(len(items))]


def _pick_type(u: float) -> str:
    """The non-renewal Type whose share interval (TYPE_SHARES, in order) contains ``u``."""
    for opp_type, share in TYPE_SHARES.items():
        if u < share:
            return opp_type
        u -= share
    return opp_type


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _adjust(p: float, odds: float) -> float:
    o = p / (1.0 - p) * odds
    return o / (1.0 + o)


def _round_amount(x: float) -> float:
    """Deal amounts: whole hundreds, at least 500."""
    return float(max(500, int(round(x / 100.0)) * 100))


def _round_quota(x: float) -> float:
    step = 5_000 if x >= 100_000 else 1_000 if x >= 20_000 else 500
    return float(max(step, int(round(x / step)) * step))


# --- The model's pieces ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Rep:
    user_id: str
    name: str
    manager_id: str
    team: _Team
    slot: int
    currency: str
    cadence: str  # "month" or "quarter"
    family_quota: tuple[str, str] | None  # (ForecastingType DeveloperName, ProductFamily)
    ramp_adjusted: bool
    hire_date: date
    left_date: date | None
    skill: float
    size_scale: float
    rate: float
    slip: float
    bunch: float
    conv: tuple[float, ...] = ()
    big_last: float = 0.0
    renewal_conv: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.conv = tuple(_adjust(p, self.skill) for p in BASE_CONVERSION)
        self.big_last = _adjust(BASE_CONVERSION[LAST_OPEN], self.skill * BIG_LAST_ODDS)
        self.renewal_conv = tuple(_adjust(p, self.skill * RENEWAL_ODDS) for p in BASE_CONVERSION)

    @property
    def region(self) -> str:
        return "EMEA" if self.team.name == "EMEA" else "US"

    def active_on(self, d: date) -> bool:
        return self.hire_date <= d and (self.left_date is None or d < self.left_date)


@dataclasses.dataclass
class _Seed:
    """An opportunity as created: who drives it, what it is, and its first plan."""

    rep: _Rep  # whose parameters generate the deal
    owner_id: str
    opp_type: str
    created_s: int
    entry: int
    amount: float  # in ``currency``
    currency: str
    due: int  # planned close date, day number
    big: bool
    account_id: str
    account_name: str


@dataclasses.dataclass
class _Deal:
    seed: _Seed
    owner_id: str
    rows: list[tuple[int, int, float, int]]  # (time s, stage index, amount, close day) up to as-of
    eventual: tuple[int, int, float, int]  # the terminal row, possibly after the as-of date
    id: str = ""
    is_deleted: bool = False

    @property
    def current(self) -> tuple[int, int, float, int]:
        return self.rows[-1]

    @property
    def won(self) -> bool:
        return self.current[1] == WON


def _stage_win_rates(conv: tuple[float, ...], last: float) -> list[float]:
    """P(eventually won | reached stage k) for each open stage, given the stage conversions and
    the (mixed) conversion from the last open stage."""
    out = []
    for k in range(N_OPEN):
        p = last
        for j in range(k, LAST_OPEN):
            p *= conv[j]
        out.append(p)
    return out


BIG_SHARE = 1.0 - _phi(BIG_Z)


def _rep_win_rates(rep: _Rep) -> tuple[list[float], list[float]]:
    """The rep's true stage win rates: non-renewal deals (big-deal share mixed in at the last
    stage) and renewals."""
    last = (1 - BIG_SHARE) * rep.conv[LAST_OPEN] + BIG_SHARE * rep.big_last
    renewal = _stage_win_rates(rep.renewal_conv, rep.renewal_conv[LAST_OPEN])
    return _stage_win_rates(rep.conv, last), renewal


def _entry_win_rate(rates: list[float], opp_type: str) -> float:
    q = ENTRY_QUALIFICATION_SHARE[opp_type]
    return (1 - q) * rates[0] + q * rates[1]


def _expected_won_usd(skill: float, opp_type: str, size_scale: float) -> float:
    """Expected won USD per created deal of ``opp_type`` for a rep of this skill and size scale:
    big deals (size draw above BIG_Z) convert less at the last stage."""
    conv = tuple(_adjust(p, skill) for p in BASE_CONVERSION)
    big_last = _adjust(BASE_CONVERSION[LAST_OPEN], skill * BIG_LAST_ODDS)
    normal = _entry_win_rate(_stage_win_rates(conv, conv[LAST_OPEN]), opp_type)
    big = _entry_win_rate(_stage_win_rates(conv, big_last), opp_type)
    s = SIZE_SIGMA
    mean_factor = math.exp(s * s / 2)
    return (
        MEDIAN_USD[opp_type]
        * size_scale
        * mean_factor
        * (normal * _phi(BIG_Z - s) + big * _phi(s - BIG_Z))
    )


def _expected_monthly_usd(rep: _Rep, skill: float, types: tuple[str, ...]) -> float:
    """Expected won USD per month (growth factor 1) from the rep's new deals of ``types``."""
    return sum(
        rep.rate * TYPE_SHARES[t] * _expected_won_usd(skill, t, rep.size_scale) for t in types
    )


# --- Exchange rates -----------------------------------------------------------------------------


class _Rates:
    """Monthly rates (units per USD) from ``first`` to ``last`` month; dates outside the range use
    the nearest month (the latest rate runs on, as in Salesforce)."""

    def __init__(self, rng: np.random.Generator, first: date, last: date) -> None:
        self.months = _month_starts(first, last)
        self._first = _month_index(self.months[0])
        self.table: dict[str, list[float]] = {"USD": [1.0] * len(self.months)}
        for cur in ("EUR", "GBP"):
            base = math.log(FX_BASE[cur])
            x, values = base, []
            for _ in self.months:
                x += 0.15 * (base - x) + rng.normal(0.0, 0.008)
                values.append(round(math.exp(x), 6))
            self.table[cur] = values

    def rate(self, currency: str, d: date) -> float:
        i = min(max(_month_index(d) - self._first, 0), len(self.months) - 1)
        return self.table[currency][i]


# --- The generator --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoOrgSummary:
    """What :func:`generate_demo_org` wrote: rows per object file (in contract order)."""

    out_dir: Path
    as_of: date
    seed: int
    counts: dict[str, int]


class _Org:
    """One generation run; the steps are methods so each reads on its own."""

    def __init__(self, as_of: date, seed: int) -> None:
        self.as_of = as_of
        self.seed = seed
        (
            self.rng_people,
            self.rng_fx,
            self.rng_seeds,
            self.rng_deals,
            self.rng_extras,
            self.rng_quotas,
        ) = np.random.default_rng(seed).spawn(6)
        self.ids = _Ids()
        as_of_month = date(as_of.year, as_of.month, 1)
        # Quotas from the quarter two years back (24-27 months of quota history); opportunities
        # one quarter earlier, so that the first quota period already has a full pipeline.
        self.quota_start = _quarter_start(add_months(as_of, -QUOTA_HISTORY_MONTHS))
        self.opp_start = add_months(self.quota_start, -WARM_UP_MONTHS)
        self.period_first = self.opp_start
        self.horizon_start = add_months(_quarter_start(as_of), 3)  # the next quarter
        self.horizon_end = _quarter_end(self.horizon_start)
        self.as_of_end = (_dn(as_of) + 1) * DAY
        self.rates = _Rates(self.rng_fx, self.period_first, as_of_month)
        self.users: list[dict] = []
        self.reps: list[_Rep] = []
        self.leaver: _Rep | None = None
        self.replacement: _Rep | None = None
        self.overlay_by_director: dict[int, list[str]] = {}
        self.analytics_specialist = ""
        self.accounts = 0
        self.customer_pool: dict[str, list[tuple[str, str]]] = {}
        self.renewal_seeds: list[_Seed] = []  # every renewal, also ones created after the as-of date
        self.families: dict[str, list[str]] = {}  # product families of each opportunity's line items

    # --- people ------------------------------------------------------------------------------
    def build_people(self) -> None:
        rng = self.rng_people
        n_users = 1 + len(DIRECTORS) + len(TEAMS) + sum(t.size for t in TEAMS) + 1 + 4 + 1
        combos = rng.permutation(len(FIRST_NAMES) * len(LAST_NAMES))[:n_users]
        names = [
            (FIRST_NAMES[c // len(LAST_NAMES)], LAST_NAMES[c % len(LAST_NAMES)]) for c in combos.tolist()
        ]
        name_iter = iter(names)

        def old_hire() -> date:
            return self.opp_start - timedelta(days=int(rng.integers(200, 2500)))

        def add_user(title: str, manager: str | None, hire: date, active: bool = True) -> dict:
            first, last = next(name_iter)
            user = {
                "Id": self.ids("005"),
                "Name": f"{first} {last}",
                "Email": f"{first}.{last}@example.com".lower().replace("'", ""),
                "ManagerId": manager,
                "IsActive": active,
                "Hire_Date__c": hire,
                "Title": title,
            }
            self.users.append(user)
            return user

        vp = add_user("VP of Sales", None, old_hire())
        directors = [add_user(f"Director of Sales, {d}", vp["Id"], old_hire()) for d in DIRECTORS]
        managers = [
            add_user(f"Sales Manager, {t.name}", directors[t.director]["Id"], old_hire()) for t in TEAMS
        ]
        for team, manager in zip(TEAMS, managers):
            for slot in range(team.size):
                key = (team.name, slot)
                if key in NEW_HIRES:
                    hire = self.as_of - timedelta(days=NEW_HIRES[key])
                elif key in MID_HISTORY_HIRES:
                    hire = self.as_of - timedelta(days=MID_HISTORY_HIRES[key])
                else:
                    hire = old_hire()
                user = add_user(team.title, manager["Id"], hire)
                self.reps.append(self._rep(user, team, slot, hire, None))
        team = next(t for t in TEAMS if t.name == LEAVER_TEAM)
        manager = managers[TEAMS.index(team)]
        left = self.as_of - timedelta(days=LEAVER_DAYS_BEFORE_AS_OF)
        user = add_user(team.title, manager["Id"], old_hire(), active=False)
        self.leaver = self._rep(user, team, team.size, user["Hire_Date__c"], left)
        self.reps.append(self.leaver)
        self.replacement = next(r for r in self.reps if r.team is team and r.slot == 0)
        for director_ix, count in ((0, 2), (1, 1)):
            director = directors[director_ix]["Id"]
            self.overlay_by_director[director_ix] = [
                add_user("Sales Engineer", director, old_hire())["Id"] for _ in range(count)
            ]
        self.analytics_specialist = add_user("Analytics Overlay Specialist", vp["Id"], old_hire())["Id"]
        add_user("Sales Operations Manager", vp["Id"], old_hire())

    def _rep(self, user: dict, team: _Team, slot: int, hire: date, left: date | None) -> _Rep:
        rng = self.rng_people
        key = (team.name, slot)
        monthly = team.name in MONTHLY_CADENCE_TEAMS
        return _Rep(
            user_id=user["Id"],
            name=user["Name"],
            manager_id=user["ManagerId"],
            team=team,
            slot=slot,
            currency=EMEA_CURRENCY[slot % len(EMEA_CURRENCY)] if team.name == "EMEA" else "USD",
            cadence="month" if monthly else "quarter",
            family_quota=FAMILY_QUOTAS.get(key),
            ramp_adjusted=key in RAMP_ADJUSTED,
            hire_date=hire,
            left_date=left,
            skill=float(np.clip(math.exp(rng.normal(0.0, 0.3)), 0.5, 2.0)),
            size_scale=team.scale * math.exp(rng.normal(0.0, 0.2)),
            rate=team.rate * math.exp(rng.normal(0.0, 0.15)),
            slip=float(rng.uniform(0.15, 0.35)),
            bunch=float(rng.uniform(0.2, 0.45)),
        )

    def growth(self, d: date) -> float:
        return GROWTH ** (d.year - self.opp_start.year)

    def has_book(self, rep: _Rep) -> bool:
        """Tenured reps inherit a book of customers that renews during the history."""
        return rep.hire_date <= self.opp_start - timedelta(days=365)

    # --- accounts ----------------------------------------------------------------------------
    def new_account(self, s: _Stream, currency: str) -> tuple[str, str]:
        self.accounts += 1
        words = (s.pick(ACCOUNT_WORDS), s.pick(ACCOUNT_INDUSTRIES), s.pick(ACCOUNT_SUFFIXES[currency]))
        name = " ".join(words)
        return sf_id("001", self.accounts), name

    def deal_currency(self, s: _Stream, rep: _Rep) -> str:
        if rep.currency == "USD" or s.u() < LOCAL_CURRENCY_SHARE:
            return rep.currency
        return "USD"

    def work_time(self, s: _Stream, rep: _Rep) -> int:
        """Seconds into the day (UTC) during the rep's working hours."""
        start = 8 if rep.region == "EMEA" else 14
        return int((start + 9 * s.u()) * HOUR)

    # --- opportunity seeds -------------------------------------------------------------------
    def new_deal_seeds(self) -> list[_Seed]:
        """Non-renewal opportunities: a Poisson number per rep-month, created on working days."""
        rng = self.rng_seeds
        s = _Stream(rng)
        seeds: list[_Seed] = []
        for rep in self.reps:
            pool = [self.new_account(s, rep.currency) for _ in range(20)]
            self.customer_pool[rep.user_id] = pool
            last_day = self.as_of
            if rep.left_date is not None:  # a leaver stops creating deals a month before leaving
                last_day = min(self.as_of, rep.left_date - timedelta(days=30))
            for month in _month_starts(self.opp_start, self.as_of):
                lo = max(month, rep.hire_date, self.opp_start)
                hi = min(add_months(month, 1) - timedelta(days=1), last_day)
                if hi < lo:
                    continue
                k = _month_index(month) - _month_index(rep.hire_date)
                ramp = NEW_REP_RATE_RAMP[k] if 0 <= k < len(NEW_REP_RATE_RAMP) else 1.0
                days_in_month = (add_months(month, 1) - month).days
                mu = rep.rate * self.growth(month) * ramp * ((hi - lo).days + 1) / days_in_month
                for _ in range(int(rng.poisson(mu))):
                    day = _dn(lo) + s.below((hi - lo).days + 1)
                    opp_type = _pick_type(s.u())
                    z = s.normal()
                    big = z > BIG_Z
                    currency = self.deal_currency(s, rep)
                    usd = MEDIAN_USD[opp_type] * rep.size_scale * math.exp(SIZE_SIGMA * z)
                    amount = _round_amount(usd * self.rates.rate(currency, _date(day)))
                    cycle = MEDIAN_CYCLE_DAYS[opp_type] * rep.team.cycle * math.exp(0.45 * s.normal())
                    cycle *= 1.4 if big else 1.0
                    entry = 1 if s.u() < ENTRY_QUALIFICATION_SHARE[opp_type] else 0
                    if opp_type == NEW_BUSINESS:
                        account_id, account_name = self.new_account(s, currency)
                    else:
                        account_id, account_name = s.pick(pool)
                    seeds.append(
                        _Seed(
                            rep=rep,
                            owner_id=rep.user_id,
                            opp_type=opp_type,
                            created_s=day * DAY + self.work_time(s, rep),
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

    def book_renewal_seeds(self) -> list[_Seed]:
        """Renewals of the customers won before the history starts (not in the data): one year
        of new-business wins at BOOK_MULTIPLIER times the rep's expected rate."""
        rng = self.rng_seeds
        s = _Stream(rng)
        out: list[_Seed] = []
        for rep in self.reps:
            if not self.has_book(rep):
                continue
            win_rate = _entry_win_rate(_rep_win_rates(rep)[0], NEW_BUSINESS)
            mu = rep.rate * TYPE_SHARES[NEW_BUSINESS] * win_rate * BOOK_MULTIPLIER
            pool = self.customer_pool[rep.user_id]
            for month in _month_starts(add_months(self.opp_start, -12), add_months(self.opp_start, -1)):
                days = (add_months(month, 1) - month).days
                for _ in range(int(rng.poisson(mu))):
                    close = _dn(month) + s.below(days)
                    currency = self.deal_currency(s, rep)
                    usd = MEDIAN_USD[NEW_BUSINESS] * rep.size_scale * math.exp(SIZE_SIGMA * s.normal())
                    amount = _round_amount(usd * self.rates.rate(currency, _date(close)))
                    account = self.new_account(s, currency)
                    pool.append(account)
                    out.append(self.renewal_seed(s, rep, close, amount, currency, account))
        return out

    def renewal_seed(
        self, s: _Stream, owner: _Rep, won_day: int, amount: float, currency: str,
        account: tuple[str, str],
    ) -> _Seed:
        """The renewal of a deal ``owner`` won on ``won_day``: due a year later, created 60-100
        days before (not before the history starts, and at least two weeks before it is due); a
        teammate takes it when the owner has left by then."""
        due = won_day + 365
        created_day = max(due - 60 - s.below(41), _dn(self.opp_start) + s.below(20))
        due = max(due, created_day + 14)
        if owner.left_date is not None and _date(created_day) >= owner.left_date:
            owner = self.replacement
        uplift = 1.0 + RENEWAL_UPLIFT[0] + RENEWAL_UPLIFT[1] * s.normal()
        return _Seed(
            rep=owner,
            owner_id=owner.user_id,
            opp_type=RENEWAL,
            created_s=created_day * DAY + self.work_time(s, owner),
            entry=2 if s.u() < 0.7 else 3,
            amount=_round_amount(amount * uplift),
            currency=currency,
            due=due,
            big=False,
            account_id=account[0],
            account_name=account[1],
        )

    # --- simulation --------------------------------------------------------------------------
    def push_time(self, s: _Stream, floor: float, due: int) -> float:
        """When a close-date change is made: in the last three weeks before the current close
        date, after the previous change."""
        lo = max(floor + HOUR, (due - 21) * DAY)
        hi = (due - 1) * DAY + 20 * HOUR
        return lo + s.u() * (hi - lo) if hi > lo else floor + HOUR

    def simulate(self, seed: _Seed, s: _Stream) -> _Deal:
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
            floor = self.push_time(s, floor, dues[-1])
            pushes.append(floor)
            dues.append(_next_quarter_start_dn(dues[-1]) + 5 + s.below(80))
        # Bunching: to the last two weeks of the quarter, or the last week of the month for reps
        # on monthly quotas.
        if rep.cadence == "month":
            period_end, window = _month_end_dn(dues[-1]), 7
        else:
            period_end, window = _quarter_end_dn(dues[-1]), 14
        bunch = rep.bunch * (RENEWAL_BUNCH if renewal else 1.0)
        if (seed.big or (won and s.u() < bunch)) and dues[-1] <= period_end - window:
            floor = self.push_time(s, floor, dues[-1])
            pushes.append(floor)
            dues.append(period_end - s.below(window))
        final_due = dues[-1]
        # When it closes.
        if won:
            end = final_due * DAY + self.work_time(s, rep)
        elif seed.big and reached == LAST_OPEN:
            end = max((final_due - s.below(10)) * DAY + self.work_time(s, rep), int(floor) + HOUR)
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
                amount = _round_amount(amount * value)
            if stage_now in (WON, LOST):
                due_now = int(t) // DAY  # the close date of a closed deal is the day it closed
            time = max(int(t), rows[-1][0] + 60)
            rows.append((time, stage_now, amount, due_now))
        owner = seed.owner_id
        if rep is self.leaver and rep.left_date is not None and rows[-1][0] >= _dn(rep.left_date) * DAY:
            owner = self.replacement.user_id  # open at departure: reassigned to a teammate
        visible = [r for r in rows if r[0] < self.as_of_end]
        return _Deal(seed=seed, owner_id=owner, rows=visible, eventual=rows[-1])

    def simulate_all(self, say: Callable[[str], None]) -> list[_Deal]:
        s = _Stream(self.rng_deals)
        seeds = self.new_deal_seeds()
        book = self.book_renewal_seeds()
        self.renewal_seeds = list(book)
        rep_by_id = {r.user_id: r for r in self.reps}
        say(f"  {len(seeds):,} new and expansion opportunities, {len(book):,} prior-book renewals")
        deals: list[_Deal] = []
        batch = seeds + [b for b in book if b.created_s < self.as_of_end]
        rs = _Stream(self.rng_seeds)
        while batch:
            simulated = [self.simulate(seed, s) for seed in batch]
            deals.extend(simulated)
            batch = []
            for deal in simulated:
                if deal.won and deal.seed.opp_type in (NEW_BUSINESS, RENEWAL):
                    _, _, amount, close = deal.current
                    renewal = self.renewal_seed(
                        rs, rep_by_id[deal.owner_id], close, amount, deal.seed.currency,
                        (deal.seed.account_id, deal.seed.account_name),
                    )
                    self.renewal_seeds.append(renewal)
                    if renewal.created_s < self.as_of_end:
                        batch.append(renewal)
        return deals

    # --- records -----------------------------------------------------------------------------
    def finish_deals(self, deals: list[_Deal]) -> None:
        """Ids in creation order, and a few deleted opportunities (two of them won)."""
        deals.sort(key=lambda d: d.seed.created_s)  # stable: ties keep generation order
        for deal in deals:
            deal.id = self.ids("006")
        rng = self.rng_extras
        won = [i for i, d in enumerate(deals) if d.won]
        other = [i for i, d in enumerate(deals) if not d.won]
        chosen = rng.choice(won, 2, replace=False).tolist()
        chosen += rng.choice(other, 10, replace=False).tolist()
        for i in chosen:
            deals[i].is_deleted = True

    def opportunity_frames(self, deals: list[_Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
        opp: dict[str, list] = {k: [] for k in OBJECTS["Opportunity"].field_names}
        hist: dict[str, list] = {k: [] for k in ["Id", *OBJECTS["OpportunityHistory"].field_names]}
        all_rows = []
        for deal in deals:
            seed = deal.seed
            time, stage, amount, close = deal.current
            name, prob, category, _ = STAGES[stage]
            label = f"Renewal {_date(seed.due).year}" if seed.opp_type == RENEWAL else seed.opp_type
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
            hist["Id"].append(self.ids("008"))
            hist["OpportunityId"].append(opp_id)
            hist["CreatedDate"].append(time)
            hist["StageName"].append(name)
            hist["Amount"].append(amount)
            hist["CloseDate"].append(close)
            hist["Probability"].append(prob)
            hist["ForecastCategory"].append(category)
        opportunities = pl.DataFrame(opp).with_columns(
            _date_col("CloseDate"), _datetime_col("CreatedDate")
        )
        history = (
            pl.DataFrame(hist)
            .with_columns(_date_col("CloseDate"), _datetime_col("CreatedDate"))
            .sort("OpportunityId", "Id")
        )
        return opportunities, history

    def line_items(self, deals: list[_Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
        products = pl.DataFrame(
            {
                "Id": [self.ids("01t") for _ in PRODUCTS],
                "Family": [f for _, f in PRODUCTS],
                "Name": [n for n, _ in PRODUCTS],
                "IsActive": [True] * len(PRODUCTS),
            }
        )
        by_family: dict[str, list[str]] = {}
        for pid, (_, family) in zip(products["Id"].to_list(), PRODUCTS):
            by_family.setdefault(family, []).append(pid)
        s = _Stream(self.rng_extras)
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
            self.families[deal.id] = families
            weights = [FAMILY_WEIGHT[f] * (0.7 + 0.6 * s.u()) for f in families]
            total = int(deal.current[2])
            prices, left = [], total
            for w in weights[:-1]:
                price = int(round(total * w / sum(weights)))
                prices.append(price)
                left -= price
            prices.append(left)
            for family, price in zip(families, prices):
                rows["Id"].append(self.ids("00k"))
                rows["OpportunityId"].append(deal.id)
                rows["Product2Id"].append(s.pick(by_family[family]))
                rows["TotalPrice"].append(float(price))
        items = pl.DataFrame(rows).select("OpportunityId", "Product2Id", "TotalPrice", "Id")
        return products.select("Id", "Family", "Name", "IsActive"), items

    def splits(self, deals: list[_Deal]) -> tuple[pl.DataFrame, pl.DataFrame]:
        revenue_type, overlay_type = self.ids("14A"), self.ids("14A")
        types = pl.DataFrame(
            {
                "Id": [revenue_type, overlay_type],
                "DeveloperName": ["Revenue", "Overlay"],
                "IsTotalValidated": [True, False],
            }
        )
        s = _Stream(self.rng_extras)
        rep_by_id = {r.user_id: r for r in self.reps}
        columns = ("OpportunityId", "SplitOwnerId", "SplitPercentage", "SplitTypeId", "Id")
        rows: dict[str, list] = {c: [] for c in columns}

        def add(opp_id: str, owner: str, pct: float, type_id: str) -> None:
            rows["OpportunityId"].append(opp_id)
            rows["SplitOwnerId"].append(owner)
            rows["SplitPercentage"].append(pct)
            rows["SplitTypeId"].append(type_id)
            rows["Id"].append(self.ids("149"))

        for deal in deals:
            if deal.seed.opp_type == RENEWAL:
                continue
            owner = rep_by_id[deal.owner_id]
            created = _date(deal.seed.created_s // DAY)
            if s.u() < 0.12:
                mates = [
                    r
                    for r in self.reps
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
                if "Analytics" in self.families[deal.id] and s.u() < 0.5:
                    overlay = self.analytics_specialist
                else:
                    overlay = s.pick(self.overlay_by_director[owner.team.director])
                add(deal.id, overlay, 100.0, overlay_type)
        return types, pl.DataFrame(rows)

    # --- quotas ------------------------------------------------------------------------------
    def periods(self) -> tuple[pl.DataFrame, dict[tuple[str, date], str]]:
        rows: dict[str, list] = {"Id": [], "Type": [], "StartDate": [], "EndDate": []}
        ids: dict[tuple[str, date], str] = {}
        q = self.period_first
        while q <= self.horizon_start:
            months = [add_months(q, i) for i in range(3)]
            for sf_type, start, end in [("Quarter", q, _quarter_end(q))] + [
                ("Month", m, add_months(m, 1) - timedelta(days=1)) for m in months
            ]:
                ids[(sf_type, start)] = self.ids("026")
                rows["Id"].append(ids[(sf_type, start)])
                rows["Type"].append(sf_type)
                rows["StartDate"].append(start)
                rows["EndDate"].append(end)
            q = add_months(q, 3)
        return pl.DataFrame(rows), ids

    def quotas(
        self, type_ids: dict[str, str], period_ids: dict[tuple[str, date], str]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        rng = self.rng_quotas
        # Amount up for renewal, USD, by (owner, month start), from every renewal seed.
        atr: dict[tuple[str, date], float] = {}
        for seed in self.renewal_seeds:
            d = _date(seed.due)
            key = (seed.owner_id, date(d.year, d.month, 1))
            atr[key] = atr.get(key, 0.0) + seed.amount / self.rates.rate(seed.currency, d)
        rows: list[dict] = []
        history: list[dict] = []
        for rep in self.reps:
            months = 1 if rep.cadence == "month" else 3
            sf_type = "Month" if months == 1 else "Quarter"
            start = self.quota_start
            while add_months(start, months) <= rep.hire_date:
                start = add_months(start, months)
            starts = []
            while start <= self.horizon_end and (rep.left_date is None or start <= rep.left_date):
                starts.append(start)
                start = add_months(start, months)
            new_usd = _expected_monthly_usd(rep, 1.0, (NEW_BUSINESS,))
            exp_usd = _expected_monthly_usd(rep, 1.0, EXPANSION_TYPES)
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
                g = self.growth(p) * months * PLAN_FACTOR
                plan = {("NewBusiness", None): new_usd * g, ("Expansion", None): exp_usd * g}
                if i >= first_due:
                    plan[("Renewal", None)] = RENEWAL_TARGET * max(ren_usd, atr_floor)
                if rep.family_quota:
                    dev, family = rep.family_quota
                    plan[(dev, family)] = plan[(dev, None)] * FAMILY_SHARE[family]
                rate = self.rates.rate(rep.currency, p)
                factor = ramp_factor(rep.cadence, p, rep.hire_date, DEFAULT_RAMP)
                for (dev, family), usd in plan.items():
                    amount = _round_quota(usd * noise[(dev, year)] * rate)
                    adjusted = rep.ramp_adjusted and factor < 1.0
                    if adjusted:
                        amount = _round_quota(amount * factor)
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
                    if not adjusted and change <= self.as_of and rng.random() < QUOTA_CHANGE_SHARE:
                        final = _round_quota(amount * rng.choice(QUOTA_CHANGE_FACTORS))
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
            row["Id"] = self.ids("0Ow")
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

    def conversion_rates(self) -> pl.DataFrame:
        columns = ("IsoCode", "ConversionRate", "StartDate", "NextStartDate", "Id")
        rows: dict[str, list] = {c: [] for c in columns}
        n = len(self.rates.months)
        for cur in CURRENCIES:
            for i, month in enumerate(self.rates.months):
                rows["IsoCode"].append(cur)
                rows["ConversionRate"].append(self.rates.table[cur][i])
                rows["StartDate"].append(month)
                rows["NextStartDate"].append(add_months(month, 1) if i < n - 1 else FAR_FUTURE)
                rows["Id"].append(self.ids("04w"))
        return pl.DataFrame(rows)

    # --- truth -------------------------------------------------------------------------------
    def rep_truth(
        self, quotas: pl.DataFrame, type_ids: dict[str, str]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        dev_by_id = {v: k for k, v in type_ids.items()}
        held: dict[str, list[str]] = {}
        pairs = quotas.select("QuotaOwnerId", "ForecastingTypeId").unique(maintain_order=True)
        for owner, type_id in pairs.iter_rows():
            held.setdefault(owner, []).append(dev_by_id[type_id])
        wide: list[dict] = []
        long: list[dict] = []
        for rep in self.reps:
            rates, renewal_rates = _rep_win_rates(rep)
            entry = sum(TYPE_SHARES[t] * _entry_win_rate(rates, t) for t in TYPE_SHARES)
            row = {
                "rep_id": rep.user_id,
                "name": rep.name,
                "manager_id": rep.manager_id,
                "team": rep.team.name,
                "is_active": rep.left_date is None,
                "hire_date": rep.hire_date,
                "left_date": rep.left_date,
                "currency": rep.currency,
                "quota_cadence": rep.cadence,
                "quota_types": ";".join(t for t in FORECASTING_TYPES if t in held.get(rep.user_id, [])),
                "product_family_quota": rep.family_quota[1] if rep.family_quota else None,
                "ramp_adjusted_quotas": rep.ramp_adjusted,
                "skill_multiplier": round(rep.skill, 6),
            }
            for slug, p in zip(STAGE_SLUGS, rates):
                row[f"win_rate_{slug}"] = round(p, 6)
            for slug, p in zip(STAGE_SLUGS[2:], renewal_rates[2:]):
                row[f"renewal_win_rate_{slug}"] = round(p, 6)
            row["win_rate_at_creation"] = round(entry, 6)
            row["within_period_win_propensity"] = round(entry * (1 - rep.slip), 6)
            row["slip_probability"] = round(rep.slip, 6)
            row["quarter_end_bunching"] = round(rep.bunch, 6)
            row["big_deal_share"] = round(BIG_SHARE, 6)
            row["deal_size_scale"] = round(rep.size_scale, 6)
            row["median_new_business_usd"] = round(MEDIAN_USD[NEW_BUSINESS] * rep.size_scale, 2)
            row["monthly_opportunity_rate"] = round(rep.rate, 6)
            row["expected_monthly_won_usd"] = round(
                _expected_monthly_usd(rep, rep.skill, tuple(TYPE_SHARES)), 2
            )
            wide.append(row)
            for group, values in (("new_and_expansion", rates), ("renewal", renewal_rates)):
                for slug, name, p in zip(STAGE_SLUGS, [st[0] for st in STAGES], values):
                    long.append(
                        {
                            "rep_id": rep.user_id,
                            "deal_group": group,
                            "stage": name,
                            "stage_slug": slug,
                            "win_rate": round(p, 6),
                        }
                    )
        return pl.DataFrame(wide), pl.DataFrame(long)

    def open_outcomes(self, deals: list[_Deal]) -> pl.DataFrame:
        rows: dict[str, list] = {
            k: []
            for k in (
                "opportunity_id", "owner_id", "type", "currency", "stage_as_of", "amount_as_of",
                "close_date_as_of", "eventual_stage", "eventual_amount", "eventual_close_date",
            )
        }
        for deal in deals:
            if deal.current[1] in (WON, LOST) or deal.is_deleted:
                continue
            _, stage, amount, close = deal.current
            _, e_stage, e_amount, e_close = deal.eventual
            rows["opportunity_id"].append(deal.id)
            rows["owner_id"].append(deal.owner_id)
            rows["type"].append(deal.seed.opp_type)
            rows["currency"].append(deal.seed.currency)
            rows["stage_as_of"].append(STAGES[stage][0])
            rows["amount_as_of"].append(amount)
            rows["close_date_as_of"].append(close)
            rows["eventual_stage"].append(STAGES[e_stage][0])
            rows["eventual_amount"].append(e_amount)
            rows["eventual_close_date"].append(e_close)
        return pl.DataFrame(rows).with_columns(
            _date_col("close_date_as_of"), _date_col("eventual_close_date")
        )


def _date_col(name: str) -> pl.Expr:
    """A day-number column as a Date."""
    return pl.col(name).cast(pl.Int32).cast(pl.Date)


def _datetime_col(name: str) -> pl.Expr:
    """Epoch seconds as Salesforce writes datetimes: 2025-01-15T10:30:00.000+0000."""
    return pl.from_epoch(pl.col(name), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _users_frame(users: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        users,
        schema={
            "Id": pl.String, "Name": pl.String, "Email": pl.String, "ManagerId": pl.String,
            "IsActive": pl.Boolean, "Hire_Date__c": pl.Date, "Title": pl.String,
        },
    )


def _stage_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ApiName": [s[0] for s in STAGES],
            "SortOrder": list(range(1, len(STAGES) + 1)),
            "DefaultProbability": [s[1] for s in STAGES],
            "IsClosed": [i in (WON, LOST) for i in range(len(STAGES))],
            "IsWon": [i == WON for i in range(len(STAGES))],
            "MasterLabel": [s[0] for s in STAGES],
            "ForecastCategoryName": [s[2] for s in STAGES],
            "IsActive": [True] * len(STAGES),
        }
    )


def generate_demo_org(
    out_dir: Path,
    as_of: date,
    seed: int = 7,
    *,
    progress: Callable[[str], None] | None = None,
) -> DemoOrgSummary:
    """Write the demo org into ``out_dir``: ``<Object>.csv`` for every object of the contract,
    ``SOURCE.md``, and the generating truth in ``_truth/``. The same ``as_of`` and ``seed`` give
    byte-identical files. Returns the row count of each object file."""
    say = progress or (lambda _line: None)
    out_dir = Path(out_dir)
    org = _Org(as_of, seed)
    say(f"Generating demo org as of {as_of} (seed {seed}, generator {GENERATOR_VERSION})")
    org.build_people()
    active = sum(r.left_date is None for r in org.reps)
    say(f"  {len(org.users)} users, {len(org.reps)} reps ({active} active)")
    deals = org.simulate_all(say)
    org.finish_deals(deals)
    say(f"  {len(deals):,} opportunities simulated")
    opportunities, history = org.opportunity_frames(deals)
    products, items = org.line_items(deals)
    split_types, splits = org.splits(deals)
    type_ids = {dev: org.ids("0Db") for dev in FORECASTING_TYPES}
    forecasting_types = pl.DataFrame({"Id": list(type_ids.values()), "DeveloperName": list(type_ids)})
    periods, period_ids = org.periods()
    quotas, quota_history = org.quotas(type_ids, period_ids)
    frames = {
        "User": _users_frame(org.users),
        "ForecastingType": forecasting_types,
        "ForecastingQuota": quotas,
        "Period": periods,
        "ForecastingQuotaHistory": quota_history,
        "Opportunity": opportunities,
        "OpportunityHistory": history,
        "OpportunityStage": _stage_frame(),
        "OpportunitySplitType": split_types,
        "OpportunitySplit": splits,
        "Product2": products,
        "OpportunityLineItem": items,
        "DatedConversionRate": org.conversion_rates(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name in OBJECTS:
        frame = frames[name]
        contract = OBJECTS[name].field_names
        frame = frame.select(contract + [c for c in frame.columns if c not in contract])
        frame.write_csv(out_dir / f"{name}.csv")
        counts[name] = frame.height
    say(
        f"  wrote {len(frames)} object files: {counts['Opportunity']:,} opportunities, "
        f"{counts['OpportunityHistory']:,} history rows"
    )

    truth_dir = out_dir / "_truth"
    truth_dir.mkdir(exist_ok=True)
    rep_truth, stage_truth = org.rep_truth(quotas, type_ids)
    rep_truth.write_csv(truth_dir / "rep_truth.csv")
    stage_truth.write_csv(truth_dir / "stage_win_rates.csv")
    org.open_outcomes(deals).write_csv(truth_dir / "open_pipeline_outcomes.csv")
    (truth_dir / "README.md").write_text(_truth_readme(as_of, seed), encoding="utf-8")
    (out_dir / "SOURCE.md").write_text(_source_md(as_of, seed, counts, org), encoding="utf-8")
    return DemoOrgSummary(out_dir=out_dir, as_of=as_of, seed=seed, counts=counts)


def _source_md(as_of: date, seed: int, counts: dict[str, int], org: _Org) -> str:
    table = "\n".join(f"| {name} | {n:,} |" for name, n in counts.items())
    return f"""# Demo org (synthetic data)

Every record in this folder is **synthetic**. It was generated by `quota_platform.samples.demo_org`
(generator version {GENERATOR_VERSION}) with seed {seed} for as-of date {as_of}. No real company,
person or deal is represented: names come from small word lists and e-mail addresses use
example.com.

Regenerate with `quota-platform demo-data --out <folder> --as-of {as_of} --seed {seed}`; the same
as-of date and seed give byte-identical files.

- Opportunities are created from {org.opp_start} to {as_of}; nothing dated after {as_of} is written.
- Quotas cover every period from {org.quota_start} to {org.horizon_end} (the end of the quarter
  after the as-of date); Period rows cover {org.period_first} to {org.horizon_end}.
- Fiscal year = calendar year; corporate currency USD; EUR and GBP rates are monthly, units per
  1 USD, and the latest rate row runs to 9999-12-31 as in Salesforce.

| object | rows |
| --- | --- |
{table}

The generating truth (each rep's skill, true stage win rates, deal size, opportunity rate) and the
simulated future of the open pipeline are in `_truth/`; see `_truth/README.md`.
"""


def _truth_readme(as_of: date, seed: int) -> str:
    stages = ", ".join(f"{s[0]} ({s[1]:.0f}%)" for s in STAGES[:N_OPEN])
    base = ", ".join(f"{p:.2f}" for p in BASE_CONVERSION)
    return f"""# Generating truth of the demo org

Generated with seed {seed} for as-of date {as_of} (generator version {GENERATOR_VERSION}). This
folder is ignored by the file source (it only reads `<Object>.csv` / `<Object>.parquet`); it is
what the synthetic data was drawn from, so that win-rate posteriors and attainment projections can
be scored against known values.

## The stage model

Open stages, in order: {stages}; then Closed Won or Closed Lost. A deal enters at Prospecting
or Qualification (renewals at Needs Analysis or Value Proposition) and, at each open stage k, moves
to the next stage (from Negotiation/Review: is won) with probability c_k, else it is lost at k.
For an average rep (skill 1) c = ({base}).
A rep's `skill_multiplier` s multiplies the odds of every conversion: c_k(s) = s*o_k / (1 + s*o_k) with o_k = c_k / (1 - c_k). Renewals use odds
x{RENEWAL_ODDS:g}. Big deals (size draw z > {BIG_Z}, share {BIG_SHARE:.4f} of non-renewal deals) use
odds x{BIG_LAST_ODDS:g} at Negotiation/Review, and when lost there they are lost in the last ten
days before their close date, which sits at the end of the quarter.

## rep_truth.csv (one row per rep who ever carried a quota)

- `win_rate_<stage>`: the true probability that a non-renewal deal (New Business, Expansion,
  Upsell, Existing Business) of this rep that reaches the stage is eventually won:
  the product of c_j(s) from that stage on, with the Negotiation/Review conversion mixed over the
  big-deal share. This is what a per-rep, per-stage win-rate posterior estimates.
- `renewal_win_rate_<stage>`: the same for renewals (they enter at Needs Analysis or later).
  `stage_win_rates.csv` has both groups for every stage in long form.
- `win_rate_at_creation`: P(won) for a newly created non-renewal deal (entry-stage mix by Type).
- `slip_probability` (p): at each close date, an open deal slips to a date in a later quarter
  with probability p (at most {MAX_SLIPS} times; renewals at p x {RENEWAL_SLIP:g}), independently of
  whether it will be won.
- `within_period_win_propensity` = `win_rate_at_creation` x (1 - p): the probability that a new
  deal is won within the quarter its close date is in. For an open deal at stage k whose close
  date is in the current quarter, the model's probability of being won in that quarter is
  `win_rate_<k>` x (1 - p) (renewals: `renewal_win_rate_<k>` x (1 - p/2)). Loss dates are spread
  over the life of the deal, so this is the generating value, not conditioned on how long a deal
  has already survived.
- `quarter_end_bunching`: the probability that a won deal's close date is moved into the last two
  weeks of its quarter (for reps on monthly quotas: the last week of its month; renewals: a
  quarter of that probability).
- `deal_size_scale`: deal amounts are log-normal with median MEDIAN_USD[type] x scale and sigma
  {SIZE_SIGMA} (`median_new_business_usd` is the New Business median); amounts drift by a
  log-normal factor (sigma 0.25; renewals 0.08) at each of 0-2 amount changes.
- `monthly_opportunity_rate`: new non-renewal opportunities per month (x {GROWTH:g} per calendar
  year after the first; new hires at 40%, 70%, 90% in their first three months).
- `expected_monthly_won_usd`: the rep's expected won USD per month from non-renewal deals (first
  year's rate), using the rep's own skill; quotas were planned with skill 1 (the territory's
  capacity), so attainment differs from 100% by skill and luck.
- `quota_cadence`, `quota_types`, `product_family_quota`, `ramp_adjusted_quotas`, `hire_date`,
  `left_date` describe the quota plan. Renewal quotas are {RENEWAL_TARGET:.0%} of the amount up for
  renewal in the period.

## open_pipeline_outcomes.csv

For every opportunity open on {as_of} (not deleted): its stage, amount and close date as of that
day and how the simulation went on to close it (eventual stage, amount, close date). Deals that
would be created after {as_of} are not simulated, so a period's final bookings also include new
deals at the rates above. Opportunities reassigned when their owner left keep the generating
parameters of the rep who created them.

## Scoring

Win-rate posteriors: compare `win_rate_mean` for (rep, stage) with `win_rate_<stage>` (or the
long file). Projections for the current period: the won amount of open deals in
`open_pipeline_outcomes.csv` whose eventual close date is in the period, plus what is already won,
is the realised outcome of the pipeline that existed on {as_of}.
"""
