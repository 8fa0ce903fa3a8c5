"""Raw assets: source tables copied into the lakehouse once they pass their data contract.

Each partitioned table is a multi-asset: the valid rows (`raw_<table>`) and the quarantined ones
(`raw_<table>_quarantine`, with the rule each row broke). A partition that breaks a partition-level
rule fails before anything is written, so the previous good version of every file stays in place.
Each partition records the landed file's sha256 (and whether a delivered checksum verified it) and
its row accounting: rows read = rows written + rows quarantined.
"""


from typing import Any

import dagster as dg

from ml_assets import tables
from ml_assets.checks import fail_contract
from ml_assets.errors import SourceReadError, fatal_errors
from ml_assets.keys import UseCaseKeys
from ml_assets.policies import TRANSIENT_RETRY, asset_defaults, code_version, freshness_window, partitions_def
from ml_assets.raw import contracts
from ml_assets.spec import PARTITION_COLUMN, TableSpec, UseCaseSpec
from ml_assets.text import markdown_table
from resources.lakehouse import LakehouseResource
from resources.sources import RawSourceResource

CONTRACT_CHECK = "contract"
EVENT_PARTITION = "_event_partition"  # quarantine: the partition the row's own event time says


def build_raw_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [_partitioned(spec, t) if t.partitioned else _dimension(spec, t) for t in spec.sources]


def _column_docs(table: TableSpec) -> dict[str, str]:
    docs = {n: c.description for n, c in table.columns.items() if c.description}
    return docs | {PARTITION_COLUMN: f"the row's {table.name} partition (local date of its event time)",
                   contracts.EVENT_TIME_COLUMN: "event time as local wall-clock time",
                   contracts.RULE: "the first contract rule the row broke",
                   EVENT_PARTITION: "quarantine only: the partition the row's own event time belongs to"}


def _partitioned(spec: UseCaseSpec, table: TableSpec) -> dg.AssetsDefinition:
    keys = UseCaseKeys(spec.name)
    key, qkey = keys.raw(table.name), keys.quarantine(table.name)
    defaults = asset_defaults(spec, "raw")
    common: dict[str, Any] = {"group_name": defaults["group_name"], "owners": defaults["owners"],
                              "tags": defaults["tags"],
                              "code_version": code_version(spec, __name__, "tables", "cadence", "timezone")}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(key, description=f"Raw `{table.name}` rows that passed the contract. {table.description}",
                         kinds={"polars", "parquet"}, freshness_policy=freshness_window(spec), **common),
            dg.AssetSpec(qkey, description=f"Rows of `{table.name}` that broke a row-level contract rule, with the "
                         "rule (`_rule`). Kept for inspection and replay; never used downstream.",
                         kinds={"polars", "parquet"}, **common),
        ],
        check_specs=[dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True,
                                       description=_contract_text(table))],
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        name=f"{spec.name}__raw_{table.name}",
        pool=f"{spec.name}__raw_{table.name}",
    )
    def raw_partitioned(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                        raw_source: RawSourceResource):
        # Two runs of the same partition are serialized: read, validate and write happen as one unit.
        with fatal_errors(), lakehouse.partition_lock(spec.name, key.path[-1], list(context.partition_keys)) as waited:
            context.log.info(f"partition lock acquired after {waited:.2f} s")
            yield from _ingest(context, lakehouse, raw_source)

    def _ingest(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, raw_source: RawSourceResource):
        import polars as pl

        partitions = tables.partition_keys(context)
        span = f"{partitions[0]}..{partitions[-1]}" if len(partitions) > 1 else str(partitions[0])
        try:
            batch = raw_source.read(spec, table, partitions)
        except SourceReadError as exc:
            fail_contract(context, key, CONTRACT_CHECK, f"asset {key.to_user_string()}, partition {span}: {exc}")
        frame = batch.frame
        by = contracts.DELIVERED if contracts.DELIVERED in frame.columns else PARTITION_COLUMN
        splits, problems = {}, {}
        for day in partitions:
            splits[day] = contracts.split_rows(frame.filter(pl.col(by) == day), table)
            found = contracts.partition_problems(table, day.isoformat(), splits[day])
            if found:
                problems[day.isoformat()] = found
        source_rows = next(iter(batch.files.values())).rows if batch.unroutable and batch.files else 0
        unroutable = sum(batch.unroutable.values())
        if source_rows and unroutable / source_rows > table.max_quarantine_fraction:
            problems.setdefault(partitions[0].isoformat(), []).append(
                f"rule {', '.join(batch.unroutable)}: {unroutable} of {source_rows} rows of the source belong to no "
                f"partition (> allowed {table.max_quarantine_fraction:.1%})")
        if problems:
            lines = [f"asset {key.to_user_string()}, partition {d}, file "
                     f"{raw_source.location(spec, table, d)}: {p}" for d, ps in problems.items() for p in ps]
            fail_contract(context, key, CONTRACT_CHECK, "data contract broken; nothing was written:\n"
                          + "\n".join(lines), problems)

        good = pl.concat([s.good for s in splits.values()], how="vertical")
        # A quarantined row is kept in the partition it was delivered in (its own event partition beside it).
        bad = pl.concat([s.quarantined.with_columns(pl.col(PARTITION_COLUMN).alias(EVENT_PARTITION),
                                                    pl.lit(day).alias(PARTITION_COLUMN))
                         for day, s in splits.items()], how="vertical")
        meta = {}
        for day, s in splits.items():
            pkey = day.isoformat()
            info = batch.files.get(pkey)
            meta[pkey] = {
                "rows_read": s.rows_read, "rows_written": s.good.height, "quarantined_rows": s.quarantined.height,
                "quarantine_preview": dg.MetadataValue.md(_preview(s.quarantined)),
                **(info.metadata() if info else {"source_file": "none (known missing partition)"}),
            }
            if info and info.uri in batch.extra_columns:
                meta[pkey]["extra_columns"] = ", ".join(batch.extra_columns[info.uri])
            if batch.unroutable:
                meta[pkey]["source_rows_in_no_partition"] = dg.MetadataValue.json(batch.unroutable)
        for path, extra in batch.extra_columns.items():
            context.log.warning(f"{key.to_user_string()}: file {path} has undeclared column(s) {extra} (not kept)")
        docs = _column_docs(table)
        good_files = _write(context, lakehouse, spec, key, good, partitions, meta, docs)
        bad_files = _write(context, lakehouse, spec, qkey, bad, partitions, {}, docs)
        yield dg.MaterializeResult(asset_key=key, data_version=tables.data_version(good_files))
        yield dg.MaterializeResult(asset_key=qkey, data_version=tables.data_version(bad_files))
        yield dg.AssetCheckResult(
            asset_key=key, check_name=CONTRACT_CHECK, passed=True, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"partitions": len(partitions), "rows_read": good.height + bad.height,
                      "valid_rows": good.height, "quarantined_rows": bad.height},
        )

    return raw_partitioned


def _write(context, lakehouse, spec, key, frame, partitions, meta, docs) -> dict[str, str]:
    written = tables.write_partitions(context, lakehouse, spec, key, frame, PARTITION_COLUMN, partitions, extra=meta,
                                      descriptions=docs)
    return {p: r.sha256 for p, r in written.items()}


def _dimension(spec: UseCaseSpec, table: TableSpec) -> dg.AssetsDefinition:
    key = UseCaseKeys(spec.name).raw(table.name)

    @dg.asset(
        key=key,
        description=f"Raw `{table.name}` as delivered, checked against its contract. {table.description}",
        kinds={"polars", "parquet"},
        code_version=code_version(spec, __name__, "tables"),
        retry_policy=TRANSIENT_RETRY,
        check_specs=[dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True, description=_contract_text(table))],
        **asset_defaults(spec, "raw"),
    )
    def raw_dimension(context: dg.AssetExecutionContext, lakehouse: LakehouseResource,
                      raw_source: RawSourceResource):
        from ml_assets.policies import table_metadata

        with fatal_errors():
            where = raw_source.location(spec, table)
            try:
                batch = raw_source.read(spec, table)
            except SourceReadError as exc:
                fail_contract(context, key, CONTRACT_CHECK, f"asset {key.to_user_string()}: {exc}")
            split = contracts.split_rows(batch.frame, table)
            problems = contracts.partition_problems(table, "", split)
            if problems:
                fail_contract(context, key, CONTRACT_CHECK, f"asset {key.to_user_string()}, file {where}: "
                              + "; ".join(problems))
            receipt = lakehouse.write_parquet(lakehouse.uri(spec.name, key.path[-1], "table.parquet"), split.good)
            info = batch.files.get("")
            return dg.MaterializeResult(
                metadata={**table_metadata(split.good, _column_docs(table)), "uri": dg.MetadataValue.path(receipt.uri),
                          "sha256": receipt.sha256, "rows_read": split.rows_read, "rows_written": split.good.height,
                          "quarantined_rows": split.quarantined.height,
                          "quarantine_preview": dg.MetadataValue.md(_preview(split.quarantined)),
                          **(info.metadata() if info else {})},
                data_version=dg.DataVersion(receipt.sha256),
                check_results=[dg.AssetCheckResult(check_name=CONTRACT_CHECK, passed=True,
                                                   metadata={"quarantined_rows": split.quarantined.height})],
            )

    return raw_dimension


def _contract_text(table: TableSpec) -> str:
    rules = [f"{n}: {c.dtype}{'' if c.nullable else ', not null'}"
             + (f", >= {c.min:g}" if c.min is not None else "") + (f", <= {c.max:g}" if c.max is not None else "")
             + (f", in {list(c.allowed)}" if c.allowed else "") for n, c in table.columns.items()]
    extra = [f"primary key ({', '.join(table.primary_key)})"] if table.primary_key else []
    extra += [f"rule {r.name}: {r.sql}" for r in table.rules]
    if table.partitioned:
        extra.append("event time readable and inside the delivered file's partition")
    if table.rows_per_partition:
        extra.append(f"{table.rows_per_partition[0]}..{table.rows_per_partition[1]} rows per partition")
    extra.append(f"at most {table.max_quarantine_fraction:.0%} of rows quarantined")
    extra.append(f"undeclared columns: {table.extra_columns}")
    return "Contract: " + "; ".join(rules + extra)


def _preview(quarantined) -> str:
    if quarantined.is_empty():
        return "_no rows quarantined_"
    cols = [contracts.RULE, *[c for c in quarantined.columns if c != contracts.RULE][:8]]
    return markdown_table([{k: str(v) for k, v in r.items()} for r in quarantined.select(cols).head(5).to_dicts()],
                          cols)
