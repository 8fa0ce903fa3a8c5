"""Online predictions are data: real requests to the real app are logged, landed as the
`online_predictions` partition, and then read (verified) by realized performance, model health, drift
and `mlp trace`, which name the online file and count exactly its rows, each (event, version) once."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_assets import lineage, tables
from ml_assets.audit.ledger import Ledger
from ml_assets.audit.trace import render, trace
from ml_assets.keys import UseCaseJobs, UseCaseKeys
from tests.test_serving import DAY, URL, event_dicts, served  # noqa: F401  (the module-scoped app fixture)

pytestmark = pytest.mark.integration

OTHER_DAY = date(2013, 2, 2)  # scored in batch, never served online
SAMPLE, RETRIED = 120, 10


def pairwise_auroc(prob: np.ndarray, y: np.ndarray) -> float:
    """AUROC by its definition (every positive/negative pair; ties count half): independent of the code."""
    pos, neg = prob[y == 1], prob[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(pos) * len(neg)))


def disk_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def monitoring_job(materialized, spec):
    keys = UseCaseKeys(spec.name)
    selection = [keys.realized_performance, keys.model_health, keys.drift_report]
    return materialized.platform.defs.resolve_implicit_job_def_def_for_assets(selection), selection


def run_monitoring(materialized, spec, partition: str, raise_on_error: bool = True):
    job, selection = monitoring_job(materialized, spec)
    return job.execute_in_process(instance=materialized.instance, partition_key=partition, asset_selection=selection,
                                  raise_on_error=raise_on_error)


def latest_record(materialized, key, partition: str) -> dict:
    receipt = lineage.require_partitions(materialized.instance, key, [partition])[partition]
    return json.loads(lineage.verify_recorded(materialized.resources["lakehouse"], receipt))


@pytest.fixture(scope="module")
def online_world(served, materialized, spec):  # noqa: F811
    """SAMPLE real events of DAY answered online (RETRIED of them retried under a new request id, as a
    client does after a timeout) and one event no batch partition holds; landed; monitoring run on DAY
    and on OTHER_DAY (no online partition)."""
    client, app, events = served
    payload = event_dicts(events.sample(SAMPLE, seed=11, shuffle=True), spec)
    answers = []
    for i in range(0, SAMPLE, 40):
        r = client.post(URL, json={"events": payload[i:i + 40]}, headers={"x-request-id": f"online-mon-{i}"})
        assert r.status_code == 200, r.text
        answers += r.json()["predictions"]
    retried = client.post(URL, json={"events": payload[:RETRIED]}, headers={"x-request-id": "online-mon-retry"})
    assert retried.status_code == 200
    batch_ids = set(events.select(spec.event_id_columns).rows())
    unseen = {**payload[0], "flight": 9990}
    assert tuple(unseen[c] for c in spec.event_id_columns) not in batch_ids
    only = client.post(URL, json=unseen, headers={"x-request-id": "online-mon-unseen"})
    assert only.status_code == 200, only.text
    app.state.service.log.flush()
    assert materialized.platform.run(UseCaseJobs(spec.name).serving, first=DAY.isoformat()).success
    assert run_monitoring(materialized, spec, DAY.isoformat()).success
    assert run_monitoring(materialized, spec, OTHER_DAY.isoformat()).success
    keys = UseCaseKeys(spec.name)
    lake = materialized.resources["lakehouse"]
    receipt = lineage.require_partitions(materialized.instance, keys.online_predictions, [DAY.isoformat()])[
        DAY.isoformat()]
    assert disk_sha256(receipt.uri) == receipt.sha256
    landed = pl.read_parquet(receipt.uri)  # read independently of the code under test
    batch, _ = tables.read_partitions(materialized.platform, lake, spec, keys.predictions, [DAY])
    labels, _ = tables.read_partitions(materialized.platform, lake, spec, keys.labels, [DAY])
    yield {"answers": answers, "retried": retried.json()["predictions"], "unseen": only.json()["predictions"][0],
           "receipt": receipt, "landed": landed, "batch": batch, "labels": labels.select("event_id", "label")}


def distinct(landed: pl.DataFrame) -> pl.DataFrame:
    """(event, version) once, the latest answer: written here from the rule, not imported."""
    return landed.sort("scored_at").group_by("event_id", "model_version").agg(pl.all().last())


def test_realized_performance_names_the_online_file_and_counts_exactly_its_rows(online_world, materialized, spec):
    keys = UseCaseKeys(spec.name)
    record = latest_record(materialized, keys.realized_performance, DAY.isoformat())
    landed, receipt = online_world["landed"], online_world["receipt"]
    online = record["sources"]["online"]
    assert online["file"]["uri"] == receipt.uri and online["file"]["sha256"] == receipt.sha256
    assert online["file"]["storage_id"] == receipt.storage_id
    mine = landed.filter(pl.col("request_id").str.starts_with("online-mon-"))
    assert mine.height == SAMPLE + RETRIED + 1  # every answer was logged and landed, retries included
    assert online["file"]["predictions"] == landed.height
    once = distinct(landed)
    assert online["file"]["distinct"] == once.height
    assert distinct(mine).height == SAMPLE + 1  # golden: the retries count once
    labelled = once.join(online_world["labels"], on="event_id", how="inner")
    assert online["file"]["labelled"] == labelled.height
    (version,) = sorted(once.get_column("model_version").unique())
    figures = online["versions"][version]
    assert figures["rows"] == labelled.height
    assert figures["auroc"] == pytest.approx(pairwise_auroc(labelled["probability"].to_numpy(),
                                                            labelled["label"].to_numpy()), abs=1e-6)
    # The batch source is the record's top level, as before online scoring, and is its own file.
    batch = record["sources"]["batch"]
    assert batch["file"]["predictions"] == online_world["batch"].height and record["model_version"] == version
    assert record["rows"] == batch["versions"][version]["rows"] == batch["file"]["labelled"]
    meta = materialized.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=keys.realized_performance, asset_partitions=[DAY.isoformat()]), limit=1,
        ascending=False).records[0].asset_materialization.metadata
    assert meta["input_receipts"].value[keys.online_predictions.to_user_string()] == {
        DAY.isoformat(): receipt.storage_id}
    assert receipt.uri in meta["online"].value
    # The UI copy says what the record says (floats as the UI rounds them).
    assert (meta["online_predictions"].value, meta["online_rows"].value) == (landed.height, labelled.height)
    assert meta["online_versions"].value == version
    landing = _metadata(materialized, keys.online_predictions, DAY.isoformat())
    assert landing["rows_without_state_provenance"] == 0  # the service logs every answer's provenance
    assert meta["online_auroc"].value == pytest.approx(figures["auroc"], abs=1e-4)
    # A partition never served online: absent, and the record says so.
    other = latest_record(materialized, keys.realized_performance, OTHER_DAY.isoformat())
    assert other["online"] == "none" and other["sources"]["online"] is None and other["auroc"] is not None


def test_model_health_judges_batch_and_reports_online_per_version_with_the_skew(online_world, materialized, spec):
    keys = UseCaseKeys(spec.name)
    doc = latest_record(materialized, keys.model_health, DAY.isoformat())
    once = distinct(online_world["landed"])
    labelled = once.join(online_world["labels"], on="event_id", how="inner")
    assert doc["judged_source"] == "batch" and doc["rows"] == online_world["batch"].height
    online = doc["sources"]["online"]
    assert online["file"]["sha256"] == online_world["receipt"].sha256
    assert online["file"]["predictions"] == online_world["landed"].height
    assert (online["file"]["distinct"], online["file"]["labelled"]) == (once.height, labelled.height)
    v = doc["model_version"]
    figures = online["versions"][v]
    assert figures["realized"]["rows"] == labelled.height and figures["estimated"]["rows"] == once.height
    assert figures["realized"]["auroc"] == pytest.approx(pairwise_auroc(labelled["probability"].to_numpy(),
                                                                        labelled["label"].to_numpy()), abs=1e-9)
    assert figures["promised_auroc"] == doc["promised"]["auroc"]
    assert figures["gap"]["realized"] == pytest.approx(figures["realized"]["auroc"] - doc["promised"]["auroc"])
    # skew: every distinct online event that batch also scored with the same version, and they agree
    both = once.join(online_world["batch"], on=["event_id", "model_version"], how="inner")
    assert online["skew"]["events"] == both.height == once.height - 1  # all but the unseen event
    assert online["skew"]["max_abs_difference"] <= 1e-6
    meta = _metadata(materialized, keys.model_health, DAY.isoformat())
    assert (meta["online_predictions"], meta["online_distinct"]) == (online["file"]["predictions"], once.height)
    assert meta["judged_source"] == "batch" and meta["online_skew_max"] <= 1e-6
    assert meta["online_realized_auroc"] == pytest.approx(figures["realized"]["auroc"], abs=1e-4)
    assert latest_record(materialized, keys.model_health, OTHER_DAY.isoformat())["online"] == "none"


def _metadata(materialized, key, partition: str) -> dict:
    record = materialized.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1, ascending=False).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_drift_scores_everything_served_each_event_once_and_each_source_alone(online_world, materialized, spec):
    keys = UseCaseKeys(spec.name)
    report = latest_record(materialized, keys.drift_report, DAY.isoformat())
    sources = report["prediction_sources"]
    once = distinct(online_world["landed"])
    files = report["prediction_files"]["online"]
    assert [f["uri"] for f in files] == [online_world["receipt"].uri] and files[0]["distinct"] == once.height
    assert sources["online"]["rows"] == once.height and 0 <= sources["online"]["hellinger"] <= 1
    window = spec.partition_range(*report["window"])
    batch, _ = tables.read_partitions(materialized.platform, materialized.resources["lakehouse"], spec,
                                      keys.predictions, window, missing_ok=True)
    assert sources["batch"]["rows"] == batch.height
    new = once.join(batch, on=["event_id", "model_version"], how="anti").height
    assert new == 1  # the event no batch partition holds
    assert sources["combined"] == {"rows": batch.height + new, "from_online": once.height, "judged": True}
    other = latest_record(materialized, keys.drift_report, OTHER_DAY.isoformat())  # its window ends before DAY
    assert other["prediction_files"]["online"] == "none" and other["prediction_sources"]["online"] == "none"
    # Without online rows batch alone is everything served: its score is the judged one, not a second profile.
    assert other["prediction_sources"]["batch"]["hellinger"] == other["columns"]["probability"]["score"]


def test_a_flipped_byte_in_the_online_file_fails_monitoring_naming_asset_partition_file_and_both_hashes(
        online_world, materialized, spec):
    receipt = online_world["receipt"]
    with open(receipt.uri, "rb") as handle:
        original = handle.read()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    actual = hashlib.sha256(bytes(flipped)).hexdigest()
    try:
        with open(receipt.uri, "wb") as handle:
            handle.write(bytes(flipped))
        job, _ = monitoring_job(materialized, spec)
        for key in (UseCaseKeys(spec.name).realized_performance, UseCaseKeys(spec.name).model_health):
            result = job.execute_in_process(instance=materialized.instance, partition_key=DAY.isoformat(),
                                            asset_selection=[key], raise_on_error=False)
            text = materialized.platform.failure_text(result)
            assert not result.success
            for part in (f"asset {spec.name}/online_predictions", f"partition {DAY.isoformat()}", receipt.uri,
                         receipt.sha256, actual):
                assert part in text, (key, part, text)
    finally:
        with open(receipt.uri, "wb") as handle:
            handle.write(original)


def ledger_of(materialized, spec) -> Ledger:
    res = materialized.resources
    return Ledger(materialized.instance, res["lakehouse"], res["model_registry"], spec.name)


def test_trace_shows_batch_and_online_records_of_one_id_with_source_request_id_and_scored_at(
        online_world, materialized, spec):
    retried = online_world["retried"][0]["prediction_id"]
    t = trace(ledger_of(materialized, spec), retried)
    assert t.verified, render(t)
    assert t.source == "batch" and t.prediction_id == retried
    online = [r for r in t.records if r["source"] == "online"]
    assert t.records[0]["source"] == "batch" and len(online) >= 2
    assert {"online-mon-retry"} <= {r["request_id"] for r in online}
    assert all(r["scored_at"] and r["sha256"] == online_world["receipt"].sha256 for r in online)
    rows = [h for h in t.hops if h.kind == "prediction" and h.ids.get("source") == "online"]
    assert len(rows) == len(online) and all(h.ids["request_id"] for h in rows)
    landed = next(h for h in t.hops if h.kind == "online_predictions")
    assert landed.verified and landed.uri == online_world["receipt"].uri
    assert disk_sha256(landed.uri) == landed.sha256
    text = render(t)
    assert "online-mon-retry" in text and "online" in text.splitlines()[2]


def test_mlp_trace_finds_an_online_only_prediction_to_its_weights_decision_and_training(
        online_world, materialized, spec):
    from tests.test_audit import mlp

    pid = online_world["unseen"]["prediction_id"]
    t = trace(ledger_of(materialized, spec), pid)
    assert t.verified and t.source == "online" and [r["source"] for r in t.records] == ["online"], render(t)
    assert t.records[0]["request_id"] == "online-mon-unseen"
    # The service logged which serving state and which pointer answered: the trace follows them, not a guess.
    assert t.records[0]["state_partition"] and t.records[0]["state_storage_id"] is not None
    state = next(h for h in t.hops if h.kind == "serving_state")
    assert state.verified and "not recorded" not in state.detail, state
    kinds = {h.kind for h in t.hops}
    assert {"prediction", "online_predictions", "model", "online_pointer", "change", "decision", "training_set",
            "serving_state"} <= kinds, kinds
    model = next(h for h in t.hops if h.kind == "model")
    assert model.sha256 == disk_sha256(ledger_of(materialized, spec).registry.get(spec.name,
                                                                                    t.model_version).artifact_uri)
    pointer = next(h for h in t.hops if h.kind == "online_pointer")
    assert pointer.ids["model_version"] == t.model_version and pointer.ids["weights_sha256"] == model.sha256
    out = mlp(materialized, "trace", pid)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "source=online" in out.stdout and "request_id=online-mon-unseen" in out.stdout
    assert "do NOT" not in out.stdout


def test_an_answer_logged_without_its_provenance_is_traced_as_not_recorded_never_guessed(
        online_world, materialized, spec):
    """A log row without pointer sequence or serving-state id (a service that did not log them): the trace
    says so at those hops instead of inferring a pointer or a state from timestamps."""
    from ml_assets.audit.trace import _online_pointer, _state_hop, find_online

    ledger = ledger_of(materialized, spec)
    (m, row), *_ = find_online(ledger, online_world["unseen"]["prediction_id"])[0]
    bare = {**row, "pointer_sequence": None, "state_partition": None, "state_storage_id": None}
    pointer, chosen = _online_pointer(ledger, row["model_version"], bare)
    state, found = _state_hop(ledger, m, bare)
    assert chosen is None and found is None
    for hop in (pointer, state):
        assert hop.verified is None and hop.uri is None and "did not record" in hop.detail, hop
    wrong = {**row, "pointer_sequence": 10_000}  # a sequence no pointer has: not verified, named
    assert _online_pointer(ledger, row["model_version"], wrong)[0].verified is False
    assert _online_pointer(ledger, row["model_version"], row)[0].verified  # the recorded one verifies
