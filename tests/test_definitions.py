"""The code location: loads from the defs folder, every asset carries its metadata, the graph matches
its reviewed snapshot, `dg` validates it, and importing it stays light."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import defs
from ml_assets.keys import UseCaseJobs, UseCaseKeys
from ml_assets.policies import STAGES

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def definitions_snapshot(definitions: dg.Definitions) -> dict:
    """What a reviewer should see change: keys, dependencies, partitions, checks, jobs, sensors (code
    versions excluded: they change with every edit by design)."""
    graph = definitions.resolve_asset_graph()
    assets = {}
    for spec in definitions.resolve_all_asset_specs():
        node = graph.get(spec.key)
        partitions = node.partitions_def
        assets[spec.key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": None if partitions is None else
            f"{partitions.cron_schedule} from {partitions.start.date()} ({partitions.timezone})",
            "group": spec.group_name, "stage": spec.tags.get("stage"), "kinds": sorted(spec.kinds),
            "owners": list(spec.owners),
            "checks": sorted(k.name for k in graph.asset_check_keys if k.asset_key == spec.key),
        }
    jobs = {j.name: sorted(k.to_user_string() for k in j.asset_layer.selected_asset_keys)
            for j in definitions.resolve_all_job_defs() if not j.name.startswith("__")}
    return {"assets": dict(sorted(assets.items())), "jobs": dict(sorted(jobs.items())),
            "sensors": sorted(s.name for s in definitions.sensors)}


def test_the_graph_matches_its_reviewed_snapshot():
    current = definitions_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), "graph changed: review, then UPDATE_SNAPSHOTS=1 pytest"


def test_every_job_of_the_use_case_resolves(spec):
    names = {job.name for job in defs.resolve_all_job_defs()}
    jobs = UseCaseJobs(spec.name)
    assert {jobs.ingest, jobs.daily, jobs.train, jobs.score, jobs.rollback, jobs.reproduce} <= names


def test_every_asset_is_described_grouped_owned_versioned_and_kinded(spec):
    specs = list(defs.resolve_all_asset_specs())
    assert len(specs) >= 17
    for asset in specs:
        name = asset.key.to_user_string()
        assert asset.description, name
        assert asset.group_name == asset.key.path[0] == asset.tags["use_case"], name
        assert asset.tags["stage"] in STAGES, name
        assert asset.owners == list(spec.owners), name
        assert asset.kinds, name
        assert asset.code_version, name


def test_lineage_runs_raw_to_predictions(spec):
    keys = UseCaseKeys(spec.name)
    graph = defs.resolve_asset_graph()
    assert {keys.features, keys.production_model} <= graph.get(keys.predictions).parent_keys
    assert keys.promotion_decision in graph.get(keys.production_model).parent_keys
    assert keys.labels in graph.get(keys.features).parent_keys
    assert keys.raw(spec.events_table) in graph.get(keys.labels).parent_keys


def test_features_read_labels_only_from_earlier_partitions(spec):
    keys = UseCaseKeys(spec.name)
    mapping = defs.resolve_asset_graph().get_partition_mapping(keys.features, keys.labels)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert mapping.end_offset == -spec.label_delay
    assert mapping.start_offset == spec.label_history_offsets[0]


@pytest.mark.parametrize("command", [["check", "defs"], ["list", "defs", "--json"]])
def test_dg_validates_and_lists_the_defs_folder(command):
    out = subprocess.run([str(Path(sys.executable).parent / "dg"), *command], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if command[0] == "list":
        assert "flight_delay/promotion_decision" in out.stdout


def test_code_location_import_does_not_load_heavy_libraries():
    """Every launched run re-imports the code location: torch & co. load only where used (DuckDB loads:
    it checks the use cases' SQL before any run)."""
    code = ("import sys, ml_assets.definitions; "
            "print(','.join(m for m in ('torch','whylogs','polars','pandas','matplotlib','numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_an_installed_copy_without_pyproject_loads_the_same_graph(tmp_path):
    """The container image installs the package without the project's pyproject.toml."""
    import shutil

    for package in ("ml_assets", "resources", "sensors"):
        shutil.copytree(ROOT / package, tmp_path / "site" / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import json, sys; from ml_assets.definitions import defs; "
            "print(json.dumps(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
