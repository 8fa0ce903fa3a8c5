"""Builds a use case's whole asset graph, jobs and sensors from its spec. Nothing dataset-specific
lives here: a new dataset is a new `defs.yaml`."""

from __future__ import annotations

import dagster as dg

from ml_assets.evaluation.assets import build_evaluation_assets
from ml_assets.features.assets import build_feature_assets
from ml_assets.keys import USE_CASE_TAG, UseCaseJobs, UseCaseKeys
from ml_assets.monitoring.assets import build_monitoring_assets
from ml_assets.monitoring.backtest_assets import build_backtest_assets
from ml_assets.monitoring.health_assets import build_health_assets
from ml_assets.predictions.assets import build_prediction_assets
from ml_assets.profiles.assets import build_profile_assets
from ml_assets.raw.assets import build_raw_assets
from ml_assets.registry.assets import build_registry_assets
from ml_assets.serving.assets import build_serving_assets
from ml_assets.spec import UseCaseSpec
from ml_assets.training.assets import build_training_assets


def build_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [
        *build_raw_assets(spec),
        *build_feature_assets(spec),
        *build_profile_assets(spec),
        *build_training_assets(spec),
        *build_evaluation_assets(spec),
        *build_registry_assets(spec),
        *build_prediction_assets(spec),
        *build_monitoring_assets(spec),
        *build_backtest_assets(spec),
        *build_health_assets(spec),
        *build_serving_assets(spec),
    ]


def build_jobs(spec: UseCaseSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    keys, names = UseCaseKeys(spec.name), UseCaseJobs(spec.name)
    partitioned = [t.name for t in spec.sources if t.partitioned]
    raw = [keys.raw(t) for t in partitioned] + [keys.quarantine(t) for t in partitioned]
    dims = [keys.raw(t.name) for t in spec.sources if not t.partitioned]
    tags = {USE_CASE_TAG: spec.name}

    def job(name: str, selection: list[dg.AssetKey], description: str, **extra_tags: str):
        return dg.define_asset_job(name, selection=dg.AssetSelection.assets(*selection), description=description,
                                   tags={**tags, **extra_tags})

    return [
        job(names.ingest, [*dims, *raw, keys.labels, keys.features, keys.feature_profiles],
            "Refresh dimensions, land raw partitions, then labels, features and profiles."),
        job(names.daily, [*raw, keys.labels, keys.features, keys.feature_profiles, keys.predictions,
                          keys.drift_report, keys.realized_performance, keys.model_health],
            "One partition's whole loop: land, features, profiles, score with the champion, drift, realized "
            "performance and model health. Requested by the new-data sensor."),
        job(names.train, [keys.training_set, keys.candidate_model, keys.model_evaluation, keys.promotion_decision,
                          keys.production_model],
            "Train a challenger, evaluate it against the champion, decide, and promote it only if the gate passes "
            "(a refusal is a normal outcome: the decision is recorded, production stays)."),
        job(names.score, [keys.predictions], "Batch-score the selected partitions with the production model."),
        job(names.rollback, [keys.production_model],
            "Pin production to a registered version: ops config `pin_version` and `reason`.",
            **{"ml/action": "rollback"}),
        job(names.reproduce, [keys.model_reproducibility],
            "Retrain registered versions from their recorded inputs and compare weight hashes."),
        job(names.backtest, [keys.policy_backtest],
            "The closed loop as it ran against frozen, blind periodic and hindsight policies, month by month."),
        job(names.serving, [keys.serving_state, keys.online_predictions],
            "Online scoring's data: the history state the service loads for the selected partitions, and the "
            "online predictions it logged for them."),
    ]


def build_use_case(spec: UseCaseSpec) -> dg.Definitions:
    from sensors import build_sensors

    jobs = build_jobs(spec)
    return dg.Definitions(assets=build_assets(spec), jobs=jobs, sensors=build_sensors(spec, jobs))
