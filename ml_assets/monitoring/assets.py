"""Monitoring per partition: drift against the serving version's own reference profile, and realized
performance of what was served once outcomes are known. The retraining sensors act on both."""


from datetime import date
from typing import Any

import dagster as dg

from ml_assets import lineage, tables
from ml_assets.errors import MissingDataError, fatal_errors
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version, partitions_def
from ml_assets.spec import UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

DRIFT_CHECK = "no_drift"
PREDICTION_COLUMN = "probability"


def build_monitoring_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_drift_report(spec), _realized_performance(spec)]


def _common(spec: UseCaseSpec, module_sections: tuple[str, ...]) -> dict[str, Any]:
    return {
        **asset_defaults(spec, "monitoring"),
        "partitions_def": partitions_def(spec),
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "code_version": code_version(spec, __name__, *module_sections),
    }


def reference_view(spec: UseCaseSpec, version: str, registry: ModelRegistryResource) -> Any:
    """The version's drift reference, stored at registration; its sha256 is in the version record."""
    from ml_assets.profiles import whylogs_profile as wp

    record = registry.get(spec.name, version)
    if record.reference_profile is None:
        raise MissingDataError(f"model {version} has no reference profile in its registry record")
    ref = record.reference_profile
    return wp.deserialize(registry.lakehouse.read_bytes(ref.uri, ref.sha256, what=f"reference profile of {version}"))


def _drift_report(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring
    window = int(mon.window)

    @dg.asset(
        key=keys.drift_report,
        deps=[
            dg.AssetDep(keys.feature_profiles, partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(window - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
            keys.predictions,
        ],
        description=f"Drift of the trailing {window} partition(s) of features and predictions against the serving "
        "version's reference (its training features and scores): Hellinger distance (and KS) per column from "
        f"whylogs sketches. Drifted when the share of columns above {mon.feature_drift_threshold} exceeds "
        f"{mon.drifted_share_threshold}.",
        kinds={"whylogs", "polars"},
        check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=keys.drift_report,
                                       description="Warns when a partition's drifted share exceeds the policy.")],
        **_common(spec, ("monitoring", "features")),
    )
    def drift_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _drift(context, lakehouse, model_registry)

    def _drift(context, lakehouse, registry) -> dg.MaterializeResult:
        import polars as pl

        from ml_assets.monitoring.drift import drift_scores, summarize
        from ml_assets.profiles import whylogs_profile as wp

        partitions = tables.partition_keys(context)
        history = spec.partition_range(spec.shift(partitions[0], -(window - 1)), partitions[-1])
        wanted = tables.in_range(spec, history)
        profile_receipts = lineage.recorded_partitions(context.instance, keys.feature_profiles, wanted)
        preds, pred_receipts = tables.read_partitions(
            context, lakehouse, spec, keys.predictions, history, missing_ok=True,
            columns=[compute.PARTITION, PREDICTION_COLUMN, "model_version"])
        views: dict[date, Any] = {}
        for pkey, receipt in profile_receipts.items():
            view = wp.deserialize(lineage.verify_recorded(lakehouse, receipt))
            part = preds.filter(pl.col(compute.PARTITION) == date.fromisoformat(pkey)) if preds.height else preds
            if part.height:  # stored feature profiles + this partition's prediction column
                view = view.merge(wp.profile_frame(part, [PREDICTION_COLUMN], []))
            views[date.fromisoformat(pkey)] = view
        numeric, categorical = [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical)
        references: dict[str, Any] = {}
        drifted_partitions, shas = [], {}
        for p in partitions:
            pkey = p.isoformat()
            served = preds.filter(pl.col(compute.PARTITION) == p).get_column("model_version").unique().sort() \
                if preds.height else pl.Series([], dtype=pl.String)
            if served.len() == 0:
                raise MissingDataError(f"asset {keys.drift_report.to_user_string()}, partition {pkey}: no predictions "
                                       "were served in this partition; score it first")
            version = served[-1]
            if version not in references:
                references[version] = reference_view(spec, version, registry)
            start = spec.shift(p, -(window - 1))
            in_window = [views[d] for d in sorted(views) if start <= d <= p]
            if not in_window:
                raise MissingDataError(f"asset {keys.feature_profiles.to_user_string()}, partition {pkey}: "
                                       "not materialized")
            current = in_window[0]
            for view in in_window[1:]:
                current = current.merge(view)
            scores = drift_scores(references[version], current, numeric, categorical, mon.quantile_bins)
            summary = summarize(scores, mon.feature_drift_threshold)
            drifted = summary["drifted_share"] > mon.drifted_share_threshold
            report = {"partition": pkey, "reference_version": version, "served_versions": served.to_list(),
                      "window": [start.isoformat(), pkey], "window_partitions_profiled": len(in_window),
                      "drifted": drifted, **summary, "scores": scores,
                      "thresholds": {"column": mon.feature_drift_threshold, "share": mon.drifted_share_threshold}}
            stored = lakehouse.write_json(lakehouse.partition_uri(spec.name, keys.drift_report.path[-1], pkey, "json"),
                                          report)
            shas[pkey] = stored.sha256
            rows = [{"column": c, "hellinger": s["hellinger"], "ks": s["ks"],
                     "drifted": s["hellinger"] > mon.feature_drift_threshold}
                    for c, s in sorted(scores.items(), key=lambda kv: -kv[1]["hellinger"])]
            inputs = {keys.feature_profiles.to_user_string():
                      {k: r.storage_id for k, r in profile_receipts.items() if start.isoformat() <= k <= pkey},
                      keys.predictions.to_user_string():
                      {k: r.storage_id for k, r in pred_receipts.items() if start.isoformat() <= k <= pkey}}
            context.add_asset_metadata({
                "drifted": drifted, "drifted_share": summary["drifted_share"],
                "max_hellinger": summary["max_hellinger"], "reference_version": version,
                "monitored_columns": summary["monitored_columns"],
                "prediction_hellinger": scores.get(PREDICTION_COLUMN, {}).get("hellinger", float("nan")),
                "drifted_columns": ", ".join(summary["drifted_columns"]) or "-",
                "scores": dg.MetadataValue.md(markdown_table(rows)),
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "input_receipts": dg.MetadataValue.json(inputs),
            }, partition_key=pkey)
            if drifted:
                drifted_partitions.append(f"{pkey}: {summary['drifted_share']:.0%} "
                                          f"({', '.join(summary['drifted_columns'][:5])})")
        return dg.MaterializeResult(
            data_version=tables.data_version(shas),
            check_results=[dg.AssetCheckResult(
                check_name=DRIFT_CHECK, passed=not drifted_partitions, severity=dg.AssetCheckSeverity.WARN,
                metadata={"drifted_partitions": dg.MetadataValue.md(
                    "\n".join(f"- {w}" for w in drifted_partitions) or "none")})])

    return drift_report


def _realized_performance(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.realized_performance,
        deps=[keys.predictions, keys.labels],
        description="Realized AUROC, calibration and F1 (at the serving version's own threshold) of each "
        "partition's served predictions, from its outcomes.",
        kinds={"pytorch", "polars"},
        **_common(spec, ("evaluation",)),
    )
    def realized_performance(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                             model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _realized(context, lakehouse, model_registry)

    def _realized(context, lakehouse, registry) -> dg.MaterializeResult:
        import polars as pl
        import torch

        from ml_assets.evaluation.metrics import binary_metrics

        partitions = tables.partition_keys(context)
        preds, pred_receipts = tables.read_partitions(context, lakehouse, spec, keys.predictions, partitions)
        labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, partitions,
                                                        columns=[compute.EVENT_ID, compute.LABEL])
        joined = preds.join(labels, on=compute.EVENT_ID, how="inner")
        thresholds: dict[str, float] = {}
        shas = {}
        for p in partitions:
            pkey = p.isoformat()
            part = joined.filter(pl.col(compute.PARTITION) == p)
            versions = sorted(part.get_column("model_version").unique().to_list())
            version = versions[-1] if versions else None
            if version is not None and version not in thresholds:
                thresholds[version] = registry.get(spec.name, version).threshold
            prob = torch.tensor(part.get_column(PREDICTION_COLUMN).to_numpy(), dtype=torch.float32)
            y = torch.tensor(part.get_column(compute.LABEL).cast(float).to_numpy())
            threshold = thresholds.get(version, 0.5) if version else 0.5
            metrics = binary_metrics(prob, y, threshold, spec.evaluation.calibration_bins) if part.height else {}
            record = {"partition": pkey, "model_version": version, "threshold": threshold, "rows": part.height,
                      **metrics, "mean_probability": float(prob.mean()) if part.height else None,
                      "positive_rate": float(y.mean()) if part.height else None}
            stored = lakehouse.write_json(
                lakehouse.partition_uri(spec.name, keys.realized_performance.path[-1], pkey, "json"), record)
            shas[pkey] = stored.sha256
            inputs = {keys.predictions.to_user_string(): {pkey: pred_receipts[pkey].storage_id},
                      keys.labels.to_user_string(): {pkey: label_receipts[pkey].storage_id}}
            context.add_asset_metadata({
                **{k: v for k, v in record.items() if v is not None and k != "partition"},
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "input_receipts": dg.MetadataValue.json(inputs)}, partition_key=pkey)
        return dg.MaterializeResult(data_version=tables.data_version(shas))

    return realized_performance
