"""The crediting and attainment rules of the data contract that are settings (docs/contract.md,
"Rules"), as one value every rule function takes. The defaults here are the contract's defaults;
quota_platform/settings.py reads overrides from the environment."""

from __future__ import annotations

import dataclasses

from quota_platform.lib.core.calendar import DEFAULT_RAMP, FiscalCalendar


@dataclasses.dataclass(frozen=True)
class Rules:
    calendar: FiscalCalendar = FiscalCalendar(1)
    corporate_currency: str = "USD"
    ramp: tuple[float, ...] = DEFAULT_RAMP
    credit_history_months: int = 12
    pace_ahead_pct: float = 110.0
    pace_behind_pct: float = 90.0
    # Status tiers on projected attainment P50, percent: (lower bound, inclusive; tier), highest
    # first, the last bound -inf so that every projected percentage has a tier. The bounds are
    # settings; the names are not (lib/schemas.py checks the status column against them).
    status_tiers: tuple[tuple[float, str], ...] = (
        (120.0, "Crushing"), (100.0, "On Track"), (80.0, "Watch"), (60.0, "At Risk"), (float("-inf"), "Critical"),
    )
    # A projection is at risk when its projected attainment P50 is below this (percent).
    at_risk_pct: float = 80.0
