"""Two runs of the same partition, in two processes on one instance, are serialized."""

import os
import subprocess
import sys

import dagster as dg
import pytest

pytestmark = pytest.mark.integration

RUN = """
import dagster as dg
from ml_assets.definitions import build_definitions
from ml_assets.runner import Platform
from ml_assets.usecases import FLIGHT_DELAY
from resources import build_resources
import sys
defs = build_definitions(build_resources(lakehouse_root=sys.argv[1]))
result = Platform(defs, dg.DagsterInstance.get(), log_level="ERROR").ingest(FLIGHT_DELAY, "2013-01-01", "2013-01-01")
print(result.run_id)
sys.exit(0 if result.success else 1)
"""


def test_two_runs_of_one_partition_do_not_overlap(tmp_path, spec):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # Create the instance's storage first: two processes migrating a fresh SQLite database race.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey("warm_up"))
    instance.all_instigator_state()
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path / "lake")], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
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
    instance.dispose()
