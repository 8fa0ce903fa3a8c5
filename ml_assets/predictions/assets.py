"""Batch predictions per day, by whichever model version production points at when the run starts."""


import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract, prediction_problems
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, daily_partitions
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

PREDICTION_ID = "prediction_id"
MODEL_VERSION = "model_version"
PROBABILITY = "probability"
PREDICTION_CHECK = "prediction_contract"


def build_prediction_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.predictions,
        deps=[keys.features, keys.production_model],
        description="One row per event of the day: a stable prediction id (`<model version>/<event id>`), "
        "the model version that produced it, the probability and the decision at the model's threshold. "
        "Scored from the same feature partitions training used.",
        kinds={"pytorch", "parquet"},
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        code_version=code_version(spec, [__name__, "ml_assets.training.train"], "features"),
        check_specs=[dg.AssetCheckSpec(PREDICTION_CHECK, asset=keys.predictions, blocking=True,
                                       description="Probabilities in [0, 1]; exactly one prediction per input row.")],
        **asset_defaults(spec, "predictions"),
    )
    def predictions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                    model_registry: ModelRegistryResource):
        import polars as pl

        pointer = model_registry.production(spec.name)
        if pointer is None:
            raise dg.Failure(f"{spec.name}: no model is in production yet; run the training job first",
                             allow_retries=False)
        version = pointer["version"]
        model = model_registry.load(spec.name, version)
        frame = tables.read_daily(lakehouse, spec, keys.features, tables.partition_days(context))
        prob = model.score(frame).numpy()
        out = frame.select(compute.EVENT_ID, compute.EVENT_DATE).with_columns(
            (pl.lit(f"{version}/") + pl.col(compute.EVENT_ID)).alias(PREDICTION_ID),
            pl.lit(version).alias(MODEL_VERSION),
            pl.Series(PROBABILITY, prob, dtype=pl.Float64),
        ).with_columns((pl.col(PROBABILITY) >= model.threshold).alias("predicted_positive"))
        problems = prediction_problems(out, frame, compute.EVENT_ID, PROBABILITY)
        if problems:
            fail_contract(context, keys.predictions, PREDICTION_CHECK,
                          f"asset {keys.predictions.to_user_string()}: prediction contract broken; nothing was "
                          "written: " + "; ".join(problems))
        context.add_asset_metadata({MODEL_VERSION: version, "threshold": model.threshold,
                                    "mean_probability": float(prob.mean()) if len(prob) else 0.0})
        tables.write_daily(context, lakehouse, spec, keys.predictions, out, compute.EVENT_DATE)
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name=PREDICTION_CHECK, passed=True)])

    return [predictions]
