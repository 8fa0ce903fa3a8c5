"""Training: a time-windowed training set, then a deterministically trained PyTorch model that is
registered as an immutable version (it becomes the *challenger*; promotion is a separate step)."""

from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.errors import ContractError, fatal_errors
from ml_assets.features import compute
from ml_assets.keys import CHALLENGER_TAG, UseCaseKeys, op_name
from ml_assets.policies import asset_defaults, code_version
from ml_assets.records import TrainingSetRef, VersionRecord
from ml_assets.spec import UseCaseSpec
from ml_assets.training.dataset import fit, labelled_split
from resources.lakehouse import LakehouseResource, read_parquet_bytes
from resources.model_registry import ModelRegistryResource


class TrainingWindowConfig(dg.Config):
    """Leave empty to use the use case's first window. Dates are partition starts."""

    train_start: str | None = None
    train_end: str | None = None
    validation_partitions: int | None = None


def build_training_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_training_set(spec), _candidate_model(spec)]


def resolve_window(spec: UseCaseSpec, config: TrainingWindowConfig) -> dict[str, str]:
    from datetime import date

    start = date.fromisoformat(config.train_start) if config.train_start else spec.training.start
    end = date.fromisoformat(config.train_end) if config.train_end else spec.training.end
    n_valid = config.validation_partitions
    if n_valid is None:
        n_valid = int(spec.training.validation)
    valid_start = spec.shift(spec.partition_range(end, end)[0], -(n_valid - 1))
    if valid_start <= start or n_valid < 1:
        raise ContractError(f"training window {start}..{end} is too short for {n_valid} validation partition(s)")
    return {"train_start": start.isoformat(), "train_end": end.isoformat(), "validation_start": valid_start.isoformat()}


def build_training_frame(context: Any, lakehouse: LakehouseResource, spec: UseCaseSpec, window: dict[str, str]):
    """Features joined to known labels over the window, with a time-based `split` column; and the
    receipts of every partition read."""
    keys = UseCaseKeys(spec.name)
    partitions = spec.partition_range(window["train_start"], window["train_end"])
    feats, feature_receipts = tables.read_partitions(context, lakehouse, spec, keys.features, partitions)
    labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, partitions,
                                                    columns=[compute.EVENT_ID, compute.LABEL])
    frame = labelled_split(feats, labels, window)
    return frame, {keys.features.to_user_string(): feature_receipts, keys.labels.to_user_string(): label_receipts}


def _training_set(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.training_set,
        deps=[keys.features, keys.labels],
        description="Features joined to known labels over a configurable window; the last partitions are the "
        "validation split (time-based, never shuffled across time). Content-addressed and immutable, with a "
        "receipt (storage id, sha256) of every feature and label partition it read.",
        kinds={"polars", "parquet"},
        code_version=code_version(spec, __name__, "training", "label"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "training"),
    )
    def training_set(context: dg.AssetExecutionContext, config: TrainingWindowConfig,
                     lakehouse: LakehouseResource) -> dg.MaterializeResult:
        with fatal_errors():
            window = resolve_window(spec, config)
            frame, inputs = build_training_frame(context, lakehouse, spec, window)
            if frame.is_empty():
                raise ContractError(f"training window {window['train_start']}..{window['train_end']} has no "
                                    "labelled events")
            receipt = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "training_set"),
                                                        lakehouse.parquet_bytes(frame), "parquet")
            counts = dict(frame.group_by("split").len().iter_rows())
            ref = TrainingSetRef(**window, uri=receipt.uri, sha256=receipt.sha256, rows=frame.height,
                                 rows_train=counts.get("train", 0), rows_validation=counts.get("validation", 0),
                                 positive_rate=float(frame.get_column(compute.LABEL).mean()), inputs=inputs)
            from ml_assets.lineage import compact

            return dg.MaterializeResult(
                value=ref.model_dump(mode="json"),
                data_version=dg.DataVersion(receipt.sha256),
                metadata={
                    "dagster/row_count": frame.height,
                    "window": f"{window['train_start']}..{window['train_end']} (validation from "
                              f"{window['validation_start']})",
                    "rows_train": ref.rows_train, "rows_validation": ref.rows_validation,
                    "positive_rate": round(ref.positive_rate, 4),
                    "uri": dg.MetadataValue.path(receipt.uri), "sha256": receipt.sha256,
                    "input_receipts": dg.MetadataValue.json(compact(inputs)),
                },
            )

    return training_set


def train_artifact(lakehouse: LakehouseResource, training_set: TrainingSetRef, model_spec, numeric: list[str],
                   categorical: list[str], use_case: str):
    """Train from a recorded training set (sha256-verified): the one path for training and reproduction."""
    from ml_assets.training import train

    data = lakehouse.read_bytes(training_set.uri, training_set.sha256, what="training set")
    frame = read_parquet_bytes(data, training_set.uri)
    model = fit(frame, model_spec, numeric, categorical)
    extra = {"use_case": use_case, "training_set_sha256": training_set.sha256}
    return model, train.to_safetensors(model, extra), frame


def _candidate_model(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.candidate_model,
        ins={"training_set": dg.AssetIn(key=keys.training_set)},
        description="A PyTorch tabular model (categorical embeddings + MLP) trained deterministically on the "
        "training set and registered as an immutable version: the challenger. Its drift reference (a whylogs "
        "profile of its training features and scores) is stored with it.",
        kinds={"pytorch", "safetensors"},
        code_version=code_version(spec, __name__, "model", "features"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "training"),
    )
    def candidate_model(context: dg.AssetExecutionContext, training_set: dict[str, Any],
                        lakehouse: LakehouseResource, model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            record, record_sha = train_and_register(context, spec, TrainingSetRef.model_validate(training_set),
                                                    lakehouse, model_registry)
            context.instance.add_run_tags(context.run.run_id, {CHALLENGER_TAG: record.version})
            curve = record.training_curve
            from ml_assets.text import markdown_table

            return dg.MaterializeResult(
                value={"version": record.version, "sha256": record.sha256, "record_sha256": record_sha},
                data_version=dg.DataVersion(record.sha256),
                metadata={
                    "model_version": record.version,
                    "weights_sha256": record.sha256,
                    "record_sha256": record_sha,
                    "artifact": dg.MetadataValue.path(record.artifact_uri),
                    "data_window": f"{record.training_set.train_start}..{record.training_set.train_end}",
                    "rows_train": record.training_set.rows_train,
                    "rows_validation": record.training_set.rows_validation,
                    "training_set_sha256": record.training_set.sha256,
                    "hyperparameters": dg.MetadataValue.json(record.hyperparameters),
                    "challenged_champion": record.challenged_champion or "none",
                    "best_epoch": record.best_epoch,
                    "threshold": record.threshold,
                    "valid_auroc": round(curve[record.best_epoch - 1]["valid_auroc"], 4),
                    "training_curve": dg.MetadataValue.md(markdown_table(curve)),
                },
            )

    return candidate_model


def train_and_register(context: dg.AssetExecutionContext, spec: UseCaseSpec, training_set: TrainingSetRef,
                       lakehouse: LakehouseResource, registry: ModelRegistryResource) -> tuple[VersionRecord, str]:
    from ml_assets.monitoring.reference import reference_artifacts
    from ml_assets.records import ArtifactRef
    from ml_assets.training.train import from_safetensors

    fs = spec.features
    model, artifact, frame = train_artifact(lakehouse, training_set, spec.model, fs.numeric, fs.categorical,
                                            spec.name)
    champion = registry.production(spec.name)
    profile, calibration = reference_artifacts(spec, from_safetensors(artifact), frame)
    stored = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "registry", "reference_profiles"),
                                               profile, "bin")
    calibrated = lakehouse.write_content_addressed(lakehouse.uri(spec.name, "registry", "drift_calibrations"),
                                                   calibration, "json")
    return registry.register(spec.name, artifact, {
        "run_id": context.run.run_id,
        "code_version": context.assets_def.code_versions_by_key[context.asset_key],
        "hyperparameters": spec.model.model_dump(mode="json"),
        "features": {"numeric": list(fs.numeric), "categorical": list(fs.categorical)},
        "training_set": training_set,
        "threshold": model.threshold,
        "best_epoch": model.best_epoch,
        "training_curve": model.curve,
        "challenged_champion": champion.version if champion else None,
        "reference_profile": ArtifactRef(uri=stored.uri, sha256=stored.sha256),
        "drift_calibration": ArtifactRef(uri=calibrated.uri, sha256=calibrated.sha256),
    })


__all__ = ["build_training_assets", "build_training_frame", "op_name", "resolve_window", "train_artifact"]
