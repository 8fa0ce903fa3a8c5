"""Processes that race or die: two runs of one partition are serialized, two pointer changes cannot
both win, and a SIGKILLed run is marked failed by the reaper instead of staying STARTED forever."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from ml_assets.ops.liveness import PID_TAG, reap_dead_runs

pytestmark = pytest.mark.integration

INGEST = """
import sys
import dagster as dg
from ml_assets.definitions import build_definitions
from ml_assets.ops.runner import Platform
from ml_assets.spec.catalog import use_case
from resources import build_resources
defs = build_definitions(build_resources(lakehouse_root=sys.argv[1]))
result = Platform(defs, dg.DagsterInstance.get(), log_level="ERROR").ingest(use_case("flight_delay"), sys.argv[2],
                                                                          sys.argv[3])
print(result.run_id)
sys.exit(0 if result.success else 1)
"""

SET_PRODUCTION = """
import sys, time
from ml_assets.errors import RegistryError
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource
registry = ModelRegistryResource(lakehouse=LakehouseResource(root=sys.argv[1]))
while time.time() < float(sys.argv[3]):
    pass
try:
    registry.set_production("flight_delay", sys.argv[2], run_id="race", action="rollback", reason="race",
                            actor=sys.argv[4], expected_sequence=0)
    print("won")
except RegistryError as exc:
    print("lost:", exc)
"""


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Create the instance's storage first: two processes migrating a fresh SQLite database race.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey("warm_up"))
    instance.all_instigator_state()
    yield home, instance, {**os.environ, "DAGSTER_HOME": str(home)}
    instance.dispose()


def test_two_runs_of_one_partition_do_not_overlap(tmp_path, home):
    _, instance, env = home
    procs = [subprocess.Popen([sys.executable, "-c", INGEST, str(tmp_path / "lake"), "2013-01-01", "2013-01-01"],
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    run_ids = [p.communicate(timeout=240)[0].strip().splitlines()[-1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    spans = []
    for run_id in run_ids:
        logs = instance.all_logs(run_id)
        acquired = [e.timestamp for e in logs if e.message and "partition lock acquired" in e.message]
        done = [e.timestamp for e in logs if e.step_key and e.step_key.endswith("raw_flights") and e.dagster_event
                and e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS]
        spans.append((acquired[0], done[0]))
    (_, first_done), (second_acquired, _) = sorted(spans)
    # The second run entered the critical section only after the first had finished writing.
    assert second_acquired >= first_done - 0.05


def test_two_processes_changing_the_pointer_at_once_cannot_both_win(tmp_path):
    from resources.lakehouse import LakehouseResource
    from resources.model_registry import ModelRegistryResource

    registry = ModelRegistryResource(lakehouse=LakehouseResource(root=str(tmp_path / "lake")))
    fields = {"run_id": "r", "code_version": "c", "hyperparameters": {}, "features": {}, "threshold": 0.5,
              "best_epoch": 1, "training_curve": [], "training_set": {
                  "train_start": "2013-01-01", "train_end": "2013-01-31", "validation_start": "2013-01-25",
                  "uri": "u", "sha256": "0" * 64, "rows": 1, "rows_train": 1, "rows_validation": 0,
                  "positive_rate": 0.5, "inputs": {}}}
    record, _ = registry.register("flight_delay", b"weights", fields)
    start = time.time() + 1.5  # both processes spin until the same instant, then race
    procs = [subprocess.Popen([sys.executable, "-c", SET_PRODUCTION, str(tmp_path / "lake"), record.version,
                               str(start), f"actor{i}"], stdout=subprocess.PIPE, text=True) for i in range(2)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes[0].startswith("lost:") and "changed concurrently" in outcomes[0]
    assert outcomes[1] == "won"
    (pointer,) = registry.pointers("flight_delay")
    assert pointer.sequence == 1 and pointer.previous_version is None


def test_a_sigkilled_run_is_reaped_not_left_started(tmp_path, home):
    _, instance, env = home
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(tmp_path / "lake"), "2013-01-01", "2013-03-31"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    run = None
    while time.time() < deadline and run is None:
        started = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        run = next((r for r in started if r.tags.get(PID_TAG) == str(proc.pid)), None)
        time.sleep(0.2)
    assert run is not None, "the run never started"
    time.sleep(2)  # well inside the run's work
    assert reap_dead_runs(instance) == []  # a live worker is never reaped
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # what Dagster alone leaves
    assert reap_dead_runs(instance) == [run.run_id]
    reaped = instance.get_run_by_id(run.run_id)
    assert reaped.status == dg.DagsterRunStatus.FAILURE
    failure = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_run_failure]
    assert "worker process" in failure[-1].message and "is gone" in failure[-1].message
    import polars as pl

    for path in (tmp_path / "lake").rglob("*.parquet"):  # killed mid-write: no partial file is visible
        if not path.name.startswith(".tmp-"):
            pl.read_parquet(path)
