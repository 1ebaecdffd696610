"""Synthetic win-rate training cells, drawn from the win-rate model itself
(:mod:`quota_platform.lib.forecast.winrates`), with the truth that generated them: the data of the
model's recovery tests (quota_platform_tests/test_winrates.py) and of its speed bench
(bench/winrates_speed.py). Nothing in the platform's runs reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quota_platform.lib.forecast.training import BUCKETS, TRAINING_CHECKPOINTS
from quota_platform.lib.forecast.winrates import (
    CELL_COLUMNS,
    DEAL_CLASS,
    DEFAULT_DEAL_CLASS,
    sigmoid,
)


@dataclass(frozen=True)
class SimulatedWinRates:
    """Synthetic training cells drawn from the model itself, with the truth that generated them
    (for tests and benchmarks). ``mu`` and ``slope`` are per deal class (``deal_classes``, the
    order of their class axis); ``team`` and ``rep`` are the team x stage and total rep effects
    on the logit scale, shared by the classes; ``period`` the realised period effects, centred to
    mean zero so that the average period of the data is the model's average period. The truth
    methods take ``deal_class`` (default: the first class)."""

    cells: pl.DataFrame
    roster: pl.DataFrame
    reps: list[str]
    teams: list[str]
    stages: list[str]
    periods: list[str]
    rep_team: dict[str, str]
    mu: np.ndarray  # (n_stages, n_classes, n_buckets)
    slope: np.ndarray  # (n_classes, n_buckets)
    team: np.ndarray  # (n_teams, n_stages)
    rep: np.ndarray  # (n_reps, n_stages)
    period: np.ndarray  # (n_periods,)
    rep_sd: float = 0.0  # sd of a rep's total effect in one stage (rep and rep x stage)
    deal_classes: list[str] = field(default_factory=lambda: [DEFAULT_DEAL_CLASS])

    def _class(self, deal_class: str | None) -> int:
        return 0 if deal_class is None else self.deal_classes.index(deal_class)

    def true_logit(
        self, rep_id: str, stage: str, bucket: str, elapsed: float = 0.5, *, deal_class: str | None = None
    ) -> float:
        r, s, b = self.reps.index(rep_id), self.stages.index(stage), BUCKETS.index(bucket)
        t, c = self.teams.index(self.rep_team[rep_id]), self._class(deal_class)
        return float(self.mu[s, c, b] + self.slope[c, b] * (elapsed - 0.5) + self.team[t, s] + self.rep[r, s])

    def true_rate(
        self, rep_id: str, stage: str, bucket: str, elapsed: float = 0.5, *, deal_class: str | None = None
    ) -> float:
        return float(sigmoid(np.asarray(self.true_logit(rep_id, stage, bucket, elapsed, deal_class=deal_class))))

    def true_new_rep_rate(
        self, team_id: str, stage: str, bucket: str, elapsed: float = 0.5, *, deal_class: str | None = None
    ) -> float:
        """The win rate a new rep of ``team_id`` has on average over the population of reps:
        E[sigmoid(mu + slope * (elapsed - 0.5) + team + rep)], rep ~ N(0, rep_sd^2)."""
        s, b, t = self.stages.index(stage), BUCKETS.index(bucket), self.teams.index(team_id)
        c = self._class(deal_class)
        nodes, weights = np.polynomial.hermite_e.hermegauss(60)
        eta = self.mu[s, c, b] + self.slope[c, b] * (elapsed - 0.5) + self.team[t, s] + self.rep_sd * nodes
        return float(np.dot(weights, sigmoid(eta)) / weights.sum())


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
    deal_classes: Sequence[str] = (DEFAULT_DEAL_CLASS,),
    class_offsets: Sequence[float] | None = None,
) -> SimulatedWinRates:
    """Cells shaped like :func:`quota_platform.lib.forecast.training.win_rate_cells`. Per rep and period a
    Poisson number of deals (mean ``deals_per_rep_period``), each with a stage and a close-date
    bucket, open at k consecutive checkpoints (k uniform on 1..5) and won or not once, with the
    model's probability at the mean elapsed fraction of its checkpoints. Each of its k
    observations is down-weighted to 1/k as the training cells are, so a deal adds one trial in
    all, spread fractionally over cells.

    Company rates rise with the stage (logit -2.5 .. 0.5) and fall from in_period to overdue to
    later; the elapsed slope is +0.5 in period, -0.5 overdue, -1.5 later. The last
    ``reps_without_data`` reps of team 0 are in the roster but have no cells.

    Each deal has one of ``deal_classes``, uniformly at random (drawn only if there are several,
    so that one class gives the same deals as before classes); class k adds ``class_offsets[k]``
    (default 0) to mu, with the same slopes for every class. The cells carry deal_class.

    One generator seeded with ``seed`` draws, in this order, the true effects
    (:func:`_true_effects`) and the deals (:func:`_deals`)."""
    deal_classes = [str(c) for c in deal_classes]
    offsets = _class_offsets(deal_classes, class_offsets)
    org = _Org.build(n_teams, reps_per_team, n_stages, n_periods, reps_without_data)
    gen = np.random.default_rng(seed)
    truth = _true_effects(gen, org, offsets, sigma_team, sigma_rep, sigma_rep_stage, sigma_period)
    deals = _deals(gen, org, truth, len(deal_classes), deals_per_rep_period)
    cells = _cells(org, deals, deal_classes)
    roster = pl.DataFrame({"rep_id": org.reps, "team_id": [org.rep_team[r] for r in org.reps]})
    return SimulatedWinRates(
        cells=cells, roster=roster, reps=org.reps, teams=org.teams, stages=org.stages, periods=org.periods,
        rep_team=org.rep_team, mu=truth.mu, slope=truth.slope, team=truth.team, rep=truth.rep, period=truth.period,
        rep_sd=float(np.hypot(sigma_rep, sigma_rep_stage)), deal_classes=deal_classes,
    )


def _class_offsets(deal_classes: list[str], class_offsets: Sequence[float] | None) -> np.ndarray:
    """The logit offset of each deal class on mu (0 if not given); ValueError for an empty or
    repeated class list or offsets that do not match it."""
    n_cls = len(deal_classes)
    if n_cls == 0 or len(set(deal_classes)) != n_cls:
        raise ValueError(f"deal_classes must be distinct and not empty, got {deal_classes}")
    offsets = np.zeros(n_cls) if class_offsets is None else np.asarray(class_offsets, dtype=np.float64)
    if offsets.shape != (n_cls,):
        raise ValueError(f"class_offsets must have one entry per deal class ({n_cls}), got {list(offsets)}")
    return offsets


@dataclass(frozen=True)
class _Org:
    """Names of the simulated teams, reps, stages and periods, and the reps without data."""

    teams: list[str]
    stages: list[str]
    periods: list[str]
    rep_team: dict[str, str]
    reps: list[str]  # sorted
    silent: set[str]

    @classmethod
    def build(
        cls, n_teams: int, reps_per_team: int | Sequence[int], n_stages: int, n_periods: int, reps_without_data: int
    ) -> _Org:
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
        return cls(teams, stages, periods, rep_team, reps, silent)


@dataclass(frozen=True)
class _Truth:
    mu: np.ndarray  # (n_stages, n_classes, n_buckets)
    slope: np.ndarray  # (n_classes, n_buckets)
    team: np.ndarray  # (n_teams, n_stages)
    rep: np.ndarray  # (n_reps, n_stages)
    period: np.ndarray  # (n_periods,), centred


def _true_effects(
    gen: np.random.Generator, org: _Org, offsets: np.ndarray,
    sigma_team: float, sigma_rep: float, sigma_rep_stage: float, sigma_period: float,
) -> _Truth:
    """The fixed company rates and slopes, and from ``gen``: the team x stage effects, the rep
    effects (overall level, then stage deviations) and the centred period effects."""
    n_s, n_b, n_r, n_p = len(org.stages), len(BUCKETS), len(org.reps), len(org.periods)
    base_mu = np.linspace(-2.5, 0.5, n_s)[:, None] + np.array([0.0, -0.7, -1.5])[None, :]
    base_slope = np.array([0.5, -0.5, -1.5])
    mu = base_mu[:, None, :] + offsets[None, :, None]  # (stage, class, bucket)
    slope = np.broadcast_to(base_slope, (offsets.size, n_b)).copy()  # (class, bucket)
    team = sigma_team * gen.standard_normal((len(org.teams), n_s))
    rep = sigma_rep * gen.standard_normal((n_r, 1)) + sigma_rep_stage * gen.standard_normal((n_r, n_s))
    period = sigma_period * gen.standard_normal(n_p)
    period -= period.mean()
    return _Truth(mu, slope, team, rep, period)


@dataclass(frozen=True)
class _Deals:
    """One entry per simulated deal: indices of its rep, period, stage, bucket and class, the
    number k of checkpoints it was open at, the first of them, and whether it was won."""

    rep: np.ndarray
    period: np.ndarray
    stage: np.ndarray
    bucket: np.ndarray
    deal_class: np.ndarray
    k: np.ndarray
    start: np.ndarray
    won: np.ndarray


def _deals(gen: np.random.Generator, org: _Org, truth: _Truth, n_cls: int, deals_per_rep_period: float) -> _Deals:
    """From ``gen``, in this order: the number of deals per rep and period, their stages, buckets,
    classes (only with several), checkpoint counts and first checkpoints, and the outcomes."""
    n_s, n_b, n_r, n_p = len(org.stages), len(BUCKETS), len(org.reps), len(org.periods)
    stage_share = np.linspace(1.5, 0.5, n_s)
    stage_share /= stage_share.sum()
    bucket_share = np.array([0.5, 0.2, 0.3])
    checkpoints = np.array(TRAINING_CHECKPOINTS)
    n_c = checkpoints.size
    rep_team_i = np.array([org.teams.index(org.rep_team[r]) for r in org.reps])

    active = np.array([r not in org.silent for r in org.reps], dtype=float)
    per = gen.poisson(deals_per_rep_period * np.repeat(active, n_p))
    d_rep = np.repeat(np.repeat(np.arange(n_r), n_p), per)
    d_period = np.repeat(np.tile(np.arange(n_p), n_r), per)
    n_d = d_rep.size
    d_stage = gen.choice(n_s, size=n_d, p=stage_share)
    d_bucket = gen.choice(n_b, size=n_d, p=bucket_share)
    d_class = gen.integers(0, n_cls, size=n_d) if n_cls > 1 else np.zeros(n_d, dtype=np.int64)
    d_k = gen.integers(1, n_c + 1, size=n_d)
    d_start = (gen.random(n_d) * (n_c - d_k + 1)).astype(np.int64)
    d_elapsed = checkpoints[d_start] + (d_k - 1) * (checkpoints[1] - checkpoints[0]) / 2.0
    eta = (
        truth.mu[d_stage, d_class, d_bucket] + truth.slope[d_class, d_bucket] * (d_elapsed - 0.5)
        + truth.team[rep_team_i[d_rep], d_stage] + truth.rep[d_rep, d_stage] + truth.period[d_period]
    )
    d_won = (gen.random(n_d) < sigmoid(eta)).astype(float)
    return _Deals(d_rep, d_period, d_stage, d_bucket, d_class, d_k, d_start, d_won)


def _cells(org: _Org, deals: _Deals, deal_classes: list[str]) -> pl.DataFrame:
    """The deals as training cells: each deal observed at its k checkpoints with weight 1/k,
    summed per rep, period, stage, class, bucket and checkpoint (cells with trials only)."""
    n_s, n_b, n_r, n_p = len(org.stages), len(BUCKETS), len(org.reps), len(org.periods)
    checkpoints = np.array(TRAINING_CHECKPOINTS)
    n_c = checkpoints.size
    rep_team_i = np.array([org.teams.index(org.rep_team[r]) for r in org.reps])
    d_k, d_start = deals.k, deals.start

    o_deal = np.repeat(np.arange(d_k.size), d_k)
    o_check = d_start[o_deal] + (np.arange(o_deal.size) - np.repeat(np.cumsum(d_k) - d_k, d_k))
    weight = 1.0 / d_k[o_deal]
    seg = deals.deal_class * n_b + deals.bucket  # deal class and bucket
    n_g = len(deal_classes) * n_b
    cell = (((deals.rep[o_deal] * n_p + deals.period[o_deal]) * n_s + deals.stage[o_deal]) * n_g + seg[o_deal]) * n_c + o_check
    n_cells = n_r * n_p * n_s * n_g * n_c
    trials = np.bincount(cell, weights=weight, minlength=n_cells)
    wins = np.bincount(cell, weights=weight * deals.won[o_deal], minlength=n_cells)
    keep = np.flatnonzero(trials > 0)
    r_i, rest = np.divmod(keep, n_p * n_s * n_g * n_c)
    p_i, rest = np.divmod(rest, n_s * n_g * n_c)
    s_i, rest = np.divmod(rest, n_g * n_c)
    g_i, c_i = np.divmod(rest, n_c)
    k_i, b_i = np.divmod(g_i, n_b)
    return pl.DataFrame(
        {
            "rep_id": np.array(org.reps, dtype=object)[r_i].tolist(),
            "team_id": np.array(org.teams, dtype=object)[rep_team_i[r_i]].tolist(),
            "stage": np.array(org.stages, dtype=object)[s_i].tolist(),
            "deal_class": np.array(deal_classes, dtype=object)[k_i].tolist(),
            "close_date_bucket": np.array(BUCKETS, dtype=object)[b_i].tolist(),
            "elapsed": checkpoints[c_i],
            "period_id": np.array(org.periods, dtype=object)[p_i].tolist(),
            "trials": trials[keep],
            "wins": np.minimum(wins[keep], trials[keep]),
        },
        schema={
            c: (pl.Float64 if c in ("elapsed", "trials", "wins") else pl.String)
            for c in ("rep_id", "team_id", "stage", DEAL_CLASS, *CELL_COLUMNS[3:])
        },
    )
