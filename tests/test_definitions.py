"""The code location loads, every asset carries its metadata, and importing it stays light."""

import subprocess
import sys

import dagster as dg

from ml_assets.definitions import defs
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import STAGES


def _asset_specs():
    return list(defs.resolve_all_asset_specs())


def test_definitions_load_and_jobs_resolve(spec):
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {f"{spec.name}__ingest", f"{spec.name}__train_evaluate_promote", f"{spec.name}__score",
            f"{spec.name}__rollback"} <= names


def test_every_asset_is_described_grouped_owned_versioned_and_kinded():
    specs = _asset_specs()
    assert len(specs) >= 13
    for asset in specs:
        name = asset.key.to_user_string()
        assert asset.description, name
        assert asset.group_name in STAGES, name
        assert asset.owners, name
        assert asset.kinds, name
        assert asset.code_version, name


def test_lineage_runs_raw_to_predictions(spec):
    keys = UseCaseKeys(spec)
    graph = defs.resolve_asset_graph()
    upstream = graph.get(keys.predictions).parent_keys
    assert keys.features in upstream and keys.production_model in upstream
    assert keys.labels in graph.get(keys.features).parent_keys
    assert keys.raw(spec.events_table) in graph.get(keys.labels).parent_keys


def test_features_read_labels_only_from_earlier_days(spec):
    keys = UseCaseKeys(spec)
    graph = defs.resolve_asset_graph()
    mapping = graph.get_partition_mapping(keys.features, keys.labels)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert mapping.end_offset == -spec.label.delay_days
    assert mapping.start_offset == spec.label_history_offsets[0]


def test_code_location_import_does_not_load_heavy_libraries():
    """Every launched run re-imports the code location: torch & co. must load only where used."""
    code = ("import sys, ml_assets.definitions; "
            "print(','.join(m for m in ('torch','whylogs','polars','duckdb','pandas','matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
