"""Builds a use case's whole asset graph, jobs and checks from its spec. Nothing use-case specific
lives here: a new dataset is a new spec."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ml_assets.evaluation.assets import build_evaluation_assets
from ml_assets.features.assets import build_feature_assets
from ml_assets.keys import UseCaseKeys
from ml_assets.monitoring.assets import build_monitoring_assets
from ml_assets.predictions.assets import build_prediction_assets
from ml_assets.raw.assets import build_raw_assets, quarantine_key
from ml_assets.registry.assets import build_registry_assets
from ml_assets.spec import UseCaseSpec
from ml_assets.training.assets import build_training_assets


@dataclass(frozen=True)
class UseCaseJobs:
    ingest: str
    train: str
    score: str
    rollback: str
    reproduce: str
    daily: str


def job_names(spec: UseCaseSpec) -> UseCaseJobs:
    return UseCaseJobs(
        ingest=f"{spec.name}__ingest",
        train=f"{spec.name}__train_evaluate_promote",
        score=f"{spec.name}__score",
        rollback=f"{spec.name}__rollback",
        reproduce=f"{spec.name}__reproduce",
        daily=f"{spec.name}__daily",
    )


def build_use_case(spec: UseCaseSpec) -> dg.Definitions:
    keys = UseCaseKeys(spec)
    assets = [
        *build_raw_assets(spec),
        *build_feature_assets(spec),
        *build_training_assets(spec),
        *build_evaluation_assets(spec),
        *build_registry_assets(spec),
        *build_prediction_assets(spec),
        *build_monitoring_assets(spec),
    ]
    names = job_names(spec)
    raw_daily = [keys.raw(t.name) for t in spec.sources if t.partitioned]
    raw_daily += [quarantine_key(spec, t.name) for t in spec.sources if t.partitioned]
    dims = [keys.raw(t.name) for t in spec.sources if not t.partitioned]
    jobs = [
        dg.define_asset_job(
            names.ingest,
            selection=dg.AssetSelection.assets(*dims, *raw_daily, keys.labels, keys.features,
                                               keys.feature_profiles),
            description="Refresh dimensions, land raw daily data, then labels, features and profiles for the "
            "selected days.",
            tags={"use_case": spec.name},
        ),
        dg.define_asset_job(
            names.daily,
            selection=dg.AssetSelection.assets(*raw_daily, keys.labels, keys.features, keys.feature_profiles,
                                               keys.predictions, keys.drift_report, keys.realized_performance),
            description="A day's whole loop: land, features, profiles, score with the champion, drift and realized "
            "performance. Requested by the new-data sensor.",
            tags={"use_case": spec.name},
        ),
        dg.define_asset_job(
            names.train,
            selection=dg.AssetSelection.assets(keys.training_set, keys.candidate_model,
                                               keys.model_evaluation, keys.production_model),
            description="Train a challenger, evaluate it against the champion, promote it if the gate passes.",
            tags={"use_case": spec.name},
        ),
        dg.define_asset_job(
            names.score,
            selection=dg.AssetSelection.assets(keys.predictions),
            description="Batch-score the selected days with the production model.",
            tags={"use_case": spec.name},
        ),
        dg.define_asset_job(
            names.rollback,
            selection=dg.AssetSelection.assets(keys.production_model),
            description="Pin production to a registered version: set ops config `pin_version` and `reason`.",
            tags={"use_case": spec.name, "ml/action": "rollback"},
        ),
        dg.define_asset_job(
            names.reproduce,
            selection=dg.AssetSelection.assets(keys.model_reproducibility),
            description="Retrain registered versions from their recorded inputs and compare weight hashes.",
            tags={"use_case": spec.name},
        ),
    ]
    from sensors import build_sensors

    return dg.Definitions(assets=assets, jobs=jobs, sensors=build_sensors(spec, jobs))
