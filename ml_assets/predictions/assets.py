"""Batch predictions per partition, by the version production points at when the run starts (its
weights verified against the sha256 the pointer approved)."""

import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract
from ml_assets.errors import MissingDataError, fatal_errors
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, partitions_def
from ml_assets.predictions.contract import prediction_problems
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

PREDICTION_ID = "prediction_id"
MODEL_VERSION = "model_version"
PROBABILITY = "probability"
PREDICTED_POSITIVE = "predicted_positive"
PREDICTION_CHECK = "prediction_contract"

COLUMN_DOCS = {
    compute.EVENT_ID: "The scored event's id.",
    compute.PARTITION: "First day of the event's partition.",
    PREDICTION_ID: "Stable id `<model version>/<event id>`.",
    MODEL_VERSION: "The registered version that produced the probability.",
    PROBABILITY: "Predicted probability of the label.",
    PREDICTED_POSITIVE: "probability >= the version's decision threshold.",
}


def build_prediction_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.predictions,
        deps=[keys.features, keys.production_model],
        description="One row per event of the partition: a stable prediction id, the model version, the "
        "probability and the decision at the version's threshold. Scored from the same feature partitions "
        "training used, by the production version's sha256-verified weights.",
        kinds={"pytorch", "parquet"},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        code_version=code_version(spec, __name__, "features"),
        check_specs=[dg.AssetCheckSpec(PREDICTION_CHECK, asset=keys.predictions, blocking=True,
                                       description="Probabilities in [0, 1]; exactly one prediction per input row.")],
        **asset_defaults(spec, "predictions"),
    )
    def predictions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                    model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _score(context, lakehouse, model_registry)

    def _score(context, lakehouse, registry) -> dg.MaterializeResult:
        import polars as pl

        from ml_assets.registry.models import load_production

        loaded = load_production(context.instance, registry, spec.name)
        if loaded is None:
            raise MissingDataError(f"{spec.name}: no model is in production yet; run the training job first")
        pointer, model = loaded
        partitions = tables.partition_keys(context)
        frame, receipts = tables.read_partitions(context, lakehouse, spec, keys.features, partitions)
        prob = model.score(frame).numpy()
        out = frame.select(compute.EVENT_ID, compute.PARTITION).with_columns(
            (pl.lit(f"{pointer.version}/") + pl.col(compute.EVENT_ID)).alias(PREDICTION_ID),
            pl.lit(pointer.version).alias(MODEL_VERSION),
            pl.Series(PROBABILITY, prob, dtype=pl.Float64),
        ).with_columns((pl.col(PROBABILITY) >= model.threshold).alias(PREDICTED_POSITIVE))
        problems = prediction_problems(out, frame, compute.EVENT_ID, PROBABILITY)
        if problems:
            fail_contract(context, keys.predictions, PREDICTION_CHECK,
                          f"asset {keys.predictions.to_user_string()}: prediction contract broken; nothing was "
                          "written: " + "; ".join(problems))
        inputs = tables.receipts_for({p.isoformat(): [p.isoformat()] for p in partitions},
                                     keys.features.to_user_string(), receipts)
        served = {"model_version": pointer.version, "weights_sha256": pointer.sha256,
                  "pointer_sequence": pointer.sequence, "threshold": model.threshold,
                  "model_put_in_production_by_run": dg.MetadataValue.dagster_run(pointer.run_id)}
        extra = {p.isoformat(): served for p in partitions}
        written = tables.write_partitions(context, lakehouse, spec, keys.predictions, out, compute.PARTITION,
                                          inputs=inputs, extra=extra, descriptions=COLUMN_DOCS)
        return dg.MaterializeResult(
            data_version=tables.data_version({p: r.sha256 for p, r in written.items()}),
            check_results=[dg.AssetCheckResult(check_name=PREDICTION_CHECK, passed=True)])

    return [predictions]
