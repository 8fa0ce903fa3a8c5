"""Plain-text rendering shared by reports, cards and metadata (pure)."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        return str(int(v)) if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
    return "" if v is None else str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(none)_"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def readable(x: float) -> float:
    """A float as a person reads it in the UI: 4 decimals, or 3 significant digits below 0.01 (small
    gaps and rates keep their meaning). Full precision stays in the JSON records."""
    if x != x or x in (float("inf"), float("-inf")) or x == 0:
        return x
    return round(x, 4) if abs(x) >= 0.01 else float(f"{x:.3g}")
