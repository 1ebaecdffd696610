"""Salesforce faults, end to end through ``quota-platform refresh`` against the loopback fake
Salesforce over TLS (fakes/salesforce_server.py), configured only by environment variables as an
operator would (access-token login, SALESFORCE_CA_BUNDLE for the fake's certificate).

Each test first refreshes a clean day, then refreshes the same day again while Salesforce
misbehaves: answers 503 (each time, then for good), answers 401 mid-extract (a revoked session), or
answers slowly. In each: the message names the object and what happened, the secret is in no
output, and nothing is lost: the tables keep the rows of the clean refresh, no partition is
partly replaced (docs/bad_input.md lists each case)."""

from __future__ import annotations

import time

import pytest

from quota_platform_tests.orgs import platform_env, query, run_refresh
from quota_platform_tests.test_salesforce_source import (  # noqa: F401  (pytest fixtures)
    ACCESS_TOKEN,
    ca,
    ca_file,
    org,
    rsa_key,
    server_ssl,
)

AS_OF = "2025-03-31"
OPP_DESCRIBE = "/sobjects/Opportunity/describe"

# The org as Salesforce's REST API serialises it: Ana (rep under Bea) with a Q1 quota of 100,000
# and two won deals, 10,000 and 20,000 (company Q1 bookings: 30,000 of 100,000).
RECORDS = {
    "User": [
        {"Id": "005BEA", "Name": "Bea Baker", "Email": "bea@example.com", "ManagerId": None, "IsActive": True},
        {"Id": "005ANA", "Name": "Ana Alvarez", "Email": "ana@example.com", "ManagerId": "005BEA", "IsActive": True},
    ],
    "ForecastingType": [{"Id": "0DbOR", "DeveloperName": "OpportunityRevenue"}],
    "ForecastingQuota": [
        {"Id": "0J9ANA", "QuotaOwnerId": "005ANA", "ForecastingTypeId": "0DbOR", "StartDate": "2025-01-01",
         "QuotaAmount": 100000.0},
    ],
    "Opportunity": [
        {"Id": f"006ANA{i}", "Name": f"Deal {i}", "OwnerId": "005ANA", "Type": "New Business", "StageName": "Closed Won",
         "Amount": amount, "CloseDate": close, "CreatedDate": "2025-01-05T10:00:00.000+0000", "IsClosed": True,
         "IsWon": True, "IsDeleted": False}
        for i, (amount, close) in enumerate([(10000.0, "2025-02-10"), (20000.0, "2025-03-05")], start=1)
    ],
}


@pytest.fixture
def salesforce(org, ca_file, tmp_path, monkeypatch):  # noqa: F811  (imported fixtures)
    """The fake org, the platform pointed at it by env vars, and one clean refresh done.
    Returns (fake, db path)."""
    fake = org(RECORDS, page_size=1000)
    db = platform_env(monkeypatch, tmp_path / "unused_source", tmp_path / "work")
    monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", ACCESS_TOKEN)
    monkeypatch.setenv("SALESFORCE_INSTANCE_URL", fake.base_url)
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", ca_file)
    rc, _, err = run_refresh(AS_OF)
    assert rc == 0, err
    assert state(db) == CLEAN
    return fake, db


def state(db) -> dict:
    """What a reader sees: the raw opportunities, the day's credits and the company row."""
    company = query(
        db,
        "select quota, closed_won from quota_platform.attainment where cast(as_of_date as varchar) = ? "
        "and level = 'company' and period_type = 'quarter' and quota_type = 'bookings'",
        [AS_OF],
    )
    return {
        "raw_opportunity": [r["Id"] for r in query(db, "select Id from quota_platform.raw_opportunity order by Id")],
        "credits": query(db, "select count(*) n, sum(credit_usd) usd from quota_platform.credited_bookings "
                             "where cast(as_of_date as varchar) = ? and period_type = 'quarter'", [AS_OF])[0],
        "company": company,
    }


CLEAN = {
    "raw_opportunity": ["006ANA1", "006ANA2"],
    "credits": {"n": 2, "usd": 30000.0},
    "company": [{"quota": 100000.0, "closed_won": 30000.0}],
}


def test_a_transient_503_is_retried_and_the_refresh_completes(salesforce):
    """Salesforce answers 503 (with Retry-After: 0, so the test need not wait out the backoff)
    twice, then normally: the retries absorb it and the day is the same."""
    fake, db = salesforce
    fake.fail("GET", OPP_DESCRIBE, status=503, times=2, headers={"Retry-After": "0"})
    rc, _, err = run_refresh(AS_OF)
    assert rc == 0, err
    assert len(fake.requests("GET", OPP_DESCRIBE)) == 1 + 3  # the clean refresh 1; this one 2 failures + 1
    assert state(db) == CLEAN


def test_a_5xx_that_lasts_stops_naming_the_object_and_keeps_every_table(salesforce):
    """Salesforce answers 503 to every attempt (the first and the 5 retries): the refresh stops
    with exit code 1 naming Opportunity and the error; the raw table, the day's credits and
    attainment keep the clean refresh's rows."""
    fake, db = salesforce
    fake.fail("GET", OPP_DESCRIBE, status=503, times=100, headers={"Retry-After": "0"})
    rc, _, err = run_refresh(AS_OF)
    assert rc == 1
    assert any("Opportunity" in line and "SERVER_UNAVAILABLE" in line for line in err.splitlines()), err
    assert len(fake.requests("GET", OPP_DESCRIBE)) == 1 + 6
    assert state(db) == CLEAN


def test_a_401_mid_extract_stops_with_a_clear_message_and_keeps_every_table(salesforce):
    """The session is revoked while the extract runs (Salesforce answers 401 INVALID_SESSION_ID
    for Opportunity after the other objects were read): the refresh stops naming Opportunity,
    the expired session and what to do, without the token; nothing already in the warehouse
    changes. A 401 is not retried (it cannot succeed and would only hammer the login)."""
    fake, db = salesforce
    fake.fail("GET", OPP_DESCRIBE, status=401, times=100,
              body=[{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}])
    rc, out, err = run_refresh(AS_OF)
    assert rc == 1
    assert any("Opportunity" in line and "session expired" in line.lower() for line in err.splitlines()), err
    assert "SALESFORCE_ACCESS_TOKEN" in err
    assert ACCESS_TOKEN not in out + err
    assert len(fake.requests("GET", OPP_DESCRIBE)) == 1 + 1
    assert state(db) == CLEAN


def test_a_slow_salesforce_is_waited_for(salesforce):
    """Salesforce takes 3 s to answer (well inside the 120 s request timeout): the refresh waits
    and gives the same day."""
    fake, db = salesforce
    fake.stall("GET", OPP_DESCRIBE, seconds=3, times=1)
    started = time.monotonic()
    rc, _, err = run_refresh(AS_OF)
    assert rc == 0, err
    assert time.monotonic() - started >= 3
    assert state(db) == CLEAN
