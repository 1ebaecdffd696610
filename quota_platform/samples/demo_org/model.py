"""The demo org's generating model: the parameters and pieces every generation step shares.

Time is counted in day numbers (days since 1970-01-01) and seconds; a rep (:class:`Rep`) carries
the parameters its deals are drawn from; a deal is a :class:`Seed` (as created) that
:func:`quota_platform.samples.demo_org.deals.simulate` turns into a :class:`Deal` (its history);
:class:`Org` holds the state of one generation run, its random streams included. The steps live
beside this module: people, deals, products_and_splits, quotas, files and truth.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from quota_platform.lib.core.calendar import add_months

GENERATOR_VERSION = "1.0.0"

# --- Calendar and time ------------------------------------------------------------------------

DAY = 86_400
HOUR = 3_600
EPOCH = date(1970, 1, 1)
FAR_FUTURE = date(9999, 12, 31)  # Salesforce's NextStartDate of the latest conversion rate
QUOTA_HISTORY_MONTHS = 24  # quotas start at the quarter containing the as-of date minus this
WARM_UP_MONTHS = 3  # opportunities start this long before the first quota period


def dn(d: date) -> int:
    """Day number (days since 1970-01-01)."""
    return (d - EPOCH).days


def date_of(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


def quarter_start(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def quarter_end(d: date) -> date:
    return add_months(quarter_start(d), 3) - timedelta(days=1)


@lru_cache(maxsize=None)
def quarter_end_dn(n: int) -> int:
    return dn(quarter_end(date_of(n)))


@lru_cache(maxsize=None)
def month_end_dn(n: int) -> int:
    d = date_of(n)
    return dn(add_months(date(d.year, d.month, 1), 1)) - 1


@lru_cache(maxsize=None)
def next_quarter_start_dn(n: int) -> int:
    return dn(add_months(quarter_start(date_of(n)), 3))


def month_starts(first: date, last: date) -> list[date]:
    """First days of the months from ``first``'s month to ``last``'s month."""
    out, m = [], date(first.year, first.month, 1)
    while m <= last:
        out.append(m)
        m = add_months(m, 1)
    return out


def month_index(d: date) -> int:
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

# --- Opportunity types and sizes ----------------------------------------------------------------

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
GROWTH = 1.08  # yearly growth of opportunity rates and quotas

# --- Teams (people.TEAMS lists them) ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Team:
    name: str
    director: int  # 0 = Americas, 1 = Strategic & International
    size: int
    rate: float  # new opportunities per rep-month
    scale: float  # deal size relative to MEDIAN_USD
    cycle: float  # sales cycle relative to MEDIAN_CYCLE_DAYS
    title: str


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


class Ids:
    """Sequential Ids per key prefix."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        n = self._next.get(prefix, 1)
        self._next[prefix] = n + 1
        return sf_id(prefix, n)


# --- Random draws -------------------------------------------------------------------------------


class Stream:
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


def pick_type(u: float) -> str:
    """The non-renewal Type whose share interval (TYPE_SHARES, in order) contains ``u``."""
    for opp_type, share in TYPE_SHARES.items():
        if u < share:
            return opp_type
        u -= share
    return opp_type


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def adjust(p: float, odds: float) -> float:
    o = p / (1.0 - p) * odds
    return o / (1.0 + o)


# --- The model's pieces ---------------------------------------------------------------------------


@dataclasses.dataclass
class Rep:
    user_id: str
    name: str
    manager_id: str
    team: Team
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
        self.conv = tuple(adjust(p, self.skill) for p in BASE_CONVERSION)
        self.big_last = adjust(BASE_CONVERSION[LAST_OPEN], self.skill * BIG_LAST_ODDS)
        self.renewal_conv = tuple(adjust(p, self.skill * RENEWAL_ODDS) for p in BASE_CONVERSION)

    @property
    def region(self) -> str:
        return "EMEA" if self.team.name == "EMEA" else "US"

    def active_on(self, d: date) -> bool:
        return self.hire_date <= d and (self.left_date is None or d < self.left_date)


@dataclasses.dataclass
class Seed:
    """An opportunity as created: who drives it, what it is, and its first plan."""

    rep: Rep  # whose parameters generate the deal
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
class Deal:
    seed: Seed
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


def stage_win_rates(conv: tuple[float, ...], last: float) -> list[float]:
    """P(eventually won | reached stage k) for each open stage, given the stage conversions and
    the (mixed) conversion from the last open stage."""
    out = []
    for k in range(N_OPEN):
        p = last
        for j in range(k, LAST_OPEN):
            p *= conv[j]
        out.append(p)
    return out


BIG_SHARE = 1.0 - phi(BIG_Z)


def rep_win_rates(rep: Rep) -> tuple[list[float], list[float]]:
    """The rep's true stage win rates: non-renewal deals (big-deal share mixed in at the last
    stage) and renewals."""
    last = (1 - BIG_SHARE) * rep.conv[LAST_OPEN] + BIG_SHARE * rep.big_last
    renewal = stage_win_rates(rep.renewal_conv, rep.renewal_conv[LAST_OPEN])
    return stage_win_rates(rep.conv, last), renewal


def entry_win_rate(rates: list[float], opp_type: str) -> float:
    q = ENTRY_QUALIFICATION_SHARE[opp_type]
    return (1 - q) * rates[0] + q * rates[1]


def expected_won_usd(skill: float, opp_type: str, size_scale: float) -> float:
    """Expected won USD per created deal of ``opp_type`` for a rep of this skill and size scale:
    big deals (size draw above BIG_Z) convert less at the last stage."""
    conv = tuple(adjust(p, skill) for p in BASE_CONVERSION)
    big_last = adjust(BASE_CONVERSION[LAST_OPEN], skill * BIG_LAST_ODDS)
    normal = entry_win_rate(stage_win_rates(conv, conv[LAST_OPEN]), opp_type)
    big = entry_win_rate(stage_win_rates(conv, big_last), opp_type)
    s = SIZE_SIGMA
    mean_factor = math.exp(s * s / 2)
    return (
        MEDIAN_USD[opp_type]
        * size_scale
        * mean_factor
        * (normal * phi(BIG_Z - s) + big * phi(s - BIG_Z))
    )


def expected_monthly_usd(rep: Rep, skill: float, types: tuple[str, ...]) -> float:
    """Expected won USD per month (growth factor 1) from the rep's new deals of ``types``."""
    return sum(
        rep.rate * TYPE_SHARES[t] * expected_won_usd(skill, t, rep.size_scale) for t in types
    )


# --- Exchange rates -----------------------------------------------------------------------------

CURRENCIES = ("USD", "EUR", "GBP")
FX_BASE = {"EUR": 0.92, "GBP": 0.79}  # units per 1 USD


class Rates:
    """Monthly rates (units per USD) from ``first`` to ``last`` month; dates outside the range use
    the nearest month (the latest rate runs on, as in Salesforce)."""

    def __init__(self, rng: np.random.Generator, first: date, last: date) -> None:
        self.months = month_starts(first, last)
        self._first = month_index(self.months[0])
        self.table: dict[str, list[float]] = {"USD": [1.0] * len(self.months)}
        for cur in ("EUR", "GBP"):
            base = math.log(FX_BASE[cur])
            x, values = base, []
            for _ in self.months:
                x += 0.15 * (base - x) + rng.normal(0.0, 0.008)
                values.append(round(math.exp(x), 6))
            self.table[cur] = values

    def rate(self, currency: str, d: date) -> float:
        i = min(max(month_index(d) - self._first, 0), len(self.months) - 1)
        return self.table[currency][i]


# --- One generation run -------------------------------------------------------------------------


class Org:
    """The state of one generation run, shared by the steps: the as-of date and the periods it
    implies, one random stream per concern (so that one step's draws never shift another's), the
    Id counters, the exchange rates, and what earlier steps produced for later ones (users, reps,
    customer accounts, renewal seeds, each deal's product families)."""

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
        self.ids = Ids()
        as_of_month = date(as_of.year, as_of.month, 1)
        # Quotas from the quarter two years back (24-27 months of quota history); opportunities
        # one quarter earlier, so that the first quota period already has a full pipeline.
        self.quota_start = quarter_start(add_months(as_of, -QUOTA_HISTORY_MONTHS))
        self.opp_start = add_months(self.quota_start, -WARM_UP_MONTHS)
        self.period_first = self.opp_start
        self.horizon_start = add_months(quarter_start(as_of), 3)  # the next quarter
        self.horizon_end = quarter_end(self.horizon_start)
        self.as_of_end = (dn(as_of) + 1) * DAY
        self.rates = Rates(self.rng_fx, self.period_first, as_of_month)
        self.users: list[dict] = []
        self.reps: list[Rep] = []
        self.leaver: Rep | None = None
        self.replacement: Rep | None = None
        self.overlay_by_director: dict[int, list[str]] = {}
        self.analytics_specialist = ""
        self.accounts = 0
        self.customer_pool: dict[str, list[tuple[str, str]]] = {}
        self.renewal_seeds: list[Seed] = []  # every renewal, also ones created after the as-of date
        self.families: dict[str, list[str]] = {}  # product families of each opportunity's line items

    def growth(self, d: date) -> float:
        return GROWTH ** (d.year - self.opp_start.year)

    def has_book(self, rep: Rep) -> bool:
        """Tenured reps inherit a book of customers that renews during the history."""
        return rep.hire_date <= self.opp_start - timedelta(days=365)
