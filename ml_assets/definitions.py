"""The code location: every registered use case's graph plus the shared resources."""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from ml_assets.factory import build_use_case
from ml_assets.usecases import USE_CASES
from resources import build_resources

# Single-run backfill policies are "beta" but central to running a year of days cheaply.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(resources: dict[str, Any] | None = None) -> dg.Definitions:
    graphs = [build_use_case(spec) for spec in USE_CASES]
    # Steps of a run share one process: a run started by the daemon pays the code location's import
    # once, not once per step (the Kubernetes location gives training jobs a pod per step instead).
    shared = dg.Definitions(resources=resources or build_resources(), executor=dg.in_process_executor)
    return dg.Definitions.merge(*graphs, shared)


defs = build_definitions()
