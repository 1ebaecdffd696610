"""Every setting of the platform, read from environment variables in one place.

Nothing here is a secret: Salesforce, Snowflake and Slack credentials are read by their resources
through ``dg.EnvVar`` when a run needs them, never here and never at import. The README's
"Configuration" table lists the same variables with the same defaults.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from quota_platform.lib.core.calendar import FiscalCalendar, parse_ramp
from quota_platform.lib.core.rules import Rules

DEFAULT_HOME = Path(".quota_platform")


@dataclasses.dataclass(frozen=True)
class Settings:
    source_dir: Path = DEFAULT_HOME / "demo_org"
    duckdb_path: Path = DEFAULT_HOME / "warehouse.duckdb"
    start_date: date = date(2024, 1, 1)
    hire_date_field: str = "Hire_Date__c"
    rules: Rules = Rules()
    home: Path = DEFAULT_HOME  # models and the compile cache live here
    window_months: int = 6
    seasonality_months: int = 24
    simulation_draws: int = 2000
    # PyTensor/numba compiled code, reused by every later process (one per machine is enough;
    # a process can use only one, so it does not follow QUOTA_PLATFORM_HOME)
    compile_cache_dir: Path = DEFAULT_HOME / "compile_cache"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def get_int(name: str, default: int) -> int:
            text = get(name, str(default))
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {text!r}") from None

        def get_float(name: str, default: float) -> float:
            text = get(name, str(default))
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {text!r}") from None

        start_text = get("QUOTA_PLATFORM_START_DATE", "2024-01-01")
        try:
            start = date.fromisoformat(start_text)
        except ValueError:
            raise ValueError(
                f"QUOTA_PLATFORM_START_DATE must be an ISO date (YYYY-MM-DD), got {start_text!r}"
            ) from None
        rules = Rules(
            calendar=FiscalCalendar(get_int("QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH", 1)),
            corporate_currency=get("QUOTA_PLATFORM_CORPORATE_CURRENCY", "USD").upper(),
            ramp=parse_ramp(get("QUOTA_PLATFORM_RAMP_FACTORS", "0.25,0.5,0.75")),
            credit_history_months=get_int("QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS", 12),
            pace_ahead_pct=get_float("QUOTA_PLATFORM_PACE_AHEAD_PCT", 110.0),
            pace_behind_pct=get_float("QUOTA_PLATFORM_PACE_BEHIND_PCT", 90.0),
        )
        seasonality_months = get_int("QUOTA_PLATFORM_SEASONALITY_MONTHS", 24)
        if seasonality_months < 0:
            raise ValueError(f"QUOTA_PLATFORM_SEASONALITY_MONTHS must be 0 or more, got {seasonality_months}")
        return cls(
            source_dir=Path(get("QUOTA_PLATFORM_SOURCE_DIR", str(DEFAULT_HOME / "demo_org"))),
            duckdb_path=Path(get("QUOTA_PLATFORM_DUCKDB", str(DEFAULT_HOME / "warehouse.duckdb"))),
            start_date=start,
            hire_date_field=get("QUOTA_PLATFORM_HIRE_DATE_FIELD", "Hire_Date__c"),
            rules=rules,
            home=Path(get("QUOTA_PLATFORM_HOME", str(DEFAULT_HOME))),
            window_months=get_int("QUOTA_PLATFORM_WINDOW_MONTHS", 6),
            seasonality_months=seasonality_months,
            simulation_draws=get_int("QUOTA_PLATFORM_SIMULATION_DRAWS", 2000),
            compile_cache_dir=Path(get("QUOTA_PLATFORM_COMPILE_CACHE", str(DEFAULT_HOME / "compile_cache"))),
        )
