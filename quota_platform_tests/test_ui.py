"""`make ui` as a person uses it: `dagster dev` on workspace.yaml loads every asset and check, and
runs launched through the webserver's GraphQL API (what the UI's Materialize button and backfill
dialog call) materialize the assets, a backfill of a month as one run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from quota_platform_tests.test_assets import write_org

ROOT = Path(__file__).resolve().parents[1]
RAW = [
    "raw_user", "raw_forecasting_type", "raw_forecasting_quota", "raw_period",
    "raw_forecasting_quota_history", "raw_opportunity", "raw_opportunity_history",
    "raw_opportunity_stage", "raw_opportunity_split_type", "raw_opportunity_split", "raw_product2",
    "raw_opportunity_line_item", "raw_dated_conversion_rate",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, url: str):
        self.url = url

    def __call__(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        assert "errors" not in payload, payload
        return payload["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {
        **os.environ,
        "QUOTA_PLATFORM_SOURCE_DIR": str(write_org(tmp / "org")),
        "QUOTA_PLATFORM_DUCKDB": str(tmp / "wh.duckdb"),
        "QUOTA_PLATFORM_START_DATE": "2025-01-01",
        "DAGSTER_HOME": str(home),
    }
    for var in [v for v in env if v.startswith("SALESFORCE_")]:
        del env[var]
    port = _free_port()
    dagster = Path(sys.executable).parent / "dagster"
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    gql = GraphQL(f"http://127.0.0.1:{port}/graphql")
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                entries = gql("{ workspaceOrError { ... on Workspace { locationEntries { name "
                              "locationOrLoadError { __typename } } } } }")
                entry = entries["workspaceOrError"]["locationEntries"][0]
                if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    break
            except OSError:
                pass
            assert process.poll() is None, "dagster dev exited"
            assert time.monotonic() < deadline, "dagster dev did not load the code location in 120 s"
            time.sleep(1)
        yield gql, entry["name"], tmp / "wh.duckdb"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _wait_run(gql, run_id: str) -> str:
    for _ in range(240):
        status = gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})
        status = status["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish")


def _launch(gql, location: str, keys: list[str], tags: dict | None = None) -> str:
    result = gql(
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {"p": {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                         "jobName": "__ASSET_JOB", "assetSelection": [{"path": [k]} for k in keys]},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }},
    )["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return _wait_run(gql, result["run"]["runId"])


def test_ui_loads_every_asset_and_check(ui):
    gql, _, _ = ui
    nodes = gql("{ assetNodes { assetKey { path } isPartitioned "
                "assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }")["assetNodes"]
    by_name = {n["assetKey"]["path"][0]: n for n in nodes}
    assert set(RAW) | {"org_hierarchy", "quota_snapshots", "quota_snapshots_quarantine", "credited_bookings",
                       "credited_bookings_quarantine", "attainment", "open_pipeline", "open_pipeline_quarantine",
                       "win_rate_posteriors", "projection_model", "projections", "projection_accuracy"} == set(by_name)
    checks = {c["name"]: c["blocking"] for c in by_name["attainment"]["assetChecksOrError"]["checks"]}
    assert checks == {"schema": True, "rollups_equal_sum_of_reps": True, "credits_without_quota": False}
    assert by_name["attainment"]["isPartitioned"] and not by_name["raw_user"]["isPartitioned"]


def test_materializations_and_a_backfill_launched_from_the_ui(ui):
    gql, location, warehouse = ui
    assert _launch(gql, location, RAW) == "SUCCESS"
    assert _launch(gql, location, ["org_hierarchy", "quota_snapshots", "quota_snapshots_quarantine"],
                   {"dagster/partition": "2025-03-01"}) == "SUCCESS"
    backfill = gql(
        """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {"p": {"assetSelection": [{"path": [k]} for k in ["credited_bookings", "credited_bookings_quarantine", "attainment"]],
               "partitionNames": [f"2025-03-{d:02d}" for d in range(1, 32)]}},
    )["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 ... on PartitionBackfill { status runs(limit: 50) { runId status } } } }"""
    for _ in range(240):
        state = gql(query, {"id": backfill["backfillId"]})["partitionBackfillOrError"]
        if state["status"] != "REQUESTED" and state["runs"] and all(r["status"] in ("SUCCESS", "FAILURE") for r in state["runs"]):
            break
        time.sleep(0.5)
    assert [r["status"] for r in state["runs"]] == ["SUCCESS"]  # the whole month in one run
    with duckdb.connect(str(warehouse), read_only=True) as con:
        days, won = con.sql(
            "select count(distinct as_of_date), max(closed_won) from quota_platform.attainment "
            "where level = 'company' and period_type = 'quarter'"
        ).fetchone()
    # 31 days of March; by Mar 31 O1 10,000 + O2 20,000 + O3 5,000 = 35,000 closed.
    assert (days, won) == (31, 35000.0)
