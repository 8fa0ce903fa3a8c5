"""Sensor decisions with `build_sensor_context` against a real instance, and their idempotency."""

import json
from datetime import date

import dagster as dg
import polars as pl
import pytest

from ml_assets.keys import EVIDENCE_TAG, TRIGGER_TAG
from ml_assets.ops.replay import Lander
from ml_assets.ops.runner import Platform
from ml_assets.registry.models import production_pointer
from tests.conftest import make_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    root = tmp_path_factory.mktemp("landing")
    lake = tmp_path_factory.mktemp("lake")
    lander = Lander(spec, root / spec.name)
    for day in spec.partition_range("2013-01-01", "2013-02-15"):
        lander.land(day)
    with dg.instance_for_test() as instance:
        platform = make_platform(lake, instance, root)
        platform.log_level = "CRITICAL"
        yield platform, lander


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
    platform, lander = world
    landing = lander.landing
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
    assert (plan["train_start"], plan["train_end"]) == (spec.training.start.isoformat(), spec.training.end.isoformat())
    evaluation = spec.evaluation
    assert (plan["eval_start"], plan["eval_end"]) == (evaluation.start.isoformat(), evaluation.end.isoformat())
    assert _execute(platform, boot).success
    assert production_pointer(platform.instance, platform.defs.resources["model_registry"], spec.name) is not None
    assert _evaluate(platform, "freshness_retrain", None).run_requests == []  # a fresh champion

    # New days arrive after two silent upstream changes, both inside the contracts' rules so only drift
    # detection can notice: the weather feed switches units and the flights feed recodes carriers and
    # destinations (IATA -> ICAO style). The daily loop runs them.
    for day in spec.partition_range("2013-02-16", "2013-03-08"):
        lander.land(day)
        flights = landing / "flights" / f"{day}.parquet"
        _redeliver(flights, pl.read_parquet(flights).with_columns((pl.col("carrier") + "X").alias("carrier"),
                                                                  ("K" + pl.col("dest")).alias("dest")))
        path = landing / "weather" / f"{day}.parquet"
        weather = pl.read_parquet(path)
        _redeliver(path, weather.with_columns(
            ((pl.col("temp") - 32) * 5 / 9).alias("temp"), ((pl.col("dewp") - 32) * 5 / 9).alias("dewp"),
            (pl.col("wind_speed") * 1.609).alias("wind_speed"), (pl.col("precip") * 25.4).alias("precip")))
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
    streak = evidence["drifted_partitions"]
    assert len(streak) >= spec.monitoring.consecutive_partitions
    assert streak == [d.isoformat() for d in spec.partition_range(streak[0], streak[-1])]  # consecutive
    assert streak[-1] == retrain.tags["ml/data_partition"]  # ends at the partition that fired
    # The evidence names the partitions that exceeded (all shifted days) and the columns that fired: the
    # broken ones, features computed from them (rates keyed by the recoded codes) or the model's scores.
    touched = {"temp", "dewp", "wind_speed", "precip", "carrier", "dest", "carrier_rate_7d", "carrier_rate_28d",
               "route_rate_7d", "route_rate_28d", "probability", "*share"}
    print("drift retrain evidence:", {k: evidence[k] for k in ("drifted_partitions", "alarm_partitions",
                                                                "fired_columns")})
    assert evidence["fired_columns"] and set(evidence["fired_columns"]) <= touched, evidence["fired_columns"]
    days = {d.isoformat() for run in evidence["alarm_partitions"]
            for d in spec.partition_range(*(run.split("..") * 2)[:2])}
    assert days and min(days) >= "2013-02-16" and streak[-1] in days  # shifted days only, up to the one that fired
    again = _evaluate(platform, "drift_retrain", None)  # re-evaluating the same tick: the same run key
    assert [r.run_key for r in again.run_requests] == [retrain.run_key]
    assert _evaluate(platform, "drift_retrain", drift.cursor).run_requests == []  # nothing new since the cursor
    _execute(platform, retrain)  # promoted or refused: either way a version is registered
    assert len(platform.defs.resources["model_registry"].versions(spec.name)) == 2
    run = platform.instance.get_runs(dg.RunsFilter(tags={TRIGGER_TAG: "drift"}))[0]
    assert run.tags["ml/outcome"] in ("promoted", "refused")
    # Drift persists, but the data-time cooldown prevents a retrain storm.
    cooled = _evaluate(platform, "drift_retrain", None)
    assert cooled.run_requests == [] and "cooldown" in (cooled.skip_message or "")
    last_day = date.fromisoformat("2013-03-08")
    latest = platform.instance.get_latest_materialization_event(dg.AssetKey([spec.name, "drift_report"]))
    assert latest.asset_materialization.partition == last_day.isoformat()
    # The report is true to the serving version's stored calibration (read verified by its recorded sha256).
    from ml_assets.monitoring.drift_calibration import parse

    meta, lake = latest.asset_materialization.metadata, platform.defs.resources["lakehouse"]
    record = platform.defs.resources["model_registry"].get(spec.name, meta["reference_version"].value)
    assert meta["threshold_source"].value == "calibrated"
    assert meta["calibration_sha256"].value == record.drift_calibration.sha256
    calibration = parse(lake.read_bytes(record.drift_calibration.uri, record.drift_calibration.sha256), "calibration")
    report = json.loads(lake.read_bytes(meta["uri"].value, meta["sha256"].value))
    k = spec.monitoring.drift_alarm_exceedances
    for column, v in report["columns"].items():
        assert v["threshold"] == calibration.columns[column].threshold
        assert v["fired"] == (v["exceedances"] >= k) == (column in report["fired_columns"])
    assert report["drifted"] and meta["fired_columns"].value == report["fired_columns"]


def _redeliver(path, frame: pl.DataFrame) -> None:
    """A producer re-delivering a file: new bytes and their checksum."""
    import hashlib

    frame.write_parquet(path)
    (path.parent / f"{path.name}.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
