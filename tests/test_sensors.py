"""Sensor decisions with `build_sensor_context` against a real instance, and their idempotency."""

import json
from datetime import date

import dagster as dg
import polars as pl
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.replay import land_day
from ml_assets.runner import Platform
from ml_assets.spec import date_range
from resources import build_resources
from sensors.policy import EVIDENCE_TAG, TRIGGER_TAG

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    landing = tmp_path_factory.mktemp("landing")
    lake = tmp_path_factory.mktemp("lake")
    for day in date_range("2013-01-01", "2013-02-15"):
        land_day(spec, landing, day)
    with dg.instance_for_test() as instance:
        defs = build_definitions(build_resources(lakehouse_root=str(lake), landing_uri=str(landing)))
        yield Platform(defs, instance, log_level="CRITICAL"), landing


def _evaluate(platform: Platform, name: str, cursor: str | None):
    sensor = next(s for s in platform.defs.sensors if s.name.endswith(name))
    with dg.build_sensor_context(instance=platform.instance, cursor=cursor, definitions=platform.defs,
                                 resources=platform.defs.resources) as context:
        return sensor.evaluate_tick(context)


def _execute(platform: Platform, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    span = request.partition_key_range
    first = request.partition_key or (span.start if span else None)
    last = request.partition_key or (span.end if span else None)
    tags = {k: v for k, v in request.tags.items() if not k.startswith("dagster/asset_partition_range")}
    return platform.run(request.job_name, run_config=request.run_config or {}, tags=tags, first=first, last=last,
                        raise_on_error=False)


def test_sensor_loop(world, spec):
    platform, landing = world
    # (c) New data: one catch-up request for every landed day; before a model exists, ingest only.
    data = _evaluate(platform, "new_data", None)
    (request,) = data.run_requests
    assert request.job_name.endswith("__ingest") and data.cursor == "2013-02-15"
    assert request.partition_key_range.start == "2013-01-01" and request.partition_key_range.end == "2013-02-15"
    assert _evaluate(platform, "new_data", data.cursor).run_requests == []  # same tick again: nothing new
    assert _execute(platform, request).success
    assert _evaluate(platform, "new_data", None).run_requests == []  # even without a cursor: already processed

    # (b) Freshness with no champion: bootstrap the first model on the labelled days.
    data = _evaluate(platform, "freshness_retrain", None)
    (boot,) = data.run_requests
    assert boot.tags[TRIGGER_TAG] == "bootstrap" and boot.run_key == f"bootstrap:{spec.name}"
    plan = json.loads(boot.tags[EVIDENCE_TAG])["plan"]
    assert (plan["train_start"], plan["train_end"]) == (spec.training.train_start, spec.training.train_end)
    assert (plan["eval_start"], plan["eval_end"]) == (spec.evaluation.start, spec.evaluation.end)
    assert _execute(platform, boot).success
    assert platform.defs.resources["model_registry"].production(spec.name) is not None
    assert _evaluate(platform, "freshness_retrain", None).run_requests == []  # a fresh champion

    # New days arrive after two silent upstream changes, both inside the contracts' rules so only drift
    # detection can notice: the weather feed switches units and the flights feed recodes carriers and
    # destinations (IATA -> ICAO style). The daily loop runs them.
    for day in date_range("2013-02-16", "2013-03-08"):
        land_day(spec, landing, day)
        flights = landing / "flights" / f"{day}.parquet"
        pl.read_parquet(flights).with_columns((pl.col("carrier") + "X").alias("carrier"),
                                              ("K" + pl.col("dest")).alias("dest")).write_parquet(flights)
        path = landing / "weather" / f"{day}.parquet"
        weather = pl.read_parquet(path)
        weather.with_columns(((pl.col("temp") - 32) * 5 / 9).alias("temp"), ((pl.col("dewp") - 32) * 5 / 9)
                             .alias("dewp"), (pl.col("wind_speed") * 1.609).alias("wind_speed"),
                             (pl.col("precip") * 25.4).alias("precip")).write_parquet(path)
    data = _evaluate(platform, "new_data", "2013-02-15")
    (daily,) = data.run_requests
    assert daily.job_name.endswith("__daily")
    assert _execute(platform, daily).success

    # (a) Drift: enough consecutive drifted days -> one retrain request with its evidence.
    drift = _evaluate(platform, "drift_retrain", None)
    assert len(drift.run_requests) == 1, (drift.skip_message, drift.cursor)
    (retrain,) = drift.run_requests
    assert retrain.tags[TRIGGER_TAG] == "drift" and retrain.run_key.startswith("drift:")
    evidence = json.loads(retrain.tags[EVIDENCE_TAG])
    assert len(evidence["drifted_days"]) >= spec.monitoring.consecutive_partitions
    again = _evaluate(platform, "drift_retrain", None)  # re-evaluating the same tick: the same run key
    assert [r.run_key for r in again.run_requests] == [retrain.run_key]
    assert _evaluate(platform, "drift_retrain", drift.cursor).run_requests == []  # nothing new since the cursor
    _execute(platform, retrain)  # promoted or refused: either way a version is registered
    assert len(platform.defs.resources["model_registry"].versions(spec.name)) == 2
    # Drift persists, but the data-time cooldown prevents a retrain storm.
    cooled = _evaluate(platform, "drift_retrain", None)
    assert cooled.run_requests == [] and "cooldown" in (cooled.skip_message or "")
    last_day = date.fromisoformat("2013-03-08")
    latest = platform.instance.get_latest_materialization_event(dg.AssetKey([spec.name, "drift_report"]))
    assert latest.asset_materialization.partition == last_day.isoformat()
