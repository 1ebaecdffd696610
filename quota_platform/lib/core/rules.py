"""The crediting and attainment rules of the data contract that are settings (docs/contract.md,
"Rules"), as one value every rule function takes. The defaults here are the contract's defaults;
quota_platform/settings.py reads overrides from the environment."""

from __future__ import annotations

import dataclasses

from quota_platform.lib.core.calendar import DEFAULT_RAMP, FiscalCalendar

# The status tiers' names, best first; their bounds are settings (Rules.status_tiers).
TIER_NAMES = ("Crushing", "On Track", "Watch", "At Risk", "Critical")


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

    def __post_init__(self) -> None:
        # each message names the setting a user would have to change (README "Configuration")
        if self.credit_history_months < 0:
            raise ValueError(
                f"QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS must be 0 or more, got {self.credit_history_months}"
            )
        if not self.pace_behind_pct <= self.pace_ahead_pct:
            raise ValueError(
                f"QUOTA_PLATFORM_PACE_BEHIND_PCT ({self.pace_behind_pct}) must not exceed "
                f"QUOTA_PLATFORM_PACE_AHEAD_PCT ({self.pace_ahead_pct})"
            )
        bounds = [b for b, _ in self.status_tiers]
        if (
            [n for _, n in self.status_tiers] != list(TIER_NAMES)
            or bounds[-1] != float("-inf")
            or any(hi <= lo for hi, lo in zip(bounds, bounds[1:]))
        ):
            raise ValueError(
                "QUOTA_PLATFORM_STATUS_TIER_BOUNDS must give the lower bounds of "
                f"{', '.join(TIER_NAMES[:-1])} in decreasing order, got {self.status_tier_bounds}"
            )
        if not 0 < self.at_risk_pct:
            raise ValueError(f"QUOTA_PLATFORM_AT_RISK_PCT must be above 0, got {self.at_risk_pct}")

    @property
    def status_tier_bounds(self) -> tuple[float, ...]:
        """The finite lower bounds of the tiers, highest first (the setting's form)."""
        return tuple(b for b, _ in self.status_tiers[:-1])


def status_tiers_from_bounds(bounds: tuple[float, ...]) -> tuple[tuple[float, str], ...]:
    """(bound, name) pairs from the lower bounds of the tiers above the last (TIER_NAMES order);
    the last tier takes everything below."""
    if len(bounds) != len(TIER_NAMES) - 1:
        raise ValueError(
            f"QUOTA_PLATFORM_STATUS_TIER_BOUNDS needs {len(TIER_NAMES) - 1} bounds "
            f"({', '.join(TIER_NAMES[:-1])}), got {list(bounds)}"
        )
    return (*zip((float(b) for b in bounds), TIER_NAMES), (float("-inf"), TIER_NAMES[-1]))


def parse_tier_bounds(text: str) -> tuple[tuple[float, str], ...]:
    """``"120,100,80,60"`` -> the status tiers."""
    return status_tiers_from_bounds(tuple(float(x) for x in text.split(",") if x.strip()))
