"""What the deploy tests run as separate processes. Each command builds a fresh `DagsterInstance` from
$DAGSTER_HOME (deploy/dagster.yaml: PostgreSQL) and prints one JSON line; nothing is shared in memory
with the test process, so what a later command reads was persisted by an earlier process.

    python -m tests.deploy._procs write          # the demo graph: ingest, train + evaluate + promote, score
    python -m tests.deploy._procs ingest DAY     # one more day of raw data (a new event for the sensor)
    python -m tests.deploy._procs read           # run history, asset history, provenance, sensor cursors
"""

from __future__ import annotations

import json
import sys
from typing import Any

import dagster as dg

USE_CASE = "flight_delay"


def _platform():
    from ml_assets.definitions import build_definitions
    from ml_assets.ops.runner import Platform

    return Platform(build_definitions(), dg.DagsterInstance.get(), log_level="ERROR")


def write() -> dict[str, Any]:
    from ml_assets.keys import OUTCOME_TAG, UseCaseJobs
    from ml_assets.ops.runner import Platform
    from ml_assets.spec.catalog import use_case
    from tests.deploy.conftest import WINDOW

    spec = use_case(USE_CASE)
    platform = _platform()
    results = {
        "ingest": platform.ingest(spec, *WINDOW["ingest"]),
        "train": platform.train(spec, train_start=WINDOW["train"][0], train_end=WINDOW["train"][1],
                                eval_start=WINDOW["evaluate"][0], eval_end=WINDOW["evaluate"][1]),
        "score": platform.score(spec, *WINDOW["evaluate"]),
    }
    # The partition loop on the scored week: drift, realized performance and model health per partition.
    results["daily"] = platform.daily(spec, *WINDOW["evaluate"], raise_on_error=False)
    results["backtest"] = platform.run(UseCaseJobs(spec.name).backtest, raise_on_error=False)
    train = platform.instance.get_run_by_id(results["train"].run_id)
    return {"runs": {name: r.run_id for name, r in results.items()},
            "success": {name: r.success for name, r in results.items()},
            "train_outcome": train.tags.get(OUTCOME_TAG),
            "train_failure": Platform.failure_text(results["train"]),
            "storage": type(platform.instance.event_log_storage).__name__}


def ingest(day: str) -> dict[str, Any]:
    from ml_assets.spec.catalog import use_case

    result = _platform().ingest(use_case(USE_CASE), day, day)
    return {"run_id": result.run_id, "success": result.success}


def read() -> dict[str, Any]:
    from ml_assets.keys import UseCaseKeys

    instance = dg.DagsterInstance.get()
    keys = UseCaseKeys(USE_CASE)
    runs = [{"run_id": r.run_id, "job": r.job_name, "status": r.status.value, "tags": dict(r.tags)}
            for r in instance.get_runs()]
    assets = {}
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(key, limit=1000).records
        assets[key.to_user_string()] = {"count": len(records),
                                        "runs": sorted({r.run_id for r in records}),
                                        "partitions": sorted({r.partition_key for r in records if r.partition_key})}
    latest = instance.fetch_materializations(keys.production_model, limit=1).records
    production = None
    if latest:
        record = latest[0]
        meta = record.asset_materialization.metadata
        production = {
            "run_id": record.run_id,
            "storage_id": record.storage_id,
            "metadata": sorted(meta),
            "tags": dict(record.asset_materialization.tags or {}),
        }
    candidate = instance.fetch_materializations(keys.candidate_model, limit=1).records[0]
    candidate_tags = dict(candidate.asset_materialization.tags or {})
    states = {s.instigator_name: {"status": s.status.value, "cursor": s.instigator_data.cursor
                                  if s.instigator_data is not None and hasattr(s.instigator_data, "cursor") else None}
              for s in instance.all_instigator_state()}
    events = {r["run_id"]: len(instance.all_logs(r["run_id"])) for r in runs}
    return {"runs": runs, "assets": assets, "production_model": production, "candidate_model_tags": candidate_tags,
            "instigators": states, "event_counts": events,
            "storage": type(instance.event_log_storage).__name__}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    output = {"write": write, "ingest": ingest, "read": read}[command](*args)
    print(json.dumps(output, default=str))
