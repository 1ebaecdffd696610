"""A snapshot month's projection model: win-rate posteriors, the deals-not-yet-created model and
the pacing curve, per period type, fitted on the trailing window of periods that ended before the
month began, and the seasonal adjustment of the month's periods against that window, estimated on
a longer lookback of the same closed periods. Nothing created on or after the month's first day
reaches the fit."""

from __future__ import annotations

import dataclasses
from datetime import date

import polars as pl

from quota_platform.lib.attainment.crediting import CreditInputs, stage_flags, states_as_of
from quota_platform.lib.core import calendar as cal
from quota_platform.lib.core.currency import RATE_COL, attach_rates
from quota_platform.lib.forecast import seasonality
from quota_platform.lib.forecast.newdeals import fit_new_deals
from quota_platform.lib.forecast.pacing import pacing_curve
from quota_platform.lib.forecast.projection import ProjectionModel
from quota_platform.lib.forecast.training import (
    LARGE_SUFFIX,
    as_known_before,
    assert_no_leakage,
    large_deal_thresholds,
    new_deal_history,
    training_periods,
    win_rate_cells,
    won_within_period,
)
from quota_platform.lib.forecast.winrates import SUMMARY_SCHEMA, FitSettings, fit_win_rates

# the summary's deal_class split into the deal's class and its size tier (training.sized_class)
POSTERIOR_SCHEMA = {
    "snapshot_month": pl.Date(),
    "period_type": pl.String(),
    **{k: SUMMARY_SCHEMA[k] for k in ("rep_id", "stage", "deal_class")},
    "deal_size": pl.String(),
    **{k: v for k, v in SUMMARY_SCHEMA.items() if k not in ("rep_id", "stage", "deal_class")},
}

# Below this many (weighted) training observations a period type is not fitted: a hierarchical
# model on a handful of deals is all prior, and its sampler struggles with the funnel such thin
# data leave. Projections then use the stages' default probabilities (docs/decisions.md).
MIN_FIT_TRIALS = 200.0
# Closed periods this many months back inform the seasonal adjustment (QUOTA_PLATFORM_SEASONALITY_MONTHS):
# two years see every fiscal quarter twice, enough to tell a strong quarter from a lucky one.
SEASONALITY_MONTHS = 24


# A win-rate fit is used only if the largest rank-normalised split R-hat over its sampled
# parameters is at most this and no transition diverged: fit_until_converged retries above it and
# the blocking check on win_rate_posteriors fails (lib/forecast/winrates.py FitSettings: why the
# default draws keep R-hat's own noise under it).
MAX_RHAT = 1.01


def converged(diagnostics: dict) -> bool:
    """Whether one fit's diagnostics (max_rhat, divergences) pass; a missing figure fails."""
    return diagnostics.get("max_rhat", 99.0) <= MAX_RHAT and diagnostics.get("divergences", 1.0) == 0


def unconverged(fits: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``fits`` (one per fit, columns max_rhat and divergences) that did not converge:
    max R-hat above MAX_RHAT, or any divergent transition."""
    return fits.filter((pl.col("max_rhat") > MAX_RHAT) | (pl.col("divergences") > 0))


def fit_until_converged(cells: pl.DataFrame, settings: FitSettings, roster: pl.DataFrame, log=lambda _: None):
    """Fit; if the sampler has not converged (R-hat above MAX_RHAT or divergences), fit once more with
    twice the tuning and draws, a higher target acceptance and another seed, and keep the better
    of the two. The caller's blocking check still fails if neither converged."""
    posterior = fit_win_rates(cells, settings, roster=roster)
    if converged(posterior.diagnostics):
        return posterior
    log(
        f"not converged (max R-hat {posterior.diagnostics['max_rhat']:.3f}, "
        f"{posterior.diagnostics['divergences']:.0f} divergences): fitting again with longer tuning"
    )
    retry = fit_win_rates(
        cells,
        dataclasses.replace(
            settings, tune=2 * settings.tune, draws=2 * settings.draws,
            target_accept=max(settings.target_accept, 0.97), seed=settings.seed + 1,
        ),
        roster=roster,
    )
    if converged(retry.diagnostics) or retry.diagnostics["max_rhat"] < posterior.diagnostics["max_rhat"]:
        return retry
    return posterior


def fit_projection_model(
    snapshot_month: date,
    *,
    window_months: int,
    period_types: list[str],
    opportunities: pl.DataFrame,
    history: pl.DataFrame,
    stages: pl.DataFrame,
    teams: pl.DataFrame,
    inputs: CreditInputs,
    fit_settings: FitSettings = FitSettings(),
    min_trials: float = MIN_FIT_TRIALS,
    seasonality_months: int = SEASONALITY_MONTHS,
    quota_reps: dict[str, list[str]] | None = None,
    log=lambda _: None,
) -> tuple[ProjectionModel, pl.DataFrame]:
    """``teams`` maps every current rep (rep_id) to its team (team_id: the direct manager as
    captured in the snapshot month). ``seasonality_months``: the lookback of the seasonal
    estimate (0: none). ``quota_reps``: per period type, the reps carrying a quota of that type
    this month; each period type's models learn from those reps' deals when they hold at least
    ``min_trials`` observations (reps push deals to the end of their own quota period, so a
    monthly-quota rep's month is not a quarterly rep's), else from everyone's. Returns the model
    and the win_rate_posteriors rows."""
    opps, hist = as_known_before(opportunities, history, snapshot_month)
    assert_no_leakage(opps, hist, snapshot_month)
    flags = stage_flags(stages, opps)
    calendar = inputs.rules.calendar
    large_deal_usd = large_deal_thresholds(opps, hist, inputs, since=cal.add_months(snapshot_month, -window_months))
    win_rates, new_deals, pacing, diagnostics, summaries, seasonal = {}, {}, {}, {}, [], {}
    for period_type in period_types:
        periods = training_periods(snapshot_month, window_months, period_type, calendar)
        lookback = training_periods(snapshot_month, max(seasonality_months, window_months), period_type, calendar)
        lookback_cells = win_rate_cells(opps, hist, flags, teams, lookback, large_deals=(large_deal_usd, inputs))
        window_ids = [p.id for p in periods]
        cells = lookback_cells.filter(pl.col("period_id").is_in(window_ids))
        p_opps, scope = opps, "all reps"
        reps = (quota_reps or {}).get(period_type)
        if reps is not None:
            own = cells.filter(pl.col("rep_id").is_in(list(reps)))
            if float(own["trials"].sum() or 0.0) >= min_trials:
                cells, scope = own, f"the {len(set(reps))} reps with {period_type} quotas"
                lookback_cells = lookback_cells.filter(pl.col("rep_id").is_in(list(reps)))
                p_opps = opps.filter(pl.col("OwnerId").is_in(list(reps)))
        seasonal[period_type] = _seasonal_adjustment(
            period_type, snapshot_month, periods, lookback if seasonality_months > 0 else [], lookback_cells, p_opps, hist, flags, calendar
        )
        info = {
            "training_scope": scope,
            "training_periods": len(periods),
            "trials": float(cells["trials"].sum() or 0.0),
            "seasonal_win_rate_offset": seasonal[period_type].win_rate_logit[0],
            "seasonal_win_rate_sd": seasonal[period_type].win_rate_logit[1],
            "seasonal_new_deal_offset": seasonal[period_type].new_deal_log[0],
            "seasonal_new_deal_sd": seasonal[period_type].new_deal_log[1],
        }
        if info["trials"] >= min_trials:
            posterior = fit_until_converged(cells, fit_settings, teams, log)
            win_rates[period_type] = posterior
            info.update(posterior.diagnostics)
            summaries.append(
                posterior.summary().with_columns(
                    pl.lit(snapshot_month).alias("snapshot_month"),
                    pl.lit(period_type).alias("period_type"),
                    pl.col("deal_class").str.strip_suffix(LARGE_SUFFIX),
                    pl.when(pl.col("deal_class").str.ends_with(LARGE_SUFFIX))
                    .then(pl.lit("large"))
                    .otherwise(pl.lit("standard"))
                    .alias("deal_size"),
                )
            )
            log(
                f"{period_type}: fitted {len(periods)} period(s) of {scope}, {info['trials']:.0f} weighted trials, "
                f"max R-hat {posterior.diagnostics['max_rhat']:.3f}, {posterior.diagnostics['divergences']:.0f} divergences"
            )
        else:
            log(
                f"{period_type}: {info['trials']:.0f} training observations before {snapshot_month} "
                f"(fewer than {min_trials:.0f}); projections use stage probabilities"
            )
        new_deals[period_type] = fit_new_deals(new_deal_history(p_opps, hist, flags, periods, inputs), teams)
        pacing[period_type] = pacing_curve(_won_in_periods(p_opps, hist, flags, periods, inputs))
        diagnostics[period_type] = info
    stage_probability = {
        row["ApiName"]: (row["DefaultProbability"] or 0.0) / 100.0 for row in stages.iter_rows(named=True)
    }
    model = ProjectionModel(
        snapshot_month=snapshot_month,
        window_months=window_months,
        win_rates=win_rates,
        new_deals=new_deals,
        pacing=pacing,
        teams=teams,
        diagnostics=diagnostics,
        stage_probability=stage_probability,
        seasonal=seasonal,
        large_deal_usd=large_deal_usd,
    )
    summary = (
        pl.concat(summaries, how="vertical_relaxed").select(list(POSTERIOR_SCHEMA)).cast(POSTERIOR_SCHEMA)
        if summaries
        else pl.DataFrame(schema=POSTERIOR_SCHEMA)
    )
    return model, summary


def month_roster(month, hierarchy: pl.DataFrame, snapshots: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """For a snapshot month: every user's team (rep_id -> team_id, the direct manager as captured
    that month) and, per period type, the reps carrying a quota of that type."""
    teams = hierarchy.filter((pl.col("snapshot_month") == month) & (pl.col("distance") == 0)).select(
        pl.col("user_id").alias("rep_id"), pl.col("manager_id").alias("team_id")
    )
    month_quotas = snapshots.filter(pl.col("snapshot_month") == month)
    quota_reps = {
        period_type: month_quotas.filter(pl.col("period_type") == period_type)["rep_id"].unique().to_list()
        for period_type in sorted(month_quotas["period_type"].unique().to_list())
    }
    return teams, quota_reps


def fit_diagnostics(models: dict[str, ProjectionModel]) -> pl.DataFrame:
    """One row per period type of each month's model that was fitted (max_rhat, divergences, ESS,
    seconds...): what the convergence check reads. Period types with too little data for a fit
    have no row."""
    rows = [
        {"snapshot_month": model.snapshot_month, "period_type": period_type, **info}
        for model in models.values()
        for period_type, info in model.diagnostics.items()
    ]
    diag = pl.DataFrame(rows)
    return diag.filter(pl.col("max_rhat").is_not_null()) if "max_rhat" in diag.columns else pl.DataFrame()


def _seasonal_adjustment(
    period_type: str, snapshot_month: date, window: list, lookback: list, cells: pl.DataFrame, opps, hist, flags, calendar
) -> seasonality.SeasonalAdjustment:
    """The target period's (the one containing the snapshot month) seasonal offsets against the
    window, from the closed periods of the lookback that have training data."""
    target = calendar.period_start(period_type, snapshot_month)
    if not lookback:
        return seasonality.SeasonalAdjustment(details={"note": "seasonality off (QUOTA_PLATFORM_SEASONALITY_MONTHS=0)"})
    shifts = seasonality.win_rate_shifts(cells)
    seen = set(shifts["period_id"].to_list())
    used = [p for p in lookback if p.id in seen]
    by_id = {p.id: p for p in used}
    shifts = shifts.filter(pl.col("period_id").is_in(list(by_id))).sort("period_id")
    starts = [by_id[i].start for i in shifts["period_id"].to_list()]
    wr_fit = seasonality.fit_effects(period_type, starts, shifts["delta"].to_numpy(), shifts["var"].to_numpy(), calendar)
    won = won_within_period(opps, hist, flags, used).join(
        opps.select("Id", pl.col("CreatedDate").dt.date().alias("created")), on="Id"
    )
    counts = seasonality.new_deal_counts(won, used).sort("period_id")
    nd_starts = [by_id[i].start for i in counts["period_id"].to_list()]
    nd_fit = seasonality.fit_effects(period_type, nd_starts, counts["y"].to_numpy(), counts["var"].to_numpy(), calendar)
    return seasonality.seasonal_adjustment(period_type, target, [p.start for p in window], wr_fit, nd_fit, calendar)


def _won_in_periods(opps, hist, flags, periods, inputs: CreditInputs) -> pl.DataFrame:
    """Won deals of each training period with their close date and USD amount, for pacing."""
    if not periods:
        return pl.DataFrame(schema={"period_id": pl.String, "period_start": pl.Date, "period_end": pl.Date, "close_date": pl.Date, "amount_usd": pl.Float64})
    won = won_within_period(opps, hist, flags, periods)
    by_id = {p.id: p for p in periods}
    ends = sorted({p.end for p in periods})
    states = states_as_of(opps, hist, flags, ends, only_won=True)
    frame = won.with_columns(
        pl.col("period_id").replace_strict({k: p.start for k, p in by_id.items()}, return_dtype=pl.Date).alias("period_start"),
        pl.col("period_id").replace_strict({k: p.end for k, p in by_id.items()}, return_dtype=pl.Date).alias("period_end"),
    ).join(states.select(pl.col("as_of_date").alias("period_end"), "Id", "CloseDate", "Amount", "CurrencyIsoCode"), on=["period_end", "Id"])
    converted = attach_rates(
        frame, inputs.rates, date_col="CloseDate", currency_col="CurrencyIsoCode", corporate_currency=inputs.rules.corporate_currency
    ).filter(pl.col(RATE_COL).is_not_null())
    return converted.select(
        "period_id", "period_start", "period_end", pl.col("CloseDate").alias("close_date"),
        (pl.col("Amount").fill_null(0.0) / pl.col(RATE_COL)).alias("amount_usd"),
    )
