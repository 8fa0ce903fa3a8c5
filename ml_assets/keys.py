"""Names derived from a use case's name, never retyped: asset keys, job names, tag keys."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

# Run tags the platform writes (read by sensors, the replay, `mlp trace` and auditors).
TRIGGER_TAG = "ml/trigger"  # new_data | bootstrap | freshness | drift | performance | manual
EVIDENCE_TAG = "ml/evidence"  # JSON: why the run was requested
POLICY_TAG = "ml/policy"  # JSON: the policy that fired
DATA_PARTITION_TAG = "ml/data_partition"  # the newest partition the decision saw (data time)
OUTCOME_TAG = "ml/outcome"  # promoted | refused | pinned
CHALLENGER_TAG = "ml/challenger"  # the version a training run registered
ACTOR_TAG = "ml/actor"  # who or what changed production (a person, or sensor:<name>)
REASON_TAG = "ml/reason"
USE_CASE_TAG = "use_case"
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"


@dataclass(frozen=True)
class UseCaseKeys:
    name: str

    def _key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def raw(self, table: str) -> dg.AssetKey:
        return self._key(f"raw_{table}")

    def quarantine(self, table: str) -> dg.AssetKey:
        return self._key(f"raw_{table}_quarantine")

    labels = property(lambda self: self._key("labels"))
    features = property(lambda self: self._key("features"))
    feature_profiles = property(lambda self: self._key("feature_profiles"))
    training_set = property(lambda self: self._key("training_set"))
    candidate_model = property(lambda self: self._key("candidate_model"))
    model_evaluation = property(lambda self: self._key("model_evaluation"))
    promotion_decision = property(lambda self: self._key("promotion_decision"))
    production_model = property(lambda self: self._key("production_model"))
    model_reproducibility = property(lambda self: self._key("model_reproducibility"))
    predictions = property(lambda self: self._key("predictions"))
    drift_report = property(lambda self: self._key("drift_report"))
    realized_performance = property(lambda self: self._key("realized_performance"))
    model_health = property(lambda self: self._key("model_health"))
    policy_backtest = property(lambda self: self._key("policy_backtest"))  # the loop vs counterfactual policies
    serving_state = property(lambda self: self._key("serving_state"))  # history state of online scoring
    online_predictions = property(lambda self: self._key("online_predictions"))


@dataclass(frozen=True)
class UseCaseJobs:
    name: str

    ingest = property(lambda self: f"{self.name}__ingest")
    daily = property(lambda self: f"{self.name}__daily")  # one partition's whole loop (any cadence)
    train = property(lambda self: f"{self.name}__train_evaluate_promote")
    score = property(lambda self: f"{self.name}__score")
    rollback = property(lambda self: f"{self.name}__rollback")
    reproduce = property(lambda self: f"{self.name}__reproduce")
    serving = property(lambda self: f"{self.name}__serving")  # serving state + landed online predictions
    backtest = property(lambda self: f"{self.name}__backtest")


def op_name(key: dg.AssetKey) -> str:
    """The op (step) name Dagster derives from an asset key: used to address run config."""
    return "__".join(key.path)
