"""Resources, and the one switch between local and production (:func:`build_resources`): files or
Salesforce as the CRM source, DuckDB (or Snowflake) as the warehouse. Which one is chosen depends
only on whether the credentials' env vars are set; their values (secrets included) are passed as
``dg.EnvVar`` and resolved by Dagster when a run uses the resource, never at import and never
logged. Every other field is set from :class:`~quota_platform.settings.Settings`: the resources
have no defaults of their own."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from quota_platform.lib.core.calendar import FiscalCalendar, parse_ramp
from quota_platform.lib.core.rules import Rules, parse_tier_bounds
from quota_platform.settings import Settings
from quota_platform.sources import files
from quota_platform.warehouse.duckdb_io import SCHEMA, DuckDBWarehouseIOManager, Warehouse
from quota_platform.warehouse.model_store import ModelFiles, ModelStore

# Salesforce settings: env var -> resource field. Secrets among them are only ever passed as EnvVar.
SALESFORCE_ENV = {
    "SALESFORCE_USERNAME": "username",
    "SALESFORCE_PASSWORD": "password",
    "SALESFORCE_SECURITY_TOKEN": "security_token",
    "SALESFORCE_DOMAIN": "domain",
    "SALESFORCE_INSTANCE_URL": "instance_url",
    "SALESFORCE_ACCESS_TOKEN": "access_token",
    "SALESFORCE_CONSUMER_KEY": "consumer_key",
    "SALESFORCE_PRIVATE_KEY": "private_key",
    "SALESFORCE_PRIVATE_KEY_FILE": "private_key_file",
    "SALESFORCE_API_VERSION": "api_version",
    "SALESFORCE_BULK_THRESHOLD": "bulk_threshold",
    "SALESFORCE_CA_BUNDLE": "ca_bundle",
}


class CrmSource(dg.ConfigurableResource):
    """Where the Salesforce objects come from: ``files`` (one file per object in ``source_dir``)
    or ``salesforce`` (the org's REST and Bulk 2.0 APIs through simple-salesforce)."""

    kind: str  # "files" or "salesforce"
    source_dir: str
    hire_date_field: str
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    domain: str | None = None
    instance_url: str | None = None
    access_token: str | None = None
    consumer_key: str | None = None
    private_key: str | None = None
    private_key_file: str | None = None
    api_version: str | None = None
    bulk_threshold: str | None = None
    ca_bundle: str | None = None

    def describe(self) -> str:
        if self.kind == "files":
            return f"files in {Path(self.source_dir).resolve()}"
        return f"Salesforce ({self.instance_url or self.domain or 'login'})"

    def read_object(self, object_name: str) -> pl.DataFrame:
        renames = {self.hire_date_field: "Hire_Date__c"}
        if self.kind == "files":
            return files.read_object(self.source_dir, object_name, renames=renames)
        return self._salesforce().read_object(object_name)

    def _salesforce(self):
        from quota_platform.sources.salesforce import SalesforceSettings, SalesforceSource

        fields = {
            name: getattr(self, name)
            for name in SALESFORCE_ENV.values()
            if getattr(self, name) not in (None, "")
        }
        if "bulk_threshold" in fields:
            fields["bulk_threshold"] = int(fields["bulk_threshold"])
        if "ca_bundle" in fields:
            fields["verify"] = fields.pop("ca_bundle")
        return SalesforceSource(SalesforceSettings(hire_date_field=self.hire_date_field, **fields))


class RulesResource(dg.ConfigurableResource):
    """The crediting and attainment rules that are settings (docs/contract.md, Rules)."""

    fiscal_year_start_month: int
    corporate_currency: str
    ramp_factors: str
    credit_history_months: int
    pace_ahead_pct: float
    pace_behind_pct: float
    status_tier_bounds: str
    at_risk_pct: float

    def rules(self) -> Rules:
        return Rules(
            calendar=FiscalCalendar(self.fiscal_year_start_month),
            corporate_currency=self.corporate_currency.upper(),
            ramp=parse_ramp(self.ramp_factors),
            credit_history_months=self.credit_history_months,
            pace_ahead_pct=self.pace_ahead_pct,
            pace_behind_pct=self.pace_behind_pct,
            status_tiers=parse_tier_bounds(self.status_tier_bounds),
            at_risk_pct=self.at_risk_pct,
        )

    @classmethod
    def from_rules(cls, rules: Rules) -> RulesResource:
        return cls(
            fiscal_year_start_month=rules.calendar.year_start_month,
            corporate_currency=rules.corporate_currency,
            ramp_factors=",".join(str(r) for r in rules.ramp),
            credit_history_months=rules.credit_history_months,
            pace_ahead_pct=rules.pace_ahead_pct,
            pace_behind_pct=rules.pace_behind_pct,
            status_tier_bounds=",".join(str(b) for b in rules.status_tier_bounds),
            at_risk_pct=rules.at_risk_pct,
        )


class ModelSettings(dg.ConfigurableResource):
    """Settings of the projection model: the trailing window of the win-rate fit, the sampler, and
    the Monte Carlo simulation."""

    window_months: int
    # closed periods this far back inform the seasonal adjustment (0: none; lib/forecast/seasonality.py)
    seasonality_months: int
    simulation_draws: int
    compile_cache_dir: str

    def fit_settings(self):
        from quota_platform.lib.forecast.winrates import FitSettings, configure_compile_cache

        configure_compile_cache(Path(self.compile_cache_dir).resolve())
        return FitSettings()

    def simulation_settings(self):
        from quota_platform.lib.forecast.projection import SimulationSettings

        return SimulationSettings(n_draws=self.simulation_draws)


def crm_source(settings: Settings) -> CrmSource:
    if settings.crm == "files":
        return CrmSource(kind="files", source_dir=str(settings.source_dir), hire_date_field=settings.hire_date_field)
    # Only the variables that are set become EnvVars: an EnvVar for an unset variable fails the run.
    return CrmSource(
        kind="salesforce",
        source_dir=str(settings.source_dir),
        hire_date_field=settings.hire_date_field,
        **{field: dg.EnvVar(var) for var, field in SALESFORCE_ENV.items() if var in settings.salesforce_env},
    )


def warehouse_io_manager(settings: Settings) -> dg.ConfigurableIOManager:
    """DuckDB by default: the file at QUOTA_PLATFORM_DUCKDB, schema ``quota_platform``."""
    return DuckDBWarehouseIOManager(
        database=str(settings.duckdb_path), schema=SCHEMA, lock_timeout_seconds=settings.duckdb_lock_timeout_seconds
    )


def build_resources(settings: Settings) -> dict:
    """Every resource of the platform from the settings: the one place where the CRM source and
    the warehouse are chosen."""
    return {
        "io_manager": warehouse_io_manager(settings),
        "model_store": ModelStore(base_dir=str(settings.model_dir)),
        "crm": crm_source(settings),
        "rules": RulesResource.from_rules(settings.rules),
        "warehouse": Warehouse(
            database=str(settings.duckdb_path), schema_name=SCHEMA, lock_timeout_seconds=settings.duckdb_lock_timeout_seconds
        ),
        "model_files": ModelFiles(base_dir=str(settings.model_dir)),
        "model_settings": ModelSettings(
            window_months=settings.window_months,
            seasonality_months=settings.seasonality_months,
            simulation_draws=settings.simulation_draws,
            compile_cache_dir=str(settings.compile_cache_dir),
        ),
    }
