"""Monitoring per partition: drift against the serving version's own reference profile, and realized
performance of what was served once outcomes are known. The retraining sensors act on both.

What was served has two sources: batch `predictions` (every event of the partition) and
`online_predictions` (what the service answered, landed from its log). Both are read from their
recorded files, verified against their sha256; an online partition that was never landed is absent
(the records say "online: none"), one that does not verify fails the run naming asset, partition and
file. Online rows count once per (event, model version): a client retry re-scores an event, and the
latest answer is the one it received.
"""


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
BATCH, ONLINE = "batch", "online"
NONE = "none"
ONLINE_COLUMNS = [compute.EVENT_ID, compute.PARTITION, "prediction_id", "model_version", PREDICTION_COLUMN,
                  "predicted_positive", "request_id", "scored_at"]


def online_dependency(spec: UseCaseSpec) -> dg.AssetDep:
    """`online_predictions` as an input of a monitoring asset: same partition, and never a blocker (a
    partition without online traffic is simply never landed)."""
    return dg.AssetDep(UseCaseKeys(spec.name).online_predictions, partition_mapping=dg.TimeWindowPartitionMapping(
        allow_nonexistent_upstream_partitions=True))


def read_online(context: Any, lakehouse: LakehouseResource, spec: UseCaseSpec, partitions: list[date]
                ) -> tuple[Any, dict[str, Any]]:
    """The landed online predictions of `partitions` (sha256-verified; a partition never landed is absent
    from the receipts), in `ONLINE_COLUMNS`, and the receipts read."""
    import polars as pl

    from ml_assets.serving.log import landed_schema

    frame, receipts = tables.read_partitions(context, lakehouse, spec, UseCaseKeys(spec.name).online_predictions,
                                             partitions, columns=ONLINE_COLUMNS, missing_ok=True)
    schema = landed_schema()
    if not frame.width:
        frame = pl.DataFrame(schema={c: schema[c] for c in ONLINE_COLUMNS})
    return frame, receipts


def distinct_online(frame: Any) -> Any:
    """One online row per (event, model version): the latest answer (a retry re-scores the event; the
    client acted on the last response it received)."""
    return frame.sort("scored_at", "request_id").unique(subset=[compute.EVENT_ID, "model_version"], keep="last",
                                                        maintain_order=True)


def file_evidence(receipt: Any, **counts: Any) -> dict[str, Any]:
    """What a record read from one partition file: asset, partition, uri, sha256, storage id, counts."""
    return {"asset": receipt.asset, "partition": receipt.partition, "uri": receipt.uri, "sha256": receipt.sha256,
            "storage_id": receipt.storage_id, **counts}


def online_summary(evidence: dict[str, Any] | None) -> str:
    """One line for the UI: "none" when the partition was never landed."""
    if evidence is None:
        return NONE
    return (f"{evidence['predictions']} prediction(s), {evidence['distinct']} distinct (event, version), from "
            f"{evidence['uri']} (sha256 {evidence['sha256'][:12]}...)")


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
            dg.AssetDep(keys.online_predictions, partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(lookback - 1), end_offset=0, allow_nonexistent_upstream_partitions=True)),
        ],
        description=f"Drift of features and predictions against the serving version's reference (its training "
        f"features and scores): per column, the Hellinger distance (and KS) of the trailing {window} partition(s) "
        "from whylogs sketches, against a threshold calibrated on the reference's own partitions at a "
        f"{mon.drift_false_alarm_rate} per-partition false-alarm rate. A column fires when it exceeds its threshold "
        f"in {k} of the last {n} partitions; drifted when any column fires or more than "
        f"{mon.drifted_share_threshold} of the columns exceed. The prediction score is everything served: batch "
        "`predictions` and the landed `online_predictions`, each (event, model version) once (the online answer "
        "where both scored it); the record also scores each source alone, as evidence, and names its files.",
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
        cols = [compute.EVENT_ID, compute.PARTITION, PREDICTION_COLUMN, "model_version"]
        preds, pred_receipts = tables.read_partitions(
            context, lakehouse, spec, keys.predictions, history, missing_ok=True, columns=cols)
        if not preds.width:
            preds = pl.DataFrame(schema={compute.EVENT_ID: pl.String, compute.PARTITION: pl.Date,
                                         PREDICTION_COLUMN: pl.Float64, "model_version": pl.String})
        online, online_receipts = read_online(context, lakehouse, spec, history)
        online = distinct_online(online).select(cols)
        # everything served, each (event, version) once; the online answer where both paths scored it
        combined = pl.concat([preds.select(cols).with_columns(pl.lit(BATCH).alias("_source")),
                              online.with_columns(pl.lit(ONLINE).alias("_source"))], how="vertical_relaxed") \
            .unique(subset=[compute.EVENT_ID, "model_version"], keep="last", maintain_order=True)
        by_source = {BATCH: preds, ONLINE: online}
        views: dict[date, Any] = {}
        for pkey, receipt in profile_receipts.items():
            view = wp.deserialize(lineage.verify_recorded(lakehouse, receipt))
            part = combined.filter(pl.col(compute.PARTITION) == date.fromisoformat(pkey))
            if part.height:  # stored feature profiles + this partition's prediction column
                view = view.merge(wp.profile_frame(part.select(PREDICTION_COLUMN), [PREDICTION_COLUMN], []))
            views[date.fromisoformat(pkey)] = view
        # Each source's score alone is evidence only; without online rows it is the judged score, profiled once.
        source_views: dict[str, dict[date, Any]] = {BATCH: {}, ONLINE: {}}
        for source in (BATCH, ONLINE) if online.height else ():
            for (day,), group in by_source[source].group_by([compute.PARTITION]):
                source_views[source][day] = wp.profile_frame(group.select(PREDICTION_COLUMN), [PREDICTION_COLUMN],
                                                             [])
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
            in_window = [d for d in spec.partition_range(spec.shift(p, -(window - 1)), p)]
            prediction_sources = {}
            for source in (BATCH, ONLINE):
                frame = by_source[source].filter(pl.col(compute.PARTITION).is_in(in_window))
                days = frame.get_column(compute.PARTITION).n_unique()
                if not frame.height:
                    prediction_sources[source] = NONE
                    continue
                if online.height:
                    got = [source_views[source][d] for d in in_window if d in source_views[source]]
                    score = _window_scores(spec, reference, got, [PREDICTION_COLUMN]).get(PREDICTION_COLUMN, {})
                else:  # batch alone is everything served: its score is the judged one
                    score = scored.get(p, {}).get(PREDICTION_COLUMN, {})
                prediction_sources[source] = {"rows": frame.height, "partitions": days, **score}
            mine = combined.filter(pl.col(compute.PARTITION).is_in(in_window))
            prediction_sources["combined"] = {"rows": mine.height, "from_online": int(
                (mine.get_column("_source") == ONLINE).sum()), "judged": True}
            online_files = [file_evidence(online_receipts[d.isoformat()],
                                          distinct=online.filter(pl.col(compute.PARTITION) == d).height)
                            for d in in_window if d.isoformat() in online_receipts]
            online_versions = sorted(online.filter(pl.col(compute.PARTITION) == p).get_column("model_version")
                                     .unique().to_list())
            report = {"partition": pkey, "reference_version": version, "served_versions": served.to_list(),
                      "online_versions": online_versions, "prediction_sources": prediction_sources,
                      "prediction_files": {BATCH: [file_evidence(pred_receipts[d.isoformat()])
                                                   for d in in_window if d.isoformat() in pred_receipts],
                                           ONLINE: online_files or NONE},
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
            online_inputs = {k: r.storage_id for k, r in online_receipts.items() if start.isoformat() <= k <= pkey}
            if online_inputs:
                inputs[keys.online_predictions.to_user_string()] = online_inputs
            context.add_asset_metadata(readable_metadata({
                "drifted": report["drifted"], "drifted_share": report["drifted_share"],
                "max_hellinger": report["max_hellinger"], "reference_version": version,
                "monitored_columns": report["monitored_columns"],
                "prediction_hellinger": columns.get(PREDICTION_COLUMN, {}).get("score", float("nan")),
                "online": NONE if prediction_sources[ONLINE] == NONE else
                f"{prediction_sources[ONLINE]['rows']} distinct online prediction(s) in the window from "
                f"{len(online_files)} file(s)",
                "prediction_sources": dg.MetadataValue.json(prediction_sources),
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


def _window_scores(spec: UseCaseSpec, reference: Any, window_views: list[Any], only: list[str] | None = None
                   ) -> dict[str, dict[str, float]]:
    from ml_assets.monitoring.drift import drift_scores, merged

    numeric, categorical = [*spec.features.numeric, PREDICTION_COLUMN], list(spec.features.categorical)
    if only is not None:
        numeric, categorical = [c for c in numeric if c in only], [c for c in categorical if c in only]
    return drift_scores(reference, merged(window_views), numeric, categorical, spec.monitoring.quantile_bins)


def _realized_performance(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.realized_performance,
        deps=[keys.predictions, keys.labels, online_dependency(spec)],
        description="Realized AUROC, calibration and F1 (at the serving version's own threshold) of each "
        "partition's served predictions, from its outcomes, per source: batch `predictions` (the top-level "
        "figures, as before online scoring) and `online_predictions` when that partition was landed (one row per "
        "event and version, the latest answer), each per model version. The record names every file it read "
        "with its sha256 and row counts; 'online: none' when no online partition was landed.",
        kinds={"pytorch", "polars"},
        **_common(spec, ("evaluation",)),
    )
    def realized_performance(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                             model_registry: ModelRegistryResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _realized(context, lakehouse, model_registry)

    def _realized(context, lakehouse, registry) -> dg.MaterializeResult:
        import polars as pl

        partitions = tables.partition_keys(context)
        preds, pred_receipts = tables.read_partitions(context, lakehouse, spec, keys.predictions, partitions)
        labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels, partitions,
                                                        columns=[compute.EVENT_ID, compute.LABEL])
        online, online_receipts = read_online(context, lakehouse, spec, partitions)
        distinct = distinct_online(online)
        joined = preds.join(labels, on=compute.EVENT_ID, how="inner")
        online_joined = distinct.join(labels, on=compute.EVENT_ID, how="inner")
        records = served_records(context, lakehouse, registry, spec)
        shas = {}
        for p in partitions:
            pkey = p.isoformat()
            part = joined.filter(pl.col(compute.PARTITION) == p)
            by_version = _realized_by_version(spec, part, records)
            version = max(by_version) if by_version else None
            top = by_version.get(version) or _realized_figures(spec, part, 0.5)
            batch = {"file": file_evidence(pred_receipts[pkey],
                                           predictions=preds.filter(pl.col(compute.PARTITION) == p).height,
                                           labelled=part.height), "versions": by_version}
            sources: dict[str, Any] = {BATCH: batch, ONLINE: None}
            if pkey in online_receipts:
                landed = online.filter(pl.col(compute.PARTITION) == p)
                labelled = online_joined.filter(pl.col(compute.PARTITION) == p)
                sources[ONLINE] = {
                    "file": file_evidence(online_receipts[pkey], predictions=landed.height,
                                          distinct=distinct.filter(pl.col(compute.PARTITION) == p).height,
                                          labelled=labelled.height),
                    "versions": _realized_by_version(spec, labelled, records)}
            record = {"partition": pkey, "model_version": version, **top, "sources": sources,
                      ONLINE: online_summary(sources[ONLINE]["file"] if sources[ONLINE] else None)}
            stored = lakehouse.write_json(
                lakehouse.partition_uri(spec.name, keys.realized_performance.path[-1], pkey, "json"), record)
            shas[pkey] = stored.sha256
            inputs = {keys.predictions.to_user_string(): {pkey: pred_receipts[pkey].storage_id},
                      keys.labels.to_user_string(): {pkey: label_receipts[pkey].storage_id}}
            online_meta: dict[str, Any] = {}
            if sources[ONLINE] is not None:
                inputs[keys.online_predictions.to_user_string()] = {pkey: online_receipts[pkey].storage_id}
                figures = sources[ONLINE]["versions"]
                main = figures.get(version) or (figures[max(figures)] if figures else {})
                online_meta = {"online_rows": sources[ONLINE]["file"]["labelled"],
                               "online_predictions": sources[ONLINE]["file"]["predictions"],
                               "online_versions": ", ".join(sorted(figures)) or "-",
                               **({"online_auroc": main["auroc"]} if main.get("auroc") is not None else {})}
            context.add_asset_metadata(readable_metadata({
                **{k: v for k, v in record.items() if v is not None and k not in ("partition", "sources")},
                **online_meta, "sources": dg.MetadataValue.json(sources),
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "input_receipts": dg.MetadataValue.json(inputs)}), partition_key=pkey)
        return dg.MaterializeResult(data_version=tables.data_version(shas))

    return realized_performance


def _realized_figures(spec: UseCaseSpec, part: Any, threshold: float) -> dict[str, Any]:
    """Realized figures of labelled predictions at one threshold (the figures of no rows are None)."""
    import torch

    from ml_assets.evaluation.metrics import binary_metrics

    prob = torch.tensor(part.get_column(PREDICTION_COLUMN).to_numpy(), dtype=torch.float32)
    y = torch.tensor(part.get_column(compute.LABEL).cast(float).to_numpy())
    metrics = binary_metrics(prob, y, threshold, spec.evaluation.calibration_bins) if part.height else {}
    return {"threshold": threshold, "rows": part.height, **metrics,
            "mean_probability": float(prob.mean()) if part.height else None,
            "positive_rate": float(y.mean()) if part.height else None}


def _realized_by_version(spec: UseCaseSpec, part: Any, records: Any) -> dict[str, dict[str, Any]]:
    """version -> realized figures of its labelled rows, at its own threshold (from its verified record)."""
    import polars as pl

    if not part.height:
        return {}
    return {v: _realized_figures(spec, part.filter(pl.col("model_version") == v), records(v).threshold)
            for v in sorted(part.get_column("model_version").unique().to_list())}
