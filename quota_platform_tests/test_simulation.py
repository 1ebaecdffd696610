"""The Monte Carlo engine of the projections (``quota_platform.lib.forecast.simulation``).

Expected values come from hand computations (shown in comments) or exact formulas; Monte Carlo
checks use tolerances of 4 standard errors derived from the exact (or sample) moments, with fixed
seeds so that the runs are reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.polynomial.hermite_e import hermegauss

from quota_platform.lib.core.rules import Rules
from quota_platform.lib.forecast import simulation
from quota_platform.lib.forecast.simulation import (
    rollup_draws,
    simulate_totals,
    status_tier,
    summarize,
)

Z = 4.0  # standard errors allowed in the Monte Carlo checks
TIERS = Rules().status_tiers  # the contract's: Crushing >= 120, On Track >= 100, Watch >= 80, At Risk >= 60


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1.0 - p))


def fixed_logits(p, n_draws):
    """(n_draws, n_deals) logits of probabilities that do not vary across draws."""
    return np.broadcast_to(logit(p)[None, :], (n_draws, np.size(p)))


def exact_moments(p: np.ndarray, credit) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of the Monte Carlo checks: exact mean and variance per row j of
    sum_i Bernoulli(p_i) x credit[i, j] for independent deals with fixed probabilities (no shock),
    mean = sum_i p_i c_ij, var = sum_i p_i (1 - p_i) c_ij**2. ``credit`` is ``(n_deals, n_rows)``,
    dense or sparse."""
    p = np.asarray(p, dtype=np.float64)
    if sp.issparse(credit):
        c = sp.csr_matrix(credit, dtype=np.float64)
        c2 = c.multiply(c)
    else:
        c = np.asarray(credit, dtype=np.float64)
        c2 = c * c
    if p.shape != (c.shape[0],):
        raise ValueError(f"p has shape {p.shape}, expected ({c.shape[0]},)")
    mean = np.asarray(c.T @ p).ravel()
    var = np.asarray(c2.T @ (p * (1.0 - p))).ravel()
    return mean, var


# --------------------------------------------------------------------------------------------------
# (1) moments
# --------------------------------------------------------------------------------------------------


def test_exact_moments_by_hand():
    # p = (0.5, 0.2, 0.9); deal 0 credits row 0 with 100, deal 1 credits row 0 with 50 and row 1
    # with 200, deal 2 credits row 1 with 10.
    # mean row 0 = 0.5*100 + 0.2*50 = 60;            mean row 1 = 0.2*200 + 0.9*10 = 49
    # var  row 0 = 0.25*100**2 + 0.16*50**2 = 2900;   var  row 1 = 0.16*200**2 + 0.09*10**2 = 6409
    p = np.array([0.5, 0.2, 0.9])
    credit = np.array([[100.0, 0.0], [50.0, 200.0], [0.0, 10.0]])
    for c in (credit, sp.csr_matrix(credit)):
        mean, var = exact_moments(p, c)
        np.testing.assert_allclose(mean, [60.0, 49.0], rtol=1e-12)
        np.testing.assert_allclose(var, [2900.0, 6409.0], rtol=1e-12)


def test_simulated_moments_match_exact_moments():
    n_draws, n_deals, n_rows = 20_000, 40, 6
    data = np.random.default_rng(101)
    p = data.uniform(0.05, 0.95, size=n_deals)
    rows, deals, values = [], [], []
    for i in range(n_deals):
        for r in data.choice(n_rows, size=data.integers(1, 4), replace=False):
            deals.append(i)
            rows.append(r)
            values.append(float(data.integers(100, 5000)))
    credit = sp.csr_matrix((values, (deals, rows)), shape=(n_deals, n_rows))

    draws = simulate_totals(fixed_logits(p, n_draws), credit, n_draws=n_draws, rng=np.random.default_rng(1))
    assert draws.shape == (n_draws, n_rows) and draws.dtype == np.float64

    mean, var = exact_moments(p, credit)
    # SE of the sample mean: sqrt(var / n). SE of the sample variance: sqrt((mu4 - var**2) / n)
    # with mu4 = kappa4 + 3 var**2, kappa4 of a sum of independent c x Bernoulli(p) being
    # sum c**4 p (1 - p) (1 - 6 p (1 - p)).
    c = credit.toarray()
    pq = p * (1.0 - p)
    kappa4 = (c**4).T @ (pq * (1.0 - 6.0 * pq))
    se_mean = np.sqrt(var / n_draws)
    se_var = np.sqrt((kappa4 + 2.0 * var**2) / n_draws)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < Z * se_mean)
    assert np.all(np.abs(draws.var(axis=0, ddof=1) - var) < Z * se_var)


def test_infinite_logits_are_certain_outcomes():
    n_draws = 50
    credit = sp.csr_matrix(np.array([[10.0, 0.0], [0.0, 7.0]]))
    logits = np.tile([np.inf, -np.inf], (n_draws, 1))
    draws = simulate_totals(logits, credit, n_draws=n_draws, shock_sd=2.0, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(draws, np.tile([10.0, 0.0], (n_draws, 1)))


# --------------------------------------------------------------------------------------------------
# (2) one deal crediting several rows
# --------------------------------------------------------------------------------------------------


def test_deal_crediting_several_rows_gives_the_same_outcome_to_each():
    # Deal A (p = 0.4) is split 60/40 between rep X (row 0) and rep Y (row 1) and also credits rep
    # X's second quota type in full (row 2). Deal B (p = 0.4) credits row 3 only.
    n_draws = 4000
    credit = sp.csr_matrix(np.array([[600.0, 400.0, 1000.0, 0.0], [0.0, 0.0, 0.0, 1000.0]]))
    draws = simulate_totals(fixed_logits([0.4, 0.4], n_draws), credit, n_draws=n_draws, rng=np.random.default_rng(5))

    won = draws[:, 0] > 0
    assert set(np.unique(draws[:, 0])) == {0.0, 600.0}
    # The same outcome everywhere: 60/40 in every draw, and the full credit with it.
    np.testing.assert_array_equal(2.0 * draws[:, 0], 3.0 * draws[:, 1])
    np.testing.assert_array_equal(5.0 * draws[:, 0], 3.0 * draws[:, 2])
    assert abs(won.mean() - 0.4) < Z * np.sqrt(0.4 * 0.6 / n_draws)
    # Another deal's outcome is independent: correlation 0 within 4 standard errors (1/sqrt(n)).
    assert abs(np.corrcoef(draws[:, 0], draws[:, 3])[0, 1]) < Z / np.sqrt(n_draws)


# --------------------------------------------------------------------------------------------------
# (3) roll-ups
# --------------------------------------------------------------------------------------------------


def test_rollup_is_the_sum_of_the_same_draws():
    n_draws = 500
    data = np.random.default_rng(8)
    # Six deals over three rep rows, whole-dollar credits (sums are exact).
    credit = sp.csr_matrix(data.integers(0, 3, size=(6, 3)) * data.integers(100, 1000, size=(6, 3)), dtype=float)
    rep = simulate_totals(fixed_logits(data.uniform(0.2, 0.8, 6), n_draws), credit, n_draws=n_draws,
                          shock_sd=0.5, rng=np.random.default_rng(9))
    # Parent rows: manager of reps 0 and 1, company of all three.
    membership = sp.csr_matrix(np.array([[1, 1], [1, 1], [0, 1]]))
    parents = rollup_draws(rep, membership)
    assert parents.shape == (n_draws, 2)
    np.testing.assert_array_equal(parents[:, 0], rep[:, 0] + rep[:, 1])
    np.testing.assert_array_equal(parents[:, 1], rep[:, 0] + rep[:, 1] + rep[:, 2])


def test_manager_quantile_is_not_the_sum_of_rep_quantiles():
    # Two reps, one independent deal each: p = 0.2, 100 USD. Each rep: 0 w.p. 0.8, 100 w.p. 0.2,
    # so P(rep <= 0) = 0.8 < 0.9 and the rep P90 is 100; the sum of the rep P90s is 200.
    # Manager: 0 w.p. 0.64, 100 w.p. 0.32, 200 w.p. 0.04, so P(manager <= 100) = 0.96 >= 0.9
    # and the manager P90 is 100. P(manager >= 150) = 0.04.
    n_draws = 4000
    credit = sp.identity(2, format="csr") * 100.0
    rep = simulate_totals(fixed_logits([0.2, 0.2], n_draws), credit, n_draws=n_draws, rng=np.random.default_rng(11))
    manager = rollup_draws(rep, sp.csr_matrix(np.ones((2, 1))))
    rep_summary = summarize(rep, np.array([100.0, 100.0]), np.zeros(2))
    manager_summary = summarize(manager, np.array([150.0]), np.zeros(1))
    np.testing.assert_array_equal(rep_summary["projected_p90"], [100.0, 100.0])
    assert manager_summary["projected_p90"][0] == 100.0
    assert rep_summary["projected_p90"].sum() == 200.0
    assert abs(manager_summary["prob_hit_quota"][0] - 0.04) < Z * np.sqrt(0.04 * 0.96 / n_draws)


def test_rollup_rejects_double_links():
    rep = np.ones((3, 2))
    doubled = sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 0, 0])), shape=(2, 1))  # rep 0 linked twice
    with pytest.raises(ValueError, match="0 or 1"):
        rollup_draws(rep, doubled)
    with pytest.raises(ValueError, match="align"):
        rollup_draws(rep, sp.csr_matrix(np.ones((3, 1))))


# --------------------------------------------------------------------------------------------------
# (4) the common shock
# --------------------------------------------------------------------------------------------------


def test_common_shock_widens_the_company_total_and_keeps_the_logit_normal_marginal():
    # 200 deals with p = 0.1, each crediting its own row (its won indicator) and the company row.
    n_draws, n_deals, sd = 4000, 200, 1.5
    credit = sp.hstack([sp.identity(n_deals), np.ones((n_deals, 1))], format="csr")
    logits = fixed_logits(np.full(n_deals, 0.1), n_draws)
    plain = simulate_totals(logits, credit, n_draws=n_draws, shock_sd=0.0, rng=np.random.default_rng(21))
    shocked = simulate_totals(logits, credit, n_draws=n_draws, shock_sd=sd, rng=np.random.default_rng(21))
    company_plain, company_shocked = plain[:, -1], shocked[:, -1]
    np.testing.assert_array_equal(company_shocked, shocked[:, :-1].sum(axis=1))

    # Without the shock the deals are independent: var = 200 x 0.1 x 0.9 = 18. With it, q =
    # sigmoid(logit(0.1) + 1.5 Z) is common to the deals of a draw: var = N E[q(1 - q)] + N**2 Var(q)
    # (about 1,300, by quadrature below). The qualitative claim first:
    assert company_shocked.var(ddof=1) > 5.0 * company_plain.var(ddof=1)

    # Logit-normal moments by Gauss-Hermite quadrature (probabilists' weights).
    nodes, weights = hermegauss(80)
    weights = weights / weights.sum()
    q = 1.0 / (1.0 + np.exp(-(logit(0.1) + sd * nodes)))
    m = weights @ q
    var_q = weights @ (q * q) - m * m
    expected_var = n_deals * (weights @ (q * (1.0 - q))) + n_deals**2 * var_q

    # Marginal win probability of a deal: the logit-normal mean (about 0.168), not 0.1.
    share = company_shocked.mean() / n_deals
    se_share = company_shocked.std(ddof=1) / n_deals / np.sqrt(n_draws)
    assert abs(share - m) < Z * se_share
    assert abs(0.1 - m) > 2 * Z * se_share  # the test tells the two apart
    share_plain = company_plain.mean() / n_deals
    assert abs(share_plain - 0.1) < Z * np.sqrt(0.09 / n_deals / n_draws)

    # Variance of the shocked total against its exact value; SE of a sample variance from the
    # sample's fourth central moment, sqrt((m4 - s**4) / n).
    dev = company_shocked - company_shocked.mean()
    s2 = dev.var()
    se_var = np.sqrt((np.mean(dev**4) - s2**2) / n_draws)
    assert abs(company_shocked.var(ddof=1) - expected_var) < Z * se_var


def test_shock_sd_per_draw():
    # A per-draw sd of 0 in the first half of the draws and 3 in the second: the first half
    # behaves as without a shock (variance 18 as above), the second much wider.
    n_draws, n_deals = 4000, 200
    credit = sp.csr_matrix(np.ones((n_deals, 1)))
    sd = np.repeat([0.0, 3.0], n_draws // 2)
    out = simulate_totals(fixed_logits(np.full(n_deals, 0.1), n_draws), credit, n_draws=n_draws, shock_sd=sd,
                          rng=np.random.default_rng(4))[:, 0]
    first, second = out[: n_draws // 2], out[n_draws // 2 :]
    # SE of the variance of a near-normal sample: var x sqrt(2 / (n - 1)).
    assert abs(first.var(ddof=1) - 18.0) < Z * 18.0 * np.sqrt(2.0 / (first.size - 1))
    assert second.var(ddof=1) > 10.0 * first.var(ddof=1)


# --------------------------------------------------------------------------------------------------
# (5) chunking and random streams
# --------------------------------------------------------------------------------------------------


def _chunk_case():
    data = np.random.default_rng(31)
    n_draws, n_deals, n_rows = 37, 1000, 25  # 1000 deals: not a multiple of the random block
    logits = data.normal(-0.5, 1.5, size=(n_draws, n_deals))
    credit = sp.random(n_deals, n_rows, density=0.12, format="csr", rng=data)
    credit.data = np.round(credit.data * 12_345.67, 2)  # cents: sums depend on their order
    return n_draws, logits, credit, data.uniform(0.0, 0.8, size=n_draws)


def test_results_do_not_depend_on_chunk_size():
    n_draws, logits, credit, sd = _chunk_case()
    results, next_numbers = [], []
    for chunk in (1, 64, 100, 500, 1000, 5000):
        rng = np.random.default_rng(77)
        results.append(simulate_totals(logits, credit, n_draws=n_draws, shock_sd=sd, rng=rng, chunk_deals=chunk))
        next_numbers.append(rng.random())
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])  # bit for bit
    assert len(set(next_numbers)) == 1  # the caller's rng advanced by the same amount

    # A callback producing the blocks (gathered by cell as projection.py does) gives the same.
    table, cell = logits[:, ::-1].copy(), np.arange(logits.shape[1])[::-1].copy()
    seen = []

    def blocks(sl):
        seen.append((sl.start, sl.stop))
        return table[:, cell[sl]]

    via_callback = simulate_totals(blocks, credit, n_draws=n_draws, shock_sd=sd, rng=np.random.default_rng(77), chunk_deals=300)
    np.testing.assert_array_equal(via_callback, results[0])
    assert seen == [(0, 320), (320, 640), (640, 960), (960, 1000)]  # 300 rounded up to 5 blocks of 64


def test_public_sparse_product_fallback_agrees(monkeypatch):
    n_draws, logits, credit, sd = _chunk_case()
    fast = simulate_totals(logits, credit, n_draws=n_draws, shock_sd=sd, rng=np.random.default_rng(5), chunk_deals=256)
    monkeypatch.setattr(simulation, "_csc_matvecs", None)
    slow = simulate_totals(logits, credit, n_draws=n_draws, shock_sd=sd, rng=np.random.default_rng(5), chunk_deals=256)
    np.testing.assert_allclose(slow, fast, rtol=1e-12, atol=1e-6)


def test_streams_differ_between_calls_and_seeds():
    n_draws, logits, credit, sd = _chunk_case()
    rng = np.random.default_rng(1)
    first = simulate_totals(logits, credit, n_draws=n_draws, rng=rng)
    second = simulate_totals(logits, credit, n_draws=n_draws, rng=rng)
    other_seed = simulate_totals(logits, credit, n_draws=n_draws, rng=np.random.default_rng(2))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, other_seed)


def test_does_not_modify_the_credit_matrix():
    # Unsorted column indices and a duplicate entry: the engine canonicalises a copy.
    credit = sp.csr_matrix((np.array([5.0, 3.0, 2.0]), np.array([1, 0, 1]), np.array([0, 3])), shape=(1, 2))
    before = (credit.data.copy(), credit.indices.copy())
    out = simulate_totals(np.full((4, 1), np.inf), credit, n_draws=4, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.tile([3.0, 7.0], (4, 1)))
    np.testing.assert_array_equal(credit.data, before[0])
    np.testing.assert_array_equal(credit.indices, before[1])


def test_input_validation():
    credit = sp.csr_matrix(np.ones((3, 2)))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="NaN logit"):
        simulate_totals(np.array([[0.0, np.nan, 1.0]] * 2), credit, n_draws=2, rng=rng)
    with pytest.raises(ValueError, match="shape"):
        simulate_totals(np.zeros((2, 4)), credit, n_draws=2, rng=rng)
    with pytest.raises(ValueError, match="logit block"):
        simulate_totals(lambda sl: np.zeros((2, 1)), credit, n_draws=2, rng=rng)
    with pytest.raises(ValueError, match="shock_sd"):
        simulate_totals(np.zeros((2, 3)), credit, n_draws=2, shock_sd=np.ones(3), rng=rng)
    with pytest.raises(ValueError, match="shock_sd"):
        simulate_totals(np.zeros((2, 3)), credit, n_draws=2, shock_sd=-1.0, rng=rng)
    empty = simulate_totals(np.zeros((2, 0)), sp.csr_matrix((0, 2)), n_draws=2, rng=rng)
    np.testing.assert_array_equal(empty, np.zeros((2, 2)))


# --------------------------------------------------------------------------------------------------
# (6) summaries and status tiers
# --------------------------------------------------------------------------------------------------


def test_summarize_by_hand():
    # Five draws (the totals include closed_won) of three rows:
    #   row 0: 50, 80, 100, 120, 150; quota 100, closed_won 50
    #   row 1: 5, 15, 25, 35, 45;     quota 0,   closed_won 5
    #   row 2: 10 in every draw;      quota 200, closed_won 10
    # Quantiles interpolate linearly between order statistics at position q x (n - 1):
    #   row 0: p10 at 0.4 -> 50 + 0.4 x 30 = 62; p50 at 2 -> 100; p90 at 3.6 -> 120 + 0.6 x 30 = 138
    #   row 1: p10 -> 5 + 0.4 x 10 = 9; p50 -> 25; p90 -> 35 + 0.6 x 10 = 41
    # Percent of quota: row 0 = 62, 100, 138; row 1 NaN (no quota); row 2 = 5, 5, 5.
    # Share of draws >= quota: row 0 = 3/5 (100, 120, 150); row 1 NaN; row 2 = 0.
    # Mean: 100, 25, 10. sd (ddof 1): row 0 sqrt((50**2 + 20**2 + 0 + 20**2 + 50**2) / 4) =
    # sqrt(1450); row 1 sqrt((400 + 100 + 0 + 100 + 400) / 4) = sqrt(250); row 2 0.
    totals = np.array([[50, 5, 10], [80, 15, 10], [100, 25, 10], [120, 35, 10], [150, 45, 10]], dtype=float)
    out = summarize(totals, np.array([100.0, 0.0, 200.0]), np.array([50.0, 5.0, 10.0]))
    nan = np.nan
    expected = {
        "projected_p10": [62, 9, 10],
        "projected_p50": [100, 25, 10],
        "projected_p90": [138, 41, 10],
        "projected_pct_p10": [62, nan, 5],
        "projected_pct_p50": [100, nan, 5],
        "projected_pct_p90": [138, nan, 5],
        "prob_hit_quota": [0.6, nan, 0.0],
        "mean": [100, 25, 10],
        "sd": [np.sqrt(1450), np.sqrt(250), 0],
    }
    assert set(out) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=1e-12, atol=1e-12, err_msg=key)
    assert list(status_tier(out["projected_pct_p50"], TIERS)) == ["On Track", None, "Critical"]


def test_summarize_rejects_totals_without_closed_won():
    totals = np.array([[0.0], [30.0], [60.0]])  # open-deal draws only; 40 already closed
    with pytest.raises(ValueError, match="include closed_won"):
        summarize(totals, np.array([100.0]), np.array([40.0]))
    out = summarize(totals + 40.0, np.array([100.0]), np.array([40.0]), quantiles=(0.25, 0.75))
    # 40, 70, 100: p25 at position 0.5 -> 55; p75 at 1.5 -> 85; one draw of three reaches 100.
    np.testing.assert_allclose(out["projected_p25"], [55.0])
    np.testing.assert_allclose(out["projected_pct_p75"], [85.0])
    np.testing.assert_allclose(out["prob_hit_quota"], [1 / 3])


def test_status_tier_boundaries():
    pct = np.array([150, 120, 119.999, 100, 99.5, 80, 79.9, 60, 59.99, 0, -10, np.nan])
    assert list(status_tier(pct, TIERS)) == [
        "Crushing", "Crushing", "On Track", "On Track", "Watch", "Watch",
        "At Risk", "At Risk", "Critical", "Critical", "Critical", None,
    ]


def test_status_tier_bounds_are_settings():
    # the bounds come from the caller (Rules.status_tiers): a stricter "On Track" moves 100 to Watch
    tiers = ((130.0, "Crushing"), (110.0, "On Track"), (80.0, "Watch"), (60.0, "At Risk"), (float("-inf"), "Critical"))
    assert list(status_tier(np.array([125.0, 110.0, 100.0, 59.0]), tiers)) == ["On Track", "On Track", "Watch", "Critical"]
    # every percentage needs a tier: the last bound must be -inf, and bounds must fall
    with pytest.raises(ValueError, match="-inf"):
        status_tier(np.array([50.0]), ((100.0, "On Track"), (60.0, "At Risk")))
    with pytest.raises(ValueError, match="decreasing"):
        status_tier(np.array([50.0]), ((80.0, "Watch"), (100.0, "On Track"), (float("-inf"), "Critical")))
