"""The `quota-platform` command (also `python -m quota_platform`).

    quota-platform refresh --as-of 2025-03-31
    quota-platform demo-data --out .quota_platform/demo_org --as-of 2025-03-31 --seed 7
    quota-platform import-maven --out .quota_platform/maven_org
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import date
from pathlib import Path


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _progress(line: str) -> None:
    print(line, flush=True)


def _run(command: str, intro: str, work) -> tuple[int, object]:
    """Load the settings, print what runs against what, run ``work(settings)``; a settings or
    refresh error becomes a message and an exit code (2 for settings, 1 for a failed run)."""
    from quota_platform.refresh import RefreshError
    from quota_platform.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"quota-platform: {exc}", file=sys.stderr)
        return 2, None
    print(f"{intro}: source {settings.source_dir} -> warehouse {settings.duckdb_path}")
    started = time.perf_counter()
    try:
        work(settings)
    except RefreshError as exc:
        print(f"quota-platform {command} failed:\n{exc}", file=sys.stderr)
        return 1, settings
    from quota_platform.warehouse.duckdb_io import SCHEMA

    print(f"Done in {time.perf_counter() - started:.1f}s. Tables in schema {SCHEMA} of {settings.duckdb_path}")
    return 0, settings


def _refresh(args: argparse.Namespace) -> int:
    from quota_platform.refresh import refresh

    code, _ = _run("refresh", f"Refreshing as of {args.as_of}", lambda s: refresh(args.as_of, s, progress=_progress))
    return code


def _backtest(args: argparse.Namespace) -> int:
    from quota_platform.lib.backtest.scoring import pooled
    from quota_platform.refresh import backtest

    code, settings = _run(
        "backtest", f"Backtest {args.start} .. {args.end}", lambda s: backtest(args.start, args.end, s, progress=_progress)
    )
    if code:
        return code
    import duckdb
    import polars as pl

    from quota_platform.warehouse.duckdb_io import SCHEMA

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        accuracy = con.sql(f"select * from {SCHEMA}.projection_accuracy").pl()
    if accuracy.is_empty():
        print("No closed period had its checkpoints and last day in the range: nothing scored.")
        return 0
    table = pooled(accuracy).select(
        "period_type", "checkpoint_pct", "level", "method", "periods", "n",
        *(
            pl.col(c).round(3)
            for c in (
                "wape", "bias", "coverage_p10_p90", "below_p10", "above_p90",
                "pit_coverage_p10_p90", "pit_below_p10", "pit_above_p90", "brier_skill",
            )
        ),
        pl.col("crps").round(0),
    )
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=260, tbl_hide_dataframe_shape=True):
        print(table)
    print(f"Per period: table {SCHEMA}.projection_accuracy")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from quota_platform.samples.demo_org import generate_demo_org

    started = time.perf_counter()
    summary = generate_demo_org(Path(args.out), args.as_of, args.seed, progress=_progress)
    counts = ", ".join(f"{k} {v:,}" for k, v in summary.counts.items())
    print(f"Demo org written to {args.out} in {time.perf_counter() - started:.1f}s ({counts})")
    return 0


def _import_maven(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    from quota_platform.samples.maven import import_maven

    started = time.perf_counter()
    packaged = files("quota_platform") / "data" / "maven_crm"
    try:
        if args.src:
            summary = import_maven(Path(args.src), Path(args.out), quota_uplift=args.quota_uplift)
        else:
            with as_file(packaged) as src:
                summary = import_maven(Path(src), Path(args.out), quota_uplift=args.quota_uplift)
    except (OSError, ValueError) as exc:
        print(f"quota-platform import-maven: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line)
    print(f"Imported in {time.perf_counter() - started:.1f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quota-platform",
        description="Quota attainment, projections and alerts for sales teams.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    refresh = sub.add_parser("refresh", help="materialize every asset for one as-of date")
    refresh.add_argument("--as-of", type=_iso_date, default=date.today(), help="YYYY-MM-DD (default today)")
    refresh.set_defaults(func=_refresh)
    bt = sub.add_parser("backtest", help="backfill a date range and score the projections of its closed periods")
    bt.add_argument("--from", dest="start", type=_iso_date, required=True, help="first as-of date, YYYY-MM-DD")
    bt.add_argument("--to", dest="end", type=_iso_date, required=True, help="last as-of date, YYYY-MM-DD")
    bt.set_defaults(func=_backtest)
    demo = sub.add_parser("demo-data", help="write the demo Salesforce-shaped org as files")
    demo.add_argument("--out", required=True, help="folder to write the object files into")
    demo.add_argument("--as-of", type=_iso_date, default=date.today(), help="YYYY-MM-DD (default today)")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_demo_data)
    maven = sub.add_parser("import-maven", help="write the Maven CRM sample (public domain) as the contract's object files")
    maven.add_argument("--out", required=True, help="folder to write the object files into")
    maven.add_argument("--src", default=None, help="folder holding the Maven CSV files (default: the packaged copy)")
    maven.add_argument("--quota-uplift", type=float, default=1.0, help="multiplier on derived quotas (default 1.0)")
    maven.set_defaults(func=_import_maven)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Dagster marks backfill_policy as beta; the warning says nothing a user of the CLI can act on.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    # PyTensor's C backend is not used by the nutpie sampler, so a missing BLAS costs nothing here.
    warnings.filterwarnings("ignore", message=".*PyTensor could not link to a BLAS.*")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
