"""The Dagster code location: every asset, check and resource of the platform.

``dagster dev`` (workspace.yaml) loads :func:`defs`, which reads the settings from the environment
when Dagster loads the location, not when this module is imported; ``quota-platform refresh`` and
the tests build the same definitions from settings of their own with :func:`build_definitions`."""

from __future__ import annotations

import dagster as dg

from quota_platform.defs.attainment.assets import attainment_assets
from quota_platform.defs.backtest.assets import backtest_assets
from quota_platform.defs.bookings.assets import booking_assets
from quota_platform.defs.forecast.assets import projection_assets
from quota_platform.defs.partitions import daily_partitions, monthly_partitions
from quota_platform.defs.quotas.assets import quota_assets
from quota_platform.defs.sources.assets import raw_assets
from quota_platform.resources import build_resources
from quota_platform.settings import Settings


def build_assets(settings: Settings) -> dict[str, list[dg.AssetsDefinition]]:
    """The assets by cadence: ``raw`` (unpartitioned), ``monthly`` and ``daily``, in run order."""
    daily = daily_partitions(settings.start_date)
    monthly = monthly_partitions(settings.start_date)
    open_pipeline, win_rates, projections = projection_assets(daily, monthly)
    return {
        "raw": list(raw_assets),
        "monthly": quota_assets(monthly) + [win_rates],
        "daily": booking_assets(daily) + attainment_assets(daily) + [open_pipeline, projections],
        "scoring": backtest_assets(),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    assets = [a for group in build_assets(settings).values() for a in group]
    return dg.Definitions(assets=assets, resources=build_resources(settings))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
