"""The hierarchical win-rate model: it recovers known rates, pools a rep without data to its team
and a team without data to the company, converges with its default settings, and its prediction
API has the shapes and errors callers rely on.

One fit (the default FitSettings) on simulated data serves every test that needs a posterior:
3 teams x 8 reps, 4 stages, the 3 close-date buckets, 4 quarterly periods, about 400 trials per
rep (deals down-weighted over the checkpoints that saw them, so trials are fractional). The
truth is the simulator's, at elapsed 0.5 and an average period. Sampling is seeded, so the
figures are the same on every run; the tolerances leave room for other seeds (checked on four:
mean error 0.020-0.024, 90th percentile 0.05-0.06, coverage 0.74-0.90, new rep 0.020-0.030).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quota_platform.lib import winrates as wr

ROOT = Path(__file__).resolve().parents[1]

# tolerances, stated once
WELL_OBSERVED_TRIALS = 40.0  # a rep x stage x bucket cell with at least this many trials
MEAN_ABS_ERROR_WELL_OBSERVED = 0.035  # posterior mean vs true win rate, averaged over those cells
P90_ABS_ERROR_WELL_OBSERVED = 0.08  # ... 90% of them within this
MAX_ABS_ERROR_WELL_OBSERVED = 0.15  # ... and every one within this
MIN_COVERAGE_80 = 0.70  # share of all cells whose 80% interval holds the truth
NEW_REP_MEAN_TOLERANCE = 0.05  # a rep without data vs its team's true rate for a new rep, mean
NEW_REP_MAX_TOLERANCE = 0.12  # ... and in every stage and bucket
MAX_RHAT = 1.01  # the caller's blocking check
MIN_ESS = 200.0

SILENT_REP = "R000_07"  # team T000, in the roster, no cells
NEW_TEAM_REP, NEW_TEAM = "R999_00", "T999"  # a rep of a team with no data at all


@pytest.fixture(scope="module")
def sim() -> wr.SimulatedWinRates:
    return wr.simulate_cells(
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


def _with_truth(summary: pl.DataFrame, sim: wr.SimulatedWinRates) -> pl.DataFrame:
    known = summary.filter(pl.col("rep_id").is_in(sim.reps))
    return known.with_columns(
        pl.Series(
            "truth",
            [sim.true_rate(r, s, b) for r, s, b in known.select("rep_id", "stage", "close_date_bucket").iter_rows()],
        )
    )


def test_recovers_known_win_rates(sim, summary):
    """Posterior means of cells with plenty of data sit near the rates that generated the data,
    and the 80% intervals are calibrated (they hold the truth for most cells). A wrong index into
    mu, team or rep effects, a sign error in the likelihood or a broken elapsed slope fails it."""
    cells = _with_truth(summary, sim).filter(pl.col("rep_id") != SILENT_REP)
    well = cells.filter(pl.col("n_observed") >= WELL_OBSERVED_TRIALS)
    assert well.height >= 50, f"only {well.height} well-observed cells; the simulation is too thin"
    error = (well["win_rate_mean"] - well["truth"]).abs()
    assert error.mean() <= MEAN_ABS_ERROR_WELL_OBSERVED
    assert error.quantile(0.9) <= P90_ABS_ERROR_WELL_OBSERVED
    assert error.max() <= MAX_ABS_ERROR_WELL_OBSERVED, well.with_columns(error.alias("error")).sort("error").tail(5)
    covered = ((cells["win_rate_p10"] <= cells["truth"]) & (cells["truth"] <= cells["win_rate_p90"])).mean()
    assert covered >= MIN_COVERAGE_80, f"80% intervals hold the truth for only {covered:.0%} of cells"


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


def test_default_settings_converge(posterior):
    """The caller blocks on max R-hat > 1.01 or any divergence; the defaults must pass on data
    like this, with enough effective draws for the 10% and 90% quantiles."""
    d = posterior.diagnostics
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
        "rep_id", "stage", "close_date_bucket", "win_rate_mean", "win_rate_p10", "win_rate_p90",
        "n_observed", "pooled_from",
    ]
    n_reps = len(sim.reps) + 1  # the roster's rep of a team with no data
    assert len(posterior.reps) == n_reps
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
        "import os, sys; from pathlib import Path; from quota_platform.lib import winrates as wr; "
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
