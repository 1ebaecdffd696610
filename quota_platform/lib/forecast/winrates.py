"""Hierarchical Bayesian win rates: P(an open deal is won within the current period), per rep,
stage, deal class and close-date bucket, as a function of how far through the period the snapshot
was taken.

Training data are the aggregated, down-weighted binomial counts of
:func:`quota_platform.lib.forecast.training.win_rate_cells`. The model, on the logit scale, for a cell of
rep r (in team t at the time), stage s, deal class c, close-date bucket b, elapsed fraction e
and training period p::

    eta = mu[s, c, b] + slope[c, b] * (e - 0.5)
          + sigma_team * z_team[t, s]                                   team x stage
          + sigma_rep * z_rep[r] + sigma_rep_stage * z_rep_stage[r, s]   rep, rep x stage
          + period[p]                                                   common shock of a period
    log lik = sum over cells of wins*log(p) + (trials - wins)*log(1 - p),  p = sigmoid(eta)
              (a Potential: fractional trials and wins are exact weights)

    mu ~ Normal(-1, 1.5)    slope ~ Normal(0, 1)
    sigma_team, sigma_rep, sigma_rep_stage ~ HalfNormal(0.5)
    z_rep ~ Normal(0, 1)
    z_team ~ ZeroSumNormal(1) over teams (each stage)    z_rep_stage ~ ZeroSumNormal(1) over stages
    period = zero-sum, period | sigma_period ~ N(0, sigma_period^2),
             sigma_period^2 ~ InverseGamma(2, 0.04)   (median sigma_period 0.15)

Deal classes (new business, expansion, renewal, ...: the optional ``deal_class`` column of the
cells, one class "all" without it) convert at very different rates, so the company baseline and
its elapsed slope are per class; pooling the classes would make a projection wrong whenever the
mix of classes in the pipeline shifts. The team, rep and period effects are shared by the
classes: a rep good at renewals is taken to be good at new business by the same logit margin.
The classes have no pooling between them (each mu[s, c, b] has its own prior); a class unknown
to the model is predicted with the average of the known classes' baselines and slopes.

Team and rep effects are non-centred (a standard normal times its scale), which samples well on
aggregated counts. The zero sums make the split between levels exact instead of leaving it to
the priors, which the sampler would otherwise have to explore as long ridges: mu is a class's
rate for the average team and the average period, z_rep a rep's overall level and z_rep_stage its
stage deviations. Pooling runs rep -> team -> company: a rep's rate in a stage it has never worked borrows its own
overall level and its team's stage effect; a rep with no data at all gets a fresh draw of the rep
effects (the spread of reps around its team); a team with no data a fresh draw of the team
effect; a rep with no team (null ``team_id``) has no team effect (the average team).

The period effect is what every deal of one period shares (a good or a bad quarter). Each period
holds thousands of trials, so its effect is pinned by the data and a non-centred form would leave
the sampler a curved ridge between scale and effects; a centred one, a funnel when the shocks are
small. Neither: sigma_period is integrated out (the zero-sum period effects are multivariate t in
the sampler) and drawn afterwards from its exact conditional posterior, an InverseGamma given the
effects. Predictions (:meth:`WinRatePosterior.logit_draws`, :meth:`WinRatePosterior.summary`)
are for an average period unless asked for a shock; ``draws["sigma_period"]`` and
:attr:`WinRatePosterior.period_shock_sd` are there for callers that draw one common shock per
simulated future period themselves.

Speed. The likelihood's per-cell term runs in one fused numba kernel (:func:`_softplus_sum_op`);
a warm fit of 500 reps (95,000 cells, 3,300 parameters, 2 x 2,000 draws) takes about 30 s on two
cores, of which about 18 s sampling. The cost grows with the cells, and deal classes multiply
them: with 3 classes the same deals make 141,000 cells (3,360 parameters), a warm fit of about
47 s, 35 s of it sampling (bench/winrates_speed.py).

Compile cache. PyTensor keeps compiled code under its ``base_compiledir``: C code (initial points,
the PyMC sampler) and, with ``numba__cache`` on (the default), the numba code of the log density
and its gradient that nutpie runs, under ``<base_compiledir>/numba``. A later process with the
same directory loads it instead of compiling (cold 30 s, warm 8 s). Call
:func:`configure_compile_cache` before anything imports pytensor (this module imports pymc,
nutpie and pytensor only inside :func:`fit_win_rates`). What the cache cannot hold:

- nutpie wraps the log density in a ``numba.cfunc`` that numba refuses to cache ("uses dynamic
  globals"); it is compiled in every process, about 5 s, the floor of a warm fit's set-up.
- The compiled graph embeds the model's dimensions (numbers of reps, teams, stages, deal
  classes and periods with data, through nutpie's parameter vector and the zero-sum sizes), not the data: a fit with
  the same dimensions reuses it whatever the counts, one with a rep more recompiles the top-level
  graph (about 8 s more; the per-operation pieces stay cached).
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

from quota_platform.lib.forecast.training import BUCKETS

CELL_COLUMNS = ("rep_id", "team_id", "stage", "close_date_bucket", "elapsed", "period_id", "trials", "wins")
# optional cells column: the deal's class (new business, expansion, renewal, ...); absent, every
# row is of the one class DEFAULT_DEAL_CLASS
DEAL_CLASS = "deal_class"
DEFAULT_DEAL_CLASS = "all"

SUMMARY_SCHEMA = {
    "rep_id": pl.String,
    "stage": pl.String,
    "deal_class": pl.String,
    "close_date_bucket": pl.String,
    "win_rate_mean": pl.Float64,
    "win_rate_p10": pl.Float64,
    "win_rate_p90": pl.Float64,
    "n_observed": pl.Float64,
    "pooled_from": pl.String,
}

# The seed of the win-rate fit (FitSettings) and of the projections' Monte Carlo
# (projection.SimulationSettings) when the caller gives none.
DEFAULT_SEED = 20240917

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
    """Sampler settings. The defaults keep max R-hat within the limit of the caller's blocking
    check (lib/forecast/model_fit.py MAX_RHAT) and give no divergences on data shaped like the
    platform's (tried: 24 to 500 reps, up to 3,300 parameters, 1 to 8 periods, scales
    from 0.05 to 0.6, reps without teams, a stage-bucket won every time): max R-hat 1.004-1.007.

    Why 2 x 2,000 draws: the caller's check takes the maximum R-hat over thousands of
    parameters, and R-hat has sampling noise of its own that shrinks only with draws. With
    perfectly independent draws the maximum over 3,300 parameters is already 1.013 at 2 x 500
    and 1.006 at 2 x 1,000; the model's slowest parameters (the scales) gave 1.014-1.018 at
    2 x 1,000 and 1.0055-1.006 at 2 x 2,000. target_accept 0.8 (nutpie's default) needs about 20
    leapfrog steps a draw against 31 at 0.9, with no divergences in any of those fits."""

    draws: int = 2000  # per chain
    tune: int = 300
    chains: int = 2
    target_accept: float = 0.8
    seed: int = DEFAULT_SEED
    sampler: str = "nutpie"  # or "pymc"


@dataclass
class WinRatePosterior:
    """Posterior draws of the win-rate model, flattened over chains (first axis: draw).

    ``draws``:
      - ``mu`` (n_draws, n_stages, n_classes, n_buckets): company logit of a deal class
        (``deal_classes``) at elapsed 0.5, average period
      - ``slope`` (n_draws, n_classes, n_buckets): change in logit per unit of elapsed fraction
      - ``team`` (n_draws, n_teams, n_stages): team x stage effect (logit)
      - ``rep`` (n_draws, n_reps, n_stages): total rep effect (rep + rep x stage, logit)
      - ``period`` (n_draws, n_periods): effect of each training period (``periods``)
      - ``sigma_team``, ``sigma_rep``, ``sigma_rep_stage``, ``sigma_period`` (n_draws,)

    Reps and teams in the roster without any trials carry draws from their prior given the
    sampled scales (the predictive for a new member), made at fit time with the fit's seed.
    ``rep_team`` maps each rep to its current team, or None for a rep with no team.
    ``observed`` holds the training trials and wins per rep_id, team_id, stage, deal_class,
    close_date_bucket. ``deal_classes`` are the fitted deal classes (sorted), the order of the
    class axis of ``mu`` and ``slope``; team, rep and period effects are shared by all classes.
    """

    reps: list[str]
    teams: list[str]
    stages: list[str]
    rep_team: dict[str, str | None]
    draws: dict[str, np.ndarray]
    diagnostics: dict[str, float]
    periods: list[str] = field(default_factory=list)
    observed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_OBSERVED_SCHEMA))
    deal_classes: list[str] = field(default_factory=lambda: [DEFAULT_DEAL_CLASS])

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
        deal_classes: Sequence[str] | None = None,
    ) -> np.ndarray:
        """(n_draws, n_items) logit win probability of each item (one open deal's rep, team,
        stage, close-date bucket, deal class and the elapsed fraction 0-1 of the period at the
        snapshot).

        - A rep not in the model gets a fresh draw of the rep effects (one per rep id, shared by
          its items): its team's rate, widened by the spread between reps.
        - ``team_ids`` are the items' current teams and apply to known reps too. A team not in the
          model gets a fresh team draw; None means no team (company level).
        - An unknown stage or bucket raises ValueError naming it.
        - ``deal_classes``: each item's deal class. None is allowed only for a model of one class
          (every item is of that class); with several it raises ValueError. A class not in the
          model (or None) gets the average over the model's classes of mu and slope (per draw,
          on the logit scale) for its stage and bucket: a wide middle rather than a guess.
        - ``n_draws``: None for every posterior draw in order; otherwise a random subset (with
          replacement only if more are asked for than exist), from ``rng``.
        - ``period_shock``: add one common period effect per draw (``period_shock_sd`` x N(0, 1)),
          the same for every item; by default the average period.

        Pass an int or a Generator as ``rng`` for reproducible output whenever randomness is used;
        with the same seed and ``n_draws`` every call selects the same posterior draws and the
        same period shocks, so calls for different items can be combined draw by draw.
        """
        n = len(rep_ids)
        if not (len(team_ids) == len(stages) == len(buckets) == n):
            raise ValueError(
                f"rep_ids, team_ids, stages and buckets must have one entry per item; got lengths "
                f"{n}, {len(team_ids)}, {len(stages)}, {len(buckets)}"
            )
        c_idx = self._class_index(deal_classes, n)
        s_idx = self.stage_index(stages)
        b_idx = _bucket_index(buckets)
        e = np.broadcast_to(np.asarray(elapsed, dtype=np.float64), (n,))
        if not np.all(np.isfinite(e)):
            raise ValueError("elapsed must be finite")
        gen = np.random.default_rng(rng)
        sel = self._select_draws(gen, n_draws)
        # drawn before anything that depends on the items, so that one seed gives the same draws
        # and the same shocks in every call, whatever reps and teams are asked about
        shock = self.period_shock_sd[sel] * gen.standard_normal(sel.size) if period_shock else None
        eta = self._baseline_logits(sel, s_idx, c_idx, b_idx, e)
        self._add_team_effects(eta, gen, sel, team_ids, s_idx)
        self._add_rep_effects(eta, gen, sel, rep_ids, s_idx)
        if shock is not None:
            eta += shock[:, None]
        return eta

    def _class_index(self, deal_classes: Sequence[str] | None, n: int) -> np.ndarray:
        """Each item's position on the model's class axis, -1 for a class the model has not seen;
        ValueError if the classes do not match the items or are needed and missing."""
        if deal_classes is None:
            if len(self.deal_classes) != 1:
                raise ValueError(
                    f"the win-rate model has deal classes {', '.join(map(repr, self.deal_classes))}: "
                    f"pass deal_classes, one per item"
                )
            return np.zeros(n, dtype=np.int64)
        if isinstance(deal_classes, str) or len(deal_classes) != n:
            got = "a string" if isinstance(deal_classes, str) else f"length {len(deal_classes)}"
            raise ValueError(f"deal_classes must have one entry per item ({n}); got {got}")
        class_pos = {c: i for i, c in enumerate(self.deal_classes)}
        return np.array([class_pos.get(c, -1) for c in deal_classes], dtype=np.int64)

    def _select_draws(self, gen: np.random.Generator, n_draws: int | None) -> np.ndarray:
        """Indices of the posterior draws used: all in order for None, else ``n_draws`` from
        ``gen`` (with replacement only if more are asked for than exist)."""
        total = self.n_draws
        if n_draws is None:
            return np.arange(total)
        if n_draws < 1:
            raise ValueError(f"n_draws must be positive, got {n_draws}")
        return gen.choice(total, size=n_draws, replace=n_draws > total)

    def _baseline_logits(
        self, sel: np.ndarray, s_idx: np.ndarray, c_idx: np.ndarray, b_idx: np.ndarray, e: np.ndarray
    ) -> np.ndarray:
        """(draws, items): the company logit of each item's stage, class and bucket at its elapsed
        fraction; a class the model has not seen (-1) gets the average over the known classes."""
        dr = self.draws
        rows = sel[:, None]  # index draws and items together: no copy of whole draw arrays
        known_c = c_idx >= 0
        if known_c.all():
            return dr["mu"][rows, s_idx, c_idx, b_idx] + dr["slope"][rows, c_idx, b_idx] * (e - 0.5)
        eta = np.empty((sel.size, c_idx.size))
        k = known_c
        eta[:, k] = (
            dr["mu"][rows, s_idx[k], c_idx[k], b_idx[k]]
            + dr["slope"][rows, c_idx[k], b_idx[k]] * (e[k] - 0.5)
        )
        # a class the model has not seen: the average over the known classes, per draw
        u = ~known_c
        eta[:, u] = (
            dr["mu"][rows, s_idx[u], :, b_idx[u]].mean(axis=2)
            + dr["slope"][rows, :, b_idx[u]].mean(axis=2) * (e[u] - 0.5)
        )
        return eta

    def _add_team_effects(
        self, eta: np.ndarray, gen: np.random.Generator, sel: np.ndarray, team_ids: Sequence[str | None], s_idx: np.ndarray
    ) -> None:
        """Adds to ``eta`` each item's team x stage effect: a known team's from the posterior, a
        team the model has not seen drawn fresh from ``gen`` (one draw per team), none for None."""
        dr = self.draws
        team_pos = {t: i for i, t in enumerate(self.teams)}
        new_teams = sorted({t for t in team_ids if t is not None and t not in team_pos})
        new_team_pos = {t: i for i, t in enumerate(new_teams)}
        known_t = np.array([t is not None and t in team_pos for t in team_ids], dtype=bool)
        new_t = np.array([t is not None and t in new_team_pos for t in team_ids], dtype=bool)
        if known_t.any():
            t_idx = np.array([team_pos[t] for t, k in zip(team_ids, known_t) if k], dtype=np.int64)
            eta[:, known_t] += dr["team"][sel[:, None], t_idx, s_idx[known_t]]
        if new_t.any():
            effect = _new_team_effects(gen, dr["sigma_team"][sel], len(new_teams), len(self.stages))
            u_idx = np.array([new_team_pos[t] for t, k in zip(team_ids, new_t) if k], dtype=np.int64)
            eta[:, new_t] += effect[:, u_idx, s_idx[new_t]]

    def _add_rep_effects(
        self, eta: np.ndarray, gen: np.random.Generator, sel: np.ndarray, rep_ids: Sequence[str], s_idx: np.ndarray
    ) -> None:
        """Adds to ``eta`` each item's rep effect in its stage: a known rep's from the posterior, a
        rep the model has not seen drawn fresh from ``gen`` (one draw per rep id)."""
        dr = self.draws
        rep_pos = {r: i for i, r in enumerate(self.reps)}
        new_reps = sorted({r for r in rep_ids if r not in rep_pos})
        new_rep_pos = {r: i for i, r in enumerate(new_reps)}
        known_r = np.array([r in rep_pos for r in rep_ids], dtype=bool)
        if known_r.any():
            r_idx = np.array([rep_pos[r] for r, k in zip(rep_ids, known_r) if k], dtype=np.int64)
            eta[:, known_r] += dr["rep"][sel[:, None], r_idx, s_idx[known_r]]
        if new_reps:
            effect = _new_rep_effects(
                gen, dr["sigma_rep"][sel], dr["sigma_rep_stage"][sel], len(new_reps), len(self.stages)
            )
            u_idx = np.array([new_rep_pos[r] for r, k in zip(rep_ids, known_r) if not k], dtype=np.int64)
            eta[:, ~known_r] += effect[:, u_idx, s_idx[~known_r]]

    def probability_draws(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """:meth:`logit_draws` on the probability scale."""
        return sigmoid(self.logit_draws(*args, **kwargs))

    def summary(self) -> pl.DataFrame:
        """One row per rep x stage x deal class x close-date bucket (the fitted classes), at
        elapsed 0.5 and an average period: rep_id, stage, deal_class, close_date_bucket,
        win_rate_mean, win_rate_p10, win_rate_p90, n_observed (training trials in that cell),
        pooled_from ('rep' if the rep has trials in the stage, any class, else 'team' if its
        current team has, else 'company')."""
        n_r, n_s, n_c, n_b = len(self.reps), len(self.stages), len(self.deal_classes), len(BUCKETS)
        if n_r == 0:
            return pl.DataFrame(schema=SUMMARY_SCHEMA)
        per_rep = n_s * n_c * n_b
        reps = np.repeat(np.array(self.reps, dtype=object), per_rep)
        stages = np.tile(np.repeat(np.array(self.stages, dtype=object), n_c * n_b), n_r)
        classes = np.tile(np.repeat(np.array(self.deal_classes, dtype=object), n_b), n_r * n_s)
        buckets = np.tile(np.array(BUCKETS, dtype=object), n_r * n_s * n_c)
        teams = [self.rep_team.get(r) for r in reps]
        # in blocks of whole reps, to bound memory (items x draws per block). Every rep and team
        # of the summary is in the model, so no fresh effects are drawn: blocks change nothing.
        n_items = reps.size
        block = per_rep * max(1, 4_000_000 // max(1, per_rep * self.n_draws))
        mean, p10, p90 = (np.empty(n_items) for _ in range(3))
        for i in range(0, n_items, block):
            j = min(n_items, i + block)
            logits = self.logit_draws(
                list(reps[i:j]), teams[i:j], list(stages[i:j]), list(buckets[i:j]), 0.5,
                rng=self._seed(), deal_classes=list(classes[i:j]),
            )
            p = np.ascontiguousarray(sigmoid(logits).T)  # (items, draws): quantiles run along rows
            mean[i:j] = p.mean(axis=1)
            p10[i:j], p90[i:j] = np.quantile(p, [0.1, 0.9], axis=1)

        obs = self.observed
        cell_trials = {
            (r, s, c, b): t
            for r, s, c, b, t in obs.group_by("rep_id", "stage", DEAL_CLASS, "close_date_bucket")
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
                "deal_class": list(classes),
                "close_date_bucket": list(buckets),
                "win_rate_mean": mean,
                "win_rate_p10": p10,
                "win_rate_p90": p90,
                "n_observed": [float(cell_trials.get(k, 0.0)) for k in zip(reps, stages, classes, buckets)],
                "pooled_from": pooled,
            },
            schema=SUMMARY_SCHEMA,
        )

    def _seed(self) -> int:
        return int(self.diagnostics.get("seed", 0))


_OBSERVED_SCHEMA = {
    "rep_id": pl.String, "team_id": pl.String, "stage": pl.String, "deal_class": pl.String,
    "close_date_bucket": pl.String, "trials": pl.Float64, "wins": pl.Float64,
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written with tanh so that it never overflows."""
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
    0-1, negative trials or wins outside 0..trials.

    The optional column ``deal_class`` (String) is the deal's class; without it every row is of
    class DEFAULT_DEAL_CLASS. The result always has it (after ``stage``)."""
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"win-rate cells lack column(s): {', '.join(missing)}")
    deal_class = (
        pl.col(DEAL_CLASS).cast(pl.String) if DEAL_CLASS in cells.columns
        else pl.lit(DEFAULT_DEAL_CLASS, dtype=pl.String).alias(DEAL_CLASS)
    )
    df = cells.select(
        pl.col("rep_id").cast(pl.String), pl.col("team_id").cast(pl.String), pl.col("stage").cast(pl.String),
        deal_class, pl.col("close_date_bucket").cast(pl.String), pl.col("elapsed").cast(pl.Float64),
        pl.col("period_id").cast(pl.String), pl.col("trials").cast(pl.Float64), pl.col("wins").cast(pl.Float64),
    )
    for c in ("rep_id", "stage", DEAL_CLASS, "close_date_bucket", "elapsed", "period_id", "trials", "wins"):
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
        .group_by("rep_id", "team_id", "stage", DEAL_CLASS, "close_date_bucket", "elapsed", "period_id")
        .agg(pl.col("trials").sum(), pl.col("wins").sum())
        .sort("period_id", "rep_id", "stage", DEAL_CLASS, "close_date_bucket", "elapsed", "team_id", nulls_last=True)
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
    elapsed (0-1), period_id, trials (>= 0, may be fractional), wins (0 <= wins <= trials), and
    optionally deal_class (not null; without the column every row is of class
    DEFAULT_DEAL_CLASS). The model's classes are the sorted distinct classes with trials.
    ``roster`` (optional): rep_id, team_id of every current rep, so that reps and teams without
    training data get predictions too, and to give a rep's current team when it moved.

    Diagnostics: max_rhat, min_ess_bulk, min_ess_tail (rank-normalised, over every sampled
    parameter, as arviz computes them: :func:`convergence_diagnostics`), divergences (after
    tuning), fit_seconds (the whole call), compile_seconds, sample_seconds, n_cells (aggregated
    likelihood rows), n_observations (total trials), n_parameters, draws (all chains), seed.

    A stage that nobody won from in the whole window has no lower bound on its rate but the
    prior, and the scales then mix slowly (max R-hat 1.012 in such a test with 500 reps): drop
    the stage (its win probability is about zero) or raise ``draws``.
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
    deal_classes = sorted(data[DEAL_CLASS].unique().to_list())
    reps = sorted(set(rep_team) | set(fit_reps))
    teams = sorted(set(fit_teams) | {t for t in rep_team.values() if t is not None})

    n_s, n_c, n_b = len(stages), len(deal_classes), len(BUCKETS)
    arrays = model_arrays(data, fit_reps, fit_teams, stages, periods, deal_classes)
    segments = [f"{c}|{b}" for c in deal_classes for b in BUCKETS]
    coords = {"stage": stages, "segment": segments, "team": fit_teams, "rep": fit_reps, "period": periods}

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
        "mu": post["mu"].reshape(n_draws, n_s, n_c, n_b),
        "slope": post["slope"].reshape(n_draws, n_c, n_b),
        "sigma_team": post["sigma_team"],
        "sigma_rep": post["sigma_rep"],
        "sigma_rep_stage": post["sigma_rep_stage"],
        # the conditional posterior of sigma_period^2 given the period effects: InverseGamma
        "sigma_period": np.sqrt(rate / gen.gamma(shape, size=n_draws)),
        "period": period,
    }
    # known teams and reps from the posterior; roster members without data drawn from the model
    team = np.zeros((n_draws, len(teams), n_s))
    fitted_t = np.searchsorted(teams, fit_teams).astype(np.int64)  # both sorted
    if "z_team" in post:  # (draw, stage, team)
        team[:, fitted_t, :] = post["sigma_team"][:, None, None] * np.swapaxes(post["z_team"], 1, 2)
    new_t = np.setdiff1d(np.arange(len(teams)), fitted_t)
    team[:, new_t, :] = _new_team_effects(gen, draws["sigma_team"], new_t.size, n_s)
    rep = np.zeros((n_draws, len(reps), n_s))
    fitted_r = np.searchsorted(reps, fit_reps).astype(np.int64)
    rep[:, fitted_r, :] = post["sigma_rep"][:, None, None] * post["z_rep"][:, :, None]
    if "z_rep_stage" in post:  # (draw, rep, stage)
        rep[:, fitted_r, :] += post["sigma_rep_stage"][:, None, None] * post["z_rep_stage"]
    new_r = np.setdiff1d(np.arange(len(reps)), fitted_r)
    rep[:, new_r, :] = _new_rep_effects(gen, draws["sigma_rep"], draws["sigma_rep_stage"], new_r.size, n_s)
    draws["team"] = team
    draws["rep"] = rep

    observed = (
        data.group_by("rep_id", "team_id", "stage", DEAL_CLASS, "close_date_bucket")
        .agg(pl.col("trials").sum(), pl.col("wins").sum())
        .sort("rep_id", "stage", DEAL_CLASS, "close_date_bucket", "team_id", nulls_last=True)
        .select(list(_OBSERVED_SCHEMA))
        .cast(_OBSERVED_SCHEMA)
    )
    diag.update(
        n_cells=float(data.height),
        n_observations=float(arrays["cells"][2].sum()),
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
        deal_classes=deal_classes,
    )


def _cell_keys(cells: pl.DataFrame) -> pl.DataFrame:
    """rep_id, team_id, period_id and trials of every row, zero-trial rows included: a rep listed
    only with zero trials is still a rep of the model (with no data)."""
    return cells.select(
        pl.col("rep_id").cast(pl.String), pl.col("team_id").cast(pl.String),
        pl.col("period_id").cast(pl.String), pl.col("trials").cast(pl.Float64),
    )


def model_arrays(
    data: pl.DataFrame,
    reps: list[str],
    teams: list[str],
    stages: list[str],
    periods: list[str],
    deal_classes: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """The validated cells as the model's data arrays, factorised for speed.

    A "segment" is a deal class and close-date bucket, g = class * n_buckets + bucket (the
    baseline and the elapsed slope are per segment). The logit of a cell is the sum of a "unit"
    part (rep, team, stage, segment: mu, team, rep and rep x stage effects) and a "time" part
    (segment, elapsed, period: slope and period effect). The log likelihood of a cell,
    wins*eta - trials*log1p(exp(eta)), then needs one exponential per unit and per time, not per
    cell, and its linear part sums wins per unit and per time once, before sampling. A null team
    indexes the extra all-zero row of the team effect.

    ``deal_classes``: the classes in the order of the model's class axis; None for the sorted
    classes of ``data`` (DEFAULT_DEAL_CLASS alone if it has no deal_class column).
    """
    if DEAL_CLASS not in data.columns:
        data = data.with_columns(pl.lit(DEFAULT_DEAL_CLASS, dtype=pl.String).alias(DEAL_CLASS))
    if deal_classes is None:
        deal_classes = sorted(data[DEAL_CLASS].unique().to_list())
    n_s, n_b, n_t = len(stages), len(BUCKETS), len(teams)
    n_g = len(deal_classes) * n_b
    codes = data.select(
        pl.col("rep_id").replace_strict(reps, list(range(len(reps))), return_dtype=pl.Int64).alias("r"),
        pl.col("team_id").replace_strict(teams, list(range(n_t)), default=n_t, return_dtype=pl.Int64).alias("t"),
        pl.col("stage").replace_strict(stages, list(range(n_s)), return_dtype=pl.Int64).alias("s"),
        (
            pl.col(DEAL_CLASS).replace_strict(deal_classes, list(range(len(deal_classes))), return_dtype=pl.Int64) * n_b
            + pl.col("close_date_bucket").replace_strict(list(BUCKETS), list(range(n_b)), return_dtype=pl.Int64)
        ).alias("g"),
        pl.col("elapsed"),
        pl.col("period_id").replace_strict(periods, list(range(len(periods))), return_dtype=pl.Int64).alias("p"),
        "trials",
        "wins",
    )
    units = codes.select("r", "t", "s", "g").unique().sort("r", "t", "s", "g").with_row_index("u")
    times = codes.select("g", "elapsed", "p").unique().sort("g", "elapsed", "p").with_row_index("k")
    codes = codes.join(units, on=["r", "t", "s", "g"]).join(times, on=["g", "elapsed", "p"])
    unit = {c: units[c].to_numpy().astype(np.int64) for c in ("r", "t", "s", "g")}
    cell_unit = codes["u"].to_numpy().astype(np.int64)
    cell_time = codes["k"].to_numpy().astype(np.int64)
    wins = codes["wins"].to_numpy().astype(np.float64)
    # One float matrix per level (indices are exact in float64): slices of one array share a
    # symbolic length, so PyTensor adds no run-time length checks between them. Such checks came
    # out in a different order in every process, which changed the compile cache key.
    return {
        "units": np.stack([
            unit["s"] * n_g + unit["g"],  # mu[stage, segment]
            unit["t"] * n_s + unit["s"],  # team x stage (row n_t: no team)
            unit["r"],  # rep
            unit["r"] * n_s + unit["s"],  # rep x stage
            np.bincount(cell_unit, weights=wins, minlength=units.height),  # wins
        ]).astype(np.float64),
        "times": np.stack([
            times["g"].to_numpy(),  # segment
            times["p"].to_numpy(),  # period
            times["elapsed"].to_numpy() - 0.5,  # centred elapsed
            np.bincount(cell_time, weights=wins, minlength=times.height),  # wins
        ]).astype(np.float64),
        "cells": np.stack([cell_unit, cell_time, codes["trials"].to_numpy()]).astype(np.float64),
    }


_SOFTPLUS_SUM_OP: list[Any] = []


def _softplus_sum_numpy(unit_eta: np.ndarray, time_eta: np.ndarray, cells: np.ndarray):
    """sum_c n_c log(1 + exp(unit_eta[u_c] + time_eta[k_c])) and its gradients with respect to
    unit_eta and time_eta, for ``cells`` rows (u, k, n). The reference for the numba kernel."""
    u, k, n = cells[0].astype(np.int64), cells[1].astype(np.int64), cells[2]
    eta = unit_eta[u] + time_eta[k]
    weight = n * sigmoid(eta)
    return (
        float(np.dot(n, np.logaddexp(0.0, eta))),
        np.bincount(u, weights=weight, minlength=unit_eta.size),
        np.bincount(k, weights=weight, minlength=time_eta.size),
    )


def _softplus_sum_op():
    """A PyTensor Op (built on first use, so pytensor is imported only then) for the one term of
    the log likelihood that is evaluated per cell: sum_c n_c log(1 + exp(eta_c)) with
    eta_c = unit_eta[u_c] + time_eta[k_c], returning the sum and its two gradients from one pass.

    Why an Op: with ~100,000 cells this term is nearly all of the cost of a gradient, and the
    element-wise graph spends it in about ten passes over the cells and in numba's scalar log1p
    (about 7 ns a call). The kernel (:func:`_softplus_sum_kernel`) takes a third of the time. Its
    compiled code is cached in the compile cache under a key made from the kernel's source and
    this module's name, so editing the kernel or moving the module invalidates the cache."""
    if _SOFTPLUS_SUM_OP:
        return _SOFTPLUS_SUM_OP[0]
    import inspect
    from hashlib import sha256

    import pytensor.tensor as pt
    from pytensor.gradient import grad_not_implemented, grad_undefined
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key

    class SoftplusSum(Op):
        __props__ = ()

        def make_node(self, unit_eta, time_eta, cells):
            inputs = [pt.as_tensor_variable(unit_eta), pt.as_tensor_variable(time_eta), pt.as_tensor_variable(cells)]
            if [x.type.ndim for x in inputs] != [1, 1, 2] or any(x.type.dtype != "float64" for x in inputs):
                raise TypeError("SoftplusSum takes float64 vectors unit_eta, time_eta and a (3, n) float64 matrix")
            return Apply(self, inputs, [pt.dscalar(), pt.dvector(), pt.dvector()])

        def perform(self, node, inputs, output_storage):
            total, grad_unit, grad_time = _softplus_sum_numpy(*inputs)
            output_storage[0][0] = np.asarray(total)
            output_storage[1][0] = grad_unit
            output_storage[2][0] = grad_time

        def infer_shape(self, fgraph, node, shapes):
            return [(), shapes[0], shapes[1]]

        def grad(self, inputs, output_grads):
            from pytensor.gradient import DisconnectedType

            if not all(isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
                # PyTensor's own marker: a graph that goes on to use such a gradient fails there,
                # naming this Op. Only the sum (output 0) has a gradient; the sampler needs no more.
                return [
                    grad_not_implemented(self, i, x, "only the sum (output 0) of SoftplusSum is differentiable")
                    for i, x in enumerate(inputs)
                ]
            _, grad_unit, grad_time = self(*inputs)
            return [
                output_grads[0] * grad_unit,
                output_grads[0] * grad_time,
                grad_undefined(self, 2, inputs[2], "the cells are data"),
            ]

    kernel = _softplus_sum_kernel()

    # the module's name is part of the key: the cached code refers to this module by name, so a
    # release that moves it must not load entries compiled when it lived elsewhere
    key = sha256(
        f"SoftplusSum v1 {__name__} {_LG} {_LN2_HI} {_LN2_LO}\n{inspect.getsource(_softplus_sum_kernel)}".encode()
    ).hexdigest()

    @register_funcify_and_cache_key(SoftplusSum)
    def _funcify_softplus_sum(op, node=None, **kwargs):
        return kernel, key

    _SOFTPLUS_SUM_OP.append(SoftplusSum())
    return _SOFTPLUS_SUM_OP[0]


# fdlibm's e_log.c: log(1 + f) = f - hfsq + s*(hfsq + R(s^2)), s = f/(2 + f)
_LG = (
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01,
    1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01,
)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10


def _softplus_sum_kernel():
    """The numba kernel of the SoftplusSum Op: (sum, grad_unit, grad_time).

    For each cell, y = 1 + exp(unit_eta[u]) * exp(time_eta[k]) (one exp per unit and per time),
    then sum n * log(y) and the gradients n * (1 - 1/y) = n * sigmoid(eta), scattered to units
    and times. log(y) is fdlibm's algorithm in plain arithmetic, so that LLVM vectorises it (numba
    calls the scalar libm log, ten times slower); it is exact to 1 ulp for y >= 1, which every y
    is, and for tiny odds log(y) differs from log1p(odds) by under 1.2e-16 absolute. Any y that
    is not finite and below 1e300 (an overflowing or NaN logit) falls back to np.log so the
    sum is inf or nan and the sampler rejects the point. error_model="numpy" (no Python
    exception checks on division) and reassociation of sums are what let the loops vectorise."""
    import numba

    lg1, lg2, lg3, lg4, lg5, lg6, lg7 = _LG
    ln2_hi, ln2_lo = _LN2_HI, _LN2_LO

    @numba.njit(fastmath={"reassoc", "contract", "arcp", "nsz"}, error_model="numpy")
    def softplus_sum(unit_eta, time_eta, cells):
        n_cells = cells.shape[1]
        odds_unit = np.exp(unit_eta)
        odds_time = np.exp(time_eta)
        y = np.empty(n_cells)
        for i in range(n_cells):
            y[i] = 1.0 + odds_unit[np.int64(cells[0, i])] * odds_time[np.int64(cells[1, i])]
        finite = True
        for i in range(n_cells):
            finite &= y[i] < 1e300
        log_y = np.empty(n_cells)
        if finite:
            # y = 2^e m, m in [sqrt(2)/2, sqrt(2)), from the bits of y (normal, positive)
            expo = np.empty(n_cells)
            y_bits = y.view(np.int64)
            m_bits = log_y.view(np.int64)
            for i in range(n_cells):
                hx = y_bits[i] + (0x3FF0000000000000 - 0x3FE6A09E00000000)
                expo[i] = np.float64((hx >> 52) - 1023)
                m_bits[i] = (hx & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E00000000
            for i in range(n_cells):
                f = log_y[i] - 1.0
                s = f / (2.0 + f)
                z = s * s
                w = z * z
                r = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7))) + w * (lg2 + w * (lg4 + w * lg6))
                hfsq = 0.5 * f * f
                log_y[i] = expo[i] * ln2_hi - ((hfsq - (s * (hfsq + r) + expo[i] * ln2_lo)) - f)
        else:
            for i in range(n_cells):
                log_y[i] = np.log(y[i])
        trials = cells[2]
        total = 0.0
        for i in range(n_cells):
            total += trials[i] * log_y[i]
        grad_unit = np.zeros_like(unit_eta)
        grad_time = np.zeros_like(time_eta)
        for i in range(n_cells):
            weight = trials[i] - trials[i] / y[i]
            grad_unit[np.int64(cells[0, i])] += weight
            grad_time[np.int64(cells[1, i])] += weight
        return np.asarray(total), grad_unit, grad_time

    return softplus_sum


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
        # per segment (deal class x close-date bucket, class-major: see model_arrays)
        mu = pm.Normal("mu", PRIOR_MU[0], PRIOR_MU[1], dims=("stage", "segment"))
        slope = pm.Normal("slope", 0.0, PRIOR_SLOPE_SD, dims="segment")
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

        units, times, cells = d["units"], d["times"], d["cells"]
        unit_idx = pt.cast(units[:4], "int64")
        time_idx = pt.cast(times[:2], "int64")
        team_effect = pt.concatenate([team_stage, pt.zeros((1, n_s))], axis=0).flatten()
        unit_eta = (
            mu.flatten()[unit_idx[0]]
            + team_effect[unit_idx[1]]
            + sigma_rep * z_rep[unit_idx[2]]
            + rep_stage.flatten()[unit_idx[3]]
        )
        time_eta = slope[time_idx[0]] * times[2] + period_effect[time_idx[1]]
        # sum over cells of wins*log(p) + (trials - wins)*log(1 - p)
        #   = wins*eta - trials*log(1 + exp(eta)),  eta = unit_eta + time_eta;
        # the linear part is summed per unit and per time before sampling, the other in one pass.
        # (The dots are BLAS calls: see _sample for why BLAS runs on one thread.)
        softplus_sum = _softplus_sum_op()(unit_eta, time_eta, cells)[0]
        pm.Potential("loglik", pt.dot(units[4], unit_eta) + pt.dot(times[3], time_eta) - softplus_sum)
    return model


def _sample(arrays: dict[str, np.ndarray], coords: dict[str, list[str]], settings: FitSettings):
    """Posterior draws of the free parameters (flattened over chains) and diagnostics."""
    from threadpoolctl import threadpool_limits

    model = _build_model(arrays, coords)
    free = [rv.name for rv in model.free_RVs]  # R-hat and ESS are taken over all of them
    cores = max(1, min(settings.chains, os.cpu_count() or 1))
    # One BLAS thread: the log density's dots (wins x eta per unit) are BLAS calls, and OpenBLAS
    # runs one of more than 9,216 elements (2304 * GEMM_MULTITHREAD_THRESHOLD) on a thread pool
    # of its own. With a chain on every core those threads fight the chains: a 3-class fit of 500
    # reps (19,000 units) sampled about 4 times slower (146 s against 35 s). Below the threshold
    # BLAS ran one thread anyway, so this changes no result there.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # PyTensor's C backend (initial points, the PyMC sampler) finds no BLAS; nothing here is
        # a matrix product worth one
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
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
            import pymc as pm

            t1 = t0
            with model:
                # "the effect of Potentials on other parameters is ignored" (prior predictive only)
                warnings.filterwarnings("ignore", message=".*Potential.*", category=UserWarning)
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
    arrays = {v: np.asarray(posterior[v].values, dtype=np.float64) for v in free}
    n_chains, n_draws = arrays[free[0]].shape[:2]
    stacked = np.concatenate([a.reshape(n_chains, n_draws, -1) for a in arrays.values()], axis=2)
    rhat, ess_bulk, ess_tail = convergence_diagnostics(stacked)
    stats = idata.sample_stats
    diverging = stats["diverging"].values if "diverging" in stats else np.zeros(1)
    diag = {
        "max_rhat": float(np.max(rhat)),
        "min_ess_bulk": float(np.min(ess_bulk)),
        "min_ess_tail": float(np.min(ess_tail)),
        "divergences": float(np.sum(diverging)),
        "compile_seconds": t1 - t0,
        "sample_seconds": t2 - t1,
        "n_parameters": float(stacked.shape[2]),
        "draws": float(n_chains * n_draws),
    }
    post = {v: a.reshape(n_chains * n_draws, *a.shape[2:]) for v, a in arrays.items()}
    return post, diag


def convergence_diagnostics(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS (Vehtari et al. 2021) of every column
    of ``samples`` (chains, draws, parameters): the numbers arviz.rhat and arviz.ess (methods
    "rank", "bulk", "tail") give, computed for all parameters at once. arviz loops over the
    parameters in Python, about 5 s for 3,000 parameters and 4,000 draws. A parameter with a
    NaN draw gets R-hat inf and ESS 0 (arviz: NaN), so that it is the worst, not skipped; with
    one chain R-hat is inf."""
    samples = np.asarray(samples, dtype=np.float64)
    # blocks of parameters small enough to stay in cache: every step is a pass over the block
    block = max(1, 2**18 // max(1, samples.shape[0] * samples.shape[1]))
    parts = [_diagnostics_block(samples[:, :, i : i + block]) for i in range(0, samples.shape[2], block)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


def _diagnostics_block(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy import special

    # (parameters, chains, draws), contiguous along the draws: sorting and FFTs run on rows
    x = np.ascontiguousarray(np.moveaxis(samples, 2, 0))
    n_par, n_chains, n_draws = x.shape
    bad = np.isnan(x).any(axis=(1, 2))
    x[bad] = 0.0
    split = _split_draws(x)

    def z_scale(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(n_par, -1)
        return special.ndtri((_average_ranks(flat) - 0.375) / (flat.shape[1] + 0.25)).reshape(a.shape)

    def rhat_basic(a: np.ndarray) -> np.ndarray:
        n = a.shape[2]
        between = n * a.mean(axis=2).var(axis=1, ddof=1)
        within = a.var(axis=2, ddof=1).mean(axis=1)
        return np.sqrt((between / within + n - 1) / n)

    z_split = z_scale(split)
    if n_chains >= 2 and n_draws >= 4:
        folded = np.abs(split - np.median(split.reshape(n_par, -1), axis=1)[:, None, None])
        rhat = np.maximum(rhat_basic(z_split), rhat_basic(z_scale(folded)))
    else:
        rhat = np.full(n_par, np.inf)
    ess_bulk = _ess(z_split)
    quantiles = np.quantile(x.reshape(n_par, -1), [0.05, 0.95], axis=1)  # R's type 7, as arviz
    ess_tail = np.minimum(*(_ess(_split_draws(x <= q[:, None, None])) for q in quantiles))
    rhat = np.where(bad | np.isnan(rhat), np.inf, rhat)
    return rhat, np.where(bad, 0.0, np.nan_to_num(ess_bulk)), np.where(bad, 0.0, np.nan_to_num(ess_tail))


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks 1..n along each row, ties given their average rank (scipy's rankdata "average")."""
    n_rows, n = flat.shape
    order = np.argsort(flat, axis=1)
    ordered = np.take_along_axis(flat, order, axis=1)
    position = np.arange(1, n + 1, dtype=np.float64)
    average = np.broadcast_to(position, (n_rows, n)).copy()
    starts = np.ones((n_rows, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    tied = np.flatnonzero(~starts.all(axis=1))
    if tied.size:
        st = starts[tied]
        ends = np.ones_like(st)
        ends[:, :-1] = st[:, 1:]
        first = np.maximum.accumulate(np.where(st, position, 0.0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, n + 1.0)[:, ::-1], axis=1)[:, ::-1]
        average[tied] = (first + last) / 2.0
    ranks = np.empty_like(ordered)
    np.put_along_axis(ranks, order, average, axis=1)
    return ranks


def _split_draws(a: np.ndarray) -> np.ndarray:
    """(parameters, chains, draws) -> (parameters, 2 chains, draws // 2): each chain halved."""
    half = a.shape[2] // 2
    return np.concatenate([a[:, :, :half], a[:, :, a.shape[2] - half:]], axis=1).astype(np.float64)


def _ess(a: np.ndarray) -> np.ndarray:
    """ESS of each row of ``a`` (parameters, chains, draws) with Geyer's initial monotone
    sequence, as arviz's ``_ess``; the autocovariances are computed for all rows at once."""
    from scipy import fft

    n_par, n_chains, n_draws = a.shape
    centred = a - a.mean(axis=2, keepdims=True)
    size = fft.next_fast_len(2 * n_draws, real=True)
    spectrum = fft.rfft(centred, n=size, axis=2)
    acov = fft.irfft(spectrum * np.conjugate(spectrum), n=size, axis=2)[:, :, :n_draws] / n_draws
    mean_var = acov[:, :, 0].mean(axis=1) * n_draws / (n_draws - 1.0)
    var_plus = mean_var * (n_draws - 1.0) / n_draws
    if n_chains > 1:
        var_plus = var_plus + a.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]  # (parameters, lags)
    constant = (a.max(axis=(1, 2)) - a.min(axis=(1, 2))) < np.finfo(float).resolution
    total = n_chains * n_draws
    return np.array([float(total) if constant[p] else _geyer_ess(rho[p], n_draws, total) for p in range(n_par)])


def _geyer_ess(rho: np.ndarray, n_draws: int, total: int) -> float:
    rho_t = np.zeros(n_draws)
    even, odd = 1.0, rho[1]
    rho_t[0], rho_t[1] = even, odd
    t = 1
    while t < n_draws - 3 and even + odd > 0.0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            rho_t[t + 1], rho_t[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho_t[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho_t[t + 1] + rho_t[t + 2] > rho_t[t - 1] + rho_t[t]:
            rho_t[t + 1] = rho_t[t + 2] = (rho_t[t - 1] + rho_t[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho_t[: max_t + 1]) + np.sum(rho_t[max_t + 1 : max_t + 2])
    tau = max(tau, 1.0 / np.log10(total))
    return float("nan") if np.isnan(rho_t).any() else total / tau
