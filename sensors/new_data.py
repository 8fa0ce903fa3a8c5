"""New data: when a partition's files land, run that partition's whole loop (no person needed)."""

from __future__ import annotations

from datetime import date

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ml_assets.keys import DATA_PARTITION_TAG, TRIGGER_TAG, UseCaseJobs, UseCaseKeys
from ml_assets.spec import UseCaseSpec
from resources.model_registry import ModelRegistryResource
from resources.sources import RawSourceResource


def build_new_data_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    names = UseCaseJobs(spec.name)

    @dg.sensor(
        name=f"{spec.name}__new_data",
        description="Requests the per-partition job (or, before a model is in production, the ingest job) for the "
        "partitions whose event files have landed and are not yet processed. The cursor is the last landed "
        "partition; run keys and the materialized partitions make a re-evaluated tick request nothing new.",
        jobs=jobs, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def new_data(context: dg.SensorEvaluationContext, raw_source: RawSourceResource,
                 model_registry: ModelRegistryResource):
        if raw_source.landing_for(spec) is None:
            return dg.SkipReason("no landing folder configured for this use case: nothing lands")
        last = date.fromisoformat(context.cursor) if context.cursor else spec.shift(spec.partitions_start, -1)
        landed = raw_source.landed_partitions(spec, spec.events, after=last, until=spec.partitions_end)
        if not landed:
            return dg.SkipReason(f"no new partition after {last}")
        done = context.instance.get_materialized_partitions(UseCaseKeys(spec.name).raw(spec.events_table))
        todo = [d for d in landed if d.isoformat() not in done]
        cursor = landed[-1].isoformat()
        if not todo:
            return dg.SensorResult(skip_reason=f"partitions through {cursor} are already processed", cursor=cursor)
        job = names.daily if model_registry.production(spec.name) else names.ingest
        first, last_key = todo[0].isoformat(), todo[-1].isoformat()
        # Several partitions at once (a catch-up after downtime, or a replay tick) are one single-run backfill.
        tags = {TRIGGER_TAG: "new_data", DATA_PARTITION_TAG: last_key}
        if first == last_key:
            request = dg.RunRequest(run_key=f"{job}:{first}", job_name=job, partition_key=first, tags=tags)
        else:
            tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last_key}
            request = dg.RunRequest(run_key=f"{job}:{first}..{last_key}", job_name=job, tags=tags)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return new_data
