"""Shared fixtures: a real temporary Dagster instance and lakehouse, and one materialized graph on a
few real days of 2013 that the integration tests inspect (built once per session)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
# Tests choose their sources and lakehouses explicitly: never the developer's landing folder.
os.environ.pop("ML_LANDING_URI", None)
# Every test session binds the use cases' SQL in DuckDB afresh (its own, empty SQL-check memo).
os.environ["ML_SQL_CHECK_MEMO"] = tempfile.mkdtemp(prefix="sql-check-memo-")

from ml_assets.definitions import build_definitions
from ml_assets.ops.runner import Platform
from ml_assets.spec.catalog import use_case
from resources import build_resources

FLIGHTS = use_case("flight_delay")

# A short real window: ingest five weeks, train on January (its last 7 days validate), evaluate
# and score the first week of February.
WINDOW = {
    "ingest": ("2013-01-01", "2013-02-07"),
    "train": ("2013-01-01", "2013-01-31"),
    "evaluate": ("2013-02-01", "2013-02-07"),
}


@dataclass
class Materialized:
    platform: Platform
    root: Path
    runs: dict[str, dg.ExecuteInProcessResult]

    @property
    def resources(self):
        return self.platform.defs.resources

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.platform.instance


def make_platform(root: Path, instance: dg.DagsterInstance, landing_root: Path | None = None) -> Platform:
    resources = build_resources(lakehouse_root=str(root), landing_root=str(landing_root) if landing_root else None)
    return Platform(build_definitions(resources), instance, log_level="ERROR")


def train_window(platform: Platform, spec=FLIGHTS, **overrides) -> dg.ExecuteInProcessResult:
    window = {"train_start": WINDOW["train"][0], "train_end": WINDOW["train"][1],
              "eval_start": WINDOW["evaluate"][0], "eval_end": WINDOW["evaluate"][1]} | overrides
    return platform.train(spec, **window)


@pytest.fixture(scope="session")
def spec():
    return FLIGHTS


@pytest.fixture(scope="session")
def materialized(tmp_path_factory) -> Materialized:
    root = tmp_path_factory.mktemp("lakehouse")
    with dg.instance_for_test() as instance:
        platform = make_platform(root, instance)
        runs = {
            "ingest": platform.ingest(FLIGHTS, *WINDOW["ingest"]),
            "train": train_window(platform),
            "score": platform.score(FLIGHTS, *WINDOW["evaluate"]),
        }
        yield Materialized(platform, root, runs)
