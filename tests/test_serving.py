"""Online scoring against the real graph: features and probabilities equal batch for every event of a real
day, request validation from the declared columns, the prediction log landed as an asset, metrics, and
fail-closed behaviour without a model. Hot-swapping under load is in test_serving_hot_swap.py."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal

from ml_assets import tables
from ml_assets.keys import UseCaseJobs, UseCaseKeys
from ml_assets.serving.app import ServingConfig, create_app
from ml_assets.serving.log import COLUMNS, PROVENANCE, PredictionLog, read_segments
from ml_assets.serving.state import OnlineFeatures, load_state
from resources import build_resources

DAY = date(2013, 2, 3)
URL = "/v1/flight_delay/predict"


def event_dicts(frame: pl.DataFrame, spec) -> list[dict]:
    """Raw event rows as a client would send them: the declared columns, JSON types."""
    return [{c: v for c, v in row.items() if c in spec.events.columns and v is not None}
            for row in frame.iter_rows(named=True)]


@pytest.fixture(scope="module")
def served(materialized, spec):
    """The serving state of DAY on the session's graph, and an app on it (the ASGI app in-process)."""
    result = materialized.platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat())
    assert result.success
    res = materialized.resources
    app = create_app(spec, materialized.instance, res["lakehouse"], res["model_registry"],
                     ServingConfig(max_batch=300, poll_seconds=0.5, platform_refresh_seconds=0.5))
    keys = UseCaseKeys(spec.name)
    events, _ = tables.read_partitions(materialized.platform, res["lakehouse"], spec, keys.raw(spec.events_table),
                                       [DAY])
    with TestClient(app) as client:
        yield client, app, events
    # Shutdown closes every loaded state's DuckDB connection (none is left to the interpreter's exit).
    assert app.state.service.states.loaded() == []


@pytest.mark.integration
def test_online_features_equal_batch_features_for_every_event_of_a_real_day(served, materialized, spec):
    _, _, events = served
    lake = materialized.resources["lakehouse"]
    batch, _ = tables.read_partitions(materialized.platform, lake, spec, UseCaseKeys(spec.name).features, [DAY])
    receipt, frames = load_state(spec, materialized.instance, lake, DAY.isoformat())
    online = OnlineFeatures(spec, DAY.isoformat(), frames, receipt.storage_id)
    try:
        feats, broken = online.compute(events.with_row_index("__row"))
        assert feats.height == events.height == batch.height > 500 and not any(broken)
        assert sorted(feats.get_column("__row")) == list(range(events.height))
        assert_frame_equal(feats.sort("partition_date", "event_id").select(batch.columns), batch, check_exact=True)
        one, _ = online.compute(events[17:18].with_row_index("__row"))  # one row alone: as in the full day
        one_id = one.get_column("event_id")[0]
        assert_frame_equal(one.select(batch.columns), batch.filter(pl.col("event_id") == one_id), check_exact=True)
    finally:
        online.close()


@pytest.mark.integration
def test_online_probabilities_equal_batch_predictions_for_every_event_of_a_real_day(served, materialized, spec):
    client, _, events = served
    payload = event_dicts(events, spec)
    got = []
    for i in range(0, len(payload), 300):
        r = client.post(URL, json={"events": payload[i:i + 300]})
        assert r.status_code == 200, r.text
        got += r.json()["predictions"]
    for event in payload[:5]:  # single events too
        r = client.post(URL, json=event)
        assert r.status_code == 200 and r.headers["x-model-version"] == r.json()["model_version"]
        got.append(r.json()["predictions"][0])
    lake = materialized.resources["lakehouse"]
    batch, _ = tables.read_partitions(materialized.platform, lake, spec, UseCaseKeys(spec.name).predictions, [DAY])
    assert {p["state_partition"] for p in got} == {DAY.isoformat()}  # the event's own partition's state
    online = pl.DataFrame(got)
    joined = batch.join(online, on="event_id", how="inner", suffix="_online")
    assert joined.height == len(got) and online.get_column("event_id").n_unique() == batch.height
    assert (joined["prediction_id"] == joined["prediction_id_online"]).all()  # `<version>/<event id>` as in batch
    assert (joined["model_version"] == joined["model_version_online"]).all()
    assert (joined["probability"] - joined["probability_online"]).abs().max() <= 1e-6
    assert (joined["predicted_positive"] == joined["decision"]).all()


@pytest.mark.integration
def test_bad_requests_name_the_field_and_the_rule(served, spec):
    client, _, events = served
    good = event_dicts(events.head(1), spec)[0]
    cases = [
        ({**good, "origin": "XXX"}, 422, "origin", "allowed(origin in ['EWR', 'JFK', 'LGA'])"),
        ({k: v for k, v in good.items() if k != "carrier"}, 422, "carrier", "not_null(carrier)"),
        ({**good, "distance": 0.5}, 422, "distance", "min(distance>=1)"),
        ({**good, "flight": "UA1"}, 422, "flight", "dtype(flight: int64)"),
        ({**good, "seats": 3}, 422, "seats", "unknown_field(seats)"),
        ({**good, "day": good["day"] + 1}, 422, None, "rule(date_columns_match_time_hour)"),
        ({**good, "time_hour": "soon"}, 422, "time_hour", "event_time(time_hour readable)"),
    ]
    for body, status, field, rule in cases:
        r = client.post(URL, json=body)
        assert r.status_code == status, (rule, r.text)
        problems = r.json()["problems"]
        assert {"field": field, "rule": rule} in [{"field": p["field"], "rule": p["rule"]} for p in problems], r.text
    assert client.post(URL, content=b"{not json").status_code == 400
    assert client.post(URL, json={"events": []}).status_code == 400
    too_many = {"events": [{**good, "flight": i + 1} for i in range(301)]}
    r = client.post(URL, json=too_many)
    assert r.status_code == 413 and r.json()["error"] == "batch_too_large"
    r = client.post(URL, json={"events": [good, good]})
    assert r.status_code == 422 and r.json()["problems"][0]["rule"].startswith("unique_key(")
    metrics = client.get("/metrics").text
    assert 'mlp_serving_errors_total{reason="batch_too_large",use_case="flight_delay"} 1.0' in metrics


@pytest.mark.integration
def test_unknown_categories_use_the_oov_slot_and_are_counted(served, spec):
    client, _, events = served
    good = event_dicts(events.head(1), spec)[0]
    before = _sample(client.get("/metrics").text, 'mlp_serving_oov_total{column="dest",use_case="flight_delay"}')
    r = client.post(URL, json={**good, "dest": "ZZZ"})
    assert r.status_code == 200 and r.json()["predictions"][0]["oov_columns"] == ["dest"]
    after = _sample(client.get("/metrics").text, 'mlp_serving_oov_total{column="dest",use_case="flight_delay"}')
    assert after == before + 1
    # the OOV slot is index 0 of the model's embedding: the same score as any other unseen destination
    other = client.post(URL, json={**good, "dest": "QQQ"}).json()["predictions"][0]["probability"]
    assert other == r.json()["predictions"][0]["probability"]


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.integration
def test_health_readiness_and_metrics(served, materialized, spec):
    client, app, events = served
    def count(kind: str) -> float:
        return _sample(client.get("/metrics").text,
                            f'mlp_serving_request_duration_seconds_count{{kind="{kind}",use_case="flight_delay"}}')

    before = count("batch")
    spaced = '{ "events" : ' + json.dumps(event_dicts(events.head(20), spec)) + "}"  # any JSON layout is a batch
    assert client.post(URL, content=spaced, headers={"content-type": "application/json"}).status_code == 200
    assert count("batch") == before + 1
    assert client.get("/healthz").text == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    snapshot = app.state.service.watcher.snapshot
    text = client.get("/metrics").text
    pointer = snapshot.pointer
    assert (f'mlp_serving_model_info{{pointer_sequence="{pointer.sequence}",sha256="{pointer.sha256}",'
            f'use_case="flight_delay",version="{snapshot.version}"}} 1.0') in text
    assert "mlp_serving_request_duration_seconds_bucket" in text
    positive = (f'mlp_serving_predictions_total{{decision="positive",use_case="flight_delay",'
                f'version="{snapshot.version}"}}')
    assert positive in text
    platform = app.state.service.platform
    platform.refresh()
    assert platform.last_error is None
    ptext = client.get("/metrics/platform").text
    assert 'mlp_platform_state_up{use_case="flight_delay"} 1.0' in ptext
    assert "mlp_platform_champion_age_partitions{" in ptext and "mlp_platform_promised_auroc{" in ptext
    # The values are the records': the serving version's evaluation AUROC, its age from its training window.
    evaluation = materialized.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=UseCaseKeys(spec.name).model_evaluation), limit=1,
        ascending=False).records[0].asset_materialization.metadata
    assert evaluation["model_version"].value == snapshot.version
    prefix = f'mlp_platform_promised_auroc{{use_case="flight_delay",version="{snapshot.version}"}} '
    shown = float(next(line for line in ptext.splitlines() if line.startswith(prefix)).removeprefix(prefix))
    document = json.loads(materialized.resources["lakehouse"].read_bytes(
        str(evaluation["ref_uri"].value), str(evaluation["ref_sha256"].value)))
    assert shown == document["metrics"]["challenger"]["auroc"]  # the evaluation's exact figure
    assert round(shown, 4) == evaluation["challenger_auroc"].value  # which the UI shows rounded
    scored = max(materialized.instance.get_materialized_partitions(UseCaseKeys(spec.name).predictions))
    age = len(spec.partition_range(pointer_train_end(materialized, spec, snapshot.version), scored)) - 1
    assert f'mlp_platform_champion_age_partitions{{use_case="flight_delay"}} {float(age)}' in ptext
    assert 'mlp_platform_newest_partition_timestamp_seconds{asset="predictions",use_case="flight_delay"}' in ptext


def pointer_train_end(materialized, spec, version: str) -> str:
    return materialized.resources["model_registry"].get(spec.name, version).training_set.train_end


@pytest.mark.integration
def test_online_predictions_land_as_a_verified_partition(served, materialized, spec):
    client, app, events = served
    payload = event_dicts(events.head(40), spec)
    r = client.post(URL, json={"events": payload}, headers={"x-request-id": "landing-test"})
    assert r.status_code == 200
    app.state.service.log.flush()
    keys = UseCaseKeys(spec.name)
    result = materialized.platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat())
    assert result.success
    lake = materialized.resources["lakehouse"]
    landed, receipts = tables.read_partitions(materialized.platform, lake, spec, keys.online_predictions, [DAY])
    batch, _ = tables.read_partitions(materialized.platform, lake, spec, keys.predictions, [DAY])
    assert landed.columns == [*batch.columns, "source", "request_id", "scored_at", *PROVENANCE]
    mine = landed.filter(pl.col("request_id") == "landing-test")
    assert mine.height == 40 and set(mine["source"]) == {"online"}
    assert set(mine["prediction_id"]) == {p["prediction_id"] for p in r.json()["predictions"]}
    meta = materialized.instance.get_latest_materialization_event(keys.online_predictions).asset_materialization
    assert meta.metadata["sha256"].value == receipts[DAY.isoformat()].sha256
    assert meta.metadata["segments"].value >= 1

    # a segment changed after it was written fails the landing, naming the file
    segment = json.loads(json.dumps(meta.metadata["segment_receipts"].value))[-1]["uri"]
    with open(segment, "r+b") as handle:
        handle.seek(5)
        byte = handle.read(1)
        handle.seek(5)
        handle.write(bytes([byte[0] ^ 1]))
    try:
        failed = materialized.platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat(),
                                           raise_on_error=False)
        assert not failed.success and "sha256" in materialized.platform.failure_text(failed)
    finally:
        with open(segment, "r+b") as handle:
            handle.seek(5)
            handle.write(byte)


def test_the_log_keeps_the_scoring_provenance_and_a_row_without_it_lands_with_nulls(tmp_path):
    """state_partition / state_storage_id / pointer_sequence round-trip through a real segment; a row
    written without them (a service that does not log them) reads back as null, never as a guess."""
    lake = build_resources(lakehouse_root=str(tmp_path / "lake"))["lakehouse"]
    log = PredictionLog(lake, "flight_delay")
    base = {"event_id": "e1", "partition_date": "2013-02-03", "prediction_id": "v-1/e1", "model_version": "v-1",
            "probability": 0.25, "predicted_positive": False, "source": "online", "request_id": "r1",
            "scored_at": "2013-02-03T10:00:00.000000+00:00"}
    log.append([{**base, "state_partition": "2013-02-03", "state_storage_id": 42, "pointer_sequence": 3},
                {**base, "event_id": "e2", "prediction_id": "v-1/e2"}])
    assert log.flush() == 2
    frame, segments = read_segments(lake, "flight_delay", "2013-02-03")
    assert frame.columns == list(COLUMNS) and [s["rows"] for s in segments] == [2]
    assert frame.select(PROVENANCE).rows() == [("2013-02-03", 42, 3), (None, None, None)]


def test_no_model_in_production_is_503_with_the_reason(tmp_path, spec):
    resources = build_resources(lakehouse_root=str(tmp_path / "lake"))
    with dg.instance_for_test() as instance:
        app = create_app(spec, instance, resources["lakehouse"], resources["model_registry"],
                         ServingConfig(platform_metrics=False))
        with TestClient(app) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "no model is in production" in ready.json()["detail"]
            r = client.post(URL, json={"year": 2013, "month": 1, "day": 1, "sched_dep_time": 515,
                                       "sched_arr_time": 819, "carrier": "UA", "flight": 1545, "origin": "EWR",
                                       "dest": "IAH", "distance": 1400, "hour": 5, "minute": 15,
                                       "time_hour": "2013-01-01T10:00:00Z"})
            assert r.status_code == 503 and r.json()["error"] == "no_model"
            assert "no model is in production" in r.json()["message"]
            assert client.get("/healthz").status_code == 200  # alive, just not ready


@pytest.mark.integration
def test_an_event_of_a_partition_without_serving_state_is_503_not_scored(served, spec):
    client, _, events = served
    event = event_dicts(events.filter(pl.col("hour").is_between(8, 18)).head(1), spec)[0]  # same UTC date
    other_day = {**event, "day": DAY.day + 1, "time_hour": event["time_hour"].replace(
        f"-{DAY.day:02d}T", f"-{DAY.day + 1:02d}T")}
    r = client.post(URL, json=other_day)
    assert r.status_code == 503 and r.json()["error"] == "no_state", r.text
    assert "no serving state for partition 2013-02-04" in r.json()["message"]
