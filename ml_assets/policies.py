"""Platform-wide policies applied in one place: ownership, tags, groups, code versions, the
partitioning scheme, retries, and the standard metadata every table asset records."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.spec import UseCaseSpec
from ml_assets.spec import cadence as cad

if TYPE_CHECKING:
    import polars as pl

STAGES = ("raw", "features", "training", "evaluation", "registry", "predictions", "monitoring")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("ml_assets", "resources", "sensors")

# Only transient I/O (OSError) reaches this policy: asset bodies run inside
# `ml_assets.errors.fatal_errors()`, which fails contract, integrity and other errors at once.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def partitions_def(spec: UseCaseSpec) -> dg.TimeWindowPartitionsDefinition:
    """Daily, weekly (ISO weeks from Monday) or monthly partitions in the use case's time zone."""
    start = spec.partitions_start.isoformat()
    end = cad.shift(spec.partitions_end, 1, spec.cadence).isoformat()  # exclusive
    if spec.cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=start, end_date=end, timezone=spec.timezone)
    if spec.cadence == "weekly":
        return dg.WeeklyPartitionsDefinition(start_date=start, end_date=end, day_offset=1, timezone=spec.timezone)
    return dg.MonthlyPartitionsDefinition(start_date=start, end_date=end, timezone=spec.timezone)


# ---- code versions: the files that compute an asset, found from its module's imports --------------------
# Cached per process: the code location hashes ~40 assets' closures at every load, mostly the same files.
@cache
def _module_file(name: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# `import a.b` / `from a.b import (c, d as e)`, at any indentation (function-level imports included).
_IMPORT = re.compile(r"^[ \t]*(?:import[ \t]+([\w., \t]+)|from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]+))",
                     re.MULTILINE)


@cache
def _imports(name: str) -> frozenset[str]:
    """Project modules `name` imports anywhere in its file (a regex scan: 10x faster than parsing,
    and code-version hashing runs at every code-location load)."""
    path = _module_file(name)
    if path is None:
        return frozenset()
    found = set()
    for plain, module, names in _IMPORT.findall(path.read_text()):
        if plain:
            candidates = [part.split(" as ")[0].strip() for part in plain.split(",")]
        else:
            items = [part.split(" as ")[0].strip() for part in names.strip("()").replace("\n", ",").split(",")]
            candidates = [module] + [f"{module}.{item}" for item in items if item and not item.startswith("#")]
        found |= {c for c in candidates if c.split(".")[0] in PROJECT_PACKAGES and _module_file(c)}
    return frozenset(found)


@cache
def module_closure(name: str) -> tuple[str, ...]:
    """`name` and every project module it imports, transitively (sorted)."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_imports(current) - seen)
    return tuple(sorted(seen))


@cache
def _code_digest(module: str) -> str:
    digest = hashlib.sha256()
    for name in module_closure(module):
        digest.update(name.encode())
        digest.update(_source(name))
    return digest.hexdigest()


@cache
def _source(name: str) -> bytes:
    path = _module_file(name)
    return path.read_bytes() if path is not None else b""


def code_version(spec: UseCaseSpec, module: str, *sections: str) -> str:
    """Hash of the source files the asset's module imports (transitively, within the project) and
    of the spec sections it reads. Found by scanning, not importing: torch & co. stay unimported."""
    return hashlib.sha256(f"{_code_digest(module)}:{spec.fingerprint(*sections)}".encode()).hexdigest()[:12]


def asset_defaults(spec: UseCaseSpec, stage: str) -> dict[str, Any]:
    """Each use case's assets are grouped under its own name; the stage is a tag (and a kind of key)."""
    assert stage in STAGES, stage
    return {
        "group_name": spec.name,
        "owners": list(spec.owners),
        "tags": {"use_case": spec.name, "stage": stage},
    }


def freshness_window(spec: UseCaseSpec) -> dg.FreshnessPolicy:
    """A partitioned feed is late when nothing landed for one partition period plus slack."""
    period = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1), "monthly": timedelta(days=31)}[spec.cadence]
    return dg.FreshnessPolicy.time_window(fail_window=period * 1.5, warn_window=period * 1.08)


def table_metadata(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """Row count and column schema, in Dagster's reserved keys (shown natively in the UI)."""
    descriptions = descriptions or {}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, str(dtype), description=descriptions.get(name))
                                     for name, dtype in frame.schema.items()])
    return {"dagster/row_count": frame.height, "dagster/column_schema": schema}


def readable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as the UI shows it: floats (plain or `MetadataValue.float`) rounded by `text.readable`,
    so no figure is shown as 0.04479124987759528 (a test walks every float the history world records)."""
    from ml_assets.text import readable

    out: dict[str, Any] = {}
    for name, value in metadata.items():
        if isinstance(value, float):
            value = readable(value)
        elif isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            value = dg.MetadataValue.float(readable(value.value))
        out[name] = value
    return out
