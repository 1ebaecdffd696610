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
