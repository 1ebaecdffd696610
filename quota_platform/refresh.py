"""``quota-platform refresh --as-of D``: materialize every asset for one date, in process, in order
(raw objects, then the monthly assets for D's month, then the daily assets for D), against the
configured source and warehouse (CONTRACT.md section 4)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg

from quota_platform.definitions import build_assets
from quota_platform.defs.partitions import month_key, partition_key
from quota_platform.defs.resources import build_resources
from quota_platform.settings import DEFAULT_HOME, Settings

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


def dagster_instance() -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME, or a local one under .quota_platform/ so that runs made by
    the CLI show up in `make ui` (which uses the same folder)."""
    home = os.environ.get("DAGSTER_HOME")
    path = Path(home) if home else DEFAULT_HOME / "dagster_home"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
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


def refresh(
    as_of: date,
    settings: Settings | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[StepResult]:
    """Materialize every asset for ``as_of``. Raises :class:`RefreshError` with the failing
    asset's message (object, record Id, field) when a step or a blocking check fails."""
    settings = settings or Settings.from_env()
    if as_of < settings.start_date:
        raise RefreshError(
            f"as-of date {as_of} is before QUOTA_PLATFORM_START_DATE ({settings.start_date}); "
            "partitions start there: set QUOTA_PLATFORM_START_DATE earlier"
        )
    today = date.today()
    if as_of > today:
        raise RefreshError(f"as-of date {as_of} is in the future (today is {today})")
    assets = build_assets(settings)
    all_assets = [a for group in assets.values() for a in group]
    resources = build_resources(settings)
    graph = dg.Definitions(assets=all_assets, resources=resources).resolve_asset_graph()
    instance = instance or dagster_instance()
    steps = [
        ("raw", "Salesforce objects", None),
        ("monthly", "quota snapshots, hierarchy and win-rate fit", month_key(as_of)),
        ("daily", "credited bookings, attainment, pipeline and projections", partition_key(as_of)),
    ]
    results, errors, blocked = [], [], set()
    for i, (group, label, key) in enumerate(steps, start=1):
        wanted = [k for a in assets[group] for k in a.keys]
        selection = [k for k in wanted if k not in blocked]
        progress(f"[{i}/{len(steps)}] {label}{' for ' + key if key else ''} ...")
        skipped = sorted(k.to_user_string() for k in wanted if k in blocked)
        if skipped:
            progress(f"      skipped (an upstream asset failed): {', '.join(skipped)}")
        if not selection:
            continue
        started = time.perf_counter()
        result = dg.materialize(
            all_assets,
            selection=selection,
            partition_key=key,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"quota_platform/command": "refresh", "quota_platform/as_of": as_of.isoformat()},
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
        names = ", ".join(sorted(k.to_user_string() for k in materialized))
        progress(f"      done in {elapsed:.1f}s: {names}")
        results.append(StepResult(group, key, elapsed, sorted(k.to_user_string() for k in materialized), warnings))
    if errors:
        raise RefreshError("\n".join(errors))
    return results


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
