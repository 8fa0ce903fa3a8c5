"""Performance sensor: when the serving version stays below its own promise (the `model_health` rule,
in data time), request the same gated train job as drift and freshness, with the partitions and
figures as evidence. The cursor keeps the newest records it read (verified against their sha256);
the run key names the version and the data time of the decision, so each decision happens once;
the data-time cooldown stops retrain storms."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import dagster as dg

from ml_assets.errors import PlatformError
from ml_assets.keys import UseCaseKeys
from ml_assets.monitoring import health
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource
from sensors import policy
from sensors.retraining import last_trained_end, retrain_request

TRIGGER = "performance"
MAX_EVIDENCE_PARTITIONS = 20  # run tags are bounded; a longer streak lists its newest partitions


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    """What the rule reads of a record (kept in the cursor)."""
    def figure(found: dict[str, Any] | None) -> dict[str, Any] | None:
        return {"auroc": found.get("auroc"), "auroc_se": found.get("auroc_se")} if found else None

    promised, realized = record.get("promised") or {}, record.get(health.REALIZED)
    promised_slices = promised.get(health.SLICES) or {}
    return {"partition": record["partition"], "model_version": record.get("model_version"),
            "labels_known_at": record["labels_known_at"],
            "promised": {"auroc": promised.get("auroc"),
                         health.SLICES: {k: {"auroc": v["auroc"]} for k, v in promised_slices.items()}},
            health.REALIZED: None if realized is None else figure(realized) | {
                health.SLICES: {k: figure(v) for k, v in (realized.get(health.SLICES) or {}).items()}},
            health.ESTIMATED: figure(record.get(health.ESTIMATED))}


def evidence(spec: UseCaseSpec, streak: list[health.Judged], data_time: date) -> dict[str, Any]:
    """Why a retrain is requested: the partitions below promise and their figures."""
    mon, shown = spec.monitoring, streak[-MAX_EVIDENCE_PARTITIONS:]
    return {"champion": streak[-1].model_version, "data_time": data_time.isoformat(), "scope": streak[-1].scope,
            "level": health.severity(spec, streak), "below_partitions": [j.partition for j in shown],
            "partitions_below": len(streak), "promised_auroc": round(streak[-1].promised_auroc, 4),
            "auroc": {j.partition: round(j.auroc, 4) for j in shown},
            "auroc_se": {j.partition: round(j.auroc_se, 4) for j in shown},
            "gap": {j.partition: round(j.gap, 4) for j in shown}, "source": {j.partition: j.source for j in shown},
            "margin": mon.performance_margin, "confidence": mon.performance_confidence}


def build_performance_sensor(spec: UseCaseSpec, jobs: list) -> dg.SensorDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring
    keep = mon.performance_error_partitions + spec.label_delay + 60  # a streak never needs more

    @dg.sensor(
        name=f"{spec.name}__performance_retrain",
        description=f"Requests a retrain when the serving version's AUROC stays more than {mon.performance_margin} "
        f"below its promise (one-sided {mon.performance_confidence:.0%} bound) for "
        f"{mon.performance_warn_partitions} partition(s) in a row, counting realized figures from partition + label "
        "delay, outside the cooldown.",
        jobs=jobs, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def performance_retrain(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource,
                            model_registry: ModelRegistryResource):
        from ml_assets.registry.models import production_pointer

        state = json.loads(context.cursor) if context.cursor else {"after": None, "records": {}}
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.model_health, after_storage_id=state["after"]), limit=1000,
            ascending=True)
        if not result.records:
            return dg.SkipReason("no new model health records")
        records: dict[str, dict[str, Any]] = state["records"]
        new = set()
        for record in result.records:
            meta = record.asset_materialization.metadata
            if record.partition_key and "uri" in meta and "sha256" in meta:
                data = lakehouse.read_bytes(str(meta["uri"].value), str(meta["sha256"].value),
                                            what=f"asset {keys.model_health.to_user_string()}, partition "
                                            f"{record.partition_key}")
                records[record.partition_key] = _compact(json.loads(data))
                new.add(record.partition_key)
        cursor = json.dumps({"after": result.records[-1].storage_id,
                             "records": {p: records[p] for p in sorted(records)[-keep:]}})
        if not new:
            return dg.SensorResult(skip_reason="no new model health records", cursor=cursor)
        # The newest data time that completes a streak (a catch-up run may bring several partitions at once).
        streaks = {p: health.longest_streak(spec, records, date.fromisoformat(p)) for p in new}
        hits = [p for p, s in streaks.items() if len(s) >= mon.performance_warn_partitions]
        newest = max(hits) if hits else max(new)
        streak = streaks[newest]
        if len(streak) < mon.performance_warn_partitions:
            return dg.SensorResult(skip_reason=f"{newest}: {len(streak)} partition(s) below promise in a row",
                                   cursor=cursor)
        version = streak[-1].model_version
        try:
            champion = production_pointer(context.instance, model_registry, spec.name)
        except PlatformError as exc:
            return dg.SensorResult(skip_reason=f"production pointer cannot be trusted: {exc}", cursor=cursor)
        if champion is None or champion.version != version:
            return dg.SensorResult(skip_reason=f"{newest}: {version} is below its promise but no longer serves",
                                   cursor=cursor)
        newest_day = date.fromisoformat(newest)
        if policy.in_cooldown(spec, newest_day, last_trained_end(model_registry, spec)):
            return dg.SensorResult(skip_reason=f"{newest}: below promise but retraining is in cooldown", cursor=cursor)
        request = retrain_request(spec, TRIGGER, newest_day, evidence(spec, streak, newest_day),
                                   run_key=f"{TRIGGER}:{version}:{newest}")
        if request is None:
            return dg.SensorResult(skip_reason="not enough labelled history to retrain", cursor=cursor)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return performance_retrain
