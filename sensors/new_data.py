"""New daily data: when a day's files land, run that day's whole loop (no person needed)."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from ml_assets.factory import job_names
from ml_assets.keys import UseCaseKeys
from ml_assets.spec import UseCaseSpec
from resources.model_registry import ModelRegistryResource
from resources.sources import RawSourceResource


def build_new_data_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    names = job_names(spec)

    @dg.sensor(
        name=f"{spec.name}__new_data",
        description="Requests the daily job (or, before a model is in production, the ingest job) for the days "
        "whose event files have landed and are not yet processed. The cursor is the last landed day; run keys and "
        "the materialized partitions make a re-evaluated tick request nothing new.",
        jobs=jobs,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def new_data(context: dg.SensorEvaluationContext, raw_source: RawSourceResource,
                 model_registry: ModelRegistryResource):
        if raw_source.kind != "landing":
            return dg.SkipReason("source is the embedded package: nothing lands (set ML_LANDING_URI)")
        last = date.fromisoformat(context.cursor) if context.cursor else \
            date.fromisoformat(spec.partitions_start) - timedelta(days=1)
        landed = raw_source.landed_days(spec.events, after=last, until=date.fromisoformat(spec.partitions_end))
        if not landed:
            return dg.SkipReason(f"no new day after {last}")
        done = context.instance.get_materialized_partitions(UseCaseKeys(spec).raw(spec.events_table))
        todo = [d for d in landed if d.isoformat() not in done]
        cursor = landed[-1].isoformat()
        if not todo:
            return dg.SensorResult(skip_reason=f"days through {cursor} are already processed", cursor=cursor)
        job = names.daily if model_registry.production(spec.name) else names.ingest
        first, last = todo[0].isoformat(), todo[-1].isoformat()
        # Several days at once (a catch-up after downtime, or a replay tick) are one single-run backfill.
        tags = {"ml/trigger": "new_data", "ml/data_day": last}
        if first == last:
            request = dg.RunRequest(run_key=f"{job}:{first}", job_name=job, partition_key=first, tags=tags)
        else:
            tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
            request = dg.RunRequest(run_key=f"{job}:{first}..{last}", job_name=job, tags=tags)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return new_data
