"""Platform-wide policies applied in one place: ownership, tags, groups, code versions, the
partitioning scheme, retries, and the standard metadata every table asset records."""

from __future__ import annotations

import hashlib
import importlib.util
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.spec import UseCaseSpec

if TYPE_CHECKING:
    import polars as pl

STAGES = ("raw", "features", "training", "evaluation", "registry", "predictions", "monitoring")

# Transient faults (I/O hiccups, a killed worker) retry with backoff; contract violations raise
# `dg.Failure(allow_retries=False)` so they do not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def daily_partitions(spec: UseCaseSpec) -> dg.DailyPartitionsDefinition:
    end = date.fromisoformat(spec.partitions_end) + timedelta(days=1)
    return dg.DailyPartitionsDefinition(start_date=spec.partitions_start, end_date=end.isoformat())


def code_version(spec: UseCaseSpec, modules: list[str], *sections: str) -> str:
    """Derived from the source files that compute the asset and the spec sections it reads.

    Modules are named, not imported, so heavy libraries (torch) stay out of the code location's import.
    """
    digest = hashlib.sha256()
    for name in modules:
        origin = importlib.util.find_spec(name).origin
        with open(origin, "rb") as handle:
            digest.update(handle.read())
    digest.update(spec.fingerprint(*sections).encode())
    return digest.hexdigest()[:12]


def asset_defaults(spec: UseCaseSpec, stage: str) -> dict[str, Any]:
    assert stage in STAGES, stage
    return {
        "group_name": stage,
        "owners": list(spec.owners),
        "tags": {"use_case": spec.name, "stage": stage},
    }


def table_metadata(frame: pl.DataFrame) -> dict[str, Any]:
    """Row count and column schema, in Dagster's reserved keys (shown natively in the UI)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])
    return {"dagster/row_count": frame.height, "dagster/column_schema": schema}


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(none)_"
    columns = columns or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return ""
            return str(int(v)) if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
