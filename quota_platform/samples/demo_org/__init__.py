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

**Where each part is made.** :mod:`.model` holds the generating model's parameters and the state of
one run (:class:`~.model.Org`, its random streams included); :mod:`.people` the users and the
hierarchy; :mod:`.deals` the opportunities and their histories; :mod:`.products_and_splits` the
line items and splits; :mod:`.quotas` the periods, quotas and quota history; :mod:`.files` the
object files and ``SOURCE.md``; :mod:`.truth` the ``_truth/`` folder. :func:`generate_demo_org`
runs them in a fixed order, which fixes every random draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from pathlib import Path

from quota_platform.samples.demo_org import deals as deal_steps
from quota_platform.samples.demo_org import files, people, products_and_splits, quotas, truth
from quota_platform.samples.demo_org.model import GENERATOR_VERSION, Org

__all__ = ["GENERATOR_VERSION", "DemoOrgSummary", "generate_demo_org"]


@dataclasses.dataclass(frozen=True)
class DemoOrgSummary:
    """What :func:`generate_demo_org` wrote: rows per object file (in contract order)."""

    out_dir: Path
    as_of: date
    seed: int
    counts: dict[str, int]


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
    org = Org(as_of, seed)
    say(f"Generating demo org as of {as_of} (seed {seed}, generator {GENERATOR_VERSION})")
    people.build_people(org)
    active = sum(r.left_date is None for r in org.reps)
    say(f"  {len(org.users)} users, {len(org.reps)} reps ({active} active)")
    deals = deal_steps.simulate_all(org, say)
    deal_steps.finish_deals(org, deals)
    say(f"  {len(deals):,} opportunities simulated")
    opportunities, history = deal_steps.opportunity_frames(org, deals)
    products, items = products_and_splits.line_items(org, deals)
    split_types, splits = products_and_splits.splits(org, deals)
    forecasting_types, type_ids = quotas.forecasting_types(org)
    periods, period_ids = quotas.periods(org)
    quota_rows, quota_history = quotas.quotas(org, type_ids, period_ids)
    frames = {
        "User": files.users_frame(org.users),
        "ForecastingType": forecasting_types,
        "ForecastingQuota": quota_rows,
        "Period": periods,
        "ForecastingQuotaHistory": quota_history,
        "Opportunity": opportunities,
        "OpportunityHistory": history,
        "OpportunityStage": files.stage_frame(),
        "OpportunitySplitType": split_types,
        "OpportunitySplit": splits,
        "Product2": products,
        "OpportunityLineItem": items,
        "DatedConversionRate": files.conversion_rates(org),
    }
    counts = files.write_objects(out_dir, frames)
    say(
        f"  wrote {len(frames)} object files: {counts['Opportunity']:,} opportunities, "
        f"{counts['OpportunityHistory']:,} history rows"
    )
    truth.write_truth(out_dir / "_truth", org, deals, quota_rows, type_ids)
    (out_dir / "SOURCE.md").write_text(files.source_md(as_of, seed, counts, org), encoding="utf-8")
    return DemoOrgSummary(out_dir=out_dir, as_of=as_of, seed=seed, counts=counts)
