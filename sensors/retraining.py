"""Retraining sensors: drift and freshness. Both request the same train -> evaluate -> gated
promotion job as a person would, so a triggered challenger can still be refused.

Evidence lives in data time (partitions), not wall-clock time, so a replay of 2013 and live
operation decide identically. Every request carries tags naming the trigger, the evidence and the
policy; run keys make each decision happen once; a data-time cooldown after any training (promoted
or not) prevents retrain storms.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, timedelta

import dagster as dg

from ml_assets.factory import job_names
from ml_assets.keys import UseCaseKeys
from ml_assets.spec import UseCaseSpec
from resources.model_registry import ModelRegistryResource
from sensors import policy


def _last_trained_end(registry: ModelRegistryResource, spec: UseCaseSpec) -> date | None:
    versions = registry.versions(spec.name)
    if not versions:
        return None
    return max(date.fromisoformat(v["training_set"]["train_end"]) for v in versions)


def _newest_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1, ascending=False)
    return records.records[0].partition_key if records.records else None


def _retrain_request(spec: UseCaseSpec, trigger: str, newest: date, evidence: dict, run_key: str,
                     plan: policy.RetrainPlan | None = None) -> dg.RunRequest | None:
    """The one shape of a training request: the plan (default: the latest labelled window), the
    evidence and the policy that fired, as run tags an auditor reads in the run's history."""
    plan = plan or policy.retrain_plan(spec, newest)
    if plan is None:
        return None
    tags = policy.run_tags(trigger, {**evidence, "plan": asdict(plan)}, asdict(spec.monitoring), newest.isoformat())
    config = policy.train_run_config(spec, plan)
    return dg.RunRequest(run_key=run_key, job_name=job_names(spec).train, run_config=config, tags=tags)


def build_drift_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    keys = UseCaseKeys(spec)
    mon = spec.monitoring

    @dg.sensor(
        name=f"{spec.name}__drift_retrain",
        description=f"Requests a retrain when {mon.consecutive_partitions} consecutive daily drift reports are drifted "
        f"(share of drifted columns > {mon.drifted_share_threshold}), outside the cooldown.",
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
        new_days = set()
        for record in result.records:
            meta = record.asset_materialization.metadata
            if record.partition_key and "drifted" in meta:
                flags[record.partition_key] = bool(meta["drifted"].value)
                shares[record.partition_key] = round(float(meta["drifted_share"].value), 3)
                new_days.add(record.partition_key)
        if not new_days:
            return dg.SkipReason("no new drift reports")
        # The newest new day that completes a streak (a catch-up run may bring several days at once).
        streaks = {d: policy.consecutive_drifted(flags, d) for d in new_days}
        hits = [d for d, n in streaks.items() if n >= mon.consecutive_partitions]
        newest = max(hits) if hits else max(new_days)
        keep = sorted(flags)[-60:]  # bounded cursor: the streak never needs more
        cursor = json.dumps({"after": result.records[-1].storage_id, "flags": {d: flags[d] for d in keep},
                             "shares": {d: shares[d] for d in keep if d in shares}})
        streak = streaks[newest]
        newest_day = date.fromisoformat(newest)
        if streak < mon.consecutive_partitions:
            return dg.SensorResult(skip_reason=f"{newest}: {streak} drifted day(s) in a row", cursor=cursor)
        if policy.in_cooldown(spec, newest_day, _last_trained_end(model_registry, spec)):
            return dg.SensorResult(skip_reason=f"{newest}: drift persists but retraining is in cooldown", cursor=cursor)
        days = sorted(flags)[-streak:]
        request = _retrain_request(spec, "drift", newest_day,
                                   {"drifted_days": days, "drifted_share": {d: shares.get(d) for d in days}},
                                   run_key=f"drift:{newest}")
        if request is None:
            return dg.SensorResult(skip_reason="not enough labelled history to retrain", cursor=cursor)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return drift_retrain


def build_freshness_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    keys = UseCaseKeys(spec)
    mon = spec.monitoring

    @dg.sensor(
        name=f"{spec.name}__freshness_retrain",
        description=f"Requests a retrain when the champion is more than {mon.max_model_age_days} days old in data time "
        "(newest scored day minus the end of its training window); bootstraps the first model once enough "
        "labelled days exist; reports raw data missing its freshness SLA.",
        jobs=jobs, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def freshness_retrain(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource):
        champion = model_registry.production(spec.name)
        stale = [k.to_user_string() for k, s in _freshness_failures(context.instance, spec)]
        if stale:
            context.log.warning(f"raw data past its freshness SLA: {stale}")
        if champion is None:
            newest = _newest_partition(context.instance, keys.labels)
            if newest is None:
                return dg.SkipReason("no labelled data yet")
            newest_day = date.fromisoformat(newest)
            # The first model uses the spec's own windows, once the evaluation days' labels are known.
            ready = date.fromisoformat(spec.evaluation.end) + timedelta(days=spec.label.delay_days)
            if newest_day < ready:
                return dg.SkipReason(f"bootstrap waits for labelled data through {spec.evaluation.end}")
            plan = policy.RetrainPlan(spec.training.train_start, spec.training.train_end, spec.evaluation.start,
                                      spec.evaluation.end)
            return [_retrain_request(spec, "bootstrap", newest_day, {"newest_labelled_day": newest},
                                     run_key=f"bootstrap:{spec.name}", plan=plan)]
        newest = _newest_partition(context.instance, keys.predictions)
        if newest is None:
            return dg.SkipReason("champion has not scored anything yet")
        newest_day = date.fromisoformat(newest)
        record = model_registry.get(spec.name, champion["version"])
        age = policy.model_age_days(newest_day, date.fromisoformat(record["training_set"]["train_end"]))
        if age <= mon.max_model_age_days:
            return dg.SkipReason(f"champion {champion['version']} is {age} days old in data time")
        if policy.in_cooldown(spec, newest_day, _last_trained_end(model_registry, spec)):
            return dg.SkipReason(f"champion is {age} days old but retraining is in cooldown")
        request = _retrain_request(spec, "freshness", newest_day,
                                   {"champion": champion["version"], "age_days": age, "newest_scored": newest},
                                   run_key=f"freshness:{champion['version']}:{newest}")
        return [request] if request else dg.SkipReason("not enough labelled history")

    return freshness_retrain


def _freshness_failures(instance: dg.DagsterInstance, spec: UseCaseSpec):
    keys = UseCaseKeys(spec)
    targets = [keys.raw(t.name) for t in spec.sources if t.partitioned]
    try:
        records = instance.get_freshness_state_records(targets)
    except Exception:  # older storages without freshness records
        return []
    return [(k, r) for k, r in records.items() if r is not None and "FAIL" in str(r.freshness_state)]
