"""Raw assets: source tables copied into the lakehouse once they pass their data contract.

Each daily table is a multi-asset: the valid rows (`raw_<table>`) and the quarantined ones
(`raw_<table>_quarantine`, with the rule each row broke). A partition that breaks a partition-level
rule fails before anything is written, so the previous good version of every file stays in place.
"""

from datetime import timedelta
from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, daily_partitions, table_metadata
from ml_assets.raw import contracts
from ml_assets.spec import SourceTableSpec, UseCaseSpec
from resources.lakehouse import LakehouseResource
from resources.sources import RawSourceResource, SourceReadError

CONTRACT_CHECK = "contract"
# A daily feed is late when nothing landed for more than a day (warn) or a day and a half (fail);
# the freshness daemon evaluates it and the freshness sensor reports failures.
RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36), warn_window=timedelta(hours=26))
_RAW_DATE = "_partition_date"
_MODULES = [__name__, "resources.sources", "ml_assets.raw.contracts"]


def build_raw_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_daily(spec, t) if t.partitioned else _dimension(spec, t) for t in spec.sources]


def quarantine_key(spec: UseCaseSpec, table: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, f"raw_{table}_quarantine"])


def _fail(context: dg.AssetExecutionContext, key: dg.AssetKey, message: str,
          problems: dict[str, list[str]] | None = None) -> None:
    fail_contract(context, key, CONTRACT_CHECK, message, problems)


def _daily(spec: UseCaseSpec, table: SourceTableSpec) -> dg.AssetsDefinition:
    key = UseCaseKeys(spec).raw(table.name)
    qkey = quarantine_key(spec, table.name)
    defaults = asset_defaults(spec, "raw")
    common: dict[str, Any] = {"group_name": defaults["group_name"], "owners": defaults["owners"],
                              "tags": defaults["tags"], "code_version": code_version(spec, _MODULES, "sources")}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(key, description=f"Raw `{table.name}` rows that passed the contract. {table.description}",
                         kinds={"polars", "parquet"}, freshness_policy=RAW_FRESHNESS, **common),
            dg.AssetSpec(qkey, description=f"Rows of `{table.name}` that broke a row-level contract rule, with the "
                         "rule (`_rule`). Kept for inspection and replay; never used downstream.",
                         kinds={"polars", "parquet"}, **common),
        ],
        check_specs=[dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True,
                                       description=_contract_text(table))],
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        name=f"{spec.name}__raw_{table.name}",
        pool=f"{spec.name}__raw_{table.name}",
    )
    def raw_daily(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, raw_source: RawSourceResource):
        # Two runs of the same day are serialized: read, validate and write happen as one unit.
        with lakehouse.partition_lock(spec.name, key.path[-1], list(context.partition_keys)) as waited:
            context.log.info(f"partition lock acquired after {waited:.2f} s")
            yield from _ingest(context, lakehouse, raw_source)

    def _ingest(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, raw_source: RawSourceResource):
        import polars as pl

        from resources.sources import partition_date_expr

        days = tables.partition_days(context)
        span = f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])
        try:
            frame = raw_source.read(table, spec.embedded_package, days)
        except SourceReadError as exc:
            _fail(context, key, f"asset {key.to_user_string()}, partition {span}: {exc}")
        frame = frame.with_columns(partition_date_expr(table).alias(_RAW_DATE))
        splits, problems = {}, {}
        for day in days:
            part = frame.filter(pl.col(_RAW_DATE) == day)
            splits[day] = contracts.split_rows(part, table)
            found = contracts.partition_problems(table, day.isoformat(), part.height, splits[day])
            if found:
                problems[day.isoformat()] = found
        if problems:
            lines = [f"asset {key.to_user_string()}, partition {d}, file {_where(raw_source, spec, table, d)}: {p}"
                     for d, ps in problems.items() for p in ps]
            _fail(context, key, "data contract broken; nothing was written:\n" + "\n".join(lines), problems)

        good = pl.concat([s.good for s in splits.values()], how="vertical")
        bad = pl.concat([s.quarantined for s in splits.values()], how="vertical")
        previews = {d.isoformat(): {"quarantined_rows": s.quarantined.height,
                                    "quarantine_preview": dg.MetadataValue.md(_preview(s.quarantined))}
                    for d, s in splits.items()}
        tables.write_daily(context, lakehouse, spec, key, good, _RAW_DATE, extra=previews)
        tables.write_daily(context, lakehouse, spec, qkey, bad, _RAW_DATE)
        yield dg.MaterializeResult(asset_key=key)
        yield dg.MaterializeResult(asset_key=qkey)
        yield dg.AssetCheckResult(
            asset_key=key, check_name=CONTRACT_CHECK, passed=True, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"partitions": len(days), "valid_rows": good.height, "quarantined_rows": bad.height},
        )

    return raw_daily


def _dimension(spec: UseCaseSpec, table: SourceTableSpec) -> dg.AssetsDefinition:
    key = UseCaseKeys(spec).raw(table.name)

    @dg.asset(
        key=key,
        description=f"Raw `{table.name}` as delivered, checked against its contract. {table.description}",
        kinds={"polars", "parquet"},
        code_version=code_version(spec, _MODULES, "sources"),
        retry_policy=TRANSIENT_RETRY,
        check_specs=[dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True, description=_contract_text(table))],
        **asset_defaults(spec, "raw"),
    )
    def raw_dimension(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                      raw_source: RawSourceResource):
        where = raw_source.location(table, spec.embedded_package)
        try:
            frame = raw_source.read(table, spec.embedded_package)
        except SourceReadError as exc:
            _fail(context, key, f"asset {key.to_user_string()}: {exc}")
        split = contracts.split_rows(frame, table)
        problems = contracts.partition_problems(table, "", frame.height, split)
        if problems:
            _fail(context, key, f"asset {key.to_user_string()}, file {where}: " + "; ".join(problems))
        receipt = lakehouse.write_parquet(lakehouse.uri(spec.name, f"raw_{table.name}", "table.parquet"), split.good)
        return dg.MaterializeResult(
            metadata={**table_metadata(split.good), "uri": dg.MetadataValue.path(receipt.uri),
                      "sha256": receipt.sha256, "quarantined_rows": split.quarantined.height,
                      "quarantine_preview": dg.MetadataValue.md(_preview(split.quarantined))},
            check_results=[dg.AssetCheckResult(check_name=CONTRACT_CHECK, passed=True,
                                               metadata={"quarantined_rows": split.quarantined.height})],
        )

    return raw_dimension


def read_dimension(lakehouse: LakehouseResource, spec: UseCaseSpec, table: str):
    uri = lakehouse.uri(spec.name, f"raw_{table}", "table.parquet")
    if not lakehouse.exists(uri):
        raise dg.Failure(f"asset {UseCaseKeys(spec).raw(table).to_user_string()} is not materialized ({uri})",
                         allow_retries=False)
    return lakehouse.read_parquet(uri)


def _where(source: RawSourceResource, spec: UseCaseSpec, table: SourceTableSpec, day: str) -> str:
    from datetime import date

    return source.location(table, spec.embedded_package, date.fromisoformat(day))


def _contract_text(table: SourceTableSpec) -> str:
    rules = [f"{c.name}: {c.dtype}{'' if c.nullable else ', not null'}"
             + (f", >= {c.min:g}" if c.min is not None else "") + (f", <= {c.max:g}" if c.max is not None else "")
             + (f", in {list(c.allowed)}" if c.allowed else "") for c in table.columns]
    extra = [f"primary key ({', '.join(table.primary_key)})"] if table.primary_key else []
    if table.rows_per_partition:
        extra.append(f"{table.rows_per_partition[0]}..{table.rows_per_partition[1]} rows per partition")
    extra.append(f"at most {table.max_quarantine_fraction:.0%} of rows quarantined")
    return "Contract: " + "; ".join(rules + extra)


def _preview(quarantined) -> str:
    if quarantined.is_empty():
        return "_no rows quarantined_"
    from ml_assets.policies import markdown_table

    cols = [contracts.RULE, *[c for c in quarantined.columns if c != contracts.RULE][:8]]
    return markdown_table(quarantined.select(cols).head(5).to_dicts(), cols)
