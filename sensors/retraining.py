"""Retraining sensors: drift and freshness. Both request the same train -> evaluate -> decide ->
(gated) promote job a person would, so a triggered challenger can still be refused.

Evidence lives in data time (partitions), not wall-clock time, so a replay and live operation decide
identically. Every request carries tags naming the trigger, the evidence and the policy; run keys
make each decision happen once; a data-time cooldown after any training (promoted or not) prevents
retrain storms.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date

import dagster as dg

from ml_assets.errors import PlatformError
from ml_assets.keys import UseCaseJobs, UseCaseKeys
from ml_assets.spec import UseCaseSpec
from resources.model_registry import ModelRegistryResource
from sensors import policy


def last_trained_end(registry: ModelRegistryResource, spec: UseCaseSpec) -> date | None:
    versions = registry.versions(spec.name)
    return max((date.fromisoformat(v.training_set.train_end) for v in versions), default=None)


def _newest_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    keys = instance.get_materialized_partitions(key)
    return max(keys) if keys else None


def retrain_request(spec: UseCaseSpec, trigger: str, newest: date, evidence: dict, run_key: str,
                     plan: policy.RetrainPlan | None = None) -> dg.RunRequest | None:
    """The one shape of a training request: the plan (default: the latest labelled window), the
    evidence and the policy that fired, as run tags an auditor reads in the run's history."""
    plan = plan or policy.retrain_plan(spec, newest)
    if plan is None:
        return None
    tags = policy.run_tags(trigger, {**evidence, "plan": asdict(plan)},
                           {"monitoring": spec.monitoring.model_dump(mode="json"),
                            "promotion": spec.promotion.model_dump(mode="json")}, newest.isoformat())
    return dg.RunRequest(run_key=run_key, job_name=UseCaseJobs(spec.name).train,
                         run_config=policy.train_run_config(spec, plan), tags=tags)


def build_drift_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring

    @dg.sensor(
        name=f"{spec.name}__drift_retrain",
        description=f"Requests a retrain when {mon.consecutive_partitions} consecutive drift reports are drifted "
        f"(a column above its calibrated threshold in {mon.drift_alarm_exceedances} of the last "
        f"{mon.drift_alarm_partitions} partitions, or more than {mon.drifted_share_threshold} of the columns "
        "above), outside the cooldown; the evidence names the partitions and columns that fired.",
        jobs=jobs, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def drift_retrain(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource):
        state = json.loads(context.cursor) if context.cursor else {"after": None, "flags": {}}
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.drift_report, after_storage_id=state["after"]), limit=1000,
            ascending=True)
        if not result.records:
            return dg.SkipReason("no new drift reports")
        flags: dict[str, bool] = state["flags"]
        shares: dict[str, float] = state.get("shares", {})
        fired: dict[str, dict[str, list[str]]] = state.get("fired", {})
        new = set()
        for record in result.records:
            meta = record.asset_materialization.metadata
            if record.partition_key and "drifted" in meta:
                flags[record.partition_key] = bool(meta["drifted"].value)
                shares[record.partition_key] = round(float(meta["drifted_share"].value), 3)
                fired[record.partition_key] = policy.fired_columns(
                    {k: v.value for k, v in meta.items() if k in ("fired_columns", "alarm_partitions")})
                new.add(record.partition_key)
        keep = sorted(flags)[-(mon.consecutive_partitions + 60):]  # bounded: a streak never needs more
        cursor = json.dumps({"after": result.records[-1].storage_id, "flags": {d: flags[d] for d in keep},
                             "shares": {d: shares[d] for d in keep if d in shares},
                             "fired": {d: fired[d] for d in keep if fired.get(d)}})
        if not new:
            return dg.SensorResult(skip_reason="no new drift reports", cursor=cursor)
        # The newest new partition that completes a streak (a catch-up run may bring several at once).
        streaks = {p: policy.drift_streak(spec, flags, p) for p in new}
        hits = [p for p, s in streaks.items() if len(s) >= mon.consecutive_partitions]
        newest = max(hits) if hits else max(new)
        streak = streaks[newest]
        if len(streak) < mon.consecutive_partitions:
            return dg.SensorResult(skip_reason=f"{newest}: {len(streak)} drifted partition(s) in a row", cursor=cursor)
        newest_day = date.fromisoformat(newest)
        if policy.in_cooldown(spec, newest_day, last_trained_end(model_registry, spec)):
            return dg.SensorResult(skip_reason=f"{newest}: drift persists but retraining is in cooldown", cursor=cursor)
        request = retrain_request(spec, "drift", newest_day,
                                   {"drifted_partitions": streak, "drifted_share": {p: shares.get(p) for p in streak},
                                    **policy.drift_evidence(spec, {p: fired.get(p, {}) for p in streak})},
                                   run_key=f"drift:{newest}")
        if request is None:
            return dg.SensorResult(skip_reason="not enough labelled history to retrain", cursor=cursor)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return drift_retrain


def build_freshness_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring

    @dg.sensor(
        name=f"{spec.name}__freshness_retrain",
        description=f"Requests a retrain when the champion is more than {mon.max_model_age} partition(s) old in data "
        "time (newest scored partition minus the end of its training window); bootstraps the first model once the "
        "declared evaluation window is labelled.",
        jobs=jobs, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def freshness_retrain(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource):
        from ml_assets.registry.models import production_pointer

        try:
            champion = production_pointer(context.instance, model_registry, spec.name)
        except PlatformError as exc:
            return dg.SkipReason(f"production pointer cannot be trusted, no retrain requested: {exc}")
        if champion is None:
            newest = _newest_partition(context.instance, keys.labels)
            if newest is None:
                return dg.SkipReason("no labelled data yet")
            newest_day = date.fromisoformat(newest)
            ready = spec.shift(spec.evaluation.end, spec.label_delay)
            if newest_day < ready:
                return dg.SkipReason(f"bootstrap waits for labels through {spec.evaluation.end} (known at {ready})")
            last_trained = last_trained_end(model_registry, spec)
            if last_trained is None:  # the first model: the declared windows
                return [retrain_request(spec, "bootstrap", newest_day, {"newest_labelled_partition": newest},
                                         run_key=f"bootstrap:{spec.name}", plan=policy.bootstrap_plan(spec))]
            # Every challenger so far was refused: try again on the latest labelled window, after the cooldown.
            if policy.in_cooldown(spec, newest_day, last_trained):
                return dg.SkipReason(f"no model in production yet; the last challenger (trained to {last_trained}) "
                                     "was refused and retraining is in cooldown")
            request = retrain_request(spec, "bootstrap", newest_day,
                                       {"newest_labelled_partition": newest, "previous_refused_to": last_trained},
                                       run_key=f"bootstrap:{spec.name}:{newest}")
            return [request] if request else dg.SkipReason("not enough labelled history")
        newest = _newest_partition(context.instance, keys.predictions)
        if newest is None:
            return dg.SkipReason("champion has not scored anything yet")
        newest_day = date.fromisoformat(newest)
        record = model_registry.get(spec.name, champion.version)
        age = policy.model_age(spec, newest_day, date.fromisoformat(record.training_set.train_end))
        if age <= int(mon.max_model_age):
            return dg.SkipReason(f"champion {champion.version} is {age} partition(s) old in data time")
        if policy.in_cooldown(spec, newest_day, last_trained_end(model_registry, spec)):
            return dg.SkipReason(f"champion is {age} partition(s) old but retraining is in cooldown")
        request = retrain_request(spec, "freshness", newest_day,
                                   {"champion": champion.version, "age_partitions": age, "newest_scored": newest,
                                    "max_model_age": int(mon.max_model_age)},
                                   run_key=f"freshness:{champion.version}:{newest}")
        return [request] if request else dg.SkipReason("not enough labelled history")

    return freshness_retrain
