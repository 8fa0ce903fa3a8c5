"""Sensors: new data lands -> the partition's loop; drift, a stale champion or performance below the
champion's promise -> retrain (gated promotion); dead run workers -> their runs marked failed."""

from __future__ import annotations

import dagster as dg

from ml_assets.spec import UseCaseSpec


def build_sensors(spec: UseCaseSpec, jobs: list) -> list[dg.SensorDefinition]:
    from sensors.new_data import build_new_data_sensor
    from sensors.performance import build_performance_sensor
    from sensors.retraining import build_drift_sensor, build_freshness_sensor

    return [build_new_data_sensor(spec, jobs), build_drift_sensor(spec, jobs), build_freshness_sensor(spec, jobs),
            build_performance_sensor(spec, jobs)]
