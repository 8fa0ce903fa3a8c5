"""whylogs profiles of feature partitions, fed the way whylogs 1.6 needs.

- Telemetry is off before whylogs is imported (`WHYLOGS_NO_ANALYTICS`).
- NumPy 2 removed `np.unicode_`, which whylogs 1.6.4 still calls: we alias it to `np.str_`.
- Identifier columns are dropped, and only declared categorical columns get frequent-items
  sketches, so no raw identifier or free-text value is ever stored in a profile.
- Numeric columns are handed over as contiguous float64 arrays (the cheap path in whylogs).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


def _import_whylogs():
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    import numpy as np

    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_  # whylogs 1.6.4 predates NumPy 2
    import whylogs

    return whylogs


def _schema(numeric: list[str], categorical: list[str]):
    _import_whylogs()
    from whylogs.core.metrics import StandardMetric
    from whylogs.core.resolvers import MetricSpec, ResolverSpec
    from whylogs.core.schema import DeclarativeSchema

    base = [StandardMetric.counts, StandardMetric.types, StandardMetric.cardinality]
    specs = [
        ResolverSpec(column_name=c, metrics=[MetricSpec(m.value) for m in [*base, StandardMetric.distribution]])
        for c in numeric
    ] + [
        ResolverSpec(column_name=c, metrics=[MetricSpec(m.value) for m in [*base, StandardMetric.frequent_items]])
        for c in categorical
    ]
    return DeclarativeSchema(specs)


def profile_frame(frame: pl.DataFrame, numeric: list[str], categorical: list[str]) -> Any:
    """A whylogs DatasetProfileView of the given columns (identifiers must not be among them)."""
    import pandas as pd
    import polars as pl

    why = _import_whylogs()
    data = {c: frame.get_column(c).cast(pl.Float64).to_numpy() for c in numeric}
    data |= {c: frame.get_column(c).cast(pl.String).to_numpy().astype(object) for c in categorical}
    result = why.log(pandas=pd.DataFrame(data), schema=_schema(numeric, categorical))
    return result.view()


def serialize(view: Any) -> bytes:
    return view.serialize()


def deserialize(data: bytes) -> Any:
    _import_whylogs()
    from whylogs.core import DatasetProfileView

    return DatasetProfileView.deserialize(data)


def summary_rows(view: Any) -> list[dict[str, Any]]:
    """Per-column summary for the UI: count, nulls, mean/quantiles or top values."""
    table = view.to_pandas()
    rows = []
    for column, rec in table.iterrows():
        top = rec.get("frequent_items/frequent_strings")
        rows.append(
            {
                "column": column,
                "n": int(rec.get("counts/n", 0) or 0),
                # whylogs counts a numeric null in both counts/null and counts/nan: count it once.
                "nulls": int(rec.get("counts/null", 0) or 0),
                "mean": _num(rec.get("distribution/mean")),
                "p05": _num(rec.get("distribution/q_05")),
                "median": _num(rec.get("distribution/median")),
                "p95": _num(rec.get("distribution/q_95")),
                "distinct~": _num(rec.get("cardinality/est")),
                "top": ", ".join(f"{i.value}" for i in top[:3]) if isinstance(top, list) else "",
            }
        )
    return rows


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else round(out, 4)
