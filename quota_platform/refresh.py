"""``quota-platform refresh --as-of D``: materialize every asset for one date, in process, in order
(raw objects, then the monthly assets for D's month, then the daily assets for D), against the
configured source and warehouse (docs/contract.md, Outputs: "Warehouse, partitions and refresh")."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import date

import dagster as dg

from quota_platform.definitions import build_assets
from quota_platform.defs.partitions import month_key, partition_key
from quota_platform.resources import build_resources
from quota_platform.settings import Settings
from quota_platform.warehouse.private_files import make_private_dir, write_private_text

INSTANCE_YAML = """\
# Local Dagster instance of quota_platform (made by quota-platform; safe to delete).
telemetry:
  enabled: false
nux:
  enabled: false
"""


class RefreshError(RuntimeError):
    """A step of the refresh failed; the message says which asset and why."""


@dataclasses.dataclass
class StepResult:
    name: str
    partition: str | None
    seconds: float
    materialized: list[str]
    warnings: list[str]


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME (default: under QUOTA_PLATFORM_HOME), so that runs made by the
    CLI show up in the UI started with the same settings (`make ui`)."""
    path = make_private_dir(settings.dagster_home)  # owner-only when created here (event logs)
    config = path / "dagster.yaml"
    if not config.exists():
        write_private_text(config, INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(path.resolve()))


def _failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = getattr(data, "user_failure_data", None)
            if user and user.description:
                text = user.description
            else:
                # The innermost cause is the one that names the record (a Failure raised while
                # loading an input arrives wrapped in Dagster's load-input error).
                error, text = data.error, "failed"
                while error is not None:
                    text = error.message.strip()
                    error = error.cause
            messages.append(f"{event.step_key}: {text}")
    return messages


def _check_outcomes(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        label = f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed"
        description = evaluation.description or ""
        line = f"{label}{': ' + description if description else ''}"
        if evaluation.severity == dg.AssetCheckSeverity.WARN:
            warnings.append(line)
        else:
            errors.append(line)
    return errors, warnings


@dataclasses.dataclass
class Step:
    group: str  # a key of build_assets()
    label: str
    partition_key: str | None = None
    partition_range: tuple[str, str] | None = None  # one run over the range (single-run backfill)


def _validate_dates(settings: Settings, *days: date) -> None:
    today = date.today()
    for day in days:
        if day < settings.start_date:
            raise RefreshError(
                f"as-of date {day} is before QUOTA_PLATFORM_START_DATE ({settings.start_date}); "
                "partitions start there: set QUOTA_PLATFORM_START_DATE earlier"
            )
        if day > today:
            raise RefreshError(f"as-of date {day} is in the future (today is {today})")


def run_steps(
    steps: list[Step],
    settings: Settings,
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _: None,
    tags: dict[str, str] | None = None,
) -> list[StepResult]:
    """Materialize each step's assets in order, in process. A failed asset blocks every asset
    downstream of it in later steps (they would read a stale table); the others still run. Raises
    :class:`RefreshError` with every failure's message at the end."""
    assets = build_assets(settings)
    all_assets = [a for group in assets.values() for a in group]
    resources = build_resources(settings)
    graph = dg.Definitions(assets=all_assets, resources=resources).resolve_asset_graph()
    instance = instance or dagster_instance(settings)
    results, errors, blocked = [], [], set()
    for i, step in enumerate(steps, start=1):
        wanted = [k for a in assets[step.group] for k in a.keys]
        selection = [k for k in wanted if k not in blocked]
        where = step.partition_key or (f"{step.partition_range[0]} .. {step.partition_range[1]}" if step.partition_range else None)
        progress(f"[{i}/{len(steps)}] {step.label}{' for ' + where if where else ''} ...")
        skipped = sorted(k.to_user_string() for k in wanted if k in blocked)
        if skipped:
            progress(f"      skipped (an upstream asset failed): {', '.join(skipped)}")
        if not selection:
            continue
        run_tags = {**(tags or {})}
        if step.partition_range:
            run_tags["dagster/asset_partition_range_start"] = step.partition_range[0]
            run_tags["dagster/asset_partition_range_end"] = step.partition_range[1]
        started = time.perf_counter()
        result = dg.materialize(
            all_assets,
            selection=selection,
            partition_key=step.partition_key,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags=run_tags,
        )
        elapsed = time.perf_counter() - started
        step_errors, warnings = _check_outcomes(result)
        if not result.success:
            step_errors = _failure_messages(result) + step_errors
        for line in warnings:
            progress(f"      warning: {line}")
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        failed = {k for k in selection if k not in materialized} | _failed_check_assets(result)
        if step_errors:
            errors.extend(step_errors)
            # Never let a later step read a stale table in place of one that failed now.
            blocked |= failed | {child for k in failed for child in _downstream(graph, k)}
            progress(f"      failed: {', '.join(sorted(k.to_user_string() for k in failed))}")
        names = sorted({k.to_user_string() for k in materialized})
        progress(f"      done in {elapsed:.1f}s: {', '.join(names)}")
        results.append(StepResult(step.group, where, elapsed, names, warnings))
    if errors:
        raise RefreshError("\n".join(errors))
    return results


def refresh(
    as_of: date,
    settings: Settings | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[StepResult]:
    """Materialize every asset for ``as_of``: the raw objects, the monthly assets for its month,
    then the daily assets for the day. Raises :class:`RefreshError` with the failing asset's
    message (object, record Id, field) when a step or a blocking check fails."""
    settings = settings or Settings.from_env()
    _validate_dates(settings, as_of)
    steps = [
        Step("raw", "Salesforce objects"),
        Step("monthly", "quota snapshots, hierarchy and win-rate fit", partition_key=month_key(as_of)),
        Step("daily", "credited bookings, attainment, pipeline and projections", partition_key=partition_key(as_of)),
    ]
    tags = {"quota_platform/command": "refresh", "quota_platform/as_of": as_of.isoformat()}
    return run_steps(steps, settings, instance=instance, progress=progress, tags=tags)


def backtest(
    start: date,
    end: date,
    settings: Settings | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[StepResult]:
    """Backfill every day from ``start`` to ``end`` (their months first, each range as one run, as
    a backfill from the UI does) and score the closed periods in projection_accuracy."""
    settings = settings or Settings.from_env()
    if end < start:
        raise RefreshError(f"--to {end} is before --from {start}")
    _validate_dates(settings, start, end)
    steps = [
        Step("raw", "Salesforce objects"),
        Step("monthly", "quota snapshots, hierarchy and win-rate fits", partition_range=(month_key(start), month_key(end))),
        Step("daily", "bookings, attainment, pipeline and projections", partition_range=(partition_key(start), partition_key(end))),
        Step("scoring", "projection accuracy"),
    ]
    tags = {"quota_platform/command": "backtest", "quota_platform/from": start.isoformat(), "quota_platform/to": end.isoformat()}
    return run_steps(steps, settings, instance=instance, progress=progress, tags=tags)


def _failed_check_assets(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {
        e.asset_key
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    }


def _downstream(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    seen, stack = set(), [key]
    while stack:
        for child in graph.get(stack.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen
