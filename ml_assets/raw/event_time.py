"""A row's event time and partition, from any timestamp column or date parts (pure Polars).

The event time is converted to the use case's time zone and kept as local wall-clock time
(`_event_time`, a naive timestamp); the partition is the first day of the cadence period holding
its local date (`_partition_date`). Conversions go through UTC instants, so rows around a DST change
land on the right local day; a timestamp that cannot be read becomes null (rule `event_time`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_assets.spec import EventTimeSpec
from ml_assets.spec import cadence as cad

if TYPE_CHECKING:
    import polars as pl

_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def local_time_expr(event_time: EventTimeSpec, timezone: str, source_dtype: pl.DataType | None = None) -> pl.Expr:
    """Local wall-clock time (naive Datetime[us]) of each row, null where it cannot be read."""
    import polars as pl

    def to_local(instant: pl.Expr) -> pl.Expr:  # a tz-aware instant -> naive local time
        return instant.dt.convert_time_zone(timezone).dt.replace_time_zone(None).dt.cast_time_unit("us")

    if event_time.date_columns is not None:
        y, m, d = (pl.col(c).cast(pl.Int32, strict=False) for c in event_time.date_columns)
        return pl.datetime(y, m, d, time_unit="us")
    col = pl.col(event_time.column)
    fmt = event_time.format
    if fmt == "iso":
        text = col.cast(pl.String).str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        aware = to_local(text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_zone="UTC"))
        naive = [text.str.to_datetime(f, strict=False, time_unit="us") for f in _NAIVE_FORMATS]
        return pl.coalesce(aware, *naive)
    if fmt in ("unix_seconds", "unix_milliseconds"):
        scale = 1_000_000 if fmt == "unix_seconds" else 1_000
        micros = (col.cast(pl.Float64, strict=False) * scale).round(0).cast(pl.Int64, strict=False)
        return to_local(pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"))
    if fmt == "date":
        return col.cast(pl.Date, strict=False).cast(pl.Datetime("us"))
    # native datetimes: aware ones are converted, naive ones are already local
    if isinstance(source_dtype, pl.Datetime) and source_dtype.time_zone:
        return to_local(col)
    return col.cast(pl.Datetime("us"), strict=False)


def partition_expr(local_time: pl.Expr, cadence: cad.Cadence) -> pl.Expr:
    """The partition start (Date) of each local time."""
    day = local_time.dt.date()
    if cadence == "weekly":
        return day.dt.truncate("1w")  # ISO weeks: Monday
    if cadence == "monthly":
        return day.dt.month_start()
    return day
