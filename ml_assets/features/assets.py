"""Labels and point-in-time features, one partition at a time (any cadence)."""


import os
import tempfile
from datetime import date

import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract
from ml_assets.errors import fatal_errors
from ml_assets.features import compute
from ml_assets.features.contract import feature_problems
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, partitions_def
from ml_assets.spec import UseCaseSpec
from ml_assets.spec import cadence as cad
from resources.lakehouse import LakehouseResource

FEATURE_CHECK = "feature_contract"


def build_feature_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_labels(spec), _features(spec)]


def _defaults(spec: UseCaseSpec, sections: tuple[str, ...]) -> dict:
    return {
        **asset_defaults(spec, "features"),
        "partitions_def": partitions_def(spec),
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "retry_policy": TRANSIENT_RETRY,
        "code_version": code_version(spec, __name__, *sections),
    }


def column_descriptions(spec: UseCaseSpec) -> dict[str, str]:
    """What each feature column means, for the UI's column schema (and auditors)."""
    unit = cad.unit_name(spec.cadence)
    docs = {compute.EVENT_ID: f"event id: {'|'.join(spec.event_id_columns)} joined by '|'",
            compute.PARTITION: f"first day of the event's {spec.cadence} partition ({spec.timezone})",
            compute.LABEL: f"{spec.label.name}: {spec.label.expression} (only where {spec.label.known_when})"}
    docs |= {name: f"SQL: {expr}" for name, expr in spec.features.derived.items()}
    for lookup in spec.features.lookups:
        table = spec.source(lookup.table)
        for name, expr in lookup.columns.items():
            column = expr.removeprefix("t.")
            unitdoc = table.columns[column].description if column in table.columns else ""
            docs[name] = f"from {lookup.table} ({expr}){': ' + unitdoc if unitdoc else ''}"
    for rate in spec.features.rolling_rates:
        for w, name in zip(rate.windows, rate.feature_names(spec.cadence), strict=True):
            docs[name] = (f"share of {spec.label.name} per ({', '.join(rate.keys)}) over the {w} {unit}(s) of labels "
                          f"known {spec.label_delay} {unit}(s) before the event, smoothed with {rate.prior_weight:g} "
                          "pseudo-events at the overall rate")
        for w, name in zip(rate.windows, rate.count_names(spec.cadence), strict=False):
            docs[name] = f"known labels per ({', '.join(rate.keys)}) over those {w} {unit}(s)"
    return docs


def _labels(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    events_key = keys.raw(spec.events_table)

    @dg.asset(
        key=keys.labels,
        deps=[events_key],
        description=f"Outcome `{spec.label.name}` = `{spec.label.expression}` per event, where "
        f"`{spec.label.known_when}`. Known {spec.label_delay} partition(s) after the event's partition.",
        kinds={"duckdb", "parquet"},
        **_defaults(spec, ("label", "event_id_columns")),
    )
    def labels(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        with fatal_errors():
            partitions = tables.partition_keys(context)
            events, receipts = tables.read_partitions(context, lakehouse, spec, events_key, partitions)
            frame = compute.compute_labels(spec, events)
            inputs = tables.receipts_for({p.isoformat(): [p.isoformat()] for p in partitions},
                                         events_key.to_user_string(), receipts)
            written = tables.write_partitions(context, lakehouse, spec, keys.labels, frame, compute.PARTITION,
                                              inputs=inputs, descriptions=column_descriptions(spec))
            return dg.MaterializeResult(data_version=tables.data_version({p: r.sha256 for p, r in written.items()}))

    return labels


def lookup_tables(spec: UseCaseSpec) -> list[str]:
    return sorted({lk.table for lk in spec.features.lookups})


def label_window(spec: UseCaseSpec, partition: date) -> list[str]:
    """The label partitions the features of `partition` may read (point in time: `label.delay` before)."""
    start_offset, end_offset = spec.label_history_offsets
    return [spec.shift(partition, i).isoformat() for i in range(start_offset, end_offset + 1)]


def history_deps(spec: UseCaseSpec) -> list[dg.AssetDep]:
    """What the feature query's history reads besides the events: lookup tables, and the trailing label
    partitions (a partition mapping, so the lineage shows exactly which ones)."""
    keys = UseCaseKeys(spec.name)
    start_offset, end_offset = spec.label_history_offsets
    deps = [dg.AssetDep(keys.raw(t)) for t in lookup_tables(spec)]
    if spec.features.rolling_rates:
        deps.append(dg.AssetDep(keys.labels, partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True)))
    return deps


def _features(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    lookups = lookup_tables(spec)
    deps = [dg.AssetDep(keys.raw(spec.events_table)), *history_deps(spec)]

    @dg.asset(
        key=keys.features,
        deps=deps,
        description="Point-in-time features for every event of the partition: same-partition lookups, dimension "
        f"attributes, and label rates over the trailing {spec.features.max_window} partition(s) of labels already "
        "known (partition mapping on `labels`). The one feature function for training, batch and online scoring.",
        kinds={"duckdb", "polars", "parquet"},
        check_specs=[dg.AssetCheckSpec(FEATURE_CHECK, asset=keys.features, blocking=True,
                                       description="No infinite values; null share of each numeric feature "
                                       f"<= {spec.features.max_null_rate:.0%} (rolling rates exempt while a partition "
                                       "has no label history).")],
        **_defaults(spec, ("features", "label", "event_id_columns", "cadence")),
    )
    def features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        with fatal_errors():
            return _compute(context, lakehouse)

    def _compute(context: dg.AssetExecutionContext, lakehouse) -> dg.MaterializeResult:
        import polars as pl

        partitions = tables.partition_keys(context)
        pkeys = [p.isoformat() for p in partitions]
        same = {p: [p] for p in pkeys}
        events_key = keys.raw(spec.events_table)
        events, event_receipts = tables.read_partitions(context, lakehouse, spec, events_key, partitions)
        inputs = [tables.receipts_for(same, events_key.to_user_string(), event_receipts)]
        relations: dict[str, object] = {"events": events}
        for table in lookups:
            key = keys.raw(table)
            if spec.source(table).partitioned:
                relations[table], got = tables.read_partitions(context, lakehouse, spec, key, partitions)
                inputs.append(tables.receipts_for(same, key.to_user_string(), got))
            else:
                relations[table], receipt = tables.read_unpartitioned(context, lakehouse, key)
                inputs.append({p: {key.to_user_string(): {"": receipt.storage_id}} for p in pkeys})
        history_of = {p.isoformat(): label_window(spec, p) for p in partitions}
        labels = pl.DataFrame()
        if spec.features.rolling_rates:
            first, last = label_window(spec, partitions[0])[0], label_window(spec, partitions[-1])[-1]
            labels, label_receipts = tables.read_partitions(context, lakehouse, spec, keys.labels,
                                                            spec.partition_range(first, last))
            inputs.append(tables.receipts_for(history_of, keys.labels.to_user_string(), label_receipts))
        relations["labels"] = labels
        known = _labelled_history(spec, labels, partitions)
        with tempfile.TemporaryDirectory(prefix="features-") as staging:
            # Every chunk is checked before any partition is written: a broken contract leaves all files as they were.
            staged, problems = [], {}
            for i, chunk in enumerate(compute.iter_features(spec, relations)):
                chunk_days = sorted(set(chunk.get_column(compute.PARTITION)))
                problems |= _problems(spec, chunk, chunk_days, known)
                staged.append((os.path.join(staging, f"{i}.parquet"), chunk_days))
                chunk.write_parquet(staged[-1][0])
            if problems:
                fail_contract(context, keys.features, FEATURE_CHECK,
                              "feature contract broken; nothing was written:\n" + "\n".join(
                                  f"asset {keys.features.to_user_string()}, partition {d}: {p}"
                                  for d, ps in problems.items() for p in ps), problems)
            sql = compute.feature_sql(spec)
            context.add_asset_metadata({"feature_sql": dg.MetadataValue.md(f"```sql\n{sql}\n```")})
            merged = tables.merge_inputs(*inputs)
            docs = column_descriptions(spec)
            written = {}
            frame = None
            for path, chunk_days in staged:
                frame = pl.read_parquet(path).sort(compute.PARTITION, compute.EVENT_ID)  # stable files
                written |= tables.write_partitions(context, lakehouse, spec, keys.features, frame, compute.PARTITION,
                                                   chunk_days, inputs=merged, descriptions=docs)
            empty = sorted(set(partitions) - {d for _, ds in staged for d in ds})  # no events: an empty file
            if empty and frame is not None:
                written |= tables.write_partitions(context, lakehouse, spec, keys.features, frame.clear(),
                                                   compute.PARTITION, empty, inputs=merged, descriptions=docs)
        return dg.MaterializeResult(data_version=tables.data_version({p: r.sha256 for p, r in written.items()}),
                                    check_results=[dg.AssetCheckResult(check_name=FEATURE_CHECK, passed=True)])

    return features


def _labelled_history(spec: UseCaseSpec, labels, partitions) -> dict[str, dict[int, int]]:
    """Per partition and rolling window, how many labels that window could read (0: no history yet)."""
    import polars as pl

    counts = {} if labels.is_empty() else dict(
        labels.group_by(compute.PARTITION).len().with_columns(pl.col(compute.PARTITION).cast(pl.String)).iter_rows())
    windows = sorted({int(w) for r in spec.features.rolling_rates for w in r.windows})
    out = {}
    for p in partitions:
        last = spec.shift(p, -spec.label_delay)
        out[p.isoformat()] = {w: sum(counts.get(spec.shift(last, -i).isoformat(), 0) for i in range(w))
                              for w in windows}
    return out


def _problems(spec: UseCaseSpec, frame, days, known: dict[str, dict[int, int]]) -> dict[str, list[str]]:
    import polars as pl

    problems = {}
    for day in days:
        # A rate whose window holds no known label yet (the first partitions, labels that start late, a
        # gap in the data) is null for every event: exempt, per window.
        history = known.get(day.isoformat(), {})
        exempt = set()
        for rate in spec.features.rolling_rates:
            counts = rate.count_names(spec.cadence) or [None] * len(rate.windows)
            for w, name, count in zip(rate.windows, rate.feature_names(spec.cadence), counts, strict=True):
                if history.get(int(w), 0) == 0:
                    exempt |= {name, count} - {None}
        for lookup in spec.features.lookups:  # a partition the source is known to lack
            if day.isoformat() in spec.source(lookup.table).known_missing_partitions:
                exempt |= set(lookup.columns)
        found = feature_problems(frame.filter(pl.col(compute.PARTITION) == day), list(spec.features.numeric),
                                 spec.features.max_null_rate, spec.features.max_null_rates, exempt)
        if found:
            problems[day.isoformat()] = found
    return problems
