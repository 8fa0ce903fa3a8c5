"""The feature contract: finite numeric inputs, bounded null shares. Pure: Polars only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def feature_problems(frame: pl.DataFrame, numeric: list[str], max_null_rate: float,
                     overrides: dict[str, float], exempt_from_nulls: set[str]) -> list[str]:
    """No infinities in numeric features; null share per feature within the bound."""
    import polars as pl

    if frame.is_empty():
        return []
    problems = []
    stats = frame.select(
        [pl.col(c).cast(pl.Float64).is_infinite().sum().alias(f"{c}__inf") for c in numeric]
        + [pl.col(c).is_null().mean().alias(f"{c}__null") for c in numeric]
    ).row(0, named=True)
    for c in numeric:
        if stats[f"{c}__inf"]:
            problems.append(f"column {c!r}: rule finite broken by {stats[f'{c}__inf']} rows")
        bound = overrides.get(c, max_null_rate)
        if c not in exempt_from_nulls and stats[f"{c}__null"] > bound:
            problems.append(f"column {c!r}: rule null_rate {stats[f'{c}__null']:.1%} > {bound:.0%}")
    return problems
