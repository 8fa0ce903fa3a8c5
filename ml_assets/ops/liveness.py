"""Runs whose process died are marked FAILED, whoever started them.

Run monitoring with Dagster's default launcher does not watch runs executed in-process (`mlp`, the
replay, tests), and a SIGKILLed run worker would stay STARTED forever, holding its partition's queue
slot. So every run records which process executes it (`ml/worker_pid`, `ml/worker_host`,
`ml/worker_start`: the process start time, so a reused pid is not mistaken for the worker), and
`reap_dead_runs` marks a STARTED/STARTING run FAILED when that process is gone. It runs in the
daemon's `run_reaper` sensor (every 30 s), before every `mlp` command and before every replay tick.
The partition file lock is released by the kernel when the process dies; the queue slot is freed
once the run is FAILED, and the instance's run retries then re-execute it (when the daemon runs).

A retry (or any re-execution) copies its parent's tags, so until its own worker records itself it
names the parent's, dead, worker: such inherited tags are no evidence and the run is not reaped
(should it die before recording itself, the code server that launched it still reports its death).
Without this, any reap between the retry's launch and its resources being built (`mlp` on this host,
or a `run_reaper` tick) marked the healthy retry FAILED while its worker went on writing.
"""

from __future__ import annotations

import os
import socket
from typing import Any

PID_TAG = "ml/worker_pid"
HOST_TAG = "ml/worker_host"
START_TAG = "ml/worker_start"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5), counted after the command name
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def worker_tags() -> dict[str, str]:
    """Tags naming this process as a run's worker (passed by in-process launchers at run start)."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), START_TAG: process_start(pid) or ""}


def record_worker(context: Any) -> None:
    """Called when a run process builds its resources: tag the run with this process."""
    run = getattr(context, "run", None)
    instance = getattr(context, "instance", None)
    if run is None or instance is None:
        return
    tags = worker_tags()
    if run.tags.get(PID_TAG) != tags[PID_TAG]:
        instance.add_run_tags(run.run_id, tags)


def worker_alive(tags: dict[str, str]) -> bool | None:
    """True/False for a worker on this host; None when the run names no worker here."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return None
    start = process_start(int(tags[PID_TAG]))
    return start is not None and start == tags.get(START_TAG, start)


def inherited_worker(instance: Any, run: Any) -> bool:
    """True when the run's worker tags are its parent run's, copied at re-execution: not its own worker yet."""
    parent_id = run.tags.get("dagster/parent_run_id")
    parent = instance.get_run_by_id(parent_id) if parent_id else None
    return parent is not None and all(parent.tags.get(k) == run.tags.get(k) for k in (PID_TAG, HOST_TAG, START_TAG))


def reap_dead_runs(instance: Any) -> list[str]:
    """Mark FAILED every in-progress run whose worker process on this host is gone; return their ids."""
    import dagster as dg
    from dagster._core.events import JobFailureData, RunFailureReason

    reaped = []
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
    for run in runs:
        if worker_alive(run.tags) is not False or inherited_worker(instance, run):
            continue
        message = (f"run worker process {run.tags[PID_TAG]} on {run.tags[HOST_TAG]} is gone (killed or crashed) "
                   "while the run was in progress; marked failed by the platform's run reaper")
        instance.report_run_failed(
            run, message=message,
            job_failure_data=JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
        reaped.append(run.run_id)
    return reaped
