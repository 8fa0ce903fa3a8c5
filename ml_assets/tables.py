"""Reading and writing partitioned tables, one Parquet file per partition, with receipts.

Assets run with a single-run backfill policy: one run handles a whole range of partitions (much
cheaper than a run per partition), yet every partition is written as its own file with its own
metadata: uri, sha256, row count, column schema, and the storage ids of the upstream
materializations it was computed from. Every read goes through the instance's record of each
partition and verifies the file's sha256 before parsing it.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets import lineage
from ml_assets.policies import table_metadata
from ml_assets.records import Receipt
from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

    from resources.lakehouse import LakehouseResource, WriteReceipt


def partition_keys(context: dg.AssetExecutionContext) -> list[date]:
    return [date.fromisoformat(k) for k in context.partition_keys]


def in_range(spec: UseCaseSpec, partitions: list[date]) -> list[str]:
    """Partition keys inside the use case's range (earlier ones simply do not exist)."""
    return [p.isoformat() for p in partitions if spec.partitions_start <= p <= spec.partitions_end]


def read_partitions(context: Any, lakehouse: LakehouseResource, spec: UseCaseSpec, key: dg.AssetKey,
                    partitions: list[date], columns: list[str] | None = None, *, missing_ok: bool = False
                    ) -> tuple[pl.DataFrame, dict[str, Receipt]]:
    """The recorded, sha256-verified files of `partitions`, concatenated; and what was read.

    `context` is anything with `.instance`. A partition never materialized is an error naming it,
    unless `missing_ok` (then it is skipped and absent from the receipts)."""
    wanted = in_range(spec, partitions)
    if missing_ok:
        receipts = lineage.recorded_partitions(context.instance, key, wanted)
    else:
        receipts = lineage.require_partitions(context.instance, key, wanted)
    ordered = [receipts[p] for p in wanted if p in receipts]
    return lakehouse.read_verified_frames(ordered, columns), receipts


def write_partitions(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, spec: UseCaseSpec,
                     key: dg.AssetKey, frame: pl.DataFrame, partition_column: str, partitions: list[date] | None = None,
                     *, inputs: dict[str, dict[str, dict[str, int]]] | None = None,
                     extra: dict[str, dict[str, Any]] | None = None, descriptions: dict[str, str] | None = None,
                     ) -> dict[str, WriteReceipt]:
    """One file per partition of the run (or of `partitions`); an empty partition is an empty file.

    `inputs[partition]` is the compact receipts (asset -> partition -> storage id) of what it read.
    """
    import polars as pl

    written: dict[str, WriteReceipt] = {}
    partitions = partition_keys(context) if partitions is None else partitions
    for day in partitions:
        part = frame.filter(pl.col(partition_column) == day)
        pkey = day.isoformat()
        receipt = lakehouse.write_parquet(lakehouse.partition_uri(spec.name, key.path[-1], pkey), part)
        written[pkey] = receipt
        meta = {**table_metadata(part, descriptions), "uri": dg.MetadataValue.path(receipt.uri),
                "sha256": receipt.sha256, "size_bytes": receipt.size_bytes, **(extra or {}).get(pkey, {})}
        if inputs is not None and pkey in inputs:
            meta["input_receipts"] = dg.MetadataValue.json(inputs[pkey])
        context.add_asset_metadata(meta, partition_key=pkey, asset_key=key)
    if partitions:
        context.log.info(f"{key.to_user_string()}: wrote {len(partitions)} partition(s), "
                         f"{sum(r.rows or 0 for r in written.values())} rows")
    return written


def data_version(shas: dict[str, str] | list[str]) -> dg.DataVersion:
    """A materialization's DataVersion: the file's sha256 when the run wrote one partition; for a range
    run, the sha256 of its partitions' hashes (Dagster 1.13 gives every partition of one range
    materialization the same data-version tag; each partition's own sha256 is in its metadata)."""
    values = list(shas.values()) if isinstance(shas, dict) else list(shas)
    if len(values) == 1:
        return dg.DataVersion(values[0])
    items = sorted(shas.items()) if isinstance(shas, dict) else [(str(i), v) for i, v in enumerate(values)]
    return dg.DataVersion(hashlib.sha256("".join(f"{k}:{v};" for k, v in items).encode()).hexdigest())


def receipts_for(partition_map: dict[str, list[str]], asset: str, receipts: dict[str, Receipt]
                 ) -> dict[str, dict[str, dict[str, int]]]:
    """Per output partition, the compact receipts of the input partitions it read from `asset`."""
    return {out: {asset: {p: receipts[p].storage_id for p in ins if p in receipts and receipts[p].storage_id}}
            for out, ins in partition_map.items()}


def merge_inputs(*parts: dict[str, dict[str, dict[str, int]]]) -> dict[str, dict[str, dict[str, int]]]:
    merged: dict[str, dict[str, dict[str, int]]] = {}
    for part in parts:
        for out, assets in part.items():
            merged.setdefault(out, {}).update(assets)
    return merged


def read_unpartitioned(context: Any, lakehouse: LakehouseResource, key: dg.AssetKey) -> tuple[pl.DataFrame, Receipt]:
    """The newest recorded file of an unpartitioned table asset (a dimension), sha256-verified."""
    from ml_assets.errors import MissingDataError

    latest = lineage.recorded_latest(context.instance, key)
    if latest is None or "uri" not in latest[1]:
        raise MissingDataError(f"asset {key.to_user_string()} is not materialized; materialize it first")
    record, meta = latest
    receipt = Receipt(asset=key.to_user_string(), uri=str(meta["uri"]), sha256=str(meta["sha256"]),
                      storage_id=record.storage_id, run_id=record.run_id)
    return lakehouse.read_parquet(receipt.uri, receipt.sha256, what=f"asset {receipt.asset}"), receipt
