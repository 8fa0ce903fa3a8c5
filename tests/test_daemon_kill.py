"""A run launched by the real daemon whose worker process is SIGKILLed mid-run (issue #12).

The real `dagster-daemon run -w workspace.yaml` serves a temporary DAGSTER_HOME whose dagster.yaml is
the project's, unchanged (its `run_monitoring.poll_interval_seconds` is not shortened: Dagster's
DefaultRunLauncher has no run worker health check, `supports_check_run_worker_health` is False, so
run monitoring never looks at a STARTED run's worker). The test submits two runs of one flight_delay
ingest partition through the instance's run coordinator, as the UI or a sensor does: the
QueuedRunCoordinator dequeues the first (the per-partition tag limit holds the second), and the
DefaultRunLauncher has the daemon's code server start its worker process. That worker is SIGKILLed
while it writes raw flights. Then, each within a deadline (the seconds are printed):

* the run is FAILED with a message naming the dead worker. What marks it is recorded: the code
  server notices its run process died (every 0.5 s), else the platform's `run_reaper` sensor (30 s);
* the daemon's run retries launch a retry (`dagster/parent_run_id` = the killed run) that succeeds;
* the partition's slot is released: the run queued behind the killed one is dequeued and succeeds,
  never overlapping the retry;
* no partial file is visible in the lakehouse.

Meanwhile the test calls `reap_dead_runs` as every `mlp` command on this host does: it must never
mark a live run failed. A retry copies its parent's tags, so until its own worker records itself it
names the killed worker's pid; that must not count as a dead worker.

The runs read the use case's declared sources (the real 2013 data): no landing folder, so the
new_data sensor the daemon also runs requests nothing that would compete for the partition's slot.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import dagster as dg
import pytest

from ml_assets.keys import UseCaseJobs
from ml_assets.ops.liveness import HOST_TAG, PID_TAG, START_TAG, reap_dead_runs, worker_alive
from tests.deploy.conftest import BIN, REPO, server

pytestmark = pytest.mark.integration

JOB = UseCaseJobs("flight_delay").ingest
PARTITION = "2013-01-01"  # the first partition: its features need no earlier days
KILL_IN_STEP = "flight_delay__raw_flights"  # the run's longest write (about 2.5 s)
FAILED_WITHIN = 45  # s after the kill: the code server's check, else the reaper's 30 s tick
RETRY_DONE_WITHIN = 90
QUEUED_DONE_WITHIN = 120


@dg.job
def stub_job():  # a stand-in for runs created directly in the instance
    pass


@pytest.fixture
def daemon_world(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    lake = tmp_path / "lake"
    env = {**os.environ, "DAGSTER_HOME": str(home), "ML_LAKEHOUSE_ROOT": str(lake), "WHYLOGS_NO_ANALYTICS": "True",
           "PYTHONUNBUFFERED": "1"}
    env.pop("ML_LANDING_URI", None)
    instance = dg.DagsterInstance.from_config(str(home))
    # Create the storage before the daemon starts: two processes migrating a fresh SQLite database race.
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey("warm_up"))
    instance.all_instigator_state()
    with pytest.MonkeyPatch.context() as mp:  # the code server this process starts to create runs
        mp.setenv("DAGSTER_HOME", str(home))
        mp.setenv("ML_LAKEHOUSE_ROOT", str(lake))
        yield instance, env, lake, tmp_path / "daemon.log"
    instance.dispose()


def submit(instance: dg.DagsterInstance, workspace, job_name: str, tags: dict[str, str]) -> str:
    """Create a run of a job from the code location and submit it to the run coordinator (what the UI does)."""
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location("ml_platform")
    repo = next(iter(location.get_repositories().values()))
    remote_job = location.get_job(JobSubsetSelector(location_name=location.name, repository_name=repo.name,
                                                    job_name=job_name, op_selection=None))
    plan = location.get_execution_plan(remote_job, {}, step_keys_to_execute=None, known_state=None,
                                       instance=instance).execution_plan_snapshot
    run = instance.create_run(
        job_name=job_name, run_id=None, run_config={}, resolved_op_selection=None, op_selection=None, status=None,
        step_keys_to_execute=plan.step_keys_to_execute, root_run_id=None, parent_run_id=None,
        tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot, remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(), asset_selection=None, asset_check_selection=None,
        asset_graph=repo.asset_graph)
    instance.submit_run(run.run_id, workspace)
    return run.run_id


def wait_for(predicate, what: str, deadline: float, daemon, log, *, reap_with=None):
    """Poll until `predicate()` is truthy; with `reap_with` (an instance), call `reap_dead_runs` each poll, as
    `mlp` does before every command, and fail if it marks any run failed."""
    while time.monotonic() < deadline:
        if reap_with is not None:
            reaped = reap_dead_runs(reap_with)
            assert not reaped, f"reap_dead_runs marked live run(s) failed while waiting for {what}: {reaped}"
        value = predicate()
        if value:
            return value
        assert daemon.poll() is None, f"the daemon exited {daemon.returncode}:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def step_started(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    return any(e.step_key == step for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))


def span(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    record = instance.get_run_records(dg.RunsFilter(run_ids=[run_id]))[0]
    stats = instance.get_run_stats(run_id)
    return stats.launch_time or record.start_time, record.end_time


def test_a_daemon_launched_run_whose_worker_is_sigkilled_fails_is_retried_and_frees_its_slot(daemon_world):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    instance, env, lake, log = daemon_world
    began = time.monotonic()
    daemon_args = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    with server(daemon_args, env, log) as daemon, WorkspaceProcessContext(
            instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as process_context:
        workspace = process_context.create_request_context()
        tags = {"dagster/partition": PARTITION}
        victim = submit(instance, workspace, JOB, tags)
        queued = submit(instance, workspace, JOB, tags)  # same partition: held by the tag limit

        def victim_mid_write():
            run = instance.get_run_by_id(victim)
            return (run.status == dg.DagsterRunStatus.STARTED and run.tags.get(PID_TAG)
                    and step_started(instance, victim, KILL_IN_STEP) and run)

        run = wait_for(victim_mid_write, "the run to start writing raw flights", time.monotonic() + 180, daemon, log)
        pid = int(run.tags[PID_TAG])
        assert pid not in (daemon.pid, os.getpid())
        assert os.getpgid(pid) == daemon.pid  # a process the daemon's tree started (the launcher's worker)
        assert worker_alive(run.tags) is True
        assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.QUEUED  # the slot is taken
        time.sleep(0.5)  # inside the 2.5 s write
        os.kill(pid, 9)
        killed = time.monotonic()
        killed_at = time.time()

        failed = wait_for(lambda: instance.get_run_by_id(victim).status == dg.DagsterRunStatus.FAILURE,
                          "the killed run to be FAILED", killed + FAILED_WITHIN, daemon, log)
        to_failed = time.monotonic() - killed
        assert failed
        assert not any(e.step_key == KILL_IN_STEP for e in instance.all_logs(  # it died inside the write
            victim, of_type=dg.DagsterEventType.STEP_SUCCESS))
        assert worker_alive(instance.get_run_by_id(victim).tags) is False  # the reaper's evidence, had it run
        messages = [e.message or "" for e in instance.all_logs(victim)
                    if e.dagster_event and (e.dagster_event.is_run_failure
                                            or e.dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT)]
        if any("marked failed by the platform's run reaper" in m for m in messages):
            marked_by = "run_reaper sensor"
            assert any(f"run worker process {pid} " in m and "is gone" in m for m in messages), messages
        elif any("[DagsterApiServer] Run execution process" in m for m in messages):
            marked_by = "code server (its run process died)"
            assert any(f"Run execution process for {victim} was terminated by signal 9 (SIGKILL)" in m
                       for m in messages), messages
        else:
            marked_by = "run monitoring"
            assert any("Detected run worker status" in m for m in messages), messages

        # From now on every poll also runs `reap_dead_runs` (as `mlp` would on this host): never a live run.
        def retry_run():
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": victim}))
            return runs[0] if runs else None

        retry = wait_for(retry_run, "the daemon to launch a retry", killed + RETRY_DONE_WITHIN, daemon, log,
                         reap_with=instance).run_id
        wait_for(lambda: instance.get_run_by_id(retry).is_finished, "the retry to finish", killed + RETRY_DONE_WITHIN,
                 daemon, log, reap_with=instance)
        wait_for(lambda: instance.get_run_by_id(queued).is_finished, "the queued run to finish",
                 killed + QUEUED_DONE_WITHIN, daemon, log, reap_with=instance)

    statuses = {name: instance.get_run_by_id(run_id).status for name, run_id in
                {"killed": victim, "retry": retry, "queued": queued}.items()}
    (retry_start, retry_end), (queued_start, queued_end) = span(instance, retry), span(instance, queued)
    print(f"\nkilled worker {pid}: FAILED after {to_failed:.1f} s (marked by the {marked_by}); after the kill the "
          f"retry ran {retry_start - killed_at:.1f}..{retry_end - killed_at:.1f} s and the queued run "
          f"{queued_start - killed_at:.1f}..{queued_end - killed_at:.1f} s; wall {time.monotonic() - began:.1f} s")
    assert statuses == {"killed": dg.DagsterRunStatus.FAILURE, "retry": dg.DagsterRunStatus.SUCCESS,
                        "queued": dg.DagsterRunStatus.SUCCESS}, statuses
    assert instance.get_run_by_id(retry).tags["dagster/partition"] == PARTITION
    # The slot was held until the killed run ended, then served the retry and the queued run one at a time.
    (first_start, first_end), (second_start, _) = sorted([(retry_start, retry_end), (queued_start, queued_end)])
    assert first_start >= killed_at - 1 and second_start >= first_end - 0.05
    import polars as pl

    from resources.lakehouse import LakehouseResource

    files = [p for p in lake.rglob("*.parquet") if not p.name.startswith(".tmp-")]
    assert any(f"date={PARTITION}" in p.name for p in files if "raw_flights" in str(p))
    for path in files:  # killed mid-write: no partial file is visible
        pl.read_parquet(path)
    listed = LakehouseResource(root=str(lake)).list(str(lake / "flight_delay" / "raw_flights"))
    assert listed and not any(".tmp-" in uri for uri in listed)


def test_a_retry_is_not_reaped_for_the_dead_worker_it_inherited(tmp_path):
    """A retry copies its parent's worker tags; until its own worker records itself they are no evidence."""
    dead = {PID_TAG: "999999999", HOST_TAG: socket.gethostname(), START_TAG: "1"}  # no such process
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        parent = instance.create_run_for_job(stub_job, tags=dead, status=dg.DagsterRunStatus.FAILURE)
        child = instance.create_run_for_job(stub_job, tags={**dead, "dagster/parent_run_id": parent.run_id},
                                            status=dg.DagsterRunStatus.STARTED)
        assert reap_dead_runs(instance) == []
        instance.add_run_tags(child.run_id, {**dead, START_TAG: "2"})  # its own worker, also dead: reaped
        assert reap_dead_runs(instance) == [child.run_id]
