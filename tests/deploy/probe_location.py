"""A test-only code location: the platform's definitions plus one cursor-keeping sensor, so the deploy tests
can prove that sensor cursors live in PostgreSQL and survive a restart of the daemon.

The sensor reads new `flight_delay/raw_flights` materializations after its cursor (an event storage id)
and records how many it saw; it requests no runs.
"""

import dagster as dg

from ml_assets.definitions import build_definitions
from ml_assets.keys import UseCaseKeys

WATCHED = UseCaseKeys("flight_delay").raw("flights")


@dg.sensor(name="deploy_probe_sensor", minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def deploy_probe_sensor(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=WATCHED, after_storage_id=after), limit=10_000, ascending=True
    ).records
    if not records:
        return dg.SkipReason(f"0 new after {after}")
    return dg.SensorResult(skip_reason=f"{len(records)} new after {after}", cursor=str(records[-1].storage_id))


defs = dg.Definitions.merge(build_definitions(), dg.Definitions(sensors=[deploy_probe_sensor]))
