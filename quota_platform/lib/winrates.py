"""Hierarchical Bayesian win rates: P(an open deal is won within the current period), per rep,
stage and close-date bucket, as a function of how far through the period the snapshot was taken.

Training data are the aggregated, down-weighted binomial counts of
:func:`quota_platform.lib.training.win_rate_cells`. The model, on the logit scale, for a cell of
rep r (in team t at the time), stage s, close-date bucket b, elapsed fraction e and training
period p::

    eta = mu[s, b] + slope[b] * (e - 0.5)
          + sigma_team * z_team[t, s]                                  (team x stage)
          + sigma_rep * z_rep[r] + sigma_rep_stage * z_rep_stage[r, s]  (rep, rep x stage)
          + sigma_period * z_period[p]                                 (common shock of a period)
    wins ~ "Binomial"(trials, sigmoid(eta))   as a Potential, so fractional counts are exact weights

    mu ~ Normal(-1, 1.5)   slope ~ Normal(0, 1)   z_* ~ Normal(0, 1)
    sigma_team, sigma_rep, sigma_rep_stage, sigma_period ~ HalfNormal(0.5)

Every group effect is non-centred (a standard normal times its scale), which samples well on
aggregated counts. Pooling runs rep -> team -> company: a rep's rate in a stage it has never
worked borrows its own overall effect and its team's stage effect; a rep with no data at all gets
a fresh draw of the rep effects (its team's distribution of reps); a team with no data a fresh
draw of the team effect; a rep with no team (null ``team_id``) has no team effect.

The period effect is what every deal of one period shares (a good or a bad quarter). Predictions
(:meth:`WinRatePosterior.logit_draws`, :meth:`WinRatePosterior.summary`) are for an average period
unless asked for a shock; ``draws["sigma_period"]`` is there for callers that draw one common
shock per simulated future period themselves.

Compile cache. The first compile of the model costs 10-30 s. PyTensor keeps compiled code under
its ``base_compiledir`` (C code for the PyMC sampler, and with ``numba__cache`` on, the default,
the numba-compiled log density and gradient used by nutpie, under ``<base_compiledir>/numba``).
A later process with the same directory loads them instead of compiling. Call
:func:`configure_compile_cache` before anything imports pytensor (pymc, nutpie or arviz do not
import it here until :func:`fit_win_rates` runs). nutpie wraps the cached function in a small
``numba.cfunc`` that numba cannot cache ("uses dynamic globals"): that wrapper is compiled in
every process, a few seconds, and is the floor of a warm fit's set-up time. Data enter the graph
as shared variables, so the cached code serves any data set with the same model structure.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from quota_platform.lib.training import BUCKET_IN_PERIOD, BUCKET_LATER, BUCKET_OVERDUE, CHECKPOINTS

BUCKETS = (BUCKET_IN_PERIOD, BUCKET_OVERDUE, BUCKET_LATER)

CELL_COLUMNS = ("rep_id", "team_id", "stage", "close_date_bucket", "elapsed", "period_id", "trials", "wins")

SUMMARY_SCHEMA = {
    "rep_id": pl.String,
    "stage": pl.String,
    "close_date_bucket": pl.String,
    "win_rate_mean": pl.Float64,
    "win_rate_p10": pl.Float64,
    "win_rate_p90": pl.Float64,
    "n_observed": pl.Float64,
    "pooled_from": pl.String,
}

PRIOR_MU = (-1.0, 1.5)
PRIOR_SLOPE_SD = 1.0
PRIOR_SIGMA = 0.5
# InverseGamma(a, b) on sigma_period**2: median sigma 0.15, 95% in 0.085-0.41. A few periods cannot
# tell a small common shock from none; the prior keeps projections from promising a calm quarter.
PRIOR_PERIOD_VARIANCE = (2.0, 0.04)


def configure_compile_cache(path: Path) -> None:
    """Keep PyTensor's compiled code (and nutpie's numba log density) in ``path``, shared by every
    process given the same path. Must run before pytensor is imported in this process (so before
    pymc, nutpie or arviz), because PyTensor reads ``PYTENSOR_FLAGS`` once, at import. Numba's own
    cache of other ``cache=True`` functions goes to ``path/numba_cache`` (``NUMBA_CACHE_DIR``).

    Raises RuntimeError if pytensor is already imported with a different compile directory, since
    the setting could no longer take effect."""
    path = Path(path).expanduser().resolve()
    if "pytensor" in sys.modules:
        current = Path(str(sys.modules["pytensor"].config.base_compiledir)).resolve()
        if current != path:
            raise RuntimeError(
                f"pytensor is already imported with base_compiledir={current}; call "
                f"configure_compile_cache({str(path)!r}) before anything imports pytensor, pymc or nutpie"
            )
        return
    path.mkdir(parents=True, exist_ok=True)
    flags = [
        f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",")
        if f.strip() and not f.strip().startswith("base_compiledir=")
    ]
    os.environ["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={path}"])
    if "numba" not in sys.modules:
        os.environ["NUMBA_CACHE_DIR"] = str(path / "numba_cache")


@dataclass(frozen=True)
class FitSettings:
    """Sampler settings. The defaults converge (max R-hat <= 1.01, no divergences) on data shaped
    like the platform's: hundreds of reps, a few thousand parameters. R-hat's own noise grows with
    the number of parameters and shrinks with draws, which is why the draws are not fewer."""

    draws: int = 1000  # per chain
    tune: int = 500
    chains: int = 2
    target_accept: float = 0.9
    seed: int = 20240101
    sampler: str = "nutpie"  # or "pymc"


@dataclass
class WinRatePosterior:
    """Posterior draws of the win-rate model, flattened over chains (first axis: draw).

    ``draws``:
      - ``mu`` (n_draws, n_stages, n_buckets): company logit at elapsed 0.5, average period
      - ``slope`` (n_draws, n_buckets): change in logit per unit of elapsed fraction
      - ``team`` (n_draws, n_teams, n_stages): team x stage effect (logit)
      - ``rep`` (n_draws, n_reps, n_stages): total rep effect (rep + rep x stage, logit)
      - ``period`` (n_draws, n_periods): effect of each training period (``periods``)
      - ``sigma_team``, ``sigma_rep``, ``sigma_rep_stage``, ``sigma_period`` (n_draws,)

    Reps and teams in the roster without any trials carry draws from their prior given the
    sampled scales (the predictive for a new member), made at fit time with the fit's seed.
    ``rep_team`` maps each rep to its current team, or None for a rep with no team.
    ``observed`` holds the training trials and wins per rep_id, team_id, stage, close_date_bucket.
    """

    reps: list[str]
    teams: list[str]
    stages: list[str]
    rep_team: dict[str, str | None]
    draws: dict[str, np.ndarray]
    diagnostics: dict[str, float]
    periods: list[str] = field(default_factory=list)
    observed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_OBSERVED_SCHEMA))

    @property
    def n_draws(self) -> int:
        return int(self.draws["mu"].shape[0])

    @property
    def period_shock_sd(self) -> np.ndarray:
        """(n_draws,) sd of a new period's common logit shock relative to the average of the
        training periods (which ``mu`` describes): sigma_period * sqrt(1 + 1/n_periods)."""
        return self.draws["sigma_period"] * np.sqrt(1.0 + 1.0 / max(len(self.periods), 1))

    def stage_index(self, stages: Sequence[str]) -> np.ndarray:
        pos = {s: i for i, s in enumerate(self.stages)}
        unknown = sorted({str(s) for s in stages if s not in pos})
        if unknown:
            raise ValueError(
                f"stage(s) not in the win-rate model: {', '.join(map(repr, unknown))} "
                f"(known stages: {', '.join(map(repr, self.stages))})"
            )
        return np.array([pos[s] for s in stages], dtype=np.int64)

    def logit_draws(
        self,
        rep_ids: Sequence[str],
        team_ids: Sequence[str | None],
        stages: Sequence[str],
        buckets: Sequence[str],
        elapsed: float | np.ndarray,
        n_draws: int | None = None,
        rng: np.random.Generator | int | None = None,
        period_shock: bool = False,
    ) -> np.ndarray:
        """(n_draws, n_items) logit win probability of each item (one open deal's rep, team,
        stage, close-date bucket and the elapsed fraction 0-1 of the period at the snapshot).

        - A rep not in the model gets a fresh draw of the rep effects (one per rep id, shared by
          its items): its team's rate, widened by the spread between reps.
        - ``team_ids`` are the items' current teams and apply to known reps too. A team not in the
          model gets a fresh team draw; None means no team (company level).
        - An unknown stage or bucket raises ValueError naming it.
        - ``n_draws``: None for every posterior draw in order; otherwise a random subset (with
          replacement only if more are asked for than exist), from ``rng``.
        - ``period_shock``: add one common period effect per draw (``period_shock_sd`` x N(0, 1)),
          the same for every item; by default the average period.

        Pass an int or a Generator as ``rng`` for reproducible output whenever randomness is used.
        """
        n = len(rep_ids)
        if not (len(team_ids) == len(stages) == len(buckets) == n):
            raise ValueError(
                f"rep_ids, team_ids, stages and buckets must have one entry per item; got lengths "
                f"{n}, {len(team_ids)}, {len(stages)}, {len(buckets)}"
            )
        s_idx = self.stage_index(stages)
        b_idx = _bucket_index(buckets)
        e = np.broadcast_to(np.asarray(elapsed, dtype=np.float64), (n,))
        if not np.all(np.isfinite(e)):
            raise ValueError("elapsed must be finite")
        gen = np.random.default_rng(rng)
        total = self.n_draws
        if n_draws is None:
            sel = np.arange(total)
        else:
            if n_draws < 1:
                raise ValueError(f"n_draws must be positive, got {n_draws}")
            sel = gen.choice(total, size=n_draws, replace=n_draws > total)
        d = sel.size
        dr = self.draws

        eta = dr["mu"][sel][:, s_idx, b_idx] + dr["slope"][sel][:, b_idx] * (e - 0.5)

        # team x stage effect: known teams from the posterior, unknown teams drawn fresh
        team_pos = {t: i for i, t in enumerate(self.teams)}
        new_teams = sorted({t for t in team_ids if t is not None and t not in team_pos})
        new_team_pos = {t: i for i, t in enumerate(new_teams)}
        known_t = np.array([t is not None and t in team_pos for t in team_ids], dtype=bool)
        new_t = np.array([t is not None and t in new_team_pos for t in team_ids], dtype=bool)
        if known_t.any():
            t_idx = np.array([team_pos[t] for t, k in zip(team_ids, known_t) if k], dtype=np.int64)
            eta[:, known_t] += dr["team"][sel][:, t_idx, s_idx[known_t]]
        if new_t.any():
            effect = _new_team_effects(gen, dr["sigma_team"][sel], len(new_teams), len(self.stages))
            u_idx = np.array([new_team_pos[t] for t, k in zip(team_ids, new_t) if k], dtype=np.int64)
            eta[:, new_t] += effect[:, u_idx, s_idx[new_t]]

        # rep effects: known reps from the posterior, unknown reps drawn fresh
        rep_pos = {r: i for i, r in enumerate(self.reps)}
        new_reps = sorted({r for r in rep_ids if r not in rep_pos})
        new_rep_pos = {r: i for i, r in enumerate(new_reps)}
        known_r = np.array([r in rep_pos for r in rep_ids], dtype=bool)
        if known_r.any():
            r_idx = np.array([rep_pos[r] for r, k in zip(rep_ids, known_r) if k], dtype=np.int64)
            eta[:, known_r] += dr["rep"][sel][:, r_idx, s_idx[known_r]]
        if new_reps:
            effect = _new_rep_effects(
                gen, dr["sigma_rep"][sel], dr["sigma_rep_stage"][sel], len(new_reps), len(self.stages)
            )
            u_idx = np.array([new_rep_pos[r] for r, k in zip(rep_ids, known_r) if not k], dtype=np.int64)
            eta[:, ~known_r] += effect[:, u_idx, s_idx[~known_r]]

        if period_shock:
            eta += (self.period_shock_sd[sel] * gen.standard_normal(d))[:, None]
        return eta

    def probability_draws(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """:meth:`logit_draws` on the probability scale."""
        return _sigmoid(self.logit_draws(*args, **kwargs))

    def summary(self) -> pl.DataFrame:
        """One row per rep x stage x close-date bucket, at elapsed 0.5 and an average period:
        rep_id, stage, close_date_bucket, win_rate_mean, win_rate_p10, win_rate_p90, n_observed
        (training trials in that cell), pooled_from ('rep' if the rep has trials in the stage,
        else 'team' if its current team has, else 'company')."""
        n_r, n_s, n_b = len(self.reps), len(self.stages), len(BUCKETS)
        if n_r == 0:
            return pl.DataFrame(schema=SUMMARY_SCHEMA)
        reps = np.repeat(np.array(self.reps, dtype=object), n_s * n_b)
        stages = np.tile(np.repeat(np.array(self.stages, dtype=object), n_b), n_r)
        buckets = np.tile(np.array(BUCKETS, dtype=object), n_r * n_s)
        teams = [self.rep_team.get(r) for r in reps]
        p = _sigmoid(self.logit_draws(list(reps), teams, list(stages), list(buckets), 0.5, rng=self._seed()))
        p10, p90 = np.quantile(p, [0.1, 0.9], axis=0)

        obs = self.observed
        cell_trials = {
            (r, s, b): t
            for r, s, b, t in obs.group_by("rep_id", "stage", "close_date_bucket")
            .agg(pl.col("trials").sum())
            .iter_rows()
        }
        rep_stage = {
            (r, s) for r, s, t in obs.group_by("rep_id", "stage").agg(pl.col("trials").sum()).iter_rows() if t > 0
        }
        team_stage = {
            (t, s)
            for t, s, n in obs.filter(pl.col("team_id").is_not_null())
            .group_by("team_id", "stage").agg(pl.col("trials").sum()).iter_rows()
            if n > 0
        }
        pooled = [
            "rep" if (r, s) in rep_stage else "team" if t is not None and (t, s) in team_stage else "company"
            for r, s, t in zip(reps, stages, teams)
        ]
        return pl.DataFrame(
            {
                "rep_id": list(reps),
                "stage": list(stages),
                "close_date_bucket": list(buckets),
                "win_rate_mean": p.mean(axis=0),
                "win_rate_p10": p10,
                "win_rate_p90": p90,
                "n_observed": [float(cell_trials.get(k, 0.0)) for k in zip(reps, stages, buckets)],
                "pooled_from": pooled,
            },
            schema=SUMMARY_SCHEMA,
        )

    def _seed(self) -> int:
        return int(self.diagnostics.get("seed", 0))


_OBSERVED_SCHEMA = {
    "rep_id": pl.String, "team_id": pl.String, "stage": pl.String, "close_date_bucket": pl.String,
    "trials": pl.Float64, "wins": pl.Float64,
}


def _new_team_effects(gen: np.random.Generator, sigma_team: np.ndarray, n_teams: int, n_stages: int) -> np.ndarray:
    """(n_draws, n_teams, n_stages) team x stage effects of teams the fit has not seen."""
    return sigma_team[:, None, None] * gen.standard_normal((sigma_team.size, n_teams, n_stages))


def _new_rep_effects(
    gen: np.random.Generator, sigma_rep: np.ndarray, sigma_rep_stage: np.ndarray, n_reps: int, n_stages: int
) -> np.ndarray:
    """(n_draws, n_reps, n_stages) total effects of reps the fit has not seen: an overall level
    plus stage deviations summing to zero, as in the model."""
    z = gen.standard_normal((sigma_rep.size, n_reps, n_stages))
    z -= z.mean(axis=2, keepdims=True)
    main = gen.standard_normal((sigma_rep.size, n_reps, 1))
    return sigma_rep[:, None, None] * main + sigma_rep_stage[:, None, None] * z


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bucket_index(buckets: Sequence[str]) -> np.ndarray:
    pos = {b: i for i, b in enumerate(BUCKETS)}
    unknown = sorted({str(b) for b in buckets if b not in pos})
    if unknown:
        raise ValueError(f"close-date bucket(s) {', '.join(map(repr, unknown))} not in {BUCKETS}")
    return np.array([pos[b] for b in buckets], dtype=np.int64)


def validate_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """The cells as the model reads them: checked, rows with no trials dropped and duplicate keys
    summed. Raises ValueError on a missing column, a null key, an unknown bucket, elapsed outside
    0-1, negative trials or wins outside 0..trials."""
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"win-rate cells lack column(s): {', '.join(missing)}")
    df = cells.select(
        pl.col("rep_id").cast(pl.String), pl.col("team_id").cast(pl.String), pl.col("stage").cast(pl.String),
        pl.col("close_date_bucket").cast(pl.String), pl.col("elapsed").cast(pl.Float64),
        pl.col("period_id").cast(pl.String), pl.col("trials").cast(pl.Float64), pl.col("wins").cast(pl.Float64),
    )
    for c in ("rep_id", "stage", "close_date_bucket", "elapsed", "period_id", "trials", "wins"):
        nulls = df[c].null_count()
        if nulls:
            raise ValueError(f"win-rate cells: {nulls} row(s) with a null {c}")
    bad_bucket = sorted(set(df["close_date_bucket"].unique().to_list()) - set(BUCKETS))
    if bad_bucket:
        raise ValueError(f"win-rate cells: close_date_bucket {bad_bucket} not in {BUCKETS}")
    checks = {
        "elapsed outside 0-1": ~pl.col("elapsed").is_between(0.0, 1.0),
        "negative or non-finite trials": (pl.col("trials") < 0) | ~pl.col("trials").is_finite(),
        "wins outside 0..trials": (pl.col("wins") < 0) | (pl.col("wins") > pl.col("trials") * (1 + 1e-9) + 1e-9)
        | ~pl.col("wins").is_finite(),
    }
    for what, expr in checks.items():
        bad = df.filter(expr)
        if bad.height:
            raise ValueError(f"win-rate cells: {bad.height} row(s) with {what}, e.g. {bad.row(0, named=True)}")
    return (
        df.filter(pl.col("trials") > 0)
        .with_columns(pl.min_horizontal("wins", "trials").alias("wins"))
        .group_by("rep_id", "team_id", "stage", "close_date_bucket", "elapsed", "period_id")
        .agg(pl.col("trials").sum(), pl.col("wins").sum())
        .sort("period_id", "rep_id", "stage", "close_date_bucket", "elapsed", "team_id", nulls_last=True)
    )


def _rep_teams(cells: pl.DataFrame, roster: pl.DataFrame | None) -> dict[str, str | None]:
    """Each rep's current team: the roster's if given, else the team of the rep's latest training
    period (most trials breaking ties)."""
    latest = (
        cells.group_by("rep_id", "team_id")
        .agg(pl.col("period_id").max().alias("last"), pl.col("trials").sum())
        .sort("rep_id", "last", "trials", descending=[False, True, True], nulls_last=True)
        .unique("rep_id", keep="first", maintain_order=True)
    )
    rep_team = dict(zip(latest["rep_id"].to_list(), latest["team_id"].to_list()))
    if roster is not None:
        if "rep_id" not in roster.columns or "team_id" not in roster.columns:
            raise ValueError("roster needs columns rep_id and team_id")
        for r, t in roster.select(pl.col("rep_id").cast(pl.String), pl.col("team_id").cast(pl.String)).iter_rows():
            if r is None:
                raise ValueError("roster: a null rep_id")
            rep_team[r] = t
    return rep_team


def fit_win_rates(
    cells: pl.DataFrame,
    settings: FitSettings = FitSettings(),
    roster: pl.DataFrame | None = None,
) -> WinRatePosterior:
    """Fit the hierarchical win-rate model (see the module docstring) to aggregated counts.

    ``cells``: rep_id, team_id (null: no team), stage, close_date_bucket (one of BUCKETS),
    elapsed (0-1), period_id, trials (>= 0, may be fractional), wins (0 <= wins <= trials).
    ``roster`` (optional): rep_id, team_id of every current rep, so that reps and teams without
    training data get predictions too, and to give a rep's current team when it moved.

    Diagnostics: max_rhat, min_ess_bulk, min_ess_tail (over every sampled parameter),
    divergences, fit_seconds (the whole call), compile_seconds, sample_seconds, n_cells
    (aggregated likelihood rows), n_observations (total trials), n_parameters, seed.
    """
    started = time.perf_counter()
    if settings.sampler not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {settings.sampler!r}")
    data = validate_cells(cells)
    if data.is_empty():
        raise ValueError("win-rate cells hold no trials: nothing to fit")

    rep_team = _rep_teams(_cell_keys(cells), roster)
    fit_reps = sorted(data["rep_id"].unique().to_list())
    fit_teams = sorted(data["team_id"].drop_nulls().unique().to_list())
    stages = sorted(data["stage"].unique().to_list())
    periods = sorted(data["period_id"].unique().to_list())
    reps = sorted(set(rep_team) | set(fit_reps))
    teams = sorted(set(fit_teams) | {t for t in rep_team.values() if t is not None})

    rep_pos = {r: i for i, r in enumerate(fit_reps)}
    team_pos = {t: i for i, t in enumerate(fit_teams)}
    n_s = len(stages)
    arrays = model_arrays(data, fit_reps, fit_teams, stages, periods)
    coords = {"stage": stages, "bucket": list(BUCKETS), "team": fit_teams, "rep": fit_reps, "period": periods}

    post, diag = _sample(arrays, coords, settings)

    n_draws = post["mu"].shape[0]
    n_p = len(periods)
    gen = np.random.default_rng([settings.seed, 1])
    a, b = PRIOR_PERIOD_VARIANCE
    if n_p >= 2:
        contrast = post["period_contrast"]
        period = contrast @ _helmert(n_p).T
        rate = b + 0.5 * np.sum(contrast**2, axis=1)
        shape = a + (n_p - 1) / 2.0
    else:
        period = np.zeros((n_draws, n_p))
        rate, shape = np.full(n_draws, b), a
    draws: dict[str, np.ndarray] = {
        "mu": post["mu"],
        "slope": post["slope"],
        "sigma_team": post["sigma_team"],
        "sigma_rep": post["sigma_rep"],
        "sigma_rep_stage": post["sigma_rep_stage"],
        # the conditional posterior of sigma_period^2 given the period effects: InverseGamma
        "sigma_period": np.sqrt(rate / gen.gamma(shape, size=n_draws)),
        "period": period,
    }
    # known teams and reps from the posterior; roster members without data drawn from the model
    team = _new_team_effects(gen, draws["sigma_team"], len(teams), n_s)
    if "z_team" in post:
        for t, i in team_pos.items():
            team[:, teams.index(t), :] = post["sigma_team"][:, None] * post["z_team"][:, :, i]
    else:
        for t in team_pos:
            team[:, teams.index(t), :] = 0.0
    rep = _new_rep_effects(gen, draws["sigma_rep"], draws["sigma_rep_stage"], len(reps), n_s)
    for r, i in rep_pos.items():
        rep[:, reps.index(r), :] = post["sigma_rep"][:, None] * post["z_rep"][:, i, None] + (
            post["sigma_rep_stage"][:, None] * post["z_rep_stage"][:, i, :] if "z_rep_stage" in post else 0.0
        )
    draws["team"] = team
    draws["rep"] = rep

    observed = (
        data.group_by("rep_id", "team_id", "stage", "close_date_bucket")
        .agg(pl.col("trials").sum(), pl.col("wins").sum())
        .sort("rep_id", "stage", "close_date_bucket", "team_id", nulls_last=True)
        .select(list(_OBSERVED_SCHEMA))
        .cast(_OBSERVED_SCHEMA)
    )
    diag.update(
        n_cells=float(data.height),
        n_observations=float(arrays["cell_trials"].sum()),
        seed=float(settings.seed),
        fit_seconds=time.perf_counter() - started,
    )
    return WinRatePosterior(
        reps=reps,
        teams=teams,
        stages=stages,
        rep_team={r: rep_team.get(r) for r in reps},
        draws=draws,
        diagnostics=diag,
        periods=periods,
        observed=observed,
    )


def _cell_keys(cells: pl.DataFrame) -> pl.DataFrame:
    """rep_id, team_id, period_id and trials of every row, zero-trial rows included: a rep listed
    only with zero trials is still a rep of the model (with no data)."""
    return cells.select(
        pl.col("rep_id").cast(pl.String), pl.col("team_id").cast(pl.String),
        pl.col("period_id").cast(pl.String), pl.col("trials").cast(pl.Float64),
    )


def model_arrays(
    data: pl.DataFrame, reps: list[str], teams: list[str], stages: list[str], periods: list[str]
) -> dict[str, np.ndarray]:
    """The validated cells as the model's data arrays, factorised for speed.

    The logit of a cell is the sum of a "unit" part (rep, team, stage, bucket: mu, team, rep and
    rep x stage effects) and a "time" part (bucket, elapsed, period: slope and period effect). The
    log likelihood of a cell, wins*eta - trials*log1p(exp(eta)), then needs one exponential per
    unit and per time, not per cell, and its linear part sums wins per unit and per time once,
    before sampling. A null team indexes the extra all-zero row of the team effect.
    """
    n_s, n_b, n_t = len(stages), len(BUCKETS), len(teams)
    codes = data.select(
        pl.col("rep_id").replace_strict(reps, list(range(len(reps))), return_dtype=pl.Int64).alias("r"),
        pl.col("team_id").replace_strict(teams, list(range(n_t)), default=n_t, return_dtype=pl.Int64).alias("t"),
        pl.col("stage").replace_strict(stages, list(range(n_s)), return_dtype=pl.Int64).alias("s"),
        pl.col("close_date_bucket").replace_strict(list(BUCKETS), list(range(n_b)), return_dtype=pl.Int64).alias("b"),
        pl.col("elapsed"),
        pl.col("period_id").replace_strict(periods, list(range(len(periods))), return_dtype=pl.Int64).alias("p"),
        "trials",
        "wins",
    )
    units = codes.select("r", "t", "s", "b").unique().sort("r", "t", "s", "b").with_row_index("u")
    times = codes.select("b", "elapsed", "p").unique().sort("b", "elapsed", "p").with_row_index("k")
    codes = codes.join(units, on=["r", "t", "s", "b"]).join(times, on=["b", "elapsed", "p"])
    unit = {c: units[c].to_numpy().astype(np.int64) for c in ("r", "t", "s", "b")}
    cell_unit = codes["u"].to_numpy().astype(np.int64)
    cell_time = codes["k"].to_numpy().astype(np.int64)
    wins = codes["wins"].to_numpy().astype(np.float64)
    return {
        "unit_mu_idx": unit["s"] * n_b + unit["b"],
        "unit_team_stage_idx": unit["t"] * n_s + unit["s"],
        "unit_rep_idx": unit["r"],
        "unit_rep_stage_idx": unit["r"] * n_s + unit["s"],
        "unit_wins": np.bincount(cell_unit, weights=wins, minlength=units.height),
        "time_bucket_idx": times["b"].to_numpy().astype(np.int64),
        "time_elapsed_c": times["elapsed"].to_numpy().astype(np.float64) - 0.5,
        "time_period_idx": times["p"].to_numpy().astype(np.int64),
        "time_wins": np.bincount(cell_time, weights=wins, minlength=times.height),
        "cell_unit_idx": cell_unit,
        "cell_time_idx": cell_time,
        "cell_trials": codes["trials"].to_numpy().astype(np.float64),
    }


def _helmert(n: int) -> np.ndarray:
    """(n, n-1) orthonormal columns, each summing to zero: a basis of zero-sum vectors."""
    basis = np.zeros((n, max(n - 1, 0)))
    for j in range(1, n):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return basis


def _build_model(arrays: dict[str, np.ndarray], coords: dict[str, list[str]]):
    import pymc as pm
    import pytensor.tensor as pt

    n_r, n_t, n_s, n_p = (len(coords[k]) for k in ("rep", "team", "stage", "period"))
    coords = {**coords, "contrast": [f"c{i}" for i in range(max(n_p - 1, 0))]}
    with pm.Model(coords=coords) as model:
        d = {k: pm.Data(k, v) for k, v in arrays.items()}
        mu = pm.Normal("mu", PRIOR_MU[0], PRIOR_MU[1], dims=("stage", "bucket"))
        slope = pm.Normal("slope", 0.0, PRIOR_SLOPE_SD, dims="bucket")
        sigma_team = pm.HalfNormal("sigma_team", PRIOR_SIGMA)
        sigma_rep = pm.HalfNormal("sigma_rep", PRIOR_SIGMA)
        sigma_rep_stage = pm.HalfNormal("sigma_rep_stage", PRIOR_SIGMA)

        # team x stage, summing to zero over teams in each stage (mu is the average team)
        if n_t >= 2:
            team_stage = sigma_team * pm.ZeroSumNormal("z_team", sigma=1.0, dims=("stage", "team")).T
        else:
            team_stage = pt.zeros((n_t, n_s))
        z_rep = pm.Normal("z_rep", 0.0, 1.0, dims="rep")
        # rep x stage, summing to zero over stages (z_rep is the rep's overall level)
        if n_s >= 2:
            rep_stage = sigma_rep_stage * pm.ZeroSumNormal("z_rep_stage", sigma=1.0, dims=("rep", "stage"))
        else:
            rep_stage = pt.zeros((n_r, n_s))
        # period effects summing to zero (mu is the average period), with sigma_period
        # integrated out: contrasts u in an orthonormal zero-sum basis, u | s ~ N(0, s^2 I),
        # s^2 ~ InverseGamma(a, b), so u is multivariate t: log p(u) = -(a + k/2) log(b + |u|^2/2).
        # sigma_period is drawn after sampling from its conditional posterior given u.
        if n_p >= 2:
            a, b = PRIOR_PERIOD_VARIANCE
            contrast = pm.Flat("period_contrast", dims="contrast")
            pm.Potential(
                "period_contrast_prior", -(a + (n_p - 1) / 2.0) * pt.log(b + 0.5 * pt.sum(contrast**2))
            )
            period_effect = pt.dot(pt.as_tensor(_helmert(n_p)), contrast)
        else:
            period_effect = pt.zeros((n_p,))

        team_effect = pt.concatenate([team_stage, pt.zeros((1, n_s))], axis=0).flatten()
        unit_eta = (
            mu.flatten()[d["unit_mu_idx"]]
            + team_effect[d["unit_team_stage_idx"]]
            + sigma_rep * z_rep[d["unit_rep_idx"]]
            + rep_stage.flatten()[d["unit_rep_stage_idx"]]
        )
        time_eta = slope[d["time_bucket_idx"]] * d["time_elapsed_c"] + period_effect[d["time_period_idx"]]
        # sum over cells of wins*eta - trials*log(1 + exp(eta)), eta = unit_eta + time_eta:
        # log p and log(1-p) weighted by fractional wins and losses (trials - wins).
        # exp(eta) = exp(unit_eta) * exp(time_eta): no exponential per cell. Logits never come
        # near the overflow of exp (709); an underflow to 0 is harmless.
        odds = pt.exp(unit_eta)[d["cell_unit_idx"]] * pt.exp(time_eta)[d["cell_time_idx"]]
        pm.Potential(
            "loglik",
            pt.dot(d["unit_wins"], unit_eta) + pt.dot(d["time_wins"], time_eta)
            - pt.sum(d["cell_trials"] * pt.log1p(odds)),
        )
    return model


def _sample(arrays: dict[str, np.ndarray], coords: dict[str, list[str]], settings: FitSettings):
    """Posterior draws of the free parameters (flattened over chains) and diagnostics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
        import arviz as az
        import pymc as pm

    model = _build_model(arrays, coords)
    free = [rv.name for rv in model.free_RVs]  # R-hat and ESS are taken over all of them
    cores = max(1, min(settings.chains, os.cpu_count() or 1))
    t0 = time.perf_counter()
    if settings.sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(model, backend="numba", var_names=free)
        t1 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=cores,
            seed=settings.seed,
            target_accept=settings.target_accept,
            save_warmup=False,
            progress_bar=False,
        )
    else:
        t1 = t0
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "the effect of Potentials on other parameters is ignored"
            idata = pm.sample(
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=cores,
                target_accept=settings.target_accept,
                random_seed=settings.seed,
                progressbar=False,
                compute_convergence_checks=False,
                return_inferencedata=True,
            )
    t2 = time.perf_counter()

    posterior = idata.posterior[free]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(posterior)
        ess_bulk = az.ess(posterior, method="bulk")
        ess_tail = az.ess(posterior, method="tail")

    def _extreme(ds, fn) -> float:
        vals = [np.asarray(ds[v].values, dtype=float).ravel() for v in ds.data_vars]
        vals = np.concatenate([v for v in vals if v.size]) if vals else np.array([np.nan])
        return float(fn(np.where(np.isfinite(vals), vals, np.nan)))

    stats = idata.sample_stats
    diverging = stats["diverging"].values if "diverging" in stats else np.zeros(1)
    diag = {
        "max_rhat": _extreme(rhat, np.nanmax),
        "min_ess_bulk": _extreme(ess_bulk, np.nanmin),
        "min_ess_tail": _extreme(ess_tail, np.nanmin),
        "divergences": float(np.sum(diverging)),
        "compile_seconds": t1 - t0,
        "sample_seconds": t2 - t1,
        "n_parameters": float(sum(int(np.prod(posterior[v].shape[2:])) for v in posterior.data_vars)),
        "draws": float(settings.draws * settings.chains),
    }
    post = {
        v: np.asarray(posterior[v].values, dtype=np.float64).reshape(-1, *posterior[v].shape[2:])
        for v in posterior.data_vars
    }
    return post, diag


@dataclass(frozen=True)
class SimulatedWinRates:
    """Synthetic training cells drawn from the model itself, with the truth that generated them
    (for tests and benchmarks). ``team`` and ``rep`` are the team x stage and total rep effects
    on the logit scale; ``period`` the realised period effects, centred to mean zero so that the
    average period of the data is the model's average period."""

    cells: pl.DataFrame
    roster: pl.DataFrame
    reps: list[str]
    teams: list[str]
    stages: list[str]
    periods: list[str]
    rep_team: dict[str, str]
    mu: np.ndarray  # (n_stages, n_buckets)
    slope: np.ndarray  # (n_buckets,)
    team: np.ndarray  # (n_teams, n_stages)
    rep: np.ndarray  # (n_reps, n_stages)
    period: np.ndarray  # (n_periods,)

    def true_logit(self, rep_id: str, stage: str, bucket: str, elapsed: float = 0.5) -> float:
        r, s, b = self.reps.index(rep_id), self.stages.index(stage), BUCKETS.index(bucket)
        t = self.teams.index(self.rep_team[rep_id])
        return float(self.mu[s, b] + self.slope[b] * (elapsed - 0.5) + self.team[t, s] + self.rep[r, s])

    def true_rate(self, rep_id: str, stage: str, bucket: str, elapsed: float = 0.5) -> float:
        return float(_sigmoid(np.asarray(self.true_logit(rep_id, stage, bucket, elapsed))))


def simulate_cells(
    n_teams: int = 3,
    reps_per_team: int | Sequence[int] = 8,
    n_stages: int = 4,
    n_periods: int = 4,
    deals_per_rep_period: float = 75.0,
    seed: int = 0,
    sigma_team: float = 0.3,
    sigma_rep: float = 0.4,
    sigma_rep_stage: float = 0.3,
    sigma_period: float = 0.2,
    reps_without_data: int = 0,
) -> SimulatedWinRates:
    """Cells shaped like :func:`quota_platform.lib.training.win_rate_cells`. Per rep and period a
    Poisson number of deals (mean ``deals_per_rep_period``), each with a stage and a close-date
    bucket, open at k consecutive checkpoints (k uniform on 1..5) and won or not once, with the
    model's probability at the mean elapsed fraction of its checkpoints. Each of its k
    observations is down-weighted to 1/k as the training cells are, so a deal adds one trial in
    all, spread fractionally over cells.

    Company rates rise with the stage (logit -2.5 .. 0.5) and fall from in_period to overdue to
    later; the elapsed slope is +0.5 in period, -0.5 overdue, -1.5 later. The last
    ``reps_without_data`` reps of team 0 are in the roster but have no cells."""
    gen = np.random.default_rng(seed)
    sizes = [reps_per_team] * n_teams if isinstance(reps_per_team, int) else list(reps_per_team)
    if len(sizes) != n_teams:
        raise ValueError("reps_per_team must be an int or one size per team")
    teams = [f"T{t:03d}" for t in range(n_teams)]
    stages = [f"S{s}" for s in range(n_stages)]
    periods = [f"quarter:{2024 + p // 4}-{1 + 3 * (p % 4):02d}-01" for p in range(n_periods)]
    rep_team = {f"R{t:03d}_{i:02d}": teams[t] for t in range(n_teams) for i in range(sizes[t])}
    reps = sorted(rep_team)
    team0 = [r for r in reps if rep_team[r] == teams[0]]
    silent = set(team0[len(team0) - reps_without_data:]) if reps_without_data else set()

    n_s, n_b, n_r, n_p = n_stages, len(BUCKETS), len(reps), n_periods
    mu = np.linspace(-2.5, 0.5, n_s)[:, None] + np.array([0.0, -0.7, -1.5])[None, :]
    slope = np.array([0.5, -0.5, -1.5])
    team = sigma_team * gen.standard_normal((n_teams, n_s))
    rep = sigma_rep * gen.standard_normal((n_r, 1)) + sigma_rep_stage * gen.standard_normal((n_r, n_s))
    period = sigma_period * gen.standard_normal(n_p)
    period -= period.mean()

    stage_share = np.linspace(1.5, 0.5, n_s)
    stage_share /= stage_share.sum()
    bucket_share = np.array([0.5, 0.2, 0.3])
    checkpoints = np.array(CHECKPOINTS)
    n_c = checkpoints.size
    rep_team_i = np.array([teams.index(rep_team[r]) for r in reps])

    # deals
    active = np.array([r not in silent for r in reps], dtype=float)
    per = gen.poisson(deals_per_rep_period * np.repeat(active, n_p))
    d_rep = np.repeat(np.repeat(np.arange(n_r), n_p), per)
    d_period = np.repeat(np.tile(np.arange(n_p), n_r), per)
    n_d = d_rep.size
    d_stage = gen.choice(n_s, size=n_d, p=stage_share)
    d_bucket = gen.choice(n_b, size=n_d, p=bucket_share)
    d_k = gen.integers(1, n_c + 1, size=n_d)
    d_start = (gen.random(n_d) * (n_c - d_k + 1)).astype(np.int64)
    d_elapsed = checkpoints[d_start] + (d_k - 1) * (checkpoints[1] - checkpoints[0]) / 2.0
    eta = (
        mu[d_stage, d_bucket] + slope[d_bucket] * (d_elapsed - 0.5)
        + team[rep_team_i[d_rep], d_stage] + rep[d_rep, d_stage] + period[d_period]
    )
    d_won = (gen.random(n_d) < _sigmoid(eta)).astype(float)

    # observations: each deal at its k checkpoints, weight 1/k
    o_deal = np.repeat(np.arange(n_d), d_k)
    o_check = d_start[o_deal] + (np.arange(o_deal.size) - np.repeat(np.cumsum(d_k) - d_k, d_k))
    weight = 1.0 / d_k[o_deal]
    cell = (((d_rep[o_deal] * n_p + d_period[o_deal]) * n_s + d_stage[o_deal]) * n_b + d_bucket[o_deal]) * n_c + o_check
    n_cells = n_r * n_p * n_s * n_b * n_c
    trials = np.bincount(cell, weights=weight, minlength=n_cells)
    wins = np.bincount(cell, weights=weight * d_won[o_deal], minlength=n_cells)
    keep = np.flatnonzero(trials > 0)
    r_i, rest = np.divmod(keep, n_p * n_s * n_b * n_c)
    p_i, rest = np.divmod(rest, n_s * n_b * n_c)
    s_i, rest = np.divmod(rest, n_b * n_c)
    b_i, c_i = np.divmod(rest, n_c)
    cells = pl.DataFrame(
        {
            "rep_id": np.array(reps, dtype=object)[r_i].tolist(),
            "team_id": np.array(teams, dtype=object)[rep_team_i[r_i]].tolist(),
            "stage": np.array(stages, dtype=object)[s_i].tolist(),
            "close_date_bucket": np.array(BUCKETS, dtype=object)[b_i].tolist(),
            "elapsed": checkpoints[c_i],
            "period_id": np.array(periods, dtype=object)[p_i].tolist(),
            "trials": trials[keep],
            "wins": np.minimum(wins[keep], trials[keep]),
        },
        schema={c: (pl.Float64 if c in ("elapsed", "trials", "wins") else pl.String) for c in CELL_COLUMNS},
    )
    roster = pl.DataFrame({"rep_id": reps, "team_id": [rep_team[r] for r in reps]})
    return SimulatedWinRates(
        cells=cells, roster=roster, reps=reps, teams=teams, stages=stages, periods=periods,
        rep_team=rep_team, mu=mu, slope=slope, team=team, rep=rep, period=period,
    )
