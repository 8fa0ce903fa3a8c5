"""The assets of online scoring: the history state the service loads, and the online predictions it
logged, landed per partition like batch predictions."""


import dagster as dg

from ml_assets import tables
from ml_assets.errors import fatal_errors
from ml_assets.features import compute
from ml_assets.features.assets import history_deps, label_window, lookup_tables
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, partitions_def
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource

STATE_DOCS = "history state of online scoring"


def build_serving_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_serving_state(spec), _online_predictions(spec)]


def _serving_state(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    tables_looked_up = lookup_tables(spec)
    deps = history_deps(spec)

    @dg.asset(
        key=keys.serving_state,
        deps=deps,
        description="What online scoring needs to compute an event's features with the batch feature SQL: for "
        "partition p, the rows of every relation the feature query joins (trailing label rates as of the labels "
        "known by p, deduplicated dimension tables, p's own rows of partitioned lookups), computed by the same "
        "history SQL as `features`. One Parquet file per relation and a manifest of their sha256s.",
        kinds={"duckdb", "parquet"},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        code_version=code_version(spec, __name__, "features", "label", "event_id_columns", "cadence"),
        **asset_defaults(spec, "predictions"),
    )
    def serving_state(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _build(context, lakehouse)

    def _build(context, lakehouse) -> dg.MaterializeResult:
        import polars as pl

        from ml_assets.serving.state import StateFile, StateManifest, build_state, feature_sql_sha256
        from resources.sources import empty_frame

        partitions = tables.partition_keys(context)
        dims, dim_inputs = {}, {}
        for table in tables_looked_up:
            if not spec.source(table).partitioned:
                key = keys.raw(table)
                dims[table], receipt = tables.read_unpartitioned(context, lakehouse, key)
                dim_inputs[key.to_user_string()] = {"": receipt.storage_id}
        labels, label_receipts = pl.DataFrame(), {}
        if spec.features.rolling_rates:
            first, last = label_window(spec, partitions[0])[0], label_window(spec, partitions[-1])[-1]
            labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels,
                                                            spec.partition_range(first, last))
        shas = {}
        for p in partitions:
            pkey = p.isoformat()
            inputs: dict[str, dict[str, int]] = dict(dim_inputs)
            lookups, missing = dict(dims), []
            for table in tables_looked_up:
                if spec.source(table).partitioned:
                    key = keys.raw(table)
                    frame, got = tables.read_partitions(context, lakehouse, spec, key, [p], missing_ok=True)
                    if pkey not in got:
                        missing.append(table)  # not landed yet: its lookup features are null online
                        frame = empty_frame(spec.source(table))
                    else:
                        inputs[key.to_user_string()] = {pkey: got[pkey].storage_id}
                    lookups[table] = frame
            window = label_window(spec, p)
            part_labels = labels
            if spec.features.rolling_rates and labels.height:
                part_labels = labels.filter(pl.col(compute.PARTITION).cast(pl.String).is_in(window))
                inputs[keys.labels.to_user_string()] = {k: label_receipts[k].storage_id for k in window
                                                        if k in label_receipts}
            frames = build_state(spec, p, part_labels, lookups)
            # Content-addressed, never overwritten: an online answer logs the materialization that served it,
            # and a rebuilt state must not change the bytes an auditor later verifies for that answer.
            folder = lakehouse.uri(spec.name, keys.serving_state.path[-1], f"date={pkey}")
            files = []
            for relation, frame in frames.items():
                receipt = lakehouse.write_content_addressed(folder, lakehouse.parquet_bytes(frame), "parquet")
                files.append(StateFile(relation, receipt.uri, receipt.sha256, frame.height))
            manifest = StateManifest(spec.name, pkey, tuple(files), feature_sql_sha256(spec))
            stored = lakehouse.write_content_addressed(folder, manifest.to_json(), "json")
            shas[pkey] = stored.sha256
            context.add_asset_metadata({
                "uri": dg.MetadataValue.path(stored.uri), "sha256": stored.sha256,
                "relations": dg.MetadataValue.json({f.relation: {"rows": f.rows, "sha256": f.sha256} for f in files}),
                "lookups_not_landed": ", ".join(missing) or "-",
                "labels_through": spec.shift(p, -spec.label_delay).isoformat(),
                "feature_sql_sha256": manifest.feature_sql_sha256,
                "input_receipts": dg.MetadataValue.json(inputs),
            }, partition_key=pkey)
        return dg.MaterializeResult(data_version=tables.data_version(shas))

    return serving_state


def _online_predictions(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)

    @dg.asset(
        key=keys.online_predictions,
        deps=[keys.serving_state, keys.production_model],
        description="Every prediction the online service returned for events of the partition, from its "
        "append-only log (JSONL segments, each verified against its checksum): the batch predictions' columns "
        "plus `source` ('online'), `request_id` and `scored_at`, and the scoring's provenance (`state_partition`, "
        "`state_storage_id`, `pointer_sequence`; null where the service did not log it, counted in the "
        "metadata). A re-scored event (a client retry) keeps every row. Read by drift, realized performance, "
        "model health and `mlp trace`.",
        kinds={"parquet"},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        code_version=code_version(spec, __name__),
        **asset_defaults(spec, "predictions"),
    )
    def online_predictions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        with fatal_errors():
            import polars as pl

            from ml_assets.serving.log import read_segments

            shas = {}
            for p in tables.partition_keys(context):
                pkey = p.isoformat()
                frame, segments = read_segments(lakehouse, spec.name, pkey)
                frame = frame.with_columns(pl.lit(p, dtype=pl.Date).alias(compute.PARTITION)).sort(
                    "scored_at", "prediction_id")
                written = tables.write_partitions(context, lakehouse, spec, keys.online_predictions, frame,
                                                  compute.PARTITION, [p], extra={pkey: {
                                                      "segments": len(segments),
                                                      "segment_receipts": dg.MetadataValue.json(segments),
                                                      "model_versions": ", ".join(sorted(
                                                          frame.get_column("model_version").unique())) or "-",
                                                      "distinct_events": frame.get_column(compute.EVENT_ID)
                                                      .n_unique(),
                                                      "rows_without_state_provenance": frame.get_column(
                                                          "state_partition").null_count()}})
                shas[pkey] = written[pkey].sha256
            return dg.MaterializeResult(data_version=tables.data_version(shas))

    return online_predictions
