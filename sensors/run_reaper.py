"""Marks runs whose worker process died as FAILED (see `ml_assets.ops.liveness`)."""

from __future__ import annotations

import dagster as dg

from ml_assets.ops.liveness import reap_dead_runs


@dg.sensor(name="run_reaper", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every 30 s: a STARTED run whose worker process on this host is gone (SIGKILL, OOM, a crash) "
           "is marked FAILED with the reason, freeing its partition's queue slot; run retries then re-execute it.")
def run_reaper(context: dg.SensorEvaluationContext):
    reaped = reap_dead_runs(context.instance)
    if reaped:
        context.log.warning(f"marked {len(reaped)} run(s) with a dead worker as failed: {reaped}")
    return dg.SkipReason(f"reaped {len(reaped)} run(s)" if reaped else "no dead run workers")
