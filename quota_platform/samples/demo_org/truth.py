"""The generating truth, written to ``_truth/`` beside the object files: each rep's parameters and
true stage win rates, and how the open pipeline of the as-of date went on to close, so that win-rate
posteriors and projections can be scored against known values."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from quota_platform.samples.demo_org.files import date_col
from quota_platform.samples.demo_org.model import (
    BASE_CONVERSION,
    BIG_LAST_ODDS,
    BIG_SHARE,
    BIG_Z,
    GENERATOR_VERSION,
    GROWTH,
    LOST,
    MAX_SLIPS,
    MEDIAN_USD,
    N_OPEN,
    NEW_BUSINESS,
    RENEWAL_ODDS,
    RENEWAL_SLIP,
    SIZE_SIGMA,
    STAGE_SLUGS,
    STAGES,
    TYPE_SHARES,
    WON,
    Deal,
    Org,
    entry_win_rate,
    expected_monthly_usd,
    rep_win_rates,
)
from quota_platform.samples.demo_org.quotas import FORECASTING_TYPES, RENEWAL_TARGET


def write_truth(
    truth_dir: Path, org: Org, deals: list[Deal], quotas: pl.DataFrame, type_ids: dict[str, str]
) -> None:
    """Write ``rep_truth.csv``, ``stage_win_rates.csv``, ``open_pipeline_outcomes.csv`` and the
    README that explains them into ``truth_dir``."""
    truth_dir.mkdir(exist_ok=True)
    reps, stages = rep_truth(org, quotas, type_ids)
    reps.write_csv(truth_dir / "rep_truth.csv")
    stages.write_csv(truth_dir / "stage_win_rates.csv")
    open_outcomes(org, deals).write_csv(truth_dir / "open_pipeline_outcomes.csv")
    (truth_dir / "README.md").write_text(truth_readme(org.as_of, org.seed), encoding="utf-8")


def rep_truth(
    org: Org, quotas: pl.DataFrame, type_ids: dict[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``rep_truth.csv`` (one row per rep: plan, skill, true stage win rates, slip, bunching,
    size and rate) and ``stage_win_rates.csv`` (the same win rates in long form)."""
    dev_by_id = {v: k for k, v in type_ids.items()}
    held: dict[str, list[str]] = {}
    pairs = quotas.select("QuotaOwnerId", "ForecastingTypeId").unique(maintain_order=True)
    for owner, type_id in pairs.iter_rows():
        held.setdefault(owner, []).append(dev_by_id[type_id])
    wide: list[dict] = []
    long: list[dict] = []
    for rep in org.reps:
        rates, renewal_rates = rep_win_rates(rep)
        entry = sum(TYPE_SHARES[t] * entry_win_rate(rates, t) for t in TYPE_SHARES)
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
            expected_monthly_usd(rep, rep.skill, tuple(TYPE_SHARES)), 2
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


def open_outcomes(org: Org, deals: list[Deal]) -> pl.DataFrame:
    """``open_pipeline_outcomes.csv``: each deal open on the as-of date (not deleted), as it
    stood then and as the simulation went on to close it."""
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
        date_col("close_date_as_of"), date_col("eventual_close_date")
    )


def truth_readme(as_of: date, seed: int) -> str:
    """``_truth/README.md``: the stage model and what each truth column means."""
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
