"""Reproducibility: retrain a registered version from its recorded inputs and compare hashes.

Two checks per version: (1) the recorded training set still exists with its sha256 and retraining
on it with the recorded hyperparameters gives byte-identical weights; (2) rebuilding the training
set from the current feature and label partitions gives the same training-set sha256 (it differs
when an upstream partition was re-materialized with different data since, e.g. a late file:
reported, not hidden).
"""

from __future__ import annotations

from typing import Any

from ml_assets.errors import describe
from ml_assets.records import VersionRecord
from ml_assets.spec import ModelSpec, UseCaseSpec
from resources.lakehouse import sha256_bytes


def reproduce_version(context: Any, spec: UseCaseSpec, record: VersionRecord, lakehouse: Any) -> dict[str, Any]:
    from ml_assets.training.assets import build_training_frame, train_artifact

    ts = record.training_set
    row: dict[str, Any] = {"version": record.version, "recorded_sha256": record.sha256[:16]}
    try:
        _, artifact, _ = train_artifact(lakehouse, ts, ModelSpec.model_validate(record.hyperparameters),
                                        record.features["numeric"], record.features["categorical"], spec.name)
        reproduced = sha256_bytes(artifact)
        row |= {"reproduced_sha256": reproduced[:16], "weights_match": reproduced == record.sha256}
    except Exception as exc:  # a missing or damaged training set is a finding, not a crash
        row |= {"reproduced_sha256": None, "weights_match": False, "error": describe(exc)}
    try:
        window = {"train_start": ts.train_start, "train_end": ts.train_end, "validation_start": ts.validation_start}
        rebuilt, _ = build_training_frame(context, lakehouse, spec, window)
        row["training_set_rebuilt_matches"] = sha256_bytes(lakehouse.parquet_bytes(rebuilt)) == ts.sha256
    except Exception as exc:
        row["training_set_rebuilt_matches"] = False
        row.setdefault("error", describe(exc))
    return row


def reproduce_all(context: Any, spec: UseCaseSpec, registry: Any, lakehouse: Any,
                  versions: list[str] | None = None) -> list[dict[str, Any]]:
    records = [r for r in registry.versions(spec.name) if versions is None or r.version in versions]
    return [reproduce_version(context, spec, r, lakehouse) for r in records]
