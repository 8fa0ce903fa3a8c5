"""Reproducibility: retrain a registered version from its recorded inputs and compare hashes.

Two checks per version: (1) the recorded training set still exists with its sha256 and retraining
on it with the recorded hyperparameters gives byte-identical weights; (2) rebuilding the training
set from the feature and label partitions gives the same training-set sha256 (it differs when an
upstream partition was re-materialized with different data since, e.g. a late file: reported, not hidden).
"""

from __future__ import annotations

from typing import Any

from ml_assets.spec import ModelSpec, UseCaseSpec, _build
from resources.lakehouse import LakehouseResource, sha256_bytes
from resources.model_registry import ModelRegistryResource


def reproduce_version(spec: UseCaseSpec, record: dict[str, Any], lakehouse: LakehouseResource) -> dict[str, Any]:
    from ml_assets.training.assets import build_training_frame, train_artifact

    training_set = record["training_set"]
    row: dict[str, Any] = {"version": record["version"], "recorded_sha256": record["sha256"][:16]}
    try:
        model_spec = _build(ModelSpec, record["hyperparameters"])
        features = record["features"]
        _, artifact = train_artifact(lakehouse, training_set, model_spec, tuple(features["numeric"]),
                                     tuple(features["categorical"]), spec.name)
        reproduced = sha256_bytes(artifact)
        row |= {"reproduced_sha256": reproduced[:16], "weights_match": reproduced == record["sha256"]}
    except Exception as exc:  # a missing or damaged training set is a finding, not a crash
        row |= {"reproduced_sha256": None, "weights_match": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        window = {k: training_set[k] for k in ("train_start", "train_end", "validation_start")}
        rebuilt = build_training_frame(lakehouse, spec, window)
        import io

        buffer = io.BytesIO()
        rebuilt.write_parquet(buffer, compression="zstd", statistics=True)
        row["training_set_rebuilt_matches"] = sha256_bytes(buffer.getvalue()) == training_set["sha256"]
    except Exception as exc:
        row["training_set_rebuilt_matches"] = False
        row.setdefault("error", f"{type(exc).__name__}: {exc}")
    return row


def reproduce_all(spec: UseCaseSpec, registry: ModelRegistryResource, lakehouse: LakehouseResource,
                  versions: list[str] | None = None) -> list[dict[str, Any]]:
    records = [r for r in registry.versions(spec.name) if versions is None or r["version"] in versions]
    return [reproduce_version(spec, r, lakehouse) for r in records]
