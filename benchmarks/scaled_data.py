"""Inputs of the feature pipeline at a chosen multiple of the 2013 volume, written as Parquet.

Why replicate with shifted years: 30x the 2013 flights as 30 consecutive years of the same airports
keeps every group realistic: a carrier, origin or route has the same number of flights per day, the
trailing windows cross year boundaries like any other day, the number of days (and day x key groups)
grows with the volume, and the hourly weather table grows to about 780k rows as a real history
would. Scales below 1 keep the first days of 2013 (for quick smoke runs).

Labels come from the platform's own `compute_labels`, computed once at the largest scale and
filtered for the smaller ones (a label depends only on its own event row).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ml_assets.features.compute import PARTITION, compute_labels
from ml_assets.spec import EVENT_TIME_COLUMN, PARTITION_COLUMN, UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

BASE_YEAR = 2013


@dataclass(frozen=True)
class ScaledInputs:
    """Parquet paths of one scale's inputs (relation name -> path) and its row counts."""

    scale: float
    rows: int  # events (= feature rows)
    label_rows: int
    weather_rows: int
    events: str
    weather: str
    planes: str
    labels: str

    def relations(self) -> dict[str, str]:
        return {"events": self.events, "weather": self.weather, "planes": self.planes, "labels": self.labels}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TABLES = ("flights", "weather", "planes")


def _read_sources(spec: UseCaseSpec) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Each table's declared source, conformed, with `_event_time` and `_partition_date` (as the raw
    assets read it)."""
    from resources.sources import read_bulk

    return tuple(read_bulk(spec, spec.source(t)).frame for t in TABLES)


def _replicate(frame: pl.DataFrame, copies: int) -> pl.DataFrame:
    """`copies` consecutive years: the date columns, the event time and the partition shift together."""
    import polars as pl

    def shifted(k: int) -> pl.DataFrame:
        if not k:
            return frame
        moved = [pl.col("year") + k]
        moved += [pl.col(c).dt.offset_by(f"{k}y") for c in (EVENT_TIME_COLUMN, PARTITION_COLUMN) if c in frame.columns]
        return frame.with_columns(moved)

    return pl.concat([shifted(k) for k in range(copies)], how="vertical")


def cache_key(spec: UseCaseSpec, scales: list[float]) -> str:
    """Changes when the source data, the label definition or this generator changes."""
    import hashlib
    import importlib.util

    from resources.sources import source_uri

    digest = hashlib.sha256(spec.fingerprint("tables", "cadence", "timezone", "label", "event_id_columns").encode())
    for module in (__name__, "ml_assets.features.compute", "resources.sources"):
        with open(importlib.util.find_spec(module).origin, "rb") as handle:
            digest.update(handle.read())
    for table in TABLES:
        path = source_uri(spec.source(table))
        stat = os.stat(path)
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(repr(sorted(scales)).encode())
    return digest.hexdigest()[:16]


def cached_scales(spec: UseCaseSpec, scales: list[float], cache_root: str) -> dict[float, ScaledInputs]:
    """`build_scales` into `cache_root/<key>`, reused by later runs (30x takes ~30 s to write)."""
    import json
    import shutil

    folder = os.path.join(cache_root, cache_key(spec, scales))
    marker = os.path.join(folder, "complete.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            return {float(k): ScaledInputs(**v) for k, v in json.load(handle).items()}
    if os.path.isdir(cache_root):  # keep one generation of cached inputs
        for old in os.listdir(cache_root):
            shutil.rmtree(os.path.join(cache_root, old), ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    built = build_scales(spec, scales, folder)
    with open(marker, "w") as handle:
        json.dump({str(k): v.to_dict() for k, v in built.items()}, handle)
    return built


def build_scales(spec: UseCaseSpec, scales: list[float], folder: str) -> dict[float, ScaledInputs]:
    """Write every scale's inputs under `folder`; scales >= 1 must be whole numbers."""
    import polars as pl

    events, weather, planes = _read_sources(spec)
    top = max(scales)
    copies = max(1, round(top)) if top >= 1 else 1
    all_events = _replicate(events, copies) if copies > 1 else events
    all_weather = _replicate(weather, copies) if copies > 1 else weather
    all_labels = compute_labels(spec, all_events)
    planes_path = os.path.join(folder, "planes.parquet")
    planes.write_parquet(planes_path)
    out = {}
    for scale in sorted(scales):
        if scale >= 1:
            if scale != round(scale):
                raise ValueError(f"scale {scale}: use whole multiples >= 1 (or a fraction of the first year)")
            last_year = BASE_YEAR + round(scale) - 1
            ev = all_events.filter(pl.col("year") <= last_year)
            we = all_weather.filter(pl.col("year") <= last_year)
            lab = all_labels.filter(pl.col(PARTITION) <= date(last_year, 12, 31))
        else:
            last = date(BASE_YEAR, 1, 1) + timedelta(days=max(2, round(365 * scale)) - 1)
            day = pl.col(PARTITION_COLUMN)
            in_range = (day.dt.year() == BASE_YEAR) & (day <= last)
            ev, we = events.filter(in_range), weather.filter(in_range)
            lab = all_labels.filter((pl.col(PARTITION) <= last) & (pl.col(PARTITION).dt.year() == BASE_YEAR))
        sub = os.path.join(folder, f"x{scale:g}")
        os.makedirs(sub, exist_ok=True)
        paths = {name: os.path.join(sub, f"{name}.parquet") for name in ("events", "weather", "labels")}
        ev.write_parquet(paths["events"])
        we.write_parquet(paths["weather"])
        lab.write_parquet(paths["labels"])
        out[scale] = ScaledInputs(scale=scale, rows=ev.height, label_rows=lab.height, weather_rows=we.height,
                                  planes=planes_path, **paths)
    return out
