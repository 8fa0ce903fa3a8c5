"""A use case is data: a new dataset declared in YAML alone (weekly partitions, unix timestamps, one
CSV) loads as a Dagster Component in a sandboxed defs folder and runs the whole graph for real."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from ml_assets.components import UseCaseComponent
from ml_assets.keys import OUTCOME_TAG, UseCaseKeys
from ml_assets.ops.runner import Platform
from resources import build_resources

pytestmark = pytest.mark.integration

WEEKS, PER_WEEK = 30, 400


def _readings(path) -> None:
    """Synthetic machine readings: failure risk grows with temperature; sites differ in base rate."""
    rng = np.random.default_rng(3)
    start = datetime(2021, 1, 4, tzinfo=UTC).timestamp()  # a Monday
    n = WEEKS * PER_WEEK
    ts = np.sort(rng.uniform(start, start + WEEKS * 7 * 86400 - 1, n)).astype(np.int64)
    site = rng.choice(["north", "south", "east"], n)
    temp = rng.normal(60, 10, n)
    load = rng.uniform(0, 1, n)
    risk = 1 / (1 + np.exp(-((temp - 65) / 4 + (site == "south") * 0.8 - 1.2)))
    pl.DataFrame({"reading_id": np.arange(n), "ts": ts, "site": site, "temp": temp.round(2), "load": load.round(3),
                  "failed": (rng.uniform(0, 1, n) < risk).astype(np.int64)}).write_csv(path)


def _defs_yaml(csv) -> dict:
    first = datetime(2021, 1, 4).date()
    week = timedelta(weeks=1)
    return {"type": "ml_assets.components.UseCaseComponent", "attributes": {
        "name": "machine_failure", "description": "Will a machine reading be followed by a failure?",
        "owners": ["team:reliability"], "cadence": "weekly", "timezone": "UTC",
        "partitions_start": str(first), "partitions_end": str(first + (WEEKS - 1) * week),
        "events_table": "readings", "event_id_columns": ["reading_id"],
        "tables": {"readings": {
            "source": {"uri": str(csv)}, "event_time": {"column": "ts", "format": "unix_seconds"},
            "primary_key": ["reading_id"],
            "columns": {"reading_id": {"dtype": "int64", "nullable": False}, "ts": {"dtype": "int64"},
                        "site": {"dtype": "string", "allowed": ["north", "south", "east"]},
                        "temp": {"dtype": "float64"}, "load": {"dtype": "float64", "min": 0, "max": 1},
                        "failed": {"dtype": "int64", "min": 0, "max": 1}}}},
        "label": {"name": "failure", "expression": "failed = 1", "delay": "1w", "group_columns": ["site"]},
        "protected_attributes": ["shift"],
        "features": {"derived": {"site": "e.site", "temp": "e.temp", "load": "e.load",
                                 "shift": "CASE WHEN hour(e._event_time) < 12 THEN 'am' ELSE 'pm' END"},
                     "rolling_rates": [{"name": "site", "keys": ["site"], "windows": ["4w"]}],
                     "numeric": ["temp", "load", "site_rate_4w"], "categorical": ["site"],
                     "identifier_columns": ["event_id"]},
        "model": {"hidden_sizes": [16], "batch_size": 128},
        "training": {"start": str(first), "end": str(first + 15 * week), "validation": "3w"},
        "evaluation": {"start": str(first + 16 * week), "end": str(first + 25 * week), "slices": ["site"],
                       "baseline_feature": "site_rate_4w", "min_slice_rows": 100},
    }}


def test_a_yaml_only_use_case_loads_validates_and_runs(tmp_path):
    csv = tmp_path / "readings.csv"
    _readings(csv)
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=UseCaseComponent, defs_path="machine_failure",
                                          defs_yaml_contents=_defs_yaml(csv))
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, UseCaseComponent) and component.spec.cadence == "weekly"
            spec = component.spec
            keys = UseCaseKeys(spec.name)
            full = dg.Definitions.merge(defs, dg.Definitions(
                resources=build_resources(lakehouse_root=str(tmp_path / "lake")), executor=dg.in_process_executor))
            partitions = full.resolve_asset_graph().get(keys.features).partitions_def
            assert isinstance(partitions, dg.TimeWindowPartitionsDefinition) and partitions.cron_schedule == "0 0 * * 1"
            with dg.instance_for_test() as instance:
                platform = Platform(full, instance, log_level="ERROR")
                last = str(spec.evaluation.end)
                ingest = platform.ingest(spec, str(spec.partitions_start), last)
                assert ingest.success, platform.failure_text(ingest)
                meta = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=keys.raw("readings"), asset_partitions=[str(spec.partitions_start)]),
                    limit=1).records[0].asset_materialization.metadata
                assert 300 < meta["rows_written"].value < 500  # one week of readings, routed by unix time
                train = platform.train(spec)
                assert train.success, platform.failure_text(train)
                decision = train.asset_materializations_for_node("__".join(keys.promotion_decision.path))[0]
                assert instance.get_run_by_id(train.run_id).tags[OUTCOME_TAG] == "promoted", \
                    decision.metadata["rules"].value
                evaluation = train.asset_materializations_for_node("__".join(keys.model_evaluation.path))[0]
                assert evaluation.metadata["challenger_auroc"].value > evaluation.metadata["baseline_auroc"].value
                report = evaluation.metadata["report"].value
                assert "Fairness: `shift`" in report and "equalized-odds" in report.lower()
                assert "Fairness: `shift`" in decision.metadata["model_card"].value
                assert platform.score(spec, str(spec.evaluation.start), last).success
                # The next week through the whole per-partition loop: raw .. predictions, drift, performance.
                nxt = str(spec.shift(spec.evaluation.end, 1))
                daily = platform.daily(spec, nxt)
                assert daily.success, platform.failure_text(daily)
                for key in (keys.raw("readings"), keys.labels, keys.features, keys.feature_profiles,
                            keys.predictions, keys.drift_report, keys.realized_performance):
                    assert nxt in instance.get_materialized_partitions(key), key
                # The records of that partition tell the truth about what served it.
                served = full.resources["model_registry"].production(spec.name)
                threshold = full.resources["model_registry"].get(spec.name, served.version).threshold

                def meta(key):
                    return instance.fetch_materializations(dg.AssetRecordsFilter(
                        asset_key=key, asset_partitions=[nxt]), limit=1).records[0].asset_materialization.metadata

                realized = meta(keys.realized_performance)
                assert realized["model_version"].value == served.version
                assert realized["threshold"].value == threshold  # the version's own, not 0.5
                assert realized["rows"].value > 0 and realized["f1"].value > 0
                assert meta(keys.drift_report)["reference_version"].value == served.version
                assert meta(keys.predictions)["weights_sha256"].value == served.sha256


def test_a_broken_yaml_use_case_fails_at_load_naming_file_field_and_reason(tmp_path):
    csv = tmp_path / "readings.csv"
    _readings(csv)
    broken = _defs_yaml(csv)
    broken["attributes"]["features"]["numeric"].append("humidity")
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=UseCaseComponent, defs_path="machine_failure",
                                          defs_yaml_contents=broken)
        with pytest.raises(Exception) as info, sandbox.load_component_and_build_defs(defs_path=path):
            pass
    text = str(info.value) + str(info.value.__cause__)
    assert "machine_failure/defs.yaml: features.numeric" in text and "'humidity'" in text


def test_a_wrong_type_in_yaml_is_reported_with_its_line(tmp_path):
    broken = _defs_yaml(tmp_path / "x.csv")
    broken["attributes"]["promotion"] = {"confidence": "high"}
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=UseCaseComponent, defs_path="machine_failure",
                                          defs_yaml_contents=broken)
        with pytest.raises(Exception) as info, sandbox.load_component_and_build_defs(defs_path=path):
            pass
    text = str(info.value.__cause__)
    assert "attributes.promotion.confidence at" in text and "machine_failure/defs.yaml:" in text
