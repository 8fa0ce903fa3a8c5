"""Training: a time-windowed training set, then a deterministically trained PyTorch model that is
registered as an immutable version (it becomes the *challenger*; promotion is a separate step)."""


from datetime import date, timedelta
from typing import Any

import dagster as dg

from ml_assets import lineage, tables
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version, markdown_table
from ml_assets.spec import ModelSpec, UseCaseSpec, date_range
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

_MODEL_MODULES = ["ml_assets.training.train", "ml_assets.training.network", "ml_assets.training.preprocess"]


class TrainingWindowConfig(dg.Config):
    """Leave empty to use the use case's default window."""

    train_start: str | None = None
    train_end: str | None = None
    validation_days: int | None = None


def build_training_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_training_set(spec), _candidate_model(spec)]


def resolve_window(spec: UseCaseSpec, config: TrainingWindowConfig) -> dict[str, str]:
    start = config.train_start or spec.training.train_start
    end = config.train_end or spec.training.train_end
    valid_days = config.validation_days if config.validation_days is not None else spec.training.validation_days
    valid_start = date.fromisoformat(end) - timedelta(days=valid_days - 1)
    if valid_start <= date.fromisoformat(start):
        raise dg.Failure(f"training window {start}..{end} is too short for {valid_days} validation days",
                         allow_retries=False)
    return {"train_start": start, "train_end": end, "validation_start": valid_start.isoformat()}


def build_training_frame(lakehouse: LakehouseResource, spec: UseCaseSpec, window: dict[str, str]):
    """Features joined to known labels over the window, with a time-based `split` column."""
    import polars as pl

    keys = UseCaseKeys(spec)
    days = date_range(window["train_start"], window["train_end"])
    feats = tables.read_daily(lakehouse, spec, keys.features, days)
    labels = tables.read_daily(lakehouse, spec, keys.labels, days, columns=[compute.EVENT_ID, compute.LABEL])
    valid_start = date.fromisoformat(window["validation_start"])
    return (
        feats.join(labels, on=compute.EVENT_ID, how="inner")
        .with_columns(
            pl.when(pl.col(compute.EVENT_DATE) >= valid_start).then(pl.lit("validation"))
            .otherwise(pl.lit("train")).alias("split")
        )
        .sort(compute.EVENT_DATE, compute.EVENT_ID)
    )


def _training_set(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.training_set,
        deps=[keys.features, keys.labels],
        description="Features joined to known labels over a configurable window; the last days are the "
        "validation split (time-based, never shuffled across time).",
        kinds={"polars", "parquet"},
        code_version=code_version(spec, [__name__], "training", "label"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "training"),
    )
    def training_set(context: dg.AssetExecutionContext, config: TrainingWindowConfig,
                     lakehouse: LakehouseResource):
        window = resolve_window(spec, config)
        frame = build_training_frame(lakehouse, spec, window)
        partitions = [d.isoformat() for d in date_range(window["train_start"], window["train_end"])]
        inputs = {
            name: lineage.latest_partition_materializations(context.instance, key, partitions)
            for name, key in (("features", keys.features), ("labels", keys.labels))
        }
        # Content-addressed, so every registered model can be retrained from exactly what it saw.
        receipt = lakehouse.write_parquet_content_addressed(lakehouse.uri(spec.name, "training_set"), frame)
        counts = dict(frame.group_by("split").len().iter_rows())
        ref = {**window, "uri": receipt.uri, "sha256": receipt.sha256, "rows": frame.height,
               "rows_train": counts.get("train", 0), "rows_validation": counts.get("validation", 0),
               "positive_rate": float(frame.get_column(compute.LABEL).mean()), "inputs": inputs}
        return dg.MaterializeResult(
            value=ref,
            metadata={
                "dagster/row_count": frame.height,
                **{k: v for k, v in ref.items() if k not in ("inputs", "uri")},
                "uri": dg.MetadataValue.path(receipt.uri),
                "input_partitions": dg.MetadataValue.json(inputs),
            },
        )

    return training_set


def _candidate_model(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.candidate_model,
        ins={"training_set": dg.AssetIn(key=keys.training_set)},
        description="A PyTorch tabular model (categorical embeddings + MLP) trained deterministically on the "
        "training set and registered as an immutable version: the challenger.",
        kinds={"pytorch", "safetensors"},
        code_version=code_version(spec, [__name__, *_MODEL_MODULES], "model", "features"),
        io_manager_key="ref_io_manager",
        **asset_defaults(spec, "training"),
    )
    def candidate_model(context: dg.AssetExecutionContext, training_set: dict[str, Any],
                        lakehouse: LakehouseResource, model_registry: ModelRegistryResource):
        record = train_and_register(context, spec, training_set, lakehouse, model_registry)
        curve = record["training_curve"]
        return dg.MaterializeResult(
            value={k: record[k] for k in ("version", "sha256", "artifact_uri")},
            metadata={
                "model_version": record["version"],
                "weights_sha256": record["sha256"],
                "artifact": dg.MetadataValue.path(record["artifact_uri"]),
                "data_window": f"{training_set['train_start']}..{training_set['train_end']}",
                "rows_train": training_set["rows_train"],
                "rows_validation": training_set["rows_validation"],
                "training_set_sha256": training_set["sha256"],
                "hyperparameters": dg.MetadataValue.json(record["hyperparameters"]),
                "challenged_champion": record["challenged_champion"] or "none",
                "best_epoch": record["best_epoch"],
                "threshold": record["threshold"],
                "valid_auroc": curve[record["best_epoch"] - 1]["valid_auroc"],
                "training_curve": dg.MetadataValue.md(markdown_table(curve)),
            },
        )

    return candidate_model


def train_artifact(lakehouse: LakehouseResource, training_set: dict[str, Any], model_spec: ModelSpec,
                   numeric: tuple[str, ...], categorical: tuple[str, ...], use_case: str):
    """Train from a recorded training set (sha256-verified): the one path for training and reproduction."""
    import io

    import polars as pl

    from ml_assets.training import train

    data = lakehouse.read_bytes(training_set["uri"], expected_sha256=training_set["sha256"])
    frame = pl.read_parquet(io.BytesIO(data))
    model = train.train_model(
        frame.filter(pl.col("split") == "train"), frame.filter(pl.col("split") == "validation"),
        compute.LABEL, numeric, categorical, model_spec,
    )
    extra = {"use_case": use_case, "training_set_sha256": training_set["sha256"]}
    return model, train.to_safetensors(model, extra)


def train_and_register(context: dg.AssetExecutionContext, spec: UseCaseSpec, training_set: dict[str, Any],
                       lakehouse: LakehouseResource, registry: ModelRegistryResource) -> dict[str, Any]:
    from dataclasses import asdict

    fs = spec.features
    model, artifact = train_artifact(lakehouse, training_set, spec.model, fs.numeric, fs.categorical, spec.name)
    champion = registry.production(spec.name)
    return registry.register(
        spec.name,
        artifact,
        {
            "use_case": spec.name,
            "run_id": context.run.run_id,
            "code_version": context.assets_def.code_versions_by_key[context.asset_key],
            "hyperparameters": asdict(spec.model),
            "features": {"numeric": list(fs.numeric), "categorical": list(fs.categorical)},
            "training_set": dict(training_set),
            "threshold": model.threshold,
            "best_epoch": model.best_epoch,
            "training_curve": model.curve,
            "challenged_champion": champion["version"] if champion else None,
        },
    )
