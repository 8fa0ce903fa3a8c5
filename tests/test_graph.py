"""The whole graph materialized on five real weeks against a temporary Dagster instance: every
record it writes about itself is checked against the bytes and the instance."""

import json

import dagster as dg
import polars as pl
import pytest

from ml_assets import lineage, tables
from ml_assets.features.compute import EVENT_ID
from ml_assets.keys import CHALLENGER_TAG, OUTCOME_TAG, UseCaseKeys
from ml_assets.records import Decision
from ml_assets.registry.models import production_pointer
from ml_assets.text import readable
from resources.lakehouse import sha256_bytes
from tests.conftest import WINDOW

pytestmark = pytest.mark.integration


def _days(spec, window):
    return spec.partition_range(*WINDOW[window])


def _meta(instance, key, partition=None):
    flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    return instance.fetch_materializations(flt, limit=1).records[0].asset_materialization.metadata


def test_every_run_succeeded(materialized):
    assert all(r.success for r in materialized.runs.values())


def test_every_partition_records_rows_schema_and_a_true_sha256(materialized, spec):
    instance, lake = materialized.instance, materialized.resources["lakehouse"]
    keys = UseCaseKeys(spec.name)
    days = [d.isoformat() for d in _days(spec, "ingest")]
    for key in [keys.raw("flights"), keys.raw("weather"), keys.labels, keys.features]:
        assert set(days) <= instance.get_materialized_partitions(key), key
        meta = _meta(instance, key, days[3])
        data = lake.read_bytes(meta["uri"].value, None)
        assert sha256_bytes(data) == meta["sha256"].value  # the record is true of the bytes
        frame = pl.read_parquet(data)
        assert meta["dagster/row_count"].value == frame.height > 0
        assert [c.name for c in meta["dagster/column_schema"].schema.columns] == frame.columns
    raw = _meta(instance, keys.raw("flights"), days[3])
    assert raw["rows_read"].value == raw["rows_written"].value + raw["quarantined_rows"].value
    assert len(raw["source_sha256"].value) == 64
    profile = _meta(instance, keys.feature_profiles, days[3])
    assert "| column |" in profile["summary"].value


def test_input_receipts_name_the_materializations_that_were_read(materialized, spec):
    instance = materialized.instance
    keys = UseCaseKeys(spec.name)
    day = _days(spec, "evaluate")[2].isoformat()
    receipts = _meta(instance, keys.features, day)["input_receipts"].value
    raw_id = receipts[keys.raw("flights").to_user_string()][day]
    record = lineage.record_by_storage_id(instance, keys.raw("flights"), raw_id)
    assert record.partition_key == day
    labels = receipts[keys.labels.to_user_string()]
    assert max(labels) < day  # rolling rates read only earlier partitions' labels


def test_predictions_one_per_feature_row_by_the_recorded_production_version(materialized, spec):
    keys = UseCaseKeys(spec.name)
    lake = materialized.resources["lakehouse"]
    days = _days(spec, "evaluate")
    preds, _ = tables.read_partitions(materialized.platform, lake, spec, keys.predictions, days)
    feats, _ = tables.read_partitions(materialized.platform, lake, spec, keys.features, days)
    assert preds.height == feats.height
    assert preds.get_column("prediction_id").n_unique() == preds.height
    assert set(preds.get_column(EVENT_ID)) == set(feats.get_column(EVENT_ID))
    pointer = production_pointer(materialized.instance, materialized.resources["model_registry"], spec.name)
    assert preds.get_column("model_version").unique().to_list() == [pointer.version]
    assert preds.get_column("probability").is_between(0, 1).all()
    assert preds.schema["probability"] == pl.Float64
    meta = _meta(materialized.instance, keys.predictions, days[0].isoformat())
    assert meta["weights_sha256"].value == pointer.sha256


def test_honest_auroc_and_a_decision_with_its_interval(materialized, spec):
    """Point-in-time features on these days are weakly predictive; a high AUROC would mean leakage."""
    keys = UseCaseKeys(spec.name)
    evaluation = _meta(materialized.instance, keys.model_evaluation)
    assert 0.55 < evaluation["challenger_auroc"].value < 0.80
    assert evaluation["window"].value == "..".join(WINDOW["evaluate"])  # the window it really evaluated
    low, high = evaluation["auroc_difference_low"].value, evaluation["auroc_difference_high"].value
    assert low <= evaluation["auroc_difference"].value <= high
    decision = Decision.model_validate(_meta(materialized.instance, keys.promotion_decision)["decision"].value)
    auroc_rule = next(r for r in decision.rules if r.name == "auroc")
    assert readable(auroc_rule.numbers["low"]) == low  # the metadata shows the rule's number, rounded
    run = materialized.instance.get_run_by_id(materialized.runs["train"].run_id)
    assert run.tags[OUTCOME_TAG] == ("promoted" if decision.promote else "refused")
    assert run.tags[CHALLENGER_TAG] == evaluation["model_version"].value


def test_registry_records_lineage_of_the_trained_version(materialized, spec):
    registry = materialized.resources["model_registry"]
    keys = UseCaseKeys(spec.name)
    (record,) = registry.versions(spec.name)
    inputs = record.training_set.inputs
    days = {d.isoformat() for d in _days(spec, "train")}
    assert set(inputs[keys.features.to_user_string()]) == days == set(inputs[keys.labels.to_user_string()])
    for receipt in inputs[keys.features.to_user_string()].values():
        assert sha256_bytes(materialized.resources["lakehouse"].read_bytes(receipt.uri, receipt.sha256)) == \
            receipt.sha256
    assert record.hyperparameters["seed"] == spec.model.seed
    assert record.training_curve and record.reference_profile is not None


def test_rematerializing_a_partition_is_idempotent(materialized, spec):
    keys = UseCaseKeys(spec.name)
    day = WINDOW["ingest"][0]
    assets = (keys.raw("flights"), keys.labels, keys.features)
    before = {k: _meta(materialized.instance, k, day)["sha256"].value for k in assets}
    assert materialized.platform.ingest(spec, day, day).success
    assert {k: _meta(materialized.instance, k, day)["sha256"].value for k in assets} == before


def test_report_plot_and_card_are_stored_with_true_hashes(materialized, spec):
    lake = materialized.resources["lakehouse"]
    keys = UseCaseKeys(spec.name)
    evaluation = _meta(materialized.instance, keys.model_evaluation)
    report = lake.read_bytes(evaluation["report_uri"].value, evaluation["report_sha256"].value).decode()
    assert "baseline" in report and "interval" in report
    assert report == evaluation["report"].value
    png = lake.read_bytes(evaluation["plot_uri"].value, evaluation["plot_sha256"].value)
    assert png.startswith(b"\x89PNG")
    decision = _meta(materialized.instance, keys.promotion_decision)
    card = lake.read_bytes(decision["model_card_uri"].value, decision["model_card_sha256"].value).decode()
    assert card == decision["model_card"].value and "Promotion decision" in card


def test_the_production_record_is_the_pointer_file(materialized, spec):
    lake = materialized.resources["lakehouse"]
    meta = _meta(materialized.instance, UseCaseKeys(spec.name).production_model)
    pointer = json.loads(lake.read_bytes(meta["pointer_uri"].value, meta["pointer_sha256"].value))
    assert pointer["version"] == meta["model_version"].value and pointer["sequence"] == meta["sequence"].value


def test_a_flipped_byte_in_any_kind_of_platform_file_is_detected(materialized, spec):
    """Property: for every kind of file the platform writes and records (partitions, profiles, refs,
    training set, weights, pointer, reports), any flipped byte fails the verified read."""
    import random
    from pathlib import Path

    from ml_assets.errors import IntegrityError

    lake = materialized.resources["lakehouse"]
    registry = materialized.resources["model_registry"]
    keys = UseCaseKeys(spec.name)
    day = WINDOW["evaluate"][0]
    recorded = []
    for key in (keys.raw("flights"), keys.labels, keys.features, keys.feature_profiles, keys.predictions):
        meta = _meta(materialized.instance, key, day)
        recorded.append((meta["uri"].value, meta["sha256"].value))
    for key in (keys.training_set, keys.candidate_model, keys.model_evaluation, keys.promotion_decision,
                keys.production_model):
        meta = _meta(materialized.instance, key)
        recorded.append((meta["ref_uri"].value, meta["ref_sha256"].value))
    evaluation = _meta(materialized.instance, keys.model_evaluation)
    recorded += [(evaluation["report_uri"].value, evaluation["report_sha256"].value),
                 (evaluation["plot_uri"].value, evaluation["plot_sha256"].value)]
    (record,) = registry.versions(spec.name)
    recorded += [(record.artifact_uri, record.sha256), (record.training_set.uri, record.training_set.sha256),
                 (record.reference_profile.uri, record.reference_profile.sha256)]
    rng = random.Random(11)
    for uri, sha in recorded:
        path = Path(uri)
        original = path.read_bytes()
        assert lake.read_bytes(uri, sha) == original
        try:
            for _ in range(5):
                flipped = bytearray(original)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                path.write_bytes(bytes(flipped))
                with pytest.raises(IntegrityError, match=sha):
                    lake.read_bytes(uri, sha)
        finally:
            path.write_bytes(original)
