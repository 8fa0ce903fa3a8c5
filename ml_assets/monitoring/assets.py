"""Monitoring: daily drift against the serving champion's training window, and realized
performance once a day's outcomes are known. Sensors in `sensors/` act on both."""

import json
from datetime import date

import dagster as dg

from ml_assets import tables
from ml_assets.features import compute
from ml_assets.features.assets import read_profile
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import asset_defaults, code_version, daily_partitions, markdown_table
from ml_assets.spec import UseCaseSpec, date_range
from resources.lakehouse import LakehouseResource
from resources.model_registry import ModelRegistryResource

DRIFT_CHECK = "no_drift"
PREDICTION_COLUMN = "probability"


def build_monitoring_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_drift_report(spec), _realized_performance(spec)]


def _common(spec: UseCaseSpec) -> dict:
    return {
        **asset_defaults(spec, "monitoring"),
        "partitions_def": daily_partitions(spec),
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "code_version": code_version(spec, [__name__, "ml_assets.monitoring.drift", "ml_assets.evaluation.metrics"],
                                     "monitoring"),
    }


def reference_profile(spec: UseCaseSpec, version: str, lakehouse: LakehouseResource,
                      registry: ModelRegistryResource):
    """The champion's reference: its training set's features and its own scores, profiled once."""
    import io

    import polars as pl

    from ml_assets.profiles import whylogs_profile as wp

    uri = lakehouse.uri(spec.name, "registry", "reference_profiles", f"{version}.bin")
    if lakehouse.exists(uri):
        return wp.deserialize(lakehouse.read_bytes(uri))
    record = registry.get(spec.name, version)
    ts = record["training_set"]
    frame = pl.read_parquet(io.BytesIO(lakehouse.read_bytes(ts["uri"], expected_sha256=ts["sha256"])))
    frame = frame.with_columns(pl.Series(PREDICTION_COLUMN, registry.load(spec.name, version).score(frame).numpy()))
    view = wp.profile_frame(frame, [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical))
    lakehouse.write_bytes(uri, wp.serialize(view))
    return view


def _drift_report(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)
    mon = spec.monitoring

    @dg.asset(
        key=keys.drift_report,
        deps=[
            dg.AssetDep(keys.feature_profiles, partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(mon.window_days - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
            keys.predictions,
        ],
        description=f"Drift of the trailing {mon.window_days} days' features and predictions against the serving "
        "champion's training window: Hellinger distance (and KS) per column from whylogs sketches, and "
        f"the share of columns above {mon.feature_drift_threshold}. Drifted when the share exceeds "
        f"{mon.drifted_share_threshold}.",
        kinds={"whylogs", "polars"},
        check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset=keys.drift_report,
                                       description="Warns when a day's drifted share exceeds the policy.")],
        **_common(spec),
    )
    def drift_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                     model_registry: ModelRegistryResource):
        import polars as pl

        from ml_assets.monitoring.drift import drift_scores, summarize
        from ml_assets.profiles import whylogs_profile as wp

        days = tables.partition_days(context)
        history = date_range(days[0].fromordinal(days[0].toordinal() - mon.window_days + 1), days[-1])
        first = date.fromisoformat(spec.partitions_start)
        # Reuse the stored daily feature profiles (merging sketches costs milliseconds); only the
        # prediction column is profiled here.
        preds = lakehouse.read_partitions(spec.name, keys.predictions.path[-1], [d.isoformat() for d in history],
                                          missing_ok=True,
                                          columns=[compute.EVENT_DATE, PREDICTION_COLUMN, "model_version"])
        daily = {}
        for day in history:
            if day < first:
                continue
            view = read_profile(lakehouse, spec, day.isoformat())
            part = preds.filter(pl.col(compute.EVENT_DATE) == day) if not preds.is_empty() else preds
            if part.height:
                view = view.merge(wp.profile_frame(part, [PREDICTION_COLUMN], []))
            daily[day] = view
        numeric, categorical = [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical)
        worst = []
        for day in days:
            served = preds.filter(pl.col(compute.EVENT_DATE) == day).get_column("model_version").unique().to_list() \
                if not preds.is_empty() else []
            version = served[0] if served else model_registry.production(spec.name)["version"]
            reference = reference_profile(spec, version, lakehouse, model_registry)
            start = day.fromordinal(day.toordinal() - mon.window_days + 1)
            window = [v for d, v in daily.items() if start <= d <= day]
            current = window[0]
            for view in window[1:]:
                current = current.merge(view)
            scores = drift_scores(reference, current, numeric, categorical, mon.quantile_bins)
            summary = summarize(scores, mon.feature_drift_threshold)
            drifted = summary["drifted_share"] > mon.drifted_share_threshold
            report = {"day": day.isoformat(), "reference_version": version, "window": [start.isoformat(),
                      day.isoformat()], "drifted": drifted, **summary, "scores": scores}
            lakehouse.write_bytes(lakehouse.uri(spec.name, keys.drift_report.path[-1], f"date={day}.json"),
                                  json.dumps(report, sort_keys=True).encode())
            rows = [{"column": c, "hellinger": s["hellinger"], "ks": s["ks"],
                     "drifted": s["hellinger"] > mon.feature_drift_threshold}
                    for c, s in sorted(scores.items(), key=lambda kv: -kv[1]["hellinger"])]
            context.add_asset_metadata({
                "drifted": drifted, "drifted_share": summary["drifted_share"],
                "max_hellinger": summary["max_hellinger"], "reference_version": version,
                "prediction_hellinger": scores.get(PREDICTION_COLUMN, {}).get("hellinger", float("nan")),
                "drifted_columns": ", ".join(summary["drifted_columns"]) or "-",
                "scores": dg.MetadataValue.md(markdown_table(rows)),
            }, partition_key=day.isoformat())
            if drifted:
                worst.append(f"{day}: {summary['drifted_share']:.0%} ({', '.join(summary['drifted_columns'][:5])})")
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
            check_name=DRIFT_CHECK, passed=not worst, severity=dg.AssetCheckSeverity.WARN,
            metadata={"drifted_days": dg.MetadataValue.md("\n".join(f"- {w}" for w in worst) or "none")})])

    return drift_report


def _realized_performance(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.realized_performance,
        deps=[keys.predictions, keys.labels],
        description="Realized AUROC and calibration of each day's served predictions, once its outcomes are known "
        f"({spec.label.delay_days} day(s) later).",
        kinds={"pytorch", "polars"},
        **_common(spec),
    )
    def realized_performance(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> None:
        import polars as pl
        import torch

        from ml_assets.evaluation.metrics import binary_metrics

        days = tables.partition_days(context)
        preds = tables.read_daily(lakehouse, spec, keys.predictions, days)
        labels = tables.read_daily(lakehouse, spec, keys.labels, days, columns=[compute.EVENT_ID, compute.LABEL])
        joined = preds.join(labels, on=compute.EVENT_ID, how="inner")
        for day in days:
            part = joined.filter(pl.col(compute.EVENT_DATE) == day)
            prob = torch.tensor(part.get_column(PREDICTION_COLUMN).to_numpy(), dtype=torch.float32)
            y = torch.tensor(part.get_column(compute.LABEL).cast(float).to_numpy())
            threshold = 0.5
            metrics = binary_metrics(prob, y, threshold, spec.evaluation.calibration_bins) if part.height else {}
            versions = part.get_column("model_version").unique().to_list()
            record = {"day": day.isoformat(), "model_version": versions[0] if versions else None, **metrics,
                      "sum_prob": float(prob.sum()), "positives": float(y.sum())}
            lakehouse.write_bytes(lakehouse.uri(spec.name, keys.realized_performance.path[-1], f"date={day}.json"),
                                  json.dumps(record, sort_keys=True).encode())
            context.add_asset_metadata({k: v for k, v in record.items() if v is not None and k != "day"},
                                       partition_key=day.isoformat())

    return realized_performance
