"""Monte Carlo engine of the period-end projections: Bernoulli outcomes of open deals over
posterior draws, roll-ups of the same draws, summaries and status tiers.

Pure numpy/scipy; the caller (``projection.py``) builds the inputs from frames.

Model, per simulation draw d and projection row r (rep x period x quota type x product family)::

    won_amount[d, r] = sum over open deals i of won[d, i] x credit[i, r]
    won[d, i]        = 1 if u[d, i] < sigmoid(logit[d, i] + shock[d]) else 0,   u ~ U(0, 1)
    shock[d]         = shock_sd[d] x z[d],                                       z ~ N(0, 1)

One shock per draw, shared by every deal of the call (the period), so deals are independent given
the draw but correlated across draws: team and company intervals widen accordingly.

Random streams, chunking and reproducibility
--------------------------------------------
``simulate_totals`` takes from the caller's ``rng`` exactly one key (4 uint64) and then
``n_draws`` standard normals (the shock), whatever the number of deals or the chunk size. The
uniforms of deal block ``b`` (deals ``b * RNG_BLOCK_DEALS`` to ``(b + 1) * RNG_BLOCK_DEALS - 1``)
come from their own stream, ``SFC64(SeedSequence(key, spawn_key=(b,)))``, drawn deal by deal (each
deal's ``n_draws`` uniforms are consecutive). Chunks are whole numbers of blocks (``chunk_deals`` is
rounded up to a multiple of ``RNG_BLOCK_DEALS``), so every (draw, deal) pair gets the same uniform
whatever the chunk size; and the won amounts are added into one accumulator deal by deal, in deal
order, so the floating-point sums are the same too: the result is bit-for-bit identical for any
``chunk_deals``. Consecutive calls with one ``rng`` get different keys, hence independent streams.

Memory: the logit block the callback returns (``chunk x n_draws``), the float32 and float64
temporaries of ``WORK_DEALS`` deals at a time (16 bytes per deal and draw), the ``n_rows x n_draws``
float64 accumulator and the result; nothing grows with the number of deals beyond the sparse
credit matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

try:  # y += A @ X without allocating A @ X: the accumulation that makes chunking bit-exact.
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
except ImportError:  # pragma: no cover - depends on the scipy build
    _csc_matvecs = None

RNG_BLOCK_DEALS = 64
"""Deals per random stream; chunks are rounded up to a multiple of it."""

WORK_DEALS = 512
"""Deals processed at a time within a chunk (a multiple of RNG_BLOCK_DEALS): the float32 and
float64 temporaries stay at 16 x WORK_DEALS x n_draws bytes (16 MiB at 2,000 draws), whatever
``chunk_deals``, and mostly in cache."""

LogitSource = Callable[[slice], np.ndarray] | np.ndarray


# --------------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------------


def simulate_totals(
    logit_p: LogitSource,
    credit: sp.csr_matrix,
    *,
    n_draws: int,
    shock_sd: float | np.ndarray = 0.0,
    rng: np.random.Generator,
    chunk_deals: int = 4096,
) -> np.ndarray:
    """Simulated amount won from open deals, ``(n_draws, n_rows)`` float64.

    ``logit_p``: the ``(n_draws, n_deals)`` logits of winning within the period, or a function
    returning the ``(n_draws, j1 - j0)`` block for ``slice(j0, j1)``; the function is called once
    per chunk, in order. A block gathered as ``table[:, cell_of_deal[sl]]`` is Fortran-ordered,
    which is the layout used internally (no copy). ``+inf``/``-inf`` mean certain win/loss; NaN
    raises ``ValueError``.

    ``credit``: ``(n_deals, n_rows)`` USD credited by each deal to each row, if it is won (any
    scipy sparse matrix or dense array; converted to CSR float64).

    ``shock_sd``: scalar or ``(n_draws,)``: sd of the common logit shock of each draw.

    ``rng`` supplies the shock and the key of the per-block streams (see the module docstring):
    the result depends on the rng state and the inputs only, not on ``chunk_deals``.

    Probabilities and uniforms are float32 (resolution 2**-24 in probability); amounts are summed
    in float64.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be positive, got {n_draws}")
    if chunk_deals < 1:
        raise ValueError(f"chunk_deals must be positive, got {chunk_deals}")
    credit = _as_csr(credit)
    n_deals, n_rows = credit.shape
    fetch = _logit_fetcher(logit_p, n_draws, n_deals)
    sd = np.asarray(shock_sd, dtype=np.float64)
    if sd.ndim == 0:
        sd = np.full(n_draws, float(sd))
    if sd.shape != (n_draws,):
        raise ValueError(f"shock_sd must be a scalar or have shape ({n_draws},), got {sd.shape}")
    if not np.all(np.isfinite(sd)) or np.any(sd < 0):
        raise ValueError("shock_sd must be finite and non-negative")

    key = rng.integers(np.iinfo(np.uint64).max, size=4, dtype=np.uint64, endpoint=True)
    z = rng.standard_normal(n_draws)
    neg_shift = -(sd * z)  # t = -(logit + shock) = neg_shift - logit

    acc = np.zeros((n_rows, n_draws))  # transposed: row r's draws are contiguous (axpy target)
    if n_deals == 0 or n_rows == 0:
        return np.ascontiguousarray(acc.T)

    chunk = -(-chunk_deals // RNG_BLOCK_DEALS) * RNG_BLOCK_DEALS
    chunk = min(chunk, -(-n_deals // RNG_BLOCK_DEALS) * RNG_BLOCK_DEALS)
    work = min(chunk, WORK_DEALS)
    u_buf = np.empty((work, n_draws), dtype=np.float32)
    t_buf = np.empty((work, n_draws), dtype=np.float32)
    w_buf = np.empty((work, n_draws), dtype=np.float64)
    entropy = [int(k) for k in key]

    for j0 in range(0, n_deals, chunk):
        j1 = min(j0 + chunk, n_deals)
        block_t = _logit_block(fetch, j0, j1, n_draws).T  # (j1 - j0, n_draws), deal-major
        for k0 in range(j0, j1, work):  # pieces of whole random blocks, sized for the caches
            k1 = min(k0 + work, j1)
            m = k1 - k0
            t = t_buf[:m]
            np.subtract(neg_shift, block_t[k0 - j0 : k1 - j0], out=t, casting="same_kind")
            if np.isnan(np.min(t)):
                raise ValueError(f"NaN logit among deals {k0} to {k1 - 1}")
            u = u_buf[:m]
            for b0 in range(k0, k1, RNG_BLOCK_DEALS):
                seq = np.random.SeedSequence(entropy, spawn_key=(b0 // RNG_BLOCK_DEALS,))
                b1 = min(b0 + RNG_BLOCK_DEALS, k1)
                np.random.Generator(np.random.SFC64(seq)).random(out=u[b0 - k0 : b1 - k0], dtype=np.float32)
            # won <=> u < 1 / (1 + exp(t)) <=> u * (1 + exp(t)) < 1 (exp overflow: inf, lost)
            np.exp(t, out=t)
            t += 1.0
            t *= u
            w = w_buf[:m]
            np.less(t, 1.0, out=w)
            _accumulate(acc, credit, k0, k1, w)
    return np.ascontiguousarray(acc.T)


def _as_csr(credit) -> sp.csr_matrix:
    out = sp.csr_matrix(credit, dtype=np.float64, copy=True)  # canonicalised below: not in place
    if out.ndim != 2:
        raise ValueError("credit must be 2-D (n_deals, n_rows)")
    out.sum_duplicates()
    out.sort_indices()
    return out


def _logit_fetcher(logit_p: LogitSource, n_draws: int, n_deals: int) -> Callable[[slice], np.ndarray]:
    if callable(logit_p):
        return logit_p
    table = np.asarray(logit_p)
    if table.shape != (n_draws, n_deals):
        raise ValueError(f"logit_p has shape {table.shape}, expected ({n_draws}, {n_deals})")
    return lambda sl: table[:, sl]


def _logit_block(fetch: Callable[[slice], np.ndarray], j0: int, j1: int, n_draws: int) -> np.ndarray:
    block = np.asarray(fetch(slice(j0, j1)))
    if block.shape != (n_draws, j1 - j0):
        raise ValueError(f"logit block for deals {j0}:{j1} has shape {block.shape}, expected ({n_draws}, {j1 - j0})")
    if not np.issubdtype(block.dtype, np.floating):
        block = block.astype(np.float64)
    return block


def _accumulate(acc: np.ndarray, credit: sp.csr_matrix, j0: int, j1: int, won: np.ndarray) -> None:
    """acc (n_rows, n_draws) += credit[j0:j1].T @ won (j1 - j0, n_draws), deal by deal.

    The CSR arrays of ``credit`` read as CSC are its transpose, and ``indptr[j0:j1 + 1]`` indexes
    the full ``indices``/``data``, so nothing is copied."""
    if _csc_matvecs is not None:
        _csc_matvecs(
            acc.shape[0], j1 - j0, acc.shape[1],
            credit.indptr[j0 : j1 + 1], credit.indices, credit.data,
            won.ravel(), acc.ravel(),
        )
    else:  # pragma: no cover - exercised by monkeypatching in the tests
        acc += credit[j0:j1].T @ won


def rollup_draws(rep_draws: np.ndarray, membership: sp.csr_matrix) -> np.ndarray:
    """Parent (manager, company) totals as sums of the same draws of their rep rows.

    ``rep_draws``: ``(n_draws, n_rep_rows)``; ``membership``: ``(n_rep_rows, n_parent_rows)`` with a
    1 where the rep row counts towards the parent row. Entries other than 1 (after summing
    duplicates, e.g. a rep linked twice to one parent) raise ``ValueError``: they would count a
    rep's draws twice. Returns ``(n_draws, n_parent_rows)`` float64."""
    rep_draws = np.asarray(rep_draws, dtype=np.float64)
    m = sp.csr_matrix(membership, dtype=np.float64)
    m.sum_duplicates()
    if rep_draws.ndim != 2 or m.shape[0] != rep_draws.shape[1]:
        raise ValueError(f"rep_draws {rep_draws.shape} and membership {m.shape} do not align")
    m.eliminate_zeros()
    if m.nnz and not np.all(m.data == 1.0):
        raise ValueError("membership entries must be 0 or 1 (a rep row linked twice to a parent?)")
    return np.ascontiguousarray(np.asarray(m.T @ rep_draws.T).T)


# --------------------------------------------------------------------------------------------------
# summaries and status
# --------------------------------------------------------------------------------------------------


def summarize(
    totals: np.ndarray,
    quota: np.ndarray,
    closed_won: np.ndarray,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    *,
    floor_rtol: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Summary per row of simulated period-end totals.

    ``totals``: ``(n_draws, n_rows)`` period-end amounts INCLUDING ``closed_won`` (the caller adds
    it, to rep draws before rolling them up). Because the amount still to come is never negative,
    every draw must be at least ``closed_won``; a draw below it (beyond ``floor_rtol`` of the
    row's scale) raises ``ValueError``, which catches draws passed without the closed amount.

    Returns, each ``(n_rows,)`` float64:

    - ``projected_p{q}`` for each quantile (``p10``, ``p50``, ``p90`` by default; numpy's linear
      interpolation between order statistics),
    - ``projected_pct_p{q}`` = 100 x ``projected_p{q}`` / quota, NaN where quota is 0,
    - ``prob_hit_quota``: share of draws with total >= quota, NaN where quota is 0,
    - ``mean`` and ``sd`` (ddof=1; 0 with a single draw) of the totals.
    """
    totals = np.asarray(totals, dtype=np.float64)
    if totals.ndim != 2:
        raise ValueError(f"totals must be (n_draws, n_rows), got shape {totals.shape}")
    n_draws, n_rows = totals.shape
    quota = np.asarray(quota, dtype=np.float64)
    closed_won = np.asarray(closed_won, dtype=np.float64)
    for name, arr in (("quota", quota), ("closed_won", closed_won)):
        if arr.shape != (n_rows,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n_rows},)")
    if n_draws == 0:
        raise ValueError("totals has no draws")
    if n_rows:
        low = totals.min(axis=0)
        tol = floor_rtol * np.maximum(1.0, np.maximum(np.abs(closed_won), np.abs(totals).max(axis=0)))
        below = low < closed_won - tol
        if below.any():
            raise ValueError(
                f"{int(below.sum())} row(s) have draws below closed_won (first: row {int(np.argmax(below))}); "
                "totals must include closed_won"
            )
    has_quota = quota != 0
    safe_quota = np.where(has_quota, quota, 1.0)
    out: dict[str, np.ndarray] = {}
    qs = np.quantile(totals, list(quantiles), axis=0) if n_rows else np.zeros((len(quantiles), 0))
    for q, values in zip(quantiles, qs):
        name = _quantile_name(q)
        out[f"projected_{name}"] = values
        out[f"projected_pct_{name}"] = np.where(has_quota, 100.0 * values / safe_quota, np.nan)
    out["prob_hit_quota"] = np.where(has_quota, (totals >= quota).mean(axis=0), np.nan)
    out["mean"] = totals.mean(axis=0)
    out["sd"] = totals.std(axis=0, ddof=1) if n_draws > 1 else np.zeros(n_rows)
    return out


def _quantile_name(q: float) -> str:
    pct = 100.0 * q
    if abs(pct - round(pct)) > 1e-9:
        raise ValueError(f"quantile {q} is not a whole percentile")
    return f"p{int(round(pct))}"


def status_tier(pct_p50: np.ndarray, tiers: Sequence[tuple[float, str]]) -> np.ndarray:
    """Status of each row from its projected attainment P50 (percent, 0-100 scale): the first of
    ``tiers`` whose lower bound (inclusive) it reaches. ``tiers`` are (bound, name) pairs, bounds
    strictly decreasing and the last -inf so that every percentage has a tier
    (``Rules.status_tiers``; by default Crushing >= 120, On Track >= 100, Watch >= 80, At Risk
    >= 60, else Critical); other tiers raise ValueError. NaN (no quota) gives None, a null
    status, as the percentages are null then. Object array."""
    bounds = [float(bound) for bound, _ in tiers]
    if not bounds or bounds[-1] != -np.inf or any(hi <= lo for hi, lo in pairwise(bounds)):
        raise ValueError(f"status tiers need strictly decreasing bounds ending at -inf, got {list(tiers)}")
    pct = np.asarray(pct_p50, dtype=np.float64)
    out = np.full(pct.shape, None, dtype=object)
    assigned = np.isnan(pct)
    for bound, name in tiers:
        hit = ~assigned & (pct >= bound)
        out[hit] = name
        assigned |= hit
    return out
