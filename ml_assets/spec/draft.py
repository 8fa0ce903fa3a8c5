"""`mlp init NAME --from FILE`: a first draft of a use-case YAML from a data file, the way
`dg scaffold` drafts a component: columns with dtypes, nullability and observed ranges, a suggested
event-time column and partition range, and placeholders (marked TODO) for what only the user knows:
the label, the features and the windows. The draft is meant to be edited, then validated at load."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from ml_assets.spec.catalog import DEFS_FOLDER

_DTYPES = {"Int": "int64", "UInt": "int64", "Float": "float64", "Boolean": "bool", "Date": "date"}


def _dtype(polars_dtype: Any) -> str:
    name = str(polars_dtype)
    return next((v for k, v in _DTYPES.items() if name.startswith(k)), "string")


def _event_time(frame: Any) -> tuple[str | None, str, date | None, date | None]:
    """(column, format, first, last) of the likeliest event-time column."""
    import polars as pl

    for name, dtype in frame.schema.items():
        if dtype in (pl.Datetime, pl.Date) or str(dtype).startswith("Datetime"):
            col = frame.get_column(name).drop_nulls()
            if col.len():
                return name, "datetime" if str(dtype).startswith("Datetime") else "date", col.min().date() \
                    if isinstance(col.min(), datetime) else col.min(), col.max().date() \
                    if isinstance(col.max(), datetime) else col.max()
    for name, dtype in frame.schema.items():
        if _dtype(dtype) == "int64" and any(w in name.lower() for w in ("time", "date", "ts", "stamp")):
            col = frame.get_column(name).drop_nulls()
            if col.len() and col.min() > 10**8 and col.max() < 4 * 10**9:  # plausible unix seconds
                return (name, "unix_seconds", datetime.fromtimestamp(col.min()).date(),
                        datetime.fromtimestamp(col.max()).date())
    return None, "iso", None, None


def draft(name: str, source: Path) -> dict[str, Any]:
    import polars as pl

    frame = pl.read_parquet(source) if source.suffix == ".parquet" else pl.read_csv(source, infer_schema_length=10000)
    columns = {}
    for col, dtype in frame.schema.items():
        series = frame.get_column(col)
        entry: dict[str, Any] = {"dtype": _dtype(dtype), "nullable": bool(series.null_count())}
        if entry["dtype"] in ("int64", "float64") and series.drop_nulls().len():
            entry |= {"min": float(series.min()), "max": float(series.max())}
        columns[col] = entry
    event_col, fmt, first, last = _event_time(frame)
    table = {"description": f"TODO: describe {source.name}", "source": {"uri": str(source.resolve())},
             "columns": columns}
    if event_col:
        table["event_time"] = {"column": event_col, "format": fmt}
    numeric = [c for c, e in columns.items() if e["dtype"] in ("int64", "float64") and c != event_col][:5]
    return {
        "type": "ml_assets.components.UseCaseComponent",
        "attributes": {
            "name": name,
            "description": "TODO: what is predicted, and when",
            "owners": ["team:TODO"],
            "cadence": "monthly" if first and last and (last - first).days > 3 * 365 else "daily",
            "partitions_start": str(first or "TODO"),
            "partitions_end": str(last or "TODO"),
            "events_table": "events",
            "event_id_columns": list(columns)[:1],
            "tables": {"events": table},
            "label": {"name": "TODO", "expression": "TODO: boolean SQL over the event's columns"},
            "features": {"numeric": numeric},
            "training": {"start": "TODO", "end": "TODO", "validation": 1},
            "evaluation": {"start": "TODO", "end": "TODO", "baseline_feature": "TODO"},
        },
    }


def write_draft(name: str, source: Path, out: Path | None = None) -> Path:
    out = out or DEFS_FOLDER / name / "defs.yaml"
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out or name")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(draft(name, source), sort_keys=False, width=110)
    out.write_text(f"# Drafted by `mlp init {name} --from {source}`: replace every TODO, then validate with "
                   "`make validate`.\n" + text)
    return out
