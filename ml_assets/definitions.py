"""The code location: every use case in the defs folder (one `defs.yaml` each, loaded as a
`UseCaseComponent`) plus the shared resources, executor and the run reaper."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dagster as dg

from resources import build_resources

# Single-run backfill policies are "beta" but central to running a year of partitions cheaply.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DEFS_FOLDER = Path(__file__).parent / "defs"


def build_definitions(resources: dict[str, Any] | None = None) -> dg.Definitions:
    from sensors.run_reaper import run_reaper

    use_cases = _use_cases()
    # Steps of a run share one process: a run started by the daemon pays the code location's import
    # once, not once per step (the Kubernetes location gives training jobs a pod per step instead).
    shared = dg.Definitions(resources=resources or build_resources(), executor=dg.in_process_executor,
                            sensors=[run_reaper])
    return dg.Definitions.merge(use_cases, shared)


def _use_cases() -> dg.Definitions:
    """The defs folder through Dagster Components; installed as a plain package (the container image has
    no pyproject.toml beside it) the same components are loaded from the same files directly."""
    from dagster_shared.error import DagsterError

    try:
        return dg.load_from_defs_folder(path_within_project=DEFS_FOLDER)
    except DagsterError as exc:
        if "Could not find config file" not in str(exc):
            raise
    from ml_assets.components import UseCaseComponent
    from ml_assets.spec.catalog import load_spec, spec_files

    return dg.Definitions.merge(*[UseCaseComponent(load_spec(p)).build_defs(None) for p in spec_files(DEFS_FOLDER)])


defs = build_definitions()
