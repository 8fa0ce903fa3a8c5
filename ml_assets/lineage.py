"""Which exact upstream materializations an asset read: recorded in metadata for auditors."""

from __future__ import annotations

from typing import Any

import dagster as dg


def latest_partition_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]
) -> dict[str, dict[str, Any]]:
    """partition -> {storage_id, run_id, sha256} of the newest materialization of each partition."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1000, cursor=cursor,
            ascending=False,
        )
        for record in result.records:
            partition = record.partition_key
            if partition in found or partition is None:
                continue
            materialization = record.asset_materialization
            sha = materialization.metadata.get("sha256") if materialization else None
            found[partition] = {
                "storage_id": record.storage_id,
                "run_id": record.run_id,
                "sha256": sha.value if sha is not None else None,
            }
        if not result.has_more:
            return found
        cursor = result.cursor
