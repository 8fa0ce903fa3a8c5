"""Monitoring per partition: drift against the serving version's own reference profile, and realized
performance of what was served once outcomes are known. The retraining sensors act on both."""


from datetime import date
from typing import Any

import dagster as dg

from ml_assets import lineage, tables
from ml_assets.errors import MissingDataError, fatal_errors
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version, partitions_def, readable_metadata
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


def reference_view(version: str, record: Any, registry: ModelRegistryResource) -> Any:
    """The version's drift reference, stored at registration; its sha256 is in the (verified) record."""
    from ml_assets.profiles import whylogs_profile as wp

    if record.reference_profile is None:
        raise MissingDataError(f"model {version} has no reference profile in its registry record")
    ref = record.reference_profile
    return wp.deserialize(registry.lakehouse.read_bytes(ref.uri, ref.sha256, what=f"reference profile of {version}"))


def drift_calibration(version: str, record: Any, registry: ModelRegistryResource) -> Any:
    """The version's calibrated drift thresholds (verified against the sha256 in its verified record), or
    None for a record registered before calibration existed."""
    from ml_assets.monitoring import drift_calibration as dc

    ref = record.drift_calibration
    if ref is None:
        return None
    return dc.parse(registry.lakehouse.read_bytes(ref.uri, ref.sha256, what=f"drift calibration of {version}"),
                    ref.uri)


def served_records(context: Any, lakehouse: LakehouseResource, registry: ModelRegistryResource,
                   spec: UseCaseSpec) -> Any:
    """version -> its registry record, read verified against the sha256 its training run recorded
    (an edited record, or one swapped with its reference files, fails the run)."""
    from ml_assets.audit.ledger import Ledger

    ledger = Ledger(context.instance, lakehouse, registry, spec.name)
    cache: dict[str, Any] = {}

    def record(version: str) -> Any:
        if version not in cache:
            cache[version] = ledger.record(version)
        return cache[version]

    return record


def _drift_report(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    mon = spec.monitoring
    window, k, n = int(mon.window), mon.drift_alarm_exceedances, mon.drift_alarm_partitions
    lookback = window + n - 1  # the k-of-n rule scores the last n partitions, each over its window

    @dg.asset(
        key=keys.drift_report,
        deps=[
            dg.AssetDep(keys.feature_profiles, partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(lookback - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
            keys.predictions,
        ],
        description=f"Drift of features and predictions against the serving version's reference (its training "
        f"features and scores): per column, the Hellinger distance (and KS) of the trailing {window} partition(s) "
        "from whylogs sketches, against a threshold calibrated on the reference's own partitions at a "
        f"{mon.drift_false_alarm_rate} per-partition false-alarm rate. A column fires when it exceeds its threshold "
        f"in {k} of the last {n} partitions; drifted when any column fires or more than "
        f"{mon.drifted_share_threshold} of the columns exceed.",
        kinds={"whylogs", "polars"},
        check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=keys.drift_report,
                                       description="Warns when a partition is drifted (a column's k-of-n rule fired "
                                       "or the share of exceeding columns is above the policy).")],
        **_common(spec, ("monitoring", "features")),
    )
    def drift_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _drift(context, lakehouse, model_registry)

    def _drift(context, lakehouse, registry) -> dg.MaterializeResult:
        import polars as pl

        from ml_assets.monitoring.drift import drift_decision
        from ml_assets.profiles import whylogs_profile as wp

        partitions = tables.partition_keys(context)
        history = spec.partition_range(spec.shift(partitions[0], -(lookback - 1)), partitions[-1])
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
        references: dict[str, tuple[Any, Any, str]] = {}
        records = served_records(context, lakehouse, registry, spec)
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
                record = records(version)
                references[version] = (reference_view(version, record, registry),
                                       drift_calibration(version, record, registry),
                                       record.drift_calibration.sha256 if record.drift_calibration else "none")
            if p not in views:
                raise MissingDataError(f"asset {keys.feature_profiles.to_user_string()}, partition {pkey}: "
                                       "not materialized")
            reference, calibration, calibration_sha = references[version]
            scored = {d: _window_scores(spec, reference, [views[x] for x in sorted(views)
                                                          if spec.shift(d, -(window - 1)) <= x <= d])
                      for d in spec.partition_range(spec.shift(p, -(n - 1)), p) if d in views}
            report = drift_decision(spec, scored, p, calibration)
            start = spec.shift(p, -(lookback - 1))
            record = records(version)
            report = {"partition": pkey, "reference_version": version, "served_versions": served.to_list(),
                      "reference_profile": record.reference_profile.model_dump(mode="json"),
                      "calibration": record.drift_calibration.model_dump(mode="json") if record.drift_calibration
                      else None,
                      "window": [spec.shift(p, -(window - 1)).isoformat(), pkey],
                      "window_partitions_profiled": sum(1 for d in views if spec.shift(p, -(window - 1)) <= d <= p),
                      **report}
            stored = lakehouse.write_json(lakehouse.partition_uri(spec.name, keys.drift_report.path[-1], pkey, "json"),
                                          report)
            shas[pkey] = stored.sha256
            columns = report["columns"]
            rows = [{"column": c, "hellinger": v["score"], "ks": v["ks"], "threshold": v["threshold"],
                     f"exceedances (last {n})": v["exceedances"], "fired": v["fired"]}
                    for c, v in sorted(columns.items(), key=lambda kv: -kv[1]["score"])]
            inputs = {keys.feature_profiles.to_user_string():
                      {k: r.storage_id for k, r in profile_receipts.items() if start.isoformat() <= k <= pkey},
                      keys.predictions.to_user_string():
                      {k: r.storage_id for k, r in pred_receipts.items() if start.isoformat() <= k <= pkey}}
            context.add_asset_metadata(readable_metadata({
                "drifted": report["drifted"], "drifted_share": report["drifted_share"],
                "max_hellinger": report["max_hellinger"], "reference_version": version,
                "monitored_columns": report["monitored_columns"],
                "prediction_hellinger": columns.get(PREDICTION_COLUMN, {}).get("score", float("nan")),
                "drifted_columns": ", ".join(report["drifted_columns"]) or "-",
                "fired_columns": dg.MetadataValue.json(report["fired_columns"]),
                "alarm_partitions": dg.MetadataValue.json(report["alarm_partitions"]),
                "threshold_source": report["threshold_source"],
                "calibration_sha256": calibration_sha,
                "rule": report["rule"]["text"],
                "scores": dg.MetadataValue.md(markdown_table(rows)),
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "input_receipts": dg.MetadataValue.json(inputs),
            }), partition_key=pkey)
            if report["drifted"]:
                fired = ", ".join(f"{c} ({', '.join(days)})" for c, days in report["fired_columns"].items())
                drifted_partitions.append(f"{pkey}: {fired or ''} share {report['drifted_share']:.0%}")
        return dg.MaterializeResult(
            data_version=tables.data_version(shas),
            check_results=[dg.AssetCheckResult(
                check_name=DRIFT_CHECK, passed=not drifted_partitions, severity=dg.AssetCheckSeverity.WARN,
                metadata={"drifted_partitions": dg.MetadataValue.md(
                    "\n".join(f"- {w}" for w in drifted_partitions) or "none")})])

    return drift_report


def _window_scores(spec: UseCaseSpec, reference: Any, window_views: list[Any]) -> dict[str, dict[str, float]]:
    from ml_assets.monitoring.drift import drift_scores, merged

    numeric, categorical = [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical)
    return drift_scores(reference, merged(window_views), numeric, categorical, spec.monitoring.quantile_bins)


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
        records = served_records(context, lakehouse, registry, spec)
        shas = {}
        for p in partitions:
            pkey = p.isoformat()
            part = joined.filter(pl.col(compute.PARTITION) == p)
            versions = sorted(part.get_column("model_version").unique().to_list())
            version = versions[-1] if versions else None
            if version is not None and version not in thresholds:
                thresholds[version] = records(version).threshold
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
            context.add_asset_metadata(readable_metadata({
                **{k: v for k, v in record.items() if v is not None and k != "partition"},
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "input_receipts": dg.MetadataValue.json(inputs)}), partition_key=pkey)
        return dg.MaterializeResult(data_version=tables.data_version(shas))

    return realized_performance
