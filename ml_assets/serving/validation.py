"""Request validation from the use case's declared columns of its events table: the same rules, named
the same way, as the raw contract (`ml_assets/raw/contracts.py`): `not_null(col)`, `finite(col)`,
`min(col>=x)`, `max(col<=x)`, `allowed(col in [...])`, plus `dtype(col: int64)`, `unknown_field(col)`
and, for a batch, `unique_key(...)`. The table's cross-column SQL rules and the event-time rule are
checked after the event's partition is known (`app.py`). Pure Python: runs per request."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from ml_assets.spec import TableSpec


@dataclass(frozen=True)
class Problem:
    event: int
    field: str | None
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "field": self.field, "rule": self.rule, "message": self.message}


class RequestError(Exception):
    """A request the service refuses: HTTP status, machine-readable reason and the problems."""

    def __init__(self, status: int, reason: str, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.status, self.reason, self.message, self.problems = status, reason, message, problems or []

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "message": self.message, "problems": [p.to_dict() for p in self.problems]}


def _typed(value: Any, dtype: str) -> Any:
    """The value as the column's type, or raise ValueError."""
    if dtype == "int64":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError
        return value
    if dtype == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        return float(value)
    if dtype == "string":
        if not isinstance(value, str):
            raise ValueError
        return value
    if dtype == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if dtype == "date":
        return date.fromisoformat(value) if isinstance(value, str) else _raise()
    raise ValueError  # pragma: no cover - DType is closed


def _raise() -> Any:
    raise ValueError


def validate_event(table: TableSpec, index: int, event: Any) -> tuple[dict[str, Any], list[Problem]]:
    """A typed row with every declared column (absent nullable ones are null), and the problems found."""
    if not isinstance(event, dict):
        return {}, [Problem(index, None, "event_object", f"event {index} is a {type(event).__name__}, not an object")]
    problems = [Problem(index, k, f"unknown_field({k})", f"{k!r} is not a column of table {table.name!r}")
                for k in event if k not in table.columns]
    row: dict[str, Any] = {}
    for name, col in table.columns.items():
        value = event.get(name)
        if value is None:
            if not col.nullable:
                rule = f"not_null({name})"
                why = "is required" if name not in event else "may not be null"
                problems.append(Problem(index, name, rule, f"{name} {why} (declared nullable: false)"))
            row[name] = None
            continue
        try:
            typed = _typed(value, col.dtype)
        except (ValueError, TypeError):
            problems.append(Problem(index, name, f"dtype({name}: {col.dtype})",
                                    f"{name}={value!r} is not a {col.dtype}"))
            row[name] = None
            continue
        if col.dtype == "float64" and not math.isfinite(typed):  # pragma: no cover - JSON has no NaN by default
            problems.append(Problem(index, name, f"finite({name})", f"{name}={value!r} is not finite"))
        if col.min is not None and typed < col.min:
            problems.append(Problem(index, name, f"min({name}>={col.min:g})", f"{name}={value!r} < {col.min:g}"))
        if col.max is not None and typed > col.max:
            problems.append(Problem(index, name, f"max({name}<={col.max:g})", f"{name}={value!r} > {col.max:g}"))
        if col.allowed is not None and str(typed) not in col.allowed:
            problems.append(Problem(index, name, f"allowed({name} in {list(col.allowed)})",
                                    f"{name}={value!r} is not one of {list(col.allowed)}"))
        row[name] = typed
    return row, problems


def parse_events(table: TableSpec, payload: Any, max_batch: int) -> tuple[list[dict[str, Any]], bool]:
    """The typed rows of a request (one event object, or `{"events": [...]}`), and whether it was a batch.
    Raises RequestError: 400 malformed, 413 too many events, 422 rule violations (all of them)."""
    if isinstance(payload, dict) and set(payload) == {"events"}:
        events, batch = payload["events"], True
        if not isinstance(events, list) or not events:
            raise RequestError(400, "malformed_request", '"events" must be a non-empty list of event objects')
        if len(events) > max_batch:
            raise RequestError(413, "batch_too_large", f"{len(events)} events in one request; at most {max_batch}")
    elif isinstance(payload, dict):
        events, batch = [payload], False
    else:
        raise RequestError(400, "malformed_request", 'the body must be an event object or {"events": [...]}')
    rows, problems = [], []
    for i, event in enumerate(events):
        row, found = validate_event(table, i, event)
        rows.append(row)
        problems += found
    if table.primary_key and not problems:
        seen: dict[tuple, int] = {}
        for i, row in enumerate(rows):
            key = tuple(row[c] for c in table.primary_key)
            if key in seen:
                problems.append(Problem(i, None, f"unique_key({', '.join(table.primary_key)})",
                                        f"event {i} repeats the key of event {seen[key]}"))
            seen.setdefault(key, i)
    if problems:
        raise RequestError(422, "invalid_event", f"{len(problems)} problem(s): " + "; ".join(
            f"event {p.event}: {p.rule}" for p in problems[:5]), problems)
    return rows, batch
