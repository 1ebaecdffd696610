"""Measure the demo org's refresh: wall time and peak memory of `quota-platform refresh` for one
as-of date, and of a single-run backfill of a whole quarter of daily partitions.

Each measurement runs in a fresh child process (the CLI, exactly as a user runs it) so that peak
RSS is that process's own (resource.getrusage RUSAGE_CHILDREN after it exits). Results are
appended to bench/RESULTS.md with the machine and the date.

    .venv/bin/python bench/refresh_demo.py [--as-of 2026-11-25] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

BACKFILL = """
import sys, warnings
warnings.filterwarnings("ignore")
from datetime import date
import dagster as dg
from quota_platform.definitions import build_assets
from quota_platform.resources import build_resources
from quota_platform.refresh import dagster_instance
from quota_platform.settings import Settings
start, end = sys.argv[1], sys.argv[2]
settings = Settings.from_env()
assets = build_assets(settings)
every = [a for g in assets.values() for a in g]
instance = dagster_instance(settings)
resources = build_resources(settings)
months = sorted({start[:8] + "01", end[:8] + "01"} | {f"{start[:5]}{m:02d}-01" for m in range(int(start[5:7]), int(end[5:7]) + 1)})
ok = dg.materialize(every, selection=[k for a in assets["monthly"] for k in a.keys], instance=instance, resources=resources,
    tags={"dagster/asset_partition_range_start": months[0], "dagster/asset_partition_range_end": months[-1]}).success
ok &= dg.materialize(every, selection=[k for a in assets["daily"] for k in a.keys], instance=instance, resources=resources,
    tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}).success
sys.exit(0 if ok else 1)
"""


def measure(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("peak RSS did not rise: run each measurement in a fresh bench process")
    return wall, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--as-of", default=date.today().isoformat())
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--step", choices=["generate", "refresh", "backfill"], default=None)
    args = parser.parse_args()
    as_of = date.fromisoformat(args.as_of)
    env = {
        **os.environ,
        "QUOTA_PLATFORM_SOURCE_DIR": str(OUT / "demo_org"),
        "QUOTA_PLATFORM_DUCKDB": str(OUT / "warehouse.duckdb"),
        "DAGSTER_HOME": str(OUT / "dagster_home"),
    }
    cli = [sys.executable, "-m", "quota_platform"]
    if args.step is None:
        # One fresh bench process per measurement keeps RUSAGE_CHILDREN's peak to that child.
        for step in ("generate", "refresh", "backfill"):
            subprocess.run([sys.executable, __file__, "--as-of", args.as_of, "--seed", str(args.seed), "--step", step], check=True)
        return
    if args.step == "generate":
        for path in (OUT / "warehouse.duckdb", OUT / "dagster_home"):
            subprocess.run(["rm", "-rf", str(path)], check=True)
        wall, peak = measure([*cli, "demo-data", "--out", str(OUT / "demo_org"), "--as-of", args.as_of, "--seed", str(args.seed)], env)
        record(f"demo-data (seed {args.seed}, as of {as_of})", wall, peak, opportunity_count(OUT / "demo_org"))
    elif args.step == "refresh":
        wall, peak = measure([*cli, "refresh", "--as-of", args.as_of], env)
        record(f"refresh --as-of {as_of} (first run: raw extract + month + day)", wall, peak, opportunity_count(OUT / "demo_org"))
    else:
        quarter_start = date(as_of.year, 3 * ((as_of.month - 1) // 3) + 1, 1)
        last = as_of
        days = (last - quarter_start).days + 1
        wall, peak = measure([sys.executable, "-c", BACKFILL, quarter_start.isoformat(), last.isoformat()], env)
        record(f"single-run backfill {quarter_start}..{last} ({days} daily partitions + their months)", wall, peak, opportunity_count(OUT / "demo_org"))


def opportunity_count(folder: Path) -> int:
    with open(folder / "Opportunity.csv") as f:
        return sum(1 for _ in f) - 1


def record(what: str, wall: float, peak_mib: float, opportunities: int) -> None:
    line = (
        f"| {datetime.now(timezone.utc):%Y-%m-%d} | {what} | {opportunities:,} | {wall:.1f} s | {peak_mib:,.0f} MiB | "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} |"
    )
    results = ROOT / "bench" / "RESULTS.md"
    if not results.exists():
        results.write_text(
            "# Benchmark results\n\nAppended by `make bench` (bench/refresh_demo.py). Wall time and peak RSS of one "
            "child process each.\n\n| date | what | opportunities | wall | peak RSS | machine |\n| --- | --- | --- | --- | --- | --- |\n"
        )
    with results.open("a") as f:
        f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
