"""What was recorded when each file was written, read back from the Dagster instance.

The instance is the ledger: every materialization of a platform-written file records its `uri` and
`sha256`. Readers ask it which materialization of each partition is current, verify the bytes
against that record, and store the storage ids they read as input receipts, so an auditor can walk
from any output back to the exact upstream materializations (and `mlp trace` verifies them).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_assets.errors import MissingDataError
from ml_assets.records import Receipt


def _receipt(key: dg.AssetKey, record: Any) -> Receipt | None:
    meta = record.asset_materialization.metadata if record.asset_materialization else {}
    if "uri" not in meta or "sha256" not in meta:
        return None
    return Receipt(asset=key.to_user_string(), partition=record.partition_key, uri=str(meta["uri"].value),
                   sha256=str(meta["sha256"].value), storage_id=record.storage_id, run_id=record.run_id)


def recorded_partitions(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]) -> dict[str, Receipt]:
    """partition -> receipt of the newest materialization of each partition (absent ones are left out)."""
    found: dict[str, Receipt] = {}
    wanted = set(partitions)
    cursor = None
    while wanted - set(found):
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(wanted - set(found))), limit=1000,
            cursor=cursor, ascending=False)
        for record in result.records:
            if record.partition_key in found or record.partition_key is None:
                continue
            receipt = _receipt(key, record)
            if receipt is not None:
                found[record.partition_key] = receipt
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def require_partitions(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]) -> dict[str, Receipt]:
    found = recorded_partitions(instance, key, partitions)
    missing = [p for p in partitions if p not in found]
    if missing:
        raise MissingDataError(f"asset {key.to_user_string()}: partition(s) {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''} are not materialized; materialize them first")
    return found


def recorded_latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[Any, dict[str, Any]] | None:
    """(record, metadata values) of the asset's newest materialization, or None."""
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1, ascending=False)
    if not result.records:
        return None
    record = result.records[0]
    meta = record.asset_materialization.metadata
    return record, {k: v.value for k, v in meta.items()}


def record_by_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey, storage_id: int) -> Any:
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=[storage_id]), limit=1)
    if not result.records:
        raise MissingDataError(f"asset {key.to_user_string()} has no materialization with storage id {storage_id}")
    return result.records[0]


def verify_recorded(lakehouse: Any, receipt: Receipt) -> bytes:
    """The bytes of a receipt's file, checked against its recorded sha256."""
    return lakehouse.read_bytes(receipt.uri, receipt.sha256,
                                what=f"asset {receipt.asset}" + (f", partition {receipt.partition}"
                                                                 if receipt.partition else ""))


def compact(receipts: dict[str, dict[str, Receipt]]) -> dict[str, dict[str, int]]:
    """asset -> partition -> storage id: what an output read, small enough for per-partition metadata."""
    return {asset: {p: r.storage_id for p, r in sorted(parts.items()) if r.storage_id is not None}
            for asset, parts in receipts.items()}

