"""PostgreSQL for real: the demo graph runs against the production storage config (deploy/dagster.yaml) on
the local server, in a dedicated database; what one process wrote is read back by other processes with
fresh instances, and a sensor's cursor survives killing and restarting the daemon."""

from __future__ import annotations

import signal
import time

import dagster as dg
import pytest

from tests.deploy.conftest import BIN, REPO, SECRET_PASSWORD, WINDOW, run_step, server, stop, workspace_file

pytestmark = pytest.mark.postgres

PROBE = "deploy_probe_sensor"


def test_demo_graph_ran_against_the_dedicated_postgres_database(history, pg_server, pg_database, instance_home):
    assert history["success"] == {"ingest": True, "train": True, "score": True, "daily": True,
                                  "backtest": True}, \
        history["train_failure"]
    # The demo window's first model beats the baseline: the train run promoted it.
    assert history["train_outcome"] == "promoted"
    assert history["storage"] == "PostgresEventLogStorage"
    with pg_server.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        rows = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM event_logs")
        events = cur.fetchone()[0]
    for run_id in history["runs"].values():
        assert rows[run_id] == "SUCCESS"
    assert events > 500
    # Nothing fell back to the SQLite files an empty dagster.yaml would create under DAGSTER_HOME.
    assert not list(instance_home.rglob("*.db"))


def test_run_and_asset_history_survive_the_writer_process(history, proc_env):
    seen = run_step("read", proc_env)  # another process, another instance, after the writer exited
    assert seen["storage"] == "PostgresEventLogStorage"
    status = {r["run_id"]: r["status"] for r in seen["runs"]}
    assert {status[run_id] for run_id in history["runs"].values()} == {"SUCCESS"}
    ingest = next(r for r in seen["runs"] if r["run_id"] == history["runs"]["ingest"])
    assert ingest["tags"]["dagster/asset_partition_range_start"] == WINDOW["ingest"][0]
    assert all(seen["event_counts"][run_id] > 10 for run_id in history["runs"].values())

    assets = seen["assets"]
    days = assets["flight_delay/raw_flights"]["partitions"]
    assert days[0] == WINDOW["ingest"][0] and WINDOW["ingest"][1] in days
    assert assets["flight_delay/candidate_model"]["runs"] == [history["runs"]["train"]]
    assert history["runs"]["score"] in assets["flight_delay/predictions"]["runs"]

    production = seen["production_model"]
    assert production["run_id"] == history["runs"]["train"]
    # The audit trail: the promoted model records the exact upstream events it consumed.
    tags = seen["candidate_model_tags"]
    assert "dagster/code_version" in tags
    assert any(key.startswith("dagster/input_event_pointer/") for key in tags)


def test_a_fresh_instance_in_this_process_reads_the_same_history(history, instance_home, deploy_env):
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        runs = {r.run_id: r for r in instance.get_runs()}
        assert set(history["runs"].values()) <= set(runs)
        train = runs[history["runs"]["train"]]
        assert train.job_name == "flight_delay__train_evaluate_promote"
        assert train.status == dg.DagsterRunStatus.SUCCESS
        key = dg.AssetKey(["flight_delay", "production_model"])
        record = instance.fetch_materializations(key, limit=1).records[0]
        assert record.run_id == train.run_id
        # The instance's reference holds the env var's name, never the password itself.
        assert SECRET_PASSWORD not in repr(instance.get_ref())
        assert deploy_env["DAGSTER_PG_PASSWORD"] == SECRET_PASSWORD


def _probe_ticks(instance_home):
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        state = next((s for s in instance.all_instigator_state() if s.instigator_name == PROBE), None)
        if state is None:
            return None, []
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
        cursor = state.instigator_data.cursor if state.instigator_data else None
        return cursor, ticks


def _wait_for(predicate, what: str, proc, log, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode} waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def test_sensor_cursor_survives_killing_and_restarting_the_daemon(history, proc_env, instance_home, tmp_path):
    watched = dg.AssetKey(["flight_delay", "raw_flights"])
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        before = instance.fetch_materializations(watched, limit=10_000).records
    assert before, "the demo graph materialized no raw flights"
    newest = max(r.storage_id for r in before)

    workspace = workspace_file(tmp_path, REPO / "tests" / "deploy" / "probe_location.py", "probe")
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]

    log1 = tmp_path / "daemon1.log"
    with server(daemon, proc_env, log1) as first:
        cursor = _wait_for(lambda: _probe_ticks(instance_home)[0], "the first tick's cursor", first, log1)
        stop(first, signal.SIGKILL)  # a crash, not a graceful shutdown
    assert int(cursor) == newest
    _, ticks = _probe_ticks(instance_home)
    assert f"{len(before)} new after None" in {t.skip_reason for t in ticks}

    # Another process reads the cursor from PostgreSQL; then a new day lands while no daemon runs.
    assert run_step("read", proc_env)["instigators"][PROBE]["cursor"] == cursor
    assert run_step("ingest", proc_env, "2013-02-08")["success"]

    log2 = tmp_path / "daemon2.log"
    with server(daemon, proc_env, log2) as second:
        resumed = _wait_for(lambda: (c := _probe_ticks(instance_home)[0]) and int(c) > int(cursor) and c,
                            "a tick after the restart", second, log2)
    _, ticks = _probe_ticks(instance_home)
    reasons = {t.skip_reason for t in ticks}
    # The restarted daemon continued from the stored cursor: it saw exactly the one new day, not everything.
    assert f"1 new after {cursor}" in reasons, reasons
    assert f"{len(before) + 1} new after None" not in reasons
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        latest = instance.fetch_materializations(watched, limit=1).records[0]
    assert int(resumed) == latest.storage_id
