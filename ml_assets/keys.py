"""Asset keys of a use case, derived from its spec (never retyped elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ml_assets.spec import UseCaseSpec


@dataclass(frozen=True)
class UseCaseKeys:
    spec: UseCaseSpec

    def _key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, name])

    def raw(self, table: str) -> dg.AssetKey:
        return self._key(f"raw_{table}")

    @property
    def labels(self) -> dg.AssetKey:
        return self._key("labels")

    @property
    def features(self) -> dg.AssetKey:
        return self._key("features")

    @property
    def feature_profiles(self) -> dg.AssetKey:
        return self._key("feature_profiles")

    @property
    def training_set(self) -> dg.AssetKey:
        return self._key("training_set")

    @property
    def candidate_model(self) -> dg.AssetKey:
        return self._key("candidate_model")

    @property
    def model_evaluation(self) -> dg.AssetKey:
        return self._key("model_evaluation")

    @property
    def production_model(self) -> dg.AssetKey:
        return self._key("production_model")

    @property
    def model_reproducibility(self) -> dg.AssetKey:
        return self._key("model_reproducibility")

    @property
    def predictions(self) -> dg.AssetKey:
        return self._key("predictions")

    @property
    def drift_report(self) -> dg.AssetKey:
        return self._key("drift_report")

    @property
    def realized_performance(self) -> dg.AssetKey:
        return self._key("realized_performance")
