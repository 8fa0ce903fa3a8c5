"""The prediction contract: one probability in [0, 1] per input row. Pure: Polars only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


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
