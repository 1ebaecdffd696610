"""The hierarchical win-rate model: it recovers known rates, pools a rep without data to its team
and a team without data to the company, converges with its default settings, and its prediction
API has the shapes and errors callers rely on.

One fit (the default FitSettings) on simulated data serves every test that needs a posterior:
3 teams x 8 reps, 4 stages, the 3 close-date buckets, 4 quarterly periods, about 400 trials per
rep (deals down-weighted over the checkpoints that saw them, so trials are fractional). The
truth is the simulator's, at elapsed 0.5 and an average period. Sampling is seeded, so the
figures are the same on every run; the tolerances leave room for other seeds (checked on four:
mean error 0.020-0.024, 90th percentile 0.05-0.06, coverage 0.74-0.90, new rep 0.020-0.030).

A second, smaller fit has two deal classes (new business, and renewals at +2.0 on the logit
scale): 3 teams x 6 reps, 3 stages, 3 periods, about 600 trials per rep, half per class (about
7 s with a warm compile cache). On six seeds: class difference 1.86-2.05 (posterior sd 0.06-0.07),
mean error 0.017-0.023, 90th percentile 0.04-0.05, max 0.08-0.12, coverage 0.71-0.85.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quota_platform.lib.forecast import winrates as wr
from quota_platform.lib.forecast.model_fit import MAX_RHAT, fit_until_converged  # the caller's check
from quota_platform.samples.winrate_cells import SimulatedWinRates, simulate_cells

ROOT = Path(__file__).resolve().parents[1]

# tolerances, stated once
WELL_OBSERVED_TRIALS = 40.0  # a rep x stage x bucket cell with at least this many trials
MEAN_ABS_ERROR_WELL_OBSERVED = 0.035  # posterior mean vs true win rate, averaged over those cells
P90_ABS_ERROR_WELL_OBSERVED = 0.08  # ... 90% of them within this
MAX_ABS_ERROR_WELL_OBSERVED = 0.15  # ... and every one within this
MIN_COVERAGE_80 = 0.70  # share of all cells whose 80% interval holds the truth
NEW_REP_MEAN_TOLERANCE = 0.05  # a rep without data vs its team's true rate for a new rep, mean
NEW_REP_MAX_TOLERANCE = 0.12  # ... and in every stage and bucket
MIN_ESS = 200.0

SILENT_REP = "R000_07"  # team T000, in the roster, no cells
NEW_TEAM_REP, NEW_TEAM = "R999_00", "T999"  # a rep of a team with no data at all

# the two-class fit
CLASSES = ("new_business", "renewal")
RENEWAL_OFFSET = 2.0  # true mu[renewal] - mu[new_business], every stage and bucket
# The fitted company-level difference, averaged over the stage x bucket cells where both classes
# have data, has a posterior sd of about 0.07 here (about 5,400 trials per class; across six
# seeds it came out 1.86-2.05). 0.3 is about four of those sds: loose enough for any seed, tight
# enough that a model pooling the classes (difference 0) or mixing up their order (-2) fails.
CLASS_DIFFERENCE_TOLERANCE = 0.3


@pytest.fixture(scope="module")
def sim() -> SimulatedWinRates:
    return simulate_cells(
        n_teams=3, reps_per_team=8, n_stages=4, n_periods=4, deals_per_rep_period=100.0, seed=1,
        reps_without_data=1,
    )


@pytest.fixture(scope="module")
def posterior(sim) -> wr.WinRatePosterior:
    roster = pl.concat([sim.roster, pl.DataFrame({"rep_id": [NEW_TEAM_REP], "team_id": [NEW_TEAM]})])
    return wr.fit_win_rates(sim.cells, wr.FitSettings(), roster=roster)


@pytest.fixture(scope="module")
def summary(posterior) -> pl.DataFrame:
    return posterior.summary()


@pytest.fixture(scope="module")
def sim2() -> SimulatedWinRates:
    return simulate_cells(
        n_teams=3, reps_per_team=6, n_stages=3, n_periods=3, deals_per_rep_period=200.0, seed=3,
        deal_classes=CLASSES, class_offsets=(0.0, RENEWAL_OFFSET),
    )


@pytest.fixture(scope="module")
def posterior2(sim2) -> wr.WinRatePosterior:
    return wr.fit_win_rates(sim2.cells, wr.FitSettings(), roster=sim2.roster)


@pytest.fixture(scope="module")
def summary2(posterior2) -> pl.DataFrame:
    return posterior2.summary()


def _with_truth(summary: pl.DataFrame, sim: SimulatedWinRates) -> pl.DataFrame:
    known = summary.filter(pl.col("rep_id").is_in(sim.reps))
    keys = known.select("rep_id", "stage", "close_date_bucket", "deal_class").iter_rows()
    return known.with_columns(
        pl.Series("truth", [sim.true_rate(r, s, b, deal_class=c) for r, s, b, c in keys])
    )


def test_recovers_known_win_rates(sim, summary):
    """Posterior means of cells with plenty of data sit near the rates that generated the data,
    and the 80% intervals are calibrated (they hold the truth for most cells). A wrong index into
    mu, team or rep effects, a sign error in the likelihood or a broken elapsed slope fails it."""
    cells = _with_truth(summary, sim).filter(pl.col("rep_id") != SILENT_REP)
    _assert_recovered(cells)


def _assert_recovered(cells: pl.DataFrame) -> pl.DataFrame:
    """Well-observed cells within the error bounds of the truth, and 80% intervals calibrated;
    returns the well-observed cells."""
    well = cells.filter(pl.col("n_observed") >= WELL_OBSERVED_TRIALS)
    assert well.height >= 50, f"only {well.height} well-observed cells; the simulation is too thin"
    error = (well["win_rate_mean"] - well["truth"]).abs()
    assert error.mean() <= MEAN_ABS_ERROR_WELL_OBSERVED
    assert error.quantile(0.9) <= P90_ABS_ERROR_WELL_OBSERVED
    assert error.max() <= MAX_ABS_ERROR_WELL_OBSERVED, well.with_columns(error.alias("error")).sort("error").tail(5)
    covered = ((cells["win_rate_p10"] <= cells["truth"]) & (cells["truth"] <= cells["win_rate_p90"])).mean()
    assert covered >= MIN_COVERAGE_80, f"80% intervals hold the truth for only {covered:.0%} of cells"
    return well


def test_rep_without_data_gets_its_teams_rates(sim, summary):
    """A new rep (in the roster, no trials) is pooled from its team: its rates are what a new
    rep of that team wins on average (the team's rate over the population of reps) and its
    intervals are wider than a data-rich teammate's, because the spread between reps is added
    rather than assumed away."""
    mine = _with_truth(summary, sim).filter(pl.col("rep_id") == SILENT_REP)
    assert mine.height == len(sim.stages) * len(wr.BUCKETS)
    assert set(mine["pooled_from"]) == {"team"}
    assert mine["n_observed"].sum() == 0
    team = sim.rep_team[SILENT_REP]
    deviation = np.array([
        abs(mean - sim.true_new_rep_rate(team, stage, bucket))
        for stage, bucket, mean in mine.select("stage", "close_date_bucket", "win_rate_mean").iter_rows()
    ])
    assert deviation.mean() <= NEW_REP_MEAN_TOLERANCE, deviation
    assert deviation.max() <= NEW_REP_MAX_TOLERANCE, deviation
    teammates = [r for r in sim.reps if sim.rep_team[r] == team and r != SILENT_REP]
    width = lambda df: (df["win_rate_p90"] - df["win_rate_p10"]).mean()  # noqa: E731
    teammate = summary.filter(pl.col("rep_id") == teammates[0])
    assert width(mine) > width(teammate)


def test_team_without_data_falls_back_to_company(summary):
    rows = summary.filter(pl.col("rep_id") == NEW_TEAM_REP)
    assert set(rows["pooled_from"]) == {"company"}
    assert rows["win_rate_mean"].is_between(0.0, 1.0).all()


def test_the_fit_as_the_platform_runs_it_converges(sim):
    """The caller blocks on max R-hat > 1.01 or any divergence, after one automatic refit with
    longer tuning (model_fit.fit_until_converged): that path must pass on data like this, with
    enough effective draws for the 10% and 90% quantiles.

    Why not the first fit alone: on this data a couple of divergent transitions in one first fit
    depend on the seed (33 of 56 seeds gave at least one, under either parameterisation), which is
    what the refit is for; a test of the first fit alone failed or passed by the seed."""
    roster = pl.concat([sim.roster, pl.DataFrame({"rep_id": [NEW_TEAM_REP], "team_id": [NEW_TEAM]})])
    d = fit_until_converged(sim.cells, wr.FitSettings(), roster).diagnostics
    assert d["max_rhat"] <= MAX_RHAT, d
    assert d["divergences"] == 0, d
    assert d["min_ess_bulk"] >= MIN_ESS and d["min_ess_tail"] >= MIN_ESS, d
    assert d["n_cells"] > 0 and d["n_observations"] > 0 and d["fit_seconds"] > 0


def test_logit_draws_shapes_pooling_and_errors(sim, posterior):
    rep = sim.reps[0]
    items = dict(
        rep_ids=[rep, "NEW", "NEW", "NEW2"],
        team_ids=[sim.rep_team[rep], "T001", "T001", "TX"],
        stages=["S0", "S1", "S1", "S3"],
        buckets=["in_period", "overdue", "overdue", "later"],
    )
    out = posterior.logit_draws(**items, elapsed=0.5, n_draws=100, rng=1)
    assert out.shape == (100, 4) and np.isfinite(out).all()
    # one unknown rep draws one set of effects, shared by its items
    np.testing.assert_array_equal(out[:, 1], out[:, 2])
    full = posterior.logit_draws(**items, elapsed=np.array([0.1, 0.5, 0.9, 0.5]), rng=1)
    assert full.shape == (posterior.n_draws, 4)
    assert posterior.n_draws == posterior.draws["mu"].shape[0] == posterior.draws["rep"].shape[0]
    # reproducible with a seed; a common period shock widens every item
    again = posterior.logit_draws(**items, elapsed=0.5, n_draws=100, rng=1)
    np.testing.assert_array_equal(out, again)
    shocked = posterior.logit_draws(**items, elapsed=0.5, period_shock=True, rng=2)
    calm = posterior.logit_draws(**items, elapsed=0.5, rng=2)
    assert shocked[:, 0].std() > calm[:, 0].std()

    with pytest.raises(ValueError, match="'Negotiation'"):
        posterior.logit_draws([rep], ["T000"], ["Negotiation"], ["in_period"], 0.5)
    with pytest.raises(ValueError, match="'someday'"):
        posterior.logit_draws([rep], ["T000"], ["S0"], ["someday"], 0.5)
    with pytest.raises(ValueError, match="one entry per item"):
        posterior.logit_draws([rep, rep], ["T000"], ["S0"], ["in_period"], 0.5)


def test_summary_columns_and_rows(sim, posterior, summary):
    assert summary.columns == [
        "rep_id", "stage", "deal_class", "close_date_bucket", "win_rate_mean", "win_rate_p10", "win_rate_p90",
        "n_observed", "pooled_from",
    ]
    n_reps = len(sim.reps) + 1  # the roster's rep of a team with no data
    assert len(posterior.reps) == n_reps
    assert posterior.deal_classes == [wr.DEFAULT_DEAL_CLASS]
    assert set(summary["deal_class"]) == {wr.DEFAULT_DEAL_CLASS}
    assert summary.height == n_reps * len(sim.stages) * len(wr.BUCKETS)
    assert summary.select("rep_id", "stage", "close_date_bucket").is_unique().all()
    assert set(summary["pooled_from"]) <= {"rep", "team", "company"}
    assert (summary["win_rate_p10"] <= summary["win_rate_mean"]).all()
    assert (summary["win_rate_mean"] <= summary["win_rate_p90"]).all()
    # trials in the summary are the training trials
    assert summary["n_observed"].sum() == pytest.approx(sim.cells["trials"].sum())


@pytest.mark.parametrize(
    "change, message",
    [
        (pl.col("wins") + 1000.0, "wins outside 0..trials"),
        (pl.lit(-1.0), "negative"),
    ],
)
def test_bad_cells_are_refused(sim, change, message):
    column = "wins" if "wins" in message else "trials"
    bad = sim.cells.head(5).with_columns(change.alias(column))
    with pytest.raises(ValueError, match=message):
        wr.validate_cells(bad)


def test_unknown_bucket_and_missing_column_are_refused(sim):
    with pytest.raises(ValueError, match="close_date_bucket"):
        wr.validate_cells(sim.cells.head(3).with_columns(pl.lit("soon").alias("close_date_bucket")))
    with pytest.raises(ValueError, match="period_id"):
        wr.fit_win_rates(sim.cells.drop("period_id"))


def test_softplus_kernel_matches_reference():
    """The likelihood's per-cell term runs in a hand-written numba kernel with its own log; it
    must agree with numpy (value and gradients), also at extreme logits, and an overflowing
    logit must give an infinite sum (a rejected point), not a finite wrong one."""
    gen = np.random.default_rng(3)
    unit_eta = np.concatenate([gen.normal(-2.0, 1.5, 200), [-40.0, -700.0, 30.0]])
    time_eta = gen.normal(0.0, 0.5, 12)
    n = 5000
    cells = np.stack([
        gen.integers(0, unit_eta.size, n), gen.integers(0, time_eta.size, n), gen.random(n) * 3,
    ]).astype(np.float64)
    kernel = wr._softplus_sum_kernel()
    total, grad_unit, grad_time = kernel(unit_eta, time_eta, cells)
    ref_total, ref_unit, ref_time = wr._softplus_sum_numpy(unit_eta, time_eta, cells)
    assert float(total) == pytest.approx(ref_total, rel=1e-13)
    np.testing.assert_allclose(grad_unit, ref_unit, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_time, ref_time, rtol=1e-12, atol=1e-14)
    # the gradient is the derivative of the sum
    step = 1e-6
    bumped = unit_eta.copy()
    bumped[3] += step
    numeric = (wr._softplus_sum_numpy(bumped, time_eta, cells)[0] - ref_total) / step
    assert numeric == pytest.approx(ref_unit[3], rel=1e-4)
    overflow = unit_eta.copy()
    overflow[0] = 800.0
    cells[0, 0] = 0
    assert np.isinf(float(kernel(overflow, time_eta, cells)[0]))


def test_configure_compile_cache_sets_the_flag_before_import(tmp_path):
    code = (
        "import os, sys; from pathlib import Path; from quota_platform.lib.forecast import winrates as wr; "
        f"wr.configure_compile_cache(Path({str(tmp_path)!r})); "
        "assert 'pytensor' not in sys.modules; import pytensor; "
        f"assert Path(str(pytensor.config.base_compiledir)) == Path({str(tmp_path)!r}).resolve(), "
        "pytensor.config.base_compiledir"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_configure_compile_cache_refuses_after_import(posterior, tmp_path):
    """Once pytensor is imported its compile directory is fixed: a late call must fail loudly
    instead of silently compiling into the old directory."""
    with pytest.raises(RuntimeError, match="before anything imports pytensor"):
        wr.configure_compile_cache(tmp_path / "elsewhere")


def test_same_seed_gives_the_same_draws_and_shocks_for_any_items(sim, posterior):
    """Projections combine calls for different deals draw by draw: with one seed, the selected
    posterior draws and the common period shock must not depend on which reps (known or new)
    a call asks about."""
    rep = sim.reps[0]
    alone = posterior.logit_draws([rep], [sim.rep_team[rep]], ["S1"], ["in_period"], 0.5,
                                  n_draws=50, rng=7, period_shock=True)
    with_new = posterior.logit_draws([rep, "NEW", "NEW2"], [sim.rep_team[rep], "TX", "T001"], ["S1", "S2", "S0"],
                                     ["in_period", "later", "overdue"], 0.5, n_draws=50, rng=7, period_shock=True)
    np.testing.assert_array_equal(alone[:, 0], with_new[:, 0])


# --- deal classes -----------------------------------------------------------------------------


def test_cells_without_deal_class_are_one_class(sim):
    """Callers without the column keep working: every row is of class "all", and the fit of
    such cells (the module's posterior) has one class with a class axis of length one."""
    assert wr.validate_cells(sim.cells.drop("deal_class"))["deal_class"].unique().to_list() == ["all"]
    assert wr.validate_cells(sim.cells.drop("deal_class")).drop("deal_class").equals(
        wr.validate_cells(sim.cells).drop("deal_class")
    )


def test_null_deal_class_is_refused_and_classes_are_kept_apart(sim2):
    with pytest.raises(ValueError, match="null deal_class"):
        wr.validate_cells(sim2.cells.head(4).with_columns(pl.lit(None, pl.String).alias("deal_class")))
    # the same row twice in one class is summed, in two classes kept apart
    row = sim2.cells.head(1)
    twice = wr.validate_cells(pl.concat([row, row]))
    assert twice.height == 1 and twice["trials"][0] == pytest.approx(2 * row["trials"][0])
    other = row.with_columns(pl.lit("expansion").alias("deal_class"))
    apart = wr.validate_cells(pl.concat([row, other]))
    assert apart.height == 2 and sorted(apart["deal_class"]) == sorted([row["deal_class"][0], "expansion"])
    assert apart["trials"].to_list() == [row["trials"][0]] * 2


def test_recovers_deal_class_difference_and_rates(sim2, posterior2, summary2):
    """Two classes, renewals 2.0 above new business on the logit scale in every stage and
    bucket: the company-level difference in mu is recovered, and so is every well-observed
    rep's rate in each class (the same checks as the one-class recovery test)."""
    assert posterior2.deal_classes == list(CLASSES)
    n_s, n_b = len(sim2.stages), len(wr.BUCKETS)
    assert posterior2.draws["mu"].shape == (posterior2.n_draws, n_s, 2, n_b)
    assert posterior2.draws["slope"].shape == (posterior2.n_draws, 2, n_b)
    assert sim2.mu.shape == (n_s, 2, n_b) and sim2.slope.shape == (2, n_b)
    d = posterior2.diagnostics
    assert d["max_rhat"] <= MAX_RHAT and d["divergences"] == 0, d

    both = (
        sim2.cells.group_by("stage", "close_date_bucket").agg(pl.col("deal_class").n_unique().alias("n"))
        .filter(pl.col("n") == 2)
    )
    assert both.height == n_s * n_b
    mu = posterior2.draws["mu"]
    nb, rn = posterior2.deal_classes.index("new_business"), posterior2.deal_classes.index("renewal")
    at = [(posterior2.stages.index(s), wr.BUCKETS.index(b)) for s, b, _ in both.iter_rows()]
    diff = np.mean([mu[:, s, rn, b] - mu[:, s, nb, b] for s, b in at], axis=0)  # per draw
    assert abs(diff.mean() - RENEWAL_OFFSET) <= CLASS_DIFFERENCE_TOLERANCE, (diff.mean(), diff.std())

    cells = _with_truth(summary2, sim2)
    well = _assert_recovered(cells)
    assert set(well["deal_class"]) == set(CLASSES)


def test_unknown_deal_class_gets_the_average_of_known_classes(sim2, posterior2):
    """A class the fit has not seen takes, per draw, the mean over the fitted classes of
    mu + slope * (e - 0.5) for its stage and bucket; everything else is as for a known class."""
    rep, team = sim2.reps[4], sim2.rep_team[sim2.reps[4]]
    items = dict(
        rep_ids=[rep, rep, "NEW", rep], team_ids=[team, team, "T001", team],
        stages=["S0", "S2", "S1", "S1"], buckets=["in_period", "later", "overdue", "overdue"],
    )
    elapsed = np.array([0.1, 0.7, 0.5, 0.9])
    seed, n = 11, 50
    got = posterior2.logit_draws(**items, elapsed=elapsed, n_draws=n, rng=seed,
                                 deal_classes=["expansion", "other", "expansion", "renewal"])

    # by hand, from the draws: the same posterior draws as any call with this seed
    sel = np.random.default_rng(seed).choice(posterior2.n_draws, size=n, replace=False)
    dr = posterior2.draws
    r, t = posterior2.reps.index(rep), posterior2.teams.index(team)
    for j in (0, 1):
        s, b = posterior2.stages.index(items["stages"][j]), wr.BUCKETS.index(items["buckets"][j])
        base = np.mean([dr["mu"][sel, s, k, b] + dr["slope"][sel, k, b] * (elapsed[j] - 0.5) for k in range(2)], axis=0)
        expected = base + dr["team"][sel, t, s] + dr["rep"][sel, r, s]
        np.testing.assert_allclose(got[:, j], expected, rtol=0, atol=1e-12)
    # a known class in the same call is exactly that class
    s, b, k = posterior2.stages.index("S1"), wr.BUCKETS.index("overdue"), posterior2.deal_classes.index("renewal")
    expected = dr["mu"][sel, s, k, b] + dr["slope"][sel, k, b] * 0.4 + dr["team"][sel, t, s] + dr["rep"][sel, r, s]
    np.testing.assert_allclose(got[:, 3], expected, rtol=0, atol=1e-12)
    # a new rep's fresh effects do not depend on the class: unknown = mean of the known classes
    per_class = [posterior2.logit_draws(**items, elapsed=elapsed, n_draws=n, rng=seed, deal_classes=[c] * 4)
                 for c in CLASSES]
    np.testing.assert_allclose(got[:, 2], np.mean(per_class, axis=0)[:, 2], rtol=0, atol=1e-12)
    # and the classes really differ: renewals above new business for every draw
    assert (per_class[1] > per_class[0]).all()


def test_logit_draws_deal_class_arguments(sim, posterior, sim2, posterior2):
    rep = sim2.reps[0]
    one = dict(rep_ids=[rep], team_ids=[sim2.rep_team[rep]], stages=["S0"], buckets=["in_period"], elapsed=0.5)
    with pytest.raises(ValueError, match="pass deal_classes"):
        posterior2.logit_draws(**one)
    with pytest.raises(ValueError, match="one entry per item"):
        posterior2.logit_draws(**one, deal_classes=["renewal", "renewal"])
    with pytest.raises(ValueError, match="one entry per item"):
        posterior2.logit_draws(**one, deal_classes="renewal")
    # one class: None is that class, and any other class is the average over the one class
    rep = sim.reps[0]
    one = dict(rep_ids=[rep], team_ids=[sim.rep_team[rep]], stages=["S2"], buckets=["later"], elapsed=0.3)
    default = posterior.logit_draws(**one, n_draws=20, rng=5)
    np.testing.assert_array_equal(default, posterior.logit_draws(**one, n_draws=20, rng=5, deal_classes=["all"]))
    np.testing.assert_allclose(default, posterior.logit_draws(**one, n_draws=20, rng=5, deal_classes=["renewal"]),
                               rtol=0, atol=1e-12)


def test_summary_has_one_row_per_rep_stage_class_and_bucket(sim2, posterior2, summary2):
    assert summary2.columns == list(wr.SUMMARY_SCHEMA)
    assert summary2.columns[:4] == ["rep_id", "stage", "deal_class", "close_date_bucket"]
    assert summary2.height == len(posterior2.reps) * len(sim2.stages) * len(CLASSES) * len(wr.BUCKETS)
    assert summary2.select("rep_id", "stage", "deal_class", "close_date_bucket").is_unique().all()
    assert set(summary2["deal_class"]) == set(CLASSES)
    # n_observed is the training trials of that rep, stage, class and bucket
    trials = sim2.cells.group_by("rep_id", "stage", "deal_class", "close_date_bucket").agg(pl.col("trials").sum())
    joined = summary2.join(trials, on=["rep_id", "stage", "deal_class", "close_date_bucket"], how="left")
    np.testing.assert_allclose(joined["n_observed"].to_numpy(), joined["trials"].fill_null(0.0).to_numpy(), rtol=1e-12)
    assert posterior2.observed.columns == [
        "rep_id", "team_id", "stage", "deal_class", "close_date_bucket", "trials", "wins",
    ]
    # renewals win more than new business for the same rep, stage and bucket
    wide = summary2.pivot("deal_class", index=["rep_id", "stage", "close_date_bucket"], values="win_rate_mean")
    assert (wide["renewal"] > wide["new_business"]).all()
    assert set(summary2["pooled_from"]) == {"rep"}
