"""`model_health[p]`: what was served in partition p against what its version promised, with the
`performance_within_promise` check. The figures and the rule are pure (`health.py`); this module reads
the verified inputs, writes one JSON record per partition and the check's evidence.

Labels and label delay: the estimate (CBPE) exists as soon as a partition is scored. The realized
figures exist once `labels[p]` is materialized (a partition without labels gets an estimate-only
record and is rewritten when the daily job runs again); they are *known* only from data time
p + label delay (`labels_known_at`), and the check and the performance sensor use them only then.

Sources: the rule judges the batch source (`predictions`: every event of the partition, once, by the
version the pointer named; the population the promise was measured on). The landed online predictions
(`online_predictions`, each (event, version) once, the latest answer) get their own figures per version
beside it, and the skew between the two paths on the events both scored with the same version; they
are evidence, not judged, so no event is counted twice and the rule's Bonferroni count is unchanged.
"""

import json
from dataclasses import asdict
from datetime import date
from typing import Any

import dagster as dg

from ml_assets import lineage, tables
from ml_assets.audit.ledger import Ledger
from ml_assets.errors import fatal_errors
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.monitoring import health
from ml_assets.monitoring.assets import (
    BATCH,
    NONE,
    ONLINE,
    distinct_online,
    file_evidence,
    online_dependency,
    online_summary,
    read_online,
)
from ml_assets.policies import asset_defaults, code_version, partitions_def
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

PERFORMANCE_CHECK = "performance_within_promise"
PROBABILITY = "probability"
MODEL_VERSION = "model_version"


def promise(ledger: Ledger, version: str) -> dict[str, Any] | None:
    """What `version` promised: the AUROC and ECE of its newest evaluation (what the gate judged it on)
    and its AUROC per slice value, from the evaluation document read verified against the sha256 the
    evaluation recorded (exact figures, not the rounded UI copy); None if it was never evaluated."""
    found = ledger.for_version(ledger.keys.model_evaluation, version)
    if not found:
        return None
    m = found[-1]
    doc = json.loads(ledger.lakehouse.read_bytes(str(m.metadata["ref_uri"]), str(m.metadata["ref_sha256"]),
                                                 what=f"asset {m.key.to_user_string()} (storage id {m.storage_id})"))
    challenger = (doc.get("metrics") or {}).get("challenger") or {}
    rows = (doc.get("slices") or {}).get("challenger", [])
    return {"auroc": challenger.get("auroc"), "ece": challenger.get("ece"), "window": m.metadata.get("window"),
            "evaluation_storage_id": m.storage_id, "evaluation_run_id": m.run_id,
            health.SLICES: {f"{r['slice']}={r['value']}": {"auroc": r["auroc"], "rows": r["rows"]}
                            for r in rows if r.get("auroc") is not None}}


def build_health_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_model_health(spec)]


def read_records(instance: dg.DagsterInstance, lakehouse: Any, spec: UseCaseSpec, partitions: list[str]
                 ) -> dict[str, dict[str, Any]]:
    """The recorded model_health records of `partitions` (absent ones left out), sha256-verified."""
    receipts = lineage.recorded_partitions(instance, UseCaseKeys(spec.name).model_health, partitions)
    return {p: json.loads(lineage.verify_recorded(lakehouse, r)) for p, r in receipts.items()}


def lookback(spec: UseCaseSpec, newest: date) -> list[str]:
    """The partitions a rule evaluated at `newest` can need (the longest streak plus the label delay)."""
    mon = spec.monitoring
    first = max(spec.partitions_start, spec.shift(newest, -(mon.performance_error_partitions + spec.label_delay)))
    return [d.isoformat() for d in spec.partition_range(first, newest)] if first <= newest else []


def _model_health(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring

    @dg.asset(
        key=keys.model_health,
        deps=[keys.predictions, keys.labels, keys.features, keys.model_evaluation, online_dependency(spec)],
        description="Per partition: realized AUROC (DeLong standard error; also per slice value) and ECE of the "
        "served predictions, the "
        "CBPE estimate from their probabilities (available before labels), the serving version's promised figures "
        "(its evaluation) and the gap, and its age in data time. Realized figures count from partition + label "
        f"delay. Check: below promise by more than {mon.performance_margin} AUROC for "
        f"{mon.performance_warn_partitions} partitions warns, {mon.performance_error_partitions} errors. The rule "
        "judges batch `predictions`; landed `online_predictions` get their own figures per version (and the "
        "batch/online skew on events both scored), named with their file, or 'online: none'.",
        kinds={"numpy", "polars"},
        check_specs=[dg.AssetCheckSpec(PERFORMANCE_CHECK, asset=keys.model_health,
                                       description="Warns, then errors, when the serving version stays below its "
                                       "promised AUROC by more than the margin (one-sided bound) for N partitions.")],
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        code_version=code_version(spec, __name__, "monitoring", "evaluation", "label"),
        **asset_defaults(spec, "monitoring"),
    )
    def model_health(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _health(context, lakehouse, model_registry)

    def _health(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                registry: ModelRegistryResource) -> dg.MaterializeResult:
        import polars as pl

        from sensors.policy import model_age

        partitions = tables.partition_keys(context)
        preds, pred_receipts = tables.read_partitions(context, lakehouse, spec, keys.predictions, partitions)
        labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, partitions,
                                                        columns=[compute.EVENT_ID, compute.LABEL], missing_ok=True)
        slices = list(spec.evaluation.slices)
        feats, feature_receipts = tables.read_partitions(context, lakehouse, spec, keys.features, partitions,
                                                         columns=[compute.EVENT_ID, *slices]) if slices else (None, {})
        online, online_receipts = read_online(context, lakehouse, spec, partitions)
        distinct = distinct_online(online)
        ledger = Ledger(context.instance, lakehouse, registry, spec.name)
        versions: dict[str, tuple[Any, dict[str, Any] | None]] = {}

        def version_of(v: str) -> tuple[Any, dict[str, Any] | None]:
            if v not in versions:
                versions[v] = (ledger.record(v), promise(ledger, v))
            return versions[v]

        records: dict[str, dict[str, Any]] = {}
        shas: dict[str, str] = {}
        for p in partitions:
            pkey = p.isoformat()
            part = preds.filter(pl.col(compute.PARTITION) == p)
            served = part.get_column(MODEL_VERSION).value_counts(sort=True) if part.height else None
            version = served.get_column(MODEL_VERSION)[0] if served is not None else None
            record, promised = version_of(version) if version is not None else (None, None)
            labelled = part.join(labels, on=compute.EVENT_ID, how="inner") if pkey in label_receipts else None
            if labelled is not None and feats is not None:
                labelled = labelled.join(feats.select(compute.EVENT_ID, *slices), on=compute.EVENT_ID, how="left")
            doc = _figures(spec, pkey, part, labelled, record, promised)
            if record is not None:
                trained_to = date.fromisoformat(record.training_set.train_end)
                doc |= {"trained_to": trained_to.isoformat(), "age_partitions": model_age(spec, p, trained_to)}
            doc["served_versions"] = sorted(served.get_column(MODEL_VERSION).to_list()) if served is not None else []
            online_doc = None
            if pkey in online_receipts:
                mine = distinct.filter(pl.col(compute.PARTITION) == p)
                online_labels = mine.join(labels, on=compute.EVENT_ID, how="inner") if pkey in label_receipts \
                    else None
                online_doc = {"file": file_evidence(online_receipts[pkey],
                                                    predictions=online.filter(pl.col(compute.PARTITION) == p).height,
                                                    distinct=mine.height,
                                                    labelled=online_labels.height if online_labels is not None
                                                    else None),
                              "versions": _online_versions(spec, pkey, mine, online_labels, version_of),
                              "skew": _skew(part, mine)}
            doc["judged_source"] = BATCH
            doc["sources"] = {BATCH: {"file": file_evidence(pred_receipts[pkey], predictions=part.height,
                                                            labelled=labelled.height if labelled is not None
                                                            else None)},
                              ONLINE: online_doc}
            doc[ONLINE] = online_summary(online_doc["file"] if online_doc else None)
            stored = lakehouse.write_json(lakehouse.partition_uri(spec.name, keys.model_health.path[-1], pkey, "json"),
                                          doc)
            shas[pkey], records[pkey] = stored.sha256, doc
            inputs = {keys.predictions.to_user_string(): {pkey: pred_receipts[pkey].storage_id}}
            if pkey in label_receipts:
                inputs[keys.labels.to_user_string()] = {pkey: label_receipts[pkey].storage_id}
            if pkey in feature_receipts:
                inputs[keys.features.to_user_string()] = {pkey: feature_receipts[pkey].storage_id}
            if pkey in online_receipts:
                inputs[keys.online_predictions.to_user_string()] = {pkey: online_receipts[pkey].storage_id}
            context.add_asset_metadata({**_metadata(doc), "uri": dg.MetadataValue.path(stored.uri),
                                        "sha256": stored.sha256, "input_receipts": dg.MetadataValue.json(inputs)},
                                       partition_key=pkey)
        return dg.MaterializeResult(data_version=tables.data_version(shas),
                                    check_results=[_check(context, lakehouse, records, max(partitions))])

    def _check(context: dg.AssetExecutionContext, lakehouse: Any, written: dict[str, dict[str, Any]],
               newest: date) -> dg.AssetCheckResult:
        earlier = [p for p in lookback(spec, newest) if p not in written]
        records = {**read_records(context.instance, lakehouse, spec, earlier), **written}
        streak = health.longest_streak(spec, records, newest)
        level = health.severity(spec, streak)
        judged_at = health.newest_judgeable(spec, newest).isoformat()
        rows = [j.evidence() for j in streak]
        return dg.AssetCheckResult(
            check_name=PERFORMANCE_CHECK, passed=level == "ok",
            severity=dg.AssetCheckSeverity.ERROR if level == "error" else dg.AssetCheckSeverity.WARN,
            metadata={"data_time": newest.isoformat(), "newest_judged_partition": judged_at,
                      "partitions_below_promise": len(streak), "level": level,
                      "below_partitions": ", ".join(j.partition for j in streak) or "-",
                      "scope": streak[0].scope if streak else "-",
                      "evidence": dg.MetadataValue.md(markdown_table(rows) if rows else "none"),
                      "evidence_records": dg.MetadataValue.json([asdict(j) for j in streak]),  # full precision
                      "margin": mon.performance_margin, "confidence": mon.performance_confidence,
                      "warn_partitions": mon.performance_warn_partitions,
                      "error_partitions": mon.performance_error_partitions})

    return model_health


def _online_versions(spec: UseCaseSpec, pkey: str, part: Any, labelled: Any, version_of: Any
                     ) -> dict[str, dict[str, Any]]:
    """Per model version that answered online: its figures (estimate, realized once labelled, promise, gap)
    over its distinct online predictions, as `_figures` computes them for batch (without slices)."""
    import polars as pl

    out = {}
    for v in sorted(part.get_column(MODEL_VERSION).unique().to_list()):
        record, promised = version_of(v)
        mine = labelled.filter(pl.col(MODEL_VERSION) == v) if labelled is not None else None
        doc = _figures(spec, pkey, part.filter(pl.col(MODEL_VERSION) == v), mine, record, promised, slices=False)
        out[v] = {k: doc[k] for k in ("rows", health.REALIZED, health.ESTIMATED, "gap", "estimate_error")}
        out[v]["promised_auroc"] = (promised or {}).get("auroc")
    return out


def _skew(batch: Any, online: Any) -> dict[str, Any]:
    """Training/serving skew as the two paths saw it: on the events both scored with the same version,
    how far the online probability is from the batch one (the same features and weights give equal ones)."""
    both = batch.select(compute.EVENT_ID, MODEL_VERSION, PROBABILITY).join(
        online.select(compute.EVENT_ID, MODEL_VERSION, PROBABILITY), on=[compute.EVENT_ID, MODEL_VERSION],
        how="inner", suffix="_online")
    if not both.height:
        return {"events": 0, "max_abs_difference": None, "mean_abs_difference": None}
    diff = (both.get_column(PROBABILITY) - both.get_column(PROBABILITY + "_online")).abs()
    return {"events": both.height, "max_abs_difference": float(diff.max()), "mean_abs_difference": float(diff.mean())}


def _figures(spec: UseCaseSpec, pkey: str, part: Any, labelled: Any, record: Any,
             promised: dict[str, Any] | None, slices: bool = True) -> dict[str, Any]:
    """One partition's record: estimate from all served probabilities, realized figures from the labelled
    ones (DeLong SE; ECE through the same metric function as realized_performance), the promise, the gaps."""
    import numpy as np
    import torch

    from ml_assets.evaluation.metrics import binary_metrics

    bins = spec.evaluation.calibration_bins
    estimated = health.cbpe(part.get_column(PROBABILITY).to_numpy(), bins)
    realized = None
    if labelled is not None and labelled.height:
        prob = labelled.get_column(PROBABILITY).to_numpy()
        y = labelled.get_column(compute.LABEL).cast(float).to_numpy()
        auroc, se = health.auroc_with_se(prob, y)
        threshold = record.threshold if record is not None else 0.5
        metrics = binary_metrics(torch.tensor(prob, dtype=torch.float32), torch.tensor(y), threshold, bins)
        realized = {"auroc": auroc, "auroc_se": se, "ece": metrics["ece"], "positive_rate": float(np.mean(y)),
                    "rows": labelled.height, health.SLICES: _slices(spec, labelled) if slices else {}}
    promised_auroc = (promised or {}).get("auroc")

    def gap(figure: dict[str, Any] | None) -> float | None:
        ok = figure is not None and figure.get("auroc") is not None and promised_auroc is not None
        return figure["auroc"] - promised_auroc if ok else None

    both = realized is not None and realized["auroc"] is not None and estimated["auroc"] is not None
    return {"partition": pkey, "model_version": record.version if record is not None else None,
            "rows": part.height, "labels_known_at": spec.shift(date.fromisoformat(pkey), spec.label_delay).isoformat(),
            "promised": promised, health.REALIZED: realized, health.ESTIMATED: estimated,
            "gap": {health.REALIZED: gap(realized), health.ESTIMATED: gap(estimated)},
            "estimate_error": realized["auroc"] - estimated["auroc"] if both else None}


def _slices(spec: UseCaseSpec, labelled: Any) -> dict[str, dict[str, Any]]:
    """Realized AUROC and DeLong SE per slice value with at least `min_slice_rows` labelled rows."""
    out = {}
    for col in spec.evaluation.slices:
        for (value,), group in labelled.group_by([col]):
            if group.height < spec.evaluation.min_slice_rows:
                continue
            auroc, se = health.auroc_with_se(group.get_column(PROBABILITY).to_numpy(),
                                             group.get_column(compute.LABEL).cast(float).to_numpy())
            if auroc is not None:
                out[f"{col}={value}"] = {"auroc": auroc, "auroc_se": se, "rows": group.height}
    return dict(sorted(out.items()))


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    """Typed, rounded figures for the UI (the JSON record keeps full precision)."""
    def r(value: Any) -> Any:
        return round(value, 4) if isinstance(value, float) else value

    flat = {"model_version": doc.get("model_version"), "rows": doc["rows"], "labels_known_at": doc["labels_known_at"],
            "age_partitions": doc.get("age_partitions"), "trained_to": doc.get("trained_to"),
            "promised_auroc": (doc["promised"] or {}).get("auroc"), "promised_ece": (doc["promised"] or {}).get("ece"),
            "promise_storage_id": (doc["promised"] or {}).get("evaluation_storage_id"),
            "estimate_error": doc["estimate_error"],
            "auroc_gap": doc["gap"][health.REALIZED], "estimated_auroc_gap": doc["gap"][health.ESTIMATED]}
    for source in (health.REALIZED, health.ESTIMATED):
        for name, value in (doc[source] or {}).items():
            if name != health.SLICES:
                flat[f"{source}_{name}"] = value
    online = (doc.get("sources") or {}).get(ONLINE)
    flat |= {"judged_source": doc.get("judged_source"), ONLINE: doc.get(ONLINE, NONE)}
    if online:
        flat |= {"online_predictions": online["file"]["predictions"], "online_distinct": online["file"]["distinct"],
                 "online_skew_max": online["skew"]["max_abs_difference"]}
        main = online["versions"].get(doc.get("model_version") or "") or {}
        flat |= {"online_realized_auroc": (main.get(health.REALIZED) or {}).get("auroc"),
                 "online_estimated_auroc": (main.get(health.ESTIMATED) or {}).get("auroc")}
    out = {k: r(v) for k, v in flat.items() if v is not None}
    if online:
        out["sources"] = dg.MetadataValue.json(doc["sources"])
    return out
