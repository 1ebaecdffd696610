"""Every setting of the platform, read from the environment in one place and only when asked
(:meth:`Settings.from_env`), never at import.

The defaults of the contract's rules live in :class:`~quota_platform.lib.core.rules.Rules` and
those of the deployment here; nothing restates them. Paths are made absolute when they are read (a
relative value is taken against the working directory of that moment), so a run started from
another folder still finds the same warehouse and models. Every file the platform keeps lives under
one home, ``QUOTA_PLATFORM_HOME`` (default ``~/.quota_platform``), unless its own variable says
otherwise.

Nothing here is a secret: Salesforce, Snowflake and Slack credentials are passed to their resources
as ``dg.EnvVar`` (quota_platform/resources.py), resolved by Dagster when a run uses them and never
logged. The README's "Configuration" table lists the same variables with the same defaults.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TypeVar

from quota_platform.lib.core.calendar import FiscalCalendar, parse_ramp
from quota_platform.lib.core.rules import Rules, parse_tier_bounds

T = TypeVar("T")


def default_home() -> Path:
    return Path.home() / ".quota_platform"


def default_cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where machine-wide caches go: $XDG_CACHE_HOME/quota_platform, else ~/.cache/quota_platform."""
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache") / "quota_platform"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The platform's settings. Paths left as None derive from ``home``."""

    home: Path = dataclasses.field(default_factory=default_home)
    source_dir: Path | None = None  # default: home / demo_org
    duckdb_path: Path | None = None  # default: home / warehouse.duckdb
    dagster_home: Path | None = None  # default: home / dagster_home
    # PyTensor/numba compiled code, reused by every later process: a cache of the machine, not of
    # one home (a process can use only one, fixed when pytensor is first imported)
    compile_cache_dir: Path = dataclasses.field(default_factory=lambda: default_cache_root() / "compile_cache")
    start_date: date = date(2024, 1, 1)
    hire_date_field: str = "Hire_Date__c"
    rules: Rules = Rules()
    window_months: int = 6
    seasonality_months: int = 24
    simulation_draws: int = 2000
    # the SALESFORCE_* variables that are set (names only: their values, secrets among them, are
    # read by the CRM resource through dg.EnvVar when a run needs them)
    salesforce_env: tuple[str, ...] = ()
    # How long a run waits for the DuckDB file while another process holds its lock, in seconds,
    # before it stops naming the file and the holder (warehouse/duckdb_io.py connect_waiting).
    duckdb_lock_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        def absolute(path: Path) -> Path:
            return Path(path).expanduser().resolve()

        object.__setattr__(self, "home", absolute(self.home))
        object.__setattr__(self, "compile_cache_dir", absolute(self.compile_cache_dir))
        for name, leaf in (
            ("source_dir", "demo_org"),
            ("duckdb_path", "warehouse.duckdb"),
            ("dagster_home", "dagster_home"),
        ):
            value = getattr(self, name)
            object.__setattr__(self, name, absolute(value) if value is not None else self.home / leaf)
        if self.window_months < 1:
            raise ValueError(f"QUOTA_PLATFORM_WINDOW_MONTHS must be 1 or more, got {self.window_months}")
        if self.seasonality_months < 0:
            raise ValueError(f"QUOTA_PLATFORM_SEASONALITY_MONTHS must be 0 or more, got {self.seasonality_months}")
        if self.simulation_draws < 100:
            raise ValueError(f"QUOTA_PLATFORM_SIMULATION_DRAWS must be 100 or more, got {self.simulation_draws}")
        if not 0 <= self.duckdb_lock_timeout_seconds < float("inf"):
            raise ValueError(
                f"QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT must be 0 or more seconds, got {self.duckdb_lock_timeout_seconds}"
            )

    @property
    def crm(self) -> str:
        """The CRM source: ``salesforce`` when a Salesforce login is configured, else ``files``."""
        return "salesforce" if {"SALESFORCE_USERNAME", "SALESFORCE_ACCESS_TOKEN"} & set(self.salesforce_env) else "files"

    @property
    def model_dir(self) -> Path:
        """Where fitted models are stored (quota_platform/warehouse/model_store.py)."""
        return self.home / "models"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``environ`` (default: the process environment); unset or blank
        variables take the defaults. A value that does not parse raises ValueError naming the
        variable."""
        env = os.environ if environ is None else environ
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        rule_defaults = Rules()

        def read(name: str, parse: Callable[[str], T], default: T, expected: str) -> T:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return parse(text)
            except ValueError:
                raise ValueError(f"{name} must be {expected}, got {text!r}") from None

        def path(name: str) -> Path | None:
            return read(name, Path, None, "a path")

        rules = Rules(
            calendar=FiscalCalendar(
                read("QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH", int, rule_defaults.calendar.year_start_month, "a month number 1-12")
            ),
            corporate_currency=read("QUOTA_PLATFORM_CORPORATE_CURRENCY", str.upper, rule_defaults.corporate_currency, "a currency code"),
            ramp=read("QUOTA_PLATFORM_RAMP_FACTORS", parse_ramp, rule_defaults.ramp, "comma-separated factors between 0 and 1"),
            credit_history_months=read(
                "QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS", int, rule_defaults.credit_history_months, "a whole number"
            ),
            pace_ahead_pct=read("QUOTA_PLATFORM_PACE_AHEAD_PCT", float, rule_defaults.pace_ahead_pct, "a number"),
            pace_behind_pct=read("QUOTA_PLATFORM_PACE_BEHIND_PCT", float, rule_defaults.pace_behind_pct, "a number"),
            status_tiers=read(
                "QUOTA_PLATFORM_STATUS_TIER_BOUNDS", parse_tier_bounds, rule_defaults.status_tiers,
                "the lower bounds of Crushing, On Track, Watch and At Risk, e.g. 120,100,80,60",
            ),
            at_risk_pct=read("QUOTA_PLATFORM_AT_RISK_PCT", float, rule_defaults.at_risk_pct, "a number"),
        )
        return cls(
            home=read("QUOTA_PLATFORM_HOME", Path, default_home(), "a path"),
            source_dir=path("QUOTA_PLATFORM_SOURCE_DIR"),
            duckdb_path=path("QUOTA_PLATFORM_DUCKDB"),
            dagster_home=path("DAGSTER_HOME"),
            compile_cache_dir=read(
                "QUOTA_PLATFORM_COMPILE_CACHE", Path, default_cache_root(env) / "compile_cache", "a path"
            ),
            start_date=read("QUOTA_PLATFORM_START_DATE", date.fromisoformat, defaults["start_date"], "an ISO date (YYYY-MM-DD)"),
            hire_date_field=read("QUOTA_PLATFORM_HIRE_DATE_FIELD", str, defaults["hire_date_field"], "a field name"),
            rules=rules,
            window_months=read("QUOTA_PLATFORM_WINDOW_MONTHS", int, defaults["window_months"], "a whole number"),
            seasonality_months=read("QUOTA_PLATFORM_SEASONALITY_MONTHS", int, defaults["seasonality_months"], "a whole number"),
            simulation_draws=read("QUOTA_PLATFORM_SIMULATION_DRAWS", int, defaults["simulation_draws"], "a whole number"),
            salesforce_env=tuple(sorted(k for k, v in env.items() if k.startswith("SALESFORCE_") and v.strip())),
            duckdb_lock_timeout_seconds=read(
                "QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT", float, defaults["duckdb_lock_timeout_seconds"], "a number of seconds"
            ),
        )
