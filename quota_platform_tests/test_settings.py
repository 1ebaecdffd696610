"""One configuration: every setting is read from the environment in Settings.from_env, when asked
and not at import; paths derive from one absolute home; a bad value names its variable; the
resources carry exactly the settings' values (they have no defaults of their own)."""

import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from quota_platform.lib.core.rules import Rules
from quota_platform.resources import build_resources
from quota_platform.settings import Settings


def test_defaults_derive_from_one_absolute_home(tmp_path):
    s = Settings.from_env({"QUOTA_PLATFORM_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h"
    assert s.source_dir == tmp_path / "h" / "demo_org"
    assert s.duckdb_path == tmp_path / "h" / "warehouse.duckdb"
    assert s.dagster_home == tmp_path / "h" / "dagster_home"
    # the compile cache is the machine's, not the home's: a process can only use one
    assert s.compile_cache_dir == Path.home() / ".cache" / "quota_platform" / "compile_cache"
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path / "c")}).compile_cache_dir == (
        tmp_path / "c" / "quota_platform" / "compile_cache"
    )
    assert s.model_dir == tmp_path / "h" / "models"
    assert s.start_date == date(2024, 1, 1) and s.window_months == 6 and s.simulation_draws == 2000
    assert s.rules == Rules()
    assert s.crm == "files"
    # with nothing set, the home is in the user's home directory, not the working directory
    assert Settings.from_env({}).home == Path.home() / ".quota_platform"


def test_relative_paths_are_made_absolute_when_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"QUOTA_PLATFORM_HOME": "rel", "QUOTA_PLATFORM_DUCKDB": "wh/x.duckdb"})
    assert s.home == tmp_path / "rel" and s.duckdb_path == tmp_path / "wh" / "x.duckdb"


def test_overrides_reach_rules_and_model_settings(tmp_path):
    s = Settings.from_env({
        "QUOTA_PLATFORM_HOME": str(tmp_path),
        "QUOTA_PLATFORM_FISCAL_YEAR_START_MONTH": "2",
        "QUOTA_PLATFORM_CORPORATE_CURRENCY": "eur",
        "QUOTA_PLATFORM_STATUS_TIER_BOUNDS": "130, 100, 85, 50",
        "QUOTA_PLATFORM_AT_RISK_PCT": "75",
        "QUOTA_PLATFORM_WINDOW_MONTHS": "12",
        "QUOTA_PLATFORM_START_DATE": "2023-04-01",
    })
    assert s.rules.calendar.year_start_month == 2 and s.rules.corporate_currency == "EUR"
    assert s.rules.status_tiers == (
        (130.0, "Crushing"), (100.0, "On Track"), (85.0, "Watch"), (50.0, "At Risk"), (float("-inf"), "Critical"),
    )
    assert s.rules.at_risk_pct == 75.0 and s.window_months == 12 and s.start_date == date(2023, 4, 1)
    # the resources carry the same values, and give back the same rules
    resources = build_resources(s)
    assert resources["rules"].rules() == s.rules
    assert resources["model_settings"].window_months == 12
    assert resources["crm"].source_dir == str(tmp_path / "demo_org")
    assert resources["model_store"].base_dir == str(tmp_path / "models")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QUOTA_PLATFORM_START_DATE", "2024-13-01", "QUOTA_PLATFORM_START_DATE must be an ISO date"),
        ("QUOTA_PLATFORM_WINDOW_MONTHS", "six", "QUOTA_PLATFORM_WINDOW_MONTHS must be a whole number"),
        ("QUOTA_PLATFORM_WINDOW_MONTHS", "0", "QUOTA_PLATFORM_WINDOW_MONTHS must be 1 or more"),
        ("QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS", "-1", "QUOTA_PLATFORM_CREDIT_HISTORY_MONTHS must be 0 or more"),
        ("QUOTA_PLATFORM_PACE_BEHIND_PCT", "120", "must not exceed QUOTA_PLATFORM_PACE_AHEAD_PCT"),
        ("QUOTA_PLATFORM_STATUS_TIER_BOUNDS", "100,120,80,60", "QUOTA_PLATFORM_STATUS_TIER_BOUNDS must give"),
        ("QUOTA_PLATFORM_STATUS_TIER_BOUNDS", "120,100", "QUOTA_PLATFORM_STATUS_TIER_BOUNDS must be"),
        ("QUOTA_PLATFORM_AT_RISK_PCT", "-5", "QUOTA_PLATFORM_AT_RISK_PCT must be above 0"),
        ("QUOTA_PLATFORM_SEASONALITY_MONTHS", "-1", "QUOTA_PLATFORM_SEASONALITY_MONTHS must be 0 or more"),
        ("QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT", "-1", "QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT must be 0 or more seconds"),
        ("QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT", "a minute", "QUOTA_PLATFORM_DUCKDB_LOCK_TIMEOUT must be a number of seconds"),
    ],
)
def test_a_bad_value_names_its_variable(name, value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({name: value})


def test_salesforce_is_chosen_by_the_names_set_and_values_stay_env_vars(tmp_path):
    s = Settings.from_env({
        "QUOTA_PLATFORM_HOME": str(tmp_path),
        "SALESFORCE_USERNAME": "ops@example.com",
        "SALESFORCE_PASSWORD": "hunter2",
        "SALESFORCE_DOMAIN": " ",
    })
    assert s.crm == "salesforce"
    assert s.salesforce_env == ("SALESFORCE_PASSWORD", "SALESFORCE_USERNAME")
    assert "hunter2" not in repr(s)
    crm = build_resources(s)["crm"]
    # a secret is handed over as an EnvVar, resolved by Dagster when a run uses the resource
    assert crm.password == dg.EnvVar("SALESFORCE_PASSWORD") and crm.domain is None


def test_importing_the_code_location_reads_no_environment(tmp_path):
    """A broken setting must not break `import quota_platform.definitions`; it fails when Dagster
    loads the definitions, with the variable named."""
    code = (
        "import quota_platform.definitions as d\n"
        "try:\n"
        "    d.defs()\n"
        "except ValueError as exc:\n"
        "    print('LOAD:', exc)\n"
    )
    env = {"QUOTA_PLATFORM_START_DATE": "not-a-date", "QUOTA_PLATFORM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "LOAD: QUOTA_PLATFORM_START_DATE must be an ISO date" in out
    assert not (tmp_path / "warehouse.duckdb").exists() and not list(tmp_path.iterdir())
