"""Labels, point-in-time features and their whylogs profiles, one daily partition at a time."""


import os
import tempfile
from datetime import date, timedelta

import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract, feature_problems
from ml_assets.features import compute
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import (
    TRANSIENT_RETRY,
    asset_defaults,
    code_version,
    daily_partitions,
    markdown_table,
)
from ml_assets.raw.assets import read_dimension
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import LakehouseResource

FEATURE_CHECK = "feature_contract"


def build_feature_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_labels(spec), _features(spec), _profiles(spec)]


def _defaults(spec: UseCaseSpec, sections: tuple[str, ...]) -> dict:
    return {
        **asset_defaults(spec, "features"),
        "partitions_def": daily_partitions(spec),
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "retry_policy": TRANSIENT_RETRY,
        "code_version": code_version(spec, [__name__, compute.__name__], *sections),
    }


def _labels(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.labels,
        deps=[keys.raw(spec.events_table)],
        description=f"Outcome `{spec.label.name}` = `{spec.label.expression}` per event, where "
        f"`{spec.label.known_when}`. Known {spec.label.delay_days} day(s) after the event's day.",
        kinds={"duckdb", "parquet"},
        **_defaults(spec, ("label", "event_id_columns")),
    )
    def labels(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> None:
        events = tables.read_daily(lakehouse, spec, keys.raw(spec.events_table), tables.partition_days(context))
        frame = compute.compute_labels(spec, events)
        tables.write_daily(context, lakehouse, spec, keys.labels, frame, compute.EVENT_DATE)

    return labels


def _features(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)
    start_offset, end_offset = spec.label_history_offsets
    lookup_tables = [lk.table for lk in spec.features.lookups]
    deps = [dg.AssetDep(keys.raw(spec.events_table))]
    deps += [dg.AssetDep(keys.raw(t)) for t in lookup_tables]
    deps.append(
        dg.AssetDep(
            keys.labels,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
            ),
        )
    )

    @dg.asset(
        key=keys.features,
        deps=deps,
        description="Point-in-time features for every event of the day: same-hour lookups, dimension "
        f"attributes, and label rates over the trailing {spec.features.max_window_days} days of labels "
        "already known (partition mapping on `labels`). The one feature function for training and scoring.",
        kinds={"duckdb", "polars", "parquet"},
        check_specs=[dg.AssetCheckSpec(FEATURE_CHECK, asset=keys.features, blocking=True,
                                       description="No infinite values; null share of each numeric feature "
                                       f"<= {spec.features.max_null_rate:.0%} (rolling rates exempt until "
                                       "history exists).")],
        **_defaults(spec, ("features", "label", "event_id_columns")),
    )
    def features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
        import polars as pl

        days = tables.partition_days(context)
        events = tables.read_daily(lakehouse, spec, keys.raw(spec.events_table), days)
        lookups = {}
        for table in lookup_tables:
            if spec.source(table).partitioned:
                lookups[table] = tables.read_daily(lakehouse, spec, keys.raw(table), days)
            else:
                lookups[table] = read_dimension(lakehouse, spec, table)
        history = [days[0] + timedelta(days=i) for i in range(start_offset, (days[-1] - days[0]).days + end_offset + 1)]
        labels = tables.read_daily(lakehouse, spec, keys.labels, history)
        relations = {"events": events, "labels": labels, **lookups}
        with tempfile.TemporaryDirectory(prefix="features-") as staging:
            # Every chunk is checked before any day is written: a broken contract leaves all files as they were.
            staged, problems = [], {}
            for i, chunk in enumerate(compute.iter_features(spec, relations)):
                chunk_days = sorted(set(chunk.get_column(compute.EVENT_DATE)))
                problems |= _feature_problems(spec, chunk, chunk_days)
                staged.append((os.path.join(staging, f"{i}.parquet"), chunk_days))
                chunk.write_parquet(staged[-1][0])
            if problems:
                fail_contract(context, keys.features, FEATURE_CHECK,
                              "feature contract broken; nothing was written:\n" + "\n".join(
                                  f"asset {keys.features.to_user_string()}, partition {d}: {p}"
                                  for d, ps in problems.items() for p in ps), problems)
            sql = compute.feature_sql(spec)
            context.add_asset_metadata({"feature_sql": dg.MetadataValue.md(f"```sql\n{sql}\n```")})
            for path, chunk_days in staged:
                frame = pl.read_parquet(path).sort(compute.EVENT_DATE, compute.EVENT_ID)  # stable files
                tables.write_daily(context, lakehouse, spec, keys.features, frame, compute.EVENT_DATE, chunk_days)
            empty_days = sorted(set(days) - {d for _, ds in staged for d in ds})  # no events: an empty file
            tables.write_daily(context, lakehouse, spec, keys.features, frame.clear(), compute.EVENT_DATE, empty_days)
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name=FEATURE_CHECK, passed=True)])

    return features


def _feature_problems(spec: UseCaseSpec, frame, days) -> dict[str, list[str]]:
    import polars as pl

    first = date.fromisoformat(spec.partitions_start)
    rates = {n for r in spec.features.rolling_rates for n in r.feature_names()}
    problems = {}
    for day in days:
        exempt = set(rates) if (day - first).days < spec.label.delay_days + 1 else set()
        for lookup in spec.features.lookups:  # a day the source is known to lack
            if day.isoformat() in spec.source(lookup.table).known_missing_partitions:
                exempt |= set(lookup.columns)
        found = feature_problems(frame.filter(pl.col(compute.EVENT_DATE) == day), list(spec.features.numeric),
                                 spec.features.max_null_rate, spec.features.max_null_rates, exempt)
        if found:
            problems[day.isoformat()] = found
    return problems


def _profiles(spec: UseCaseSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec)

    @dg.asset(
        key=keys.feature_profiles,
        deps=[keys.features],
        description="A whylogs profile of each feature partition (sketches for drift detection). "
        "Identifier columns are excluded; only categorical features keep frequent items.",
        kinds={"whylogs"},
        **_defaults(spec, ("features",)),
    )
    def feature_profiles(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> None:
        import polars as pl

        from ml_assets.profiles import whylogs_profile as wp

        days = tables.partition_days(context)
        frame = tables.read_daily(lakehouse, spec, keys.features, days)
        numeric, categorical = list(spec.features.numeric), list(spec.features.categorical)
        for day in days:
            part = frame.filter(pl.col(compute.EVENT_DATE) == day)
            view = wp.profile_frame(part, numeric, categorical)
            uri = lakehouse.uri(spec.name, keys.feature_profiles.path[-1], f"date={day.isoformat()}.bin")
            receipt = lakehouse.write_bytes(uri, wp.serialize(view))
            summary = wp.summary_rows(view)
            context.add_asset_metadata(
                {
                    "uri": dg.MetadataValue.path(receipt.uri),
                    "sha256": receipt.sha256,
                    "profiled_rows": part.height,
                    "profiled_columns": len(summary),
                    "summary": dg.MetadataValue.md(markdown_table(summary)),
                },
                partition_key=day.isoformat(),
            )

    return feature_profiles


def read_profile(lakehouse: LakehouseResource, spec: UseCaseSpec, day: str):
    from ml_assets.profiles import whylogs_profile as wp

    uri = lakehouse.uri(spec.name, UseCaseKeys(spec).feature_profiles.path[-1], f"date={day}.bin")
    return wp.deserialize(lakehouse.read_bytes(uri))
