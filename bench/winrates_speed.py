"""Wall time of the win-rate fit on a company-sized synthetic data set, cold and warm.

500 reps in 60 teams (4 to 13 reps each), 5 stages, the 3 close-date buckets, 3 deal classes (new
business, expansion at +0.4 and renewal at +1.8 on the logit scale, each deal's class uniform at
random), 4 quarterly training periods observed at 5 checkpoints each, 30 deals per rep and period on
average, each seen at 1 to 5 checkpoints and down-weighted to one trial in all, as the training
cells are: about 141,000 cells, 120 trials per rep and 3,360 parameters (with --classes all:0, the
model without classes: 95,000 cells and 3,324 parameters). The fit runs twice, each time in a fresh
child process with the same compile cache directory: the first run compiles (cold, an empty
directory unless --cache-dir names a used one), the second loads the cache (warm). Each child
prints its figures as JSON; the parent prints both.

    .venv/bin/python bench/winrates_speed.py [--reps 500] [--teams 60] [--classes new_business:0,...]
                                             [--cache-dir DIR] [--sampler nutpie]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the platform's deal classes, renewals converting at several times the odds of new business
DEFAULT_CLASSES = "new_business:0.0,expansion:0.4,renewal:1.8"


def child(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from quota_platform.lib.forecast.winrates import configure_compile_cache

    configure_compile_cache(Path(args.cache_dir))  # before anything imports pytensor

    import numpy as np

    from quota_platform.lib.forecast.winrates import FitSettings, fit_win_rates
    from quota_platform.samples.winrate_cells import simulate_cells

    sizes = np.random.default_rng(args.seed).integers(4, 14, size=args.teams)
    sizes = np.maximum(1, np.round(sizes * args.reps / sizes.sum()).astype(int))
    classes, offsets = parse_classes(args.classes)
    sim = simulate_cells(
        n_teams=args.teams, reps_per_team=sizes.tolist(), n_stages=args.stages, n_periods=args.periods,
        deals_per_rep_period=args.deals, seed=args.seed, deal_classes=classes, class_offsets=offsets,
    )
    defaults = FitSettings()
    settings = FitSettings(
        draws=args.draws or defaults.draws, tune=args.tune or defaults.tune, sampler=args.sampler,
    )
    imported = time.perf_counter()
    post = fit_win_rates(sim.cells, settings, roster=sim.roster)
    out = dict(post.diagnostics)
    out.update(
        reps=len(post.reps), teams=len(post.teams), stages=len(post.stages), deal_classes=post.deal_classes,
        draws_per_chain=settings.draws, tune=settings.tune, chains=settings.chains,
        setup_seconds=imported - started, process_seconds=time.perf_counter() - started,
    )
    print("RESULT " + json.dumps(out))


def parse_classes(text: str) -> tuple[list[str], list[float]]:
    """"name:offset,name:offset" -> names, logit offsets."""
    pairs = [part.split(":") for part in text.split(",") if part.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--classes wants name:offset pairs separated by commas, got {text!r}")
    return [p[0].strip() for p in pairs], [float(p[1]) for p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--teams", type=int, default=60)
    parser.add_argument("--stages", type=int, default=5)
    parser.add_argument("--periods", type=int, default=4)
    parser.add_argument("--deals", type=float, default=30.0, help="deals per rep and period")
    parser.add_argument(
        "--classes", default=DEFAULT_CLASSES,
        help=f"deal classes and their logit offsets to mu, name:offset,... (default {DEFAULT_CLASSES}; "
        "all:0 for the model without classes)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--draws", type=int, default=0, help="per chain; 0 for FitSettings' default")
    parser.add_argument("--tune", type=int, default=0, help="0 for FitSettings' default")
    parser.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"])
    parser.add_argument("--cache-dir", default="", help="compile cache; default a new empty directory (cold)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="winrates_cache_")
    forwarded = [
        f"--{name}={getattr(args, name)}"
        for name in ("reps", "teams", "stages", "periods", "deals", "classes", "seed", "draws", "tune", "sampler")
    ]
    print(f"compile cache: {cache_dir}  cores: {os.cpu_count()}  load average before: {os.getloadavg()[0]:.2f}")
    results = []
    for run in range(args.runs):
        label = "cold" if run == 0 and not args.cache_dir else "warm"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--cache-dir", cache_dir, *forwarded],
            capture_output=True, text=True, cwd=ROOT,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"run {run + 1} failed with exit code {proc.returncode}")
        res = json.loads(lines[-1][len("RESULT "):])
        results.append(res)
        print(
            f"run {run + 1} ({label}): fit {res['fit_seconds']:.1f} s (compile {res['compile_seconds']:.1f} s, "
            f"sample {res['sample_seconds']:.1f} s), whole process {res['process_seconds']:.1f} s; "
            f"max R-hat {res['max_rhat']:.4f}, min ESS bulk {res['min_ess_bulk']:.0f} / tail "
            f"{res['min_ess_tail']:.0f}, divergences {res['divergences']:.0f}; "
            f"load average after {os.getloadavg()[0]:.2f}"
        )
    r = results[0]
    print(
        f"data: {r['reps']} reps, {r['teams']} teams, {r['stages']} stages, "
        f"{len(r['deal_classes'])} deal classes ({', '.join(r['deal_classes'])}), {r['n_cells']:.0f} cells, "
        f"{r['n_observations']:.0f} trials, {r['n_parameters']:.0f} parameters; "
        f"{r['chains']} chains x ({r['tune']} tune + {r['draws_per_chain']} draws)"
    )


if __name__ == "__main__":
    main()
