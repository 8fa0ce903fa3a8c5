"""Reading and writing daily-partitioned tables in the lakehouse, one Parquet file per day.

Assets run with a single-run backfill policy: one run handles a whole range of days (much cheaper
than a run per day), yet every day is written as its own file with its own metadata.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.policies import table_metadata
from ml_assets.spec import UseCaseSpec
from resources.lakehouse import MissingDataError

if TYPE_CHECKING:
    import polars as pl

    from resources.lakehouse import LakehouseResource


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    return [date.fromisoformat(k) for k in context.partition_keys]


def write_daily(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    spec: UseCaseSpec,
    key: dg.AssetKey,
    frame: pl.DataFrame,
    date_column: str,
    days: list[date] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write one file per partition in this run, or per day of `days` (an empty day is written as an
    empty file)."""
    import polars as pl

    total = 0
    days = partition_days(context) if days is None else days
    for day in days:
        part = frame.filter(pl.col(date_column) == day)
        receipt = lakehouse.write_parquet(lakehouse.partition_uri(spec.name, key.path[-1], day.isoformat()), part)
        total += part.height
        context.add_asset_metadata(
            {
                **table_metadata(part),
                "uri": dg.MetadataValue.path(receipt.uri),
                "sha256": receipt.sha256,
                "size_bytes": receipt.size_bytes,
                **(extra or {}).get(day.isoformat(), {}),
            },
            partition_key=day.isoformat(),
            asset_key=key,
        )
    if days:
        context.log.info(f"{key.to_user_string()}: wrote {len(days)} partition(s), {total} rows")


def read_daily(
    lakehouse: LakehouseResource,
    spec: UseCaseSpec,
    key: dg.AssetKey,
    days: list[date],
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Days before the use case's first partition are skipped; any other missing day is an error."""
    first = date.fromisoformat(spec.partitions_start)
    wanted = [d.isoformat() for d in days if d >= first]
    try:
        return lakehouse.read_partitions(spec.name, key.path[-1], wanted, columns=columns)
    except MissingDataError as exc:  # not transient: retrying cannot help
        raise dg.Failure(str(exc), allow_retries=False) from exc
