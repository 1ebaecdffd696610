"""Secrets and personal data, end to end (docs/decisions.md, "Security").

One refresh against the fake Salesforce with fake secrets in the environment, then every place a
secret could end up is read back and searched: the command's output, Python's log records, the
Dagster instance (every event of every run, serialised: messages, metadata, the run's config and
tags), every file under the Dagster home (event log and run databases, compute logs), every value of
every warehouse table and the warehouse file's bytes, and the platform's home (models). Each place
is shown to be really read by finding something that is meant to be there (the fake's URL in the
event metadata, a record Id in the warehouse), so an empty scan cannot pass for a clean one.

The files the platform creates for that run are owner-only, and e-mail addresses (User.Email,
personal data) are in no table but raw_user, the contract's raw object."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from quota_platform.lib.schemas import PERSONAL_DATA_COLUMNS
from quota_platform_tests.fakes.salesforce_server import FakeSalesforce
from quota_platform_tests.orgs import platform_env, run_refresh
from quota_platform_tests.test_salesforce_faults import AS_OF, RECORDS
from quota_platform_tests.test_salesforce_source import (  # noqa: F401  (pytest fixtures)
    ACCESS_TOKEN,
    ca,
    ca_file,
    server_ssl,
)

# Fake secrets: distinctive values that appear nowhere unless leaked. The access token is the
# login actually used (sent with every request); the others are set as an operator might leave
# them, and must not surface either.
SECRETS = {
    "SALESFORCE_ACCESS_TOKEN": ACCESS_TOKEN,
    "SALESFORCE_PASSWORD": "pw-LEAK-CANARY-7f3c9e1a",
    "SALESFORCE_SECURITY_TOKEN": "tok-LEAK-CANARY-b28d4410",
    "SALESFORCE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\nKEY-LEAK-CANARY-91ac03ff\\n-----END PRIVATE KEY-----",
    # Slack and Snowflake credentials join this list as their resources land; set now, they must
    # not surface in anything the refresh writes either.
    "SLACK_SIGNING_SECRET": "slack-LEAK-CANARY-5e6f7a8b",
    "SNOWFLAKE_PASSWORD": "sf-LEAK-CANARY-0c1d2e3f",
}
CANARIES = [ACCESS_TOKEN, "LEAK-CANARY", "7f3c9e1a", "b28d4410", "91ac03ff", "5e6f7a8b", "0c1d2e3f"]
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture(scope="module")
def refreshed(server_ssl, ca_file, tmp_path_factory):  # noqa: F811  (imported fixtures)
    """A refresh against the fake with SECRETS set, the Dagster home and the platform home not
    made beforehand (so the platform creates them). Returns a dict of what to scan."""
    root = tmp_path_factory.mktemp("security")
    fake = FakeSalesforce(RECORDS, ssl_context=server_ssl, access_tokens=[ACCESS_TOKEN], page_size=1000).start()
    with pytest.MonkeyPatch.context() as mp:
        db = platform_env(mp, root / "unused_source", root / "work")
        home = Path(os.environ["DAGSTER_HOME"])
        home.rmdir()  # platform_env makes it; here the platform must
        mp.setenv("SALESFORCE_INSTANCE_URL", fake.base_url)
        mp.setenv("SALESFORCE_CA_BUNDLE", ca_file)
        for name, value in SECRETS.items():
            mp.setenv(name, value)
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append
        logging.getLogger().addHandler(handler)
        old_level = logging.getLogger().level
        logging.getLogger().setLevel(logging.DEBUG)
        old_umask = os.umask(0o022)  # a common umask, under which files would be world-readable
        try:
            rc, out, err = run_refresh(AS_OF)
        finally:
            os.umask(old_umask)
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(old_level)
        instance = dg.DagsterInstance.from_config(str(home))
        events = []
        runs = instance.get_runs()
        for run in runs:
            events += [dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)]
        runs_text = "\n".join(dg.serialize_value(run) for run in runs)
        instance.dispose()
    url = fake.base_url
    fake.stop()
    assert rc == 0, err
    return {
        "rc": rc, "output": out + err, "logs": "\n".join(f"{r.getMessage()} {r.args!r}" for r in records),
        "events": "\n".join(events), "runs": runs_text, "home": home, "db": db,
        "platform_home": root / "work" / "platform_home", "url": url,
    }


def _files_text(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def _warehouse_values(db: Path) -> dict[str, str]:
    """table -> every value of every column, as text."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'quota_platform'").fetchall()]
        return {
            t: "\n".join(str(v) for row in con.execute(f"select * from quota_platform.{t}").fetchall() for v in row)
            for t in tables
        }


def _assert_clean(text: str, where: str) -> None:
    leaked = [c for c in CANARIES if c in text]
    assert not leaked, f"secret(s) {leaked} found in {where}"


def test_no_secret_in_output_or_log_records(refreshed):
    assert "raw_opportunity" in refreshed["output"] or "done" in refreshed["output"]  # the output was captured
    _assert_clean(refreshed["output"], "the command's output")
    assert refreshed["logs"], "no log record was captured"
    _assert_clean(refreshed["logs"], "Python log records")


def test_no_secret_in_event_log_metadata_or_run_records(refreshed):
    # the scan reads what is there: the source's description (with the fake's URL) is event metadata
    assert refreshed["url"] in refreshed["events"]
    assert "SALESFORCE_ACCESS_TOKEN" in refreshed["runs"] or "raw_opportunity" in refreshed["runs"]
    _assert_clean(refreshed["events"], "the instance's event log (messages and metadata)")
    _assert_clean(refreshed["runs"], "the run records (config and tags)")


def test_no_secret_in_any_file_of_the_dagster_home_or_the_platform_home(refreshed):
    text = _files_text(refreshed["home"])
    assert refreshed["url"] in text  # the event log database is read
    _assert_clean(text, f"the files under DAGSTER_HOME {refreshed['home']} (databases, compute logs)")
    if refreshed["platform_home"].exists():
        _assert_clean(_files_text(refreshed["platform_home"]), "the platform home (models)")


def test_no_secret_in_the_warehouse(refreshed):
    values = _warehouse_values(refreshed["db"])
    assert "006ANA1" in values["raw_opportunity"]
    for table, text in values.items():
        _assert_clean(text, f"warehouse table {table}")
    _assert_clean(refreshed["db"].read_bytes().decode("utf-8", errors="replace"), "the warehouse file's bytes")


def test_the_files_the_platform_creates_are_owner_only(refreshed):
    """Under umask 022: the Dagster home the CLI made and its dagster.yaml, the warehouse file and
    its folder."""
    home, db = refreshed["home"], refreshed["db"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "dagster.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_emails_are_only_in_the_tables_allowed_to_hold_them(refreshed):
    """User.Email is personal data: raw_user (the contract's raw object, what alert routing and
    entitlements read) keeps it; no derived table copies it. A table or column that needs it must
    be added to lib/schemas.py PERSONAL_DATA_COLUMNS, deliberately."""
    with duckdb.connect(str(refreshed["db"]), read_only=True) as con:
        columns = con.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'quota_platform' "
            "and data_type = 'VARCHAR'").fetchall()
        holding = {
            (t, c) for t, c in columns
            if any(EMAIL.fullmatch(v or "") for (v,) in con.execute(f'select distinct "{c}" from quota_platform.{t}').fetchall())
        }
    assert ("raw_user", "Email") in holding  # the scan finds the e-mails where they are
    assert holding <= {(t, c) for t, cols in PERSONAL_DATA_COLUMNS.items() for c in cols}, holding
