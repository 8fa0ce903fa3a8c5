"""Rows of the embedded 2013 data as the platform reads them (contract dtypes, `_partition_date`),
read once per test session from the use case's declared sources."""

from __future__ import annotations

from datetime import date
from functools import cache

import polars as pl

from ml_assets.spec import PARTITION_COLUMN
from ml_assets.spec.catalog import use_case
from resources.sources import read_bulk


@cache
def _table(use_case_name: str, table: str) -> pl.DataFrame:
    spec = use_case(use_case_name)
    return read_bulk(spec, spec.source(table)).frame


def rows(spec, table: str, days: list[date] | None = None) -> pl.DataFrame:
    """A table's rows (of `days` for a partitioned table)."""
    frame = _table(spec.name, table)
    return frame if days is None else frame.filter(pl.col(PARTITION_COLUMN).is_in(days))


def feature_inputs(spec, days: list[date]) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """(events, lookups) for the feature function over `days`."""
    lookups = {lk.table: rows(spec, lk.table, days if spec.source(lk.table).partitioned else None)
               for lk in spec.features.lookups}
    return rows(spec, spec.events_table, days), lookups
