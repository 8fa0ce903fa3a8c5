"""Partition cadence arithmetic: daily, weekly (ISO weeks, Monday) or monthly partitions.

Every window, delay and age in a use case is a number of partitions; a YAML file may write it as a
partition count (`28`) or as a duration (`28d`, `4w`, `3mo`, `1y`) that must be a whole number of
partitions of the use case's cadence. Pure Python (no Dagster, no Polars): the same arithmetic is
used by the feature SQL, the sensors, the replay and the tests.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

Cadence = Literal["daily", "weekly", "monthly"]
CADENCES: tuple[Cadence, ...] = ("daily", "weekly", "monthly")
SPAN_PATTERN = re.compile(r"^\s*(\d+)\s*(d|w|mo|y)\s*$")
_UNIT_NAMES = {"d": "day", "w": "week", "mo": "month", "y": "year"}


class SpanError(ValueError):
    """A declared duration that is not a whole number of partitions."""


def check_span_syntax(value: int | str) -> int | str:
    if isinstance(value, bool):
        raise ValueError("a span is a partition count or a duration like '28d', '4w', '3mo', '1y'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value}: a partition count cannot be negative")
        return value
    if not SPAN_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a partition count or a duration like '28d', '4w', '3mo', '1y'")
    return value


def span_partitions(value: int | str, cadence: Cadence) -> int:
    """A partition count, or a duration converted to whole partitions of `cadence` (else SpanError)."""
    check_span_syntax(value)
    if isinstance(value, int):
        return value
    match = SPAN_PATTERN.match(value)
    assert match is not None
    count, unit = int(match.group(1)), match.group(2)
    if cadence == "monthly":
        if unit in ("mo", "y"):
            return count * (12 if unit == "y" else 1)
    elif unit == "d" or unit == "w":
        days = count * (7 if unit == "w" else 1)
        per = 7 if cadence == "weekly" else 1
        if days % per == 0:
            return days // per
    raise SpanError(f"{value!r} is not a whole number of {cadence} partitions "
                    f"(write a partition count, or {_examples(cadence)})")


def _examples(cadence: Cadence) -> str:
    return {"daily": "days ('28d') or weeks ('4w')", "weekly": "weeks ('4w') or multiples of 7 days",
            "monthly": "months ('3mo') or years ('1y')"}[cadence]


def floor(day: date, cadence: Cadence) -> date:
    """The first day of the partition holding `day`."""
    if cadence == "daily":
        return day
    if cadence == "weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def shift(day: date, partitions: int, cadence: Cadence) -> date:
    """The partition `partitions` after (negative: before) the one starting on `day`."""
    if cadence == "daily":
        return day + timedelta(days=partitions)
    if cadence == "weekly":
        return day + timedelta(weeks=partitions)
    months = day.year * 12 + day.month - 1 + partitions
    return date(months // 12, months % 12 + 1, 1)


def between(first: date, last: date, cadence: Cadence) -> int:
    """Partitions from `first` to `last` (both partition starts): shift(first, n) == last."""
    if cadence == "monthly":
        return (last.year * 12 + last.month) - (first.year * 12 + first.month)
    return (last - first).days // (7 if cadence == "weekly" else 1)


def partition_range(first: date, last: date, cadence: Cadence) -> list[date]:
    """Inclusive list of partition starts from the partition of `first` to the one of `last`."""
    start, end = floor(first, cadence), floor(last, cadence)
    return [shift(start, i, cadence) for i in range(between(start, end, cadence) + 1)]


def suffix(cadence: Cadence) -> str:
    """Unit suffix of window names: `route_rate_28d`, `user_rate_12mo`."""
    return {"daily": "d", "weekly": "w", "monthly": "mo"}[cadence]


def unit_name(cadence: Cadence) -> str:
    return {"daily": "day", "weekly": "week", "monthly": "month"}[cadence]


# ---- the same arithmetic in DuckDB SQL -----------------------------------------------------------------
def sql_interval(partitions: int, cadence: Cadence) -> str:
    if cadence == "monthly":
        return f"INTERVAL {partitions} MONTH"
    return f"INTERVAL {partitions * (7 if cadence == 'weekly' else 1)} DAY"


def sql_shift(expr: str, partitions: int, cadence: Cadence) -> str:
    """`expr` (a DATE) moved by `partitions` partitions, as a DATE."""
    if partitions == 0:
        return expr
    sign = "+" if partitions > 0 else "-"
    return f"CAST({expr} {sign} {sql_interval(abs(partitions), cadence)} AS DATE)"
