"""Wall time and peak memory of ``simulation.simulate_totals`` at company size.

2,000 draws x 20,000 open deals x 1,500 projection rows (250 reps x 2 quota types x 3 product
families). Deal counts per rep are skewed (gamma-distributed rates); each deal credits its owner's
row for its family under both quota types; 65% of deals are split 60/40 with an overlay rep on the
revenue quota and 35% also credit a partner rep on the second quota type: about 3 rows per deal.
Logits come, as in ``projection.py``, from a chunk callback gathering a posterior table of owner x
stage x close-date bucket cells by the deal's cell index; the common shock has a per-draw sd. Two
table layouts are timed: ``draw-major``, the ``(n_draws, n_cells)`` float64 table as
``projection.py`` holds it, and ``cell-major-f32``, the same logits stored once as
``(n_cells, n_draws)`` float32 (whole-row gathers, no conversion).

Wall time is the median of ``--repeats`` runs (callback gather included), with the process CPU
time beside it (less sensitive to other load on the machine). Peak memory is measured on one more
run under tracemalloc (numpy's allocations are traced), as the peak above the memory held before
the call; the process's peak RSS is printed at the end. The last line also gives the sizes.

    .venv/bin/python bench/simulation_speed.py [--draws 2000] [--deals 20000] [--chunks 1024,4096]
        [--layouts draw-major,cell-major-f32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quota_platform.lib.forecast.simulation import simulate_totals  # noqa: E402


def build(n_draws: int, n_deals: int, n_reps: int, seed: int):
    rng = np.random.default_rng(seed)
    n_types, n_families, n_stages, n_buckets = 2, 3, 5, 3
    n_rows = n_reps * n_types * n_families

    def row(rep, qtype, family):
        return (rep * n_types + qtype) * n_families + family

    rates = rng.gamma(2.0, 1.0, size=n_reps)
    owner = rng.choice(n_reps, size=n_deals, p=rates / rates.sum())
    family = rng.integers(0, n_families, size=n_deals)
    amount = np.round(rng.lognormal(np.log(25_000), 1.0, size=n_deals), 2)
    deal_i, row_j, value = [], [], []
    for qtype in range(n_types):
        deal_i.append(np.arange(n_deals))
        row_j.append(row(owner, qtype, family))
        value.append(amount)
    # Revenue (type 0): 65% of deals split 60/40 with an overlay rep. Type 1: 35% of deals also
    # credit a partner rep in full (both reps carry the deal towards that quota).
    split = rng.random(n_deals) < 0.65
    overlay = (owner + rng.integers(1, n_reps, size=n_deals)) % n_reps
    value[0] = np.where(split, 0.6, 1.0) * amount
    deal_i.append(np.flatnonzero(split))
    row_j.append(row(overlay[split], 0, family[split]))
    value.append(0.4 * amount[split])
    partner = rng.random(n_deals) < 0.35
    partner_rep = (owner + rng.integers(1, n_reps, size=n_deals)) % n_reps
    deal_i.append(np.flatnonzero(partner))
    row_j.append(row(partner_rep[partner], 1, family[partner]))
    value.append(amount[partner])
    credit = sp.csr_matrix(
        (np.concatenate(value), (np.concatenate(deal_i), np.concatenate(row_j))), shape=(n_deals, n_rows)
    )

    stage = rng.integers(0, n_stages, size=n_deals)
    bucket = rng.integers(0, n_buckets, size=n_deals)
    cell_of_deal = (owner * n_stages + stage) * n_buckets + bucket
    n_cells = n_reps * n_stages * n_buckets
    base = rng.normal(-1.0, 1.0, size=n_cells)
    table = base[None, :] + 0.3 * rng.standard_normal((n_draws, n_cells))
    shock_sd = np.abs(0.25 + 0.05 * rng.standard_normal(n_draws))
    return credit, table, cell_of_deal, shock_sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=250)
    parser.add_argument("--chunks", default="512,1024,2048,4096", help="chunk_deals values to time")
    parser.add_argument("--layouts", default="draw-major,cell-major-f32", help="logit tables to gather from")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    credit, table, cell_of_deal, shock_sd = build(args.draws, args.deals, args.reps, args.seed)

    # draw-major: the (n_draws, n_cells) float64 table as projection.py holds it; the gather
    # table[:, idx] returns a Fortran-ordered block. cell-major-f32: the same logits stored once as
    # (n_cells, n_draws) float32; table_t[idx].T gathers whole rows and needs no conversion.
    table_t = np.ascontiguousarray(table.T, dtype=np.float32)
    callbacks = {
        "draw-major": lambda sl: table[:, cell_of_deal[sl]],
        "cell-major-f32": lambda sl: table_t[cell_of_deal[sl]].T,
    }

    def run(layout: str, chunk: int) -> np.ndarray:
        return simulate_totals(
            callbacks[layout], credit, n_draws=args.draws, shock_sd=shock_sd,
            rng=np.random.default_rng(args.seed), chunk_deals=chunk,
        )

    results = []
    reference = {}
    cases = [(layout, int(c)) for layout in args.layouts.split(",") for c in args.chunks.split(",")]
    for layout, chunk in cases:
        times, cpu = [], []
        for _ in range(args.repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            out = run(layout, chunk)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        reference.setdefault(layout, out)
        identical = bool(np.array_equal(out, reference[layout]))
        del out
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        out = run(layout, chunk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del out
        results.append(
            dict(
                layout=layout,
                chunk_deals=chunk,
                median_seconds=round(statistics.median(times), 3),
                seconds=[round(t, 3) for t in times],
                median_cpu_seconds=round(statistics.median(cpu), 3),
                peak_traced_mib=round((peak - base) / 2**20, 1),
                identical_to_first_chunk_size=identical,  # of the same layout
            )
        )
        print(json.dumps(results[-1]), flush=True)

    summary = dict(
        draws=args.draws, deals=args.deals, rows=credit.shape[1], nnz=credit.nnz,
        nnz_per_deal=round(credit.nnz / credit.shape[0], 2), cells=table.shape[1],
        result_mib=round(args.draws * credit.shape[1] * 8 / 2**20, 1),
        logit_table_mib=round(table.nbytes / 2**20, 1),
        process_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
