"""The one definition of a training set's rows and split: features joined to known labels over a
window, the last partitions held out for validation (time-based, never shuffled across time).
Used by the training_set asset, reproduction and the policy backtest, so all three train alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_assets.features import compute

if TYPE_CHECKING:
    import polars as pl

    from ml_assets.spec import ModelSpec
    from ml_assets.training.train import TrainedModel

SPLIT = "split"


def labelled_split(features: pl.DataFrame, labels: pl.DataFrame, window: dict[str, str]) -> pl.DataFrame:
    """Rows of `features` inside the window that have a known label, with a `split` column."""
    import polars as pl

    start, end, valid_start = (pl.lit(window[k]).str.to_date() for k in ("train_start", "train_end",
                                                                            "validation_start"))
    return (
        features.filter(pl.col(compute.PARTITION).is_between(start, end))
        .join(labels.select(compute.EVENT_ID, compute.LABEL), on=compute.EVENT_ID, how="inner")
        .with_columns(pl.when(pl.col(compute.PARTITION) >= valid_start).then(pl.lit("validation"))
                      .otherwise(pl.lit("train")).alias(SPLIT))
        .sort(compute.PARTITION, compute.EVENT_ID)
    )


def fit(frame: pl.DataFrame, model_spec: ModelSpec, numeric: list[str], categorical: list[str]) -> TrainedModel:
    """Train on the `train` split, early-stop and pick the threshold on the `validation` split."""
    import polars as pl

    from ml_assets.training import train

    return train.train_model(frame.filter(pl.col(SPLIT) == "train"), frame.filter(pl.col(SPLIT) == "validation"),
                             compute.LABEL, tuple(numeric), tuple(categorical), model_spec)
