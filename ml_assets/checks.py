"""Contract checks that guard writes: evaluated before a file is replaced, recorded as Dagster
asset-check evaluations (visible in the UI), and fatal (no retry) when broken, so a bad batch never
overwrites a good partition."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import dagster as dg

if TYPE_CHECKING:
    import polars as pl


def fail_contract(context: dg.AssetExecutionContext, key: dg.AssetKey, check_name: str, message: str,
                  problems: dict[str, list[str]] | None = None) -> NoReturn:
    for partition, items in (problems or {"": [message]}).items():
        context.log_event(dg.AssetCheckEvaluation(
            asset_key=key, check_name=check_name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
            partition=partition or None,
            metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in items))},
        ))
    raise dg.Failure(description=message, allow_retries=False)


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


def prediction_problems(predictions: pl.DataFrame, features: pl.DataFrame, id_col: str, prob_col: str) -> list[str]:
    """Probabilities in [0, 1]; exactly one prediction per input row."""
    import polars as pl

    problems = []
    bad = predictions.filter(~pl.col(prob_col).is_between(0.0, 1.0) | pl.col(prob_col).is_nan()).height
    if bad:
        problems.append(f"rule probability_in_[0,1] broken by {bad} rows")
    if predictions.height != features.height or predictions.get_column(id_col).n_unique() != predictions.height:
        problems.append(f"rule one_per_input_row: {predictions.height} predictions "
                        f"({predictions.get_column(id_col).n_unique()} distinct) for {features.height} input rows")
    return problems
